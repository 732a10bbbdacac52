"""Bad records and text, one catalogue case a test: what each reader, csv2json.py and train.py make of it.

Each docstring names the input and its outcome class: "skipped and named" (left out, named with the reason, the good
records after it kept), "clear error" (one message naming the file or record and the fix) or "handled right" (the
input is what it says it is, and is trained as that). The real tokenizers and processors of ../shared/fixtures are
the oracle for what a control token is and what a batch holds.
"""

import csv
import json

import pytest
from PIL import Image
from transformers import AutoTokenizer

import csv2json
import data2csv
import train
from vlmtune import metrics, sources, text
from vlmtune.collator import IGNORE_INDEX, TrainCollator
from vlmtune.formats import answer_count_notes, check_row
from vlmtune.modeling import load_processor

FAMILIES = ["qwen2-vl-2b-instruct", "qwen2.5-vl-7b-instruct", "qwen3-vl-4b-instruct", "llava-1.5-7b-hf"]
NEAR_MISSES = "im_end <|im_end < image > <think <|im_end |> <IMAGE> s> </ s>"  # plain text, each of them


def _rec_image(path, colour=(200, 30, 30), size=(8, 6)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)
    return path


def _rec_data_csv(data_dir, header, rows, images=("a", "b", "c")):
    """data.csv of `rows` under `header`, beside images/<name>.png of distinct colours."""
    for k, name in enumerate(images):
        _rec_image(data_dir / "images" / f"{name}.png", (40 * k, 200, 30))
    with open(data_dir / "data.csv", "w", encoding="utf-8", newline="") as f:
        csv.writer(f).writerows([header, *rows])
    return data_dir


def _rec_rejected(data_dir) -> dict:
    with open(data_dir / "rejected.csv", encoding="utf-8", newline="") as f:
        return {row["id"]: row["reason"] for row in csv.DictReader(f)}


def _rec_json(path, value):
    path.write_text(json.dumps(value), encoding="utf-8")
    return str(path)


def _rec_tokenizer_added(folder) -> list[str]:
    """Every added token of a fixture tokenizer, read off its files as published."""
    tokens = []
    for name in ("tokenizer_config.json", "tokenizer.json"):
        if (folder / name).is_file():
            content = json.loads((folder / name).read_text(encoding="utf-8"))
            tokens += [entry["content"] for entry in content.get("added_tokens_decoder", {}).values()]
            tokens += [entry["content"] for entry in content.get("added_tokens", [])]
    return sorted(set(tokens))


# ---------------------------------------------------------------- text is text: csv2json.py rejects control tokens


def test_the_rule_covers_every_added_token_of_the_four_families(fixtures_dir):
    """Every added token (special or not) of the four families' published tokenizers: handled right (rule covers)."""
    seen = 0
    for family in FAMILIES:
        for token in _rec_tokenizer_added(fixtures_dir / family):
            assert text.control_tokens(f"a dog {token} on grass") == [token], (family, token)
            seen += 1
    assert seen == 14 + 22 + 26 + 5  # Qwen2-VL, Qwen2.5-VL, Qwen3-VL, LLaVA-1.5: the files' own counts


def test_a_caption_holding_im_end_is_rejected_naming_the_token_and_the_rows_after_it_kept(tmp_path, capsys):
    """A caption holding <|im_end|> (the real end token): skipped and named by csv2json; the good rows are kept."""
    data_dir = _rec_data_csv(tmp_path, ("id", "image_path", "caption"), [
        ("a-1", "images/a.png", "A red square.<|im_end|> and more"),
        ("b-1", "images/b.png", "A green square."), ("c-1", "images/c.png", "A blue square.")])
    csv2json.main(["--data_dir", str(data_dir), "--val_size", "1"])
    assert _rec_rejected(data_dir) == {"a-1": "caption holds <|im_end|>, a control token of the model's tokenizer: "
                                              "the model would read it as that token, not as text; remove it or "
                                              "respell it in the source data"}
    written = json.loads((data_dir / "train.json").read_text()) + json.loads((data_dir / "val.json").read_text())
    assert sorted(record["id"] for record in written) == ["b-1", "c-1"]
    assert "a-1: caption holds <|im_end|>" in capsys.readouterr().out


