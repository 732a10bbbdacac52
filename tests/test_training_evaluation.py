"""The task's metric during training: an evaluation adds what test.py would report for the same questions."""

import pytest
from PIL import Image
from transformers import Trainer, TrainingArguments

from vlmtune import evaluation
from vlmtune.collator import TrainCollator
from vlmtune.formats import to_messages
from vlmtune.generation import generate
from vlmtune.modeling import model_info
from vlmtune.tasks import TASKS
from vlmtune.tiny import build_tiny_qwen2_vl

COLOURS = {"red": (200, 30, 30), "green": (30, 160, 60), "blue": (40, 80, 220)}


class _EvaluatingTrainer(evaluation.TaskMetricEvaluation, Trainer):
    pass


@pytest.fixture
def caption_set(tmp_path):
    for colour, rgb in COLOURS.items():
        Image.new("RGB", (56, 56), rgb).save(tmp_path / f"{colour}.png")
    return [{"id": f"{colour}_{k}", "task": "caption", "conversations": [
        {"from": "user", "value": f"<|vision_start|>{colour}.png<|vision_end|>Describe this image."},
        {"from": "assistant", "value": caption}]}
        for colour in COLOURS for k, caption in enumerate([f"A {colour} square.", f"Something {colour}."])]


def test_an_evaluation_logs_the_loss_and_the_task_metric_equal_to_answering_the_questions_directly(
        tmp_path, caption_set):
    model, processor = build_tiny_qwen2_vl()
    info = model_info(model, processor)
    task = TASKS["caption"]
    rows, questions = evaluation.validation_questions(caption_set, tmp_path, task, info, limit=2)
    assert [row["id"] for row in rows] == ["red_0", "green_0"]  # the first 2 distinct questions, in file order
    settings = {"batch_size": 2, "max_new_tokens": 3}
    examples = [{"id": r["id"], "messages": to_messages(r, tmp_path)} for r in caption_set]
    args = TrainingArguments(output_dir=str(tmp_path / "run"), report_to=[], use_cpu=True,
                             per_device_eval_batch_size=2, remove_unused_columns=False)
    trainer = _EvaluatingTrainer(model=model, args=args, eval_dataset=examples,
                                 data_collator=TrainCollator(processor, logits="all"))
    trainer.task_evaluation = (task, rows, questions, processor, settings)
    metrics = trainer.evaluate()

    expected = evaluation.score_answers(task, rows, generate(model, processor, questions, **settings), tmp_path)
    assert metrics["eval_loss"] > 0
    assert {key: metrics[f"eval_{key}"] for key in expected} == expected
    assert evaluation.HEADLINE["caption"] in expected
    assert trainer.state.log_history[-1]["eval_cider"] == expected["cider"]  # logged with the loss, one entry
