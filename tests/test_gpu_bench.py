"""bench/gpu_paths.py on a machine without a GPU: its one line, and its pure helpers on hand-made inputs."""

import subprocess
import sys

import pytest
import torch

from bench import gpu_paths
from tests.conftest import ROOT

# A Trainer console as train.sh keeps it: progress bars, step logs, then the summary (floats printed as strings).
_GPU_CONSOLE = (
    "  0%|          | 0/2 [00:00<?, ?it/s] 50%|#####     | 1/2 [00:01<00:01,  1.1s/it]"
    "{'loss': '11.45', 'grad_norm': '1.861', 'learning_rate': '0.0001', 'epoch': '0.4', 'num_input_tokens_seen': 250}\n"
    "{'loss': '11.37', 'train_runtime': '2.5', 'train_tokens_per_second': '200', 'num_input_tokens_seen': 500}\n"
    "{'train_runtime': '4', 'train_samples_per_second': '1', 'train_steps_per_second': '0.5', 'train_loss': '11.41', "
    "'epoch': '0.8', 'num_input_tokens_seen': 500}\n"
    "adapter and run_config.json saved to output/run\nconsole output saved to logs/train-1.log\n"
)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: the bench would run for real")
def test_gpu_no_cuda_one_line():
    """`python -m bench.gpu_paths` without CUDA: handled right, exactly the one line and exit 0."""
    done = subprocess.run([sys.executable, "-m", "bench.gpu_paths"], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert (done.returncode, done.stdout, done.stderr) == (0, gpu_paths.NO_CUDA + "\n", "")


def test_gpu_train_speed_from_summary():
    """A console with step logs and the Trainer's summary: handled right, the summary's runtime and its token
    count over it, not a step log's figures."""
    assert gpu_paths.train_speed(_GPU_CONSOLE) == (4.0, 125.0)


def test_gpu_train_speed_without_token_count():
    """A summary without num_input_tokens_seen: handled right, the runtime and no tokens/s."""
    console = "{'train_runtime': '3.5', 'train_loss': '2.0', 'epoch': '1'}\n"
    assert gpu_paths.train_speed(console) == (3.5, None)


def test_gpu_train_speed_failed_run():
    """A console that ends in an error before any summary: handled right, None (the table says failed)."""
    console = "{'loss': '11.45', 'epoch': '0.4'}\ntrain.py: stopped by SIGTERM; the last checkpoint is x\n"
    assert gpu_paths.train_speed(console) is None


def test_gpu_trainer_logs_skip_other_braces():
    """Printed text with braces that is no log dict: skipped, the log dicts around it kept."""
    console = "{'a': 1}\nwarning: {'not': closed}\n{'b': '2'}"
    assert gpu_paths.trainer_logs(console) == [{"a": 1}, {"b": "2"}]


def test_gpu_failure_names_the_real_last_line():
    """A failed run's console: clear error, the table names train.py's last line, not train.sh's log path, and no
    `|` that would break the table."""
    console = "loading\ntrain.py: --deepspeed a|b not found\n\nconsole output saved to logs/train-1.log\n"
    assert gpu_paths.failure(console, 1) == "failed (exit 1): train.py: --deepspeed a/b not found"


def test_gpu_memory_used_sums_gpus():
    """nvidia-smi's memory.used, one line per GPU: handled right, the sum in MiB."""
    assert gpu_paths.memory_used_mib("1024\n 2048\n") == 3072


def test_gpu_adapter_difference():
    """Two adapters: handled right, equal bit for bit only when every tensor is; else the largest difference; a
    missing key is infinitely far."""
    a = {"x": torch.tensor([1.0, 2.0]), "y": torch.tensor([3.0])}
    assert gpu_paths.adapter_difference(a, {k: v.clone() for k, v in a.items()}) == (True, 0.0)
    assert gpu_paths.adapter_difference(a, {"x": torch.tensor([1.0, 2.5]), "y": torch.tensor([3.0])}) == (False, 0.5)
    assert gpu_paths.adapter_difference(a, {"x": a["x"]}) == (False, float("inf"))


def test_gpu_table_rows():
    """Measured, skipped and failed rows: handled right, one Markdown row each, empty cells where nothing was
    measured."""
    rows = [{"mode": "lora-bf16", "result": "ok", "seconds": 61.4, "tokens_per_s": 12345.6, "peak_gb": 9.87,
             "note": "train_runtime 20.0 s for 20 steps"},
            {"mode": "qlora-4bit", "result": gpu_paths.SKIPPED, "note": "bitsandbytes is not installed"}]
    assert gpu_paths.table(rows).splitlines() == [
        "| mode | result | wall time | tokens/s | peak GPU memory | note |",
        "|---|---|---|---|---|---|",
        "| lora-bf16 | ok | 61 s | 12,346 | 9.9 GB | train_runtime 20.0 s for 20 steps |",
        "| qlora-4bit | skipped: pip install -r requirements-gpu.txt |  |  |  | bitsandbytes is not installed |"]


def test_gpu_missing_extra_is_skipped(monkeypatch):
    """A mode whose extra (bitsandbytes, deepspeed) is not installed: skipped and named, with the install command,
    and nothing launched."""
    monkeypatch.setattr(gpu_paths, "TRAINING", {m: gpu_paths.TRAINING[m] for m in ("qlora-4bit", "zero3")})
    monkeypatch.setattr(gpu_paths.importlib.util, "find_spec", lambda name: None)
    monkeypatch.setattr(gpu_paths, "launch", lambda *a: pytest.fail("a mode without its extra was launched"))
    assert gpu_paths.training_modes(None) == [
        {"mode": "qlora-4bit", "result": gpu_paths.SKIPPED, "note": "bitsandbytes is not installed"},
        {"mode": "zero3", "result": gpu_paths.SKIPPED, "note": "deepspeed is not installed"}]
