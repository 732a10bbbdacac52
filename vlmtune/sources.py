"""Dataset readers: each one yields the records of one task, the shape that data2csv.py writes to disk.

Every record holds

    "id": "125870_88366",          # unique within the source
    "image_id": "125870",          # which image: records of one image share it (COCO has five captions an image),
                                   # and records of two images never do; data2csv.py names the image file after it,
                                   # so it holds no "/" (an image known by its path: path_image_id)
    "image": "coco/train2017/000000125870.jpg",   # a path to an existing file, or a PIL.Image.Image

and what its task learns (vlmtune/formats.py turns each into a row of data.csv):

    caption         "caption": "An airport filled with large passenger jets parked next to each other."
    classification  "label": "dog"
    grounding       "expression": "person", "box": (120.46, 133.32, 332.77, 631.9), "width": 480, "height": 640
                    (x1, y1, x2, y2 in pixels of the image, whose width and height follow)
    vqa             "question": "What is this photo taken looking through?", "answers": ["net", "net", ...]
                    (and, from a LLaVA file, "turns": the whole conversation; from an LXMERT-style file,
                    "answer_scores": {"net": 1, ...}, each answer's soft score)

A record may name the split its source publishes it in, "split": "train" | "val" | "test" (folder_classification's
split folders); data2csv.py gives the others theirs, from the file's or the hub split's name (vlmtune/splits.py).

Every `limit` counts records, not images; 0 means all. Texts are stripped of surrounding whitespace (COCO's captions
often end with a space). A reader of local files is given a `skipped` list: a record it cannot use, malformed ones
included (a field missing or of the wrong type), is not yielded, and (id, reason) is appended there, for data2csv.py
to report; a record without an id is named "record N of <file>". The records after it are read on. ValueError, naming
the file, is kept for a file that is wholly of another kind: not JSON, not the top-level shape its format has, or no
record of it holding the fields of its format (a captions file given for grounding). The hub readers import their
hub inside the function, so the offline sources never need it, and turn a hub that cannot be reached into a
ConnectionError that names the hub and the dataset.
"""

import hashlib
import itertools
import json
import os
import posixpath
import re
from collections import Counter

from PIL import Image

from vlmtune import world
from vlmtune.boxes import check_box
from vlmtune.formats import SPLITS
from vlmtune.splits import split_of_folder, split_of_name

# coco_grounding's reason for an object whose category appears more than once in its image.
NOT_PICKED_OUT = "its category appears more than once in the image: the expression (the name) would not pick it out"


# folder_classification's reason for a class folder that holds no image: its class is absent from the records.
NO_IMAGE = "no image in this class folder"


def notes(skipped: list) -> list[str]:
    """Summary lines about what the readers left out (data2csv.py prints them): the objects COCO's category names do
    not pick out, and the classes that are absent as their folder holds no image."""
    lines = []
    not_picked_out = sum(reason == NOT_PICKED_OUT for _, reason in skipped)
    if not_picked_out:
        lines.append(f"left out {not_picked_out} objects whose category appears more than once in their image: the "
                     "expression would not pick them out; use RefCOCO/RefCOCOg expressions (--source huggingface "
                     "--dataset_id lmms-lab/RefCOCOg) for those")
    empty = [name for name, reason in skipped if reason.startswith(NO_IMAGE)]
    if empty:
        lines.append(f"{len(empty)} class folders hold no image, so their classes are absent from data.csv (and from "
                     f"the classification question): {', '.join(empty)}; put images in them, or remove them")
    return lines

# Animals-10 (https://www.kaggle.com/datasets/alessiocorrado99/animals10) names its class folders in Italian.
ANIMALS10_LABELS = {
    "cane": "dog", "cavallo": "horse", "elefante": "elephant", "farfalla": "butterfly", "gallina": "chicken",
    "gatto": "cat", "mucca": "cow", "pecora": "sheep", "ragno": "spider", "scoiattolo": "squirrel",
}


def read_records(cfg, skipped: list):
    """The records of the source a data2csv.py setting names (config.DataConfig: --source, --task and the source's
    own flags), its skips appended to `skipped`."""
    n = cfg.num_samples
    if cfg.source == "synthetic":
        make = {"caption": synthetic_captions, "classification": synthetic_classification,
                "grounding": synthetic_grounding, "vqa": synthetic_vqa}[cfg.task]
        return make(n, cfg.synthetic_seed, cfg.synthetic_image_size)
    if cfg.source == "modelscope":
        # The tutorial's dataset is read with its subset unless the user names another dataset or subset.
        subset = cfg.dataset_subset or ("" if cfg.dataset_id else "coco_2014_caption")
        return modelscope_captions(cfg.resolved_dataset_id, subset, cfg.dataset_split, n)
    if cfg.source == "huggingface" and cfg.task == "grounding":
        return huggingface_grounding(cfg.dataset_id, skipped, cfg.dataset_split, cfg.dataset_subset,
                                             cfg.image_column, cfg.expression_column, cfg.bbox_column,
                                             cfg.bbox_format, n, cfg.dataset_images)
    if cfg.source == "huggingface":
        return huggingface_captions(cfg.dataset_id, cfg.dataset_split, cfg.dataset_subset, cfg.image_column,
                                            cfg.caption_column, n, cfg.dataset_images)
    if cfg.source == "coco":
        read = coco_grounding if cfg.task == "grounding" else coco_captions
        return read(cfg.coco_annotations, cfg.coco_images, skipped, n)
    if cfg.source == "folder":
        return folder_classification(cfg.folder_dir, read_label_map(cfg.label_map), skipped, n)
    if cfg.source == "vqa":
        return vqa_questions(cfg.vqa_questions, cfg.vqa_annotations, cfg.vqa_images, skipped, n)
    if cfg.source == "lxmert":
        return lxmert_vqa(cfg.lxmert_json, cfg.vqa_images, skipped, n)
    if cfg.source == "rows":
        return rows_vqa(cfg.rows_file, cfg.dataset_images, skipped, cfg.image_column, cfg.question_column,
                                cfg.answers_column, n)
    return llava_conversations(cfg.llava_json, cfg.llava_images, skipped, n)


