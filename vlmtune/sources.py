"""Dataset readers: each one yields the records of one task, the shape that data2csv.py writes to disk.

Every record holds

    "id": "125870_88366",          # unique within the source
    "image_id": "125870",          # which image: records of one image share it (COCO has five captions an image);
                                   # data2csv.py names the image file after it, so it holds no "/"
    "image": "coco/train2017/000000125870.jpg",   # a path to an existing file, or a PIL.Image.Image

and what its task learns (vlmtune/formats.py turns each into a row of data.csv):

    caption         "caption": "An airport filled with large passenger jets parked next to each other."
    classification  "label": "dog"
    grounding       "expression": "person", "box": (120.46, 133.32, 332.77, 631.9), "width": 480, "height": 640
                    (x1, y1, x2, y2 in pixels of the image, whose width and height follow)
    vqa             "question": "What is this photo taken looking through?", "answers": ["net", "net", ...]
                    (and, from a LLaVA file, "turns": the whole conversation)

Every `limit` counts records, not images; 0 means all. Texts are stripped of surrounding whitespace (COCO's captions
often end with a space). A reader of local files is given a `skipped` list: a record it cannot use is not yielded, and
(id, reason) is appended there, for data2csv.py to report. The hub readers import their hub inside the function, so
the offline sources never need it, and turn a hub that cannot be reached into a ConnectionError that names the hub
and the dataset.
"""

import hashlib
import itertools
import json
import os
import re

from PIL import Image

from vlmtune import world
from vlmtune.boxes import check_box

