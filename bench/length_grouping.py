"""How much of a batch is padding, with random batches and with length-grouped ones, on real COCO photos and captions.

    python -m bench.length_grouping                      # coco-mini (80 photos, 400 captions), batch 8, 5 seeds

Reads ../shared/fixtures/coco-mini through data2csv.py and csv2json.py, counts every training example's tokens with
the real processors of the fixtures (Qwen2-VL-2B at the COCO preset's 78,400-pixel limit, Qwen3-VL-4B, LLaVA-1.5,
which pads every photo to 576 tokens) by the count drop_overlong uses (file headers, no pixels), then draws the
batches of one epoch both ways with the samplers train.py uses: the Trainer's random order, and
transformers' LengthGroupedSampler (--train_sampling_strategy group_by_length). The padding share is the padded
positions over all positions computed (right padding to the longest example of each batch). No model runs.
"""

import argparse
import statistics
import tempfile
from pathlib import Path

import torch
from transformers.trainer_pt_utils import LengthGroupedSampler

import csv2json
import data2csv
from vlmtune.collator import drop_overlong
from vlmtune.formats import load_conversations, to_messages
from vlmtune.modeling import load_processor

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures"
FAMILIES = {"qwen2-vl-2b-instruct": 78400, "qwen3-vl-4b-instruct": 78400, "llava-1.5-7b-hf": 78400}


def padding_share(lengths: list[int], order: list[int], batch_size: int) -> float:
    """Padded positions over positions computed when `order` is cut into batches padded to their longest."""
    positions = tokens = 0
    for start in range(0, len(order), batch_size):
        batch = [lengths[i] for i in order[start:start + batch_size]]
        positions += max(batch) * len(batch)
        tokens += sum(batch)
    return 1 - tokens / positions


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args(argv)
    coco = FIXTURES / "coco-mini"
    with tempfile.TemporaryDirectory() as work:
        data = Path(work) / "data"
        data2csv.main(["--source", "coco", "--coco_annotations", str(coco / "annotations/captions_train2017.json"),
                       "--coco_images", str(coco / "train2017"), "--data_dir", str(data), "--num_samples", "0"])
        csv2json.main(["--data_dir", str(data), "--val_size", "8"])
        records = load_conversations(data / "train.json")
        print(f"\n{len(records)} training examples, batch {args.batch_size}, {args.seeds} seeds (mean, min-max)\n")
        print("| model | tokens an example (min-max) | random batches | length-grouped |\n|---|---|---|---|")
        for family, max_pixels in FAMILIES.items():
            processor = load_processor(str(FIXTURES / family), 3136, max_pixels)
            examples = [{"id": r["id"], "messages": to_messages(r, data)} for r in records]
            kept, _ = drop_overlong(examples, processor, max_length=1 << 20)
            lengths = [example["length"] for example in kept]
            shares = {"random": [], "grouped": []}
            for seed in range(args.seeds):
                generator = torch.Generator().manual_seed(seed)
                shares["random"].append(padding_share(lengths, torch.randperm(len(lengths), generator=generator)
                                                      .tolist(), args.batch_size))
                sampler = LengthGroupedSampler(args.batch_size, lengths=lengths,
                                               generator=torch.Generator().manual_seed(seed))
                shares["grouped"].append(padding_share(lengths, list(sampler), args.batch_size))
            cells = [f"{statistics.mean(v):.1%} ({min(v):.1%}-{max(v):.1%})" for v in shares.values()]
            print(f"| {family} | {min(lengths)}-{max(lengths)} | {cells[0]} | {cells[1]} |")


if __name__ == "__main__":
    main()
