"""The run report: the curves of training (`plot_loss`: loss.png) and one page of everything a run showed
(`write_report`: report.html), readable without an account, a server or a network.

report.html is one self-contained file: CSS inline, every picture a data: URI, no script, so it opens offline in any
browser and can be mailed or archived as it is. It holds the run's summary, the training curves, the before/after
metrics table (every number of metrics.json), the task's pictures (confusion matrices, box galleries) and a gallery
of validation images with the reference, the base model's and the fine-tuned model's answers in full.
"""

import base64
import html
import io
import json
import math
from datetime import datetime
from pathlib import Path

from matplotlib.figure import Figure

from . import boxes, images
from . import metrics as task_metrics
from .formats import write_atomically

GALLERY_MAX = 64  # validation images shown in the report: enough to judge, few enough to keep the file small
THUMB = 256  # pixels of a gallery thumbnail's longer side
# Logged by every evaluation but no measure of the model (eval_runtime, eval_samples_per_second, ...): not drawn.
_TIMINGS = ("runtime", "_per_second", "preparation_time")
WHO = {"base": "base model", "fine_tuned": "fine-tuned"}
PICTURE_NAMES = {"confusion_png": "Confusion matrix", "gallery_png": "Boxes (green: reference, red: prediction)"}


# ------------------------------------------------------------------------------------------------------- curves


def curves(log_history: list[dict]) -> dict[str, list[tuple[int, float]]]:
    """The Trainer's log history as (step, value) series: "loss", "learning_rate", "grad_norm", "eval_loss" and
    each eval task metric ("eval_cider", "eval_accuracy", ...)."""
    series: dict[str, list[tuple[int, float]]] = {}
    for entry in log_history:
        step = entry.get("step")
        if step is None:
            continue
        names = [name for name in ("loss", "learning_rate", "grad_norm") if name in entry]
        names += [name for name in entry if name.startswith("eval_") and not name.endswith(_TIMINGS)]
        for name in names:
            value = entry[name]
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                series.setdefault(name, []).append((step, float(value)))
    return series


