"""Shared test helpers: the real-data fixtures in ``tests/fixtures`` (provenance and licences in
``tests/fixtures/PROVENANCE.md``). They ship with the repo, so a missing one is a failure, never a skip."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest

FIXTURES_DIR = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """``tests/fixtures``: real samples of every dataset format the sources read."""
    assert FIXTURES_DIR.is_dir(), f"real-data fixtures missing at {FIXTURES_DIR}"
    return FIXTURES_DIR


@pytest.fixture(scope="session")
def fixture_path(fixtures_dir: Path) -> Callable[[str], Path]:
    """``fixture_path("owner__repo/some/file")`` -> the path (fails when that file is absent)."""

    def get(rel: str) -> Path:
        p = fixtures_dir / rel
        assert p.exists(), f"fixture {rel} missing under {fixtures_dir}"
        return p

    return get
