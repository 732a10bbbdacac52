"""Every long step shows that it is moving: csv2json.py's rows checked, train.py's token count, test.py's answers and
scoring, merge.py's loading, merging and saving.

One small run of the scripts (14 synthetic captions, one training step of the tiny model), each step's stdout and
stderr kept, then a test per step on what a person watching the console sees: the bar's label and its final count,
or a line per stage with its time.
"""

import contextlib
import io
import re

import pytest

import csv2json
import data2csv
import merge
import test as test_script
import train
from vlmtune import progress
from vlmtune.collator import drop_overlong
from vlmtune.modeling import load_processor

ROWS, VAL = 14, 4  # rows of data.csv; images held out (one caption each in the synthetic world)
N_TEST_IMG = 3  # the pictures in test-img/, which test.py answers too


def captured(step, *args):
    """(result, stdout, stderr) of a script's main, as a console would show them."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        result = step(*args)
    return result, out.getvalue(), err.getvalue()


def final_bar(stderr: str, label: str) -> str:
    """The last state of the tqdm bar labelled `label`: tqdm redraws a bar after a carriage return, and its last
    drawing is what stays on screen (and the last line in a log file)."""
    drawn = [part for line in stderr.split("\n") for part in line.split("\r") if part.startswith(f"{label}:")]
    assert drawn, f"no progress bar labelled {label!r} on stderr:\n{stderr[-2000:]}"
    return drawn[-1]


@pytest.fixture(scope="module")
def steps(tiny_model_dir, tmp_path_factory):
    """step name -> (result, stdout, stderr) of data2csv, csv2json, train, test and merge on one small run."""
    work = tmp_path_factory.mktemp("progress")
    data_dir, run_dir = work / "data", work / "run"
    done = {"data2csv": captured(data2csv.main, ["--data_dir", str(data_dir), "--num_samples", str(ROWS),
                                                 "--synthetic_image_size", "56"])}
    done["csv2json"] = captured(csv2json.main, ["--data_dir", str(data_dir), "--val_size", str(VAL)])
    done["train"] = captured(train.main, [
        "--data_dir", str(data_dir), "--model_dir", str(tiny_model_dir), "--output_dir", str(run_dir),
        "--max_steps", "1", "--per_device_train_batch_size", "2", "--report_to", "none", "--use_cpu", "true"])
    done["test"] = captured(test_script.main, ["--run_dir", str(run_dir), "--max_new_tokens", "8"])
    done["merge"] = captured(merge.main, ["--run_dir", str(run_dir), "--merged_dir", str(work / "merged")])
    return done


def test_csv2json_counts_the_rows_it_checks(steps):
    _, _, stderr = steps["csv2json"]
    bar = final_bar(stderr, "csv2json caption: checking rows")
    assert "100%" in bar and f"{ROWS}/{ROWS}" in bar and "row" in bar  # 10.5row/s, or 2.01s/row when slow


def test_train_counts_the_tokens_of_every_training_example(steps):
    _, stdout, stderr = steps["train"]
    bar = final_bar(stderr, "train.py: counting tokens")
    n_train = ROWS - VAL
    assert f"{n_train}/{n_train}" in bar and "example" in bar
    assert f"train examples: {n_train} kept, 0 dropped" in stdout  # the bar counted what the summary reports


def test_test_py_shows_each_models_answers_and_says_it_is_scoring(steps):
    metrics, stdout, stderr = steps["test"]
    n = VAL + N_TEST_IMG  # the validation questions, then test-img/'s pictures
    for label in ("base", "fine-tuned"):
        bar = final_bar(stderr, label)
        assert f"{n}/{n}" in bar and "answer" in bar, bar
    scoring = f"scoring {metrics['n']} answers of each model (caption)"
    assert metrics["n"] == VAL
    assert f"{scoring} ...\n" in stdout
    assert re.search(rf"^{re.escape(scoring)}: done in \d+\.\d s$", stdout, re.M), stdout
    assert stdout.index(f"{scoring} ...") < stdout.index('"task": "caption"')  # said before the metrics print


def test_merge_py_says_each_stage_and_its_time(steps, tiny_model_dir):
    merged_dir, stdout, _ = steps["merge"]
    stages = [f"loading the base model from {tiny_model_dir}", f"loading the adapter from ",
              "counting the weight changes that rounding to float32 keeps", "merging the adapter into the base weights",
              f"saving the merged model to {merged_dir}"]
    lines = stdout.splitlines()
    position = 0
    for stage in stages:  # in this order, each announced, then timed
        start = next(i for i, line in enumerate(lines[position:], position) if line.startswith(stage)
                     and line.endswith(" ..."))
        end = next(i for i, line in enumerate(lines[start:], start) if line.startswith(stage) and ": done in " in line)
        assert re.search(r": done in \d+\.\d s$", lines[end]), lines[end]
        position = end
    assert lines[-1] == f"merged model saved to {merged_dir}"


def test_drop_overlong_shows_its_bar_by_default_and_none_when_told(tiny_model_dir, capfd):
    processor = load_processor(str(tiny_model_dir), 3136, 112 * 112)
    examples = [{"id": str(i), "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi " * i}]},
                                            {"role": "assistant", "content": [{"type": "text", "text": "Hello."}]}]}
                for i in range(12)]
    kept, _ = drop_overlong(examples, processor, max_length=1000)
    bar = final_bar(capfd.readouterr().err, "counting tokens")
    assert len(kept) == 12 and "12/12" in bar
    drop_overlong(examples, processor, max_length=1000, progress=None)  # a second process of a multi-GPU run
    assert "counting tokens" not in capfd.readouterr().err


def test_a_stage_says_what_it_does_then_how_long_it_took(capsys, monkeypatch):
    clock = iter([10.0, 12.34])
    monkeypatch.setattr(progress.time, "perf_counter", lambda: next(clock))
    with progress.stage("saving the model"):
        assert capsys.readouterr().out == "saving the model ...\n"  # said before the work, not after
    assert capsys.readouterr().out == "saving the model: done in 2.3 s\n"


def test_a_stage_that_fails_does_not_say_it_is_done(capsys):
    with pytest.raises(OSError), progress.stage("saving the model"):
        raise OSError("disk full")
    assert capsys.readouterr().out == "saving the model ...\n"


@pytest.mark.parametrize(("seconds", "shown"), [(0.04, "0.0 s"), (59.94, "59.9 s"), (59.97, "1 min 00 s"),
                                                (245.4, "4 min 05 s"), (3725, "62 min 05 s")])
def test_durations_read_as_a_person_says_them(seconds, shown):
    assert progress.duration(seconds) == shown
