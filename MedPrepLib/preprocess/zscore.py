"""Per-subject z-score: subtract the mean, divide by the standard deviation of this image."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Tuple

import numpy as np

from ..errors import MedPrepError
from ..volume import Volume
from .masks import MASK_CHOICES, intensities, masked, select
from .registry import register


@dataclass(frozen=True)
class ZScoreParams:
    mask: str = field(default="all", metadata={"choices": MASK_CHOICES,
                                               "help": "voxels the mean and std are computed over"})
    zero_outside: bool = field(default=False, metadata={"help": "set voxels outside the mask to 0 (nnU-Net)"})


def standardize(values: np.ndarray, mean: float, std: float, step: str) -> np.ndarray:
    if not std > 0:
        raise MedPrepError(f"step '{step}': the standard deviation is {std}, the image is constant",
                           hint="drop the z-score step or use a mask that selects varying voxels")
    out = np.subtract(values, values.dtype.type(mean))
    out /= values.dtype.type(std)
    return out


@register("zscore", ZScoreParams, normalizes=True)
def zscore(image: Volume, label: Optional[Volume], p: ZScoreParams) -> Tuple[Volume, Optional[Volume]]:
    """(x - mean) / std, the statistics taken over the chosen mask."""
    values = intensities(image)
    mask = select(values, label, p.mask, "zscore")
    inside = masked(values, mask, "zscore")
    # numpy's pairwise float32 summation is accurate to ~1e-7 here and twice as fast as float64.
    out = standardize(values, float(inside.mean()), float(inside.std()), "zscore")
    if p.zero_outside and mask is not None:
        out[~mask] = 0
    return image.with_values(out), label
