"""End to end: data2csv.py's main() on offline data, asserting what a user looks at (data.csv, images/, the summary)."""

import csv
import io
import json
import sys
import types

import datasets
import pytest
from PIL import Image

import data2csv
from vlmtune import sources, world


def read_rows(data_dir):
    with open(data_dir / "data.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def run(capsys, *argv):
    data2csv.main(list(argv))
    return capsys.readouterr().out


def test_help_works(capsys):
    with pytest.raises(SystemExit) as exit:
        data2csv.main(["--help"])
    assert exit.value.code == 0
    assert "--coco_annotations" in capsys.readouterr().out


def test_rerun_writes_nothing_new_and_duplicates_no_row(tmp_path, capsys):
    run(capsys, "--num_samples", "6", "--data_dir", str(tmp_path))
    first = (tmp_path / "data.csv").read_bytes()
    out = run(capsys, "--num_samples", "6", "--data_dir", str(tmp_path))
    assert (tmp_path / "data.csv").read_bytes() == first
    assert "6 records. Written now: 0, already present: 6, skipped: 0." in out
    ids = [row["id"] for row in read_rows(tmp_path)]
    assert len(ids) == len(set(ids)) == 6


def test_a_larger_num_samples_resumes_and_keeps_the_first_rows(tmp_path, capsys):
    run(capsys, "--num_samples", "5", "--data_dir", str(tmp_path))
    first_rows = read_rows(tmp_path)
    first_images = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "images").iterdir()}
    out = run(capsys, "--num_samples", "8", "--data_dir", str(tmp_path))
    rows = read_rows(tmp_path)
    assert len(rows) == 8 and rows[:5] == first_rows
    assert "Written now: 3, already present: 5" in out
    assert all((tmp_path / "images" / name).stat().st_mtime_ns == t for name, t in first_images.items())


def test_rows_round_trip_to_the_worlds_scenes(tmp_path, capsys):
    run(capsys, "--num_samples", "4", "--synthetic_seed", "3", "--synthetic_image_size", "64",
        "--data_dir", str(tmp_path))
    with open(tmp_path / "data.csv", encoding="utf-8") as f:
        assert f.readline() == "id,image_path,caption\n"
    rows = read_rows(tmp_path)
    assert rows[1]["id"] == "syn-3-000001" and rows[1]["image_path"] == "images/syn-3-000001.png"
    for index, row in enumerate(rows):
        scene = world.make_scene(3, index, 64)
        assert row["caption"] == world.caption(scene)
        with Image.open(tmp_path / row["image_path"]) as image:
            assert image.tobytes() == scene.render().tobytes()
    assert not list(tmp_path.rglob("*.tmp"))


def test_an_interrupted_run_keeps_what_it_finished(tmp_path, capsys, monkeypatch):
    synthetic_captions = sources.synthetic_captions

    def three_then_interrupted(n, seed, image_size):
        yield from synthetic_captions(3, seed, image_size)
        raise KeyboardInterrupt  # as a user's Ctrl-C would, in the middle of the run

    with monkeypatch.context() as patch:
        patch.setattr(sources, "synthetic_captions", three_then_interrupted)
        with pytest.raises(KeyboardInterrupt):
            data2csv.main(["--num_samples", "8", "--data_dir", str(tmp_path)])
    assert [row["id"] for row in read_rows(tmp_path)] == [f"syn-0-00000{i}" for i in range(3)]
    out = run(capsys, "--num_samples", "8", "--data_dir", str(tmp_path))
    assert "8 records. Written now: 5, already present: 3" in out


def test_a_row_whose_image_is_gone_is_written_again(tmp_path, capsys):
    run(capsys, "--num_samples", "3", "--data_dir", str(tmp_path))
    (tmp_path / "images/syn-0-000001.png").unlink()
    out = run(capsys, "--num_samples", "3", "--data_dir", str(tmp_path))
    assert "Written now: 1, already present: 2" in out and "1 earlier rows dropped" in out
    assert sorted(row["id"] for row in read_rows(tmp_path)) == [f"syn-0-00000{i}" for i in range(3)]


