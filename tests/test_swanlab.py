"""SwanLab as a user without an account sees it: a tiny run trained and tested in 'local' mode, then `swanlab watch`
on its logs, looked at in headless Chromium. One experiment, holding the training loss and test.py's metrics and
answers, in full. Then test.py's SwanLab logging on hand-made results: the table, and what it does when the
training's experiment cannot be opened."""

import json
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

import csv2json
import data2csv
import test as test_script
import train
from vlmtune import reporting, tracking

STEPS = 3
SHOWN = ["train/loss", "test/metrics", "test/metrics table", "test/predictions", "test/reference",
         "test/base answer", "test/fine-tuned answer"]


@pytest.fixture(scope="module")
def logged_run(tiny_model_dir, tmp_path_factory):
    """data2csv -> csv2json -> train.py (3 steps) -> test.py (2 questions), SwanLab in local mode, as without a login
    with the dashboard installed."""
    if not tracking.local_dashboard_installed():
        pytest.skip('swanboard is not installed: `pip install "swanlab[dashboard]"` (requirements.txt has it)')
    work = tmp_path_factory.mktemp("swan")
    data, run_dir, swanlog = work / "data", work / "run", work / "swanlog"
    with pytest.MonkeyPatch.context() as env:
        env.chdir(work)
        for name in ("SWANLAB_API_KEY", "SWANLAB_PROJECT"):
            env.delenv(name, raising=False)
        env.setenv("SWANLAB_MODE", "local")
        env.setenv("SWANLAB_LOG_DIR", str(swanlog))
        data2csv.main(["--data_dir", str(data), "--num_samples", "16", "--synthetic_image_size", "56"])
        csv2json.main(["--data_dir", str(data), "--val_size", "3"])
        train.main(["--data_dir", str(data), "--model_dir", str(tiny_model_dir), "--output_dir", str(run_dir),
                    "--report_to", "swanlab", "--max_steps", str(STEPS), "--logging_steps", "1",
                    "--per_device_train_batch_size", "4", "--lora_r", "8"])
        (work / "test-img").mkdir()
        metrics = test_script.main(["--run_dir", str(run_dir), "--eval_samples", "2", "--max_new_tokens", "16",
                                    "--test_img_dir", str(work / "test-img")])
    rows = [json.loads(line) for line in (run_dir / "predictions.jsonl").read_text().splitlines()]
    return {"run_dir": run_dir, "swanlog": swanlog, "metrics": metrics, "rows": rows, "work": work,
            "record": json.loads((run_dir / "run_config.json").read_text())["swanlab"]}


# whether a canvas has a painted pixel
DRAWN = """canvas => { const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
                      for (let i = 3; i < data.length; i += 4) { if (data[i]) return true; } return false; }"""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def dashboard(logged_run):
    """`swanlab watch` on the run's swanlog/, on a free port; its address once it answers. Stopped in teardown."""
    log_path = logged_run["work"] / "watch.log"
    with open(log_path, "w") as log:
        server = subprocess.Popen([sys.executable, "-m", "swanlab", "watch", str(logged_run["swanlog"]),
                                   "--host", "127.0.0.1", "--port", str(_free_port())],
                                  stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline, url = time.monotonic() + 60, None
        while url is None:
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"swanlab watch did not start: {log_path.read_text()[-2000:]}")
            if found := re.search(r"http://127\.0\.0\.1:(\d+)", log_path.read_text()):  # it moves off a busy port
                try:
                    urllib.request.urlopen(f"{found.group(0)}/api/v1/project", timeout=5)
                    url = found.group(0)
                except OSError:
                    pass
            time.sleep(0.3)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def _api(url: str, path: str):
    with urllib.request.urlopen(f"{url}/api/v1/{path}", timeout=10) as answer:
        return json.load(answer)["data"]


def _panel(page, title: str):
    """The dashboard's panel of one chart, found by its title."""
    return page.locator("section.chart-container").filter(has=page.get_by_text(title, exact=True))


def _experiments(page) -> list[str]:
    """The experiments the dashboard's side bar lists."""
    return page.locator("a.experiment-link").evaluate_all("links => links.map(link => link.title)")


