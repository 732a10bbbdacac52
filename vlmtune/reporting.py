"""predictions.jsonl -> metrics.json, and both (with the images) to SwanLab."""

import json
import os
from collections import defaultdict
from pathlib import Path

from .metrics import caption_scores, exact_match
from .tracking import choose_swanlab_mode


def write_jsonl(path, rows: list[dict]):
    tmp = Path(f"{path}.tmp")
    tmp.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    os.replace(tmp, path)


def read_jsonl(path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def score_predictions(rows: list[dict]) -> dict:
    """Caption metrics of the base model and of the fine-tuned one on rows {"image", "reference", "base", "prediction"}.

    Every caption of an image is a reference for each prediction on that image (COCO has five per image).
    """
    references = defaultdict(list)
    for row in rows:
        references[row["image"]].append(row["reference"])
    metrics = {"n": len(rows)}
    for name in ("base", "prediction"):
        predictions = [row[name] for row in rows]
        scores = {"exact_match": exact_match(predictions, [row["reference"] for row in rows])}
        scores |= caption_scores(predictions, [references[row["image"]] for row in rows])
        metrics["base" if name == "base" else "fine_tuned"] = scores
    return metrics


def log_to_swanlab(run: dict, metrics: dict, rows: list[dict], max_images: int = 32):
    """Metrics and the first images with both answers, as the tutorials log them (`swanlab.Image(path, caption=...)`)."""
    import swanlab

    mode = choose_swanlab_mode()
    swanlab.init(project=os.environ.get("SWANLAB_PROJECT", "vlmtune"),
                 experiment_name=f"test {Path(run['training']['output_dir']).name}", mode=mode,
                 config={"run_dir": run["training"]["output_dir"], "base_model": run["model"]["base_model"]})
    flat = {f"test/{who}/{name}": value for who in ("base", "fine_tuned") for name, value in metrics[who].items()}
    swanlab.log(flat)
    images = [swanlab.Image(row["image"], caption=f"base: {row['base']} | fine-tuned: {row['prediction']}")
              for row in rows[:max_images]]
    swanlab.log({"test/predictions": images})
    swanlab.finish()
    print(f"SwanLab ({mode}): metrics and {len(images)} images logged")
