"""End to end: data2csv.py's main() on offline data, asserting what a user looks at (data.csv, images/, the summary)."""

import csv
import io
import json
import sys
import types

import datasets
import pytest
from PIL import Image

import csv2json
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
    (["--source", "flickr"], "--source must be one of synthetic, modelscope, huggingface, coco, folder, vqa, lxmert, "
                             "rows, llava, got 'flickr'"),
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
    (["--task", "vqa", "--source", "lxmert", "--lxmert_json", "nowhere.json"],
     "--lxmert_json 'nowhere.json' is not a file: give an LXMERT-style VQA file"),
    (["--task", "vqa", "--source", "rows"], "--rows_file '' is not a file: give a .json list or .jsonl lines of rows"),
    (["--task", "vqa", "--class_aliases", '{"formica": "ants"}'],
     "--class_aliases names classes, for --task classification, not --task vqa"),
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
    assert read_rows(tmp_path) == [
        {"id": "0_0", "image_path": "images/0.jpg", "caption": "A green field.", "split": "train"},
        {"id": "0_1", "image_path": "images/0.jpg", "caption": "Green.", "split": "train"}]  # --dataset_split train
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
        "cane/OIP-a.jpeg,images/cane-OIP-a-0a020087.jpeg,dog\n"
        "gatto/c.jpg,images/gatto-c-a6048bd0.jpg,cat\n"
        "cane/b.png,images/cane-b-e3c8dfb2.png,dog\n")
    assert (tmp_path / "out/images/cane-b-e3c8dfb2.png").read_bytes() == (root / "cane/b.png").read_bytes()
    assert "3 records. Written now: 3, already present: 0, skipped: 2." in out
    assert "  skipped lupo/d.jpg: unknown class folder 'lupo': name it in --label_map to read it\n" in out
    assert "  skipped cane/Thumbs.db: not an image: its extension is .db\n" in out


def test_coco_instances_give_a_grounding_row_per_object_its_category_picks_out(fixtures_dir, tmp_path, capsys):
    coco = fixtures_dir / "coco-mini"
    out = run(capsys, "--task", "grounding", "--source", "coco", "--coco_annotations",
              str(coco / "annotations/instances_train2017.json"), "--coco_images", str(coco / "train2017"),
              "--num_samples", "0", "--data_dir", str(tmp_path))
    lines = (tmp_path / "data.csv").read_text().splitlines()
    assert lines[0].startswith("id,image_path,expression,x1,y1,x2,y2,width,height")
    assert lines[1].startswith("535506_441444,images/535506.jpg,person,120.46,133.32,332.77,631.9,480,640")
    # coco-mini's 739 annotations: 8 crowds, 560 objects of a category that appears again in their image, 171 alone
    # (tests/test_sources.py counts them from the file).
    assert len(lines) == 1 + 171
    assert "171 records. Written now: 171, already present: 0, skipped: 568." in out
    assert ("  left out 560 objects whose category appears more than once in their image: the expression would not "
            "pick them out; use RefCOCO/RefCOCOg expressions (--source huggingface --dataset_id lmms-lab/RefCOCOg) "
            "for those\n") in out
    images = {line.split(",")[1] for line in lines[1:]}
    assert sorted(p.name for p in (tmp_path / "images").iterdir()) == sorted(name.split("/")[1] for name in images)


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
        "id,image_path,expression,x1,y1,x2,y2,width,height,split\n"
        f"0_0,images/{name},the left tree,1,2,11.25,22,40,30,val\n"
        f"0_1,images/{name},a tree,1,2,11.25,22,40,30,val\n"
        f"1_0,images/{name},the sky,0,0,40,5,40,30,val\n")
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