def _lines(page, title: str) -> list[list[str]]:
    """A text panel's lines, [caption, the whole text] each (a line shows what fits, its tooltip all of it);
    panels load as they scroll into view."""
    panel = _panel(page, title)
    panel.scroll_into_view_if_needed()
    panel.locator(".line").first.wait_for(timeout=30_000)
    return panel.locator(".line").evaluate_all(
        "lines => lines.map(l => [l.querySelector('.caption').innerText, l.querySelector('.text').title])")


def _open_experiment(page, url: str, name: str):
    page.goto(url, wait_until="networkidle")
    page.locator(f"a.experiment-link[title='{name}']").click()
    _panel(page, "test/fine-tuned answer").wait_for(timeout=30_000)


def _wait_until_loaded(page, images):
    for i in range(images.count()):
        images.nth(i).scroll_into_view_if_needed()
        page.wait_for_function("image => image.complete && image.naturalWidth > 0", arg=images.nth(i).element_handle(),
                               timeout=30_000)


def test_the_run_is_one_experiment_in_the_dashboard(logged_run, dashboard, page):
    record, name = logged_run["record"], logged_run["run_dir"].name
    assert record["mode"] == "local" and Path(record["dir"]).parent == logged_run["swanlog"]
    experiments = _api(dashboard, "project")["experiments"]
    assert [(e["name"], e["run_id"]) for e in experiments] == [(name, Path(record["dir"]).name)]
    page.goto(dashboard, wait_until="networkidle")
    page.locator("a.experiment-link").first.wait_for()
    assert _experiments(page) == [name]  # no second experiment ("test run") of test.py's


def test_its_charts_show_the_training_loss_and_the_test_metrics_of_metrics_json(logged_run, dashboard, page):
    experiment_id = _api(dashboard, "project")["experiments"][0]["id"]
    charts = [chart["name"] for chart in _api(dashboard, f"experiment/{experiment_id}/chart")["charts"]]
    assert [name for name in SHOWN if name in charts] == SHOWN
    loss = _api(dashboard, f"experiment/{experiment_id}/tag/train%2Floss")["list"]
    assert [point["index"] for point in loss] == list(range(1, STEPS + 1)) and all(p["data"] > 0 for p in loss)

    _open_experiment(page, dashboard, logged_run["run_dir"].name)
    for title in SHOWN:
        assert page.get_by_text(title, exact=True).count() >= 1, title
    curve = _panel(page, "train/loss").locator("canvas").first
    curve.scroll_into_view_if_needed()
    assert curve.evaluate(DRAWN), "the loss curve's canvas is blank"
    _wait_until_loaded(page, _panel(page, "test/metrics").locator("img"))  # the base/fine-tuned bar chart

    metrics = logged_run["metrics"]
    texts = [text for _, text in _lines(page, "test/metrics table")]
    scores = [name for name, value in metrics["base"].items() if isinstance(value, float)]  # caption: all flat
    assert {"exact_match", "cider"} <= set(scores)
    assert texts == [f"n: base {metrics['n']} | fine-tuned {metrics['n']}"] + [
        f"{name}: base {metrics['base'][name]:.4g} | fine-tuned {metrics['fine_tuned'][name]:.4g}" for name in scores]


def test_each_answer_is_there_in_full_beside_its_image(logged_run, dashboard, page):
    rows = logged_run["rows"]
    _open_experiment(page, dashboard, logged_run["run_dir"].name)
    for title, key in (("test/reference", "reference"), ("test/base answer", "base"),
                       ("test/fine-tuned answer", "prediction")):
        assert _lines(page, title) == [[row["id"], row[key]] for row in rows], title
    longest = max(rows, key=lambda row: len(row["base"]))
    line = _panel(page, "test/base answer").locator(".line").filter(has_text=longest["id"]).first
    line.hover()
    line.locator("svg").click()  # its zoom button: the whole text in a dialog, a paragraph a line
    dialog = page.get_by_role("dialog")
    dialog.get_by_text("number of words:").wait_for()
    shown = [text.strip() for text in dialog.locator("p span").all_inner_texts()]
    assert [text for text in shown if text] == [text.strip() for text in longest["base"].splitlines() if text.strip()]
    page.keyboard.press("Escape")

    images = _panel(page, "test/predictions").locator("img")
    images.first.wait_for(timeout=30_000)
    assert images.count() == len(rows)
    _wait_until_loaded(page, images)
    captions = _panel(page, "test/predictions").inner_text()
    assert all(row["id"] in captions for row in rows)


