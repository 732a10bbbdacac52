"""Tracking never kills a run: SwanLab refusing the key or unreachable gives a warning and offline logging. Without a
login, runs go where a local dashboard reads them, and test.py's run continues the training's experiment."""

import json
from pathlib import Path

import pytest
import torch
from transformers import Trainer, TrainingArguments

from vlmtune import tracking


class _Regression(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x, y):
        return {"loss": ((self.weight * x - y) ** 2).mean()}


def _train(tmp_path, callback):
    data = [{"x": torch.tensor([1.0]), "y": torch.tensor([2.0])}] * 4
    args = TrainingArguments(output_dir=str(tmp_path / "run"), max_steps=2, per_device_train_batch_size=2,
                             logging_steps=1, report_to=[], use_cpu=True, save_strategy="no")
    trainer = Trainer(model=_Regression(), args=args, train_dataset=data, callbacks=[callback])
    trainer.train()
    return trainer


def test_a_refused_key_with_no_network_warns_and_logs_offline_and_training_goes_on(tmp_path, monkeypatch, capsys):
    import swanlab

    # The real fault: this machine reaches no SwanLab server, so the login with a key fails as it does offline.
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SWANLAB_API_KEY", "not-a-real-key")
    monkeypatch.setenv("SWANLAB_MODE", "online")
    monkeypatch.setenv("SWANLAB_SAVE_DIR", str(tmp_path / "swanlog"))
    try:
        callback = tracking.tracking_callback("vlmtune-test", "run", "online")
        trainer = _train(tmp_path, callback)
        out = capsys.readouterr().out
        assert "warning: SwanLab could not start in online mode (AuthenticationError" in out
        assert f"logging offline to {tracking.log_dir()}/ instead" in out
        assert trainer.state.global_step == 2
        assert callback.run_record["mode"] == "offline" and Path(callback.run_record["dir"]).is_dir()
        assert not swanlab.has_run()  # finished with the training
    finally:
        swanlab.finish()


def test_when_even_offline_logging_fails_the_run_goes_on_without_swanlab(tmp_path, monkeypatch, capsys):
    import swanlab

    def refuse(*args, **kwargs):
        raise OSError("read-only file system: swanlog")

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(swanlab, "init", refuse)
    trainer = _train(tmp_path, tracking.tracking_callback("vlmtune-test", "run", "offline"))
    out = capsys.readouterr().out
    assert "warning: SwanLab could not start (OSError: read-only file system: swanlog); training goes on" in out
    assert trainer.state.global_step == 2 and trainer.state.log_history[0]["loss"] > 0


# ---- the mode without a login, and one experiment per run

needs_dashboard = pytest.mark.skipif(not tracking.local_dashboard_installed(),
                                     reason='swanboard is not installed: `pip install "swanlab[dashboard]"`')


@pytest.fixture
def no_login(tmp_path, monkeypatch):
    for name in ("SWANLAB_MODE", "SWANLAB_API_KEY", "SWANLAB_ROOT", "SWANLAB_SAVE_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(tracking.Path, "home", lambda: tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SWANLAB_LOG_DIR", str(tmp_path / "swanlog"))


@pytest.mark.parametrize(("installed", "expected"), [(True, "local"), (False, "offline")])
def test_without_a_login_runs_go_where_a_dashboard_can_read_them(no_login, monkeypatch, installed, expected):
    monkeypatch.setattr(tracking, "local_dashboard_installed", lambda: installed)
    assert tracking.choose_swanlab_mode() == expected
    note = tracking.mode_note(expected)
    assert note.startswith(f"SwanLab mode: {expected} (no login")
    assert ("swanlab watch" in note) and (("swanlab sync" in note) == (expected == "offline"))
    assert ('pip install "swanlab[dashboard]"' in note) == (expected == "offline")


def _local_training_run(tmp_path):
    """A finished 'local' run as train.py leaves one: an experiment in the dashboard's database with a loss curve."""
    import swanlab

    run = swanlab.init(project="vlmtune-test", experiment_name="run", mode="local")
    for step in (1, 2, 3):
        swanlab.log({"train/loss": 1 / step}, step=step)
    record = tracking.run_record(run, "vlmtune-test")
    swanlab.finish()
    return record


