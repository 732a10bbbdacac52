"""Tests of vlmtune/tiny.py and modeling.py: the offline Qwen2 tokenizer, the tiny Qwen2-VL, its processor, the dtype rule.

Unit tests need nothing; the comparisons with the real Qwen2-VL files read ../shared/fixtures and skip without it.
LoRA and the other ways to fine-tune are tested in test_parts.py.
"""

import copy
import functools
import json

import pytest
import torch
from PIL import Image
from peft import LoraConfig, get_peft_model
from safetensors.torch import load_file
from transformers import AutoModelForImageTextToText, AutoProcessor, AutoTokenizer, TrainingArguments

from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize
from vlmtune.collator import count_tokens, open_images
from vlmtune.modeling import inference_placement, load_processor, merge_adapter, training_dtype
from vlmtune.tiny import (
    QWEN2_SPECIAL_TOKENS,
    QWEN2_VL_CHAT_TEMPLATE,
    build_qwen2_tokenizer,
    build_tiny_qwen2_vl,
    tiny_qwen2_vl_config,
)

IMAGE_PAD_ID = 151655
# "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n", which the template adds before the first user turn.
SYSTEM_TURN = "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"


@pytest.fixture(scope="module")
def tokenizer():
    return build_qwen2_tokenizer()


@pytest.fixture(scope="module")
def tiny():
    """(model, processor), built once: tests that train copy the model first."""
    return build_tiny_qwen2_vl()


@pytest.fixture(scope="module")
def tiny_dir(tiny, tmp_path_factory):
    model, processor = tiny
    path = tmp_path_factory.mktemp("tiny-qwen2-vl")
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def tiny_processor_with_limits(tiny_dir):
    """load_processor on the saved tiny model, loaded once per pair of pixel limits."""
    return functools.cache(lambda min_pixels, max_pixels: load_processor(str(tiny_dir), min_pixels, max_pixels))


@functools.cache
def real_tokenizer(path):
    return AutoTokenizer.from_pretrained(path)


@functools.cache
def real_processor(path):
    return AutoProcessor.from_pretrained(path)


def read_json(path):
    return json.loads(path.read_text())


def image_turn(size, text="Describe this image."):
    width, height = size
    return {"role": "user", "content": [{"type": "image", "image": Image.new("RGB", (width, height), (200, 30, 30))},
                                        {"type": "text", "text": text}]}


def reply(text):
    return {"role": "assistant", "content": [{"type": "text", "text": text}]}


# ---------------------------------------------------------------- tokenizer


def test_special_tokens_take_ids_151643_to_151656_in_order(tokenizer):
    assert tokenizer.convert_tokens_to_ids(list(QWEN2_SPECIAL_TOKENS)) == list(range(151643, 151657))
    assert len(tokenizer) == 151657
    for token_id, token in enumerate(QWEN2_SPECIAL_TOKENS, start=151643):
        assert tokenizer(token, add_special_tokens=False)["input_ids"] == [token_id]
        assert tokenizer.decode([token_id]) == token
    assert (tokenizer.eos_token, tokenizer.pad_token, tokenizer.bos_token) == ("<|im_end|>", "<|endoftext|>", None)


def test_tokenizer_normalises_combining_marks_to_nfc(tokenizer):
    decomposed = tokenizer("cafe\u0301 \u1100\u1161", add_special_tokens=False)["input_ids"]
    composed = tokenizer("caf\u00e9 \uac00", add_special_tokens=False)["input_ids"]
    assert decomposed == composed


def test_tokenizer_gives_the_real_qwen2_ids_on_every_test_vector(tokenizer, fixtures_dir):
    vectors = read_json(fixtures_dir / "qwen2-tokenizer-vectors" / "transformersjs_qwen2_test_vectors.json")
    cases = vectors["Xenova/Qwen1.5-0.5B-Chat"]
    assert len(cases) == 25
    wrong_ids = {name: case["text"] for name, case in cases.items()
                 if tokenizer(case["text"], add_special_tokens=False)["input_ids"] != case["ids"]}
    wrong_decoding = {name: case["text"] for name, case in cases.items()
                      if tokenizer.decode(case["ids"]) != case["decoded"]}
    assert wrong_ids == {}
    assert wrong_decoding == {}


