"""predictions.jsonl and metrics.json on disk, and both (with the images) in SwanLab."""

import json
import os
from pathlib import Path

from .collator import images_of
from .formats import write_atomically
from .generation import prompt_messages
from .metrics import flat_numbers
from .tracking import choose_swanlab_mode, resume_run


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
    return {f"{prefix}/{name}": value for name, value in flat_numbers(metrics).items()}


def pictures(metrics: dict) -> dict:
    """The PNG files a task's scoring drew (confusion matrices, box galleries), by metrics key."""
    found = {}
    for key, value in metrics.items():
        if isinstance(value, dict):
            found |= {f"{key}/{k}": v for k, v in pictures(value).items()}
        elif isinstance(value, str) and value.endswith(".png"):
            found[key] = value
    return found


SIDES = {"base": "base", "fine_tuned": "fine-tuned"}  # metrics.json's keys of the two models, and their labels


def _side_numbers(metrics: dict) -> dict[str, dict]:
    """{label: {"accuracy": .., "per_class/cat/f1": .., ...}}: each model's numbers, flattened."""
    return {label: flat_numbers(metrics[side])
            for side, label in SIDES.items() if isinstance(metrics.get(side), dict)}


def metrics_table(metrics: dict) -> tuple[list[str], list[list[str]]]:
    """(headers, rows): the scores side by side, one row a number ("metric", "base", "fine-tuned"), the values of
    metrics.json to 4 significant digits; "n" first, the number of questions."""
    numbers = _side_numbers(metrics)
    names = list(dict.fromkeys(name for side in numbers.values() for name in side))
    rows = [["n"] + [str(metrics["n"])] * len(numbers)]
    rows += [[name] + [f"{side[name]:.4g}" if name in side else "-" for side in numbers.values()] for name in names]
    return ["metric", *numbers], rows


def metrics_chart(metrics: dict):
    """A matplotlib Figure: base and fine-tuned side by side, a pair of bars a score (support counts left out: the
    same for both), each bar with its value. The before/after at a glance in every SwanLab mode: the local
    dashboard draws lines, images and texts only."""
    from matplotlib.figure import Figure

    numbers = _side_numbers(metrics)
    names = [name for name in dict.fromkeys(n for side in numbers.values() for n in side)
             if not name.endswith("support")]
    # wide and low: the dashboard shows an image in a panel of that shape
    figure = Figure(figsize=(max(8.0, 2 + 0.7 * len(names)), 4.5), layout="constrained")
    axes = figure.subplots()
    width = 0.8 / max(len(numbers), 1)
    for i, (label, side) in enumerate(numbers.items()):
        positions = [column + (i - (len(numbers) - 1) / 2) * width for column in range(len(names))]
        values = [side.get(name, 0) for name in names]
        bars = axes.bar(positions, values, width, label=label, color=("#9e9e9e", "#1f77b4")[i % 2])
        axes.bar_label(bars, labels=[f"{v:.4g}" for v in values], padding=2, fontsize=7,
                       rotation=90 if len(names) > 8 else 0)
    axes.set_xticks(range(len(names)), names, rotation=30 if len(names) > 4 else 0, ha="right", fontsize=8)
    axes.set_ylim(0, max([1.0] + [side.get(name, 0) for side in numbers.values() for name in names]) * 1.2)
    axes.set_title(f"{metrics.get('task', '')} on {metrics.get('n')} questions: base vs fine-tuned")
    axes.legend(loc="upper left")
    return figure


def _answers_text(row: dict) -> dict:
    """The reference(s), the base's and the fine-tuned answer of a row, whole."""
    references = row.get("references") or [row.get("reference", "")]
    return {"reference": " | ".join(dict.fromkeys(references)), "base": row["base"], "fine_tuned": row["prediction"]}


def _start_swanlab(run: dict):
    """(the SwanLab run test.py logs into, where that is in words): the training run's own experiment
    (tracking.resume_run) when train.py recorded one, else (a run_config.json from before that record, or the
    training's experiment gone) a run of its own, "test <run folder>". None when SwanLab is disabled or cannot
    start (a warning says why)."""
    import swanlab

    record = run.get("swanlab")
    if os.environ.get("SWANLAB_MODE") == "disabled" or isinstance(record, dict) and record["mode"] == "disabled":
        return None
    if isinstance(record, dict):
        try:
            return resume_run(record, config=None), f"into the training's experiment ({record['mode']})"
        except Exception as error:  # the folder deleted, no login any more, ...
            print(f"warning: SwanLab: the training run's experiment could not be opened again "
                  f"({type(error).__name__}: {error}); logging test.py's results as an experiment of their own")
    mode = choose_swanlab_mode()
    try:
        own = swanlab.init(project=os.environ.get("SWANLAB_PROJECT", "vlmtune"),
                           experiment_name=f"test {Path(run['training']['output_dir']).name}", mode=mode,
                           config={"run_dir": run["training"]["output_dir"], "base_model": run["model"]["base_model"],
                                   "task": run["data"]["task"]})
        return own, f"as an experiment of their own ({mode})"
    except Exception as error:
        print(f"warning: SwanLab could not start ({type(error).__name__}: {error}); metrics.json and "
              "predictions.jsonl hold the results")
        return None


def log_to_swanlab(run: dict, metrics: dict, rows: list[dict], max_rows: int = 32):
    """Metrics, the task's pictures and the first rows' images and answers, into the training run's SwanLab
    experiment, beside its curves: the metrics as a base/fine-tuned bar chart, a table (a text panel, which the
    local dashboard shows, and an ECharts table for the cloud), and the reference, base and fine-tuned answers in
    full (text panels, one line a row, captioned with the row's id as its image is). Never fatal: the results are
    on disk already."""
    import swanlab

    started = _start_swanlab(run)
    if started is None:
        return
    swanlab_run, where = started
    try:
        headers, table = metrics_table(metrics)
        shown = rows[:max_rows]
        answers = [_answers_text(row) for row in shown]
        data = {
            "test/metrics": swanlab.Image(metrics_chart(metrics), caption="base vs fine-tuned"),
            # one line a metric, named in the text too: the caption column is narrow
            "test/metrics table": [swanlab.Text(f"{name}: " + " | ".join(f"{h} {v}" for h, v in zip(headers[1:], row)),
                                                caption=name) for name, *row in table],
            "test/metrics echarts": swanlab.ECharts(swanlab.echarts.Table().add(headers, table)),
        }
        data |= {f"test/{key}": swanlab.Image(path, caption=key) for key, path in pictures(metrics).items()}
        data["test/predictions"] = [swanlab.Image(row["image"], caption=row["id"]) for row in shown]
        for key, label in (("reference", "reference"), ("base", "base answer"), ("fine_tuned", "fine-tuned answer")):
            data[f"test/{label}"] = [swanlab.Text(text[key], caption=row["id"]) for row, text in zip(shown, answers)]
        swanlab.log(data)
        print(f"SwanLab: metrics, pictures and {len(shown)} predictions logged {where}")
    except Exception as error:
        print(f"warning: SwanLab could not log test.py's results ({type(error).__name__}: {error}); metrics.json "
              "and predictions.jsonl hold them")
    finally:
        swanlab_run.finish()
