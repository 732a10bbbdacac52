"""Step 3: put the base model in a local folder.

    python load_model.py                                          # offline: build and pretrain the tiny Qwen2-VL
    python load_model.py --base_model Qwen/Qwen2-VL-2B-Instruct   # download from ModelScope into models/
    python load_model.py --base_model Qwen/Qwen2-VL-2B-Instruct --hub huggingface   # or from the Hugging Face Hub

The tiny model is built once and cached: a second run finds it in --model_dir and does nothing.
"""

import time
from pathlib import Path

import config
from vlmtune import modeling, pretraining, tiny


def main(argv=None):
    # ---- Config
    model_cfg, = config.parse(argv, config.ModelConfig)
    out_dir = model_cfg.resolved_model_dir
    if Path(out_dir, "config.json").is_file():
        print(f"{out_dir} already holds a model; delete the folder to build or download it again.")
        return out_dir

    # ---- Model
    start = time.time()
    if model_cfg.base_model in tiny.TINY_MODELS:
        model, processor = tiny.TINY_MODELS[model_cfg.base_model]()
        log = pretraining.pretrain(model, processor, steps=model_cfg.pretrain_steps)
        if log:
            print(f"pretrained {model_cfg.pretrain_steps} steps on the synthetic world: loss "
                  f"{log[0]['loss']:.3f} -> {log[-1]['loss']:.3f}")
        modeling.save_pretrained_atomically(model, processor, out_dir)
    else:
        try:
            modeling.download_model(model_cfg.base_model, model_cfg.hub, out_dir)
        except OSError as error:  # connection failures of both hubs' clients derive from OSError
            raise SystemExit(f"Could not download {model_cfg.base_model} from {model_cfg.hub} "
                             f"({modeling.hub_endpoint(model_cfg.hub)}): {error}\n"
                             f"Check the network (or HF_ENDPOINT for a Hugging Face mirror), or use --hub to pick "
                             f"the other hub. Offline, `python load_model.py` builds the tiny model instead.")
    print(f"base model ready in {out_dir} ({time.time() - start:.0f} s)")
    return out_dir


if __name__ == "__main__":
    main()
