"""Unit tier: vlmtune.boxes on hand-made boxes, with the targets worked out by hand in the comments.

The resized sizes Qwen2.5-VL's numbers depend on come from transformers' own smart_resize, the function the processor
resizes with (tests/test_real_files.py checks the frame against the real processors' output).
"""

import math
import random

import pytest

from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize

from vlmtune.boxes import CONVENTIONS, check_box, format_box, parse_box

# "the red circle" at (100, 200, 300, 400) in a 640x480 image, the example of the module docstring.
BOX = (100, 200, 300, 400)
SIZE = (640, 480)
# Qwen2.5-VL's processor limit 12845056 leaves 640x480 alone but for rounding each side to a multiple of 28:
# 480 / 28 = 17.14 -> 17 * 28 = 476, 640 / 28 = 22.86 -> 23 * 28 = 644; 644 * 476 = 306544 lies within the limits.
# The aspect ratio moves a little, from 1.333 to 1.353, so x and y scale differently.
RESIZED = (644, 476)

# ------------------------------------------------------------------------------------------------------ conventions


def test_convention_names_are_the_transformers_model_types():
    from transformers import LlavaConfig, Qwen2_5_VLConfig, Qwen2VLConfig, Qwen3VLConfig

    configs = (Qwen2VLConfig, Qwen2_5_VLConfig, Qwen3VLConfig, LlavaConfig)
    assert set(CONVENTIONS) == {config.model_type for config in configs}


def test_qwen2_vl_writes_per_mille_integers_between_its_special_tokens():
    # 100 / 640 * 1000 = 156.25 -> 156, 200 / 480 * 1000 = 416.7 -> 417, 300 / 640 * 1000 = 468.75 -> 469,
    # 400 / 480 * 1000 = 833.3 -> 833
    assert format_box("qwen2_vl", BOX, "the red circle", SIZE) == (
        "<|object_ref_start|>the red circle<|object_ref_end|><|box_start|>(156,417),(469,833)<|box_end|>")


def test_qwen2_vl_reads_back_by_scaling_per_mille_to_the_original_size():
    # 156 * 0.64 = 99.84, 417 * 0.48 = 200.16, 469 * 0.64 = 300.16, 833 * 0.48 = 399.84
    text = "<|object_ref_start|>the red circle<|object_ref_end|><|box_start|>(156,417),(469,833)<|box_end|>"
    assert parse_box("qwen2_vl", text, SIZE) == pytest.approx((99.84, 200.16, 300.16, 399.84))


def test_qwen2_5_vl_writes_json_in_pixels_of_the_resized_image():
    # x scales by 644 / 640, y by 476 / 480: 100.625 -> 101, 198.33 -> 198, 301.875 -> 302, 396.67 -> 397
    assert format_box("qwen2_5_vl", BOX, "the red circle", SIZE, RESIZED) == (
        '[{"bbox_2d": [101, 198, 302, 397], "label": "the red circle"}]')


def test_qwen2_5_vl_reads_back_by_scaling_each_axis_by_its_own_resize():
    text = '[{"bbox_2d": [101, 198, 302, 397], "label": "the red circle"}]'
    expected = (101 * 640 / 644, 198 * 480 / 476, 302 * 640 / 644, 397 * 480 / 476)  # 100.37, 199.66, 300.12, 400.34
    assert parse_box("qwen2_5_vl", text, SIZE, RESIZED) == pytest.approx(expected)


def test_qwen2_5_vl_on_a_wide_strip_shrunk_under_a_small_max_pixels():
    # 1000x30 with max_pixels 7840 becomes 504x28 (1008x28 is over the limit: both sides shrink by
    # sqrt(30000 / 7840), the height no lower than 28): x scales by 0.504, y by 28 / 30.
    # 250 -> 126, 5 -> 4.67 -> 5, 750 -> 378, 25 -> 23.33 -> 23
    text = format_box("qwen2_5_vl", (250, 5, 750, 25), "the bar", (1000, 30), (504, 28))
    assert text == '[{"bbox_2d": [126, 5, 378, 23], "label": "the bar"}]'
    # back: 126 / 0.504 = 250, 5 * 30 / 28 = 5.357, 378 / 0.504 = 750, 23 * 30 / 28 = 24.643
    assert parse_box("qwen2_5_vl", text, (1000, 30), (504, 28)) == pytest.approx((250, 75 / 14, 750, 345 / 14))


def test_qwen2_5_vl_needs_the_resized_size():
    with pytest.raises(ValueError, match="resized_size"):
        format_box("qwen2_5_vl", BOX, "the red circle", SIZE)
    with pytest.raises(ValueError, match="resized_size"):
        parse_box("qwen2_5_vl", '[{"bbox_2d": [1, 2, 3, 4]}]', SIZE)


def test_qwen3_vl_writes_qwen2_5_vl_json_with_qwen2_vl_numbers():
    text = format_box("qwen3_vl", BOX, "the red circle", SIZE)
    assert text == '[{"bbox_2d": [156, 417, 469, 833], "label": "the red circle"}]'
    assert parse_box("qwen3_vl", text, SIZE) == pytest.approx((99.84, 200.16, 300.16, 399.84))


