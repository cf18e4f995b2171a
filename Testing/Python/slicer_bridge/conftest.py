"""Tests of MedPrep's Slicer-side code: the bridge against slicer-core's MRML classes, and the module
(Widget, Logic, MedPrepTest) in Slicer's own Python layer through Testing/Python/slicer_harness."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

MODULE_DIR = Path(__file__).resolve().parents[3] / "MedPrep"
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # slicer_harness


def _slicer_core():
    try:
        import slicer
    except ImportError as exc:
        return None, f"slicer-core is not installed ({exc}); run `make test-slicer`"
    # An unrelated PyPI package is also called "slicer": check for the MRML classes themselves.
    if not hasattr(slicer, "vtkMRMLScene"):
        return None, (f"the `slicer` module at {getattr(slicer, '__file__', '?')} has no MRML classes; " \
                     "install slicer-core (`make test-slicer`)")
    return slicer, ""


@pytest.fixture(scope="session")
def slicer():
    module, reason = _slicer_core()
    if module is None:
        pytest.skip(reason)
    if str(MODULE_DIR) not in sys.path:
        sys.path.insert(0, str(MODULE_DIR))
    return module


@pytest.fixture
def scene(slicer):
    return slicer.vtkMRMLScene()


@pytest.fixture
def bridge(slicer):
    import MedPrepBridge

    return MedPrepBridge


@pytest.fixture(scope="session")
def harness():
    """`slicer`, `qt` and `ctk` as a scripted module sees them in Slicer (see slicer_harness); skips with the reason."""
    import slicer_harness

    reason = slicer_harness.unavailable()
    if reason:
        pytest.skip(reason)
    return slicer_harness.install()


@pytest.fixture
def MedPrep(harness):
    """The module MedPrep.py as Slicer loads it (in the harness), over an empty scene."""
    import slicer_harness

    slicer_harness.loadMedPrep()
    harness.mrmlScene.Clear(0)
    return sys.modules["MedPrep"]
