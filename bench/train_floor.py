"""train.py's step against the floor, side by side, with each of issue 13's items on and off.

    python -m bench.train_floor                    # both vocabularies, every item, 3 alternating repeats
    python -m bench.train_floor --quick            # a smoke run: 3 steps of 2, one repeat (tests/test_train_bench.py)
    python -m bench.train_floor --json report.json --work_dir /tmp/floor   # the report as JSON, each run's console kept

The floor is the step with nothing else in it: forward, backward and optimizer step on the micro-batches train.py
would see, collated before the clock starts (no data loading, no Trainer loop), with the same model, LoRA and
settings. It is measured inside train.main itself: the project's Trainer is swapped for one whose epoch loop first
collates the epoch's micro-batches from the Trainer's own dataloader, then trains on them with a bare loop, so the
model is prepared exactly as for training (gradient checkpointing hooks, optimizer, scheduler, the project's loss).

Every other row is train.main as `sh train.sh` runs it, clocked by a subclass of the project's Trainer: the time
between the ends of consecutive optimizer steps (the first step, a warm-up, is left out), and within it the time spent
waiting for the step's batches (Trainer.get_batch_samples: collation in this process, or waiting on the DataLoader's
workers). The pad fraction is counted from each batch's attention mask. Each run is a process of its own, forked from
this one once torch and transformers are imported (a fresh interpreter per run would spend more time importing than
training), so its peak RSS (getrusage through wait4) is its own. The runs alternate (every variant once, then again),
and each figure is the median over the repeats; a ratio is taken within a repeat, then the median.

Variants: the floor; train.py's defaults; then each item with the others at their defaults: 1 torch threads (1 or
every core; train.sh gives every core), 2 frozen_in_graph (True or False, under gradient checkpointing), 3 logits
(all, suffix or supervised), 4 --train_sampling_strategy (random or group_by_length) and --packing (false or
true), 5 --dataloader_num_workers (0 or 1-2). A value equal to the default is the defaults' run, not measured twice; a
flag this code does not have yet is skipped with a note. Gradient checkpointing is on in every run (the issue's
setup; item 2 only shows with it).
Every run takes every core (as train.sh gives) unless --threads says otherwise: on a machine that other work keeps
busy, two threads spin against it and their times say more about the load than the code, so --threads 1 keeps the
ratios of items 2-5 readable while item 1 still compares 1 thread with every core.

Two vocabularies: the tiny random Qwen2-VL of vlmtune/tiny.py with Qwen2's real 151,936-token vocabulary, and the
same model with a byte-level BPE of 1,024 tokens learnt from the bench's own conversations (tiny.py builds only the
real one), where the vocabulary projection no longer dominates the step. The data: coco-mini's real photos and
captions where ../shared/fixtures is beside the clone (JPEG decoding and resizing, captions of varying length), else
the synthetic world (every caption the same length, so grouping cannot help).
"""

import argparse
import json
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, fields
from pathlib import Path

import peft  # noqa: F401  imported once here, not by every forked run
import torch
from transformers import TrainerCallback, TrainingArguments

import config
import csv2json
import data2csv
import train
from vlmtune import tiny
from vlmtune.trainer import PartsTrainer

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures"
SMALL_VOCABULARY = 1024
FULL = dict(examples=196, steps=8, batch_size=4, accumulation=2, repeats=3)
QUICK = dict(examples=16, steps=3, batch_size=2, accumulation=1, repeats=1)


# ------------------------------------------------------------------------------------------------- the clocks

