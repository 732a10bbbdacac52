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
    return {"id": id, "conversations": [
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
    with pytest.raises(ValueError, match="val_size 3.0 holds out 3 of the 3 images"):
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
