"""The pixel data element of a DICOM file, located and copied as raw bytes without decoding.

Discovery has already parsed every header (up to the pixel data); appending the file's pixel
element, copied byte for byte, to the de-identified header makes the per-file work a single
parse. This applies only when the pixel data element ends the file exactly and its extent can
be verified; anything else (trailing elements, deflate, big endian, truncation) gives None, and
the caller reads the whole file with pydicom instead, so nothing after the pixels is copied unseen.
"""
from __future__ import annotations

import os
import shutil
import struct
from typing import IO, BinaryIO, List, Optional, Tuple

from pydicom.dataset import Dataset
from pydicom.filebase import DicomFileLike
from pydicom.filewriter import write_dataset, write_file_meta_info

from ..dicomfile import PIXEL_DATA_TAG, DicomFile

_IMPLICIT_LE = "1.2.840.10008.1.2"
_EXPLICIT_BE = "1.2.840.10008.1.2.2"
_DEFLATED = ("1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.8.1")
_LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
_ITEM, _SEQUENCE_END = 0xFFFEE000, 0xFFFEE0DD
PIXEL_TAGS = (0x7FE00008, 0x7FE00009, PIXEL_DATA_TAG)  # float, double float, integer pixel data


def encapsulated_items(fh: BinaryIO, pos: int, size: int) -> Tuple[Optional[int], List[int]]:
    """Walk the items of an undefined-length pixel element whose items start at `pos` (little endian).

    Returns the element's end offset (None when the file ends first or an item is malformed) and
    the item lengths seen, the basic offset table's first.
    """
    lengths: List[int] = []
    while pos + 8 <= size:
        fh.seek(pos)
        group, element, length = struct.unpack("<HHI", fh.read(8))
        tag = (group << 16) | element
        if tag == _SEQUENCE_END:
            return pos + 8, lengths
        if tag != _ITEM or length == 0xFFFFFFFF:
            return None, lengths
        lengths.append(length)
        pos += 8 + length
    return None, lengths


def pixel_element(f: DicomFile, fh: BinaryIO) -> Optional[Tuple[int, int, int]]:
    """(tag, value offset, value length) of `f`'s pixel element, read from its header at `f.pixel_offset`.

    None when there is no such element or its header is cut off; the length is 0xFFFFFFFF for
    encapsulated (compressed) pixel data.
    """
    meta = getattr(f.ds, "file_meta", None)
    syntax = str(getattr(meta, "TransferSyntaxUID", "") or "")
    if f.pixel_offset is None or not syntax or syntax in _DEFLATED:
        return None
    order = ">" if syntax == _EXPLICIT_BE else "<"
    fh.seek(f.pixel_offset)
    head = fh.read(12)
    if len(head) < 8:
        return None
    group, element = struct.unpack_from(order + "HH", head, 0)
    tag = (group << 16) | element
    if tag not in PIXEL_TAGS:
        return None
    if syntax == _IMPLICIT_LE:
        (length,), start = struct.unpack_from("<I", head, 4), 8
    elif head[4:6] in _LONG_VRS:
        if len(head) < 12:
            return None
        (length,), start = struct.unpack_from(order + "I", head, 8), 12
    else:
        (length,), start = struct.unpack_from(order + "H", head, 6), 8
    return tag, f.pixel_offset + start, length


def pixel_extent(f: DicomFile) -> Optional[Tuple[int, int]]:
    """(offset, length) of `f`'s pixel data element when it ends the file exactly, else None."""
    meta = getattr(f.ds, "file_meta", None)
    if str(getattr(meta, "TransferSyntaxUID", "") or "") == _EXPLICIT_BE:
        return None
    with open(f.path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        found = pixel_element(f, fh)
        if found is None or found[0] != PIXEL_DATA_TAG:
            return None
        _, start, length = found
        end = encapsulated_items(fh, start, size)[0] if length == 0xFFFFFFFF else start + length
    return (f.pixel_offset, size - f.pixel_offset) if end == size else None


def write_header(fh: BinaryIO, ds: Dataset) -> None:
    """Write preamble, file meta and `ds` (a header without pixel data) in the meta's transfer syntax.

    What `pydicom.dcmwrite` does for a header whose file meta is already complete and whose
    syntax `pixel_extent` accepted (neither deflated nor big endian), minus its defensive deep
    copy of the file meta, which costs as much as writing the rest.
    """
    fp = DicomFileLike(fh)
    fp.write(getattr(ds, "preamble", None) or b"\0" * 128)
    fp.write(b"DICM")
    write_file_meta_info(fp, ds.file_meta, enforce_standard=True)
    fp.is_little_endian = True
    fp.is_implicit_VR = str(ds.file_meta.TransferSyntaxUID) == _IMPLICIT_LE
    write_dataset(fp, ds)


def copy_extent(path: "os.PathLike[str]", extent: Tuple[int, int], out: IO[bytes]) -> None:
    """Append bytes [offset, end of file) of `path` to `out`, in the kernel where it can."""
    offset, length = extent
    out.flush()
    with open(path, "rb") as src:
        try:
            while length > 0:
                n = os.copy_file_range(src.fileno(), out.fileno(), length, offset)
                if n <= 0:
                    break
                offset, length = offset + n, length - n
        except (AttributeError, OSError):  # no copy_file_range here, or the file systems refuse it
            pass
        if length > 0:
            src.seek(offset)
            out.seek(0, os.SEEK_END)
            shutil.copyfileobj(src, out)
