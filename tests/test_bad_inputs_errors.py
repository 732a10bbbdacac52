"""Bad input, errors and faults: each test is one case of the catalogue, its docstring the input and the outcome
("clear error": one message naming the file, record, line or flag and the fix, exit status 1, no traceback;
"handled right": the fault leaves nothing a later step would read). Real faults are the oracles: /dev/full for a full
disk, the real reference configs for model folders, a real kill simulated where the fault is a kill."""

import json
import os
import shutil
import subprocess
import sys
import types
from pathlib import Path

import pytest
from PIL import Image

import csv2json
import data2csv
import load_model
import merge
import test as test_script
import train
from vlmtune import formats, modeling, saving
from vlmtune.collator import TrainCollator, UnreadableImage
from vlmtune.generation import generate

ROOT = Path(__file__).resolve().parents[1]
FULL = "/dev/full"  # every write there fails with ENOSPC, as on a full disk


def _err_dataset(folder: Path, n: int = 6) -> Path:
    """A small synthetic caption dataset with train.json and val.json (csv2json.py's real output)."""
    data2csv.main(["--data_dir", str(folder), "--num_samples", str(n), "--synthetic_image_size", "56"])
    csv2json.main(["--data_dir", str(folder), "--val_size", "2"])
    return folder


def _err_run(args: list[str], code: str | None = None) -> subprocess.CompletedProcess:
    """A script run as a user runs it, stdout and stderr together."""
    command = [sys.executable, *args] if code is None else [sys.executable, "-c", code]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, PYTHONWARNINGS="ignore"))


def _err_train_args(data_dir, model_dir, out_dir, *more) -> list[str]:
    return ["--data_dir", str(data_dir), "--model_dir", str(model_dir), "--output_dir", str(out_dir),
            "--max_steps", "1", "--per_device_train_batch_size", "2", "--report_to", "none", "--use_cpu", "true",
            "--max_length", "4096", *more]


def _err_model_folder(tmp_path, fixture: Path, config_edit=None, files=("config.json",)) -> Path:
    """A model folder holding some real files of a fixture folder, the config edited by `config_edit`."""
    folder = tmp_path / f"model-{fixture.name}"
    folder.mkdir()
    for name in files:
        shutil.copyfile(fixture / name, folder / name)
    if config_edit:
        config = json.loads((folder / "config.json").read_text())
        (folder / "config.json").write_text(json.dumps(config_edit(config)))
    return folder


# ---------------------------------------------------------------- flags and --config


@pytest.mark.parametrize(("module", "argv", "flag"), [
    (csv2json, ["--val_sise", "3"], "--val_sise (did you mean --val_size?)"),
    (test_script, ["--eval_batchsize", "2"], "--eval_batchsize (did you mean --eval_batch_size?)"),
    (load_model, ["--basemodel", "x"], "--basemodel (did you mean --base_model?)"),
])
def test_unknown_flag_is_named_with_the_closest_known_one(module, argv, flag):
    """An unknown flag in csv2json.py, test.py, load_model.py: clear error naming the flag and --help.
    Outcome: clear error."""
    script = Path(module.__file__).name
    with pytest.raises(SystemExit) as stop:
        module.main(argv)
    assert str(stop.value.code).startswith(f"{script}: unknown flag {flag}")
    assert f"`python {script} --help`" in str(stop.value.code)


def test_unknown_flag_in_train_py_is_named(tiny_model_dir):
    """An unknown flag in train.py (parsed with the TrainingArguments): clear error naming it.
    Outcome: clear error."""
    with pytest.raises(SystemExit, match=r"^train\.py: unknown flag --learnig_rate \(did you mean --learning_rate\?\)"):
        train.main(["--model_dir", str(tiny_model_dir), "--learnig_rate", "1e-4"])


def test_unknown_flag_in_merge_py_is_named():
    """An unknown flag in merge.py (argparse): clear error `merge.py: ...`, not argparse's usage and exit 2.
    Outcome: clear error."""
    with pytest.raises(SystemExit, match=r"^merge\.py: unrecognized arguments: --run-dir x$"):
        merge.main(["--run-dir", "x"])


