"""Logarithmic compression of intensities, useful for PET uptake values spanning decades."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Tuple

import numpy as np

from ..volume import Volume
from .masks import intensities
from .registry import register


@dataclass(frozen=True)
class LogParams:
    offset: float = field(default=1.0, metadata={"min": 1e-12, "help": "added before the log; 1 gives log1p"})


@register("log", LogParams)
def log_transform(image: Volume, label: Optional[Volume], p: LogParams) -> Tuple[Volume, Optional[Volume]]:
    """log(max(x, 0) + offset); negative values (noise below zero) map to log(offset)."""
    values = intensities(image)
    out = np.maximum(values, values.dtype.type(0))
    out += values.dtype.type(p.offset)
    np.log(out, out=out)
    return image.with_values(out), label
