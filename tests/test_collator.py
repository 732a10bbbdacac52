"""Tests of vlmtune/collator.py (and the prompt that vlmtune/generation.py builds from the same messages).

The label mask is tested on hand-written id lists; the collator, the length count and generation on the tiny Qwen2-VL
with the real tokenizer and chat template, against token ids written out by hand.
"""

import pytest
import torch
from PIL import Image

from vlmtune.collator import IGNORE_INDEX, TrainCollator, count_tokens, drop_overlong, label_mask, open_images
from vlmtune.generation import generate, prompt_messages
from vlmtune.tiny import build_tiny_qwen2_vl

X = IGNORE_INDEX

# Qwen2 token ids, each checked against the tokenizer in test_hand_written_ids_are_the_tokenizers.
SYSTEM = [151644, 8948, 198, 2610, 525, 264, 10950, 17847, 13, 151645, 198]  # the default system turn
USER = [151644, 872, 198]  # <|im_start|>user\n
ASSISTANT = [151644, 77091, 198]  # <|im_start|>assistant\n
VISION_START, IMAGE_PAD, VISION_END = 151652, 151655, 151653
END, NEWLINE, PAD = 151645, 198, 151643  # <|im_end|>, "\n", <|endoftext|>
DESCRIBE = [74785, 279, 2168, 13]  # "Describe the image."
WHAT_IS_IT = [3838, 374, 432, 30]  # "What is it?"
RED_CIRCLE = [32, 2518, 12671, 13]  # "A red circle."
BLUE_SQUARE = [32, 3460, 6303, 9334, 518, 279, 1909, 2115, 13]  # "A large blue square at the top left."


@pytest.fixture(scope="module")
def tiny():
    return build_tiny_qwen2_vl()


@pytest.fixture(scope="module")
def processor(tiny):
    return tiny[1]


def vision(n_tokens):
    return [VISION_START] + [IMAGE_PAD] * n_tokens + [VISION_END]


def example(id, image, question, answer):
    """One single-turn conversation; `image` is an in-memory PIL image or a path."""
    return {"id": id, "messages": [
        {"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": question}]},
        {"role": "assistant", "content": [{"type": "text", "text": answer}]},
    ]}


def square(side, colour=(200, 30, 30)):
    return Image.new("RGB", (side, side), colour)


def two_examples():
    # 56x56 is 2x2 patches of 28 pixels, 4 image tokens; 112x112 is 16.
    return [example("small", square(56), "Describe the image.", "A red circle."),
            example("large", square(112, (40, 80, 220)), "What is it?", "A large blue square at the top left.")]


# ---------------------------------------------------------------- label_mask

HEADER, CLOSE = [1, 2], 9  # a two-token reply header and the end-of-turn id, in a toy vocabulary


def test_label_mask_keeps_one_reply_and_its_end_token():
    assert label_mask([5, 1, 2, 7, 8, 9, 3], HEADER, CLOSE) == [X, X, X, 7, 8, 9, X]


def test_label_mask_keeps_both_replies_of_a_two_turn_conversation():
    ids = [5, 1, 2, 7, 9, 3, 6, 1, 2, 8, 8, 9, 3]
    assert label_mask(ids, HEADER, CLOSE) == [X, X, X, 7, 9, X, X, X, X, 8, 8, 9, X]


def test_label_mask_ignores_a_reply_header_at_the_very_end():
    assert label_mask([5, 1, 2, 7, 9, 3, 1, 2], HEADER, CLOSE) == [X, X, X, 7, 9, X, X, X]


def test_label_mask_is_all_ignored_without_a_reply_header():
    assert label_mask([5, 1, 7, 2, 9, 3], HEADER, CLOSE) == [X] * 6


def test_label_mask_ignores_padding_after_the_end_token():
    assert label_mask([5, 1, 2, 7, 9, 3, 0, 0, 0], HEADER, CLOSE) == [X, X, X, 7, 9, X, X, X, X]


def test_label_mask_finds_a_header_after_a_partial_match():
    assert label_mask([1, 1, 2, 7, 9], HEADER, CLOSE) == [X, X, X, 7, 9]


def test_label_mask_keeps_an_empty_reply_end_token():
    assert label_mask([5, 1, 2, 9, 3], HEADER, CLOSE) == [X, X, X, 9, X]


def test_label_mask_keeps_a_reply_cut_before_its_end_token():
    assert label_mask([5, 1, 2, 7, 8], HEADER, CLOSE) == [X, X, X, 7, 8]


# ---------------------------------------------------------------- TrainCollator


