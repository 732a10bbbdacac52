"""Models: download a base model, load it for training, add LoRA, choose the dtype.

Everything loads through the transformers Auto classes and the processor's own chat template; nothing looks at a
model's name to decide what to do.
"""

import importlib.util
import os
import shutil
from pathlib import Path

import torch
from transformers import AutoModelForImageTextToText, AutoProcessor

from . import parts

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


def load_model(path: str, dtype: torch.dtype = torch.float32, trust_remote_code: bool = False,
               load_in_4bit: bool = False):
    """The model in `path` through the Auto class; with `load_in_4bit`, QLoRA's NF4 language model (CUDA only)."""
    quantization = None
    if load_in_4bit:
        quantization = qlora_quantization(path, dtype)
    return AutoModelForImageTextToText.from_pretrained(path, dtype=dtype, trust_remote_code=trust_remote_code,
                                                       quantization_config=quantization)


def qlora_quantization(path: str, dtype: torch.dtype):
    """QLoRA's settings (NF4, double quantisation), the vision encoder and projector left in `dtype`: quantising
    them costs accuracy for little memory. Stops with the reason where bitsandbytes cannot run."""
    if not torch.cuda.is_available():
        raise SystemExit("--load_in_4bit (QLoRA) needs a CUDA GPU: bitsandbytes' 4-bit layers do not run on this "
                         "machine. Drop the flag to train LoRA on the full-precision model.")
    if importlib.util.find_spec("bitsandbytes") is None:
        raise SystemExit("--load_in_4bit (QLoRA) needs bitsandbytes: `pip install bitsandbytes`.")
    from transformers import AutoConfig, BitsAndBytesConfig

    with torch.device("meta"):  # module names only, no weights
        skeleton = AutoModelForImageTextToText.from_config(AutoConfig.from_pretrained(path))
    keep = [name for part in ("vision", "projector") for name, _ in parts.part_modules(skeleton)[part]]
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=dtype, llm_int8_skip_modules=keep + ["lm_head"])


def load_processor(path: str, min_pixels: int, max_pixels: int, trust_remote_code: bool = False):
    """The model's own processor, with this run's image resize limits where its image processor takes them: Qwen's
    dynamic resolution (patches merged `merge_size` x `merge_size`) resizes each image into a pixel budget, LLaVA's
    CLIP processor to one fixed size."""
    processor = AutoProcessor.from_pretrained(path, trust_remote_code=trust_remote_code)
    if hasattr(processor.image_processor, "merge_size"):
        processor = AutoProcessor.from_pretrained(path, size={"shortest_edge": min_pixels, "longest_edge": max_pixels},
                                                  trust_remote_code=trust_remote_code)
    return processor


def prepare_for_training(model, tune) -> torch.nn.Module:
    """Freeze, wrap and unfreeze by `tune.modes` (part -> frozen, lora or full); returns the model to train.

    LoRA targets are the exact names of the chosen linear layers (parts.linear_names): matching projection names
    alone would put LoRA on Qwen2.5-VL's vision blocks too, whose MLPs also have gate/up/down_proj. Fully trained
    parts next to LoRA are peft's `modules_to_save`, so the adapter folder holds them and merging restores them.
    """
    modes = tune.modes
    targets = []
    if modes["language"] == "lora":
        targets += parts.linear_names(model, "language", tune.module_names)
    if modes["vision"] == "lora":
        targets += parts.linear_names(model, "vision")
    full = [name for part, mode in modes.items() if mode == "full" for name, _ in parts.part_modules(model)[part]]
    if not targets:
        model.requires_grad_(False)
        for part, mode in modes.items():
            for _, module in parts.part_modules(model)[part]:
                module.requires_grad_(mode == "full")
        return model
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    if getattr(model, "is_loaded_in_4bit", False):
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    config = LoraConfig(r=tune.lora_r, lora_alpha=tune.lora_alpha, lora_dropout=tune.lora_dropout, bias="none",
                        target_modules=targets, modules_to_save=full or None, task_type="CAUSAL_LM")
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


def load_trained(run_dir: str, model_dir: str, trust_remote_code: bool = False):
    """(model, has_adapter): base + the run's adapter, its keys checked, or the fully fine-tuned model the run saved."""
    run_dir = Path(run_dir)
    if not (run_dir / "adapter_config.json").is_file():
        return load_model(str(run_dir), trust_remote_code=trust_remote_code), False
    from peft import PeftModel

    model = PeftModel.from_pretrained(load_model(model_dir, trust_remote_code=trust_remote_code), str(run_dir))
    check_adapter_keys(model, run_dir)
    return model, True


def check_adapter_keys(model, run_dir) -> None:
    """Stop when the saved adapter's weights and the ones this model expects differ, instead of running with some
    LoRA layers left at their initial values (which peft only warns about, or not at all for unexpected keys).

    It happens when a transformers upgrade renames modules (4.x `model.layers` became 5.x
    `model.language_model.layers` in Qwen2-VL) or when the adapter was trained on another model."""
    from peft import get_peft_model_state_dict
    from safetensors import safe_open

    path = Path(run_dir) / "adapter_model.safetensors"
    with safe_open(str(path), "pt") as saved_file:
        saved = set(saved_file.keys())
    expected = set(get_peft_model_state_dict(model).keys())
    missing, unexpected = sorted(expected - saved), sorted(saved - expected)
    if missing or unexpected:
        raise SystemExit(
            f"{path} does not fit this model: {len(missing)} missing LoRA weights (e.g. {missing[:3]}), "
            f"{len(unexpected)} unexpected (e.g. {unexpected[:3]}). Load it with the base model and transformers "
            f"version it was trained with, or rename its keys to this model's module names.")


def merge_adapter(run_dir: str, model_dir: str, out_dir: str, trust_remote_code: bool = False) -> list[str]:
    """Merge the run's adapter into its base model and save a complete model folder (safetensors weights, config,
    generation config, processor, tokenizer, chat template) that plain transformers loads. Returns warnings."""
    from peft import PeftModel

    base = AutoModelForImageTextToText.from_pretrained(model_dir, dtype="auto", trust_remote_code=trust_remote_code)
    model = PeftModel.from_pretrained(base, run_dir)
    check_adapter_keys(model, run_dir)
    warnings = []
    vision = parts.parameter_parts(model)["vision"]
    if any("lora_" in name for name in vision):
        warnings.append("this adapter has LoRA on the vision encoder: serve the merged model, since vLLM applies "
                        "LoRA to the language model only and would ignore that part of an unmerged adapter")
    merged = model.merge_and_unload()
    processor = AutoProcessor.from_pretrained(run_dir, trust_remote_code=trust_remote_code)
    save_pretrained_atomically(merged, processor, out_dir)
    return warnings