@pytest.mark.parametrize(("argv", "message"), [
    (["--val_size", "0"], "csv2json.py: --val_size must be a fraction (0 < x < 1) or a count (>= 1), got 0.0"),
    (["--val_size", "a third"], "csv2json.py: argument --val_size/--val-size: invalid float value: 'a third'"),
    (["--task", "captions"], "csv2json.py: --task must be one of caption, classification, grounding, vqa, got "
                             "'captions'"),
    (["--task", "grounding", "--source", "folder"], "csv2json.py: --source folder has no data for --task grounding"),
])
def test_invalid_flag_value_is_one_message_naming_the_flag(argv, message):
    """An invalid --val_size, --task or --source (a dataclass's ValueError, argparse's type error): clear error.
    Outcome: clear error."""
    with pytest.raises(SystemExit) as stop:
        csv2json.main(argv)
    assert str(stop.value.code).startswith(message)


def test_invalid_projector_mode_stops_train_py_naming_the_flag(tiny_model_dir):
    """--projector lora (TuneConfig's __post_init__ ValueError) in train.py: clear error naming the flag.
    Outcome: clear error."""
    with pytest.raises(SystemExit, match=r"^train\.py: --projector 'lora': choose one of frozen, full$"):
        train.main(["--model_dir", str(tiny_model_dir), "--projector", "lora"])


def test_yaml_syntax_error_in_config_names_the_file_and_line(tmp_path):
    """A --config file with a YAML syntax error on line 3: clear error naming the file and the line.
    Outcome: clear error."""
    preset = tmp_path / "preset.yaml"
    preset.write_text("task: caption\nval_size: 4\nprompt: [Describe this image.\nsplit_seed: 1\n")
    with pytest.raises(SystemExit) as stop:
        csv2json.main(["--config", str(preset)])
    message = str(stop.value.code)
    assert message.startswith(f"csv2json.py: --config {preset}, line 4, column 11: not valid YAML")
    assert "fix the file" in message


def test_config_file_that_is_a_list_is_refused_naming_the_file(tmp_path):
    """A --config file whose top level is a list, not a mapping: clear error naming the file and the form.
    Outcome: clear error."""
    preset = tmp_path / "preset.yaml"
    preset.write_text("- task: caption\n- val_size: 4\n")
    with pytest.raises(SystemExit) as stop:
        csv2json.main(["--config", str(preset)])
    assert str(stop.value.code) == (f"csv2json.py: --config {preset} holds a YAML list, not a mapping of settings: "
                                    "write one `key: value` line per setting (see the presets in scripts/)")


def test_bad_flag_from_the_shell_prints_one_line_and_exits_1(tmp_path):
    """`python csv2json.py --val_size 1.5` and `python merge.py --bogus` from a shell: the message on stderr, exit
    status 1, no traceback, no usage screen.
    Outcome: clear error."""
    for args, expected in ((["csv2json.py", "--data_dir", str(tmp_path), "--val_size", "1.5", "--bogus"],
                            "csv2json.py: unknown flag --bogus"),
                           (["merge.py", "--bogus"], "merge.py: unrecognized arguments: --bogus")):
        result = _err_run(args)
        assert result.returncode == 1, result.stderr
        assert result.stderr.strip().startswith(expected)
        assert "Traceback" not in result.stderr and "usage:" not in result.stderr


def test_failing_train_sh_ends_with_train_py_message_and_no_accelerate_traceback():
    """`sh train.sh --no_such_flag`: train.py's one message, exit status 1, and no accelerate traceback after it.
    Outcome: clear error."""
    logs = ROOT / "logs"
    before = set(logs.glob("*")) if logs.is_dir() else set()
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    try:
        result = subprocess.run(["sh", "train.sh", "--no_such_flag", "1"], cwd=ROOT, env=env, capture_output=True,
                                text=True, timeout=600)
    finally:
        for path in set(logs.glob("*")) - before:  # the console log this run wrote
            path.unlink()
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "train.py: unknown flag --no_such_flag" in output
    assert "Traceback" not in output and "CalledProcessError" not in output


