"""Training step time and loss with and without trimming the logits to the reply positions, side by side, and with
pretraining's loss over the answers' own vocabulary.

    python -m bench.logits_to_keep              # the tiny Qwen2-VL (random weights), batch 16, 10 steps each

The variants run the same batch in the same process, in turn, so a drift in the machine's speed hits all of them.
Full and trimmed losses must be identical: trimming only skips projecting positions whose labels are ignored anyway.
The answer-vocabulary loss is another loss (a softmax over a few dozen tokens), used only by the tiny model's own
pretraining (vlmtune/pretraining.py).
"""

import argparse
import statistics
import time

import torch

from vlmtune import pretraining, tiny
from vlmtune.collator import TrainCollator


def step(model, batch, vocabulary=None) -> float:
    start = time.perf_counter()
    loss = model(**batch).loss if vocabulary is None else pretraining.answer_vocabulary_loss(model, batch, vocabulary)
    loss.backward()
    model.zero_grad(set_to_none=True)
    return time.perf_counter() - start


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch_size", type=int, default=16)
    args = parser.parse_args(argv)

    model, processor = tiny.build_tiny_qwen2_vl()
    model.train()
    scenes = pretraining.PretrainingScenes(args.batch_size, "qwen2_vl")
    examples = [scenes[i] for i in range(args.batch_size)]  # half lists, half sentences
    full = TrainCollator(processor, logits="all")(examples)
    trimmed = TrainCollator(processor, logits="suffix")(examples)
    step(model, full)  # warm-up
    vocabulary = torch.tensor(pretraining.answer_vocabulary(processor, "qwen2_vl"))
    times = {"full": [], "trimmed": [], "answer vocabulary": []}
    for _ in range(args.steps):
        for name, batch, vocab in (("full", full, None), ("trimmed", trimmed, None),
                                   ("answer vocabulary", trimmed, vocabulary)):
            times[name].append(step(model, batch, vocab))
    print(f"batch {args.batch_size} x {full['input_ids'].shape[1]} tokens, "
          f"{trimmed['logits_to_keep']} positions kept, vocabulary {model.config.text_config.vocab_size}")
    for name, values in times.items():
        print(f"{name:17s} median {statistics.median(values) * 1000:7.1f} ms/step")
    for a, b in (("full", "trimmed"), ("trimmed", "answer vocabulary")):
        ratios = [x / y for x, y in zip(times[a], times[b])]
        print(f"{a} / {b}: median {statistics.median(ratios):.2f}x (min {min(ratios):.2f}, max {max(ratios):.2f})")
    print(f"answer vocabulary: {len(vocabulary)} tokens")
    with torch.no_grad():
        print(f"loss full {model(**full).loss.item():.6f}, trimmed {model(**trimmed).loss.item():.6f}")
    vocab = model.config.text_config.vocab_size
    for name, batch in (("full", full), ("trimmed", trimmed)):
        positions = batch["labels"].shape[1]
        print(f"{name:8s} fp32 logits tensor: {args.batch_size * positions * vocab * 4 / 2**20:.0f} MiB")


if __name__ == "__main__":
    main()
