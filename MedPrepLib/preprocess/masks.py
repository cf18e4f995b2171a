"""Which voxels an intensity statistic is computed over: all, the non-zero ones, or a label map's foreground."""
from __future__ import annotations

from typing import Optional

import numpy as np

from ..errors import MedPrepError
from ..volume import Volume

MASK_CHOICES = ["all", "nonzero", "label"]


def intensities(image: Volume) -> np.ndarray:
    """Real-world values as floating point (no copy when they already are)."""
    values = image.scaled()
    if not np.issubdtype(values.dtype, np.floating):
        values = values.astype(np.float32)
    return values


def select(values: np.ndarray, label: Optional[Volume], mask: str, step: str) -> Optional[np.ndarray]:
    """A boolean mask for `mask` ("all" gives None: every voxel), broadcast over time for 4D images."""
    if mask == "all":
        return None
    if mask == "nonzero":
        return values != 0
    if label is None:
        raise MedPrepError(f"step '{step}' uses mask: label but the case has no label map",
                           hint="pass a label map or use mask: all / nonzero")
    fg = label.array > 0
    if fg.shape != values.shape[-3:]:
        raise MedPrepError(f"step '{step}': label map shape {fg.shape} differs from the image {values.shape}",
                           hint="resample the label onto the image grid first")
    return np.broadcast_to(fg, values.shape) if values.ndim == 4 else fg


def masked(values: np.ndarray, mask: Optional[np.ndarray], step: str) -> np.ndarray:
    """The voxel values inside the mask, refusing an empty mask (its statistics are undefined)."""
    picked = values if mask is None else values[mask]
    if picked.size == 0:
        raise MedPrepError(f"step '{step}': the mask selects no voxel", hint="check the label map or the mask choice")
    return picked
