"""Training runs a practitioner can trust: the same seed gives the same adapter, a run killed with SIGKILL resumes
to the adapter an uninterrupted run ends with, one run per folder, and the task's metric logged while training
equals test.py's on the same questions."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

import csv2json
import data2csv
import test as test_script
import train
from vlmtune import runlock

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def run_data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("runs") / "data"
    data2csv.main(["--data_dir", str(folder), "--num_samples", "28", "--synthetic_image_size", "56"])
    csv2json.main(["--data_dir", str(folder), "--val_size", "4"])
    return folder


def _args(data_dir, model_dir, out_dir, *more):
    return ["--data_dir", str(data_dir), "--model_dir", str(model_dir), "--output_dir", str(out_dir),
            "--report_to", "none", "--use_cpu", "true", "--per_device_train_batch_size", "4",
            "--lora_r", "8", "--learning_rate", "1e-3", *more]


def _adapter(folder):
    return load_file(Path(folder, "adapter_model.safetensors"))


def _same(a, b):
    return a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)


def test_the_same_seed_gives_the_same_adapter_and_another_seed_another(run_data, tiny_model_dir, tmp_path):
    for name, seed in (("a", "1"), ("b", "1"), ("c", "2")):
        train.main(_args(run_data, tiny_model_dir, tmp_path / name, "--max_steps", "2", "--seed", seed))
    assert _same(_adapter(tmp_path / "a"), _adapter(tmp_path / "b"))
    assert not _same(_adapter(tmp_path / "a"), _adapter(tmp_path / "c"))


def test_a_run_killed_with_sigkill_resumes_to_the_uninterrupted_runs_adapter_and_losses(run_data, tiny_model_dir,
                                                                                       tmp_path):
    # with per-part learning rates: the projector trained fully at its own rate, which the resumed optimizer keeps
    steps = ["--max_steps", "8", "--save_strategy", "steps", "--save_steps", "2", "--logging_steps", "1",
             "--projector", "full", "--projector_lr", "5e-4"]
    train.main(_args(run_data, tiny_model_dir, tmp_path / "whole", *steps))
    killed = tmp_path / "killed"
    command = [sys.executable, "train.py", *_args(run_data, tiny_model_dir, killed, *steps)]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 600
    while not (killed / "checkpoint-2" / "trainer_state.json").is_file() and time.time() < deadline:
        time.sleep(0.2)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert not (killed / "run_config.json").exists()  # it died before the end
    train.main(_args(run_data, tiny_model_dir, killed, *steps, "--resume_from_checkpoint", "last"))
    assert _same(_adapter(tmp_path / "whole"), _adapter(killed))
    assert any("merger" in name for name in _adapter(killed))  # the projector is in what was compared
    optimizer = json.loads((killed / "checkpoint-8" / "optimizer.json").read_text())
    assert "5e-04" in json.dumps(optimizer) or "0.0005" in json.dumps(optimizer)  # the projector's own rate kept

    def losses(folder):
        state = json.loads((folder / "checkpoint-8" / "trainer_state.json").read_text())
        return [(entry["step"], entry["loss"]) for entry in state["log_history"] if "loss" in entry]
    assert losses(killed) == losses(tmp_path / "whole") and len(losses(killed)) == 8
    written = [p.name for p in killed.rglob("*") if p.is_file()]
    assert not [name for name in written if name.endswith((".pt", ".pth", ".bin"))], written


def test_resume_last_without_a_checkpoint_is_one_clear_message(run_data, tiny_model_dir, tmp_path):
    with pytest.raises(SystemExit, match="holds no checkpoint-N folder to resume from"):
        train.main(_args(run_data, tiny_model_dir, tmp_path / "new", "--resume_from_checkpoint", "last"))


def test_a_second_run_into_a_folder_in_use_stops_naming_it(run_data, tiny_model_dir, tmp_path):
    folder = tmp_path / "busy"
    holder = subprocess.Popen([sys.executable, "-c", f"import sys, time; sys.path.insert(0, {str(ROOT)!r}); "
                               f"from vlmtune import runlock; runlock.lock_output_dir({str(folder)!r}); "
                               "print('locked', flush=True); time.sleep(120)"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(SystemExit, match=f"train.py: {folder} is in use by a run that is still going"):
            train.main(_args(run_data, tiny_model_dir, folder, "--max_steps", "1"))
    finally:
        holder.kill()
        holder.wait()
        runlock.release_all()


def test_the_task_metric_logged_while_training_rises_from_the_base_to_test_pys_value(tiny_model_dir, tmp_path):
    data = tmp_path / "data"
    data2csv.main(["--data_dir", str(data), "--num_samples", "200"])
    csv2json.main(["--data_dir", str(data), "--val_size", "8"])
    out = tmp_path / "eval"
    train.main(_args(data, tiny_model_dir, out, "--max_steps", "40", "--per_device_train_batch_size", "8",
                     "--learning_rate", "2e-3", "--warmup_steps", "4", "--eval_strategy", "steps", "--eval_steps",
                     "20", "--eval_samples", "8", "--per_device_eval_batch_size", "8", "--save_strategy", "steps",
                     "--save_steps", "40"))
    state = json.loads((out / "checkpoint-40" / "trainer_state.json").read_text())
    evaluations = [entry for entry in state["log_history"] if "eval_loss" in entry]
    assert [entry["step"] for entry in evaluations] == [0, 20, 40]
    metrics = test_script.main(["--run_dir", str(out), "--eval_samples", "8", "--eval_batch_size", "8",
                                "--test_img_dir", str(tmp_path / "none")])
    for key in ("exact_match", "cider", "bleu4"):
        assert abs(evaluations[0][f"eval_{key}"] - metrics["base"][key]) < 1e-6
        assert abs(evaluations[-1][f"eval_{key}"] - metrics["fine_tuned"][key]) < 1e-6
    assert evaluations[-1]["eval_cider"] > evaluations[0]["eval_cider"]  # measured: 1.03 at step 0, 2.25 at 40
    assert evaluations[-1]["eval_loss"] < evaluations[0]["eval_loss"]


def _processes_naming(text: str) -> list[int]:
    """The pids of live processes whose command line holds `text`."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if text in (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                    found.append(int(entry.name))
            except OSError:  # ended meanwhile
                pass
    return found


