"""Boxes for visual grounding, written the way each model family writes them, and read back to original pixels.

A grounding record holds an image of (width, height) pixels, a referring expression and its true box (x1, y1, x2, y2)
in those pixels. The training target must be the box in the model's own convention, and a prediction must be read back
with the exact inverse. For "the red circle" at (100, 200, 300, 400) in a 640x480 image:

    qwen2_vl    <|object_ref_start|>the red circle<|object_ref_end|><|box_start|>(156,417),(469,833)<|box_end|>
                integers 0..1000 relative to the image: round(x / width * 1000)
    qwen2_5_vl  [{"bbox_2d": [101, 198, 302, 397], "label": "the red circle"}]
                integer pixels of the image after the processor's resize, here 644x476 (the processor's smart_resize
                with factor 28: 14-pixel patches merged 2 x 2)
    qwen3_vl    [{"bbox_2d": [156, 417, 469, 833], "label": "the red circle"}]
                qwen2_5_vl's JSON with qwen2_vl's numbers
    llava       [0.16, 0.44, 0.47, 0.75]
                fractions of the square the image is padded to (LLaVA-1.5's `image_aspect_ratio: pad`: here
                640x640, the picture 80 pixels down), to 2 decimals

The names are transformers' `model_type`, so `CONVENTIONS[model.config.model_type]` picks one. Nothing here imports
torch or the rest of vlmtune.
"""

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass

Box = tuple[float, float, float, float]
Size = tuple[int, int]  # (width, height) in pixels


def check_box(box, image_size: Size) -> str | None:
    """Why (x1, y1, x2, y2) cannot be a grounding target in an image of `image_size` (width, height), or None.

    A box may touch the border (x2 == width): pixel boxes here have their far edge exclusive.
    """
    if len(box) != 4:
        return f"{len(box)} coordinates instead of 4 (x1, y1, x2, y2)"
    if not all(math.isfinite(v) for v in box):
        return f"a coordinate is not a finite number: {tuple(box)}"
    width, height = image_size
    if width <= 0 or height <= 0:
        return f"the image size {width}x{height} has no area"
    x1, y1, x2, y2 = box
    if x2 <= x1 or y2 <= y1:
        return f"zero or negative area: {tuple(box)} (x2 must exceed x1 and y2 exceed y1)"
    if x1 < 0 or y1 < 0 or x2 > width or y2 > height:
        return f"outside the {width}x{height} image: {tuple(box)}"
    return None


# --------------------------------------------------------------------------------------------------- conventions

_NUMBER = r"\s*(-?\d+(?:\.\d+)?)\s*"
# With or without the box markers: generation.py decodes with skip_special_tokens=True, which drops
# <|box_start|> and <|box_end|> (special tokens in Qwen2-VL's tokenizer) and leaves "the red circle(156,417),(469,833)".
_QWEN2_VL_BOX = re.compile(rf"\({_NUMBER},{_NUMBER}\)\s*,?\s*\({_NUMBER},{_NUMBER}\)")
# The first "bbox_2d" wherever it sits, rather than json.loads of the whole answer: the same pattern reads a list, a
# bare dict, a ```json fence, several boxes, a missing label, and an answer cut off by max_new_tokens after its
# first box.
_BBOX_2D = re.compile(rf"""["']?bbox_2d["']?\s*:\s*\[{_NUMBER},{_NUMBER},{_NUMBER},{_NUMBER}\]""")
_LLAVA_BOX = re.compile(rf"\[{_NUMBER},{_NUMBER},{_NUMBER},{_NUMBER}\]")


def _first_match(pattern: re.Pattern) -> Callable[[str], list[float] | None]:
    def read(text: str) -> list[float] | None:
        match = pattern.search(text)
        return None if match is None else [float(v) for v in match.groups()]
    return read


def _write_qwen2_vl(values, expression: str) -> str:
    x1, y1, x2, y2 = (round(v) for v in values)
    return (f"<|object_ref_start|>{expression}<|object_ref_end|>"
            f"<|box_start|>({x1},{y1}),({x2},{y2})<|box_end|>")


def _write_bbox_2d(values, expression: str) -> str:
    # ensure_ascii=False: Qwen writes a label in its own script; "\u7ea2" would cost six tokens for one character.
    return json.dumps([{"bbox_2d": [round(v) for v in values], "label": expression}], ensure_ascii=False)


def _write_llava(values, expression: str) -> str:
    return "[" + ", ".join(f"{v:.2f}" for v in values) + "]"


