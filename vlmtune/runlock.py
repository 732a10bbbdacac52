"""One run per output folder: a lock that the operating system drops when the run's process ends.

Two trainings into one --output_dir would mix their checkpoints and overwrite each other's adapter, and both exit 0.
The lock is an flock(2) on <output_dir>/.run.lock, held by the open file for the life of the process: a run killed
with SIGKILL, or a machine that rebooted, leaves no stale lock (a pid file would), so nothing ever has to be deleted
by hand. The file keeps the holder's pid and start time, for the message a second run gets; a run that ends (or
stops with a message) removes it, one that is killed leaves it unlocked.
"""

import datetime
import os

try:
    import fcntl
except ImportError:  # Windows: no flock; the lock is skipped there (the project's scripts target Linux and macOS)
    fcntl = None

LOCK_NAME = ".run.lock"
_held = []  # (open lock file, its path, whether the folder was made for it): closing the file releases the lock


class FolderInUse(RuntimeError):
    """Another live process holds the folder's lock."""


def lock_output_dir(output_dir: str) -> None:
    """Take the lock of `output_dir` (created if missing) for the rest of this process, or raise FolderInUse naming
    the folder and the run that holds it. Only the main process of a multi-process launch takes it (RANK 0, or no
    launcher): the other ranks write nothing there."""
    if fcntl is None or int(os.environ.get("RANK", "0")) != 0:
        return
    created = not os.path.isdir(output_dir)
    os.makedirs(output_dir, exist_ok=True)
    path = os.path.join(output_dir, LOCK_NAME)
    handle = open(path, "a+", encoding="utf-8")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise FolderInUse(f"{output_dir} is in use by a run that is still going ({holder}): give another "
                          "--output_dir, or wait for that run to end (a finished or killed run holds no lock)")
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()}, started {datetime.datetime.now().isoformat(timespec='seconds')}\n")
    handle.flush()
    _held.append((handle, path, created))


def release_all() -> None:
    """Drop this process's locks at the end of a run: the lock file is removed while still locked (so no other run
    can lock the old file after it), then released; a folder made for the lock that the run left empty goes too."""
    while _held:
        handle, path, created = _held.pop()
        os.remove(path)
        handle.close()
        folder = os.path.dirname(path)
        if created and not os.listdir(folder):
            os.rmdir(folder)