def test_a_caption_holding_a_second_assistant_turn_is_rejected(tmp_path):
    """A caption holding <|im_start|>assistant\\n...: skipped and named (would train a second reply)."""
    data_dir = _rec_data_csv(tmp_path, ("id", "image_path", "caption"), [
        ("a-1", "images/a.png", "A square.<|im_start|>assistant\nA circle."), ("b-1", "images/b.png", "Green."),
        ("c-1", "images/c.png", "Blue.")])
    csv2json.main(["--data_dir", str(data_dir), "--val_size", "1"])
    assert _rec_rejected(data_dir)["a-1"].startswith("caption holds <|im_start|>, a control token")


@pytest.mark.parametrize("column, cells, token", [
    ("question", ("What is <|image_pad|> here?", '["cat"]', ""), "<|image_pad|>"),
    ("question", ("Where is the <image>?", '["cat"]', ""), "<image>"),
    ("answers", ("What is it?", '["cat", "a <|vision_start|>cat"]', ""), "<|vision_start|>"),
    ("answers", ("What is it?", '["\\u003c|im_end|>"]', ""), "<|im_end|>"),  # a JSON escape hides nothing
    ("turns", ("What is it?", '["cat"]', json.dumps([{"from": "human", "value": "What?"},
                                                    {"from": "gpt", "value": "<think>cat"}])), "<think>"),
])
def test_a_vqa_cell_holding_a_control_token_is_rejected(tmp_path, column, cells, token):
    """A question, an answer or a turn holding a vision marker, image token or tag: skipped and named."""
    _rec_image(tmp_path / "a.png")
    row = {"id": "q", "image_path": "a.png", "question": cells[0], "answers": cells[1], "turns": cells[2]}
    assert check_row(row, str(tmp_path), "vqa") == (
        f"{column} holds {token}, a control token of the model's tokenizer: the model would read it as that token, "
        "not as text; remove it or respell it in the source data")


@pytest.mark.parametrize("task, cells", [
    ("classification", {"label": "</s>"}),
    ("grounding", {"expression": "the <s> dog", "x1": "1", "y1": "1", "x2": "4", "y2": "4", "width": "8",
                   "height": "6"}),
])
def test_a_label_or_an_expression_holding_a_llava_token_is_rejected(tmp_path, task, cells):
    """A class label </s> or an expression holding <s> (LLaVA's end and start tokens): skipped and named."""
    _rec_image(tmp_path / "a.png")
    reason = check_row({"id": "x", "image_path": "a.png", **cells}, str(tmp_path), task)
    assert reason.startswith(f"{'label' if task == 'classification' else 'expression'} holds "
                             f"{'</s>' if task == 'classification' else '<s>'}, a control token")


def test_near_misses_of_control_tokens_are_plain_text_to_csv2json(tmp_path):
    """Text that only looks like a token ("im_end", "<|im_end", "< image >", "<think"): handled right (accepted)."""
    _rec_image(tmp_path / "a.png")
    assert text.control_tokens(NEAR_MISSES) == []
    assert check_row({"id": "x", "image_path": "a.png", "caption": NEAR_MISSES}, str(tmp_path), "caption") is None


