"""What --packing costs with PyTorch's sdpa attention: the attention of one full-size Qwen2-VL-2B decoder layer (random
weights from the fixture config: 12 heads of 128, 2 key-value heads; its MLP cut to --mlp, as it costs the same per
token either way), forward and backward, on a micro-batch of examples of different lengths, padded against packed.

    python -m bench.packed_attention                 # 8 examples of 100-250 tokens, float32 on the CPU
    python -m bench.packed_attention --device cuda --dtype bfloat16 --attn sdpa,flash_attention_2

A padded batch computes attention over batch x longest^2 positions, some of them padding; a packed row has no padding
but, with sdpa or eager attention, a single (sum of lengths)^2 score matrix whose block-diagonal mask only hides the
other examples: the work grows with the square of the whole row. Flash-attention's variable-length kernels compute
each example's own block only, which is where packing pays. The variants alternate in one process (medians).
"""

import argparse
import statistics
import time
from pathlib import Path

import torch
from transformers import AutoConfig
from transformers.models.qwen2_vl.modeling_qwen2_vl import Qwen2VLTextModel

FIXTURE = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "qwen2-vl-2b-instruct" / "config.json"


def inputs(lengths: list[int], hidden: int, packed: bool, device, dtype) -> dict:
    """A padded batch (right padding, an attention mask) or the same examples packed in one row (each its own
    positions from 0, M-RoPE's four rows, no mask), from one seed, so both hold the same embeddings."""
    generator = torch.Generator().manual_seed(0)
    rows = [torch.randn(length, hidden, generator=generator) for length in lengths]
    if packed:
        text = torch.cat([torch.arange(length) for length in lengths])[None]
        return {"inputs_embeds": torch.cat(rows)[None].to(device, dtype),
                "position_ids": text[None].expand(4, 1, -1).to(device), "attention_mask": None}
    longest = max(lengths)
    embeds = torch.zeros(len(lengths), longest, hidden)
    mask = torch.zeros(len(lengths), longest, dtype=torch.long)
    for i, row in enumerate(rows):
        embeds[i, :len(row)], mask[i, :len(row)] = row, 1
    return {"inputs_embeds": embeds.to(device, dtype), "attention_mask": mask.to(device)}


def step(model, batch) -> float:
    if batch["inputs_embeds"].is_cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    embeds = batch["inputs_embeds"].detach().requires_grad_()
    out = model(**(batch | {"inputs_embeds": embeds}), use_cache=False).last_hidden_state
    out.float().square().mean().backward()
    if embeds.is_cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", default="100,130,160,190,220,250,115,235", help="the examples' token counts")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--attn", default="sdpa", help="attention implementations, comma-separated")
    parser.add_argument("--mlp", type=int, default=256, help="the MLP's width (the real one: 8960)")
    args = parser.parse_args(argv)
    if not FIXTURE.is_file():
        raise SystemExit(f"bench/packed_attention.py: the Qwen2-VL-2B config is not at {FIXTURE} (../shared/fixtures)")
    lengths = [int(n) for n in args.lengths.split(",")]
    dtype = getattr(torch, args.dtype)
    config = AutoConfig.from_pretrained(FIXTURE.parent).text_config
    config.num_hidden_layers = 1
    config.intermediate_size = args.mlp
    print(f"one Qwen2-VL-2B decoder layer (hidden {config.hidden_size}, {config.num_attention_heads} heads, MLP "
          f"{config.intermediate_size}), "
          f"{args.device} {args.dtype}; {len(lengths)} examples, {sum(lengths)} tokens, longest {max(lengths)}: "
          f"padded {len(lengths) * max(lengths)} positions, packed {sum(lengths)}")
    for attn in args.attn.split(","):
        config._attn_implementation = attn
        torch.manual_seed(0)
        model = Qwen2VLTextModel(config).to(args.device, dtype)
        batches = {name: inputs(lengths, config.hidden_size, name == "packed", args.device, dtype)
                   for name in ("padded", "packed")}
        with torch.no_grad():  # the same examples either way: each one's hidden states, padded and packed
            padded_out = model(**batches["padded"], use_cache=False).last_hidden_state
            packed_out = model(**batches["packed"], use_cache=False).last_hidden_state[0]
        mask = batches["padded"]["attention_mask"].bool()
        difference = float((padded_out[mask] - packed_out).abs().max())
        times = {name: [] for name in batches}
        for name in batches:  # warm-up
            step(model, batches[name])
        for _ in range(args.repeats):
            for name, batch in batches.items():
                times[name].append(step(model, batch))
        padded, packed = (statistics.median(times[name]) for name in ("padded", "packed"))
        print(f"{attn}: padded {padded:.3f} s, packed {packed:.3f} s: packed / padded {packed / padded:.2f} "
              f"(hidden states differ by {difference:.1e} at most)")


if __name__ == "__main__":
    main()
