"""Tests of vlmtune/parts.py and modeling.prepare_for_training: which parameters each way of fine-tuning trains.

For every tiny family: each parameter belongs to exactly one part; LoRA lands exactly on the layers asked for. On the
tiny Qwen2-VL and LLaVA, real Trainer steps in each mode change exactly the parameters the report calls trainable,
and a part whose learning rate is 0 stays bit-identical while the others move.
"""


import pytest
import torch
from transformers import Trainer, TrainingArguments

import config
import train
from vlmtune import modeling, parts, world
from vlmtune.collator import TrainCollator

from tiny_copies import built, fresh_model

LORA_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
# family -> (vision module, projector modules, language modules): the layouts of transformers 5
LAYOUTS = {
    "tiny-qwen2-vl": ("model.visual", ["model.visual.merger"], ["model.language_model", "lm_head"]),
    "tiny-qwen2.5-vl": ("model.visual", ["model.visual.merger"], ["model.language_model", "lm_head"]),
    "tiny-qwen3-vl": ("model.visual", ["model.visual.merger", "model.visual.deepstack_merger_list.0",
                                       "model.visual.deepstack_merger_list.1"], ["model.language_model", "lm_head"]),
    "tiny-llava-1.5": ("model.vision_tower", ["model.multi_modal_projector"], ["model.language_model", "lm_head"]),
}




def tune(*flags):
    return config.parse([*flags, "--lora_r", "4", "--lora_alpha", "8", "--lora_dropout", "0"], config.TuneConfig)[0]


@pytest.mark.parametrize("family", sorted(LAYOUTS))
def test_every_parameter_belongs_to_exactly_one_part(family):
    model, _ = built(family)
    vision, projectors, language = LAYOUTS[family]
    found = {part: [name for name, _ in modules] for part, modules in parts.part_modules(model).items()}
    assert found == {"vision": [vision], "projector": projectors, "language": language}
    by_part = parts.parameter_parts(model)
    names = [name for part in by_part.values() for name in part]
    assert sorted(names) == sorted(name for name, _ in model.named_parameters())  # each once, none left out
    assert all(any(name.startswith(p + ".") for p in projectors) for name in by_part["projector"])
    assert all(name.startswith(vision + ".") for name in by_part["vision"])


@pytest.mark.parametrize("family", sorted(LAYOUTS))
def test_default_lora_lands_on_the_seven_projections_of_each_language_layer_only(family):
    model = modeling.prepare_for_training(fresh_model(family), tune())
    wrapped = sorted(name.removeprefix("base_model.model.").removesuffix(".lora_A")
                     for name, _ in model.named_modules() if name.endswith(".lora_A"))
    layers = model.config.get_text_config().num_hidden_layers
    expected = sorted(f"model.language_model.layers.{layer}.{block}.{projection}" for layer in range(layers)
                      for block, projections in (("self_attn", LORA_MODULES[:4]), ("mlp", LORA_MODULES[4:]))
                      for projection in projections)
    assert wrapped == expected
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    assert len(trainable) == 2 * len(expected) and all("lora_" in name for name in trainable)


def test_vision_lora_covers_every_linear_layer_of_the_vision_blocks_but_not_the_projector():
    # Qwen2.5-VL: its vision MLPs have gate/up/down_proj, the names a suffix match would confuse with the language's.
    model = modeling.prepare_for_training(fresh_model("tiny-qwen2.5-vl"), tune("--vision", "lora"))
    wrapped = {name.removeprefix("base_model.model.").removesuffix(".lora_A")
               for name, _ in model.named_modules() if name.endswith(".lora_A")}
    vision = {name for name in wrapped if name.startswith("model.visual.")}
    assert vision == {f"model.visual.blocks.{block}.{layer}" for block in range(4)
                      for layer in ("attn.qkv", "attn.proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")}
    assert len(wrapped - vision) == 4 * 7


def world_examples(n):
    examples = []
    for index in range(n):
        scene = world.make_scene(seed=3, index=index, image_size=56)
        examples.append({"id": scene.id, "messages": [
            {"role": "user", "content": [{"type": "image", "image": scene.render()},
                                         {"type": "text", "text": "Describe the image."}]},
            {"role": "assistant", "content": [{"type": "text", "text": world.caption(scene)}]}]})
    return examples


