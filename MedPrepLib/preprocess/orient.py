"""Reorient voxels to one of the 48 axis codes (RAS, LPS, PIR, ...) by permuting and flipping axes.

Exact: no interpolation, every voxel keeps its value and its position in space; only the
voxel order and the affine change. Codes name where each voxel axis (i, j, k) points, as in
NIfTI and SimpleITK's DICOMOrient: "RAS" means i grows to the Right, j to Anterior, k to Superior.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import List, Optional, Tuple

import numpy as np

from ..affine import axis_directions
from ..volume import Volume
from .registry import register

_AXIS = {"R": (0, 1), "L": (0, -1), "A": (1, 1), "P": (1, -1), "S": (2, 1), "I": (2, -1)}
AXCODES = ["".join(c) for perm in itertools.permutations(["RL", "AP", "SI"])
           for c in itertools.product(*perm)]


@dataclass(frozen=True)
class OrientParams:
    axcodes: str = field(default="RAS", metadata={"choices": AXCODES, "help": "e.g. RAS (NIfTI), LPS (ITK)"})


def world_axes(affine: np.ndarray) -> List[Tuple[int, int]]:
    """For voxel axes i, j, k: the (world axis, sign) each points along most closely."""
    cosines = axis_directions(affine)
    taken: List[Optional[Tuple[int, int]]] = [None, None, None]
    used = set()
    # Most decisive voxel axis first, so an oblique axis cannot steal another's world axis.
    for vox in sorted(range(3), key=lambda v: -np.max(np.abs(cosines[:, v]))):
        order = np.argsort(-np.abs(cosines[:, vox]))
        world = next(int(w) for w in order if w not in used)
        used.add(world)
        taken[vox] = (world, 1 if cosines[world, vox] >= 0 else -1)
    return taken  # type: ignore[return-value]


def axcodes_of(affine: np.ndarray) -> str:
    letters = {(0, 1): "R", (0, -1): "L", (1, 1): "A", (1, -1): "P", (2, 1): "S", (2, -1): "I"}
    return "".join(letters[a] for a in world_axes(affine))


def reorient_array(array: np.ndarray, affine: np.ndarray, axcodes: str) -> Tuple[np.ndarray, np.ndarray]:
    """Voxels and affine of `array` (z, y, x) or (t, z, y, x) with its axes permuted/flipped to `axcodes`."""
    current = world_axes(affine)
    spatial = array.shape[-3:][::-1]  # sizes along i, j, k
    lead = array.ndim - 3
    index_from_new = np.zeros((4, 4))
    index_from_new[3, 3] = 1.0
    source: List[int] = []
    flips: List[bool] = []
    for new_axis, letter in enumerate(axcodes):
        world, sign = _AXIS[letter]
        old_axis = next(v for v, (w, _) in enumerate(current) if w == world)
        flip = current[old_axis][1] != sign
        source.append(old_axis)
        flips.append(flip)
        index_from_new[old_axis, new_axis] = -1.0 if flip else 1.0
        index_from_new[old_axis, 3] = spatial[old_axis] - 1 if flip else 0.0
    # numpy axes run (z, y, x): voxel axis v is array axis lead + 2 - v.
    order = list(range(lead)) + [lead + 2 - source[2 - a] for a in range(3)]
    out = np.transpose(array, order)
    flip_axes = tuple(lead + 2 - v for v in range(3) if flips[v])
    if flip_axes:
        out = np.flip(out, flip_axes)
    # A view, not a copy: every consumer (numpy, SimpleITK, the NIfTI writer) takes strided arrays,
    # and a copy here would be one more full volume in memory and in page faults.
    return out, affine @ index_from_new


@register("orient", OrientParams, spatial=True, colour=True)
def orient(image: Volume, label: Optional[Volume], p: OrientParams) -> Tuple[Volume, Optional[Volume]]:
    """Permute and flip voxel axes to the requested axis codes (exact, no interpolation)."""
    array, affine = reorient_array(image.array, image.affine, p.axcodes)
    out = image.with_stored(array, affine)
    if label is None:
        return out, None
    larray, _ = reorient_array(label.array, image.affine, p.axcodes)
    return out, label.with_stored(larray, affine.copy())
