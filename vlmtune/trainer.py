"""The project's Trainer: the transformers Trainer with a learning rate per model part, the task's metric in every
evaluation (vlmtune.evaluation), checkpoints without pickles (vlmtune.checkpoints), and a failed checkpoint save
removed rather than left for a resume to load."""

import os

from transformers import Trainer
from transformers.trainer_pt_utils import LengthGroupedSampler
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from . import parts, saving
from .checkpoints import SafeCheckpoints
from .evaluation import TaskMetricEvaluation


class PartsTrainer(TaskMetricEvaluation, SafeCheckpoints, Trainer):
    """The Trainer with a learning rate per model part (--learning_rate, --vision_lr, --projector_lr)."""

    def __init__(self, *args, learning_rates: dict[str, float], **kwargs):
        super().__init__(*args, **kwargs)
        self.learning_rates = learning_rates

    def create_optimizer(self, model=None):
        if self.optimizer is None:
            optimizer_cls, kwargs = self.get_optimizer_cls_and_kwargs(self.args, self.model)
            groups = parts.optimizer_groups(self.model, self.learning_rates, self.args.weight_decay)
            self.optimizer = optimizer_cls(groups, **kwargs)
        return self.optimizer

    def _get_train_sampler(self, train_dataset=None):
        """--train_sampling_strategy group_by_length with the lazy examples: the Trainer reads lengths from a
        tokenized dataset's column, and these hold messages, not input_ids; their "length" is the token count
        drop_overlong measured (file headers only, no pixels)."""
        dataset = self.train_dataset if train_dataset is None else train_dataset
        if self.args.train_sampling_strategy != "group_by_length" or not dataset or "length" not in dataset[0]:
            return super()._get_train_sampler(train_dataset)
        return LengthGroupedSampler(self.args.train_batch_size * self.args.gradient_accumulation_steps,
                                    lengths=[example["length"] for example in dataset])

    def _save_checkpoint(self, model, trial):
        """The Trainer's checkpoint save, with a failed one (a full disk) removed and named: the Trainer writes
        checkpoint-N in place and would leave it half written, and --resume_from_checkpoint (or
        get_last_checkpoint) would then load the newest folder, whole or not."""
        folder = os.path.join(self._get_output_dir(trial=trial), f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}")
        if not self.args.should_save:  # another process of a multi-GPU run: the main one cleans up
            return super()._save_checkpoint(model, trial)
        with saving.removed_on_failure(folder):
            super()._save_checkpoint(model, trial)
