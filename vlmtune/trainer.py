"""The project's Trainer: the transformers Trainer with a learning rate per model part, the task's metric in every
evaluation (vlmtune.evaluation), checkpoints without pickles (vlmtune.checkpoints), a failed checkpoint save
removed rather than left for a resume to load, and the loss of logits projected at the supervised positions only."""

import os

from torch import nn
from torch.utils.data import SequentialSampler
from transformers import Trainer
from transformers.loss.loss_utils import fixed_cross_entropy
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from . import parts, saving
from .batching import EpochLengthGroupedSampler, PaddingCount, WorkerCollator, packed_position_ids, raise_carried
from .checkpoints import SafeCheckpoints
from .collator import IGNORE_INDEX, PACKED_LENGTHS
from .evaluation import TaskMetricEvaluation


def supervised_loss(outputs, labels, num_items_in_batch=None):
    """The causal LM loss of a TrainCollator batch made with logits="supervised", whose logits are those of the
    supervised positions only, (positions, vocabulary), in the order transformers' boolean `logits_to_keep` gathers
    them (row by row): the full logits' loss as transformers computes it (ForCausalLMLoss, through the same
    fixed_cross_entropy), the mean over the supervised tokens, or their sum over `num_items_in_batch`, the Trainer's
    count over a whole accumulated batch.

    The Trainer's `compute_loss_func`: the model gets no labels (its own loss would shift them against logits of
    every position), and the head still runs inside the model's forward, so DDP and peft wrap it as usual."""
    targets = nn.functional.pad(labels, (0, 1), value=IGNORE_INDEX)[:, 1:]  # position t predicts token t+1
    targets = targets[targets != IGNORE_INDEX].to(outputs.logits.device)
    return fixed_cross_entropy(outputs.logits.float(), targets, num_items_in_batch, IGNORE_INDEX)


def label_smoothing_refusal(logits: str, factor: float) -> str | None:
    """Why --label_smoothing_factor cannot go with these --logits, or None: supervised_loss is the plain
    cross-entropy (train.py asks before loading the model, PartsTrainer again for any other caller)."""
    if factor and logits == "supervised":
        return ("--label_smoothing_factor needs --logits suffix or all: the supervised positions' loss "
                "(vlmtune.trainer.supervised_loss) is the plain cross-entropy")
    return None


class PartsTrainer(TaskMetricEvaluation, SafeCheckpoints, Trainer):
    """The Trainer with a learning rate per model part (--learning_rate, --vision_lr, --projector_lr), and
    supervised_loss as its loss for a TrainCollator that projects the supervised positions only."""

    def __init__(self, *args, learning_rates: dict[str, float], **kwargs):
        supervised = getattr(kwargs.get("data_collator"), "logits", None) == "supervised"
        if supervised:
            refusal = label_smoothing_refusal("supervised", getattr(kwargs.get("args"), "label_smoothing_factor", 0))
            if refusal:  # the Trainer would ignore it silently
                raise ValueError(refusal)
            kwargs.setdefault("compute_loss_func", supervised_loss)
        super().__init__(*args, **kwargs)
        self.learning_rates = learning_rates
        self.padding = PaddingCount()  # the training batches' tokens and positions (vlmtune.batching)
        # The loss normalised as the model's own would be. A model that declares no loss kwargs (Qwen2.5-VL's and
        # Qwen3-VL's accepts_loss_kwargs = False) is given no num_items_in_batch by the Trainer: its loss is the
        # micro-batch's mean, which the Trainer divides by the accumulation steps (compute_loss drops the count).
        self.supervised_logits = supervised and self.compute_loss_func is supervised_loss
        if self.supervised_logits and self.loss_is_scaled_for_ga is None:
            self.loss_is_scaled_for_ga = self.model_accepts_loss_kwargs

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if self.supervised_logits and not self.model_accepts_loss_kwargs:
            num_items_in_batch = None  # also keeps the Trainer from scaling the mean by the number of processes
        return super().compute_loss(model, inputs, return_outputs=return_outputs,
                                    num_items_in_batch=num_items_in_batch)

    def create_optimizer(self, model=None):
        if self.optimizer is None:
            optimizer_cls, kwargs = self.get_optimizer_cls_and_kwargs(self.args, self.model)
            groups = parts.optimizer_groups(self.model, self.learning_rates, self.args.weight_decay)
            self.optimizer = optimizer_cls(groups, **kwargs)
        return self.optimizer

    def _get_train_sampler(self, train_dataset=None):
        """--train_sampling_strategy group_by_length with the lazy examples: the Trainer reads lengths from a
        tokenized dataset's column, and these hold messages, not input_ids; their "length" is the token count
        drop_overlong measured (file headers only, no pixels). Its order is drawn from the seed and the epoch."""
        dataset = self.train_dataset if train_dataset is None else train_dataset
        if self.args.train_sampling_strategy != "group_by_length" or not dataset or "length" not in dataset[0]:
            return super()._get_train_sampler(train_dataset)
        seed = self.args.seed if self.args.data_seed is None else self.args.data_seed
        return EpochLengthGroupedSampler(self.args.train_batch_size * self.args.gradient_accumulation_steps,
                                         lengths=[example["length"] for example in dataset], seed=seed)

    def _get_eval_sampler(self, eval_dataset):
        """Evaluation in order: the Trainer would group it by length too under group_by_length, from input_ids the
        lazy examples do not have."""
        lazy = eval_dataset and "input_ids" not in eval_dataset[0]
        if self.args.train_sampling_strategy == "group_by_length" and lazy:
            return SequentialSampler(eval_dataset)
        return super()._get_eval_sampler(eval_dataset)

    def _get_collator_with_removed_columns(self, data_collator, description=None):
        """The collator of every DataLoader, made to send an unreadable image back from a worker process."""
        return WorkerCollator(super()._get_collator_with_removed_columns(data_collator, description))

    def get_batch_samples(self, epoch_iterator, num_batches, device):
        """The training batches, counted where they arrive (self.padding: what right padding cost)."""
        return super().get_batch_samples(self.padding.checked(epoch_iterator), num_batches, device)

    def _prepare_inputs(self, inputs):
        """The batch on the device, with no cache: the forwards take use_cache from the config, on while training
        without checkpointing, and would build a key/value cache no loss reads (and, for a packed batch, with one
        transformers' mask would not look for the packed examples and let them see each other). A packed one
        (TrainCollator(packing=True)) is given its examples' own position ids, made here with the model (M-RoPE's
        get_rope_index) as the collator in a worker process cannot."""
        raise_carried(inputs)  # an evaluation batch's unreadable image, from a worker
        inputs = super()._prepare_inputs(inputs)
        inputs["use_cache"] = False
        if PACKED_LENGTHS in inputs:
            inputs["position_ids"] = packed_position_ids(self.model, inputs)
            del inputs[PACKED_LENGTHS]
        return inputs

    def _save_checkpoint(self, model, trial):
        """The Trainer's checkpoint save, with a failed one (a full disk) removed and named: the Trainer writes
        checkpoint-N in place and would leave it half written, and --resume_from_checkpoint (or
        get_last_checkpoint) would then load the newest folder, whole or not."""
        folder = os.path.join(self._get_output_dir(trial=trial), f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}")
        if not self.args.should_save:  # another process of a multi-GPU run: the main one cleans up
            return super()._save_checkpoint(model, trial)
        with saving.removed_on_failure(folder):
            super()._save_checkpoint(model, trial)
