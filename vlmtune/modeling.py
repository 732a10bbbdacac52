"""Models: download a base model, load it for training, add LoRA, choose the dtype.

Everything loads through the transformers Auto classes and the processor's own chat template; nothing looks at a
model's name to decide what to do.
"""

import importlib.util
import json
import os
import shutil
import types
from pathlib import Path

import torch
from transformers import AutoImageProcessor, AutoModelForImageTextToText, AutoProcessor

from . import images, parts, progress

SUPPORTED = "Qwen2-VL, Qwen2.5-VL, Qwen3-VL or LLaVA-1.5"  # the families this project is tested on
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")  # a whole checkpoint; sharded ones have an index beside
GET_ONE = (f"give --model_dir a folder of a vision-language model ({SUPPORTED}), or run `python load_model.py` "
           "(--base_model Qwen/Qwen2-VL-2B-Instruct, say) to put one there")


def check_model_dir(path: str, trust_remote_code: bool = False, config_only: bool = False) -> None:
    """Stop, saying what the folder holds and what to do, unless `path` holds a whole vision-language model: a
    config that AutoModelForImageTextToText builds, its weights (every shard an index names) and a processor; with
    `config_only`, the config alone (config.refuse_tiny_defaults sizes a model from it before anything else).

    Without this, a folder of config files only, or of a text-only Qwen2, fails deep in transformers, some with a
    misleading "can't load image processor ... huggingface.co". train.py, test.py and merge.py call it first;
    load_processor and load_model do not, as a run's folder holds a processor and no config, and tests load real
    processors from folders without weights."""
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import (MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
                                                        MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES)

    folder = Path(path)
    if not (folder / "config.json").is_file():
        held = "does not exist" if not folder.exists() else "holds no config.json"
        raise SystemExit(f"{path} {held}, so it holds no model: {GET_ONE}.")
    try:
        config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
    except (ValueError, OSError, KeyError) as error:  # not JSON, or a model_type this transformers does not know
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise SystemExit(f"{path}/config.json cannot be read as a model config ({first}): {GET_ONE}, or upgrade "
                         "transformers if the model is newer than it.") from None
    kind = config.model_type
    names = ", ".join(getattr(config, "architectures", None) or []) or "no architectures listed"
    remote = trust_remote_code and "AutoModelForImageTextToText" in (getattr(config, "auto_map", None) or {})
    if kind not in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES and not remote:
        what = "a text-only language model" if kind in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES else "no vision-language model"
        raise SystemExit(f"{path} holds a {kind} model ({names}), {what}: it reads no images. {GET_ONE}.")
    if config_only:
        return
    missing = _missing_weights(folder)
    if missing:
        raise SystemExit(f"{path} holds the config of a {kind} model ({names}) but {missing}: the download was cut "
                         f"short, or only its config files were copied. Delete the folder and run `python "
                         f"load_model.py` again (with its --base_model), or give --model_dir a complete folder.")
    if not any((folder / name).is_file() for name in ("preprocessor_config.json", "processor_config.json")):
        raise SystemExit(f"{path} holds a {kind} model ({names}) but no processor (no preprocessor_config.json or "
                         f"processor_config.json), so its images cannot be prepared: copy the model repository's "
                         f"processor files there, or run `python load_model.py` again into an empty folder.")


