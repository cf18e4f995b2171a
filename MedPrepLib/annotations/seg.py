"""DICOM Segmentation objects (SEG) onto the grid of the image series they were drawn on.

highdicom decodes the frames (bit-packed BINARY frames, FRACTIONAL scaling, frames left out because
they are empty); frames are fetched by the source images they are derived from, in the order the
converted image series has its slices, so the masks land exactly on the image NIfTI's voxels.
"""
from __future__ import annotations

from typing import Any, List, Optional, Set

import numpy as np
from pydicom.dataset import Dataset

from ..errors import MedPrepError
from .labelmap import ImageGrid, LabelMap, SegmentInfo, coded

SEG_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"
DEFAULT_THRESHOLD = 0.5


def import_highdicom() -> Any:
    try:
        import highdicom
    except ImportError as exc:
        raise MedPrepError("DICOM SEG needs the highdicom package, which is not installed",
                           hint="pip install highdicom") from exc
    return highdicom


def _rgb(item: Dataset) -> Optional[List[int]]:
    """RecommendedDisplayCIELabValue as RGB, where this highdicom converts it."""
    lab = item.get("RecommendedDisplayCIELabValue")
    if not lab:
        return None
    color = getattr(import_highdicom(), "color", None)
    cls = getattr(color, "CIELabColor", None)
    if cls is None or not hasattr(cls, "from_dicom_value"):
        return None
    try:
        return [int(v) for v in cls.from_dicom_value([int(v) for v in lab]).to_rgb(clip=True)]
    except (TypeError, ValueError):
        return None


def segment_infos(ds: Dataset) -> List[SegmentInfo]:
    out = []
    for item in ds.get("SegmentSequence") or []:
        category = coded((item.get("SegmentedPropertyCategoryCodeSequence") or [None])[0])
        typ = coded((item.get("SegmentedPropertyTypeCodeSequence") or [None])[0])
        extra = {}
        if item.get("SegmentAlgorithmType"):
            extra["algorithm_type"] = str(item.SegmentAlgorithmType)
        lab = item.get("RecommendedDisplayCIELabValue")
        if lab:
            extra["color_cielab_dicom"] = [int(v) for v in lab]
        out.append(SegmentInfo(number=int(item.SegmentNumber), name=str(item.get("SegmentLabel", "") or ""),
                               color=_rgb(item), category=category, type=typ,
                               description=str(item.get("SegmentDescription", "") or ""), extra=extra))
    return out


def _frame_sources(ds: Dataset) -> List[Set[str]]:
    """Per SEG frame, the SOP Instance UIDs of the images it is derived from."""
    out = []
    for fg in ds.get("PerFrameFunctionalGroupsSequence") or []:
        uids = set()
        for der in fg.get("DerivationImageSequence") or []:
            for src in der.get("SourceImageSequence") or []:
                uids.add(str(src.get("ReferencedSOPInstanceUID", "")))
        out.append(uids)
    return out


def read_seg(ds: Dataset, grid: ImageGrid, keep_fractions: bool = False,
             threshold: float = DEFAULT_THRESHOLD) -> LabelMap:
    """The SEG's segments as masks on `grid`.

    FRACTIONAL segments are thresholded (fraction >= `threshold` is in) unless `keep_fractions`,
    which keeps the fractions 0..1 as float32.
    """
    hd = import_highdicom()
    if not grid.sources or any(f is not None for _, f in grid.sources):
        raise MedPrepError("DICOM SEG on a multi-frame or mosaic image series is not supported",
                           hint="convert the images as single-frame slices")
    try:
        seg = hd.seg.Segmentation.from_dataset(ds, copy=False)
    except (ValueError, AttributeError, KeyError, TypeError) as exc:
        raise MedPrepError(f"malformed DICOM SEG ({exc.__class__.__name__}: {exc})") from exc
    infos = segment_infos(ds)
    numbers = [s.number for s in infos]
    fractional = str(ds.get("SegmentationType", "BINARY")).upper() == "FRACTIONAL"
    warnings: List[str] = []
    on_grid = {uid for uid, _ in grid.sources}
    missing = [i for i, uids in enumerate(_frame_sources(ds)) if uids and not uids & on_grid]
    if missing:
        warnings.append(f"{len(missing)} SEG frame(s) derive from images that are not in the image series: "
                        "left out")
    uids = [uid for uid, _ in grid.sources]
    try:
        # Frame positions are checked by the UIDs they derive from, not by highdicom's spatial
        # lookup, which refuses objects that do not declare SpatialLocationsPreserved.
        pixels = seg.get_pixels_by_source_instance(
            source_sop_instance_uids=uids, segment_numbers=numbers, combine_segments=False,
            ignore_spatial_locations=True, assert_missing_frames_are_empty=True, rescale_fractional=True)
    except (ValueError, KeyError, RuntimeError) as exc:
        raise MedPrepError(f"SEG frames cannot be placed on the image series ({exc})") from exc
    # highdicom: (slices, rows, columns, segments); the Volume order is (segments, slices, rows, columns).
    masks = np.moveaxis(np.asarray(pixels), -1, 0)
    info = {"SegmentationType": "FRACTIONAL" if fractional else "BINARY"}
    if fractional:
        info["FractionalType"] = str(ds.get("SegmentationFractionalType", ""))
        if keep_fractions:
            masks = masks.astype(np.float32)
        else:
            info["Threshold"] = f"fraction >= {threshold:g}"
            masks = (masks >= threshold).astype(np.uint8)
    else:
        masks = (masks != 0).astype(np.uint8)
    _check_positions(ds, grid, warnings)
    return LabelMap("SEG", grid, infos, np.ascontiguousarray(masks), warnings, info)


def _check_positions(ds: Dataset, grid: ImageGrid, warnings: List[str], tol_mm: float = 0.01) -> None:
    """Warn when a frame's Image Position differs from that of the image it derives from."""
    where = {uid: k for k, (uid, _) in enumerate(grid.sources)}
    worst = 0.0
    for fg, uids in zip(ds.get("PerFrameFunctionalGroupsSequence") or [], _frame_sources(ds)):
        pos = (fg.get("PlanePositionSequence") or [None])[0]
        ks = [where[u] for u in uids if u in where]
        if pos is None or not ks or "ImagePositionPatient" not in pos:
            continue
        worst = max(worst, float(np.linalg.norm(np.asarray(pos.ImagePositionPatient, float) - grid.positions[ks[0]])))
    if worst > tol_mm:
        warnings.append(f"SEG frame positions differ from their source images by up to {worst:.3f} mm")
