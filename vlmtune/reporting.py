"""predictions.jsonl and metrics.json on disk, and both (with the images) in SwanLab."""

import json
import os
from pathlib import Path

from .collator import images_of
from .formats import write_atomically
from .generation import prompt_messages
from .tracking import choose_swanlab_mode


def write_jsonl(path, rows: list[dict]):
    write_atomically(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))


def read_jsonl(path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def question_rows(records: list[dict], conversations: list[list[dict]], task_keys: list[dict]):
    """(rows, questions): the rows of predictions.jsonl, one per distinct question and still without answers, and
    the question each row asks.

    Records that ask the same (the same images and prompt messages) and score alike (the same `task_keys`, from the
    task's `reference`) make one row, answered once, with every record's reply in "references" and the first in
    "reference": COCO's five captions of an image make one row scored against all five, while two boxes of
    'person' in one image stay two rows.
    """
    rows, questions = {}, {}
    for record, messages, keys in zip(records, conversations, task_keys):
        question = prompt_messages(messages)
        key = json.dumps([question, keys], sort_keys=True)
        reply = messages[-1]["content"][0]["text"]
        if key not in rows:
            rows[key] = {"id": record["id"], "image": images_of(question)[0], "reference": reply,
                         "references": []} | keys
            questions[key] = question
        rows[key]["references"].append(reply)
    return list(rows.values()), list(questions.values())


def scalar_metrics(metrics: dict, prefix: str = "test") -> dict:
    """The numbers of a nested metrics dict, flattened to 'test/fine_tuned/accuracy'-style keys."""
    flat = {}
    for key, value in metrics.items():
        if isinstance(value, dict):
            flat |= scalar_metrics(value, f"{prefix}/{key}")
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            flat[f"{prefix}/{key}"] = value
    return flat


def pictures(metrics: dict) -> dict:
    """The PNG files a task's scoring drew (confusion matrices, box galleries), by metrics key."""
    found = {}
    for key, value in metrics.items():
        if isinstance(value, dict):
            found |= {f"{key}/{k}": v for k, v in pictures(value).items()}
        elif isinstance(value, str) and value.endswith(".png"):
            found[key] = value
    return found


def log_to_swanlab(run: dict, metrics: dict, rows: list[dict], max_images: int = 32):
    """Metrics, the task's pictures, and the first images with both answers, as the tutorials log them
    (`swanlab.Image(path, caption=...)`)."""
    import swanlab

    mode = choose_swanlab_mode()
    swanlab.init(project=os.environ.get("SWANLAB_PROJECT", "vlmtune"),
                 experiment_name=f"test {Path(run['training']['output_dir']).name}", mode=mode,
                 config={"run_dir": run["training"]["output_dir"], "base_model": run["model"]["base_model"],
                         "task": run["data"]["task"]})
    swanlab.log(scalar_metrics(metrics))
    for key, path in pictures(metrics).items():
        swanlab.log({f"test/{key}": swanlab.Image(path)})
    images = [swanlab.Image(row["image"], caption=f"base: {row['base']} | fine-tuned: {row['prediction']}")
              for row in rows[:max_images]]
    swanlab.log({"test/predictions": images})
    swanlab.finish()
    print(f"SwanLab ({mode}): metrics, pictures and {len(images)} predictions logged")
