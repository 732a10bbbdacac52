"""The published files of each family are the oracle: the project's own loading code on the real processors,
tokenizers and chat templates in ../shared/fixtures (skipped, saying why, where that folder is absent).

For Qwen2-VL-2B, Qwen2.5-VL-7B, Qwen3-VL-4B and llava-1.5-7b-hf: the pixel limits take effect, image tokens follow
the processor's own resize with the factor read from the processor, box targets are written in the frame the
processor really produces, the label mask trains each reply and the token that closes it and nothing else, the
training text is the real template's, and the generation prompt is a prefix of it. Expected token ids are the ones
the fixture folders' RENDERED.md lists for the real tokenizers.
"""

import functools

import pytest
import torch
from PIL import Image, ImageDraw
from transformers import AutoProcessor
from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize

from vlmtune import tiny
from vlmtune.collator import IGNORE_INDEX, TrainCollator, count_tokens, open_images, training_text
from vlmtune.generation import prompt_messages
from vlmtune.modeling import image_settings, load_processor
from vlmtune.tasks import model_box_frame

QWEN = ["qwen2-vl-2b-instruct", "qwen2.5-vl-7b-instruct", "qwen3-vl-4b-instruct"]
FAMILIES = QWEN + ["llava-1.5-7b-hf"]
MIN_PIXELS, MAX_PIXELS = 3136, 78400  # the tutorial's 280 x 280 budget

# The two-turn conversation of the fixtures' RENDERED.md.
QUESTION, ANSWER = "What is shown in this image?", "A cat sitting on a mat."
FOLLOW_UP, SECOND_ANSWER = "What color is the cat?", "It is orange."


def conversation(image) -> list[dict]:
    return [{"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": QUESTION}]},
            {"role": "assistant", "content": [{"type": "text", "text": ANSWER}]},
            {"role": "user", "content": [{"type": "text", "text": FOLLOW_UP}]},
            {"role": "assistant", "content": [{"type": "text", "text": SECOND_ANSWER}]}]


@functools.cache
def processor_of(folder, min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS):
    return load_processor(str(folder), min_pixels, max_pixels)


@pytest.fixture(params=FAMILIES)
def family(request, fixtures_dir):
    return fixtures_dir / request.param


@pytest.fixture(params=QWEN)
def qwen(request, fixtures_dir):
    return fixtures_dir / request.param


def image_tokens(processor, input_ids) -> int:
    return int((input_ids == processor.tokenizer.convert_tokens_to_ids(processor.image_token)).sum())


# ---------------------------------------------------------------- pixel limits and image tokens


@pytest.mark.parametrize("folder", ["qwen2-vl-2b-instruct", "qwen2.5-vl-7b-instruct"])
def test_the_pixel_limits_hold_on_the_real_qwen2_processors(fixtures_dir, folder):
    # The hub preprocessor_config.json says min_pixels 3136, max_pixels 12845056: a 640x480 photo would be 644x476,
    # 391 tokens. At 3136..78400 it is 308x224: 11 x 8 tokens of 28 x 28 pixels.
    processor = processor_of(fixtures_dir / folder)
    batch = TrainCollator(processor, logits="all")([{"id": "p", "messages": conversation(
        Image.new("RGB", (640, 480)))}])
    assert image_tokens(processor, batch["input_ids"][0]) == 88
    assert batch["image_grid_thw"].tolist() == [[1, 16, 22]]


def test_the_pixel_limits_hold_on_the_real_qwen3_processor(fixtures_dir):
    # Qwen3-VL: 16-pixel patches merged 2 x 2, so 32 pixels a token. 640x480 into 78400 pixels:
    # sqrt(307200 / 78400) = 1.979; floor(480 / 1.979 / 32) = 7 -> 224, floor(640 / 1.979 / 32) = 10 -> 320: 70 tokens.
    processor = processor_of(fixtures_dir / "qwen3-vl-4b-instruct")
    batch = TrainCollator(processor, logits="all")([{"id": "p", "messages": conversation(
        Image.new("RGB", (640, 480)))}])
    assert image_tokens(processor, batch["input_ids"][0]) == 70
    assert image_settings(processor)["image_factor"] == 32


