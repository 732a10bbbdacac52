"""Step 1: a dataset -> images/ and data.csv, in input/<source> unless --data_dir names another folder.

    python data2csv.py                                          # the synthetic world, offline (the default)
    python data2csv.py --source modelscope --num_samples 500    # the tutorial's COCO 2014 captions
    python data2csv.py --source coco --coco_annotations annotations/captions_train2017.json --coco_images train2017
    python data2csv.py --source huggingface --dataset_id USER/DATASET --caption_column captions

data.csv has the header `id,image_path,caption`; image_path is relative to the CSV's folder (images/syn-0-000001.png).
One image file serves every caption of that image (COCO has five). A rendered image is written as PNG, a hub's JPEG
as JPEG, a COCO file copied as it is.

Re-running resumes: ids already in data.csv whose image exists are kept, not written again, and a larger
--num_samples adds only what is missing. Each image and data.csv is written under a temporary name and then renamed,
so an interrupted run leaves whole files only, and data.csv, rewritten every 100 records and on the way out, keeps
what was finished.
"""

import csv
import os
import shutil
from dataclasses import asdict

import yaml
from tqdm import tqdm

from config import DataConfig, parse
from vlmtune import formats, sources

SAVE_EVERY = 100  # records between two rewrites of data.csv
# What the records are made from: one data_dir holds the records of one such setting, so that an id means one thing.
SOURCE_FIELDS = ("source", "dataset_id", "dataset_subset", "dataset_split", "image_column", "caption_column",
                 "coco_annotations", "synthetic_seed", "synthetic_image_size")


def check_inputs(cfg: DataConfig):
    if cfg.num_samples < 0 or (cfg.source == "synthetic" and cfg.num_samples == 0):
        raise SystemExit(f"--num_samples must be a count (0 means all, which the endless synthetic world does not "
                         f"have), got {cfg.num_samples}")
    if cfg.source == "huggingface" and not cfg.dataset_id:
        raise SystemExit("--source huggingface needs --dataset_id, the dataset's name on the hub (user/name)")
    if cfg.source == "coco":
        if not os.path.isfile(cfg.coco_annotations):
            raise SystemExit(f"--coco_annotations {cfg.coco_annotations!r} is not a file: give the path of an official "
                             "captions_*.json (annotations_trainval2017.zip from https://cocodataset.org/#download)")
        if not os.path.isdir(cfg.coco_images):
            raise SystemExit(f"--coco_images {cfg.coco_images!r} is not a folder: give the folder of its images "
                             "(train2017/ for captions_train2017.json)")


def check_same_source(cfg: DataConfig, out: str, holds_records: bool):
    """Refuse to add records to those of other settings in `out`; then save this run's settings there (data2csv.yaml)."""
    settings = asdict(cfg)
    settings["dataset_id"] = cfg.resolved_dataset_id
    settings["coco_annotations"] = cfg.coco_annotations and os.path.abspath(cfg.coco_annotations)
    path = os.path.join(out, "data2csv.yaml")
    if holds_records and os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            before = yaml.safe_load(f)
        changed = [f"--{name} {before.get(name)!r}" for name in SOURCE_FIELDS if before.get(name) != settings[name]]
        if changed:
            raise SystemExit(f"{out} holds records made with {', '.join(changed)}: give another --data_dir, "
                             f"or delete {out} to start again")
    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump(settings, f, sort_keys=False)


def read_records(cfg: DataConfig, skipped: list):
    if cfg.source == "synthetic":
        return sources.synthetic_captions(cfg.num_samples, cfg.synthetic_seed, cfg.synthetic_image_size)
    if cfg.source == "modelscope":
        # The tutorial's dataset is read with its subset unless the user names another dataset or subset.
        subset = cfg.dataset_subset or ("" if cfg.dataset_id else "coco_2014_caption")
        return sources.modelscope_captions(cfg.resolved_dataset_id, subset, cfg.dataset_split, cfg.num_samples)
    if cfg.source == "huggingface":
        return sources.huggingface_captions(cfg.dataset_id, cfg.dataset_split, cfg.dataset_subset, cfg.image_column,
                                            cfg.caption_column, cfg.num_samples)
    return sources.coco_captions(cfg.coco_annotations, cfg.coco_images, skipped, cfg.num_samples)


def save_image(record: dict, out: str) -> str:
    """Write the record's image once under images/<image_id>.<ext>, atomically; return its path relative to `out`."""
    image = record["image"]
    if isinstance(image, str):
        extension = os.path.splitext(image)[1].lower()
    else:
        extension = ".jpg" if image.format == "JPEG" else ".png"  # a rendered image has no format: keep it lossless
    relative = f"images/{record['image_id']}{extension}"
    path = os.path.join(out, relative)
    if not os.path.isfile(path):  # else written for another caption of this image, or by an interrupted run
        temporary = path + ".tmp"
        if isinstance(image, str):
            shutil.copyfile(image, temporary)
        elif extension == ".jpg":
            image.save(temporary, format="JPEG", quality=95)
        else:
            image.save(temporary, format="PNG")
        os.replace(temporary, path)
    return relative


def write_csv(path: str, rows):
    temporary = path + ".tmp"
    with open(temporary, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=formats.CSV_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(temporary, path)


def main(argv=None):
    # ---- Config
    try:
        (cfg,) = parse(argv, DataConfig)
    except ValueError as error:  # a bad value or an unknown flag; the message names it
        raise SystemExit(f"data2csv.py: {error}")
    check_inputs(cfg)
    out = cfg.resolved_data_dir
    os.makedirs(os.path.join(out, "images"), exist_ok=True)
    csv_path = os.path.join(out, "data.csv")
    earlier = formats.read_csv(csv_path) if os.path.isfile(csv_path) else []
    check_same_source(cfg, out, holds_records=bool(earlier))

    # ---- Data
    rows = {row["id"]: row for row in earlier if os.path.isfile(os.path.join(out, row["image_path"]))}
    dropped = len(earlier) - len(rows)
    written, present, skipped = 0, 0, []
    try:
        records = read_records(cfg, skipped)
        for record in tqdm(records, total=cfg.num_samples or None, desc=f"data2csv {cfg.source}", unit="record"):
            if record["id"] in rows:
                present += 1
                continue
            rows[record["id"]] = {"id": record["id"], "image_path": save_image(record, out),
                                  "caption": record["caption"]}
            written += 1
            if written % SAVE_EVERY == 0:
                write_csv(csv_path, rows.values())
    except ConnectionError as error:
        raise SystemExit(f"data2csv.py: {error}.\n`python data2csv.py --source synthetic` works offline.")
    finally:
        write_csv(csv_path, rows.values())

    # ---- Summary
    print(f"{csv_path}: {len(rows)} records. Written now: {written}, already present: {present}, "
          f"skipped: {len(skipped)}.")
    if dropped:
        print(f"  {dropped} earlier rows dropped: their image file was gone.")
    for record_id, reason in skipped[:5]:
        print(f"  skipped {record_id}: {reason}")
    if len(skipped) > 5:
        print(f"  ... and {len(skipped) - 5} more skipped.")


if __name__ == "__main__":
    main()
