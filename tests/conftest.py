"""Three tiers of tests, all run by `pytest`:

- unit: hand-written inputs and exact outputs, no model, well under a second each;
- smoke: the tiny models of the real architectures, a few real Trainer steps;
- end to end: the scripts themselves on offline data, asserting what a user would look at.

The end-to-end tests share one pretrained tiny model (the `tiny_model_dir` fixture).

Tests that compare with real reference files read ../shared/fixtures (beside the project's clone) and skip, saying so,
where that folder is absent, as it is in a user's clone.
"""

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT.parent / "shared" / "fixtures"
TINY_MODEL = ROOT / "models" / "tiny-qwen2-vl"
BUILD_LOCK = ROOT / "models" / ".tiny-qwen2-vl.build-lock"  # held by whoever builds the tiny model
BUILDING = "VLMTUNE_TESTS_BUILDING_TINY_MODEL"  # set for the xdist workers while the controller's process builds it
_builder = None


def pytest_configure(config):
    """Under pytest-xdist (`-n auto`, the README's test command), the workers share the cores: each gets its share of
    torch threads, since tiny models' small matrices gain less from threads than from running two tests at once.
    And the tiny model, when not cached yet, is built from the start in a process of its own, ahead of the workers,
    which run the tests that do not need it (they come first, pytest_collection_modifyitems) on what the build
    leaves of the cores."""
    import os

    config.addinivalue_line("markers", "long: a test of a minute or more, run first of those that wait for the model")
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if not hasattr(config, "workerinput") and config.getoption("numprocesses", None):  # xdist's controller
        _start_building_the_tiny_model()
    if os.environ.get(BUILDING) and hasattr(config, "workerinput"):
        os.nice(10)  # and the scripts its tests start: the build first (_start_building_the_tiny_model)
    if workers > 1:
        import torch

        threads = max(1, len(os.sched_getaffinity(0)) // workers)
        torch.set_num_threads(threads)
        # and the scripts a test starts: a run resumed in the test's process after its start in a subprocess is only
        # bit-identical with the same thread count (floating-point sums in another order differ in the last bit)
        os.environ["OMP_NUM_THREADS"] = str(threads)
        # A script a test starts with more threads (train.sh gives train.py every core) shares the cores with the
        # other worker: OpenMP threads that spin while they wait then run 10-50x slower (bench/RESULTS.md); passive
        # waiting gives the core back.
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def _start_building_the_tiny_model():
    global _builder
    import fcntl
    import os
    import subprocess
    import sys

    if (TINY_MODEL / "config.json").is_file():
        return
    TINY_MODEL.parent.mkdir(exist_ok=True)
    with open(BUILD_LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        # The builder inherits the locked descriptor, so the lock is held until it exits, and tiny_model_dir waits
        # for it. Its console goes to a log beside the model; load_model.py saves atomically, so a build ended early
        # leaves nothing that passes for the model. One thread, on a core the workers leave it: they give way to it
        # (BUILDING, pytest_configure), since a fifth of the suite's tests wait for the model, and run the others on
        # the other core. Measured alone: one thread 556 s and 9.3 CPU-minutes, two threads (as `python
        # load_model.py` runs) 414 s and 13 CPU-minutes, the difference threads spinning and small matrices split
        # in two. Another thread count sums in another order, so this build differs from the two-thread one in the
        # last bits; the suite passes on both (a machine with more cores builds another again). Its scenes are
        # rendered in a DataLoader process beside it (--pretrain_workers 1: the same model to the bit), which, not
        # niced, takes from the tests' core what the build would spend on them.
        os.environ[BUILDING] = "1"  # for the workers xdist starts after this
        env = {k: v for k, v in os.environ.items() if k not in (BUILDING, "OMP_WAIT_POLICY")} | {"OMP_NUM_THREADS": "1"}
        with open(TINY_MODEL.parent / ".tiny-qwen2-vl.build.log", "w") as log:
            _builder = subprocess.Popen([sys.executable, "load_model.py", "--model_dir", str(TINY_MODEL),
                                         "--pretrain_workers", "1"], cwd=ROOT,
                                        stdout=log, stderr=subprocess.STDOUT, pass_fds=(lock.fileno(),), env=env)


def pytest_unconfigure(config):
    if _builder is not None and _builder.poll() is None:  # no test needed the model after all (a subset was run)
        _builder.terminate()
        _builder.wait()


# Test modules whose module fixture trains a run for several tests. A module fixture is built once per process, so
# under xdist each worker that ran one of their tests would train its own copy (the offline default job twice: ~2.5
# of the suite's ~25 worker-minutes; each family's run of test_families.py two or three times, ~1 minute); the
# scheduler below sends each of these modules to one worker.
SHARED_RUN_MODULES = ("test_pipeline.py", "test_demo.py", "test_swanlab.py", "test_report.py", "test_progress.py",
                      "test_train_bench.py", "test_families.py")


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """xdist's `load` distribution, each test its own unit of work, but a module of SHARED_RUN_MODULES one unit.

    Written here because xdist's own way, `--dist loadgroup` with xdist_group marks, silently stopped grouping with
    pytest 9.2 (it renames the tests' node ids, which pytest 9.2 no longer lets it do: pytest-xdist issue #1386)."""
    if config.getvalue("dist") != "load":  # another distribution asked for on the command line
        return None
    from xdist.scheduler import LoadScopeScheduling

    class SharedRunScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid):
            module = nodeid.split("::", 1)[0]
            return module if Path(module).name in SHARED_RUN_MODULES else nodeid

    config.option.loadscopereorder = False  # keep the collection's order (pytest_collection_modifyitems')
    return SharedRunScheduling(config, log)


def pytest_collection_modifyitems(config, items):
    """The tests that need the pretrained tiny model last, the long ones first among them, so that the workers, which
    start on the others while the model is built, end together (a stable sort: the order within each group stays).
    A module of SHARED_RUN_MODULES is one unit of work: all of it goes last if one of its tests needs the model."""
    def needs_model(item):
        return "tiny_model_dir" in getattr(item, "fixturenames", ())

    waiting = {item.path.name for item in items if needs_model(item) and item.path.name in SHARED_RUN_MODULES}
    items.sort(key=lambda item: (needs_model(item) or item.path.name in waiting,
                                 item.get_closest_marker("long") is None))


@pytest.fixture
def fixtures_dir() -> Path:
    if not FIXTURES.is_dir():
        pytest.skip(f"reference fixtures not found at {FIXTURES} (they sit beside the project's clone, in ../shared)")
    return FIXTURES


@pytest.fixture(scope="session")
def tiny_model_dir() -> Path:
    """The pretrained tiny Qwen2-VL that `python load_model.py` caches in models/tiny-qwen2-vl, built there when
    missing (a few minutes on 2 cores), so the README's job and the tests share one build."""
    import fcntl
    import os

    import torch

    import load_model

    folder = TINY_MODEL
    folder.parent.mkdir(exist_ok=True)
    # Under pytest-xdist every worker asks for it: they wait for the build (pytest_configure's, or the first
    # worker's), then find it cached.
    with open(BUILD_LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        threads = torch.get_num_threads()
        torch.set_num_threads(len(os.sched_getaffinity(0)))  # the build has every core: the others wait for it
        try:
            return Path(load_model.main(["--model_dir", str(folder)]))
        finally:
            torch.set_num_threads(threads)


def chromium_path() -> str | None:
    """Debian's chromium (or the one VLMTUNE_CHROMIUM names), for the tests that look at a page as a person would."""
    import os
    import shutil

    return os.environ.get("VLMTUNE_CHROMIUM") or next(
        (found for name in ("chromium", "chromium-browser", "google-chrome") if (found := shutil.which(name))), None)


@pytest.fixture(scope="session")
def browser():
    """A headless Chromium driven by playwright (the system's browser: playwright's own download needs a network),
    or a skip saying what is missing."""
    executable = chromium_path()
    if executable is None:
        pytest.skip("no chromium on PATH: `apt-get install chromium` (as .ci/run does) for the page tests")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed: `pip install -r requirements.txt`")
    with sync_playwright() as driver:
        instance = driver.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        yield instance
        instance.close()


@pytest.fixture
def page(browser):
    """A fresh browser page, closed after the test."""
    context = browser.new_context()
    yield context.new_page()
    context.close()
