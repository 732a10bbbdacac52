"""Dataset readers: each one yields caption records, the one shape that data2csv.py writes to disk.

A caption record is a dict:

    {"id": "125870_88366",          # unique within the source
     "image_id": "125870",          # which image: records of one image share it (COCO has five captions an image);
                                    # data2csv.py names the image file after it, so it holds no "/"
     "image": "coco/train2017/000000125870.jpg",   # a path to an existing file, or a PIL.Image.Image
     "caption": "An airport filled with large passenger jets parked next to each other."}

Every `limit` counts records (captions), not images; 0 means all. Captions are stripped of surrounding whitespace
(COCO's often end with a space). The hub readers import their hub inside the function, so the offline sources never
need it, and turn a hub that cannot be reached into a ConnectionError that names the hub and the dataset.
"""

import json
import os

from PIL import Image

from vlmtune import world


def synthetic_captions(n: int, seed: int = 0, image_size: int = 112):
    """n records of the synthetic world (offline, deterministic from `seed`), e.g.

    {"id": "syn-0-000000", "image_id": "syn-0-000000", "image": <PIL.Image 112x112 RGB>,
     "caption": "A large blue square in the center."}
    """
    for record in world.caption_records(n, seed, image_size):
        yield {"id": record["id"], "image_id": record["id"], "image": record["image"], "caption": record["caption"]}


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
                         caption_column: str = "caption", limit: int = 0):
    """Records of a Hugging Face dataset, streamed (nothing is downloaded beyond the rows read).

    The hub is the one huggingface_hub is set to: HF_ENDPOINT=https://hf-mirror.com (or any mirror) in the environment
    points it there; this function leaves that setting alone. An empty `subset` means the dataset's default config.
    A caption column holding a list (several captions of one image) gives one record a caption, sharing the image,
    with ids "<row>_<k>"; a single caption gives id "<row>". The second caption of a row 0 holding COCO's five:

    {"id": "0_1", "image_id": "0", "image": <PIL.Image>, "caption": "A woman wearing a net on her head cutting a cake."}
    """
    from datasets import load_dataset
    from huggingface_hub import constants

    count = 0
    try:
        dataset = load_dataset(dataset_id, subset or None, split=split, streaming=True)
        for row, example in enumerate(dataset):
            _check_fields(example, (image_column, caption_column), row, dataset_id)
            _check_image(example[image_column], row, dataset_id)
            captions = example[caption_column]
            if isinstance(captions, str):
                named = [(str(row), captions)]
            else:
                named = [(f"{row}_{k}", caption) for k, caption in enumerate(captions)]
            for record_id, caption in named:
                if limit and count >= limit:
                    return
                count += 1
                yield {"id": record_id, "image_id": str(row), "image": example[image_column], "caption": caption.strip()}
    except ConnectionError as error:
        raise ConnectionError(f"cannot reach the Hugging Face hub at {constants.ENDPOINT} for dataset {dataset_id!r} "
                              f"({error}); the network, or a mirror set with HF_ENDPOINT, must be reachable") from error


def coco_captions(annotations_json: str, images_dir: str, skipped: list, limit: int = 0):
    """Records of an official COCO captions file (captions_train2017.json), one a caption, e.g.

    {"id": "125870_88366", "image_id": "125870", "image": "<images_dir>/000000125870.jpg",
     "caption": "An airport filled with large passenger jets parked next to each other."}

    An annotation whose image_id is not among the file's images, or whose image file is not in images_dir, is not
    yielded: (id, reason) is appended to `skipped`, so the caller can report it.
    """
    with open(annotations_json, encoding="utf-8") as f:
        coco = json.load(f)
    for key in ("images", "annotations"):
        if key not in coco:
            raise ValueError(f"{annotations_json} has no {key!r}: it is not a COCO annotations file")
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


def _check_fields(row: dict, names: tuple, index: int, dataset_id: str):
    missing = [name for name in names if name not in row]
    if missing:
        raise ValueError(f"{dataset_id} record {index} has no field {missing[0]!r} (its fields: {sorted(row)})")


def _check_image(image, index: int, dataset_id: str):
    if not (isinstance(image, Image.Image) or (isinstance(image, str) and os.path.isfile(image))):
        raise ValueError(f"{dataset_id} record {index}: the image is a {type(image).__name__}, "
                         "neither a PIL image nor the path of an existing file")
