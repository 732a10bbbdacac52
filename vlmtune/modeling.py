"""Models: download a base model, build the offline tiny one, load for training, add LoRA.

Everything loads through the transformers Auto classes and the processor's own chat template; nothing looks at a
model's name to decide what to do.
"""

import os
import shutil
from pathlib import Path

import torch
from transformers import AutoModelForImageTextToText, AutoProcessor

# The Qwen2 tokenizer's facts, checked in tests against the real tokenizer files: its pre-tokenizer splits digits one
# by one (not tiktoken's default of up to three), and 14 special tokens follow the 151,643 BPE ranks in this order.
QWEN2_SPLIT_PATTERN = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
                       r"""|\s*[\r\n]+|\s+(?!\S)|\s+""")
QWEN2_SPECIAL_TOKENS = (
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>", "<|box_start|>",
    "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>",
    "<|image_pad|>", "<|video_pad|>",
)
# Qwen2-VL-Instruct's chat template (Qwen2.5-VL-Instruct ships the same one); tests render it against the real file.
QWEN2_VL_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}Picture {{ image_count.value }}: "
    "{% endif %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}{% if add_vision_id %}Video {{ video_count.value }}: "
    "{% endif %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
TINY_MODELS = ("tiny-qwen2-vl",)


def build_qwen2_tokenizer():
    """The real Qwen2 tokenizer, rebuilt offline from the BPE ranks that the PyPI package dashscope ships.

    The hubs cannot be reached offline, and dashscope's `qwen.tiktoken` holds the same 151,643 ranks as Qwen2's
    vocab.json; with Qwen2's split pattern, NFC normalisation and its special tokens the ids are identical.
    """
    import dashscope
    from tokenizers import normalizers
    from transformers import Qwen2Tokenizer
    from transformers.convert_slow_tokenizer import TikTokenConverter

    ranks = Path(dashscope.__file__).parent / "resources" / "qwen.tiktoken"
    backend = TikTokenConverter(str(ranks), pattern=QWEN2_SPLIT_PATTERN,
                                extra_special_tokens=list(QWEN2_SPECIAL_TOKENS)).converted()
    backend.normalizer = normalizers.NFC()
    return Qwen2Tokenizer(tokenizer_object=backend, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                          bos_token=None, unk_token=None, errors="replace", model_max_length=32768,
                          clean_up_tokenization_spaces=False, additional_special_tokens=list(QWEN2_SPECIAL_TOKENS[1:]))


def tiny_qwen2_vl_config():
    """Qwen2-VL-2B-Instruct's config scaled down: same architecture, token ids, vocabulary and tied embeddings."""
    from transformers import Qwen2VLConfig

    return Qwen2VLConfig(
        text_config=dict(
            vocab_size=151936, hidden_size=128, intermediate_size=256, num_hidden_layers=4, num_attention_heads=4,
            num_key_value_heads=2, hidden_act="silu", max_position_embeddings=4096, rms_norm_eps=1e-6,
            rope_scaling={"type": "mrope", "mrope_section": [4, 6, 6]},  # sums to head_dim / 2, as [16, 24, 24] does
            # 10, not 1e6: rotary angles must differ between neighbouring image rows and columns within a context
            # of a hundred tokens; at 1e6 the width section turns by ~1e-4 rad per column and position is invisible.
            rope_theta=10.0, tie_word_embeddings=True, bos_token_id=151643, eos_token_id=151645,
        ),
        vision_config=dict(depth=4, embed_dim=128, hidden_size=128, mlp_ratio=2, num_heads=4, in_chans=3,
                           patch_size=14, spatial_merge_size=2, temporal_patch_size=2),
        image_token_id=151655, video_token_id=151656, vision_start_token_id=151652, vision_end_token_id=151653,
        tie_word_embeddings=True,
    )


