"""Padding-free packing (--packing true, issue 13 item 4): a micro-batch's examples in one row, no attention mask,
each example's own position ids (Qwen's M-RoPE from the model's get_rope_index), gives the padded micro-batch's loss
and every LoRA gradient, in each --logits mode, on the tiny random models of the four real architecture classes
(real vocabulary, float32), with examples of different lengths and image sizes, so that the padded batch pads.

The comparison is shown to see the two ways packing goes wrong: positions not restarting at each example, and
attention leaking from one example into the next. A real train.py run trains on packed batches with the padded run's
logged losses and says it computed no padding; a model that does not keep packed examples apart is refused.
"""

import json
from pathlib import Path

import pytest
import torch
from PIL import Image
from transformers import TrainingArguments, masking_utils

import config
import train
from vlmtune import batching, parts, tiny, trainer as trainer_module, world
from vlmtune.collator import IGNORE_INDEX, LOGITS, PACKED_LENGTHS, TrainCollator, packed
from vlmtune.trainer import PartsTrainer

import tiny_copies
from tiny_copies import built

FAMILIES = sorted(tiny.TINY_MODELS)
RATES = dict.fromkeys(parts.PARTS, 1e-3)


def lora_model(family):
    """A fresh copy of the family's tiny model with LoRA (r 4, no dropout), its B matrices drawn at random."""
    tune = config.parse(["--lora_r", "4", "--lora_alpha", "8", "--lora_dropout", "0"], config.TuneConfig)[0]
    return tiny_copies.lora_model(family, tune)


MORE = ["", " It is alone in the picture.", " Nothing else.", " The background is plain and grey all over it."]


def examples(n=3):
    """Scenes of different sizes (Qwen: other image grids, other numbers of image tokens) with replies of
    different lengths; the second has two turns, so an example holds two supervised spans."""
    rows = []
    for index in range(n):
        scene = world.make_scene(seed=5, index=index, image_size=(84, 56, 112, 56)[index])
        messages = [{"role": "user", "content": [{"type": "image", "image": scene.render()},
                                                 {"type": "text", "text": "Describe the image."}]},
                    {"role": "assistant", "content": [{"type": "text", "text": world.caption(scene) + MORE[index]}]}]
        if index == 1:
            messages += [{"role": "user", "content": [{"type": "text", "text": "Again, briefly."}]},
                         {"role": "assistant", "content": [{"type": "text", "text": world.caption(scene)}]}]
        rows.append({"id": scene.id, "messages": messages})
    return rows


def trainer_for(model, family, logits, packing, tmp_path):
    args = TrainingArguments(output_dir=str(tmp_path), report_to=[], use_cpu=True, remove_unused_columns=False,
                             disable_tqdm=True, save_strategy="no", seed=0)
    return PartsTrainer(model=model, args=args, learning_rates=RATES,
                        data_collator=TrainCollator(built(family)[1], logits=logits, packing=packing))


def step(family, logits, packing, tmp_path):
    """(loss, {LoRA parameter: gradient}, the batch) of one micro-batch through PartsTrainer.training_step, with
    the Trainer's num_items_in_batch, no gradient checkpointing (so the model's config turns its cache on)."""
    model = lora_model(family)
    trainer = trainer_for(model, family, logits, packing, tmp_path)
    model.train()
    trainer.current_gradient_accumulation_steps = 1  # as the training loop sets it
    batch = trainer.data_collator(examples())
    num_items = trainer._get_num_items_in_batch([batch], trainer.args.device)
    loss = trainer.training_step(model, dict(batch), num_items)
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.requires_grad}
    return loss, grads, batch


def relative(a, b):
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("logits", LOGITS)
@pytest.mark.parametrize("family", FAMILIES)
def test_a_packed_micro_batch_gives_the_padded_loss_and_every_lora_gradient(family, logits, tmp_path):
    padded_loss, padded_grads, padded = step(family, logits, False, tmp_path)
    loss, grads, batch = step(family, logits, True, tmp_path)

    mask = padded["attention_mask"]
    assert (mask == 0).any()  # the padded batch pads
    assert "attention_mask" not in batch and batch["input_ids"].shape == (1, int(mask.sum()))
    assert batch[PACKED_LENGTHS].tolist() == mask.sum(dim=1).tolist()
    assert torch.equal(batch["input_ids"][0], padded["input_ids"][mask.bool()])
    assert relative(loss, padded_loss) < 1e-5, (float(loss), float(padded_loss))
    assert grads.keys() == padded_grads.keys() and all("lora_" in name for name in grads)
    for name, grad in padded_grads.items():
        assert grad.abs().max() > 0, name
        assert relative(grads[name], grad) < 1e-5, (name, relative(grads[name], grad))


