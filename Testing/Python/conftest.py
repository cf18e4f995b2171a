"""Shared test fixtures: where the conformance data lives, temporary output folders."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# MEDPREP_SHARED points elsewhere when the checkout is not beside shared/ (e.g. a git worktree).
SHARED = Path(os.environ.get("MEDPREP_SHARED") or ROOT.parent / "shared")
CONFORMANCE = SHARED / "conformance"
REFERENCE = SHARED / "reference"
ANNOTATIONS = SHARED / "annotations"


def require_conformance() -> Path:
    if not (CONFORMANCE / "MANIFEST.md").is_file():
        pytest.skip(f"conformance data not found at {CONFORMANCE} (../shared is absent beside this checkout)")
    return CONFORMANCE


def require_reference() -> Path:
    if not REFERENCE.is_dir():
        pytest.skip(f"reference tables not found at {REFERENCE} (../shared is absent beside this checkout)")
    return REFERENCE


def require_annotations() -> Path:
    if not (ANNOTATIONS / "MANIFEST.md").is_file():
        pytest.skip(f"annotation test data not found at {ANNOTATIONS} (../shared is absent beside this checkout)")
    return ANNOTATIONS
