"""Step 2: turn data.csv into the conversation JSON the trainer reads, split into train and validation by image.

    python csv2json.py
    python csv2json.py --data_dir input/coco --val_size 4
    python csv2json.py --task grounding --source coco      # the --task and --source (or --data_dir) of data2csv.py
    python csv2json.py --config scripts/qwen2-vl-2b_coco.yaml

Reads <data_dir>/data.csv (written by data2csv.py for --task) and checks every row: an id that is not empty and not
repeated, an image that exists and decodes, and the task's labels: a caption or a label that is not empty, a box
inside the image (of the size the row says), a question with a JSON list of answers, and no control token of the
models' tokenizers in any text (<|im_end|>, <image>, ...: vlmtune/text.py). Each good row becomes one
conversation, the image first in the user's turn (vlmtune/formats.py shows each task's), in <data_dir>/train.json or
<data_dir>/val.json, all records of one image on the same side. --prompt is the caption task's instruction; the other
tasks ask a question of their own. Every rejected row is listed with its reason in <data_dir>/rejected.csv, and the
first few on screen: none is dropped silently; a progress bar on stderr counts the rows checked. --class_aliases
(classification) goes into every record, for test.py to read answers by.

The split is the one data.csv's `split` column gives (formats.split_rows), where it gives two or three: train to
train.json, val to val.json (what test.py scores), test to test.json (with no val split, test is the validation);
rows that name no split count as train, and an image in two splits stays in the later one only. Where it gives one
split, or none, --val_size images are held out at random, seeded by --split_seed. The summary says which it did.
"""

import json
import os
import sys

from tqdm import tqdm

from config import DataConfig, parse
from vlmtune.formats import (NotUtf8Error, answer_count_notes, check_row, read_csv, rows_to_conversations, split_rows,
                             write_file_set, write_reasons)
from vlmtune.images import notes as image_notes
from vlmtune.saving import stop_on_write_error
from vlmtune.sources import read_class_aliases
from vlmtune.text import control_tokens

SHOWN_REJECTIONS = 10  # printed on screen; rejected.csv holds them all


def main(argv=None):
    # ------------------------------------------------------------------ Config
    (data,) = parse(argv, DataConfig)
    data_dir = data.resolved_data_dir
    csv_path = os.path.join(data_dir, "data.csv")
    rejected_path = os.path.join(data_dir, "rejected.csv")
    if not os.path.isfile(csv_path):
        sys.exit(f"{csv_path} not found: run `python data2csv.py` first (with the same --task and --source, "
                 "or --data_dir)")
    try:
        aliases = read_class_aliases(data.class_aliases)
    except ValueError as error:
        sys.exit(f"csv2json.py: {error}")
    if found := control_tokens(data.prompt):  # the caption prompt goes into every record's user turn
        sys.exit(f"csv2json.py: --prompt holds {', '.join(found)}, which the model would read as a control token, not "
                 "as text: remove or respell it")

    # ------------------------------------------------------------------ Check
    try:
        rows = read_csv(csv_path, data.task)
    except NotUtf8Error as error:  # not a matter of --task
        sys.exit(f"csv2json.py: {error}")
    except ValueError as error:
        sys.exit(f"{error}: give the --task that data2csv.py wrote it for")
    good, rejected = [], []
    first_row_of = {}  # id -> number of the data row that first used it (1 = the row after the header)
    # Each row's image is opened and decoded (full COCO train: over an hour), so the rows checked show as a bar.
    images_checked = {}  # each image decoded once, however many rows use it
    checking = tqdm(rows, desc=f"csv2json {data.task}: checking rows", unit="row")
    for number, row in enumerate(checking, start=1):
        reason = check_row(row, data_dir, data.task, images_checked)
        if row["id"] in first_row_of:
            reason = f"duplicate id (first used on data row {first_row_of[row['id']]})"
        elif row["id"]:
            first_row_of[row["id"]] = number
        else:
            reason = f"{reason} (data row {number})"  # no id to find the row by
        if reason is None:
            good.append(row)
        else:
            rejected.append({"id": row["id"], "reason": reason})

    # ------------------------------------------------------------------ Split (before rejected.csv: it may reject)
    sides, how = {}, []
    if good:
        try:
            sides, how, left_out = split_rows(good, data.val_size, data.split_seed)
        except ValueError as error:  # a --val_size that would leave no image to train on
            sys.exit(f"csv2json.py: {error}")
        rejected += [{"id": row["id"], "reason": reason} for row, reason in left_out]  # an image in two splits

    with stop_on_write_error(data_dir):
        write_reasons(rejected_path, [(entry["id"], entry["reason"]) for entry in rejected])

    listed = f" (all listed in {rejected_path})" if rejected else ""
    print(f"{csv_path}: rows read: {len(rows)}, rows rejected: {len(rejected)}{listed}")
    for entry in rejected[:SHOWN_REJECTIONS]:
        print(f"  {entry['id']}: {entry['reason']}")
    if len(rejected) > SHOWN_REJECTIONS:
        print(f"  ... and {len(rejected) - SHOWN_REJECTIONS} more")
    for line in answer_count_notes(good) if data.task == "vqa" else []:  # answers other than VQA's ten
        print(line)
    for note in image_notes(sorted({os.path.join(data_dir, row["image_path"]) for row in good})):  # several frames
        print(note)
    if not good:
        sys.exit(f"every row of {csv_path} was rejected, so nothing was written; see {rejected_path}")

    # ------------------------------------------------------------------ Save
    print("\n".join(how))
    # The JSON files sit beside data.csv, so its image paths (relative to that folder, or absolute) stay valid.
    try:
        conversations = rows_to_conversations(good, data.task, data.prompt, aliases)
    except ValueError as error:  # an alias of a class that no row has
        sys.exit(f"csv2json.py: {error}")
    conversation_of = dict(zip((row["id"] for row in good), conversations))
    # train.json, val.json and test.json are one set: written together (formats.write_file_set), so that a run killed
    # halfway never leaves a train.json of this split beside a val.json of the last one, which would train on images
    # that are then scored. No test split now: a test.json of an earlier run is removed with the set.
    texts, lines = {}, []
    for name in ("train", "val", "test"):
        path = os.path.join(data_dir, f"{name}.json")
        if name not in sides:
            texts[f"{name}.json"] = None
            if os.path.isfile(path):
                lines.append(f"removed {path}, an earlier run's: data.csv has no test split now")
            continue
        records = [conversation_of[row["id"]] for row in sides[name]]
        texts[f"{name}.json"] = json.dumps(records, ensure_ascii=False, indent=2) + "\n"
        n_images = len({row["image_path"] for row in sides[name]})
        lines.append(f"wrote {path} (conversations: {len(records)}, images: {n_images})")
    with stop_on_write_error(data_dir):
        write_file_set(data_dir, texts)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
