"""Shared test helpers: the real-data fixtures that live in ``shared/fixtures`` beside the checkout."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest

FIXTURES_DIR = Path(__file__).resolve().parents[2] / "shared" / "fixtures"


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """``shared/fixtures`` beside the repo checkout; skips the test when it is absent."""
    if not FIXTURES_DIR.is_dir():
        pytest.skip(f"real-data fixtures not found at {FIXTURES_DIR} (shared/ beside the checkout)")
    return FIXTURES_DIR


@pytest.fixture(scope="session")
def fixture_path(fixtures_dir: Path) -> Callable[[str], Path]:
    """``fixture_path("owner__repo/some/file")`` -> the path; skips when that file is absent."""

    def get(rel: str) -> Path:
        p = fixtures_dir / rel
        if not p.exists():
            pytest.skip(f"fixture {rel} not found under {fixtures_dir}")
        return p

    return get