@pytest.mark.parametrize("family", ["qwen2-vl-2b-instruct", "llava-1.5-7b-hf"])
def test_near_misses_train_as_their_plain_text_tokens_on_the_real_processors(fixtures_dir, family):
    """A reply of near misses, on the real Qwen2-VL and LLaVA processors: handled right: the labels are the reply's
    own text and one closing token, and the image tokens are those of a plain reply."""
    processor = load_processor(str(fixtures_dir / family), 3136, 78400)
    tokenizer = processor.tokenizer
    image = Image.new("RGB", (64, 48), (10, 120, 200))

    def batch(reply):
        messages = [{"role": "user", "content": [{"type": "image", "image": image},
                                                 {"type": "text", "text": "Describe < image > this."}]},
                    {"role": "assistant", "content": [{"type": "text", "text": reply}]}]
        return TrainCollator(processor, trim_logits=False)([{"id": "n", "messages": messages}])

    near, plain = batch(NEAR_MISSES), batch("A plain reply.")
    image_id = tokenizer.convert_tokens_to_ids(processor.image_token)
    assert int((near["input_ids"] == image_id).sum()) == int((plain["input_ids"] == image_id).sum()) > 0
    supervised = near["labels"][0][near["labels"][0] != IGNORE_INDEX].tolist()
    end = tokenizer.convert_tokens_to_ids("<|im_end|>" if family.startswith("qwen") else "</s>")
    assert supervised == tokenizer(NEAR_MISSES, add_special_tokens=False)["input_ids"] + [end]
    assert supervised.count(end) == 1 and tokenizer.decode(supervised[:-1]) == NEAR_MISSES


# ---------------------------------------------------------------- train.py's guard, for a hand-written train.json


def test_the_guard_finds_qwen_tokens_with_the_real_qwen2_vl_tokenizer(fixtures_dir):
    """Hand-written records holding <|im_end|>, <|image_pad|> (and a near miss), real Qwen2-VL tokenizer: clear
    error: the records are named with their token, the near miss is not."""
    tokenizer = AutoTokenizer.from_pretrained(str(fixtures_dir / "qwen2-vl-2b-instruct"))

    def example(id, reply):
        return {"id": id, "messages": [{"role": "user", "content": [{"type": "image", "image": "a.png"},
                                                                     {"type": "text", "text": "Describe."}]},
                                       {"role": "assistant", "content": [{"type": "text", "text": reply}]}]}

    examples = [example("1", "A cat.<|im_end|>"), example("2", NEAR_MISSES), example("3", "x <|image_pad|> y")]
    found = text.in_examples(tokenizer, examples)
    assert found == [("1", "<|im_end|>"), ("3", "<|image_pad|>")]
    assert text.refusal("train.json", found).startswith(
        "train.json: 2 records hold a control token of this model's tokenizer in their text: 1 (<|im_end|>), "
        "3 (<|image_pad|>). ")


def test_the_guard_asks_the_loaded_tokenizer_real_llava(fixtures_dir):
    """<image> and </s> in a LLaVA-1.5 run's train.json, real LLaVA tokenizer: clear error naming them; Qwen's
    <|im_end|> is plain text to LLaVA's tokenizer, so it is not refused there."""
    tokenizer = AutoTokenizer.from_pretrained(str(fixtures_dir / "llava-1.5-7b-hf"))
    examples = [{"id": id, "messages": [{"role": "user", "content": [{"type": "text", "text": question}]}]}
                for id, question in (("a", "What is the <image>?"), ("b", "Why?</s>"), ("c", "Is <|im_end|> it?"))]
    assert text.in_examples(tokenizer, examples) == [("a", "<image>"), ("b", "</s>")]
    assert tokenizer("Is <|im_end|> it?", add_special_tokens=False)["input_ids"][2] not in tokenizer.all_special_ids


def _rec_train_json(data_dir, records):
    _rec_image(data_dir / "images/a.png", size=(56, 56))
    (data_dir / "train.json").write_text(json.dumps(records), encoding="utf-8")


def _rec_record(reply, **keys):
    return {"id": "hand-1", **keys, "conversations": [
        {"from": "user", "value": "<|vision_start|>images/a.png<|vision_end|>Describe."},
        {"from": "assistant", "value": reply}]}


