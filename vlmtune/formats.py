"""The three shapes a sample takes between data2csv.py and the trainer, and the checks between them.

1. A row of `data.csv` (data2csv.py writes it). The image path is relative to the CSV's folder, or absolute; several
   rows may share one image, as COCO's five captions per image do:

       id,image_path,caption
       syn-0-000001,images/syn-0-000001.png,A large red circle at the top left.

2. A conversation record, the JSON of the popular Qwen2-VL tutorials (csv2json.py writes a list of them to train.json
   and val.json). Image paths sit between vision markers, relative to the JSON file's folder, or absolute. After an
   optional system turn, user and assistant turns alternate, and the last one is the assistant's ("human" and "gpt",
   the LLaVA spellings, are read as user and assistant):

       {"id": "syn-0-000001",
        "conversations": [
          {"from": "user", "value": "<|vision_start|>images/syn-0-000001.png<|vision_end|>Describe this image."},
          {"from": "assistant", "value": "A large red circle at the top left."}]}

3. Chat-template messages, what the processor's `apply_chat_template` takes (to_messages builds them from a record;
   image paths are absolute):

       [{"role": "user", "content": [{"type": "image", "image": "/data/images/syn-0-000001.png"},
                                     {"type": "text", "text": "Describe this image."}]},
        {"role": "assistant", "content": [{"type": "text", "text": "A large red circle at the top left."}]}]

Nothing here imports torch or the rest of vlmtune; images are checked with PIL.
"""

import csv
import json
import os
import random

from PIL import Image

CSV_COLUMNS = ("id", "image_path", "caption")
VISION_START = "<|vision_start|>"
VISION_END = "<|vision_end|>"
ROLES = {"user": "user", "human": "user", "assistant": "assistant", "gpt": "assistant", "system": "system"}


def read_csv(path) -> list[dict]:
    """The rows of a data.csv as dicts, every cell stripped of surrounding whitespace."""
    # utf-8-sig: a CSV saved by Excel starts with a byte-order mark, which would otherwise become part of "id".
    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f, restval="")
        header = reader.fieldnames or []
        for column in CSV_COLUMNS:
            if column not in header:
                found = ",".join(header) or "an empty file"
                raise ValueError(f"{path}: no {column!r} column (expected {','.join(CSV_COLUMNS)}, found {found})")
        rows = []
        for row in reader:
            if None in row:  # DictReader files the cells beyond the header under the key None
                raise ValueError(f"{path}, line {reader.line_num}: more cells than columns "
                                 "(a caption that holds a comma must be quoted)")
            rows.append({key: value.strip() for key, value in row.items()})
    return rows


def row_to_conversation(row, prompt, image_path_for_json) -> dict:
    """The conversation record of one CSV row: the image then `prompt` from the user, the caption from the assistant.

    `image_path_for_json` is the image's path as the JSON file must hold it: relative to that file's folder, or
    absolute.
    """
    return {
        "id": row["id"],
        "conversations": [
            {"from": "user", "value": f"{VISION_START}{image_path_for_json}{VISION_END}{prompt}"},
            {"from": "assistant", "value": row["caption"]},
        ],
    }


def check_row(row, csv_dir) -> str | None:
    """Why a CSV row cannot become a training sample, or None when it can. Finding duplicate ids is the caller's job."""
    if not row["id"].strip():
        return "empty id"
    if not row["caption"].strip():
        return "empty caption"
    if not row["image_path"].strip():
        return "empty image_path"
    path = os.path.join(csv_dir, row["image_path"])
    if not os.path.isfile(path):
        return f"image not found: {path}"
    # verify() walks the file's structure (for a PNG, every chunk and its checksum) without decoding pixels, and does
    # next to nothing for a JPEG; load() decodes every pixel, which is what catches a JPEG cut short. PIL raises many
    # types for a broken file (OSError, SyntaxError, struct.error, ...): any of them means training could not read it.
    try:
        with Image.open(path) as image:
            image.verify()
        with Image.open(path) as image:
            image.load()
    except Exception as error:
        return f"image does not decode: {path} ({type(error).__name__}: {error})"
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


def load_conversations(json_path) -> list[dict]:
    """The records of a conversation JSON file, each checked by to_messages and for its images on disk.

    Relative image paths are read against the file's folder. Errors name the file and the record.
    """
    with open(json_path, encoding="utf-8") as f:
        try:
            records = json.load(f)
        except json.JSONDecodeError as error:
            raise ValueError(f"{json_path}: not valid JSON ({error})") from None
    if not isinstance(records, list):
        raise ValueError(f"{json_path}: expected a list of conversation records, found a {type(records).__name__}")
    base_dir = os.path.dirname(os.path.abspath(json_path))
    for number, record in enumerate(records, start=1):
        if not isinstance(record, dict):
            raise ValueError(f"{json_path}: record number {number} is a {type(record).__name__}, not an object")
        try:
            messages = to_messages(record, base_dir)
        except ValueError as error:
            raise ValueError(f"{json_path}: {error}") from None
        for message in messages:
            for part in message["content"]:
                if part["type"] == "image" and not os.path.isfile(part["image"]):
                    raise FileNotFoundError(
                        f"{json_path}: record {record.get('id')!r}: image not found: {part['image']}")
    return records
