"""Unit tier: vlmtune.metrics on hand-made inputs, with expectations worked out by hand in the comments."""

import pytest
from PIL import Image

from vlmtune.metrics import (
    box_iou,
    caption_scores,
    classification_report,
    exact_match,
    exact_match_any,
    grounding_scores,
    normalize_text,
    normalize_vqa_answer,
    parse_class,
    save_confusion_matrix,
    tokenize_caption,
    vqa_accuracy,
    vqa_score,
    vqa_soft_accuracy,
)

# ---------------------------------------------------------------------------------------------------------- text


def test_normalize_text_lowercases_collapses_spaces_and_drops_one_trailing_period():
    assert normalize_text("  The   Red\tCat. ") == "the red cat"
    assert normalize_text("Wait..") == "wait."


def test_exact_match_is_the_fraction_equal_after_normalization():
    assert exact_match(["A cat.", "dog", "bird"], ["a cat", "Dog", "fish"]) == pytest.approx(2 / 3)


def test_exact_match_any_counts_a_prediction_equal_to_any_of_its_references():
    # "a dog" is the second reference of the first image; "a bird" none of the second's; "A fish." the third's only.
    references = [["a cat", "A dog."], ["a cat", "a dog"], ["a fish"]]
    assert exact_match_any(["a dog", "a bird", "A fish."], references) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="2 predictions but 3 references"):
        exact_match_any(["a dog", "a bird"], references)


@pytest.mark.parametrize(
    ("predictions", "references", "message"),
    [(["a"], ["a", "b"], "1 predictions but 2 references"), ([], [], "no predictions")],
)
def test_parallel_lists_that_are_empty_or_differ_in_length_raise(predictions, references, message):
    with pytest.raises(ValueError, match=message):
        exact_match(predictions, references)
    with pytest.raises(ValueError, match=message):
        grounding_scores(predictions, references)


# ------------------------------------------------------------------------------------------------------ captions


def test_tokenize_caption_drops_ptb_punctuation_and_splits_clitics():
    assert tokenize_caption("A dog's toy, (blue).") == "a dog 's toy blue"
    assert tokenize_caption("Don't stop -- ever...") == "do n't stop ever"
    assert tokenize_caption('A black-and-white "cat" at 3.5 m') == "a black-and-white cat at 3.5 m"


def test_caption_identical_to_its_reference_scores_bleu4_one():
    scores = caption_scores(["A dog runs on the grass."], [["a dog runs on the grass"]])
    assert scores["bleu4"] == pytest.approx(1.0)


def test_caption_sharing_no_word_with_its_reference_scores_bleu4_about_zero():
    scores = caption_scores(["two cats sleep indoors"], [["a dog runs on the grass"]])
    assert scores["bleu4"] < 1e-6


def test_caption_bleu_matches_hand_computed_ngram_precisions():
    # "the cat sat on the mat" against "the cat is on the mat", same length so no brevity penalty.
    # Clipped n-gram precisions: 1-grams 5/6, 2-grams 3/5 (the cat, on the, the mat), 3-grams 1/4 (on the mat).
    scores = caption_scores(["the cat sat on the mat"], [["the cat is on the mat"]])
    assert scores["bleu1"] == pytest.approx(5 / 6)
    assert scores["bleu2"] == pytest.approx((5 / 6 * 3 / 5) ** (1 / 2))
    assert scores["bleu3"] == pytest.approx((5 / 6 * 3 / 5 * 1 / 4) ** (1 / 3))


def test_caption_shorter_than_its_reference_pays_the_brevity_penalty():
    # Every n-gram matches; 6 words against 7 gives exp(1 - 7/6).
    scores = caption_scores(["the cat is on the mat"], [["the cat is on the mat today"]])
    assert scores["bleu4"] == pytest.approx(2.718281828 ** (1 - 7 / 6))


def test_cider_is_ten_when_each_caption_equals_its_reference_across_images():
    scores = caption_scores(
        ["a dog runs on the grass", "two cats sleep on a red sofa"],
        [["a dog runs on the grass"], ["two cats sleep on a red sofa"]],
    )
    assert scores["cider"] == pytest.approx(10.0)


def test_cider_of_a_single_image_is_zero_because_every_idf_is_zero():
    assert caption_scores(["a dog runs"], [["a dog runs"]])["cider"] == 0.0


def test_caption_scores_need_a_reference_for_every_image():
    with pytest.raises(ValueError, match="at least one reference"):
        caption_scores(["a dog"], [[]])


# ----------------------------------------------------------------------------------------------------------- VQA


@pytest.mark.parametrize(
    ("answer", "normalized"),
    [
        ("Two", "2"),
        ("None", "0"),
        ("the cat.", "cat"),
        ("An apple", "apple"),
        ("dont know", "don't know"),
        ("Whats that", "what's that"),
        ("1,000", "1000"),  # a comma between digits deletes every mark
        ("3.5", "3.5"),  # a decimal point stays
        ("black/white", "black white"),  # a mark inside a word becomes a space
        ("yes, it is", "yes it is"),  # a mark beside a space is deleted
        ("yes!", "yes"),
    ],
)
def test_normalize_vqa_answer_follows_the_official_processing(answer, normalized):
    assert normalize_vqa_answer(answer) == normalized


