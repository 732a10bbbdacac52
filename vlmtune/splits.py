"""The split a dataset publishes its records in (train, val, test), as data2csv.py reads it, and how many it takes.

A source names the split by a name: a split folder above the class folders (train/, val/, test_data/, Validation/),
an annotation file (captions_val2017.json, mscoco_train2014_annotations.json), a hub split (validation). data2csv.py
writes it in data.csv's `split` column, and csv2json.py keeps it (formats.split_rows).

    split_of_folder("test_data") == "test"      split_of_folder("cane") == ""     split_of_folder("train_station") == ""
    split_of_name("captions_val2017.json") == "val"      split_of_name("validation") == "val"
"""

import re
from collections import Counter

from .formats import SPLIT_COLUMN, SPLITS

# The words that name a split, lower case.
SPLIT_WORDS = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val", "dev": "val",
               "eval": "val", "evaluation": "val", "test": "test", "testing": "test"}
# The words a split folder's name may hold beside its split's: train_data/, val_set/, test_images/.
FOLDER_WORDS = {"data", "set", "images", "imgs", "split"}


def _words(name: str) -> list[str]:
    """The words of a name, lower case and without their trailing digits (val2017 -> val)."""
    words = (word.rstrip("0123456789") for word in re.split(r"[^a-z0-9]+", name.lower()))
    return [word for word in words if word]


def split_of_folder(name: str) -> str:
    """The split a folder's name names, or "": the name holds one split word and nothing but FOLDER_WORDS beside it,
    so that a class folder such as train_station/ is not taken for a split."""
    words = _words(name)
    named = [SPLIT_WORDS[word] for word in words if word in SPLIT_WORDS]
    others = [word for word in words if word not in SPLIT_WORDS and word not in FOLDER_WORDS]
    return named[0] if len(named) == 1 and not others else ""


def split_of_name(name: str) -> str:
    """The split a file's name (its folders aside) or a hub split's name names, or "" when it names none, or
    several (test-dev2015, train+validation). A hub's slice ("train[:10%]") is the split it slices."""
    stem = re.sub(r"\[.*\]$", "", name.replace("\\", "/").rsplit("/", 1)[-1])
    named = {SPLIT_WORDS[word] for word in _words(stem) if word in SPLIT_WORDS}
    return named.pop() if len(named) == 1 else ""


def in_split(records, split: str, prefix: str = ""):
    """The records of one part of a source, each holding "split": `split`, unless its reader named one (a split
    folder). With a `prefix`, the name of one of several hub splits, whose ids are row numbers there, the id becomes
    "<prefix>/<id>" and the image id "<prefix>-<image id>", so that the splits' records and images stay apart."""
    for record in records:
        if prefix:
            record = {**record, "id": f"{prefix}/{record['id']}", "image_id": f"{prefix}-{record['image_id']}"}
        yield {"split": split, **record}


class Sample:
    """At most `limit` records of each split of `records` (0: all of them), counting what the limit leaves out.

    When a split has its `limit`, the records of that split left are counted when `count_rest` (local files: one pass
    that writes nothing), or else the reading stops at the first one left, which tells that more exist (a hub split:
    counting would read all of it). `taken` holds the records yielded of each split ("": none given), `left` those
    left out: a count, or None for "some, not counted".
    """

    def __init__(self, records, limit: int, count_rest: bool):
        self.records, self.limit, self.count_rest = records, limit, count_rest
        self.taken, self.left = {}, {}

    def __iter__(self):
        for record in self.records:
            split = record.get("split", "")
            if not self.limit or self.taken.get(split, 0) < self.limit:
                self.taken[split] = self.taken.get(split, 0) + 1
                yield record
            elif self.count_rest:
                self.left[split] = self.left.get(split, 0) + 1
            else:
                self.left[split] = None
                return

    def notes(self) -> list[str]:
        """A line for each split that the limit cut short, saying what was left and how to take it."""
        lines = []
        for split, left in self.left.items():
            taken, what = self.taken[split], f"{split} records" if split else "records"
            if left is None:
                lines.append(f"only the first {taken} {what} were taken (--num_samples {self.limit}); the hub has "
                             "more, not counted, as that would read them all. --num_samples 0 takes all.")
            else:
                lines.append(f"only {taken} of the {taken + left} usable {what} were taken (--num_samples "
                             f"{self.limit}). --num_samples 0 takes all.")
        return lines


