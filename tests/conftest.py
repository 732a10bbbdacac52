"""Three tiers of tests, all run by `pytest`:

- unit: hand-written inputs and exact outputs, no model, well under a second each;
- smoke: the tiny models of the real architectures, a few real Trainer steps;
- end to end: the scripts themselves on offline data, asserting what a user would look at.

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
