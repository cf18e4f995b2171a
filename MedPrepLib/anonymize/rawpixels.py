"""The pixel data element of a DICOM file as raw bytes, so it can be copied without decoding.

Discovery has already parsed every header (up to the pixel data); reading the pixel element as
bytes and appending it to the de-identified header makes the per-file work a single parse. This
applies only when the pixel data element is the last thing in the file and its extent can be
verified; anything else (trailing elements, deflate, truncation) returns None, and the caller
reads the whole file with pydicom instead, so nothing after the pixels is ever copied unseen.
"""
from __future__ import annotations

import struct
from typing import Optional

from ..dicomfile import PIXEL_DATA_TAG, DicomFile

_IMPLICIT_LE = "1.2.840.10008.1.2"
_EXPLICIT_BE = "1.2.840.10008.1.2.2"
_DEFLATED = ("1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.8.1")
_LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
_ITEM, _SEQUENCE_END = 0xFFFEE000, 0xFFFEE0DD


def _encapsulated_end(data: bytes, pos: int) -> Optional[int]:
    """End offset of an undefined-length pixel element starting its items at `pos` (little endian)."""
    while pos + 8 <= len(data):
        group, element, length = struct.unpack_from("<HHI", data, pos)
        tag = (group << 16) | element
        if tag == _SEQUENCE_END:
            return pos + 8
        if tag != _ITEM or length == 0xFFFFFFFF:
            return None
        pos += 8 + length
    return None


def pixel_element(f: DicomFile) -> Optional[bytes]:
    """The raw bytes of `f`'s pixel data element when it ends the file exactly, else None."""
    meta = getattr(f.ds, "file_meta", None)
    syntax = str(getattr(meta, "TransferSyntaxUID", "") or "")
    if f.pixel_offset is None or not syntax or syntax in _DEFLATED or syntax == _EXPLICIT_BE:
        return None
    with open(f.path, "rb") as fh:
        fh.seek(f.pixel_offset)
        data = fh.read()
    if len(data) < 12:
        return None
    group, element = struct.unpack_from("<HH", data, 0)
    if (group << 16) | element != PIXEL_DATA_TAG:
        return None
    if syntax == _IMPLICIT_LE:
        (length,), start = struct.unpack_from("<I", data, 4), 8
    elif data[4:6] in _LONG_VRS:
        (length,), start = struct.unpack_from("<I", data, 8), 12
    else:
        (length,), start = struct.unpack_from("<H", data, 6), 8
    end = _encapsulated_end(data, start) if length == 0xFFFFFFFF else start + length
    return data if end == len(data) else None