class Clock:
    """Per optimizer step: its duration and the time spent waiting for its batches; and the tokens and positions of
    every micro-batch (the pad fraction)."""

    def __init__(self):
        self.durations, self.cpu, self.waits, self.losses = [], [], [], []
        self.tokens = self.positions = 0
        self.last_end = self.last_cpu = None

    def step_ended(self):
        now, cpu = time.perf_counter(), time.process_time()
        self.durations.append(now - self.last_end)
        self.cpu.append(cpu - self.last_cpu)
        self.last_end, self.last_cpu = now, cpu

    def count(self, batches):
        for batch in batches:
            mask = batch.get("attention_mask")
            if mask is None:  # a packed row (--packing true): every position a token
                mask = torch.ones_like(batch["input_ids"])
            self.tokens += int(mask.sum())
            self.positions += mask.numel()

    def record(self) -> dict:
        measured = self.durations[1:]  # the first step warms up (first allocations, the workers' start)
        waits = self.waits[1:len(self.durations)]
        return {"steps": len(self.durations), "seconds_per_step": statistics.mean(measured) if measured else None,
                "cpu_seconds_per_step": statistics.mean(self.cpu[1:]) if measured else None,
                "data_share": sum(waits) / sum(measured) if measured else None,
                "pad_fraction": 1 - self.tokens / self.positions if self.positions else None,
                "tokens": self.tokens, "positions": self.positions,
                "mean_loss": statistics.mean(self.losses) if self.losses else None}


class StepEnds(TrainerCallback):
    """Each optimizer step's duration: from the end of the one before (for the first, from its first batch's wait)
    to the end of this one; and the run's mean training loss."""

    def __init__(self, clock: Clock):
        self.clock = clock

    def on_step_end(self, args, state, control, **kwargs):
        self.clock.step_ended()

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "train_loss" in logs:
            self.clock.losses.append(logs["train_loss"])


class TimedTrainer(PartsTrainer):
    """The project's Trainer, clocked: train.main runs it as it runs PartsTrainer."""

    last = None

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.clock = Clock()
        self.add_callback(StepEnds(self.clock))
        type(self).last = self

    def get_batch_samples(self, epoch_iterator, num_batches, device):
        start = time.perf_counter()
        if self.clock.last_end is None:
            self.clock.last_end, self.clock.last_cpu = start, time.process_time()
        batches, num_items = super().get_batch_samples(epoch_iterator, num_batches, device)
        self.clock.waits.append(time.perf_counter() - start)
        self.clock.count(batches)
        return batches, num_items


class FloorTrainer(PartsTrainer):
    """The floor: the Trainer sets the model up as for training, then each epoch's micro-batches are collated before
    the clock starts and trained by a bare loop (forward and loss by the project's compute_loss, backward, gradient
    clipping, optimizer and scheduler step): no data loading, callbacks, logging or per-step bookkeeping."""

    last = None

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.clock = Clock()
        type(self).last = self

    def _run_epoch(self, model, epoch, train_dataloader, steps_in_epoch, num_update_steps_per_epoch, **unused):
        # transformers 5's per-epoch loop (Trainer._inner_training_loop calls it once an epoch): private, and the one
        # place where the Trainer has prepared everything and not yet trained.
        if hasattr(train_dataloader, "set_epoch"):
            train_dataloader.set_epoch(epoch)
        accumulation = self.args.gradient_accumulation_steps
        remainder = steps_in_epoch % accumulation or accumulation
        batches, steps = iter(train_dataloader), []
        for update in range(min(num_update_steps_per_epoch, self.state.max_steps - self.state.global_step)):
            wanted = accumulation if update != num_update_steps_per_epoch - 1 else remainder
            micro, num_items = self.get_batch_samples(batches, wanted, self.args.device)
            if not micro:
                break
            self.clock.count(micro)
            steps.append(([self._prepare_inputs(inputs) for inputs in micro], num_items))
        model.train()
        losses = []
        for micro, num_items in steps:
            self.clock.last_end, self.clock.last_cpu = time.perf_counter(), time.process_time()
            step_loss = 0.0
            for inputs in micro:
                with self.compute_loss_context_manager():
                    loss = self.compute_loss(model, inputs, num_items_in_batch=num_items)
                scaled = self.loss_is_scaled_for_ga  # the Trainer's training_step rule, as it is
                if scaled is None:
                    scaled = (self.model_accepts_loss_kwargs and num_items is not None) or \
                        self.compute_loss_func is not None
                if not scaled:
                    loss = loss / len(micro)
                self.accelerator.backward(loss)
                step_loss += loss.detach()
            if self.args.max_grad_norm > 0:
                self.accelerator.clip_grad_norm_(model.parameters(), self.args.max_grad_norm)
            self.optimizer.step()
            self.lr_scheduler.step()
            model.zero_grad()
            self.state.global_step += 1
            self.clock.step_ended()
            losses.append(step_loss)
        self.clock.losses += [float(loss) for loss in losses]
        if self.state.global_step >= self.state.max_steps or not steps:
            self.control.should_training_stop = True


