"""The tiny model's own short pretraining on the synthetic world, so it starts like a real base model would.

A randomly initialised model cannot show that LoRA teaches a task (LoRA on random weights barely learns). Full
fine-tuning on a terse description of each picture gives it what a real base model brings, knowledge of the world
(colours, shapes, sizes, places), and nothing of the target datasets' formats (captions, classes, boxes, answers):

    user: <image> What is in the picture?      assistant: red; circle; small; top left

One answer naming all four attributes teaches four times as much per image as one question per attribute, which is
what makes a few hundred steps on 2 CPU cores enough.

A real base model also knows the language its answers are written in. The tiny one would not: with tied embeddings,
a token it never wrote keeps a random output row, and LoRA, which leaves that row frozen, barely learns to write it.
So a quarter of each batch asks it to repeat a random string of the words, digits and marks that the tasks' answers
are made of, in no task's order:

    user: Repeat: the 4 crate ( left . A       assistant: the 4 crate ( left . A
"""

import random
import tempfile

from transformers import Trainer, TrainingArguments

from . import world

PRETRAIN_SEED = 1_000  # a world of its own, apart from the seeds data2csv.py draws target datasets from
PRETRAIN_QUESTION = "What is in the picture?"


# Words and marks the tasks' answers use (captions, class names, VQA answers, boxes in every convention).
REPEAT_WORDS = sorted(
    set(world.COLOURS) | set(world.SHAPES) | set(world.SIZES) | set(world.CLASS_NAMES.values())
    | {word for position in world.POSITIONS for word in position.split()}
    | set("0123456789") | set("()[]{},.:;\"'")
    | {"A", "a", "an", "the", "at", "on", "in", "of", "is", "it", "It", "The", "There", "bbox_2d", "label",
       "<|object_ref_start|>", "<|object_ref_end|>", "<|box_start|>", "<|box_end|>"}
)


def describe(thing: world.Thing) -> str:
    return f"{thing.colour}; {thing.shape}; {thing.size}; {thing.position}"


def pretraining_examples(n_scenes: int, image_size: int = 112, seed: int = PRETRAIN_SEED) -> list[dict]:
    examples = []
    for index in range(n_scenes):
        scene = world.make_scene(seed, index, image_size)
        messages = [
            {"role": "user", "content": [{"type": "image", "image": scene.render()},
                                         {"type": "text", "text": PRETRAIN_QUESTION}]},
            {"role": "assistant", "content": [{"type": "text", "text": describe(scene.things[0])}]},
        ]
        examples.append({"id": scene.id, "messages": messages})
    return examples


def repeat_examples(n: int, seed: int = PRETRAIN_SEED, image_size: int = 112) -> list[dict]:
    """Repeat 3 to 6 random words of REPEAT_WORDS. A picture comes first, unused: it puts the reply where the other
    examples' replies are, so a batch of both projects few positions onto the vocabulary (TrainCollator)."""
    rng = random.Random(seed)
    examples = []
    for index in range(n):
        text = " ".join(rng.choice(REPEAT_WORDS) for _ in range(rng.randint(3, 6)))
        image = world.make_scene(seed + 1, index, image_size).render()
        messages = [{"role": "user", "content": [{"type": "image", "image": image},
                                                 {"type": "text", "text": f"Repeat: {text}"}]},
                    {"role": "assistant", "content": [{"type": "text", "text": text}]}]
        examples.append({"id": f"repeat-{index}", "messages": messages})
    return examples


def pretrain(model, processor, steps: int, batch_size: int = 16, learning_rate: float = 1e-3, seed: int = 0):
    """Full fine-tuning for `steps` steps on fresh scenes; returns the training log (loss per logging step)."""
    from .collator import TrainCollator

    # Three pictures to one string to repeat, shuffled together.
    examples = pretraining_examples(n_scenes=steps * batch_size * 3 // 4) + repeat_examples(steps * batch_size // 4)
    random.Random(seed).shuffle(examples)
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
