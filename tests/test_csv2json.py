"""End-to-end tests of csv2json.py on hand-built CSVs and tiny PNGs: the JSON it writes, the rows it rejects."""

import csv
import json
import os

import pytest
from PIL import Image

import csv2json
from vlmtune.formats import load_conversations, to_messages


def make_dataset(data_dir, rows, images=("a", "b", "c")):
    """images/<name>.png for each name, and data.csv holding `rows` (id, image_path, caption)."""
    (data_dir / "images").mkdir(parents=True, exist_ok=True)
    for name in images:
        Image.new("RGB", (4, 4), (200, 30, 30)).save(data_dir / "images" / f"{name}.png")
    with open(data_dir / "data.csv", "w", encoding="utf-8", newline="") as f:
        csv.writer(f).writerows([("id", "image_path", "caption"), *rows])
    return data_dir


def read_json(path):
    return json.loads(path.read_text(encoding="utf-8"))


def read_rejected(data_dir):
    with open(data_dir / "rejected.csv", encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def conversation(id, image, caption, prompt="Describe this image."):
    return {"id": id, "task": "caption", "conversations": [
        {"from": "user", "value": f"<|vision_start|>{image}<|vision_end|>{prompt}"},
        {"from": "assistant", "value": caption},
    ]}


GOOD_ROWS = [
    ("a-1", "images/a.png", "A red square."),
    ("a-2", "images/a.png", "A square, red."),
    ("b-1", "images/b.png", "A blue circle."),
    ("c-1", "images/c.png", "A green triangle."),
]


def test_the_json_of_a_hand_built_csv(tmp_path, capsys):
    data_dir = make_dataset(tmp_path / "data", GOOD_ROWS)
    csv2json.main(["--data_dir", str(data_dir), "--val_size", "1", "--split_seed", "42", "--prompt", "Caption it."])
    assert read_json(data_dir / "train.json") == [
        conversation("a-1", "images/a.png", "A red square.", "Caption it."),
        conversation("a-2", "images/a.png", "A square, red.", "Caption it."),
        conversation("c-1", "images/c.png", "A green triangle.", "Caption it."),
    ]
    assert read_json(data_dir / "val.json") == [conversation("b-1", "images/b.png", "A blue circle.", "Caption it.")]
    assert read_rejected(data_dir) == []
    assert sorted(os.listdir(data_dir)) == ["data.csv", "images", "rejected.csv", "train.json", "val.json"]
    assert capsys.readouterr().out == (
        f"{data_dir}/data.csv: rows read: 4, rows rejected: 0\n"
        "split: random, seeded (--split_seed 42), by image\n"
        f"wrote {data_dir}/train.json (conversations: 3, images: 2)\n"
        f"wrote {data_dir}/val.json (conversations: 1, images: 1)\n"
    )


def test_bad_rows_are_reported_with_their_id_and_reason(tmp_path, capsys):
    data_dir = make_dataset(tmp_path, [*GOOD_ROWS,
                                       ("gone-1", "images/gone.png", "A lost square."),
                                       ("cut-1", "images/cut.png", "A cut square."),
                                       ("blank-1", "images/b.png", "   "),
                                       ("a-1", "images/c.png", "A second a-1."),
                                       ("", "images/c.png", "No id.")])
    (data_dir / "images" / "cut.png").write_bytes((data_dir / "images" / "a.png").read_bytes()[:30])
    csv2json.main(["--data_dir", str(data_dir), "--val_size", "1"])
    rejected = read_rejected(data_dir)
    assert [entry["id"] for entry in rejected] == ["gone-1", "cut-1", "blank-1", "a-1", ""]
    assert rejected[0]["reason"] == f"image not found: {data_dir}/images/gone.png"
    assert rejected[1]["reason"].startswith(f"image does not decode: {data_dir}/images/cut.png (")
    assert rejected[2:] == [{"id": "blank-1", "reason": "empty caption"},
                            {"id": "a-1", "reason": "duplicate id (first used on data row 1)"},
                            {"id": "", "reason": "empty id (data row 9)"}]
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"{data_dir}/data.csv: rows read: 9, rows rejected: 5 (all listed in {data_dir}/rejected.csv)"
    assert out[1:6] == [f"  {entry['id']}: {entry['reason']}" for entry in rejected]
    written = read_json(data_dir / "train.json") + read_json(data_dir / "val.json")
    assert sorted(record["id"] for record in written) == ["a-1", "a-2", "b-1", "c-1"]


def test_only_the_first_ten_rejections_are_printed_but_all_are_saved(tmp_path, capsys):
    rows = [*GOOD_ROWS, *[(f"gone-{n}", f"images/gone-{n}.png", "Lost.") for n in range(12)]]
    data_dir = make_dataset(tmp_path, rows)
    csv2json.main(["--data_dir", str(data_dir), "--val_size", "1"])
    out = capsys.readouterr().out
    assert "rows rejected: 12" in out
    assert "  gone-9: image not found" in out and "gone-10" not in out
    assert "  ... and 2 more\n" in out
    assert [entry["id"] for entry in read_rejected(data_dir)] == [f"gone-{n}" for n in range(12)]


def test_a_csv_of_bad_rows_only_is_an_error(tmp_path):
    data_dir = make_dataset(tmp_path, [("gone-1", "images/gone.png", "Lost.")])
    with pytest.raises(SystemExit, match="every row of .*data.csv was rejected"):
        csv2json.main(["--data_dir", str(data_dir)])
    assert read_rejected(data_dir) == [{"id": "gone-1", "reason": f"image not found: {data_dir}/images/gone.png"}]
    assert not (data_dir / "train.json").exists()


def test_a_missing_csv_says_to_run_data2csv_first(tmp_path):
    with pytest.raises(SystemExit, match=rf"{tmp_path}/data.csv not found: run `python data2csv.py` first"):
        csv2json.main(["--data_dir", str(tmp_path)])


def test_a_too_large_val_size_is_an_error(tmp_path):
    data_dir = make_dataset(tmp_path, GOOD_ROWS)
    with pytest.raises(SystemExit, match="csv2json.py: val_size 3.0 holds out 3 of the 3 images"):
        csv2json.main(["--data_dir", str(data_dir), "--val_size", "3"])


def test_the_split_follows_the_seed_and_keeps_an_image_on_one_side(tmp_path):
    rows = [(f"{image}-{n}", f"images/{image}.png", f"Caption {n}.") for image in "abcdefgh" for n in range(5)]
    data_dir = make_dataset(tmp_path, rows, images="abcdefgh")

    def val_ids(seed):
        csv2json.main(["--data_dir", str(data_dir), "--val_size", "0.25", "--split_seed", str(seed)])
        train, val = read_json(data_dir / "train.json"), read_json(data_dir / "val.json")
        assert {r["id"][0] for r in train}.isdisjoint({r["id"][0] for r in val})
        return [r["id"] for r in val]

    assert len(val_ids(0)) == 10
    assert val_ids(0) == val_ids(0)
    assert val_ids(0) != val_ids(1)


def test_an_absolute_image_path_stays_absolute(tmp_path):
    data_dir = make_dataset(tmp_path / "data", [*GOOD_ROWS, ("z-1", str(tmp_path / "z.png"), "Elsewhere.")])
    Image.new("RGB", (4, 4)).save(tmp_path / "z.png")
    csv2json.main(["--data_dir", str(data_dir), "--val_size", "1"])
    written = read_json(data_dir / "train.json") + read_json(data_dir / "val.json")
    assert conversation("z-1", str(tmp_path / "z.png"), "Elsewhere.") in written


def test_the_json_round_trips_to_messages_with_existing_absolute_paths(tmp_path, monkeypatch):
    make_dataset(tmp_path / "data", GOOD_ROWS)
    monkeypatch.chdir(tmp_path)
    csv2json.main(["--data_dir", "data", "--val_size", "1"])  # relative, as a user types it
    monkeypatch.chdir("/")
    for name in ("train.json", "val.json"):
        path = tmp_path / "data" / name
        for record in load_conversations(path):
            messages = to_messages(record, path.parent)
            image = messages[0]["content"][0]["image"]
            assert os.path.isabs(image) and os.path.isfile(image)
            assert messages[0]["content"][1] == {"type": "text", "text": "Describe this image."}


def test_help_works():
    with pytest.raises(SystemExit) as exit:
        csv2json.main(["--help"])
    assert exit.value.code == 0


# ---------------------------------------------------------------- the other tasks


GROUNDING_HEADER = ("id", "image_path", "expression", "x1", "y1", "x2", "y2", "width", "height")


def make_task_dataset(data_dir, header, rows, sizes={"a": (4, 4), "b": (4, 4), "c": (4, 4)}):
    """images/<name>.png of each size (width, height), and data.csv holding `header` and `rows`."""
    (data_dir / "images").mkdir(parents=True, exist_ok=True)
    for name, size in sizes.items():
        Image.new("RGB", size, (200, 30, 30)).save(data_dir / "images" / f"{name}.png")
    with open(data_dir / "data.csv", "w", encoding="utf-8", newline="") as f:
        csv.writer(f).writerows([header, *rows])
    return data_dir


def user_turn(image, text):
    return {"from": "user", "value": f"<|vision_start|>{image}<|vision_end|>{text}"}


def test_the_json_of_a_classification_csv_lists_every_class(tmp_path):
    data_dir = make_task_dataset(tmp_path, ("id", "image_path", "label"), [
        ("cane/a.png", "images/a.png", "dog"), ("gatto/b.png", "images/b.png", "cat"),
        ("cane/c.png", "images/c.png", "dog")])
    csv2json.main(["--data_dir", str(data_dir), "--task", "classification", "--val_size", "1", "--prompt", "Unused."])
    question = "Which of these is in the picture: cat, dog? Answer with one of them."

    def record(id, image, label):
        return {"id": id, "task": "classification",
                "conversations": [user_turn(image, question), {"from": "assistant", "value": label}],
                "label": label, "classes": ["cat", "dog"]}

    assert read_json(data_dir / "train.json") == [record("cane/a.png", "images/a.png", "dog"),
                                                  record("cane/c.png", "images/c.png", "dog")]
    assert read_json(data_dir / "val.json") == [record("gatto/b.png", "images/b.png", "cat")]


def test_class_aliases_go_into_every_classification_record(tmp_path):
    data_dir = make_task_dataset(tmp_path, ("id", "image_path", "label"), [
        ("ants/a.png", "images/a.png", "ants"), ("bees/b.png", "images/b.png", "bees")])
    (tmp_path / "aliases.json").write_text('{"formica": "ants", "ape": "bees"}', encoding="utf-8")
    csv2json.main(["--data_dir", str(data_dir), "--task", "classification", "--val_size", "1",
                   "--class_aliases", str(tmp_path / "aliases.json")])
    written = read_json(data_dir / "train.json") + read_json(data_dir / "val.json")
    assert [r["aliases"] for r in written] == [{"formica": "ants", "ape": "bees"}] * 2


@pytest.mark.parametrize("aliases, message", [
    ('{"vespa": "wasps"}', "csv2json.py: --class_aliases {'vespa': 'wasps'}: no row of data.csv has that label "
                           "(its labels: ants, bees)"),
    ("aliases.json", "csv2json.py: --class_aliases 'aliases.json' is neither inline JSON nor a file"),
])
def test_class_aliases_of_no_label_or_no_file_are_named(tmp_path, aliases, message):
    data_dir = make_task_dataset(tmp_path, ("id", "image_path", "label"), [
        ("ants/a.png", "images/a.png", "ants"), ("bees/b.png", "images/b.png", "bees")])
    with pytest.raises(SystemExit) as exit:
        csv2json.main(["--data_dir", str(data_dir), "--task", "classification", "--val_size", "1",
                       "--class_aliases", aliases])
    assert exit.value.code == message
    assert not (data_dir / "train.json").exists()


def test_the_json_of_a_grounding_csv_answers_integer_pixels_of_the_original_image(tmp_path):
    data_dir = make_task_dataset(tmp_path, GROUNDING_HEADER, [
        ("a_1", "images/a.png", "the dog", "2.5", "3", "30.5", "20.49", "40", "30"),
        ("a_2", "images/a.png", "the cat", "0", "0", "40", "30", "40", "30"),
        ("b_1", "images/b.png", "the bird", "1", "1", "3", "3", "4", "4")], sizes={"a": (40, 30), "b": (4, 4)})
    csv2json.main(["--data_dir", str(data_dir), "--task", "grounding", "--val_size", "1", "--split_seed", "0"])
    written = read_json(data_dir / "train.json") + read_json(data_dir / "val.json")
    assert sorted(written, key=lambda r: r["id"]) == [
        {"id": "a_1", "task": "grounding",
         "conversations": [user_turn("images/a.png", "Locate the dog in the image and give its bounding box."),
                           {"from": "assistant", "value": '[{"bbox_2d": [2, 3, 30, 20], "label": "the dog"}]'}],
         "box": [2.5, 3.0, 30.5, 20.49], "image_size": [40, 30], "expression": "the dog"},
        {"id": "a_2", "task": "grounding",
         "conversations": [user_turn("images/a.png", "Locate the cat in the image and give its bounding box."),
                           {"from": "assistant", "value": '[{"bbox_2d": [0, 0, 40, 30], "label": "the cat"}]'}],
         "box": [0.0, 0.0, 40.0, 30.0], "image_size": [40, 30], "expression": "the cat"},
        {"id": "b_1", "task": "grounding",
         "conversations": [user_turn("images/b.png", "Locate the bird in the image and give its bounding box."),
                           {"from": "assistant", "value": '[{"bbox_2d": [1, 1, 3, 3], "label": "the bird"}]'}],
         "box": [1.0, 1.0, 3.0, 3.0], "image_size": [4, 4], "expression": "the bird"},
    ]
    assert {r["id"] for r in read_json(data_dir / "val.json")} in ({"a_1", "a_2"}, {"b_1"})


def test_the_json_of_a_vqa_csv_answers_the_most_common_answer_and_keeps_them_all(tmp_path):
    data_dir = make_task_dataset(tmp_path, ("id", "image_path", "question", "answers"), [
        ("1", "images/a.png", "What colour is it?", '["dark red", "red", "red"]'),
        ("2", "images/b.png", "How many?", '["2", "two", "two", "2"]'),
        ("3", "images/c.png", "Is it round?", '["no"]')])
    csv2json.main(["--data_dir", str(data_dir), "--task", "vqa", "--val_size", "1"])
    assert read_json(data_dir / "train.json") == [
        {"id": "1", "task": "vqa", "conversations": [user_turn("images/a.png", "What colour is it?"),
                                                     {"from": "assistant", "value": "red"}],
         "answers": ["dark red", "red", "red"]},
        {"id": "3", "task": "vqa", "conversations": [user_turn("images/c.png", "Is it round?"),
                                                     {"from": "assistant", "value": "no"}],
         "answers": ["no"]}]
    assert read_json(data_dir / "val.json") == [
        {"id": "2", "task": "vqa", "conversations": [user_turn("images/b.png", "How many?"),
                                                     {"from": "assistant", "value": "2"}],
         "answers": ["2", "two", "two", "2"]}]


def test_the_json_of_a_llava_csv_trains_every_turn_of_its_conversation(tmp_path):
    turns = [{"from": "human", "value": "What colour is the bus?"}, {"from": "gpt", "value": "White and red."},
             {"from": "human", "value": "What is on its back?"}, {"from": "gpt", "value": "An advertisement."}]
    data_dir = make_task_dataset(tmp_path, ("id", "image_path", "question", "answers", "turns"), [
        ("33471", "images/a.png", "What colour is the bus?", '["White and red."]', json.dumps(turns)),
        ("2", "images/b.png", "Q?", '["A."]', json.dumps(turns[:2]))], sizes={"a": (4, 4), "b": (4, 4)})
    csv2json.main(["--data_dir", str(data_dir), "--task", "vqa", "--val_size", "1", "--split_seed", "0"])
    written = {r["id"]: r for r in read_json(data_dir / "train.json") + read_json(data_dir / "val.json")}
    assert written["33471"] == {"id": "33471", "task": "vqa", "conversations": [
        user_turn("images/a.png", "What colour is the bus?"), {"from": "assistant", "value": "White and red."},
        {"from": "user", "value": "What is on its back?"}, {"from": "assistant", "value": "An advertisement."}],
        "answers": ["An advertisement."]}  # the last answer: test.py asks the last question
    assert written["2"]["conversations"] == [user_turn("images/b.png", "What colour is the bus?"),
                                             {"from": "assistant", "value": "White and red."}]


@pytest.mark.parametrize("task, header, rows, sizes, reasons", [
    ("classification", ("id", "image_path", "label"),
     [("ok", "images/a.png", "dog"), ("blank", "images/b.png", " ")], {"a": (4, 4), "b": (4, 4)},
     [{"id": "blank", "reason": "empty label"}]),
    ("grounding", GROUNDING_HEADER,
     [("ok", "images/a.png", "the dog", "0", "0", "4", "4", "4", "4"),
      ("text", "images/a.png", "the dog", "0", "zero", "4", "4", "4", "4"),
      ("out", "images/a.png", "the dog", "0", "0", "5", "4", "4", "4"),
      ("size", "images/b.png", "the dog", "0", "0", "4", "4", "4", "4")], {"a": (4, 4), "b": (8, 6)},
     [{"id": "text", "reason": "y1 is not a number: 'zero'"},
      {"id": "out", "reason": "bad box: outside the 4x4 image: (0.0, 0.0, 5.0, 4.0)"},
      {"id": "size", "reason": "the image is 8x6 pixels, but the row's box is for 4x4"}]),
    ("vqa", ("id", "image_path", "question", "answers"),
     [("ok", "images/a.png", "Why?", '["because"]'), ("blank", "images/a.png", "", '["because"]'),
      ("none", "images/b.png", "Why?", "[]"), ("text", "images/b.png", "Why?", "because")], {"a": (4, 4), "b": (4, 4)},
     [{"id": "blank", "reason": "empty question"},
      {"id": "none", "reason": "answers must be a non-empty JSON list of strings, got '[]'"},
      {"id": "text", "reason": "answers is not JSON (Expecting value: line 1 column 1 (char 0)): 'because'"}]),
])
def test_bad_rows_of_each_task_are_reported_with_their_reason(tmp_path, capsys, task, header, rows, sizes, reasons):
    data_dir = make_task_dataset(tmp_path, header, rows, sizes)
    csv2json.main(["--data_dir", str(data_dir), "--task", task, "--val_size", "0.01"])
    assert read_rejected(data_dir) == reasons
    out = capsys.readouterr().out
    assert f"rows read: {len(rows)}, rows rejected: {len(reasons)}" in out
    assert all(f"  {entry['id']}: {entry['reason']}\n" in out for entry in reasons)
    written = read_json(data_dir / "train.json") + read_json(data_dir / "val.json")
    assert [record["id"] for record in written] == ["ok"]


def test_a_csv_of_another_task_says_which_task_it_is_for(tmp_path):
    data_dir = make_dataset(tmp_path, GOOD_ROWS)
    with pytest.raises(SystemExit, match=r"no 'question' column \(a --task vqa data\.csv has id,image_path,question,"
                                         r"answers, found id,image_path,caption\): give the --task that data2csv\.py"):
        csv2json.main(["--data_dir", str(data_dir), "--task", "vqa"])


def test_the_json_of_every_task_loads_into_messages(tmp_path):
    datasets = {
        "classification": (("id", "image_path", "label"), [("1", "images/a.png", "dog"), ("2", "images/b.png", "cat")]),
        "grounding": (GROUNDING_HEADER, [("1", "images/a.png", "it", "0", "0", "2", "2", "4", "4"),
                                         ("2", "images/b.png", "it", "1", "1", "4", "4", "4", "4")]),
        "vqa": (("id", "image_path", "question", "answers"),
                [("1", "images/a.png", "Why?", '["because"]'), ("2", "images/b.png", "Who?", '["me"]')]),
    }
    for task, (header, rows) in datasets.items():
        data_dir = make_task_dataset(tmp_path / task, header, rows, {"a": (4, 4), "b": (4, 4)})
        csv2json.main(["--data_dir", str(data_dir), "--task", task, "--val_size", "1"])
        for name in ("train.json", "val.json"):
            for record in load_conversations(data_dir / name):
                assert record["task"] == task
                messages = to_messages(record, data_dir)
                assert [m["role"] for m in messages] == ["user", "assistant"]
                assert messages[0]["content"][0]["type"] == "image"


# ---------------------------------------------------------------- published splits


SPLIT_HEADER = ("id", "image_path", "caption", "split")


def test_published_splits_go_to_their_files_and_the_summary_says_so(tmp_path, capsys):
    data_dir = make_task_dataset(tmp_path, SPLIT_HEADER, [
        ("a-1", "images/a.png", "A red square.", "train"), ("b-1", "images/b.png", "A blue circle.", "val"),
        ("c-1", "images/c.png", "A green triangle.", "test"), ("a-2", "images/a.png", "A square, red.", "train")])
    csv2json.main(["--data_dir", str(data_dir), "--val_size", "2"])
    assert read_json(data_dir / "train.json") == [conversation("a-1", "images/a.png", "A red square."),
                                                  conversation("a-2", "images/a.png", "A square, red.")]
    assert read_json(data_dir / "val.json") == [conversation("b-1", "images/b.png", "A blue circle.")]
    assert read_json(data_dir / "test.json") == [conversation("c-1", "images/c.png", "A green triangle.")]
    assert capsys.readouterr().out == (
        f"{data_dir}/data.csv: rows read: 4, rows rejected: 0\n"
        "split: as published (train 2, val 1, test 1)\n"
        "  test.json holds the test split, which test.py does not score (it scores val.json)\n"
        f"wrote {data_dir}/train.json (conversations: 2, images: 1)\n"
        f"wrote {data_dir}/val.json (conversations: 1, images: 1)\n"
        f"wrote {data_dir}/test.json (conversations: 1, images: 1)\n")
    make_task_dataset(tmp_path, SPLIT_HEADER, [("a-1", "images/a.png", "A red square.", "train"),
                                               ("b-1", "images/b.png", "A blue circle.", "val")])
    csv2json.main(["--data_dir", str(data_dir)])
    assert not (data_dir / "test.json").exists()  # an earlier run's, which would be taken for this one's
    assert f"removed {data_dir}/test.json, an earlier run's: data.csv has no test split now\n" in \
        capsys.readouterr().out


def test_an_image_in_two_splits_and_a_split_of_another_name_are_rejected(tmp_path, capsys):
    data_dir = make_task_dataset(tmp_path, SPLIT_HEADER, [
        ("a-1", "images/a.png", "A red square.", "train"), ("a-2", "images/a.png", "A square, red.", "val"),
        ("b-1", "images/b.png", "A blue circle.", "validation"), ("c-1", "images/c.png", "A green triangle.", ""),
        ("b-2", "images/b.png", "A circle.", "train")])
    csv2json.main(["--data_dir", str(data_dir)])
    assert read_rejected(data_dir) == [
        {"id": "b-1", "reason": "split 'validation' is none of train, val, test (or empty: not given)"},
        {"id": "a-1", "reason": "its image is in the val split too: kept there, left out of train"}]
    assert [r["id"] for r in read_json(data_dir / "train.json")] == ["c-1", "b-2"]
    assert [r["id"] for r in read_json(data_dir / "val.json")] == ["a-2"]
    out = capsys.readouterr().out
    assert "rows read: 5, rows rejected: 2" in out
    assert "split: as published (train 2, val 1)\n  1 rows name no split: they count as train\n" in out


def test_an_image_of_five_rows_is_decoded_once(tmp_path, monkeypatch):
    """COCO's five captions of an image are five rows: the image is checked once, not five times."""
    from vlmtune import images

    checked = []
    real_problem = images.problem
    monkeypatch.setattr(images, "problem", lambda path: checked.append(os.path.basename(path)) or real_problem(path))
    rows = [(f"a-{i}", "images/a.png", f"Caption {i}.") for i in range(5)] + [("b-0", "images/b.png", "B."),
                                                                            ("c-0", "images/c.png", "C.")]
    make_dataset(tmp_path, rows)
    csv2json.main(["--data_dir", str(tmp_path), "--val_size", "1"])
    assert sorted(checked) == ["a.png", "b.png", "c.png"]
    records = read_json(tmp_path / "train.json") + read_json(tmp_path / "val.json")
    assert sorted(r["id"] for r in records) == sorted(r[0] for r in rows)
