"""The data path (issue 13, items 4 and 5): length-grouped batches by default where they save padding, and the
collator in DataLoader workers giving exactly what it gives in the training process: the same batches in the same
order, the same adapter, the same padding share, and train.py's one message for an image that breaks mid-training."""

import json
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

import train
from vlmtune import trainer as trainer_module
from vlmtune.batching import EpochLengthGroupedSampler, default_workers


def _write_data(folder: Path, n: int, caption) -> Path:
    """A train.json of n 56 x 56 pictures, record k captioned caption(k)."""
    (folder / "images").mkdir(parents=True)
    records = []
    for k in range(n):
        Image.new("RGB", (56, 56), (20 * k % 256, 100, 200)).save(folder / "images" / f"{k}.png")
        records.append({"id": f"rec-{k}", "task": "caption", "conversations": [
            {"from": "user", "value": f"<|vision_start|>images/{k}.png<|vision_end|>Describe this image."},
            {"from": "assistant", "value": caption(k)}]})
    (folder / "train.json").write_text(json.dumps(records))
    return folder


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """16 examples of 4 lengths (the synthetic world's captions all have one length: no batch of it pads)."""
    return _write_data(tmp_path_factory.mktemp("data-path") / "data", 16,
                       lambda k: "A dot" + " and a dot" * (k % 4 * 3) + ".")


def _args(data_dir, model_dir, out_dir, *more):
    return ["--data_dir", str(data_dir), "--model_dir", str(model_dir), "--output_dir", str(out_dir),
            "--report_to", "none", "--use_cpu", "true", "--per_device_train_batch_size", "4", "--lora_r", "8",
            "--learning_rate", "1e-3", "--warmup_steps", "0", "--disable_tqdm", "true", *more]


def _padding_line(output: str) -> str:
    return next(line for line in output.splitlines() if line.startswith("padding: "))


def test_default_workers_leave_the_cpu_to_compute_and_feed_a_gpu():
    assert default_workers(cores=2, gpus=0) == 0 and default_workers(cores=64, gpus=0) == 0
    assert default_workers(cores=16, gpus=1) == 2 and default_workers(cores=16, gpus=8) == 1
    assert default_workers(cores=4, gpus=4) == 0


def test_the_length_grouped_order_is_drawn_from_the_seed_and_the_epoch_alone():
    """What a resumed run and every process of a multi-process run rely on: epoch e's order does not depend on what
    was drawn before it (transformers' LengthGroupedSampler draws from the global generator)."""
    lengths = [(7 * i) % 23 + 10 for i in range(96)]
    through = EpochLengthGroupedSampler(4, lengths, seed=3)
    through.set_epoch(0)
    first = list(through)
    torch.rand(5)  # the global generator moves on, as training moves it
    through.set_epoch(1)
    second = list(through)
    fresh = EpochLengthGroupedSampler(4, lengths, seed=3)
    fresh.set_epoch(1)
    assert list(fresh) == second != first
    assert sorted(second) == list(range(96))
    batches = [[lengths[i] for i in second[k:k + 4]] for k in range(0, 96, 4)]
    assert sum(max(b) - min(b) for b in batches) < sum(max(b) - min(b) for b in
                                                       [lengths[k:k + 4] for k in range(0, 96, 4)])


def test_workers_give_the_same_batches_in_order_the_same_adapter_and_padding(data, tiny_model_dir, tmp_path,
                                                                            capsys, monkeypatch):
    seen = {}
    original = trainer_module.PartsTrainer.training_step

    def recording(self, model, inputs, *args, **kwargs):
        seen.setdefault(self.args.dataloader_num_workers, []).append(
            {key: value.clone() for key, value in inputs.items() if isinstance(value, torch.Tensor)})
        return original(self, model, inputs, *args, **kwargs)

    monkeypatch.setattr(trainer_module.PartsTrainer, "training_step", recording)
    lines = {}
    for workers in (0, 2):
        train.main(_args(data, tiny_model_dir, tmp_path / f"w{workers}", "--num_train_epochs", "2",
                         "--dataloader_num_workers", str(workers), "--train_sampling_strategy", "group_by_length"))
        lines[workers] = _padding_line(capsys.readouterr().out)
    assert len(seen[0]) == len(seen[2]) == 8  # 16 examples in batches of 4, 2 epochs
    for off, on in zip(seen[0], seen[2]):
        assert off.keys() == on.keys() and all(torch.equal(off[key], on[key]) for key in off)
    a, b = (load_file(tmp_path / f"w{w}" / "adapter_model.safetensors") for w in (0, 2))
    assert a.keys() == b.keys() and all(torch.equal(a[key], b[key]) for key in a)
    # the padding share is counted where the batches arrive: equal, and not lost in the workers
    assert lines[0] == lines[2] and lines[0].endswith("(group_by_length batches)"), lines
    tokens = sum(int(batch["attention_mask"].sum()) for batch in seen[0])
    positions = sum(batch["attention_mask"].numel() for batch in seen[0])
    assert lines[0].startswith(f"padding: {1 - tokens / positions:.1%} of the {positions} token positions")
    assert json.loads((tmp_path / "w2" / "run_config.json").read_text())["training"][
        "train_sampling_strategy"] == "group_by_length"  # what the run used is what it records


def test_batches_are_random_unless_grouping_is_asked_for(data, tiny_model_dir, tmp_path, capsys):
    """Length grouping hurts learning where length follows the content (vlmtune/batching.py): not the default."""
    train.main(_args(data, tiny_model_dir, tmp_path / "random", "--max_steps", "2"))
    assert _padding_line(capsys.readouterr().out).endswith("(random batches)")


def _broken_png(path: Path) -> None:
    """A PNG whose header reads (its token count is made) but whose pixels are cut off: it fails at its batch."""
    Image.new("RGB", (56, 56), (200, 30, 30)).save(path)
    path.write_bytes(path.read_bytes()[:60])


def test_an_image_that_breaks_mid_training_gives_train_pys_one_message_with_workers(tiny_model_dir, tmp_path):
    data_dir = _write_data(tmp_path / "data", 8, lambda k: "A dot.")
    _broken_png(data_dir / "images" / "5.png")
    messages = {}
    for workers in (0, 2):
        with pytest.raises(SystemExit) as stop:
            train.main(_args(data_dir, tiny_model_dir, tmp_path / f"w{workers}", "--max_steps", "4",
                             "--dataloader_num_workers", str(workers), "--train_sampling_strategy", "group_by_length"))
        messages[workers] = str(stop.value.code)
    assert messages[2] == messages[0], messages
    assert messages[0].startswith(f"train.py: record 'rec-5': image {data_dir / 'images' / '5.png'} does not open "
                                  "(OSError: ")
    assert "\n" not in messages[2] and "Caught" not in messages[2] and "Traceback" not in messages[2]
