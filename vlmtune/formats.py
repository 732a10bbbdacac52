"""The three shapes a sample takes between data2csv.py and the trainer, and the checks between them.

1. A row of `data.csv` (data2csv.py writes it): `id,image_path` and the columns of its task. The image path is
   relative to the CSV's folder, or absolute; several rows may share one image, as COCO's five captions per image do.

       id,image_path,caption
       syn-0-000001,images/syn-0-000001.png,A large red circle at the top left.

       id,image_path,label                                        (the class name, after the label map)
       cane/OIP-a.jpeg,images/cane-OIP-a-0a020087.jpeg,dog       (the image file: sources.path_image_id)

       id,image_path,expression,x1,y1,x2,y2,width,height          (the box in pixels of the image, 2 decimals at most;
       535506_441444,images/535506.jpg,person,120.46,133.32,332.77,631.9,480,640      the image's width and height)

       id,image_path,question,answers                             (answers: a JSON list, VQA's ten human answers)
       458752000,images/9.jpg,What is this photo taken looking through?,"[""net"", ""net"", ""netting"", ...]"

   A vqa CSV may add a `turns` column: a LLaVA conversation of several questions (data2csv.py --source llava), as a
   JSON list of {"from": "human" | "gpt", "value": text} without LLaVA's <image> token. The conversation is made from
   `turns`, and its record's answers are the last gpt answer: test.py asks the last question after the earlier turns.
   A vqa CSV may add an `answer_scores` column instead: a JSON object of each answer's soft score, 0 < score <= 1,
   as LXMERT-style files hold them (data2csv.py --source lxmert), its keys the answers in `answers`:

       id,image_path,question,answers,answer_scores
       458752000,images/458752.jpg,What is this photo taken looking through?,"[""net""]","{""net"": 1}"

   Any CSV may end with a `split` column: the split the source publishes the row in, train, val or test (empty: none
   given), which csv2json.py keeps (split_rows). data2csv.py writes it where the source names a split:

       id,image_path,caption,split
       125870_88366,images/125870.jpg,An airport filled with large passenger jets parked next to each other.,train

2. A conversation record, the JSON of the popular Qwen2-VL tutorials (csv2json.py writes a list of them to train.json
   and val.json). Image paths sit between vision markers, relative to the JSON file's folder, or absolute. After an
   optional system turn, user and assistant turns alternate, and the last one is the assistant's ("human" and "gpt",
   the LLaVA spellings, are read as user and assistant). "task" names the task, and the keys after "conversations"
   hold what scoring needs:

       {"id": "syn-0-000001", "task": "caption",
        "conversations": [
          {"from": "user", "value": "<|vision_start|>images/syn-0-000001.png<|vision_end|>Describe this image."},
          {"from": "assistant", "value": "A large red circle at the top left."}]}

       classification: user "Which of these is in the picture: cat, dog, horse? Answer with one of them."
                       (every label of the CSV, sorted), assistant "dog"; "label": "dog", "classes": [...], and
                       "aliases": {"cane": "dog"} when csv2json.py has --class_aliases
       grounding:      user "Locate person in the image and give its bounding box.", assistant
                       '[{"bbox_2d": [120, 133, 333, 632], "label": "person"}]' in integer pixels of the original
                       image (model-neutral: training rewrites it in each model's own convention, vlmtune/boxes.py);
                       "box": [120.46, 133.32, 332.77, 631.9], "image_size": [480, 640], "expression": "person"
       vqa:            user the question, assistant the most common answer (ties: the first); "answers": [...];
                       with `turns`, the user and assistant turns of that conversation, the image in the first one;
                       with `answer_scores`, the answer of the highest score (ties: the first) and "answer_scores"

3. Chat-template messages, what the processor's `apply_chat_template` takes (to_messages builds them from a record;
   image paths are absolute; keys other than "id" and "conversations" are left to the caller):

       [{"role": "user", "content": [{"type": "image", "image": "/data/images/syn-0-000001.png"},
                                     {"type": "text", "text": "Describe this image."}]},
        {"role": "assistant", "content": [{"type": "text", "text": "A large red circle at the top left."}]}]

Nothing here imports torch, nor anything of vlmtune but boxes.check_box, images (the image checks) and
text.row_reason.
"""

import csv
import io
import json
import os
import random
import shutil
from collections import Counter

from vlmtune import images, text
from vlmtune.boxes import check_box