@pytest.mark.parametrize("limits", [(3136, 78400), (256 * 28 * 28, 1280 * 28 * 28), (3136, 12845056)])
@pytest.mark.parametrize("size", [(640, 480), (1920, 1080), (427, 640), (1000, 30), (20, 20)])
def test_image_tokens_follow_the_processors_own_resize_with_its_own_factor(qwen, size, limits):
    processor = processor_of(qwen, *limits)
    image_processor = processor.image_processor
    factor = image_processor.patch_size * image_processor.merge_size  # read from the real file, never a constant
    width, height = size
    resized_height, resized_width = smart_resize(height, width, factor=factor, min_pixels=limits[0],
                                                 max_pixels=limits[1])
    messages = conversation(Image.new("RGB", size))[:2]
    batch = TrainCollator(processor, logits="all")([{"id": "p", "messages": messages}])
    assert image_tokens(processor, batch["input_ids"][0]) == (resized_height // factor) * (resized_width // factor)
    # the over-length check counts the same tokens without computing pixels
    assert count_tokens(processor, messages) == batch["input_ids"].shape[1]


def test_a_fixed_size_processor_gives_576_image_tokens_at_any_size_and_any_limit(fixtures_dir):
    for limits in [(3136, 78400), (3136, 12845056)]:
        processor = processor_of(fixtures_dir / "llava-1.5-7b-hf", *limits)
        for size in [(640, 480), (300, 600)]:
            messages = conversation(Image.new("RGB", size))[:2]
            batch = TrainCollator(processor, logits="all")([{"id": "p", "messages": messages}])
            assert image_tokens(processor, batch["input_ids"][0]) == 576 == (336 // 14) ** 2
            assert count_tokens(processor, messages) == batch["input_ids"].shape[1]


# ---------------------------------------------------------------- the box frame


@pytest.mark.parametrize("size", [(640, 480), (640, 427), (1920, 1080), (1000, 30)])
def test_grounding_targets_are_written_in_the_frame_the_real_processor_produces(qwen, size):
    processor = processor_of(qwen)
    image_processor = processor.image_processor
    grid = image_processor(images=[Image.new("RGB", size)], return_tensors="pt")["image_grid_thw"][0].tolist()
    produced = (grid[2] * image_processor.patch_size, grid[1] * image_processor.patch_size)  # (width, height)
    model = {"model_type": "qwen2_5_vl", **image_settings(processor)}
    assert model_box_frame({"image_size": list(size)}, model) == ("qwen2_5_vl", produced)


# ---------------------------------------------------------------- label mask, template, prompt

# Supervised ids of the two replies with the real tokenizers (RENDERED.md): each reply and its closing token.
QWEN_REPLIES = [32, 8251, 11699, 389, 264, 5517, 13, 151645, 2132, 374, 18575, 13, 151645]  # ... <|im_end|>
LLAVA_REPLIES = [319, 6635, 16246, 373, 263, 1775, 29889, 2, 739, 338, 24841, 29889, 2]  # ▁A ▁cat ... </s>


def test_the_label_mask_trains_each_reply_and_the_token_that_closes_it(family):
    processor = processor_of(family)
    batch = TrainCollator(processor, logits="all")([{"id": "p", "messages": conversation(
        Image.new("RGB", (640, 480)))}])
    labels, input_ids = batch["labels"][0], batch["input_ids"][0]
    supervised = labels[labels != IGNORE_INDEX].tolist()
    assert supervised == (LLAVA_REPLIES if family.name.startswith("llava") else QWEN_REPLIES)
    # each supervised label is the token at its own position, and the token after a closing one is not trained
    positions = (labels != IGNORE_INDEX).nonzero().flatten().tolist()
    assert input_ids[positions].tolist() == supervised
    end = supervised[7]
    for position in positions:
        if int(input_ids[position]) == end and position + 1 < len(labels):
            assert labels[position + 1] == IGNORE_INDEX


def test_llava_replies_are_closed_with_the_eos_the_recipe_trained_and_nothing_of_the_next_user_turn(fixtures_dir):
    # The real template follows a reply with a space only, which tokenizes into "▁US" (3148), the next USER:'s
    # first token; its own {% generation %} mask trains that token and never </s>.
    processor = processor_of(fixtures_dir / "llava-1.5-7b-hf")
    batch = TrainCollator(processor, logits="all")([{"id": "p", "messages": conversation(
        Image.new("RGB", (640, 480)))}])
    labels = batch["labels"][0]
    assert 3148 not in labels.tolist() and labels.tolist().count(2) == 2
    assert processor.tokenizer.convert_ids_to_tokens(2) == "</s>"


def test_the_training_text_is_the_real_templates(family):
    real = AutoProcessor.from_pretrained(str(family))
    messages = conversation(Image.new("RGB", (64, 64)))
    ours = training_text(processor_of(family), messages)
    if family.name.startswith("llava"):
        # RENDERED.md's string, with </s> after each reply (the template writes none)
        rendered = ("USER: <image>\nWhat is shown in this image? ASSISTANT: A cat sitting on a mat. USER: What color "
                    "is the cat? ASSISTANT: It is orange. ")
        assert real.apply_chat_template(messages, tokenize=False) == rendered
        assert ours == rendered.replace("mat. USER", "mat.</s> USER").replace("orange. ", "orange.</s> ")
    else:
        assert ours == real.apply_chat_template(messages, tokenize=False)


def test_the_generation_prompt_is_a_prefix_of_the_training_tokens(family):
    processor = processor_of(family)
    messages = conversation(Image.new("RGB", (640, 480)))
    images = open_images(messages, processor)
    prompt = training_text(processor, prompt_messages(messages), add_generation_prompt=True)
    prompt_ids = processor(text=[prompt], images=[images])["input_ids"][0]
    training_ids = processor(text=[training_text(processor, messages)], images=[images])["input_ids"][0]
    assert training_ids[:len(prompt_ids)] == prompt_ids
    # and the first token after the prompt is the first token of the last reply
    labels = TrainCollator(processor, logits="all")([{"id": "p", "messages": messages}])["labels"][0]
    assert labels[len(prompt_ids)] == training_ids[len(prompt_ids)] != IGNORE_INDEX


def test_the_tiny_llava_build_uses_the_real_llava_template(fixtures_dir):
    import json

    real = json.loads((fixtures_dir / "llava-1.5-7b-hf" / "chat_template.json").read_text())["chat_template"]
    assert tiny.LLAVA_CHAT_TEMPLATE == real
    _, processor = tiny.build_tiny_llava()
    assert processor.chat_template == real


# ---------------------------------------------------------------- LLaVA sees the whole image


def edge_photo() -> Image.Image:
    """A grey 640x480 photo with a red object along its left edge (x 0..40) and a blue one along its right."""
    image = Image.new("RGB", (640, 480), (128, 128, 128))
    draw = ImageDraw.Draw(image)
    draw.rectangle([0, 200, 39, 279], fill=(255, 0, 0))
    draw.rectangle([600, 200, 639, 279], fill=(0, 0, 255))
    return image


def pixels_the_model_gets(processor, image: Image.Image) -> torch.Tensor:
    """(336, 336, 3) 8-bit pixels the vision tower is fed, unnormalised."""
    values = processor.image_processor(images=[image], return_tensors="pt")["pixel_values"][0]
    mean = torch.tensor(processor.image_processor.image_mean).view(3, 1, 1)
    std = torch.tensor(processor.image_processor.image_std).view(3, 1, 1)
    return ((values * std + mean) * 255).round().permute(1, 2, 0)


def test_an_object_at_the_edge_of_a_photo_is_inside_the_pixels_llava_gets(fixtures_dir):
    processor = processor_of(fixtures_dir / "llava-1.5-7b-hf")
    photo = edge_photo()
    # The real processor alone centre-crops 448x336 to 336x336: both objects are cut away.
    cropped = pixels_the_model_gets(processor, photo)
    red = (cropped[..., 0] > 200) & (cropped[..., 1] < 60)
    blue = (cropped[..., 2] > 200) & (cropped[..., 0] < 60)
    assert not red.any() and not blue.any()
    # Padded to 640x640 first, as the project feeds it: scaled by 336 / 640, the red object is at x 0..21,
    # y (200 + 80) * 0.525 = 147 .. (280 + 80) * 0.525 = 189, the blue one at x 315..336.
    [padded_photo] = open_images([{"role": "user", "content": [{"type": "image", "image": photo}]}], processor)
    assert padded_photo.size == (640, 640)
    seen = pixels_the_model_gets(processor, padded_photo)
    red = (seen[..., 0] > 200) & (seen[..., 1] < 60)
    blue = (seen[..., 2] > 200) & (seen[..., 0] < 60)
    rows, columns = red.nonzero(as_tuple=True)
    assert columns.min() == 0 and columns.max() <= 21 and 146 <= rows.min() and rows.max() <= 190
    assert blue.nonzero(as_tuple=True)[1].max() == 335
    # the padding is the processor's mean colour, which normalises to about zero
    assert processor.image_processor(images=[padded_photo], return_tensors="pt")["pixel_values"][0, :, 0, 168].abs(
        ).max() < 0.02