# Animals-10 (https://www.kaggle.com/datasets/alessiocorrado99/animals10) names its class folders in Italian.
ANIMALS10_LABELS = {
    "cane": "dog", "cavallo": "horse", "elefante": "elephant", "farfalla": "butterfly", "gallina": "chicken",
    "gatto": "cat", "mucca": "cow", "pecora": "sheep", "ragno": "spider", "scoiattolo": "squirrel",
}


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

    An annotation whose image_id is not among the file's images, or whose image file is not in images_dir, is not
    yielded: (id, reason) is appended to `skipped`, so the caller can report it.
    """
    coco = _read_json(annotations_json, ("images", "annotations"), "a COCO annotations file")
    paths = {image["id"]: os.path.join(images_dir, image["file_name"]) for image in coco["images"]}
    count = 0
    for index, annotation in enumerate(coco["annotations"]):
        if "caption" not in annotation:
            raise ValueError(f"{annotations_json}: annotation {index} has no 'caption'; "
                             "give a captions_*.json, not instances_*.json")
        if limit and count >= limit:
            return
        record_id = f"{annotation['image_id']}_{annotation['id']}"
        path = paths.get(annotation["image_id"])
        if path is None:
            skipped.append((record_id, f"image_id {annotation['image_id']} is not in the file's images"))
        elif not os.path.isfile(path):
            skipped.append((record_id, f"image file missing: {path}"))
        else:
            count += 1
            yield {"id": record_id, "image_id": str(annotation["image_id"]), "image": path,
                   "caption": annotation["caption"].strip()}


def coco_grounding(annotations_json: str, images_dir: str, skipped: list, limit: int = 0):
    """Grounding records of an official COCO instances file (instances_train2017.json), one a non-crowd annotation:
    the expression is its category's name, the box COCO's [x, y, width, height] as x1, y1, x2, y2 (2 decimals, COCO's
    precision), and the width and height those of its entry in "images". The first of coco-mini's:

    {"id": "535506_441444", "image_id": "535506", "image": "<images_dir>/000000535506.jpg", "expression": "person",
     "box": (120.46, 133.32, 332.77, 631.9), "width": 480, "height": 640}

    An image that holds several objects of one category gives records with one expression and different boxes.
    Not yielded, with (id, reason) appended to `skipped`: a crowd annotation (iscrowd 1: its box covers a group), an
    unknown image_id or category_id, a missing image file, a box that boxes.check_box rejects.
    """
    coco = _read_json(annotations_json, ("images", "annotations", "categories"),
                      "a COCO instances file (instances_*.json; a captions_*.json is for --task caption)")
    images = {image["id"]: image for image in coco["images"]}
    names = {category["id"]: category["name"] for category in coco["categories"]}
    count = 0
    for index, annotation in enumerate(coco["annotations"]):
        if "bbox" not in annotation:
            raise ValueError(f"{annotations_json}: annotation {index} has no 'bbox'; "
                             "give an instances_*.json, not captions_*.json")
        if limit and count >= limit:
            return
        record_id = f"{annotation['image_id']}_{annotation['id']}"
        image = images.get(annotation["image_id"])
        path = image and os.path.join(images_dir, image["file_name"])
        x, y, w, h = annotation["bbox"]
        box = (round(x, 2), round(y, 2), round(x + w, 2), round(y + h, 2))
        if annotation["iscrowd"]:
            skipped.append((record_id, "a crowd annotation (iscrowd 1): its box covers a group, not one object"))
        elif image is None:
            skipped.append((record_id, f"image_id {annotation['image_id']} is not in the file's images"))
        elif annotation["category_id"] not in names:
            skipped.append((record_id, f"category_id {annotation['category_id']} is not in the file's categories"))
        elif not os.path.isfile(path):
            skipped.append((record_id, f"image file missing: {path}"))
        elif (reason := check_box(box, (image["width"], image["height"]))) is not None:
            skipped.append((record_id, f"bad box (COCO bbox {annotation['bbox']}): {reason}"))
        else:
            count += 1
            yield {"id": record_id, "image_id": str(annotation["image_id"]), "image": path,
                   "expression": names[annotation["category_id"]], "box": box, "width": image["width"],
                   "height": image["height"]}


def read_label_map(spec: str) -> dict:
    """The label of each class folder, as --label_map gives it: "" (none: the folder names are the labels),
    "animals10" (ANIMALS10_LABELS), inline JSON ('{"cane": "dog"}') or the path of a JSON file holding such an object.
    """
    if not spec:
        return {}
    if spec == "animals10":
        return dict(ANIMALS10_LABELS)
    where = "--label_map"
    text = spec
    if not spec.lstrip().startswith("{"):
        if not os.path.isfile(spec):
            raise ValueError(f"--label_map {spec!r} is neither animals10, nor inline JSON, nor a file")
        where = f"--label_map {spec}"
        with open(spec, encoding="utf-8") as f:
            text = f.read()
    try:
        labels = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"{where}: not valid JSON ({error})") from None
    if not (isinstance(labels, dict) and all(isinstance(label, str) and label.strip() for label in labels.values())):
        raise ValueError(f'{where}: expected a JSON object of folder name -> label, e.g. {{"cane": "dog"}}')
    return {folder: label.strip() for folder, label in labels.items()}


def folder_classification(folder_dir: str, labels: dict, skipped: list, limit: int = 0):
    """Classification records of a folder holding one folder of images per class, as Animals-10's raw-img/ does
    (raw-img/cane/, raw-img/gatto/, ...). `labels` (read_label_map) names the label of each class folder; empty, the
    folder names are the labels. With ANIMALS10_LABELS, the first file of Animals-10's cane/:

    {"id": "cane/OIP-_0Aq1eLdh7Hq9c8yUqShzgHaE7.jpeg", "image_id": "cane-OIP-_0Aq1eLdh7Hq9c8yUqShzgHaE7",
     "image": "<folder_dir>/cane/OIP-_0Aq1eLdh7Hq9c8yUqShzgHaE7.jpeg", "label": "dog"}

    The classes take turns (the first file of each class, then the second of each, ...), so that a `limit` takes
    every class alike. Not yielded, with (id, reason) appended to `skipped`: every file of a class folder that `labels`
    does not name, a file that is no image by its extension (csv2json.py decodes the others), a folder inside a class
    folder, a file beside the class folders.
    """
    image_extensions = {extension for extension, kind in Image.registered_extensions().items() if kind in Image.OPEN}
    entries = sorted(os.listdir(folder_dir))
    classes = [name for name in entries if os.path.isdir(os.path.join(folder_dir, name))]
    if not classes:
        raise ValueError(f"{folder_dir} holds no folder: --folder_dir needs one folder of images per class "
                         "(Animals-10's raw-img/ holds cane/, gatto/, ...)")
    skipped.extend((name, "a file beside the class folders, not in one") for name in entries if name not in classes)
    files = {}
    for folder in classes:
        names = sorted(os.listdir(os.path.join(folder_dir, folder)))
        if labels and folder not in labels:
            skipped.extend((f"{folder}/{name}", f"unknown class folder {folder!r}: name it in --label_map to read it")
                           for name in names)
        else:
            files[folder] = names
    count = 0
    for turn in itertools.zip_longest(*files.values()):
        for folder, name in zip(files, turn):
            if name is None:  # this class has no more files
                continue
            record_id, path = f"{folder}/{name}", os.path.join(folder_dir, folder, name)
            stem, extension = os.path.splitext(name)
            if os.path.isdir(path):
                skipped.append((record_id, "a folder inside a class folder: images must sit in the class folder"))
            elif extension.lower() not in image_extensions:
                skipped.append((record_id, f"not an image: its extension is {extension or 'missing'}"))
            elif limit and count >= limit:
                return
            else:
                count += 1
                yield {"id": record_id, "image_id": f"{folder}-{stem}", "image": path,
                       "label": labels.get(folder, folder)}


# A COCO image file ends in its 12-digit image id: COCO_train2014_000000000009.jpg (2014), 000000000009.jpg (2017).
_COCO_IMAGE_FILE = re.compile(r"(\d{12})\.(?:jpe?g|png)$", re.IGNORECASE)


def vqa_questions(questions_json: str, annotations_json: str, images_dir: str, skipped: list, limit: int = 0):
    """VQA records of the official VQA v2 or OK-VQA files, one a question, its answers in the annotation's order.

    The questions file holds {"questions": [{"image_id", "question", "question_id"}, ...]}, the annotations file
    {"annotations": [{"question_id", "image_id", "answers": [{"answer", "answer_id", ...}, ... ten], ...}, ...]}, and
    the image is the file of images_dir whose name ends in the 12-digit image id. VQA v2's first training question:

    {"id": "458752000", "image_id": "458752", "image": "<images_dir>/COCO_train2014_000000458752.jpg",
     "question": "What is this photo taken looking through?", "answers": ["net", "net", "net", "netting", ...]}

    Not yielded, with (id, reason) appended to `skipped`: an empty question, a question that no annotation answers
    (or one without answers), an image not in images_dir.
    """
    questions = _read_json(questions_json, ("questions",), "a VQA questions file (OpenEnded_*_questions.json)")
    annotations = _read_json(annotations_json, ("annotations",), "a VQA annotations file (*_annotations.json)")
    answers_of = {annotation["question_id"]: annotation["answers"] for annotation in annotations["annotations"]}
    files = {}
    for name in sorted(os.listdir(images_dir)):
        match = _COCO_IMAGE_FILE.search(name)
        if match:
            files.setdefault(int(match[1]), name)
    count = 0
    for question in questions["questions"]:
        if limit and count >= limit:
            return
        record_id, image_id = str(question["question_id"]), question["image_id"]
        answers = answers_of.get(question["question_id"])
        if not question["question"].strip():
            skipped.append((record_id, "empty question"))
        elif answers is None:
            skipped.append((record_id, f"no annotation in {annotations_json} answers this question_id"))
        elif not answers:
            skipped.append((record_id, "its annotation has no answers"))
        elif image_id not in files:
            skipped.append((record_id, f"no image of image_id {image_id} in {images_dir} "
                                       f"(a file whose name ends in {image_id:012d}.jpg)"))
        else:
            count += 1
            yield {"id": record_id, "image_id": str(image_id), "image": os.path.join(images_dir, files[image_id]),
                   "question": question["question"].strip(), "answers": [a["answer"].strip() for a in answers]}


def llava_conversations(llava_json: str, images_dir: str, skipped: list, limit: int = 0):
    """VQA records of a LLaVA conversation file (llava_instruct_150k.json, llava_v1_5_mix665k.json), one a conversation:

    [{"id": "000000033471", "image": "coco/train2017/000000033471.jpg", "conversations": [
        {"from": "human", "value": "<image>\nWhat are the colors of the bus in the image?"},
        {"from": "gpt", "value": "The bus in the image is white and red."},
        {"from": "human", "value": "What feature can be seen on the back of the bus?"}, ...]}, ...]

    gives (LLaVA's <image> token taken out: the image goes first in the first user turn)

    {"id": "000000033471", "image_id": "coco_train2017_000000033471",
     "image": "<images_dir>/coco/train2017/000000033471.jpg",
     "question": "What are the colors of the bus in the image?", "answers": ["The bus in the image is white and red."],
     "turns": [{"from": "human", "value": "What are the colors of the bus in the image?"},
               {"from": "gpt", "value": "The bus in the image is white and red."}, ...]}

    The question and answer are the first ones, for scoring; "turns" keeps the whole conversation, so that csv2json.py
    trains every answer. Not yielded, with (id, reason) appended to `skipped`: a conversation without an image (LLaVA's
    text-only ones), a missing image file, turns that do not alternate human, gpt, ... ending with gpt, an empty turn,
    an id used before in the file.
    """
    with open(llava_json, encoding="utf-8") as f:
        entries = json.load(f)
    if not isinstance(entries, list):
        raise ValueError(f"{llava_json}: expected a LLaVA conversation file, a list of records, "
                         f"found a {type(entries).__name__}")
    seen = set()
    count = 0
    for number, entry in enumerate(entries, start=1):
        if limit and count >= limit:
            return
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
            yield {"id": record_id, "image_id": os.path.splitext(entry["image"])[0].replace("/", "_"),
                   "image": os.path.join(images_dir, entry["image"]), "question": turns[0]["value"],
                   "answers": [turns[1]["value"]], "turns": turns}
        seen.add(record_id)


def _read_json(path: str, keys: tuple, what: str) -> dict:
    with open(path, encoding="utf-8") as f:
        content = json.load(f)
    for key in keys:
        if not isinstance(content, dict) or key not in content:
            raise ValueError(f"{path} has no {key!r}: it is not {what}")
    return content


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
