"""Tests of issue 13's items 2 and 3 on the tiny random models of the four real architecture classes (real vocabulary).

Item 2, no backward through what is frozen: with gradient checkpointing on, the default path
(modeling.frozen_out_of_graph) gives the loss and every LoRA gradient of today's path (--frozen_in_graph, transformers'
own enable_input_require_grads) to 1e-6, while no module of a frozen vision encoder or projector outputs a tensor
that requires grad, nor runs twice (checkpointing's recompute); a vision encoder that trains still gets gradients.

Item 3, the vocabulary projection only where the loss reads: logits="supervised" gives the full logits' loss to 1e-5
and their LoRA gradients, with and without the Trainer's num_items_in_batch, on rows of different reply lengths
with right padding, projecting exactly the supervised positions.

LoRA's B matrices are drawn at random here: peft starts them at zero, which would leave every A's gradient zero and
the comparison of those gradients empty.
"""

import functools

import pytest
import torch
from transformers import TrainingArguments

import config
from vlmtune import parts, tiny, world
from vlmtune.collator import IGNORE_INDEX, TrainCollator
from vlmtune.trainer import PartsTrainer

import tiny_copies
from tiny_copies import built, fresh_model

FAMILIES = sorted(tiny.TINY_MODELS)
RATES = dict.fromkeys(parts.PARTS, 1e-3)




def tune(*flags):
    return config.parse([*flags, "--lora_r", "4", "--lora_alpha", "8", "--lora_dropout", "0"], config.TuneConfig)[0]


MORE = ["", " It is alone.", " Nothing else is in the picture.", " The background is plain and grey all over."]


def examples(n=3):
    """Scenes of different sizes (Qwen: image tokens) with replies of different lengths: the supervised positions
    start and end at other places in each row, right-padded to the longest."""
    rows = []
    for index in range(n):
        scene = world.make_scene(seed=3, index=index, image_size=(56, 84, 56, 112)[index])
        rows.append({"id": scene.id, "messages": [
            {"role": "user", "content": [{"type": "image", "image": scene.render()},
                                         {"type": "text", "text": "Describe the image."}]},
            {"role": "assistant", "content": [{"type": "text", "text": world.caption(scene) + MORE[index]}]}]})
    return rows


def lora_model(family, *flags):
    return tiny_copies.lora_model(family, tune(*flags))  # the same LoRA A matrices for every path compared


def trainer_for(model, family, logits, tmp_path, dataset=None, **training_args):
    args = TrainingArguments(output_dir=str(tmp_path), report_to=[], use_cpu=True, remove_unused_columns=False,
                             disable_tqdm=True, save_strategy="no", seed=0, **training_args)
    return PartsTrainer(model=model, args=args, train_dataset=dataset,
                        data_collator=TrainCollator(built(family)[1], logits=logits), learning_rates=RATES)


class FrozenRecorder:
    """Forward hooks on every module of the vision encoder and the projector: per module, for each call, whether
    any tensor it output requires grad (a call more than the forward's is checkpointing's recompute)."""

    def __init__(self, model):
        self.calls = {}
        self.handles = []
        by_part = parts.part_modules(model)
        for top, module in by_part["vision"] + by_part["projector"]:
            for name, sub in module.named_modules(prefix=top):
                if name in self.calls:  # Qwen's projector sits inside its vision encoder
                    continue
                self.calls[name] = []
                self.handles.append(sub.register_forward_hook(functools.partial(self.record, name)))

    def record(self, name, module, inputs, output):
        tensors = [output] if torch.is_tensor(output) else [
            value for value in (output.values() if isinstance(output, dict) else output if isinstance(
                output, (tuple, list)) else []) if torch.is_tensor(value)]
        self.calls[name].append(any(tensor.requires_grad for tensor in tensors))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for handle in self.handles:
            handle.remove()

    def requiring_grad(self):
        return sorted(name for name, calls in self.calls.items() if any(calls))

    def run_twice(self):
        return sorted(name for name, calls in self.calls.items() if len(calls) > 1)


def step(family, tmp_path, *flags, logits="suffix", num_items=None, reentrant=False, checkpointing=True):
    """(loss, every trained parameter's gradient, FrozenRecorder, logits' shape) of one forward and backward
    through PartsTrainer.compute_loss, checkpointing turned on by the call Trainer.train makes for
    --gradient_checkpointing."""
    model = lora_model(family, *flags)
    trainer = trainer_for(model, family, logits, tmp_path)
    if checkpointing:
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": reentrant})
    model.train()
    batch = trainer.data_collator(examples())
    with FrozenRecorder(model) as seen:
        loss, outputs = trainer.compute_loss(model, batch, return_outputs=True, num_items_in_batch=num_items)
        loss.backward()
    grads = {name: parameter.grad for name, parameter in model.named_parameters() if parameter.requires_grad}
    return loss.detach(), grads, seen, tuple(outputs.logits.shape)


