"""Checkpoints without pickles that still resume bit for bit."""

import os
import random

import numpy as np
import pytest
import torch
from transformers import Trainer, TrainingArguments

from vlmtune import checkpoints


class _Noisy(torch.nn.Module):
    """A model whose steps draw random numbers (dropout), so a resume that lost the RNG state would differ."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.layer = torch.nn.Linear(4, 4)
        self.dropout = torch.nn.Dropout(0.5)

    def forward(self, x, y):
        return {"loss": ((self.dropout(self.layer(x)) - y) ** 2).mean()}


class _SafeTrainer(checkpoints.SafeCheckpoints, Trainer):
    pass


def _data():
    generator = torch.Generator().manual_seed(1)
    return [{"x": torch.randn(4, generator=generator), "y": torch.randn(4, generator=generator)} for _ in range(24)]


def _trainer(out, **overrides):
    args = TrainingArguments(output_dir=str(out), max_steps=6, per_device_train_batch_size=4, learning_rate=0.05,
                             lr_scheduler_type="cosine", warmup_steps=2, logging_steps=1, save_steps=3,
                             report_to=[], use_cpu=True, seed=7, **overrides)
    return _SafeTrainer(model=_Noisy(), args=args, train_dataset=_data())


def test_a_state_round_trips_with_its_key_types_tuples_arrays_and_tensors(tmp_path):
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1, betas=(0.8, 0.95))
    model(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    state = {"optimizer": optimizer.state_dict(), "rng": checkpoints.rng_states()}
    checkpoints.save_state(state, tmp_path, "s")
    back = checkpoints.load_state(tmp_path, "s")
    assert list(back["optimizer"]["state"]) == [0, 1]  # integer keys, as load_state_dict needs them
    assert back["optimizer"]["param_groups"][0]["betas"] == (0.8, 0.95)
    assert torch.equal(back["optimizer"]["state"][0]["exp_avg"], state["optimizer"]["state"][0]["exp_avg"])
    assert back["rng"]["python"] == random.getstate()
    assert np.array_equal(back["rng"]["numpy"][1], np.random.get_state()[1])
    fresh = torch.optim.AdamW(model.parameters(), lr=0.1)
    fresh.load_state_dict(back["optimizer"])


def test_a_resumed_run_ends_bit_identical_with_the_same_losses_and_no_pickle_anywhere(tmp_path):
    whole = _trainer(tmp_path / "whole")
    whole.train()
    resumed = _trainer(tmp_path / "resumed")
    resumed.train(resume_from_checkpoint=str(tmp_path / "whole" / "checkpoint-3"))
    for name, parameter in whole.model.state_dict().items():
        assert torch.equal(parameter, resumed.model.state_dict()[name]), name
    losses = {entry["step"]: entry["loss"] for entry in whole.state.log_history if "loss" in entry}
    again = {entry["step"]: entry["loss"] for entry in resumed.state.log_history if "loss" in entry}
    assert again == losses and sorted(again) == [1, 2, 3, 4, 5, 6]  # 1-3 read back from the checkpoint
    written = [name for folder, _, names in os.walk(tmp_path) for name in names]
    assert not [name for name in written if name.endswith((".pt", ".pth", ".bin", ".pkl"))], written
    assert {"optimizer.safetensors", "scheduler.json", "rng_state.safetensors", "training_args.json"} <= set(written)


def test_a_checkpoint_of_a_plain_trainer_still_resumes(tmp_path):
    plain = Trainer(model=_Noisy(), args=_trainer(tmp_path / "plain").args, train_dataset=_data())
    plain.train()
    assert (tmp_path / "plain" / "checkpoint-3" / "optimizer.pt").is_file()
    resumed = _trainer(tmp_path / "resumed")
    resumed.train(resume_from_checkpoint=str(tmp_path / "plain" / "checkpoint-3"))
    for name, parameter in plain.model.state_dict().items():
        assert torch.equal(parameter, resumed.model.state_dict()[name]), name


def test_a_value_that_would_need_pickling_is_refused(tmp_path):
    with pytest.raises(TypeError, match="cannot save a object"):
        checkpoints.save_state({"x": object()}, tmp_path, "s")


def test_resuming_from_a_finished_runs_folder_is_refused_naming_it(tmp_path):
    """A run folder holds trainer_state.json (for its report) but no optimizer state: not a checkpoint."""
    whole = _trainer(tmp_path / "whole")
    whole.train()
    whole.save_state()  # as train.py does at the end, beside the adapter
    with pytest.raises(ValueError, match=f"{tmp_path / 'whole'} holds no optimizer state"):
        checkpoints.resume_folder(str(tmp_path / "whole"), str(tmp_path / "whole"))
    assert checkpoints.resume_folder("last", str(tmp_path / "whole")) == str(tmp_path / "whole" / "checkpoint-6")
