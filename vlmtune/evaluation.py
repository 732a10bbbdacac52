"""Evaluation in one place: the distinct questions of a validation file, answered by batched generation and scored
by the task's own metrics. test.py uses it for the base and the fine-tuned model; training uses it for the metric
curve beside the loss (TaskMetricEvaluation), so both report the same number for the same questions.
"""

import os
import tempfile

from transformers import TrainerCallback

from .formats import load_conversations, to_messages
from .generation import generate
from .reporting import question_rows

# The number each task's community reports first: --metric_for_best_model names it with "eval_" before it.
HEADLINE = {"caption": "cider", "classification": "accuracy", "grounding": "acc@0.5", "vqa": "vqa_accuracy"}


def validation_questions(records: list[dict], base_dir, task, model_info: dict, limit: int = 0):
    """(rows, questions) of test.py's predictions.jsonl for `records` (reporting.question_rows): one row per
    distinct question; `limit` > 0 keeps the first `limit` of them, in file order."""
    conversations = [task.adapt(to_messages(record, base_dir), record, model_info) for record in records]
    rows, questions = question_rows(records, conversations, [task.reference(r, model_info) for r in records])
    if limit:
        rows, questions = rows[:limit], questions[:limit]
    return rows, questions


def question_about(image: str, question: list[dict]) -> list[dict]:
    """A validation question asked of another image (test.py's test-img/, the demo's upload): its system turn kept,
    and its last user turn's text, about `image` alone. The earlier turns of a multi-turn conversation are left out:
    they are about the validation image."""
    system = [message for message in question if message["role"] == "system"]
    text = [part for part in question[-1]["content"] if part["type"] == "text"]
    return system + [{"role": "user", "content": [{"type": "image", "image": image}] + text}]


def validation_set(val_json, task, processor, model_info: dict, limit: int, batch_size: int):
    """(eval_dataset, task_evaluation) for evaluations during training: every record of `val_json` as a training
    example, for the validation loss, and the first `limit` distinct questions (0: all) with what
    TaskMetricEvaluation needs to answer and score them. ValueError or FileNotFoundError, naming the file, when it
    is missing, malformed or empty."""
    records = load_conversations(val_json)
    if not records:
        raise ValueError(f"{val_json} is empty: hold images out with csv2json.py --val_size, or train with "
                         "--eval_strategy no")
    base_dir = os.path.dirname(os.path.abspath(val_json))
    examples = [{"id": r["id"], "messages": task.adapt(to_messages(r, base_dir), r, model_info)} for r in records]
    rows, questions = validation_questions(records, base_dir, task, model_info, limit)
    settings = {"batch_size": batch_size, "max_new_tokens": 64}  # test.py's default answer length
    return examples, (task, rows, questions, processor, settings)


def score_answers(task, rows: list[dict], answers: list[str], out_dir) -> dict:
    """The task's numeric metrics of one model's `answers` to `rows` ({"cider": ..., "bleu4": ...})."""
    scored = task.score([row | {"base": answer, "prediction": answer} for row, answer in zip(rows, answers)],
                        out_dir)["fine_tuned"]
    return {key: value for key, value in scored.items()
            if isinstance(value, (int, float)) and not isinstance(value, bool)}


class TaskMetricEvaluation:
    """Trainer mixin (class MyTrainer(TaskMetricEvaluation, Trainer)): every evaluation also answers the validation
    questions with the model as it is and adds the task's metrics (eval_cider, eval_accuracy, eval_acc@0.5,
    eval_vqa_accuracy, ...) to the validation loss, so they are logged together (console, SwanLab) and
    --metric_for_best_model and early stopping can use them.

    Set `task_evaluation` to (task, rows, questions, processor, generation settings) before training; None evaluates
    the loss only. Generation is greedy and batched (vlmtune.generation), the pictures the task draws go to a
    temporary folder.
    """

    task_evaluation = None

    def evaluation_loop(self, *args, metric_key_prefix: str = "eval", **kwargs):
        output = super().evaluation_loop(*args, metric_key_prefix=metric_key_prefix, **kwargs)
        if self.task_evaluation is not None:
            task, rows, questions, processor, settings = self.task_evaluation
            model = self.accelerator.unwrap_model(self.model)
            answers = generate(model, processor, questions, desc=f"{metric_key_prefix} {task.name}", **settings)
            with tempfile.TemporaryDirectory() as pictures:
                scores = score_answers(task, rows, answers, pictures)
            output.metrics.update({f"{metric_key_prefix}_{key}": value for key, value in scores.items()})
        return output


class EvaluateAtStart(TrainerCallback):
    """An evaluation at step 0, before the first update, so the curves start from the base model's numbers (a
    fresh LoRA adapter changes nothing yet). At train begin, since the Trainer starts its log anew there; a resumed
    run (step > 0) has it in its checkpoint's log already."""

    def __init__(self, trainer):
        self.trainer = trainer

    def on_train_begin(self, args, state, control, **kwargs):
        if state.global_step == 0:
            self.trainer.evaluate()
