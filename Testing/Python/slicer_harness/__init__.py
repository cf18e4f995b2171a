"""Slicer's own Python layer outside the application, for testing the MedPrep module.

`install()` makes `import slicer, qt, ctk` give what a scripted module sees inside Slicer:

- `slicer.parameterNodeWrapper`, `slicer.ScriptedLoadableModule`, `slicer.i18n`, `slicer.testing`: Slicer's own
  files, unchanged, from ../shared/slicer-python (its README says which commit);
- `slicer.util`, `vtk` and every MRML and logic class: the slicer-core wheel (real MRML, no Qt);
- `qt`: PySide6 with PythonQt's naming (`pythonqt.py`);
- `ctk`, the qMRML widgets, `slicer.app`, `slicer.modules`, the layout manager: stand-ins, all listed in
  `standins.py`.

Slicer's files need Python 3.10 or later, so the harness runs in the main environment only (`make
test-slicer`); `unavailable()` says why it cannot run elsewhere.
"""
from __future__ import annotations

import ctypes
import os
import sys
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
SLICER_PYTHON = Path(os.environ.get("MEDPREP_SLICER_PYTHON", ROOT.parent / "shared" / "slicer-python"))
MODULE_FILE = ROOT / "MedPrep" / "MedPrep.py"

_installed = None


def unavailable() -> str | None:
    """Why the harness cannot run here, or None."""
    if sys.version_info < (3, 10):
        return f"Slicer's own Python files need Python 3.10 or later (this is {sys.version.split()[0]})"
    if not (SLICER_PYTHON / "slicer" / "parameterNodeWrapper" / "wrapper.py").is_file():
        return f"Slicer's Python layer not found at {SLICER_PYTHON} (../shared/slicer-python is absent)"
    try:
        import PySide6  # noqa: F401
    except ImportError:
        return "PySide6 is not installed (pip install PySide6-Essentials)"
    try:
        import slicer
    except ImportError:
        return "slicer-core is not installed (`make test-slicer` installs it)"
    if not hasattr(slicer, "vtkMRMLScene"):
        return f"the `slicer` module at {getattr(slicer, '__file__', '?')} has no MRML classes; install slicer-core"
    return None


def install():
    """Set up `slicer`, `qt` and `ctk` once per process; returns the `slicer` module."""
    global _installed
    if _installed is not None:
        return _installed
    reason = unavailable()
    if reason:
        raise RuntimeError(reason)
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    _immortalSingletons()

    from PySide6 import QtWidgets

    import slicer

    from . import pythonqt, standins

    qapplication = QtWidgets.QApplication.instance() or QtWidgets.QApplication([])
    # Slicer's own package files join the `slicer` package of slicer-core, as in the application.
    slicer.__path__.append(str(SLICER_PYTHON / "slicer"))
    sys.modules["qt"] = pythonqt.makeModule()
    sys.modules["ctk"] = standins.ctkModule()
    qmrml = standins.qmrmlClasses()
    for name, cls in qmrml.items():
        setattr(slicer, name, cls)
    pythonqt.QUiLoader.widgetClasses = {**{n: getattr(sys.modules["ctk"], n) for n in standins.CTK}, **qmrml}
    slicer.mrmlScene = slicer.vtkMRMLScene()
    slicer.app = standins.Application(qapplication)
    slicer.modules = types.SimpleNamespace(volumes=standins._VolumesModule())
    slicer.qSlicerScriptedLoadableModule = standins.ScriptedModule
    slicer.app.layoutManager()  # the scene as the application sets it up
    _installed = slicer
    return slicer


def _immortalSingletons() -> None:
    """PySide6 6.12 drops a reference to None on calls of void methods (setText...) and to True on each
    `emit` of a Python-defined signal. Python 3.12 makes None, True and False immortal, so nothing
    happens there; on 3.10 and 3.11 their count reaches zero after enough calls and the interpreter
    aborts ("deallocating None"). Give them the reference count that never runs out, as 3.12 does."""
    if sys.version_info >= (3, 12):
        return
    for singleton in (None, True, False):
        ctypes.c_ssize_t.from_address(id(singleton)).value += 1 << 40


def loadMedPrep():
    """Register the MedPrep module as Slicer does for an "Additional module path"; returns slicer.modules.medprep."""
    from . import standins

    slicer = install()
    if getattr(slicer.modules, "medprep", None) is None:
        standins.registerScriptedModule("MedPrep", MODULE_FILE)
    return slicer.modules.medprep
