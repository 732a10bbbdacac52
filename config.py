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


def parse(argv, *groups, defaults: dict | None = None):
    """Parse argv into the dataclass `groups`: `defaults`, then a YAML file named by --config, then flags, each
    replacing the one before.

    Why not HfArgumentParser.parse_yaml_file: it reads the file alone, with no way for a flag to override a value.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = HfArgumentParser(groups)
    parser.add_argument("--config", default=None, help="YAML file whose keys replace the defaults; flags win.")
    parser.set_defaults(**(defaults or {}))
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


@dataclass
class ModelConfig:
    base_model: str = "tiny-qwen2-vl"
    """load_model.py: a hub model id (Qwen/Qwen2-VL-2B-Instruct) or an offline tiny model (tiny-qwen2-vl)."""
    hub: str = "modelscope"
    """load_model.py: where a hub id is downloaded from: modelscope | huggingface (HF_ENDPOINT picks a mirror)."""
    model_dir: str = ""
    """Local folder of the base model; empty means models/<last part of base_model>."""
    pretrain_steps: int = 300
    """load_model.py, tiny models only: steps of the short pretraining on the synthetic world."""
    trust_remote_code: bool = False
    """Run code shipped inside a model repository. Off: the supported families need none."""
    image_min_pixels: int = 3136
    """Qwen resize: an image smaller than this many pixels is scaled up (56 x 56)."""
    image_max_pixels: int = 112 * 112
    """Qwen resize: an image larger than this many pixels is scaled down (one image token per 28 x 28 pixels)."""

    def __post_init__(self):
        if self.hub not in ("modelscope", "huggingface"):
            raise ValueError(f"--hub must be modelscope or huggingface, got {self.hub!r}")
        if not 0 < self.image_min_pixels <= self.image_max_pixels:
            raise ValueError(f"--image_min_pixels ({self.image_min_pixels}) must be positive and at most "
                             f"--image_max_pixels ({self.image_max_pixels})")

    @property
    def resolved_model_dir(self) -> str:
        return self.model_dir or f"models/{self.base_model.rstrip('/').split('/')[-1]}"


@dataclass
class LoraConfig:
    lora_r: int = 64
    """LoRA rank."""
    lora_alpha: int = 16
    """LoRA scaling numerator (the update is scaled by lora_alpha / lora_r)."""
    lora_dropout: float = 0.05
    """Dropout on the LoRA input."""
    lora_modules: str = "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj"
    """Comma-separated projection names that get LoRA, inside the language model only."""
    max_length: int = 1024
    """Longest training sample in tokens, images included; longer ones are dropped and reported, never cut."""
    trim_logits: bool = True
    """Project only the reply positions onto the vocabulary during training (same loss, less time and memory)."""

    @property
    def module_names(self) -> list[str]:
        return [name.strip() for name in self.lora_modules.split(",") if name.strip()]


# The offline job's training settings; the Trainer's own defaults stand for everything not named here.
TRAINING_DEFAULTS = dict(
    output_dir="output/tiny-qwen2-vl-lora",
    per_device_train_batch_size=8,
    gradient_accumulation_steps=1,
    learning_rate=2e-3,
    num_train_epochs=3,
    lr_scheduler_type="cosine",
    warmup_steps=10,
    logging_steps=10,
    save_strategy="no",
    report_to=["swanlab"],
    gradient_checkpointing=False,
    remove_unused_columns=False,
    dataloader_num_workers=0,
    seed=42,
)


@dataclass
class EvalConfig:
    run_dir: str = "output/tiny-qwen2-vl-lora"
    """test.py: the training run to evaluate (its saved config names the model, data and image limits)."""
    eval_batch_size: int = 16
    """test.py: images per generation batch."""
    max_new_tokens: int = 64
    """test.py: longest generated answer."""
    test_img_dir: str = "test-img"
    """test.py: a folder of extra images to answer about (any that are there)."""
