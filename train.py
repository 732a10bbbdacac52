"""Step 4: LoRA fine-tuning with the transformers Trainer, watched in SwanLab.

    sh train.sh                                          # the offline job: tiny model, synthetic world, CPU
    sh train.sh --config scripts/qwen2-vl-2b_coco.yaml   # the real run on a GPU
    sh train.sh --deepspeed scripts/zero2.json           # any Trainer flag works as it is

Reads <data_dir>/train.json (csv2json.py) and the base model in <model_dir> (load_model.py); writes the adapter and
run_config.json (everything test.py needs) to --output_dir.
"""

import json
import os
from pathlib import Path

from swanlab.integration.transformers import SwanLabCallback
from transformers import Trainer, TrainingArguments

import config
from vlmtune.collator import TrainCollator, drop_overlong
from vlmtune.formats import load_conversations, to_messages
from vlmtune.modeling import add_lora, load_model, load_processor, training_dtype
from vlmtune.tasks import TASKS
from vlmtune.tracking import choose_swanlab_mode


def main(argv=None):
    # ---- Config
    data_cfg, model_cfg, lora_cfg, args = config.parse(
        argv, config.DataConfig, config.ModelConfig, config.LoraConfig, TrainingArguments,
        defaults=config.TRAINING_DEFAULTS)
    if args.hub_token:
        raise SystemExit("--hub_token is refused: SwanLab and shell histories record the command line. Set HF_TOKEN "
                         "in the environment instead (huggingface_hub reads it).")
    model_dir = model_cfg.resolved_model_dir
    if not Path(model_dir, "config.json").is_file():
        raise SystemExit(f"No base model in {model_dir}: run `python load_model.py` first (or pass --model_dir).")
    train_json = Path(data_cfg.resolved_data_dir, "train.json")
    if not train_json.is_file():
        raise SystemExit(f"No {train_json}: run `python data2csv.py` and `python csv2json.py` first (or pass --data_dir).")

    # ---- Model
    processor = load_processor(model_dir, model_cfg.image_min_pixels, model_cfg.image_max_pixels,
                               model_cfg.trust_remote_code)
    model = load_model(model_dir, training_dtype(args, model_dir), model_cfg.trust_remote_code)
    model_info = {"model_type": model.config.model_type, **vars(model_cfg)}
    model = add_lora(model, lora_cfg.lora_r, lora_cfg.lora_alpha, lora_cfg.lora_dropout, lora_cfg.module_names)
    model.print_trainable_parameters()

    # ---- Data
    task = TASKS[data_cfg.task]
    conversations = load_conversations(train_json)
    written_for = {c.get("task", "caption") for c in conversations}
    if written_for != {task.name}:
        raise SystemExit(f"{train_json} holds {', '.join(sorted(written_for))} conversations, not --task {task.name}: "
                         f"pass the --task it was written for, or another --data_dir.")
    examples = [{"id": c["id"], "messages": task.adapt(to_messages(c, train_json.parent), c, model_info)}
                for c in conversations]
    examples, dropped = drop_overlong(examples, processor, lora_cfg.max_length)
    print(f"train examples: {len(examples)} kept, {len(dropped)} dropped as longer than --max_length "
          f"{lora_cfg.max_length} tokens")
    for example_id, length in dropped[:10]:
        print(f"  dropped {example_id}: {length} tokens")
    if not examples:
        raise SystemExit(f"Every example is longer than --max_length {lora_cfg.max_length}: raise it, or lower "
                         f"--image_max_pixels.")

    # ---- Train
    callbacks = []
    if "swanlab" in args.report_to:
        # SwanLab's own Trainer callback: the one built into transformers 5.23 calls swanlab.get_run(), which raises
        # in swanlab 0.10 before a run exists. Hyperparameters, loss and learning rate are logged either way.
        args.report_to = [name for name in args.report_to if name != "swanlab"]
        mode = choose_swanlab_mode()
        callbacks.append(SwanLabCallback(project=os.environ.get("SWANLAB_PROJECT", "vlmtune"), mode=mode,
                                         experiment_name=Path(args.output_dir).name))
        print(f"SwanLab mode: {mode}")
    trainer = Trainer(model=model, args=args, train_dataset=examples, callbacks=callbacks,
                      data_collator=TrainCollator(processor, trim_logits=lora_cfg.trim_logits))
    trainer.train()

    # ---- Save
    trainer.save_model(args.output_dir)
    # save_model also pickles the TrainingArguments (training_args.bin); run_config.json below keeps them as JSON,
    # and a run folder holds no pickle to unpickle.
    Path(args.output_dir, "training_args.bin").unlink(missing_ok=True)
    processor.save_pretrained(args.output_dir)
    run_config = {
        "data": vars(data_cfg) | {"data_dir": os.path.abspath(data_cfg.resolved_data_dir)},
        "model": vars(model_cfg) | {"model_dir": os.path.abspath(model_dir)},
        "lora": vars(lora_cfg),
        "training": args.to_dict(),  # tokens are masked by TrainingArguments.to_dict
        "dropped_overlong": [{"id": i, "tokens": n} for i, n in dropped],
    }
    Path(args.output_dir, "run_config.json").write_text(json.dumps(run_config, indent=2, default=str))
    print(f"adapter and run_config.json saved to {args.output_dir}")


if __name__ == "__main__":
    main()
