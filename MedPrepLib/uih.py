"""United Imaging (UIH) grids: one whole volume per file, its slices tiled in one image.

The facts are UIH's private "Image Private Header" block in group 0065, as dcm2niix reads them
(nii_dicom.cpp, kNumberOfImagesInGridUIH and neighbours; GDCM's SplitGridFilter reads the same):

    (0065,xx50) DS  NumberOfImagesInGrid: slices tiled in the image (absent or 1: no grid)
    (0065,xx51) SQ  one item per slice, each with the slice's own ImagePositionPatient
    (0065,xx09) FD  diffusion b-value
    (0065,xx37) FD  diffusion gradient direction, already in image (row, column, slice) space

Unlike a Siemens mosaic, a grid's ImageOrientationPatient and the per-slice positions describe the
tiles themselves: no shift from the corner of the tiled image (dcm2niix: "only for Siemens mosaic:
ignore for UIH grid"). Tiles fill the image row by row, ceil(sqrt(n)) across.
"""
from __future__ import annotations

import math
from typing import List, Optional, Tuple

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

CREATOR = "Image Private Header"
GROUP = 0x0065
_GRID_COUNT, _GRID_ITEMS, _BVALUE, _GRADIENT = 0x50, 0x51, 0x09, 0x37

Vec3 = Tuple[float, float, float]


def is_uih(ds: Dataset) -> bool:
    maker = str(ds.get("Manufacturer", "") or "").upper()
    return maker.startswith("UIH") or maker.startswith("UNITED IMAGING")


def _element(ds: Dataset, offset: int):
    try:
        block = ds.private_block(GROUP, CREATOR)
        return block[offset] if offset in block else None
    except (KeyError, ValueError):
        return None


def grid_slices(ds: Dataset) -> int:
    """Number of slices tiled in this image; 0 when it is not a UIH grid."""
    if not is_uih(ds):
        return 0
    elem = _element(ds, _GRID_COUNT)
    try:
        n = int(round(float(elem.value))) if elem is not None else 0
    except (TypeError, ValueError):
        return 0
    return n if n > 1 else 0


def grid_shape(n: int, rows: int, cols: int) -> Optional[Tuple[int, int]]:
    """(tiles down, tiles across) of an n-slice grid in a rows x cols image, or None if it does not divide."""
    across = int(math.ceil(math.sqrt(n)))
    down = int(math.ceil(n / across))
    if rows % down or cols % across:
        return None
    return down, across


def slice_positions(ds: Dataset, n: int) -> Optional[Tuple[Vec3, ...]]:
    """The ImagePositionPatient of each tiled slice, in grid order; None unless all n are given."""
    elem = _element(ds, _GRID_ITEMS)
    items = elem.value if elem is not None and elem.VR == "SQ" else None
    if not items or len(items) != n:
        return None
    out: List[Vec3] = []
    for item in items:
        try:
            pos = tuple(float(v) for v in item.ImagePositionPatient)
        except (AttributeError, TypeError, ValueError):
            return None
        if len(pos) != 3 or not all(math.isfinite(v) for v in pos):
            return None
        out.append(pos)  # type: ignore[arg-type]
    return tuple(out)


def diffusion(ds: Dataset) -> Tuple[Optional[float], Optional[Vec3]]:
    """(b-value, gradient in image space) from the private block; None where absent."""
    b = g = None
    elem = _element(ds, _BVALUE)
    if elem is not None:
        value = elem.value
        if isinstance(value, (list, tuple, MultiValue)):
            value = value[0] if len(value) else None
        try:
            b = float(value) if value is not None else None
        except (TypeError, ValueError):
            b = None
    elem = _element(ds, _GRADIENT)
    try:
        vals = tuple(float(v) for v in elem.value) if elem is not None else ()
        g = vals if len(vals) == 3 else None  # type: ignore[assignment]
    except (TypeError, ValueError):
        g = None
    return b, g