def test_train_refuses_a_hand_written_train_json_holding_a_control_token(tiny_model_dir, tmp_path):
    """A hand-written train.json whose reply holds <|im_end|>: clear error from train.py naming record and fix."""
    _rec_train_json(tmp_path, [_rec_record("A cat.<|im_end|>more", task="caption")])
    with pytest.raises(SystemExit) as stop:
        train.main(["--data_dir", str(tmp_path), "--model_dir", str(tiny_model_dir), "--output_dir",
                    str(tmp_path / "run"), "--report_to", "none"])
    message = str(stop.value.code)
    assert message.startswith(f"{tmp_path / 'train.json'}: 1 records hold a control token of this model's tokenizer "
                              "in their text: hand-1 (<|im_end|>).")
    assert "remove or respell it in the source data and run data2csv.py and csv2json.py again" in message
    assert not (tmp_path / "run").exists()


def test_train_refuses_a_train_json_without_task_keys(tiny_model_dir, tmp_path):
    """A grounding train.json whose records lack "task": clear error (run csv2json.py again, or add the key), not
    trained as captions."""
    _rec_train_json(tmp_path, [_rec_record('[{"bbox_2d": [1, 1, 9, 9], "label": "cat"}]')])
    with pytest.raises(SystemExit) as stop:
        train.main(["--task", "grounding", "--data_dir", str(tmp_path), "--model_dir", str(tiny_model_dir),
                    "--output_dir", str(tmp_path / "run"), "--report_to", "none"])
    assert str(stop.value.code) == (
        f"{tmp_path / 'train.json'}: 1 of its 1 records have no \"task\" key (hand-1), so what they train is "
        "unknown: run csv2json.py again (it writes the key in every record), or add \"task\": \"grounding\" to each "
        "record")


# ---------------------------------------------------------------- VQA answers other than ten


def test_vqa_rows_with_other_than_ten_answers_are_counted_with_what_they_score(tmp_path, capsys):
    """VQA rows of 1 and 3 answers (and ten, and soft scores): handled right and named: csv2json counts them and says
    what a correct answer scores; the numbers are metrics.vqa_accuracy's own."""
    ten = json.dumps(["cat"] * 10)
    data_dir = _rec_data_csv(tmp_path, ("id", "image_path", "question", "answers", "answer_scores"), [
        ("1", "images/a.png", "What?", '["cat"]', ""), ("2", "images/a.png", "Who?", '["me"]', ""),
        ("3", "images/b.png", "Why?", '["x", "x", "x"]', ""), ("4", "images/c.png", "How?", ten, ""),
        ("5", "images/c.png", "Which?", '["red"]', '{"red": 0.9}')])
    csv2json.main(["--task", "vqa", "--data_dir", str(data_dir), "--val_size", "1"])
    out = capsys.readouterr().out
    assert "vqa answers: 2 rows have 1 answer, 1 have 3 answers, not VQA's 10 human answers a question:\n" in out
    assert ("  1 answer: scored by exact match (after VQA's answer normalisation): a correct answer scores 1.00\n"
            in out)
    assert ("  3 answers: scored by VQA accuracy over those 3 (min(matches / 3, 1), averaged over leaving each out): "
            "an answer all 3 give scores 0.67, one given by only one of them 0.22 (with 10 answers: 1.00 and 0.30)\n"
            in out)
    for n in (2, 3, 4, 5):  # the note's numbers are what scoring really gives
        (line,) = [line for line in answer_count_notes([{"answers": json.dumps(["cat"] * n)}])
                   if line.startswith(f"  {n} answers")]
        assert f"scores {metrics.vqa_accuracy('cat', ['cat'] * n):.2f}," in line
        assert f"them {metrics.vqa_accuracy('cat', ['cat'] + ['dog'] * (n - 1)):.2f} " in line
    assert (metrics.vqa_accuracy("cat", ["cat"] * 10), round(metrics.vqa_accuracy("cat", ["cat"] + ["dog"] * 9), 2)) \
        == (1.0, 0.3)
    assert answer_count_notes([{"answers": ten}]) == []


