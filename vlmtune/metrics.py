"""Metrics: pure functions of (predictions, references), so a saved predictions.jsonl can be rescored without a GPU.

- text: `normalize_text`, `exact_match`, `exact_match_any`
- captions: `tokenize_caption`, `caption_scores` (BLEU-1..4 and CIDEr from pycocoevalcap, without Java)
- VQA: `normalize_vqa_answer`, `vqa_accuracy`, `vqa_score` (the official VQA v2 / OK-VQA accuracy), `vqa_soft_accuracy`
- classification: `parse_class`, `classification_report`, `save_confusion_matrix` (`confusion_figure`)
- grounding: `box_iou`, `grounding_scores`

Every function that takes two parallel lists raises ValueError when they are empty or differ in length.
"""

import re
from pathlib import Path

from matplotlib.figure import Figure
from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider


def _check_parallel(predictions: list, references: list) -> None:
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references: one each is needed")
    if not predictions:
        raise ValueError("no predictions to score: a score over an empty set is undefined")


# ---------------------------------------------------------------------------------------------------------- text


def normalize_text(s: str) -> str:
    """'  The  Cat. ' -> 'the cat': lower-case, whitespace collapsed, one trailing period dropped."""
    return " ".join(s.lower().split()).removesuffix(".").rstrip()


def exact_match(predictions: list[str], references: list[str]) -> float:
    """The fraction of predictions equal to their reference after `normalize_text`."""
    _check_parallel(predictions, references)
    matches = sum(normalize_text(p) == normalize_text(r) for p, r in zip(predictions, references))
    return matches / len(predictions)


def exact_match_any(predictions: list[str], references: list[list[str]]) -> float:
    """The fraction of predictions equal to one of their references (COCO's five captions) after `normalize_text`."""
    _check_parallel(predictions, references)
    matches = sum(normalize_text(p) in {normalize_text(r) for r in refs} for p, refs in zip(predictions, references))
    return matches / len(predictions)


# ------------------------------------------------------------------------------------------------------ captions

# Mirrors pycocoevalcap's PTBTokenizer without Java: words split from punctuation and clitics ("don't" -> "do n't",
# "dog's" -> "dog 's"), then the tokens in its PUNCTUATIONS list dropped (quotes, round and curly brackets,
# . ? ! , : ; - -- ...). Square brackets stay, as PTB's -LSB-/-RSB- do.
_CAPTION_TOKEN = re.compile(r"\w+(?=n't\b)|n't|'(?:s|re|ve|ll|d|m)\b|\w+(?:[-./]\w+)*|\.\.\.|--|\S")
_PTB_PUNCTUATION = {"'", '"', "`", "(", ")", "{", "}", ".", "?", "!", ",", ":", "-", "--", "...", ";"}


def tokenize_caption(s: str) -> str:
    """'A dog, running.' -> 'a dog running': what pycocoevalcap's scorers expect (space-separated tokens)."""
    tokens = _CAPTION_TOKEN.findall(s.lower())
    return " ".join(t for t in tokens if t not in _PTB_PUNCTUATION)


def caption_scores(predictions: list[str], references: list[list[str]]) -> dict:
    """Corpus BLEU-1..4 and CIDEr (as COCO reports it, x10 scale) of one caption per image against its references.

    CIDEr weighs n-grams by their IDF over the references of every image in the call, so score the whole test set at
    once: with a single image every n-gram has IDF 0 and CIDEr is 0, whatever the caption.
    """
    _check_parallel(predictions, references)
    if any(not refs for refs in references):
        raise ValueError("every image needs at least one reference caption")
    results = {i: [tokenize_caption(p)] for i, p in enumerate(predictions)}
    truths = {i: [tokenize_caption(r) for r in refs] for i, refs in enumerate(references)}
    bleu, _ = Bleu(4).compute_score(truths, results, verbose=0)
    cider, _ = Cider().compute_score(truths, results)
    return {**{f"bleu{n}": float(bleu[n - 1]) for n in range(1, 5)}, "cider": float(cider)}


# ----------------------------------------------------------------------------------------------------------- VQA
# The official evaluation: https://github.com/GT-Vision-Lab/VQA/blob/master/PythonEvaluationTools/vqaEvaluation/vqaEval.py