def _shell_env() -> dict:
    """The environment of a shell after `. .venv/bin/activate`: train.sh finds accelerate beside this Python. Without
    the thread count pytest-xdist gives its workers: nproc (train.sh's count of the cores) honours OMP_NUM_THREADS."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    return env | {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads the process table from /proc (Linux)")
def test_killing_train_sh_stops_training_with_where_it_stopped(run_data, tiny_model_dir, tmp_path):
    out = tmp_path / "killed-sh"
    process = subprocess.Popen(["sh", "train.sh", *_args(run_data, tiny_model_dir, out, "--max_steps", "5000")],
                               cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env=_shell_env(), start_new_session=True)  # the signal to train.sh alone, as `kill`
    deadline = time.time() + 300
    while not (out / runlock.LOCK_NAME).is_file() and time.time() < deadline and process.poll() is None:
        time.sleep(0.2)
    time.sleep(3)  # into the model loading or the first steps
    os.kill(process.pid, signal.SIGTERM)
    output, _ = process.communicate(timeout=120)
    assert process.returncode != 0
    assert "train.py: stopped by SIGTERM; no checkpoint was saved" in output
    assert f"1 process on cpu, {len(os.sched_getaffinity(0))} CPU threads each" in output  # every core, one process
    assert "Traceback" not in output
    assert _processes_naming(str(out)) == []  # train.py did not run on
    assert not (out / runlock.LOCK_NAME).exists() and not (out / "run_config.json").exists()


def test_two_cpu_processes_through_train_sh_split_the_data_and_keep_one_adapter(run_data, tiny_model_dir, tmp_path):
    """scripts/accelerate_cpu_processes.yaml: 2 data-parallel processes on the CPU, joined with gloo."""
    out, probe = tmp_path / "ddp", tmp_path / "probe"
    probe.mkdir()
    env = dict(os.environ, ACCELERATE_CONFIG="scripts/accelerate_cpu_processes.yaml", VLMTUNE_PROBE=str(probe),
               PYTHONPATH=os.pathsep.join([str(ROOT / "tests" / "probes"), str(ROOT)]), SWANLAB_MODE="disabled",
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    args = _args(run_data, tiny_model_dir, out, "--num_train_epochs", "1", "--per_device_train_batch_size", "2")
    args[args.index("--report_to") + 1] = "swanlab"
    result = subprocess.run(["sh", "train.sh", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    ranks = [json.loads((probe / f"rank{r}.json").read_text()) for r in (0, 1)]
    seen = [set(rank["seen"]) for rank in ranks]
    train_ids = {record["id"] for record in json.loads((run_data / "train.json").read_text())}
    assert seen[0] and seen[1] and not seen[0] & seen[1]  # each process its own samples
    assert seen[0] | seen[1] == train_ids  # together, the epoch
    first, second = load_file(probe / "rank0.safetensors"), load_file(probe / "rank1.safetensors")
    assert _same(first, second)  # gradients averaged: both ranks end with the same adapter
    assert [rank["swanlab"] for rank in ranks] == [["disabled"], []]  # SwanLab started by rank 0 only
    assert result.stdout.count("2 processes on cpu") == 2
    assert result.stdout.count(f"adapter and run_config.json saved to {out}") == 1
    assert (out / "adapter_model.safetensors").is_file()


def test_length_grouped_batches_work_with_the_lazy_examples_and_pad_less(tiny_model_dir, tmp_path, capsys):
    from PIL import Image

    data = tmp_path / "data"
    (data / "images").mkdir(parents=True)
    records = []
    for k in range(64):  # the Trainer's sampler sorts within mega-batches of up to 50 batches, at least 4 of them
        Image.new("RGB", (56, 56), (3 * k, 100, 200)).save(data / "images" / f"{k}.png")
        caption = "A dot." if k % 2 else "A long caption " + " ".join(["that goes on and on"] * 12) + "."
        records.append({"id": str(k), "task": "caption", "conversations": [
            {"from": "user", "value": f"<|vision_start|>images/{k}.png<|vision_end|>Describe this image."},
            {"from": "assistant", "value": caption}]})
    (data / "train.json").write_text(json.dumps(records))
    fractions = {}
    for strategy in ("random", "group_by_length"):
        train.main(_args(data, tiny_model_dir, tmp_path / strategy, "--num_train_epochs", "1",
                         "--train_sampling_strategy", strategy))
        line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("padding: "))
        assert line.endswith(f"({strategy} batches)")
        fractions[strategy] = float(line.split()[1].rstrip("%"))
    assert fractions["group_by_length"] < fractions["random"] / 2, fractions


def test_early_stopping_stops_when_the_task_metric_no_longer_improves(run_data, tiny_model_dir, tmp_path):
    # At learning rate 0 nothing changes, so the second in-training evaluation is no better than the first: with
    # patience 1 training stops there (step 6 of 30), and the best checkpoint is the first evaluated one.
    out = tmp_path / "early"
    train.main(_args(run_data, tiny_model_dir, out, "--max_steps", "30", "--learning_rate", "0",
                     "--eval_strategy", "steps", "--eval_steps", "3", "--save_strategy", "steps", "--save_steps",
                     "3", "--eval_samples", "2", "--load_best_model_at_end", "true",
                     "--metric_for_best_model", "cider", "--early_stopping_patience", "1"))
    state = json.loads((out / "checkpoint-6" / "trainer_state.json").read_text())
    assert state["global_step"] == 6 and not (out / "checkpoint-9").exists()
    assert state["best_model_checkpoint"].endswith("checkpoint-3")
    assert [entry["step"] for entry in state["log_history"] if "eval_cider" in entry] == [0, 3, 6]
