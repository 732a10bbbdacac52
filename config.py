"""Every setting of the five steps, in one place.

Each script parses the groups it needs together with transformers' TrainingArguments, so every Trainer flag works as
it is documented there (`--deepspeed scripts/zero3.json`, `--bf16 true`, `--report_to swanlab`).
The defaults below are the offline job (synthetic world, tiny model, CPU). A YAML file given with `--config FILE`
replaces defaults (the presets for real checkpoints in scripts/, such as `--config scripts/qwen2-vl-2b_coco.yaml`);
flags on the command line win over both.

    python train.py --config scripts/qwen2-vl-2b_coco.yaml --learning_rate 5e-5
"""

import argparse
import ast
import difflib
import functools
import inspect
import os
import sys
import textwrap
from dataclasses import dataclass, fields
from pathlib import Path

import yaml
# HfArgumentParser alone: torch, TrainingArguments and the model classes are imported where a script needs them,
# so that the data steps and every --help start in a second or two, not the ~8 s those imports take on 2 cores.
from transformers import HfArgumentParser

# The sources each task reads (data2csv.py): a source holds the labels of some tasks only.
TASK_SOURCES = {
    "caption": ("synthetic", "modelscope", "huggingface", "coco"),
    "classification": ("synthetic", "folder"),
    "grounding": ("synthetic", "coco", "huggingface"),
    "vqa": ("synthetic", "vqa", "lxmert", "rows", "llava"),
}
SOURCES = ("synthetic", "modelscope", "huggingface", "coco", "folder", "vqa", "lxmert", "rows", "llava")
DEFAULT_DATASET_IDS = {"modelscope": "modelscope/coco_2014_caption"}  # the other sources have no default