def loss_figure(log_history: list[dict]) -> Figure:
    """Panels by step: the training loss (and the validation loss), the learning rate, the gradient norm, and the
    validation metrics, those between 0 and 1 in one panel, each other (CIDEr's 0-10, a count) in its own."""
    series = curves(log_history)
    metric_names = [name for name in series if name.startswith("eval_") and name != "eval_loss"]
    unit = [name for name in metric_names if all(0 <= v <= 1 for _, v in series[name])]
    panels = [("loss", [name for name in ("loss", "eval_loss") if name in series])]
    panels += [(title, [name]) for title, name in (("learning rate", "learning_rate"), ("grad norm", "grad_norm"))
               if name in series]
    if unit:
        panels.append(("validation metrics", unit))
    panels += [(f"validation {name.removeprefix('eval_')}", [name]) for name in metric_names if name not in unit]
    columns = 1 if len(panels) == 1 else 2
    lines = -(-len(panels) // columns)
    figure = Figure(figsize=(5.5 * columns, 3.2 * lines), layout="constrained")
    for i, (title, names) in enumerate(panels):
        axes = figure.add_subplot(lines, columns, i + 1)
        for name in names:
            steps, values = zip(*series[name])
            label = {"loss": "training loss", "eval_loss": "validation loss"}.get(name, name.removeprefix("eval_"))
            axes.plot(steps, values, marker="o", markersize=3, label=label)
        if not names:  # no loss logged: a run shorter than --logging_steps
            axes.text(0.5, 0.5, "no training loss logged:\n--logging_steps is more than the run's steps",
                      ha="center", va="center", transform=axes.transAxes)
        elif len(names) > 1 or title.startswith("validation metrics"):
            axes.legend(fontsize=8)
        if title == "learning rate":
            axes.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
        axes.set_title(title)
        axes.set_xlabel("step")
        axes.grid(alpha=0.3)
    return figure


def plot_loss(log_history: list[dict], path) -> Path:
    """loss.png of a run from the Trainer's log history (`trainer.state.log_history`)."""
    path = Path(path)
    loss_figure(log_history).savefig(path)
    return path


def read_log_history(run_dir) -> list[dict] | None:
    """The log history of <run_dir>/trainer_state.json (train.py writes it at the end), else of the newest
    checkpoint's; None where neither is there (a run from before train.py saved it)."""
    run_dir = Path(run_dir)
    candidates = [run_dir / "trainer_state.json"] + sorted(
        run_dir.glob("checkpoint-*/trainer_state.json"),
        key=lambda p: int(p.parent.name.split("-")[-1]) if p.parent.name.split("-")[-1].isdigit() else -1,
        reverse=True)
    for path in candidates:
        if path.is_file():
            try:
                return json.loads(path.read_text(encoding="utf-8"))["log_history"]
            except (ValueError, KeyError, TypeError):  # not a Trainer's state: try the next
                continue
    return None


# ------------------------------------------------------------------------------------------------------- report


def _png_uri(figure: Figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _file_uri(path: Path) -> str:
    kind = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".gif": "gif", ".webp": "webp"}[path.suffix.lower()]
    return f"data:image/{kind};base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def thumbnail_uri(image_path, side: int = THUMB) -> str | None:
    """The image, upright and at most `side` pixels on its longer side, as a JPEG data: URI; None when it no longer
    opens (moved or deleted since the run)."""
    try:
        image = images.open_rgb(image_path)
    except OSError:
        return None
    image.thumbnail((side, side))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _e(value) -> str:
    """Text as text: an answer holding "<b>" shows the characters, never makes markup."""
    return html.escape(str(value), quote=True)


def format_number(value) -> str:
    """How the report shows a metric: integers whole, the rest to 4 decimals."""
    if isinstance(value, int):
        return str(value)
    return f"{value:.4f}"


def _metrics_table(metrics: dict) -> str:
    lines = []
    for key, value in metrics.items():  # "task", "n" and any other top-level value
        if key not in WHO and not isinstance(value, (dict, list)):
            shown = format_number(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else value
            lines.append(f'<tr class="run-scalar"><th>{_e(key)}</th><td colspan="3">{_e(shown)}</td></tr>')
    base, tuned = (task_metrics.flat_numbers(metrics.get(who, {}), " / ") for who in ("base", "fine_tuned"))
    names = [*base, *(k for k in tuned if k not in base)]
    # the task's own numbers first (accuracy, macro_f1), then the nested ones (per_class / cat / f1)
    for name in sorted(names, key=lambda n: " / " in n):
        cells = [format_number(side[name]) if name in side else "-" for side in (base, tuned)]
        change = (f"{tuned[name] - base[name]:+.4f}" if isinstance(tuned[name] - base[name], float) else
                  f"{tuned[name] - base[name]:+d}") if name in base and name in tuned else ""
        lines.append(f'<tr class="metric" data-name="{_e(name)}"><th>{_e(name)}</th><td class="base">{cells[0]}</td>'
                     f'<td class="fine-tuned">{cells[1]}</td><td class="change">{change}</td></tr>')
    return ('<table id="metrics"><thead><tr><th>metric</th><th>base model</th><th>fine-tuned</th>'
            f'<th>change</th></tr></thead><tbody>{"".join(lines)}</tbody></table>')


def _picture_path(value: str, run_dir: Path) -> Path | None:
    path = Path(value)
    if path.is_file():
        return path
    moved = run_dir / path.name  # a run folder moved or copied since test.py: its pictures moved with it
    return moved if moved.is_file() else None


def _pictures(metrics: dict, run_dir: Path) -> str:
    """The task's pictures, base and fine-tuned side by side under one heading per kind."""
    kinds: dict[str, list[tuple[str, str]]] = {}
    for who in WHO:
        for key, value in metrics.get(who, {}).items():
            if isinstance(value, str) and value.endswith(".png"):
                kinds.setdefault(key, []).append((who, value))
    parts = []
    for key, found in kinds.items():
        name = PICTURE_NAMES.get(key, key.removesuffix("_png").replace("_", " "))
        figures = []
        for who, value in found:
            path = _picture_path(value, run_dir)
            title = f"{name}: {WHO[who]}"
            body = (f'<img src="{_file_uri(path)}" alt="{_e(title)}">' if path else
                    f'<p class="missing">{_e(value)} is missing</p>')
            figures.append(f'<figure class="picture {who}"><figcaption>{_e(title)}</figcaption>{body}</figure>')
        parts.append(f'<h3>{_e(name)}</h3><div class="pictures">{"".join(figures)}</div>')
    return "".join(parts)


def _read_as(row: dict, answer: str) -> str | None:
    """What scoring read in an answer, where the task reads one: the class, or the box's IoU with the reference."""
    if "classes" in row and "label" in row:
        parsed = task_metrics.parse_class(answer, row["classes"], row.get("aliases") or {})
        return f"read as: {parsed}" if parsed else "read as: no class"
    if "box" in row and "box_convention" in row:
        resized = None if row.get("resized_size") is None else tuple(row["resized_size"])
        box = boxes.parse_box(row["box_convention"], answer, tuple(row["image_size"]), resized)
        return "no box read" if box is None else f"IoU {task_metrics.box_iou(box, tuple(row['box'])):.2f}"
    return None


def _question_text(messages: list[dict]) -> str:
    """The text of the last user turn of a question's messages (the images left out)."""
    last = [m for m in messages if m["role"] == "user"][-1]
    return " ".join(part["text"] for part in last["content"] if part.get("type") == "text")


def _answer(kind: str, label: str, text: str, note: str | None = None) -> str:
    note_html = f'<span class="read">{_e(note)}</span>' if note else ""
    return f'<div class="answer {kind}"><h4>{label}{note_html}</h4><p class="text">{_e(text)}</p></div>'


def _card(row: dict, question: str | None) -> str:
    uri = thumbnail_uri(row["image"])
    picture = (f'<img src="{uri}" alt="{_e(row["id"])}">' if uri else
               f'<p class="missing">{_e(row["image"])} no longer opens</p>')
    parts = [f'<div class="card" data-id="{_e(row["id"])}">{picture}<p class="id">{_e(row["id"])}</p>']
    if question:
        parts.append(f'<p class="question">{_e(question)}</p>')
    if "reference" in row:
        parts.append(_answer("reference", "reference", row["reference"]))
        others = [r for r in row.get("references", []) if r != row["reference"]]
        if others:
            parts.append('<ul class="references">' + "".join(f"<li>{_e(r)}</li>" for r in others) + "</ul>")
    parts.append(_answer("base", "base model", row["base"], _read_as(row, row["base"])))
    parts.append(_answer("fine-tuned", "fine-tuned", row["prediction"], _read_as(row, row["prediction"])))
    return "".join(parts) + "</div>"


def _gallery(rows: list[dict], questions: list[str] | None, kind: str) -> str:
    shown = rows[:GALLERY_MAX]
    common = questions[0] if questions and len(set(questions)) == 1 else None
    head = f'<p class="count">{len(shown)} of {len(rows)} {kind} shown</p>'
    if common:
        head += f'<p class="common-question">Asked of every image: {_e(common)}</p>'
    cards = [_card(row, None if common or not questions else questions[i]) for i, row in enumerate(shown)]
    return head + f'<div class="gallery">{"".join(cards)}</div>'


def _summary(run_dir: Path, run: dict, log_history: list[dict] | None) -> str:
    data, model, tune, training = (run.get(k, {}) for k in ("data", "model", "tune", "training"))
    lora = "lora" in (tune.get("language"), tune.get("vision"), tune.get("projector"))
    final = next((e for e in reversed(log_history or []) if "train_runtime" in e), {})
    items = [
        ("task", data.get("task")),
        ("base model", model.get("base_model")),
        ("model folder", model.get("model_dir")),
        ("data", data.get("data_dir")),
        ("source", " ".join(str(v) for v in (data.get("source"), data.get("dataset_id")) if v)),
        ("trained parts", ", ".join(f"{part} {tune[part]}" for part in ("language", "vision", "projector")
                                    if part in tune)),
        ("LoRA", f"r {tune.get('lora_r')}, alpha {tune.get('lora_alpha')}, dropout {tune.get('lora_dropout')}"
         if lora else None),
        ("learning rate", " ".join(str(v) for v in (training.get("learning_rate"), training.get("lr_scheduler_type"))
                                   if v is not None)),
        ("epochs / max steps", f"{training.get('num_train_epochs')} / {training.get('max_steps')}"
         if training else None),
        ("batch", f"{training.get('per_device_train_batch_size')} per device x "
                  f"{training.get('gradient_accumulation_steps')} accumulation" if training else None),
        ("image pixels", f"{model.get('image_min_pixels')} to {model.get('image_max_pixels')}" if model else None),
        ("max length", tune.get("max_length")),
        ("seed", training.get("seed")),
        ("steps trained", final.get("step")),
        ("training time", f"{final['train_runtime']:.0f} s" if "train_runtime" in final else None),
        ("run folder", str(run_dir.resolve())),
    ]
    rows = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in items if v not in (None, ""))
    return f'<table id="summary">{rows}</table>'


STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; padding: 0 1em; color: #222; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 2em; }
table { border-collapse: collapse; } th, td { padding: .25em .8em; border-bottom: 1px solid #eee; text-align: left; }
#metrics td { text-align: right; font-variant-numeric: tabular-nums; } #metrics td[colspan] { text-align: left; }
#metrics .change { color: #555; }
img { max-width: 100%; height: auto; }
.pictures { display: flex; flex-wrap: wrap; gap: 1.5em; }
.picture { margin: 0; } .picture figcaption { font-weight: bold; margin-bottom: .4em; }
.gallery { display: grid; grid-template-columns: repeat(auto-fill, minmax(280px, 1fr)); gap: 1em; }
.card { border: 1px solid #ddd; border-radius: 6px; padding: .6em; }
.card img { display: block; margin: 0 auto .4em; width: min(100%, 224px); }  /* tiny images shown larger */
.id { font-family: monospace; color: #666; margin: 0; font-size: .85em; overflow-wrap: anywhere; }
.question { font-style: italic; white-space: pre-wrap; overflow-wrap: anywhere; }
.answer h4 { margin: .6em 0 .1em; font-size: .8em; text-transform: uppercase; color: #555; }
.answer .read { text-transform: none; font-weight: normal; margin-left: .6em; color: #333; }
.answer .text { margin: 0; white-space: pre-wrap; overflow-wrap: anywhere; }
.reference .text { color: #075; } .fine-tuned .text { font-weight: 600; }
.references { margin: .2em 0 0 1em; padding: 0; font-size: .85em; color: #075; overflow-wrap: anywhere; }
.missing { color: #a00; }
"""


def write_report(run_dir, run_config: dict, metrics: dict, rows: list[dict],
                 questions: list[list[dict]] | None = None) -> Path:
    """<run_dir>/report.html from run_config.json, metrics.json and the rows of predictions.jsonl (with
    `questions`, test.py's question messages of those rows, each card shows what was asked). The training curves
    come from the run's trainer_state.json; test.py's answers to test-img/ from test-img-predictions.jsonl."""
    run_dir = Path(run_dir)
    log_history = read_log_history(run_dir)
    if log_history is not None:
        curves_html = f'<img id="curves" src="{_png_uri(loss_figure(log_history))}" alt="training curves">'
    elif (run_dir / "loss.png").is_file():
        curves_html = f'<img id="curves" src="{_file_uri(run_dir / "loss.png")}" alt="training curves">'
    else:
        curves_html = '<p class="missing">no trainer_state.json in the run folder: no training curves to draw</p>'
    asked = [_question_text(q) for q in questions] if questions else None
    sections = [
        ("run", "Run", _summary(run_dir, run_config, log_history)),
        ("curves", "Training curves", curves_html),
        ("metrics", "Metrics: base model and fine-tuned", _metrics_table(metrics)),
    ]
    if pictures := _pictures(metrics, run_dir):
        sections.append(("pictures", "Pictures", pictures))
    sections.append(("validation", "Validation images", _gallery(rows, asked, "validation questions")))
    extra_file = run_dir / "test-img-predictions.jsonl"
    if extra_file.is_file():
        extra = [json.loads(line) for line in extra_file.read_text(encoding="utf-8").splitlines() if line.strip()]
        if extra:
            sections.append(("test-img", "Images of test-img/", _gallery(extra, None, "images")))
    name = Path(run_config.get("training", {}).get("output_dir") or run_dir).name
    body = "".join(f'<section id="{key}-section"><h2>{_e(title)}</h2>{content}</section>'
                   for key, title, content in sections)
    page = (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>vlmtune report: {_e(name)}</title><style>{STYLE}</style></head><body>"
            f"<h1>vlmtune report: {_e(name)}</h1>"
            f'<p class="made">{_e(metrics.get("task", ""))}, written {datetime.now():%Y-%m-%d %H:%M} by test.py</p>'
            f"{body}</body></html>\n")
    path = run_dir / "report.html"
    write_atomically(path, page)
    return path
