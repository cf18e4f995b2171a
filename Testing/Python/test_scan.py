"""`medprep scan` and discovery: content sniffing, skipped files, splitting, no identity by default."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest

from MedPrepLib.discovery import scan
from MedPrepSample import write_series

NAME = "SCANTEST^SECRET"
PID = "SCAN-ID-4711"


def _run(*args: str):
    return subprocess.run([sys.executable, "-m", "MedPrepLib.cli.main", *args], capture_output=True, text=True)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "in"
    vol = np.arange(4 * 6 * 5, dtype=np.int16).reshape(4, 6, 5)
    patient = {"PatientName": NAME, "PatientID": PID}
    write_series(root / "a", vol, modality="MR", series_number=3, series_description="T1 axial",
                 patient=patient, file_names="shuffled-noext")
    write_series(root / "b" / "deep", vol, modality="CT", series_number=5, series_description="CT body",
                 patient=patient, file_names="uid")
    (root / "notes.txt").write_text("not dicom")
    (root / "empty.dcm").write_bytes(b"")
    # A DICOM file written without the 128-byte preamble is still found by content.
    first = sorted((root / "b" / "deep").iterdir())[0]
    raw = root / "raw"
    raw.mkdir()
    (raw / "nopreamble").write_bytes(first.read_bytes()[132:])
    # A structured report is a non-image object and is skipped.
    sr = pydicom.Dataset()
    sr.file_meta = pydicom.dataset.FileMetaDataset()
    sr.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.88.11"
    sr.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    sr.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    sr.SOPClassUID = sr.file_meta.MediaStorageSOPClassUID
    sr.SOPInstanceUID = sr.file_meta.MediaStorageSOPInstanceUID
    sr.Modality = "SR"
    sr.SeriesInstanceUID = pydicom.uid.generate_uid()
    sr.is_little_endian, sr.is_implicit_VR = True, False  # pydicom 2.4 wants these set
    pydicom.dcmwrite(str(root / "report.dcm"), sr)
    return root


def test_scan_finds_series_by_content(tree: Path) -> None:
    result = scan(tree)
    numbers = sorted(s.series_number for s in result.series)
    assert numbers == [3, 5]
    ct = next(s for s in result.series if s.series_number == 5)
    assert len(ct.files) == 4 + 1  # four slices plus the preamble-less duplicate of the first
    reasons = {s.path.name: s.reason for s in result.skipped}
    assert reasons["notes.txt"] == "not DICOM"
    assert reasons["empty.dcm"] == "not DICOM"
    assert reasons["report.dcm"].startswith("non-image object")


def test_scan_table_has_no_identity_by_default(tree: Path) -> None:
    proc = _run("scan", str(tree))
    assert proc.returncode == 0, proc.stderr
    assert "T1 axial" in proc.stdout and "CT body" in proc.stdout
    assert NAME.split("^")[0] not in proc.stdout + proc.stderr
    assert PID not in proc.stdout + proc.stderr
    assert "skipped" in proc.stderr


def test_scan_json_and_show_phi(tree: Path) -> None:
    proc = _run("scan", str(tree), "--json")
    data = json.loads(proc.stdout)
    assert {r["series_number"] for r in data["series"]} == {3, 5}
    assert PID not in proc.stdout
    proc = _run("scan", str(tree), "--json", "--show-phi")
    data = json.loads(proc.stdout)
    assert {r["patient_id"] for r in data["series"]} == {PID}


def test_scan_folder_without_dicom_fails_with_one_line(tmp_path: Path) -> None:
    (tmp_path / "x.txt").write_text("hello")
    proc = _run("scan", str(tmp_path))
    assert proc.returncode == 1
    assert proc.stderr.strip().count("\n") == 0 and "no DICOM image series" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_series_sent_to_another_process_reads_its_headers_there(tree: Path) -> None:
    """A pickled series (a `medprep run` job) carries paths and offsets, no header: the receiver
    reads the headers again, equal to the scanned ones, and the volume assembles the same. A file
    changed in between is one clear error, not a wrong volume."""
    import pickle

    from MedPrepLib.convert import volume_from_series
    from MedPrepLib.errors import NotDicomError

    series = next(s for s in scan(tree).series if s.series_number == 3)
    blob = pickle.dumps(series)
    assert NAME.encode() not in blob and PID.encode() not in blob
    sent = pickle.loads(blob)
    assert len(sent.files) == len(series.files) and all(f._ds is None for f in sent.files)
    # Assembling the volume parses the first file's header (metadata) and the first slice's
    # (scaling); the pixels of the others are read with the few attributes that came along.
    here, there = volume_from_series(series), volume_from_series(sent)
    parsed = [f._ds is not None for f in sent.files]
    assert parsed[0] and sum(parsed) <= 2 and len(parsed) == 4
    assert np.array_equal(there.array, here.array) and np.array_equal(there.affine, here.affine)
    assert json.dumps(there.meta, sort_keys=True, default=repr) == json.dumps(here.meta, sort_keys=True, default=repr)
    for before, after in zip(series.files, sent.files):
        assert after.ds == before.ds and after.pixel_offset == before.pixel_offset

    changed = pickle.loads(blob)
    path = changed.files[0].path
    path.write_bytes(path.read_bytes() + b"\0\0")
    with pytest.raises(NotDicomError, match="changed after the folder was scanned"):
        volume_from_series(changed)


def test_a_folder_that_cannot_be_listed_is_reported_not_skipped_in_silence(tmp_path, monkeypatch):
    import os

    import MedPrepSample as sample
    from MedPrepLib import discovery

    vol = np.zeros((2, 8, 8), np.int16)
    sample.write_series(tmp_path / "ok", vol, modality="CT")
    sample.write_series(tmp_path / "locked", vol, modality="CT", series_number=2)
    real_scandir = os.scandir

    def scandir(path):
        if str(path).endswith("locked"):  # tests run as root, who may list any folder: refuse it here
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(discovery.os, "scandir", scandir)
    result = discovery.scan(tmp_path)
    assert len(result.series) == 1
    assert [(p.name, r) for p, r in ((s.path, s.reason) for s in result.skipped)] == \
        [("locked", "unreadable folder: Permission denied")]
    with pytest.raises(PermissionError):
        list(discovery.walk_files(tmp_path))  # a walk without a handler does not hide it either