def test_an_lxmert_file_gives_a_row_per_question_with_its_soft_scores(tmp_path, capsys):
    (tmp_path / "val2014").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "val2014/COCO_val2014_000000393225.jpg")
    (tmp_path / "minival.json").write_text(json.dumps([
        {"answer_type": "other", "img_id": "COCO_val2014_000000393225", "label": {"kite": 1, "string": 0.3},
         "question_id": 393225000, "question_type": "what is the", "sent": "What is the man holding?"},
        {"answer_type": "other", "img_id": "COCO_val2014_000000393225", "label": {}, "question_id": 393225001,
         "question_type": "is it", "sent": "Is it windy?"}]))
    out = run(capsys, "--task", "vqa", "--source", "lxmert", "--lxmert_json", str(tmp_path / "minival.json"),
              "--vqa_images", str(tmp_path / "val2014"), "--data_dir", str(tmp_path / "out"))
    assert read_rows(tmp_path / "out") == [{
        "id": "393225000", "image_path": "images/393225.jpg", "question": "What is the man holding?",
        "answers": '["kite", "string"]', "answer_scores": '{"kite": 1, "string": 0.3}'}]
    assert "1 records. Written now: 1, already present: 0, skipped: 1." in out
    assert "  skipped 393225001: an empty 'label': none of its answers is in the file's answer vocabulary\n" in out


def test_a_jsonl_file_of_rows_gives_a_row_per_line_naming_a_broken_one(tmp_path, capsys):
    (tmp_path / "coco").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "coco/a.jpg")
    (tmp_path / "okvqa.jsonl").write_text(
        '{"image": "coco/a.jpg", "question": "What is it?", "answers": ["kite"]}\n'
        '{"image": "coco/a.jpg", "question": "Why?" "answers": "wind"}\n'
        '{"image": "coco/a.jpg", "question": "Where?", "answers": "beach"}\n')
    out = run(capsys, "--task", "vqa", "--source", "rows", "--rows_file", str(tmp_path / "okvqa.jsonl"),
              "--dataset_images", str(tmp_path), "--data_dir", str(tmp_path / "out"))
    assert (tmp_path / "out/data.csv").read_text() == (
        "id,image_path,question,answers\n"
        '1,images/coco-a-cd4df6c3.jpg,What is it?,"[""kite""]"\n'
        '3,images/coco-a-cd4df6c3.jpg,Where?,"[""beach""]"\n')
    assert "2 records. Written now: 2, already present: 0, skipped: 1." in out
    # column 44: the quote that opens "answers", where a comma belongs
    assert (f"  skipped 2: line 2 of {tmp_path / 'okvqa.jsonl'} is not JSON: Expecting ',' delimiter at column 44\n"
            in out)


def test_a_json_file_of_rows_that_is_not_json_is_named_without_a_traceback(tmp_path):
    (tmp_path / "rows.json").write_text('[{"image": "a.jpg", "question": "Why?", "answers": "x"},]')
    with pytest.raises(SystemExit) as exit:
        data2csv.main(["--task", "vqa", "--source", "rows", "--rows_file", str(tmp_path / "rows.json"),
                       "--data_dir", str(tmp_path / "out")])
    assert str(exit.value.code) == (f"data2csv.py: {tmp_path / 'rows.json'}: not valid JSON (Expecting value: line 1 "
                                    "column 57 (char 56))")


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
        '000000033471,images/coco-train2017-000000033471-7457cc30.jpg,What colour is the bus?,"[""White and red.""]",'
        '"[{""from"": ""human"", ""value"": ""What colour is the bus?""}, {""from"": ""gpt"", ""value"": '
        '""White and red.""}, {""from"": ""human"", ""value"": ""What is on its back?""}, {""from"": ""gpt"", '
        '""value"": ""An advert.""}]"\n')
    assert "skipped: 1." in out and "  skipped text-only: no image: a text-only conversation\n" in out


# ---------------------------------------------------------------- published splits, and what --num_samples leaves out


def run_csv2json(capsys, *argv):
    csv2json.main(list(argv))
    return capsys.readouterr().out


def split_ids(data_dir):
    return {name: [r["id"] for r in json.loads((data_dir / f"{name}.json").read_text())]
            for name in ("train", "val", "test") if (data_dir / f"{name}.json").exists()}


