"""Linear rescaling of this image's minimum and maximum to a range such as [0, 1] or [-1, 1]."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Tuple

import numpy as np

from ..errors import MedPrepError
from ..volume import Volume
from .masks import intensities
from .registry import register


@dataclass(frozen=True)
class MinMaxParams:
    out_min: float = field(default=0.0)
    out_max: float = field(default=1.0)

    def check(self) -> Optional[str]:
        return "out_min must be below out_max" if self.out_min >= self.out_max else None


@register("minmax", MinMaxParams, normalizes=True)
def minmax(image: Volume, label: Optional[Volume], p: MinMaxParams) -> Tuple[Volume, Optional[Volume]]:
    """Map [min, max] of the image linearly onto [out_min, out_max]."""
    values = intensities(image)
    lo, hi = float(values.min()), float(values.max())
    if hi == lo:
        raise MedPrepError(f"step 'minmax': the image is constant ({lo})", hint="drop the minmax step")
    kind = values.dtype.type
    out = np.subtract(values, kind(lo))
    out *= kind((p.out_max - p.out_min) / (hi - lo))
    out += kind(p.out_min)
    return image.with_values(out), label
