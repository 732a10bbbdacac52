"""Step 4: fine-tuning with the transformers Trainer (LoRA by default), watched in SwanLab.

    sh train.sh                                          # the offline job: tiny model, synthetic world, CPU
    sh train.sh --config scripts/qwen2-vl-2b_coco.yaml   # the real run on a GPU (scripts/ has a preset a recipe)
    sh train.sh --deepspeed scripts/zero2.json           # any Trainer flag works as it is
    sh train.sh --vision lora --projector full --projector_lr 2e-5   # each part: frozen, lora or full

Reads <data_dir>/train.json (csv2json.py) and the base model in <model_dir> (load_model.py); writes the adapter,
run_config.json (everything test.py needs), trainer_state.json (the log) and loss.png (its curves) to --output_dir.
"""

import json
import os
from pathlib import Path

import torch
from transformers import EarlyStoppingCallback, TrainingArguments, set_seed
from transformers.trainer_utils import get_last_checkpoint

import config
from vlmtune import checkpoints, evaluation, parts, report, runlock, saving, stopping, text
from vlmtune.batching import packing_refusal
from vlmtune.collator import TrainCollator, UnreadableImage, drop_overlong, images_of
from vlmtune.formats import check_task, load_conversations, to_messages
from vlmtune.images import resolution_warnings, stored_size
from vlmtune.modeling import (check_model_dir, load_model, load_processor, model_info, prepare_for_training,
                              training_dtype)
from vlmtune.tasks import TASKS
from vlmtune.tracking import choose_swanlab_mode, mode_note, tracking_callback
from vlmtune.trainer import PartsTrainer, label_smoothing_refusal


def main(argv=None):
    # ---- Config
    groups = (config.DataConfig, config.ModelConfig, config.TuneConfig, TrainingArguments)
    config.refuse_tiny_defaults(argv, *groups)  # a real checkpoint left with tiny settings stops; before parse
    data_cfg, model_cfg, tune_cfg, args = config.parse(argv, *groups, defaults=config.training_defaults())
    if args.hub_token:
        raise SystemExit("--hub_token is refused: SwanLab and shell histories record the command line. Set HF_TOKEN "
                         "in the environment instead (huggingface_hub reads it).")
    if refusal := label_smoothing_refusal(tune_cfg.logits, args.label_smoothing_factor):  # before any model loads
        raise SystemExit(f"train.py: {refusal}")
    model_dir = model_cfg.resolved_model_dir
    if not Path(model_dir, "config.json").is_file():
        raise SystemExit(f"No base model in {model_dir}: run `python load_model.py` first (or pass --model_dir).")
    train_json = Path(data_cfg.resolved_data_dir, "train.json")
    if not train_json.is_file():
        raise SystemExit(f"No {train_json}: run `python data2csv.py` and `python csv2json.py` first (or pass --data_dir).")
    check_model_dir(model_dir, model_cfg.trust_remote_code)  # weights, processor and a vision-language config
    try:
        resume = checkpoints.resume_folder(args.resume_from_checkpoint, args.output_dir)
    except ValueError as error:
        raise SystemExit(f"train.py: {error}") from None
    if resume:
        print(f"resuming from {resume}")
    stopping.stop_on_request()  # before the lock: a stop from here on releases it
    try:
        runlock.lock_output_dir(args.output_dir)  # one run per folder, for as long as this process lives
    except runlock.FolderInUse as error:
        raise SystemExit(f"train.py: {error}") from None
    try:
        train(data_cfg, model_cfg, tune_cfg, args, resume)
    except stopping.Stopped as signal_name:  # kill, Ctrl-C, or train.sh stopped: say where, and how to go on
        last = get_last_checkpoint(args.output_dir) if os.path.isdir(args.output_dir) else None
        go_on = (f"the last checkpoint is {last}: resume with --resume_from_checkpoint last" if last else
                 "no checkpoint was saved (--save_strategy steps --save_steps N keeps some to resume from)")
        raise SystemExit(f"train.py: stopped by {signal_name}; {go_on}") from None
    finally:
        runlock.release_all()  # the lock file goes, and the folder too where the run wrote nothing


