"""Modality LUT: stored pixel values to real-world values (Hounsfield units for CT) via slope and intercept."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Tuple

import numpy as np

from ..volume import Volume
from .registry import register


@dataclass(frozen=True)
class ModalityLutParams:
    dtype: str = field(default="auto", metadata={
        "choices": ["auto", "float32", "float64", "int16", "int32"],
        "help": "auto: int16 when the values are exact integers that fit (CT HU), else float32; "
                "integer types round"})


@register("modality_lut", ModalityLutParams)
def modality_lut(image: Volume, label: Optional[Volume],
                 p: ModalityLutParams) -> Tuple[Volume, Optional[Volume]]:
    """Apply RescaleSlope/RescaleIntercept (the volume's slope and inter) so voxels hold real-world values."""
    values = image.integer_values((np.int16,)) if p.dtype == "auto" else None
    if values is None:
        dtype = np.dtype("float32" if p.dtype == "auto" else p.dtype)
        if np.issubdtype(dtype, np.floating):
            values = image.scaled(dtype.type)
            values = values if values.dtype == dtype else values.astype(dtype)
        else:
            info = np.iinfo(dtype)
            values = np.clip(np.rint(image.scaled(np.float64)), info.min, info.max).astype(dtype)
    return image.with_values(values), label
