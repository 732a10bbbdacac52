"""One run per output folder: a second run stops at once naming the folder; a dead run leaves no stale lock."""

import os
import signal
import subprocess
import sys

import pytest

from vlmtune import runlock

HOLD = ("import sys, time; sys.path.insert(0, {root!r}); from vlmtune import runlock; "
        "runlock.lock_output_dir({folder!r}); print('locked', flush=True); time.sleep(60)")


def _holder(folder):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    process = subprocess.Popen([sys.executable, "-c", HOLD.format(root=root, folder=str(folder))],
                               stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "locked"
    return process


def test_a_second_run_into_a_folder_in_use_stops_naming_it_and_the_holder(tmp_path):
    folder = tmp_path / "run"
    process = _holder(folder)
    try:
        with pytest.raises(runlock.FolderInUse, match=rf"{folder} is in use by a run that is still going "
                                                      rf"\(pid {process.pid}, started "):
            runlock.lock_output_dir(str(folder))
    finally:
        process.kill()
        process.wait()


def test_a_run_killed_with_sigkill_leaves_no_stale_lock(tmp_path):
    folder = tmp_path / "run"
    process = _holder(folder)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert (folder / runlock.LOCK_NAME).is_file()  # the file stays; the lock died with its process
    runlock.lock_output_dir(str(folder))
    try:
        assert f"pid {os.getpid()}," in (folder / runlock.LOCK_NAME).read_text()
    finally:
        runlock.release_all()


def test_ranks_other_than_the_main_process_take_no_lock(tmp_path, monkeypatch):
    folder = tmp_path / "run"
    process = _holder(folder)
    try:
        monkeypatch.setenv("RANK", "1")
        runlock.lock_output_dir(str(folder))  # rank 1 writes nothing there: no lock, no error
    finally:
        process.kill()
        process.wait()


def test_a_run_that_ends_removes_its_lock_file_and_the_folder_it_made_if_it_wrote_nothing(tmp_path):
    made, kept = tmp_path / "made", tmp_path / "kept"
    kept.mkdir()
    runlock.lock_output_dir(str(made))
    runlock.lock_output_dir(str(kept))
    (made / "adapter_model.safetensors").write_bytes(b"x")
    runlock.release_all()
    assert sorted(p.name for p in made.iterdir()) == ["adapter_model.safetensors"]  # a run's output stays
    assert kept.is_dir() and not list(kept.iterdir())  # a folder given before the run stays, empty
    runlock.lock_output_dir(str(tmp_path / "empty"))
    runlock.release_all()
    assert not (tmp_path / "empty").exists()