@dataclass
class DataConfig:
    task: str = "caption"
    """What the model learns: caption | classification | grounding | vqa. Each reads some sources only (--source):
    caption synthetic | modelscope | huggingface | coco; classification synthetic | folder; grounding synthetic |
    coco | huggingface; vqa synthetic | vqa | lxmert | rows | llava."""
    source: str = "synthetic"
    """Where data2csv.py reads records: synthetic | modelscope | huggingface | coco | folder | vqa (official VQA v2 /
    OK-VQA files) | lxmert (LXMERT-style soft-score files) | rows (JSON or JSON Lines rows) | llava."""
    dataset_id: str = ""
    """Hub dataset id; empty means the source's default (modelscope: modelscope/coco_2014_caption)."""
    dataset_subset: str = ""
    """Hub subset (ModelScope subset_name / Hugging Face config name); empty means the source's default."""
    dataset_split: str = "train"
    """Hub split to read, or several, comma-separated (val,test). data.csv's `split` column keeps each row's, by the
    split's name: train; val, validation or dev; test (another name, such as testA, gives none)."""
    image_column: str = "image"
    """Hugging Face and rows sources: the column holding the image (rows: its path)."""
    caption_column: str = "caption"
    """Hugging Face source, caption: the column holding the caption (a string, or a list of them)."""
    expression_column: str = "answer"
    """Hugging Face source, grounding: the column holding the referring expression, a string or a list of them (one
    record each): lmms-lab/RefCOCOg's `answer`; jxu124/refcocog's `captions`."""
    bbox_column: str = "bbox"
    """Hugging Face source, grounding: the column holding the box, in pixels of the image."""
    bbox_format: str = "xywh"
    """Hugging Face source, grounding: how --bbox_column holds the box: xywh (COCO's x, y, width, height:
    lmms-lab/RefCOCOg) or xyxy (x1, y1, x2, y2: jxu124/refcocog)."""
    dataset_images: str = ""
    """Hugging Face and rows sources: the folder that relative image paths in --image_column are read against
    (jxu124/refcocog's `image_path` is coco/train2014/COCO_train2014_....jpg); empty means paths are used as they
    are."""
    coco_annotations: str = ""
    """coco source: path of an official captions_*.json (caption) or instances_*.json (grounding), or several,
    comma-separated, one a split, which its name says (captions_train2017.json,captions_val2017.json)."""
    coco_images: str = ""
    """coco source: the folder holding its images, or one for each file of --coco_annotations, comma-separated."""
    folder_dir: str = ""
    """folder source (classification): a folder holding one folder of images per class (Animals-10's raw-img/), or
    split folders holding them (train/ and val/, train_data/ and test_data/, ...: the split kept in data.csv)."""
    label_map: str = ""
    """folder source: the label of each class folder. `animals10` (Animals-10's Italian folder names in English), a JSON
    file, or inline JSON ('{"cane": "dog"}'); a folder it does not name is reported, not read. Empty means the folder
    names are the labels."""
    class_aliases: str = ""
    """csv2json.py, classification: other names of the classes that answers may use, for test.py to read them by, as
    a JSON file or inline JSON of name -> class ('{"formica": "ants", "蚂蚁": "ants"}'); every class must be a label
    of data.csv. Without it an answer is read by the class names, in the singular or plural and any case ("It is a
    bee." is bees). Empty means none."""
    vqa_questions: str = ""
    """vqa source: an official VQA v2 / OK-VQA questions file (OpenEnded_mscoco_train2014_questions.json), or
    several, comma-separated, one a split, as --vqa_annotations lists them."""
    vqa_annotations: str = ""
    """vqa source: its official annotations file (mscoco_train2014_annotations.json), ten answers a question; or one
    for each questions file, comma-separated, whose names say the split (mscoco_val2014_annotations.json)."""
    vqa_images: str = ""
    """vqa and lxmert sources: the folder of the COCO images (COCO_train2014_000000000009.jpg, found by the 12-digit
    image id); vqa: or one for each questions file, comma-separated."""
    lxmert_json: str = ""
    """lxmert source (vqa): an LXMERT-style file, a JSON list of {"question_id", "img_id", "sent", "label": {answer:
    soft score}} (LXMERT's data/vqa/minival.json, or OK-VQA's made the same way); each answer is scored by its soft
    score. Its images are in --vqa_images."""
    rows_file: str = ""
    """rows source (vqa): a JSON list of rows (.json) or a row a line (.jsonl), each with a question, an image path
    and one answer or a list (--question_column, --image_column, --answers_column; --dataset_images for relative
    paths). A record's id is its line (.jsonl) or place in the list (.json)."""
    question_column: str = "question"
    """rows source: the field of a row holding the question."""
    answers_column: str = "answers"
    """rows source: the field of a row holding the answers: one (a string, scored by exact match) or a list (scored
    as VQA's human answers, ten of them for the official accuracy)."""
    llava_json: str = ""
    """llava source (vqa): a LLaVA conversation file ([{"id", "image", "conversations": [{"from", "value"}, ...]}])."""
    llava_images: str = ""
    """llava source: the folder that the file's image paths are relative to."""
    num_samples: int = 600
    """How many records data2csv.py writes of each split (the tutorial uses 500 COCO records); 0 means all. Its
    summary says how many a cut left out."""
    synthetic_seed: int = 0
    """synthetic source: which world to draw (scenes are deterministic from this seed and their index)."""
    synthetic_image_size: int = 112
    """synthetic source: image width and height in pixels."""
    data_dir: str = ""
    """Folder of the dataset (images/, data.csv, train.json, val.json); empty means input/<source> for captions and
    input/<source>-<task> for the other tasks."""
    val_size: float = 0.15
    """csv2json.py: images held out for validation, as a fraction (< 1) or a count (>= 1), where data.csv gives no
    train and val (or test) split of its own."""
    split_seed: int = 42
    """csv2json.py: seed of the train/validation split."""
    prompt: str = "Describe this image."
    """caption task only: the user's instruction placed after the image in every conversation. The other tasks ask a
    fixed question built from the row (vlmtune/formats.py)."""

    def __post_init__(self):
        if self.task not in TASK_SOURCES:
            raise ValueError(f"--task must be one of {', '.join(TASK_SOURCES)}, got {self.task!r}")
        if self.source not in SOURCES:
            raise ValueError(f"--source must be one of {', '.join(SOURCES)}, got {self.source!r}")
        if self.source not in TASK_SOURCES[self.task]:
            serves = [task for task, sources in TASK_SOURCES.items() if self.source in sources]
            raise ValueError(f"--source {self.source} has no data for --task {self.task}: --task {self.task} reads "
                             f"--source {' | '.join(TASK_SOURCES[self.task])}, and --source {self.source} serves "
                             f"--task {' | '.join(serves)}")
        if self.bbox_format not in ("xywh", "xyxy"):
            raise ValueError(f"--bbox_format must be xywh or xyxy, got {self.bbox_format!r}")
        if self.class_aliases and self.task != "classification":
            raise ValueError(f"--class_aliases names classes, for --task classification, not --task {self.task}")
        if self.val_size <= 0:
            raise ValueError(f"--val_size must be a fraction (0 < x < 1) or a count (>= 1), got {self.val_size}")

    @property
    def resolved_dataset_id(self) -> str:
        return self.dataset_id or DEFAULT_DATASET_IDS.get(self.source, "")

    @property
    def resolved_data_dir(self) -> str:
        # One folder per (source, task): the synthetic world makes every task, and one folder holds one CSV format.
        if self.data_dir:
            return self.data_dir
        return f"input/{self.source}" if self.task == "caption" else f"input/{self.source}-{self.task}"


