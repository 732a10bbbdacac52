"""End to end for each model family: the offline pipeline runs, and a merged model answers as base + adapter does.

Each family's tiny model gets a short pretraining only (learning is shown on Qwen2-VL in test_learning.py and
test_pipeline.py): these tests are about the plumbing that differs between families (chat template, image
processor, box convention, module layout) and about export.
"""

import json

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModelForImageTextToText, AutoProcessor

import csv2json
import data2csv
import load_model
import merge
import test as test_script
import train
from vlmtune.formats import load_conversations, to_messages
from vlmtune.generation import generate, prompt_messages
from vlmtune.modeling import load_processor, load_trained, model_info
from vlmtune.tasks import TASKS
from vlmtune.tiny import TINY_MODELS

# family -> the box convention its grounding answers are written in
CONVENTIONS = {"tiny-qwen2-vl": "qwen2_vl", "tiny-qwen2.5-vl": "qwen2_5_vl", "tiny-qwen3-vl": "qwen3_vl",
               "tiny-llava-1.5": "llava"}


@pytest.fixture(scope="module", params=sorted(TINY_MODELS))
def family_run(request, tmp_path_factory):
    """(family, run folder, model folder): load_model -> data2csv -> csv2json -> train -> test, grounding task,
    with LoRA on the vision encoder too and the projector fully trained (everything merge must carry)."""
    family, work = request.param, tmp_path_factory.mktemp(request.param)
    model_dir, data_dir, run_dir = work / "model", work / "data", work / "run"
    load_model.main(["--base_model", family, "--model_dir", str(model_dir), "--pretrain_steps", "0"])
    data2csv.main(["--task", "grounding", "--data_dir", str(data_dir), "--num_samples", "40"])
    csv2json.main(["--task", "grounding", "--data_dir", str(data_dir), "--val_size", "8"])
    train.main(["--task", "grounding", "--data_dir", str(data_dir), "--model_dir", str(model_dir),
                "--output_dir", str(run_dir), "--report_to", "none", "--num_train_epochs", "1",
                "--vision", "lora", "--projector", "full", "--learning_rate", "5e-3"])
    return family, run_dir, model_dir, data_dir


def test_pipeline_runs_and_scores_in_the_familys_box_convention(family_run):
    family, run_dir, _, _ = family_run
    metrics = test_script.main(["--run_dir", str(run_dir), "--max_new_tokens", "24"])
    assert metrics["n"] == 8 and set(metrics["fine_tuned"]) >= {"acc@0.5", "mean_iou"}
    rows = [json.loads(line) for line in (run_dir / "predictions.jsonl").read_text().splitlines()]
    assert {row["box_convention"] for row in rows} == {CONVENTIONS[family]}


def val_questions(data_dir, model, processor):
    records = load_conversations(data_dir / "val.json")
    info = model_info(model, processor)
    return [prompt_messages(TASKS["grounding"].adapt(to_messages(r, data_dir), r, info)) for r in records]


def test_merged_model_loads_with_plain_transformers_and_answers_as_base_plus_adapter(family_run, capsys):
    family, run_dir, model_dir, data_dir = family_run
    merged_dir = merge.main(["--run_dir", str(run_dir), "--merged_dir", str(run_dir.parent / "merged")])
    assert "vLLM applies LoRA to the language model only" in capsys.readouterr().out  # vision LoRA was trained
    for name in ("model.safetensors", "config.json", "generation_config.json", "processor_config.json",
                 "tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        assert (run_dir.parent / "merged" / name).is_file(), name

    merged = AutoModelForImageTextToText.from_pretrained(merged_dir)
    merged_processor = AutoProcessor.from_pretrained(merged_dir)
    adapted, has_adapter = load_trained(str(run_dir), str(model_dir))
    assert has_adapter
    processor = load_processor(str(run_dir), 3136, 112 * 112)
    questions = val_questions(data_dir, merged, processor)

    assert merged_processor.chat_template == processor.chat_template
    assert (generate(merged, merged_processor, questions, max_new_tokens=12)
            == generate(adapted, processor, questions, max_new_tokens=12))
    batch = processor(text=[processor.apply_chat_template(questions[0], add_generation_prompt=True,
                                                          tokenize=False)],
                      images=[[to_image(questions[0], processor)]], return_tensors="pt")
    with torch.no_grad():
        merged_logits = merged(**batch).logits
        adapted_logits = adapted(**batch).logits
        with adapted.disable_adapter():
            base_logits = adapted(**batch).logits
    assert torch.allclose(merged_logits, adapted_logits, atol=1e-4)
    assert (merged_logits - base_logits).abs().max() > 1e-3  # the adapter does change the answers


def to_image(messages, processor):
    from vlmtune.collator import open_images
    return open_images(messages, processor)[0]


def test_an_adapter_whose_keys_do_not_fit_the_model_is_refused_naming_them(family_run, tmp_path):
    _, run_dir, model_dir, _ = family_run
    for name in ("adapter_config.json", "run_config.json"):
        (tmp_path / name).write_text((run_dir / name).read_text())
    weights = load_file(run_dir / "adapter_model.safetensors")
    # The module layout of transformers 4.x, before the language model moved under model.language_model.
    renamed = {key.replace("model.language_model.", "model."): value for key, value in weights.items()}
    save_file(renamed, tmp_path / "adapter_model.safetensors")
    with pytest.raises(SystemExit, match=r"(?s)does not fit this model: \d+ missing LoRA weights.*\d+ unexpected"):
        load_trained(str(tmp_path), str(model_dir))


def test_a_fully_fine_tuned_run_is_a_model_folder_that_test_py_scores_and_merge_py_leaves_alone(tmp_path):
    model_dir, data_dir, run_dir = tmp_path / "model", tmp_path / "data", tmp_path / "run"
    load_model.main(["--base_model", "tiny-qwen2-vl", "--model_dir", str(model_dir), "--pretrain_steps", "0"])
    data2csv.main(["--task", "vqa", "--data_dir", str(data_dir), "--num_samples", "24"])
    csv2json.main(["--task", "vqa", "--data_dir", str(data_dir), "--val_size", "4"])
    train.main(["--task", "vqa", "--data_dir", str(data_dir), "--model_dir", str(model_dir),
                "--output_dir", str(run_dir), "--report_to", "none", "--num_train_epochs", "1",
                "--language", "full", "--projector", "full", "--learning_rate", "1e-3"])
    assert (run_dir / "model.safetensors").is_file() and not (run_dir / "adapter_config.json").exists()
    trained = dict(AutoModelForImageTextToText.from_pretrained(run_dir).named_parameters())
    base = dict(AutoModelForImageTextToText.from_pretrained(model_dir).named_parameters())
    changed = {name for name in base if not torch.equal(base[name], trained[name])}
    assert changed and all(not name.startswith("model.visual.blocks.") for name in changed)  # vision stays frozen
    assert any(name.startswith("model.visual.merger.") for name in changed)
    assert any(name.startswith("model.language_model.") for name in changed)

    metrics = test_script.main(["--run_dir", str(run_dir), "--max_new_tokens", "8"])
    assert metrics["n"] == 4 and "vqa_accuracy" in metrics["fine_tuned"]
    with pytest.raises(SystemExit, match="holds no adapter"):
        merge.main(["--run_dir", str(run_dir)])