# The columns of data.csv, per task; a vqa CSV may add TURNS_COLUMN.
CSV_COLUMNS = {
    "caption": ("id", "image_path", "caption"),
    "classification": ("id", "image_path", "label"),
    "grounding": ("id", "image_path", "expression", "x1", "y1", "x2", "y2", "width", "height"),
    "vqa": ("id", "image_path", "question", "answers"),
}
TURNS_COLUMN = "turns"
SCORES_COLUMN = "answer_scores"  # a vqa CSV's soft scores, {answer: score}
SPLIT_COLUMN = "split"  # any CSV's published split of the row: one of SPLITS, or empty (not given)
SPLITS = ("train", "val", "test")
OPTIONAL_COLUMNS = (TURNS_COLUMN, SCORES_COLUMN, SPLIT_COLUMN)  # in this order after the task's, where rows hold them
BOX_COLUMNS = ("x1", "y1", "x2", "y2")
VISION_START = "<|vision_start|>"
VISION_END = "<|vision_end|>"
ROLES = {"user": "user", "human": "user", "assistant": "assistant", "gpt": "assistant", "system": "system"}


class NotUtf8Error(ValueError):
    """A text file holds a byte that is not UTF-8; the message names the file, the line and the byte's offset."""


def not_utf8_error(path) -> NotUtf8Error:
    """Where the first byte of `path` that is not UTF-8 is, and what to do. The decode error of a text-mode read
    counts bytes from the start of the buffer it read, not of the file, so the file's bytes are decoded again."""
    with open(path, "rb") as f:
        raw = f.read()
    try:
        raw.decode("utf-8")  # a byte-order mark is valid UTF-8: offsets count from the file's first byte
    except UnicodeDecodeError as error:
        line = raw.count(b"\n", 0, error.start) + 1
        return NotUtf8Error(f"{path}, line {line} (byte {error.start}): byte 0x{raw[error.start]:02x} is not UTF-8 "
                            f"({error.reason}): save the file as UTF-8 (in Excel: CSV UTF-8) and run again")
    return NotUtf8Error(f"{path}: not UTF-8: save the file as UTF-8 and run again")


def read_csv(path, task) -> list[dict]:
    """The rows of a data.csv of `task` as dicts, every cell stripped of surrounding whitespace. A byte that is not
    UTF-8 is a NotUtf8Error naming its line; nothing guesses another encoding (a guess can turn text into other
    text)."""
    try:
        return _read_csv(path, task)
    except UnicodeDecodeError:
        raise not_utf8_error(path) from None


def _read_csv(path, task) -> list[dict]:
    columns = CSV_COLUMNS[task]
    # utf-8-sig: a CSV saved by Excel starts with a byte-order mark, which would otherwise become part of "id".
    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f, restval="")
        header = reader.fieldnames or []
        for column in columns:
            if column not in header:
                found = ",".join(header) or "an empty file"
                raise ValueError(f"{path}: no {column!r} column (a --task {task} data.csv has {','.join(columns)}, "
                                 f"found {found})")
        rows = []
        for row in reader:
            if None in row:  # DictReader files the cells beyond the header under the key None
                raise ValueError(f"{path}, line {reader.line_num}: more cells than columns "
                                 "(a cell that holds a comma must be quoted)")
            rows.append({key: value.strip() for key, value in row.items()})
    return rows


def record_to_row(record, image_path, task) -> dict:
    """The data.csv row of a record of vlmtune/sources.py whose image is saved at `image_path`."""
    split = {SPLIT_COLUMN: record["split"]} if record.get("split") else {}
    return {"id": record["id"], "image_path": image_path, **_CELLS[task](record), **split}


def _vqa_cells(record) -> dict:
    cells = {"question": record["question"], "answers": json.dumps(record["answers"], ensure_ascii=False)}
    if "turns" in record:  # a LLaVA conversation
        cells[TURNS_COLUMN] = json.dumps(record["turns"], ensure_ascii=False)
    if "answer_scores" in record:  # soft scores of an LXMERT-style file
        cells[SCORES_COLUMN] = json.dumps(record["answer_scores"], ensure_ascii=False)
    return cells


# task -> record -> the row's cells after id and image_path
_CELLS = {
    "caption": lambda record: {"caption": record["caption"]},
    "classification": lambda record: {"label": record["label"]},
    "grounding": lambda record: {"expression": record["expression"],
                                 **dict(zip(BOX_COLUMNS, map(_number, record["box"]))),
                                 "width": record["width"], "height": record["height"]},
    "vqa": _vqa_cells,
}