@dataclass
class ModelConfig:
    base_model: str = "tiny-qwen2-vl"
    """load_model.py: a hub model id (Qwen/Qwen2-VL-2B-Instruct) or an offline tiny model (tiny-qwen2-vl)."""
    hub: str = "modelscope"
    """load_model.py: where a hub id is downloaded from: modelscope | huggingface (HF_ENDPOINT picks a mirror)."""
    model_dir: str = ""
    """Local folder of the base model; empty means models/<last part of base_model>."""
    pretrain_steps: int = 1500
    """load_model.py, tiny models only: steps of the short pretraining on the synthetic world."""
    pretrain_workers: int = 0
    """load_model.py, tiny models only: processes that render and process the pretraining's scenes beside the
    training process (0: in it). 1 speeds up a build given fewer torch threads than cores (the test suite's); where
    the threads already use every core, it gains nothing. The model is the same to the bit either way."""
    trust_remote_code: bool = False
    """Run code shipped inside a model repository. Off: the supported families need none."""
    image_min_pixels: int = 3136
    """Qwen resize: an image smaller than this many pixels is scaled up (56 x 56)."""
    image_max_pixels: int = 112 * 112
    """Qwen resize: an image larger than this many pixels is scaled down (one image token per 28 x 28 pixels)."""

    def __post_init__(self):
        if self.pretrain_workers < 0:
            raise ValueError(f"--pretrain_workers must be 0 or more, got {self.pretrain_workers}")
        if self.hub not in ("modelscope", "huggingface"):
            raise ValueError(f"--hub must be modelscope or huggingface, got {self.hub!r}")
        if not 0 < self.image_min_pixels <= self.image_max_pixels:
            raise ValueError(f"--image_min_pixels ({self.image_min_pixels}) must be positive and at most "
                             f"--image_max_pixels ({self.image_max_pixels})")

    @property
    def resolved_model_dir(self) -> str:
        return self.model_dir or f"models/{self.base_model.rstrip('/').split('/')[-1]}"


