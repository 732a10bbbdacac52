"""How training batches are drawn and loaded: length-grouped batches (--train_sampling_strategy group_by_length) from
the lazy examples, the collator in DataLoader workers, and what the padding cost, counted where the batches arrive.

Length grouping is not the default: where length follows the content (VQA's questions of one kind are one length,
grounding's expressions), grouped batches hold one kind of example each, and the tiny model's learning tests fell
from 0.98 to 0.73 (VQA) and 0.92 to 0.71 (grounding Acc@0.5) at the same steps.

The Trainer and torch's DataLoader do the work; this module holds the few pieces they lack for lazy examples (a
list of messages with their token count, no input_ids) and for a collator that runs in other processes.
"""

import os
from collections.abc import Mapping

import torch
from transformers.trainer_pt_utils import LengthGroupedSampler

from . import parts
from .collator import PACKED_LENGTHS, UnreadableImage

UNREADABLE = "unreadable_image"  # the key of a batch that carries, instead of tensors, why it could not be made


class EpochLengthGroupedSampler(LengthGroupedSampler):
    """transformers' LengthGroupedSampler, its shuffle drawn from (seed, epoch) alone.

    LengthGroupedSampler draws from torch's global generator and has no set_epoch, so a resumed run would draw another
    order than the uninterrupted one, and the processes of a multi-process run could draw different ones. The Trainer
    (through accelerate's DataLoaderShard.set_epoch) calls set_epoch before every epoch, as it does for the random
    sampler, which accelerate seeds the same way (SeedableRandomSampler: seed + epoch)."""

    def __init__(self, batch_size: int, lengths: list[int], seed: int):
        super().__init__(batch_size, lengths=lengths)
        self.seed = seed
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        self.generator = torch.Generator().manual_seed(self.seed + epoch)


def default_workers(cores: int | None = None, gpus: int | None = None) -> int:
    """--dataloader_num_workers when none is given: the processes that read, decode and resize images while the
    model trains. On a GPU machine the training process leaves its cores free: 2 workers a GPU process where it has
    4 cores or more, 1 where it has 2 or 3. On the CPU every core already computes (train.sh gives the training
    process one thread a core), and a worker competes with the matrix products for the same cores, to overlap
    at most the data loading's 13 % of train time: 0. (Side by side on a shared 2-core machine, 0, 1 and 2 workers
    were within the noise of each other.)"""
    if cores is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    gpus = torch.cuda.device_count() if gpus is None else gpus
    if not gpus:
        return 0
    per_process = cores // gpus
    return 2 if per_process >= 4 else 1 if per_process >= 2 else 0


class WorkerCollator:
    """The collator as a DataLoader worker runs it: an UnreadableImage met there comes back in the batch, as
    {UNREADABLE: its message}, and is raised again in the training process (PaddingCount.checked, the Trainer's
    _prepare_inputs). torch re-raises a worker's exception with the worker's whole traceback as its message, which
    train.py would print instead of its one line."""

    def __init__(self, collator):
        self.collator = collator

    def __call__(self, examples):
        try:
            return self.collator(examples)
        except UnreadableImage as error:
            if torch.utils.data.get_worker_info() is None:  # the training process itself: raised as it is
                raise
            return {UNREADABLE: str(error)}

    def __getattr__(self, name):  # the wrapped collator's settings, for whoever reads them
        if name == "collator":
            raise AttributeError(name)
        return getattr(self.collator, name)


def raise_carried(batch) -> None:
    """Raise, in the training process, the UnreadableImage a worker put in `batch`."""
    if isinstance(batch, Mapping) and UNREADABLE in batch:
        raise UnreadableImage(batch[UNREADABLE])


class PaddingCount:
    """Real tokens and positions computed (padding included) over the training batches, counted in the training
    process from each batch's attention_mask as it arrives: a collator's own counters would be counted in the
    worker processes and lost."""

    def __init__(self):
        self.tokens = self.positions = 0

    def checked(self, batches):
        """The batches of `batches`, each counted, one carrying an UnreadableImage raised."""
        for batch in batches:
            raise_carried(batch)
            mask = batch.get("attention_mask") if isinstance(batch, Mapping) else None  # a BatchFeature is no dict
            if mask is not None:
                self.tokens += int(mask.sum())
                self.positions += mask.numel()
            elif isinstance(batch, Mapping) and PACKED_LENGTHS in batch:  # a packed row: every position a token
                self.tokens += int(batch[PACKED_LENGTHS].sum())
                self.positions += batch["input_ids"].numel()
            yield batch

    @property
    def fraction(self) -> float | None:
        """Padded positions over positions computed; None before any batch."""
        return 1 - self.tokens / self.positions if self.positions else None