def _number(value) -> str:
    """A pixel coordinate as the CSV writes it: at most 2 decimals (COCO's precision), no trailing zeros."""
    return f"{float(value):.2f}".rstrip("0").rstrip(".")


def classification_prompt(classes) -> str:
    return f"Which of these is in the picture: {', '.join(classes)}? Answer with one of them."


def grounding_prompt(expression) -> str:
    return f"Locate {expression} in the image and give its bounding box."


def grounding_answer(box, expression) -> str:
    """The model-neutral target: the box in integer pixels of the original image, as Qwen2.5-VL's JSON writes it."""
    return json.dumps([{"bbox_2d": [round(v) for v in box], "label": expression}], ensure_ascii=False)


def most_common_answer(answers) -> str:
    """The answer given most often; of those given equally often, the first in the list."""
    return Counter(answers).most_common(1)[0][0]  # most_common keeps first-seen order among equal counts


def _caption(row, prompt, classes):
    return [(prompt, row["caption"])], {}


def _classification(row, prompt, classes):
    return [(classification_prompt(classes), row["label"])], {"label": row["label"], "classes": list(classes)}


def _grounding(row, prompt, classes):
    box = [float(row[column]) for column in BOX_COLUMNS]
    extra = {"box": box, "image_size": [int(row["width"]), int(row["height"])], "expression": row["expression"]}
    return [(grounding_prompt(row["expression"]), grounding_answer(box, row["expression"]))], extra


def _vqa(row, prompt, classes):
    answers = json.loads(row["answers"])
    scores = {}
    if row.get(TURNS_COLUMN):
        turns = json.loads(row[TURNS_COLUMN])
        exchanges = [(turns[i]["value"], turns[i + 1]["value"]) for i in range(0, len(turns), 2)]
        # test.py asks the model the last question, after the earlier turns: that is the answer it is scored on.
        answers = [exchanges[-1][1]]
    elif row.get(SCORES_COLUMN):
        scores = {"answer_scores": json.loads(row[SCORES_COLUMN])}
        best = max(answers, key=lambda answer: scores["answer_scores"][answer])  # max keeps the first of ties
        exchanges = [(row["question"], best)]
    else:
        exchanges = [(row["question"], most_common_answer(answers))]
    return exchanges, {"answers": answers, **scores}


# task -> (row, caption prompt, classes) -> ([(user text, assistant text), ...], the record's scoring keys)
_EXCHANGES = {"caption": _caption, "classification": _classification, "grounding": _grounding, "vqa": _vqa}


def row_to_conversation(row, task, image_path_for_json, prompt, classes=()) -> dict:
    """The conversation record of one CSV row (checked by check_row) of `task`; the image opens the first user turn.

    `image_path_for_json` is the image's path as the JSON file must hold it: relative to that file's folder, or
    absolute. `prompt` is the caption task's instruction (the other tasks ignore it); `classes`, the classification
    task's class names, in the order the question lists them.
    """
    exchanges, extra = _EXCHANGES[task](row, prompt, classes)
    conversations = []
    for number, (question, answer) in enumerate(exchanges):
        image = f"{VISION_START}{image_path_for_json}{VISION_END}" if number == 0 else ""
        conversations += [{"from": "user", "value": image + question}, {"from": "assistant", "value": answer}]
    return {"id": row["id"], "task": task, "conversations": conversations, **extra}


def rows_to_conversations(rows, task, prompt, aliases=None) -> list[dict]:
    """The conversation record of each row, in order, its image path kept as the CSV holds it (the JSON sits beside).

    A classification question lists the labels of all `rows`, sorted, so that train and validation share one list.
    `aliases` (classification: other names of the classes, {"formica": "ants"}) go into every record as "aliases",
    for scoring to read answers by; ValueError when one names a class that no row has.
    """
    classes = sorted({row["label"] for row in rows}) if task == "classification" else []
    records = [row_to_conversation(row, task, row["image_path"], prompt, classes) for row in rows]
    if aliases:
        unknown = {alias: cls for alias, cls in aliases.items() if cls not in classes}
        if unknown:
            raise ValueError(f"--class_aliases {unknown}: no row of data.csv has that label (its labels: "
                             f"{', '.join(classes)})")
        for record in records:
            record["aliases"] = dict(aliases)
    return records