def train(data_cfg, model_cfg, tune_cfg, args, resume: str | None):
    model_dir, train_json = model_cfg.resolved_model_dir, Path(data_cfg.resolved_data_dir, "train.json")
    print(f"{args.world_size} process{'es' if args.world_size > 1 else ''} on {args.device.type}, "
          f"{torch.get_num_threads()} CPU threads each")

    # ---- Model
    processor = load_processor(model_dir, model_cfg.image_min_pixels, model_cfg.image_max_pixels,
                               model_cfg.trust_remote_code)
    model = load_model(model_dir, training_dtype(args, model_dir), model_cfg.trust_remote_code,
                       tune_cfg.load_in_4bit)
    if tune_cfg.packing and (refusal := packing_refusal(model)):
        raise SystemExit(f"train.py: {refusal}")
    info = model_info(model, processor)

    # ---- Data
    task = TASKS[data_cfg.task]
    try:
        conversations = load_conversations(train_json)
    except (ValueError, FileNotFoundError) as error:  # the message names the file, the record and the fix
        raise SystemExit(f"train.py: {error}") from None
    if (problem := check_task(conversations, task.name, train_json)) is not None:  # no "task": not taken for captions
        raise SystemExit(problem)
    written = [{"id": c["id"], "messages": to_messages(c, train_json.parent)} for c in conversations]
    # A control token in a hand-written train.json; checked as written, before the task puts the model's own
    # tokens in (Qwen2-VL's grounding answer is <|object_ref_start|>...<|box_end|>).
    if found := text.in_examples(processor.tokenizer, written):
        raise SystemExit(text.refusal(train_json, found))
    examples = [{"id": c["id"], "messages": task.adapt(w["messages"], c, info)} for c, w in zip(conversations, written)]
    quiet = args.disable_tqdm or args.process_index > 0  # one bar for the run, not one per process
    try:
        examples, dropped = drop_overlong(examples, processor, tune_cfg.max_length,
                                          progress=None if quiet else "train.py: counting tokens")
    except UnreadableImage as error:
        raise SystemExit(f"train.py: {error}") from None
    print(f"train examples: {len(examples)} kept, {len(dropped)} dropped as longer than --max_length "
          f"{tune_cfg.max_length} tokens")
    for example_id, length in dropped[:10]:
        print(f"  dropped {example_id}: {length} tokens")
    sizes = [stored_size(image) for example in examples[:1000] for image in images_of(example["messages"])]
    boxes = [(*c["box"], *c["image_size"]) for c in conversations if "box" in c]
    for warning in resolution_warnings(sizes, boxes, info):  # a pixel limit too small for real photos
        print(f"warning: {warning}")
    if not examples:
        fewer_pixels = f", or lower --image_max_pixels ({info['image_max_pixels']})" if info["image_factor"] else ""
        raise SystemExit(f"Every example is longer than --max_length {tune_cfg.max_length}: raise it{fewer_pixels}.")

    # ---- What trains
    set_seed(args.seed)  # before the LoRA weights are drawn: the same seed gives the same adapter
    model = prepare_for_training(model, tune_cfg)
    learning_rates = {"language": args.learning_rate,
                      "vision": args.learning_rate if tune_cfg.vision_lr is None else tune_cfg.vision_lr,
                      "projector": args.learning_rate if tune_cfg.projector_lr is None else tune_cfg.projector_lr}
    print(parts.report(model, tune_cfg.modes, learning_rates))

    # ---- Train
    callbacks = []
    use_swanlab = "swanlab" in args.report_to
    if use_swanlab:
        # SwanLab's own Trainer callback (the one built into transformers 5.23 calls swanlab.get_run(), which raises
        # in swanlab 0.10 before a run exists), made so that a SwanLab that cannot start never stops the run.
        args.report_to = [name for name in args.report_to if name != "swanlab"]
        mode = choose_swanlab_mode()
        swanlab_callback = tracking_callback(os.environ.get("SWANLAB_PROJECT", "vlmtune"), Path(args.output_dir).name,
                                             mode)
        callbacks.append(swanlab_callback)
        print(mode_note(mode))
    if tune_cfg.early_stopping_patience:
        callbacks.append(EarlyStoppingCallback(tune_cfg.early_stopping_patience))
    evaluating = args.eval_strategy != "no"
    val_examples, task_evaluation = None, None
    if evaluating:  # every record of val.json for the loss, the first --eval_samples questions for the metric
        try:
            val_examples, task_evaluation = evaluation.validation_set(
                Path(data_cfg.resolved_data_dir, "val.json"), task, processor, info, tune_cfg.eval_samples,
                args.per_device_eval_batch_size)
        except (ValueError, FileNotFoundError) as error:
            raise SystemExit(f"train.py: --eval_strategy: {error}") from None
    trainer = PartsTrainer(model=model, args=args, train_dataset=examples, eval_dataset=val_examples,
                           callbacks=callbacks, learning_rates=learning_rates,
                           data_collator=TrainCollator(processor, logits=tune_cfg.logits, packing=tune_cfg.packing))
    trainer.task_evaluation = task_evaluation
    if evaluating:
        trainer.add_callback(evaluation.EvaluateAtStart(trainer))  # the curves start from the base's numbers
    try:
        trainer.train(resume_from_checkpoint=resume)
    except UnreadableImage as error:  # an image that changed on disk since csv2json.py, met at its batch
        raise SystemExit(f"train.py: {error}") from None
    padding = trainer.padding  # counted in this process from the batches' attention_mask, workers or not
    if padding.positions and trainer.is_world_process_zero():  # what right padding cost (see --train_sampling_strategy)
        print(f"padding: {padding.fraction:.1%} of the {padding.positions} token positions computed "
              f"({'packed' if tune_cfg.packing else args.train_sampling_strategy} batches)")

    # ---- Save
    run_config = {
        "data": vars(data_cfg) | {"data_dir": os.path.abspath(data_cfg.resolved_data_dir)},
        "model": vars(model_cfg) | {"model_dir": os.path.abspath(model_dir)},
        "tune": vars(tune_cfg),
        "training": args.to_dict(),  # tokens are masked by TrainingArguments.to_dict
        "dropped_overlong": [{"id": i, "tokens": n} for i, n in dropped],
        # the SwanLab run (tracking.run_record): test.py logs its metrics and pictures into the same experiment;
        # None or False when training logged none (--report_to none, or SwanLab could not start), and test.py logs none
        "swanlab": use_swanlab and swanlab_callback.run_record,
    }

    def write(folder):
        trainer.save_model(folder)  # with the TrainingArguments as JSON, not pickled (vlmtune.checkpoints)
        if trainer.is_world_process_zero():
            processor.save_pretrained(folder)
            trainer.save_state()  # trainer_state.json (JSON): the log history, for test.py's report.html
            report.plot_loss(trainer.state.log_history, Path(folder, "loss.png"))

    # run_config.json, which test.py and merge.py take for a finished run, is written last; a failed save (a full
    # disk) removes what it wrote and says so (vlmtune/saving.py).
    saving.save_run(args.output_dir, write, "run_config.json", json.dumps(run_config, indent=2, default=str),
                    main_process=trainer.is_world_process_zero())
    saved = "adapter" if hasattr(model, "peft_config") else "model"
    if trainer.is_world_process_zero():
        print(f"{saved} and run_config.json saved to {args.output_dir}")
        print(f"training curves: {Path(args.output_dir, 'loss.png')}")



if __name__ == "__main__":
    main()