def _missing_weights(folder: Path) -> str:
    """What is missing of a checkpoint's weights ("" when nothing is): the file, or the shards its index names."""
    for name in WEIGHT_FILES:
        if (folder / name).is_file():
            return ""
    for name in (f"{weights}.index.json" for weights in WEIGHT_FILES):
        if (folder / name).is_file():
            try:
                shards = set(json.loads((folder / name).read_text(encoding="utf-8"))["weight_map"].values())
            except (ValueError, KeyError, TypeError, AttributeError):
                return f"an unreadable {name}"
            absent = sorted(shard for shard in shards if not (folder / shard).is_file())
            if absent:
                return (f"{len(absent)} of the {len(shards)} weight files its {name} names are missing (such as "
                        f"{absent[0]})")
            return ""
    return f"no weights (no {' or '.join(WEIGHT_FILES)}, nor a sharded index)"


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
    """The model's own processor, with this run's image resize limits where it resizes into a pixel budget (Qwen).

    A hub preprocessor_config.json holds `min_pixels` / `max_pixels` keys of its own, which Qwen2VLImageProcessor
    lets override `size`: given to the processor as `size=`, the limits were lost and a 640x480 photo stayed at 391
    image tokens whatever they were. So the image processor is loaded again with the limits as those very keys.
    (Given to AutoProcessor, min_pixels/max_pixels land in the tokenizer's settings and every call warns that they
    are deprecated.) LLaVA's CLIP processor has one fixed size: nothing to set.
    """
    processor = AutoProcessor.from_pretrained(path, trust_remote_code=trust_remote_code)
    if resizes_to_budget(processor.image_processor):
        # Set as the processor's component, not passed to AutoProcessor: a component given there is also kept in
        # the tokenizer's settings, which then cannot be saved.
        processor.image_processor = AutoImageProcessor.from_pretrained(
            path, min_pixels=min_pixels, max_pixels=max_pixels, trust_remote_code=trust_remote_code)
    return processor


def resizes_to_budget(image_processor) -> bool:
    """Whether an image processor resizes each image into a pixel budget and makes a grid of tokens of it (Qwen's
    dynamic resolution), rather than one fixed size (LLaVA)."""
    return "image_grid_thw" in image_processor.model_input_names


def image_settings(processor) -> dict:
    """How this processor sizes images, read from the processor itself (what tasks need to place a box in the frame
    the model sees): `image_factor`, the pixels per side of one image token (patch size x merge size: 28 for
    Qwen2-VL and Qwen2.5-VL, 32 for Qwen3-VL), with the pixel limits in force, or None for a fixed-size processor;
    `pad_to_square`, whether images are padded to a square first (vlmtune.images)."""
    image_processor = processor.image_processor
    settings = {"image_factor": None, "pad_to_square": images.square_fill(processor) is not None}
    if resizes_to_budget(image_processor):
        settings |= {"image_factor": image_processor.patch_size * image_processor.merge_size,
                     "image_min_pixels": image_processor.size["shortest_edge"],
                     "image_max_pixels": image_processor.size["longest_edge"]}
    return settings


def model_info(model, processor) -> dict:
    """What tasks need to know of the model (vlmtune.tasks: `adapt` and `reference`): its model_type, which picks
    the box convention, and how its processor sizes images."""
    return {"model_type": model.config.model_type, **image_settings(processor)}


def prepare_for_training(model, tune) -> torch.nn.Module:
    """Freeze, wrap and unfreeze by `tune.modes` (part -> frozen, lora or full); returns the model to train.

    LoRA targets are the exact names of the chosen linear layers (parts.linear_names): matching projection names
    alone would put LoRA on Qwen2.5-VL's vision blocks too, whose MLPs also have gate/up/down_proj. Fully trained
    parts next to LoRA are peft's `modules_to_save`, so the adapter folder holds them and merging restores them.
    Under gradient checkpointing a frozen vision encoder stays out of the gradient graph (frozen_out_of_graph), unless
    `tune.frozen_in_graph` asks for transformers' own hooks.
    """
    modes = tune.modes
    if not tune.frozen_in_graph:
        frozen_out_of_graph(model)
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
        return keep_trainable_in_fp32(model)
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    if getattr(model, "is_loaded_in_4bit", False):
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    config = LoraConfig(r=tune.lora_r, lora_alpha=tune.lora_alpha, lora_dropout=tune.lora_dropout, bias="none",
                        target_modules=targets, modules_to_save=full or None, task_type="CAUSAL_LM")
    return keep_trainable_in_fp32(get_peft_model(model, config))


