"""Conversation messages -> the tensors a model trains on, built lazily, one batch at a time.

Nothing is preprocessed ahead of time: storing pixel values for every example (the tutorials' eager `.map`) costs
about 1.8 MB of cache per example and most of their training time. Images are read and resized here, per batch.
"""

import torch
from PIL import Image
from tqdm import tqdm

from .images import model_view, stored_size

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


class UnreadableImage(ValueError):
    """An image of a record that no longer opens: deleted, overwritten or cut short since csv2json.py checked it."""


def unreadable(record_id, image, error: Exception) -> UnreadableImage:
    """The error naming the record, the file and the fix; PIL raises many types for a broken file (OSError,
    SyntaxError, struct.error, ...), the type and text of which are kept in the message."""
    what = "is gone" if isinstance(error, FileNotFoundError) else f"does not open ({type(error).__name__}: {error})"
    return UnreadableImage(f"record {record_id!r}: image {image} {what}. It changed since csv2json.py checked it: "
                           "run `python csv2json.py` again (it rejects and names such rows), then train again")


def open_images(messages: list[dict], processor, record_id=None) -> list[Image.Image]:
    """The images of a conversation, in order, as this processor is given them (vlmtune.images.model_view); an
    image that does not open is an UnreadableImage naming `record_id` and the file."""
    opened = []
    for image in images_of(messages):
        try:
            opened.append(model_view(image, processor))
        except Exception as error:
            raise unreadable(record_id, image, error) from None
    return opened


def training_text(processor, messages: list[dict], add_generation_prompt: bool = False) -> str:
    """The conversation as the model trains on it: the chat template's text, each reply closed by its end token;
    with `add_generation_prompt`, the text a model is asked to go on from (the same earlier replies).

    Qwen's templates close every reply with `<|im_end|>`. LLaVA-1.5's (llava-hf) writes nothing after a reply but a
    space, so the model would never learn to stop and a label mask would run into the next `USER:`; LLaVA-1.5 itself
    trained each reply followed by `</s>`, and its generation config stops on it. For such a template the tokenizer's
    end-of-sequence token is written after each reply, before the template renders it.
    """
    end, written = reply_end(processor)
    if not written:
        messages = [_closed(message, end) if message["role"] == "assistant" else message for message in messages]
    return processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)


def _closed(message: dict, end: str) -> dict:
    last_text = max(i for i, part in enumerate(message["content"]) if part["type"] == "text")
    content = [dict(part, text=part["text"] + end) if i == last_text else part
               for i, part in enumerate(message["content"])]
    return dict(message, content=content)


def count_tokens(processor, messages: list[dict], record_id=None) -> int:
    """Length in tokens of a conversation once its images are expanded, without computing any pixels.

    The image sizes come from the file headers and the processor's own count of tokens per image, so this holds for
    every resize rule the processor has (Qwen's min/max pixels included). An image whose header does not read is an
    UnreadableImage naming `record_id`.
    """
    text = training_text(processor, messages)
    sizes = []
    for image in images_of(messages):
        try:
            sizes.append(stored_size(image)[::-1])  # (height, width), as the processor asks
        except Exception as error:
            raise unreadable(record_id, image, error) from None
    n_text = len(processor.tokenizer(text)["input_ids"])  # as the processor tokenizes: LLaVA's BOS included
    if not sizes:
        return n_text
    per_image = processor._get_num_multimodal_tokens(image_sizes=sizes).num_image_tokens
    return n_text + sum(per_image) - len(sizes)  # each image's one placeholder becomes its tokens


def drop_overlong(examples: list[dict], processor, max_length: int, progress: str | None = "counting tokens"):
    """(kept, dropped): examples longer than max_length are dropped whole, never cut; each kept one holds its
    "length" in tokens, which length-grouped batching sorts by.

    Cutting inside the image tokens is the field's most reported crash ("Image features and image tokens do not
    match"); cutting the reply silently trains on half an answer. `dropped` lists (id, length) for the report.
    Every example is counted (on full COCO, minutes), with a progress bar of examples counted on stderr labelled
    `progress`; None shows none (the other processes of a multi-process run).
    """
    kept, dropped = [], []
    for example in tqdm(examples, desc=progress, unit="example", disable=progress is None):
        length = count_tokens(processor, example["messages"], example.get("id"))
        if length <= max_length:
            kept.append(example | {"length": length})  # for length-grouped batches (--train_sampling_strategy)
        else:
            dropped.append((example["id"], length))
    return kept, dropped


LOGITS = ("supervised", "suffix", "all")  # which positions a TrainCollator batch projects onto the vocabulary