def check_row(row, csv_dir, task, images_checked: dict | None = None) -> str | None:
    """Why a CSV row of `task` cannot become a training sample, or None when it can. Finding duplicate ids is the
    caller's job. `images_checked` (path -> (problem, upright size)), kept by the caller across rows, decodes an image
    once however many rows use it: COCO's five captions of an image are five rows."""
    reason = text.row_reason(row)  # a control token in the text: the model would read it as that token
    if reason is not None:
        return reason
    if not row["id"].strip():
        return "empty id"
    if row.get(SPLIT_COLUMN, "") not in ("", *SPLITS):
        return f"split {row[SPLIT_COLUMN]!r} is none of {', '.join(SPLITS)} (or empty: not given)"
    reason = _CHECKS[task](row)
    if reason is not None:
        return reason
    if not row["image_path"].strip():
        return "empty image_path"
    path = os.path.join(csv_dir, row["image_path"])
    if not os.path.isfile(path):
        return f"image not found: {path}"
    if images_checked is None:
        images_checked = {}
    if path not in images_checked:
        # the file as every later step reads it: one check for csv2json and test.py; the size as a viewer shows it,
        # turned by its EXIF orientation
        problem = images.problem(path)
        images_checked[path] = (problem, None if problem else images.stored_size(path))
    reason, size = images_checked[path]
    if reason is not None:
        return reason
    if task == "grounding" and size != (int(row["width"]), int(row["height"])):
        # The box is in pixels of an image of the row's size: on an image of another size it would point elsewhere.
        turned = "" if size[::-1] != (int(row["width"]), int(row["height"])) else (
            " as stored, before its EXIF orientation turns it upright; give the box in the upright picture")
        return (f"the image is {size[0]}x{size[1]} pixels, but the row's box is for {row['width']}x{row['height']}"
                + turned)
    return None


def _check_caption(row) -> str | None:
    return None if row["caption"].strip() else "empty caption"


def _check_label(row) -> str | None:
    return None if row["label"].strip() else "empty label"


def _check_box(row) -> str | None:
    if not row["expression"].strip():
        return "empty expression"
    for column in BOX_COLUMNS:
        try:
            float(row[column])
        except ValueError:
            return f"{column} is not a number: {row[column]!r}"
    for column in ("width", "height"):
        try:
            int(row[column])
        except ValueError:
            return f"{column} is not a whole number of pixels: {row[column]!r}"
    reason = check_box([float(row[column]) for column in BOX_COLUMNS], (int(row["width"]), int(row["height"])))
    return None if reason is None else f"bad box: {reason}"


def _check_question(row) -> str | None:
    if not row["question"].strip():
        return "empty question"
    try:
        answers = json.loads(row["answers"])
    except json.JSONDecodeError as error:
        return f"answers is not JSON ({error}): {row['answers']!r}"
    if not (isinstance(answers, list) and answers and all(isinstance(answer, str) for answer in answers)):
        return f"answers must be a non-empty JSON list of strings, got {row['answers']!r}"
    if not all(answer.strip() for answer in answers):
        return f"an empty answer in answers: {row['answers']!r}"
    if row.get(SCORES_COLUMN):
        return _check_scores(row[SCORES_COLUMN], answers)
    return _check_turns(row[TURNS_COLUMN]) if row.get(TURNS_COLUMN) else None


def _check_scores(text, answers) -> str | None:
    try:
        scores = json.loads(text)
    except json.JSONDecodeError as error:
        return f"answer_scores is not JSON ({error}): {text!r}"
    if not (isinstance(scores, dict) and sorted(scores) == sorted(answers)):
        return f"answer_scores must be a JSON object of a score for each of the answers {answers}, got {text!r}"
    if not all(type(score) in (int, float) and 0 < score <= 1 for score in scores.values()):  # JSON's true is no score
        return f"every score in answer_scores must be a number, 0 < score <= 1, got {text!r}"
    return None


def _check_turns(text) -> str | None:
    try:
        turns = json.loads(text)
    except json.JSONDecodeError as error:
        return f"turns is not JSON ({error})"
    if not (isinstance(turns, list) and turns and len(turns) % 2 == 0):
        return "turns must be a JSON list of human and gpt turns in pairs"
    for number, turn in enumerate(turns, start=1):
        expected = "user" if number % 2 else "assistant"
        if not (isinstance(turn, dict) and ROLES.get(turn.get("from")) == expected
                and isinstance(turn.get("value"), str)):
            return f"turn {number} of turns must be a {expected} turn ({{\"from\", \"value\"}}), got {turn!r}"
        if not turn["value"].strip():
            return f"turn {number} of turns is empty"
    return None