# ---------------------------------------------------------------- data.csv and the conversation files


def test_non_utf8_byte_in_data_csv_names_file_line_and_byte(tmp_path):
    """data.csv saved in Latin-1 (a caption with é on line 3): clear error naming the file, the line, the byte's
    offset and to save it as UTF-8, not advice to use another --task.
    Outcome: clear error."""
    (tmp_path / "data.csv").write_bytes("id,image_path,caption\na,a.png,A dog.\nb,b.png,A café.\n".encode("latin-1"))
    with pytest.raises(SystemExit) as stop:
        csv2json.main(["--data_dir", str(tmp_path)])
    offset = len(b"id,image_path,caption\na,a.png,A dog.\nb,b.png,A caf")
    assert str(stop.value.code) == (f"csv2json.py: {tmp_path / 'data.csv'}, line 3 (byte {offset}): byte 0xe9 is not "
                                    "UTF-8 (invalid continuation byte): save the file as UTF-8 (in Excel: CSV UTF-8) "
                                    "and run again")


def test_image_deleted_after_csv2json_stops_train_py_naming_record_and_fix(tmp_path, tiny_model_dir):
    """An image deleted after csv2json.py: train.py stops naming the record, the file, how many more, and to run
    csv2json.py again (not a FileNotFoundError traceback).
    Outcome: clear error."""
    data_dir = _err_dataset(tmp_path / "data")
    records = json.loads((data_dir / "train.json").read_text())
    image = data_dir / formats._segments(records[0]["conversations"][0]["value"])[1][1]
    image.unlink()
    with pytest.raises(SystemExit) as stop:
        train.main(_err_train_args(data_dir, tiny_model_dir, tmp_path / "run"))
    message = str(stop.value.code)
    assert message.startswith(f"train.py: {data_dir / 'train.json'}: record {records[0]['id']!r}: image not found: "
                              f"{image}")
    assert "run `python csv2json.py` again" in message
    assert not (tmp_path / "run" / "run_config.json").exists()


def test_image_overwritten_with_garbage_stops_train_py_naming_the_record(tmp_path, tiny_model_dir):
    """An image overwritten with text after csv2json.py: train.py stops before training, naming the record and the
    file, and to run csv2json.py again.
    Outcome: clear error."""
    data_dir = _err_dataset(tmp_path / "data")
    record = json.loads((data_dir / "train.json").read_text())[1]
    image = data_dir / formats._segments(record["conversations"][0]["value"])[1][1]
    image.write_text("not an image any more")
    with pytest.raises(SystemExit) as stop:
        train.main(_err_train_args(data_dir, tiny_model_dir, tmp_path / "run"))
    message = str(stop.value.code)
    assert message.startswith(f"train.py: record {record['id']!r}: image {image} does not open "
                              "(UnidentifiedImageError")
    assert "run `python csv2json.py` again" in message


def _err_truncated_png(path: Path) -> Path:
    """A PNG whose header reads (stored_size works) but whose pixels are cut off: it fails at decode only."""
    Image.new("RGB", (56, 56), (200, 30, 30)).save(path)
    path.write_bytes(path.read_bytes()[:60])
    return path


def test_image_broken_at_its_batch_raises_naming_the_record_in_the_collator(tmp_path, tiny_model_dir):
    """An image whose header reads but whose pixels are cut off, met at its batch: the collator raises
    UnreadableImage naming the record id and the file, not PIL's error deep inside a library.
    Outcome: clear error."""
    from vlmtune.modeling import load_processor

    processor = load_processor(str(tiny_model_dir), 3136, 112 * 112)
    good = tmp_path / "good.png"
    Image.new("RGB", (56, 56), (0, 90, 200)).save(good)
    broken = _err_truncated_png(tmp_path / "broken.png")

    def example(name, path):
        return {"id": name, "messages": [
            {"role": "user", "content": [{"type": "image", "image": str(path)}, {"type": "text", "text": "Hi."}]},
            {"role": "assistant", "content": [{"type": "text", "text": "A square."}]}]}

    collate = TrainCollator(processor)
    assert collate([example("fine", good)])["labels"].shape[0] == 1
    with pytest.raises(UnreadableImage, match=rf"^record 'syn-7': image {broken} does not open \(OSError: .*"
                                              r"run `python csv2json.py` again"):
        collate([example("fine", good), example("syn-7", broken)])
    with pytest.raises(UnreadableImage, match=rf"^record 'val-3': image {broken} does not open"):
        generate(types.SimpleNamespace(eval=lambda: None), processor,  # the images open before the model runs
                  [example("val-3", broken)["messages"][:1]], ids=["val-3"])