# ---- test.py's logging on hand-made results


METRICS = {"task": "classification", "n": 3,
           "base": {"accuracy": 1 / 3, "per_class": {"cat": {"f1": 0.5, "support": 1}}, "macro_f1": 0.25},
           "fine_tuned": {"accuracy": 1.0, "per_class": {"cat": {"f1": 1.0, "support": 1}}, "macro_f1": 1.0}}


def test_the_metrics_table_has_one_row_a_number_with_both_models():
    headers, rows = reporting.metrics_table(METRICS)
    assert headers == ["metric", "base", "fine-tuned"]
    assert rows == [["n", "3", "3"], ["accuracy", "0.3333", "1"], ["per_class/cat/f1", "0.5", "1"],
                    ["per_class/cat/support", "1", "1"], ["macro_f1", "0.25", "1"]]
    axes, = reporting.metrics_chart(METRICS).axes
    assert [tick.get_text() for tick in axes.get_xticklabels()] == ["accuracy", "per_class/cat/f1", "macro_f1"]
    assert [round(bar.get_height(), 4) for bar in axes.patches] == [0.3333, 0.5, 0.25, 1.0, 1.0, 1.0]


def _hand_made_run(tmp_path, record):
    from PIL import Image

    Image.new("RGB", (32, 32), (30, 160, 60)).save(tmp_path / "green.png")
    rows = [{"id": "green", "image": str(tmp_path / "green.png"), "reference": "cat", "references": ["cat"],
             "base": "a long answer of the base model " * 8, "prediction": "cat"}]
    run = {"swanlab": record, "training": {"output_dir": str(tmp_path / "run")}, "model": {"base_model": "tiny"},
           "data": {"task": "classification"}}
    return run, rows


@pytest.fixture
def offline(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SWANLAB_MODE", "offline")
    monkeypatch.setenv("SWANLAB_LOG_DIR", str(tmp_path / "swanlog"))


def test_a_run_config_from_before_the_record_gets_a_test_experiment_of_its_own(tmp_path, offline, capsys):
    import swanlab

    run, rows = _hand_made_run(tmp_path, True)
    reporting.log_to_swanlab(run, METRICS, rows)
    assert "logged as an experiment of their own (offline)" in capsys.readouterr().out
    assert not swanlab.has_run()  # finished
    folder, = (tmp_path / "swanlog").glob("run-*")
    assert (folder / "media" / "text").is_dir() and (folder / "media" / "image").is_dir()


def test_a_training_experiment_that_is_gone_gives_a_warning_and_a_run_of_its_own(tmp_path, offline, capsys):
    record = {"id": "abc", "mode": "local", "project": "vlmtune-test", "dir": str(tmp_path / "swanlog" / "run-x-abc")}
    run, rows = _hand_made_run(tmp_path, record)
    reporting.log_to_swanlab(run, METRICS, rows)  # no exception: the results are on disk already
    out = capsys.readouterr().out
    assert "warning: SwanLab: the training run's experiment could not be opened again (FileNotFoundError" in out
    assert "logged as an experiment of their own (offline)" in out


def test_with_swanlab_disabled_test_py_logs_nothing(tmp_path, offline, monkeypatch, capsys):
    monkeypatch.setenv("SWANLAB_MODE", "disabled")
    run, rows = _hand_made_run(tmp_path, {"id": "abc", "mode": "local", "project": "p", "dir": str(tmp_path)})
    reporting.log_to_swanlab(run, METRICS, rows)
    assert "SwanLab" not in capsys.readouterr().out and not (tmp_path / "swanlog").exists()