# ---------------------------------------------------------------- one bad record never stops a reader


def test_coco_captions_skip_malformed_annotations_and_keep_the_good_ones_after(tmp_path):
    """COCO captions: annotations without caption, image_id or id, a caption that is a number: skipped and named
    (by id, or "record N of <file>"); the good annotation after them is kept."""
    _rec_image(tmp_path / "1.jpg")
    path = _rec_json(tmp_path / "captions.json", {"images": [{"id": 1, "file_name": "1.jpg"}], "annotations": [
        {"image_id": 1, "id": 10}, {"id": 11, "caption": "No image."}, {"image_id": 1, "id": 12, "caption": 7},
        "a string", {"image_id": 1, "id": 13, "caption": "A dog. "}]})
    skipped = []
    assert [(r["id"], r["caption"]) for r in sources.coco_captions(path, str(tmp_path), skipped)] == [
        ("1_13", "A dog.")]
    assert skipped == [("1_10", "no 'caption' (its fields: id, image_id)"),
                       (f"record 2 of {path}", "no 'image_id' (its fields: caption, id)"),
                       ("1_12", "its caption is a int, not a text"),
                       (f"record 4 of {path}", "it is a str, not an object")]


def test_coco_images_entry_without_file_name_names_its_annotations(tmp_path):
    """A COCO "images" entry without file_name: skipped and named; its annotations are skipped as of an unknown
    image, the others kept."""
    _rec_image(tmp_path / "2.jpg")
    path = _rec_json(tmp_path / "captions.json", {"images": [{"id": 1}, {"id": 2, "file_name": "2.jpg"}],
                                                  "annotations": [{"image_id": 1, "id": 10, "caption": "One."},
                                                                  {"image_id": 2, "id": 20, "caption": "Two."}]})
    skipped = []
    assert [r["id"] for r in sources.coco_captions(path, str(tmp_path), skipped)] == ["2_20"]
    assert skipped == [(f"image 1 of {path}", "no 'file_name' (its fields: id): the annotations of this image are "
                                              "skipped"), ("1_10", "image_id 1 is not in the file's images")]


def test_coco_instances_skip_annotations_without_bbox_or_with_a_bad_one(tmp_path):
    """COCO instances: an annotation without bbox, without category_id, with a bbox of 3 numbers or of texts:
    skipped and named; the good one after them kept."""
    _rec_image(tmp_path / "1.jpg")
    good = {"image_id": 1, "id": 15, "category_id": 2, "iscrowd": 0, "bbox": [1, 1, 3, 2]}
    path = _rec_json(tmp_path / "instances.json", {
        "images": [{"id": 1, "file_name": "1.jpg", "width": 8, "height": 6}],
        "categories": [{"id": 1, "name": "dog"}, {"id": 2, "name": "cat"}, {"id": 3}],
        "annotations": [{**good, "id": 11, "category_id": 1, "bbox": None} | {"bbox": [1, 1, 2]},
                        {k: v for k, v in good.items() if k != "bbox"} | {"id": 12, "category_id": 1},
                        {k: v for k, v in good.items() if k != "category_id"} | {"id": 13},
                        {**good, "id": 14, "category_id": 1, "bbox": ["1", "1", "2", "2"]}, good]})
    skipped = []
    records = list(sources.coco_grounding(path, str(tmp_path), skipped))
    assert [(r["id"], r["expression"], r["box"]) for r in records] == [("1_15", "cat", (1, 1, 4, 3))]
    assert skipped == [(f"category 3 of {path}", "no 'name' (its fields: id)"),
                       ("1_11", "its bbox is [1, 1, 2], not COCO's [x, y, width, height]"),
                       ("1_12", "no 'bbox' (its fields: category_id, id, image_id, iscrowd)"),
                       ("1_13", "no 'category_id' (its fields: bbox, id, image_id, iscrowd)"),
                       ("1_14", "its bbox is ['1', '1', '2', '2'], not COCO's [x, y, width, height]")]


