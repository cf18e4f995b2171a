"""RT Structure Sets (RTSTRUCT) rasterised onto the grid of the image series they were drawn on.

Each CLOSED_PLANAR contour is placed on the slice whose plane it lies in (by its coordinates along
the slice normal, so contours need no Contour Image Sequence and oblique grids work), taken to
continuous pixel coordinates in that slice's plane, and filled there.

Boundary convention: a voxel belongs to a contour when its centre lies inside the polygon
(even-odd rule). A centre exactly on an edge is inside on the polygon's left and top edges and
outside on its right and bottom edges (the scan-line rule), so polygons that share an edge never
both claim a voxel. All contours of one ROI on one slice are combined by the same even-odd rule
(XOR): a contour inside another is a hole, as in the keyhole convention, Eclipse, RayStation,
dcmrtstruct2nii and plastimatch. Contours whose plane is no slice of the series, that are not
parallel to the slices, or that lie wholly outside the image are reported and left out.
"""
from __future__ import annotations

from collections import Counter
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from pydicom.dataset import Dataset

from .labelmap import ImageGrid, LabelMap, SegmentInfo, coded
from ..values import as_int

RTSTRUCT_CLASS = "1.2.840.10008.5.1.4.1.1.481.3"
FILLED_TYPES = ("CLOSED_PLANAR", "CLOSEDPLANAR_XOR")
# A contour belongs to a slice when its plane lies within this fraction of the slice spacing of it.
PLANE_TOLERANCE = 0.25
# Coordinates within this many pixels of a voxel centre count as on it (DS values are rounded).
_EPS = 1e-6


def fill_polygons(polygons: Sequence[np.ndarray], rows: int, cols: int) -> np.ndarray:
    """Voxels (rows x cols, bool) whose centres lie inside the polygons by the even-odd rule.

    Each polygon is an (n, 2) array of continuous (column, row) pixel coordinates, closed
    implicitly. For every pixel row, each edge crossing the row's centre line toggles the inside
    state of the centres at and right of the crossing; all polygons add their crossings to the same
    count, so overlapping polygons combine by XOR (holes).
    """
    counts = np.zeros((rows, cols + 1), dtype=np.int32)
    for poly in polygons:
        if len(poly) < 3:
            continue
        x0, y0 = poly[:, 0], poly[:, 1]
        x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
        ylo, yhi = np.minimum(y0, y1), np.maximum(y0, y1)
        # Half-open in y (ylo <= r < yhi): a vertex on a row's line is counted once, horizontal edges never.
        first = np.maximum(np.ceil(ylo - _EPS), 0).astype(np.int64)
        stop = np.minimum(np.ceil(yhi - _EPS), rows).astype(np.int64)
        n = np.clip(stop - first, 0, None)
        total = int(n.sum())
        if total == 0:
            continue
        edge = np.repeat(np.arange(len(n)), n)
        r = first[edge] + (np.arange(total) - np.repeat(np.cumsum(n) - n, n))
        t = (r - y0[edge]) / (y1[edge] - y0[edge])
        x = x0[edge] + t * (x1[edge] - x0[edge])
        start = np.clip(np.ceil(x - _EPS), 0, cols).astype(np.int64)
        np.add.at(counts, (r, start), 1)
    return (np.cumsum(counts, axis=1)[:, :cols] & 1).astype(bool)


def _roi_infos(ds: Dataset) -> Dict[int, SegmentInfo]:
    infos: Dict[int, SegmentInfo] = {}
    for item in ds.get("StructureSetROISequence") or []:
        number = as_int(item.get("ROINumber"))
        if number is None:  # nothing can reference it: its contours are reported as an unlisted ROI's
            continue
        extra = {}
        if item.get("ROIGenerationAlgorithm"):
            extra["generation_algorithm"] = str(item.ROIGenerationAlgorithm)
        infos[number] = SegmentInfo(number=number, name=str(item.get("ROIName", "") or ""),
                                    description=str(item.get("ROIDescription", "") or ""), extra=extra)
    for obs in ds.get("RTROIObservationsSequence") or []:
        s = infos.get(as_int(obs.get("ReferencedROINumber")))
        if s is None:
            continue
        if obs.get("RTROIInterpretedType"):
            s.extra["interpreted_type"] = str(obs.RTROIInterpretedType)
        code = (obs.get("RTROIIdentificationCodeSequence") or [None])[0]
        if code is not None:
            s.type = coded(code)
    for rc in ds.get("ROIContourSequence") or []:
        s = infos.get(as_int(rc.get("ReferencedROINumber")))
        if s is not None and rc.get("ROIDisplayColor"):
            s.color = [int(v) for v in rc.ROIDisplayColor]
    return infos