def test_imagefolder_train_and_val_folders_keep_their_split_into_train_and_val_json(tmp_path, capsys):
    root = tmp_path / "flowers"
    for path in ("train/daisy/d1.jpg", "train/daisy/d2.jpg", "train/rose/r1.jpg", "val/daisy/d3.jpg",
                 "val/rose/r2.jpg"):
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (6, 4), "white").save(root / path)
    out = run(capsys, "--task", "classification", "--source", "folder", "--folder_dir", str(root), "--num_samples",
              "0", "--data_dir", str(tmp_path / "out"))
    assert (tmp_path / "out/data.csv").read_text() == (
        "id,image_path,label,split\n"
        "train/daisy/d1.jpg,images/train-daisy-d1-9e96ca3f.jpg,daisy,train\n"
        "train/rose/r1.jpg,images/train-rose-r1-44701160.jpg,rose,train\n"
        "train/daisy/d2.jpg,images/train-daisy-d2-34b33a1b.jpg,daisy,train\n"
        "val/daisy/d3.jpg,images/val-daisy-d3-8d2b58e7.jpg,daisy,val\n"
        "val/rose/r2.jpg,images/val-rose-r2-e7b2ecd1.jpg,rose,val\n")
    assert "5 records. Written now: 5, already present: 0, skipped: 0.\n  rows by split: train 3, val 2\n" in out
    out = run_csv2json(capsys, "--task", "classification", "--data_dir", str(tmp_path / "out"), "--val_size", "1")
    assert "\nsplit: as published (train 3, val 2)\nwrote " in out
    assert split_ids(tmp_path / "out") == {"train": ["train/daisy/d1.jpg", "train/rose/r1.jpg", "train/daisy/d2.jpg"],
                                           "val": ["val/daisy/d3.jpg", "val/rose/r2.jpg"]}


def test_animals10s_train_data_and_test_data_make_test_the_validation(tmp_path, capsys):
    root = tmp_path / "animals"
    for path in ("train_data/cane/a.jpeg", "train_data/gatto/b.jpeg", "test_data/cane/c.jpeg",
                 "test_data/gatto/d.jpeg"):
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (6, 4), "white").save(root / path)
    out = run(capsys, "--task", "classification", "--source", "folder", "--folder_dir", str(root), "--label_map",
              "animals10", "--data_dir", str(tmp_path / "out"))
    assert "4 records. Written now: 4, already present: 0, skipped: 0.\n  rows by split: train 2, test 2\n" in out
    out = run_csv2json(capsys, "--task", "classification", "--data_dir", str(tmp_path / "out"))
    assert ("split: as published (train 2, test 2)\n"
            "  val.json holds the test split: data.csv has no val split\n") in out
    assert split_ids(tmp_path / "out") == {"train": ["train_data/cane/a.jpeg", "train_data/gatto/b.jpeg"],
                                           "val": ["test_data/cane/c.jpeg", "test_data/gatto/d.jpeg"]}


def write_coco_split(coco, path, image_ids, extra=()):
    """A captions file of coco-mini's images `image_ids`, with their real annotations and `extra` ones."""
    real = json.loads((coco / "annotations/captions_train2017.json").read_text())
    path.write_text(json.dumps({**real, "images": [i for i in real["images"] if i["id"] in image_ids],
                                "annotations": [a for a in real["annotations"] if a["image_id"] in image_ids]
                                + list(extra)}))
    return real


def test_coco_train_and_val_files_in_one_run_keep_their_split(fixtures_dir, tmp_path, capsys):
    coco = fixtures_dir / "coco-mini"
    real = json.loads((coco / "annotations/captions_train2017.json").read_text())
    val_images = {image["id"] for image in real["images"][:16]}
    write_coco_split(coco, tmp_path / "captions_val2017.json", val_images)
    write_coco_split(coco, tmp_path / "captions_train2017.json", {i["id"] for i in real["images"]} - val_images)
    out = run(capsys, "--source", "coco", "--coco_annotations",
              f"{tmp_path / 'captions_train2017.json'},{tmp_path / 'captions_val2017.json'}",
              "--coco_images", str(coco / "train2017"), "--data_dir", str(tmp_path / "out"))
    assert "400 records. Written now: 400, already present: 0, skipped: 0.\n  rows by split: train 320, val 80\n" in out
    assert "only" not in out  # the default --num_samples 600 of each split cuts neither
    out = run_csv2json(capsys, "--data_dir", str(tmp_path / "out"))
    assert "split: as published (train 320, val 80)\n" in out
    assert split_ids(tmp_path / "out")["val"] == [f"{a['image_id']}_{a['id']}" for a in real["annotations"]
                                                  if a["image_id"] in val_images]