def test_coco_fixture_gives_a_row_per_caption_and_a_file_per_image(fixtures_dir, tmp_path, capsys):
    coco = fixtures_dir / "coco-mini"
    annotations = coco / "annotations/captions_train2017.json"
    out = run(capsys, "--source", "coco", "--coco_annotations", str(annotations), "--coco_images",
              str(coco / "train2017"), "--num_samples", "0", "--data_dir", str(tmp_path))
    captions = json.loads(annotations.read_text())["annotations"]
    rows = read_rows(tmp_path)
    assert [row["id"] for row in rows] == [f"{a['image_id']}_{a['id']}" for a in captions]
    assert [row["caption"] for row in rows] == [a["caption"].strip() for a in captions]
    assert rows[0]["image_path"] == "images/125870.jpg"
    assert (tmp_path / "images/125870.jpg").read_bytes() == (coco / "train2017/000000125870.jpg").read_bytes()
    assert len(list((tmp_path / "images").iterdir())) == 80
    assert "400 records. Written now: 400, already present: 0, skipped: 0." in out


def test_coco_annotations_with_a_missing_image_and_an_unknown_image_id_are_reported(fixtures_dir, tmp_path, capsys):
    coco = fixtures_dir / "coco-mini"
    broken = json.loads((coco / "annotations/captions_train2017.json").read_text())
    broken["images"][0]["file_name"] = "000000000000.jpg"  # five captions whose file is not there
    gone = broken["images"][0]["id"]
    broken["annotations"][0]["image_id"] = 123456789  # an image the file does not list
    unknown = f"123456789_{broken['annotations'][0]['id']}"
    (tmp_path / "broken.json").write_text(json.dumps(broken))
    out = run(capsys, "--source", "coco", "--coco_annotations", str(tmp_path / "broken.json"), "--coco_images",
              str(coco / "train2017"), "--num_samples", "0", "--data_dir", str(tmp_path / "out"))
    missing = [f"{gone}_{a['id']}" for a in broken["annotations"] if a["image_id"] == gone]
    assert len(missing) == 5
    rows = read_rows(tmp_path / "out")
    assert len(rows) == 400 - 6 and not {unknown, *missing} & {row["id"] for row in rows}
    assert "skipped: 6." in out
    assert f"skipped {unknown}: image_id 123456789 is not in the file's images" in out
    assert f"skipped {missing[0]}: image file missing: {coco / 'train2017/000000000000.jpg'}" in out
    assert "... and 1 more skipped." in out


def test_a_missing_annotations_file_names_the_flag(tmp_path):
    with pytest.raises(SystemExit, match=r"--coco_annotations '.*nowhere.json' is not a file: .*captions_\*.json"):
        data2csv.main(["--source", "coco", "--coco_annotations", str(tmp_path / "nowhere.json"),
                       "--coco_images", str(tmp_path), "--data_dir", str(tmp_path)])


@pytest.mark.parametrize("argv, message", [
    (["--source", "flickr"], "--source must be one of synthetic, modelscope, huggingface, coco, folder, vqa, llava, "
                             "got 'flickr'"),
    (["--task", "detection"], "--task must be one of caption, classification, grounding, vqa, got 'detection'"),
    (["--source", "folder"], "--source folder has no data for --task caption: --task caption reads --source "
                             "synthetic | modelscope | huggingface | coco, and --source folder serves --task "
                             "classification"),
    (["--task", "grounding", "--source", "llava"], "--source llava has no data for --task grounding: --task grounding "
                                                   "reads --source synthetic | coco | huggingface, and --source llava "
                                                   "serves --task vqa"),
    (["--task", "grounding", "--bbox_format", "cxcywh"], "--bbox_format must be xywh or xyxy, got 'cxcywh'"),
    (["--task", "classification", "--source", "folder", "--folder_dir", "nowhere"],
     "--folder_dir 'nowhere' is not a folder: give the folder holding one folder of images per class"),
    (["--task", "vqa", "--source", "llava", "--llava_json", "nowhere.json"],
     "--llava_json 'nowhere.json' is not a file: give a LLaVA conversation file"),
    (["--task", "vqa", "--source", "vqa"], "--vqa_questions '' is not a file: give an official VQA v2 or OK-VQA "
                                           "questions file"),
    (["--bogus", "1"], "--bogus"),
    (["--num_samples", "0"], "--num_samples must be a count"),
    (["--source", "huggingface"], "--source huggingface needs --dataset_id"),
])
def test_a_bad_flag_is_named(tmp_path, argv, message):
    with pytest.raises(SystemExit) as exit:
        data2csv.main(argv + ["--data_dir", str(tmp_path)])
    assert message in str(exit.value.code)


