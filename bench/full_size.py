"""A full-size model, random weights, through the project's steps on one real photo, on the CPU.

    python -m bench.full_size                          # Qwen2-VL-2B-Instruct's config, 2.2 B parameters: 16 min
    python -m bench.full_size --layers 1               # the same harness on a 1-layer cut, in 1.5 min
    python -m bench.full_size --family qwen2.5-vl-7b   # stops with the arithmetic where memory is short

From the real config, processor and generation config in ../shared/fixtures/<family>/ (no weights there), the model is
built with seeded random weights in bf16 and saved as a hub download would be: the weights in safetensors, the other
files as they are. Then, on one 640x480 COCO photo with its five official captions:

1. data: data2csv.py reads an official captions file that holds that photo alone; csv2json.py writes train.json
   (one image cannot be split, so val.json is written here, by formats.rows_to_conversations as csv2json.py writes
   it: the first caption of the same photo);
2. train: one LoRA step of train.py (--bf16 true, the image pixel limits given); the loss must be finite, every
   lora_B non-zero (peft starts B at zero), the adapter only LoRA weights, and the base folder's files unchanged;
3. test: test.py answers the validation row with the base model and with the adapter (8 new tokens);
4. merge: merge.py writes <run>-merged; every weight LoRA does not touch must equal the base's, bit for bit, and every
   one it does must equal base + (lora_alpha / r) B A to bf16 rounding;
5. reload: the merged folder through plain AutoModelForImageTextToText / AutoProcessor, and base + adapter
   (vlmtune.modeling.load_trained and vlmtune.generation.generate), answer the photo greedily, one model in memory at
   a time, both in fp32 (load_trained's dtype; bf16 matrix products are many times slower than fp32 on a CPU without
   AVX-512 BF16). The folder must give the tokens of the same merge made in memory and rounded to bf16, as merge.py
   saves it. Whether it also gives base + adapter's tokens is printed, not checked: one step at 1e-4 moves the
   weights by less than bf16 can hold, and on random weights, whose next-token scores are nearly tied, that is
   enough to change the answer (bench/RESULTS.md).

Prints each stage's wall time and peak resident memory (sampled) and the process's peak (getrusage); exits non-zero
when a check fails. bench/RESULTS.md has the figures measured.
"""

import argparse
import ast
import contextlib
import ctypes
import gc
import hashlib
import io
import json
import math
import os
import re
import resource
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
import torch
from PIL import Image
from safetensors import safe_open
from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor
from transformers.core_model_loading import revert_weight_conversion

import csv2json
import data2csv
import merge
import test
import train
from vlmtune import formats, generation
from vlmtune.collator import TrainCollator
from vlmtune.modeling import load_processor, load_trained

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT.parent / "shared" / "fixtures"
FAMILIES = {"qwen2-vl-2b": "qwen2-vl-2b-instruct", "qwen2.5-vl-7b": "qwen2.5-vl-7b-instruct"}
GB = 1e9


class Stages:
    """Wall time and peak memory of each stage, sampled every 0.1 s by a thread (psutil), so a peak shorter than that
    can be missed: the process's getrusage peak bounds them all. Two figures: the resident set (RSS), and its
    anonymous part (RSS less file-backed pages): while safetensors are read, the file's pages count in RSS, but the
    kernel can drop them, so the anonymous part is what the stage takes from everyone else."""

    def __init__(self):
        self.rows, self.process = [], psutil.Process()

    def memory(self) -> tuple[int, int]:
        info = self.process.memory_info()
        return info.rss, info.rss - info.shared

    @contextlib.contextmanager
    def stage(self, name):
        peak, done = list(self.memory()), threading.Event()

        def sample():
            while not done.wait(0.1):
                peak[:] = map(max, peak, self.memory())

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        start = time.perf_counter()
        print(f"\n==== {name}", flush=True)
        try:
            yield
        finally:
            seconds = time.perf_counter() - start
            done.set()
            sampler.join()
            peak[:] = map(max, peak, self.memory())
            # train.main's Trainer and model sit in a reference cycle: without this they would stay resident
            # through the next stages. malloc_trim hands the freed heap back, so each stage's peak is its own.
            gc.collect()
            ctypes.CDLL("libc.so.6").malloc_trim(0)
            self.rows.append((name, seconds, *peak))
            print(f"==== {name}: {seconds:.1f} s, peak RSS {peak[0] / GB:.2f} GB ({peak[1] / GB:.2f} GB anonymous)",
                  flush=True)

    def table(self) -> str:
        lines = ["| stage | wall time | peak RSS | of it anonymous |", "|---|---|---|---|"]
        lines += [f"| {name} | {seconds:.0f} s | {rss / GB:.1f} GB | {anonymous / GB:.1f} GB |"
                  for name, seconds, rss, anonymous in self.rows]
        total = sum(row[1] for row in self.rows)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kilobytes on Linux
        lines.append(f"| all | {total:.0f} s | {peak / GB:.1f} GB (getrusage) | |")
        return "\n".join(lines)


