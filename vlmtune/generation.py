"""Batched greedy generation with left padding, the way a decoder-only model must be batched for inference."""

import torch
from tqdm import tqdm

from .collator import open_images, training_text


def prompt_messages(messages: list[dict]) -> list[dict]:
    """The conversation up to (not including) its last assistant turn: what the model is asked."""
    last = max(i for i, message in enumerate(messages) if message["role"] == "assistant")
    return messages[:last]


@torch.no_grad()
def generate(model, processor, conversations: list[list[dict]], batch_size: int = 16, max_new_tokens: int = 64,
             desc: str | None = None, ids: list | None = None):
    """One answer per conversation (each ending with a user turn), greedy, with a progress bar of answers done on
    stderr, labelled `desc`. `ids` name the conversations in the collator's UnreadableImage, for an image that no
    longer opens."""
    answers = []
    model.eval()
    progress = tqdm(total=len(conversations), desc=desc, unit="answer")
    for start in range(0, len(conversations), batch_size):
        chunk = conversations[start:start + batch_size]
        texts = [training_text(processor, c, add_generation_prompt=True) for c in chunk]
        names = ids[start:start + batch_size] if ids is not None else [None] * len(chunk)
        images = [open_images(c, processor, name) for c, name in zip(chunk, names)]
        inputs = processor(text=texts, images=images if any(images) else None, padding=True, padding_side="left",
                           return_tensors="pt").to(model.device)
        output = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
        new_tokens = output[:, inputs["input_ids"].shape[1]:]
        answers.extend(text.strip() for text in processor.batch_decode(new_tokens, skip_special_tokens=True))
        progress.update(len(chunk))
    progress.close()
    return answers