def test_an_image_of_coco_train_and_val_files_is_kept_in_val_only(fixtures_dir, tmp_path, capsys):
    coco = fixtures_dir / "coco-mini"
    real = json.loads((coco / "annotations/captions_train2017.json").read_text())
    first, second = real["images"][0]["id"], real["images"][1]["id"]  # both in train; and in val, by two means:
    again = next(a for a in real["annotations"] if a["image_id"] == second)  # one of its annotations, the same id
    new = {"image_id": first, "id": 1, "caption": "A caption of the val file."}  # another annotation of the image
    write_coco_split(coco, tmp_path / "captions_train2017.json", {i["id"] for i in real["images"]})
    write_coco_split(coco, tmp_path / "captions_val2017.json", set(), [again, new])
    (tmp_path / "captions_val2017.json").write_text(json.dumps({
        **json.loads((tmp_path / "captions_val2017.json").read_text()),
        "images": [i for i in real["images"] if i["id"] in (first, second)]}))
    out = run(capsys, "--source", "coco", "--coco_annotations",
              f"{tmp_path / 'captions_train2017.json'},{tmp_path / 'captions_val2017.json'}",
              "--coco_images", str(coco / "train2017"), "--data_dir", str(tmp_path / "out"))
    assert "401 records. Written now: 401, already present: 0, skipped: 1.\n  rows by split: train 399, val 2\n" in out
    assert (f"  skipped {second}_{again['id']}: in the files of the train and the val split: kept in val only, so "
            "that its image is not trained on and scored\n") in out
    csv2json.main(["--data_dir", str(tmp_path / "out")])
    rejected = list(csv.DictReader(open(tmp_path / "out/rejected.csv", encoding="utf-8")))
    in_both = [f"{a['image_id']}_{a['id']}" for a in real["annotations"] if a["image_id"] in (first, second)]
    moved = f"{second}_{again['id']}"  # in data.csv where the train file put it, its split now val
    assert rejected == [{"id": record_id, "reason": "its image is in the val split too: kept there, left out of train"}
                        for record_id in in_both if record_id != moved]
    assert len(rejected) == 5 + 4
    assert split_ids(tmp_path / "out")["val"] == [moved, f"{first}_1"]


def test_a_num_samples_cut_of_coco_mini_says_what_it_left_out(fixtures_dir, tmp_path, capsys):
    coco = fixtures_dir / "coco-mini"
    files = ["--source", "coco", "--coco_annotations", str(coco / "annotations/captions_train2017.json"),
             "--coco_images", str(coco / "train2017")]
    out = run(capsys, *files, "--data_dir", str(tmp_path / "default"))  # --num_samples 600, the default
    assert out.endswith("400 records. Written now: 400, already present: 0, skipped: 0.\n"
                        "  rows by split: train 400\n")
    out = run(capsys, *files, "--num_samples", "150", "--data_dir", str(tmp_path / "cut"))
    assert out.endswith("150 records. Written now: 150, already present: 0, skipped: 0.\n"
                        "  rows by split: train 150\n"
                        "  only 150 of the 400 usable train records were taken (--num_samples 150). "
                        "--num_samples 0 takes all.\n")
    assert len(read_rows(tmp_path / "cut")) == 150


def test_a_num_samples_cut_counts_the_usable_records_of_class_folders(tmp_path, capsys):
    root = tmp_path / "raw-img"
    for folder, names in {"cane": ["1.jpg", "2.jpg", "3.jpg", "notes.txt"], "gatto": ["1.jpg", "2.jpg"]}.items():
        (root / folder).mkdir(parents=True)
        for name in names:
            Image.new("RGB", (6, 4)).save(root / folder / name, format="PNG")
    out = run(capsys, "--task", "classification", "--source", "folder", "--folder_dir", str(root), "--num_samples",
              "2", "--data_dir", str(tmp_path / "out"))
    assert [row["id"] for row in read_rows(tmp_path / "out")] == ["cane/1.jpg", "gatto/1.jpg"]
    assert ("2 records. Written now: 2, already present: 0, skipped: 1.\n"
            "  only 2 of the 5 usable records were taken (--num_samples 2). --num_samples 0 takes all.\n"
            "  skipped cane/notes.txt: not an image: its extension is .txt\n") in out


