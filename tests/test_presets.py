"""The presets in scripts/ (each the recipe of a real checkpoint) and the stop that keeps a real checkpoint from training
with the offline tiny model's settings (config.refuse_tiny_defaults)."""

import shutil
from pathlib import Path

import pytest
import yaml
from transformers import TrainingArguments

import config
import data2csv
import train
from vlmtune import tiny

PRESETS = {path.name: yaml.safe_load(path.read_text(encoding="utf-8")) for path in config.presets()}
TRAIN = (config.DataConfig, config.ModelConfig, config.TuneConfig, TrainingArguments)  # as train.py parses them
STEPS = {  # the groups each step parses, and its defaults
    "data2csv.py": ((config.DataConfig,), None),
    "csv2json.py": ((config.DataConfig,), None),
    "load_model.py": ((config.ModelConfig,), None),
    "train.py": (TRAIN, config.training_defaults()),
    "test.py": ((config.EvalConfig,), None),
}
# TrainingArguments checks --bf16 against this machine's GPU and imports deepspeed for --deepspeed; a test machine may
# have neither (scripts/zero3.json itself is checked in test_scripts.py).
THIS_MACHINE = ["--use_cpu", "true", "--deepspeed", ""]
# Qwen2-VL-2B-Instruct's own parameter count (2,208,985,600: the "2.21B params" of its model card), in the message.
QWEN2_VL_2B_MESSAGE = (
    "{model_dir} holds a model of 2,209 M parameters, not one of the offline tiny builds (under 100 M), but these "
    "settings are still the tiny model's defaults, set by neither a --config file nor a flag: {settings}.\n"
    "Train it with a preset (flags after it still win):\n"
    "  --config scripts/llava-1.5-7b_okvqa.yaml      llava-hf/llava-1.5-7b-hf, vqa\n"
    "  --config scripts/qwen2-vl-2b_animals10.yaml   Qwen/Qwen2-VL-2B-Instruct, classification\n"
    "  --config scripts/qwen2-vl-2b_coco.yaml        Qwen/Qwen2-VL-2B-Instruct, caption\n"
    "  --config scripts/qwen2-vl-2b_refcocog.yaml    Qwen/Qwen2-VL-2B-Instruct, grounding\n"
    "  --config scripts/qwen2.5-vl-3b_refcocog.yaml  Qwen/Qwen2.5-VL-3B-Instruct, grounding\n"
    "or set {flags} yourself.")


def source_flags(source: str, recipe: dict, tmp_path: Path) -> list[str]:
    """What a user adds after a preset to read `source`: the files and folders it reads (data2csv.INPUTS), made
    empty in tmp_path, and a dataset id for the Hugging Face source where the preset names none."""
    flags = ["--source", source]
    for name, is_folder, _ in data2csv.INPUTS.get(source, []):
        path = tmp_path / name
        if is_folder:
            path.mkdir()
        else:
            path.write_text("")
        flags += [f"--{name}", str(path)]
    if source == "huggingface" and "dataset_id" not in recipe:
        flags += ["--dataset_id", "user/dataset"]
    return flags


@pytest.fixture
def large_model_dir(fixtures_dir, tmp_path) -> str:
    """A model folder holding the real Qwen2-VL-2B-Instruct config.json (no weights: the size check reads none)."""
    shutil.copy(fixtures_dir / "qwen2-vl-2b-instruct" / "config.json", tmp_path)
    return str(tmp_path)


def test_the_presets_are_the_recipes_of_the_readme():
    assert sorted(PRESETS) == ["llava-1.5-7b_okvqa.yaml", "qwen2-vl-2b_animals10.yaml", "qwen2-vl-2b_coco.yaml",
                               "qwen2-vl-2b_refcocog.yaml", "qwen2.5-vl-3b_refcocog.yaml"]
    assert {name: (recipe["base_model"], recipe["task"], recipe["source"]) for name, recipe in PRESETS.items()} == {
        "llava-1.5-7b_okvqa.yaml": ("llava-hf/llava-1.5-7b-hf", "vqa", "vqa"),
        "qwen2-vl-2b_animals10.yaml": ("Qwen/Qwen2-VL-2B-Instruct", "classification", "folder"),
        "qwen2-vl-2b_coco.yaml": ("Qwen/Qwen2-VL-2B-Instruct", "caption", "modelscope"),
        "qwen2-vl-2b_refcocog.yaml": ("Qwen/Qwen2-VL-2B-Instruct", "grounding", "huggingface"),
        "qwen2.5-vl-3b_refcocog.yaml": ("Qwen/Qwen2.5-VL-3B-Instruct", "grounding", "huggingface"),
    }


@pytest.mark.parametrize(("name", "source"), [(name, source) for name, recipe in PRESETS.items()
                                              for source in config.TASK_SOURCES[recipe["task"]]])