def test_a_captions_file_given_for_grounding_is_still_a_clear_error(tmp_path):
    """A captions file (no annotation has a bbox) given for grounding: clear error naming the file and the fix."""
    path = _rec_json(tmp_path / "captions.json", {"images": [], "categories": [], "annotations": [
        {"image_id": 1, "id": 1, "caption": "A dog."}]})
    with pytest.raises(ValueError, match=r"captions\.json: no annotation has a 'bbox'; give an instances_\*\.json"):
        list(sources.coco_grounding(path, str(tmp_path), []))


def test_llava_records_without_id_conversations_or_a_turns_value_are_skipped(tmp_path):
    """LLaVA entries without "conversations" or "id", a turn without "value", an image that is no path: skipped and
    named; the good conversation after them is kept."""
    _rec_image(tmp_path / "coco/1.jpg")
    turns = [{"from": "human", "value": "<image>\nWhat?"}, {"from": "gpt", "value": "A bus."}]
    path = _rec_json(tmp_path / "llava.json", [
        {"id": "a", "image": "coco/1.jpg"}, {"image": "coco/1.jpg", "conversations": turns},
        {"id": "c", "image": "coco/1.jpg", "conversations": [turns[0], {"from": "gpt"}]},
        {"id": "d", "image": 5, "conversations": turns}, {"id": "e", "image": "coco/1.jpg", "conversations": turns}])
    skipped = []
    assert [r["id"] for r in sources.llava_conversations(path, str(tmp_path), skipped)] == ["e"]
    assert skipped == [("a", "no 'conversations' (its fields: id, image)"),
                       (f"record 2 of {path}", "no 'id' (its fields: conversations, image)"),
                       ("c", "turn 2 is {'from': 'gpt'}, not {\"from\": \"human\" or \"gpt\", \"value\": text}"),
                       ("d", "its image is 5, not the path of an image file")]


def test_vqa_questions_without_question_id_or_with_answers_not_a_list_are_skipped(tmp_path):
    """VQA: a question without question_id, an annotation whose answers are not a list, an annotation without
    question_id: skipped and named; the good question after them kept."""
    _rec_image(tmp_path / "COCO_train2014_000000000009.jpg")
    questions = _rec_json(tmp_path / "q.json", {"questions": [
        {"image_id": 9, "question": "Why?"}, {"image_id": 9, "question": "What?", "question_id": 2},
        {"image_id": 9, "question": "Who?", "question_id": 3}]})
    annotations = _rec_json(tmp_path / "a.json", {"annotations": [
        {"question_id": 2, "answers": "net"}, {"answers": []},
        {"question_id": 3, "answers": [{"answer": "me", "answer_id": 1}]}]})
    skipped = []
    records = list(sources.vqa_questions(questions, annotations, str(tmp_path), skipped))
    assert [(r["id"], r["answers"]) for r in records] == [("3", ["me"])]
    assert skipped == [
        (f"record 2 of {annotations}", "no 'question_id' (its fields: answers)"),
        (f"record 1 of {questions}", "no 'question_id' (its fields: image_id, question)"),
        ("2", f"its annotation (record 1 of {annotations}) is malformed: its answers are 'net', not a list of "
              "{\"answer\": text, ...}")]


def test_lxmert_entries_without_sent_or_with_a_label_list_are_skipped(tmp_path):
    """LXMERT: an entry without "sent", one whose label is a list: skipped and named; the good one after kept."""
    _rec_image(tmp_path / "COCO_val2014_000000000042.jpg")
    entry = {"question_id": 3, "img_id": "COCO_val2014_000000000042", "sent": "Why?", "label": {"no": 1}}
    path = _rec_json(tmp_path / "minival.json", [{**entry, "question_id": 1, "sent": None} | {"sent": 4},
                                                 {k: v for k, v in entry.items() if k != "sent"} | {"question_id": 2},
                                                 {**entry, "question_id": 4, "label": ["no"]}, entry])
    skipped = []
    assert [r["id"] for r in sources.lxmert_vqa(path, str(tmp_path), skipped)] == ["3"]
    assert skipped == [("1", "its sent (the question) is a int, not a text"),
                       ("2", "no 'sent' (its fields: img_id, label, question_id)"),
                       ("4", "its 'label' is ['no'], not an object of answer: score")]


