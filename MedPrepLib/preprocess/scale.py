"""Fixed linear scaling, e.g. 1/255 for 8-bit radiographs or 1/3071 for CT."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Tuple

import numpy as np

from ..volume import Volume
from .masks import intensities
from .registry import register


@dataclass(frozen=True)
class ScaleParams:
    divide_by: float = field(default=1.0, metadata={"min": 1e-12, "help": "e.g. 255 or 3071"})
    subtract: float = field(default=0.0, metadata={"help": "subtracted before dividing"})


@register("scale", ScaleParams, normalizes=True)
def scale(image: Volume, label: Optional[Volume], p: ScaleParams) -> Tuple[Volume, Optional[Volume]]:
    """(x - subtract) / divide_by."""
    values = intensities(image)
    kind = values.dtype.type
    out = np.divide(values, kind(p.divide_by))
    if p.subtract:  # x/d - s/d: one pass over the voxels when nothing is subtracted
        out -= kind(p.subtract / p.divide_by)
    return image.with_values(out), label