def synthetic_captions(n: int, seed: int = 0, image_size: int = 112):
    """n records of the synthetic world (offline, deterministic from `seed`), e.g.

    {"id": "syn-0-000000", "image_id": "syn-0-000000", "image": <PIL.Image 112x112 RGB>,
     "caption": "A small yellow square at the bottom right."}
    """
    for record in world.caption_records(n, seed, image_size):
        yield {"id": record["id"], "image_id": record["id"], "image": record["image"], "caption": record["caption"]}


def synthetic_classification(n: int, seed: int = 0, image_size: int = 112):
    """n classification records of the synthetic world (world.classification_records), e.g.

    {"id": "syn-0-000000", "image_id": "syn-0-000000", "image": <PIL.Image 112x112 RGB>, "label": "small square"}
    """
    for record in world.classification_records(n, seed, image_size):
        yield {"id": record["id"], "image_id": record["id"], "image": record["image"], "label": record["label"]}


def synthetic_grounding(n: int, seed: int = 0, image_size: int = 112):
    """n grounding records of the synthetic world (world.grounding_records), e.g.

    {"id": "syn-0-000000", "image_id": "syn-0-000000", "image": <PIL.Image 112x112 RGB>,
     "expression": "the yellow square", "box": (72, 72, 96, 96), "width": 112, "height": 112}
    """
    for record in world.grounding_records(n, seed, image_size):
        yield {"id": record["id"], "image_id": record["id"], "image": record["image"],
               "expression": record["expression"], "box": tuple(record["box"]), "width": record["width"],
               "height": record["height"]}


def synthetic_vqa(n: int, seed: int = 0, image_size: int = 112):
    """n question records of the synthetic world (world.vqa_records), e.g.

    {"id": "syn-0-000000", "image_id": "syn-0-000000", "image": <PIL.Image 112x112 RGB>,
     "question": "What colour is the shape?", "answers": ["yellow", "yellow", ... ten]}
    """
    for record in world.vqa_records(n, seed, image_size):
        yield {"id": record["id"], "image_id": record["id"], "image": record["image"], "question": record["question"],
               "answers": list(record["answers"])}


def modelscope_captions(dataset_id: str = "modelscope/coco_2014_caption", subset: str = "coco_2014_caption",
                        split: str = "train", limit: int = 0):
    """Records of a ModelScope caption dataset, loaded as the Qwen2-VL + SwanLab LoRA tutorial does.

    Each row of modelscope/coco_2014_caption has `image_id`, `caption` and `image` (a PIL image), one row a caption,
    so an image_id repeats across rows; the record id adds the row's index to stay unique:

    {"id": "<image_id>_0", "image_id": "<image_id>", "image": <PIL.Image>,
     "caption": "A snow skier assessing the mountain before starting to sky"}

    (the tutorial's first caption; the image_id is kept as the dataset spells it, as a string).

    An empty `subset` means the dataset's default one. MsDataset.load downloads the whole split before the first row;
    MODELSCOPE_ENDPOINT in the environment points it at another site.
    """
    from modelscope.msdatasets import MsDataset

    try:
        dataset = MsDataset.load(dataset_id, subset_name=subset or None, split=split)
        for index, row in enumerate(dataset):
            if limit and index >= limit:
                return
            _check_fields(row, ("image_id", "caption", "image"), index, dataset_id)
            _check_image(row["image"], index, dataset_id)
            yield {"id": f"{row['image_id']}_{index}", "image_id": str(row["image_id"]), "image": row["image"],
                   "caption": row["caption"].strip()}
    except ConnectionError as error:
        raise ConnectionError(f"cannot reach the ModelScope hub for dataset {dataset_id!r} ({error}); the network, "
                              f"or the site named by MODELSCOPE_ENDPOINT, must be reachable") from error


def huggingface_captions(dataset_id: str, split: str = "train", subset: str = "", image_column: str = "image",
                         caption_column: str = "caption", limit: int = 0, images_dir: str = ""):
    """Records of a Hugging Face dataset, streamed (nothing is downloaded beyond the rows read).

    The hub is the one huggingface_hub is set to: HF_ENDPOINT=https://hf-mirror.com (or any mirror) in the environment
    points it there; this function leaves that setting alone. An empty `subset` means the dataset's default config.
    A caption column holding a list (several captions of one image) gives one record a caption, sharing the image,
    with ids "<row>_<k>"; a single caption gives id "<row>". The second caption of a row 0 holding COCO's five:

    {"id": "0_1", "image_id": "0", "image": <PIL.Image>, "caption": "A woman wearing a net on her head cutting a cake."}

    An image column of paths is read against `images_dir` (empty: as they are).
    """
    from datasets import load_dataset

    count = 0
    try:
        dataset = load_dataset(dataset_id, subset or None, split=split, streaming=True)
        for row, example in enumerate(dataset):
            _check_fields(example, (image_column, caption_column), row, dataset_id)
            image = _resolve(example[image_column], images_dir)
            _check_image(image, row, dataset_id)
            captions = example[caption_column]
            if isinstance(captions, str):
                named = [(str(row), captions)]
            else:
                named = [(f"{row}_{k}", caption) for k, caption in enumerate(captions)]
            for record_id, caption in named:
                if limit and count >= limit:
                    return
                count += 1
                yield {"id": record_id, "image_id": str(row), "image": image, "caption": caption.strip()}
    except ConnectionError as error:
        raise _unreachable_hugging_face(dataset_id, error) from error


