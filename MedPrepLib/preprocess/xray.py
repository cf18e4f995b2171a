"""Radiograph display pipeline in DICOM order: modality LUT, VOI window, then MONOCHROME1 inversion.

The VOI window functions are those of DICOM PS3.3 C.11.2.1.2 (LINEAR, LINEAR_EXACT, SIGMOID).
Window centre/width come from the parameters or else the meta keys WindowCenter/WindowWidth
(first value when multi-valued) and VOILUTFunction; without either the full data range is used.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional, Tuple

import numpy as np

from ..volume import Volume
from .masks import intensities
from .registry import register


@dataclass(frozen=True)
class XrayParams:
    window_center: Optional[float] = field(default=None, metadata={"help": "default: meta WindowCenter"})
    window_width: Optional[float] = field(default=None, metadata={"min": 1.0,
                                                                  "help": "default: meta WindowWidth"})
    function: Optional[str] = field(default=None, metadata={
        "choices": ["LINEAR", "LINEAR_EXACT", "SIGMOID"], "help": "default: meta VOILUTFunction or LINEAR"})
    invert: str = field(default="auto", metadata={
        "choices": ["auto", "always", "never"], "help": "auto inverts MONOCHROME1 images"})
    out_min: float = 0.0
    out_max: float = 1.0

    def check(self) -> Optional[str]:
        if (self.window_center is None) != (self.window_width is None):
            return "window_center and window_width go together"
        return "out_min must be below out_max" if self.out_min >= self.out_max else None


def _first(value: Any) -> Optional[float]:
    if isinstance(value, (list, tuple)):
        value = value[0] if value else None
    return None if value is None or value == "" else float(value)


def voi_window(x: np.ndarray, c: float, w: float, function: str, y0: float, y1: float) -> np.ndarray:
    kind = x.dtype.type
    if function == "SIGMOID":
        out = np.subtract(x, kind(c))
        out *= kind(-4.0 / w)
        np.exp(out, out=out)
        out += kind(1)
        np.divide(kind(y1 - y0), out, out=out)
        out += kind(y0)
        return out
    if function == "LINEAR_EXACT":
        lo, slope = c - w / 2.0, (y1 - y0) / w
    else:  # LINEAR: the DICOM formula ((x - (c - 0.5)) / (w - 1) + 0.5) * (y1 - y0) + y0
        lo, slope = c - 0.5 - (w - 1) / 2.0, (y1 - y0) / max(w - 1.0, 1e-12)
    out = np.subtract(x, kind(lo))
    out *= kind(slope)
    out += kind(y0)
    return np.clip(out, kind(y0), kind(y1), out=out)


@register("xray_display", XrayParams)
def xray_display(image: Volume, label: Optional[Volume], p: XrayParams) -> Tuple[Volume, Optional[Volume]]:
    """Modality LUT, VOI window to [out_min, out_max], then inversion of MONOCHROME1 (dark = high)."""
    values = intensities(image)
    c, w = p.window_center, p.window_width
    if c is None:
        c, w = _first(image.meta.get("WindowCenter")), _first(image.meta.get("WindowWidth"))
    function = p.function or str(image.meta.get("VOILUTFunction") or "LINEAR").upper()
    if c is None or w is None or w <= 0:
        lo, hi = float(values.min()), float(values.max())
        c, w, function = (lo + hi) / 2.0, max(hi - lo, 1e-12), "LINEAR_EXACT"
    out = voi_window(values, c, w, function, p.out_min, p.out_max)
    photometric = str(image.meta.get("PhotometricInterpretation", "")).upper()
    invert = p.invert == "always" or (p.invert == "auto" and photometric == "MONOCHROME1")
    if invert:
        np.subtract(out.dtype.type(p.out_min + p.out_max), out, out=out)
    result = image.with_values(out)
    if invert and photometric in ("MONOCHROME1", "MONOCHROME2"):
        result.meta["PhotometricInterpretation"] = "MONOCHROME2" if photometric == "MONOCHROME1" else "MONOCHROME1"
    return result, label
