"""Slice geometry: ordering slices along the normal, spacing checks, gantry tilt and the affine.

All positions are DICOM patient coordinates (LPS, mm). The NIfTI affine maps voxel (i, j, k),
i along a row (column index), j down the columns (row index), k across slices, to RAS.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional, Sequence, Tuple

import numpy as np

from .affine import LPS_FROM_RAS

POSITION_TOL_MM = 0.01
# Slice steps that differ by more than this (mm, or this fraction of the mean step when larger)
# make a stack's spacing variable: no single affine places every slice.
SPACING_TOL_MM = 0.01
SPACING_TOL_FRACTION = 0.01
# Angle between the slice normal and the line through the slice positions above which a stack is
# gantry-tilted (sheared); well below anything a scanner tilts by, well above float noise.
TILT_TOL_DEG = 0.01


@dataclass
class StackGeometry:
    """Where each slice lies along the normal and what that means for the affine."""

    affine: np.ndarray                 # voxel -> RAS
    slice_vector: np.ndarray           # LPS mm between consecutive slices (the affine's slice axis)
    distances: np.ndarray              # sorted distances along the normal
    tilt_deg: float = 0.0
    variable_spacing: bool = False
    gaps: List[Tuple[float, float]] = field(default_factory=list)  # (from, to) distance pairs
    warnings: List[str] = field(default_factory=list)


def normal_of(orientation: Sequence[float]) -> np.ndarray:
    row = np.asarray(orientation[:3], dtype=float)
    col = np.asarray(orientation[3:], dtype=float)
    n = np.cross(row, col)
    norm = np.linalg.norm(n)
    return n / norm if norm > 0 else np.array([0.0, 0.0, 1.0])


def valid_orientation(orientation: Sequence[float]) -> bool:
    """Finite, non-zero row and column cosines that are at least roughly perpendicular."""
    o = np.asarray(orientation, dtype=float)
    if o.shape != (6,) or not np.all(np.isfinite(o)):
        return False
    nr, nc = np.linalg.norm(o[:3]), np.linalg.norm(o[3:])
    return bool(nr > 1e-3 and nc > 1e-3 and abs(o[:3] @ o[3:]) / (nr * nc) < 0.1)


def _fmt(values: Sequence[float]) -> str:
    return "\\".join(f"{float(v):g}" for v in values)


def sheared_step(gap: np.ndarray, normal: np.ndarray) -> np.ndarray:
    """The slice vector of a gantry-tilted stack: the true displacement between neighbouring slices.

    The bed moves the patient between slices while the slice plane stays tilted, so each slice lies
    displaced in-plane from the one before; the NIfTI slice axis must carry that displacement (a
    shear) to put every voxel where the DICOM positions say. This holds whatever the sign of the
    tilt, the vendor's sign convention for GantryDetectorTilt (0018,1120), or the stored slice
    order: it comes from ImagePositionPatient and ImageOrientationPatient alone. dcm2niix instead
    writes the bed direction times the distance along the normal (|gap| x cos(tilt)), which places
    slice k k x |gap| x (1 - cos(tilt)) short of its position.
    """
    return gap if float(gap @ normal) >= 0 else -gap


def qform_frame(affine: np.ndarray) -> np.ndarray:
    """What a qform (rotation and zooms, no shear) can hold of a sheared, gantry-tilted affine: the
    slice axis replaced by its component along the slice normal. Every slice plane keeps its
    orientation, position and distance from the next; only the in-plane shift between slices is
    lost (the sform keeps it). dcm2niix writes the same qform, and pixdim[3] is then the distance
    between the slice planes."""
    out = np.array(affine, dtype=float)
    normal = np.cross(out[:3, 0], out[:3, 1])
    normal /= np.linalg.norm(normal)
    out[:3, 2] = normal * float(out[:3, 2] @ normal)
    return out


def spacing_varies(distances: np.ndarray) -> bool:
    """Whether slices at these (sorted) distances along the normal are unevenly spaced: the one rule
    behind meta["VariableSliceSpacing"], the stack warnings and reslice's equalization."""
    steps = np.diff(np.asarray(distances, dtype=float))
    if len(steps) < 2:
        return False
    spread = float(np.max(steps) - np.min(steps))
    return spread > max(SPACING_TOL_MM, SPACING_TOL_FRACTION * abs(float(np.mean(steps))))