# Verbatim from the official script, quirks included: capitalised keys never match (words are lower-cased first),
# and "somebody'd" maps to "somebodyd". Keeping them makes our scores equal the official ones.
VQA_CONTRACTIONS = {
    "aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've", "couldnt": "couldn't",
    "couldn'tve": "couldn't've", "couldnt've": "couldn't've", "didnt": "didn't", "doesnt": "doesn't", "dont": "don't",
    "hadnt": "hadn't", "hadnt've": "hadn't've", "hadn'tve": "hadn't've", "hasnt": "hasn't", "havent": "haven't",
    "hed": "he'd", "hed've": "he'd've", "he'dve": "he'd've", "hes": "he's", "howd": "how'd", "howll": "how'll",
    "hows": "how's", "Id've": "I'd've", "I'dve": "I'd've", "Im": "I'm", "Ive": "I've", "isnt": "isn't", "itd": "it'd",
    "itd've": "it'd've", "it'dve": "it'd've", "itll": "it'll", "let's": "let's", "maam": "ma'am", "mightnt": "mightn't",
    "mightnt've": "mightn't've", "mightn'tve": "mightn't've", "mightve": "might've", "mustnt": "mustn't",
    "mustve": "must've", "neednt": "needn't", "notve": "not've", "oclock": "o'clock", "oughtnt": "oughtn't",
    "ow's'at": "'ow's'at", "'ows'at": "'ow's'at", "'ow'sat": "'ow's'at", "shant": "shan't", "shed've": "she'd've",
    "she'dve": "she'd've", "she's": "she's", "shouldve": "should've", "shouldnt": "shouldn't",
    "shouldnt've": "shouldn't've", "shouldn'tve": "shouldn't've", "somebody'd": "somebodyd",
    "somebodyd've": "somebody'd've", "somebody'dve": "somebody'd've", "somebodyll": "somebody'll",
    "somebodys": "somebody's", "someoned": "someone'd", "someoned've": "someone'd've", "someone'dve": "someone'd've",
    "someonell": "someone'll", "someones": "someone's", "somethingd": "something'd", "somethingd've": "something'd've",
    "something'dve": "something'd've", "somethingll": "something'll", "thats": "that's", "thered": "there'd",
    "thered've": "there'd've", "there'dve": "there'd've", "therere": "there're", "theres": "there's", "theyd": "they'd",
    "theyd've": "they'd've", "they'dve": "they'd've", "theyll": "they'll", "theyre": "they're", "theyve": "they've",
    "twas": "'twas", "wasnt": "wasn't", "wed've": "we'd've", "we'dve": "we'd've", "weve": "we've", "werent": "weren't",
    "whatll": "what'll", "whatre": "what're", "whats": "what's", "whatve": "what've", "whens": "when's",
    "whered": "where'd", "wheres": "where's", "whereve": "where've", "whod": "who'd", "whod've": "who'd've",
    "who'dve": "who'd've", "wholl": "who'll", "whos": "who's", "whove": "who've", "whyll": "why'll", "whyre": "why're",
    "whys": "why's", "wont": "won't", "wouldve": "would've", "wouldnt": "wouldn't", "wouldnt've": "wouldn't've",
    "wouldn'tve": "wouldn't've", "yall": "y'all", "yall'll": "y'all'll", "y'allll": "y'all'll",
    "yall'd've": "y'all'd've", "y'alld've": "y'all'd've", "y'all'dve": "y'all'd've", "youd": "you'd",
    "youd've": "you'd've", "you'dve": "you'd've", "youll": "you'll", "youre": "you're", "youve": "you've",
}
VQA_NUMBER_WORDS = {
    "none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6", "seven": "7",
    "eight": "8", "nine": "9", "ten": "10",
}
VQA_ARTICLES = {"a", "an", "the"}
VQA_PUNCTUATION = [
    ";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",", "?", "!",
]
_DIGIT_COMMA_DIGIT = re.compile(r"\d,\d")
# The official pattern is "(?!<=\d)(\.)(?!\d)": its first group is a lookahead (a typo for a lookbehind) that can
# never fail, so what it does is this: drop every period not followed by a digit ("cat." -> "cat", "3.5" stays).
_PERIOD_NOT_DECIMAL = re.compile(r"\.(?!\d)")


