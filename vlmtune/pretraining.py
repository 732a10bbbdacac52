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
that, a loss over the answers' own few dozen tokens (answer_vocabulary_loss) and training only the rows of the
embedding those tokens use (live_rows) are what make a few minutes on 2 CPU cores enough. The words matter as much
as the knowledge: with tied embeddings, a token the model never wrote keeps an output row that pretraining pushed
away from every hidden state, and LoRA, which leaves that row frozen, barely learns to write it. Measured: a base
that only knew a terse list reached 0.08 to 0.88 exact match on captions, unstable; one that had never written
'small' at the start of a line reached 0.25 VQA accuracy; one that had never written a digit stayed at loss 9.2 on
grounding. So every task's answer is made of tokens the base has written, in another arrangement: one attribute per
line (VQA's one-word answers, the classes 'small circle' ...), the box in the model's own marks but in pixels rather
than the thousandths its grounding answers use. Mixing in questions with other answer forms (a box alone, one word,
lists in any order) cost what the model sees: 46 to 60 % right on shape after 700 steps (bench/RESULTS.md).
"""

import contextlib
import tempfile

import torch
from torch import nn
from transformers import Trainer, TrainingArguments

from . import boxes, world
from .collator import IGNORE_INDEX, TrainCollator

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
        return self.example(index)

    def example(self, index: int, with_image: bool = True) -> dict:
        scene = world.make_scene(self.seed, index, self.image_size)
        question, answer = example(scene, FORMS[index % len(FORMS)], self.model_type)
        picture = [{"type": "image", "image": scene.render()}] if with_image else []
        messages = [
            {"role": "user", "content": [*picture, {"type": "text", "text": question}]},
            {"role": "assistant", "content": [{"type": "text", "text": answer}]},
        ]
        return {"id": scene.id, "messages": messages}


def answer_vocabulary(processor, model_type: str, n_scenes: int = 2_000) -> list[int]:
    """The token ids pretraining's answers use (a few dozen: words, digits, marks, the end of a turn), read from
    the labels the collator makes: a reply's tokens depend on what comes before it (LLaVA's template puts a space
    before the reply, so it writes ' There', not 'There'). The pictures are left out, which changes the prompt,
    not the reply."""
    collator, scenes = TrainCollator(processor), PretrainingScenes(n_scenes, model_type)
    ids = set()
    for first in range(0, n_scenes, 200):
        examples = [scenes.example(index, with_image=False) for index in range(first, min(first + 200, n_scenes))]
        labels = collator(examples)["labels"]
        ids.update(labels[labels != IGNORE_INDEX].tolist())
    return sorted(ids)


def answer_vocabulary_loss(model, inputs: dict, vocabulary: torch.Tensor,
                           output_rows: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy of a TrainCollator batch with the softmax over `vocabulary` (sorted token ids) only.

    Written by hand because no library offers it, and because the projection onto all 151,936 tokens is nearly all
    of a tiny model's step: over the few dozen tokens pretraining's answers use, a step takes a fraction of the time
    (bench/logits_to_keep.py). Rows of other tokens stay at their small random initial values, below every trained
    token's logit; fine-tuning later uses the full vocabulary, as any base model's does. `output_rows`: the output
    layer's rows of `vocabulary` (default: read from the model; pretraining passes LiveRows' table).
    """
    inputs = dict(inputs)
    labels, keep = inputs.pop("labels"), inputs.pop("logits_to_keep")
    if output_rows is None:
        output_rows = model.get_output_embeddings().weight[vocabulary]
    hidden = model.model(**inputs).last_hidden_state[:, -keep:]
    logits = hidden[:, :-1] @ output_rows.T
    targets = labels[:, 1:]
    supervised = targets != IGNORE_INDEX
    index = torch.searchsorted(vocabulary, targets.clamp(min=0))
    known = (index < len(vocabulary)) & (vocabulary[index.clamp(max=len(vocabulary) - 1)] == targets)
    if (supervised & ~known).any():
        raise ValueError(f"answer tokens {targets[supervised & ~known].unique().tolist()} are not in the vocabulary")
    targets = torch.where(supervised, index, IGNORE_INDEX)
    return torch.nn.functional.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(),
                                             ignore_index=IGNORE_INDEX)


class LiveRows(nn.Module):
    """The rows `ids` of an embedding (or output layer) weight as a table of their own, the one trained.

    Full fine-tuning of the tiny model gives every row of a token pretraining never reads or writes a gradient of
    zero, and AdamW without weight decay leaves such a row exactly where it was (its moments stay zero, so does its
    step); yet the optimizer still reads and writes all 151,936 rows, with their two moments, every step: a third
    of the step's time, and the dense gradients another part. Training the live rows alone is the same training in
    about half the time (bench/pretraining_rows.py; tests/test_pretraining.py checks the equality). Used as the
    input embedding, a token outside `ids` is an error, never a row silently left untrained.
    """

    def __init__(self, weight: nn.Parameter, ids: list[int], padding_idx: int | None = None):
        super().__init__()
        self.register_buffer("ids", torch.tensor(sorted(set(ids))), persistent=False)
        self.rows = nn.Parameter(weight.detach()[self.ids].clone())
        lookup = torch.full((weight.shape[0],), -1, dtype=torch.long)
        lookup[self.ids] = torch.arange(len(self.ids))
        self.register_buffer("lookup", lookup, persistent=False)
        # nn.Embedding's padding_idx gets no gradient: the same for its row here
        self.padding_idx = None if padding_idx is None or lookup[padding_idx] < 0 else int(lookup[padding_idx])

    def of(self, ids: torch.Tensor) -> torch.Tensor:
        """The trained rows of `ids` (all of them live)."""
        return self.rows[self.lookup[ids]]

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        index = self.lookup[input_ids]
        if (index < 0).any():
            raise ValueError(f"tokens {input_ids[index < 0].unique().tolist()} are not among pretraining's live "
                             "rows: add them to the ids live_rows() is given")
        return nn.functional.embedding(index, self.rows, padding_idx=self.padding_idx)

    @torch.no_grad()
    def write_back(self, weight: nn.Parameter):
        """The trained rows into the full weight they were taken from."""
        weight[self.ids] = self.rows.to(weight.dtype)


