"""After step 4 or 5: merge a run's LoRA adapter into its base model and save one complete model folder.

    python merge.py                                      # output/tiny-qwen2-vl-lora -> output/tiny-qwen2-vl-lora-merged
    python merge.py --run_dir output/qwen2-vl-2b-coco --merged_dir models/qwen2-vl-2b-coco

The folder holds safetensors weights, config, generation config, processor, tokenizer and chat template: plain
`AutoModelForImageTextToText.from_pretrained` and `AutoProcessor.from_pretrained` load it, and vLLM serves it.
Each step (loading the base and the adapter, checking the rounding, merging, saving) says what it does, and then how
long it took.
"""

import argparse
import json
from pathlib import Path

import torch

import config
from vlmtune.modeling import inference_placement, merge_adapter
from vlmtune.saving import stop_on_write_error


def main(argv=None):
    # ---- Config
    parser = config.stop_on_error(  # an unknown flag or bad value: `merge.py: message`, exit status 1
        argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter))
    parser.add_argument("--run_dir", default="output/tiny-qwen2-vl-lora", help="a training run of train.py")
    parser.add_argument("--merged_dir", default="", help="where to save the merged model (default: <run_dir>-merged)")
    parser.add_argument("--merged_dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"],
                        help="dtype of the saved weights; auto: the base model's own")
    args = parser.parse_args(argv)
    run_config = Path(args.run_dir, "run_config.json")
    if not run_config.is_file():
        raise SystemExit(f"No run_config.json in {args.run_dir}: train first (`sh train.sh`) or pass --run_dir.")
    if not Path(args.run_dir, "adapter_config.json").is_file():
        raise SystemExit(f"{args.run_dir} holds no adapter: a fully fine-tuned run is a complete model folder "
                         "already; load it as it is.")
    model = json.loads(run_config.read_text())["model"]
    merged_dir = args.merged_dir or f"{args.run_dir.rstrip('/')}-merged"

    # ---- Merge
    device, dtype = inference_placement()
    saved_dtype = None if args.merged_dtype == "auto" else getattr(torch, args.merged_dtype)
    # A failed save (a full disk) leaves no folder behind: the merged folder is written beside and renamed.
    with stop_on_write_error(merged_dir):
        warnings = merge_adapter(args.run_dir, model["model_dir"], merged_dir, device, dtype,
                                 model["trust_remote_code"], saved_dtype)
    for warning in warnings:
        print(f"warning: {warning}")
    print(f"merged model saved to {merged_dir}")
    return merged_dir


if __name__ == "__main__":
    main()
