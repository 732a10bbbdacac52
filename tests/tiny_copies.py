"""Copies of the tiny random models of the four real architecture classes (vlmtune/tiny.py), built once per test
process, for the tests that compare two paths on the same weights (test_parts, test_frozen_and_logits,
test_packing)."""

import functools

import torch

from vlmtune import modeling, tiny


@functools.cache
def built(family):
    """(model, processor) of the family's tiny model, built once: tests take copies of the model."""
    return tiny.TINY_MODELS[family]()


def fresh_model(family):
    """A new copy of the family's tiny model with the same initial weights."""
    model, _ = built(family)
    copy = type(model)(model.config)
    copy.load_state_dict(model.state_dict())
    copy.generation_config = model.generation_config
    return copy


def lora_model(family, tune):
    """A fresh copy with LoRA as `tune` (a TuneConfig) sets it, the same A matrices every call and the B matrices
    drawn at random: peft starts B at zero, which would leave every A's gradient zero and a comparison empty."""
    model = fresh_model(family)
    torch.manual_seed(0)
    model = modeling.prepare_for_training(model, tune)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(std=0.05)
    return model
