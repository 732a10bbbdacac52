"""Step 5: answer the held-out images with the base model and with the fine-tuned one, score both, show them.

    python -u test.py                                   # evaluates output/tiny-qwen2-vl-lora
    python -u test.py --run_dir output/qwen2-vl-2b-coco

Everything about the run (task, base model, data, image limits) is read from <run_dir>/run_config.json. Runs on the
GPU in bf16 where there is one (fp32 on a GPU without bf16 and on the CPU). Asks each distinct question once (COCO's
five captions of an image: one answer, scored against all five), writes <run_dir>/predictions.jsonl first, then
scores that file into <run_dir>/metrics.json with the task's own metrics and pictures, writes <run_dir>/report.html
(curves, metrics, pictures and answers on one page that opens offline), logs them to SwanLab with the images, and
answers every image in test-img/ too: a file there that cannot be used (empty, cut short, no image, too large or too
thin) is skipped, named with its reason, and the rest are answered.
"""

import json
from pathlib import Path

import config
from vlmtune import progress, text
from vlmtune.collator import UnreadableImage
from vlmtune.evaluation import question_about
from vlmtune.formats import check_task, load_conversations, to_messages
from vlmtune.generation import generate
from vlmtune.images import usable
from vlmtune.report import write_report
from vlmtune.reporting import log_to_swanlab, question_rows, read_jsonl, write_jsonl
from vlmtune.runs import load_run

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")


def main(argv=None):
    # ---- Config
    eval_cfg, = config.parse(argv, config.EvalConfig)
    run_dir = Path(eval_cfg.run_dir)

    # ---- Model: as demo.py loads it (vlmtune.runs)
    loaded = load_run(run_dir, "test.py")
    run, task, processor, model, info = loaded.run, loaded.task, loaded.processor, loaded.model, loaded.info

    # ---- Data
    val_json = Path(run["data"]["data_dir"]) / "val.json"
    try:
        records = load_conversations(val_json)
    except (ValueError, FileNotFoundError) as error:  # missing, empty, malformed, or its images changed
        raise SystemExit(f"test.py: {error}") from None
    if (problem := check_task(records, task.name, val_json)) is not None:  # no "task": scored as what?
        raise SystemExit(problem)
    written = [to_messages(r, val_json.parent) for r in records]
    # as written: the task adds the model's own tokens after (Qwen2-VL's grounding boxes)
    if found := text.in_examples(processor.tokenizer, [{"id": r.get("id"), "messages": m}
                                                       for r, m in zip(records, written)]):
        raise SystemExit(text.refusal(val_json, found))
    conversations = [task.adapt(m, r, info) for r, m in zip(records, written)]
    rows, questions = question_rows(records, conversations, [task.reference(r, info) for r in records])
    if eval_cfg.eval_samples:  # the questions training's evaluation answered with the same --eval_samples
        rows, questions = rows[:eval_cfg.eval_samples], questions[:eval_cfg.eval_samples]
    extra_images, unusable = usable(sorted(p for p in Path(eval_cfg.test_img_dir).glob("*")
                                           if p.suffix.lower() in IMAGE_SUFFIXES))
    for _, reason in unusable:  # one bad file there costs its own answer only
        print(f"{eval_cfg.test_img_dir}: skipped, {reason}")
    extra_questions = [question_about(str(p.resolve()), questions[0]) for p in extra_images]  # the task's question

    # ---- Generate
    ids = [row["id"] for row in rows] + [p.name for p in extra_images]  # to name an image that no longer opens
    settings = dict(batch_size=eval_cfg.eval_batch_size, max_new_tokens=eval_cfg.max_new_tokens, ids=ids)
    try:
        if loaded.has_adapter:
            with model.disable_adapter():
                base = generate(model, processor, questions + extra_questions, desc="base", **settings)
        else:  # a fully fine-tuned run: the base model is a model of its own
            base = generate(loaded.load_base(), processor,
                            questions + extra_questions, desc="base", **settings)
        tuned = generate(model, processor, questions + extra_questions, desc="fine-tuned", **settings)
    except UnreadableImage as error:
        raise SystemExit(f"test.py: {error}") from None
    rows = [row | {"base": b, "prediction": t} for row, b, t in zip(rows, base, tuned)]
    extra_rows = [{"id": p.name, "image": str(p.resolve()), "base": b, "prediction": t}
                  for p, b, t in zip(extra_images, base[len(rows):], tuned[len(rows):])]
    write_jsonl(run_dir / "predictions.jsonl", rows)
    write_jsonl(run_dir / "test-img-predictions.jsonl", extra_rows)

    # ---- Score and show
    rows = read_jsonl(run_dir / "predictions.jsonl")
    with progress.stage(f"scoring {len(rows)} answers of each model ({task.name})"):  # 5,000 captions: ~30 s
        metrics = {"task": task.name, "n": len(rows)} | task.score(rows, run_dir)
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    print(json.dumps(metrics, indent=2))
    for row in rows[:5] + extra_rows:
        print(f"{row['id']}\n  base:       {row['base']}\n  fine-tuned: {row['prediction']}"
              + (f"\n  reference:  {row['reference']}" if "reference" in row else ""))
    print(f"report (open it in a browser): {write_report(run_dir, run, metrics, rows, questions)}")
    if run.get("swanlab", True):
        log_to_swanlab(run, metrics, rows)
    return metrics


if __name__ == "__main__":
    main()