_CHECKS = {"caption": _check_caption, "classification": _check_label, "grounding": _check_box,
           "vqa": _check_question}

VQA_ANSWERS = 10  # VQA v2's and OK-VQA's human answers a question, which VQA accuracy is made for


def answer_count_notes(rows) -> list[str]:
    """csv2json.py's note on checked vqa rows whose answers are not VQA's ten (and that have no answer_scores or
    turns, which are scored otherwise): how many have how many, and what a correct answer then scores
    (tasks.score_vqa): one answer by exact match; several by metrics.vqa_accuracy, min(matches / 3, 1) averaged over
    leaving each answer out, so that an answer all n of them give scores min(n - 1, 3) / 3."""
    counts = Counter(len(json.loads(row["answers"])) for row in rows
                     if not row.get(TURNS_COLUMN) and not row.get(SCORES_COLUMN))
    odd = sorted((n, count) for n, count in counts.items() if n != VQA_ANSWERS)
    if not odd:
        return []
    said = [f"{count} {'rows have' if k == 0 else 'have'} {n} answer{'s' if n != 1 else ''}"
            for k, (n, count) in enumerate(odd)]
    lines = [f"vqa answers: {', '.join(said)}, not VQA's {VQA_ANSWERS} human answers a question:"]
    for n, _ in odd:
        if n == 1:
            lines.append("  1 answer: scored by exact match (after VQA's answer normalisation): a correct answer "
                         "scores 1.00")
        else:
            lines.append(f"  {n} answers: scored by VQA accuracy over those {n} (min(matches / 3, 1), averaged over "
                         f"leaving each out): an answer all {n} give scores {min(n - 1, 3) / 3:.2f}, one given by "
                         f"only one of them {(n - 1) / (3 * n):.2f} (with {VQA_ANSWERS} answers: 1.00 and 0.30)")
    lines.append("  for the official scores give each question its ten answers; one answer is scored by exact match")
    return lines


def check_task(records, task, path) -> str | None:
    """Why the conversation records of `path` cannot be trained or scored as `task`, or None: records without a
    "task" key (hand-written ones, which would otherwise be taken for captions), or records of another task."""
    missing = [str(record.get("id")) for record in records if "task" not in record]
    if missing:
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        return (f"{path}: {len(missing)} of its {len(records)} records have no \"task\" key ({', '.join(missing[:5])}"
                f"{more}), so what they train is unknown: run csv2json.py again (it writes the key in every record), "
                f"or add \"task\": \"{task}\" to each record")
    written_for = sorted({str(record["task"]) for record in records})
    if written_for != [task]:
        return (f"{path} holds {', '.join(written_for)} conversations, not --task {task}: pass the --task it was "
                "written for, or another --data_dir.")
    return None


def split_by_image(items, val_size, seed) -> tuple[list, list]:
    """Split CSV rows or conversation records into (train, val) so that no image is on both sides.

    val_size < 1 is the fraction of images held out, rounded, and at least one image when there are two or more;
    val_size >= 1 is a whole number of images. All records of one image (COCO's five captions) go to the same side,
    and so do images joined by a record that holds several of them (they count as one image). The split depends only
    on the seed and the set of images, not on the order of the records; each side keeps the records' order.
    Raises ValueError when val_size would leave no image to train on.
    """
    images = [_images_of(item) for item in items]
    groups = _group_sharing_images(images)
    n_val = _validation_count(val_size, len(groups))
    # Sorted before shuffling so that reordering the rows of data.csv does not change the split.
    groups.sort(key=lambda group: sorted(image for index in group for image in images[index]))
    random.Random(seed).shuffle(groups)
    in_val = {index for group in groups[:n_val] for index in group}
    train = [item for index, item in enumerate(items) if index not in in_val]
    val = [item for index, item in enumerate(items) if index in in_val]
    return train, val


