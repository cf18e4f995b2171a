"""Modality LUT: stored pixel values to real-world values (Hounsfield units for CT) via slope and intercept."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Tuple

import numpy as np

from ..volume import Volume
from .registry import register

INT16 = np.iinfo(np.int16)


@dataclass(frozen=True)
class ModalityLutParams:
    dtype: str = field(default="auto", metadata={
        "choices": ["auto", "float32", "float64", "int16", "int32"],
        "help": "auto: int16 when the values are exact integers that fit (CT HU), else float32; "
                "integer types round"})


def exact_int16(image: Volume) -> Optional[np.ndarray]:
    """The real-world values as int16 when integer slope and intercept keep them exact and in range.

    Half the memory of float32 for CT, which every later step and SimpleITK copy benefits from.
    """
    stored, slope, inter = image.array, float(image.slope), float(image.inter)
    if not np.issubdtype(stored.dtype, np.integer) or not (slope.is_integer() and inter.is_integer()):
        return None
    if stored.size == 0 or (stored.dtype == np.int16 and slope == 1 and inter == 0):
        return stored.astype(np.int16, copy=False)  # already real-world values: no copy
    lo, hi, s, b = int(stored.min()), int(stored.max()), int(slope), int(inter)
    if min(lo * s + b, hi * s + b) < INT16.min or max(lo * s + b, hi * s + b) > INT16.max:
        return None
    # In int16 throughout when the intermediate products fit, else via int32.
    work = np.int16 if all(INT16.min <= v <= INT16.max for v in (lo, hi, lo * s, hi * s)) else np.int32
    out = np.multiply(stored, work(s), dtype=work, casting="unsafe") if s != 1 else None
    if out is None:
        out = np.add(stored, work(b), dtype=work, casting="unsafe")  # one pass for the usual slope 1
    elif b:
        out += work(b)
    return out if out.dtype == np.int16 else out.astype(np.int16)


@register("modality_lut", ModalityLutParams)
def modality_lut(image: Volume, label: Optional[Volume],
                 p: ModalityLutParams) -> Tuple[Volume, Optional[Volume]]:
    """Apply RescaleSlope/RescaleIntercept (the volume's slope and inter) so voxels hold real-world values."""
    values = exact_int16(image) if p.dtype == "auto" else None
    if values is None:
        dtype = np.dtype("float32" if p.dtype == "auto" else p.dtype)
        if np.issubdtype(dtype, np.floating):
            values = image.scaled(dtype.type)
            values = values if values.dtype == dtype else values.astype(dtype)
        else:
            info = np.iinfo(dtype)
            values = np.clip(np.rint(image.scaled(np.float64)), info.min, info.max).astype(dtype)
    return image.with_values(values), label
