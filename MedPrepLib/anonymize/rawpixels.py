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
from typing import IO, BinaryIO, Optional, Tuple

from pydicom.dataset import Dataset
from pydicom.filebase import DicomFileLike
from pydicom.filewriter import write_dataset, write_file_meta_info

from ..dicomfile import DicomFile
from ..pixeldata import EXPLICIT_BE, IMPLICIT_LE, PIXEL_DATA_TAG, encapsulated_items, pixel_element, transfer_syntax

def pixel_extent(f: DicomFile) -> Optional[Tuple[int, int]]:
    """(offset, length) of `f`'s pixel data element when it ends the file exactly, else None."""
    syntax = transfer_syntax(f.ds)
    if syntax == EXPLICIT_BE:
        return None
    with open(f.path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        found = pixel_element(f, fh, syntax)
        if found is None or found.tag != PIXEL_DATA_TAG:
            return None
        start = found.value_offset
        end = encapsulated_items(fh, start, size)[0] if found.encapsulated else start + found.length
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
    fp.is_implicit_VR = str(ds.file_meta.TransferSyntaxUID) == IMPLICIT_LE
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