@contextlib.contextmanager
def live_rows(model, input_ids: list[int], vocabulary: list[int]):
    """Within: the model trains only the embedding rows of `input_ids` and the output rows of `vocabulary` (one
    table when the two layers share their weight); yields the table the output rows are read from. On leaving,
    the trained rows are written into the model's own weights and its embedding layer is put back."""
    embedding, output = model.get_input_embeddings(), model.get_output_embeddings()
    tied = output.weight is embedding.weight
    inputs = LiveRows(embedding.weight, [*input_ids, *(vocabulary if tied else [])], embedding.padding_idx)
    outputs = inputs if tied else LiveRows(output.weight, vocabulary)
    embedding.weight.requires_grad_(False)
    output.weight.requires_grad_(False)
    model.set_input_embeddings(inputs)
    if not tied:  # a submodule for as long, so that the optimizer the Trainer builds from the model holds its table
        model.add_module("pretraining_output_rows", outputs)
    try:
        yield outputs
    finally:
        model.set_input_embeddings(embedding)
        inputs.write_back(embedding.weight)
        if not tied:
            del model.pretraining_output_rows
            outputs.write_back(output.weight)
        embedding.weight.requires_grad_(True)
        output.weight.requires_grad_(True)


def prompt_ids(processor, model_type: str) -> list[int]:
    """The token ids pretraining's inputs hold besides the answers': chat template, questions, image marks, padding."""
    collator = TrainCollator(processor, logits="suffix")
    scenes = PretrainingScenes(len(FORMS), model_type)
    ids = {processor.tokenizer.pad_token_id}
    for index in range(len(FORMS)):
        ids.update(collator([scenes[index]])["input_ids"].flatten().tolist())
    return sorted(ids)


class AnswerVocabularyTrainer(Trainer):
    """The Trainer with its loss over the answers' own tokens (answer_vocabulary_loss), reading the output rows
    from `output_rows` (a LiveRows table)."""

    def __init__(self, *args, vocabulary: list[int], output_rows: LiveRows, **kwargs):
        super().__init__(*args, **kwargs)
        self.vocabulary, self.output_rows = torch.tensor(vocabulary), output_rows

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        return answer_vocabulary_loss(model, inputs, self.vocabulary, self.output_rows.of(self.vocabulary))


def training_arguments(output_dir: str, steps: int, batch_size: int, learning_rate: float,
                       seed: int, workers: int = 0) -> TrainingArguments:
    """Pretraining's Trainer arguments: full fine-tuning, AdamW without weight decay, a cosine schedule; `workers`
    DataLoader processes render the scenes (each scene is its index's, so they change no batch)."""
    return TrainingArguments(
        output_dir=output_dir, max_steps=steps, per_device_train_batch_size=batch_size, learning_rate=learning_rate,
        lr_scheduler_type="cosine", warmup_steps=steps // 20, weight_decay=0.0, max_grad_norm=1.0,
        logging_steps=max(steps // 10, 1), save_strategy="no", report_to=[], remove_unused_columns=False,
        seed=seed, dataloader_num_workers=workers,
        dataloader_pin_memory=torch.accelerator.is_available(),  # pinned for a GPU; without one, torch warns
    )


def pretrain(model, processor, steps: int, batch_size: int = 16, learning_rate: float = 1e-3, seed: int = 0,
             workers: int = 0):
    """Full fine-tuning for `steps` steps on fresh scenes (of the rows that get a gradient: live_rows), rendered by
    `workers` DataLoader processes (0: in this one); returns the training log (loss per logging step)."""
    if steps == 0:
        return []
    model_type = model.config.model_type
    vocabulary = answer_vocabulary(processor, model_type)
    with tempfile.TemporaryDirectory() as tmp, \
            live_rows(model, prompt_ids(processor, model_type) + vocabulary, vocabulary) as output_rows:
        trainer = AnswerVocabularyTrainer(
            model=model, args=training_arguments(tmp, steps, batch_size, learning_rate, seed, workers),
            train_dataset=PretrainingScenes(steps * batch_size, model_type),
            data_collator=TrainCollator(processor, logits="suffix"),  # answer_vocabulary_loss reads the suffix
            vocabulary=vocabulary, output_rows=output_rows)
        trainer.train()
    return [entry for entry in trainer.state.log_history if "loss" in entry]
