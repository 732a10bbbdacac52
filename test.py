"""Step 5: answer the held-out images with the base model and with the fine-tuned one, score both, show them.

    python -u test.py                                   # evaluates output/tiny-qwen2-vl-lora
    python -u test.py --run_dir output/qwen2-vl-2b-coco

Everything about the run (base model, data, prompt, image limits) is read from <run_dir>/run_config.json. Writes
<run_dir>/predictions.jsonl first, then scores that file into <run_dir>/metrics.json, logs both to SwanLab with the
images, and answers every image in test-img/ as well.
"""

import json
from pathlib import Path

from peft import PeftModel

import config
from vlmtune.formats import load_conversations, to_messages
from vlmtune.generation import generate, prompt_messages
from vlmtune.modeling import load_model, load_processor
from vlmtune.reporting import score_predictions, log_to_swanlab, read_jsonl, write_jsonl

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


def main(argv=None):
    # ---- Config
    eval_cfg, = config.parse(argv, config.EvalConfig)
    run_dir = Path(eval_cfg.run_dir)
    if not (run_dir / "run_config.json").is_file():
        raise SystemExit(f"No run_config.json in {run_dir}: train first (`sh train.sh`) or pass --run_dir.")
    run = json.loads((run_dir / "run_config.json").read_text())
    model_dir, data_dir, prompt = run["model"]["model_dir"], Path(run["data"]["data_dir"]), run["data"]["prompt"]

    # ---- Data
    val_json = data_dir / "val.json"
    records = load_conversations(val_json)
    conversations = [to_messages(record, val_json.parent) for record in records]
    questions = [prompt_messages(messages) for messages in conversations]
    extra_images = sorted(p for p in Path(eval_cfg.test_img_dir).glob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    extra_questions = [[{"role": "user", "content": [{"type": "image", "image": str(p.resolve())},
                                                     {"type": "text", "text": prompt}]}] for p in extra_images]

    # ---- Model
    processor = load_processor(model_dir, run["model"]["image_min_pixels"], run["model"]["image_max_pixels"],
                               run["model"]["trust_remote_code"])
    model = PeftModel.from_pretrained(load_model(model_dir, trust_remote_code=run["model"]["trust_remote_code"]),
                                      str(run_dir))

    # ---- Generate
    settings = dict(batch_size=eval_cfg.eval_batch_size, max_new_tokens=eval_cfg.max_new_tokens)
    with model.disable_adapter():
        base_answers = generate(model, processor, questions + extra_questions, **settings)
    tuned_answers = generate(model, processor, questions + extra_questions, **settings)
    rows = []
    for i, (base, tuned) in enumerate(zip(base_answers, tuned_answers)):
        messages = (questions + extra_questions)[i]
        image = next(part["image"] for part in messages[0]["content"] if part["type"] == "image")
        row = {"id": records[i]["id"] if i < len(records) else Path(image).name, "image": image,
               "base": base, "prediction": tuned}
        if i < len(records):
            row["reference"] = conversations[i][-1]["content"][0]["text"]
        rows.append(row)
    write_jsonl(run_dir / "predictions.jsonl", rows[:len(records)])
    write_jsonl(run_dir / "test-img-predictions.jsonl", rows[len(records):])

    # ---- Score and show
    metrics = score_predictions(read_jsonl(run_dir / "predictions.jsonl"))
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    print(json.dumps(metrics, indent=2))
    for row in rows[:5] + rows[len(records):]:
        print(f"{row['id']}\n  base:       {row['base']}\n  fine-tuned: {row['prediction']}"
              + (f"\n  reference:  {row['reference']}" if "reference" in row else ""))
    log_to_swanlab(run, metrics, rows)
    return metrics


if __name__ == "__main__":
    main()
