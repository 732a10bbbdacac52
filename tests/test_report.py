"""The run report: loss.png's panels from a log history, the task's pictures (titled confusion matrices, the box
gallery's legend, expressions and IoUs), and report.html as a person sees it in headless Chromium: every picture
loads, the numbers shown are metrics.json's, every answer is there in full and as text. One end-to-end run of the
tiny model checks that train.py and test.py leave both files."""

import contextlib
import io
import json
from pathlib import Path

import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from PIL import Image

import csv2json
import data2csv
import test as test_script
import train
from vlmtune import report
from vlmtune.metrics import confusion_figure, save_confusion_matrix
from vlmtune.tasks import TASKS, gallery_figure

LOG_HISTORY = [
    {"step": 0, "epoch": 0, "eval_loss": 3.0, "eval_accuracy": 0.25, "eval_macro_f1": 0.1, "eval_cider": 0.4,
     "eval_runtime": 1.5, "eval_samples_per_second": 2.0, "eval_steps_per_second": 1.0},
    {"step": 1, "epoch": 0.5, "loss": 2.5, "grad_norm": 4.0, "learning_rate": 1e-3},
    {"step": 2, "epoch": 1.0, "loss": 1.5, "grad_norm": 3.0, "learning_rate": 5e-4},
    {"step": 2, "epoch": 1.0, "eval_loss": 1.2, "eval_accuracy": 0.75, "eval_macro_f1": 0.6, "eval_cider": 2.5,
     "eval_runtime": 1.4},
    {"step": 2, "epoch": 1.0, "train_runtime": 12.0, "train_loss": 2.0, "total_flos": 1.0},
]
LONG_ANSWER = "A " + "very " * 70 + "long answer that ends here."  # 380 characters: a cut would show
MARKUP_ANSWER = "It is a <b>ball</b> &amp; nothing else"  # markup and an entity, both to show as typed
CLASSES = ["ball", "crate", "tent"]


def test_curves_are_the_logged_series_by_step_without_timings():
    series = report.curves(LOG_HISTORY)
    assert series["loss"] == [(1, 2.5), (2, 1.5)]
    assert series["learning_rate"] == [(1, 1e-3), (2, 5e-4)]
    assert series["eval_loss"] == [(0, 3.0), (2, 1.2)]
    assert series["eval_accuracy"] == [(0, 0.25), (2, 0.75)]
    assert set(series) == {"loss", "learning_rate", "grad_norm", "eval_loss", "eval_accuracy", "eval_macro_f1",
                           "eval_cider"}


def test_loss_figure_has_a_panel_each_for_loss_learning_rate_grad_norm_and_the_validation_metrics(tmp_path):
    figure = report.loss_figure(LOG_HISTORY)
    panels = {axes.get_title(): axes for axes in figure.axes}
    # CIDEr (0 to 10) on its own: on the 0-1 panel it would flatten the others
    assert list(panels) == ["loss", "learning rate", "grad norm", "validation metrics", "validation cider"]
    lines = {line.get_label(): list(zip(*line.get_data())) for line in panels["loss"].get_lines()}
    assert lines == {"training loss": [(1, 2.5), (2, 1.5)], "validation loss": [(0, 3.0), (2, 1.2)]}
    assert [line.get_label() for line in panels["validation metrics"].get_lines()] == ["accuracy", "macro_f1"]
    assert list(panels["learning rate"].get_lines()[0].get_ydata()) == [1e-3, 5e-4]
    path = report.plot_loss(LOG_HISTORY, tmp_path / "loss.png")
    with Image.open(path) as image:
        assert image.format == "PNG" and image.width > 500


def test_loss_figure_of_a_run_shorter_than_its_logging_steps_says_why_it_is_empty():
    figure = report.loss_figure([{"step": 2, "train_runtime": 3.0, "train_loss": 1.0}])
    shown = [text.get_text() for axes in figure.axes for text in axes.texts]
    assert any("--logging_steps" in text for text in shown)


def test_log_history_comes_from_the_run_folder_else_its_newest_checkpoint(tmp_path):
    assert report.read_log_history(tmp_path) is None
    for step in (9, 10):
        (tmp_path / f"checkpoint-{step}").mkdir()
        (tmp_path / f"checkpoint-{step}" / "trainer_state.json").write_text(
            json.dumps({"log_history": [{"step": step, "loss": 1.0}]}))
    assert report.read_log_history(tmp_path) == [{"step": 10, "loss": 1.0}]  # 10 after 9, not before it
    (tmp_path / "trainer_state.json").write_text(json.dumps({"log_history": LOG_HISTORY}))
    assert report.read_log_history(tmp_path) == LOG_HISTORY


