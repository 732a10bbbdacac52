"""Clean stops: a training that is told to stop (SIGTERM, from `kill` or a job scheduler; or its launcher ending)
ends with one message saying where it stopped and how to resume, its lock released, rather than running on
orphaned or dying in the middle of a save.

`sh train.sh` runs train.py under `accelerate launch`, which neither passes a SIGTERM on to its child nor takes it
down when it dies itself: killing train.sh used to leave train.py training. train.sh sets STOP_WITH_LAUNCHER, and
train.py then asks the Linux kernel (prctl PR_SET_PDEATHSIG) for a SIGTERM when its launcher ends; train.sh's own
trap ends the launcher. Run by hand (`nohup python train.py &`), train.py keeps the shell's usual rules.
"""

import ctypes
import os
import signal
import sys

STOP_WITH_LAUNCHER = "VLMTUNE_STOP_WITH_LAUNCHER"
_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


class Stopped(Exception):
    """The process was told to stop (SIGTERM)."""


def _stop(signum, frame):
    # A second signal (the launcher's end right after a kill, a second Ctrl-C) must not cut the stop short: the
    # partial checkpoint's removal, the lock's release and the message come first.
    for name in ("SIGTERM", "SIGINT"):
        signal.signal(getattr(signal, name), signal.SIG_IGN)
    raise Stopped(signal.Signals(signum).name)


def stop_on_request() -> None:
    """SIGTERM (and SIGINT, where the shell left it on) raise Stopped in the main thread, for the script to catch;
    under train.sh, the end of the launcher sends SIGTERM too."""
    signal.signal(signal.SIGTERM, _stop)
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:  # a background job of sh ignores Ctrl-C: train.sh handles it
        signal.signal(signal.SIGINT, _stop)
    if os.environ.get(STOP_WITH_LAUNCHER) and sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() == 1:  # the launcher ended before the request was in place
            os.kill(os.getpid(), signal.SIGTERM)
