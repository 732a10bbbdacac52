"""Saving a run's results so that a failed save is named and leaves nothing a later step would read.

A full disk is the usual cause: every writer here reports it as one message naming the folder, and removes what it
had written of an unfinished save. (transformers' Trainer writes checkpoint-N and the final model in place, and
leaves a partial folder when a write fails: train.py's PartsTrainer and save_run below clean up after it.)
"""

import errno
import os
import shutil
from contextlib import contextmanager

from .formats import write_atomically

# What an earlier final save into the same --output_dir left that would decide what test.py loads: a LoRA run's
# adapter next to a full run's weights (or the other way round) would be read for the new run.
EARLIER_WEIGHTS = ("adapter_config.json", "adapter_model.safetensors", "adapter_model.bin", "config.json",
                   "model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                   "pytorch_model.bin.index.json")
FULL_DISK = (errno.ENOSPC, errno.EDQUOT)


def write_error_message(error: BaseException, folder) -> str | None:
    """The message for a write into `folder` that failed with `error`, or None when `error` is no write failure (a
    bug, which keeps its traceback).

    Not every writer raises OSError: the tokenizers library (tokenizer.json) raises a plain Exception "No space left
    on device (os error 28)", torch.save's C++ writer a RuntimeError. Their text is all there is to go by."""
    text = str(error)
    if is_full_disk(error):
        return f"no space left on device while writing {folder}: free space and rerun"
    if isinstance(error, OSError):
        where = f" ({error.filename})" if error.filename else ""
        return (f"could not write {folder}{where}: {error.strerror or error}: check the folder's permissions and "
                f"free space, and rerun")
    if isinstance(error, RuntimeError) and ("iostream" in text or "PytorchStreamWriter" in text
                                            or "file write failed" in text):
        return f"could not write {folder} ({text.splitlines()[0]}): check the free space, and rerun"
    return None


def is_full_disk(error: BaseException) -> bool:
    """Whether `error` is a write failing for want of space (see write_error_message for the forms it takes)."""
    return (isinstance(error, OSError) and error.errno in FULL_DISK) or os.strerror(errno.ENOSPC) in str(error)


def _entries(folder) -> dict:
    """name -> (mtime, size) of the folder's top-level entries, not following symlinks."""
    stamps = {}
    for entry in os.scandir(folder):
        stat = entry.stat(follow_symlinks=False)
        stamps[entry.name] = (stat.st_mtime_ns, stat.st_size)
    return stamps


def remove_changed(folder, before: dict) -> None:
    """Remove the top-level entries of `folder` that are new or changed since `before` (an _entries snapshot)."""
    for name, stamp in _entries(folder).items():
        if before.get(name) != stamp:
            path = os.path.join(folder, name)
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                os.remove(path)


def _stop_if_write_error(error: BaseException, folder) -> None:
    """Stop with write_error_message when `error` is a write's failure; else return, for the caller to re-raise."""
    message = write_error_message(error, folder)
    if message is not None:
        raise SystemExit(message) from None


def save_run(folder, write, finished_name: str, finished_text: str, main_process: bool = True) -> None:
    """Save a run into `folder`: `write(folder)` writes the model and processor, then `finished_name` (the file that
    says the run is complete, run_config.json) is written last, atomically.

    Before: the earlier run's `finished_name` and weights are removed, so a folder without `finished_name` is never
    taken for a finished run. On failure, every entry this save wrote or changed is removed, and a failed write
    stops with write_error_message. Under several processes `write` runs on each (DeepSpeed's ZeRO-3 gathers the
    weights from all of them) and only the main one touches the folder otherwise.
    """
    if not main_process:
        write(folder)
        return
    os.makedirs(folder, exist_ok=True)
    for name in (finished_name, *EARLIER_WEIGHTS):
        if os.path.lexists(os.path.join(folder, name)):
            os.remove(os.path.join(folder, name))
    before = _entries(folder)
    try:
        write(folder)
        write_atomically(os.path.join(folder, finished_name), finished_text)
    except BaseException as error:
        remove_changed(folder, before)
        _stop_if_write_error(error, folder)
        raise


@contextmanager
def removed_on_failure(folder):
    """On any failure inside, remove `folder` (a checkpoint-N being written: the Trainer resumes from the last one
    it finds, whole or not), then stop with write_error_message where the failure is a write's."""
    try:
        yield
    except BaseException as error:
        shutil.rmtree(folder, ignore_errors=True)
        _stop_if_write_error(error, folder)
        raise


@contextmanager
def stop_on_write_error(folder):
    """A write into `folder` that fails (a full disk) stops with write_error_message instead of a traceback; the
    writers inside clean up their own temporaries."""
    try:
        yield
    except Exception as error:
        _stop_if_write_error(error, folder)
        raise
