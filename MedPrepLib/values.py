"""DICOM attribute values as numbers.

Headers in the wild hold text where an IS or DS value should be ("1A", "3.0" in an IS, "x.y"):
pydicom then gives the raw string. Attributes that only describe the acquisition read as absent
(None); attributes the pixel array is built from (rows, bits, frames, samples) cannot be guessed,
so a malformed one is refused with its name, its value and the file.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Tuple, Union

from .errors import SeriesError


def as_int(value: Any) -> Optional[int]:
    """An integer, or None when absent or not a whole number ("3.0" is 3)."""
    try:
        return int(value)
    except (TypeError, ValueError):
        pass
    number = as_float(value)
    return int(number) if number is not None and number.is_integer() else None


def as_float(value: Any) -> Optional[float]:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def as_floats(value: Any, n: int) -> Optional[Tuple[float, ...]]:
    """`n` numbers from a multi-valued attribute, or None."""
    try:
        numbers = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        return None
    return numbers if len(numbers) == n else None


def pixel_int(ds: Any, keyword: str, default: int, path: Optional[Union[str, Path]] = None) -> int:
    """An attribute the pixel data are read with: `default` when absent or empty, refused when malformed."""
    value = ds.get(keyword)
    if value is None or value == "":
        return default
    number = as_int(value)
    if number is None:
        raise SeriesError(f"{keyword} is {str(value)[:32]!r}, not a whole number", path,
                          "the file's header is damaged: its pixel data cannot be read")
    return number