def _slice_tolerance(grid: ImageGrid) -> np.ndarray:
    """Per slice, how far (mm along the normal) a contour's plane may lie from it."""
    d = grid.distances
    if len(d) < 2:
        return np.full(len(d), 0.5)
    steps = np.abs(np.diff(d))
    near = np.minimum(np.r_[steps[0], steps], np.r_[steps, steps[-1]])
    return PLANE_TOLERANCE * near


def place_contour(points: np.ndarray, grid: ImageGrid, tol: np.ndarray) -> Tuple[Optional[int], str, np.ndarray]:
    """(slice index or None, why not, (n, 2) column/row coordinates in that slice's plane)."""
    along = points @ grid.normal
    d = grid.distances
    k = int(np.argmin(np.abs(d - along.mean())))
    if float(np.ptp(along)) > 2 * tol[k]:
        return None, "not parallel to the image slices", np.empty((0, 2))
    if abs(float(along.mean() - d[k])) > tol[k]:
        return None, "plane matches no slice", np.empty((0, 2))
    rel = points - grid.positions[k]
    dr, dc = grid.spacing
    xy = np.stack([rel @ grid.row / dc, rel @ grid.col / dr], axis=1)
    return k, "", xy


def read_rtstruct(ds: Dataset, grid: ImageGrid) -> LabelMap:
    """Every ROI of the structure set as a mask on `grid`, numbered by ROI Number."""
    infos = _roi_infos(ds)
    nz, rows, cols = grid.shape
    tol = _slice_tolerance(grid)
    polys: Dict[int, Dict[int, List[np.ndarray]]] = {n: {} for n in infos}
    problems: Counter = Counter()
    n_contours: Counter = Counter()
    for rc in ds.get("ROIContourSequence") or []:
        number = as_int(rc.get("ReferencedROINumber"))
        if number not in infos:
            problems["contours of an ROI that the structure set does not list"] += len(rc.get("ContourSequence") or [])
            continue
        for c in rc.get("ContourSequence") or []:
            n_contours[number] += 1
            kind = str(c.get("ContourGeometricType", "") or "")
            if kind not in FILLED_TYPES:
                problems[f"{kind or 'untyped'} contours (not an area)"] += 1
                continue
            try:
                points = np.asarray([float(v) for v in c.ContourData], dtype=float).reshape(-1, 3)
            except (AttributeError, ValueError, TypeError):
                problems["malformed ContourData"] += 1
                continue
            if len(points) < 3 or not np.all(np.isfinite(points)):
                problems["contours with fewer than 3 points"] += 1
                continue
            k, why, xy = place_contour(points, grid, tol)
            if k is None:
                problems[f"contours whose {why}" if why.startswith("plane") else f"contours {why}"] += 1
                continue
            if xy[:, 0].max() < -0.5 or xy[:, 0].min() > cols - 0.5 or xy[:, 1].max() < -0.5 \
                    or xy[:, 1].min() > rows - 0.5:
                problems["contours outside the image"] += 1
                continue
            polys[number].setdefault(k, []).append(xy)
    numbers = sorted(infos)
    masks = np.zeros((len(numbers), nz, rows, cols), dtype=np.uint8)
    for i, number in enumerate(numbers):
        for k, ps in polys[number].items():
            masks[i, k] = fill_polygons(ps, rows, cols)
        infos[number].extra["contours"] = int(n_contours[number])
    warnings = [f"{n} {what}: left out" for what, n in sorted(problems.items())]
    empty = [infos[n].name or str(n) for i, n in enumerate(numbers) if not masks[i].any()]
    if empty:
        warnings.append(f"ROI(s) with no voxels on this image: {', '.join(empty)}")
    info = {"StructureSetLabel": str(ds.get("StructureSetLabel", "") or ""),
            "BoundaryConvention": "voxel centre inside the polygon (even-odd; left/top edges in, "
                                  "right/bottom edges out); contours of one ROI on one slice combined by XOR"}
    return LabelMap("RTSTRUCT", grid, [infos[n] for n in numbers], masks, warnings, info)