def test_hand_written_ids_are_the_tokenizers(processor):
    tokenizer = processor.tokenizer
    ids = lambda text: tokenizer(text, add_special_tokens=False)["input_ids"]
    assert ids("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n") == SYSTEM
    assert (ids("<|im_start|>user\n"), ids("<|im_start|>assistant\n")) == (USER, ASSISTANT)
    assert ids("<|vision_start|><|image_pad|><|vision_end|><|im_end|>\n<|endoftext|>") == (
        [VISION_START, IMAGE_PAD, VISION_END, END, NEWLINE, PAD])
    assert [ids("Describe the image."), ids("What is it?")] == [DESCRIBE, WHAT_IS_IT]
    assert [ids("A red circle."), ids("A large blue square at the top left.")] == [RED_CIRCLE, BLUE_SQUARE]


def test_collator_labels_only_the_reply_and_its_end_token_with_right_padding(processor):
    batch = TrainCollator(processor, logits="all")(two_examples())

    small = SYSTEM + USER + vision(4) + DESCRIBE + [END, NEWLINE] + ASSISTANT + RED_CIRCLE + [END, NEWLINE]
    large = SYSTEM + USER + vision(16) + WHAT_IS_IT + [END, NEWLINE] + ASSISTANT + BLUE_SQUARE + [END, NEWLINE]
    assert (len(small), len(large)) == (35, 52)
    assert batch["input_ids"].tolist() == [small + [PAD] * 17, large]
    assert batch["attention_mask"].tolist() == [[1] * 35 + [0] * 17, [1] * 52]
    assert batch["labels"].tolist() == [
        [X] * 29 + RED_CIRCLE + [END] + [X] * (1 + 17),  # the trailing "\n", then the padding
        [X] * 41 + BLUE_SQUARE + [END] + [X],
    ]
    assert batch["image_grid_thw"].tolist() == [[1, 4, 4], [1, 8, 8]]
    assert batch["pixel_values"].shape[0] == 16 + 64  # patches of 14 pixels, before the 2x2 merge
    assert "logits_to_keep" not in batch


def test_trimmed_labels_are_the_last_logits_to_keep_columns(processor):
    examples = two_examples()
    full = TrainCollator(processor, logits="all")(examples)
    trimmed = TrainCollator(processor, logits="suffix")(examples)

    length = full["labels"].shape[1]
    first_supervised = int((full["labels"] != X).any(dim=0).nonzero()[0])
    assert first_supervised == 29
    assert trimmed["logits_to_keep"] == length - first_supervised + 1 == 24
    assert torch.equal(trimmed["labels"], full["labels"][:, -trimmed["logits_to_keep"]:])
    for name in ("input_ids", "attention_mask", "pixel_values", "image_grid_thw"):
        assert torch.equal(trimmed[name], full[name]), name


def test_trimmed_batch_gives_the_same_loss_as_the_full_batch(tiny):
    model, processor = tiny
    model.eval()
    examples = two_examples()
    with torch.no_grad():
        full_loss = model(**TrainCollator(processor, logits="all")(examples)).loss
        trimmed_loss = model(**TrainCollator(processor, logits="suffix")(examples)).loss
    assert full_loss.dtype == torch.float32 and torch.isfinite(full_loss)
    assert torch.allclose(trimmed_loss, full_loss, rtol=1e-6, atol=1e-6)


# ---------------------------------------------------------------- count_tokens and drop_overlong


def processed_length(processor, messages):
    text = processor.apply_chat_template(messages, tokenize=False)
    images = open_images(messages, processor)
    return len(processor(text=[text], images=[images] if images else None)["input_ids"][0])


def test_count_tokens_reads_image_sizes_from_file_headers(processor, tmp_path):
    path = tmp_path / "wide.png"
    Image.new("RGB", (300, 97), (0, 0, 0)).save(path)
    messages = example("wide", str(path), "Describe the image.", "A red circle.")["messages"]
    # 300x97 resizes to 308x84: 22 x 6 patches of 14 pixels, merged 2x2 into 33 image tokens.
    expected = SYSTEM + USER + vision(33) + DESCRIBE + [END, NEWLINE] + ASSISTANT + RED_CIRCLE + [END, NEWLINE]
    assert count_tokens(processor, messages) == processed_length(processor, messages) == len(expected) == 64


def test_count_tokens_of_a_text_only_conversation_is_its_token_count(processor):
    messages = [{"role": "user", "content": [{"type": "text", "text": "What is it?"}]},
                {"role": "assistant", "content": [{"type": "text", "text": "A red circle."}]}]
    assert count_tokens(processor, messages) == processed_length(processor, messages) == (
        len(SYSTEM + USER + WHAT_IS_IT + [END, NEWLINE] + ASSISTANT + RED_CIRCLE + [END, NEWLINE]))