def test_vqa_accuracy_averages_ten_leave_one_out_subsets():
    # Leaving out one of the 3 cats: 2 others agree, 2/3 (3 subsets). Leaving out another answer: 3 agree, 1 (7).
    answers = ["cat"] * 3 + ["dog"] * 5 + ["kitten"] * 2
    assert vqa_accuracy("cat", answers) == pytest.approx((3 * 2 / 3 + 7 * 1) / 10)


@pytest.mark.parametrize(
    ("agreeing", "expected"),
    [(0, 0.0), (1, 9 * (1 / 3) / 10), (2, (2 * 1 / 3 + 8 * 2 / 3) / 10), (4, 1.0), (10, 1.0)],
)
def test_vqa_accuracy_counts_agreeing_humans_up_to_three(agreeing, expected):
    answers = ["cat"] * agreeing + ["dog"] * (10 - agreeing)
    assert vqa_accuracy("cat", answers) == pytest.approx(expected)


def test_vqa_accuracy_normalizes_prediction_and_human_answers_alike():
    assert vqa_accuracy("Two", ["2"] * 10) == pytest.approx(1.0)
    assert vqa_accuracy("the cat.", ["cat"] * 10) == pytest.approx(1.0)
    assert vqa_accuracy("2", ["two"] * 10) == pytest.approx(1.0)


def test_vqa_accuracy_with_fewer_than_ten_answers_leaves_each_one_out_in_turn():
    # Three agreeing answers: each subset keeps 2 of them, 2/3, so 2/3 is the best this question allows.
    assert vqa_accuracy("cat", ["cat", "cat", "cat"]) == pytest.approx(2 / 3)
    assert vqa_accuracy("cat", ["cat", "cat", "dog"]) == pytest.approx((2 * 1 / 3 + 1 * 2 / 3) / 3)


def test_vqa_accuracy_refuses_a_single_answer_that_no_other_could_confirm():
    with pytest.raises(ValueError, match="at least 2 human answers, got 1"):
        vqa_accuracy("cat", ["cat"])


# The soft scores of bottom-up-attention's compute_softscore.py, which LXMERT's files use, for 1, 2, 3 and 4+ humans.
LXMERT_SCORES = {1: 0.3, 2: 0.6, 3: 0.9, 4: 1.0}


@pytest.mark.parametrize("agreeing", [1, 2, 3, 4, 7])
def test_vqa_soft_accuracy_of_lxmert_scores_equals_the_official_accuracy(agreeing):
    ten = ["net"] * agreeing + ["netting"] * (10 - agreeing)
    scores = {"net": LXMERT_SCORES[min(agreeing, 4)], "netting": LXMERT_SCORES[min(10 - agreeing, 4)]}
    assert vqa_soft_accuracy("net", scores) == pytest.approx(vqa_accuracy("net", ten))


def test_vqa_soft_accuracy_is_the_score_of_the_normalized_prediction_or_zero():
    scores = {"net": 1.0, "2": 0.3}
    assert vqa_soft_accuracy("A net.", scores) == 1.0
    assert vqa_soft_accuracy("Two", scores) == 0.3
    assert vqa_soft_accuracy("fence", scores) == 0.0


def test_vqa_score_is_the_mean_over_questions():
    answers = [["cat"] * 10, ["cat"] * 3 + ["dog"] * 7, ["dog"] * 10]
    assert vqa_score(["cat", "cat", "cat"], answers) == pytest.approx((1.0 + 0.9 + 0.0) / 3)


# ------------------------------------------------------------------------------------------------ classification

CLASSES = ["cat", "dog", "spider"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("It's a Cat.", "cat"),
        ("DOG", "dog"),
        ("I see two cats", "cat"),
        ("concatenate", None),  # whole words only
        ("a cat and a dog", None),  # two classes named: ambiguous
        ("a cat, yes, a cat", "cat"),
        ("nothing here", None),
        ("这是一只猫。", "cat"),  # CJK alias, found inside a run of characters without spaces
        ("È un ragno", "spider"),
    ],
)
def test_parse_class_finds_the_one_class_named(text, expected):
    assert parse_class(text, CLASSES, aliases={"猫": "cat", "ragno": "spider"}) == expected


def test_parse_class_prefers_the_longest_name():
    assert parse_class("A sea lion.", ["lion", "sea lion"]) == "sea lion"
    assert parse_class("Three boxes", ["box", "ball"]) == "box"


