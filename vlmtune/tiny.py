"""Offline tiny models: the real architecture classes of each family, scaled down, with real tokenizers.

The hubs cannot be reached here, so each family's base model is built from its transformers classes with a config a
few hundred times smaller than the real one, the real tokenizer (Qwen2's byte-level BPE, rebuilt from the ranks
that the PyPI package dashscope ships), the family's chat template and image settings. `load_model.py` then gives it
its short pretraining (vlmtune/pretraining.py).

    TINY_MODELS["tiny-qwen2.5-vl"]()  ->  (Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor)
"""

from pathlib import Path

import torch
from transformers import GenerationConfig

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
        text_config=_qwen_text_config(tie_word_embeddings=True),
        vision_config=dict(depth=4, embed_dim=128, hidden_size=128, mlp_ratio=2, num_heads=4, in_chans=3,
                           patch_size=14, spatial_merge_size=2, temporal_patch_size=2),
        image_token_id=151655, video_token_id=151656, vision_start_token_id=151652, vision_end_token_id=151653,
        tie_word_embeddings=True,
    )


def build_tiny_qwen2_vl(seed: int = 0):
    """(model, processor): a randomly initialised tiny Qwen2-VL with the real tokenizer, template and image settings."""
    from transformers import (Qwen2VLForConditionalGeneration, Qwen2VLImageProcessor, Qwen2VLProcessor,
                              Qwen2VLVideoProcessor)

    torch.manual_seed(seed)
    model = Qwen2VLForConditionalGeneration(tiny_qwen2_vl_config())
    model.generation_config = _qwen_generation_config()
    # The real preprocessor_config.json's pixel limits; mean, std and patch sizes are the class defaults already.
    processor = Qwen2VLProcessor(image_processor=Qwen2VLImageProcessor(min_pixels=3136, max_pixels=12845056),
                                 tokenizer=build_qwen2_tokenizer(), video_processor=Qwen2VLVideoProcessor(),
                                 chat_template=QWEN2_VL_CHAT_TEMPLATE)
    return model, processor


def _qwen_text_config(**overrides) -> dict:
    """The language model part shared by the Qwen tiny builds, with the real token ids and vocabulary."""
    return dict(
        vocab_size=151936, hidden_size=128, intermediate_size=256, num_hidden_layers=4, num_attention_heads=4,
        num_key_value_heads=2, hidden_act="silu", max_position_embeddings=4096, rms_norm_eps=1e-6,
        rope_scaling={"type": "mrope", "mrope_section": [4, 6, 6]},  # sums to head_dim / 2, as [16, 24, 24] does
        # 10, not 1e6: rotary angles must differ between neighbouring image rows and columns within a context of a
        # hundred tokens; at 1e6 the width section turns by ~1e-4 rad per column and position is invisible.
        rope_theta=10.0, bos_token_id=151643, eos_token_id=151645,
    ) | overrides


def _qwen_generation_config() -> GenerationConfig:
    """Qwen2-VL-2B-Instruct's generation settings, made greedy (its own are top_k=1, i.e. greedy, by sampling)."""
    return GenerationConfig(bos_token_id=151643, eos_token_id=[151645, 151643], pad_token_id=151643, do_sample=False)


def build_tiny_qwen2_5_vl(seed: int = 0):
    """Qwen2.5-VL-7B-Instruct's layout scaled down: window attention with full-attention blocks, SwiGLU vision MLP
    (so the vision tower has gate/up/down projections too), untied embeddings, the 14-pixel patches."""
    from transformers import (Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor,
                              Qwen2VLImageProcessor, Qwen2VLVideoProcessor)

    config = Qwen2_5_VLConfig(
        text_config=_qwen_text_config(tie_word_embeddings=False),
        vision_config=dict(depth=4, hidden_size=128, intermediate_size=256, num_heads=4, out_hidden_size=128,
                           in_chans=3, patch_size=14, spatial_merge_size=2, temporal_patch_size=2, window_size=112,
                           fullatt_block_indexes=[1, 3], tokens_per_second=2, hidden_act="silu"),
        image_token_id=151655, video_token_id=151656, vision_start_token_id=151652, vision_end_token_id=151653,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config)
    model.generation_config = _qwen_generation_config()
    processor = Qwen2_5_VLProcessor(image_processor=Qwen2VLImageProcessor(min_pixels=3136, max_pixels=12845056),
                                    tokenizer=build_qwen2_tokenizer(), video_processor=Qwen2VLVideoProcessor(),
                                    chat_template=QWEN2_VL_CHAT_TEMPLATE)
    return model, processor