def huggingface_grounding(dataset_id: str, skipped: list, split: str = "train", subset: str = "",
                          image_column: str = "image", expression_column: str = "answer", bbox_column: str = "bbox",
                          bbox_format: str = "xywh", limit: int = 0, images_dir: str = ""):
    """Grounding records of a Hugging Face RefCOCO-style dataset, streamed, one a referring expression.

    The defaults read lmms-lab/RefCOCOg (splits val and test; lmms-lab/RefCOCO alike), whose row holds
    `image` (a PIL image), `answer` (the sentences that refer to one object) and `bbox` (COCO's [x, y, width, height]
    in pixels). jxu124/refcocog (splits train, validation, test) needs image_column="image_path" with `images_dir` the
    folder holding its coco/train2014/, expression_column="captions" and bbox_format="xyxy". An expression column
    holding a list gives one record a sentence, ids "<row>_<k>"; a single sentence gives id "<row>". For row 0:

    {"id": "0_1", "image_id": "<16 hex digits>", "image": <PIL.Image 640x427>, "expression": "<its second sentence>",
     "box": (x1, y1, x2, y2), "width": 640, "height": 427}

    The box's corners are rounded to 2 decimals (COCO's precision; the hub stores them as float32). image_id is a
    digest of the pixels (of the bytes, for a path): RefCOCO repeats an image in a row per object, and one image must
    be one file, on one side of the train/validation split. A sentence that is empty, or whose box boxes.check_box
    rejects, is not yielded: (id, reason) is appended to `skipped`.
    """
    from datasets import load_dataset

    count = 0
    try:
        dataset = load_dataset(dataset_id, subset or None, split=split, streaming=True)
        for row, example in enumerate(dataset):
            _check_fields(example, (image_column, expression_column, bbox_column), row, dataset_id)
            image = _resolve(example[image_column], images_dir)
            _check_image(image, row, dataset_id)
            expressions = example[expression_column]
            named = [(str(row), expressions)] if isinstance(expressions, str) else \
                [(f"{row}_{k}", expression) for k, expression in enumerate(expressions)]
            if not all(isinstance(expression, str) for _, expression in named):
                raise ValueError(f"{dataset_id} record {row}: --expression_column {expression_column!r} holds "
                                 f"{expressions!r}, not a sentence or a list of them (jxu124/refcocog: captions)")
            bbox = example[bbox_column]
            if len(bbox) != 4:
                raise ValueError(f"{dataset_id} record {row}: --bbox_column {bbox_column!r} holds {bbox!r}, "
                                 "not the 4 numbers of a box")
            x1, y1, a, b = bbox
            x2, y2 = (x1 + a, y1 + b) if bbox_format == "xywh" else (a, b)
            box = tuple(round(float(v), 2) for v in (x1, y1, x2, y2))
            size = image.size if isinstance(image, Image.Image) else _image_size(image)
            reason = check_box(box, size)
            image_id = _image_digest(image)
            for record_id, expression in named:
                if limit and count >= limit:
                    return
                if reason is not None:
                    skipped.append((record_id, f"bad box ({bbox_format} {list(bbox)}): {reason}"))
                elif not expression.strip():
                    skipped.append((record_id, "empty expression"))
                else:
                    count += 1
                    yield {"id": record_id, "image_id": image_id, "image": image,
                           "expression": expression.strip(), "box": box, "width": size[0], "height": size[1]}
    except ConnectionError as error:
        raise _unreachable_hugging_face(dataset_id, error) from error


def coco_captions(annotations_json: str, images_dir: str, skipped: list, limit: int = 0):
    """Records of an official COCO captions file (captions_train2017.json), one a caption, e.g.

    {"id": "125870_88366", "image_id": "125870", "image": "<images_dir>/000000125870.jpg",
     "caption": "An airport filled with large passenger jets parked next to each other."}

    Not yielded, with (id, reason) appended to `skipped`, so the caller can report it: an annotation whose image_id
    is not among the file's images, or whose image file is not in images_dir, and a malformed one (no id, image_id or
    caption, a caption that is no text); a malformed entry of "images" is named there too. ValueError when no
    annotation has a caption: an instances_*.json, say.
    """
    coco = _read_json(annotations_json, ("images", "annotations"), "a COCO annotations file")
    annotations = _list_in(coco, "annotations", annotations_json)
    if annotations and not any(isinstance(annotation, dict) and "caption" in annotation for annotation in annotations):
        raise ValueError(f"{annotations_json}: no annotation has a 'caption'; give a captions_*.json, not "
                         "instances_*.json")
    images = _coco_images(coco, annotations_json, skipped)
    count = 0
    for number, annotation in enumerate(annotations, start=1):
        if limit and count >= limit:
            return
        record_id, problem = _coco_record(annotation, number, annotations_json, ("caption",))
        image = None if problem else images.get(annotation["image_id"])
        if problem:
            skipped.append((record_id, problem))
        elif not isinstance(annotation["caption"], str):
            skipped.append((record_id, f"its caption is a {type(annotation['caption']).__name__}, not a text"))
        elif image is None:
            skipped.append((record_id, f"image_id {annotation['image_id']} is not in the file's images"))
        elif not os.path.isfile(path := os.path.join(images_dir, image["file_name"])):
            skipped.append((record_id, f"image file missing: {path}"))
        else:
            count += 1
            yield {"id": record_id, "image_id": str(annotation["image_id"]), "image": path,
                   "caption": annotation["caption"].strip()}