@pytest.mark.parametrize("family", FAMILIES)
def test_a_training_step_builds_no_key_value_cache(family, tmp_path, monkeypatch):
    """The forwards take use_cache from the config (on: no gradient checkpointing here); a padded training batch's
    forward still builds no cache, which no loss reads."""
    caches = []
    original = PartsTrainer.compute_loss

    def recording(self, model, inputs, *args, **kwargs):
        language_model = model.get_base_model().model.language_model
        handle = language_model.register_forward_hook(lambda module, args, output: caches.append(
            output.past_key_values))
        try:
            return original(self, model, inputs, *args, **kwargs)
        finally:
            handle.remove()

    monkeypatch.setattr(PartsTrainer, "compute_loss", recording)
    step(family, "supervised", False, tmp_path)
    assert lora_model(family).config.get_text_config().use_cache  # the config would turn it on
    assert caches == [None]


def _one_arange(model, batch):
    """Broken packing: one position count over the whole row, not one per example."""
    right = batching.packed_position_ids(model, batch)
    return torch.arange(right.shape[-1]).expand_as(right)


@pytest.mark.parametrize("family", ["tiny-llava-1.5", "tiny-qwen2-vl"])
@pytest.mark.parametrize("broken", ["positions not restarted", "attention leaking"])
def test_the_comparison_sees_positions_not_restarted_and_attention_leaking(family, broken, tmp_path, monkeypatch):
    padded_loss, padded_grads, _ = step(family, "supervised", False, tmp_path)
    if broken == "positions not restarted":
        monkeypatch.setattr(trainer_module, "packed_position_ids", _one_arange)
    else:  # transformers' mask finds no packed examples: each attends to those before it in the row
        monkeypatch.setattr(masking_utils, "find_packed_sequence_indices", lambda position_ids: None)
    loss, grads, _ = step(family, "supervised", True, tmp_path)
    worst = max(relative(grads[name], grad) for name, grad in padded_grads.items())
    # One arange over the row restarts nowhere, so the mask leaks too. Either way the loss moves by more than the
    # 1e-5 the equivalence allows (the tiny random LLaVA's by 8e-5 only) and the gradients by far more.
    print(f"{family}, {broken}: loss {relative(loss, padded_loss):.1e}, worst gradient {worst:.1e}")
    assert relative(loss, padded_loss) > 3e-5 and worst > 1e-2, (relative(loss, padded_loss), worst)


def test_the_m_rope_positions_are_each_example_s_own(tmp_path):
    model, processor = built("tiny-qwen2-vl")
    padded = TrainCollator(processor, logits="all")(examples())
    batch = TrainCollator(processor, logits="all", packing=True)(examples())
    positions = batching.packed_position_ids(model, batch)
    expected, _ = model.model.get_rope_index(padded["input_ids"], padded["mm_token_type_ids"],
                                             image_grid_thw=padded["image_grid_thw"],
                                             attention_mask=padded["attention_mask"])
    mask = padded["attention_mask"].bool()
    assert positions.shape == (4, 1, int(mask.sum()))
    assert torch.equal(positions[1:, 0], expected[:, mask])
    text = torch.cat([torch.arange(n) for n in mask.sum(dim=1).tolist()])
    assert torch.equal(positions[0, 0], text)  # what create_causal_mask reads the examples' bounds from
    assert (expected[0, mask] != text).any()  # the image tokens' M-RoPE positions are no plain count


def test_packing_refuses_an_example_whose_first_label_is_supervised():
    batch = {"input_ids": torch.tensor([[1, 2, 3], [4, 5, 0]]), "attention_mask": torch.tensor([[1, 1, 1], [1, 1, 0]])}
    labels = torch.tensor([[IGNORE_INDEX, 2, 3], [4, 5, IGNORE_INDEX]])
    with pytest.raises(ValueError, match="first label ignored"):
        packed(dict(batch), labels)
    batch, labels = packed(dict(batch), torch.tensor([[IGNORE_INDEX, 2, 3], [IGNORE_INDEX, 5, IGNORE_INDEX]]))
    assert batch["input_ids"].tolist() == [[1, 2, 3, 4, 5]] and labels.tolist() == [[IGNORE_INDEX, 2, 3,
                                                                                     IGNORE_INDEX, 5]]
    assert batch[PACKED_LENGTHS].tolist() == [3, 2] and "attention_mask" not in batch


def test_a_packed_batch_counts_no_padding():
    count = batching.PaddingCount()
    batch = TrainCollator(built("tiny-qwen2-vl")[1], packing=True)(examples())
    assert list(count.checked([batch])) == [batch]
    assert count.tokens == count.positions == batch["input_ids"].numel() and count.fraction == 0


@pytest.mark.parametrize("family", FAMILIES)
def test_the_four_families_take_packing(family):
    assert batching.packing_refusal(built(family)[0]) is None


