"""nnU-Net's CT normalisation: clip to the 0.5/99.5 percentiles of the training foreground, then
z-score with the foreground mean and std.

Foreground is the label map's non-zero voxels, pooled over the training cases. Mean and std are
exact over all foreground voxels; the percentiles come from a seeded random sample of at most
`samples_per_case` voxels per case (nnU-Net samples as well).
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from ..errors import MedPrepError
from ..volume import Volume
from .masks import intensities, masked, select
from .moments import mean_std, moments
from .registry import register
from .zscore import standardize


@dataclass(frozen=True)
class NnunetCtParams:
    lower: Optional[float] = field(default=None, metadata={"help": "clip value; from the statistics pass"})
    upper: Optional[float] = field(default=None, metadata={"help": "clip value; from the statistics pass"})
    mean: Optional[float] = field(default=None, metadata={"help": "from the statistics pass"})
    std: Optional[float] = field(default=None, metadata={"min": 0.0, "help": "from the statistics pass"})
    lower_percentile: float = field(default=0.5, metadata={"min": 0.0, "max": 100.0})
    upper_percentile: float = field(default=99.5, metadata={"min": 0.0, "max": 100.0})
    samples_per_case: int = field(default=100000, metadata={"min": 100})

    def check(self) -> Optional[str]:
        given = [v is None for v in (self.lower, self.upper, self.mean, self.std)]
        if any(given) and not all(given):
            return "lower, upper, mean and std go together"
        if self.lower_percentile >= self.upper_percentile:
            return "lower_percentile must be below upper_percentile"
        return None


def fit(image: Volume, label: Optional[Volume], p: NnunetCtParams) -> Dict[str, Any]:
    values = intensities(image)
    fg = masked(values, select(values, label, "label", "nnunet_ct"), "nnunet_ct")
    # Seeded by the data itself, so a rerun draws the same sample whatever the worker order.
    rng = np.random.default_rng(zlib.crc32(fg[:: max(1, fg.size // 4096)].tobytes()))
    sample = fg if fg.size <= p.samples_per_case else rng.choice(fg, p.samples_per_case, replace=False)
    return {"moments": moments(fg), "sample": np.asarray(sample, np.float64)}


def combine(parts: List[Dict[str, Any]], p: NnunetCtParams) -> Dict[str, Any]:
    mean, std = mean_std(part["moments"] for part in parts)
    lo, hi = np.percentile(np.concatenate([part["sample"] for part in parts]),
                           [p.lower_percentile, p.upper_percentile])
    return {"lower": float(lo), "upper": float(hi), "mean": mean, "std": std}


@register("nnunet_ct", NnunetCtParams, fit=fit, combine=combine,
          fitted=("lower", "upper", "mean", "std"), normalizes=True)
def nnunet_ct(image: Volume, label: Optional[Volume], p: NnunetCtParams) -> Tuple[Volume, Optional[Volume]]:
    """Clip to the training foreground percentiles, then z-score with its mean and std."""
    if p.mean is None:
        raise MedPrepError("step 'nnunet_ct' has no statistics",
                           hint="run the dataset with `medprep run` (labelled training cases give them), "
                                "pass --statistics FILE, or set lower, upper, mean and std")
    values = intensities(image)
    clipped = np.clip(values, values.dtype.type(p.lower), values.dtype.type(p.upper))
    return image.with_values(standardize(clipped, p.mean, max(p.std, 1e-8), "nnunet_ct")), label