def coco_grounding(annotations_json: str, images_dir: str, skipped: list, limit: int = 0):
    """Grounding records of an official COCO instances file (instances_train2017.json), one an object that is the only
    one of its category in its image: the expression is the category's name, the box COCO's [x, y, width, height] as
    x1, y1, x2, y2 (2 decimals, COCO's precision), and the width and height those of its entry in "images". The first
    of coco-mini's:

    {"id": "535506_441444", "image_id": "535506", "image": "<images_dir>/000000535506.jpg", "expression": "person",
     "box": (120.46, 133.32, 332.77, 631.9), "width": 480, "height": 640}

    "Locate person" in a photo of three people has three true boxes and one target: such an object is not yielded,
    and (id, NOT_PICKED_OUT) is appended to `skipped` (a crowd annotation of the category counts as another object:
    it covers more of them). RefCOCO/RefCOCOg's expressions pick those objects out (huggingface_grounding).
    Not yielded either, with (id, reason) appended to `skipped`: a crowd annotation (iscrowd 1: its box covers a
    group), an unknown image_id or category_id, a missing image file, a box that boxes.check_box rejects.
    """
    coco = _read_json(annotations_json, ("images", "annotations", "categories"),
                      "a COCO instances file (instances_*.json; a captions_*.json is for --task caption)")
    annotations = _list_in(coco, "annotations", annotations_json)
    if annotations and not any(isinstance(annotation, dict) and "bbox" in annotation for annotation in annotations):
        raise ValueError(f"{annotations_json}: no annotation has a 'bbox'; give an instances_*.json, not "
                         "captions_*.json")
    images = _coco_images(coco, annotations_json, skipped)
    names = {}
    for number, category in enumerate(_list_in(coco, "categories", annotations_json), start=1):
        problem = _malformed(category, ("id", "name"), ids=("id",))
        if problem is None and not isinstance(category["name"], str):
            problem = "its name is no text"
        if problem:
            skipped.append((f"category {number} of {annotations_json}", problem))
        else:
            names[category["id"]] = category["name"]
    checked = [(annotation, *_coco_record(annotation, number, annotations_json, ("category_id", "bbox")))
               for number, annotation in enumerate(annotations, start=1)]
    objects = Counter((annotation["image_id"], annotation["category_id"])
                      for annotation, _, problem in checked if problem is None)
    count = 0
    for annotation, record_id, problem in checked:
        if limit and count >= limit:
            return
        if problem:
            skipped.append((record_id, problem))
            continue
        image = images.get(annotation["image_id"])
        bbox = annotation["bbox"]
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(_is_number(v) for v in bbox)):
            skipped.append((record_id, f"its bbox is {bbox!r}, not COCO's [x, y, width, height]"))
        elif annotation.get("iscrowd", 0):  # COCO writes iscrowd 0 or 1 in every annotation; none means one object
            skipped.append((record_id, "a crowd annotation (iscrowd 1): its box covers a group, not one object"))
        elif image is None:
            skipped.append((record_id, f"image_id {annotation['image_id']} is not in the file's images"))
        elif annotation["category_id"] not in names:
            skipped.append((record_id, f"category_id {annotation['category_id']} is not in the file's categories"))
        elif objects[annotation["image_id"], annotation["category_id"]] > 1:
            skipped.append((record_id, NOT_PICKED_OUT))
        elif not os.path.isfile(path := os.path.join(images_dir, image["file_name"])):
            skipped.append((record_id, f"image file missing: {path}"))
        elif not all(isinstance(image.get(key), int) and image[key] > 0 for key in ("width", "height")):
            skipped.append((record_id, f"its image's entry holds no width and height in pixels: {image}"))
        else:
            x, y, w, h = bbox
            box = (round(x, 2), round(y, 2), round(x + w, 2), round(y + h, 2))
            if (reason := check_box(box, (image["width"], image["height"]))) is not None:
                skipped.append((record_id, f"bad box (COCO bbox {bbox}): {reason}"))
                continue
            count += 1
            yield {"id": record_id, "image_id": str(annotation["image_id"]), "image": path,
                   "expression": names[annotation["category_id"]], "box": box, "width": image["width"],
                   "height": image["height"]}


def _coco_images(coco: dict, path: str, skipped: list) -> dict:
    """id -> entry of each well-formed entry of a COCO file's "images"; the others named in `skipped`."""
    images = {}
    for number, image in enumerate(_list_in(coco, "images", path), start=1):
        problem = _malformed(image, ("id", "file_name"), ids=("id",))
        if problem is None and not (isinstance(image["file_name"], str) and image["file_name"].strip()):
            problem = f"its file_name is {image['file_name']!r}, not the name of a file"
        if problem:
            skipped.append((f"image {number} of {path}", f"{problem}: the annotations of this image are skipped"))
        else:
            images[image["id"]] = image
    return images


def _coco_record(annotation, number: int, path: str, fields: tuple) -> tuple[str, str | None]:
    """(the record's id, why the COCO annotation is malformed or None): "<image_id>_<id>", or "record N of <file>"
    where it has not both."""
    problem = _malformed(annotation, ("id", "image_id", *fields), ids=("id", "image_id", "category_id"))
    if isinstance(annotation, dict) and all(_is_id(annotation.get(key)) for key in ("id", "image_id")):
        return f"{annotation['image_id']}_{annotation['id']}", problem
    return f"record {number} of {path}", problem


def read_label_map(spec: str) -> dict:
    """The label of each class folder, as --label_map gives it: "" (none: the folder names are the labels),
    "animals10" (ANIMALS10_LABELS), inline JSON ('{"cane": "dog"}') or the path of a JSON file holding such an object.
    """
    if not spec:
        return {}
    if spec == "animals10":
        return dict(ANIMALS10_LABELS)
    where, labels = _inline_or_file_json("--label_map", spec, "neither animals10, nor inline JSON, nor a file")
    if not (isinstance(labels, dict) and all(isinstance(label, str) and label.strip() for label in labels.values())):
        raise ValueError(f'{where}: expected a JSON object of folder name -> label, e.g. {{"cane": "dog"}}')
    return {folder: label.strip() for folder, label in labels.items()}


def _inline_or_file_json(flag: str, spec: str, neither: str):
    """(how to name it in a message, the JSON value) of a flag that takes inline JSON or the path of a JSON file."""
    if spec.lstrip().startswith("{"):
        where, text = flag, spec
    elif os.path.isfile(spec):
        where = f"{flag} {spec}"
        with open(spec, encoding="utf-8") as f:
            text = f.read()
    else:
        raise ValueError(f"{flag} {spec!r} is {neither}")
    try:
        return where, json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"{where}: not valid JSON ({error})") from None


def read_class_aliases(spec: str) -> dict:
    """Other names of the classes that answers may use, as --class_aliases gives them: "" (none), inline JSON
    ('{"formica": "ants", "蚂蚁": "ants"}') or the path of a JSON file holding such an object: name -> class."""
    if not spec:
        return {}
    where, aliases = _inline_or_file_json("--class_aliases", spec, "neither inline JSON nor a file")
    if not (isinstance(aliases, dict) and all(name.strip() and isinstance(cls, str) and cls.strip()
                                              for name, cls in aliases.items())):
        raise ValueError(f'{where}: expected a JSON object of name -> class, e.g. {{"formica": "ants"}}')
    return {name.strip(): cls.strip() for name, cls in aliases.items()}


