"""The four tasks: how a record's messages fit the model, how an answer is read, how answers are scored.

A task is a small object in a plain dict, selected by name (`--task`); train.py and test.py call it and know nothing
of any task. Each task's `score` is a pure function of the rows of predictions.jsonl. test.py writes one row per
distinct question (the same images and prompt), answered once and holding the reference of every record that asks
it; for example (caption: COCO's five captions of one image make one row):

    {"id": "125870_88366", "image": "/abs/images/125870.jpg",
     "reference": "An airport filled with large passenger jets parked next to each other.",
     "references": ["An airport filled with large passenger jets parked next to each other.",
                    "A fleet of airplanes rest at their gates at the airport.", ...],
     "base": "Airplanes at an airport.", "prediction": "A fleet of airplanes parked at the airport."}

and the keys of the task's `reference` besides (grounding: "box": [63, 6, 103, 46], "image_size": [112, 112],
"box_convention": "qwen2_vl", "resized_size": [112, 112]). `score` returns {"base": {...}, "fine_tuned": {...}} with
the metrics the task's community reports.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from . import boxes, images, metrics


@dataclass(frozen=True)
class Task:
    name: str
    adapt: Callable[[list[dict], dict, dict], list[dict]]
    """(messages, record, model) -> the messages this model trains on; `model` holds model_type and pixel limits."""
    reference: Callable[[dict, dict], dict]
    """(record, model) -> what scoring needs besides the answer text, stored in each predictions.jsonl row."""
    score: Callable[[list[dict], Path], dict]
    """(rows of predictions.jsonl, folder for pictures) -> {"base": {...}, "fine_tuned": {...}}."""


def _unchanged(messages, record, model):
    return messages


TITLES = {"base": "base model", "fine_tuned": "fine-tuned"}  # the pictures' titles, by metrics.json key


def _for_both(rows: list[dict], score_one: Callable[[list[str]], dict]) -> dict:
    return {"base": score_one([row["base"] for row in rows]),
            "fine_tuned": score_one([row["prediction"] for row in rows])}


# ------------------------------------------------------------------------------------------------------- caption


def score_caption(rows, out_dir):
    """Exact match (the answer is one of the image's captions; the synthetic world has one right caption), BLEU-4
    and CIDEr against all of them."""
    references = [row["references"] for row in rows]

    def score_one(predictions):
        return ({"exact_match": metrics.exact_match_any(predictions, references)}
                | metrics.caption_scores(predictions, references))
    return _for_both(rows, score_one)


# ------------------------------------------------------------------------------------------------ classification


def reference_classification(record, model):
    # "aliases" is in a record when csv2json.py had --class_aliases.
    return {"label": record["label"], "classes": record["classes"], "aliases": record.get("aliases", {})}


def score_classification(rows, out_dir):
    """Accuracy, per-class precision/recall/F1 and a confusion matrix (PNG) of the answers parsed to a class (with
    the run's --class_aliases: metrics.parse_class)."""
    classes = rows[0]["classes"]
    labels = [row["label"] for row in rows]
    result = {}
    for who, key in (("base", "base"), ("fine_tuned", "prediction")):
        parsed = [metrics.parse_class(row[key], classes, row["aliases"]) for row in rows]
        report = metrics.classification_report(parsed, labels, classes)
        report["confusion_png"] = str(metrics.save_confusion_matrix(report["confusion"], classes,
                                                                    Path(out_dir) / f"confusion_{who}.png",
                                                                    title=TITLES[who]))
        result[who] = report
    return result


# ----------------------------------------------------------------------------------------------------- grounding


def model_box_frame(record: dict, model: dict) -> tuple[str, tuple[int, int] | None]:
    """The model's box convention and, for a processor that resizes into a pixel budget (Qwen), the image's size
    (width, height) after the resize; None for a fixed-size processor (LLaVA: boxes in the padded square).

    The size comes from the processor's own resize function with the processor's own factor and limits, which
    `model` holds (vlmtune.modeling.image_settings), so a target is written in the frame the model is shown.
    """
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize

    convention = model["model_type"]
    if convention not in boxes.CONVENTIONS:
        raise ValueError(f"no box convention for model type {convention!r}; known: {sorted(boxes.CONVENTIONS)}")
    if model["image_factor"] is None:
        return convention, None
    width, height = record["image_size"]
    h, w = smart_resize(height, width, factor=model["image_factor"], min_pixels=model["image_min_pixels"],
                        max_pixels=model["image_max_pixels"])
    return convention, (w, h)


def adapt_grounding(messages, record, model):
    """Rewrite the model-neutral answer (original pixels) into the model's own box convention."""
    convention, resized = model_box_frame(record, model)
    answer = boxes.format_box(convention, record["box"], record["expression"], tuple(record["image_size"]), resized)
    return messages[:-1] + [{"role": "assistant", "content": [{"type": "text", "text": answer}]}]


def reference_grounding(record, model):
    convention, resized = model_box_frame(record, model)
    # "expression": for the box gallery's titles (the answer text holds it in each model's own convention)
    return {"box": record["box"], "image_size": record["image_size"], "expression": record["expression"],
            "box_convention": convention, "resized_size": None if resized is None else list(resized)}


def score_grounding(rows, out_dir):
    """Acc@IoU>=0.5 and mean IoU of the boxes parsed back to original pixels; a gallery PNG of both boxes."""
    def parse(row, key):
        resized = None if row["resized_size"] is None else tuple(row["resized_size"])
        return boxes.parse_box(row["box_convention"], row[key], tuple(row["image_size"]), resized)

    true = [tuple(row["box"]) for row in rows]
    result = {}
    for who, key in (("base", "base"), ("fine_tuned", "prediction")):
        predicted = [parse(row, key) for row in rows]
        result[who] = metrics.grounding_scores(predicted, true)
        result[who]["gallery_png"] = str(draw_gallery(rows, predicted, Path(out_dir) / f"boxes_{who}.png",
                                                      title=TITLES[who]))
    return result


# Green: the reference box; red and dashed: the model's, so that a box on the reference leaves both in sight.
REFERENCE_STYLE = {"edgecolor": "#00a000", "linewidth": 3}
PREDICTION_STYLE = {"edgecolor": "#dc0000", "linewidth": 2, "linestyle": "--"}


def draw_gallery(rows, predicted, path, columns: int = 4, max_images: int = 16, thumb: int = 224, title: str = ""):
    """Up to 16 images side by side, the reference box in green and the predicted one in dashed red (a legend says so),
    each under its referring expression and the IoU of the two boxes (or "no box read" where the answer held
    none)."""
    gallery_figure(rows, predicted, columns, max_images, thumb, title).savefig(path)
    return path


def gallery_figure(rows, predicted, columns: int = 4, max_images: int = 16, thumb: int = 224, title: str = ""):
    """draw_gallery's figure (matplotlib: its legend, wrapped titles and fonts, rather than drawing text by hand)."""
    import textwrap

    from matplotlib.figure import Figure
    from matplotlib.patches import Patch, Rectangle

    shown = list(zip(rows, predicted))[:max_images]
    columns = max(1, min(columns, len(shown)))
    lines = max(1, -(-len(shown) // columns))
    side = thumb / 100  # inches at the default 100 dpi
    figure = Figure(figsize=(columns * side, lines * (side + 0.55) + 0.6), layout="constrained")
    for i, (row, box) in enumerate(shown):
        axes = figure.add_subplot(lines, columns, i + 1)
        image = images.open_rgb(row["image"])  # upright, as the boxes are given
        scale = min(1.0, 2 * thumb / max(image.size))  # twice the shown size is sharp enough, and far less to draw
        if scale < 1:
            image = image.resize((round(image.width * scale), round(image.height * scale)))
        axes.imshow(image)
        for corners, style in ((row["box"], REFERENCE_STYLE), (box, PREDICTION_STYLE)):
            if corners is not None:
                x1, y1, x2, y2 = (v * scale for v in corners)
                axes.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, **style))
        expression = textwrap.fill(" ".join(str(row.get("expression", "")).split()), width=int(thumb / 6.5),
                                   max_lines=2, placeholder="...")
        iou = "no box read" if box is None else f"IoU {metrics.box_iou(box, row['box']):.2f}"
        axes.set_title(f"{expression}\n{iou}" if expression else iou, fontsize=9)
        axes.set_axis_off()
    legend = [Patch(fill=False, label="reference", **REFERENCE_STYLE),
              Patch(fill=False, label="prediction", **PREDICTION_STYLE)]
    figure.legend(handles=legend, loc="outside upper center", ncols=2, frameon=False, title=title or None)
    return figure


# ----------------------------------------------------------------------------------------------------------- vqa


def reference_vqa(record, model):
    reference = {"answers": record["answers"]}
    if "answer_scores" in record:  # soft scores (data2csv.py --source lxmert)
        reference["answer_scores"] = record["answer_scores"]
    return reference


def score_vqa(rows, out_dir):
    """The official VQA accuracy over the human answers (VQA v2 and OK-VQA have ten a question); with soft scores
    instead (an LXMERT-style file), the score of the predicted answer (metrics.vqa_soft_accuracy); with a single
    answer (LLaVA conversations, a rows file's one answer), exact match after the official normalisation."""
    def accuracy(prediction, row):
        if "answer_scores" in row:
            return metrics.vqa_soft_accuracy(prediction, row["answer_scores"])
        if len(row["answers"]) == 1:
            return float(metrics.normalize_vqa_answer(prediction) == metrics.normalize_vqa_answer(row["answers"][0]))
        return metrics.vqa_accuracy(prediction, row["answers"])

    def score_one(predictions):
        return {"vqa_accuracy": sum(accuracy(p, row) for p, row in zip(predictions, rows)) / len(rows)}
    return _for_both(rows, score_one)


def _keys(*names):
    return lambda record, model: {name: record[name] for name in names}


TASKS = {
    "caption": Task("caption", _unchanged, _keys(), score_caption),
    "classification": Task("classification", _unchanged, reference_classification, score_classification),
    "grounding": Task("grounding", adapt_grounding, reference_grounding, score_grounding),
    "vqa": Task("vqa", _unchanged, reference_vqa, score_vqa),
}
