"""The tiny model's own short pretraining on the synthetic world, so it starts like a real base model would.

A randomly initialised model cannot show that LoRA teaches a task (LoRA on random weights barely learns). Full
fine-tuning on two descriptions of each picture gives it what a real base model brings, knowledge of the world
(colours, shapes, sizes, places) and words to say it in, and nothing of the target datasets' formats (a caption
such as 'A small red circle at the top left.', class names, boxes):

    user: <image> What is in the picture?      assistant: red; circle; small; top left
    user: <image> Tell me about the picture.   assistant: There is a small red circle. It is at the top left.

Each answer names all four attributes, which teaches four times as much per image as one question per attribute:
that is what makes a few hundred steps on 2 CPU cores enough. The sentences matter as much: with tied embeddings, a
token the model never wrote keeps a random output row, and LoRA, which leaves that row frozen, barely learns to
write it (measured: a base that only knew the terse form reached 0.08 to 0.88 exact match on captions, unstable).
"""

import tempfile

from transformers import Trainer, TrainingArguments

from . import world
from .collator import TrainCollator

PRETRAIN_SEED = 1_000  # a world of its own, apart from the seeds data2csv.py draws target datasets from
PRETRAIN_QUESTIONS = ("What is in the picture?", "Tell me about the picture.")


def describe(thing: world.Thing, question: str) -> str:
    if question == PRETRAIN_QUESTIONS[0]:
        return f"{thing.colour}; {thing.shape}; {thing.size}; {thing.position}"
    return f"There is a {thing.size} {thing.colour} {thing.shape}. It is at the {thing.position}."


def pretraining_examples(n_scenes: int, image_size: int = 112, seed: int = PRETRAIN_SEED) -> list[dict]:
    examples = []
    for index in range(n_scenes):
        scene = world.make_scene(seed, index, image_size)
        question = PRETRAIN_QUESTIONS[index % 2]
        messages = [
            {"role": "user", "content": [{"type": "image", "image": scene.render()},
                                         {"type": "text", "text": question}]},
            {"role": "assistant", "content": [{"type": "text", "text": describe(scene.things[0], question)}]},
        ]
        examples.append({"id": scene.id, "messages": messages})
    return examples


def pretrain(model, processor, steps: int, batch_size: int = 16, learning_rate: float = 1e-3, seed: int = 0):
    """Full fine-tuning for `steps` steps on fresh scenes; returns the training log (loss per logging step)."""
    examples = pretraining_examples(n_scenes=steps * batch_size)
    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(
            output_dir=tmp, max_steps=steps, per_device_train_batch_size=batch_size, learning_rate=learning_rate,
            lr_scheduler_type="cosine", warmup_steps=steps // 20, weight_decay=0.0, max_grad_norm=1.0,
            logging_steps=max(steps // 10, 1), save_strategy="no", report_to=[], remove_unused_columns=False,
            seed=seed, dataloader_num_workers=0,
        )
        trainer = Trainer(model=model, args=args, train_dataset=examples, data_collator=TrainCollator(processor))
        trainer.train()
    return [entry for entry in trainer.state.log_history if "loss" in entry]