# ------------------------------------------------------------------------------------------------- the variants

@dataclass
class Variant:
    item: str  # "floor", "train.py", "1 threads", ...
    name: str  # "floor", "defaults", "threads=1", "logits=all", ...
    flags: tuple = ()
    threads: int = 0
    floor: bool = False
    same_as: str | None = None  # this value is the default: the defaults' run measures it
    skipped: str | None = None  # why it is not measured


def default_of(setting: str):
    """The value train.py gives `setting` when no flag names it, or KeyError where this code has no such flag."""
    for group in (config.TuneConfig, TrainingArguments):
        for f in fields(group):
            if f.name == setting:
                if group is TrainingArguments and setting in config.training_defaults():
                    return config.training_defaults()[setting]
                return f.default
    raise KeyError(setting)


def spelled(value) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def variants(threads: int, cores: int, workers: int) -> list[Variant]:
    """The floor, the defaults, then each item's values with everything else at its default; every run on `threads`
    torch threads but item 1's, which compares 1 thread with `cores`."""
    rows = [Variant("floor", "floor", threads=threads, floor=True), Variant("train.py", "defaults", threads=threads)]
    rows += [Variant("1 threads", f"threads={n}", threads=n, same_as="defaults" if n == threads else None)
             for n in dict.fromkeys((1, cores))]
    items = (("2 frozen_in_graph", "frozen_in_graph", (True, False)),
             ("3 logits", "logits", ("all", "suffix", "supervised")),
             ("4 train_sampling_strategy", "train_sampling_strategy", ("random", "group_by_length")),
             ("4 train_sampling_strategy", "packing", (False, True)),  # item 4's other half: no padding at all
             ("5 dataloader_num_workers", "dataloader_num_workers", (0, workers)))
    for item, setting, values in items:
        try:
            default = spelled(default_of(setting))
        except KeyError:
            default = None
        for value in values:
            name = f"{setting}={spelled(value)}"
            if default is None:
                rows.append(Variant(item, name, skipped=f"--{setting} does not exist in this code yet"))
            else:
                rows.append(Variant(item, name, (f"--{setting}", spelled(value)), threads,
                                    same_as="defaults" if spelled(value) == default else None))
    return rows


# ------------------------------------------------------------------------------------------------- the runs

def in_child(log: Path, function, *args):
    """(function(*args), peak RSS in MiB) from a forked process whose console goes to `log`; a failure raises
    RuntimeError with the end of that console."""
    result_file = log.with_suffix(".json")
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            out = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            os.dup2(out, 1)
            os.dup2(out, 2)
            result = function(*args)
            sys.stdout.flush()
            result_file.write_text(json.dumps(result))
            code = 0
        except BaseException:  # the child must never return into the parent's code
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    _, status, usage = os.wait4(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0 or not result_file.is_file():
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:]) if log.is_file() else ""
        raise RuntimeError(f"{log.stem} failed (console: {log}):\n{tail}")
    return json.loads(result_file.read_text()), usage.ru_maxrss / 1024  # ru_maxrss is in KiB on Linux


def measure(variant: Variant, flags: list[str], log: Path) -> dict:
    """One run of train.main with the variant's settings (in a forked process): its clock's record, the thread count
    train.py printed, and what it ran with."""
    os.environ["OMP_NUM_THREADS"] = str(variant.threads)  # as accelerate launch --num_cpu_threads_per_process sets it
    torch.set_num_threads(variant.threads)
    trainer_class = FloorTrainer if variant.floor else TimedTrainer
    train.PartsTrainer = trainer_class  # train.main builds the project's Trainer by this name
    start = time.perf_counter()
    train.main(flags + list(variant.flags))
    run_seconds = time.perf_counter() - start
    sys.stdout.flush()
    trainer = trainer_class.last
    printed = re.search(r"process(?:es)? on \w+, (\d+) CPU threads each", log.read_text(errors="replace"))
    return trainer.clock.record() | {
        "threads": int(printed.group(1)) if printed else None, "run_seconds": run_seconds,
        "sampling": trainer.args.train_sampling_strategy, "workers": trainer.args.dataloader_num_workers,
        "sampler": type(trainer._get_train_sampler()).__name__}


