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