def _dashboard(swanlog):
    """What swanboard's database holds: [(experiment name, status)], {chart name: its folder}."""
    import sqlite3

    with sqlite3.connect(swanlog / "runs.swanlab") as db:
        return db.execute("select name, status from experiment").fetchall(), dict(
            db.execute("select name, folder from tag").fetchall())


def _logged(folder, tag_folder):
    return [json.loads(line) for line in (folder / "logs" / tag_folder / "1000.log").read_text().splitlines()]


@needs_dashboard
def test_a_resumed_local_run_adds_to_the_same_experiment_and_a_second_replaces_its_values(no_login, tmp_path):
    import swanlab

    record = _local_training_run(tmp_path)
    folder, swanlog = Path(record["dir"]), tmp_path / "swanlog"
    assert record["mode"] == "local" and folder.parent == swanlog
    for value, text in ((0.5, "first answer"), (0.75, "second answer, a longer one " * 20)):
        tracking.resume_run(record, config=None)
        swanlab.log({"test/accuracy": value, "test/answers": [swanlab.Text(text, caption="img-1")]})
        swanlab.finish()
    experiments, charts = _dashboard(swanlog)
    assert experiments == [("run", 1)]  # one experiment, finished again
    assert list(charts) == ["train/loss", "test/accuracy", "test/answers"]
    assert [entry["data"] for entry in _logged(folder, charts["train/loss"])] == [1, 0.5, 1 / 3]
    assert [(e["index"], e["data"]) for e in _logged(folder, charts["test/accuracy"])] == [(0, 0.75)]
    assert [e["data"] for e in _logged(folder, charts["test/answers"])] == [["second answer, a longer one " * 20]]


@needs_dashboard
def test_an_image_logged_into_a_resumed_local_run_is_served_from_the_experiments_folder(no_login, tmp_path):
    import swanlab
    from PIL import Image

    record = _local_training_run(tmp_path)
    Image.new("RGB", (40, 30), (200, 30, 30)).save(tmp_path / "red.png")
    tracking.resume_run(record, config=None)
    swanlab.log({"test/predictions": [swanlab.Image(str(tmp_path / "red.png"), caption="red")]})
    swanlab.finish()
    _, charts = _dashboard(tmp_path / "swanlog")
    folder = Path(record["dir"])
    name, = _logged(folder, charts["test/predictions"])[0]["data"]
    with Image.open(folder / "media" / charts["test/predictions"] / name) as served:  # where swanboard reads it
        assert served.size == (40, 30)


@needs_dashboard
def test_a_local_run_whose_folder_is_gone_is_refused_before_swanlab_starts(no_login, tmp_path):
    import shutil

    import swanlab

    record = _local_training_run(tmp_path)
    shutil.rmtree(record["dir"])
    with pytest.raises(FileNotFoundError, match="no local SwanLab run at"):
        tracking.resume_run(record, config=None)
    assert not swanlab.has_run()


def test_an_offline_run_is_continued_under_the_same_id_so_that_sync_joins_them(no_login, tmp_path):
    import swanlab

    run = swanlab.init(project="vlmtune-test", mode="offline")
    record = tracking.run_record(run, "vlmtune-test")
    swanlab.finish()
    again = tracking.resume_run(record, config=None)
    try:
        assert again.id == record["id"] and again.mode == "offline"
        assert Path(again.dir).resolve().parent == Path(record["dir"]).parent
        assert Path(again.dir).name.endswith(record["id"]) and Path(again.dir).resolve() != Path(record["dir"])
    finally:
        swanlab.finish()


def test_the_trainer_callback_records_its_run_for_test_py(tmp_path, monkeypatch):
    import swanlab

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SWANLAB_LOG_DIR", str(tmp_path / "swanlog"))
    callback = tracking.tracking_callback("vlmtune-test", "run", "offline")
    try:
        _train(tmp_path, callback)
    finally:
        swanlab.finish()
    record = callback.run_record
    assert set(record) == {"id", "mode", "project", "dir"} and record["mode"] == "offline"
    assert Path(record["dir"]).is_absolute() and Path(record["dir"]).is_dir()
    assert Path(record["dir"]).name.endswith(record["id"]) and record["project"] == "vlmtune-test"
