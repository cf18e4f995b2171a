"""Modality LUT: stored pixel values to real-world values (Hounsfield units for CT) via slope and intercept."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Tuple

import numpy as np

from ..volume import Volume
from .registry import register


@dataclass(frozen=True)
class ModalityLutParams:
    dtype: str = field(default="float32", metadata={"choices": ["float32", "float64", "int16", "int32"],
                                                    "help": "integer types round; int16 suits CT HU"})


@register("modality_lut", ModalityLutParams)
def modality_lut(image: Volume, label: Optional[Volume],
                 p: ModalityLutParams) -> Tuple[Volume, Optional[Volume]]:
    """Apply RescaleSlope/RescaleIntercept (the volume's slope and inter) so voxels hold real-world values."""
    dtype = np.dtype(p.dtype)
    if np.issubdtype(dtype, np.floating):
        values = image.scaled(dtype.type)
        values = values if values.dtype == dtype else values.astype(dtype)
    else:
        values = image.scaled(np.float64)
        info = np.iinfo(dtype)
        values = np.clip(np.rint(values), info.min, info.max).astype(dtype)
    return image.with_array(values), label