def split_rows(rows, val_size, seed) -> tuple[dict[str, list], list[str], list[tuple[dict, str]]]:
    """Where checked CSV rows go, as csv2json.py writes them: ({"train": rows, "val": rows[, "test": rows]}, the lines
    that say how, the rows left out with the reason).

    Rows that name no split (the `split` column empty or absent) count as train, unless no row names one. Then:
    - one split, or none: split_by_image splits the rows at random (seeded, by image, `val_size` held out);
    - two or three: as published. The first of train, val, test that the rows have goes to "train", the next to
      "val" (what test.py scores), a third to "test": train and test make train.json and val.json, val and test too.
    An image in two splits would be trained on and scored: its rows stay in the later split (train, val, test) only,
    and its rows in the others are left out.
    """
    given = [row.get(SPLIT_COLUMN, "") for row in rows]
    if not any(given):
        train, val = split_by_image(rows, val_size, seed)
        return {"train": train, "val": val}, [f"split: random, seeded (--split_seed {seed}), by image"], []
    unnamed = [f"  {given.count('')} rows name no split: they count as train"] if "" in given else []
    named = [split or "train" for split in given]
    paths = [os.path.normpath(row["image_path"]) for row in rows]
    last = {}
    for path, split in zip(paths, named):
        last[path] = max(last.get(path, split), split, key=SPLITS.index)
    kept, left_out = {split: [] for split in SPLITS}, []
    for row, path, split in zip(rows, paths, named):
        if last[path] == split:
            kept[split].append(row)
        else:
            left_out.append((row, f"its image is in the {last[path]} split too: kept there, left out of {split}"))
    present = [split for split in SPLITS if kept[split]]
    counts = ", ".join(f"{split} {len(kept[split])}" for split in present)
    if len(present) == 1:
        train, val = split_by_image(kept[present[0]], val_size, seed)
        return {"train": train, "val": val}, [f"split: random, seeded (--split_seed {seed}), by image, as data.csv "
                                              f"names one split only ({counts})", *unnamed], left_out
    sides = dict(zip(SPLITS, (kept[split] for split in present)))
    lines = [f"split: as published ({counts})", *unnamed]
    moved = [f"{side}.json holds the {split} split" for side, split in zip(SPLITS, present) if side != split]
    if moved:
        missing = [split for split in SPLITS[:len(present)] if split not in present]
        lines.append(f"  {', '.join(moved)}: data.csv has no {' and no '.join(missing)} split")
    if "test" in sides:
        lines.append("  test.json holds the test split, which test.py does not score (it scores val.json)")
    return sides, lines, left_out


def _images_of(item) -> list[str]:
    """The image paths of a CSV row or of a conversation record, as written there."""
    if "conversations" in item:
        return [os.path.normpath(text) for turn in item["conversations"]
                for kind, text in _segments(turn["value"]) if kind == "image"]
    return [os.path.normpath(item["image_path"])]


def _group_sharing_images(images) -> list[list[int]]:
    """Indices of the records, grouped so that records sharing an image, even through others, share a group."""
    parent = list(range(len(images)))  # union-find: each record points towards its group's first record

    def root(index):
        while parent[index] != index:
            index = parent[index]
        return index

    first_with = {}
    for index, paths in enumerate(images):
        for path in paths:
            parent[root(index)] = root(first_with.setdefault(path, index))
    groups = {}
    for index in range(len(images)):
        groups.setdefault(root(index), []).append(index)
    return list(groups.values())


def _validation_count(val_size, n_images) -> int:
    if val_size <= 0:
        raise ValueError(f"val_size must be a fraction (0 < x < 1) or a count of images (>= 1), got {val_size}")
    if val_size < 1:
        n_val = round(val_size * n_images)
        if n_images >= 2:
            n_val = max(1, n_val)
    elif val_size != int(val_size):
        raise ValueError(f"val_size {val_size} is a count of images (it is >= 1), so it must be a whole number")
    else:
        n_val = int(val_size)
    if n_val > 0 and n_val >= n_images:
        raise ValueError(f"val_size {val_size} holds out {n_val} of the {n_images} images, leaving none to train on")
    return n_val