@dataclass
class TuneConfig:
    language: str = "lora"
    """How the language model trains: lora, full or frozen."""
    vision: str = "frozen"
    """How the vision encoder trains: frozen, lora (every linear layer of its blocks) or full."""
    projector: str = "frozen"
    """How the projector (Qwen's patch merger, LLaVA's multi_modal_projector) trains: frozen or full."""
    vision_lr: float | None = None
    """Learning rate of the vision encoder's trained weights; default --learning_rate."""
    projector_lr: float | None = None
    """Learning rate of the projector; default --learning_rate (LLaVA-1.5's OK-VQA recipe uses 2e-5)."""
    load_in_4bit: bool = False
    """QLoRA: load the language model in 4-bit NF4 (bitsandbytes, CUDA GPU only); needs --language lora."""
    lora_r: int = 64
    """LoRA rank."""
    lora_alpha: int = 16
    """LoRA scaling numerator (the update is scaled by lora_alpha / lora_r)."""
    lora_dropout: float = 0.05
    """Dropout on the LoRA input."""
    lora_modules: str = "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj"
    """Comma-separated projection names that get LoRA in the language model (with --vision lora, every linear
    layer of the vision blocks gets it too)."""
    max_length: int = 1024
    """Longest training sample in tokens, images included; longer ones are dropped and reported, never cut."""
    logits: str = "supervised"
    """Which positions are projected onto the vocabulary (the same loss each way; the projection dominates a small
    model's step with Qwen's 151,936 tokens): supervised (only the positions each row's loss reads), suffix (the
    batch's reply positions onward, one span for all rows) or all."""
    packing: bool = False
    """Train on padding-free batches: each micro-batch's examples one after the other in one row, each with its own
    position ids (Qwen's M-RoPE from the model's get_rope_index) and attention to itself only, so no position is
    spent on padding; the same loss and gradients as the padded batch. Checked against the model at start: a model
    that does not keep packed examples apart is refused."""
    frozen_in_graph: bool = False
    """With --gradient_checkpointing: hook every input embedding, a frozen vision encoder's too, as transformers does,
    which back-propagates and recomputes that frozen encoder. Off: only what trains is in the gradient graph (the same
    loss and gradients); kept for benchmarks and the equivalence test."""
    eval_samples: int = 64
    """With --eval_strategy steps|epoch: how many distinct validation questions (the first of val.json) each
    evaluation answers by generation for the task's metric (eval_cider, eval_accuracy, eval_acc@0.5,
    eval_vqa_accuracy), beside the validation loss over all of val.json; 0 means all. test.py --eval_samples N
    scores the same questions."""
    early_stopping_patience: int = 0
    """Stop training after this many evaluations without a better --metric_for_best_model (which needs
    --load_best_model_at_end); 0 means never."""

    def __post_init__(self):
        from vlmtune.collator import LOGITS
        from vlmtune.parts import MODES

        for part, modes in MODES.items():
            if getattr(self, part) not in modes:
                raise ValueError(f"--{part} {getattr(self, part)!r}: choose one of {', '.join(modes)}")
        if all(getattr(self, part) == "frozen" for part in MODES):
            raise ValueError("--language, --vision and --projector are all frozen: nothing would train")
        if self.logits not in LOGITS:
            raise ValueError(f"--logits {self.logits!r}: choose one of {', '.join(LOGITS)}")
        if self.load_in_4bit and self.language != "lora":
            raise ValueError(f"--load_in_4bit (QLoRA) trains LoRA on a 4-bit language model: it needs --language "
                             f"lora, not {self.language}")

    @property
    def modes(self) -> dict[str, str]:
        return {"vision": self.vision, "projector": self.projector, "language": self.language}

    @property
    def module_names(self) -> list[str]:
        return [name.strip() for name in self.lora_modules.split(",") if name.strip()]


@functools.cache
def training_defaults() -> dict:
    """The offline job's training settings; the Trainer's own defaults stand for everything not named here.
    (A function: its CUDA and worker defaults import torch, which the data steps do not need.)"""
    import torch

    from vlmtune.batching import default_workers

    return dict(
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
        prediction_loss_only=True,  # an evaluation's loss without gathering logits; the task metric comes by generation
        dataloader_num_workers=default_workers(),  # image decoding and the processor beside the training process
        seed=42,
        # bf16 autocast wherever the GPU has it: frozen weights load in bf16, trained ones stay fp32 (modeling.py).
        bf16=torch.cuda.is_available() and torch.cuda.is_bf16_supported(),
        # On a machine without CUDA: the CPU, also when several processes are launched (they then join with gloo; with
        # use_cpu off they would each train alone on the same batches).
        use_cpu=not torch.cuda.is_available(),
    )


