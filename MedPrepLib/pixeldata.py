"""The pixel data element of a DICOM file, located from the bytes of its header without decoding.

The one parser behind anonymize's raw pixel copy (anonymize/rawpixels.py), its completeness check
(anonymize/pixelcheck.py) and convert's direct read of native pixels (pixels.py). Discovery has
recorded where the element starts (`DicomFile.pixel_offset`); here its header is read: the tag, the
value's offset and length, and for encapsulated (compressed) pixel data the items that follow.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO, List, Optional, Tuple

if TYPE_CHECKING:
    from .dicomfile import DicomFile

PIXEL_DATA_TAG = 0x7FE00010
FLOAT_PIXEL_DATA_TAG = 0x7FE00008
DOUBLE_FLOAT_PIXEL_DATA_TAG = 0x7FE00009
# Integer pixel data first: where a file has several (it should not), that is the image.
PIXEL_TAGS = (PIXEL_DATA_TAG, FLOAT_PIXEL_DATA_TAG, DOUBLE_FLOAT_PIXEL_DATA_TAG)
IMPLICIT_LE = "1.2.840.10008.1.2"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
EXPLICIT_BE = "1.2.840.10008.1.2.2"
DEFLATED = ("1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.8.1")
# Explicit VRs whose length is 4 bytes after 2 reserved ones (PS3.5 Table 7.1-1), the rest 2 bytes.
LONG_VRS = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"})
UNDEFINED_LENGTH = 0xFFFFFFFF
_ITEM, _SEQUENCE_END = 0xFFFEE000, 0xFFFEE0DD


@dataclass(frozen=True)
class PixelElement:
    """Where a file's pixel element and its value lie."""

    tag: int
    value_offset: int        # file offset of the value (of the first item when encapsulated)
    length: int              # value length; UNDEFINED_LENGTH when encapsulated
    explicit_vr: bool
    little_endian: bool

    @property
    def encapsulated(self) -> bool:
        return self.length == UNDEFINED_LENGTH


def transfer_syntax(ds) -> str:
    """The transfer syntax UID of a header's file meta ("" when it has none)."""
    return str(getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "") or "")


def pixel_element(f: "DicomFile", fh: BinaryIO, syntax: str) -> Optional[PixelElement]:
    """`f`'s pixel element read from `fh` (the open file) at `f.pixel_offset`, in transfer syntax `syntax`.

    None when there is no such element, the syntax is unknown or deflated (the offsets then refer
    to the inflated stream), or the element's header is cut off.
    """
    if f.pixel_offset is None or not syntax or syntax in DEFLATED:
        return None
    little = syntax != EXPLICIT_BE
    order = "<" if little else ">"
    fh.seek(f.pixel_offset)
    head = fh.read(12)
    if len(head) < 8:
        return None
    group, element = struct.unpack_from(order + "HH", head, 0)
    tag = (group << 16) | element
    if tag not in PIXEL_TAGS:
        return None
    explicit = syntax != IMPLICIT_LE
    if not explicit:
        (length,), start = struct.unpack_from("<I", head, 4), 8
    elif head[4:6] in LONG_VRS:
        if len(head) < 12:
            return None
        (length,), start = struct.unpack_from(order + "I", head, 8), 12
    else:
        (length,), start = struct.unpack_from(order + "H", head, 6), 8
    return PixelElement(tag=tag, value_offset=f.pixel_offset + start, length=length, explicit_vr=explicit,
                        little_endian=little)


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
        if tag != _ITEM or length == UNDEFINED_LENGTH:
            return None, lengths
        lengths.append(length)
        pos += 8 + length
    return None, lengths
