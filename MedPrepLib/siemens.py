"""Siemens mosaics: how many slices a mosaic frame holds and along which normal they are stacked.

The facts come from the Siemens CSA image header (parsed by nibabel's csareader) with the
public (0019,100A) NumberOfImagesInMosaic as a fallback.
"""
from __future__ import annotations

import warnings
from typing import Optional, Tuple

from pydicom.dataset import Dataset


def is_mosaic(ds: Dataset) -> bool:
    return any(str(v).upper() == "MOSAIC" for v in (ds.get("ImageType") or ()))


def mosaic_info(ds: Dataset) -> Tuple[int, Optional[Tuple[float, float, float]]]:
    """(number of slices, slice normal from the CSA header) for a mosaic; (0, None) otherwise."""
    if not is_mosaic(ds):
        return 0, None
    n = 0
    normal = None
    try:
        with warnings.catch_warnings():
            # nibabel warns about its DICOM readers on import; we only use its CSA parser.
            warnings.simplefilter("ignore")
            from nibabel.nicom import csareader
        csa = csareader.get_csa_header(ds, "image")
    except Exception:  # noqa: BLE001 - a corrupt CSA header only loses the optional facts
        csa = None
    if csa:
        try:
            n = int(csareader.get_n_mosaic(csa) or 0)
        except Exception:  # noqa: BLE001
            n = 0
        try:
            vec = csareader.get_slice_normal(csa)
            if vec is not None and len(vec) == 3:
                normal = tuple(float(v) for v in vec)
        except Exception:  # noqa: BLE001
            normal = None
    if not n and (0x0019, 0x100A) in ds:
        try:
            n = int(ds[0x0019, 0x100A].value)
        except (TypeError, ValueError):
            n = 0
    return n, normal
