"""Optional imports our dependencies make for features MedPrep never uses, refused at start-up.

Every `medprep` command, and every worker of a dataset run, starts a fresh interpreter, and
importing is most of what a short conversion costs (a 300-slice CT: 0.9 s of 2.4 s CPU). Three
kinds of those imports serve nothing of ours:

- pydicom's test-data downloader (`pydicom.data.download`) imports `requests` and `tqdm` when they
  are installed, 0.2 s of CPU per start; without them it downloads with urllib, should anyone ask.
- nibabel imports pydicom only to offer DICOM header extensions in NIfTI files, which MedPrep
  neither reads nor writes; pydicom 3 then loads every pixel-decoder plug-in (0.3 s and 23 MB in
  each worker of a NIfTI dataset run that never touches DICOM).
- pydicom registers GDCM as a pixel codec whenever another package has installed it (dicom2nifti
  depends on it): 0.1 s per start, and its C decoder writes its complaints about a damaged stream
  straight to the process's stderr, past MedPrep's one-line errors. MedPrep decodes with the
  pylibjpeg plug-ins it depends on (pyproject.toml), the same with or without GDCM installed.

One import costs CPU after it returns: numpy's OpenBLAS starts a thread per CPU, and each spins
for about 0.1 s of CPU before it sleeps. MedPrep's matrix products are 3x3 and 4x4, which OpenBLAS
runs on one thread whatever it has, so those threads only take CPU from the other workers while a
dataset run starts (the driver and the fork server import numpy side by side). Unless the user
has chosen a number (OPENBLAS_NUM_THREADS, or GOTO_NUM_THREADS or OMP_NUM_THREADS, which OpenBLAS
reads after it), this module sets OPENBLAS_NUM_THREADS to 1 for the process and what it starts.

Only processes MedPrep owns do this: importing this module installs the finder, and the `medprep`
command line (cli.main) and the fork server of its worker pools (executor.local) import it before
anything else. A program that imports MedPrepLib as a library (Slicer, a notebook) keeps its
imports as they are; there MedPrep decodes around GDCM's stderr output instead (pixels.py).

While such an importer runs its own module code, the import of those names fails as if they
were not installed, which both packages are written to accept. An import from anywhere else,
before or after, is not affected; a name already imported is never touched (the import system
then does not ask finders), so where pydicom is loaded first (a DICOM run, Slicer) nibabel gets it.
"""
from __future__ import annotations

import os
import sys
from typing import Any, Dict, Optional, Tuple

# importer module -> top-level names it may not import while its own code runs
SKIPPED: Dict[str, Tuple[str, ...]] = {
    "pydicom.data.download": ("requests", "tqdm"),
    "nibabel": ("pydicom",),
    # pydicom 3 decoders and encoders, pydicom 2 handlers and encoders
    "pydicom.pixels.decoders.gdcm": ("gdcm",),
    "pydicom.pixels.encoders.gdcm": ("gdcm",),
    "pydicom.pixel_data_handlers.gdcm_handler": ("gdcm",),
    "pydicom.encoders.gdcm": ("gdcm",),
}


def _running(module_name: str) -> bool:
    """Whether `module_name` is being imported right now (its module code has not finished)."""
    module = sys.modules.get(module_name)
    return bool(getattr(getattr(module, "__spec__", None), "_initializing", False))


class _SkipOptionalImports:
    """A meta path finder that only ever refuses; other names go on to the regular finders."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Optional[Any]:
        for importer, names in SKIPPED.items():
            if name in names and _running(importer):
                raise ModuleNotFoundError(f"No module named {name!r} (not needed by MedPrep)", name=name)
        return None


def install() -> None:
    """Put the finder first on sys.meta_path, once per process."""
    if not any(isinstance(f, _SkipOptionalImports) for f in sys.meta_path):
        sys.meta_path.insert(0, _SkipOptionalImports())


install()
# Read by OpenBLAS when numpy loads it: this module is imported before numpy (see above).
BLAS_THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "GOTO_NUM_THREADS", "OMP_NUM_THREADS")
if not any(name in os.environ for name in BLAS_THREAD_VARIABLES):
    os.environ["OPENBLAS_NUM_THREADS"] = "1"