def folder_classification(folder_dir: str, labels: dict, skipped: list, limit: int = 0):
    """Classification records of a folder holding one folder of images per class, as Animals-10's raw-img/ does
    (raw-img/cane/, raw-img/gatto/, ...). `labels` (read_label_map) names the label of each class folder; empty, the
    folder names are the labels. With ANIMALS10_LABELS, the first file of Animals-10's cane/:

    {"id": "cane/OIP-_0Aq1eLdh7Hq9c8yUqShzgHaE7.jpeg", "image_id": "cane-OIP-_0Aq1eLdh7Hq9c8yUqShzgHaE7-6001806e",
     "image": "<folder_dir>/cane/OIP-_0Aq1eLdh7Hq9c8yUqShzgHaE7.jpeg", "label": "dog"}

    The classes take turns (the first file of each class, then the second of each, ...), so that a `limit` takes
    every class alike. Not yielded, with (id, reason) appended to `skipped`: every file of a class folder that `labels`
    does not name, a file that is no image by its extension (csv2json.py decodes the others), a folder inside a class
    folder, a file beside the class folders; and a class folder that holds no image is named ("cane/", NO_IMAGE ...),
    its class being absent (notes() says so). The image id is path_image_id of the record's id, so that cat/dup.jpg
    and cat/dup.JPG are two images.

    A folder holding split folders, each holding class folders (ImageFolder's train/ and val/, Animals-10's
    train_data/ and test_data/: a folder that splits.split_of_folder names a split, and `labels` no class), gives the
    records of each split folder in turn (train, val, test), a `limit` for each, with the split folder in the id:

    {"id": "test_data/cane/1.jpeg", "image_id": "test_data-cane-1-d73f44e9",
     "image": "<folder_dir>/test_data/cane/1.jpeg",
     "label": "dog", "split": "test"}

    and what sits beside the split folders is not read but reported.
    """
    entries = sorted(os.listdir(folder_dir))
    named = [(name, split_of_folder(name)) for name in entries
             if os.path.isdir(os.path.join(folder_dir, name)) and name not in labels]
    parts = sorted([(name, split) for name, split in named if split], key=lambda part: SPLITS.index(part[1]))
    if parts:
        beside = f"beside the split folders {', '.join(name for name, _ in parts)}: not read (class folders go in them)"
        skipped.extend((name, beside) for name in entries if name not in dict(parts))
    else:
        parts = [("", "")]  # the class folders are in folder_dir itself
    files = {name: _class_files(os.path.join(folder_dir, name), name, labels, skipped) for name, _ in parts}
    if not any(files.values()):
        raise ValueError(f"{folder_dir} holds no class folder: --folder_dir needs one folder of images per class "
                         "(Animals-10's raw-img/ holds cane/, gatto/, ...), or split folders holding them "
                         "(train/cane/, val/cane/, ...)")
    for name, split in parts:
        for record in _take_turns(os.path.join(folder_dir, name), name, files[name], labels, skipped, limit):
            yield {**record, "split": split} if split else record


def _class_files(folder_dir: str, prefix: str, labels: dict, skipped: list) -> dict[str, list[str]]:
    """The file names in each class folder of folder_dir that `labels` names (every one, when empty), the others and
    the files beside the class folders reported in `skipped`, their ids after `prefix`/ (a split folder)."""
    entries = sorted(os.listdir(folder_dir))
    classes = [name for name in entries if os.path.isdir(os.path.join(folder_dir, name))]
    at = f"{prefix}/" if prefix else ""
    skipped.extend((f"{at}{name}", "a file beside the class folders, not in one")
                   for name in entries if name not in classes)
    files = {}
    for folder in classes:
        names = sorted(os.listdir(os.path.join(folder_dir, folder)))
        if labels and folder not in labels:
            skipped.extend((f"{at}{folder}/{name}", f"unknown class folder {folder!r}: name it in --label_map to read "
                                                    "it") for name in names)
            continue
        if not any(os.path.splitext(name)[1].lower() in _image_extensions() for name in names):
            skipped.append((f"{at}{folder}/", f"{NO_IMAGE}: its class {labels.get(folder, folder)!r} is absent"))
        files[folder] = names
    return files


def _image_extensions() -> set[str]:
    """The file extensions PIL opens, lower case, with their dot."""
    return {extension for extension, kind in Image.registered_extensions().items() if kind in Image.OPEN}


def _take_turns(folder_dir: str, prefix: str, files: dict, labels: dict, skipped: list, limit: int):
    """The records of `files` (_class_files), the classes taking turns, at most `limit` (0: all)."""
    image_extensions = _image_extensions()
    count = 0
    for turn in itertools.zip_longest(*files.values()):
        for folder, name in zip(files, turn):
            if name is None:  # this class has no more files
                continue
            record_id, path = f"{folder}/{name}", os.path.join(folder_dir, folder, name)
            stem, extension = os.path.splitext(name)
            if prefix:
                record_id = f"{prefix}/{record_id}"
            if os.path.isdir(path):
                skipped.append((record_id, "a folder inside a class folder: images must sit in the class folder"))
            elif extension.lower() not in image_extensions:
                skipped.append((record_id, f"not an image: its extension is {extension or 'missing'}"))
            elif limit and count >= limit:
                return
            else:
                count += 1
                yield {"id": record_id, "image_id": path_image_id(record_id), "image": path,
                       "label": labels.get(folder, folder)}


# A COCO image file ends in its 12-digit image id: COCO_train2014_000000000009.jpg (2014), 000000000009.jpg (2017).
_COCO_IMAGE_FILE = re.compile(r"(\d{12})\.(?:jpe?g|png)$", re.IGNORECASE)


def _coco_image_files(images_dir: str) -> dict[int, str]:
    """image id -> the name of its file in images_dir (the first, sorted, of several)."""
    files = {}
    for name in sorted(os.listdir(images_dir)):
        match = _COCO_IMAGE_FILE.search(name)
        if match:
            files.setdefault(int(match[1]), name)
    return files