def build_tiny_qwen2_vl(seed: int = 0):
    """(model, processor): a randomly initialised tiny Qwen2-VL with the real tokenizer, template and image settings."""
    from transformers import (Qwen2VLForConditionalGeneration, Qwen2VLImageProcessor, Qwen2VLProcessor,
                              Qwen2VLVideoProcessor, GenerationConfig)

    torch.manual_seed(seed)
    model = Qwen2VLForConditionalGeneration(tiny_qwen2_vl_config())
    # Qwen2-VL-2B-Instruct's generation settings, made greedy (its own are top_k=1, i.e. greedy, by sampling).
    model.generation_config = GenerationConfig(bos_token_id=151643, eos_token_id=[151645, 151643],
                                               pad_token_id=151643, do_sample=False)
    # The real preprocessor_config.json's pixel limits; mean, std and patch sizes are the class defaults already.
    processor = Qwen2VLProcessor(image_processor=Qwen2VLImageProcessor(min_pixels=3136, max_pixels=12845056), tokenizer=build_qwen2_tokenizer(),
                                 video_processor=Qwen2VLVideoProcessor(), chat_template=QWEN2_VL_CHAT_TEMPLATE)
    return model, processor


def download_model(model_id: str, hub: str, local_dir: str) -> str:
    """Download a model repository into local_dir from ModelScope or the Hugging Face Hub (HF_ENDPOINT honoured)."""
    if hub == "modelscope":
        from modelscope import snapshot_download
        return snapshot_download(model_id, local_dir=local_dir)
    if hub == "huggingface":
        from huggingface_hub import snapshot_download
        return snapshot_download(model_id, local_dir=local_dir)
    raise ValueError(f"--hub must be modelscope or huggingface, got {hub!r}")


def hub_endpoint(hub: str) -> str:
    """The address a download goes to: HF_ENDPOINT (a mirror) or MODELSCOPE_ENDPOINT where the user set one."""
    if hub == "huggingface":
        from huggingface_hub import constants
        return constants.ENDPOINT
    from modelscope.hub.api import HubApi
    return HubApi().endpoint


def load_model(path: str, dtype: torch.dtype = torch.float32, trust_remote_code: bool = False):
    return AutoModelForImageTextToText.from_pretrained(path, dtype=dtype, trust_remote_code=trust_remote_code)


def load_processor(path: str, min_pixels: int, max_pixels: int, trust_remote_code: bool = False):
    """The model's own processor, with the image resize limits of this run (Qwen: pixels per image)."""
    return AutoProcessor.from_pretrained(path, size={"shortest_edge": min_pixels, "longest_edge": max_pixels},
                                         trust_remote_code=trust_remote_code)


def lora_target_regex(module_names: list[str], scope: str = "language_model") -> str:
    """A peft target_modules regex that matches the named projections inside `scope` only.

    Matching by suffix alone is not enough: Qwen2.5-VL's vision blocks also have gate/up/down_proj, and LoRA would land
    on the vision tower unannounced.
    """
    return rf".*\.{scope}\..*\.({'|'.join(module_names)})"


def add_lora(model, r: int, alpha: int, dropout: float, module_names: list[str]):
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, bias="none",
                        target_modules=lora_target_regex(module_names), task_type="CAUSAL_LM")
    return get_peft_model(model, config)


def training_dtype(args, model_dir: str) -> torch.dtype:
    """The dtype the base weights load in: bf16 on a GPU that supports it, fp32 elsewhere; fp16 refused for Qwen.

    Qwen2-VL's and Qwen2.5-VL's activations overflow fp16's range (loss turns to nan, or the model answers with '!!!!'),
    so `--fp16` stops here with the reason instead of failing an hour into the run.
    """
    if args.fp16:
        from transformers import AutoConfig
        model_type = AutoConfig.from_pretrained(model_dir).model_type
        if model_type.startswith("qwen"):
            raise SystemExit(f"--fp16 is refused for {model_type}: Qwen VL models overflow in fp16 (nan loss). "
                             "Use --bf16 true on a GPU that supports it (Ampere or newer), or fp32 (neither flag).")
        return torch.float16
    if args.bf16 or (torch.cuda.is_available() and torch.cuda.is_bf16_supported()):
        return torch.bfloat16
    return torch.float32


def save_pretrained_atomically(model, processor, out_dir: str):
    """Write into a temporary sibling folder, then rename, so an interrupted save never looks like a finished one."""
    tmp = f"{out_dir}.tmp-{os.getpid()}"
    model.save_pretrained(tmp)
    processor.save_pretrained(tmp)
    if os.path.exists(out_dir):
        shutil.rmtree(out_dir)
    os.replace(tmp, out_dir)