def test_a_folder_of_other_settings_is_refused(tmp_path, capsys):
    run(capsys, "--num_samples", "2", "--data_dir", str(tmp_path))
    with pytest.raises(SystemExit, match="holds records made with --synthetic_seed 0: give another --data_dir"):
        data2csv.main(["--num_samples", "2", "--synthetic_seed", "1", "--data_dir", str(tmp_path)])


def test_settings_of_a_run_that_wrote_nothing_do_not_hold_the_folder(tmp_path, monkeypatch):
    def unreachable(*args, **kwargs):
        raise ConnectionError("Name or service not known")

    monkeypatch.setattr(datasets, "load_dataset", unreachable)
    for dataset_id in ("user/typo", "user/shapes"):
        with pytest.raises(SystemExit, match=f"dataset '{dataset_id}'"):
            data2csv.main(["--source", "huggingface", "--dataset_id", dataset_id, "--data_dir", str(tmp_path)])


def test_an_unreachable_hugging_face_hub_says_what_to_do(tmp_path, monkeypatch):
    def unreachable(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'user/shapes' on the Hub (LocalEntryNotFoundError)")

    monkeypatch.setattr(datasets, "load_dataset", unreachable)
    with pytest.raises(SystemExit) as exit:
        data2csv.main(["--source", "huggingface", "--dataset_id", "user/shapes", "--data_dir", str(tmp_path)])
    message = str(exit.value.code)
    for words in ("Hugging Face hub", "'user/shapes'", "HF_ENDPOINT", "--source synthetic` works offline"):
        assert words in message


def test_an_unreachable_modelscope_hub_says_what_to_do(tmp_path, monkeypatch):
    class MsDataset:
        @staticmethod
        def load(*args, **kwargs):
            raise ConnectionError("Name or service not known")

    monkeypatch.setitem(sys.modules, "modelscope.msdatasets", types.SimpleNamespace(MsDataset=MsDataset))
    with pytest.raises(SystemExit) as exit:
        data2csv.main(["--source", "modelscope", "--data_dir", str(tmp_path)])
    message = str(exit.value.code)
    for words in ("ModelScope hub", "'modelscope/coco_2014_caption'", "MODELSCOPE_ENDPOINT",
                  "--source synthetic` works offline"):
        assert words in message


def test_hub_jpegs_are_kept_as_jpeg_one_file_per_image(tmp_path, capsys, monkeypatch):
    buffer = io.BytesIO()
    Image.new("RGB", (40, 30), "green").save(buffer, format="JPEG")
    image = Image.open(io.BytesIO(buffer.getvalue()))
    monkeypatch.setattr(datasets, "load_dataset", lambda *args, **kwargs: [
        {"image": image, "captions": ["A green field.", "Green."]}])
    run(capsys, "--source", "huggingface", "--dataset_id", "user/fields", "--caption_column", "captions",
        "--data_dir", str(tmp_path))
    assert read_rows(tmp_path) == [{"id": "0_0", "image_path": "images/0.jpg", "caption": "A green field."},
                                   {"id": "0_1", "image_path": "images/0.jpg", "caption": "Green."}]
    with Image.open(tmp_path / "images/0.jpg") as saved:
        assert saved.format == "JPEG" and saved.size == (40, 30)
    assert [p.name for p in (tmp_path / "images").iterdir()] == ["0.jpg"]


def test_the_default_folder_of_a_task_other_than_captions_names_it(monkeypatch, tmp_path, capsys):
    monkeypatch.chdir(tmp_path)
    run(capsys, "--task", "classification", "--num_samples", "2")
    run(capsys, "--num_samples", "2")
    assert (tmp_path / "input/synthetic-classification/data.csv").read_text().startswith("id,image_path,label\n")
    assert (tmp_path / "input/synthetic/data.csv").read_text().startswith("id,image_path,caption\n")


def test_a_bad_label_map_is_named(tmp_path):
    (tmp_path / "raw-img/cane").mkdir(parents=True)
    with pytest.raises(SystemExit, match="data2csv.py: --label_map 'animali' is neither animals10, nor inline JSON"):
        data2csv.main(["--task", "classification", "--source", "folder", "--folder_dir", str(tmp_path / "raw-img"),
                       "--label_map", "animali", "--data_dir", str(tmp_path / "out")])


def test_a_folder_of_another_task_is_refused(tmp_path, capsys):
    run(capsys, "--num_samples", "2", "--data_dir", str(tmp_path))
    with pytest.raises(SystemExit, match=r"no 'question' column .*: give another --data_dir, or delete"):
        data2csv.main(["--task", "vqa", "--num_samples", "2", "--data_dir", str(tmp_path)])


# ---------------------------------------------------------------- every task: the exact CSV


@pytest.mark.parametrize("task, make, header, cells", [
    ("classification", world.classification_records, "id,image_path,label",
     lambda record: {"label": record["label"]}),
    ("grounding", world.grounding_records, "id,image_path,expression,x1,y1,x2,y2,width,height",
     lambda record: {"expression": record["expression"], **dict(zip(("x1", "y1", "x2", "y2"), map(str, record["box"]))),
                     "width": str(record["width"]), "height": str(record["height"])}),
    ("vqa", world.vqa_records, "id,image_path,question,answers",
     lambda record: {"question": record["question"], "answers": json.dumps(record["answers"])}),
])
def test_synthetic_rows_of_every_task_are_the_worlds_records(tmp_path, capsys, task, make, header, cells):
    run(capsys, "--task", task, "--num_samples", "3", "--synthetic_seed", "2", "--synthetic_image_size", "64",
        "--data_dir", str(tmp_path))
    assert (tmp_path / "data.csv").read_text(encoding="utf-8").splitlines()[0] == header
    records = list(make(3, 2, 64))
    assert read_rows(tmp_path) == [{"id": r["id"], "image_path": f"images/{r['id']}.png", **cells(r)} for r in records]
    for record in records:
        with Image.open(tmp_path / f"images/{record['id']}.png") as image:
            assert image.tobytes() == record["image"].tobytes()


def test_class_folders_give_a_row_per_image_with_its_english_label(tmp_path, capsys):
    root = tmp_path / "raw-img"
    for folder, names in {"cane": ["OIP-a.jpeg", "b.png"], "gatto": ["c.jpg"], "lupo": ["d.jpg"]}.items():
        (root / folder).mkdir(parents=True)
        for name in names:
            Image.new("RGB", (6, 4), "white").save(root / folder / name)
    (root / "cane/Thumbs.db").write_text("not an image")
    out = run(capsys, "--task", "classification", "--source", "folder", "--folder_dir", str(root), "--label_map",
              "animals10", "--num_samples", "0", "--data_dir", str(tmp_path / "out"))
    assert (tmp_path / "out/data.csv").read_text() == (
        "id,image_path,label\n"
        "cane/OIP-a.jpeg,images/cane-OIP-a.jpeg,dog\n"
        "gatto/c.jpg,images/gatto-c.jpg,cat\n"
        "cane/b.png,images/cane-b.png,dog\n")
    assert (tmp_path / "out/images/cane-b.png").read_bytes() == (root / "cane/b.png").read_bytes()
    assert "3 records. Written now: 3, already present: 0, skipped: 2." in out
    assert "  skipped lupo/d.jpg: unknown class folder 'lupo': name it in --label_map to read it\n" in out
    assert "  skipped cane/Thumbs.db: not an image: its extension is .db\n" in out


def test_coco_instances_give_a_grounding_row_per_object(fixtures_dir, tmp_path, capsys):
    coco = fixtures_dir / "coco-mini"
    out = run(capsys, "--task", "grounding", "--source", "coco", "--coco_annotations",
              str(coco / "annotations/instances_train2017.json"), "--coco_images", str(coco / "train2017"),
              "--num_samples", "0", "--data_dir", str(tmp_path))
    lines = (tmp_path / "data.csv").read_text().splitlines()
    assert lines[:2] == ["id,image_path,expression,x1,y1,x2,y2,width,height",
                         "535506_441444,images/535506.jpg,person,120.46,133.32,332.77,631.9,480,640"]
    assert len(lines) == 1 + 731 and len(list((tmp_path / "images").iterdir())) == 80
    assert "731 records. Written now: 731, already present: 0, skipped: 8." in out
    assert "a crowd annotation (iscrowd 1)" in out


def test_a_hugging_face_refcocog_gives_a_row_per_sentence_and_a_file_per_image(tmp_path, capsys, monkeypatch):
    buffer = io.BytesIO()
    Image.new("RGB", (40, 30), "green").save(buffer, format="JPEG")
    image = Image.open(io.BytesIO(buffer.getvalue()))
    rows = [{"image": image, "answer": ["the left tree", "a tree"], "bbox": [1.0, 2.0, 10.25, 20.0]},
            {"image": image, "answer": ["the sky"], "bbox": [0.0, 0.0, 40.0, 5.0]},
            {"image": image, "answer": ["off the edge"], "bbox": [35.0, 0.0, 10.0, 5.0]}]
    monkeypatch.setattr(datasets, "load_dataset", lambda *args, **kwargs: rows)
    out = run(capsys, "--task", "grounding", "--source", "huggingface", "--dataset_id", "lmms-lab/RefCOCOg",
              "--dataset_split", "val", "--data_dir", str(tmp_path))
    (name,) = [p.name for p in (tmp_path / "images").iterdir()]
    assert name.endswith(".jpg") and len(name) == len("0123456789abcdef.jpg")
    assert (tmp_path / "data.csv").read_text() == (
        "id,image_path,expression,x1,y1,x2,y2,width,height\n"
        f"0_0,images/{name},the left tree,1,2,11.25,22,40,30\n"
        f"0_1,images/{name},a tree,1,2,11.25,22,40,30\n"
        f"1_0,images/{name},the sky,0,0,40,5,40,30\n")
    assert "skipped 2_0: bad box (xywh [35.0, 0.0, 10.0, 5.0]): outside the 40x30 image" in out


def test_official_vqa_files_give_a_row_per_question_with_its_ten_answers(tmp_path, capsys):
    (tmp_path / "train2014").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "train2014/COCO_train2014_000000000009.jpg")
    ten = ["broccoli"] * 7 + ["vegetables", "green", "broccoli, carrots"]
    questions = [{"image_id": 9, "question": "What is in the bowl?", "question_id": 9000},
                 {"image_id": 9, "question": "", "question_id": 9001},
                 {"image_id": 9, "question": "Is it hot?", "question_id": 9002}]
    annotations = [{"question_id": 9000, "image_id": 9, "answers": [{"answer": a, "answer_id": n + 1}
                                                                   for n, a in enumerate(ten)]},
                   {"question_id": 9001, "image_id": 9, "answers": [{"answer": "no", "answer_id": 1}]}]
    (tmp_path / "q.json").write_text(json.dumps({"questions": questions}))
    (tmp_path / "a.json").write_text(json.dumps({"annotations": annotations}))
    out = run(capsys, "--task", "vqa", "--source", "vqa", "--vqa_questions", str(tmp_path / "q.json"),
              "--vqa_annotations", str(tmp_path / "a.json"), "--vqa_images", str(tmp_path / "train2014"),
              "--num_samples", "0", "--data_dir", str(tmp_path / "out"))
    assert (tmp_path / "out/data.csv").read_text() == (
        "id,image_path,question,answers\n"
        '9000,images/9.jpg,What is in the bowl?,"[""broccoli"", ""broccoli"", ""broccoli"", ""broccoli"", '
        '""broccoli"", ""broccoli"", ""broccoli"", ""vegetables"", ""green"", ""broccoli, carrots""]"\n')
    assert "1 records. Written now: 1, already present: 0, skipped: 2." in out
    assert "  skipped 9001: empty question\n" in out
    assert f"  skipped 9002: no annotation in {tmp_path / 'a.json'} answers this question_id\n" in out