def assert_same_gradients(grads, expected, rtol, atol, unused=None):
    """Every trained matrix gets a non-zero gradient, the same in both, but those of the layer `unused` names."""
    assert grads.keys() == expected.keys() and expected
    for name, grad in expected.items():
        if unused and unused in name:
            assert grad is None and grads[name] is None, name
            continue
        assert grad is not None and grad.abs().max() > 0, name
        torch.testing.assert_close(grads[name], grad, rtol=rtol, atol=atol, msg=name)


# ---------------------------------------------------------------- item 2: nothing frozen in the gradient graph


@pytest.mark.parametrize("family", FAMILIES)
def test_a_frozen_vision_tower_is_out_of_the_graph_with_the_same_loss_and_lora_gradients(family, tmp_path):
    today_loss, today_grads, today_seen, _ = step(family, tmp_path, "--frozen_in_graph", "true")
    loss, grads, seen, _ = step(family, tmp_path)

    torch.testing.assert_close(loss, today_loss, rtol=0, atol=1e-6)
    assert_same_gradients(grads, today_grads, rtol=0, atol=1e-6)
    assert all("lora_" in name for name in grads)
    assert seen.requiring_grad() == [] and seen.run_twice() == []
    assert all(len(calls) == 1 for calls in seen.calls.values() if calls)
    if family == "tiny-qwen3-vl":
        # Qwen3-VL's vision model exposes no input embeddings, so transformers' hooks miss it already
        assert today_seen.requiring_grad() == [] and today_seen.run_twice() == []
    else:  # today's path: the frozen tower back-propagated, its checkpointed blocks run twice
        assert len(today_seen.requiring_grad()) > 10 and today_seen.run_twice()


def test_reentrant_checkpointing_still_passes_gradients_to_every_lora_matrix(tmp_path):
    # Reentrant checkpoints give no gradient to what is inside them unless their input requires grad: the language
    # model's input embeddings stay hooked.
    today_loss, today_grads, _, _ = step("tiny-qwen2-vl", tmp_path, "--frozen_in_graph", "true", reentrant=True)
    loss, grads, seen, _ = step("tiny-qwen2-vl", tmp_path, reentrant=True)
    torch.testing.assert_close(loss, today_loss, rtol=0, atol=1e-6)
    assert_same_gradients(grads, today_grads, rtol=0, atol=1e-6)
    assert seen.requiring_grad() == []


@pytest.mark.parametrize("family, reentrant", [("tiny-qwen2-vl", False), ("tiny-qwen2-vl", True),
                                               ("tiny-llava-1.5", False)])
def test_a_vision_tower_that_trains_keeps_its_gradients(family, reentrant, tmp_path):
    today_loss, today_grads, _, _ = step(family, tmp_path, "--vision", "lora", "--frozen_in_graph", "true",
                                         reentrant=reentrant)
    loss, grads, seen, _ = step(family, tmp_path, "--vision", "lora", reentrant=reentrant)
    vision = [name for name in grads if ".visual." in name or ".vision_tower." in name]
    assert len(vision) > 10 and all("lora_" in name for name in vision)
    torch.testing.assert_close(loss, today_loss, rtol=0, atol=1e-6)
    # LLaVA-1.5 reads its CLIP tower's second-to-last layer (vision_feature_layer -2): the last one's LoRA matrices
    # get no gradient, on either path.
    unused = "vision_tower.encoder.layers.2." if family == "tiny-llava-1.5" else None
    assert_same_gradients(grads, today_grads, rtol=0, atol=1e-6, unused=unused)  # every other vision LoRA matrix too
    assert seen.requiring_grad()


def test_training_with_gradient_checkpointing_keeps_the_frozen_tower_out_of_the_graph(tmp_path):
    # The real Trainer: its train() turns checkpointing on through peft's wrapper, after prepare_for_training.
    model = lora_model("tiny-qwen2-vl")
    trainer = trainer_for(model, "tiny-qwen2-vl", "supervised", tmp_path, examples(), max_steps=1,
                          per_device_train_batch_size=3, gradient_checkpointing=True, dataloader_num_workers=0)
    before = {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}
    with FrozenRecorder(model) as seen:
        trainer.train()
    assert parts.unwrapped(model).is_gradient_checkpointing
    assert seen.requiring_grad() == [] and seen.run_twice() == []
    assert all(not torch.equal(p.detach(), before[name]) for name, p in model.named_parameters() if p.requires_grad)


# ---------------------------------------------------------------- item 3: logits only where the loss reads


def test_the_supervised_mask_marks_each_row_s_positions_before_a_supervised_token():
    labels_of = TrainCollator(built("tiny-qwen2-vl")[1], logits="all")(examples())
    batch = TrainCollator(built("tiny-qwen2-vl")[1], logits="supervised")(examples())
    labels, keep = batch["labels"], batch["logits_to_keep"]
    assert torch.equal(labels, labels_of["labels"])  # labels whole: the loss shifts them itself
    assert keep.dtype == torch.bool and keep.shape == labels.shape
    assert torch.equal(keep[:, :-1], labels[:, 1:] != IGNORE_INDEX) and not keep[:, -1].any()
    per_row = keep.sum(dim=1).tolist()
    assert len(set(per_row)) == len(per_row)  # different reply lengths
    assert (batch["attention_mask"] == 0).any(dim=1).sum() == len(per_row) - 1  # right padding on all but one
    suffix = TrainCollator(built("tiny-qwen2-vl")[1], logits="suffix")(examples())["logits_to_keep"]
    assert sum(per_row) < len(per_row) * suffix  # fewer positions than the suffix projects


