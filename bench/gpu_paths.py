"""The GPU paths at full size, random weights, on one CUDA GPU: tokens/s and peak GPU memory of each, in one table.

    python -m bench.gpu_paths                          # Qwen2-VL-2B-Instruct's config, every mode
    python -m bench.gpu_paths --family qwen2.5-vl-7b --steps 10

Without CUDA it says so in one line and exits 0: it has nothing to measure on a CPU.

With CUDA: bench/full_size.py's builder makes the model from the real config in ../shared/fixtures/<family>/ with
seeded random weights (bf16 safetensors, the hub's other files as they are), and its data step makes train.json from
one COCO photo and its five captions. Then, each as a user runs it:

- training, `sh train.sh` (ACCELERATE_CONFIG=scripts/accelerate.yaml, one process) for --steps steps, every mode
  with --vision lora --projector full --projector_lr 2e-5 (a learning rate per part) and --bf16 true:
  lora-bf16, qlora-4bit (--load_in_4bit true), zero2 and zero3 (--deepspeed scripts/zero2.json | zero3.json);
- resume: the lora-bf16 run again with a checkpoint every 2 steps, stopped (SIGTERM to train.sh, as a scheduler does)
  once one is saved, then --resume_from_checkpoint last to the end; its adapter must equal lora-bf16's bit for bit
  (what differs is printed: the largest difference of any weight);
- merge: merge.py --run_dir on the lora-bf16 run, timed;
- batched generation: vlmtune.generation.generate on 8 COCO photos, batch 1 and batch 8 (left padding), in test.py's
  dtype (bf16) and in fp32; the new tokens of both batch sizes must be equal, and tokens/s is new tokens / wall time.

Tokens/s of training: the Trainer's own count (--include_num_input_tokens_seen true: every position of every batch,
image tokens and padding included; train.py's parser takes only a boolean there) over its train_runtime, which includes the first step's warm-up. Peak GPU memory:
`nvidia-smi --query-gpu=memory.used` sampled every 0.2 s over the child process's life, less what was in use before
it started: what the device gave the run (the allocator's cache and the CUDA context included, so above
torch.cuda.max_memory_allocated), and a peak shorter than 0.2 s can be missed; generation, in this process, gives
torch.cuda.max_memory_allocated instead. A mode whose extra is not installed is reported "skipped: pip install -r
requirements-gpu.txt". Exits 1 when a mode fails or a check does not hold; each run's console is kept in --work_dir.
"""

import argparse
import ast
import importlib.util
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
NO_CUDA = "no CUDA GPU here: bench/gpu_paths.py measures the GPU paths and has nothing to do on a CPU"
SKIPPED = "skipped: pip install -r requirements-gpu.txt"
GB = 1e9
PARTS = ["--vision", "lora", "--projector", "full", "--projector_lr", "2e-5"]
# mode -> (the extra it needs, its flags)
TRAINING = {
    "lora-bf16": (None, []),
    "qlora-4bit": ("bitsandbytes", ["--load_in_4bit", "true"]),
    "zero2": ("deepspeed", ["--deepspeed", "scripts/zero2.json"]),
    "zero3": ("deepspeed", ["--deepspeed", "scripts/zero3.json"]),
}
QUESTION = "Describe this image."


# ---- Pure helpers (tested on the CPU, tests/test_gpu_bench.py)

def trainer_logs(console: str) -> list[dict]:
    """The Trainer's printed log dicts ({'loss': '1.234', ...}, floats printed as strings with 4 digits), wherever a
    progress bar left them on a line."""
    logs = []
    for text in re.findall(r"\{'[^{}]*\}", console):
        try:
            logs.append(ast.literal_eval(text))
        except (ValueError, SyntaxError):  # a brace in some other printed text
            continue
    return logs


def train_speed(console: str) -> tuple[float, float] | None:
    """(train_runtime in s, tokens/s) from the Trainer's last summary (the log holding train_loss), or None without
    one; tokens/s is None when the run did not count tokens (--include_num_input_tokens_seen)."""
    summary = next((log for log in reversed(trainer_logs(console)) if "train_loss" in log), None)
    if summary is None or "train_runtime" not in summary:
        return None
    runtime = float(summary["train_runtime"])
    tokens = summary.get("num_input_tokens_seen")
    return runtime, (float(tokens) / runtime if tokens is not None and runtime > 0 else None)


def memory_used_mib(nvidia_smi_output: str) -> int:
    """The memory in use, in MiB, of `nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits` (one line
    per GPU; the sum)."""
    return sum(int(line) for line in nvidia_smi_output.split() if line.strip())