def to_messages(conversation, base_dir) -> list[dict]:
    """The chat-template messages of a conversation record, its relative image paths resolved against base_dir.

    Text and images keep their order within a turn; blank text between them is dropped. Raises ValueError, naming
    the record's id, when the record is malformed: no conversations, an unknown role, unbalanced vision markers, an
    empty turn, an image outside a user turn, or turns out of order.
    """
    record = f"record {conversation.get('id')!r}"
    turns = conversation.get("conversations")
    if not isinstance(turns, list) or not turns:
        raise ValueError(f"{record}: no 'conversations' list, or an empty one")
    messages = []
    for number, turn in enumerate(turns, start=1):
        where = f"{record}, turn {number}"
        if not isinstance(turn, dict) or not isinstance(turn.get("value"), str):
            raise ValueError(f"{where}: expected an object with 'from' and a string 'value', got {turn!r}")
        role = ROLES.get(turn.get("from"))
        if role is None:
            raise ValueError(f"{where}: unknown role {turn.get('from')!r} (expected one of {', '.join(ROLES)})")
        try:
            segments = _segments(turn["value"])
        except ValueError as error:
            raise ValueError(f"{where}: {error}") from None
        content = []
        for kind, text in segments:
            if kind == "image":
                content.append({"type": "image", "image": os.path.abspath(os.path.join(base_dir, text))})
            elif text.strip():
                content.append({"type": "text", "text": text})
        if not content:
            raise ValueError(f"{where}: empty {role} turn")
        if role != "user" and any(part["type"] == "image" for part in content):
            raise ValueError(f"{where}: an image in a turn of the {role}; images belong in user turns")
        messages.append({"role": role, "content": content})
    roles = [message["role"] for message in messages]
    body = roles[1:] if roles[0] == "system" else roles
    if not body or body != ["user", "assistant"] * (len(body) // 2):
        raise ValueError(f"{record}: turns must alternate user, assistant (after an optional system turn) and end "
                         f"with the assistant's; found {', '.join(roles)}")
    return messages


def _segments(value) -> list[tuple[str, str]]:
    """The ("text", text) and ("image", path) pieces of a turn's value, in order."""
    segments = []
    rest = value
    while VISION_START in rest:
        before, rest = rest.split(VISION_START, 1)
        if VISION_END in before:
            raise ValueError(f"unbalanced vision markers: {VISION_END} without a {VISION_START} before it")
        if VISION_END not in rest:
            raise ValueError(f"unbalanced vision markers: {VISION_START} without a {VISION_END} after it")
        path, rest = rest.split(VISION_END, 1)
        if VISION_START in path:
            raise ValueError(f"unbalanced vision markers: {VISION_START} twice before a {VISION_END}")
        if not path.strip():
            raise ValueError("no image path between the vision markers")
        segments += [("text", before), ("image", path.strip())]
    if VISION_END in rest:
        raise ValueError(f"unbalanced vision markers: {VISION_END} without a {VISION_START} before it")
    segments.append(("text", rest))
    return segments


def write_atomically(path, text: str):
    """Write through a temporary file and os.replace, so an interrupted run never leaves half a file behind; a
    failed write (a full disk, Ctrl-C) removes the temporary file and leaves `path` as it was."""
    os.replace(_write_temporary(path, text), path)


def _write_temporary(path, text: str) -> str:
    """`text` written to `<path>.tmp`, whose name is returned; nothing of it is left when the write fails."""
    temporary = f"{path}.tmp"
    try:
        with open(temporary, "w", encoding="utf-8", newline="") as f:
            f.write(text)
    except BaseException:
        _remove(temporary)
        raise
    return temporary


def _remove(path):
    if os.path.lexists(path):  # lexists: a dangling symlink is removed too
        os.remove(path)


# Present in a folder while write_file_set renames a set of files into it: the files may be of two runs until then.
INCOMPLETE_MARKER = "conversations.incomplete"


def write_file_set(folder, texts: dict):
    """Write several files of `folder` as one set (csv2json.py's train.json, val.json, test.json), so that a reader
    never takes files of two runs for one: name -> text, or None to remove that file.

    os.replace makes one file atomic, never several. So every temporary is written first (a failure there leaves the
    old set whole and no temporary behind); then INCOMPLETE_MARKER is created, the files renamed or removed, and the
    marker removed. A run killed in between leaves the marker: load_conversations refuses the folder until csv2json.py
    writes the set again."""
    temporaries = {}
    try:
        for name, text in texts.items():
            if text is not None:
                temporaries[name] = _write_temporary(os.path.join(folder, name), text)
    except BaseException:
        for temporary in temporaries.values():
            _remove(temporary)
        raise
    marker = os.path.join(folder, INCOMPLETE_MARKER)
    try:
        with open(marker, "w", encoding="utf-8") as f:
            f.write(f"csv2json.py was writing {', '.join(texts)} here and did not finish: run it again.\n")
        for name, text in texts.items():
            path = os.path.join(folder, name)
            if text is None:
                _remove(path)
            else:
                os.replace(temporaries[name], path)
                del temporaries[name]
    except BaseException:
        for temporary in temporaries.values():  # the marker stays: the set is mixed now
            _remove(temporary)
        raise
    os.remove(marker)


def write_reasons(path, entries):
    """Write (id, reason) pairs to a CSV with the header id,reason (atomically): csv2json.py's rejected.csv, and
    data2csv.py's skipped.csv, which list every row or record left out beyond the few shown on screen."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["id", "reason"])
    writer.writerows(entries)
    write_atomically(path, buffer.getvalue())


def write_csv(path, rows, task):
    """Write data.csv (atomically): the task's columns, then those of OPTIONAL_COLUMNS that any row holds."""
    rows = list(rows)
    optional = [name for name in OPTIONAL_COLUMNS if any(name in row for row in rows)]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=[*CSV_COLUMNS[task], *optional])
    writer.writeheader()
    writer.writerows(rows)
    write_atomically(path, buffer.getvalue())