def _strip_vqa_punctuation(s: str) -> str:
    # A comma between digits anywhere ("1,000") deletes every mark instead of spacing it out, so numbers stay whole.
    delete_all = _DIGIT_COMMA_DIGIT.search(s) is not None
    out = s
    for mark in VQA_PUNCTUATION:
        # A mark beside a space is deleted ("yes, it is"); one inside a word splits it ("black/white" -> "black white").
        if delete_all or mark + " " in s or " " + mark in s:
            out = out.replace(mark, "")
        else:
            out = out.replace(mark, " ")
    return _PERIOD_NOT_DECIMAL.sub("", out)


def normalize_vqa_answer(s: str) -> str:
    """The official answer processing: 'The two dogs.' -> '2 dogs', 'Dont know' -> "don't know", '1,000' -> '1000'."""
    s = _strip_vqa_punctuation(s.replace("\n", " ").replace("\t", " ").strip())
    words = [VQA_NUMBER_WORDS.get(word, word) for word in s.lower().split()]
    return " ".join(VQA_CONTRACTIONS.get(word, word) for word in words if word not in VQA_ARTICLES)


def vqa_accuracy(prediction: str, human_answers: list[str]) -> float:
    """min(#humans who gave the answer / 3, 1), averaged over the leave-one-out subsets of the humans' answers.

    With the usual 10 answers, 3 of them "cat": leaving out a "cat" scores 2/3 (3 subsets), leaving out another answer
    scores 1 (7 subsets), so "cat" scores 0.9. With fewer answers the same averaging runs over those present, so the
    best possible score is min(n - 1, 3) / 3: 3 agreeing answers give at most 2/3. One answer leaves no other to
    agree with, and raises ValueError (compare single references with `exact_match`).

    Human answers get the same processing as the prediction, so hand-written ones like "Two" count. The official
    script only strips their punctuation (and only when they differ), as the released annotations come processed.
    """
    if len(human_answers) < 2:
        raise ValueError(f"VQA accuracy needs at least 2 human answers, got {len(human_answers)}")
    prediction = normalize_vqa_answer(prediction)
    matches = [normalize_vqa_answer(answer) == prediction for answer in human_answers]
    # Leaving out answer i, the others hold sum(matches) - matches[i] matches.
    return sum(min((sum(matches) - left_out) / 3, 1.0) for left_out in matches) / len(matches)


def vqa_soft_accuracy(prediction: str, answer_scores: dict[str, float]) -> float:
    """The soft score of the predicted answer, 0.0 when it has none: how LXMERT evaluates its VQA files, whose
    "label" holds {answer: score} (https://github.com/airsplay/lxmert/blob/master/src/tasks/vqa_data.py, VQAEvaluator).

    Those files were made from the ten human answers with scores 0.3, 0.6, 0.9 and 1 for an answer that 1, 2, 3 and 4
    or more humans gave: `vqa_accuracy`'s average over the ten leave-one-out subsets for those counts, so this equals
    the official accuracy, but for answers the file's maker left out (LXMERT keeps only those of its answer
    vocabulary), which score 0. Answers and prediction get the official processing (normalize_vqa_answer).
    """
    prediction = normalize_vqa_answer(prediction)
    return max((score for answer, score in answer_scores.items() if normalize_vqa_answer(answer) == prediction),
               default=0.0)


def vqa_score(predictions: list[str], answers: list[list[str]]) -> float:
    """The mean `vqa_accuracy` over questions (one prediction and its list of human answers per question)."""
    _check_parallel(predictions, answers)
    return sum(vqa_accuracy(p, a) for p, a in zip(predictions, answers)) / len(predictions)


# ------------------------------------------------------------------------------------------------ classification

# Chinese, Japanese and Korean write no spaces between words, so their names can only match as substrings.
_NO_SPACES_SCRIPT = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]")
_SIBILANT_ENDINGS = ("s", "x", "z", "ch", "sh")  # these take -es in the plural: box -> boxes
# Plurals that no rule makes, both ways (singular -> plural).
IRREGULAR_PLURALS = {"child": "children", "foot": "feet", "goose": "geese", "louse": "lice", "man": "men",
                     "mouse": "mice", "ox": "oxen", "person": "people", "tooth": "teeth", "woman": "women"}


