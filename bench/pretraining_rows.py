"""The tiny model's pretraining step with every embedding row trained against the live rows only, side by side.

    python -m bench.pretraining_rows             # tiny Qwen2-VL, batch 16, 12 steps each

Two copies of the same model take the same steps on the same batch, in turn (a drift in the machine's speed hits
both): answer-vocabulary loss, backward, gradient clipping at 1.0 and AdamW without weight decay, as
vlmtune/pretraining.py's Trainer does. One trains every row of the 151,936-row embedding, the other only the rows
pretraining's tokens use (vlmtune.pretraining.live_rows). The two must stay the same model: the largest difference
of any weight after the steps is printed beside the times.
"""

import argparse
import copy
import statistics
import time

import torch

from vlmtune import pretraining, tiny
from vlmtune.collator import TrainCollator


def train_step(model, parameters, optimizer, batch, vocabulary, output_rows) -> tuple[float, float]:
    start = time.perf_counter()
    loss = pretraining.answer_vocabulary_loss(model, batch, vocabulary, output_rows() if output_rows else None)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(parameters, 1.0)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return time.perf_counter() - start, loss.item()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--batch_size", type=int, default=16)
    args = parser.parse_args(argv)

    every, processor = tiny.build_tiny_qwen2_vl()
    live = copy.deepcopy(every)
    model_type = every.config.model_type
    scenes = pretraining.PretrainingScenes(args.batch_size, model_type)
    batch = TrainCollator(processor, logits="suffix")([scenes[i] for i in range(args.batch_size)])
    vocabulary = pretraining.answer_vocabulary(processor, model_type)
    ids = torch.tensor(vocabulary)
    times, losses = {"every row": [], "live rows": []}, {"every row": [], "live rows": []}
    with pretraining.live_rows(live, pretraining.prompt_ids(processor, model_type) + vocabulary,
                               vocabulary) as output_rows:
        runs = {}
        for name, model, rows in (("every row", every, None), ("live rows", live, lambda: output_rows.of(ids))):
            model.train()
            parameters = [p for p in model.parameters() if p.requires_grad]
            runs[name] = (model, parameters, torch.optim.AdamW(parameters, lr=1e-3, weight_decay=0.0), rows)
            print(f"{name}: {sum(p.numel() for p in parameters):,} parameters trained")
        for step in range(args.steps + 1):  # the first step of each is a warm-up, not timed
            for name, (model, parameters, optimizer, rows) in runs.items():
                seconds, loss = train_step(model, parameters, optimizer, batch, ids, rows)
                if step:
                    times[name].append(seconds)
                losses[name].append(loss)
    print(f"batch {args.batch_size} x {batch['input_ids'].shape[1]} tokens, {len(vocabulary)} answer tokens, "
          f"{len(output_rows.ids)} live rows of {every.config.text_config.vocab_size:,}")
    for name, values in times.items():
        print(f"{name:9s} median {statistics.median(values) * 1000:6.1f} ms/step")
    ratios = [a / b for a, b in zip(times["every row"], times["live rows"])]
    print(f"every row / live rows: median {statistics.median(ratios):.2f}x (min {min(ratios):.2f}, "
          f"max {max(ratios):.2f})")
    print(f"losses, first and last step: every row {losses['every row'][0]:.6f} {losses['every row'][-1]:.6f}, "
          f"live rows {losses['live rows'][0]:.6f} {losses['live rows'][-1]:.6f}")
    difference = max((a - b).abs().max().item() for a, b in zip(every.parameters(), live.parameters()))
    print(f"largest weight difference after {args.steps + 1} steps: {difference:.2e}")


if __name__ == "__main__":
    main()