@pytest.mark.parametrize(
    ("text", "classes", "expected"),
    [
        ("ant", ["ants", "bees"], "ants"),  # the hymenoptera dataset's folders are plural
        ("It is a bee.", ["ants", "bees"], "bees"),
        ("Two ants.", ["ants", "bees"], "ants"),
        ("BEES", ["ants", "bees"], "bees"),
        ("an ant next to a bee", ["ants", "bees"], None),  # two classes named
        ("Ants and bees.", ["ants", "bees"], None),
        ("a butterfly", ["butterflies", "moths"], "butterflies"),
        ("Butterflies", ["butterfly", "moth"], "butterfly"),
        ("Two mice.", ["mouse", "rat"], "mouse"),
        ("a mouse", ["mice", "rats"], "mice"),
        ("horses", ["horse", "cow"], "horse"),
        ("a horse", ["horses", "cows"], "horses"),
        ("buses", ["bus", "car"], "bus"),
        ("It's a category of animal.", ["cat", "dog"], None),  # 'cat' inside another word
        ("anthills", ["ants", "bees"], None),
        ("my glasses", ["glass", "glasses"], "glasses"),  # a name as written beats another's plural
        ("a glass", ["glass", "glasses"], "glass"),
        ("sea lions", ["lion", "sea lion"], "sea lion"),
    ],
)
def test_parse_class_reads_singular_and_plural_forms_of_the_names(text, classes, expected):
    assert parse_class(text, classes) == expected


def test_parse_class_reads_plurals_of_aliases_too():
    aliases = {"formica": "ants", "honeybee": "bees"}
    assert parse_class("Two honeybees.", ["ants", "bees"], aliases) == "bees"
    assert parse_class("una formica", ["ants", "bees"], aliases) == "ants"
    assert parse_class("honeybees and ants", ["ants", "bees"], aliases) is None


def test_parse_class_rejects_aliases_to_unknown_classes():
    with pytest.raises(ValueError, match="not among the classes"):
        parse_class("gatto", CLASSES, aliases={"gatto": "kitten"})


def test_classification_report_counts_confusion_and_per_class_scores():
    references = ["cat", "cat", "cat", "dog", "dog", "spider"]
    predictions = ["cat", "cat", "dog", "dog", None, "cat"]
    report = classification_report(predictions, references, CLASSES)
    # Columns: cat, dog, spider, unparsed.
    assert report["confusion"] == [[2, 1, 0, 0], [0, 1, 0, 1], [1, 0, 0, 0]]
    assert report["accuracy"] == pytest.approx(3 / 6)
    cat, dog, spider = (report["per_class"][c] for c in CLASSES)
    assert (cat["precision"], cat["recall"], cat["support"]) == (pytest.approx(2 / 3), pytest.approx(2 / 3), 3)
    assert cat["f1"] == pytest.approx(2 / 3)
    assert (dog["precision"], dog["recall"], dog["support"]) == (pytest.approx(1 / 2), pytest.approx(1 / 2), 2)
    assert dog["f1"] == pytest.approx(1 / 2)
    # Never predicted and never right: every zero division gives 0.0.
    assert spider == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert report["macro_f1"] == pytest.approx((2 / 3 + 1 / 2 + 0) / 3)


def test_classification_report_rejects_labels_outside_the_classes():
    with pytest.raises(ValueError, match=r"labels \['bird'\] are not among the classes"):
        classification_report(["cat"], ["bird"], CLASSES)


def test_save_confusion_matrix_writes_a_png_with_the_unparsed_column(tmp_path):
    confusion = [[2, 1, 0, 0], [0, 1, 0, 1], [1, 0, 0, 0]]
    path = save_confusion_matrix(confusion, CLASSES, tmp_path / "confusion.png")
    assert path == tmp_path / "confusion.png"
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.width > 0 and image.height > 0


# ----------------------------------------------------------------------------------------------------- grounding


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ((0, 0, 10, 10), (0, 0, 10, 10), 1.0),
        ((0, 0, 10, 10), (5, 0, 15, 10), 50 / 150),  # half overlap: 50 shared, 100 + 100 - 50 in all
        ((0, 0, 10, 10), (2, 2, 7, 7), 25 / 100),  # one inside the other
        ((0, 0, 10, 10), (10, 0, 20, 10), 0.0),  # touching edges
        ((0, 0, 10, 10), (20, 20, 30, 30), 0.0),  # disjoint
        ((5, 5, 5, 5), (5, 5, 5, 5), 0.0),  # no area at all
        ((10, 10, 0, 0), (0, 0, 10, 10), 0.0),  # inverted box counts as empty
    ],
)
def test_box_iou_matches_hand_computed_overlaps(a, b, expected):
    assert box_iou(a, b) == pytest.approx(expected)


def test_grounding_scores_count_none_as_a_miss_with_zero_iou():
    truths = [(0, 0, 10, 10), (0, 0, 10, 10), (0, 0, 10, 10), (0, 0, 10, 10)]
    # IoUs: 1.0, 0.5 (exactly at the threshold), 1/3, None -> 0.
    predicted = [(0, 0, 10, 10), (0, 0, 10, 5), (5, 0, 15, 10), None]
    scores = grounding_scores(predicted, truths)
    assert scores == {"acc@0.5": 0.5, "mean_iou": pytest.approx((1.0 + 0.5 + 1 / 3 + 0.0) / 4), "unparsed": 1}