def _word_forms(word: str) -> set[str]:
    """The word with its English plural and, should it be a plural, its singular by the simple rules: -s, -es (after
    s, x, z, ch, sh), -ies (after a consonant), and IRREGULAR_PLURALS: "bee" -> {"bee", "bees"}, "ants" ->
    {"ants", "ant", ...}, "butterfly" -> {"butterfly", "butterflies"}. A rule that does not fit the word makes a form
    no answer writes ("ants" -> "antses"), which is harmless."""
    forms = {word}
    if re.search(r"[^aeiou]y$", word):
        forms.add(word[:-1] + "ies")
    else:
        forms.add(word + ("es" if word.endswith(_SIBILANT_ENDINGS) else "s"))
    if word.endswith("ies"):
        forms.update({word[:-3] + "y", word[:-1]})  # butterflies -> butterfly, movies -> movie
    elif word.endswith("es") and word[:-2].endswith(_SIBILANT_ENDINGS):
        forms.update({word[:-2], word[:-1]})  # boxes -> box, horses -> horse
    elif word.endswith("s"):
        forms.add(word[:-1])
    forms.update(plural for singular, plural in IRREGULAR_PLURALS.items() if singular == word)
    forms.update(singular for singular, plural in IRREGULAR_PLURALS.items() if plural == word)
    return forms


def _name_forms(name: str) -> set[str]:
    """A class name as answers write it: its last word singular or plural ("sea lion" -> "sea lions")."""
    if _NO_SPACES_SCRIPT.search(name):
        return {name}
    *first, last = name.split(" ")
    return {" ".join([*first, form]) for form in _word_forms(last)}


def _name_pattern(name: str) -> re.Pattern:
    if _NO_SPACES_SCRIPT.search(name):
        return re.compile(re.escape(name))
    return re.compile(rf"(?<!\w){re.escape(name)}(?!\w)")


def parse_class(text: str, classes: list[str], aliases: dict[str, str] | None = None) -> str | None:
    """The one class a free-text answer names: "It's a Cat." -> "cat", "Two spiders" -> "spider", "It is a bee." ->
    "bees" (class folders are often plural), and "这是猫" -> "cat" with aliases {"猫": "cat"}. None when it names no
    class, or names two different ones ("a cat or a dog").

    Matching ignores case and takes whole words, the name's last word in the singular or the plural (_word_forms), and
    prefers the longest name, so with classes "lion" and "sea lion", "a sea lion" is "sea lion". `aliases` maps other
    names or languages to a class, and their plurals count too. A name as written wins over another class's singular or
    plural of it (classes "glass" and "glasses"), and a singular or plural that two classes share names neither.
    """
    aliases = aliases or {}
    unknown = sorted(set(aliases.values()) - set(classes))
    if unknown:
        raise ValueError(f"aliases point to {unknown}, which are not among the classes {classes}")
    written = {" ".join(name.lower().split()): cls for name, cls in [*((c, c) for c in classes), *aliases.items()]}
    owners: dict[str, set[str]] = {}
    for name, cls in written.items():
        for form in _name_forms(name):
            owners.setdefault(form, set()).add(cls)
    class_of = {form: next(iter(named)) for form, named in owners.items() if len(named) == 1} | written
    text = " ".join(text.lower().split())
    claimed: list[tuple[int, int]] = []
    named = set()
    for name in sorted(class_of, key=len, reverse=True):
        for match in _name_pattern(name).finditer(text):
            if all(match.end() <= start or match.start() >= end for start, end in claimed):
                claimed.append(match.span())
                named.add(class_of[name])
    return named.pop() if len(named) == 1 else None


def classification_report(predictions: list[str | None], references: list[str], classes: list[str]) -> dict:
    """Accuracy, per-class precision/recall/F1/support, macro F1 (over all `classes`) and the confusion counts.

    `confusion[i][j]` counts true class `classes[i]` predicted as `classes[j]`; the last column counts unparsed
    predictions (None), which are wrong for accuracy and recall. Any division by zero gives 0.0.
    """
    _check_parallel(predictions, references)
    labels = set(references) | {p for p in predictions if p is not None}
    stray = sorted(labels - set(classes))
    if stray:
        raise ValueError(f"labels {stray} are not among the classes {classes}")
    column = {cls: j for j, cls in enumerate(classes)} | {None: len(classes)}
    confusion = [[0] * (len(classes) + 1) for _ in classes]
    for prediction, reference in zip(predictions, references):
        confusion[classes.index(reference)][column[prediction]] += 1

    per_class = {}
    for i, cls in enumerate(classes):
        correct = confusion[i][i]
        predicted = sum(row[i] for row in confusion)
        support = sum(confusion[i])
        precision = correct / predicted if predicted else 0.0
        recall = correct / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[cls] = {"precision": precision, "recall": recall, "f1": f1, "support": support}
    return {
        "accuracy": sum(confusion[i][i] for i in range(len(classes))) / len(references),
        "per_class": per_class,
        "macro_f1": sum(scores["f1"] for scores in per_class.values()) / len(classes),
        "confusion": confusion,
    }


