"""Voxel grids (shape plus affine) as SimpleITK images: memory order, new grids of the same axes."""
from __future__ import annotations

from typing import Sequence, Tuple

import numpy as np

from ..affine import axis_directions, set_sitk_geometry


def to_sitk(array: np.ndarray, affine: np.ndarray):
    """A 3D SimpleITK image of `array` (z, y, x) placed by the RAS `affine`."""
    import SimpleITK as sitk

    img = sitk.GetImageFromArray(array)
    set_sitk_geometry(img, affine)
    return img


def storage_order(array: np.ndarray, affine: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """The same physical image with its voxels in the order memory holds them.

    A reoriented volume is a permuted and flipped view of its buffer; undoing that in the affine
    instead of the voxels gives a C-contiguous array, which SimpleITK can copy directly, without
    first making a contiguous copy of the view. Arrays that are no such view are copied.
    """
    lead = array.ndim - 3
    index = np.eye(4)  # old voxel index from new voxel index
    for a in range(lead, array.ndim):
        if array.strides[a] < 0:
            v = array.ndim - 1 - a  # voxel axis (i, j, k) of numpy axis a
            flip = np.eye(4)
            flip[v, v], flip[v, 3] = -1.0, array.shape[a] - 1
            index = index @ flip
            array = np.flip(array, a)
    order = list(range(lead)) + sorted(range(lead, array.ndim), key=lambda a: -array.strides[a])
    perm = np.eye(4)
    for b in range(lead, array.ndim):
        perm[:, array.ndim - 1 - b] = np.eye(4)[:, array.ndim - 1 - order[b]]
    array = np.transpose(array, order)
    return np.ascontiguousarray(array), affine @ index @ perm


def centred_affine(affine: np.ndarray, size: Sequence[int], new_spacing: Sequence[float],
                   new_size: Sequence[int]) -> np.ndarray:
    """The affine of a grid with the same axes and centre as (`affine`, `size`) but new spacing and size."""
    unit = axis_directions(affine)
    centre = affine[:3, :3] @ ((np.asarray(size, float) - 1) / 2) + affine[:3, 3]
    out = np.eye(4)
    out[:3, :3] = unit * np.asarray(new_spacing, float)
    out[:3, 3] = centre - out[:3, :3] @ ((np.asarray(new_size, float) - 1) / 2)
    return out
