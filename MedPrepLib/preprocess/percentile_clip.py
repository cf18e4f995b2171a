"""Clip intensities to percentiles of this image (robust to outliers)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Tuple

import numpy as np

from ..volume import Volume
from .masks import MASK_CHOICES, intensities, masked, select
from .registry import register


@dataclass(frozen=True)
class PercentileClipParams:
    lower: float = field(default=0.5, metadata={"min": 0.0, "max": 100.0, "help": "percentile, 0-100"})
    upper: float = field(default=99.5, metadata={"min": 0.0, "max": 100.0, "help": "percentile, 0-100"})
    mask: str = field(default="all", metadata={"choices": MASK_CHOICES})

    def check(self) -> Optional[str]:
        return f"lower {self.lower} is above upper {self.upper}" if self.lower > self.upper else None


@register("percentile_clip", PercentileClipParams)
def percentile_clip(image: Volume, label: Optional[Volume],
                    p: PercentileClipParams) -> Tuple[Volume, Optional[Volume]]:
    """Clip to the [lower, upper] percentiles of the voxels in the mask."""
    values = intensities(image)
    inside = masked(values, select(values, label, p.mask, "percentile_clip"), "percentile_clip")
    lo, hi = np.percentile(inside, [p.lower, p.upper])
    return image.with_values(np.clip(values, values.dtype.type(lo), values.dtype.type(hi))), label