def test_empty_val_json_stops_test_py_with_the_fix(tmp_path, tiny_model_dir):
    """An empty val.json ([]): test.py stops naming the file and the fix, not an IndexError.
    Outcome: clear error."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "val.json").write_text("[]\n")
    run_dir = _err_full_run_dir(tmp_path, tiny_model_dir, data_dir)
    with pytest.raises(SystemExit) as stop:
        test_script.main(["--run_dir", str(run_dir)])
    assert str(stop.value.code).startswith(f"test.py: {data_dir / 'val.json'} holds no conversation records: run "
                                           "`python csv2json.py` again")


def test_malformed_val_json_stops_test_py_naming_the_file(tmp_path, tiny_model_dir):
    """A val.json cut short (not valid JSON): test.py stops naming the file, the position and the fix.
    Outcome: clear error."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "val.json").write_text('[{"id": "a", "conversations": [')
    run_dir = _err_full_run_dir(tmp_path, tiny_model_dir, data_dir)
    with pytest.raises(SystemExit) as stop:
        test_script.main(["--run_dir", str(run_dir)])
    assert str(stop.value.code).startswith(f"test.py: {data_dir / 'val.json'}: not valid JSON (Expecting value: "
                                           "line 1 column 32 (char 31)): run `python csv2json.py` again")


