"""The one parser of the pixel data element (MedPrepLib.pixeldata) against pydicom's reading of the same files."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian, RLELossless

from MedPrepLib.dicomfile import read_header
from MedPrepLib.pixeldata import LONG_VRS, encapsulated_items, pixel_element, transfer_syntax

ROOT = Path(__file__).resolve().parents[2]


def _write(path: Path, syntax: str, pixels: bytes, tag: str = "PixelData", vr: str = "OW",
           encapsulated: bool = False) -> Path:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = syntax
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.file_meta.MediaStorageSOPInstanceUID = "1.2.3.4"
    ds.SOPClassUID, ds.SOPInstanceUID = "1.2.840.10008.5.1.4.1.1.7", "1.2.3.4"
    ds.Rows, ds.Columns, ds.BitsAllocated, ds.BitsStored, ds.SamplesPerPixel = 2, 4, 16, 16, 1
    ds.PixelRepresentation, ds.PhotometricInterpretation = 0, "MONOCHROME2"
    ds.add_new(tag, vr, pixels)
    if encapsulated:
        ds[tag].is_undefined_length = True
    little = syntax != ExplicitVRBigEndian
    implicit = syntax == ImplicitVRLittleEndian
    if int(pydicom.__version__.split(".")[0]) >= 3:
        ds.save_as(path, enforce_file_format=True)
    else:
        ds.is_little_endian, ds.is_implicit_VR = little, implicit
        ds.save_as(path, write_like_original=False)
    return path


@pytest.mark.parametrize("syntax, tag, vr", [
    (ImplicitVRLittleEndian, "PixelData", "OW"), (ExplicitVRLittleEndian, "PixelData", "OW"),
    (ExplicitVRLittleEndian, "PixelData", "OB"), (ExplicitVRBigEndian, "PixelData", "OW"),
    (ExplicitVRLittleEndian, "FloatPixelData", "OF"), (ExplicitVRLittleEndian, "DoubleFloatPixelData", "OD"),
])
def test_native_element_value_is_what_pydicom_reads(tmp_path, syntax, tag, vr):
    n = 64 if vr == "OD" else 32 if vr == "OF" else 16
    pixels = np.arange(8 * n // 8, dtype=np.uint8).tobytes()
    path = _write(tmp_path / "f.dcm", syntax, pixels, tag, vr)
    f = read_header(path)
    with open(path, "rb") as fh:
        found = pixel_element(f, fh, transfer_syntax(f.ds))
        assert found is not None and not found.encapsulated
        fh.seek(found.value_offset)
        assert fh.read(found.length) == pydicom.dcmread(path)[tag].value == pixels
    assert found.explicit_vr is (syntax != ImplicitVRLittleEndian)
    assert found.little_endian is (syntax != ExplicitVRBigEndian)
    assert found.value_offset + found.length == path.stat().st_size


def test_encapsulated_items_walk_to_the_delimiter(tmp_path):
    fragments = [b"\x01\x02" * 5, b"\x03\x04" * 7]
    path = _write(tmp_path / "rle.dcm", RLELossless, encapsulate(fragments, has_bot=True), vr="OB",
                  encapsulated=True)
    f = read_header(path)
    size = path.stat().st_size
    with open(path, "rb") as fh:
        found = pixel_element(f, fh, transfer_syntax(f.ds))
        assert found is not None and found.encapsulated
        end, items = encapsulated_items(fh, found.value_offset, size)
    assert end == size
    assert items == [8] + [len(x) + len(x) % 2 for x in fragments]   # offset table (2 frames), then fragments


def test_cut_header_and_missing_syntax_give_none(tmp_path):
    path = _write(tmp_path / "f.dcm", ExplicitVRLittleEndian, bytes(16))
    f = read_header(path)
    with open(path, "rb") as fh:
        assert pixel_element(f, fh, "") is None
        assert pixel_element(f, fh, "1.2.840.10008.1.2.1.99") is None      # deflated: offsets are not the file's
    cut = tmp_path / "cut.dcm"
    cut.write_bytes(path.read_bytes()[: f.pixel_offset + 6])
    with open(cut, "rb") as fh:
        assert pixel_element(f, fh, ExplicitVRLittleEndian) is None


def test_long_vrs_are_the_standards():
    """PS3.5 Table 7.1-1: these VRs have a 2-byte reserved field and a 4-byte length (the copies in
    pixels.py and rawpixels.py had drifted: one lacked SV and UV)."""
    assert LONG_VRS == {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}


def test_no_second_pixel_element_parser():
    """anonymize's raw copy and completeness check and convert's native read locate the pixel element
    through pixeldata only: no other module unpacks an element header or keeps its own VR table."""
    users = ["MedPrepLib/pixels.py", "MedPrepLib/anonymize/rawpixels.py", "MedPrepLib/anonymize/pixelcheck.py"]
    for name in users:
        text = (ROOT / name).read_text(encoding="utf-8")
        assert "from ..pixeldata import" in text or "from .pixeldata import" in text, name
        assert not re.search(r"struct\.unpack|LONG_VRS|0xFFFFFFFF|0x7FE0", text), name
