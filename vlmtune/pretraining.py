"""The tiny model's own short pretraining on the synthetic world, so it starts like a real base model would.

A randomly initialised model cannot show that LoRA teaches a task (LoRA on random weights barely learns). Full
fine-tuning on two descriptions of each picture gives it what a real base model brings, knowledge of the world
(colours, shapes, sizes, places, where a thing is) and words to say it in, and nothing of the target datasets'
formats (a caption such as 'A small red circle at the top left.', a class name or a single word as the whole
answer, a box in the units the model's grounding answers use):

    What is in the picture?      red                     Tell me about the picture.
                                 circle                  There is a small red circle. It is at the top left.
                                 small
                                 top left
                                 <|object_ref_start|>the shape<|object_ref_end|><|box_start|>(15,17),(39,41)<|box_end|>

Each answer names all four attributes, which teaches four times as much per image as one question per attribute:
that, and a loss over the answers' own few dozen tokens (answer_vocabulary_loss), is what makes five minutes on
2 CPU cores enough. The words matter as much as the knowledge: with tied
embeddings, a token the model never wrote keeps an output row that pretraining pushed away from every hidden state,
and LoRA, which leaves that row frozen, barely learns to write it. Measured: a base that only knew a terse list
reached 0.08 to 0.88 exact match on captions, unstable; one that had never written 'small' at the start of a line
reached 0.25 VQA accuracy; one that had never written a digit stayed at loss 9.2 on grounding. So every task's
answer is made of tokens the base has written, in another arrangement: one attribute per line (VQA's one-word
answers, the classes 'small circle' ...), the box in the model's own marks but in pixels rather than the
thousandths its grounding answers use. Mixing in questions with other answer forms (a box alone, one word, lists in
any order) cost what the model sees: 46 to 60 % right on shape after 700 steps (bench/RESULTS.md).
"""

import tempfile

import torch
from transformers import Trainer, TrainingArguments

from . import boxes, world
from .collator import IGNORE_INDEX, TrainCollator, reply_end

PRETRAIN_SEED = 1_000  # a world of its own, apart from the seeds data2csv.py draws target datasets from
ATTRIBUTES = ("colour", "shape", "size", "position")
FORMS = ("list", "sentence")  # one scene, one kind of answer, in turn


def example(scene: world.Scene, form: str, model_type: str) -> tuple[str, str]:
    """(question, answer) of one pretraining form about the scene's first object."""
    thing = scene.things[0]
    if form == "list":
        # The box in the model's own marks but in pixels of the picture, not in the units its grounding answers
        # use (Qwen2-VL: thousandths), so that grounding is still something to learn.
        box = boxes.CONVENTIONS[model_type].write(list(thing.box), "the shape")
        return "What is in the picture?", "\n".join([*(getattr(thing, a) for a in ATTRIBUTES), box])
    if form == "sentence":
        return ("Tell me about the picture.",
                f"There is a {thing.size} {thing.colour} {thing.shape}. It is at the {thing.position}.")
    raise ValueError(f"unknown pretraining form {form!r}")


class PretrainingScenes:
    """Scene `index` as a training example, rendered when the Trainer asks for it, not 14,400 images up front."""

    def __init__(self, n_scenes: int, model_type: str, image_size: int = 112, seed: int = PRETRAIN_SEED):
        self.n_scenes, self.model_type, self.image_size, self.seed = n_scenes, model_type, image_size, seed

    def __len__(self) -> int:
        return self.n_scenes

    def __getitem__(self, index: int) -> dict:
        scene = world.make_scene(self.seed, index, self.image_size)
        question, answer = example(scene, FORMS[index % len(FORMS)], self.model_type)
        messages = [
            {"role": "user", "content": [{"type": "image", "image": scene.render()},
                                         {"type": "text", "text": question}]},
            {"role": "assistant", "content": [{"type": "text", "text": answer}]},
        ]
        return {"id": scene.id, "messages": messages}


def answer_vocabulary(processor, model_type: str, n_scenes: int = 2_000) -> list[int]:
    """The token ids pretraining's answers use (a few dozen: words, digits, marks, the end of a turn)."""
    tokenizer = processor.tokenizer
    ids = {tokenizer.convert_tokens_to_ids(reply_end(processor)[0])}
    for index in range(n_scenes):
        scene = world.make_scene(PRETRAIN_SEED, index)
        for form in FORMS:
            ids.update(tokenizer(example(scene, form, model_type)[1], add_special_tokens=False)["input_ids"])
    return sorted(ids)


def answer_vocabulary_loss(model, inputs: dict, vocabulary: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of a TrainCollator batch with the softmax over `vocabulary` (sorted token ids) only.

    Written by hand because no library offers it, and because the projection onto all 151,936 tokens is nearly all
    of a tiny model's step: over the few dozen tokens pretraining's answers use, a step takes a fraction of the time
    (bench/logits_to_keep.py). Rows of other tokens stay at their small random initial values, below every trained
    token's logit; fine-tuning later uses the full vocabulary, as any base model's does.
    """
    inputs = dict(inputs)
    labels, keep = inputs.pop("labels"), inputs.pop("logits_to_keep")
    hidden = model.model(**inputs).last_hidden_state[:, -keep:]
    logits = hidden[:, :-1] @ model.get_output_embeddings().weight[vocabulary].T
    targets = labels[:, 1:]
    supervised = targets != IGNORE_INDEX
    index = torch.searchsorted(vocabulary, targets.clamp(min=0))
    known = (index < len(vocabulary)) & (vocabulary[index.clamp(max=len(vocabulary) - 1)] == targets)
    if (supervised & ~known).any():
        raise ValueError(f"answer tokens {targets[supervised & ~known].unique().tolist()} are not in the vocabulary")
    targets = torch.where(supervised, index, IGNORE_INDEX)
    return torch.nn.functional.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(),
                                             ignore_index=IGNORE_INDEX)


class AnswerVocabularyTrainer(Trainer):
    """The Trainer with its loss over the answers' own tokens (answer_vocabulary_loss)."""

    def __init__(self, *args, vocabulary: list[int], **kwargs):
        super().__init__(*args, **kwargs)
        self.vocabulary = torch.tensor(vocabulary)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        return answer_vocabulary_loss(model, inputs, self.vocabulary)


def pretrain(model, processor, steps: int, batch_size: int = 16, learning_rate: float = 1e-3, seed: int = 0):
    """Full fine-tuning for `steps` steps on fresh scenes; returns the training log (loss per logging step)."""
    if steps == 0:
        return []
    model_type = model.config.model_type
    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(
            output_dir=tmp, max_steps=steps, per_device_train_batch_size=batch_size, learning_rate=learning_rate,
            lr_scheduler_type="cosine", warmup_steps=steps // 20, weight_decay=0.0, max_grad_norm=1.0,
            logging_steps=max(steps // 10, 1), save_strategy="no", report_to=[], remove_unused_columns=False,
            seed=seed, dataloader_num_workers=0,
        )
        trainer = AnswerVocabularyTrainer(
            model=model, args=args, train_dataset=PretrainingScenes(steps * batch_size, model_type),
            data_collator=TrainCollator(processor, logits="suffix"),  # answer_vocabulary_loss reads the suffix
            vocabulary=answer_vocabulary(processor, model_type))
        trainer.train()
    return [entry for entry in trainer.state.log_history if "loss" in entry]
