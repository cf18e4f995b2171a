"""Nyul & Udupa histogram standardisation: a piecewise-linear map of each image's intensity
percentiles onto standard landmarks learned from the training cases (as TorchIO does).

Percentiles used: the cutoffs (default 1 and 99) and the deciles between them. Training: each
case's percentiles are mapped linearly so its cutoffs land on `standard_range`; the landmarks are
their average. Applying: the image's own percentiles go to the landmarks, linear in between and
extrapolated beyond with the end segments' slopes.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from ..errors import MedPrepError
from ..volume import Volume
from .masks import MASK_CHOICES, intensities, masked, select
from .registry import register


@dataclass(frozen=True)
class HistogramParams:
    landmarks: Optional[List[float]] = field(default=None, metadata={"help": "from the statistics pass"})
    cutoff: List[float] = field(default_factory=lambda: [1.0, 99.0], metadata={
        "min": 0.0, "max": 100.0, "len": (2,), "help": "lowest and highest percentile"})
    standard_range: List[float] = field(default_factory=lambda: [0.0, 100.0], metadata={"len": (2,)})
    mask: str = field(default="all", metadata={"choices": MASK_CHOICES})

    def percentiles(self) -> np.ndarray:
        inner = [q for q in range(10, 100, 10) if self.cutoff[0] < q < self.cutoff[1]]
        return np.array([self.cutoff[0]] + inner + [self.cutoff[1]], float)

    def check(self) -> Optional[str]:
        if self.cutoff[0] >= self.cutoff[1]:
            return "cutoff must be increasing"
        if self.standard_range[0] >= self.standard_range[1]:
            return "standard_range must be increasing"
        if self.landmarks is not None:
            if len(self.landmarks) != len(self.percentiles()):
                return f"landmarks needs {len(self.percentiles())} values for these cutoffs"
            if np.any(np.diff(self.landmarks) <= 0):
                return "landmarks must be strictly increasing"
        return None


def _image_percentiles(image: Volume, label: Optional[Volume], p: HistogramParams) -> np.ndarray:
    values = intensities(image)
    inside = masked(values, select(values, label, p.mask, "histogram_standardization"),
                    "histogram_standardization")
    return np.percentile(inside, p.percentiles())


def fit(image: Volume, label: Optional[Volume], p: HistogramParams) -> np.ndarray:
    return _image_percentiles(image, label, p)


def combine(parts: List[np.ndarray], p: HistogramParams) -> Dict[str, Any]:
    s0, s1 = p.standard_range
    mapped = [s0 + (q - q[0]) * (s1 - s0) / max(q[-1] - q[0], 1e-12) for q in parts]
    return {"landmarks": [float(v) for v in np.mean(mapped, axis=0)]}


@register("histogram_standardization", HistogramParams, fit=fit, combine=combine,
          fitted=("landmarks",), normalizes=True)
def histogram_standardization(image: Volume, label: Optional[Volume],
                              p: HistogramParams) -> Tuple[Volume, Optional[Volume]]:
    """Map the image's percentiles piecewise-linearly onto the learned landmarks."""
    if p.landmarks is None:
        raise MedPrepError("step 'histogram_standardization' has no landmarks",
                           hint="run the dataset with `medprep run`, pass --statistics FILE, or set landmarks")
    q = _image_percentiles(image, label, p)
    if np.any(np.diff(q) <= 0):
        # Ties (e.g. a background mode) would make the map a step; spread them by a tiny epsilon.
        q = q + np.arange(len(q)) * 1e-6 * max(float(q[-1] - q[0]), 1.0)
    s = np.asarray(p.landmarks, float)
    values = intensities(image)
    out = np.interp(values, q, s).astype(np.float32)
    below, above = values < q[0], values > q[-1]
    out[below] = s[0] + (values[below] - q[0]) * (s[1] - s[0]) / (q[1] - q[0])
    out[above] = s[-1] + (values[above] - q[-1]) * (s[-1] - s[-2]) / (q[-1] - q[-2])
    return image.with_values(out), label