# Qwen3-VL's chat template, reduced to what this toolkit sends (no tools, no thinking): no default system turn.
QWEN3_VL_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def build_tiny_qwen3_vl(seed: int = 0):
    """Qwen3-VL's layout scaled down: 16-pixel patches (32-pixel merged tokens), learned position embeddings,
    DeepStack features from two vision blocks into the first language layers, interleaved MRoPE, q/k norms."""
    from transformers import (Qwen2VLImageProcessor, Qwen3VLConfig, Qwen3VLForConditionalGeneration,
                              Qwen3VLProcessor, Qwen3VLVideoProcessor)

    text = _qwen_text_config(head_dim=32, tie_word_embeddings=True)
    text["rope_scaling"] = {"rope_type": "default", "mrope_section": [4, 6, 6], "mrope_interleaved": True}
    config = Qwen3VLConfig(
        text_config=text,
        vision_config=dict(depth=4, hidden_size=128, intermediate_size=256, num_heads=4, out_hidden_size=128,
                           patch_size=16, spatial_merge_size=2, temporal_patch_size=2, num_position_embeddings=64,
                           deepstack_visual_indexes=[1, 2]),
        image_token_id=151655, video_token_id=151656, vision_start_token_id=151652, vision_end_token_id=151653,
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    model = Qwen3VLForConditionalGeneration(config)
    model.generation_config = _qwen_generation_config()
    image_processor = Qwen2VLImageProcessor(patch_size=16, merge_size=2, temporal_patch_size=2, min_pixels=4096,
                                            max_pixels=16777216, image_mean=[0.5] * 3, image_std=[0.5] * 3)
    processor = Qwen3VLProcessor(image_processor=image_processor, tokenizer=build_qwen2_tokenizer(),
                                 video_processor=Qwen3VLVideoProcessor(), chat_template=QWEN3_VL_CHAT_TEMPLATE)
    return model, processor


# llava-hf/llava-1.5-7b-hf's chat template ("USER: <image>\nQuestion ASSISTANT: answer USER: ..."); tests compare it
# with the real file. It writes nothing that closes a reply: vlmtune.collator.training_text adds the end token.
LLAVA_CHAT_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] != 'system' %}{{ message['role'].upper() + ': '}}"
    '{% endif %}{# Render all images first #}'
    "{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>\n' }}"
    "{% endfor %}{# Render all text next #}{% if message['role'] != 'assistant' %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{{ content['text'] + ' '}}"
    '{% endfor %}{% else %}'
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{% generation %}{{ content['text'] + ' '}}{% endgeneration %}"
    "{% endfor %}{% endif %}{% endfor %}{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)


def build_tiny_llava(seed: int = 0):
    """LLaVA-1.5 in the llava-hf layout scaled down: a CLIP vision tower (its second-to-last layer's patch
    features), a two-layer GELU projector, a Llama language model.

    LLaVA-1.5's own tokenizer (Llama's SentencePiece) cannot be had offline; the tiny one uses the Qwen2 tokenizer
    with `<image>` added, so ids differ from the real model while everything else (template, image tokens) holds.
    """
    from transformers import (CLIPImageProcessor, CLIPVisionConfig, LlamaConfig, LlavaConfig,
                              LlavaForConditionalGeneration, LlavaProcessor)

    tokenizer = build_qwen2_tokenizer()
    tokenizer.add_special_tokens({"additional_special_tokens": ["<image>"]}, replace_extra_special_tokens=False)
    image_token_id = tokenizer.convert_tokens_to_ids("<image>")
    image_size, patch_size = 112, 14
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(hidden_size=128, intermediate_size=256, num_hidden_layers=3,
                                       num_attention_heads=4, image_size=image_size, patch_size=patch_size,
                                       projection_dim=128),
        text_config=LlamaConfig(vocab_size=151936, hidden_size=128, intermediate_size=256, num_hidden_layers=4,
                                num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=4096,
                                rope_theta=10.0, bos_token_id=151643, eos_token_id=151645, pad_token_id=151643,
                                tie_word_embeddings=False),
        image_token_id=image_token_id, projector_hidden_act="gelu", vision_feature_layer=-2,
        vision_feature_select_strategy="default", image_seq_length=(image_size // patch_size) ** 2,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(config)
    model.generation_config = GenerationConfig(bos_token_id=151643, eos_token_id=151645, pad_token_id=151643,
                                               do_sample=False)
    image_processor = CLIPImageProcessor(size={"shortest_edge": image_size},
                                         crop_size={"height": image_size, "width": image_size})
    processor = LlavaProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=patch_size,
                               vision_feature_select_strategy="default", chat_template=LLAVA_CHAT_TEMPLATE,
                               num_additional_image_tokens=1)
    return model, processor


# base_model name -> builder of (model, processor)
TINY_MODELS = {
    "tiny-qwen2-vl": build_tiny_qwen2_vl,
    "tiny-qwen2.5-vl": build_tiny_qwen2_5_vl,
    "tiny-qwen3-vl": build_tiny_qwen3_vl,
    "tiny-llava-1.5": build_tiny_llava,
}