def test_a_llava_reader_given_a_file_of_rows_is_a_clear_error(tmp_path):
    """A rows file given to --source llava (no record holds conversations): clear error naming the file."""
    path = _rec_json(tmp_path / "rows.json", [{"image": "a.jpg", "question": "Why?", "answers": "x"}])
    with pytest.raises(ValueError, match=r"rows\.json: no record holds \"conversations\"; a LLaVA conversation file"):
        list(sources.llava_conversations(path, str(tmp_path), []))


# ---------------------------------------------------------------- one image file per image


def _rec_folder_run(tmp_path, files, *extra):
    """data2csv.py --source folder over class folders holding `files` (path -> colour); (rows, summary)."""
    for path, colour in files.items():
        _rec_image(tmp_path / "raw" / path, colour)
    data2csv.main(["--task", "classification", "--source", "folder", "--folder_dir", str(tmp_path / "raw"),
                   "--num_samples", "0", "--data_dir", str(tmp_path / "out"), *extra])
    with open(tmp_path / "out/data.csv", encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def _rec_pixel(path):
    with Image.open(path) as image:
        return image.convert("RGB").getpixel((0, 0))


@pytest.mark.parametrize("first, second", [("cat/dup.jpg", "cat/dup.JPG"), ("sea-lion/1.png", "sea/lion-1.png")])
def test_paths_that_read_alike_get_two_image_files_each_holding_its_own_pixels(tmp_path, capsys, first, second):
    """Two class-folder images whose old ids collided (dup.jpg / dup.JPG, sea-lion/1.png / sea/lion-1.png): handled
    right: two image files, each row pointing at its own, with its own pixels and label."""
    rows = _rec_folder_run(tmp_path, {first: (250, 0, 0), second: (0, 0, 250)})
    by_id = {row["id"]: row for row in rows}
    assert sorted(by_id) == sorted([first, second])
    assert by_id[first]["image_path"] != by_id[second]["image_path"]
    assert _rec_pixel(tmp_path / "out" / by_id[first]["image_path"])[0] > 200  # red, as written
    assert _rec_pixel(tmp_path / "out" / by_id[second]["image_path"])[2] > 200  # blue
    assert {by_id[first]["label"], by_id[second]["label"]} == {first.split("/")[0], second.split("/")[0]}
    assert len(list((tmp_path / "out/images").iterdir())) == 2


def test_llava_and_rows_image_ids_of_paths_that_read_alike_differ(tmp_path):
    """LLaVA and rows images a/b.jpg and a_b.jpg (the old "/" -> "_" ids collided): handled right: two image ids;
    one image spelled a/./b.jpg keeps one id."""
    for name in ("a/b.jpg", "a_b.jpg"):
        _rec_image(tmp_path / name)
    turns = [{"from": "human", "value": "What?"}, {"from": "gpt", "value": "A bus."}]
    llava = _rec_json(tmp_path / "llava.json", [{"id": str(k), "image": name, "conversations": turns}
                                                for k, name in enumerate(("a/b.jpg", "a_b.jpg", "a/./b.jpg"))])
    ids = [r["image_id"] for r in sources.llava_conversations(llava, str(tmp_path), [])]
    rows = _rec_json(tmp_path / "rows.json", [{"image": name, "question": "Why?", "answers": "x"}
                                              for name in ("a/b.jpg", "a_b.jpg", "a/./b.jpg")])
    assert [r["image_id"] for r in sources.rows_vqa(rows, str(tmp_path), [])] == ids
    assert ids[0] != ids[1] and ids[0] == ids[2]


def test_resuming_keeps_the_image_path_an_earlier_data_csv_gave_its_rows(tmp_path, capsys):
    """A data.csv written before ids held a digest (images/cat-a.png), re-run: handled right: its rows keep their
    image_path, and only the new record is written, under the new name."""
    _rec_image(tmp_path / "raw/cat/a.png")
    data2csv.main(["--task", "classification", "--source", "folder", "--folder_dir", str(tmp_path / "raw"),
                   "--num_samples", "0", "--data_dir", str(tmp_path / "out")])
    (tmp_path / "out/images").joinpath(next((tmp_path / "out/images").iterdir()).name).rename(
        tmp_path / "out/images/cat-a.png")  # as the earlier naming wrote it
    (tmp_path / "out/data.csv").write_text("id,image_path,label\ncat/a.png,images/cat-a.png,cat\n")
    rows = _rec_folder_run(tmp_path, {"cat/b.png": (0, 0, 250)})
    assert rows[0] == {"id": "cat/a.png", "image_path": "images/cat-a.png", "label": "cat"}
    assert rows[1]["image_path"] == f"images/{sources.path_image_id('cat/b.png')}.png"
    assert "Written now: 1, already present: 1" in capsys.readouterr().out


# ---------------------------------------------------------------- what data2csv.py reports


def test_an_empty_class_folder_is_named_its_class_absent(tmp_path, capsys):
    """An empty class folder (and one holding no image file): skipped and named, the summary saying its class is
    absent; the other classes are read."""
    (tmp_path / "raw/lion").mkdir(parents=True)
    (tmp_path / "raw/owl").mkdir(parents=True)
    (tmp_path / "raw/owl/notes.txt").write_text("no image")
    rows = _rec_folder_run(tmp_path, {"cat/1.png": (250, 0, 0)})
    assert [row["label"] for row in rows] == ["cat"]
    out = capsys.readouterr().out
    assert "  skipped lion/: no image in this class folder: its class 'lion' is absent\n" in out
    assert "  skipped owl/: no image in this class folder: its class 'owl' is absent\n" in out
    assert ("  2 class folders hold no image, so their classes are absent from data.csv (and from the classification "
            "question): lion/, owl/; put images in them, or remove them\n") in out


def test_every_skipped_record_is_listed_in_skipped_csv(tmp_path, capsys):
    """Seven files that are no images: skipped and named: the summary shows five, skipped.csv lists all seven."""
    for k in range(7):
        (tmp_path / f"raw/cat/{k}.txt").parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / f"raw/cat/{k}.txt").write_text("text")
    _rec_folder_run(tmp_path, {"cat/ok.png": (250, 0, 0)})
    out = capsys.readouterr().out
    assert "... and 2 more skipped." in out
    assert f"  all 7 skipped listed with their reasons in {tmp_path / 'out/skipped.csv'}\n" in out
    with open(tmp_path / "out/skipped.csv", encoding="utf-8", newline="") as f:
        listed = list(csv.DictReader(f))
    assert listed == [{"id": f"cat/{k}.txt", "reason": "not an image: its extension is .txt"} for k in range(7)]


def test_a_prompt_holding_a_control_token_is_refused_by_csv2json(tmp_path):
    """--prompt "<image> Describe." (LLaVA's image token, in every record's question): clear error naming the flag."""
    data_dir = _rec_data_csv(tmp_path, ("id", "image_path", "caption"), [("a-1", "images/a.png", "A square.")])
    with pytest.raises(SystemExit) as stop:
        csv2json.main(["--data_dir", str(data_dir), "--prompt", "<image> Describe."])
    assert str(stop.value.code) == ("csv2json.py: --prompt holds <image>, which the model would read as a control "
                                    "token, not as text: remove or respell it")
    assert not (data_dir / "train.json").exists()
