"""Step 1: a dataset -> images/ and data.csv, in input/<source> (captions), input/<source>-<task> (the other tasks)
or --data_dir.

    python data2csv.py                                  # captions of the synthetic world, offline (the default)
    python data2csv.py --task vqa                       # any --task of the synthetic world, offline
    python data2csv.py --source modelscope --num_samples 500    # the tutorial's COCO 2014 captions
    python data2csv.py --source coco --coco_annotations annotations/captions_train2017.json --coco_images train2017
    python data2csv.py --source huggingface --dataset_id USER/DATASET --caption_column captions
    python data2csv.py --task classification --source folder --folder_dir raw-img --label_map animals10
    python data2csv.py --task grounding --source coco --coco_annotations instances_val2017.json --coco_images val2017
    python data2csv.py --task grounding --source huggingface --dataset_id lmms-lab/RefCOCOg --dataset_split val
    python data2csv.py --task vqa --source vqa --vqa_questions q.json --vqa_annotations a.json --vqa_images train2014
    python data2csv.py --task vqa --source lxmert --lxmert_json minival.json --vqa_images val2014
    python data2csv.py --task vqa --source rows --rows_file okvqa.jsonl --dataset_images coco
    python data2csv.py --task vqa --source llava --llava_json llava_v1_5_mix665k.json --llava_images data
    python data2csv.py --source coco --coco_annotations captions_train2017.json,captions_val2017.json \
        --coco_images train2017,val2017                 # one file a split (README: each published layout)

data.csv has the header `id,image_path` and the columns of the task (vlmtune/formats.py shows each): caption;
label; expression,x1,y1,x2,y2,width,height; question,answers (and turns, for a LLaVA conversation, or answer_scores,
for soft scores). image_path is relative to the CSV's folder (images/syn-0-000001.png). One image file serves every
record of that image (COCO has five captions an image). A rendered image is written as PNG, a hub's JPEG as JPEG, a
file copied as it is. COCO instances give a record per object that its category's name picks out (the only one of
its category in the image); the summary counts the others.

A split the source publishes is kept in a last column, `split` (train, val or test), for csv2json.py: split folders
(train/<class>/, test_data/<class>/), one COCO or VQA file a split (captions_val2017.json is val), hub splits
(--dataset_split val,test), comma-separated, in one run. --num_samples counts the records of each split, and the
summary says how many it left out.

Re-running resumes: ids already in data.csv whose image exists are kept, not written again, and a larger
--num_samples adds only what is missing. Each image and data.csv is written under a temporary name and then renamed,
so an interrupted run leaves whole files only, and data.csv, rewritten every 100 records and on the way out, keeps
what was finished.

A record the reader cannot use (a missing image, a malformed entry of the file, an empty class folder ...) is skipped,
not written, and the records after it are read on: the summary counts them and shows the first few, and
<data_dir>/skipped.csv lists them all, id and reason (a record without an id as "record N of <file>").
"""

import itertools
import os
from dataclasses import asdict, replace

import yaml
from tqdm import tqdm

from config import DataConfig, parse
from vlmtune import formats, saving, sources, splits

SAVE_EVERY = 100  # records between two rewrites of data.csv
# What the records are made from: one data_dir holds the records of one such setting, so that an id means one thing.
SOURCE_FIELDS = ("task", "source", "dataset_id", "dataset_subset", "dataset_split", "image_column", "caption_column",
                 "expression_column", "bbox_column", "bbox_format", "coco_annotations", "folder_dir", "label_map",
                 "vqa_questions", "vqa_annotations", "lxmert_json", "rows_file", "question_column", "answers_column",
                 "llava_json", "synthetic_seed", "synthetic_image_size")
FILE_FIELDS = ("coco_annotations", "folder_dir", "vqa_questions", "vqa_annotations", "lxmert_json", "rows_file",
               "llava_json")  # saved absolute
INPUTS = {  # the files (False) and folders (True) that each source reads, and what to give
    "coco": [("coco_annotations", False, "an official captions_*.json (caption) or instances_*.json (grounding), "
                                         "from https://cocodataset.org/#download, or several, comma-separated"),
             ("coco_images", True, "the folder of its images (train2017/ for captions_train2017.json)")],
    "folder": [("folder_dir", True, "the folder holding one folder of images per class (Animals-10's raw-img/)")],
    "vqa": [("vqa_questions", False, "an official VQA v2 or OK-VQA questions file (OpenEnded_*_questions.json)"),
            ("vqa_annotations", False, "its annotations file (mscoco_train2014_annotations.json)"),
            ("vqa_images", True, "the folder of its COCO images (train2014/)")],
    "lxmert": [("lxmert_json", False, "an LXMERT-style VQA file (LXMERT's data/vqa/minival.json)"),
               ("vqa_images", True, "the folder of its COCO images (val2014/ for minival.json)")],
    "rows": [("rows_file", False, "a .json list or .jsonl lines of rows with a question, an image and answers")],
    "llava": [("llava_json", False, "a LLaVA conversation file (llava_v1_5_mix665k.json)"),
              ("llava_images", True, "the folder that its image paths are relative to")],
}