def frozen_out_of_graph(model) -> None:
    """Make the model's `enable_input_require_grads` hook the language model's input embeddings only, while its vision
    encoder has nothing to train.

    The Trainer calls it when it turns on gradient checkpointing (through peft's wrapper too), so that a checkpointed
    block of frozen weights still passes gradients to the LoRA weights after it. transformers hooks the input
    embeddings of every PreTrainedModel inside the model, the vision encoder's patch embedding among them (Qwen2-VL's
    and Qwen2.5-VL's `patch_embed`, LLaVA's CLIP `patch_embedding`): the whole frozen vision tower is then recorded
    for backward, back-propagated and, checkpointed, run twice, for gradients nothing reads. With a vision encoder
    that trains (--vision lora|full) transformers' own hooks stay, its patch embedding's included.
    """
    model.enable_input_require_grads = types.MethodType(_trained_inputs_require_grads, model)


def _trained_inputs_require_grads(model) -> None:
    """enable_input_require_grads as frozen_out_of_graph makes it; decided when it is called, once the parts that
    train are set."""
    if any(parameter.requires_grad for parameter in parts.parameter_parts(model)["vision"].values()):
        return type(model).enable_input_require_grads(model)
    model.disable_input_require_grads()
    hook = model.get_input_embeddings().register_forward_hook(_output_requires_grad)
    # where transformers keeps its hooks, so that its disable_input_require_grads removes this one too
    model._require_grads_hooks, model._require_grads_hook = [hook], hook


def _output_requires_grad(module, inputs, output):
    output.requires_grad_(True)


def keep_trainable_in_fp32(model) -> torch.nn.Module:
    """Every trained parameter in fp32, frozen ones left as loaded (bf16 on a GPU): the optimizer updates the fp32
    copy, and the forward runs under autocast (train.py sets the Trainer's --bf16 for bf16 weights).

    In pure bf16 an update smaller than about 1/256 of the weight rounds away: at the projector rate of LLaVA-1.5's
    recipe (2e-5), 10 AdamW steps changed 29 % of a fully trained projector's weights, against 100 % in fp32. peft
    already keeps LoRA matrices in fp32; a fully trained part (peft's modules_to_save, or no peft at all) is cast
    here. The cost is 4 bytes instead of 2 per trained weight.
    """
    for parameter in model.parameters():
        if parameter.requires_grad and parameter.dtype != torch.float32:
            parameter.data = parameter.data.float()
    return model


