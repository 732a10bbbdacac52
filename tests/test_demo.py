"""demo.py: the gradio app answers as test.py does, for a validation image and an uploaded PNG, reads the answers as
test.py scores them, and its page renders offline in headless Chromium.

One tiny grounding run (trained 4 steps, then test.py), shared by the module; the app runs in-process on a free port
of 127.0.0.1 and is closed in the fixture's teardown. The tests that need gradio skip, saying how to install it,
where it is not installed (CI installs requirements-demo.txt).
"""

import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

import csv2json
import data2csv
import demo
import test as test_script
import train
from vlmtune import boxes

ROOT = Path(__file__).resolve().parents[1]
NO_GRADIO = "gradio is not installed: `pip install -r requirements-demo.txt` (as .ci/run does)"
TINY = {"model_type": "qwen2_vl", "image_factor": 28, "image_min_pixels": 3136, "image_max_pixels": 12544,
        "pad_to_square": False}  # the tiny Qwen2-VL's model_info, for the unit tests


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind((demo.HOST, 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def grounding_run(tiny_model_dir, tmp_path_factory):
    """A tiny grounding run that test.py has answered: its folder, val.json's records, the rows of predictions.jsonl
    and test-img-predictions.jsonl, and the PNG test-img/ held."""
    if importlib.util.find_spec("gradio") is None:  # not worth training for without the demo
        pytest.skip(NO_GRADIO)  # (found, not imported: app_url sets gradio's folder before gradio is imported)
    work = tmp_path_factory.mktemp("demo")
    data = work / "data"
    data2csv.main(["--task", "grounding", "--data_dir", str(data), "--num_samples", "16", "--synthetic_image_size",
                   "56"])
    csv2json.main(["--task", "grounding", "--data_dir", str(data), "--val_size", "3"])
    run_dir = work / "run"
    # a learning rate this high moves the fine-tuned answers away from the base's in 4 steps
    train.main(["--task", "grounding", "--data_dir", str(data), "--model_dir", str(tiny_model_dir), "--output_dir",
                str(run_dir), "--max_steps", "4", "--report_to", "none", "--use_cpu", "true",
                "--per_device_train_batch_size", "4", "--lora_r", "8", "--learning_rate", "5e-2"])
    test_img = work / "test-img"
    test_img.mkdir()
    png = shutil.copy(ROOT / "test-img" / "scene-2.png", test_img / "scene-2.png")  # 112x112, twice the run's size
    test_script.main(["--run_dir", str(run_dir), "--test_img_dir", str(test_img)])
    return {"run_dir": run_dir, "records": json.loads((data / "val.json").read_text()), "png": Path(png),
            "rows": _rows(run_dir / "predictions.jsonl"), "extra": _rows(run_dir / "test-img-predictions.jsonl")}


@pytest.fixture(scope="module")
def app_url(grounding_run, tmp_path_factory):
    """The demo of `grounding_run`, running on a free port; stopped after the module's tests."""
    before = os.environ.get("GRADIO_TEMP_DIR")
    os.environ["GRADIO_TEMP_DIR"] = str(tmp_path_factory.mktemp("gradio"))  # uploads and outputs: not /tmp/gradio
    port = _free_port()
    app = demo.main(["--run_dir", str(grounding_run["run_dir"]), "--port", str(port)], block=False)
    try:
        yield f"http://{demo.HOST}:{port}/"
    finally:
        app.close()
        if before is None:
            os.environ.pop("GRADIO_TEMP_DIR", None)
        else:
            os.environ["GRADIO_TEMP_DIR"] = before


@pytest.fixture(scope="module")
def client(app_url, tmp_path_factory):
    from gradio_client import Client

    return Client(app_url, verbose=False, download_files=str(tmp_path_factory.mktemp("downloads")))


def _box_read(row: dict, answer: str):
    """The answer's box as test.py's scoring reads it (tasks.score_grounding)."""
    resized = None if row["resized_size"] is None else tuple(row["resized_size"])
    return boxes.parse_box(row["box_convention"], answer, tuple(row["image_size"]), resized)


def _drawn(annotated: dict) -> dict:
    """label -> (x1, y1, x2, y2) that gradio's AnnotatedImage mask covers, from the mask file the client fetched."""
    return {note["label"]: Image.open(note["image"]).getchannel("A").getbbox() for note in annotated["annotations"]}


def _question(record: dict) -> str:
    """The text a val.json record asks after its image."""
    return record["conversations"][0]["value"].rsplit("<|vision_end|>", 1)[1]


def _told_apart(rows: list[dict]) -> int:
    """The first row whose base and fine-tuned answers differ, so that a test of it tells the two models apart."""
    return next(i for i, row in enumerate(rows) if row["base"] != row["prediction"])


def test_the_fine_tuned_answers_differ_from_the_base_ones_so_the_demo_tests_can_tell_them_apart(grounding_run):
    assert any(row["base"] != row["prediction"] for row in grounding_run["rows"])
    assert grounding_run["extra"][0]["base"] != grounding_run["extra"][0]["prediction"]


def test_a_picked_validation_image_is_answered_as_test_py_answered_it_and_its_boxes_drawn(grounding_run, client):
    index = _told_apart(grounding_run["rows"])
    row = grounding_run["rows"][index]
    record = next(r for r in grounding_run["records"] if r["id"] == row["id"])
    image, question, reference = client.predict(index, api_name="/pick")
    assert Path(image).read_bytes() == Path(row["image"]).read_bytes()
    assert question == _question(record) and question.startswith("Locate ")  # the record's own question
    assert reference == row["reference"]
    from gradio_client import handle_file

    base, tuned, base_read, tuned_read, annotated = client.predict(handle_file(image), question, index,
                                                                   api_name="/answer")
    assert (base, tuned) == (row["base"], row["prediction"])
    expected = {"reference": tuple(round(v) for v in row["box"])}
    for who, answer, read in (("base", base, base_read), ("fine-tuned", tuned, tuned_read)):
        box = _box_read(row, answer)
        if box is None:
            assert read == "no box could be read from the answer"
        else:
            assert read.startswith(f"box {[round(v) for v in box]} ")
            expected[who] = tuple(round(v) for v in box)
    drawn = _drawn(annotated)
    assert drawn.keys() == expected.keys()
    for who, (x1, y1, x2, y2) in expected.items():
        if x2 - x1 >= 3 and y2 - y1 >= 3:
            assert drawn[who] == (x1, y1, x2, y2), who
        else:  # gradio's 3-pixel border, drawn inwards from each side, spills out of a box thinner than itself
            left, top, right, bottom = drawn[who]
            assert x1 - 3 <= left <= x1 and y1 - 3 <= top <= y1 and x2 <= right <= x2 + 3 and y2 <= bottom <= y2 + 3


def test_an_uploaded_png_is_answered_as_test_py_answered_it_in_test_img(grounding_run, client):
    extra, png = grounding_run["extra"], grounding_run["png"]
    from gradio_client import handle_file

    image, question, reference = client.predict(None, api_name="/pick")  # no validation image picked
    assert (image, reference) == (None, "")
    assert question == _question(grounding_run["records"][0])  # test.py's question about test-img/
    base, tuned, _, _, annotated = client.predict(handle_file(str(png)), question, None, api_name="/answer")
    assert (base, tuned) == (extra[0]["base"], extra[0]["prediction"])
    assert "reference" not in _drawn(annotated)
    assert Image.open(annotated["image"]).size == (112, 112)


def test_an_upload_test_py_would_skip_is_refused_with_its_reason(client, tmp_path):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    strip = tmp_path / "strip.png"
    Image.new("RGB", (1, 300)).save(strip)
    with pytest.raises(AppError) as refused:
        client.predict(handle_file(str(strip)), "Describe this image.", None, api_name="/answer")
    assert str(refused.value).startswith("This image cannot be answered: image too thin: ")
    assert "is 1x300, an aspect ratio of 300 to 1" in str(refused.value)


def test_the_page_renders_offline_with_the_image_input_and_both_answer_panes(grounding_run, app_url, page):
    extra, png = grounding_run["extra"], grounding_run["png"]
    from playwright.sync_api import expect

    requested, failed, errors = [], [], []
    page.on("request", lambda request: requested.append(request.url))
    page.on("requestfailed", lambda request: failed.append((request.url, request.failure)))
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.goto(app_url)
    base_pane, tuned_pane = page.get_by_label("Base model answer"), page.get_by_label("Fine-tuned model answer")
    expect(base_pane).to_be_visible(timeout=60_000)
    expect(tuned_pane).to_be_visible()
    expect(page.get_by_label("Question")).to_have_value(_question(grounding_run["records"][0]))
    assert page.locator("input[type=file]").count() >= 1  # the image upload
    # as a person does: upload the PNG, ask, and read both answers (test.py's for that image)
    page.locator("input[type=file]").first.set_input_files(str(png))
    preview = page.locator(f'img[src*="/gradio_api/file="][src$="/{png.name}"]')
    expect(preview).to_be_visible(timeout=30_000)  # the upload is in, and shown
    # an upload unpicks the validation image; that must not clear the upload (it did, picking "no image"): the picture
    # is still there once the upload's events are over, as the person who clicks "Ask" sees it
    page.wait_for_timeout(2_000)
    expect(preview).to_be_visible(timeout=1)
    page.get_by_role("button", name="Ask both models").click()
    expect(base_pane).to_have_value(extra[0]["base"], timeout=120_000)
    expect(tuned_pane).to_have_value(extra[0]["prediction"])
    shown = page.locator("img")  # the uploaded picture, and the boxes drawn on it
    expect(shown.first).to_be_visible()
    sizes = shown.evaluate_all("images => images.map(image => [image.complete, image.naturalWidth])")
    assert len(sizes) >= 2 and all(complete and width > 0 for complete, width in sizes), sizes
    # a person's pick from the list shows that validation image and its reference (an upload, above, is no pick)
    row = grounding_run["rows"][0]
    page.get_by_label("Pick a validation image").click()
    page.get_by_role("option", name=row["id"]).click()
    expect(page.get_by_label("Reference (of the validation image)")).to_have_value(row["reference"], timeout=30_000)
    expect(page.locator(f'img[src*="/gradio_api/file="][src$="/{Path(row["image"]).name}"]')).to_be_visible(
        timeout=30_000)
    outside = [url for url in requested if not url.startswith((app_url, "data:", "blob:"))]
    assert outside == [], "the page fetched from outside this machine"
    # gradio ends an answer's event stream (queue/data) itself once the answer is in: the browser calls that aborted
    failed = [(url, why) for url, why in failed if not ("/gradio_api/queue/data?" in url and why == "net::ERR_ABORTED")]
    assert failed == [] and errors == []


def test_a_run_folder_without_run_config_is_one_message(tmp_path):
    pytest.importorskip("gradio", reason=NO_GRADIO)
    with pytest.raises(SystemExit) as stop:
        demo.main(["--run_dir", str(tmp_path), "--port", str(_free_port())], block=False)
    assert str(stop.value.code) == f"No run_config.json in {tmp_path}: train first (`sh train.sh`) or pass --run_dir."


def test_a_port_in_use_is_one_message_before_any_model_loads(tmp_path):
    pytest.importorskip("gradio", reason=NO_GRADIO)
    with socket.socket() as busy:
        busy.bind((demo.HOST, 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(SystemExit) as stop:
            demo.main(["--run_dir", str(tmp_path), "--port", str(port)], block=False)
    assert str(stop.value.code) == (f"demo.py: port {port} of 127.0.0.1 is in use (another demo?): pass a free "
                                    "--port.")


def test_help_documents_the_demo_flags_from_config_py():
    result = subprocess.run([sys.executable, "demo.py", "--help"], cwd=ROOT, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    flat = " ".join(result.stdout.split())
    assert "--port PORT" in flat and "the port of the app on 127.0.0.1" in flat and "(default: 7860)" in flat
    assert "--run_dir RUN_DIR" in flat and "(default: output/tiny-qwen2-vl-lora)" in flat


# --------------------------------------------------------------------- the answer's reading, hand-made answers


def test_a_classification_answer_reads_as_the_class_test_py_scores():
    row = {"classes": ["bees", "cat", "dog"], "aliases": {"猫": "cat"}}
    assert demo.read_answer("classification", "It is a bee.", "", TINY, row) == ("class: bees", None)
    assert demo.read_answer("classification", "这是猫", "", TINY, row) == ("class: cat", None)
    assert demo.read_answer("classification", "a cat or a dog", "", TINY, row) == (
        "no one class of bees, cat, dog named", None)


def test_a_grounding_answer_reads_as_its_box_in_pixels_of_the_uploaded_image(tmp_path):
    path = tmp_path / "wide.png"
    Image.new("RGB", (200, 100)).save(path)
    # Qwen2-VL: thousandths of the image, so (500,250),(1000,750) is x 100..200, y 25..75 of its 200x100 pixels
    text, box = demo.read_answer("grounding", "<|box_start|>(500,250),(1000,750)<|box_end|>", str(path), TINY, None)
    assert box == pytest.approx((100.0, 25.0, 200.0, 75.0))
    assert text == "box [100, 25, 200, 75] (x1, y1, x2, y2 in pixels of the image)"
    # Qwen2.5-VL: pixels of the image as its processor resizes it, 140x56 here (smart_resize, factor 28, at most
    # 12544 pixels), so [70, 14, 140, 42] is the same box
    qwen25 = TINY | {"model_type": "qwen2_5_vl"}
    _, box = demo.read_answer("grounding", '[{"bbox_2d": [70, 14, 140, 42], "label": "x"}]', str(path), qwen25, None)
    assert box == pytest.approx((100.0, 25.0, 200.0, 75.0))
    assert demo.read_answer("grounding", "no idea", str(path), TINY, None) == (
        "no box could be read from the answer", None)
    assert demo.read_answer("caption", "A red circle.", str(path), TINY, None) == ("", None)


def test_a_question_about_another_image_keeps_the_template_or_asks_the_new_text():
    template = [{"role": "user", "content": [{"type": "image", "image": "/data/a.png"},
                                             {"type": "text", "text": "Describe this image."}]}]
    assert demo.ask(template, "/up/b.png", "Describe this image.") == [
        {"role": "user", "content": [{"type": "image", "image": "/up/b.png"},
                                     {"type": "text", "text": "Describe this image."}]}]
    asked = demo.ask(template, "/up/b.png", "What colour is the circle?")
    assert asked[0]["content"] == [{"type": "image", "image": "/up/b.png"},
                                   {"type": "text", "text": "What colour is the circle?"}]
    assert template[0]["content"][0]["image"] == "/data/a.png"  # the template itself is left as it was