def save_confusion_matrix(confusion: list[list[int]], classes: list[str], path: str | Path,
                          title: str | None = None) -> Path:
    """Draws `classification_report`'s confusion counts (true rows, predicted columns plus "unparsed") to a PNG,
    titled `title` ("base model", "fine-tuned"): a run's two matrices look alike, and the title tells them apart."""
    path = Path(path)
    confusion_figure(confusion, classes, title).savefig(path)
    return path


def confusion_figure(confusion: list[list[int]], classes: list[str], title: str | None = None) -> Figure:
    """save_confusion_matrix's figure, readable at any class count: the cells (and the figure) shrink with many
    classes down to a size where the labels, rotated upright past 12 columns, still do not overlap."""
    # A bare Figure renders with Agg and touches no pyplot state, so this is safe on a headless machine and in tests.
    columns = len(classes) + 1
    cell = min(0.8, max(0.28, 9 / columns))  # inches: 0.8 up to 11 columns, then smaller, never under 0.28
    label_size = min(10.0, cell * 72 * 0.5)  # points: half a cell leaves room between neighbouring labels
    longest = max(len(name) for name in [*classes, "unparsed"])
    margin = min(4.0, 0.4 + 0.09 * longest * label_size / 10)  # inches for the tick labels, grown with the names
    figure = Figure(figsize=(margin + 1.2 + cell * columns, margin + 0.9 + cell * len(classes)), layout="constrained")
    axes = figure.add_subplot()
    axes.imshow(confusion, cmap="Blues", aspect="equal")
    largest = max(max(row) for row in confusion)
    count_size = min(10.0, cell * 72 * 0.4)
    for i, row in enumerate(confusion):
        for j, count in enumerate(row):
            if count or columns <= 21:  # with many classes the zeros are left blank, so the counts stand out
                # White on the dark cells, black on the light ones.
                axes.text(j, i, str(count), ha="center", va="center", fontsize=count_size,
                          color="white" if count > largest / 2 else "black")
    upright = columns > 12
    axes.set_xticks(range(columns), [*classes, "unparsed"], rotation=90 if upright else 45,
                    ha="center" if upright else "right", fontsize=label_size)
    axes.set_yticks(range(len(classes)), classes, fontsize=label_size)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    if title:
        axes.set_title(title, fontsize=12, fontweight="bold")
    return figure


# ----------------------------------------------------------------------------------------------------- grounding


def flat_numbers(values: dict, separator: str = "/") -> dict:
    """The numbers of a nested metrics dict by their joined keys ('per_class/cat/f1'); lists, strings (picture
    paths) and booleans left out. metrics.json's tables in report.html and SwanLab both read it."""
    flat = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat |= {f"{key}{separator}{name}": number for name, number in flat_numbers(value, separator).items()}
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            flat[key] = value
    return flat


def _area(box: tuple[float, float, float, float]) -> float:
    # An inverted box (x2 < x1) is empty, not negative, so it cannot shrink a union.
    return max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1])


def box_iou(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    """Intersection over union of two (x1, y1, x2, y2) boxes; 0.0 when they are disjoint or both have no area."""
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    intersection = width * height
    union = _area(a) + _area(b) - intersection
    return intersection / union if union > 0 else 0.0


def grounding_scores(predicted_boxes: list[tuple | None], true_boxes: list[tuple]) -> dict:
    """"acc@0.5": the fraction with IoU >= 0.5, "mean_iou", and "unparsed": how many predictions were None (IoU 0)."""
    _check_parallel(predicted_boxes, true_boxes)
    ious = [0.0 if box is None else box_iou(box, truth) for box, truth in zip(predicted_boxes, true_boxes)]
    return {
        "acc@0.5": sum(iou >= 0.5 for iou in ious) / len(ious),
        "mean_iou": sum(ious) / len(ious),
        "unparsed": sum(box is None for box in predicted_boxes),
    }
