"""Conversation messages -> the tensors a model trains on, built lazily, one batch at a time.

Nothing is preprocessed ahead of time: storing pixel values for every example (the tutorials' eager `.map`) costs
about 1.8 MB of cache per example and most of their training time. Images are read and resized here, per batch.
"""

import torch
from PIL import Image

IGNORE_INDEX = -100


def label_mask(input_ids: list[int], reply_header: list[int], end_id: int) -> list[int]:
    """Labels that train only the assistant replies: each reply's tokens and its closing end token.

    `reply_header` is the token run that opens an assistant turn (Qwen: `<|im_start|>assistant\\n`), `end_id` the token
    that closes a turn (`<|im_end|>`). Everything else (system, user text, image tokens, padding) is IGNORE_INDEX.
    Written by hand: Qwen's chat templates carry no `{% generation %}` markers, so transformers'
    `return_assistant_tokens_mask` cannot produce this mask for them.
    """
    labels = [IGNORE_INDEX] * len(input_ids)
    n = len(reply_header)
    i = 0
    while i + n <= len(input_ids):
        if input_ids[i:i + n] != reply_header:
            i += 1
            continue
        j = i + n
        while j < len(input_ids) and input_ids[j] != end_id:
            labels[j] = input_ids[j]
            j += 1
        if j < len(input_ids):
            labels[j] = end_id
        i = j + 1
    return labels


def images_of(messages: list[dict]) -> list:
    """The images of a conversation, in order, as the messages hold them (a path or a PIL image)."""
    return [part["image"] for message in messages for part in message["content"] if part["type"] == "image"]


def open_images(messages: list[dict]) -> list[Image.Image]:
    """The images of a conversation, in order, as RGB."""
    return [_rgb(image) for image in images_of(messages)]


def _rgb(image) -> Image.Image:
    """A path or an in-memory PIL image, as RGB."""
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    with Image.open(image) as opened:
        return opened.convert("RGB")


def count_tokens(processor, messages: list[dict]) -> int:
    """Length in tokens of a conversation once its images are expanded, without computing any pixels.

    The image sizes come from the file headers and the processor's own count of tokens per image, so this holds for
    every resize rule the processor has (Qwen's min/max pixels included).
    """
    text = processor.apply_chat_template(messages, tokenize=False)
    sizes = []
    for image in images_of(messages):
        if isinstance(image, Image.Image):
            sizes.append((image.height, image.width))
        else:
            with Image.open(image) as opened:  # reads the header only
                sizes.append((opened.height, opened.width))
    n_text = len(processor.tokenizer(text, add_special_tokens=False)["input_ids"])
    if not sizes:
        return n_text
    per_image = processor._get_num_multimodal_tokens(image_sizes=sizes).num_image_tokens
    return n_text + sum(per_image) - len(sizes)  # each image's one placeholder becomes its tokens


def drop_overlong(examples: list[dict], processor, max_length: int):
    """(kept, dropped): examples longer than max_length are dropped whole, never cut.

    Cutting inside the image tokens is the field's most reported crash ("Image features and image tokens do not
    match"); cutting the reply silently trains on half an answer. `dropped` lists (id, length) for the report.
    """
    kept, dropped = [], []
    for example in examples:
        length = count_tokens(processor, example["messages"])
        if length <= max_length:
            kept.append(example)
        else:
            dropped.append((example["id"], length))
    return kept, dropped


class TrainCollator:
    """Examples {"id", "messages"} -> input_ids, attention_mask, pixel inputs, labels; right padding.

    With `trim_logits`, labels are cut to the positions that carry a supervised token and `logits_to_keep` tells the
    model to project only those hidden states onto the vocabulary. The loss is unchanged (it only ever reads those
    positions) but the vocabulary projection, which dominates a small model with Qwen's 151,936 tokens, shrinks to the
    reply's length: bench/logits_to_keep.py measures it side by side.
    """

    def __init__(self, processor, trim_logits: bool = True):
        self.processor = processor
        self.trim_logits = trim_logits
        tokenizer = processor.tokenizer
        self.reply_header = reply_header_ids(processor)
        self.end_id = tokenizer.convert_tokens_to_ids(turn_end_token(processor))

    def __call__(self, examples: list[dict]):
        texts = [self.processor.apply_chat_template(e["messages"], tokenize=False) for e in examples]
        images = [open_images(e["messages"]) for e in examples]
        batch = self.processor(text=texts, images=images if any(images) else None, padding=True,
                               padding_side="right", return_tensors="pt")
        labels = torch.tensor([label_mask(row, self.reply_header, self.end_id) for row in batch["input_ids"].tolist()])
        labels[batch["attention_mask"] == 0] = IGNORE_INDEX
        if self.trim_logits:
            supervised = (labels != IGNORE_INDEX).any(dim=0).nonzero()
            # Position t's logits predict token t+1, so keep from one before the first supervised token.
            first = max(int(supervised[0]) - 1, 0) if len(supervised) else labels.shape[1] - 1
            batch["logits_to_keep"] = labels.shape[1] - first
            labels = labels[:, first:]
        batch["labels"] = labels
        return batch


def reply_header_ids(processor) -> list[int]:
    """The tokens that open an assistant turn, read off the processor's own chat template, as they are tokenized in
    the middle of a conversation: LLaVA's " ASSISTANT:" after a question is not the tokens of "ASSISTANT:" alone."""
    probe = [{"role": "user", "content": [{"type": "text", "text": "x"}]}]
    tokenize = processor.tokenizer
    without = tokenize(processor.apply_chat_template(probe, tokenize=False), add_special_tokens=False)["input_ids"]
    with_prompt = tokenize(processor.apply_chat_template(probe, tokenize=False, add_generation_prompt=True),
                           add_special_tokens=False)["input_ids"]
    common = 0
    while common < min(len(without), len(with_prompt)) and without[common] == with_prompt[common]:
        common += 1
    return with_prompt[common:]


def turn_end_token(processor) -> str:
    """The token that closes a reply: the one the chat template writes after an assistant message."""
    probe = [{"role": "user", "content": [{"type": "text", "text": "x"}]},
             {"role": "assistant", "content": [{"type": "text", "text": "SENTINEL"}]}]
    text = processor.apply_chat_template(probe, tokenize=False)
    after = text.split("SENTINEL", 1)[1]
    token_ids = processor.tokenizer(after, add_special_tokens=False)["input_ids"]
    return processor.tokenizer.convert_ids_to_tokens(token_ids[0])
