"""Dataset-level z-score: mean and std over the voxels of all training cases, applied to every case.

A first pass (`fit` per training case, `combine` over them) computes the statistics; the second
pass applies them. Given `mean` and `std` explicitly, no first pass is needed.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from ..errors import MedPrepError
from ..volume import Volume
from .masks import MASK_CHOICES, intensities, masked, select
from .moments import Moments, mean_std, moments
from .registry import register
from .zscore import standardize


@dataclass(frozen=True)
class DatasetZScoreParams:
    mean: Optional[float] = field(default=None, metadata={"help": "from the statistics pass when absent"})
    std: Optional[float] = field(default=None, metadata={"min": 0.0,
                                                         "help": "from the statistics pass when absent"})
    mask: str = field(default="all", metadata={"choices": MASK_CHOICES,
                                               "help": "voxels pooled into the statistics"})

    def check(self) -> Optional[str]:
        return "mean and std go together" if (self.mean is None) != (self.std is None) else None


def fit(image: Volume, label: Optional[Volume], p: DatasetZScoreParams) -> Moments:
    values = intensities(image)
    return moments(masked(values, select(values, label, p.mask, "dataset_zscore"), "dataset_zscore"))


def combine(parts: List[Moments], p: DatasetZScoreParams) -> Dict[str, Any]:
    mean, std = mean_std(parts)
    return {"mean": mean, "std": std}


@register("dataset_zscore", DatasetZScoreParams, fit=fit, combine=combine,
          fitted=("mean", "std"), normalizes=True)
def dataset_zscore(image: Volume, label: Optional[Volume],
                   p: DatasetZScoreParams) -> Tuple[Volume, Optional[Volume]]:
    """(x - dataset mean) / dataset std."""
    if p.mean is None:
        raise MedPrepError("step 'dataset_zscore' has no statistics",
                           hint="run the dataset with `medprep run` (training cases give them), "
                                "pass --statistics FILE, or set mean and std")
    return image.with_values(standardize(intensities(image), p.mean, p.std, "dataset_zscore")), label