class TrainCollator:
    """Examples {"id", "messages"} -> input_ids, attention_mask, pixel inputs, labels; right padding.

    `logits` says which positions the model projects onto the vocabulary, which dominates a small model's step with
    Qwen's 151,936 tokens; the loss reads the same positions each way, and is the same:
    - "supervised": each row's positions whose next token is supervised, as a boolean `logits_to_keep` of the batch's
      shape (transformers projects only the True positions, flattened); the loss of those logits is
      vlmtune.trainer.supervised_loss, which PartsTrainer uses for such a collator.
    - "suffix": one span for all rows, from one before the batch's first supervised position to the end, as an
      integer `logits_to_keep`, the labels cut to it; the model computes its own loss. Rows' replies of different
      lengths, and the padding after them, are projected too.
    - "all": every position.
    bench/logits_to_keep.py measures them side by side.

    With `packing`, the batch is one row: the examples' tokens one after the other, no padding and no
    attention_mask, and PACKED_LENGTHS the examples' lengths, from which PartsTrainer makes each example's own
    position ids with the model (vlmtune.batching.packed_position_ids) before the forward; the logits modes are
    those of that row, and give the padded batch's loss.
    """

    def __init__(self, processor, logits: str = "supervised", packing: bool = False):
        if logits not in LOGITS:
            raise ValueError(f"logits={logits!r}: choose one of {', '.join(LOGITS)}")
        self.processor = processor
        self.logits = logits
        self.packing = packing
        tokenizer = processor.tokenizer
        self.reply_header = reply_header_ids(processor)
        self.end_id = tokenizer.convert_tokens_to_ids(reply_end(processor)[0])

    def __call__(self, examples: list[dict]):
        texts = [training_text(self.processor, e["messages"]) for e in examples]
        images = [open_images(e["messages"], self.processor, e.get("id")) for e in examples]
        batch = self.processor(text=texts, images=images if any(images) else None, padding=True,
                               padding_side="right", return_tensors="pt")
        labels = torch.tensor([label_mask(row, self.reply_header, self.end_id) for row in batch["input_ids"].tolist()])
        labels[batch["attention_mask"] == 0] = IGNORE_INDEX
        if self.packing:
            batch, labels = packed(batch, labels)
        if self.logits == "supervised":
            # Position t's logits predict token t+1 (transformers' causal loss shifts the labels the same way).
            keep = torch.zeros_like(labels, dtype=torch.bool)  # the last position predicts nothing
            keep[:, :-1] = labels[:, 1:] != IGNORE_INDEX
            batch["logits_to_keep"] = keep
        elif self.logits == "suffix":
            supervised = (labels != IGNORE_INDEX).any(dim=0).nonzero()
            # Position t's logits predict token t+1, so keep from one before the first supervised token.
            first = max(int(supervised[0]) - 1, 0) if len(supervised) else labels.shape[1] - 1
            batch["logits_to_keep"] = labels.shape[1] - first
            labels = labels[:, first:]
        batch["labels"] = labels
        return batch


PACKED_LENGTHS = "packed_lengths"  # a packed batch's example lengths, taken out before the forward


def packed(batch, labels: torch.Tensor):
    """(batch, labels) of a right-padded batch made one row: each example's real tokens, one after the other, in
    every per-token tensor (input_ids, mm_token_type_ids, ...); the per-image ones (pixel_values, image_grid_thw)
    are in that order already. No attention_mask: the examples are told apart by their position ids, which
    restart at each (masking_utils.create_causal_mask then keeps each one's attention to itself).

    Written here because transformers' DataCollatorWithFlattening drops the pixel inputs and gives one row of
    positions, where Qwen's M-RoPE needs three of its own per example.

    Position t's label is the token t+1, so the last position of an example is taught its successor's first
    token, unless that is IGNORE_INDEX, as the prompt's first token always is: checked here."""
    mask = batch.pop("attention_mask").bool()
    lengths = mask.sum(dim=1)
    if not (labels[:, 0] == IGNORE_INDEX).all():
        raise ValueError("packing needs every example's first label ignored (its prompt): the loss of one example "
                         "would read the next one's first token")
    for key, value in batch.items():
        if torch.is_tensor(value) and value.shape[:2] == mask.shape:
            batch[key] = value[mask][None]
    batch[PACKED_LENGTHS] = lengths
    return batch, labels[mask][None]


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


def reply_end(processor) -> tuple[str, bool]:
    """(the token that closes a reply, whether the chat template writes it): the special token the template writes
    right after an assistant message (Qwen: `<|im_end|>`), else the tokenizer's end-of-sequence token, which
    training_text then writes itself (LLaVA-1.5: `</s>`)."""
    probe = [{"role": "user", "content": [{"type": "text", "text": "x"}]},
             {"role": "assistant", "content": [{"type": "text", "text": "SENTINEL"}]}]
    tokenizer = processor.tokenizer
    after = processor.apply_chat_template(probe, tokenize=False).split("SENTINEL", 1)[1]
    token_ids = tokenizer(after, add_special_tokens=False)["input_ids"]
    if token_ids and token_ids[0] in tokenizer.all_special_ids:
        return tokenizer.convert_ids_to_tokens(token_ids[0]), True
    return tokenizer.eos_token, False
