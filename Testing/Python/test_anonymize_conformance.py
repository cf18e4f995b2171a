"""Real scanner data: converting the de-identified copy gives the same volumes as the original.

One test per conformance set. Voxels must be identical and affines equal; series are matched by
content since their UIDs (and so their order among equal series numbers) change.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import List, Tuple

import numpy as np
import pytest

from conftest import CONFORMANCE, require_conformance
from MedPrepLib.anonymize import AnonymizeOptions, Anonymizer, anonymize_tree
from MedPrepLib.convert import read_dicom

SETS = ["dcm_qa_12bit", "dcm_qa_ct_ge", "dcm_qa_enh", "dcm_qa_ge", "dcm_qa_nih", "dcm_qa_orientation",
        "dcm_qa_philips", "dcm_qa_ts"]


def _volumes(path: Path) -> List[Tuple[tuple, str, np.ndarray]]:
    out = []
    for v in read_dicom(path):
        digest = hashlib.sha256(np.ascontiguousarray(v.array).tobytes()).hexdigest()
        out.append((v.array.shape, digest, v.affine))
    return sorted(out, key=lambda t: (t[0], t[1]))


@pytest.mark.conformance
@pytest.mark.parametrize("name", SETS)
def test_anonymized_copy_converts_to_the_same_volumes(name, tmp_path):
    require_conformance()
    src = CONFORMANCE / name / "In"
    if not src.is_dir():
        pytest.skip(f"{src} not found")
    # Safe private attributes are kept: Siemens mosaics need their CSA header to be unpacked.
    options = AnonymizeOptions(keep_private=True, on_burned_in="keep")
    report = anonymize_tree(src, tmp_path / "out", Anonymizer(b"conformance", options))
    assert report.written > 0 and not report.unreadable
    original, anonymized = _volumes(src), _volumes(tmp_path / "out")
    assert [(s, d) for s, d, _ in anonymized] == [(s, d) for s, d, _ in original]
    for (_, _, a), (_, _, b) in zip(anonymized, original):
        np.testing.assert_allclose(a, b, atol=1e-4)