def test_a_llava_file_gives_a_row_per_conversation_with_all_its_turns(tmp_path, capsys):
    (tmp_path / "coco/train2017").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(tmp_path / "coco/train2017/000000033471.jpg")
    conversation = [{"from": "human", "value": "<image>\nWhat colour is the bus?"},
                    {"from": "gpt", "value": "White and red."},
                    {"from": "human", "value": "What is on its back?"}, {"from": "gpt", "value": "An advert."}]
    (tmp_path / "llava.json").write_text(json.dumps([
        {"id": "000000033471", "image": "coco/train2017/000000033471.jpg", "conversations": conversation},
        {"id": "text-only", "conversations": conversation[2:]}]))
    out = run(capsys, "--task", "vqa", "--source", "llava", "--llava_json", str(tmp_path / "llava.json"),
              "--llava_images", str(tmp_path), "--data_dir", str(tmp_path / "out"))
    assert (tmp_path / "out/data.csv").read_text() == (
        "id,image_path,question,answers,turns\n"
        '000000033471,images/coco_train2017_000000033471.jpg,What colour is the bus?,"[""White and red.""]",'
        '"[{""from"": ""human"", ""value"": ""What colour is the bus?""}, {""from"": ""gpt"", ""value"": '
        '""White and red.""}, {""from"": ""human"", ""value"": ""What is on its back?""}, {""from"": ""gpt"", '
        '""value"": ""An advert.""}]"\n')
    assert "skipped: 1." in out and "  skipped text-only: no image: a text-only conversation\n" in out
