"""Label maps on an image series' grid: the common result of reading a DICOM SEG or an RTSTRUCT.

The grid is the one `medprep convert` writes for the referenced image series: array index
(k, r, c) is slice k (ordered along the slice normal), DICOM row r, DICOM column c, and the NIfTI
affine is the image's. Masks are kept one per segment/ROI (overlaps intact); a 3D label map is
made from them by one rule: where segments overlap, the highest segment/ROI number wins.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..atomic import write_json
from ..errors import MedPrepError
from ..nifti import write_nifti
from ..affine import LPS_FROM_RAS, axis_directions, voxel_spacing
from ..volume import Volume

OVERLAP_RULE = "highest segment/ROI number wins"


@dataclass
class ImageGrid:
    """Where every voxel of a converted image series lies, and which DICOM image each slice is."""

    shape: Tuple[int, int, int]          # (slices, rows, columns), the Volume's array order
    affine: np.ndarray                   # voxel (c, r, k) -> RAS, as in the image NIfTI
    positions: np.ndarray                # (slices, 3) LPS position of each slice's first pixel
    row: np.ndarray                      # LPS unit vector along a row (increasing column index)
    col: np.ndarray                      # LPS unit vector down a column (increasing row index)
    normal: np.ndarray
    spacing: Tuple[float, float]         # (between rows, between columns) mm, DICOM order
    sources: List[Tuple[str, Optional[int]]] = field(default_factory=list)  # per slice: SOP UID, frame
    paths: List[str] = field(default_factory=list)                            # per slice: its file

    @classmethod
    def from_volume(cls, volume: Volume) -> "ImageGrid":
        positions = volume.meta.get("_slice_positions_lps")
        if positions is None:
            raise MedPrepError("the image volume carries no slice positions", hint="convert it from DICOM")
        lps = LPS_FROM_RAS @ volume.affine
        dc, dr = (float(v) for v in voxel_spacing(lps)[:2])
        row, col = axis_directions(lps)[:, :2].T
        normal = np.asarray(volume.meta.get("_slice_normal", np.cross(row, col)), dtype=float)
        shape = volume.array.shape[-3:]
        files = list(volume.meta.get("_slice_sources") or [])
        return cls(shape=(int(shape[0]), int(shape[1]), int(shape[2])), affine=volume.affine.copy(),
                   positions=np.asarray(positions, dtype=float), row=row, col=col, normal=normal,
                   spacing=(dr, dc), sources=[(_sop_uid(p), frame) for p, frame in files],
                   paths=[p for p, _ in files])

    @property
    def distances(self) -> np.ndarray:
        """Each slice's distance along the normal (mm)."""
        return self.positions @ self.normal


def _sop_uid(path: str) -> str:
    import pydicom

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SOPInstanceUID"], force=True)
    except (OSError, ValueError) as exc:
        raise MedPrepError("an image file changed or vanished while its annotation was read", path) from exc
    return str(ds.get("SOPInstanceUID", "") or "")


@dataclass
class SegmentInfo:
    """One segment (SEG) or ROI (RTSTRUCT): its number, name, colour and coded terms."""

    number: int
    name: str
    label: int = 0                                  # value in the label map (0: not yet numbered)
    color: Optional[List[int]] = None               # RGB 0-255
    category: Optional[Dict[str, str]] = None       # coded: scheme, value, meaning
    type: Optional[Dict[str, str]] = None
    description: str = ""
    extra: Dict[str, Any] = field(default_factory=dict)