def _overlaps(boxes):
    return [(a, b) for i, a in enumerate(boxes) for b in boxes[i + 1:] if a.overlaps(b)]


@pytest.mark.parametrize("count", [3, 60])
def test_confusion_matrix_is_titled_and_its_labels_do_not_overlap(count, tmp_path):
    classes = [f"class name {i}" for i in range(count)]
    confusion = [[int(i == j) for j in range(count + 1)] for i in range(count)]
    figure = confusion_figure(confusion, classes, title="fine-tuned")
    renderer = FigureCanvasAgg(figure).get_renderer()
    figure.draw(renderer)  # lays the labels out where the PNG has them
    axes = figure.axes[0]
    assert axes.get_title() == "fine-tuned"
    for labels in (axes.get_xticklabels(), axes.get_yticklabels()):
        assert len(labels) in (count, count + 1)
        assert not _overlaps([label.get_window_extent(renderer) for label in labels])
        assert min(label.get_fontsize() for label in labels) >= 6  # still readable
    with Image.open(save_confusion_matrix(confusion, classes, tmp_path / "c.png", title="fine-tuned")) as image:
        size = image.size
    with Image.open(save_confusion_matrix([[1, 0]], ["a"], tmp_path / "one.png")) as image:
        assert size[0] > image.width and size[1] > image.height  # the figure grows with the class count


def _grounding_rows(tmp_path):
    image = tmp_path / "g.png"
    Image.new("RGB", (224, 112), "white").save(image)  # Qwen's 28-pixel grid: the model sees it unresized
    model = {"model_type": "qwen2_5_vl", "image_factor": 28, "image_min_pixels": 3136, "image_max_pixels": 40000}
    record = {"box": [28, 28, 112, 84], "image_size": [224, 112], "expression": "the grey box on the left"}
    reference = TASKS["grounding"].reference(record, model)
    answer = TASKS["grounding"].adapt([{}], record, model)[-1]["content"][0]["text"]  # the exact box
    return [{"id": "g1", "image": str(image), "reference": answer, "references": [answer], **reference,
             "base": "no idea", "prediction": answer}]


def test_box_gallery_has_a_legend_and_each_images_expression_and_iou(tmp_path):
    rows = _grounding_rows(tmp_path)
    figure = gallery_figure(rows * 2, [(28, 28, 112, 84), None], title="fine-tuned")
    legend = figure.legends[0]
    assert [text.get_text() for text in legend.get_texts()] == ["reference", "prediction"]
    assert legend.get_title().get_text() == "fine-tuned"
    colours = [patch.get_edgecolor()[:3] for patch in legend.get_patches()]
    assert colours[0][1] > 0.5 > colours[0][0] and colours[1][0] > 0.5 > colours[1][1]  # green, then red
    assert [axes.get_title() for axes in figure.axes] == ["the grey box on the left\nIoU 1.00",
                                                          "the grey box on the left\nno box read"]
    scores = TASKS["grounding"].score(rows, tmp_path)
    assert Path(scores["fine_tuned"]["gallery_png"]).is_file() and Path(scores["base"]["gallery_png"]).is_file()


# --------------------------------------------------------------------------------------------------- the page


