"""Gantry-tilt and slice-spacing correction: a stack of slices resampled onto an orthogonal, equidistant grid.

A gantry-tilted CT stack has parallel slices that are displaced in-plane from one slice to the next,
so its affine is sheared (SimpleITK and most tools cannot represent it). A stack with variable slice
spacing cannot be described by any single affine at all. Both are resampled here the way dcm2niix
does for its `_Tilt` / `_Eq` outputs (`-tilt y`, `-eq y`), so that the results compare voxel for voxel:

* tilt: every slice is shifted in-plane by its own (fractional) displacement from the first slice,
  linearly between the two neighbouring rows (columns). The grid keeps the slice plane's row and
  column axes and the slice normal, and grows by the whole shift so nothing is cut off. Next to
  DICOM pixel padding the nearest row is taken instead, so the padding does not bleed into tissue.
* equalize: the slices are re-sampled at a constant step along the normal, linearly between the two
  neighbouring slices. The step is the smallest slice distance, but at least extent / (2n - 1): no
  more than twice the slices (dcm2niix's cap), e.g. 28 GE slices 1.08 to 7 mm apart -> 56 at 2.62 mm.

Integer images stay integers, rounded half away from zero after each stage, as dcm2niix does.
Deliberate differences from dcm2niix: float images are not rounded; the equalized grid always
reaches the last slice (dcm2niix's uncapped slice count stops about half the last gap short of it);
a row only half inside the input is padding on both edges (dcm2niix repeats the edge row on one).
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from .affine import LPS_FROM_RAS, axis_directions, voxel_spacing
from .geometry import spacing_varies
from .volume import Volume

# In-plane displacement (pixels) over the whole stack below which a stack counts as not tilted:
# far below anything interpolation could resolve.
SHIFT_TOL_PX = 0.01
# Fractional shifts closer than this to a whole pixel are whole: positions carry float noise.
_FRAC_TOL = 1e-6


@dataclass
class _Stack:
    """Where each slice of the input lies, relative to the first one (LPS)."""

    origin: np.ndarray       # corner voxel of the first slice
    row: np.ndarray          # unit vector along a row (array axis 2)
    col: np.ndarray          # unit vector down a column (array axis 1)
    normal: np.ndarray
    dc: float                # mm between columns
    dr: float                # mm between rows
    dist: np.ndarray         # distance of each slice from the first along the normal
    shift_rows: np.ndarray   # in-plane displacement of each slice from the first, in rows
    shift_cols: np.ndarray   # ... and in columns

    @property
    def tilted(self) -> bool:
        return bool(max(np.abs(self.shift_rows).max(), np.abs(self.shift_cols).max()) > SHIFT_TOL_PX)

    @property
    def variable(self) -> bool:
        return spacing_varies(self.dist)


def _stack_of(volume: Volume) -> _Stack:
    lps = LPS_FROM_RAS @ volume.affine
    dc, dr = (float(v) for v in voxel_spacing(lps)[:2])
    row, col = axis_directions(lps)[:, :2].T
    n_z = volume.array.shape[-3]
    positions = volume.meta.get("_slice_positions_lps")
    if positions is None or len(positions) != n_z:
        # A volume read back from NIfTI has only its affine: a constant slice vector, which still
        # describes a tilt (though not a variable spacing).
        positions = lps[:3, 3] + np.arange(n_z)[:, None] * lps[:3, 2]
    positions = np.asarray(positions, dtype=float)
    normal = volume.meta.get("_slice_normal")
    normal = np.cross(row, col) if normal is None else np.asarray(normal, dtype=float)
    normal = normal / np.linalg.norm(normal)
    rel = positions - positions[0]
    return _Stack(origin=positions[0], row=row, col=col, normal=normal, dc=dc, dr=dr, dist=rel @ normal,
                  shift_rows=rel @ col / dr, shift_cols=rel @ row / dc)


def _round_to(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    if not np.issubdtype(dtype, np.integer):
        return values.astype(dtype, copy=False)
    info = np.iinfo(dtype)
    # C's round(): halves away from zero (numpy's rounds them to even), as dcm2niix stores them.
    rounded = np.copysign(np.floor(np.abs(values) + 0.5), values)
    return np.clip(rounded, info.min, info.max).astype(dtype)


def _shift_axis(src: np.ndarray, shifts: np.ndarray, axis: int, first: int, size: int,
                padding: Optional[float], fill: float) -> np.ndarray:
    """Undo each slice's in-plane displacement along `axis` (1: rows, 2: columns).

    Output index y of slice z holds the input at y + first - shifts[z]: the output grid starts
    `first` pixels (<= 0) before the first slice's corner and is `size` long.
    """
    shape = list(src.shape)
    shape[axis] = size
    out = np.full(shape, fill, dtype=src.dtype)
    length = src.shape[axis]
    for z in range(src.shape[0]):
        img = np.moveaxis(src[z], axis - 1, 0)
        dst = np.moveaxis(out[z], axis - 1, 0)
        q0 = first - float(shifts[z])
        k0 = math.floor(q0 + _FRAC_TOL)
        f = q0 - k0
        if f < _FRAC_TOL:
            f = 0.0
        step = 1 if f > 0 else 0
        start = max(0, -k0)
        stop = min(size, length - step - k0)
        if stop <= start:
            continue
        lo = img[k0 + start:k0 + stop]
        hi = img[k0 + start + step:k0 + stop + step]
        blend = lo * (1.0 - f) + hi * f
        if padding is not None:
            # Padding marks "no data": take the nearer neighbour rather than mixing it into tissue.
            near = lo if f <= 0.5 else hi
            blend = np.where((lo == padding) | (hi == padding), near, blend)
        dst[start:stop] = _round_to(blend, src.dtype)
    return out


def _equalize(src: np.ndarray, dist: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Slices at distances `targets` along the normal, linearly between their two neighbours."""
    out = np.empty((len(targets),) + src.shape[1:], dtype=src.dtype)
    upper = np.clip(np.searchsorted(dist, targets, side="left"), 0, len(dist) - 1)
    for j, (x, hi) in enumerate(zip(targets, upper)):
        lo = max(int(hi) - 1, 0)
        if dist[hi] == dist[lo] or x >= dist[hi]:
            out[j] = src[hi]
            continue
        w = (x - dist[lo]) / (dist[hi] - dist[lo])
        out[j] = _round_to(src[lo] * (1.0 - w) + src[hi] * w, src.dtype)
    return out


