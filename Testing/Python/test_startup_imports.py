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


def _probe(code: str) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True,
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
