"""Mean and variance pooled over many images without holding their voxels (Chan et al.'s merge)."""
from __future__ import annotations

from typing import Iterable, Tuple

import numpy as np

Moments = Tuple[int, float, float]  # (count, mean, sum of squared deviations)


# Elements per chunk of the second pass: its float64 copy (8 MB) stays in cache, where one copy of
# a whole CT would cost twice the image's memory again.
CHUNK = 1 << 20


def moments(values: np.ndarray) -> Moments:
    flat = values.reshape(-1)
    mean = float(flat.mean(dtype=np.float64))
    m2 = 0.0
    for start in range(0, flat.size, CHUNK):
        centred = flat[start:start + CHUNK].astype(np.float64) - mean
        # Squares summed by numpy, not np.dot: BLAS would start a thread per core, whose spinning
        # slowed the other workers of a dataset run by a quarter (measured).
        np.multiply(centred, centred, out=centred)
        m2 += float(centred.sum())
    return int(flat.size), mean, m2


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