def vqa_questions(questions_json: str, annotations_json: str, images_dir: str, skipped: list, limit: int = 0):
    """VQA records of the official VQA v2 or OK-VQA files, one a question, its answers in the annotation's order.

    The questions file holds {"questions": [{"image_id", "question", "question_id"}, ...]}, the annotations file
    {"annotations": [{"question_id", "image_id", "answers": [{"answer", "answer_id", ...}, ... ten], ...}, ...]}, and
    the image is the file of images_dir whose name ends in the 12-digit image id. VQA v2's first training question:

    {"id": "458752000", "image_id": "458752", "image": "<images_dir>/COCO_train2014_000000458752.jpg",
     "question": "What is this photo taken looking through?", "answers": ["net", "net", "net", "netting", ...]}

    Not yielded, with (id, reason) appended to `skipped`: an empty question, a question that no annotation answers
    (or one without answers), an image not in images_dir, and a malformed question (no question_id, image_id or
    question, an image_id that is not a whole number) or annotation (no question_id, answers that are no list of
    {"answer": text}): a question whose annotation is malformed is skipped with the annotation's reason.
    """
    questions = _read_json(questions_json, ("questions",), "a VQA questions file (OpenEnded_*_questions.json)")
    annotations = _read_json(annotations_json, ("annotations",), "a VQA annotations file (*_annotations.json)")
    answers_of = {}  # question_id -> its answers, or why its annotation cannot give them
    for number, annotation in enumerate(_list_in(annotations, "annotations", annotations_json), start=1):
        problem = _malformed(annotation, ("question_id", "answers"), ids=("question_id",))
        if problem and not (isinstance(annotation, dict) and _is_id(annotation.get("question_id"))):
            skipped.append((f"record {number} of {annotations_json}", problem))
            continue
        answers = annotation.get("answers")
        if problem is None and not (isinstance(answers, list) and all(
                isinstance(answer, dict) and isinstance(answer.get("answer"), str) for answer in answers)):
            problem = f"its answers are {answers!r}, not a list of {{\"answer\": text, ...}}"
        answers_of[annotation["question_id"]] = [a["answer"] for a in answers] if problem is None else \
            f"its annotation (record {number} of {annotations_json}) is malformed: {problem}"
    files = _coco_image_files(images_dir)
    count = 0
    for number, question in enumerate(_list_in(questions, "questions", questions_json), start=1):
        if limit and count >= limit:
            return
        problem = _malformed(question, ("question_id", "image_id", "question"), ids=("question_id",))
        if problem:
            named = isinstance(question, dict) and _is_id(question.get("question_id"))
            skipped.append((str(question["question_id"]) if named else f"record {number} of {questions_json}",
                            problem))
            continue
        record_id, image_id = str(question["question_id"]), question["image_id"]
        answers = answers_of.get(question["question_id"])
        if not isinstance(question["question"], str):
            skipped.append((record_id, f"its question is a {type(question['question']).__name__}, not a text"))
        elif not question["question"].strip():
            skipped.append((record_id, "empty question"))
        elif not isinstance(image_id, int) or isinstance(image_id, bool):
            skipped.append((record_id, f"its image_id is {image_id!r}, not a whole number"))
        elif answers is None:
            skipped.append((record_id, f"no annotation in {annotations_json} answers this question_id"))
        elif isinstance(answers, str):
            skipped.append((record_id, answers))
        elif not answers:
            skipped.append((record_id, "its annotation has no answers"))
        elif image_id not in files:
            skipped.append((record_id, f"no image of image_id {image_id} in {images_dir} "
                                       f"(a file whose name ends in {image_id:012d}.jpg)"))
        else:
            count += 1
            yield {"id": record_id, "image_id": str(image_id), "image": os.path.join(images_dir, files[image_id]),
                   "question": question["question"].strip(), "answers": [a.strip() for a in answers]}


def lxmert_vqa(lxmert_json: str, images_dir: str, skipped: list, limit: int = 0):
    """VQA records of an LXMERT-style file (LXMERT's data/vqa/train.json, minival.json, nominival.json, and the OK-VQA
    files made the same way), one a question, its answers with their soft scores. LXMERT's docstring example

    [{"answer_type": "other", "img_id": "COCO_train2014_000000458752", "label": {"net": 1}, "question_id": 458752000,
      "question_type": "what is this", "sent": "What is this photo taken looking through?"}, ...]

    gives (the image is the file of images_dir whose name ends in the 12 digits that end img_id)

    {"id": "458752000", "image_id": "458752", "image": "<images_dir>/COCO_train2014_000000458752.jpg",
     "question": "What is this photo taken looking through?", "answers": ["net"], "answer_scores": {"net": 1}}

    The scores are what each answer earns, 0.3, 0.6, 0.9 and 1 for 1, 2, 3 and 4 or more of the ten humans (the
    official accuracy of that answer), and an answer is scored by them (metrics.vqa_soft_accuracy). Not yielded, with
    (id, reason) appended to `skipped`: an empty question, no "label" (LXMERT's test files have none), an empty one
    (none of the humans' answers is in LXMERT's answer vocabulary), a score that is not a number 0 < score <= 1, an
    image not in images_dir, and a malformed entry (no question_id, img_id or sent, a sent that is no text, a label
    that is no object). ValueError, naming the file: not JSON, not a list, or no entry holding question_id, img_id
    and sent (a file of another kind).
    """
    entries = _load_json(lxmert_json)
    if not isinstance(entries, list):
        raise ValueError(f"{lxmert_json}: expected an LXMERT-style file, a list of questions, "
                         f"found a {type(entries).__name__}")
    fields = ("question_id", "img_id", "sent")
    if entries and not any(isinstance(entry, dict) and all(key in entry for key in fields) for entry in entries):
        raise ValueError(f"{lxmert_json}: no entry holds question_id, img_id and sent; an LXMERT-style file holds "
                         '{"question_id", "img_id", "sent", "label"} a question')
    files = _coco_image_files(images_dir)
    count = 0
    for number, entry in enumerate(entries, start=1):
        if limit and count >= limit:
            return
        problem = _malformed(entry, fields, ids=("question_id", "img_id"))
        if problem:
            named = isinstance(entry, dict) and _is_id(entry.get("question_id"))
            skipped.append((str(entry["question_id"]) if named else f"record {number} of {lxmert_json}", problem))
            continue
        record_id, label = str(entry["question_id"]), entry.get("label")  # test files have no label
        digits = re.search(r"(\d{12})$", str(entry["img_id"]))
        if not isinstance(entry["sent"], str):
            skipped.append((record_id, f"its sent (the question) is a {type(entry['sent']).__name__}, not a text"))
        elif label is not None and not isinstance(label, dict):
            skipped.append((record_id, f"its 'label' is {label!r}, not an object of answer: score"))
        elif not entry["sent"].strip():
            skipped.append((record_id, "empty question"))
        elif label is None:
            skipped.append((record_id, "no 'label': no answers to learn (LXMERT's test files have none)"))
        elif not label:
            skipped.append((record_id, "an empty 'label': none of its answers is in the file's answer vocabulary"))
        elif not all(type(score) in (int, float) and 0 < score <= 1 for score in label.values()):
            skipped.append((record_id, f"a 'label' score that is not a number 0 < score <= 1: {label}"))
        elif digits is None or int(digits[1]) not in files:
            skipped.append((record_id, f"no image of img_id {entry['img_id']} in {images_dir} (a file whose name "
                                       "ends in its 12 digits and .jpg)"))
        else:
            count += 1
            image_id = int(digits[1])
            scores = {answer.strip(): score for answer, score in label.items()}
            yield {"id": record_id, "image_id": str(image_id), "image": os.path.join(images_dir, files[image_id]),
                   "question": entry["sent"].strip(), "answers": list(scores), "answer_scores": scores}