@dataclass(frozen=True)
class Frame:
    """Where the model's numbers put an image: x in the model's units is (x_pixels + dx) * span_x / width, and the
    same for y. `width` and `height` are the extent the numbers cover, in original pixels."""

    dx: float
    dy: float
    width: float
    height: float
    span_x: float
    span_y: float


def _per_mille(image_size: Size, resized_size: Size | None) -> Frame:
    return Frame(0, 0, *image_size, 1000, 1000)


def _resized_pixels(image_size: Size, resized_size: Size | None) -> Frame:
    if resized_size is None:
        raise ValueError("qwen2_5_vl writes boxes in pixels of the resized image: pass resized_size=(width, height), "
                         "smart_resize's (height, width) swapped")
    return Frame(0, 0, *image_size, *resized_size)


def _padded_square(image_size: Size, resized_size: Size | None) -> Frame:
    # The image is pasted at the centre of a square of its longer side (vlmtune.images.pad_to_square, the way
    # LLaVA-1.5 trained with `image_aspect_ratio: pad`), so the numbers are fractions of that square.
    width, height = image_size
    side = max(width, height)
    return Frame((side - width) // 2, (side - height) // 2, side, side, 1, 1)


@dataclass(frozen=True)
class Convention:
    """How one model family writes a box: in which frame and units, and in what text."""

    frame: Callable[[Size, Size | None], Frame]
    """(image_size, resized_size) -> where the model's numbers put the image."""
    write: Callable[[list[float], str], str]
    """(x1, y1, x2, y2 in the model's units, unrounded; the referring expression) -> the target text."""
    read: Callable[[str], list[float] | None]
    """A model's answer -> the four numbers of its first box, in the model's units, or None."""


CONVENTIONS: dict[str, Convention] = {
    "qwen2_vl": Convention(frame=_per_mille, write=_write_qwen2_vl, read=_first_match(_QWEN2_VL_BOX)),
    "qwen2_5_vl": Convention(frame=_resized_pixels, write=_write_bbox_2d, read=_first_match(_BBOX_2D)),
    "qwen3_vl": Convention(frame=_per_mille, write=_write_bbox_2d, read=_first_match(_BBOX_2D)),
    "llava": Convention(frame=_padded_square, write=_write_llava, read=_first_match(_LLAVA_BOX)),
}


def _convention(name: str) -> Convention:
    if name not in CONVENTIONS:
        raise ValueError(f"unknown box convention {name!r}: known are {', '.join(CONVENTIONS)}")
    return CONVENTIONS[name]


def format_box(convention: str, box, expression: str, image_size: Size, resized_size: Size | None = None) -> str:
    """The target text for `box` (x1, y1, x2, y2 in pixels of an image of `image_size` (width, height)).

    `resized_size` (width, height) is the image the processor makes, which only qwen2_5_vl's numbers depend on
    (vlmtune.tasks.model_box_frame computes it with the processor's own resize rule).
    Raises ValueError for a box that `check_box` rejects.
    """
    chosen = _convention(convention)
    reason = check_box(box, image_size)
    if reason is not None:
        raise ValueError(f"cannot write the box of {expression!r}: {reason}")
    f = chosen.frame(image_size, resized_size)
    x1, y1, x2, y2 = box
    # (x + dx) * span / width rather than (x + dx) / width * span: for integer pixels the product is exact, so a
    # value that lies exactly halfway rounds the same way on every machine.
    return chosen.write([(x1 + f.dx) * f.span_x / f.width, (y1 + f.dy) * f.span_y / f.height,
                         (x2 + f.dx) * f.span_x / f.width, (y2 + f.dy) * f.span_y / f.height], expression)


def parse_box(convention: str, text: str, image_size: Size, resized_size: Size | None = None) -> Box | None:
    """The first box in a model's answer, in pixels of the original image (floats), or None when none parses.

    The exact inverse of `format_box`, then clamped to the image and ordered so that x1 <= x2 and y1 <= y2.
    """
    chosen = _convention(convention)
    values = chosen.read(text)
    if values is None:
        return None
    width, height = image_size
    f = chosen.frame(image_size, resized_size)
    x1, x2 = sorted(min(max(v * f.width / f.span_x - f.dx, 0.0), float(width)) for v in (values[0], values[2]))
    y1, y2 = sorted(min(max(v * f.height / f.span_y - f.dy, 0.0), float(height)) for v in (values[1], values[3]))
    return x1, y1, x2, y2