@pytest.mark.parametrize("text", [
    "A large red circle at the top left.",
    "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>What is it?<|im_end|>\n<|im_start|>assistant\n",
    "<|endoftext|><|box_start|>(12,34),(56,78)<|box_end|><|video_pad|>",
    "你好，世界！这是一个测试。",
    "cafe\u0301 na\u0308ive \u1100\u1161 \u0041\u030a",  # combining marks and Hangul jamo, composed by NFC
    "  two  spaces,\ttab\n\nnewlines 1234567 and émoji 👩‍👩‍👧",
])
def test_tokenizer_gives_the_same_ids_as_the_real_tokenizer_files(tokenizer, fixtures_dir, text):
    real = real_tokenizer(fixtures_dir / "qwen2-vl-2b-instruct")
    assert tokenizer(text)["input_ids"] == real(text)["input_ids"]


# ---------------------------------------------------------------- chat template


@pytest.mark.parametrize("model_dir", ["qwen2-vl-2b-instruct", "qwen2.5-vl-7b-instruct"])
def test_chat_template_is_the_real_instruct_template(fixtures_dir, model_dir):
    assert QWEN2_VL_CHAT_TEMPLATE == read_json(fixtures_dir / model_dir / "chat_template.json")["chat_template"]


def test_chat_template_renders_system_prompt_image_and_reply(tiny):
    _, processor = tiny
    messages = [image_turn((56, 56), "What is in the picture?"), reply("A large red circle at the top left.")]
    assert processor.apply_chat_template(messages, tokenize=False) == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>What is in the picture?<|im_end|>\n"
        "<|im_start|>assistant\nA large red circle at the top left.<|im_end|>\n"
    )
    assert processor.apply_chat_template(messages[:1], tokenize=False, add_generation_prompt=True) == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>What is in the picture?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


@pytest.mark.parametrize("add_generation_prompt", [False, True])
def test_tiny_processor_renders_conversations_like_the_real_processor(tiny, fixtures_dir, add_generation_prompt):
    _, processor = tiny
    real = real_processor(fixtures_dir / "qwen2-vl-2b-instruct")
    conversations = [
        [image_turn((56, 56), "What is in the picture?"), reply("A large red circle at the top left.")],
        [{"role": "system", "content": [{"type": "text", "text": "Answer in one word."}]},
         image_turn((56, 56), "Colour?"), reply("red"),
         {"role": "user", "content": [{"type": "text", "text": "Shape?"}]}, reply("circle")],
    ]
    for messages in conversations:
        rendered = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)
        expected = real.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)
        assert rendered == expected
    assert SYSTEM_TURN not in processor.apply_chat_template(conversations[1], tokenize=False)


# ---------------------------------------------------------------- config and image processor


def test_tiny_config_shares_the_real_token_ids_vocabulary_and_vision_patching(fixtures_dir):
    real = read_json(fixtures_dir / "qwen2-vl-2b-instruct" / "config.json")
    tiny = tiny_qwen2_vl_config()
    for name in ("image_token_id", "video_token_id", "vision_start_token_id", "vision_end_token_id"):
        assert getattr(tiny, name) == real[name], name
    text = tiny.text_config
    assert (text.bos_token_id, text.eos_token_id) == (real["bos_token_id"], real["eos_token_id"])
    assert tiny.text_config.vocab_size == real["vocab_size"] == 151936
    assert tiny.tie_word_embeddings is tiny.text_config.tie_word_embeddings is real["tie_word_embeddings"] is True
    for name in ("patch_size", "spatial_merge_size", "temporal_patch_size"):
        assert getattr(tiny.vision_config, name) == real["vision_config"][name], name
    assert tiny.model_type == real["model_type"]


def test_mrope_sections_cover_half_the_head_dim_as_in_the_real_config(fixtures_dir):
    real = read_json(fixtures_dir / "qwen2-vl-2b-instruct" / "config.json")
    assert real["hidden_size"] // real["num_attention_heads"] // 2 == sum(real["rope_scaling"]["mrope_section"]) == 64
    text = tiny_qwen2_vl_config().text_config
    assert text.hidden_size // text.num_attention_heads // 2 == sum(text.rope_parameters["mrope_section"]) == 16


def test_tiny_image_processor_settings_equal_the_real_preprocessor_config(tiny, fixtures_dir):
    real = read_json(fixtures_dir / "qwen2-vl-2b-instruct" / "preprocessor_config.json")
    image_processor = tiny[1].image_processor
    settings = {
        "min_pixels": image_processor.size["shortest_edge"],
        "max_pixels": image_processor.size["longest_edge"],
        "image_mean": list(image_processor.image_mean),
        "image_std": list(image_processor.image_std),
        "patch_size": image_processor.patch_size,
        "merge_size": image_processor.merge_size,
        "temporal_patch_size": image_processor.temporal_patch_size,
    }
    assert settings == {name: real[name] for name in settings}