def training_dtype(args, model_dir: str) -> torch.dtype:
    """The dtype the base weights load in: bf16 with --bf16 (the default on a GPU that has it, config.py), when the
    Trainer also runs the forward under bf16 autocast; fp32 otherwise; fp16 refused for Qwen.

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
    return torch.bfloat16 if args.bf16 else torch.float32


def inference_placement() -> tuple[str, torch.dtype]:
    """(device, dtype) that test.py answers and merge.py merges in: the GPU in bf16 where it has bf16 (Ampere or
    newer), the GPU in fp32 where it has not (fp16 overflows Qwen's activations, see training_dtype), else the CPU
    in fp32."""
    if not torch.cuda.is_available():
        return "cpu", torch.float32
    # Without emulation: torch emulates bf16 on older GPUs, slower than their fp32.
    if torch.cuda.is_bf16_supported(including_emulation=False):
        return "cuda", torch.bfloat16
    return "cuda", torch.float32


def save_pretrained_atomically(model, processor, out_dir: str):
    """Write into a temporary sibling folder, then rename, so an interrupted save never looks like a finished one;
    a failed save (a full disk, Ctrl-C) removes the temporary folder and leaves out_dir as it was."""
    tmp = f"{out_dir.rstrip('/')}.tmp-{os.getpid()}"
    try:
        model.save_pretrained(tmp)
        processor.save_pretrained(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if os.path.exists(out_dir):
        shutil.rmtree(out_dir)
    os.replace(tmp, out_dir)


def load_trained(run_dir: str, model_dir: str, trust_remote_code: bool = False, dtype: torch.dtype = torch.float32):
    """(model, has_adapter): base + the run's adapter, its keys checked, or the fully fine-tuned model the run saved,
    in `dtype`."""
    run_dir = Path(run_dir)
    if not (run_dir / "adapter_config.json").is_file():
        return load_model(str(run_dir), dtype, trust_remote_code), False
    from peft import PeftModel

    model = PeftModel.from_pretrained(load_model(model_dir, dtype, trust_remote_code), str(run_dir))
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


def merge_adapter(run_dir: str, model_dir: str, out_dir: str, device: str, dtype: torch.dtype,
                  trust_remote_code: bool = False, saved_dtype: torch.dtype | None = None,
                  stage=progress.stage) -> list[str]:
    """Merge the run's adapter into its base model and save a complete model folder (safetensors weights, config,
    generation config, processor, tokenizer, chat template) that plain transformers loads. Returns warnings.

    The merge runs on `device`, in `dtype` or in the base's own dtype where that is more precise (an fp32 base stays
    fp32 on a bf16 GPU, an fp16 one is merged in fp32); the weights are saved in the base's own dtype, so the folder
    weighs what the base does and loads the way it does, or in `saved_dtype`. Warns when rounding to the saved dtype
    loses more than a tenth of the adapter's changes (lost_in_rounding). Each step is announced and timed by
    `stage` (vlmtune.progress.stage; contextlib.nullcontext says nothing)."""
    from peft import PeftModel

    # "auto": the checkpoint's own dtype, from its config or else from its weights (Qwen3-VL's config names it in
    # text_config only).
    check_model_dir(model_dir, trust_remote_code)
    with stage(f"loading the base model from {model_dir}"):
        base = AutoModelForImageTextToText.from_pretrained(model_dir, dtype="auto",
                                                           trust_remote_code=trust_remote_code)
        saved_dtype = saved_dtype or base.dtype
        base.to(device, torch.promote_types(torch.promote_types(dtype, base.dtype), saved_dtype))
    with stage(f"loading the adapter from {run_dir}"):
        model = PeftModel.from_pretrained(base, run_dir)
    check_adapter_keys(model, run_dir)
    warnings = []
    vision = parts.parameter_parts(model)["vision"]
    if any("lora_" in name for name in vision):
        warnings.append("this adapter has LoRA on the vision encoder: serve the merged model, since vLLM applies "
                        "LoRA to the language model only and would ignore that part of an unmerged adapter")
    with stage(f"counting the weight changes that rounding to {str(saved_dtype).removeprefix('torch.')} keeps"):
        lost, changed = lost_in_rounding(model, saved_dtype)
    if lost > 0.1 * changed:
        warnings.append(f"{lost / changed:.0%} of the weight changes the adapter makes ({lost:,} of {changed:,}) are "
                        f"smaller than {str(saved_dtype).removeprefix('torch.')}'s resolution and are lost in the "
                        f"merged folder: the merged model answers closer to the base than base + adapter does. "
                        f"--merged_dtype float32 keeps them (twice the size on disk), or serve the adapter unmerged.")
    with stage("merging the adapter into the base weights"):
        merged = model.merge_and_unload().to(saved_dtype)
    with stage(f"saving the merged model to {out_dir}"):
        processor = AutoProcessor.from_pretrained(run_dir, trust_remote_code=trust_remote_code)
        save_pretrained_atomically(merged, processor, out_dir)
    return warnings


def lost_in_rounding(model, dtype: torch.dtype) -> tuple[int, int]:
    """(changes lost, changes made): of the base weights that the adapter's LoRA deltas change, how many come out of
    merging and rounding to `dtype` equal to the base weight, i.e. unchanged. A short run at a small learning rate
    moves weights by less than bf16's step near them (about 1.2e-4 at 0.02): merged in bf16 its update vanishes."""
    from peft.tuners.lora import LoraLayer

    lost = changed = 0
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, LoraLayer):
                for adapter in module.active_adapters:
                    weight = module.get_base_layer().weight
                    delta = module.get_delta_weight(adapter)
                    moved = delta != 0
                    kept = (weight + delta).to(dtype) != weight.to(dtype)
                    lost += int((moved & ~kept).sum())
                    changed += int(moved.sum())
    return lost, max(changed, 1)