def is_training_arguments(group) -> bool:
    """Whether a parse group is transformers' TrainingArguments (or a subclass), without importing it here."""
    module = sys.modules.get("transformers.training_args")
    return module is not None and isinstance(group, type) and issubclass(group, module.TrainingArguments)


# The help of TrainingArguments flags whose default the project sets otherwise (transformers' own text would be
# wrong for train.py); `document` puts it in --help.
TRAINING_HELP = {
    "train_sampling_strategy": (
        "Sampler for training: random | sequential | group_by_length | batch_rebalance. group_by_length batches "
        "examples of similar token counts (drop_overlong's count, no pixels read) and pads less; it is not the "
        "default because where length follows the content (one kind of VQA question, one kind of expression) its "
        "batches hold one kind each, which the tiny model's learning tests showed to learn worse at the same steps. "
        "train.py prints the padding left at the end"),
    "dataloader_num_workers": (
        "Processes that open and resize the images and run the processor while the model trains (0: in the "
        "training process). The default is the machine's: 2 a GPU process where it has 4 cores or more, 1 with 2 "
        "or 3, and 0 on a machine without a GPU, where every core already computes the model and a worker competes "
        "with it for them"),
}


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
    eval_samples: int = 0
    """test.py: score the first N distinct questions of val.json only (0: all), the ones training's evaluation
    answers with the same --eval_samples."""


@dataclass
class DemoConfig:
    run_dir: str = EvalConfig.run_dir
    """demo.py: the training run to try (its saved config names the model, data and image limits), as test.py's."""
    port: int = 7860
    """demo.py: the port of the app on 127.0.0.1 (this machine only; it never makes a public share link)."""
    max_new_tokens: int = EvalConfig.max_new_tokens
    """demo.py: longest generated answer, test.py's by default (give the --max_new_tokens test.py had to see its
    answers)."""


def parse(argv, *groups, defaults: dict | None = None):
    """Parse argv into the dataclass `groups`: `defaults`, then a YAML file named by --config, then flags, each
    replacing the one before.

    Why not HfArgumentParser.parse_yaml_file: it reads the file alone, with no way for a flag to override a value.
    Bad input (an unknown flag, a value a group refuses, a broken --config file) stops the script with one message,
    `<script>: what is wrong`, exit status 1, and no traceback.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = stop_on_error(HfArgumentParser(groups))
    parser.add_argument("--config", default=None, help="YAML file whose keys replace the defaults; flags win.")
    document(parser, groups)
    parser.set_defaults(**(defaults or {}))
    # One preset serves every step: each script takes its own groups' keys and leaves the others' alone.
    mine = {f.name for group in groups for f in fields(group)}
    parser.set_defaults(**{key: value for key, value in read_config_file(argv, parser).items() if key in mine})
    try:
        *parsed, unused = parser.parse_args_into_dataclasses(argv, look_for_args_file=False,
                                                             return_remaining_strings=True)
    except ValueError as error:  # a dataclass's __post_init__ (ours or TrainingArguments') refused a value
        raise SystemExit(f"{parser.prog}: {error}") from None
    if unused:
        parser.error(unknown_flags_message(unused, parser))
    return [p for p in parsed if isinstance(p, groups)]


def script_name() -> str:
    """The step script (train.py, csv2json.py, ...) that called into this module, for its messages.

    argparse names the program after sys.argv[0], which is pytest or accelerate's launcher when a test or train.sh
    runs a script's main(): the calling script is the first frame, outwards, of a file beside this one."""
    here = Path(__file__).resolve()
    frame = sys._getframe(1)
    while frame is not None:
        path = Path(frame.f_globals.get("__file__") or here).resolve()
        if path.parent == here.parent and path != here:
            return path.name
        frame = frame.f_back
    return Path(sys.argv[0]).name


def stop_on_error(parser):
    """The parser, its errors made `raise SystemExit("<script>: message")`: one line and exit status 1, where
    argparse prints its whole usage (hundreds of TrainingArguments flags) before the message and exits with 2."""
    parser.prog = script_name()

    def error(message):
        raise SystemExit(f"{parser.prog}: {message}")

    parser.error = error  # argparse reports every error of parsing through self.error
    return parser


