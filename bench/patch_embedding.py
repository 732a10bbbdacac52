"""The tiny model's pretraining step with its patches embedded by the Conv3d and by the matrix product, side by side.

    python -m bench.patch_embedding             # tiny Qwen2-VL, batch 16, 12 steps each

Two copies of the same model take the same steps on the same batch, in turn (a drift in the machine's speed hits
both), each training its live rows as pretraining does (bench/pretraining_rows.py times those); one embeds the
patches with the tower's own Conv3d, the other inside vlmtune.pretraining.patches_as_matmul. Printed: each one's
median step, the patch embedding's forward and backward alone, and the largest weight difference after the steps
(the two sum in another order, so they may part in the last bits).
"""

import argparse
import copy
import statistics
import time

import torch

from bench.pretraining_rows import train_step
from vlmtune import pretraining, tiny
from vlmtune.collator import TrainCollator


def embedding_time(model, pixels, repeats: int) -> float:
    """Median seconds of the patch embedding's forward and backward (its weight's gradient) on `pixels`."""
    embedding = model.model.visual.patch_embed
    times = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        embedding(pixels).sum().backward()
        times.append(time.perf_counter() - start)
    embedding.zero_grad(set_to_none=True)
    return statistics.median(times[1:])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--batch_size", type=int, default=16)
    args = parser.parse_args(argv)

    conv, processor = tiny.build_tiny_qwen2_vl()
    product = copy.deepcopy(conv)
    model_type = conv.config.model_type
    scenes = pretraining.PretrainingScenes(args.batch_size, model_type)
    batch = TrainCollator(processor, logits="suffix")([scenes[i] for i in range(args.batch_size)])
    vocabulary = pretraining.answer_vocabulary(processor, model_type)
    ids, live_ids = torch.tensor(vocabulary), pretraining.prompt_ids(processor, model_type) + vocabulary
    names = ("Conv3d", "matrix product")
    times, losses = {name: [] for name in names}, {name: [] for name in names}
    with pretraining.live_rows(conv, live_ids, vocabulary) as conv_rows, \
            pretraining.live_rows(product, live_ids, vocabulary) as product_rows, \
            pretraining.patches_as_matmul(product):
        runs = {}
        for name, model, rows in (("Conv3d", conv, conv_rows), ("matrix product", product, product_rows)):
            model.train()
            parameters = [p for p in model.parameters() if p.requires_grad]
            optimizer = torch.optim.AdamW(parameters, lr=1e-3, weight_decay=0.0)
            runs[name] = (model, parameters, optimizer, lambda rows=rows: rows.of(ids))
        for step in range(args.steps + 1):  # the first step of each is a warm-up, not timed
            for name, (model, parameters, optimizer, rows) in runs.items():
                seconds, loss = train_step(model, parameters, optimizer, batch, ids, rows)
                if step:
                    times[name].append(seconds)
                losses[name].append(loss)
        alone = {name: embedding_time(runs[name][0], batch["pixel_values"], args.steps) for name in names}
    patches = batch["pixel_values"].shape
    print(f"batch {args.batch_size}: {patches[0]} patches of {patches[1]} values, torch threads "
          f"{torch.get_num_threads()}")
    for name in names:
        print(f"{name:14s} median {statistics.median(times[name]) * 1000:6.1f} ms/step, the patch embedding "
              f"{alone[name] * 1000:5.1f} ms (forward and backward)")
    ratios = [a / b for a, b in zip(times["Conv3d"], times["matrix product"])]
    print(f"Conv3d / matrix product: step median {statistics.median(ratios):.2f}x (min {min(ratios):.2f}, "
          f"max {max(ratios):.2f}); the patch embedding {alone['Conv3d'] / alone['matrix product']:.2f}x")
    print(f"losses, last step: Conv3d {losses['Conv3d'][-1]:.6f}, matrix product {losses['matrix product'][-1]:.6f}")
    difference = max((a - b).abs().max().item() for a, b in zip(conv.parameters(), product.parameters()))
    print(f"largest weight difference after {args.steps + 1} steps: {difference:.2e}")


if __name__ == "__main__":
    main()