def prepare_data(folder: Path, examples: int) -> dict:
    """train.json of `examples` conversations through data2csv.py and csv2json.py: coco-mini where the fixtures are,
    else the synthetic world."""
    coco = FIXTURES / "coco-mini"
    if coco.is_dir():
        data2csv.main(["--source", "coco", "--coco_annotations", str(coco / "annotations/captions_train2017.json"),
                       "--coco_images", str(coco / "train2017"), "--data_dir", str(folder), "--num_samples", "0"])
        source = "coco-mini (real photos, COCO captions)"
    else:
        data2csv.main(["--data_dir", str(folder), "--num_samples", str(examples + 8)])
        source = "the synthetic world (data2csv.py's default)"
    csv2json.main(["--data_dir", str(folder), "--val_size", "8"])
    records = json.loads((folder / "train.json").read_text())[:examples]
    (folder / "train.json").write_text(json.dumps(records))
    return {"source": source, "examples": len(records)}


def conversation_texts(data: Path) -> list[str]:
    """The words of train.json's conversations and of the chat template, for the small vocabulary's BPE."""
    texts = ["You are a helpful assistant.", "system\n", "user\n", "assistant\n"]
    for record in json.loads((data / "train.json").read_text()):
        texts += [re.sub(r"<\|vision_start\|>.*?<\|vision_end\|>", "", turn["value"]) for turn in
                  record["conversations"]]
    return texts