def rows_vqa(rows_file: str, images_dir: str, skipped: list, image_column: str = "image",
             question_column: str = "question", answers_column: str = "answers", limit: int = 0):
    """VQA records of a file of rows, a JSON list of objects (.json) or an object a line (JSON Lines, .jsonl), each
    with a question, the path of its image (read against images_dir; empty: as it is) and one answer or a list:

    {"image": "val2014/COCO_val2014_000000393225.jpg", "question": "What is the man holding?", "answers": "a kite"}

    on line 3 of a .jsonl (the third object of a .json's list) gives, its id the row's line (or place in the list):

    {"id": "3", "image_id": "val2014-COCO_val2014_000000393225-91145567",
     "image": "<images_dir>/val2014/COCO_val2014_000000393225.jpg", "question": "What is the man holding?",
     "answers": ["a kite"]}

    A list of answers is scored as VQA's human answers (ten of them: the official accuracy), a single one by exact
    match (tasks.score_vqa). A row's "split", when it has one (train, val, test, or a name of one: validation), is the
    record's. Not yielded, with (id, reason) appended to `skipped`: a line of a .jsonl that is not JSON (the reason
    says where), a row that is no object or lacks a column, an empty question, answers that are neither a text nor a
    list of texts, a missing image file, a "split" that names no split. Blank lines hold no row. ValueError, naming
    the file: a name that ends in neither .json nor .jsonl, a .json that is not JSON (where json says) or not a list.
    """
    if rows_file.endswith(".jsonl"):
        rows = _json_lines(rows_file, skipped)
    elif rows_file.endswith(".json"):
        content = _load_json(rows_file)
        if not isinstance(content, list):
            raise ValueError(f"{rows_file}: expected a list of rows, found a {type(content).__name__} "
                             "(a file of one row a line is JSON Lines, read from a .jsonl)")
        rows = enumerate(content, start=1)
    else:
        raise ValueError(f"{rows_file}: give a .json file (a list of rows) or a .jsonl file (one row a line)")
    columns = (image_column, question_column, answers_column)
    count = 0
    for number, row in rows:
        if limit and count >= limit:
            return
        record_id = str(number)
        missing = [column for column in columns if not isinstance(row, dict) or column not in row]
        if missing:
            fields = f"its fields: {sorted(row)}" if isinstance(row, dict) else f"it is a {type(row).__name__}"
            skipped.append((record_id, f"no {missing[0]!r} column ({fields})"))
            continue
        answers = [row[answers_column]] if isinstance(row[answers_column], str) else row[answers_column]
        image = row[image_column]
        path = os.path.join(images_dir, image) if isinstance(image, str) and image.strip() else None
        if not (isinstance(row[question_column], str) and row[question_column].strip()):
            skipped.append((record_id, f"empty question ({question_column}: {row[question_column]!r})"))
        elif not (isinstance(answers, list) and answers and all(isinstance(a, str) and a.strip() for a in answers)):
            skipped.append((record_id, f"{answers_column} must be an answer or a list of them, got "
                                       f"{row[answers_column]!r}"))
        elif path is None:
            skipped.append((record_id, f"{image_column} must be the path of an image file, got {image!r}"))
        elif not os.path.isfile(path):
            skipped.append((record_id, f"image file missing: {path}"))
        elif "split" in row and not split_of_name(str(row["split"])):
            skipped.append((record_id, f"split {row['split']!r} names none of {', '.join(SPLITS)}"))
        else:
            count += 1
            split = {"split": split_of_name(str(row["split"]))} if "split" in row else {}
            yield {"id": record_id, "image_id": path_image_id(image), "image": path,
                   "question": row[question_column].strip(), "answers": [a.strip() for a in answers], **split}


def _json_lines(path: str, skipped: list):
    """(line number, value) of each line of a JSON Lines file that holds one; a line that is not JSON is appended to
    `skipped` as (line number, where json stopped), and the lines after it are read."""
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                yield number, json.loads(line.rstrip("\r\n"))
            except json.JSONDecodeError as error:
                skipped.append((str(number), f"line {number} of {path} is not JSON: {error.msg} at column "
                                             f"{error.colno}"))


