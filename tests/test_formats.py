"""Unit tests of vlmtune/formats.py: hand-written rows and records, tiny images in tmp_path, exact outputs."""

import json
import os
import random

import pytest
from PIL import Image

from vlmtune.formats import (
    check_row,
    load_conversations,
    most_common_answer,
    read_csv,
    record_to_row,
    row_to_conversation,
    rows_to_conversations,
    split_by_image,
    split_rows,
    to_messages,
    write_csv,
)


def write_image(path, size=(4, 4), colour=(200, 30, 30)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)
    return path


def write_truncated(path, keep):
    """An image cut short, as an interrupted download leaves it (noise, so the compressed data is not tiny)."""
    rng = random.Random(0)
    image = Image.new("RGB", (32, 32))
    image.putdata([tuple(rng.randrange(256) for _ in range(3)) for _ in range(32 * 32)])
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    data = path.read_bytes()
    path.write_bytes(data[: keep(len(data))])
    return path


def rows_of(n_images, captions_per_image=1):
    return [{"id": f"{image}-{caption}", "image_path": f"images/{image}.png", "caption": f"caption {caption}"}
            for image in range(n_images) for caption in range(captions_per_image)]


def val_images(val):
    return {row["image_path"] for row in val}


# ---------------------------------------------------------------- CSV