def cluster_positions(distances: np.ndarray, tol: float = POSITION_TOL_MM) -> np.ndarray:
    """Label each (sorted) distance with the index of its slice position."""
    labels = np.zeros(len(distances), dtype=int)
    if len(distances) > 1:
        labels[1:] = np.cumsum(np.diff(distances) > tol)
    return labels


def stack_affine(orientation: Sequence[float], pixel_spacing: Tuple[float, float],
                 positions: np.ndarray, fallback_thickness: Optional[float],
                 anchor_last: bool = False) -> StackGeometry:
    """Affine of a stack of slices whose first voxels lie at `positions` (n x 3, sorted along the normal
    or against it).

    The slice axis is dcm2niix's: it starts at the first slice of `positions` or, with `anchor_last`
    (files stored top-down), at the last one, and steps by that slice's distance to its neighbour,
    straight along the normal. Averaging over the stack instead differs from dcm2niix
    by the rounding of the positions (0.01 mm and more). A gantry-tilted stack keeps its true,
    sheared step from that neighbour (see `sheared_step`), which dcm2niix shortens by cos(tilt).
    """
    warnings: List[str] = []
    if not valid_orientation(orientation):
        # normal_of gives +z for these too, so the slices were sorted as the axial fallback assumes.
        warnings.append(f"invalid ImageOrientationPatient {_fmt(orientation)}: axial orientation assumed")
        orientation = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
    row = np.asarray(orientation[:3], dtype=float)
    col = np.asarray(orientation[3:], dtype=float)
    normal = normal_of(orientation)
    dr, dc = float(pixel_spacing[0]), float(pixel_spacing[1])
    if not (np.isfinite(dr) and np.isfinite(dc) and dr > 0 and dc > 0):
        warnings.append(f"invalid pixel spacing {_fmt(pixel_spacing)}: 1 mm assumed")
        dr = dc = 1.0
    n = len(positions)
    distances = positions @ normal
    origin = positions[0]
    if n > 1:
        through = (positions[-1] - positions[0]) / (n - 1)
        steps = np.diff(distances)
        variable = spacing_varies(distances)
        gaps = []
        if variable:
            median = float(np.median(steps))
            for a, b, s in zip(distances[:-1], distances[1:], steps):
                if median > 0 and s > 1.5 * median:
                    gaps.append((float(a), float(b)))
            if gaps:
                missing = int(round(sum((b - a) / median - 1 for a, b in gaps)))
                warnings.append(f"about {missing} missing slice(s): gaps in slice positions at "
                                + ", ".join(f"{a:.2f}..{b:.2f} mm" for a, b in gaps[:5]))
            warnings.append(f"slice spacing varies from {np.min(steps):.3f} to {np.max(steps):.3f} mm: "
                            "a single affine cannot place every slice exactly (use --equalize-spacing)")
        # Tilt from the whole stack, where the rounding of single positions averages out.
        along = float(np.dot(through, normal))
        off = through - along * normal
        tilt = float(np.degrees(np.arctan2(np.linalg.norm(off), abs(along)))) if along else 90.0
        if float(np.linalg.norm(off)) * (n - 1) <= POSITION_TOL_MM:
            tilt = 0.0      # an in-plane drift within the rounding of the positions is no tilt
        if tilt > TILT_TOL_DEG:
            warnings.append(f"gantry tilt of {tilt:.2f} degrees: the affine is sheared "
                            "(use --tilt-correct for an orthogonal grid)")
        first, second = (n - 1, n - 2) if anchor_last else (0, 1)
        gap = positions[second] - positions[first]
        # Either way the vector points from the first slice of `positions` towards the last (a
        # Siemens mosaic stacks them against the orientation's normal).
        up = normal if along >= 0 else -normal
        vec = sheared_step(gap, up) if tilt > TILT_TOL_DEG else up * float(np.linalg.norm(gap))
        if anchor_last:
            origin = positions[-1] - (n - 1) * vec
    else:
        thickness = fallback_thickness if fallback_thickness and fallback_thickness > 0 else 1.0
        vec = normal * thickness
        variable, gaps, tilt = False, [], 0.0
    lps = np.eye(4)
    lps[:3, 0] = row * dc
    lps[:3, 1] = col * dr
    lps[:3, 2] = vec
    lps[:3, 3] = origin
    # The LPS/RAS flip is its own inverse.
    return StackGeometry(affine=LPS_FROM_RAS @ lps, slice_vector=vec, distances=distances,
                         tilt_deg=tilt, variable_spacing=variable, gaps=gaps, warnings=warnings)
