"""Each task's adapt / reference / score on hand-made rows, and the world's records for every task."""

import json
import math

import pytest
from PIL import Image
from pycocoevalcap.cider.cider import Cider

from vlmtune import world
from vlmtune.tasks import TASKS

QWEN2 = {"model_type": "qwen2_vl", "image_factor": 28, "image_min_pixels": 3136, "image_max_pixels": 12845056}
QWEN25 = {"model_type": "qwen2_5_vl", "image_factor": 28, "image_min_pixels": 3136, "image_max_pixels": 12845056}


def grounding_record():
    return {"id": "g1", "task": "grounding", "box": [100, 200, 300, 400], "image_size": [640, 480],
            "expression": "the red circle"}


def messages(answer):
    return [{"role": "user", "content": [{"type": "image", "image": "x.png"}, {"type": "text", "text": "Locate."}]},
            {"role": "assistant", "content": [{"type": "text", "text": answer}]}]


def test_grounding_answer_is_rewritten_in_qwen2_vl_thousandths():
    neutral = '[{"bbox_2d": [100, 200, 300, 400], "label": "the red circle"}]'
    adapted = TASKS["grounding"].adapt(messages(neutral), grounding_record(), QWEN2)
    assert adapted[0] == messages(neutral)[0]
    assert adapted[1]["content"][0]["text"] == (
        "<|object_ref_start|>the red circle<|object_ref_end|><|box_start|>(156,417),(469,833)<|box_end|>")


def test_grounding_answer_is_rewritten_in_qwen2_5_vl_resized_pixels():
    adapted = TASKS["grounding"].adapt(messages("x"), grounding_record(), QWEN25)
    # 640 x 480 resizes to 644 x 476 under Qwen's 28-pixel grid.
    assert json.loads(adapted[1]["content"][0]["text"]) == [{"bbox_2d": [101, 198, 302, 397], "label": "the red circle"}]
    assert TASKS["grounding"].reference(grounding_record(), QWEN25)["resized_size"] == [644, 476]


def test_grounding_scores_parse_each_answer_back_to_original_pixels(tmp_path):
    image = tmp_path / "a.png"
    Image.new("RGB", (640, 480)).save(image)
    row = {"image": str(image), "reference": "", **TASKS["grounding"].reference(grounding_record(), QWEN2)}
    rows = [row | {"base": "red; circle; small; top left",
                   "prediction": "the red circle(156,417),(469,833)"},
            row | {"base": "(0,0),(100,100)", "prediction": "(600,0),(1000,400)"}]
    scores = TASKS["grounding"].score(rows, tmp_path)
    assert scores["fine_tuned"]["acc@0.5"] == 0.5
    assert scores["base"]["unparsed"] == 1
    assert (tmp_path / "boxes_fine_tuned.png").is_file()


def test_classification_scores_parse_free_text_to_classes(tmp_path):
    classes = ["ball", "crate", "tent"]
    rows = [{"label": "ball", "classes": classes, "aliases": {}, "base": "red; circle", "prediction": "It's a ball."},
            {"label": "tent", "classes": classes, "aliases": {}, "base": "tent", "prediction": "crate"}]
    scores = TASKS["classification"].score(rows, tmp_path)
    assert scores["fine_tuned"]["accuracy"] == 0.5
    assert scores["fine_tuned"]["confusion"] == [[1, 0, 0, 0], [0, 0, 0, 0], [0, 1, 0, 0]]
    assert scores["base"]["confusion"] == [[0, 0, 0, 1], [0, 0, 0, 0], [0, 0, 1, 0]]
    assert (tmp_path / "confusion_fine_tuned.png").is_file()


def test_classification_scores_read_plural_answers_and_the_runs_aliases(tmp_path):
    record = {"label": "ants", "classes": ["ants", "bees"], "aliases": {"formica": "ants"}}
    reference = TASKS["classification"].reference(record, QWEN2)
    assert reference == record
    rows = [reference | {"base": "It is a bee.", "prediction": "ant"},
            reference | {"base": "ants and bees", "prediction": "Una formica."}]
    scores = TASKS["classification"].score(rows, tmp_path)
    assert scores["fine_tuned"]["accuracy"] == 1.0
    assert scores["base"]["confusion"] == [[0, 1, 1], [0, 0, 0]]  # 'a bee' for ants, then two classes: unparsed
    assert TASKS["classification"].reference({"label": "ants", "classes": ["ants"]}, QWEN2)["aliases"] == {}


