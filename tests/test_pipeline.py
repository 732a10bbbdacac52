"""End to end: the five README steps on the offline default, asserting what a user looks at in the end."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import csv2json
import data2csv
import test as test_script

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.long  # the offline default job: ~2 min


@pytest.fixture(scope="module")
def trained_run(tiny_model_dir, tmp_path_factory):
    work = tmp_path_factory.mktemp("job")
    data_dir = work / "data"
    data2csv.main(["--data_dir", str(data_dir)])
    csv2json.main(["--data_dir", str(data_dir)])
    run_dir = work / "run"
    # As after `. .venv/bin/activate`: train.sh finds accelerate beside this Python.
    env = dict(os.environ, SWANLAB_MODE="offline", SWANLAB_LOG_DIR=str(work / "swanlog"),
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
               HF_TOKEN=SECRET, SWANLAB_API_KEY=SECRET)
    result = subprocess.run(
        ["sh", "train.sh", "--data_dir", str(data_dir), "--model_dir", str(tiny_model_dir), "--output_dir",
         str(run_dir)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return run_dir, data_dir, result.stdout, work


SECRET = "hf_not_a_real_token_4815162342"


def test_no_token_from_the_environment_reaches_the_run_folder_the_console_or_swanlog(trained_run):
    run_dir, _, stdout, work = trained_run
    assert SECRET not in stdout
    for folder in (run_dir, work / "swanlog"):
        for path in folder.rglob("*"):
            if path.is_file():
                assert SECRET.encode() not in path.read_bytes(), path


def test_train_sh_saves_adapter_and_resolved_config_and_console_log(trained_run):
    run_dir, data_dir, stdout, _ = trained_run
    assert (run_dir / "adapter_model.safetensors").is_file()
    assert not list(run_dir.glob("*.bin")), "weights must be safetensors, not pickles"
    run = json.loads((run_dir / "run_config.json").read_text())
    assert run["data"]["data_dir"] == str(data_dir)
    assert run["tune"]["lora_r"] == 64
    assert "console output saved to logs/train-" in stdout
    log = ROOT / stdout.rsplit("console output saved to ", 1)[1].split()[0]
    report = [line.split() for line in log.read_text().splitlines() if line.startswith(("vision ", "language "))]
    assert [row[:2] for row in report] == [["vision", "frozen"], ["language", "lora"]]
    # LoRA r=64 adds 64 x (in + out) per projection: q and o 128->128, k and v 128->64 (two key-value heads),
    # gate and up 128->256, down 256->128; four layers.
    lora = 4 * 64 * (2 * (128 + 128) + 2 * (128 + 64) + 3 * (128 + 256))
    assert report[0][2] == "0" and report[1][2] == f"{lora:,}" == "524,288"


def test_offline_job_teaches_the_caption_format(trained_run, monkeypatch):
    run_dir, data_dir, _, _ = trained_run
    monkeypatch.setenv("SWANLAB_MODE", "offline")
    monkeypatch.setenv("SWANLAB_LOG_DIR", str(run_dir / "swanlog"))
    metrics = test_script.main(["--run_dir", str(run_dir)])
    assert metrics["base"]["exact_match"] <= 0.1
    assert metrics["fine_tuned"]["exact_match"] >= 0.9
    assert metrics == json.loads((run_dir / "metrics.json").read_text())
    rows = [json.loads(line) for line in (run_dir / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == metrics["n"] == len(json.loads((data_dir / "val.json").read_text()))
    assert {"id", "image", "reference", "base", "prediction"} <= set(rows[0])
    extra = [json.loads(line) for line in (run_dir / "test-img-predictions.jsonl").read_text().splitlines()]
    assert len(extra) == len([p for p in (ROOT / "test-img").iterdir() if p.suffix == ".png"])
    # what a person opens afterwards: the run report and the loss curve (tests/test_report.py reads them in a browser)
    assert (run_dir / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = (run_dir / "report.html").read_text(encoding="utf-8")
    assert f"{metrics['fine_tuned']['exact_match']:.4f}" in page and rows[0]["prediction"] in page