def test_json_labels_keep_their_own_script():
    assert format_box("qwen3_vl", BOX, "红色的圆", SIZE) == '[{"bbox_2d": [156, 417, 469, 833], "label": "红色的圆"}]'


def test_llava_writes_fractions_of_the_padded_square_to_two_decimals():
    # 640x480 is padded to 640x640 with the picture 80 rows down (LLaVA-1.5's pad to square):
    # 100 / 640 = 0.15625 -> 0.16, (200 + 80) / 640 = 0.4375 -> 0.44, 300 / 640 = 0.46875 -> 0.47,
    # (400 + 80) / 640 = 0.75
    text = format_box("llava", BOX, "the red circle", SIZE)
    assert text == "[0.16, 0.44, 0.47, 0.75]"
    # back: 0.16 * 640 = 102.4, 0.44 * 640 - 80 = 201.6, 0.47 * 640 = 300.8, 0.75 * 640 - 80 = 400
    assert parse_box("llava", text, SIZE) == pytest.approx((102.4, 201.6, 300.8, 400.0))


def test_llava_pads_a_tall_image_at_its_sides():
    # 300x600 is padded to 600x600 with the picture 150 columns in: the whole picture spans x 0.25 .. 0.75.
    assert format_box("llava", (0, 0, 300, 600), "everything", (300, 600)) == "[0.25, 0.00, 0.75, 1.00]"
    # an answer inside the padding reads back clamped to the picture
    assert parse_box("llava", "[0.1, 0.0, 0.2, 1.0]", (300, 600)) == (0.0, 0.0, 0.0, 600.0)


def test_an_unknown_convention_is_refused_with_the_known_names():
    with pytest.raises(ValueError, match="known are qwen2_vl, qwen2_5_vl, qwen3_vl, llava"):
        format_box("qwen9_vl", BOX, "the red circle", SIZE)
    with pytest.raises(ValueError, match="unknown box convention 'llava_next'"):
        parse_box("llava_next", "[0.1, 0.2, 0.3, 0.4]", SIZE)


def test_an_unusable_box_is_refused_when_written():
    with pytest.raises(ValueError, match="'the red circle': outside the 640x480 image"):
        format_box("qwen2_vl", (100, 200, 700, 400), "the red circle", SIZE)


# ------------------------------------------------------------------------------------------------------ round trips

# The most a written-then-read coordinate may move: half a unit of the model's numbers, in original pixels.
TOLERANCE = {
    "qwen2_vl": lambda size, resized: (size[0] / 1000 / 2, size[1] / 1000 / 2),
    "qwen2_5_vl": lambda size, resized: (size[0] / resized[0] / 2, size[1] / resized[1] / 2),
    "qwen3_vl": lambda size, resized: (size[0] / 1000 / 2, size[1] / 1000 / 2),
    "llava": lambda size, resized: (max(size) * 0.005, max(size) * 0.005),
}


def _random_box(rng: random.Random, width: int, height: int) -> tuple:
    x1, x2 = sorted(rng.sample(range(width + 1), 2))
    y1, y2 = sorted(rng.sample(range(height + 1), 2))
    if rng.random() < 0.5:  # half of them with fractional pixels, as COCO's boxes have
        x1, x2 = sorted((rng.uniform(0, width), rng.uniform(0, width)))
        y1, y2 = sorted((rng.uniform(0, height), rng.uniform(0, height)))
    return x1, y1, x2, y2


@pytest.mark.parametrize("convention", list(CONVENTIONS))
def test_a_written_box_reads_back_within_half_a_unit_of_the_models_numbers(convention):
    rng = random.Random(convention)
    for _ in range(2000):
        width, height = rng.randint(2, 3000), rng.randint(2, 3000)
        if max(width, height) / min(width, height) > 200:
            continue
        box = _random_box(rng, width, height)
        if check_box(box, (width, height)) is not None:  # the rare draw of zero width
            continue
        resized_height, resized_width = smart_resize(height, width, factor=28, min_pixels=3136,
                                                     max_pixels=rng.choice([7840, 1003520, 12845056]))
        resized = (resized_width, resized_height)
        text = format_box(convention, box, "a thing", (width, height), resized)
        parsed = parse_box(convention, text, (width, height), resized)
        tolerance_x, tolerance_y = TOLERANCE[convention]((width, height), resized)
        for got, want, tolerance in zip(parsed, box, (tolerance_x, tolerance_y, tolerance_x, tolerance_y)):
            assert abs(got - want) <= tolerance + 1e-9, (text, box, parsed)


# ------------------------------------------------------------------------------------------- what models really say

QWEN2_5_VL_FIRST_BOX = (101 * 640 / 644, 198 * 480 / 476, 302 * 640 / 644, 397 * 480 / 476)


