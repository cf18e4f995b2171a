"""N4 bias-field correction of MR intensity inhomogeneity (SimpleITK N4BiasFieldCorrection).

The field is fitted on a shrunken copy for speed, then evaluated at full resolution and divided
out, as SimpleITK's own N4 example does.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional, Tuple

import numpy as np

from ..errors import MedPrepError
from ..volume import Volume
from .grid import to_sitk
from .masks import intensities
from .registry import register


@dataclass(frozen=True)
class N4Params:
    shrink_factor: int = field(default=4, metadata={"min": 1, "max": 16})
    iterations: List[int] = field(default_factory=lambda: [50, 50, 50, 50], metadata={
        "min": 1, "help": "iterations per fitting level"})
    mask: str = field(default="otsu", metadata={
        "choices": ["otsu", "nonzero", "label", "all"], "help": "voxels the field is fitted on"})


@register("n4", N4Params)
def n4(image: Volume, label: Optional[Volume], p: N4Params) -> Tuple[Volume, Optional[Volume]]:
    """Fit and divide out a smooth multiplicative bias field (MR)."""
    import SimpleITK as sitk

    values = intensities(image)
    if values.ndim == 4:
        raise MedPrepError("step 'n4' works on 3D images, this one is 4D", hint="split the time series first")
    if values.min() < 0:
        raise MedPrepError("step 'n4' needs non-negative intensities (a multiplicative field)",
                           hint="apply n4 before any z-score or window step")
    img = to_sitk(values.astype(np.float32, copy=False), image.affine)
    if p.mask == "otsu":
        mask = sitk.OtsuThreshold(img, 0, 1, 200)
    elif p.mask == "label":
        if label is None:
            raise MedPrepError("step 'n4' uses mask: label but the case has no label map")
        mask = to_sitk((label.array > 0).astype(np.uint8), image.affine)
    else:
        mask = to_sitk((values > 0 if p.mask == "nonzero" else np.ones_like(values, bool)).astype(np.uint8),
                       image.affine)
    small = sitk.Shrink(img, [p.shrink_factor] * 3) if p.shrink_factor > 1 else img
    small_mask = sitk.Shrink(mask, [p.shrink_factor] * 3) if p.shrink_factor > 1 else mask
    corrector = sitk.N4BiasFieldCorrectionImageFilter()
    corrector.SetMaximumNumberOfIterations([int(i) for i in p.iterations])
    corrector.Execute(small, small_mask)
    log_field = sitk.GetArrayFromImage(corrector.GetLogBiasFieldAsImage(img))
    return image.with_values((values / np.exp(log_field)).astype(np.float32)), label
