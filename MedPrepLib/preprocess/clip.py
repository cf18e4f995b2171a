"""Clip intensities to a window given as level/width or as min/max."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Tuple

import numpy as np

from ..volume import Volume
from .masks import intensities
from .registry import register


@dataclass(frozen=True)
class ClipParams:
    level: Optional[float] = field(default=None, metadata={"help": "window centre (with width)"})
    width: Optional[float] = field(default=None, metadata={"min": 0.0, "help": "window width (with level)"})
    min: Optional[float] = field(default=None, metadata={"help": "lower bound (with or without max)"})
    max: Optional[float] = field(default=None, metadata={"help": "upper bound (with or without min)"})

    def check(self) -> Optional[str]:
        by_window = self.level is not None or self.width is not None
        by_bounds = self.min is not None or self.max is not None
        if by_window == by_bounds:
            return "give either level and width, or min and/or max"
        if by_window and (self.level is None or self.width is None):
            return "level and width go together"
        if self.min is not None and self.max is not None and self.min > self.max:
            return f"min {self.min} is above max {self.max}"
        return None

    def bounds(self) -> Tuple[Optional[float], Optional[float]]:
        if self.level is not None:
            return self.level - self.width / 2.0, self.level + self.width / 2.0
        return self.min, self.max


@register("clip", ClipParams)
def clip(image: Volume, label: Optional[Volume], p: ClipParams) -> Tuple[Volume, Optional[Volume]]:
    """Clip to [level - width/2, level + width/2] or [min, max]."""
    lo, hi = p.bounds()
    return image.with_values(np.clip(intensities(image), lo, hi)), label
