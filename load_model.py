"""Step 3: put the base model in a local folder.

    python load_model.py                                          # offline: build and pretrain the tiny Qwen2-VL
    python load_model.py --base_model Qwen/Qwen2-VL-2B-Instruct   # download from ModelScope into models/
    python load_model.py --base_model Qwen/Qwen2-VL-2B-Instruct --hub huggingface   # or from the Hugging Face Hub

The tiny model is built once and cached: a second run finds it in --model_dir and does nothing.
"""

import os
import shutil
import time
from pathlib import Path

import config
from vlmtune import modeling, pretraining, saving, tiny


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
        log = pretraining.pretrain(model, processor, steps=model_cfg.pretrain_steps,
                                   workers=model_cfg.pretrain_workers)
        if log:
            print(f"pretrained {model_cfg.pretrain_steps} steps on the synthetic world: loss "
                  f"{log[0]['loss']:.3f} -> {log[-1]['loss']:.3f}")
        with saving.stop_on_write_error(out_dir):  # a full disk: named, and no folder left behind
            modeling.save_pretrained_atomically(model, processor, out_dir)
    else:
        if os.path.isdir(out_dir) and os.listdir(out_dir):
            raise SystemExit(f"{out_dir} holds files but no config.json: empty it or delete it, or give another "
                             "--model_dir, and run again.")
        # Into a folder beside, renamed when complete: a download cut short (the network, a full disk, Ctrl-C) would
        # otherwise leave a folder with a config.json and part of the weights, which this script then takes for a
        # model. What it downloaded is removed, so a failed download starts again from nothing.
        staging = f"{out_dir.rstrip('/')}.download"
        shutil.rmtree(staging, ignore_errors=True)
        os.makedirs(staging)
        try:
            modeling.download_model(model_cfg.base_model, model_cfg.hub, staging)
        except BaseException as error:
            shutil.rmtree(staging, ignore_errors=True)
            if saving.is_full_disk(error):
                raise SystemExit(saving.write_error_message(error, out_dir)) from None
            if not isinstance(error, OSError):  # Ctrl-C, or a bug: as it is, once the folder is removed
                raise
            raise SystemExit(f"Could not download {model_cfg.base_model} from {model_cfg.hub} "
                             f"({modeling.hub_endpoint(model_cfg.hub)}): {error}\n"
                             f"Check the network (or HF_ENDPOINT for a Hugging Face mirror), or use --hub to pick "
                             f"the other hub. Offline, `python load_model.py` builds the tiny model instead.") from None
        if os.path.isdir(out_dir):
            os.rmdir(out_dir)  # empty, checked above
        os.replace(staging, out_dir)
    print(f"base model ready in {out_dir} ({time.time() - start:.0f} s)")
    return out_dir


if __name__ == "__main__":
    main()
