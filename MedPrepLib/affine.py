"""NIfTI affines (voxel index to RAS mm) and ITK's LPS geometry: the one home of these conversions.

SimpleITK describes a grid by origin, spacing and a direction matrix in LPS; NIfTI, nibabel and
MedPrep's `Volume` use one 4x4 affine in RAS. Every module converts through here.
"""
from __future__ import annotations

from typing import Sequence, Tuple

import numpy as np

LPS_FROM_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])  # its own inverse: also RAS from LPS


def voxel_spacing(affine: np.ndarray) -> np.ndarray:
    """Voxel size along i, j, k in mm (the lengths of the affine's columns)."""
    return np.linalg.norm(np.asarray(affine)[:3, :3], axis=0)


def axis_directions(affine: np.ndarray) -> np.ndarray:
    """Unit vectors (columns) of the voxel axes i, j, k in RAS."""
    matrix = np.asarray(affine)[:3, :3]
    return matrix / np.linalg.norm(matrix, axis=0)


def sitk_geometry(affine: np.ndarray) -> Tuple[Tuple[float, ...], Tuple[float, ...], Tuple[float, ...]]:
    """(origin, spacing, direction) in ITK's LPS convention for a RAS affine."""
    lps = LPS_FROM_RAS @ affine
    return (tuple(lps[:3, 3].tolist()), tuple(voxel_spacing(lps).tolist()),
            tuple(axis_directions(lps).ravel().tolist()))


def set_sitk_geometry(image, affine: np.ndarray) -> None:
    """Place a 3D SimpleITK image by a RAS affine."""
    origin, spacing, direction = sitk_geometry(affine)
    image.SetOrigin(origin)
    image.SetSpacing(spacing)
    image.SetDirection(direction)


def affine_from_sitk(origin: Sequence[float], spacing: Sequence[float], direction: Sequence[float]) -> np.ndarray:
    """The RAS affine of a grid given as ITK's origin, spacing and direction (3D, or the first 3 axes of 4D)."""
    dim = int(round(len(direction) ** 0.5))
    lps = np.eye(4)
    lps[:3, :3] = np.reshape(direction, (dim, dim))[:3, :3] * np.asarray(spacing[:3], float)
    lps[:3, 3] = origin[:3]
    return LPS_FROM_RAS @ lps