def test_hub_splits_in_one_run_keep_apart_and_a_cut_reads_one_row_more(tmp_path, capsys, monkeypatch):
    def picture(colour):
        buffer = io.BytesIO()
        Image.new("RGB", (40, 30), colour).save(buffer, format="JPEG")
        return Image.open(io.BytesIO(buffer.getvalue()))

    splits_of = {"val": [picture("green"), picture("blue"), picture("red")], "test": [picture("white")]}
    read = []

    def load_dataset(path, name=None, split=None, streaming=False):
        for row, image in enumerate(splits_of[split]):
            read.append(f"{split} {row}")
            yield {"image": image, "answer": [f"the {split} thing"], "bbox": [1.0, 2.0, 10.0, 20.0]}

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    out = run(capsys, "--task", "grounding", "--source", "huggingface", "--dataset_id", "lmms-lab/RefCOCOg",
              "--dataset_split", "val,test", "--num_samples", "2", "--data_dir", str(tmp_path))
    assert read == ["val 0", "val 1", "val 2", "test 0"]  # one row past the cut, not the whole split
    rows = read_rows(tmp_path)
    assert [(row["id"], row["image_path"][:11], row["expression"], row["split"]) for row in rows] == [
        ("val/0_0", "images/val-", "the val thing", "val"), ("val/1_0", "images/val-", "the val thing", "val"),
        ("test/0_0", "images/test", "the test thing", "test")]
    assert len({row["image_path"] for row in rows}) == 3 == len(list((tmp_path / "images").iterdir()))
    assert ("3 records. Written now: 3, already present: 0, skipped: 0.\n  rows by split: val 2, test 1\n"
            "  only the first 2 val records were taken (--num_samples 2); the hub has more, not counted, as that "
            "would read them all. --num_samples 0 takes all.\n") in out
    out = run_csv2json(capsys, "--task", "grounding", "--data_dir", str(tmp_path))
    assert ("split: as published (val 2, test 1)\n"
            "  train.json holds the val split, val.json holds the test split: data.csv has no train split\n") in out


def test_a_data_csv_written_before_splits_were_kept_gets_them_on_a_rerun(fixtures_dir, tmp_path, capsys):
    coco = fixtures_dir / "coco-mini"
    files = ["--source", "coco", "--coco_annotations", str(coco / "annotations/captions_train2017.json"),
             "--coco_images", str(coco / "train2017"), "--num_samples", "3", "--data_dir", str(tmp_path)]
    run(capsys, *files)
    before = (tmp_path / "data.csv").read_text()
    (tmp_path / "data.csv").write_text(before.replace(",split\n", "\n").replace(",train\n", "\n"))
    out = run(capsys, *files)
    assert "3 records. Written now: 0, already present: 3, skipped: 0." in out
    assert (tmp_path / "data.csv").read_text() == before


@pytest.mark.parametrize("names, message", [
    ("captions_train2017.json,captions.json", "data2csv.py: --coco_annotations '{dir}/captions.json': its name says "
                                              "no split (train, val or test, as in captions_val2017.json)"),
    ("captions_train2017.json,captions_val2017.json", "--coco_annotations '{dir}/captions_val2017.json' is not a "
                                                      "file"),
])
def test_coco_files_that_cannot_be_told_apart_or_found_are_named(tmp_path, names, message):
    for name in ("captions_train2017.json", "captions.json"):
        (tmp_path / name).write_text("{}")
    with pytest.raises(SystemExit) as exit:
        data2csv.main(["--source", "coco", "--coco_annotations", ",".join(str(tmp_path / n) for n in names.split(",")),
                       "--coco_images", str(tmp_path), "--data_dir", str(tmp_path / "out")])
    assert message.format(dir=tmp_path) in str(exit.value.code)


def test_a_file_of_another_kind_is_a_message_not_a_traceback(fixtures_dir, tmp_path):
    coco = fixtures_dir / "coco-mini"
    with pytest.raises(SystemExit, match=r"^data2csv.py: .*instances_train2017.json: no annotation has a 'caption'; "
                                         r"give a captions_\*.json"):
        data2csv.main(["--source", "coco", "--coco_annotations", str(coco / "annotations/instances_train2017.json"),
                       "--coco_images", str(coco / "train2017"), "--data_dir", str(tmp_path)])