def _err_full_run_dir(tmp_path, model_dir: Path, data_dir: Path) -> Path:
    """A fully fine-tuned run's folder (the tiny model's files, linked) with a run_config.json for `data_dir`."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    for path in model_dir.iterdir():
        (run_dir / path.name).symlink_to(path.resolve())
    run = {"data": {"task": "caption", "data_dir": str(data_dir)}, "swanlab": False,
           "model": {"model_dir": str(model_dir), "trust_remote_code": False, "image_min_pixels": 3136,
                     "image_max_pixels": 12544}}
    (run_dir / "run_config.json").write_text(json.dumps(run))
    return run_dir


def test_kill_between_the_renames_of_csv2json_is_refused_then_repaired(tmp_path, monkeypatch):
    """csv2json.py killed after renaming train.json but before val.json (a new split beside the old val.json):
    load_conversations (train.py, test.py) refuses the folder with the fix, and the next csv2json.py repairs it.
    Outcome: handled right."""
    data_dir = _err_dataset(tmp_path / "data", n=8)
    old_val = (data_dir / "val.json").read_text()
    real_replace = os.replace
    calls = []

    def killed_after_the_first(source, target):
        calls.extend([target] if str(target).endswith(".json") else [])  # rejected.csv is renamed before the set
        if len(calls) > 1:
            raise KeyboardInterrupt  # what a kill looks like from inside: the process stops here
        real_replace(source, target)

    monkeypatch.setattr(os, "replace", killed_after_the_first)
    with pytest.raises(KeyboardInterrupt):
        csv2json.main(["--data_dir", str(data_dir), "--val_size", "3", "--split_seed", "7"])
    monkeypatch.setattr(os, "replace", real_replace)
    assert (data_dir / "val.json").read_text() == old_val  # the old split's val.json beside the new train.json
    for name in ("train.json", "val.json"):
        with pytest.raises(ValueError, match=rf"{name}: csv2json.py did not finish writing .* run `python csv2json.py` "
                                             "again"):
            formats.load_conversations(data_dir / name)
    assert not list(data_dir.glob("*.tmp"))
    csv2json.main(["--data_dir", str(data_dir), "--val_size", "3", "--split_seed", "7"])
    train_ids = {r["id"] for r in formats.load_conversations(data_dir / "train.json")}
    val_ids = {r["id"] for r in formats.load_conversations(data_dir / "val.json")}
    assert (len(train_ids), len(val_ids), train_ids & val_ids) == (5, 3, set())
    assert not (data_dir / formats.INCOMPLETE_MARKER).exists()


# ---------------------------------------------------------------- model folders


def test_model_folder_with_a_config_but_no_weights_is_named(tmp_path, fixtures_dir):
    """A folder holding Qwen2-VL-2B's real config.json and processor config but no weights: train.py stops saying
    what it holds and to run load_model.py, not a traceback of from_pretrained.
    Outcome: clear error."""
    folder = _err_model_folder(tmp_path, fixtures_dir / "qwen2-vl-2b-instruct",
                               files=("config.json", "preprocessor_config.json"))
    with pytest.raises(SystemExit) as stop:
        train.main(["--model_dir", str(folder), "--learning_rate", "1e-4", "--image_max_pixels", "12544",
                    "--output_dir", str(tmp_path / "run")])
    assert str(stop.value.code).startswith(
        f"{folder} holds the config of a qwen2_vl model (Qwen2VLForConditionalGeneration) but no weights (no "
        "model.safetensors or pytorch_model.bin, nor a sharded index): the download was cut short")
    assert "run `python load_model.py` again" in str(stop.value.code)


def test_model_folder_whose_index_names_absent_shards_is_named(tmp_path, fixtures_dir):
    """LLaVA-1.5-7B's real model.safetensors.index.json without its shards: clear error counting the missing ones.
    Outcome: clear error."""
    fixture = fixtures_dir / "llava-1.5-7b-hf"
    folder = _err_model_folder(tmp_path, fixture, files=("config.json", "model.safetensors.index.json",
                                                         "preprocessor_config.json"))
    shards = set(json.loads((fixture / "model.safetensors.index.json").read_text())["weight_map"].values())
    with pytest.raises(SystemExit) as stop:
        modeling.check_model_dir(str(folder))
    assert f"but {len(shards)} of the {len(shards)} weight files its model.safetensors.index.json names are missing " \
           f"(such as {sorted(shards)[0]})" in str(stop.value.code)


def test_model_folder_of_a_text_only_qwen2_is_named(tmp_path, fixtures_dir):
    """A folder of a text-only Qwen2 language model (the real Qwen2-VL config made a Qwen2ForCausalLM one): clear
    error that it reads no images and what to give, not "can't load image processor ... huggingface.co".
    Outcome: clear error."""
    def text_only(config):
        for key in ("vision_config", "vision_start_token_id", "vision_end_token_id", "vision_token_id",
                    "image_token_id", "video_token_id", "rope_scaling"):
            config.pop(key, None)
        return config | {"model_type": "qwen2", "architectures": ["Qwen2ForCausalLM"]}

    folder = _err_model_folder(tmp_path, fixtures_dir / "qwen2-vl-2b-instruct", text_only)
    with pytest.raises(SystemExit) as stop:
        test_script.main(["--run_dir", str(_err_full_run_dir(tmp_path, folder, tmp_path))])
    assert str(stop.value.code).startswith(
        f"{folder} holds a qwen2 model (Qwen2ForCausalLM), a text-only language model: it reads no images. give "
        "--model_dir a folder of a vision-language model (Qwen2-VL, Qwen2.5-VL, Qwen3-VL or LLaVA-1.5), or run "
        "`python load_model.py`")


def test_model_folder_of_another_architecture_is_named(tmp_path):
    """A folder of a BERT model (its config saved by transformers): clear error naming what it holds.
    Outcome: clear error."""
    from transformers import BertConfig

    BertConfig().save_pretrained(tmp_path / "bert")
    with pytest.raises(SystemExit) as stop:
        merge.main(["--run_dir", str(_err_adapter_run(tmp_path, tmp_path / "bert"))])
    assert str(stop.value.code).startswith(f"{tmp_path / 'bert'} holds a bert model (no architectures listed), a "
                                           "text-only language model: it reads no images.")


def _err_adapter_run(tmp_path, model_dir: Path) -> Path:
    """A run folder that merge.py takes for a LoRA run on `model_dir` (its adapter is never read: the check of the
    base comes first)."""
    run_dir = tmp_path / "lora-run"
    run_dir.mkdir()
    (run_dir / "adapter_config.json").write_text("{}")
    (run_dir / "run_config.json").write_text(json.dumps({"model": {"model_dir": str(model_dir),
                                                                   "trust_remote_code": False}}))
    return run_dir


# ---------------------------------------------------------------- a full disk


def test_write_atomically_to_a_full_disk_leaves_the_old_file_and_no_temporary(tmp_path):
    """Writing a file on a full disk (its temporary a link to /dev/full): OSError ENOSPC, the old file kept, no
    temporary left behind.
    Outcome: handled right."""
    target = tmp_path / "val.json"
    target.write_text("[old]")
    (tmp_path / "val.json.tmp").symlink_to(FULL)
    with pytest.raises(OSError) as error:
        formats.write_atomically(target, "[new]" * 10000)
    assert error.value.errno == 28
    assert target.read_text() == "[old]"
    assert os.listdir(tmp_path) == ["val.json"]


def test_full_disk_in_csv2json_is_named_and_keeps_the_old_pair(tmp_path):
    """csv2json.py on a full disk (val.json's temporary on /dev/full): clear error "no space left on device while
    writing <folder>", train.json and val.json of the earlier run kept whole, no temporary left.
    Outcome: clear error."""
    data_dir = _err_dataset(tmp_path / "data")
    before = {name: (data_dir / name).read_text() for name in ("train.json", "val.json")}
    (data_dir / "val.json.tmp").symlink_to(FULL)
    with pytest.raises(SystemExit) as stop:
        csv2json.main(["--data_dir", str(data_dir), "--val_size", "3"])
    assert str(stop.value.code) == f"no space left on device while writing {data_dir}: free space and rerun"
    assert {name: (data_dir / name).read_text() for name in before} == before
    assert not list(data_dir.glob("*.tmp")) and not (data_dir / formats.INCOMPLETE_MARKER).exists()
    assert len(formats.load_conversations(data_dir / "val.json")) == 2


def test_full_disk_at_train_py_final_save_leaves_no_half_run(tmp_path, tiny_model_dir):
    """train.py's final save on a full disk (<run>/tokenizer.json on /dev/full): clear error naming the run folder,
    no run_config.json and no adapter left that test.py or merge.py would read.
    Outcome: clear error."""
    data_dir = _err_dataset(tmp_path / "data", n=4)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "tokenizer.json").symlink_to(FULL)
    with pytest.raises(SystemExit) as stop:
        train.main(_err_train_args(data_dir, tiny_model_dir, run_dir))
    assert str(stop.value.code) == f"no space left on device while writing {run_dir}: free space and rerun"
    assert sorted(os.listdir(run_dir)) == ["tokenizer.json"]  # only the link the test made
    with pytest.raises(SystemExit, match="No run_config.json"):
        merge.main(["--run_dir", str(run_dir)])


def test_full_disk_at_a_checkpoint_removes_the_partial_checkpoint(tmp_path, tiny_model_dir):
    """A checkpoint save on a full disk (checkpoint-1/trainer_state.json on /dev/full): clear error naming
    checkpoint-1, and no checkpoint-1 folder left for --resume_from_checkpoint to load.
    Outcome: clear error."""
    data_dir = _err_dataset(tmp_path / "data", n=4)
    checkpoint = tmp_path / "run" / "checkpoint-1"
    checkpoint.mkdir(parents=True)
    (checkpoint / "trainer_state.json").symlink_to(FULL)
    with pytest.raises(SystemExit) as stop:
        train.main(_err_train_args(data_dir, tiny_model_dir, tmp_path / "run", "--save_strategy", "steps",
                                   "--save_steps", "1"))
    assert str(stop.value.code) == f"no space left on device while writing {checkpoint}: free space and rerun"
    assert not checkpoint.exists()
    assert not (tmp_path / "run" / "run_config.json").exists()


def test_full_disk_saving_a_model_folder_leaves_no_temporary_folder(tmp_path, tiny_model_dir):
    """The model folder of load_model.py and merge.py saved on a full disk (tokenizer.json of its temporary folder on
    /dev/full): clear error naming the folder, no temporary folder and no model folder left.
    Outcome: clear error."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    model = AutoModelForImageTextToText.from_pretrained(tiny_model_dir)
    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    out = tmp_path / "merged"
    staging = tmp_path / f"merged.tmp-{os.getpid()}"
    staging.mkdir()
    (staging / "tokenizer.json").symlink_to(FULL)
    with pytest.raises(SystemExit) as stop, saving.stop_on_write_error(out):
        modeling.save_pretrained_atomically(model, processor, str(out))
    assert str(stop.value.code) == f"no space left on device while writing {out}: free space and rerun"
    assert os.listdir(tmp_path) == []


# ---------------------------------------------------------------- temporaries after a failure


def test_ctrl_c_in_data2csv_leaves_no_temporary_file(tmp_path, monkeypatch):
    """Ctrl-C while data2csv.py writes its third image: no image .tmp and no data.csv.tmp left, and data.csv holds
    the two images finished before.
    Outcome: handled right."""
    real_save = Image.Image.save
    saved = []

    def interrupted(self, fp, *args, **kwargs):
        saved.append(fp)
        if len(saved) == 3:
            Path(fp).write_bytes(b"\x89PNG half an image")  # the write under way when Ctrl-C comes
            raise KeyboardInterrupt
        return real_save(self, fp, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", interrupted)
    with pytest.raises(KeyboardInterrupt):
        data2csv.main(["--data_dir", str(tmp_path), "--num_samples", "5", "--synthetic_image_size", "32"])
    leftovers = [path.name for path in tmp_path.rglob("*") if path.name.endswith(".tmp")]
    assert leftovers == []
    assert len(formats.read_csv(tmp_path / "data.csv", "caption")) == 2
    assert len(list((tmp_path / "images").iterdir())) == 2


def test_failed_download_leaves_no_model_folder(tmp_path, monkeypatch):
    """A download cut off after config.json arrived (the connection drops): clear error naming the model and the hub,
    and neither the model folder nor its download folder is left (a later run would take config.json for a model).
    Outcome: clear error."""
    import modelscope

    def cut_off(model_id, local_dir):
        Path(local_dir, "config.json").write_text("{}")
        Path(local_dir, "model-00001-of-00002.safetensors").write_bytes(b"\0" * 100)
        raise ConnectionResetError(104, "Connection reset by peer")

    monkeypatch.setattr(modelscope, "snapshot_download", cut_off)
    with pytest.raises(SystemExit) as stop:
        load_model.main(["--base_model", "Qwen/Qwen2-VL-2B-Instruct", "--model_dir", str(tmp_path / "m")])
    assert str(stop.value.code).startswith("Could not download Qwen/Qwen2-VL-2B-Instruct from modelscope")
    assert "Connection reset by peer" in str(stop.value.code)
    assert os.listdir(tmp_path) == []


def test_full_disk_while_load_model_saves_the_tiny_model_is_named(tmp_path):
    """load_model.py building the tiny model on a full disk: clear error naming the folder, and no folder left.
    Outcome: clear error."""
    out = tmp_path / "tiny"
    staging = tmp_path / f"tiny.tmp-{os.getpid()}"
    staging.mkdir()
    (staging / "tokenizer.json").symlink_to(FULL)
    with pytest.raises(SystemExit) as stop:
        load_model.main(["--model_dir", str(out), "--pretrain_steps", "0"])
    assert str(stop.value.code) == f"no space left on device while writing {out}: free space and rerun"
    assert os.listdir(tmp_path) == []