def save_image(record, out) -> str:
    """Write the record's image once under images/<image_id>.<ext>, atomically; return its path relative to `out`.
    A rendered image is written as PNG, a decoded JPEG as JPEG, a file copied as it is."""
    image = record["image"]
    if isinstance(image, str):
        extension = os.path.splitext(image)[1].lower()
    else:
        extension = ".jpg" if image.format == "JPEG" else ".png"  # a rendered image has no format: keep it lossless
    relative = f"images/{record['image_id']}{extension}"
    path = os.path.join(out, relative)
    if not os.path.isfile(path):  # else written for another caption of this image, or by an interrupted run
        temporary = path + ".tmp"
        try:
            if isinstance(image, str):
                shutil.copyfile(image, temporary)
            elif extension == ".jpg":
                image.save(temporary, format="JPEG", quality=95)
            else:
                image.save(temporary, format="PNG")
        except BaseException:  # a full disk, a broken source file, Ctrl-C: no half image left behind
            _remove(temporary)
            raise
        os.replace(temporary, path)
    return relative


def load_conversations(json_path) -> list[dict]:
    """The records of a conversation JSON file, each checked by to_messages and for its images on disk.

    Relative image paths are read against the file's folder. Errors name the file and the record, and say to run
    csv2json.py again where that is the fix: the file is missing, empty, half of an unfinished csv2json.py run
    (INCOMPLETE_MARKER), or its images changed on disk since csv2json.py checked them.
    """
    again = "run `python csv2json.py` again (with the --task and --data_dir it was written with)"
    folder = os.path.dirname(os.path.abspath(json_path))
    if os.path.exists(os.path.join(folder, INCOMPLETE_MARKER)):
        raise ValueError(f"{json_path}: csv2json.py did not finish writing {folder} ({INCOMPLETE_MARKER} is there), "
                         f"so its train.json and val.json may be of two different runs: {again}")
    if not os.path.isfile(json_path):
        raise FileNotFoundError(f"{json_path} not found: {again}")
    with open(json_path, encoding="utf-8") as f:
        try:
            records = json.load(f)
        except json.JSONDecodeError as error:
            raise ValueError(f"{json_path}: not valid JSON ({error}): {again}, or fix the file") from None
        except UnicodeDecodeError:
            raise not_utf8_error(json_path) from None
    if not isinstance(records, list):
        raise ValueError(f"{json_path}: expected a list of conversation records, found a {type(records).__name__}")
    if not records:
        raise ValueError(f"{json_path} holds no conversation records: {again}. (csv2json.py leaves val.json empty "
                         f"when data.csv has too few images to hold one out: give it more, or --val_size 1.)")
    missing = []
    for number, record in enumerate(records, start=1):
        if not isinstance(record, dict):
            raise ValueError(f"{json_path}: record number {number} is a {type(record).__name__}, not an object")
        try:
            messages = to_messages(record, folder)
        except ValueError as error:
            raise ValueError(f"{json_path}: {error}") from None
        missing += [(record.get("id"), part["image"]) for message in messages for part in message["content"]
                    if part["type"] == "image" and not os.path.isfile(part["image"])]
    if missing:
        (record_id, image), more = missing[0], len(missing) - 1
        others = f" (and {more} more image{'s' if more > 1 else ''} of its records)" if more else ""
        raise FileNotFoundError(f"{json_path}: record {record_id!r}: image not found: {image}{others}. The images "
                                f"changed since csv2json.py checked them: {again}; it lists the rows it rejects.")
    return records
