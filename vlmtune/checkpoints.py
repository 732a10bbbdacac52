"""Checkpoints without pickles: the optimizer, scheduler and random-number states a resumed run needs, as
safetensors (the tensors) and JSON (everything else).

The Trainer writes them with torch.save (optimizer.pt, scheduler.pt, rng_state.pth, training_args.bin): pickle
files, which run code when a newer torch is told to trust them, and which a shared checkpoint should not hold. The
Trainer offers no other format, so SafeCheckpoints (mixed into the project's Trainer) overrides the four methods that
write and read them. A checkpoint written by a plain Trainer still loads (the Trainer's own reader is the fallback).
DeepSpeed and FSDP keep their engines' own checkpoint files, which are outside this project's reach.
"""

import json
import os
import random

import numpy as np
import torch
from safetensors.torch import load_file, save_file

OPTIMIZER = "optimizer"  # optimizer.safetensors + optimizer.json
SCHEDULER = "scheduler"
TRAINING_ARGS = "training_args.json"


def resume_folder(given: str | None, output_dir: str) -> str | None:
    """The checkpoint folder --resume_from_checkpoint names: a path, or `last`, the newest checkpoint-N of
    --output_dir; None without the flag. ValueError, naming the folder, when there is none to resume from."""
    from transformers.trainer_utils import get_last_checkpoint

    if not given:
        return None
    folder = given
    if given == "last":
        folder = get_last_checkpoint(output_dir) if os.path.isdir(output_dir) else None
    if folder is None:
        raise ValueError(f"--resume_from_checkpoint last: {output_dir} holds no checkpoint-N folder to resume from "
                         "(checkpoints are saved with --save_strategy steps|epoch)")
    if not os.path.isfile(os.path.join(folder, "trainer_state.json")):
        raise ValueError(f"--resume_from_checkpoint {given}: {folder} is no checkpoint (no trainer_state.json); give "
                         "a checkpoint-N folder, or `last`")
    # A finished run's folder holds trainer_state.json too; a checkpoint also holds the optimizer's state (ours, the
    # Trainer's optimizer.pt, or DeepSpeed's global_stepN folder).
    if not has_state(folder, OPTIMIZER) and not any(
            name == "optimizer.pt" or name.startswith("global_step") for name in os.listdir(folder)):
        raise ValueError(f"--resume_from_checkpoint {given}: {folder} holds no optimizer state, so it is no "
                         "checkpoint to resume from (a finished run's folder?); give a checkpoint-N folder, or `last`")
    return folder


def save_state(state, folder: str, name: str) -> None:
    """Write a state (nested dicts, lists, tuples, numbers, strings, tensors, numpy arrays) as <name>.safetensors and
    <name>.json in `folder`; load_state reads it back equal, key types and tuples included."""
    tensors = {}
    document = _encode(state, tensors)
    save_file(tensors, os.path.join(folder, f"{name}.safetensors"))
    with open(os.path.join(folder, f"{name}.json"), "w", encoding="utf-8") as f:
        json.dump(document, f)


def load_state(folder: str, name: str):
    tensors = load_file(os.path.join(folder, f"{name}.safetensors"))
    with open(os.path.join(folder, f"{name}.json"), encoding="utf-8") as f:
        return _decode(json.load(f), tensors)


def has_state(folder: str, name: str) -> bool:
    return all(os.path.isfile(os.path.join(folder, f"{name}.{suffix}")) for suffix in ("safetensors", "json"))


def _encode(value, tensors: dict):
    if isinstance(value, torch.Tensor):
        key = str(len(tensors))
        tensors[key] = value.detach().cpu().clone().contiguous()  # safetensors refuses shared or strided storage
        return {"__tensor__": key}
    if isinstance(value, np.ndarray):
        return {"__ndarray__": value.tolist(), "dtype": str(value.dtype)}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, tuple):
        return {"__tuple__": [_encode(item, tensors) for item in value]}
    if isinstance(value, list):
        return [_encode(item, tensors) for item in value]
    if isinstance(value, dict):
        # JSON keys are strings: the optimizer's state is keyed by parameter index, so keys keep their type.
        return {"__dict__": [[_encode(key, tensors), _encode(item, tensors)] for key, item in value.items()]}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"cannot save a {type(value).__name__} in a checkpoint state without pickling it")


def _decode(value, tensors: dict):
    if isinstance(value, list):
        return [_decode(item, tensors) for item in value]
    if not isinstance(value, dict):
        return value
    if "__tensor__" in value:
        return tensors[value["__tensor__"]]
    if "__ndarray__" in value:
        return np.array(value["__ndarray__"], dtype=value["dtype"])
    if "__tuple__" in value:
        return tuple(_decode(item, tensors) for item in value["__tuple__"])
    return {_decode(key, tensors): _decode(item, tensors) for key, item in value["__dict__"]}


def rng_states() -> dict:
    """Every random-number state a training step draws from: Python's, numpy's, torch's CPU and CUDA ones."""
    states = {"python": random.getstate(), "numpy": np.random.get_state(), "cpu": torch.random.get_rng_state()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.random.get_rng_state_all()
    return states


def set_rng_states(states: dict) -> None:
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    torch.random.set_rng_state(states["cpu"])
    if torch.cuda.is_available() and "cuda" in states:
        torch.cuda.random.set_rng_state_all(states["cuda"])


class SafeCheckpoints:
    """Trainer mixin (class MyTrainer(SafeCheckpoints, Trainer)): checkpoints hold safetensors and JSON only."""

    def _engine_owns_state(self) -> bool:
        return bool(getattr(self, "is_deepspeed_enabled", False) or getattr(self, "is_fsdp_enabled", False))

    def _rng_name(self) -> str:
        return "rng_state" if self.args.world_size <= 1 else f"rng_state_{self.args.process_index}"

    def _save_optimizer_and_scheduler(self, output_dir):
        if self._engine_owns_state():
            return super()._save_optimizer_and_scheduler(output_dir)
        if self.args.should_save:
            os.makedirs(output_dir, exist_ok=True)
            save_state(self.optimizer.state_dict(), output_dir, OPTIMIZER)
            save_state(self.lr_scheduler.state_dict(), output_dir, SCHEDULER)

    def _load_optimizer_and_scheduler(self, checkpoint):
        if checkpoint is None or self._engine_owns_state() or not has_state(checkpoint, OPTIMIZER):
            return super()._load_optimizer_and_scheduler(checkpoint)
        self.optimizer.load_state_dict(load_state(checkpoint, OPTIMIZER))
        self.lr_scheduler.load_state_dict(load_state(checkpoint, SCHEDULER))

    def _save_rng_state(self, output_dir):
        os.makedirs(output_dir, exist_ok=True)
        save_state(rng_states(), output_dir, self._rng_name())

    def _load_rng_state(self, checkpoint):
        if checkpoint is None or not has_state(checkpoint, self._rng_name()):
            return super()._load_rng_state(checkpoint)
        set_rng_states(load_state(checkpoint, self._rng_name()))

    def _save(self, output_dir=None, state_dict=None):
        super()._save(output_dir, state_dict)
        # _save pickles the TrainingArguments beside the weights; the same, as JSON, is all a reader needs.
        output_dir = output_dir if output_dir is not None else self.args.output_dir
        pickled = os.path.join(output_dir, "training_args.bin")
        if os.path.isfile(pickled):
            os.remove(pickled)
            with open(os.path.join(output_dir, TRAINING_ARGS), "w", encoding="utf-8") as f:
                f.write(self.args.to_json_string())