def equalized_step(dist: np.ndarray) -> float:
    """The constant slice step for slices at `dist` (ascending, from 0): the smallest step, but at
    most twice as many slices as there are (dcm2niix's cap, which bounds the output size)."""
    extent = float(dist[-1] - dist[0])
    return max(float(np.min(np.diff(dist))), extent / (2 * len(dist) - 1))


def _padding_of(volume: Volume, padding_value: Any) -> Optional[float]:
    value = volume.meta.get("PixelPaddingValue") if padding_value is None else padding_value
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


def tilt_and_spacing_correct(volume: Volume, tilt: bool, equalize: bool, *,
                             padding_value: Optional[float] = None) -> Optional[Volume]:
    """The volume resampled without gantry tilt (`tilt`) and/or with equidistant slices (`equalize`).

    Returns None when the requested corrections have nothing to correct (no tilt, constant spacing).
    `padding_value` is DICOM PixelPaddingValue in stored units (default: meta "PixelPaddingValue");
    voxels outside the input get it, or else the volume's lowest value. Raises ValueError for stacks
    that cannot be resampled (4D, fewer than 3 slices, slices not ascending along the normal).
    """
    if volume.array.ndim != 3:
        if tilt or equalize:
            stack = _stack_of(volume)
            if (tilt and stack.tilted) or (equalize and stack.variable):
                raise ValueError("tilt/spacing correction handles single 3D volumes only (this is 4D)")
        return None
    stack = _stack_of(volume)
    do_tilt = tilt and stack.tilted
    do_eq = equalize and stack.variable
    if not (do_tilt or do_eq):
        return None
    n_z = volume.array.shape[0]
    if n_z < 3:
        raise ValueError(f"tilt/spacing correction needs at least 3 slices, not {n_z}")
    if np.any(np.diff(stack.dist) <= 0):
        raise ValueError("slices are not strictly ascending along the slice normal (repeated positions?)")

    padding = _padding_of(volume, padding_value)
    data = volume.array
    if padding is not None and np.issubdtype(data.dtype, np.integer):
        info = np.iinfo(data.dtype)
        if not info.min <= padding <= info.max:
            padding = None      # a value the stored type cannot hold marks no voxel and cannot fill one
    fill = padding if padding is not None else float(data.min())
    origin = stack.origin.copy()
    if do_tilt:
        for axis, shifts, unit, spacing in ((1, stack.shift_rows, stack.col, stack.dr),
                                            (2, stack.shift_cols, stack.row, stack.dc)):
            if np.abs(shifts).max() <= SHIFT_TOL_PX:
                continue
            first = math.floor(float(shifts.min()) + _FRAC_TOL)
            last = math.ceil(float(shifts.max()) - _FRAC_TOL)
            size = data.shape[axis] + last - first
            data = _shift_axis(data, shifts, axis, first, size, padding, fill)
            origin = origin + first * spacing * unit
        # Every slice now lies on the normal through the (moved) origin.
        along = stack.normal
        dist = stack.dist
    else:
        # Without tilt correction the slices keep their in-plane displacement, which grows in
        # proportion to the distance along the normal: one (sheared) direction per mm.
        along = (stack.shift_rows[-1] * stack.dr * stack.col + stack.shift_cols[-1] * stack.dc * stack.row
                 + stack.dist[-1] * stack.normal) / stack.dist[-1]
        dist = stack.dist
    if do_eq:
        step = equalized_step(dist)
        count = int(math.floor(float(dist[-1]) / step + 1e-6)) + 1
        targets = np.arange(count) * step
        data = _equalize(data, dist, targets)
    else:
        step = float(dist[-1]) / (n_z - 1)
        targets = dist

    lps = np.eye(4)
    lps[:3, 0] = stack.row * stack.dc
    lps[:3, 1] = stack.col * stack.dr
    lps[:3, 2] = along * step
    lps[:3, 3] = origin
    out = volume.with_stored(np.ascontiguousarray(data), LPS_FROM_RAS @ lps)
    out.meta["_slice_positions_lps"] = origin + np.outer(targets, along)
    out.meta["_slice_normal"] = stack.normal.copy()
    out.meta.pop("_slice_sources", None)  # resampled slices no longer are the source images
    out.meta["SliceSpacing"] = float(step)
    tilt_deg = float(np.degrees(np.arctan2(np.hypot(stack.shift_rows[-1] * stack.dr, stack.shift_cols[-1] * stack.dc),
                                           stack.dist[-1])))
    dropped = []
    if do_tilt:
        out.meta.pop("GantryTiltDegrees", None)
        dropped.append("gantry tilt of")
    if do_eq:
        out.meta.pop("VariableSliceSpacing", None)
        dropped.append("slice spacing varies")
    # The input's advice to correct tilt/spacing no longer applies to the corrected volume.
    out.warnings = [w for w in out.warnings if not any(w.startswith(p) for p in dropped)]
    out.warnings.append("resampled (linear interpolation): "
                        + " and ".join((["gantry tilt removed"] if do_tilt else [])
                                       + ([f"slices equidistant at {step:.4g} mm"] if do_eq else [])))
    out.history = copy.deepcopy(volume.history)
    out.history.append({"step": "tilt_and_spacing_correct", "params": {
        "tilt_corrected": bool(do_tilt), "equalized": bool(do_eq), "tilt_deg": round(tilt_deg, 4),
        "slice_spacing_mm": round(float(step), 6), "n_slices_in": int(n_z), "n_slices_out": int(data.shape[0]),
        "interpolation": "linear", "padding_value": padding}})
    return out


def correction_postfix(corrected: Volume) -> str:
    """dcm2niix's name part for a corrected volume: `_Tilt`, `_Eq` or `_Tilt_Eq`."""
    step = next((h for h in reversed(corrected.history) if h.get("step") == "tilt_and_spacing_correct"), None)
    if step is None:
        return ""
    params = step["params"]
    return ("_Tilt" if params.get("tilt_corrected") else "") + ("_Eq" if params.get("equalized") else "")
