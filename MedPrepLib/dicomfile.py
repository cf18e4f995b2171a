"""Recognise DICOM files by content and read their headers without decoding pixels.

A file is DICOM when it carries the Part 10 preamble ("DICM" at byte 128) or, for files written
without one, when it starts with a well-formed group 0x0002 or 0x0008 element. File names and
extensions are never consulted.
"""
from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Any, Optional, Tuple, Union

import pydicom
from pydicom.dataset import Dataset, FileMetaDataset

from .errors import NotDicomError
from .pixeldata import PIXEL_TAGS

# Value representations accepted when sniffing a file with no preamble (explicit VR).
_VRS = {b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FL", b"FD", b"IS", b"LO", b"LT", b"OB",
        b"OD", b"OF", b"OL", b"OV", b"OW", b"PN", b"SH", b"SL", b"SQ", b"SS", b"ST", b"SV", b"TM",
        b"UC", b"UI", b"UL", b"UN", b"UR", b"US", b"UT", b"UV"}



def has_dicom_signature(head: bytes) -> bool:
    """Whether the first bytes of a file look like DICOM (with or without the 128-byte preamble)."""
    if len(head) >= 132 and head[128:132] == b"DICM":
        return True
    if len(head) < 8:
        return False
    group, element = struct.unpack("<HH", head[:4])
    if group not in (0x0002, 0x0008) or element > 0x0100:
        return False
    if head[4:6] in _VRS:
        return True
    # Implicit VR: a 4-byte length that is small and even (or the undefined length).
    (length,) = struct.unpack("<I", head[4:8])
    return length < 1024 or length == 0xFFFFFFFF


def is_dicom(path: Union[str, Path]) -> bool:
    try:
        with open(path, "rb") as fh:
            return has_dicom_signature(fh.read(132))
    except OSError:
        return False


# What reading a file's pixel data takes from its header (see pixels.py).
PIXEL_KEYWORDS = ("Rows", "Columns", "BitsAllocated", "BitsStored", "PixelRepresentation", "SamplesPerPixel",
                  "NumberOfFrames", "PhotometricInterpretation", "PlanarConfiguration")


def pixel_header(ds: Dataset) -> Dataset:
    """The attributes of `ds` that reading its pixel data needs, with its transfer syntax."""
    out = Dataset()
    for keyword in PIXEL_KEYWORDS:
        if keyword in ds:
            out[keyword] = ds[keyword]
    ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    out.file_meta = FileMetaDataset()
    if ts is not None:
        out.file_meta.TransferSyntaxUID = ts
    return out


# The pixel attributes as plain values: (transfer syntax UID, ((keyword, value), ...)).
PixelState = Tuple[Optional[str], Tuple[Tuple[str, Any], ...]]


def _plain(value: Any) -> Any:
    """An attribute value as Python's own types (these attributes hold integers)."""
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (bytes, str)) and not str(value).strip():
        return value
    try:
        return int(value)
    except (TypeError, ValueError):
        return str(value)


def pixel_state(ds: Dataset) -> PixelState:
    """`pixel_header(ds)` as plain values, cheap to send to another process."""
    ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    return (str(ts) if ts is not None else None,
            tuple((k, _plain(ds[k].value)) for k in PIXEL_KEYWORDS if k in ds))


def pixel_dataset(state: PixelState) -> Dataset:
    """The Dataset `pixel_header` gives, from `pixel_state`."""
    ts, items = state
    out = Dataset()
    for keyword, value in items:
        setattr(out, keyword, value)
    out.file_meta = FileMetaDataset()
    if ts is not None:
        out.file_meta.TransferSyntaxUID = ts
    return out


class DicomFile:
    """One DICOM file: its header (no pixel data loaded) and where its pixel data starts.

    Sent to another process (a worker of a dataset run), a DicomFile carries its path, offsets and
    the few attributes that reading its pixels needs (`pixel_ds`); the whole header is read again
    there only when asked for. Pickling a pydicom Dataset is slow (a 640-file Philips series took
    2.2 s to pickle in the sending process and 2.4 s to unpickle), and parsing it is no faster
    (2.0 s): a series arrives with one header to parse, its first file's, for the metadata. Even
    the few pixel attributes travel as plain values (`pixel_state`), made into a Dataset only where
    they are used: as a Dataset they cost 5 ms per file to pickle, which the driver of a DICOM run
    paid for every file it took from the header readers and passed on to the case workers.
    """

    __slots__ = ("path", "_ds", "_pixel_ds", "_pixel_state", "pixel_offset", "size")

    def __init__(self, path: Path, ds: Optional[Dataset], pixel_offset: Optional[int], size: int,
                 pixel_ds: Optional[Dataset] = None, pixel_state: Optional[PixelState] = None):
        self.path = path
        self._ds = ds
        self._pixel_ds = pixel_ds
        self._pixel_state = pixel_state
        self.pixel_offset = pixel_offset  # file offset of the (7FE0,0010) element; None when absent
        self.size = size

    @property
    def ds(self) -> Dataset:
        if self._ds is None:
            again = read_header(self.path)
            if (again.size, again.pixel_offset) != (self.size, self.pixel_offset):
                raise NotDicomError("the file changed after the folder was scanned", self.path)
            self._ds = again._ds
        return self._ds

    @property
    def pixel_ds(self) -> Dataset:
        """The header, or if it has not been read in this process, the part of it pixel reading needs."""
        if self._ds is None and self._pixel_ds is None and self._pixel_state is not None:
            self._pixel_ds = pixel_dataset(self._pixel_state)
        if self._ds is None and self._pixel_ds is not None:
            return self._pixel_ds
        return self.ds

    @property
    def has_pixels(self) -> bool:
        return self.pixel_offset is not None

    def __reduce__(self):
        state = self._pixel_state
        if state is None or self._ds is not None or self._pixel_ds is not None:
            state = pixel_state(self.pixel_ds)
        return DicomFile, (self.path, None, self.pixel_offset, self.size, None, state)

    def __repr__(self) -> str:
        return f"DicomFile({str(self.path)!r}, pixel_offset={self.pixel_offset}, size={self.size})"


def read_header(path: Union[str, Path]) -> DicomFile:
    """Parse a file's header up to its pixel data.

    Raises NotDicomError for anything that is not a readable DICOM data set.
    """
    path = Path(path)
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as fh:
            head = fh.read(132)
            if not has_dicom_signature(head):
                raise NotDicomError("not a DICOM file", path)
            fh.seek(0)
            ds = pydicom.dcmread(fh, stop_before_pixels=True, force=True)
            # pydicom rewinds to the start of the pixel element when it stops before it.
            pos = fh.tell()
            tail = fh.read(8)
    except NotDicomError:
        raise
    except (OSError, MemoryError, OverflowError) as exc:
        raise NotDicomError(f"cannot read file: {exc.__class__.__name__}", path) from exc
    except Exception as exc:  # noqa: BLE001 - pydicom raises many kinds on corrupt input
        # One line whatever the exception says (decoder messages span several lines).
        detail = " ".join(str(exc).split())[:80]
        raise NotDicomError(f"unreadable DICOM header: {exc.__class__.__name__}: {detail}", path) from exc
    offset = None
    if len(tail) >= 4:
        little = not _is_big_endian(ds)
        group, element = struct.unpack("<HH" if little else ">HH", tail[:4])
        if ((group << 16) | element) in PIXEL_TAGS:
            offset = pos
    return DicomFile(path=path, ds=ds, pixel_offset=offset, size=size)


def _is_big_endian(ds: Dataset) -> bool:
    ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    return str(ts) == "1.2.840.10008.1.2.2"