def test_read_csv_returns_rows_with_cells_stripped(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text('id,image_path,caption\n a-1 ,images/a.png,"A red square, small. "\n', encoding="utf-8")
    assert read_csv(path, "caption") == [{"id": "a-1", "image_path": "images/a.png", "caption": "A red square, small."}]


def test_read_csv_ignores_the_byte_order_mark_excel_writes(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("id,image_path,caption\na-1,images/a.png,A red square.\n", encoding="utf-8-sig")
    assert read_csv(path, "caption")[0]["id"] == "a-1"


def test_read_csv_names_the_file_and_the_missing_column(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("id,image,caption\na-1,images/a.png,A red square.\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"data\.csv: no 'image_path' column"):
        read_csv(path, "caption")


def test_read_csv_rejects_a_row_with_more_cells_than_columns(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("id,image_path,caption\na-1,images/a.png,A red square, small.\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"data\.csv, line 2: more cells than columns"):
        read_csv(path, "caption")


def test_row_to_conversation_is_the_tutorial_format():
    row = {"id": "a-1", "image_path": "images/a.png", "caption": "A red square."}
    assert row_to_conversation(row, "caption", "images/a.png", "Describe this image.") == {
        "id": "a-1",
        "task": "caption",
        "conversations": [
            {"from": "user", "value": "<|vision_start|>images/a.png<|vision_end|>Describe this image."},
            {"from": "assistant", "value": "A red square."},
        ],
    }


def test_check_row_accepts_a_good_row_with_a_relative_or_absolute_path(tmp_path):
    image = write_image(tmp_path / "images" / "a.png")
    assert check_row({"id": "a-1", "image_path": "images/a.png", "caption": "A red square."}, tmp_path,
                     "caption") is None
    assert check_row({"id": "a-1", "image_path": str(image), "caption": "A red square."}, "/elsewhere",
                     "caption") is None


def test_check_row_gives_the_reason_a_row_is_bad(tmp_path):
    write_image(tmp_path / "images" / "a.png")
    good = {"id": "a-1", "image_path": "images/a.png", "caption": "A red square."}
    missing = os.path.join(tmp_path, "images/missing.png")
    assert check_row({**good, "id": "  "}, tmp_path, "caption") == "empty id"
    assert check_row({**good, "caption": " \t"}, tmp_path, "caption") == "empty caption"
    assert check_row({**good, "image_path": ""}, tmp_path, "caption") == "empty image_path"
    assert check_row({**good, "image_path": "images/missing.png"}, tmp_path, "caption") == f"image not found: {missing}"


# A PNG without its last 12 bytes (the IEND chunk) still loads: only verify() notices. A cut JPEG passes verify().
@pytest.mark.parametrize("name, keep", [
    ("half.png", lambda size: size // 2),
    ("no-end.png", lambda size: size - 12),
    ("half.jpg", lambda size: size // 2),
])
def test_check_row_catches_a_truncated_image(tmp_path, name, keep):
    write_truncated(tmp_path / "images" / name, keep)
    reason = check_row({"id": "a-1", "image_path": f"images/{name}", "caption": "A red square."}, tmp_path, "caption")
    assert reason.startswith(f"image does not decode: {os.path.join(tmp_path, 'images', name)} (")


def test_check_row_catches_a_file_that_is_no_image(tmp_path):
    (tmp_path / "a.png").write_text("not an image")
    reason = check_row({"id": "a-1", "image_path": "a.png", "caption": "A red square."}, tmp_path, "caption")
    assert reason.startswith("image does not decode:")


def test_read_csv_of_another_task_names_the_task_and_its_columns(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("id,image_path,caption\na-1,images/a.png,A red square.\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"no 'label' column \(a --task classification data\.csv has "
                                         r"id,image_path,label, found id,image_path,caption\)"):
        read_csv(path, "classification")


def test_read_csv_keeps_the_turns_column_of_a_vqa_csv(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text('id,image_path,question,answers,turns\nq,a.png,Why?,"[""b""]",\n', encoding="utf-8")
    assert read_csv(path, "vqa") == [{"id": "q", "image_path": "a.png", "question": "Why?", "answers": '["b"]',
                                      "turns": ""}]


# ---------------------------------------------------------------- tasks: record -> row -> conversation


def test_record_to_row_of_each_task():
    base = {"id": "r", "image_id": "i", "image": "x.jpg"}
    assert record_to_row({**base, "caption": "A cat."}, "images/i.jpg", "caption") == \
        {"id": "r", "image_path": "images/i.jpg", "caption": "A cat."}
    assert record_to_row({**base, "label": "dog"}, "images/i.jpg", "classification") == \
        {"id": "r", "image_path": "images/i.jpg", "label": "dog"}
    # COCO's x + width is not exact in floating point (120.46 + 212.31 = 332.77000000000004): 2 decimals at most.
    assert record_to_row({**base, "expression": "person", "box": (120.46, 133.32, 120.46 + 212.31, 640.0),
                          "width": 480, "height": 640}, "images/i.jpg", "grounding") == \
        {"id": "r", "image_path": "images/i.jpg", "expression": "person", "x1": "120.46", "y1": "133.32",
         "x2": "332.77", "y2": "640", "width": 480, "height": 640}
    assert record_to_row({**base, "question": "Què és?", "answers": ["gat", "gat"]}, "images/i.jpg", "vqa") == \
        {"id": "r", "image_path": "images/i.jpg", "question": "Què és?", "answers": '["gat", "gat"]'}
    turns = [{"from": "human", "value": "Què és?"}, {"from": "gpt", "value": "Un gat."}]
    row = record_to_row({**base, "question": "Què és?", "answers": ["Un gat."], "turns": turns}, "i.jpg", "vqa")
    assert row["turns"] == '[{"from": "human", "value": "Què és?"}, {"from": "gpt", "value": "Un gat."}]'


def test_classification_conversation_lists_the_classes_and_answers_the_label():
    row = {"id": "cane/1.jpeg", "image_path": "images/cane-1.jpeg", "label": "dog"}
    assert row_to_conversation(row, "classification", "images/cane-1.jpeg", "Describe this image.",
                               ["cat", "dog", "horse"]) == {
        "id": "cane/1.jpeg", "task": "classification",
        "conversations": [
            {"from": "user", "value": "<|vision_start|>images/cane-1.jpeg<|vision_end|>"
                                      "Which of these is in the picture: cat, dog, horse? Answer with one of them."},
            {"from": "assistant", "value": "dog"}],
        "label": "dog", "classes": ["cat", "dog", "horse"]}


def test_grounding_conversation_answers_integer_original_pixels_and_keeps_the_float_box():
    row = {"id": "535506_441444", "image_path": "images/535506.jpg", "expression": "person", "x1": "120.46",
           "y1": "133.32", "x2": "332.77", "y2": "631.9", "width": "480", "height": "640"}
    assert row_to_conversation(row, "grounding", "images/535506.jpg", "Describe this image.") == {
        "id": "535506_441444", "task": "grounding",
        "conversations": [
            {"from": "user", "value": "<|vision_start|>images/535506.jpg<|vision_end|>"
                                      "Locate person in the image and give its bounding box."},
            {"from": "assistant", "value": '[{"bbox_2d": [120, 133, 333, 632], "label": "person"}]'}],
        "box": [120.46, 133.32, 332.77, 631.9], "image_size": [480, 640], "expression": "person"}


def test_vqa_conversation_answers_the_most_common_answer():
    row = {"id": "458752000", "image_path": "images/458752.jpg",
           "question": "What is this photo taken looking through?", "answers": '["net", "netting", "net", "mesh"]'}
    assert row_to_conversation(row, "vqa", "images/458752.jpg", "Describe this image.") == {
        "id": "458752000", "task": "vqa",
        "conversations": [
            {"from": "user", "value": "<|vision_start|>images/458752.jpg<|vision_end|>"
                                      "What is this photo taken looking through?"},
            {"from": "assistant", "value": "net"}],
        "answers": ["net", "netting", "net", "mesh"]}


def test_most_common_answer_breaks_ties_by_the_first_given():
    assert most_common_answer(["mesh", "net", "net", "mesh", "netting"]) == "mesh"
    assert most_common_answer(["two", "2", "2"]) == "2"


def test_vqa_conversation_with_turns_trains_every_answer_with_the_image_first():
    turns = [{"from": "human", "value": "What colour is the bus?"}, {"from": "gpt", "value": "White and red."},
             {"from": "human", "value": "What is on its back?"}, {"from": "gpt", "value": "An advertisement."}]
    row = {"id": "000000033471", "image_path": "images/coco_train2017_000000033471.jpg",
           "question": "What colour is the bus?", "answers": '["White and red."]', "turns": json.dumps(turns)}
    record = row_to_conversation(row, "vqa", row["image_path"], "Describe this image.")
    assert record == {
        "id": "000000033471", "task": "vqa",
        "conversations": [
            {"from": "user", "value": "<|vision_start|>images/coco_train2017_000000033471.jpg<|vision_end|>"
                                      "What colour is the bus?"},
            {"from": "assistant", "value": "White and red."},
            {"from": "user", "value": "What is on its back?"},
            {"from": "assistant", "value": "An advertisement."}],
        "answers": ["An advertisement."]}  # the last answer: test.py asks the last question


def test_vqa_conversation_with_soft_scores_answers_the_best_scored_and_keeps_the_scores():
    row = {"id": "458752000", "image_path": "images/458752.jpg",
           "question": "What is this photo taken looking through?", "answers": '["netting", "net", "mesh"]', "answer_scores": '{"netting": 0.3, "net": 0.9, "mesh": 0.9}'}
    record = row_to_conversation(row, "vqa", row["image_path"], "Describe this image.")
    assert record["conversations"][1] == {"from": "assistant", "value": "net"}  # of the two at 0.9, the first
    assert record["answers"] == ["netting", "net", "mesh"]
    assert record["answer_scores"] == {"netting": 0.3, "net": 0.9, "mesh": 0.9}


def test_record_to_row_writes_soft_scores_in_their_own_column():
    record = {"id": "1", "image_id": "1", "image": "x.jpg", "question": "Q?", "answers": ["net"],
              "answer_scores": {"net": 1}}
    assert record_to_row(record, "images/1.jpg", "vqa")["answer_scores"] == '{"net": 1}'


def test_rows_to_conversations_give_every_classification_record_the_aliases():
    rows = [{"id": f"{n}", "image_path": f"{n}.png", "label": label} for n, label in enumerate(["ants", "bees"])]
    records = rows_to_conversations(rows, "classification", "", {"formica": "ants"})
    assert [r["aliases"] for r in records] == [{"formica": "ants"}, {"formica": "ants"}]
    assert "aliases" not in rows_to_conversations(rows, "classification", "")[0]
    with pytest.raises(ValueError, match=r"--class_aliases \{'vespa': 'wasps'\}: no row of data\.csv has that label "
                                         r"\(its labels: ants, bees\)"):
        rows_to_conversations(rows, "classification", "", {"formica": "ants", "vespa": "wasps"})


def test_rows_to_conversations_ask_every_class_of_the_rows_sorted():
    rows = [{"id": f"{n}", "image_path": f"{n}.png", "label": label} for n, label in enumerate(["dog", "cat", "dog"])]
    records = rows_to_conversations(rows, "classification", "Describe this image.")
    assert [r["id"] for r in records] == ["0", "1", "2"]
    assert all(r["classes"] == ["cat", "dog"] for r in records)
    assert records[1]["conversations"][0]["value"] == \
        "<|vision_start|>1.png<|vision_end|>Which of these is in the picture: cat, dog? Answer with one of them."


def test_to_messages_ignores_the_scoring_keys_and_reads_several_turns(tmp_path):
    turns = [{"from": "human", "value": "Q1?"}, {"from": "gpt", "value": "A1."},
             {"from": "human", "value": "Q2?"}, {"from": "gpt", "value": "A2."}]
    row = {"id": "q", "image_path": "a.png", "question": "Q1?", "answers": '["A1."]', "turns": json.dumps(turns)}
    assert to_messages(row_to_conversation(row, "vqa", "a.png", "Describe."), tmp_path) == [
        {"role": "user", "content": [{"type": "image", "image": os.path.join(tmp_path, "a.png")},
                                     {"type": "text", "text": "Q1?"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "A1."}]},
        {"role": "user", "content": [{"type": "text", "text": "Q2?"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "A2."}]},
    ]
    box = {"id": "b", "image_path": "a.png", "expression": "cat", "x1": "1", "y1": "1", "x2": "3", "y2": "3",
           "width": "4", "height": "4"}
    assert [m["role"] for m in to_messages(row_to_conversation(box, "grounding", "a.png", ""), tmp_path)] == \
        ["user", "assistant"]


# ---------------------------------------------------------------- tasks: checks


def test_check_row_of_classification_wants_a_label(tmp_path):
    write_image(tmp_path / "a.png")
    assert check_row({"id": "c", "image_path": "a.png", "label": "dog"}, tmp_path, "classification") is None
    assert check_row({"id": "c", "image_path": "a.png", "label": " "}, tmp_path, "classification") == "empty label"


GROUNDING_ROW = {"id": "g", "image_path": "a.png", "expression": "the red square", "x1": "0", "y1": "0.5",
                 "x2": "4", "y2": "3", "width": "4", "height": "4"}


@pytest.mark.parametrize("change, reason", [
    ({}, None),
    ({"expression": ""}, "empty expression"),
    ({"x2": "four"}, "x2 is not a number: 'four'"),
    ({"y1": ""}, "y1 is not a number: ''"),
    ({"width": "4.0"}, "width is not a whole number of pixels: '4.0'"),
    ({"x2": "4.5"}, "bad box: outside the 4x4 image: (0.0, 0.5, 4.5, 3.0)"),
    ({"y2": "0.5"}, "bad box: zero or negative area: (0.0, 0.5, 4.0, 0.5) (x2 must exceed x1 and y2 exceed y1)"),
    ({"x1": "nan"}, "bad box: a coordinate is not a finite number: (nan, 0.5, 4.0, 3.0)"),
    ({"width": "8", "x2": "6"}, "the image is 4x4 pixels, but the row's box is for 8x4"),
])
def test_check_row_of_grounding_wants_a_box_inside_the_image_of_its_size(tmp_path, change, reason):
    write_image(tmp_path / "a.png")
    assert check_row({**GROUNDING_ROW, **change}, tmp_path, "grounding") == reason


VQA_ROW = {"id": "v", "image_path": "a.png", "question": "What colour?", "answers": '["red", "red", "dark red"]'}


@pytest.mark.parametrize("change, reason", [
    ({}, None),
    ({"question": " "}, "empty question"),
    ({"answers": "red"}, "answers is not JSON (Expecting value: line 1 column 1 (char 0)): 'red'"),
    ({"answers": "[]"}, "answers must be a non-empty JSON list of strings, got '[]'"),
    ({"answers": '"red"'}, "answers must be a non-empty JSON list of strings, got '\"red\"'"),
    ({"answers": '["red", 2]'}, "answers must be a non-empty JSON list of strings, got '[\"red\", 2]'"),
    ({"answers": '["red", " "]'}, "an empty answer in answers: '[\"red\", \" \"]'"),
    ({"turns": ""}, None),
    ({"turns": '[{"from": "human", "value": "Q?"}, {"from": "gpt", "value": "A."}]'}, None),
    ({"turns": "[{"},
     "turns is not JSON (Expecting property name enclosed in double quotes: line 1 column 3 (char 2))"),
    ({"turns": '[{"from": "human", "value": "Q?"}]'}, "turns must be a JSON list of human and gpt turns in pairs"),
    ({"turns": '[{"from": "gpt", "value": "A."}, {"from": "human", "value": "Q?"}]'},
     "turn 1 of turns must be a user turn ({\"from\", \"value\"}), got {'from': 'gpt', 'value': 'A.'}"),
    ({"turns": '[{"from": "human", "value": "Q?"}, {"from": "gpt", "value": " "}]'}, "turn 2 of turns is empty"),
    ({"answer_scores": ""}, None),
    ({"answers": '["red", "dark red"]', "answer_scores": '{"red": 0.6, "dark red": 0.3}'}, None),
    ({"answer_scores": "{"}, "answer_scores is not JSON (Expecting property name enclosed in double quotes: line 1 "
                             "column 2 (char 1)): '{'"),
    ({"answers": '["red"]', "answer_scores": '{"blue": 1}'},
     "answer_scores must be a JSON object of a score for each of the answers ['red'], got '{\"blue\": 1}'"),
    ({"answers": '["red"]', "answer_scores": '{"red": 0}'},
     "every score in answer_scores must be a number, 0 < score <= 1, got '{\"red\": 0}'"),
    ({"answers": '["red"]', "answer_scores": '{"red": true}'},
     "every score in answer_scores must be a number, 0 < score <= 1, got '{\"red\": true}'"),
])
def test_check_row_of_vqa_wants_a_question_and_a_list_of_answers(tmp_path, change, reason):
    write_image(tmp_path / "a.png")
    assert check_row({**VQA_ROW, **change}, tmp_path, "vqa") == reason


# ---------------------------------------------------------------- split


def test_split_is_deterministic_for_a_seed():
    rows = rows_of(20)
    assert split_by_image(rows, 5, seed=3) == split_by_image(rows, 5, seed=3)


def test_split_changes_with_the_seed():
    rows = rows_of(20)
    assert val_images(split_by_image(rows, 5, seed=0)[1]) != val_images(split_by_image(rows, 5, seed=1)[1])


def test_split_does_not_depend_on_the_order_of_the_rows():
    rows = rows_of(20)
    assert val_images(split_by_image(rows, 5, seed=0)[1]) == val_images(split_by_image(rows[::-1], 5, seed=0)[1])


def test_split_keeps_the_captions_of_one_image_together_and_keeps_row_order():
    rows = rows_of(10, captions_per_image=5)
    train, val = split_by_image(rows, 0.2, seed=0)
    assert len(val_images(val)) == 2 and len(val) == 10
    assert val_images(train).isdisjoint(val_images(val))
    assert train == [row for row in rows if row not in val]
    assert val == [row for row in rows if row in val]


def test_val_size_of_one_or_more_is_a_count_of_images():
    train, val = split_by_image(rows_of(8, captions_per_image=5), 3, seed=0)
    assert (len(val_images(train)), len(val_images(val))) == (5, 3)


def test_val_size_below_one_is_a_fraction_of_images():
    train, val = split_by_image(rows_of(8, captions_per_image=5), 0.25, seed=0)
    assert (len(val_images(train)), len(val_images(val))) == (6, 2)


def test_a_fraction_holds_out_at_least_one_image_when_there_are_two():
    assert len(split_by_image(rows_of(2), 0.01, seed=0)[1]) == 1
    assert split_by_image(rows_of(1), 0.01, seed=0) == (rows_of(1), [])


@pytest.mark.parametrize("val_size, message", [
    (8, "holds out 8 of the 8 images, leaving none to train on"),
    (0.9, "holds out 4 of the 4 images"),
    (2.5, "must be a whole number"),
    (0, "must be a fraction"),
])
def test_too_large_or_invalid_val_size_raises(val_size, message):
    rows = rows_of(8 if val_size == 8 else 4)
    with pytest.raises(ValueError, match=message):
        split_by_image(rows, val_size, seed=0)


def test_split_groups_conversations_by_their_images():
    def record(id, *paths):
        images = "".join(f"<|vision_start|>{path}<|vision_end|>" for path in paths)
        return {"id": id, "conversations": [{"from": "user", "value": images + "Describe."},
                                            {"from": "assistant", "value": "Text."}]}

    # "pair" joins a.png and b.png, and "a-again" reaches a.png through a differently written path.
    records = [record("a", "images/a.png"), record("pair", "images/a.png", "images/b.png"),
               record("a-again", "images/./a.png"), record("b", "images/b.png"), record("c", "images/c.png"),
               record("d", "images/d.png")]
    for seed in range(10):
        train, val = split_by_image(records, 1, seed=seed)
        ids = {r["id"] for r in val}
        assert ids in ({"c"}, {"d"}, {"a", "pair", "a-again", "b"})


# ---------------------------------------------------------------- messages


def test_to_messages_of_a_csv2json_record(tmp_path):
    record = {"id": "a-1", "conversations": [
        {"from": "user", "value": "<|vision_start|>images/a.png<|vision_end|>Describe this image."},
        {"from": "assistant", "value": "A red square."},
    ]}
    assert to_messages(record, tmp_path) == [
        {"role": "user", "content": [{"type": "image", "image": os.path.join(tmp_path, "images", "a.png")},
                                     {"type": "text", "text": "Describe this image."}]},
        {"role": "assistant", "content": [{"type": "text", "text": "A red square."}]},
    ]


def test_to_messages_keeps_text_before_and_after_the_image_in_order(tmp_path):
    record = {"id": "q", "conversations": [
        {"from": "user", "value": "Look: <|vision_start|>a.png<|vision_end|> What colour is it?"},
        {"from": "assistant", "value": "Red."},
    ]}
    assert to_messages(record, tmp_path)[0]["content"] == [
        {"type": "text", "text": "Look: "},
        {"type": "image", "image": os.path.join(tmp_path, "a.png")},
        {"type": "text", "text": " What colour is it?"},
    ]


def test_to_messages_reads_two_images_and_keeps_an_absolute_path(tmp_path):
    record = {"id": "two", "conversations": [
        {"from": "user",
         "value": "<|vision_start|>a.png<|vision_end|>\n<|vision_start|>/data/b.png<|vision_end|>Same?"},
        {"from": "assistant", "value": "No."},
    ]}
    assert to_messages(record, tmp_path)[0]["content"] == [
        {"type": "image", "image": os.path.join(tmp_path, "a.png")},
        {"type": "image", "image": "/data/b.png"},
        {"type": "text", "text": "Same?"},
    ]


def test_to_messages_reads_human_gpt_and_system_roles_over_several_turns(tmp_path):
    record = {"id": "chat", "conversations": [
        {"from": "system", "value": "You describe images."},
        {"from": "human", "value": "<|vision_start|>a.png<|vision_end|>What is it?"},
        {"from": "gpt", "value": "A square."},
        {"from": "human", "value": "What colour?"},
        {"from": "gpt", "value": "Red."},
    ]}
    messages = to_messages(record, tmp_path)
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user", "assistant"]
    assert messages[0]["content"] == [{"type": "text", "text": "You describe images."}]
    assert messages[3]["content"] == [{"type": "text", "text": "What colour?"}]
    assert messages[4]["content"] == [{"type": "text", "text": "Red."}]


def user(value):
    return {"from": "user", "value": value}


def assistant(value):
    return {"from": "assistant", "value": value}


@pytest.mark.parametrize("conversations, message", [
    (None, "no 'conversations' list"),
    ([], "no 'conversations' list"),
    ([{"from": "bot", "value": "Hi."}, assistant("A.")], "turn 1: unknown role 'bot'"),
    ([user("<|vision_start|>a.png Describe."), assistant("A.")], "turn 1: unbalanced vision markers"),
    ([user("a.png<|vision_end|>Describe."), assistant("A.")], "turn 1: unbalanced vision markers"),
    ([user("<|vision_start|><|vision_start|>a.png<|vision_end|>"), assistant("A.")], "unbalanced vision markers"),
    ([user("<|vision_start|> <|vision_end|>Describe."), assistant("A.")], "no image path"),
    ([user("Describe."), assistant("  ")], "turn 2: empty assistant turn"),
    ([user("Describe."), assistant("<|vision_start|>a.png<|vision_end|>")], "turn 2: an image in a turn of the"),
    ([assistant("A."), user("Describe.")], "turns must alternate"),
    ([user("Describe.")], "turns must alternate"),
    ([user("Describe."), "A."], "turn 2: expected an object"),
])
def test_a_malformed_record_raises_naming_its_id(conversations, message):
    record = {"id": "broken-7"} if conversations is None else {"id": "broken-7", "conversations": conversations}
    with pytest.raises(ValueError, match=r"record 'broken-7'") as error:
        to_messages(record, "/data")
    assert message in str(error.value)


# ---------------------------------------------------------------- JSON files


def write_json(path, value):
    path.write_text(json.dumps(value), encoding="utf-8")
    return path


def test_load_conversations_reads_back_a_valid_file(tmp_path):
    write_image(tmp_path / "images" / "a.png")
    records = [row_to_conversation({"id": "a-1", "caption": "A red square."}, "caption", "images/a.png", "Describe.")]
    assert load_conversations(write_json(tmp_path / "train.json", records)) == records


def test_load_conversations_names_the_file_and_the_record(tmp_path):
    write_image(tmp_path / "a.png")
    good = row_to_conversation({"id": "ok", "caption": "A."}, "caption", "a.png", "Describe.")
    path = write_json(tmp_path / "train.json", [good, {"id": "bad-2", "conversations": [user("Hi.")]}])
    with pytest.raises(ValueError, match=r"train\.json: record 'bad-2': turns must alternate"):
        load_conversations(path)


def test_load_conversations_names_a_missing_image(tmp_path):
    path = write_json(tmp_path / "train.json",
                      [row_to_conversation({"id": "gone", "caption": "A."}, "caption", "images/gone.png", "Describe.")])
    with pytest.raises(FileNotFoundError, match=r"train\.json: record 'gone': image not found: .*images/gone\.png"):
        load_conversations(path)


def test_load_conversations_wants_a_list(tmp_path):
    with pytest.raises(ValueError, match=r"train\.json: expected a list of conversation records, found a dict"):
        load_conversations(write_json(tmp_path / "train.json", {"id": "a"}))
    (tmp_path / "val.json").write_text("[{", encoding="utf-8")
    with pytest.raises(ValueError, match=r"val\.json: not valid JSON"):
        load_conversations(tmp_path / "val.json")


# ---------------------------------------------------------------- published splits


def split_of(rows, **splits):
    """rows_of(...) with the split column: {"train": [0, 1], "val": [2]} gives image 0 and 1 train, 2 val."""
    named = {f"images/{image}.png": split for split, images in splits.items() for image in images}
    return [{**row, "split": named.get(row["image_path"], "")} for row in rows]


def ids(rows):
    return [row["id"] for row in rows]


def test_split_rows_keeps_a_published_train_and_val_whatever_the_seed():
    rows = split_of(rows_of(4, captions_per_image=2), train=[0, 1, 3], val=[2])
    for seed in (0, 1):
        sides, lines, left_out = split_rows(rows, 0.5, seed)
        assert (ids(sides["train"]), ids(sides["val"])) == (["0-0", "0-1", "1-0", "1-1", "3-0", "3-1"], ["2-0", "2-1"])
        assert sorted(sides) == ["train", "val"] and left_out == []
        assert lines == ["split: as published (train 6, val 2)"]


def test_split_rows_makes_test_the_validation_when_there_is_no_val():
    sides, lines, _ = split_rows(split_of(rows_of(3), train=[0, 1], test=[2]), 0.15, 42)
    assert (ids(sides["train"]), ids(sides["val"])) == (["0-0", "1-0"], ["2-0"]) and "test" not in sides
    assert lines == ["split: as published (train 2, test 1)",
                     "  val.json holds the test split: data.csv has no val split"]


def test_split_rows_trains_on_val_and_validates_on_test_without_a_train_split():
    sides, lines, _ = split_rows(split_of(rows_of(3), val=[0, 1], test=[2]), 0.15, 42)
    assert (ids(sides["train"]), ids(sides["val"])) == (["0-0", "1-0"], ["2-0"])
    assert lines == ["split: as published (val 2, test 1)",
                     "  train.json holds the val split, val.json holds the test split: data.csv has no train split"]


def test_split_rows_writes_a_test_split_beside_val_to_test():
    sides, lines, _ = split_rows(split_of(rows_of(3), test=[0], val=[1], train=[2]), 0.15, 42)
    assert {side: ids(rows) for side, rows in sides.items()} == {"train": ["2-0"], "val": ["1-0"], "test": ["0-0"]}
    assert lines == ["split: as published (train 1, val 1, test 1)",
                     "  test.json holds the test split, which test.py does not score (it scores val.json)"]


def test_split_rows_of_one_split_or_none_splits_at_random_by_image():
    rows = rows_of(10, captions_per_image=2)
    assert split_rows(rows, 3, 7) == ({"train": split_by_image(rows, 3, 7)[0], "val": split_by_image(rows, 3, 7)[1]},
                                      ["split: random, seeded (--split_seed 7), by image"], [])
    sides, lines, _ = split_rows(split_of(rows, train=range(10)), 3, 7)
    assert (ids(sides["train"]), ids(sides["val"])) == tuple(ids(side) for side in split_by_image(rows, 3, 7))
    assert lines == ["split: random, seeded (--split_seed 7), by image, as data.csv names one split only (train 20)"]


def test_split_rows_counts_rows_without_a_split_as_train_and_says_so():
    sides, lines, _ = split_rows(split_of(rows_of(4), train=[0], val=[3]), 0.15, 42)
    assert (ids(sides["train"]), ids(sides["val"])) == (["0-0", "1-0", "2-0"], ["3-0"])
    assert lines == ["split: as published (train 3, val 1)", "  2 rows name no split: they count as train"]


def test_split_rows_leaves_an_image_of_two_splits_out_of_the_earlier_one():
    rows = [{"id": "9_1", "image_path": "images/9.jpg", "split": "train"},
            {"id": "8_1", "image_path": "images/8.jpg", "split": "train"},
            {"id": "9_2", "image_path": "./images/9.jpg", "split": "val"},
            {"id": "7_1", "image_path": "images/7.jpg", "split": "val"}]
    sides, lines, left_out = split_rows(rows, 0.15, 42)
    assert (ids(sides["train"]), ids(sides["val"])) == (["8_1"], ["9_2", "7_1"])
    assert left_out == [(rows[0], "its image is in the val split too: kept there, left out of train")]
    assert lines == ["split: as published (train 1, val 2)"]


def test_check_row_wants_a_split_of_train_val_test_or_none(tmp_path):
    write_image(tmp_path / "a.png")
    row = {"id": "a", "image_path": "a.png", "caption": "A."}
    assert [check_row({**row, "split": split}, tmp_path, "caption") for split in ("", "train", "val", "test")] == \
        [None] * 4
    assert check_row({**row, "split": "validation"}, tmp_path, "caption") == \
        "split 'validation' is none of train, val, test (or empty: not given)"


def test_write_csv_adds_the_split_column_only_where_a_row_has_one(tmp_path):
    rows = [{"id": "a", "image_path": "images/a.png", "caption": "A, red."}]
    write_csv(tmp_path / "data.csv", rows, "caption")
    assert (tmp_path / "data.csv").read_text() == 'id,image_path,caption\na,images/a.png,"A, red."\n'
    record = {"id": "b", "image_id": "b", "image": "b.png", "caption": "B.", "split": "val"}
    write_csv(tmp_path / "data.csv", [*rows, record_to_row(record, "images/b.png", "caption")], "caption")
    assert (tmp_path / "data.csv").read_text() == ('id,image_path,caption,split\na,images/a.png,"A, red.",\n'
                                                   "b,images/b.png,B.,val\n")
    assert read_csv(tmp_path / "data.csv", "caption")[1] == {"id": "b", "image_path": "images/b.png", "caption": "B.",
                                                             "split": "val"}