def test_every_step_reads_the_preset_with_any_source_of_its_task_after_it(name, source, tmp_path):
    recipe = PRESETS[name]
    preset = ["--config", str(config.PRESETS_DIR / name)]
    flags = source_flags(source, recipe, tmp_path)
    for step, (groups, defaults) in STEPS.items():
        argv = preset + (flags if config.DataConfig in groups else []) + (THIS_MACHINE if step == "train.py" else [])
        parsed = {type(group): group for group in config.parse(argv, *groups, defaults=defaults)}
        if config.DataConfig in parsed:
            data = parsed[config.DataConfig]
            assert (data.task, data.source, data.resolved_data_dir) == (recipe["task"], source, recipe["data_dir"])
            data2csv.check_inputs(data)  # data2csv.py's own check of the source's inputs, before it reads any
        if config.ModelConfig in parsed:
            model = parsed[config.ModelConfig]
            assert (model.base_model, model.image_max_pixels) == (recipe["base_model"], recipe["image_max_pixels"])
        if TrainingArguments in parsed:
            args = parsed[TrainingArguments]
            assert (args.output_dir, args.learning_rate) == (recipe["output_dir"], recipe["learning_rate"])


def test_each_preset_has_data_and_run_folders_of_its_own_named_after_it():
    folders = {}
    for name in PRESETS:
        data, args = config.parse(["--config", str(config.PRESETS_DIR / name), *THIS_MACHINE], config.DataConfig,
                                  TrainingArguments, defaults=config.training_defaults())
        folders[name] = (data.resolved_data_dir, args.output_dir)
    assert folders == {name: (f"input/{Path(name).stem.replace('_', '-')}",
                              f"output/{Path(name).stem.replace('_', '-')}") for name in PRESETS}
    assert len({output_dir for _, output_dir in folders.values()}) == len(PRESETS)


def test_given_names_the_settings_set_by_the_config_file_and_the_flags_which_win(tmp_path):
    preset = tmp_path / "p.yaml"
    preset.write_text(yaml.safe_dump({"learning_rate": 0.5, "lora_r": 8, "num_samples": 3}))
    argv = ["--config", str(preset), "--lora-r", "4", "--no_remove_unused_columns", "--output_d", "out"]
    # num_samples is DataConfig's, not one of these groups': the step that reads it is another.
    assert config.given(argv, config.TuneConfig, TrainingArguments) == {
        "learning_rate": 0.5, "lora_r": 4, "remove_unused_columns": False, "output_dir": "out"}
    assert config.given([], config.TuneConfig, TrainingArguments) == {}


def test_a_large_model_with_the_tiny_defaults_stops_naming_folder_size_settings_and_presets(large_model_dir):
    with pytest.raises(SystemExit) as stop:
        config.refuse_tiny_defaults(["--model_dir", large_model_dir], *TRAIN)
    assert str(stop.value) == QWEN2_VL_2B_MESSAGE.format(
        model_dir=large_model_dir,
        settings="--learning_rate 0.002, --image_max_pixels 12544, --output_dir output/tiny-qwen2-vl-lora",
        flags="--learning_rate, --image_max_pixels, --output_dir")


def test_the_stop_names_only_the_settings_still_at_tiny_values(large_model_dir):
    with pytest.raises(SystemExit) as stop:
        config.refuse_tiny_defaults(["--model_dir", large_model_dir, "--learning-rate", "1e-4", "--output_dir",
                                     "output/mine"], *TRAIN)
    assert str(stop.value) == QWEN2_VL_2B_MESSAGE.format(
        model_dir=large_model_dir, settings="--image_max_pixels 12544", flags="--image_max_pixels")


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_a_large_model_trains_with_any_preset(large_model_dir, name):
    assert config.refuse_tiny_defaults(["--config", str(config.PRESETS_DIR / name), "--model_dir",
                                        large_model_dir], *TRAIN) is None


def test_a_large_model_trains_with_the_three_flags(large_model_dir):
    assert config.refuse_tiny_defaults(["--model_dir", large_model_dir, "--learning_rate", "1e-4",
                                        "--image_max_pixels", "401408", "--output_dir", "output/mine"], *TRAIN) is None


def test_a_tiny_model_trains_with_the_tiny_defaults(tmp_path):
    tiny.tiny_qwen2_vl_config().save_pretrained(tmp_path)
    assert config.refuse_tiny_defaults(["--model_dir", str(tmp_path)], *TRAIN) is None


def test_train_stops_before_building_the_training_arguments(large_model_dir):
    # Built with --deepspeed, TrainingArguments would import deepspeed (absent here) or, with ZeRO-3, make the size
    # check count a partitioned model; the stop comes first.
    with pytest.raises(SystemExit) as stop:
        train.main(["--model_dir", large_model_dir, "--deepspeed", "scripts/zero3.json"])
    assert str(stop.value).startswith(f"{large_model_dir} holds a model of 2,209 M parameters")


def test_train_goes_on_past_the_stop_with_a_preset(large_model_dir, tmp_path):
    with pytest.raises(SystemExit) as stop:
        train.main(["--config", str(config.PRESETS_DIR / "qwen2-vl-2b_coco.yaml"), "--model_dir", large_model_dir,
                    "--data_dir", str(tmp_path / "data"), "--use_cpu", "true"])
    assert str(stop.value) == (f"No {tmp_path / 'data' / 'train.json'}: run `python data2csv.py` and "
                               f"`python csv2json.py` first (or pass --data_dir).")


def test_the_readme_table_lists_each_preset_with_its_model_task_and_source():
    rows = [line.split(" | ") for line in (config.PRESETS_DIR.parent / "README.md").read_text().splitlines()
            if line.startswith("| `scripts/")]
    assert {row[0].strip("|` ").removeprefix("scripts/"): (row[1].strip("`"), row[2], row[3]) for row in rows} == {
        name: (recipe["base_model"], recipe["task"], recipe["source"]) for name, recipe in PRESETS.items()}