# ---------------------------------------------------------------- image tokens


@pytest.mark.parametrize("min_pixels, max_pixels", [(56 * 56, 28 * 28 * 64), (28 * 28 * 16, 28 * 28 * 256)])
@pytest.mark.parametrize("width, height", [(640, 480), (112, 112), (300, 97), (1000, 30), (20, 20)])
def test_image_pad_count_follows_smart_resize_and_count_tokens_predicts_length(
        tiny_processor_with_limits, width, height, min_pixels, max_pixels):
    processor = tiny_processor_with_limits(min_pixels, max_pixels)
    size = processor.image_processor.size
    assert (size["shortest_edge"], size["longest_edge"]) == (min_pixels, max_pixels)
    messages = [image_turn((width, height)), reply("A red circle.")]
    text = processor.apply_chat_template(messages, tokenize=False)
    input_ids = processor(text=[text], images=[open_images(messages, processor)],
                          return_tensors="pt")["input_ids"][0]

    resized_height, resized_width = smart_resize(height, width, min_pixels=min_pixels, max_pixels=max_pixels)
    assert min_pixels <= resized_height * resized_width <= max_pixels
    assert int((input_ids == IMAGE_PAD_ID).sum()) == (resized_height // 28) * (resized_width // 28)
    assert count_tokens(processor, messages) == len(input_ids)


def test_smart_resize_on_worked_examples():
    # 640x480 into 64 tokens: sqrt(307200 / 50176) = 2.47, so 480 -> 168 and 640 -> 252, a 6 x 9 grid of tokens.
    assert smart_resize(480, 640, min_pixels=56 * 56, max_pixels=28 * 28 * 64) == (168, 252)
    # 20x20 is below 56x56: scaled up by 2.8 and rounded up to 56x56, 4 tokens.
    assert smart_resize(20, 20, min_pixels=56 * 56, max_pixels=28 * 28 * 64) == (56, 56)
    # 1000x30: 30 rounds to 28 and 1000 to 1008; 28224 pixels fit, one row of 36 tokens.
    assert smart_resize(30, 1000, min_pixels=56 * 56, max_pixels=28 * 28 * 64) == (28, 1008)


def test_real_processor_gives_391_image_tokens_for_640x480(fixtures_dir):
    real = real_processor(fixtures_dir / "qwen2-vl-2b-instruct")
    prompt = [image_turn((640, 480))]
    text = real.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
    inputs = real(text=[text], images=[open_images(prompt, real)], return_tensors="pt")
    assert inputs["image_grid_thw"].tolist() == [[1, 34, 46]]
    assert int((inputs["input_ids"] == IMAGE_PAD_ID).sum()) == 391 == 34 * 46 // 4
    assert inputs["input_ids"].shape == (1, 416)
    assert smart_resize(480, 640, min_pixels=3136, max_pixels=12845056) == (476, 644)

    messages = prompt + [reply("A red circle.")]
    text = real.apply_chat_template(messages, tokenize=False)
    images = [open_images(messages, real)]
    assert count_tokens(real, messages) == len(real(text=[text], images=images)["input_ids"][0])


# ---------------------------------------------------------------- dtype


def test_training_dtype_refuses_fp16_for_qwen_naming_fp16_and_bf16(tiny_dir, tmp_path):
    args = TrainingArguments(output_dir=str(tmp_path), fp16=True, report_to=[])
    with pytest.raises(SystemExit, match=r"(?s)--fp16.*qwen2_vl.*--bf16"):
        training_dtype(args, str(tiny_dir))


def test_training_dtype_is_fp32_on_cpu_without_flags(tiny_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    args = TrainingArguments(output_dir=str(tmp_path), report_to=[])
    assert training_dtype(args, str(tiny_dir)) == torch.float32


def test_training_dtype_is_bf16_when_asked(tiny_dir, tmp_path):
    args = TrainingArguments(output_dir=str(tmp_path), bf16=True, use_cpu=True, report_to=[])
    assert training_dtype(args, str(tiny_dir)) == torch.bfloat16


# The GPU either has bf16 natively (Ampere or newer) or not; torch's emulation counts as not.
@pytest.mark.parametrize("cuda, native_bf16, expected", [
    (False, False, ("cpu", torch.float32)),
    (True, True, ("cuda", torch.bfloat16)),
    (True, False, ("cuda", torch.float32)),  # never fp16: Qwen overflows in it
])
def test_inference_placement_is_the_gpu_in_bf16_where_it_has_bf16_else_fp32(monkeypatch, cuda, native_bf16, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported",
                        lambda including_emulation=True: cuda and (native_bf16 or including_emulation))
    assert inference_placement() == expected


# ---------------------------------------------------------------- merge


@pytest.mark.parametrize("saved, merging", [
    (torch.bfloat16, torch.float32),  # a real Qwen checkpoint, merged on the CPU
    (torch.float32, torch.bfloat16),  # the tiny fp32 model on a bf16 GPU: merged in fp32, not rounded to bf16
])
def test_merged_folder_is_base_plus_lora_saved_in_the_bases_own_dtype(tiny, tmp_path, saved, merging):
    model, processor = tiny
    base_dir, run_dir, merged_dir = tmp_path / "base", tmp_path / "run", tmp_path / "merged"
    copy.deepcopy(model).to(saved).save_pretrained(base_dir)
    processor.save_pretrained(base_dir)
    target = "model.language_model.layers.0.self_attn.q_proj"
    # init_lora_weights=False: B is not zero, so the merge changes the weight.
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=[target], init_lora_weights=False)
    get_peft_model(copy.deepcopy(model), lora).save_pretrained(run_dir)
    processor.save_pretrained(run_dir)

    merge_adapter(str(run_dir), str(base_dir), str(merged_dir), "cpu", merging)

    name = str(saved).removeprefix("torch.")
    assert read_json(merged_dir / "config.json")["dtype"] == read_json(base_dir / "config.json")["dtype"] == name
    merged = AutoModelForImageTextToText.from_pretrained(merged_dir)
    assert merged.dtype == saved
    # LoRA's merge by its formula, W + alpha / r * B A, in fp32 from the saved base and adapter, rounded once.
    weight = AutoModelForImageTextToText.from_pretrained(base_dir).get_parameter(f"{target}.weight").float()
    adapter = load_file(run_dir / "adapter_model.safetensors")
    a, b = (adapter[f"base_model.model.{target}.lora_{x}.weight"].float() for x in "AB")
    expected = (weight + 8 / 4 * b @ a).to(saved)
    assert torch.equal(merged.get_parameter(f"{target}.weight"), expected)
    assert not torch.equal(expected, weight.to(saved))


def test_a_merge_that_bf16_rounding_would_undo_is_warned_about_and_float32_keeps_it(tiny, tmp_path):
    # The full-size bench's case (bench/RESULTS.md): one step at 1e-4 moves weights by ~1e-5, under bf16's step.
    model, processor = tiny
    base_dir, run_dir = tmp_path / "base", tmp_path / "run"
    copy.deepcopy(model).to(torch.bfloat16).save_pretrained(base_dir)
    processor.save_pretrained(base_dir)
    target = "model.language_model.layers.0.self_attn.q_proj"
    adapted = get_peft_model(copy.deepcopy(model), LoraConfig(r=4, lora_alpha=8, target_modules=[target],
                                                             init_lora_weights=False))
    with torch.no_grad():
        for name, parameter in adapted.named_parameters():
            if "lora_B" in name:
                parameter.fill_(1e-6)  # deltas of ~1e-5 against weights of ~0.02
    adapted.save_pretrained(run_dir)
    processor.save_pretrained(run_dir)

    warnings = merge_adapter(str(run_dir), str(base_dir), str(tmp_path / "bf16"), "cpu", torch.float32)
    assert len(warnings) == 1 and "smaller than bfloat16's resolution" in warnings[0], warnings
    assert "--merged_dtype float32 keeps them" in warnings[0]
    base_weight = AutoModelForImageTextToText.from_pretrained(base_dir).get_parameter(f"{target}.weight")
    bf16_weight = AutoModelForImageTextToText.from_pretrained(tmp_path / "bf16").get_parameter(f"{target}.weight")
    assert (bf16_weight == base_weight).float().mean() > 0.9  # the update nearly vanished

    assert merge_adapter(str(run_dir), str(base_dir), str(tmp_path / "fp32"), "cpu", torch.float32,
                         saved_dtype=torch.float32) == []
    fp32 = AutoModelForImageTextToText.from_pretrained(tmp_path / "fp32")
    assert fp32.dtype == torch.float32
    adapter = load_file(run_dir / "adapter_model.safetensors")
    a, b = (adapter[f"base_model.model.{target}.lora_{x}.weight"].float() for x in "AB")
    assert torch.equal(fp32.get_parameter(f"{target}.weight"), base_weight.float() + 8 / 4 * b @ a)
