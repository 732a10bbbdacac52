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


@pytest.fixture
def fixtures_dir() -> Path:
    if not FIXTURES.is_dir():
        pytest.skip(f"reference fixtures not found at {FIXTURES} (they sit beside the project's clone, in ../shared)")
    return FIXTURES


@pytest.fixture(scope="session")
def tiny_model_dir() -> Path:
    """The pretrained tiny Qwen2-VL that `python load_model.py` caches in models/tiny-qwen2-vl, built there when
    missing (a few minutes on 2 cores), so the README's job and the tests share one build."""
    import load_model

    return Path(load_model.main(["--model_dir", str(ROOT / "models" / "tiny-qwen2-vl")]))


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
