"""test.py (step 5) on a random tiny Qwen2-VL with an untrained adapter and a hand-written caption validation set:
what it asks the model, what it writes and what it shows, in seconds (test_pipeline.py runs the pretrained one)."""

import json

import pytest
from peft import LoraConfig, get_peft_model
from PIL import Image

import test as test_script
from vlmtune.generation import generate
from vlmtune.tiny import build_tiny_qwen2_vl

COLOURS = {"red": (200, 30, 30), "green": (30, 160, 60), "blue": (40, 80, 220)}


@pytest.fixture
def caption_run(tmp_path):
    """A run folder whose val.json holds two captions of each of three images, as COCO's val set holds five."""
    model, processor = build_tiny_qwen2_vl()
    model_dir, data_dir, run_dir = tmp_path / "model", tmp_path / "data", tmp_path / "run"
    model.save_pretrained(model_dir)
    processor.save_pretrained(model_dir)
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["model.language_model.layers.0.self_attn.q_proj"])
    get_peft_model(model, lora).save_pretrained(run_dir)
    (data_dir / "images").mkdir(parents=True)
    records = []
    for colour, rgb in COLOURS.items():
        Image.new("RGB", (56, 56), rgb).save(data_dir / "images" / f"{colour}.png")
        for k, caption in enumerate([f"A {colour} square.", f"Something {colour}."]):
            records.append({"id": f"{colour}_{k}", "task": "caption", "conversations": [
                {"from": "user", "value": f"<|vision_start|>images/{colour}.png<|vision_end|>Describe this image."},
                {"from": "assistant", "value": caption}]})
    (data_dir / "val.json").write_text(json.dumps(records))
    run = {"data": {"task": "caption", "data_dir": str(data_dir)},
           "model": {"model_dir": str(model_dir), "image_min_pixels": 3136, "image_max_pixels": 112 * 112,
                     "trust_remote_code": False},
           "swanlab": False}
    (run_dir / "run_config.json").write_text(json.dumps(run))
    (tmp_path / "test-img").mkdir()
    return run_dir


def test_each_image_is_answered_once_and_scored_against_all_its_captions(caption_run, monkeypatch, capsys):
    asked = []

    def counting_generate(model, processor, conversations, **settings):
        asked.append((settings["desc"], len(conversations)))
        return generate(model, processor, conversations, **settings)

    monkeypatch.setattr(test_script, "generate", counting_generate)
    metrics = test_script.main(["--run_dir", str(caption_run), "--max_new_tokens", "2",
                                "--test_img_dir", str(caption_run.parent / "test-img")])

    assert asked == [("base", 3), ("fine-tuned", 3)]
    rows = [json.loads(line) for line in (caption_run / "predictions.jsonl").read_text().splitlines()]
    assert metrics["n"] == len(rows) == 3
    assert [(row["id"], row["reference"], row["references"]) for row in rows] == [
        (f"{colour}_0", f"A {colour} square.", [f"A {colour} square.", f"Something {colour}."]) for colour in COLOURS]
    assert [row["image"] for row in rows] == [str(caption_run.parent / "data" / "images" / f"{c}.png") for c in COLOURS]
    bars = capsys.readouterr().err
    assert "base: 100%" in bars and "fine-tuned: 100%" in bars and "3/3" in bars


def test_the_question_about_another_image_keeps_the_system_turn_and_the_last_question():
    """test.py's test-img/ question (and the demo's): a validation question with a system prompt and an earlier turn,
    asked of a new image: the system turn, then the new image and the last question's text."""
    from vlmtune.evaluation import question_about

    question = [{"role": "system", "content": [{"type": "text", "text": "Answer briefly."}]},
                {"role": "user", "content": [{"type": "image", "image": "/val/a.png"},
                                             {"type": "text", "text": "What is it?"}]},
                {"role": "assistant", "content": [{"type": "text", "text": "A ball."}]},
                {"role": "user", "content": [{"type": "text", "text": "What colour is it?"}]}]
    assert question_about("/mine/b.png", question) == [
        {"role": "system", "content": [{"type": "text", "text": "Answer briefly."}]},
        {"role": "user", "content": [{"type": "image", "image": "/mine/b.png"},
                                     {"type": "text", "text": "What colour is it?"}]}]