def _classification_run(tmp_path, count=4):
    """A run folder as test.py leaves it, by hand: run_config.json, trainer_state.json, predictions rows scored
    into metrics.json (with the task's real confusion matrices), and test-img answers."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    colours = ["red", "green", "blue", "orange", "purple", "teal"]
    rows = []
    for i in range(count):
        image = tmp_path / f"img{i}.png"
        Image.new("RGB", (40 + 8 * i, 32), colours[i % len(colours)]).save(image)
        label = CLASSES[i % 3]
        rows.append({"id": f"img-{i}", "image": str(image), "reference": label, "references": [label],
                     "label": label, "classes": CLASSES, "aliases": {},
                     "base": [LONG_ANSWER, MARKUP_ANSWER, "tent", "I see nothing"][i % 4],
                     "prediction": [label, label, "crate", LONG_ANSWER][i % 4]})
    metrics = {"task": "classification", "n": len(rows)} | TASKS["classification"].score(rows, run_dir)
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    run = {"data": {"task": "classification", "data_dir": str(tmp_path), "source": "synthetic"},
           "model": {"base_model": "tiny-qwen2-vl", "model_dir": "models/tiny", "image_min_pixels": 3136,
                     "image_max_pixels": 12544},
           "tune": {"language": "lora", "vision": "frozen", "projector": "frozen", "lora_r": 8, "lora_alpha": 16,
                    "lora_dropout": 0.05, "max_length": 1024},
           "training": {"output_dir": str(run_dir), "learning_rate": 1e-3, "lr_scheduler_type": "cosine",
                        "num_train_epochs": 1, "max_steps": 2, "per_device_train_batch_size": 4,
                        "gradient_accumulation_steps": 1, "seed": 42, "hub_token": "<HUB_TOKEN>"}}
    (run_dir / "trainer_state.json").write_text(json.dumps({"log_history": LOG_HISTORY}))
    extra = tmp_path / "mine.png"
    Image.new("RGB", (30, 30), "yellow").save(extra)
    (run_dir / "test-img-predictions.jsonl").write_text(
        json.dumps({"id": "mine.png", "image": str(extra), "base": "a yellow thing", "prediction": "ball"}) + "\n")
    return run_dir, run, json.loads((run_dir / "metrics.json").read_text()), rows


def _question(text):
    return [{"role": "user", "content": [{"type": "image", "image": "x.png"}, {"type": "text", "text": text}]}]


def _shown_metrics(page) -> dict:
    """metric name -> (base cell, fine-tuned cell) as the table shows them."""
    shown = {}
    for row in page.locator("#metrics tr.metric").all():
        name = row.locator("th").inner_text()
        shown[name] = (row.locator("td.base").inner_text(), row.locator("td.fine-tuned").inner_text())
    return shown


def _flat(values, prefix=""):
    flat = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat |= _flat(value, f"{prefix}{key} / ")
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            flat[f"{prefix}{key}"] = value
    return flat


def _assert_metrics_shown(page, metrics):
    shown = _shown_metrics(page)
    base, tuned = _flat(metrics["base"]), _flat(metrics["fine_tuned"])
    assert set(shown) == set(base) | set(tuned)
    for name, (base_cell, tuned_cell) in shown.items():
        for cell, side in ((base_cell, base), (tuned_cell, tuned)):
            assert float(cell) == pytest.approx(side[name], abs=5e-5), name  # shown to 4 decimals
    scalars = {row.locator("th").inner_text(): row.locator("td").inner_text()
               for row in page.locator("#metrics tr.run-scalar").all()}
    assert scalars == {"task": metrics["task"], "n": str(metrics["n"])}


def _assert_every_image_loads(page):
    loaded = page.eval_on_selector_all("img", "all => all.map(i => [i.complete, i.naturalWidth, i.src.slice(0, 5)])")
    assert loaded and all(done and width > 0 and src == "data:" for done, width, src in loaded), loaded
    return len(loaded)


def test_report_page_shows_metrics_pictures_and_every_answer_in_full(tmp_path, page):
    run_dir, run, metrics, rows = _classification_run(tmp_path)
    questions = [_question("Which of these is in the picture: ball, crate, tent?")] * len(rows)
    path = report.write_report(run_dir, run, metrics, rows, questions)
    assert path == run_dir / "report.html"
    source = path.read_text(encoding="utf-8")
    assert "<HUB_TOKEN>" not in source and "hub_token" not in source
    page.goto(path.as_uri())
    # self-contained: no script, no stylesheet or frame to fetch, every src and href a data: URI
    assert page.locator("script, link, iframe, object, [src]:not([src^='data:']), [href]").count() == 0

    # curves + 2 confusion matrices + 4 validation images + 1 test-img image, each decoded by the browser
    assert _assert_every_image_loads(page) == 1 + 2 + len(rows) + 1
    _assert_metrics_shown(page, metrics)
    captions = page.locator("#pictures-section figcaption").all_inner_texts()
    assert captions == ["Confusion matrix: base model", "Confusion matrix: fine-tuned"]
    assert page.locator("#validation-section .count").inner_text() == "4 of 4 validation questions shown"
    assert "Which of these is in the picture: ball, crate, tent?" in page.locator("#validation-section").inner_text()
    for row in rows:
        card = page.locator(f'.card[data-id="{row["id"]}"]')
        assert card.locator(".reference .text").inner_text() == row["reference"]
        assert card.locator(".base .text").inner_text() == row["base"]
        assert card.locator(".fine-tuned .text").inner_text() == row["prediction"]
        for text in card.locator(".text").all():  # nothing cut off by the card's width
            assert text.evaluate("e => e.scrollWidth <= e.clientWidth")
    assert page.get_by_text(LONG_ANSWER, exact=True).count() == 2  # img-0's base, img-3's fine-tuned
    assert page.get_by_text(MARKUP_ANSWER, exact=True).count() == 1  # the characters shown...
    assert page.locator(".card b").count() == 0  # ...and no bold made of them
    assert page.locator('.card[data-id="img-1"] .base .read').inner_text() == "read as: ball"
    extra = page.locator('#test-img-section .card[data-id="mine.png"]')
    assert extra.locator(".base .text").inner_text() == "a yellow thing"
    assert extra.locator(".fine-tuned .text").inner_text() == "ball"
    summary = page.locator("#summary").inner_text()
    assert "tiny-qwen2-vl" in summary and "r 8, alpha 16" in summary and "12 s" in summary


def test_report_gallery_is_capped_and_its_thumbnails_small(tmp_path, page, monkeypatch):
    monkeypatch.setattr(report, "GALLERY_MAX", 3)
    run_dir, run, metrics, rows = _classification_run(tmp_path, count=5)
    Image.new("RGB", (2000, 1500), "navy").save(rows[0]["image"])  # a photo-sized image
    path = report.write_report(run_dir, run, metrics, rows)
    page.goto(path.as_uri())
    assert page.locator("#validation-section .count").inner_text() == "3 of 5 validation questions shown"
    assert page.locator("#validation-section .card").count() == 3
    width, height = page.locator('.card[data-id="img-0"] img').evaluate("i => [i.naturalWidth, i.naturalHeight]")
    assert (width, height) == (report.THUMB, 192)
    assert path.stat().st_size < 400_000


def test_report_of_a_grounding_run_shows_both_box_galleries_and_each_answers_iou(tmp_path, page):
    rows = _grounding_rows(tmp_path)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    metrics = {"task": "grounding", "n": 1} | TASKS["grounding"].score(rows, run_dir)
    path = report.write_report(run_dir, {"data": {"task": "grounding"}}, metrics, rows)
    page.goto(path.as_uri())
    _assert_every_image_loads(page)
    _assert_metrics_shown(page, metrics)
    assert page.locator("#pictures-section figcaption").all_inner_texts() == [
        "Boxes (green: reference, red: prediction): base model",
        "Boxes (green: reference, red: prediction): fine-tuned"]
    assert page.locator(".card .fine-tuned .read").inner_text() == "IoU 1.00"
    assert page.locator(".card .base .read").inner_text() == "no box read"
    assert "no training curves" in page.locator("#curves-section").inner_text()


# ----------------------------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def reported_run(tiny_model_dir, tmp_path_factory):
    """One tiny classification run: 3 steps with an evaluation at the start and at the end, then test.py."""
    work = tmp_path_factory.mktemp("report")
    data_dir, run_dir, test_img = work / "data", work / "run", work / "test-img"
    data2csv.main(["--task", "classification", "--data_dir", str(data_dir), "--num_samples", "20",
                   "--synthetic_image_size", "56"])
    csv2json.main(["--task", "classification", "--data_dir", str(data_dir), "--val_size", "4"])
    train.main(["--task", "classification", "--data_dir", str(data_dir), "--model_dir", str(tiny_model_dir), "--output_dir", str(run_dir),
                "--report_to", "none", "--use_cpu", "true", "--per_device_train_batch_size", "4", "--lora_r", "8",
                "--max_steps", "3", "--logging_steps", "1", "--eval_strategy", "steps", "--eval_steps", "3",
                "--eval_samples", "4"])
    test_img.mkdir()
    Image.new("RGB", (56, 56), "red").save(test_img / "mine.png")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        metrics = test_script.main(["--run_dir", str(run_dir), "--test_img_dir", str(test_img),
                                    "--max_new_tokens", "16"])
    return run_dir, metrics, printed.getvalue()


def test_training_leaves_loss_png_and_its_log_as_json(reported_run):
    run_dir, _, _ = reported_run
    with Image.open(run_dir / "loss.png") as image:
        assert image.format == "PNG"
    history = json.loads((run_dir / "trainer_state.json").read_text())["log_history"]
    assert [entry["step"] for entry in history if "loss" in entry] == [1, 2, 3]
    assert [entry["step"] for entry in history if "eval_accuracy" in entry] == [0, 3]


def test_test_py_writes_a_report_that_shows_the_runs_metrics(reported_run, page):
    run_dir, metrics, printed = reported_run
    assert f"report (open it in a browser): {run_dir / 'report.html'}" in printed
    assert metrics == json.loads((run_dir / "metrics.json").read_text())
    page.goto((run_dir / "report.html").as_uri())
    # curves, two confusion matrices, the 4 validation images, test-img's one
    assert _assert_every_image_loads(page) == 1 + 2 + metrics["n"] + 1
    _assert_metrics_shown(page, metrics)
    rows = [json.loads(line) for line in (run_dir / "predictions.jsonl").read_text().splitlines()]
    for row in rows:
        card = page.locator(f'.card[data-id="{row["id"]}"]')
        assert [card.locator(f".{kind} .text").inner_text() for kind in ("reference", "base", "fine-tuned")] == [
            row["reference"], row["base"], row["prediction"]]
    assert page.locator("#pictures-section figcaption").all_inner_texts() == [
        "Confusion matrix: base model", "Confusion matrix: fine-tuned"]