def unknown_flags_message(unused: list[str], parser) -> str:
    """What to say of the argv strings that no flag took: each unknown flag with the known flag it most resembles."""
    known = [option for action in parser._actions for option in action.option_strings]  # no public list of them
    flags = [text.split("=", 1)[0] for text in unused if text.startswith("-")]
    if not flags:
        return f"unexpected values {' '.join(unused)} (every value follows its --flag); see `--help`"
    parts = []
    for flag in flags:
        close = difflib.get_close_matches(flag, known, n=1)
        parts.append(f"{flag} (did you mean {close[0]}?)" if close else flag)
    return f"unknown flag{'s' if len(parts) > 1 else ''} {', '.join(parts)}: see `python {parser.prog} --help`"


def attribute_docs(group) -> dict[str, str]:
    """Field name -> the docstring written under the field in the class body, where each setting of this file is
    documented once. Python keeps no such docstring at run time, so the class's source is read."""
    body = ast.parse(textwrap.dedent(inspect.getsource(group))).body[0].body
    docs = {}
    for node, after in zip(body, body[1:]):
        if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and isinstance(after, ast.Expr)
                and isinstance(after.value, ast.Constant) and isinstance(after.value.value, str)):
            docs[node.target.id] = " ".join(after.value.value.split())
    return docs


def document(parser, groups) -> None:
    """Give each of this project's flags its documentation in --help (the parser's formatter adds the default in
    force, a preset's included). TrainingArguments' flags carry transformers' own help already."""
    docs = {name: doc for group in groups if not is_training_arguments(group)
            for name, doc in attribute_docs(group).items()}
    if any(is_training_arguments(group) for group in groups):
        docs |= TRAINING_HELP
    for action in parser._actions:  # argparse keeps no public list of its actions
        # the flag itself, not HfArgumentParser's --no_<flag> beside a boolean that defaults to true
        if action.dest in docs and f"--{action.dest}" in action.option_strings:
            action.help = docs[action.dest].replace("%", "%%")  # argparse formats help with %


def read_config_file(argv: list, parser) -> dict:
    """The values of the YAML file that argv names with --config ({} without one); an unknown key is an error."""
    if "--config" not in argv:
        return {}
    at = argv.index("--config")
    if at + 1 >= len(argv):
        parser.error("--config needs a YAML file")
    if not os.path.isfile(argv[at + 1]):
        parser.error(f"--config {argv[at + 1]}: no such file")
    values = read_yaml(argv[at + 1], parser)
    from transformers import TrainingArguments  # a preset holds every step's keys, the Trainer's too

    groups = (DataConfig, ModelConfig, TuneConfig, EvalConfig, DemoConfig, TrainingArguments)
    everywhere = {f.name for group in groups for f in fields(group)}
    unknown = sorted(set(values) - everywhere)
    if unknown:
        parser.error(f"{argv[at + 1]}: unknown keys {unknown}; see `--help` for the valid ones")
    return values


def read_yaml(path: str, parser) -> dict:
    """The mapping a --config file holds ({} for an empty file); a file that is no YAML mapping is a parser error
    naming the file (and the line, for a syntax error)."""
    try:
        with open(path, encoding="utf-8") as f:
            values = yaml.safe_load(f)
    except UnicodeDecodeError as error:
        parser.error(f"--config {path}: byte {error.start} is not UTF-8: save the file as UTF-8")
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or str(error)
        parser.error(f"--config {path}{where}: not valid YAML ({problem}): fix the file (key: value lines)")
    if values is None:
        return {}
    if not isinstance(values, dict):
        parser.error(f"--config {path} holds a YAML {type(values).__name__}, not a mapping of settings: write one "
                     "`key: value` line per setting (see the presets in scripts/)")
    return values


