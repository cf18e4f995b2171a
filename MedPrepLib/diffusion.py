"""Diffusion gradient tables (.bval / .bvec) for 4D DWI volumes, in FSL's convention as dcm2niix writes them.

b-values are written as stored, one per volume. Gradient directions go to the volume's voxel axes:
patient-space directions (the standard DiffusionGradientOrientation, Philips' private RL/AP/FH)
are projected onto the row, column and slice directions and normalised (dcm2niix's
siemensPhilipsCorrectBvecs); UIH stores them in image space already (dcm2niix only flips their y,
because it stores rows bottom-up). FSL reads bvecs in radiological voxel order: when the affine's
determinant is positive, x is negated. On dcm2niix's own voxel order this reduces to its files.
Files are written only when the table says something: b-values or directions vary (dcm2niix
writes none for a series with one b-value and no direction).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np

from .atomic import atomic_path

Vec3 = Tuple[float, float, float]
Table = Tuple[List[float], List[Vec3]]


def gradient_table(bvalues: Sequence[Optional[float]], gradients: Sequence[Optional[Vec3]],
                   orientation: Sequence[float], affine: np.ndarray, image_space: bool) -> Optional[Table]:
    """(b-values, voxel-space unit directions) per volume, or None when there is nothing to write."""
    if len(bvalues) < 2 or any(b is None for b in bvalues):
        return None
    row, col = np.asarray(orientation[:3], float), np.asarray(orientation[3:6], float)
    axes = np.array([row, col, np.cross(row, col)])
    flip_x = np.linalg.det(affine[:3, :3]) > 0
    bvals: List[float] = []
    vecs: List[Vec3] = []
    for b, g in zip(bvalues, gradients):
        v = np.zeros(3) if g is None else np.asarray(g, float)
        length = float(np.linalg.norm(v))
        if b is not None and b > 1e-6 and length > 1e-6 and all(math.isfinite(x) for x in v):
            if not image_space:
                v = axes @ v
                v = v / np.linalg.norm(v)
            if flip_x:
                v = v * np.array([-1.0, 1.0, 1.0])
        else:
            v = np.zeros(3)
        vecs.append(tuple(float(x) + 0.0 for x in v))  # + 0.0: no "-0" in the files
        bvals.append(float(b))  # type: ignore[arg-type]
    if len(set(bvals)) == 1 and len(set(vecs)) == 1:
        return None
    return bvals, vecs


def _g(value: float) -> str:
    # dcm2niix prints single-precision values with %g.
    text = "%g" % float(np.float32(value))
    return "0" if text == "-0" else text


def write_gradients(table: Table, stem: Path) -> List[Path]:
    """Write <stem>.bval and <stem>.bvec (one row per axis) atomically; returns the two paths."""
    bvals, vecs = table
    bval = stem.with_name(stem.name + ".bval")
    bvec = stem.with_name(stem.name + ".bvec")
    with atomic_path(bval, overwrite=True) as tmp:
        Path(tmp).write_text(" ".join(_g(b) for b in bvals) + "\n")
    with atomic_path(bvec, overwrite=True) as tmp:
        Path(tmp).write_text("".join(" ".join(_g(v[axis]) for v in vecs) + "\n" for axis in range(3)))
    return [bval, bvec]