def accumulated_step(family, tmp_path, logits):
    """(loss, gradients, logits' rows per micro-batch, micro-batches' (mean loss, supervised count)) of one
    optimizer step of two accumulated micro-batches through PartsTrainer.training_step, num_items_in_batch counted
    by the Trainer as its training loop counts it, checkpointing on."""
    model = lora_model(family)
    trainer = trainer_for(model, family, logits, tmp_path, gradient_accumulation_steps=2)
    model.activation_checkpointing_enable()
    batches = [trainer.data_collator(examples(4)[:2]), trainer.data_collator(examples(4)[2:])]
    num_items = trainer._get_num_items_in_batch(batches, trainer.args.device)
    trainer.current_gradient_accumulation_steps = 2
    rows = []
    head = parts.unwrapped(model).get_output_embeddings()
    handle = head.register_forward_hook(lambda module, inputs, output: rows.append(output.shape[:-1].numel()))
    loss = sum(trainer.training_step(model, dict(batch), num_items) for batch in batches)
    handle.remove()
    grads = {name: parameter.grad for name, parameter in model.named_parameters() if parameter.requires_grad}
    with torch.no_grad():
        means = [(trainer.compute_loss(model, dict(batch)),  # no num_items_in_batch: the micro-batch's mean
                  int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())) for batch in batches]
    return loss, grads, rows, means


@pytest.mark.parametrize("family", FAMILIES)
def test_supervised_logits_give_the_full_logits_loss_and_lora_gradients(family, tmp_path):
    full_loss, full_grads, full_rows, full_means = accumulated_step(family, tmp_path, "all")
    loss, grads, rows, means = accumulated_step(family, tmp_path, "supervised")

    assert built(family)[0].config.text_config.vocab_size == 151936
    counts = [count for _, count in means]
    assert rows == counts and counts[0] != counts[1]  # exactly the supervised positions
    assert sum(full_rows) > 2 * sum(rows)
    torch.testing.assert_close(loss, full_loss, rtol=1e-5, atol=1e-5)
    for (mean, _), (full_mean, _) in zip(means, full_means):  # without num_items_in_batch: the mean of each
        torch.testing.assert_close(mean, full_mean, rtol=1e-5, atol=1e-5)
    # As the model's own loss: the sum over both micro-batches' supervised tokens divided by their count
    # (num_items_in_batch), or, for a model that declares no loss kwargs (Qwen2.5-VL, Qwen3-VL), the mean of the
    # micro-batches' means.
    (m1, c1), (m2, c2) = full_means
    by_tokens = getattr(built(family)[0], "accepts_loss_kwargs", True)
    expected = (m1 * c1 + m2 * c2) / (c1 + c2) if by_tokens else (m1 + m2) / 2
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-5)
    assert by_tokens == (family in ("tiny-llava-1.5", "tiny-qwen2-vl"))
    # The same per-position arithmetic on fewer rows: only the order of float32 sums may differ (the loss's
    # reduction, the head's matmul blocking), a few ulp through four layers; 1e-5 relative is far above that and
    # far below any real difference (a position shifted or dropped moves these gradients by percent).
    assert_same_gradients(grads, full_grads, rtol=1e-5, atol=1e-8)


def test_the_evaluation_loss_is_the_full_logits_loss(tmp_path):
    losses = {}
    for logits in ("all", "supervised"):
        trainer = trainer_for(lora_model("tiny-qwen2-vl"), "tiny-qwen2-vl", logits, tmp_path,
                              per_device_eval_batch_size=2, prediction_loss_only=True)
        losses[logits] = trainer.evaluate(eval_dataset=examples())["eval_loss"]
    assert losses["supervised"] == pytest.approx(losses["all"], rel=1e-5)


def test_supervised_logits_refuse_label_smoothing(tmp_path):
    with pytest.raises(ValueError, match="--label_smoothing_factor needs --logits suffix or all"):
        trainer_for(fresh_model("tiny-qwen2-vl"), "tiny-qwen2-vl", "supervised", tmp_path, label_smoothing_factor=0.1)


def test_train_py_refuses_label_smoothing_with_supervised_logits_in_one_line_before_any_model(tmp_path, capsys):
    import train

    with pytest.raises(SystemExit) as stop:  # no model and no data there: the flags are checked first
        train.main(["--model_dir", str(tmp_path / "none"), "--data_dir", str(tmp_path / "none"),
                    "--output_dir", str(tmp_path / "run"), "--label_smoothing_factor", "0.1"])
    assert str(stop.value).startswith("train.py: --label_smoothing_factor needs --logits suffix or all")
    assert not (tmp_path / "run").exists()


def test_the_logits_setting_is_checked():
    assert tune().logits == "supervised" and tune().frozen_in_graph is False
    with pytest.raises(SystemExit, match="--logits 'some'"):
        tune("--logits", "some")
