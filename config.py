"""Every setting of the five steps, in one place.

Each script parses the groups it needs together with transformers' TrainingArguments, so every Trainer flag works as
it is documented there (`--deepspeed scripts/zero3.json`, `--bf16 true`, `--report_to swanlab`).
The defaults below are the offline job (synthetic world, tiny model, CPU). A YAML file given with `--config FILE`
replaces defaults (the real run: `--config scripts/qwen2-vl-2b_coco.yaml`); flags on the command line win over both.

    python train.py --config scripts/qwen2-vl-2b_coco.yaml --learning_rate 5e-5
"""

import sys
from dataclasses import dataclass, fields

import yaml
from transformers import HfArgumentParser, TrainingArguments

SOURCES = ("synthetic", "modelscope", "huggingface", "coco")
DEFAULT_DATASET_IDS = {"modelscope": "modelscope/coco_2014_caption", "huggingface": "", "coco": "", "synthetic": ""}


@dataclass
class DataConfig:
    source: str = "synthetic"
    """Where data2csv.py reads records: synthetic | modelscope | huggingface | coco."""
    dataset_id: str = ""
    """Hub dataset id; empty means the source's default (modelscope: modelscope/coco_2014_caption)."""
    dataset_subset: str = ""
    """Hub subset (ModelScope subset_name / Hugging Face config name); empty means the source's default."""
    dataset_split: str = "train"
    """Hub split to read."""
    image_column: str = "image"
    """Hugging Face source: the column holding the image."""
    caption_column: str = "caption"
    """Hugging Face source: the column holding the caption."""
    coco_annotations: str = ""
    """coco source: path of an official captions_*.json."""
    coco_images: str = ""
    """coco source: the folder holding its images."""
    num_samples: int = 600
    """How many records data2csv.py writes (the tutorial uses 500 COCO records); 0 means all."""
    synthetic_seed: int = 0
    """synthetic source: which world to draw (scenes are deterministic from this seed and their index)."""
    synthetic_image_size: int = 112
    """synthetic source: image width and height in pixels."""
    data_dir: str = ""
    """Folder of the dataset (images/, data.csv, train.json, val.json); empty means input/<source>."""
    val_size: float = 0.15
    """csv2json.py: images held out for validation, as a fraction (< 1) or a count (>= 1)."""
    split_seed: int = 42
    """csv2json.py: seed of the train/validation split."""
    prompt: str = "Describe this image."
    """The user's instruction placed after the image in every conversation."""

    def __post_init__(self):
        if self.source not in SOURCES:
            raise ValueError(f"--source must be one of {', '.join(SOURCES)}, got {self.source!r}")
        if self.val_size <= 0:
            raise ValueError(f"--val_size must be a fraction (0 < x < 1) or a count (>= 1), got {self.val_size}")

    @property
    def resolved_dataset_id(self) -> str:
        return self.dataset_id or DEFAULT_DATASET_IDS[self.source]

    @property
    def resolved_data_dir(self) -> str:
        return self.data_dir or f"input/{self.source}"


def parse(argv, *groups):
    """Parse argv into the dataclass `groups`; a YAML file named by --config sets defaults, flags win.

    Why not HfArgumentParser.parse_yaml_file: it reads the file alone, with no way for a flag to override a value.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = HfArgumentParser(groups)
    parser.add_argument("--config", default=None, help="YAML file whose keys replace the defaults; flags win.")
    if "--config" in argv:
        at = argv.index("--config")
        if at + 1 >= len(argv):
            parser.error("--config needs a YAML file")
        with open(argv[at + 1], encoding="utf-8") as f:
            values = yaml.safe_load(f) or {}
        known = {f.name for group in groups for f in fields(group)}
        unknown = sorted(set(values) - known)
        if unknown:
            parser.error(f"{argv[at + 1]}: unknown keys {unknown}; see `--help` for the valid ones")
        parser.set_defaults(**values)
    parsed = parser.parse_args_into_dataclasses(argv, look_for_args_file=False)
    return [p for p in parsed if isinstance(p, groups)]
