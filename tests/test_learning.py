"""Each task, end to end on the synthetic world: LoRA on the pretrained tiny Qwen2-VL learns what the base cannot do.

Steps run in-process (data2csv, csv2json, train, test); the caption job through `sh train.sh` is in
test_pipeline.py. Each run is small (a few hundred pictures, a minute or so on 2 cores); the margins asserted are
wide, so a seed's luck does not decide them.
"""

import json

import pytest

import csv2json
import data2csv
import test as test_script
import train

# task -> (metric, base at most, fine-tuned at least)
EXPECTED = {
    "classification": ("accuracy", 0.1, 0.9),
    "grounding": ("acc@0.5", 0.1, 0.8),
    "vqa": ("vqa_accuracy", 0.1, 0.9),
}


@pytest.mark.parametrize("task", sorted(EXPECTED))
def test_lora_teaches_each_task_what_the_base_model_cannot_answer(task, tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("SWANLAB_MODE", "disabled")
    data_dir, run_dir = tmp_path / "data", tmp_path / "run"
    data2csv.main(["--task", task, "--data_dir", str(data_dir), "--num_samples", "400"])
    csv2json.main(["--task", task, "--data_dir", str(data_dir), "--val_size", "48"])
    train.main(["--task", task, "--data_dir", str(data_dir), "--model_dir", str(tiny_model_dir),
                "--output_dir", str(run_dir), "--report_to", "none"])
    metrics = test_script.main(["--run_dir", str(run_dir), "--max_new_tokens", "40"])

    metric, base_at_most, tuned_at_least = EXPECTED[task]
    assert metrics["base"][metric] <= base_at_most
    assert metrics["fine_tuned"][metric] >= tuned_at_least
    assert json.loads((run_dir / "metrics.json").read_text())["task"] == task
