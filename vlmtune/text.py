"""Dataset text stays text: the control tokens of the models' tokenizers, found where a dataset's text holds them.

A tokenizer reads its added tokens out of any text it is given, so a caption holding `<|im_end|>` ends the reply
there (only the words before it are trained), `<|im_start|>assistant\\n...` trains a second reply, and `<|image_pad|>`
(Qwen) or `<image>` (LLaVA) is expanded by the processor into image tokens that no image fills: training stops at the
first batch holding one. Such text is never respelled silently: csv2json.py rejects the row, naming the token
(formats.check_row calls row_reason), and train.py refuses a hand-written train.json that holds one (in_examples,
which asks the loaded tokenizer itself).

The rule covers every added token, special or not, of the four families' tokenizers (Qwen2-VL, Qwen2.5-VL, Qwen3-VL
and LLaVA-1.5; tests/test_bad_inputs_records.py checks it against their published tokenizer files): Qwen spells its
own `<|name|>`, which QWEN_SHAPE matches whatever the name (a later Qwen adds more of them), and the others are
NAMED_TOKENS. Matching is exact, as a tokenizer's is: "im_end", "<|im_end", "< image >" and "<think" are plain text.
"""

import json
import re

# Qwen's control tokens: <|im_start|>, <|im_end|>, <|image_pad|>, <|vision_start|>, <|fim_prefix|>, ...
QWEN_SHAPE = r"<\|[A-Za-z0-9_]+\|>"
# The added tokens of the four families that are not of Qwen's shape: Qwen2.5-VL's and Qwen3-VL's tool and thinking
# tags, LLaVA-1.5's (Llama's) <s>, </s>, <unk> and its <image> and <pad>.
NAMED_TOKENS = ("<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>", "<think>", "</think>",
                "<image>", "<pad>", "<s>", "</s>", "<unk>")
CONTROL_TOKEN = re.compile("|".join([QWEN_SHAPE, *map(re.escape, NAMED_TOKENS)]))

# The columns of data.csv whose text is trained or asked (formats.CSV_COLUMNS); JSON ones hold a list or an object.
TEXT_COLUMNS = ("caption", "label", "expression", "question")
JSON_COLUMNS = ("answers", "turns", "answer_scores")


def control_tokens(text: str) -> list[str]:
    """The control tokens that `text` holds, each once, in the order they first appear."""
    return list(dict.fromkeys(CONTROL_TOKEN.findall(text)))


def row_reason(row: dict) -> str | None:
    """Why a data.csv row's text cannot be trained as it is (a control token in it), or None."""
    for column in (*TEXT_COLUMNS, *JSON_COLUMNS):
        if not row.get(column):
            continue
        for text in _texts(row[column]) if column in JSON_COLUMNS else [row[column]]:
            found = control_tokens(text)
            if len(found) == 1:
                return (f"{column} holds {found[0]}, a control token of the model's tokenizer: the model would read "
                        "it as that token, not as text; remove it or respell it in the source data")
            if found:
                return (f"{column} holds {', '.join(found)}, control tokens of the model's tokenizer: the model "
                        "would read them as those tokens, not as text; remove them or respell them in the source data")
    return None


def _texts(cell: str) -> list[str]:
    """Every string of a JSON cell (its keys too: answer_scores' answers), or the cell itself when it is not JSON:
    a JSON escape such as \\u003c must not hide a token."""
    try:
        value = json.loads(cell)
    except json.JSONDecodeError:
        return [cell]
    texts = []

    def walk(item):
        if isinstance(item, str):
            texts.append(item)
        elif isinstance(item, list):
            for element in item:
                walk(element)
        elif isinstance(item, dict):
            for key, element in item.items():
                texts.append(str(key))
                walk(element)

    walk(value)
    return texts


def tokenizer_tokens(tokenizer) -> set[str]:
    """The control tokens this tokenizer reads out of text: its special tokens, and its other added tokens that are
    markup (<tool_call>, <think>). An added token that is a plain word or piece of one stays the text it spells, so it
    is not one of them."""
    added = {token.content for token in tokenizer.added_tokens_decoder.values()
             if token.special or (token.content.startswith("<") and token.content.endswith(">"))}
    return added | set(tokenizer.all_special_tokens)


def in_examples(tokenizer, examples) -> list[tuple[str, str]]:
    """(id, token) of each example {"id", "messages"} whose text holds a token of `tokenizer` (tokenizer_tokens), the
    first such token of each. Only the messages' text parts are read: images are given as image parts."""
    tokens = sorted(tokenizer_tokens(tokenizer), key=len, reverse=True)  # the longest first: </s> before <s>
    if not tokens:
        return []
    pattern = re.compile("|".join(map(re.escape, tokens)))
    found = []
    for example in examples:
        texts = [part["text"] for message in example["messages"] for part in message["content"]
                 if part["type"] == "text"]
        match = next(filter(None, map(pattern.search, texts)), None)
        if match:
            found.append((str(example["id"]), match[0]))
    return found


def refusal(path, found: list[tuple[str, str]], shown: int = 5) -> str:
    """train.py's (and test.py's) message for the records of `path` that in_examples found."""
    listed = ", ".join(f"{record_id} ({token})" for record_id, token in found[:shown])
    more = f" and {len(found) - shown} more" if len(found) > shown else ""
    return (f"{path}: {len(found)} records hold a control token of this model's tokenizer in their text: {listed}"
            f"{more}. The model would read it as that token (ending a reply early, or expanding image tokens that "
            "no image fills), not as text: remove or respell it in the source data and run data2csv.py and "
            "csv2json.py again (csv2json.py rejects such rows), or edit those records.")
