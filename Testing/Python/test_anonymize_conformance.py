"""Real scanner data: converting the de-identified copy gives the same volumes as the original.

One test per conformance set. Voxels must be identical and affines equal; series are matched by
content since their UIDs (and so their order among equal series numbers) change. The three large
sets are represented by parts that keep what is special about them (Philips private scaling,
Siemens mosaics, native and JPEG-encapsulated), so that the whole file runs in seconds.
"""
from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import List, Set, Tuple

import numpy as np
import pydicom
import pytest

from conftest import require_conformance
from MedPrepLib.anonymize import AnonymizeOptions, Anonymizer, anonymize_tree
from MedPrepLib.anonymize.rawpixels import pixel_extent, write_header
from MedPrepLib.convert import read_dicom
from MedPrepLib.dicomfile import read_header
from MedPrepLib.discovery import read_image_header

# set -> the parts of its In/ folder that are anonymized and converted (None: all of it)
SETS = {
    "dcm_qa_12bit": None, "dcm_qa_ct_ge": None, "dcm_qa_enh": None, "dcm_qa_ge": None, "dcm_qa_ts": None,
    "dcm_qa_uih": ["DTI_132225"],
    "dcm_qa_nih": ["20180918Si"],
    "dcm_qa_orientation": ["Orientation/axmb/AxAsc36mb2a", "Orientation/ax/axasc35"],
    "dcm_qa_philips": ["Magdeburg_2014"],
}


def _volumes(path: Path) -> List[Tuple[tuple, str, np.ndarray]]:
    out = []
    for v in read_dicom(path):
        digest = hashlib.sha256(np.ascontiguousarray(v.array).tobytes()).hexdigest()
        out.append((v.array.shape, digest, v.affine))
    return sorted(out, key=lambda t: (t[0], t[1]))


PERSON_NAMES = ("PatientName", "ReferringPhysicianName")
# Values some upstream files already carry in place of identity; the product writes "REMOVED" too.
PLACEHOLDERS = {"REMOVED", "ANONYMOUS", "ANONYMIZED"}


def _identity(src: Path) -> Set[bytes]:
    """Identifying values of the original headers (long enough not to occur by chance)."""
    values: Set[bytes] = set()
    for path in src.rglob("*"):
        try:
            ds = pydicom.dcmread(str(path), stop_before_pixels=True)
        except Exception:  # noqa: BLE001 - the non-DICOM files upstream left among the data
            continue
        for keyword in ("PatientName", "PatientID", "StudyDate", "AccessionNumber", "InstitutionName",
                        "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "ReferringPhysicianName"):
            value = str(ds.get(keyword, "") or "")
            parts = [value] + (value.replace("^", " ").split() if keyword in PERSON_NAMES else [])
            values.update(p.encode() for p in parts if len(p) >= 6 and p.upper() not in PLACEHOLDERS)
    return values


def _header_bytes(path: Path) -> bytes:
    """Everything before the pixel data (which is copied verbatim, so it cannot differ)."""
    offset = read_header(path).pixel_offset
    data = path.read_bytes()
    return data if offset is None else data[:offset]


@pytest.mark.conformance
@pytest.mark.parametrize("name", sorted(SETS))
def test_anonymized_copy_converts_to_the_same_volumes(name, tmp_path):
    root = require_conformance() / name / "In"
    parts = [root / p for p in SETS[name]] if SETS[name] else [root]
    for i, src in enumerate(parts):
        if not src.is_dir():
            pytest.skip(f"{src} not found")
        # Safe private attributes are kept: Siemens mosaics need their CSA header to be unpacked.
        options = AnonymizeOptions(keep_private=True, on_burned_in="keep")
        out = tmp_path / f"out{i}"
        report = anonymize_tree(src, out, Anonymizer(b"conformance", options))
        assert report.written > 0 and not report.unreadable
        identity = _identity(src)
        leaks = [(p.name, v) for p in out.rglob("*.dcm") for header in [_header_bytes(p)] for v in identity
                 if v in header]
        assert leaks == []
        original, anonymized = _volumes(src), _volumes(out)
        assert [(s, d) for s, d, _ in anonymized] == [(s, d) for s, d, _ in original]
        for (_, _, a), (_, _, b) in zip(anonymized, original):
            np.testing.assert_allclose(a, b, atol=1e-4)


@pytest.mark.conformance
@pytest.mark.parametrize("name", sorted(SETS))
def test_header_plus_verbatim_pixels_equals_pydicom_writing_the_whole_file(name):
    """The fast path (discovery's header, de-identified, then the pixel element copied as bytes)
    writes exactly what pydicom writes for the fully read, equally de-identified file."""
    root = require_conformance() / name / "In"
    paths = sorted(p for p in root.rglob("*") if p.is_file())
    anonymizer = Anonymizer(b"conformance", AnonymizeOptions(keep_private=True))
    compared = 0
    for path in paths[:: max(1, len(paths) // 40)]:  # about 40 files per set, spread over all of it
        f, _ = read_image_header(path)
        extent = pixel_extent(f) if f is not None else None
        if extent is None:
            continue
        fast = io.BytesIO()
        write_header(fast, anonymizer.anonymize(f.ds))
        with open(path, "rb") as fh:
            fh.seek(extent[0])
            fast.write(fh.read())
        whole = io.BytesIO()
        pydicom.dcmwrite(whole, anonymizer.anonymize(pydicom.dcmread(str(path), force=True)))
        assert fast.getvalue() == whole.getvalue(), path
        compared += 1
    assert compared > 0
