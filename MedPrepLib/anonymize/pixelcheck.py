"""Whether a file's pixel data is all there, checked against its image attributes without decoding.

A de-identified copy of a damaged file would be published as good data, so the tree writer
withholds such files (unless asked to keep them). Native pixel data must hold exactly Rows x
Columns x SamplesPerPixel x frames x BitsAllocated bits (pydicom's expected length, which knows
1-bit and YBR_FULL_422 packing), plus the padding byte that makes an odd length even. Encapsulated
pixel data must end with its sequence delimiter inside the file, and hold a fragment for every
frame (video streams excepted: one stream holds all frames).
"""
from __future__ import annotations

import os
import types
from typing import Optional

import pydicom
from pydicom.dataset import Dataset

from ..dicomfile import DicomFile
from ..pixeldata import (
    DEFLATED,
    DOUBLE_FLOAT_PIXEL_DATA_TAG,
    FLOAT_PIXEL_DATA_TAG,
    PIXEL_TAGS,
    encapsulated_items,
    pixel_element,
    transfer_syntax,
)
from ..values import as_int

try:  # pydicom >= 3
    from pydicom.pixels.utils import get_expected_length
except ImportError:  # pydicom 2.4
    from pydicom.pixel_data_handlers.util import get_expected_length

_VIDEO = "1.2.840.10008.1.2.4.10"  # MPEG-2, MPEG-4 and HEVC: 1.2.840.10008.1.2.4.100 to .108
_FLOAT_BITS = {FLOAT_PIXEL_DATA_TAG: 32, DOUBLE_FLOAT_PIXEL_DATA_TAG: 64}


def _frames(ds: Dataset) -> int:
    return max(1, as_int(ds.get("NumberOfFrames")) or 1)


def _expected(ds: Dataset, tag: int) -> Optional[int]:
    # pydicom reads only these attributes; a namespace holding them costs a tenth of a Dataset
    # copy, and this runs once per file.
    try:
        image = types.SimpleNamespace(
            Rows=int(ds.Rows), Columns=int(ds.Columns), SamplesPerPixel=int(ds.get("SamplesPerPixel") or 1),
            BitsAllocated=_FLOAT_BITS.get(tag) or int(ds.BitsAllocated), NumberOfFrames=_frames(ds),
            PhotometricInterpretation=str(ds.get("PhotometricInterpretation", "") or "").strip())
        return int(get_expected_length(image, unit="bytes"))
    except (AttributeError, KeyError, TypeError, ValueError):
        return None  # an attribute is missing or unusable: nothing to check against


def _native(length: int, expected: Optional[int]) -> Optional[str]:
    if expected is None or length == expected or (expected % 2 and length == expected + 1):
        return None
    return (f"pixel data length mismatch: {length} bytes where Rows x Columns x samples x frames x "
            f"bits give {expected}")


def pixel_problem(f: DicomFile) -> Optional[str]:
    """Why the pixel data of `f` cannot be complete, or None when it can."""
    ds = f.ds
    syntax = transfer_syntax(ds)
    if syntax in DEFLATED:  # the offsets refer to the inflated stream: let pydicom inflate it
        try:
            full = pydicom.dcmread(str(f.path), force=True)
            tag = next(t for t in PIXEL_TAGS if t in full)
            return _native(len(full[tag].value), _expected(full, tag))
        except StopIteration:
            return None
        except Exception as exc:  # noqa: BLE001 - pydicom raises many kinds on corrupt input
            return f"pixel data cut short: cannot be inflated ({exc.__class__.__name__})"
    with open(f.path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        found = pixel_element(f, fh, syntax)
        if found is None:
            return "pixel data cut short: the file ends inside the pixel data element's header"
        tag, start, length = found.tag, found.value_offset, found.length
        if not found.encapsulated:
            if start + length > size:
                return f"pixel data cut short: the file holds {size - start} of its {length} bytes"
            return _native(length, _expected(ds, tag))
        end, items = encapsulated_items(fh, start, size)
    if end is None:
        if start + sum(8 + n for n in items) + 8 > size:
            return "pixel data cut short: the file ends inside the compressed pixel data"
        return "pixel data malformed: an item of the compressed pixel data is not an item"
    fragments, frames = len(items) - 1, _frames(ds)
    if fragments < 1:
        return "pixel data incomplete: no compressed frame"
    if not syntax.startswith(_VIDEO) and fragments < frames:
        return f"pixel data incomplete: {fragments} fragment(s) for {frames} frames"
    if items[0] and items[0] != 4 * frames:
        return f"pixel data incomplete: the offset table lists {items[0] // 4} frames, not {frames}"
    return None