def test_drop_overlong_drops_whole_examples_and_reports_their_length(processor):
    small, large = two_examples()
    # 640x480 fits the tiny processor's limits as it is: 476x644 pixels, a 17 x 23 grid of merged tokens.
    photo = example("photo", Image.new("RGB", (640, 480), (90, 90, 90)), "Describe the image.", "A red circle.")
    photo_length = len(SYSTEM + USER + vision(17 * 23) + DESCRIBE + [END, NEWLINE] + ASSISTANT + RED_CIRCLE
                       + [END, NEWLINE])
    assert photo_length == 422
    assert count_tokens(processor, photo["messages"]) == processed_length(processor, photo["messages"]) == 422

    kept, dropped = drop_overlong([small, photo, large], processor, max_length=52)  # 52 is large's exact length

    assert dropped == [("photo", 422)]
    assert kept == [small | {"length": 35}, large | {"length": 52}]  # each with its length, for length grouping
    batch = TrainCollator(processor, logits="all")(kept)
    assert batch["attention_mask"].sum(dim=1).tolist() == [35, 52]  # nothing cut


def test_drop_overlong_keeps_everything_that_fits(processor):
    examples = two_examples()
    kept, dropped = drop_overlong(examples, processor, max_length=1000)
    assert (kept, dropped) == ([example | {"length": n} for example, n in zip(examples, (35, 52))], [])
    kept, dropped = drop_overlong(examples, processor, max_length=34)
    assert (kept, dropped) == ([], [("small", 35), ("large", 52)])


# ---------------------------------------------------------------- train-time prompt == test-time prompt


class RecordingProcessor:
    """The processor, remembering the texts and options that it is called with."""

    def __init__(self, processor):
        self.processor = processor
        self.texts = []
        self.options = []

    def __getattr__(self, name):
        return getattr(self.processor, name)

    def __call__(self, text, **options):
        self.texts.extend(text)
        self.options.append(options)
        return self.processor(text=text, **options)


def test_generation_prompt_is_the_training_text_up_to_the_reply(tiny):
    model, processor = tiny
    messages = two_examples()[0]["messages"]
    recorder = RecordingProcessor(processor)
    generate(model, recorder, [prompt_messages(messages)], max_new_tokens=1)

    [prompt] = recorder.texts
    training_text = processor.apply_chat_template(messages, tokenize=False)
    assert training_text == prompt + "A red circle.<|im_end|>\n"
    # In tokens: the first supervised label sits right after the prompt.
    labels = TrainCollator(processor, logits="all")([{"id": "small", "messages": messages}])["labels"][0]
    prompt_length = len(processor(text=[prompt], images=[open_images(messages, processor)])["input_ids"][0])
    assert int((labels != X).nonzero()[0]) == prompt_length == 29


def test_generation_prompt_of_a_multi_turn_conversation_stops_before_the_last_reply(processor):
    image = Image.new("RGB", (56, 56), (200, 30, 30))
    messages = []
    for turn, (question, answer) in enumerate([("What colour?", "red"), ("Which shape?", "circle"),
                                               ("How big?", "small"), ("Where?", "top left")]):
        content = [{"type": "text", "text": question}]
        if turn == 0:
            content.insert(0, {"type": "image", "image": image})
        messages += [{"role": "user", "content": content},
                     {"role": "assistant", "content": [{"type": "text", "text": answer}]}]
    last_reply = messages[-1]["content"][0]["text"]

    prompt = processor.apply_chat_template(prompt_messages(messages), tokenize=False, add_generation_prompt=True)
    training_text = processor.apply_chat_template(messages, tokenize=False)
    assert training_text == prompt + last_reply + "<|im_end|>\n"
    assert prompt_messages(messages) == messages[:-1]


# ---------------------------------------------------------------- generation


def test_generate_answers_a_left_padded_batch_as_each_prompt_alone(tiny):
    model, processor = tiny
    conversations = [prompt_messages(e["messages"]) for e in two_examples()]
    recorder = RecordingProcessor(processor)

    together = generate(model, recorder, conversations, max_new_tokens=5)
    alone = [generate(model, processor, [conversation], max_new_tokens=5)[0] for conversation in conversations]

    assert recorder.options[0]["padding_side"] == "left"
    assert len(together) == 2 and all(together)  # the random model's answers are not empty, so this compares text
    assert together == alone


def test_generate_shows_a_progress_bar_of_answers_done_out_of_all_on_stderr(tiny, capsys):
    model, processor = tiny
    conversations = [prompt_messages(e["messages"]) for e in two_examples()]
    generate(model, processor, conversations, batch_size=1, max_new_tokens=1, desc="fine-tuned")
    bar = capsys.readouterr().err
    assert "fine-tuned:   0%" in bar and "0/2" in bar
    assert "fine-tuned: 100%" in bar and "2/2" in bar
