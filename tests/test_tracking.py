"""Tracking never kills a run: SwanLab refusing the key or unreachable gives a warning and offline logging."""

import torch
from transformers import Trainer, TrainingArguments

from vlmtune import tracking


class _Regression(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x, y):
        return {"loss": ((self.weight * x - y) ** 2).mean()}


def _train(tmp_path, callback):
    data = [{"x": torch.tensor([1.0]), "y": torch.tensor([2.0])}] * 4
    args = TrainingArguments(output_dir=str(tmp_path / "run"), max_steps=2, per_device_train_batch_size=2,
                             logging_steps=1, report_to=[], use_cpu=True, save_strategy="no")
    trainer = Trainer(model=_Regression(), args=args, train_dataset=data, callbacks=[callback])
    trainer.train()
    return trainer


def test_a_refused_key_with_no_network_warns_and_logs_offline_and_training_goes_on(tmp_path, monkeypatch, capsys):
    import swanlab

    # The real fault: this machine reaches no SwanLab server, so the login with a key fails as it does offline.
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SWANLAB_API_KEY", "not-a-real-key")
    monkeypatch.setenv("SWANLAB_MODE", "online")
    monkeypatch.setenv("SWANLAB_SAVE_DIR", str(tmp_path / "swanlog"))
    try:
        trainer = _train(tmp_path, tracking.tracking_callback("vlmtune-test", "run", "online"))
        out = capsys.readouterr().out
        assert "warning: SwanLab could not start in online mode (AuthenticationError" in out
        assert "logging offline to swanlog/ instead" in out
        assert trainer.state.global_step == 2
        assert swanlab.get_run() is not None and swanlab.get_run().mode == "offline"
    finally:
        swanlab.finish()


def test_when_even_offline_logging_fails_the_run_goes_on_without_swanlab(tmp_path, monkeypatch, capsys):
    import swanlab

    def refuse(*args, **kwargs):
        raise OSError("read-only file system: swanlog")

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(swanlab, "init", refuse)
    trainer = _train(tmp_path, tracking.tracking_callback("vlmtune-test", "run", "offline"))
    out = capsys.readouterr().out
    assert "warning: SwanLab could not start (OSError: read-only file system: swanlog); training goes on" in out
    assert trainer.state.global_step == 2 and trainer.state.log_history[0]["loss"] > 0