def llava_conversations(llava_json: str, images_dir: str, skipped: list, limit: int = 0):
    """VQA records of a LLaVA conversation file (llava_instruct_150k.json, llava_v1_5_mix665k.json), one a conversation:

    [{"id": "000000033471", "image": "coco/train2017/000000033471.jpg", "conversations": [
        {"from": "human", "value": "<image>\nWhat are the colors of the bus in the image?"},
        {"from": "gpt", "value": "The bus in the image is white and red."},
        {"from": "human", "value": "What feature can be seen on the back of the bus?"}, ...]}, ...]

    gives (LLaVA's <image> token taken out: the image goes first in the first user turn)

    {"id": "000000033471", "image_id": "coco-train2017-000000033471-7457cc30",
     "image": "<images_dir>/coco/train2017/000000033471.jpg",
     "question": "What are the colors of the bus in the image?", "answers": ["The bus in the image is white and red."],
     "turns": [{"from": "human", "value": "What are the colors of the bus in the image?"},
               {"from": "gpt", "value": "The bus in the image is white and red."}, ...]}

    The question and answer are the first ones, for scoring; "turns" keeps the whole conversation, so that csv2json.py
    trains every answer. Not yielded, with (id, reason) appended to `skipped`: a conversation without an image (LLaVA's
    text-only ones), a missing image file, turns that do not alternate human, gpt, ... ending with gpt, an empty turn,
    an id used before in the file, and a malformed record (no id or conversations, a turn without a text "value" or
    "from", an image that is no path). ValueError, naming the file: not JSON, not a list, or no record holding
    "conversations" (a file of another kind).
    """
    entries = _load_json(llava_json)
    if not isinstance(entries, list):
        raise ValueError(f"{llava_json}: expected a LLaVA conversation file, a list of records, "
                         f"found a {type(entries).__name__}")
    if entries and not any(isinstance(entry, dict) and "conversations" in entry for entry in entries):
        raise ValueError(f"{llava_json}: no record holds \"conversations\"; a LLaVA conversation file holds "
                         '{"id", "image", "conversations": [{"from", "value"}, ...]} a record')
    seen = set()
    count = 0
    for number, entry in enumerate(entries, start=1):
        if limit and count >= limit:
            return
        problem = _malformed(entry, ("id", "conversations"), ids=("id",)) or _llava_malformed(entry)
        if problem:
            named = isinstance(entry, dict) and _is_id(entry.get("id"))
            skipped.append((str(entry["id"]) if named else f"record {number} of {llava_json}", problem))
            continue
        record_id = str(entry["id"])
        turns = [{"from": turn["from"], "value": turn["value"].replace("<image>", "").strip()}
                 for turn in entry["conversations"]]
        roles = [turn["from"] for turn in turns]
        if record_id in seen:
            skipped.append((record_id, f"the id is used again (record {number} of the file)"))
        elif "image" not in entry:
            skipped.append((record_id, "no image: a text-only conversation"))
        elif not os.path.isfile(os.path.join(images_dir, entry["image"])):
            skipped.append((record_id, f"image file missing: {os.path.join(images_dir, entry['image'])}"))
        elif not roles or roles != ["human", "gpt"] * (len(roles) // 2):
            skipped.append((record_id, f"turns must alternate human, gpt and end with gpt; found {', '.join(roles)}"))
        elif not all(turn["value"] for turn in turns):
            skipped.append((record_id, "an empty turn"))
        else:
            count += 1
            yield {"id": record_id, "image_id": path_image_id(entry["image"]),
                   "image": os.path.join(images_dir, entry["image"]), "question": turns[0]["value"],
                   "answers": [turns[1]["value"]], "turns": turns}
        seen.add(record_id)


def _llava_malformed(entry: dict) -> str | None:
    """Why a LLaVA record (an object with id and conversations) is malformed, or None."""
    turns = entry["conversations"]
    if not isinstance(turns, list):
        return f"its conversations are a {type(turns).__name__}, not a list of turns"
    for number, turn in enumerate(turns, start=1):
        if not (isinstance(turn, dict) and isinstance(turn.get("from"), str) and isinstance(turn.get("value"), str)):
            return f"turn {number} is {turn!r}, not {{\"from\": \"human\" or \"gpt\", \"value\": text}}"
    if "image" in entry and not (isinstance(entry["image"], str) and entry["image"].strip()):
        return f"its image is {entry['image']!r}, not the path of an image file"
    return None


def _load_json(path: str):
    """The content of a JSON file; ValueError naming the file and where json stopped when it is not JSON."""
    with open(path, encoding="utf-8") as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}: not valid JSON ({error})") from None


def _read_json(path: str, keys: tuple, what: str) -> dict:
    content = _load_json(path)
    for key in keys:
        if not isinstance(content, dict) or key not in content:
            raise ValueError(f"{path} has no {key!r}: it is not {what}")
    return content


def _list_in(content: dict, key: str, path: str) -> list:
    """content[key], which a file's format makes a list; ValueError naming the file when it is not one."""
    if not isinstance(content[key], list):
        raise ValueError(f"{path}: its {key!r} is a {type(content[key]).__name__}, not a list")
    return content[key]


def _malformed(entry, fields: tuple, ids: tuple = ()) -> str | None:
    """Why an entry of a JSON file is not an object holding `fields`, those of them in `ids` whole numbers or
    texts (ids, which name things), or None."""
    if not isinstance(entry, dict):
        return f"it is a {type(entry).__name__}, not an object"
    missing = [field for field in fields if field not in entry]
    if missing:
        return f"no {missing[0]!r} (its fields: {', '.join(sorted(map(str, entry))) or 'none'})"
    wrong = [field for field in ids if field in entry and not _is_id(entry[field])]
    if wrong:
        return f"its {wrong[0]} is {entry[wrong[0]]!r}, not a number or a text"
    return None


def _is_id(value) -> bool:
    return isinstance(value, (int, str)) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def path_image_id(path: str) -> str:
    """The image id of an image known by its path (relative, as its dataset gives it): the path made readable, its
    folders joined by "-" and its extension dropped, then 8 hex digits of a digest of the exact path, so that no two
    paths share one even where they read alike ("cat/dup.jpg" and "cat/dup.JPG", "sea-lion/1.png" and
    "sea/lion-1.png"), and two image files never become one. Written here: no library names files this way.

        path_image_id("cane/OIP-a.jpeg") == "cane-OIP-a-0a020087"
    """
    exact = posixpath.normpath(path)  # "a/./b.jpg" is "a/b.jpg": one file, one image (the same on every OS)
    readable = re.sub(r"[^\w.-]+", "-", os.path.splitext(exact)[0]).strip("-.")[:80]
    digest = hashlib.sha1(exact.encode("utf-8", "surrogateescape")).hexdigest()[:8]
    return f"{readable}-{digest}" if readable else digest


def _check_fields(row: dict, names: tuple, index: int, dataset_id: str):
    missing = [name for name in names if name not in row]
    if missing:
        raise ValueError(f"{dataset_id} record {index} has no field {missing[0]!r} (its fields: {sorted(row)})")


def _check_image(image, index: int, dataset_id: str):
    if not (isinstance(image, Image.Image) or (isinstance(image, str) and os.path.isfile(image))):
        raise ValueError(f"{dataset_id} record {index}: the image is a {type(image).__name__}, "
                         "neither a PIL image nor the path of an existing file")


def _resolve(image, images_dir: str):
    """A hub's image: a PIL image as it is, a path read against images_dir (os.path.join keeps an absolute one)."""
    return os.path.join(images_dir, image) if isinstance(image, str) else image


def _image_size(path: str) -> tuple[int, int]:
    with Image.open(path) as image:
        return image.size


def _image_digest(image) -> str:
    """16 hex digits that name an image by its content: its pixels, or a file's bytes."""
    digest = hashlib.sha1()
    if isinstance(image, str):
        with open(image, "rb") as f:
            digest.update(f.read())
    else:
        digest.update(f"{image.mode} {image.size} ".encode())
        digest.update(image.tobytes())
    return digest.hexdigest()[:16]


def _unreachable_hugging_face(dataset_id: str, error: Exception) -> ConnectionError:
    from huggingface_hub import constants

    return ConnectionError(f"cannot reach the Hugging Face hub at {constants.ENDPOINT} for dataset {dataset_id!r} "
                           f"({error}); the network, or a mirror set with HF_ENDPOINT, must be reachable")
