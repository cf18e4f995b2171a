"""The image type that every MedPrepLib step takes and returns: voxels, geometry and metadata.

Voxels are stored as SimpleITK and NIfTI lay them out in memory: a C-ordered numpy array of shape
(z, y, x) or (t, z, y, x), x (the DICOM column index) varying fastest. Geometry is the NIfTI affine:
voxel index (i=x, j=y, k=z) to RAS millimetres. It may be sheared (gantry tilt), which SimpleITK
cannot represent; `to_sitk` refuses such volumes rather than silently dropping the shear.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .affine import affine_from_sitk, axis_directions, set_sitk_geometry, sitk_geometry, voxel_spacing

__all__ = ["RGB24", "Volume", "rgb_channels"]

# NIfTI's RGB24: three uint8 values per voxel, interleaved (dcm2niix writes colour images so).
RGB24 = np.dtype([("R", "u1"), ("G", "u1"), ("B", "u1")])


def rgb_channels(array: np.ndarray) -> List[np.ndarray]:
    """The R, G and B uint8 channels of RGB24 voxels (views, no copy)."""
    return [array[name] for name in RGB24.names]


@dataclass
class Volume:
    array: np.ndarray
    affine: np.ndarray
    slope: float = 1.0
    inter: float = 0.0
    meta: Dict[str, Any] = field(default_factory=dict)
    warnings: List[str] = field(default_factory=list)
    history: List[Dict[str, Any]] = field(default_factory=list)

    @property
    def is_rgb(self) -> bool:
        """RGB24 colour voxels (a structured dtype of three uint8 fields, as NIfTI stores them)."""
        return self.array.dtype.names is not None

    @property
    def is_4d(self) -> bool:
        return self.array.ndim == 4

    @property
    def shape_xyz(self) -> Tuple[int, ...]:
        """Shape in NIfTI order (x, y, z[, t])."""
        return tuple(reversed(self.array.shape))

    @property
    def spacing(self) -> Tuple[float, float, float]:
        return tuple(float(v) for v in voxel_spacing(self.affine))

    @property
    def is_sheared(self) -> bool:
        m = axis_directions(self.affine)
        return not np.allclose(m.T @ m, np.eye(3), atol=1e-4)

    def scaled(self, dtype: Any = np.float32) -> np.ndarray:
        """Voxel values after slope and intercept (the real-world values, e.g. HU)."""
        if self.slope == 1.0 and self.inter == 0.0:
            return self.array
        return self.array.astype(dtype) * dtype(self.slope) + dtype(self.inter)

    def integer_values(self, dtypes: Sequence[Any] = (np.int16,)) -> Optional[np.ndarray]:
        """The real-world values in the first of `dtypes` (integer types) that holds them, when integer
        stored values and an integral slope and intercept make them exact; None otherwise.

        CT in HU as int16 takes half the memory of float32, in every later step and SimpleITK copy.
        """
        stored, slope, inter = self.array, float(self.slope), float(self.inter)
        if stored.dtype.kind not in "iu" or not (slope.is_integer() and inter.is_integer()):
            return None
        s, b = int(slope), int(inter)
        lo, hi = (int(stored.min()), int(stored.max())) if stored.size else (0, 0)
        ends = (lo * s + b, hi * s + b)
        fits = [np.dtype(d) for d in dtypes if np.iinfo(d).min <= min(ends) and max(ends) <= np.iinfo(d).max]
        if not fits:
            return None
        dtype, info = fits[0], np.iinfo(fits[0])
        if (s, b) == (1, 0):
            return stored.astype(dtype, copy=False)  # already real-world values: no copy when the type is kept
        # In the target type throughout when the intermediate products fit, else in 64 bits.
        work = dtype.type if all(info.min <= v <= info.max for v in (lo, hi, lo * s, hi * s)) else np.int64
        if s == 1:
            out = np.add(stored, work(b), dtype=work, casting="unsafe")  # one pass for the usual slope 1
        else:
            out = np.multiply(stored, work(s), dtype=work, casting="unsafe")
            if b:
                out += work(b)
        return out if out.dtype == dtype else out.astype(dtype)

    def to_sitk(self, scaled: bool = True):
        """A SimpleITK image (3D, or 4D for time series) with the same geometry, LPS as ITK wants."""
        import SimpleITK as sitk

        if self.is_sheared:
            raise ValueError("sheared (gantry-tilted) volume: correct the tilt before using it as an ITK image")
        arr = self.scaled() if scaled else self.array
        if self.is_rgb:
            # A colour image is a 3-component uint8 vector image in ITK, as ITK's DICOM reader gives it.
            if self.is_4d:
                raise ValueError("a 4D colour volume has no SimpleITK form")
            img = sitk.GetImageFromArray(np.ascontiguousarray(arr).view(np.uint8).reshape(arr.shape + (3,)),
                                         isVector=True)
            set_sitk_geometry(img, self.affine)
            return img
        img = sitk.GetImageFromArray(arr, isVector=False)
        if arr.ndim == 4:
            origin, spacing, direction = sitk_geometry(self.affine)
            img.SetOrigin(origin + (0.0,))
            img.SetSpacing(spacing + (float(self.meta.get("RepetitionTime", 1.0) or 1.0),))
            d = np.eye(4)
            d[:3, :3] = np.reshape(direction, (3, 3))
            img.SetDirection(tuple(d.ravel().tolist()))
        else:
            set_sitk_geometry(img, self.affine)
        return img

    @classmethod
    def from_sitk(cls, image, meta: Optional[Dict[str, Any]] = None,
                  history: Optional[List[Dict[str, Any]]] = None) -> "Volume":
        import SimpleITK as sitk

        arr = sitk.GetArrayFromImage(image)
        if image.GetNumberOfComponentsPerPixel() == 3 and arr.dtype == np.uint8:
            arr = np.ascontiguousarray(arr).view(RGB24)[..., 0]
        affine = affine_from_sitk(image.GetOrigin(), image.GetSpacing(), image.GetDirection())
        return cls(array=arr, affine=affine, meta=dict(meta or {}),
                   history=list(history or []))

    def with_values(self, array: np.ndarray, affine: Optional[np.ndarray] = None) -> "Volume":
        """A copy holding new real-world values (slope 1, intercept 0), e.g. an intensity step's
        output; metadata and history are copied, the affine too unless a new one is given."""
        return self._copy(array, affine, 1.0, 0.0)

    def with_stored(self, array: np.ndarray, affine: Optional[np.ndarray] = None) -> "Volume":
        """A copy holding stored values that this volume's slope and intercept still turn into
        real-world ones, e.g. voxels moved by a spatial step without changing them."""
        return self._copy(array, affine, self.slope, self.inter)

    def _copy(self, array: np.ndarray, affine: Optional[np.ndarray], slope: float, inter: float) -> "Volume":
        return Volume(array=array, affine=self.affine.copy() if affine is None else affine,
                      slope=slope, inter=inter, meta=copy.deepcopy(self.meta), warnings=list(self.warnings),
                      history=copy.deepcopy(self.history))
