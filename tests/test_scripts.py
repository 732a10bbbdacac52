"""The seams between the scripts, the configs and the outside world (hubs, SwanLab), without training."""

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from transformers import TrainingArguments

import config
import load_model
from vlmtune import modeling, tiny, tracking

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("script", ["data2csv.py", "csv2json.py", "load_model.py", "train.py", "test.py"])
def test_every_script_answers_help(script):
    result = subprocess.run([sys.executable, script, "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "--config" in result.stdout


@pytest.mark.parametrize("name", ["zero2.json", "zero3.json"])
def test_deepspeed_configs_parse_and_leave_sizes_to_the_trainer(name):
    ds = json.loads((ROOT / "scripts" / name).read_text())
    assert ds["zero_optimization"]["stage"] == int(name[4])
    assert ds["train_micro_batch_size_per_gpu"] == "auto"
    assert ds["gradient_accumulation_steps"] == "auto"
    assert ds["bf16"]["enabled"] == "auto"


@pytest.mark.parametrize("name", ["accelerate.yaml", "accelerate_multi_gpu.yaml", "accelerate_cpu_processes.yaml",
                                  "accelerate_multi_node.yaml"])
def test_accelerate_configs_parse_with_a_process_count_accelerate_takes(name):
    from accelerate.commands.config.config_args import load_config_from_file

    cfg = load_config_from_file(str(ROOT / "scripts" / name))
    assert cfg.num_processes >= 1  # accelerate 1.15 refuses the -1 ("every GPU") of older configs
    assert (cfg.num_machines > 1) == (name == "accelerate_multi_node.yaml")
    if cfg.num_machines > 1:
        assert cfg.main_process_ip and cfg.main_process_port and cfg.machine_rank == 0


def test_real_run_preset_resolves_to_the_tutorial_recipe():
    data, model, lora, args = config.parse(
        # --use_cpu: the preset's bf16 is checked against the machine's GPU when TrainingArguments is built.
        ["--config", str(ROOT / "scripts/qwen2-vl-2b_coco.yaml"), "--use_cpu", "true"],
        config.DataConfig, config.ModelConfig, config.TuneConfig, TrainingArguments,
        defaults=config.training_defaults())
    assert (data.source, data.resolved_dataset_id, data.num_samples, data.val_size) == (
        "modelscope", "modelscope/coco_2014_caption", 500, 4)
    assert (model.base_model, model.hub, model.resolved_model_dir) == (
        "Qwen/Qwen2-VL-2B-Instruct", "modelscope", "models/Qwen2-VL-2B-Instruct")
    assert (lora.lora_r, lora.lora_alpha, lora.lora_dropout) == (64, 16, 0.05)
    assert lora.module_names == ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    assert (args.per_device_train_batch_size, args.gradient_accumulation_steps) == (4, 4)
    assert (args.learning_rate, args.num_train_epochs, args.gradient_checkpointing, args.bf16) == (1e-4, 2, True, True)


def test_flags_win_over_the_config_file_which_wins_over_defaults(tmp_path):
    preset = tmp_path / "p.yaml"
    preset.write_text(yaml.safe_dump({"learning_rate": 0.5, "lora_r": 8, "num_samples": 3}))
    data, lora, args = config.parse(["--config", str(preset), "--lora_r", "4"], config.DataConfig,
                                    config.TuneConfig, TrainingArguments, defaults=config.training_defaults())
    assert (args.learning_rate, lora.lora_r, data.num_samples) == (0.5, 4, 3)
    assert args.output_dir == config.training_defaults()["output_dir"]


def test_unknown_key_in_config_file_names_the_key(tmp_path):
    preset = tmp_path / "p.yaml"
    preset.write_text("lora_rank: 8\n")
    with pytest.raises(SystemExit, match="lora_rank"):
        config.parse(["--config", str(preset)], config.TuneConfig)


def test_missing_config_file_is_named(tmp_path):
    with pytest.raises(SystemExit, match="nope.yaml"):
        config.parse(["--config", str(tmp_path / "nope.yaml")], config.TuneConfig)


def test_bad_flag_value_names_the_flag():
    with pytest.raises(SystemExit, match="--hub"):
        config.parse(["--hub", "github"], config.ModelConfig)


def test_download_goes_to_modelscope_by_default(monkeypatch, tmp_path):
    calls = []
    import modelscope

    monkeypatch.setattr(modelscope, "snapshot_download", lambda model_id, local_dir: calls.append((model_id, local_dir)))
    load_model.main(["--base_model", "Qwen/Qwen2-VL-2B-Instruct", "--model_dir", str(tmp_path / "m")])
    # downloaded beside, then renamed: a download cut short leaves no folder that looks like a model
    assert calls == [("Qwen/Qwen2-VL-2B-Instruct", str(tmp_path / "m.download"))]
    assert (tmp_path / "m").is_dir() and not (tmp_path / "m.download").exists()


def test_download_from_hugging_face_honours_hf_endpoint(tmp_path):
    # A closed port on this machine stands in for an unreachable mirror: the error must come from that address.
    code = ("import load_model; load_model.main(['--base_model', 'Qwen/Qwen2-VL-2B-Instruct', '--hub', "
            f"'huggingface', '--model_dir', {str(tmp_path / 'm')!r}])")
    env = {"HF_ENDPOINT": "http://127.0.0.1:9", "HF_HUB_ETAG_TIMEOUT": "2", "HF_HUB_DOWNLOAD_TIMEOUT": "2",
           "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                            env=env)
    assert result.returncode != 0
    assert "Could not download Qwen/Qwen2-VL-2B-Instruct from huggingface" in result.stderr
    assert "127.0.0.1:9" in result.stderr
    assert "Traceback" not in result.stderr


def test_fp16_is_refused_for_qwen_before_any_training(tmp_path):
    model, processor = tiny.build_tiny_qwen2_vl()
    model.config.save_pretrained(tmp_path)
    with pytest.raises(SystemExit, match="fp16"):
        modeling.training_dtype(TrainingArguments(output_dir=str(tmp_path), fp16=True, use_cpu=True), str(tmp_path))


@pytest.mark.parametrize(("env", "netrc", "expected"), [
    ({}, False, "offline"),
    ({"SWANLAB_API_KEY": "k"}, False, "online"),
    ({}, True, "online"),
    ({"SWANLAB_MODE": "disabled", "SWANLAB_API_KEY": "k"}, False, "disabled"),
])
def test_swanlab_goes_online_only_when_logged_in(monkeypatch, tmp_path, env, netrc, expected):
    for name in ("SWANLAB_MODE", "SWANLAB_API_KEY", "SWANLAB_ROOT", "SWANLAB_SAVE_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    if netrc:
        (tmp_path / ".swanlab").mkdir()
        (tmp_path / ".swanlab" / ".netrc").write_text("machine api.swanlab.cn\n  login user\n  password k\n")
    monkeypatch.setattr(tracking.Path, "home", lambda: tmp_path)
    monkeypatch.setattr(tracking, "local_dashboard_installed", lambda: False)  # with it: 'local' (test_tracking.py)
    assert tracking.choose_swanlab_mode() == expected


def test_a_token_on_the_command_line_is_refused_with_the_safe_way(tmp_path):
    import train

    with pytest.raises(SystemExit, match="HF_TOKEN"):
        train.main(["--hub_token", "hf_x", "--output_dir", str(tmp_path)])


@pytest.mark.parametrize("group", [config.DataConfig, config.ModelConfig, config.TuneConfig, config.EvalConfig])
def test_help_shows_each_flags_documentation_and_default_from_config_py(group, capsys):
    with pytest.raises(SystemExit) as stop:
        config.parse(["--help"], group)
    assert stop.value.code == 0
    shown = " ".join(capsys.readouterr().out.split("options:", 1)[1].split())  # argparse wraps lines
    docs = config.attribute_docs(group)
    assert set(docs) == {field.name for field in dataclasses.fields(group)}  # every field is documented
    for field in dataclasses.fields(group):
        metavar = field.name.upper()
        entry = shown[min(shown.find(f"--{field.name} {form}") % len(shown) for form in (metavar, f"[{metavar}]")):]
        assert entry.split("(default: ", 1)[0].rstrip().endswith(docs[field.name].split()[-1]), field.name
        assert docs[field.name][:40] in entry, field.name
        default = entry.split("(default: ", 1)[1].replace(" ", "")  # a long default may be wrapped too
        assert default.startswith(f"{field.default})".replace(" ", "")), field.name