def check_inputs(cfg: DataConfig) -> list:
    """Stop, naming the flag, when the inputs cannot be read; else return the parts to read (splits.parts)."""
    if cfg.num_samples < 0 or (cfg.source == "synthetic" and cfg.num_samples == 0):
        raise SystemExit(f"--num_samples must be a count (0 means all, which the endless synthetic world does not "
                         f"have), got {cfg.num_samples}")
    if cfg.source == "huggingface" and not cfg.dataset_id:
        raise SystemExit("--source huggingface needs --dataset_id, the dataset's name on the hub (user/name)")
    for name, is_folder, what in INPUTS.get(cfg.source, []):
        for value in getattr(cfg, name).split(","):
            if not (os.path.isdir(value) if is_folder else os.path.isfile(value)):
                raise SystemExit(f"--{name} {value!r} is not a {'folder' if is_folder else 'file'}: give {what}")
    try:
        sources.read_label_map(cfg.label_map)
        return splits.parts(cfg.source, asdict(cfg))
    except ValueError as error:
        raise SystemExit(f"data2csv.py: {error}")


def check_same_source(cfg: DataConfig, out: str, holds_records: bool):
    """Refuse to add records to those of other settings in `out`; then save this run's settings there (data2csv.yaml)."""
    settings = asdict(cfg)
    settings["dataset_id"] = cfg.resolved_dataset_id
    settings.update({name: settings[name] and ",".join(map(os.path.abspath, settings[name].split(",")))
                     for name in FILE_FIELDS})
    path = os.path.join(out, "data2csv.yaml")
    if holds_records and os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            before = asdict(DataConfig()) | yaml.safe_load(f)  # a field added since that run had its default
        changed = [f"--{name} {before[name]!r}" for name in SOURCE_FIELDS if before[name] != settings[name]]
        if changed:
            raise SystemExit(f"{out} holds records made with {', '.join(changed)}: give another --data_dir, "
                             f"or delete {out} to start again")
    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump(settings, f, sort_keys=False)


def main(argv=None):
    # ---- Config
    (cfg,) = parse(argv, DataConfig)  # a bad value or an unknown flag stops there, named
    parts = check_inputs(cfg)
    out = cfg.resolved_data_dir
    os.makedirs(os.path.join(out, "images"), exist_ok=True)
    csv_path = os.path.join(out, "data.csv")
    try:
        earlier = formats.read_csv(csv_path, cfg.task) if os.path.isfile(csv_path) else []
    except formats.NotUtf8Error as error:
        raise SystemExit(f"data2csv.py: {error}")
    except ValueError as error:  # a CSV of another task
        raise SystemExit(f"data2csv.py: {error}: give another --data_dir, or delete {out} to start again")
    check_same_source(cfg, out, holds_records=bool(earlier))

    # ---- Data
    rows = {row["id"]: row for row in earlier if os.path.isfile(os.path.join(out, row["image_path"]))}
    dropped = len(earlier) - len(rows)
    written, present, skipped = 0, 0, []
    # Each part is read whole: --num_samples is applied by splits.Sample, a limit for each split, which counts what
    # the limit leaves out. The endless synthetic world is made to the count instead.
    samples = []
    for split, prefix, settings in parts:
        part = replace(cfg, **settings, num_samples=cfg.num_samples if cfg.source == "synthetic" else 0)
        samples.append(splits.Sample(splits.in_split(sources.read_records(part, skipped), split, prefix), cfg.num_samples,
                                     count_rest=cfg.source not in splits.HUBS))
    with saving.stop_on_write_error(out):  # a full disk: named, and no temporary left (formats cleans up)
        try:
            for record in tqdm(itertools.chain.from_iterable(samples), total=cfg.num_samples * len(parts) or None,
                               desc=f"data2csv {cfg.source} {cfg.task}", unit="record"):
                known = rows.get(record["id"])
                if known is None:
                    rows[record["id"]] = formats.record_to_row(record, formats.save_image(record, out), cfg.task)
                    written += 1
                    if written % SAVE_EVERY == 0:
                        formats.write_csv(csv_path, rows.values(), cfg.task)
                else:
                    present += splits.settle(known, record, skipped)
        except ConnectionError as error:
            raise SystemExit(f"data2csv.py: {error}.\n`python data2csv.py --source synthetic` works offline.")
        except ValueError as error:  # a file of another kind or layout; the message names it
            raise SystemExit(f"data2csv.py: {error}")
        finally:
            formats.write_csv(csv_path, rows.values(), cfg.task)

    # ---- Summary
    print(f"{csv_path}: {len(rows)} records. Written now: {written}, already present: {present}, "
          f"skipped: {len(skipped)}.")
    if dropped:
        print(f"  {dropped} earlier rows dropped: their image file was gone.")
    notes = (splits.counts(rows.values()), *(sample.notes() for sample in samples), sources.notes(skipped))
    for line in itertools.chain(*notes):
        print(f"  {line}")
    for record_id, reason in skipped[:5]:
        print(f"  skipped {record_id}: {reason}")
    if len(skipped) > 5:
        print(f"  ... and {len(skipped) - 5} more skipped.")
    skipped_path = os.path.join(out, "skipped.csv")
    if skipped or os.path.isfile(skipped_path):
        formats.write_reasons(skipped_path, skipped)  # an earlier run's list is replaced, by an empty one if need be
    if skipped:
        print(f"  all {len(skipped)} skipped listed with their reasons in {skipped_path}")



if __name__ == "__main__":
    main()
