"""Crop and/or pad to a fixed shape, around the centre of the image or of its foreground."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional, Sequence, Tuple

import numpy as np

from ..errors import MedPrepError
from ..volume import Volume, rgb_channels
from .registry import register


@dataclass(frozen=True)
class CropPadParams:
    shape: List[int] = field(metadata={"min": 1, "len": (2, 3),
                                       "help": "output voxel count along x, y[, z]; 2 values keep z"})
    centre: str = field(default="image", metadata={
        "choices": ["image", "foreground"],
        "help": "centre on the image, or on the bounding box of the label (or of non-zero voxels)"})
    fill: float = field(default=0.0, metadata={"help": "image value of padded voxels (labels pad with 0)"})


def window_start(image: Volume, label: Optional[Volume], p: CropPadParams) -> List[int]:
    """First voxel index (x, y, z) of the output window in the input, possibly negative (padding)."""
    size = list(image.shape_xyz[:3])
    shape = list(p.shape) + ([size[2]] if len(p.shape) == 2 else [])
    if p.centre == "image":
        return [(n - m) // 2 for n, m in zip(size, shape)]
    if label is not None:
        fg = label.array > 0
    else:
        values = image.scaled()
        if image.is_rgb:  # a voxel is foreground when any of its channels is
            values = np.stack(rgb_channels(values)).any(axis=0)
        fg = np.any(values != 0, axis=0) if values.ndim == 4 else values != 0
    if not fg.any():
        raise MedPrepError("step 'crop_pad': centre: foreground but the foreground is empty",
                           hint="use centre: image, or check the label map")
    starts = []
    for axis_xyz in range(3):
        other = tuple(a for a in range(3) if a != 2 - axis_xyz)
        hit = np.flatnonzero(fg.any(axis=other))
        centre = (int(hit[0]) + int(hit[-1]) + 1) // 2
        start = centre - shape[axis_xyz] // 2
        # Keep the window inside the image where it fits, so no field of view is wasted on padding.
        lo, hi = sorted((0, size[axis_xyz] - shape[axis_xyz]))
        starts.append(min(max(start, lo), hi))
    return starts


def crop_pad_array(array: np.ndarray, start_xyz: Sequence[int], shape_xyz: Sequence[int],
                   fill: float) -> np.ndarray:
    lead = array.shape[:-3]
    size_xyz = array.shape[::-1][:3]
    inside = all(s >= 0 and s + m <= n for s, m, n in zip(start_xyz, shape_xyz, size_xyz))
    shape = lead + tuple(reversed(shape_xyz))
    # A pure crop needs no fill pass over the output.
    out = np.empty(shape, dtype=array.dtype) if inside else np.full(shape, fill, dtype=array.dtype)
    src, dst = [], []
    for axis_xyz in (2, 1, 0):
        n = array.shape[len(lead) + 2 - axis_xyz]
        s, m = start_xyz[axis_xyz], shape_xyz[axis_xyz]
        lo, hi = max(s, 0), min(s + m, n)
        src.append(slice(lo, max(hi, lo)))
        dst.append(slice(lo - s, max(hi, lo) - s))
    out[(Ellipsis, *dst)] = array[(Ellipsis, *src)]
    return out


def _stored_fill(image: Volume, fill: float) -> Optional[float]:
    """The stored value whose real-world value is `fill`, or None when the stored type has none."""
    if image.is_rgb:  # the same value in R, G and B
        return fill if float(fill).is_integer() and 0 <= fill <= 255 else None
    if image.slope == 1.0 and image.inter == 0.0:
        return fill
    stored = (fill - image.inter) / image.slope
    kind = image.array.dtype.kind
    if kind == "f":
        return stored
    if kind in "iu" and float(stored).is_integer():
        info = np.iinfo(image.array.dtype)
        if info.min <= stored <= info.max:
            return int(stored)
    return None


@register("crop_pad", CropPadParams, spatial=True, colour=True)
def crop_pad(image: Volume, label: Optional[Volume], p: CropPadParams) -> Tuple[Volume, Optional[Volume]]:
    """Cut out or pad to `shape` voxels; the affine moves with the window, so positions are kept."""
    start = window_start(image, label, p)
    shape = list(p.shape) + ([image.shape_xyz[2]] if len(p.shape) == 2 else [])
    affine = image.affine.copy()
    affine[:3, 3] = image.affine[:3, :3] @ np.asarray(start, float) + image.affine[:3, 3]
    stored_fill = _stored_fill(image, p.fill)
    if stored_fill is None and image.is_rgb:
        raise MedPrepError(f"step 'crop_pad': fill {p.fill:g} is not a colour value",
                           hint="a colour (RGB) image pads with a whole number of 0 to 255 (each channel)")
    if stored_fill is None:
        out = image.with_values(crop_pad_array(image.scaled(), start, shape, p.fill), affine)
    else:
        # Cropping changes no value: the stored voxels and their rescale stay as they are.
        out = image.with_stored(crop_pad_array(image.array, start, shape, stored_fill), affine)
    if label is None:
        return out, None
    return out, label.with_stored(crop_pad_array(label.array, start, shape, 0), affine.copy())