class Checks:
    def __init__(self):
        self.failed = []

    def __call__(self, condition, what):
        print(f"{'ok  ' if condition else 'FAIL'} {what}", flush=True)
        if not condition:
            self.failed.append(what)


class Tee(io.TextIOBase):
    """Writes to the console and keeps a copy, so the Trainer's printed logs can be read back."""

    def __init__(self, console):
        self.console, self.copy = console, io.StringIO()

    def write(self, text):
        self.console.write(text)
        return self.copy.write(text)

    def flush(self):
        self.console.flush()


def weights(folder) -> dict[str, Path]:
    """Each tensor name of a model folder's safetensors files -> the file that holds it."""
    names = {}
    for path in sorted(Path(folder).glob("*.safetensors")):
        with safe_open(str(path), "pt") as f:
            names.update(dict.fromkeys(f.keys(), path))
    return names


def tensor(names, key) -> torch.Tensor:
    with safe_open(str(names[key]), "pt") as f:
        return f.get_tensor(key)


def digest(folder) -> str:
    sha = hashlib.sha256()
    for path in sorted(Path(folder).glob("*.safetensors")):
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 24), b""):
                sha.update(block)
    return sha.hexdigest()


def greedy(model, processor, questions) -> tuple[torch.Tensor, torch.Tensor, str]:
    """(prompt ids, new token ids, answer) of vlmtune.generation.generate on one question, 8 new tokens: the ids are
    kept from the model.generate call it makes."""
    plain, calls = model.generate, []

    def generate(**kwargs):
        output = plain(**kwargs)
        calls.append((kwargs["input_ids"], output[:, kwargs["input_ids"].shape[1]:]))
        return output

    model.generate = generate
    answers = generation.generate(model, processor, questions, max_new_tokens=8)
    model.generate = plain
    (prompt, new), = calls
    return prompt, new, answers[0]


def photo_640x480(images_dir: Path) -> Path:
    return next(p for p in sorted(images_dir.glob("*.jpg")) if Image.open(p).size == (640, 480))


def model_config(fixture: Path, layers: int):
    """The fixture's config; with `layers`, cut to that many language and vision layers, to check the harness fast."""
    config = AutoConfig.from_pretrained(fixture)
    if layers:
        text = config.text_config
        text.num_hidden_layers, text.layer_types = layers, text.layer_types[:layers]
        config.vision_config.depth = layers
    return config


def build(fixture: Path, layers: int, seed: int, model_dir: Path) -> int:
    torch.manual_seed(seed)
    model = AutoModelForImageTextToText.from_config(model_config(fixture, layers), dtype=torch.bfloat16)
    n = sum(p.numel() for p in model.parameters())
    model.save_pretrained(model_dir)
    # The other files as a hub download has them, not as transformers would rewrite them: the real
    # preprocessor_config.json keeps its own min_pixels / max_pixels keys, which a re-save drops.
    for path in fixture.iterdir():
        if path.name not in ("LICENSE", "model.safetensors.index.json") and (path.name != "config.json" or not layers):
            shutil.copyfile(path, model_dir / path.name)
    del model
    gc.collect()
    return n