def train_steps(family, tune_cfg, tmp_path, learning_rates=None, steps=2, **training_args):
    """(model, snapshot before, report) after `steps` real steps of train.PartsTrainer."""
    model = modeling.prepare_for_training(fresh_model(family), tune_cfg)
    learning_rates = learning_rates or dict.fromkeys(parts.PARTS, 1e-2)
    report = parts.report(model, tune_cfg.modes, learning_rates)
    before = {name: p.detach().clone() for name, p in parts.unwrapped(model).named_parameters()}
    args = TrainingArguments(output_dir=str(tmp_path), max_steps=steps, per_device_train_batch_size=2,
                             learning_rate=1e-2, report_to=[], save_strategy="no", remove_unused_columns=False,
                             dataloader_num_workers=0, disable_tqdm=True, seed=0, use_cpu=True, **training_args)
    trainer = train.PartsTrainer(model=model, args=args, train_dataset=world_examples(4),
                                 data_collator=TrainCollator(built(family)[1]), learning_rates=learning_rates)
    trainer.train()
    return model, before, report


def changed(model, before) -> set[str]:
    return {name for name, p in parts.unwrapped(model).named_parameters() if not torch.equal(p.detach(), before[name])}


MODES = [
    ("tiny-qwen2-vl", ()),
    ("tiny-qwen2-vl", ("--vision", "lora", "--projector", "full")),
    ("tiny-qwen2-vl", ("--language", "frozen", "--projector", "full")),
    ("tiny-qwen2-vl", ("--language", "full", "--vision", "full", "--projector", "full")),
    ("tiny-llava-1.5", ("--projector", "full")),
    ("tiny-llava-1.5", ("--language", "full", "--projector", "full")),
]


@pytest.mark.parametrize("family, flags", MODES)
def test_exactly_the_parameters_reported_trainable_change(family, flags, tmp_path):
    tune_cfg = tune(*flags)
    model, before, report = train_steps(family, tune_cfg, tmp_path)
    trainable = {name for name, p in parts.unwrapped(model).named_parameters() if p.requires_grad}
    moved = changed(model, before)
    # peft starts LoRA's B at zero, so A gets no gradient on the first step; by the second both have moved, as has
    # every weight of a fully trained part (its bias included).
    assert moved == trainable
    by_part = parts.parameter_parts(model)
    rows = {line.split()[0]: line.split() for line in report.splitlines()[1:]}
    for part, mode in tune_cfg.modes.items():
        count = sum(p.numel() for p in by_part[part].values() if p.requires_grad)
        assert rows[part][1] == mode and rows[part][2] == f"{count:,}", report
        assert (count > 0) == (mode != "frozen"), (part, mode)


def test_lora_still_trains_every_matrix_with_gradient_checkpointing_as_the_real_run_preset_uses(tmp_path):
    # With the base frozen, checkpointed blocks get inputs that need no gradient: a known way for LoRA to stop
    # learning silently.
    model, before, _ = train_steps("tiny-qwen2-vl", tune("--vision", "lora"), tmp_path, gradient_checkpointing=True)
    trainable = {name for name, p in parts.unwrapped(model).named_parameters() if p.requires_grad}
    assert len(trainable) == 2 * (4 * 7 + 4 * 4) and changed(model, before) == trainable


def test_a_part_with_learning_rate_zero_stays_while_the_others_move(tmp_path):
    tune_cfg = tune("--vision", "lora", "--projector", "full")
    rates = {"language": 1e-2, "vision": 1e-2, "projector": 0.0}
    model, before, report = train_steps("tiny-qwen2-vl", tune_cfg, tmp_path, rates)
    by_part = parts.parameter_parts(model)
    moved = changed(model, before)
    trainable_projector = {name for name, p in by_part["projector"].items() if p.requires_grad}
    assert trainable_projector and not trainable_projector & moved
    assert {name for name in by_part["vision"] if "lora_" in name} <= moved
    assert {name for name in by_part["language"] if "lora_" in name} <= moved
    assert report.splitlines()[2].split()[-1] == "0"


def test_optimizer_groups_carry_each_parts_learning_rate_and_no_decay_on_vectors():
    model = modeling.prepare_for_training(fresh_model("tiny-llava-1.5"), tune("--projector", "full"))
    groups = parts.optimizer_groups(model, {"language": 2e-4, "vision": 1e-5, "projector": 2e-5}, weight_decay=0.1)
    summary = sorted((g["lr"], g["weight_decay"], sum(p.numel() for p in g["params"])) for g in groups)
    assert summary == [(2e-5, 0.0, 128 + 128), (2e-5, 0.1, 128 * 128 * 2),  # projector: two linear layers
                       (2e-4, 0.1, sum(p.numel() for n, p in model.named_parameters() if "lora_" in n))]