def adapter_difference(a: dict, b: dict) -> tuple[bool, float]:
    """(equal bit for bit, largest absolute difference) of two state dicts; a key in one only counts as infinitely
    far."""
    if a.keys() != b.keys():
        return False, float("inf")
    equal = all(torch.equal(a[k], b[k]) for k in a)
    largest = max((float((a[k].float() - b[k].float()).abs().max()) for k in a if a[k].numel()), default=0.0)
    return equal, largest


def table(rows: list[dict]) -> str:
    """The results as a Markdown table: mode, result, wall time, tokens/s, peak GPU memory, note."""
    lines = ["| mode | result | wall time | tokens/s | peak GPU memory | note |", "|---|---|---|---|---|---|"]
    for row in rows:
        seconds, speed, memory = row.get("seconds"), row.get("tokens_per_s"), row.get("peak_gb")
        lines.append(f"| {row['mode']} | {row['result']} | {'' if seconds is None else f'{seconds:.0f} s'} | "
                     f"{'' if speed is None else f'{speed:,.0f}'} | {'' if memory is None else f'{memory:.1f} GB'} | "
                     f"{row.get('note', '')} |")
    return "\n".join(lines)


# ---- Measuring

class GpuMemory:
    """Peak of nvidia-smi's memory.used over a `with` block, less its value at the start (GB); None without
    nvidia-smi."""

    def __init__(self, every: float = 0.2):
        self.every, self.peak_gb = every, None

    @staticmethod
    def used() -> int | None:
        try:
            out = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
                                 capture_output=True, text=True, timeout=10, check=True).stdout
        except (OSError, subprocess.SubprocessError):
            return None
        return memory_used_mib(out)

    def __enter__(self):
        self.start, self.peak, self.done = self.used(), self.used(), threading.Event()

        def sample():
            while not self.done.wait(self.every):
                if (now := self.used()) is not None and self.peak is not None:
                    self.peak = max(self.peak, now)

        self.thread = threading.Thread(target=sample, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.done.set()
        self.thread.join()
        if self.start is not None and self.peak is not None:
            self.peak_gb = (self.peak - self.start) * 2 ** 20 / GB
        return False


def train_command(bench, run_dir: Path, extra: list[str]) -> list[str]:
    """`sh train.sh` with this bench's model, data and settings, plus the mode's flags."""
    return ["sh", "train.sh", "--model_dir", str(bench.model_dir), "--data_dir", str(bench.data_dir),
            "--output_dir", str(run_dir), "--learning_rate", "1e-4",  # train.py asks a real checkpoint for these
            "--image_min_pixels", str(bench.args.image_min_pixels),
            "--image_max_pixels", str(bench.args.image_max_pixels),
            "--max_steps", str(bench.args.steps), "--per_device_train_batch_size", str(bench.args.batch_size),
            "--warmup_steps", "0", "--lr_scheduler_type", "linear", "--logging_steps", "1", "--report_to", "none",
            "--save_strategy", "no", "--bf16", "true", "--seed", "0",
            "--include_num_input_tokens_seen", "true", *PARTS, *extra]


def launch(bench, command: list[str], log: Path) -> subprocess.Popen:
    """The command in the project root, its console into `log`; the venv's bin first on PATH, for train.sh's
    `python` and `accelerate`."""
    env = dict(os.environ, ACCELERATE_CONFIG="scripts/accelerate.yaml",
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    with open(log, "w") as out:
        return subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)


def run_logged(bench, name: str, command: list[str]) -> tuple[int, str, float, float | None]:
    """(exit status, console, wall seconds, peak GPU GB) of one child run to its end."""
    log = bench.work / f"{name}.log"
    print(f"==== {name}: {' '.join(command)}", flush=True)
    start = time.perf_counter()
    with GpuMemory() as memory:
        code = launch(bench, command, log).wait()
    seconds = time.perf_counter() - start
    console = log.read_text(errors="replace")
    if code != 0:  # the end of what it said, before a temporary --work_dir goes
        print("\n".join(console.splitlines()[-40:]))
    print(f"==== {name}: exit {code}, {seconds:.0f} s (console: {log})", flush=True)
    return code, console, seconds, memory.peak_gb


def failure(console: str, code: int) -> str:
    """The last line of a failed run's console, for the table."""
    lines = [line.strip() for line in console.splitlines()
             if line.strip() and not line.startswith("console output saved to")]  # train.sh's last line
    return f"failed (exit {code}): {lines[-1][:160] if lines else 'no output'}".replace("|", "/")


# ---- The modes

def training_modes(bench) -> list[dict]:
    """Each training mode through `sh train.sh`: tokens/s, wall time (launch and model load included), peak GPU."""
    rows = []
    for mode, (extra, flags) in TRAINING.items():
        if extra and importlib.util.find_spec(extra) is None:
            rows.append({"mode": mode, "result": SKIPPED, "note": f"{extra} is not installed"})
            continue
        shutil.rmtree(bench.work / mode, ignore_errors=True)  # a kept --work_dir: a fresh run each time
        code, console, seconds, peak = run_logged(bench, mode, train_command(bench, bench.work / mode, flags))
        speed = train_speed(console)
        row = {"mode": mode, "seconds": seconds, "peak_gb": peak,
               "tokens_per_s": speed[1] if speed else None,
               "result": "ok" if code == 0 and (bench.work / mode / "run_config.json").is_file()
               else failure(console, code)}
        if speed:
            row["note"] = f"train_runtime {speed[0]:.1f} s for {bench.args.steps} steps"
        rows.append(row)
    return rows


def resume_mode(bench, reference: Path) -> dict:
    """lora-bf16 again, checkpointed every 2 steps, stopped by SIGTERM once a checkpoint is saved, resumed with
    --resume_from_checkpoint last; the final adapter against the uninterrupted run's."""
    from safetensors.torch import load_file

    if not (reference / "adapter_model.safetensors").is_file():
        return {"mode": "resume", "result": "not run: lora-bf16 failed, nothing to compare with"}
    run_dir = bench.work / "resume"
    shutil.rmtree(run_dir, ignore_errors=True)
    command = train_command(bench, run_dir, ["--save_strategy", "steps", "--save_steps", "2"])
    log = bench.work / "resume-stopped.log"
    print(f"==== resume: {' '.join(command)}; stopped after its first checkpoint", flush=True)
    start = time.perf_counter()
    child = launch(bench, command, log)
    while child.poll() is None and not (run_dir / "checkpoint-2" / "trainer_state.json").is_file():
        time.sleep(0.05)
    stopped = child.poll() is None
    if stopped:
        child.send_signal(signal.SIGTERM)  # train.sh's trap ends the launcher, and train.py with it
    code = child.wait()
    if not stopped or (run_dir / "run_config.json").is_file():
        return {"mode": "resume", "result": f"not interrupted (exit {code}): the run ended before the stop; "
                                            f"raise --steps", "seconds": time.perf_counter() - start}
    checkpoints = sorted(p.name for p in run_dir.glob("checkpoint-*"))
    code, console, seconds, peak = run_logged(bench, "resume-resumed",
                                              command + ["--resume_from_checkpoint", "last"])
    seconds += time.perf_counter() - start
    if code != 0 or not (run_dir / "adapter_model.safetensors").is_file():
        return {"mode": "resume", "result": failure(console, code), "seconds": seconds, "peak_gb": peak}
    equal, largest = adapter_difference(load_file(reference / "adapter_model.safetensors"),
                                        load_file(run_dir / "adapter_model.safetensors"))
    return {"mode": "resume", "seconds": seconds, "peak_gb": peak,
            "result": "ok" if equal else "FAIL: the adapter differs from lora-bf16's",
            "note": f"stopped with {', '.join(checkpoints)}; adapter "
                    f"{'equal bit for bit' if equal else f'largest |difference| {largest:.3g}'} to lora-bf16's"}


def merge_mode(bench, run_dir: Path) -> dict:
    """merge.py on the lora-bf16 run: wall time (load, merge, save) and peak GPU."""
    if not (run_dir / "run_config.json").is_file():
        return {"mode": "merge", "result": "not run: lora-bf16 failed"}
    shutil.rmtree(f"{run_dir}-merged", ignore_errors=True)
    code, console, seconds, peak = run_logged(bench, "merge", [sys.executable, "merge.py", "--run_dir", str(run_dir)])
    merged = Path(f"{run_dir}-merged")
    size = sum(p.stat().st_size for p in merged.glob("*.safetensors")) / GB
    return {"mode": "merge", "seconds": seconds, "peak_gb": peak, "note": f"{size:.1f} GB of safetensors",
            "result": "ok" if code == 0 and size else failure(console, code)}


def generation_modes(bench, run_dir: Path) -> list[dict]:
    """vlmtune.generation.generate on 8 photos, batch 1 and batch 8, in fp32 and in bf16 (test.py's dtype on this
    GPU): the same new tokens at both batch sizes, and new tokens / s of each. fp32 first: the adapter's fp32
    weights rounded to bf16 would not come back."""
    from PIL import Image

    from vlmtune import generation
    from vlmtune.modeling import load_processor, load_trained

    if not (run_dir / "adapter_model.safetensors").is_file():
        return [{"mode": "generation", "result": "not run: lora-bf16 failed"}]
    photos = sorted(bench.coco.glob("train2017/*.jpg"))[:8]
    questions = [[{"role": "user", "content": [{"type": "image", "image": str(p)}, {"type": "text", "text": QUESTION}]}]
                 for p in photos]
    processor = load_processor(str(bench.model_dir), bench.args.image_min_pixels, bench.args.image_max_pixels)
    model, _ = load_trained(str(run_dir), str(bench.model_dir), dtype=torch.float32)
    model.to("cuda")
    pad = processor.tokenizer.pad_token_id
    plain, new_tokens = model.generate, []

    def keep_new_tokens(**kwargs):  # the ids of each answer, not only its text
        output = plain(**kwargs)
        new_tokens.extend(row[row != pad].tolist() for row in output[:, kwargs["input_ids"].shape[1]:])
        return output

    model.generate = keep_new_tokens
    rows = []
    for dtype in (torch.float32, torch.bfloat16):
        model.to(dtype)
        generation.generate(model, processor, questions[:1], batch_size=1, max_new_tokens=4)  # warm-up, not timed
        answers = {}
        for batch_size in (1, 8):
            new_tokens.clear()
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            start = time.perf_counter()
            generation.generate(model, processor, questions, batch_size=batch_size,
                                max_new_tokens=bench.args.max_new_tokens)
            torch.cuda.synchronize()
            seconds = time.perf_counter() - start
            answers[batch_size] = list(new_tokens)
            rows.append({"mode": f"generate {str(dtype).removeprefix('torch.')} batch {batch_size}",
                         "seconds": seconds, "tokens_per_s": sum(map(len, new_tokens)) / seconds,
                         "peak_gb": torch.cuda.max_memory_allocated() / GB, "result": "ok",
                         "note": f"{len(photos)} photos, {sum(map(len, new_tokens))} new tokens"})
        same = sum(a == b for a, b in zip(answers[1], answers[8]))
        if same != len(photos):
            rows[-1]["result"] = f"FAIL: {same} of {len(photos)} answers equal to batch 1's"
        rows[-1]["note"] += f"; {same} of {len(photos)} answers equal to batch 1's"
    model.generate = plain
    sizes = sorted({Image.open(p).size for p in photos})
    print(f"generation photos: {len(photos)}, sizes {sizes}")
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", default="qwen2-vl-2b", help="a family of bench/full_size.py (FAMILIES)")
    parser.add_argument("--fixtures", default=str(ROOT.parent / "shared" / "fixtures"))
    parser.add_argument("--steps", type=int, default=20, help="training steps of each mode")
    parser.add_argument("--batch_size", type=int, default=4, help="--per_device_train_batch_size of each mode")
    parser.add_argument("--image_min_pixels", type=int, default=3136)
    parser.add_argument("--image_max_pixels", type=int, default=78400, help="280 x 280, the COCO preset's")
    parser.add_argument("--max_new_tokens", type=int, default=32, help="of each generated answer")
    parser.add_argument("--work_dir", default="", help="keep the model, runs and logs here (default: a temporary "
                        "folder, removed at the end)")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print(NO_CUDA)
        return 0
    if args.steps < 4:
        raise SystemExit("--steps must be at least 4: the resume mode stops after the checkpoint of step 2")
    from bench import full_size  # here, not above: it imports transformers and the scripts, slow for the CPU line

    if args.family not in full_size.FAMILIES:
        raise SystemExit(f"--family {args.family}: choose one of {', '.join(full_size.FAMILIES)}")
    fixture = Path(args.fixtures) / full_size.FAMILIES[args.family]
    if not fixture.is_dir():
        raise SystemExit(f"{fixture} not found: this benchmark reads the shared reference fixtures (--fixtures)")

    work = Path(args.work_dir or tempfile.mkdtemp(prefix="gpu-paths-")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    bench = argparse.Namespace(args=args, work=work, model_dir=work / "model", data_dir=work / "data",
                               coco=Path(args.fixtures) / "coco-mini")
    try:
        start = time.perf_counter()
        print(f"{torch.cuda.get_device_name(0)}; building {args.family} with random weights in {bench.model_dir}",
              flush=True)
        if not (bench.model_dir / "config.json").is_file():
            n = full_size.build(fixture, 0, 0, bench.model_dir)
            print(f"{n:,} parameters, built in {time.perf_counter() - start:.0f} s", flush=True)
        photo = full_size.photo_640x480(bench.coco / "train2017")
        if not (bench.data_dir / "train.json").is_file():
            full_size.write_data(bench.coco / "annotations" / "captions_train2017.json", photo, bench.data_dir)
        rows = training_modes(bench)
        reference = work / "lora-bf16"
        rows.append(resume_mode(bench, reference))
        rows.append(merge_mode(bench, reference))
        rows += generation_modes(bench, reference)
        print(f"\n{args.family}, random weights, one photo ({photo.name}, five captions), {args.steps} steps of "
              f"batch {args.batch_size}, {torch.cuda.get_device_name(0)}; {time.perf_counter() - start:.0f} s in all")
        print(table(rows))
    finally:
        if not args.work_dir:
            shutil.rmtree(work, ignore_errors=True)
    failed = [row["mode"] for row in rows if row["result"] != "ok" and row["result"] != SKIPPED]
    if failed:
        print(f"not ok: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
