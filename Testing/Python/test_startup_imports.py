"""What a `medprep convert` process imports before it reads a file: every run pays for it.

Optional imports of our dependencies that serve nothing of MedPrep's are refused while those
dependencies load (MedPrepLib/lean_imports.py), and --anonymize's machinery loads only when asked.
"""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

_PROBE = """
import json, sys
import MedPrepLib.cli.main as cli
cli.build_parser(["convert"])
import MedPrepLib.convert, pydicom, nibabel
loaded = sorted(n for n in ("requests", "tqdm", "gdcm", "MedPrepLib.anonymize.anonymizer",
                            "MedPrepLib.anonymize.tree", "MedPrepLib.executor") if n in sys.modules)
later = {}
for name in ("requests", "tqdm", "gdcm"):
    try:
        __import__(name)
        later[name] = True
    except ImportError:
        later[name] = False
import nibabel.nifti1
print(json.dumps({"loaded": loaded, "later": later, "nibabel_dicom": bool(nibabel.nifti1.have_dicom)}))
"""


def _env() -> dict:
    return dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))


def _probe(code: str) -> dict:
    out = subprocess.run([sys.executable, "-c", code], env=_env(), cwd=ROOT, capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_convert_starts_without_download_helpers_gdcm_or_the_anonymizer():
    result = _probe(_PROBE)
    assert result["loaded"] == [], result
    # Refused only while pydicom loads: anyone importing them afterwards gets them.
    for name, ok in result["later"].items():
        assert ok == (importlib.util.find_spec(name) is not None), name
    # nibabel imported after pydicom still sees it (the refusal applies to a name not yet loaded).
    assert result["nibabel_dicom"]


def test_the_anonymizer_loads_on_first_use():
    result = _probe("import json, sys\nfrom MedPrepLib.anonymize import Anonymizer, anonymize_tree\n"
                    "import MedPrepLib.anonymize as a\n"
                    "print(json.dumps({'ok': Anonymizer.__module__ == 'MedPrepLib.anonymize.anonymizer' and "
                    "'MedPrepLib.anonymize.tree' in sys.modules and 'burned_in_reason' in dir(a)}))")
    assert result["ok"]


def test_a_library_user_keeps_the_imports_of_pydicom_as_they_are():
    """Only MedPrep's own processes (the command line, its workers) refuse optional imports: a program
    that imports MedPrepLib (Slicer, a notebook) gets the pydicom it would get without it."""
    code = ("import json, sys\n{first}import pydicom, nibabel.nifti1\n"
            "try:\n    import pydicom.pixels\n"  # pydicom 3 registers its decoders here, 2.4 in its handlers
            "except ImportError:\n    import pydicom.pixel_data_handlers\n"
            "print(json.dumps({{'gdcm': 'gdcm' in sys.modules, 'nibabel_dicom': bool(nibabel.nifti1.have_dicom)}}))")
    plain = _probe(code.format(first=""))
    assert _probe(code.format(first="import MedPrepLib.convert, MedPrepLib.nifti, MedPrepLib.executor.local\n")) \
        == plain


def test_a_run_starts_its_worker_pool_before_importing_numpy():
    """`medprep run` starts its pool's fork server once its arguments are parsed, and the fork server's
    imports run beside the driver's: parsing must not import numpy, SimpleITK or the steps first
    (--help's step list is built when help is printed, --layout is checked after the pool starts).
    The driver itself never writes an image, so it does not import nibabel (0.2 s with scipy)."""
    result = _probe("import json, sys\nimport MedPrepLib.cli.main as cli\n"
                    "cli.build_parser(['run']).parse_args(['run', 'ct-liver', 'in', 'out', '--layout', 'classes'])\n"
                    "from MedPrepLib.cases import worker_preload\nworker_preload('in')\n"
                    "heavy = ('numpy', 'SimpleITK', 'MedPrepLib.preprocess.steps')\n"
                    "parsed = sorted(n for n in heavy if n in sys.modules)\n"
                    "import MedPrepLib.runner, MedPrepLib.export, MedPrepLib.discovery\n"
                    "print(json.dumps({'parsed': parsed, 'nibabel': 'nibabel' in sys.modules}))")
    assert result == {"parsed": [], "nibabel": False}, result


def test_an_unknown_layout_is_one_line_naming_the_flag(tmp_path):
    (tmp_path / "in").mkdir()
    done = subprocess.run([sys.executable, "-m", "MedPrepLib.cli.main", "run", "ct-liver", str(tmp_path / "in"),
                           str(tmp_path / "out"), "--layout", "bogus", "--workers", "1"],
                          env=_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and done.stderr.strip().splitlines() == [
        "medprep: error: --layout takes one of files, classes, detection, got 'bogus'"], done.stderr


def _threads_after_numpy(first: str, **env: str) -> int:
    """Threads of a fresh process once `first` and then numpy are imported."""
    code = f"import json, os\n{first}\nimport numpy\nprint(json.dumps(len(os.listdir('/proc/self/task'))))"
    from MedPrepLib.lean_imports import BLAS_THREAD_VARIABLES

    # Whatever this process was given (Dask's nanny sets them where a LocalCluster runs)
    clean = {k: v for k, v in _env().items() if k not in BLAS_THREAD_VARIABLES}
    out = subprocess.run([sys.executable, "-c", code], env=dict(clean, **env), cwd=ROOT, capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _job_threads_of_parent() -> int:
    return len(os.listdir(f"/proc/{os.getppid()}/task"))


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="threads are counted in /proc (Linux)")
def test_our_processes_start_no_blas_threads(monkeypatch):
    """numpy's OpenBLAS starts a spinning thread per CPU at import; MedPrep's own processes (the command
    line, the pool's fork server) ask for one thread unless the user chose a number."""
    from MedPrepLib.executor.local import LocalPool
    from MedPrepLib.lean_imports import BLAS_THREAD_VARIABLES

    plain = _threads_after_numpy("")
    if plain == 1:
        pytest.skip("this numpy starts no BLAS threads here (one CPU, or a BLAS without a thread pool)")
    assert _threads_after_numpy("import MedPrepLib.cli.main") == 1
    assert _threads_after_numpy("import MedPrepLib.cli.main", OPENBLAS_NUM_THREADS="2") == 2
    assert _threads_after_numpy("import MedPrepLib.cli.main", OMP_NUM_THREADS="2") == 2
    # A library user (Slicer, a notebook) keeps numpy as it is.
    assert _threads_after_numpy("import MedPrepLib.convert, MedPrepLib.executor.local") == plain

    # A pool made by a library user: its fork server (a worker's parent) is a process of ours.
    for name in BLAS_THREAD_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    with LocalPool(2, preload=["numpy"]) as pool:
        outcomes = list(pool.map(_job_threads_of_parent, [(), ()]))
    assert [o.error for o in outcomes] == ["", ""] and [o.value for o in outcomes] == [1, 1], outcomes
    assert not [name for name in BLAS_THREAD_VARIABLES if name in os.environ]  # the caller's own environment
