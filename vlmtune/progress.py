"""A line before and after a long step that has no count to show: what it does, then how long it took.

Steps with a count (rows, examples, answers) show a tqdm bar instead; this is for the others (loading a model,
merging, saving, scoring), so that no step sits silent. tqdm has nothing for a step without a count, hence these
few lines.
"""

import time
from contextlib import contextmanager


@contextmanager
def stage(what: str):
    """Print `what ...` now and `what: done in 1.2 s` when the block ends (nothing more if it raises: the error
    says what happened). Printed to stdout, flushed, so that a log file shows it as it happens."""
    print(f"{what} ...", flush=True)
    start = time.perf_counter()
    yield
    print(f"{what}: done in {duration(time.perf_counter() - start)}", flush=True)


def duration(seconds: float) -> str:
    """12.3 s, or 4 min 05 s from a minute on."""
    if round(seconds, 1) < 60:  # 59.97 s reads 1 min 00 s, not 60.0 s
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest:02d} s"