def test_the_logged_learning_rate_is_the_language_models_with_vision_lora(tmp_path):
    # The Trainer logs the first group's rate (get_last_lr()[0]); with --vision lora it logged --vision_lr.
    model = modeling.prepare_for_training(fresh_model("tiny-qwen2-vl"), tune("--vision", "lora", "--projector", "full"))
    rates = {"language": 2e-4, "vision": 1e-5, "projector": 2e-5}
    groups = parts.optimizer_groups(model, rates, weight_decay=0.0)
    assert groups[0]["lr"] == 2e-4 and {g["lr"] for g in groups} == {2e-4, 1e-5, 2e-5}
    args = TrainingArguments(output_dir=str(tmp_path), max_steps=1, learning_rate=2e-4, report_to=[], use_cpu=True,
                             lr_scheduler_type="constant", save_strategy="no")
    trainer = Trainer(model=model, args=args)
    trainer.optimizer = torch.optim.AdamW(groups)
    trainer.create_scheduler(num_training_steps=1)
    assert trainer._get_learning_rate() == 2e-4


@pytest.mark.parametrize("flags, message", [
    (("--language", "frozen"), "nothing would train"),
    (("--vision", "partly"), "--vision 'partly': choose one of frozen, lora, full"),
    (("--projector", "lora"), "--projector 'lora': choose one of frozen, full"),
    (("--load_in_4bit", "true", "--language", "full"), "needs --language lora"),
])
def test_impossible_modes_are_refused_naming_the_flag(flags, message):
    with pytest.raises(SystemExit, match=message.replace("(", r"\(")):  # one message from config.parse
        tune(*flags)


def test_qlora_on_a_machine_without_cuda_stops_with_the_reason(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit, match="--load_in_4bit .QLoRA. needs a CUDA GPU"):
        modeling.load_model(str(tmp_path), load_in_4bit=True)


def test_ten_adamw_steps_at_2e_5_change_every_weight_of_a_fully_trained_projector_on_a_bf16_base(tmp_path):
    # LLaVA-1.5's projector rate. In pure bf16 an update under ~1/256 of a weight rounds away (the issue measured
    # 29 % of the projector changed after 10 steps); trained weights are kept in fp32 under bf16 autocast.
    model = modeling.prepare_for_training(fresh_model("tiny-qwen2-vl").to(torch.bfloat16), tune("--projector", "full"))
    by_part = parts.parameter_parts(model)
    projector = {name: p for name, p in by_part["projector"].items() if p.requires_grad}
    assert projector and all(p.dtype == torch.float32 for p in projector.values())
    assert all(p.dtype == torch.bfloat16 for p in by_part["vision"].values())  # frozen weights stay as loaded
    assert all(p.dtype == torch.float32 for name, p in by_part["language"].items() if "lora_" in name)
    before = {name: p.detach().clone() for name, p in projector.items()}
    args = TrainingArguments(output_dir=str(tmp_path), max_steps=10, per_device_train_batch_size=2, learning_rate=2e-5,
                             bf16=True, use_cpu=True, report_to=[], save_strategy="no", remove_unused_columns=False,
                             dataloader_num_workers=0, disable_tqdm=True, seed=0, optim="adamw_torch")
    trainer = train.PartsTrainer(model=model, args=args, train_dataset=world_examples(8),
                                 data_collator=TrainCollator(built("tiny-qwen2-vl")[1]),
                                 learning_rates=dict.fromkeys(parts.PARTS, 2e-5))
    trainer.train()
    changed_weights = sum(int((p.detach() != before[name]).sum()) for name, p in projector.items())
    total = sum(p.numel() for p in projector.values())
    # Measured: 328,575 of 328,576 in fp32 master weights (the one left is a weight whose ten updates happened to
    # cancel or whose gradient was ~0; 2 on a fresh clone's run, whose threads summed in another order), 99,462
    # (30 %) with the projector kept in bf16. So at most one in 10,000 may stay, far from bf16's 70 %.
    unchanged = total - changed_weights
    assert unchanged <= total // 10_000, f"{unchanged} of {total} projector weights unchanged"