@pytest.mark.parametrize("text", [
    '```json\n[\n\t{"bbox_2d": [101, 198, 302, 397], "label": "the red circle"}\n]\n```',
    '{"bbox_2d": [101, 198, 302, 397], "label": "the red circle"}',
    '[ { "bbox_2d" : [ 101 , 198 , 302 , 397 ] , "label" : "the red circle" } ]',
    '[{"bbox_2d": [101, 198, 302, 397], "label": "the red circle"}, {"bbox_2d": [5, 6, 7, 8], "label": "a square"}]',
    '[{"bbox_2d": [101, 198, 302, 397]}]',
    '[{"label": "the red circle", "bbox_2d": [101.0, 198.0, 302.0, 397.0]}]',
    "[{'bbox_2d': [101, 198, 302, 397], 'label': 'the red circle'}]",
    'The red circle is here: [{"bbox_2d": [101, 198, 302, 397], "label": "the red circle"}, {"bbox_2d": [5, 6',
], ids=["fenced", "bare dict", "spaced", "several boxes", "no label", "label first, floats", "single quotes",
        "cut off after the first box"])
def test_json_answers_read_as_their_first_box_however_wrapped(text):
    assert parse_box("qwen2_5_vl", text, SIZE, RESIZED) == pytest.approx(QWEN2_5_VL_FIRST_BOX)


@pytest.mark.parametrize("text", [
    "<|object_ref_start|>the red circle<|object_ref_end|><|box_start|>(156,417),(469,833)<|box_end|>",
    "<|box_start|>(156,417),(469,833)<|box_end|>",
    "the red circle(156,417),(469,833)",  # the special tokens dropped by decoding with skip_special_tokens=True
    "<|box_start|>( 156 , 417 ) , ( 469 , 833 )<|box_end|>",
    "(156,417)(469,833)",
    "the man (left) is at (156,417),(469,833) and (1,2),(3,4)",
], ids=["as written", "no object_ref", "decoded without special tokens", "spaced", "no comma", "words around"])
def test_qwen2_vl_answers_read_with_or_without_their_markers(text):
    assert parse_box("qwen2_vl", text, SIZE) == pytest.approx((99.84, 200.16, 300.16, 399.84))


def test_a_reversed_box_comes_back_ordered():
    assert parse_box("qwen3_vl", '[{"bbox_2d": [469, 833, 156, 417]}]', SIZE) == pytest.approx(
        (99.84, 200.16, 300.16, 399.84))
    assert parse_box("llava", "[0.47, 0.75, 0.16, 0.44]", SIZE) == pytest.approx((102.4, 201.6, 300.8, 400.0))


def test_a_box_past_the_border_is_clamped_to_the_image():
    assert parse_box("qwen2_vl", "(-20,0),(1200,1000)", SIZE) == (0.0, 0.0, 640.0, 480.0)
    assert parse_box("qwen2_5_vl", '{"bbox_2d": [-10, 100, 900, 600]}', SIZE, RESIZED) == pytest.approx(
        (0.0, 100 * 480 / 476, 640.0, 480.0))
    # y: -0.1 * 640 - 80 -> 0, 0.5 * 640 - 80 = 240
    assert parse_box("llava", "[0.5, -0.1, 1.7, 0.5]", SIZE) == (320.0, 0.0, 640.0, 240.0)


@pytest.mark.parametrize("convention", list(CONVENTIONS))
@pytest.mark.parametrize("text", [
    "",
    "I cannot find the red circle in this image.",
    "[1, 2, 3]",
    '{"bbox_2d": [1, 2]}',
    '{"bbox_2d": ["a", "b", "c", "d"]}',
    "(1,2)",
    "(1,2),(3,",
])
def test_an_answer_without_a_whole_box_parses_to_none(convention, text):
    assert parse_box(convention, text, SIZE, RESIZED) is None


def test_each_convention_reads_only_its_own_writing():
    # A box in the wrong convention is a wrong answer, not one to rescue.
    assert parse_box("qwen2_vl", '[{"bbox_2d": [156, 417, 469, 833]}]', SIZE) is None
    assert parse_box("qwen3_vl", "(156,417),(469,833)", SIZE) is None


# ------------------------------------------------------------------------------------------------------- check_box


def test_check_box_accepts_a_box_inside_the_image_even_touching_its_border():
    assert check_box((100, 200, 300, 400), SIZE) is None
    assert check_box((0, 0, 640, 480), SIZE) is None
    assert check_box([0.5, 0.5, 639.5, 479.5], SIZE) is None


@pytest.mark.parametrize(("box", "reason"), [
    ((100, 200, 641, 400), "outside the 640x480 image"),
    ((-1, 200, 300, 400), "outside the 640x480 image"),
    ((100, 200, 300, 480.5), "outside the 640x480 image"),
    ((100, 200, 100, 400), "zero or negative area"),
    ((100, 400, 300, 200), "zero or negative area"),
    ((100, math.nan, 300, 400), "not a finite number"),
    ((100, 200, math.inf, 400), "not a finite number"),
    ((100, 200, 300), "3 coordinates instead of 4"),
])
def test_check_box_names_why_a_box_is_unusable(box, reason):
    assert reason in check_box(box, SIZE)


def test_check_box_refuses_an_image_without_area():
    assert "has no area" in check_box((0, 0, 1, 1), (0, 480))