def write_data(annotations: Path, photo: Path, data_dir: Path) -> list[str]:
    """data2csv.py and csv2json.py on an official captions file that holds `photo` alone; val.json written here."""
    coco = json.loads(annotations.read_text())
    image = next(i for i in coco["images"] if i["file_name"] == photo.name)
    one = dict(coco, images=[image], annotations=[a for a in coco["annotations"] if a["image_id"] == image["id"]])
    subset = data_dir.parent / f"captions_{photo.stem}.json"
    subset.write_text(json.dumps(one))
    data2csv.main(["--source", "coco", "--coco_annotations", str(subset), "--coco_images", str(photo.parent),
                   "--num_samples", "0", "--data_dir", str(data_dir)])
    # One image cannot be split (csv2json holds out round(0.15 x 1) = 0 images): all captions go to train.json.
    csv2json.main(["--source", "coco", "--data_dir", str(data_dir), "--val_size", "0.15"])
    rows = formats.read_csv(data_dir / "data.csv", "caption")
    val = formats.rows_to_conversations(rows[:1], "caption", "Describe this image.")
    formats.write_atomically(str(data_dir / "val.json"), json.dumps(val, ensure_ascii=False, indent=2) + "\n")
    return [row["caption"] for row in rows]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", choices=FAMILIES, default="qwen2-vl-2b")
    parser.add_argument("--fixtures", default=str(FIXTURES), help="the shared reference fixtures folder")
    parser.add_argument("--layers", type=int, default=0,
                        help="cut the language model and the vision tower to this many layers (0: the real depth)")
    parser.add_argument("--image_min_pixels", type=int, default=3136)
    parser.add_argument("--image_max_pixels", type=int, default=78400)
    parser.add_argument("--max_memory_gb", type=float, default=12.0,
                        help="refuse to start when the largest stage would need more (GB)")
    parser.add_argument("--work_dir", default="", help="keep the model folders and the run here (default: a "
                        "temporary folder, removed at the end)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    fixtures = Path(args.fixtures)
    fixture = fixtures / FAMILIES[args.family]
    if not fixture.is_dir():
        raise SystemExit(f"{fixture} not found: this benchmark reads the shared reference fixtures (--fixtures)")
    with torch.device("meta"):  # the exact parameter count, without memory
        skeleton = AutoModelForImageTextToText.from_config(model_config(fixture, args.layers))
        n_estimate = sum(p.numel() for p in skeleton.parameters())
    # On the CPU test.py and merge.py work in fp32 (vlmtune.modeling.inference_placement), and load_trained loads
    # in fp32 by default: 4 bytes a weight.
    need = n_estimate * 4 / GB
    print(f"{args.family}: {n_estimate / 1e9:.2f} B parameters: {n_estimate * 2 / GB:.1f} GB in bf16 (build, train), "
          f"{need:.1f} GB in fp32 (test.py, merge.py, load_trained); machine "
          f"{psutil.virtual_memory().total / GB:.0f} GB")
    if need > args.max_memory_gb:
        raise SystemExit(f"Not run: test.py's fp32 base alone needs {need:.1f} GB (train.py's bf16 one "
                         f"{need / 2:.1f} GB), over --max_memory_gb {args.max_memory_gb:g}.")

    with contextlib.ExitStack() as stack:
        work = Path(args.work_dir or stack.enter_context(tempfile.TemporaryDirectory(prefix="full-size-")))
        work.mkdir(parents=True, exist_ok=True)
        return run(args, fixture, fixtures / "coco-mini", work)


def run(args, fixture: Path, coco: Path, work: Path) -> int:
    stages, check = Stages(), Checks()
    model_dir, data_dir, run_dir = work / "model", work / "data", work / "run"
    merged_dir = Path(f"{run_dir}-merged")
    photo = photo_640x480(coco / "train2017")
    empty = work / "no-test-img"
    empty.mkdir(exist_ok=True)

    with stages.stage("build + save"):
        n_parameters = build(fixture, args.layers, args.seed, model_dir)
        base_digest = digest(model_dir)
    print(f"{n_parameters:,} parameters, {sum(p.stat().st_size for p in model_dir.glob('*.safetensors')) / GB:.2f} GB "
          f"of safetensors in {model_dir}")

    with stages.stage("data2csv + csv2json"):
        captions = write_data(coco / "annotations" / "captions_train2017.json", photo, data_dir)
        processor = load_processor(str(model_dir), args.image_min_pixels, args.image_max_pixels)
        train_conversation = formats.load_conversations(data_dir / "train.json")[0]
        batch = TrainCollator(processor)([{"messages": formats.to_messages(train_conversation, data_dir)}])
        image_tokens = int((batch["input_ids"] == AutoConfig.from_pretrained(model_dir).image_token_id).sum())
    check(len(captions) == 5, f"{photo.name}: {len(captions)} captions in data.csv")
    print(f"training sample: {batch['input_ids'].shape[1]} tokens, {image_tokens} image tokens "
          f"(image_grid_thw {batch['image_grid_thw'].tolist()})")

    with stages.stage("train.py, 1 LoRA step"):
        console = Tee(sys.stdout)
        with contextlib.redirect_stdout(console):
            # --learning_rate, --image_max_pixels and --output_dir: what train.py asks of a real checkpoint
            train.main(["--model_dir", str(model_dir), "--data_dir", str(data_dir), "--output_dir", str(run_dir),
                        "--learning_rate", "1e-4", "--image_min_pixels", str(args.image_min_pixels),
                        "--image_max_pixels", str(args.image_max_pixels), "--max_steps", "1",
                        "--per_device_train_batch_size", "1", "--report_to", "none", "--save_strategy", "no",
                        "--logging_steps", "1",
                        # the Trainer allows bf16 without a GPU only when told to use the CPU
                        "--bf16", "true", "--use_cpu", "true",
                        # the offline defaults' 10 warm-up steps would make the one step's rate 0: B stays zero
                        "--warmup_steps", "0"])
    # the Trainer's printed logs, {'loss': '12.34', ...}, wherever a progress bar left them on a line
    logs = [ast.literal_eval(text) for text in re.findall(r"\{'[^{}]*\}", console.copy.getvalue())]
    loss = float(next((log["loss"] for log in logs if "loss" in log), "nan"))  # printed with 4 digits
    check(math.isfinite(loss), f"training loss {loss} is finite")

    with stages.stage("adapter checks"):
        adapter = weights(run_dir)
        check(bool(adapter) and all(".lora_A." in k or ".lora_B." in k for k in adapter),
              f"the adapter holds LoRA weights only ({len(adapter)} tensors)")
        zero_b = [k for k in adapter if ".lora_B." in k and not tensor(adapter, k).any()]
        check(not zero_b, f"every lora_B moved off zero after one step ({len(zero_b)} still zero, e.g. {zero_b[:2]})")
        check(digest(model_dir) == base_digest, "the base folder's safetensors are unchanged (sha256) after training")

    with stages.stage("test.py, base and adapter"):
        metrics = test.main(["--run_dir", str(run_dir), "--max_new_tokens", "8", "--test_img_dir", str(empty)])
    predictions = [json.loads(line) for line in (run_dir / "predictions.jsonl").read_text().splitlines()]
    check(len(predictions) == 1 and metrics["n"] == 1, f"test.py answered {len(predictions)} validation row")
    test_answers = predictions[0]

    with stages.stage("merge.py"):
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            merge.main(["--run_dir", str(run_dir)])
        print(printed.getvalue(), end="")
        merged_checks(check, model_dir, run_dir, merged_dir)
        check(digest(model_dir) == base_digest, "the base folder's safetensors are unchanged (sha256) after merging")
        check("smaller than bfloat16's resolution" in printed.getvalue(),
              "merge.py warns that bf16 rounding loses most of this one-step update")

    val = formats.load_conversations(data_dir / "val.json")
    questions = [generation.prompt_messages(formats.to_messages(val[0], data_dir))]
    with stages.stage("base + adapter greedy (load_trained)"):
        processor = load_processor(str(model_dir), args.image_min_pixels, args.image_max_pixels)
        model, _ = load_trained(str(run_dir), str(model_dir))
        tuned = greedy(model, processor, questions)
        # what merge.py saves, made here in memory: merged in fp32, rounded to the base's bf16
        model = model.merge_and_unload()
        for parameter in model.parameters():  # in place: a new fp32 copy of each would fragment the heap by GBs
            parameter.data.copy_(parameter.data.to(torch.bfloat16))
        rounded = greedy(model, processor, questions)
        del model
    with stages.stage("merged greedy (AutoModel)"):
        processor = AutoProcessor.from_pretrained(merged_dir)
        model = AutoModelForImageTextToText.from_pretrained(merged_dir, dtype=torch.float32)
        merged = greedy(model, processor, questions)
        image_token_id = model.config.image_token_id
        del model
    with stages.stage("merge.py --merged_dtype float32, greedy"):
        merge.main(["--run_dir", str(run_dir), "--merged_dir", f"{merged_dir}-fp32", "--merged_dtype", "float32"])
        model = AutoModelForImageTextToText.from_pretrained(f"{merged_dir}-fp32", dtype=torch.float32)
        merged_fp32 = greedy(model, AutoProcessor.from_pretrained(f"{merged_dir}-fp32"), questions)
        del model
        shutil.rmtree(f"{merged_dir}-fp32")
    check(torch.equal(tuned[1], merged_fp32[1]), f"the float32 merged folder gives base + adapter's greedy tokens: "
                                                 f"{merged_fp32[1].tolist()} {merged_fp32[2]!r}")
    tokens = {name: int((ids == image_token_id).sum()) for name, (ids, _, _) in
              (("adapter", tuned), ("in-memory merge", rounded), ("merged folder", merged))}
    check(torch.equal(tuned[0], merged[0]) and torch.equal(rounded[0], merged[0]),
          f"the same prompt for all three ({merged[0].shape[1]} tokens, image tokens {tokens})")
    check(test_answers["prediction"] == tuned[2], "test.py's adapter answer is the one load_trained gives")
    check(torch.equal(rounded[1], merged[1]), f"the merged folder's greedy tokens are those of the same merge in "
                                              f"memory, rounded to bf16: {merged[1].tolist()} {merged[2]!r}")
    # Not a check: one step at this rate moves the weights by less than bf16 can hold (merged_checks counts how many
    # elements it moved at all), so on random weights, whose next-token scores are nearly tied, the merged folder
    # answers like the base, and base + adapter (which keeps the update in fp32) may answer otherwise.
    match = torch.equal(tuned[1], merged[1])
    print(f"base + adapter {tuned[1].tolist()} {tuned[2]!r}\nmerged folder  {merged[1].tolist()} {merged[2]!r}\n"
          f"test.py base   {test_answers['base']!r}\nmerged folder = base + adapter: {'yes' if match else 'no'}; "
          f"merged folder = base: {'yes' if merged[2] == test_answers['base'] else 'no'}")

    print(f"\n{args.family}{f' cut to {args.layers} layers' if args.layers else ''}: {n_parameters / 1e9:.2f} B "
          f"parameters, photo {photo.name} (640x480), image tokens {image_tokens} (limits {args.image_min_pixels}.."
          f"{args.image_max_pixels} pixels), loss {loss:.4f}, greedy tokens of base + adapter and of the merged "
          f"folder: bf16 {'match' if match else 'differ'}, float32 "
          f"{'match' if torch.equal(tuned[1], merged_fp32[1]) else 'differ'}")
    print(stages.table())
    if check.failed:
        print(f"\n{len(check.failed)} checks failed:\n  " + "\n  ".join(check.failed))
        return 1
    return 0


def merged_checks(check, model_dir: Path, run_dir: Path, merged_dir: Path):
    """Weights LoRA does not touch are the base's bit for bit; the ones it does are W + (alpha / r) B A, computed in
    fp32 and rounded once to the folder's bf16. One tensor in memory at a time."""
    base, merged, adapter = weights(model_dir), weights(merged_dir), weights(run_dir)
    lora = json.loads((run_dir / "adapter_config.json").read_text())
    scale = lora["lora_alpha"] / lora["r"]
    # The adapter names modules (model.language_model.layers.0...), the folder holds the checkpoint's names
    # (model.layers.0...): save_pretrained renames them back with this function, so it maps them here too.
    with torch.device("meta"):
        skeleton = AutoModelForImageTextToText.from_config(AutoConfig.from_pretrained(model_dir))
    modules = skeleton.state_dict()
    targets = {}
    for a_key in (k for k in adapter if ".lora_A." in k):
        name = a_key.removeprefix("base_model.model.").replace(".lora_A.weight", ".weight")
        targets[next(iter(revert_weight_conversion(skeleton, {name: modules[name]})))] = a_key
    check(set(merged) == set(base), f"the merged folder has the base's {len(base)} tensor names")
    untouched = [k for k in base if k not in targets and not torch.equal(tensor(base, k), tensor(merged, k))]
    check(set(targets) <= set(base), f"the {len(targets)} LoRA targets are weights of the base folder")
    check(not untouched, f"{len(base) - len(targets)} weights without LoRA equal the base's ({len(untouched)} differ)")
    off, unchanged, moved, elements, largest = [], [], 0, 0, 0.0
    for key, a_key in targets.items():
        w, m = tensor(base, key).float(), tensor(merged, key).float()
        b_key = a_key.replace(".lora_A.", ".lora_B.")
        delta = scale * (tensor(adapter, b_key).float() @ tensor(adapter, a_key).float())
        expected = w + delta
        # one bf16 rounding of the sum: at most half a unit in the last place, 2^-8 of its magnitude
        if not ((m - expected).abs() <= expected.abs() * 2 ** -8 + 1e-30).all():
            off.append(key)
        if torch.equal(m, w):
            unchanged.append(key)
        moved, elements = moved + int((m != w).sum()), elements + m.numel()
        largest = max(largest, float(delta.abs().max()))
    check(not off, f"{len(targets)} LoRA-targeted weights equal W + {scale:g} B A to bf16 rounding ({len(off)} off)")
    check(not unchanged, f"every LoRA-targeted weight changed in merging ({len(unchanged)} unchanged)")
    print(f"the update (largest |{scale:g} B A| {largest:.2g}) moved {moved:,} of their {elements:,} elements "
          f"({moved / elements:.1%}) in bf16")


if __name__ == "__main__":
    sys.exit(main())