def test_a_model_that_lets_packed_examples_see_each_other_is_refused(monkeypatch):
    # As a transformers without packed-sequence masks (before masking_utils) would run it.
    monkeypatch.setattr(masking_utils, "find_packed_sequence_indices", lambda position_ids: None)
    refusal = batching.packing_refusal(built("tiny-qwen2-vl")[0])
    assert refusal.startswith("--packing true does not fit qwen2_vl (Qwen2VLForConditionalGeneration): its "
                              "language model does not keep packed examples apart"), refusal
    assert refusal.endswith("Train without --packing.")


# ---------------------------------------------------------------- train.py


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """12 captions of 4 lengths on pictures of 2 sizes: every batch of 4 pads."""
    folder = tmp_path_factory.mktemp("packing") / "data"
    (folder / "images").mkdir(parents=True)
    records = []
    for k in range(12):
        side = 56 if k % 2 else 84
        Image.new("RGB", (side, side), (20 * k % 256, 100, 200)).save(folder / "images" / f"{k}.png")
        records.append({"id": f"rec-{k}", "task": "caption", "conversations": [
            {"from": "user", "value": f"<|vision_start|>images/{k}.png<|vision_end|>Describe this image."},
            {"from": "assistant", "value": "A dot" + " and a dot" * (k % 4 * 3) + "."}]})
    (folder / "train.json").write_text(json.dumps(records))
    return folder


def _run(data, model_dir, out_dir, *more):
    train.main(["--data_dir", str(data), "--model_dir", str(model_dir), "--output_dir", str(out_dir),
                "--report_to", "none", "--use_cpu", "true", "--per_device_train_batch_size", "4", "--lora_r", "8",
                "--learning_rate", "1e-3", "--warmup_steps", "0", "--disable_tqdm", "true", "--max_steps", "3",
                "--logging_steps", "1", "--dataloader_num_workers", "0", *more])
    return [entry["loss"] for entry in json.loads(Path(out_dir, "trainer_state.json").read_text())["log_history"]
            if "loss" in entry]


def test_train_py_trains_on_packed_batches_with_the_padded_run_s_losses(data, tiny_model_dir, tmp_path, capsys):
    # No LoRA dropout: its masks are drawn over the batch's shape, which packing changes (the same rate, other
    # masks); with 0.05 the runs part at the second step, when LoRA's B is no longer zero.
    padded = _run(data, tiny_model_dir, tmp_path / "padded", "--lora_dropout", "0")
    padded_line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("padding: "))
    packed_losses = _run(data, tiny_model_dir, tmp_path / "packed", "--lora_dropout", "0", "--packing", "true")
    packed_line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("padding: "))

    assert len(padded) == len(packed_losses) == 3
    assert packed_losses == pytest.approx(padded, abs=1e-4, rel=0)
    assert len(set(padded)) > 1  # it trained: the loss moved
    assert not padded_line.startswith("padding: 0.0%"), padded_line
    assert packed_line.startswith("padding: 0.0% of the ") and packed_line.endswith("(packed batches)"), packed_line
    assert json.loads((tmp_path / "packed" / "run_config.json").read_text())["tune"]["packing"] is True


def test_train_py_refuses_packing_for_a_model_that_does_not_keep_examples_apart(data, tiny_model_dir, tmp_path,
                                                                              monkeypatch):
    monkeypatch.setattr(masking_utils, "find_packed_sequence_indices", lambda position_ids: None)
    with pytest.raises(SystemExit, match=r"^train.py: --packing true does not fit qwen2_vl"):
        _run(data, tiny_model_dir, tmp_path / "refused", "--packing", "true")
    assert not (tmp_path / "refused" / "run_config.json").exists()


def test_the_evaluation_loss_of_packed_batches_is_the_padded_one(tmp_path):
    # The evaluation's batches come from the same collator: packed too, and given their positions the same way.
    losses = {}
    for packing in (False, True):
        trainer = trainer_for(lora_model("tiny-qwen2-vl"), "tiny-qwen2-vl", "supervised", packing, tmp_path)
        trainer.args.per_device_eval_batch_size = 3
        losses[packing] = trainer.evaluate(eval_dataset=examples(4))["eval_loss"]
    assert losses[True] == pytest.approx(losses[False], rel=1e-5)


def test_the_packed_attention_bench_sees_the_padded_examples_hidden_states(fixtures_dir, capsys):
    from bench import packed_attention

    packed_attention.main(["--lengths", "7,12,5", "--repeats", "1", "--mlp", "32"])
    printed = capsys.readouterr().out
    assert "3 examples, 24 tokens, longest 12: padded 36 positions, packed 24" in printed
    difference = float(printed.rsplit("differ by ", 1)[1].split()[0])
    assert difference < 1e-5, printed
