"""Training step time and loss with and without trimming the logits to the reply positions, side by side.

    python -m bench.logits_to_keep              # the tiny Qwen2-VL (random weights), batch 16, 10 steps each

Both variants run the same batches in the same process, alternating, so a drift in the machine's speed hits both.
The loss must be identical: trimming only skips projecting positions whose labels are ignored anyway.
"""

import argparse
import statistics
import time

import torch

from vlmtune import modeling, pretraining
from vlmtune.collator import TrainCollator


def step(model, batch) -> float:
    start = time.perf_counter()
    model(**batch).loss.backward()
    model.zero_grad(set_to_none=True)
    return time.perf_counter() - start


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch_size", type=int, default=16)
    args = parser.parse_args(argv)

    model, processor = modeling.build_tiny_qwen2_vl()
    model.train()
    examples = pretraining.pretraining_examples(args.batch_size)[:args.batch_size]
    full = TrainCollator(processor, trim_logits=False)(examples)
    trimmed = TrainCollator(processor, trim_logits=True)(examples)
    step(model, full)  # warm-up
    times = {"full": [], "trimmed": []}
    for _ in range(args.steps):
        for name, batch in (("full", full), ("trimmed", trimmed)):
            times[name].append(step(model, batch))
    print(f"batch {args.batch_size} x {full['input_ids'].shape[1]} tokens, "
          f"{trimmed['logits_to_keep']} positions kept, vocabulary {model.config.text_config.vocab_size}")
    for name, values in times.items():
        print(f"{name:8s} median {statistics.median(values) * 1000:7.1f} ms/step")
    ratios = [f / t for f, t in zip(times["full"], times["trimmed"])]
    print(f"full / trimmed: median {statistics.median(ratios):.2f}x (min {min(ratios):.2f}, max {max(ratios):.2f})")
    with torch.no_grad():
        print(f"loss full {model(**full).loss.item():.6f}, trimmed {model(**trimmed).loss.item():.6f}")
    vocab = model.config.text_config.vocab_size
    for name, batch in (("full", full), ("trimmed", trimmed)):
        positions = batch["labels"].shape[1]
        print(f"{name:8s} fp32 logits tensor: {args.batch_size * positions * vocab * 4 / 2**20:.0f} MiB")


if __name__ == "__main__":
    main()
