"""Loaded by every Python process started with this folder on PYTHONPATH (tests/test_runs.py's two-process run):
in each rank of a launch, records the ids of the examples it trained on, its trained weights after training, and
whether it started SwanLab, into $VLMTUNE_PROBE/rank<N>.*. Nothing here runs outside that test."""

import json
import os

if os.environ.get("VLMTUNE_PROBE") and os.environ.get("RANK") is not None:
    import swanlab
    import transformers
    from safetensors.torch import save_file

    from vlmtune import collator

    _out, _rank, _seen, _swanlab = os.environ["VLMTUNE_PROBE"], os.environ["RANK"], [], []
    _collate, _train, _init = collator.TrainCollator.__call__, transformers.Trainer.train, swanlab.init

    def _recording_collate(self, examples):
        _seen.extend(example["id"] for example in examples)
        return _collate(self, examples)

    def _recording_init(*args, **kwargs):
        _swanlab.append(kwargs.get("mode"))
        return _init(*args, **kwargs)

    def _recording_train(self, *args, **kwargs):
        result = _train(self, *args, **kwargs)
        weights = {name: p.detach().cpu().contiguous() for name, p in self.model.named_parameters() if p.requires_grad}
        save_file(weights, os.path.join(_out, f"rank{_rank}.safetensors"))
        with open(os.path.join(_out, f"rank{_rank}.json"), "w", encoding="utf-8") as f:
            json.dump({"seen": _seen, "swanlab": _swanlab}, f)
        return result

    collator.TrainCollator.__call__ = _recording_collate
    transformers.Trainer.train = _recording_train
    swanlab.init = _recording_init
