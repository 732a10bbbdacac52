"""The three parts of a vision-language model and how each is fine-tuned: frozen, LoRA, or fully trained.

    vision     the image encoder (Qwen's `visual` blocks, LLaVA's CLIP `vision_tower`)
    projector  what maps image features into the language model (Qwen's patch `merger`s, LLaVA's
               `multi_modal_projector`)
    language   the language model, its embeddings and output head

The parts are found through transformers' own accessors (`get_encoder("image")`, `get_decoder()`) and the
projector's module names, never through the model's name; every parameter must land in exactly one part, so a
family whose layout is not understood stops with the names it could not place instead of training the wrong thing.
"""

from collections import defaultdict

from torch import nn

PARTS = ("vision", "projector", "language")
MODES = {"vision": ("frozen", "lora", "full"), "projector": ("frozen", "full"), "language": ("frozen", "lora", "full")}
# Module attribute names of projectors in transformers' layouts: LLaVA's, and Qwen2/2.5/3-VL's patch mergers (which
# sit inside the vision encoder, Qwen3-VL's DeepStack mergers among them).
PROJECTOR_NAMES = ("multi_modal_projector", "merger", "deepstack_merger_list")


def unwrapped(model):
    """The transformers model, inside its peft wrapper if it has one."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def part_modules(model) -> dict[str, list[tuple[str, nn.Module]]]:
    """part -> [(qualified name, module)], the top modules of each part in `model` (a transformers model, or the
    model inside a peft wrapper)."""
    core = unwrapped(model)
    named = {id(module): name for name, module in core.named_modules()}
    vision = core.get_encoder("image")
    language = core.get_decoder()
    if vision is core or language is core:
        raise ValueError(f"{type(core).__name__}: no image encoder or no language model found through "
                         "get_encoder('image') / get_decoder(); this layout is not supported")
    projectors = []
    for name, module in core.named_modules():
        if name.rsplit(".", 1)[-1] in PROJECTOR_NAMES:
            # A list of mergers (Qwen3-VL's DeepStack) is indexed by the model, so it is its members that get
            # wrapped and saved, not the list.
            members = list(module.named_children()) if isinstance(module, nn.ModuleList) else [("", module)]
            projectors += [(f"{name}.{child}" if child else name, member) for child, member in members]
    heads = [(name, module) for name, module in core.named_children() if name == "lm_head"]
    return {"vision": [(named[id(vision)], vision)], "projector": projectors,
            "language": [(named[id(language)], language), *heads]}


def parameter_parts(model) -> dict[str, dict[str, nn.Parameter]]:
    """part -> {parameter name: parameter}; a projector inside the vision encoder counts as projector only.

    Raises ValueError naming any parameter that belongs to no part.
    """
    core = unwrapped(model)
    modules = part_modules(core)
    part_of = {}
    for part in ("vision", "language", "projector"):  # projector last: it overrides the encoder it sits in
        for _, module in modules[part]:
            for parameter in module.parameters():
                part_of[id(parameter)] = part
    parts = {part: {} for part in PARTS}
    unplaced = []
    for name, parameter in core.named_parameters():
        if id(parameter) in part_of:
            parts[part_of[id(parameter)]][name] = parameter
        else:
            unplaced.append(name)
    if unplaced:
        raise ValueError(f"{len(unplaced)} parameters belong to no part (vision, projector, language): "
                         f"{unplaced[:5]}")
    return parts


def linear_names(model, part: str, suffixes: list[str] | None = None) -> list[str]:
    """Qualified names of the nn.Linear layers of a part (outside its projector), optionally only those whose last
    name is in `suffixes`: the exact LoRA targets, so LoRA lands where it is asked and nowhere else."""
    modules = part_modules(model)
    projector_prefixes = tuple(f"{name}." for name, _ in modules["projector"])
    names = []
    for top, module in modules[part]:
        for name, layer in module.named_modules(prefix=top):
            if (isinstance(layer, nn.Linear) and not name.startswith(projector_prefixes)
                    and (suffixes is None or name.rsplit(".", 1)[-1] in suffixes)):
                names.append(name)
    return names


def report(model, modes: dict[str, str], learning_rates: dict[str, float]) -> str:
    """A table of each part's mode, trainable and total parameters and learning rate, as train.py prints it."""
    lines = [f"{'part':<10} {'mode':<7} {'trainable':>12} {'total':>12}  learning rate"]
    for part, parameters in parameter_parts(model).items():
        trainable = sum(p.numel() for p in parameters.values() if p.requires_grad)
        # The model's own weights: not LoRA's, nor peft's trained copy of a fully trained module.
        total = sum(p.numel() for name, p in parameters.items()
                    if "lora_" not in name and ".modules_to_save." not in name)
        rate = f"{learning_rates[part]:g}" if trainable else "-"
        lines.append(f"{part:<10} {modes[part]:<7} {trainable:>12,} {total:>12,}  {rate}")
    return "\n".join(lines)


def optimizer_groups(model, learning_rates: dict[str, float], weight_decay: float) -> list[dict]:
    """AdamW parameter groups, one per part and decay kind, each with its part's learning rate. Biases and norm
    weights (one-dimensional) get no weight decay, as the Trainer's own grouping does."""
    groups = defaultdict(list)
    for part, parameters in parameter_parts(model).items():
        for parameter in parameters.values():
            if parameter.requires_grad:
                groups[part, parameter.ndim >= 2].append(parameter)
    # The language model's groups first: the Trainer logs the learning rate of the first group, and that is the
    # rate of --learning_rate (--vision_lr and --projector_lr set the others).
    order = sorted(groups, key=lambda key: (key[0] != "language", not key[1]))
    return [{"params": groups[part, decays], "lr": learning_rates[part],
             "weight_decay": weight_decay if decays else 0.0} for part, decays in order]