# ---------------------------------------------------------------- padding-free packing (TrainCollator(packing=True))


def rope_index(model):
    """The M-RoPE position function of a Qwen-VL model (get_rope_index, on the model inside the ...ForConditional-
    Generation), or None for a model of plain 1-D positions (LLaVA's Llama)."""
    return getattr(parts.unwrapped(model).base_model, "get_rope_index", None)


def packed_position_ids(model, batch) -> torch.Tensor:
    """The position ids of a packed batch (one row, PACKED_LENGTHS its examples' lengths), each example's as if it
    were alone: (1, length) for 1-D positions; for M-RoPE (4, 1, length), the text positions that the Qwen-VL
    language models read as the packing marks (create_causal_mask finds the examples where they restart), then the
    three rows the model's own get_rope_index gives each example. The examples are laid out as a right-padded
    batch for that call, which computes each row alone and takes the images in order, as the padded batch's did."""
    lengths = batch[PACKED_LENGTHS].tolist()
    input_ids = batch["input_ids"]
    starts = torch.arange(max(lengths), device=input_ids.device)[None]
    mask = starts < torch.tensor(lengths, device=input_ids.device)[:, None]
    text = (mask.cumsum(dim=1) - 1)[mask][None]
    get_rope_index = rope_index(model)
    if get_rope_index is None:
        return text
    inputs = {key: batch[key] for key in ("image_grid_thw", "video_grid_thw", "second_per_grid_ts") if key in batch}
    for key in ("input_ids", "mm_token_type_ids"):
        rows = torch.zeros(mask.shape, dtype=batch[key].dtype, device=input_ids.device)
        rows[mask] = batch[key][0]
        inputs[key] = rows
    rope, _ = get_rope_index(attention_mask=mask.long(), **inputs)
    return torch.cat([text[None], rope[:, mask][:, None]]).to(input_ids.device)


def packing_refusal(model) -> str | None:
    """Why --packing true cannot train this model, or None where it can: a probe of its language model on two
    short token runs packed in one row, with the position ids packed_position_ids gives (1-D, or M-RoPE's four
    rows), against the second run alone. A model that does not keep packed examples apart, or does not read those
    position ids, gives the second run other hidden states (or fails); its family is named."""
    core = parts.unwrapped(model)
    language = core.get_decoder()
    first, second = torch.arange(3, 8), torch.arange(11, 15)  # token ids of any vocabulary

    def positions(*runs):
        text = torch.cat([torch.arange(len(run)) for run in runs])[None]
        return text if rope_index(core) is None else text[None].expand(4, 1, -1)  # a text-only run's M-RoPE rows

    embed = core.get_input_embeddings()
    training = language.training
    language.eval()
    try:
        with torch.no_grad():
            device = embed.weight.device
            # use_cache=False, as PartsTrainer passes it with a packed batch: with a cache (the config's use_cache,
            # which the model takes while training without checkpointing) create_causal_mask looks for no packing
            alone = language(inputs_embeds=embed(second.to(device))[None], position_ids=positions(second).to(device),
                             use_cache=False).last_hidden_state[0]
            both = language(inputs_embeds=embed(torch.cat([first, second]).to(device))[None],
                            position_ids=positions(first, second).to(device),
                            use_cache=False).last_hidden_state[0, len(first):]
        error = None
        tolerance = 1e-4 if alone.dtype == torch.float32 else 5e-2
        difference = float((both.float() - alone.float()).norm() / alone.float().norm())
    except Exception as failure:  # any failure of the probe: the model does not take packed position ids
        error = f"{type(failure).__name__}: {failure}"
    finally:
        language.train(training)
    if error is None and difference <= tolerance:
        return None
    seen = error or f"an example's hidden states change by {difference:.1%} when another is packed before it"
    return (f"--packing true does not fit {core.config.model_type} ({type(core).__name__}): its language model does "
            f"not keep packed examples apart by their position ids ({seen}). Train without --packing.")
