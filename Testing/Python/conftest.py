"""Shared test fixtures: where the conformance data lives, temporary output folders."""
from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared"
CONFORMANCE = SHARED / "conformance"
REFERENCE = SHARED / "reference"


def require_conformance() -> Path:
    if not (CONFORMANCE / "MANIFEST.md").is_file():
        pytest.skip(f"conformance data not found at {CONFORMANCE} (../shared is absent beside this checkout)")
    return CONFORMANCE


def require_reference() -> Path:
    if not REFERENCE.is_dir():
        pytest.skip(f"reference tables not found at {REFERENCE} (../shared is absent beside this checkout)")
    return REFERENCE
