"""The tiny model's own short pretraining on the synthetic world, so it starts like a real base model would.

A randomly initialised model cannot show that LoRA teaches a task (LoRA on random weights barely learns). Full
fine-tuning on short questions about each object's colour, shape, size and place gives it what a real base model
brings, knowledge of the world, and nothing of the target datasets' formats (captions, classes, boxes, VQA).
"""

import random
import tempfile

from transformers import Trainer, TrainingArguments

from . import world
from .collator import TrainCollator

PRETRAIN_SEED = 1_000  # a world of its own, apart from the seeds data2csv.py draws target datasets from


def pretraining_examples(n_scenes: int, image_size: int = 112) -> list[dict]:
    """One conversation per scene: the image, then its four attribute questions as turns, in a random order."""
    examples = []
    for index in range(n_scenes):
        scene = world.make_scene(PRETRAIN_SEED, index, image_size)
        pairs = world.attribute_questions(scene)
        random.Random(index).shuffle(pairs)
        messages = []
        for turn, (question, answer) in enumerate(pairs):
            content = [{"type": "text", "text": question}]
            if turn == 0:
                content.insert(0, {"type": "image", "image": scene.render()})
            messages += [{"role": "user", "content": content},
                         {"role": "assistant", "content": [{"type": "text", "text": answer}]}]
        examples.append({"id": scene.id, "messages": messages})
    return examples


def pretrain(model, processor, steps: int = 300, batch_size: int = 16, learning_rate: float = 2e-3, seed: int = 0):
    """Full fine-tuning for `steps` steps; returns the training log (loss per logging step)."""
    examples = pretraining_examples(n_scenes=steps * batch_size)
    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(
            output_dir=tmp, max_steps=steps, per_device_train_batch_size=batch_size, learning_rate=learning_rate,
            lr_scheduler_type="cosine", warmup_steps=steps // 10, weight_decay=0.0, logging_steps=max(steps // 10, 1),
            save_strategy="no", report_to=[], remove_unused_columns=False, seed=seed, dataloader_num_workers=0,
            disable_tqdm=False,
        )
        trainer = Trainer(model=model, args=args, train_dataset=examples, data_collator=TrainCollator(processor))
        trainer.train()
    return [entry for entry in trainer.state.log_history if "loss" in entry]