def small_vocabulary_qwen2_vl(texts: list[str], size: int = SMALL_VOCABULARY, seed: int = 0):
    """(model, processor): vlmtune.tiny's random Qwen2-VL with a byte-level BPE of `size` tokens learnt from `texts`
    in place of Qwen2's vocabulary, Qwen2's special tokens first: the same architecture, chat template and image
    settings, and a vocabulary projection of `size` rows instead of 151,936."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import (Qwen2Tokenizer, Qwen2VLForConditionalGeneration, Qwen2VLImageProcessor,
                              Qwen2VLProcessor, Qwen2VLVideoProcessor)

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    backend.train_from_iterator(texts, trainers.BpeTrainer(
        vocab_size=size, special_tokens=list(tiny.QWEN2_SPECIAL_TOKENS), show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer = Qwen2Tokenizer(tokenizer_object=backend, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                               bos_token=None, unk_token=None, errors="replace", model_max_length=32768,
                               clean_up_tokenization_spaces=False,
                               additional_special_tokens=list(tiny.QWEN2_SPECIAL_TOKENS[1:]))
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in tiny.QWEN2_SPECIAL_TOKENS}
    model_config = tiny.tiny_qwen2_vl_config()
    text_config = model_config.text_config
    text_config.vocab_size = size
    text_config.bos_token_id, text_config.eos_token_id = ids["<|endoftext|>"], ids["<|im_end|>"]
    model_config.image_token_id, model_config.video_token_id = ids["<|image_pad|>"], ids["<|video_pad|>"]
    model_config.vision_start_token_id, model_config.vision_end_token_id = (ids["<|vision_start|>"],
                                                                            ids["<|vision_end|>"])
    torch.manual_seed(seed)
    model = Qwen2VLForConditionalGeneration(model_config)
    model.generation_config.bos_token_id = model.generation_config.pad_token_id = ids["<|endoftext|>"]
    model.generation_config.eos_token_id = [ids["<|im_end|>"], ids["<|endoftext|>"]]
    processor = Qwen2VLProcessor(image_processor=Qwen2VLImageProcessor(min_pixels=3136, max_pixels=12845056),
                                 tokenizer=tokenizer, video_processor=Qwen2VLVideoProcessor(),
                                 chat_template=tiny.QWEN2_VL_CHAT_TEMPLATE)
    return model, processor


def build_model(vocabulary: str, folder: Path, data: Path) -> dict:
    model, processor = (tiny.build_tiny_qwen2_vl() if vocabulary == "real" else
                        small_vocabulary_qwen2_vl(conversation_texts(data)))
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return {"vocab_size": model.config.text_config.vocab_size, "tokenizer_size": len(processor.tokenizer),
            "lm_head_rows": model.get_output_embeddings().weight.shape[0]}


# ------------------------------------------------------------------------------------------------- the report

def summarise(rows: list[Variant], runs: dict, rss: dict, repeats: int) -> list[dict]:
    """One entry a variant: medians over the repeats, the ratio to the floor taken within each repeat."""
    out = []
    floor = runs.get("floor", [])
    for row in rows:
        entry = {"item": row.item, "variant": row.name, "flags": " ".join(row.flags), "threads_asked": row.threads,
                 "same_as": row.same_as, "skipped": row.skipped, "measured": False}
        source = row.same_as or row.name
        if row.skipped is None and runs.get(source):
            records = runs[source]
            per_step = [r["seconds_per_step"] for r in records]
            cpu = [r["cpu_seconds_per_step"] for r in records]
            ratios = [r["seconds_per_step"] / f["seconds_per_step"] for r, f in zip(records, floor)]
            entry |= {"measured": True, "seconds_per_step": statistics.median(per_step),
                      "seconds_per_step_each": per_step, "ratio_to_floor": statistics.median(ratios),
                      "cpu_seconds_per_step": statistics.median(cpu), "cpu_seconds_per_step_each": cpu,
                      "ratio_to_floor_each": ratios,
                      "pad_fraction": statistics.median(r["pad_fraction"] for r in records),
                      "data_share": statistics.median(r["data_share"] for r in records),
                      "peak_rss_mib": statistics.median(rss[source]),
                      "threads": records[0]["threads"], "sampler": records[0]["sampler"],
                      "workers": records[0]["workers"], "mean_loss": records[0]["mean_loss"],
                      "steps": records[0]["steps"], "tokens": records[0]["tokens"],
                      "positions": records[0]["positions"]}
        out.append(entry)
    return out


def table(entries: list[dict]) -> str:
    lines = ["| item | variant | s/step | x floor | CPU s/step | pad fraction | data share | peak RSS (MiB) | "
             "threads |", "|---|---|---|---|---|---|---|---|---|"]
    for e in entries:
        if not e["measured"]:
            note = e["skipped"] or "not measured"
            lines.append(f"| {e['item']} | {e['variant']} | skipped: {note} | | | | | | |")
            continue
        name = e["variant"] + (" (the defaults)" if e["same_as"] else "")
        data = "-" if e["variant"] == "floor" else f"{e['data_share']:.3f}"
        lines.append(f"| {e['item']} | {name} | {e['seconds_per_step']:.3f} | {e['ratio_to_floor']:.3f} | "
                     f"{e['cpu_seconds_per_step']:.3f} | {e['pad_fraction']:.3f} | {data} | "
                     f"{e['peak_rss_mib']:.0f} | {e['threads']} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: " + ", ".join(f"{k} {v}" for k, v in
                                                                                        QUICK.items()))
    for key, value in FULL.items():
        parser.add_argument(f"--{key}", type=int, default=None, help=f"default {value} ({QUICK[key]} with --quick)")
    parser.add_argument("--vocab", default="real,small", help="real, small or both (real,small)")
    parser.add_argument("--cores", type=int, default=None,
                        help="item 1's every-core thread count (default: every core this process may use)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads of every other run (default: --cores, as train.sh gives; 1 keeps "
                             "items 2-5 readable on a machine that other work keeps busy)")
    parser.add_argument("--workers", type=int, default=None, help="item 5's worker count (default: 1-2, cores - 1)")
    parser.add_argument("--json", default=None, help="write the report as JSON here too")
    parser.add_argument("--work_dir", default=None, help="keep the data, models and each run's console here")
    args = parser.parse_args(argv)
    settings = {key: getattr(args, key) if getattr(args, key) is not None else (QUICK if args.quick else FULL)[key]
                for key in FULL}
    vocabularies = [v.strip() for v in args.vocab.split(",") if v.strip()]
    if not vocabularies or set(vocabularies) - {"real", "small"}:
        parser.error(f"--vocab: real, small or real,small, not {args.vocab!r}")
    cores = args.cores or len(os.sched_getaffinity(0))
    workers = args.workers if args.workers is not None else min(2, max(1, cores - 1))
    threads = args.threads or cores
    rows = variants(threads, cores, workers)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(args.work_dir or scratch)
        work.mkdir(parents=True, exist_ok=True)
        data = work / "data"
        shutil.rmtree(data, ignore_errors=True)
        data_info, _ = in_child(work / "prepare-data.log", prepare_data, data, settings["examples"])
        models = {}
        for vocabulary in vocabularies:
            models[vocabulary], _ = in_child(work / f"build-{vocabulary}.log", build_model, vocabulary,
                                             work / f"model-{vocabulary}", data)
        print(f"data: {data_info['source']}, {data_info['examples']} training examples; {threads} threads a run, "
              f"item 1 against {cores}; "
              f"{settings['steps']} steps of {settings['batch_size']} x {settings['accumulation']}, "
              f"{settings['repeats']} repeats; OMP_WAIT_POLICY {os.environ.get('OMP_WAIT_POLICY', '(unset)')}; "
              f"load average {os.getloadavg()[0]:.1f} at the start")
        for row in rows:
            if row.skipped:
                print(f"skipped {row.name}: {row.skipped}")
        measured = [row for row in rows if row.skipped is None and row.same_as is None]
        order = [(vocabulary, row) for row in measured for vocabulary in vocabularies]
        runs = {v: {} for v in vocabularies}
        rss = {v: {} for v in vocabularies}
        for repeat in range(settings["repeats"]):
            for vocabulary, row in order:
                out = work / f"out-{vocabulary}-{re.sub(r'[^A-Za-z0-9_.-]+', '_', row.name)}"
                shutil.rmtree(out, ignore_errors=True)
                flags = ["--data_dir", str(data), "--model_dir", str(work / f"model-{vocabulary}"),
                         "--output_dir", str(out), "--report_to", "none", "--disable_tqdm", "true",
                         "--per_device_train_batch_size", str(settings["batch_size"]),
                         "--gradient_accumulation_steps", str(settings["accumulation"]),
                         "--max_steps", str(settings["steps"]), "--gradient_checkpointing", "true",
                         "--lora_r", "64", "--lora_alpha", "16",
                         "--lora_modules", "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj",
                         "--save_strategy", "no"]
                log = work / f"run-{vocabulary}-{out.name.removeprefix(f'out-{vocabulary}-')}-{repeat}.log"
                record, peak = in_child(log, measure, row, flags, log)
                shutil.rmtree(out, ignore_errors=True)
                runs[vocabulary].setdefault(row.name, []).append(record)
                rss[vocabulary].setdefault(row.name, []).append(peak)
                print(f"[{repeat + 1}/{settings['repeats']}] {vocabulary:5s} {row.name:40s} "
                      f"{record['seconds_per_step']:.3f} s/step, data {record['data_share']:.3f}, pad "
                      f"{record['pad_fraction']:.3f}, {peak:.0f} MiB; run {record['run_seconds']:.0f} s", flush=True)
        report = {"settings": settings | {"cores": cores, "threads": threads, "workers": workers,
                                          "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "(unset)"),
                                          "gradient_checkpointing": True,
                                          "lora": "r 64, alpha 16, q/k/v/o/gate/up/down"} | data_info,
                  "load_average_end": os.getloadavg()[0], "wall_seconds": time.perf_counter() - started,
                  "vocabularies": {}}
        for vocabulary in vocabularies:
            entries = summarise(rows, runs[vocabulary], rss[vocabulary], settings["repeats"])
            report["vocabularies"][vocabulary] = models[vocabulary] | {"rows": entries}
            print(f"\n### vocabulary {models[vocabulary]['vocab_size']:,} ({vocabulary})\n")
            print(table(entries))
            floor, defaults = (next(e for e in entries if e["variant"] == name) for name in ("floor", "defaults"))
            examples = defaults["steps"] * settings["batch_size"] * settings["accumulation"]
            print(f"\nmean loss: floor {floor['mean_loss']:.4f}, train.py's defaults {defaults['mean_loss']:.4f} "
                  f"(the same micro-batches); {defaults['tokens'] / examples:.1f} tokens an example")
        print(f"\n{report['wall_seconds']:.0f} s in all; load average {report['load_average_end']:.1f} at the end")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
