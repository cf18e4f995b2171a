"""Label maps as integers: the one rule the CLI, the dataset runner, the export and the Slicer panel apply.

A label map read from NIfTI may be stored as float or with a slope and intercept; its real values
must still be whole numbers. They are kept in the smallest of uint8, int16 and int32 that holds
them: small files and memory, and types every trainer and Slicer's label map nodes read.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

import numpy as np

from .errors import MedPrepError
from .volume import Volume

LABEL_DTYPES = (np.uint8, np.int16, np.int32)


def label_array(values: np.ndarray, source: Optional[Union[str, Path]] = None) -> np.ndarray:
    """`values` (a label map's real values) as the smallest integer type of LABEL_DTYPES that holds them.

    Raises MedPrepError, naming `source`, for fractional or non-finite values and for values beyond int32.
    """
    if values.dtype.kind not in "biuf":
        raise MedPrepError(f"a label map must hold whole numbers, not {values.dtype} values", source,
                           "give an integer label map")
    if values.dtype.kind == "f" and not (np.all(np.isfinite(values)) and np.array_equal(values, np.round(values))):
        raise MedPrepError("a label map must hold whole numbers; this one has fractional values", source,
                           "give an integer label map")
    lo = int(values.min()) if values.size else 0
    hi = int(values.max()) if values.size else 0
    for dtype in LABEL_DTYPES:
        info = np.iinfo(dtype)
        if info.min <= lo and hi <= info.max:
            return values.astype(dtype, copy=False)
    raise MedPrepError(f"label values {lo}..{hi} do not fit a 32-bit label map", source,
                       "renumber the labels")


def label_volume(volume: Volume, source: Optional[Union[str, Path]] = None) -> Volume:
    """The label map `volume` with its real values as integers (label_array), slope 1 and intercept 0."""
    values = volume.array if (volume.slope, volume.inter) == (1.0, 0.0) else volume.scaled(np.float64)
    return volume.with_values(label_array(values, source))