def given(argv, *groups) -> dict:
    """The settings of `groups` that argv sets itself, with their values: the keys of its --config file, then its
    flags, which win as they do in `parse`. Every other setting is left at its default.

    The flags are read by the parser `parse` uses, so `--learning-rate`, `--no_bf16` and abbreviations count too.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = stop_on_error(HfArgumentParser(groups, add_help=False))  # --help is for `parse` to answer
    parser.add_argument("--config", default=None)
    names = {f.name for group in groups for f in fields(group)}
    # argparse puts a default only where the namespace lacks the name: one still `unset` after parsing was not given.
    unset = object()
    flags, _ = parser.parse_known_args(argv, namespace=argparse.Namespace(**dict.fromkeys(names, unset)))
    chosen = {key: value for key, value in read_config_file(argv, parser).items() if key in names}
    return chosen | {key: value for key, value in vars(flags).items() if key in names and value is not unset}


# Defaults that suit the offline tiny model only: train.py stops a real checkpoint left with any of them.
TINY_ONLY = ("learning_rate", "image_max_pixels", "output_dir")
# The tiny builds have 21 M to 41 M parameters, the smallest real checkpoints of the four families 2 B.
TINY_MAX_PARAMETERS = 100_000_000
PRESETS_DIR = Path(__file__).resolve().parent / "scripts"


def presets() -> list[Path]:
    """The presets in scripts/: every YAML file there but accelerate's launch configs (accelerate*.yaml)."""
    return sorted(path for path in PRESETS_DIR.glob("*.yaml") if not path.name.startswith("accelerate"))


def refuse_tiny_defaults(argv, *groups) -> None:
    """Stop when the base model is no tiny build and TINY_ONLY settings are left at the tiny model's defaults, with
    one message naming the model folder, its size, those settings and the presets.

    The size decides, never the name: parameters counted from the folder's config.json on the meta device, no weights
    read. Call it before `parse`: under --deepspeed ZeRO-3 the TrainingArguments make transformers build any model
    partitioned across the GPUs, every parameter empty, and the count would be 0.
    """
    chosen = given(argv, *groups)
    left = [name for name in TINY_ONLY if name not in chosen]
    try:
        model_cfg = ModelConfig(**{f.name: chosen[f.name] for f in fields(ModelConfig) if f.name in chosen})
    except ValueError as error:  # as `parse` reports it
        raise SystemExit(f"{script_name()}: {error}") from None
    model_dir = model_cfg.resolved_model_dir
    if not left or not os.path.isfile(os.path.join(model_dir, "config.json")):
        return  # a folder without a model: train.py says so itself
    trust = model_cfg.trust_remote_code
    from vlmtune.modeling import check_model_dir

    check_model_dir(model_dir, trust, config_only=True)  # a text-only model's config: say so, not a traceback
    import torch
    from transformers import AutoConfig, AutoModelForImageTextToText

    with torch.device("meta"):
        skeleton = AutoModelForImageTextToText.from_config(
            AutoConfig.from_pretrained(model_dir, trust_remote_code=trust), trust_remote_code=trust)
    size = sum(parameter.numel() for parameter in skeleton.parameters())
    if size <= TINY_MAX_PARAMETERS:
        return
    tiny = training_defaults() | {"image_max_pixels": ModelConfig.image_max_pixels}
    paths = presets()
    width = max(len(path.name) for path in paths)
    listed = []
    for path in paths:
        with open(path, encoding="utf-8") as f:
            recipe = yaml.safe_load(f)
        listed.append(f"  --config scripts/{path.name:<{width}}  {recipe['base_model']}, {recipe['task']}")
    raise SystemExit(
        f"{model_dir} holds a model of {size / 1e6:,.0f} M parameters, not one of the offline tiny builds (under "
        f"{TINY_MAX_PARAMETERS / 1e6:.0f} M), but these settings are still the tiny model's defaults, set by "
        f"neither a --config file nor a flag: {', '.join(f'--{name} {tiny[name]}' for name in left)}.\n"
        "Train it with a preset (flags after it still win):\n" + "\n".join(listed) + "\n"
        f"or set {', '.join(f'--{name}' for name in left)} yourself.")