def test_vqa_scores_of_soft_scores_are_the_score_of_the_predicted_answer(tmp_path):
    record = {"answers": ["net", "netting"], "answer_scores": {"net": 0.9, "netting": 0.3}}
    reference = TASKS["vqa"].reference(record, QWEN2)
    assert reference == record
    rows = [reference | {"base": "Netting.", "prediction": "a net"},
            {"answers": ["2"] * 10, "base": "fence", "prediction": "two"}]
    scores = TASKS["vqa"].score(rows, tmp_path)
    assert scores["fine_tuned"]["vqa_accuracy"] == pytest.approx((0.9 + 1.0) / 2)
    assert scores["base"]["vqa_accuracy"] == pytest.approx((0.3 + 0.0) / 2)
    assert TASKS["vqa"].reference({"answers": ["2"] * 10}, QWEN2) == {"answers": ["2"] * 10}


def test_vqa_scores_use_the_official_accuracy_and_exact_match_for_single_answers(tmp_path):
    rows = [{"answers": ["cat"] * 3 + ["dog"] * 7, "base": "the cat.", "prediction": "dog"},
            {"answers": ["2"], "base": "two", "prediction": "3"}]
    scores = TASKS["vqa"].score(rows, tmp_path)
    assert scores["base"]["vqa_accuracy"] == pytest.approx((0.9 + 1.0) / 2)
    assert scores["fine_tuned"]["vqa_accuracy"] == pytest.approx((1.0 + 0.0) / 2)


def caption_rows():
    """Two images, two captions each (lower case, no punctuation: the PTB tokenisation leaves them as they are).
    The fine-tuned answers are each image's second caption, the base's a few words and the second image's first."""
    return [{"image": "a", "reference": "a large red circle at the top left",
             "references": ["a large red circle at the top left", "a big round red thing up on the left"],
             "base": "a red thing", "prediction": "a big round red thing up on the left"},
            {"image": "b", "reference": "a small blue square at the bottom right",
             "references": ["a small blue square at the bottom right", "a tiny blue box down on the right"],
             "base": "a small blue square at the bottom right", "prediction": "a tiny blue box down on the right"}]


def test_caption_answer_equal_to_any_caption_of_its_image_is_an_exact_match(tmp_path):
    scores = TASKS["caption"].score(caption_rows(), tmp_path)
    assert scores["fine_tuned"]["exact_match"] == 1.0
    assert scores["base"]["exact_match"] == 0.5
    # Each answer is one of its references word for word: every n-gram matches and no brevity penalty.
    assert scores["fine_tuned"]["bleu4"] == pytest.approx(1.0, abs=1e-6)


def test_caption_bleu_clips_against_every_caption_and_cider_is_pycocoevalcaps(tmp_path):
    rows = caption_rows()
    scores = TASKS["caption"].score(rows, tmp_path)["base"]
    # By hand, over both answers ("a red thing", and the second image's first caption, 8 words), counts clipped
    # against both captions of each image ("thing" is only in the first image's second caption):
    # 1-grams 3 + 8 of 3 + 8 match; 2-grams "red thing" + 7 of 2 + 7; 3-grams 0 + 6 of 1 + 6; 4-grams 0 + 5 of 0 + 5.
    # The brevity penalty takes the caption length closest to each answer, 8 (of 8 and 9) and 8, against 3 + 8 words.
    expected = math.exp(1 - 16 / 11) * (11 / 11 * 8 / 9 * 6 / 7 * 5 / 5) ** (1 / 4)
    assert scores["bleu4"] == pytest.approx(expected, abs=1e-6)
    truths = {i: row["references"] for i, row in enumerate(rows)}
    cider, _ = Cider().compute_score(truths, {i: [row["base"]] for i, row in enumerate(rows)})
    assert scores["cider"] == pytest.approx(cider)


def test_world_records_of_every_task_agree_with_their_scene():
    scene = world.make_scene(0, 5)
    thing = scene.things[0]
    assert next(world.classification_records(6))["label"] in world.CLASSES
    grounding = list(world.grounding_records(6))[5]
    assert (grounding["expression"], grounding["box"]) == (f"the {thing.colour} {thing.shape}", thing.box)
    vqa = list(world.vqa_records(6))[5]
    attribute = tuple(world.VQA_QUESTIONS)[5 % 4]
    assert vqa["question"] == world.VQA_QUESTIONS[attribute]
    assert vqa["answers"] == [getattr(thing, attribute)] * 10


def test_scenes_are_deterministic_and_objects_stay_inside_their_quarter():
    for index in range(200):
        scene = world.make_scene(3, index)
        assert scene.render().tobytes() == world.make_scene(3, index).render().tobytes()
        x1, y1, x2, y2 = scene.things[0].box
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        expected = ("top" if cy < 56 else "bottom") + " " + ("left" if cx < 56 else "right")
        assert scene.things[0].position == expected
        assert 0 <= x1 < x2 <= 112 and 0 <= y1 < y2 <= 112