# The settings of a source that may list several files or hub splits, comma-separated, in the same order: one part of
# the records each, whose split the first one's name says. A folder of images given once serves every file.
PART_SETTINGS = {"coco": ("coco_annotations", "coco_images"),
                 "vqa": ("vqa_annotations", "vqa_questions", "vqa_images"),
                 "huggingface": ("dataset_split",), "modelscope": ("dataset_split",)}
HUBS = ("huggingface", "modelscope")


def parts(source: str, settings: dict) -> list[tuple[str, str, dict]]:
    """(split, id prefix, settings) of each part of the records that data2csv.py reads: a file (with its images) or a
    hub split each, as PART_SETTINGS list them; one part, the settings as they are, for the other sources. With several
    hub splits, each part's prefix is its split's name (in_split). ValueError, naming the setting, when the lists
    differ in length, when a name is listed twice, or when one of several says no split, which would leave its
    records unknown from the others'.

        parts("coco", {"coco_annotations": "captions_train2017.json,captions_val2017.json", "coco_images": "images"})
        == [("train", "", {"coco_annotations": "captions_train2017.json", "coco_images": "images"}),
            ("val", "", {"coco_annotations": "captions_val2017.json", "coco_images": "images"})]
    """
    names = PART_SETTINGS.get(source)
    if names is None:
        return [("", "", {})]
    lists = {name: settings[name].split(",") for name in names}
    first = lists[names[0]]
    for name, items in lists.items():
        if len(items) != len(first) and not (name.endswith("_images") and len(items) == 1):
            raise ValueError(f"--{names[0]} lists {len(first)}, --{name} {len(items)}: give one for each"
                             + (" (or one folder for all)" if name.endswith("_images") else ""))
    if len(set(first)) < len(first):
        raise ValueError(f"--{names[0]} {settings[names[0]]}: a part is listed twice")
    result = []
    for k, value in enumerate(first):
        part = {name: items[k] if len(items) > 1 else items[0] for name, items in lists.items()}
        split = split_of_name(value)
        if source == "vqa":  # the questions file names its split too
            questions = split_of_name(part["vqa_questions"])
            if split and questions and questions != split:
                raise ValueError(f"--vqa_questions {part['vqa_questions']!r} is of the {questions} split, but its "
                                 f"--vqa_annotations {value!r} of the {split} split")
            split = split or questions
        if len(first) > 1 and not split:
            raise ValueError(f"--{names[0]} {value!r}: its name says no split (train, val or test, as in "
                             "captions_val2017.json), so its records could not be told from the other parts'")
        result.append((split, value if source in HUBS and len(first) > 1 else "", part))
    return result


def settle(known: dict, record: dict, skipped: list) -> bool:
    """A record whose id data.csv holds already (`known`, its row): True when it is that row again. One annotation
    in the files of two splits (COCO 2014 and 2017 share them) is kept in the later split only, so that its image is
    not both trained on and scored, and named in `skipped`. A row of a data.csv written before splits were kept gets
    the record's split."""
    if record["split"] and known.get(SPLIT_COLUMN) not in (None, "", record["split"]):
        both = sorted((known[SPLIT_COLUMN], record["split"]), key=SPLITS.index)
        known[SPLIT_COLUMN] = both[1]
        skipped.append((record["id"], f"in the files of the {both[0]} and the {both[1]} split: kept in {both[1]} "
                                      f"only, so that its image is not trained on and scored"))
        return False
    if record["split"]:
        known[SPLIT_COLUMN] = record["split"]
    return True


def counts(rows) -> list[str]:
    """The summary line of data.csv's rows by split, where any split is given."""
    by_split = Counter(row.get(SPLIT_COLUMN, "") for row in rows)
    if not set(by_split) - {""}:
        return []
    return ["rows by split: " + ", ".join(f"{split or 'none given'} {by_split[split]}"
                                          for split in (*SPLITS, "") if by_split[split])]
