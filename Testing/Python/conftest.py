"""Shared test fixtures and helpers: where the conformance data lives, temporary output folders, oblique
directions for synthetic series."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
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


def rotation(ax: float, ay: float, az: float) -> np.ndarray:
    """Rotation by `ax`, `ay`, `az` radians about x, then y, then z: oblique row/column directions for
    synthetic series."""
    cx, sx, cy, sy, cz, sz = np.cos(ax), np.sin(ax), np.cos(ay), np.sin(ay), np.cos(az), np.sin(az)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx
