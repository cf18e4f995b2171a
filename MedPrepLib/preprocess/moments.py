"""Mean and variance pooled over many images without holding their voxels (Chan et al.'s merge)."""
from __future__ import annotations

from typing import Iterable, Tuple

import numpy as np

Moments = Tuple[int, float, float]  # (count, mean, sum of squared deviations)


def moments(values: np.ndarray) -> Moments:
    mean = float(values.mean(dtype=np.float64))
    centred = values.astype(np.float64) - mean
    return int(values.size), mean, float(np.dot(centred.ravel(), centred.ravel()))


def merge(parts: Iterable[Moments]) -> Moments:
    n, mean, m2 = 0, 0.0, 0.0
    for nb, mb, m2b in parts:
        if nb == 0:
            continue
        delta = mb - mean
        total = n + nb
        mean += delta * nb / total
        m2 += m2b + delta * delta * n * nb / total
        n = total
    return n, mean, m2


def mean_std(parts: Iterable[Moments]) -> Tuple[float, float]:
    """Population mean and standard deviation of all the voxels behind `parts`."""
    n, mean, m2 = merge(parts)
    return mean, float(np.sqrt(m2 / n)) if n else 0.0