@dataclass
class LabelMap:
    """Masks of one SEG/RTSTRUCT on an image grid: masks[n] belongs to segments[n]."""

    kind: str                                       # "SEG" or "RTSTRUCT"
    grid: ImageGrid
    segments: List[SegmentInfo]
    masks: np.ndarray                               # (n, slices, rows, columns) uint8 0/1, or float32 fractions
    warnings: List[str] = field(default_factory=list)
    info: Dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for s in self.segments:
            if not s.label:
                s.label = s.number

    @property
    def fractional(self) -> bool:
        return self.masks.dtype.kind == "f"

    def voxel_counts(self) -> List[int]:
        return [int(np.count_nonzero(m)) for m in self.masks]

    def overlap_voxels(self) -> int:
        """Voxels that lie in more than one segment."""
        if len(self.masks) < 2:
            return 0
        return int(np.count_nonzero(np.count_nonzero(self.masks, axis=0) > 1))

    def label_array(self) -> np.ndarray:
        """3D label map: each voxel holds its segment's label value; overlaps: highest number wins."""
        top = max((s.label for s in self.segments), default=0)
        out = np.zeros(self.grid.shape, dtype=np.uint8 if top <= 255 else np.uint16)
        for i in sorted(range(len(self.segments)), key=lambda i: self.segments[i].number):
            out[self.masks[i] != 0] = self.segments[i].label
        return out

    def select(self, names: Sequence[str]) -> "LabelMap":
        """Only the segments named (case-insensitive), numbered 1, 2, ... in the order given."""
        by_name: Dict[str, int] = {}
        for i, s in enumerate(self.segments):
            by_name.setdefault(s.name.strip().lower(), i)
        missing = [n for n in names if n.strip().lower() not in by_name]
        if missing:
            found = ", ".join(s.name or f"#{s.number} (no name)" for s in self.segments) or "none"
            raise MedPrepError(f"label name(s) not found in the {self.kind}: {', '.join(missing)}",
                               hint=f"names found: {found}")
        idx = [by_name[n.strip().lower()] for n in names]
        segments = []
        for value, i in enumerate(idx, start=1):
            s = self.segments[i]
            segments.append(SegmentInfo(number=value, name=s.name, label=value, color=s.color,
                                        category=s.category, type=s.type, description=s.description,
                                        extra=dict(s.extra, original_number=s.number)))
        return LabelMap(self.kind, self.grid, segments, self.masks[idx], list(self.warnings), dict(self.info))

    def volume(self, onehot: bool = False) -> Volume:
        """The label map (or the (x, y, z, n) one-hot / fraction stack) as a Volume on the image grid."""
        if onehot or self.fractional:
            # NIfTI's 4th axis is the slowest in memory: (n, z, y, x) is already that layout.
            array = np.ascontiguousarray(self.masks)
        else:
            array = self.label_array()
        return Volume(array=array, affine=self.grid.affine.copy(), meta={}, warnings=list(self.warnings))

    def sidecar(self, onehot: bool = False) -> Dict[str, Any]:
        counts = self.voxel_counts()
        segs = []
        for i, (s, n) in enumerate(zip(self.segments, counts)):
            row: Dict[str, Any] = {"label_value": s.label, "number": s.number, "name": s.name}
            if onehot or self.fractional:
                row["volume_index"] = i
            if s.color is not None:
                row["color"] = list(s.color)
            if s.category:
                row["category"] = s.category
            if s.type:
                row["type"] = s.type
            if s.description:
                row["description"] = s.description
            row.update(s.extra)
            row["voxels"] = n
            segs.append(row)
        out: Dict[str, Any] = {"Kind": self.kind, "Segments": segs}
        out.update(self.info)
        if onehot or self.fractional:
            out["Layout"] = ("4D: volume n is the fraction of segment n (0..1)" if self.fractional
                             else "4D one-hot: volume n is 1 inside segment n")
        else:
            out["Layout"] = "3D label map: voxel = label_value, 0 = none"
            out["OverlapRule"] = OVERLAP_RULE
        out["OverlapVoxels"] = self.overlap_voxels()
        out["Warnings"] = list(self.warnings)
        return out


def write_labelmap(labelmap: LabelMap, nifti_path: Union[str, Path], json_path: Union[str, Path],
                   gz: bool = True, onehot: bool = False, overwrite: bool = False) -> None:
    """The label map NIfTI and its JSON (label value -> name, number, colour, codes); both or neither."""
    write_nifti(labelmap.volume(onehot=onehot), nifti_path, gz=gz, overwrite=overwrite)
    try:
        write_json(json_path, labelmap.sidecar(onehot=onehot), overwrite=overwrite)
    except BaseException:
        Path(nifti_path).unlink(missing_ok=True)
        raise


def coded(item: Any) -> Optional[Dict[str, str]]:
    """A DICOM code sequence item as {scheme, value, meaning}, exactly as coded (legacy SRT kept)."""
    if item is None:
        return None
    value = item.get("CodeValue") or item.get("LongCodeValue") or item.get("URNCodeValue") or ""
    return {"scheme": str(item.get("CodingSchemeDesignator", "") or ""), "value": str(value),
            "meaning": str(item.get("CodeMeaning", "") or "")}
