"""The project's Trainer: the transformers Trainer with a learning rate per model part, the task's metric in every
evaluation (vlmtune.evaluation), checkpoints without pickles (vlmtune.checkpoints), and a failed checkpoint save
removed rather than left for a resume to load."""

import os

from torch.utils.data import SequentialSampler
from transformers import Trainer
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from . import parts, saving
from .batching import EpochLengthGroupedSampler, PaddingCount, WorkerCollator, raise_carried
from .checkpoints import SafeCheckpoints
from .evaluation import TaskMetricEvaluation


class PartsTrainer(TaskMetricEvaluation, SafeCheckpoints, Trainer):
    """The Trainer with a learning rate per model part (--learning_rate, --vision_lr, --projector_lr)."""

    def __init__(self, *args, learning_rates: dict[str, float], **kwargs):
        super().__init__(*args, **kwargs)
        self.learning_rates = learning_rates
        self.padding = PaddingCount()  # the training batches' tokens and positions (vlmtune.batching)

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
        raise_carried(inputs)  # an evaluation batch's unreadable image, from a worker
        return super()._prepare_inputs(inputs)

    def _save_checkpoint(self, model, trial):
        """The Trainer's checkpoint save, with a failed one (a full disk) removed and named: the Trainer writes
        checkpoint-N in place and would leave it half written, and --resume_from_checkpoint (or
        get_last_checkpoint) would then load the newest folder, whole or not."""
        folder = os.path.join(self._get_output_dir(trial=trial), f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}")
        if not self.args.should_save:  # another process of a multi-GPU run: the main one cleans up
            return super()._save_checkpoint(model, trial)
        with saving.removed_on_failure(folder):
            super()._save_checkpoint(model, trial)
