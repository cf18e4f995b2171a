"""Segmentations from the clinic: DICOM SEG and RT Structure Sets in as label maps, label maps out as SEG.

`describe` tells what an annotation object annotates (found by `scan`), `read_annotation` puts it
on the grid of its image series as converted (`LabelMap`), `write_labelmap` writes the label map
NIfTI and its JSON, `export_seg` writes a label map back as DICOM SEG.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

from pydicom.dataset import Dataset

from ..errors import MedPrepError
from ..volume import Volume
from ..values import as_int
from .labelmap import OVERLAP_RULE, ImageGrid, LabelMap, SegmentInfo, write_labelmap
from .rtstruct import RTSTRUCT_CLASS, read_rtstruct
from .seg import SEG_CLASS, read_seg

__all__ = ["AnnotationObject", "ImageGrid", "LabelMap", "SegmentInfo", "OVERLAP_RULE", "annotation_kind",
           "describe", "deidentify_names", "read_annotation", "write_labelmap", "ANNOTATION_SUFFIX"]

KINDS = {SEG_CLASS: "SEG", RTSTRUCT_CLASS: "RTSTRUCT"}
# Output name suffix per kind: <image name>_seg.nii.gz, <image name>_rtstruct.nii.gz.
ANNOTATION_SUFFIX = {"SEG": "_seg", "RTSTRUCT": "_rtstruct"}


@dataclass
class AnnotationObject:
    """One SEG or RTSTRUCT file found by `scan`: what it annotates, without reading its pixels."""

    path: Path
    kind: str                               # "SEG" or "RTSTRUCT"
    referenced_series: List[str]            # SeriesInstanceUID(s) of the annotated images
    names: List[str]                        # segment labels / ROI names, in number order
    numbers: List[int]
    series_number: Optional[int] = None
    missing_reference: bool = False         # set by scan: no referenced series among the images found
    warnings: List[str] = field(default_factory=list)

    def summary(self, show_phi: bool = False) -> Dict[str, Any]:
        row: Dict[str, Any] = {"kind": self.kind, "series_number": self.series_number,
                               "count": len(self.names), "names": list(self.names),
                               "referenced_series_found": not self.missing_reference,
                               "warnings": list(self.warnings)}
        if show_phi:
            row["referenced_series_uids"] = list(self.referenced_series)
            row["path"] = str(self.path)
        return row


def annotation_kind(ds: Dataset) -> Optional[str]:
    sop = str(ds.get("SOPClassUID", "") or getattr(getattr(ds, "file_meta", None), "MediaStorageSOPClassUID", "")
              or "")
    return KINDS.get(sop)


def _referenced_series(ds: Dataset, kind: str) -> List[str]:
    uids: List[str] = []
    if kind == "SEG":
        for item in ds.get("ReferencedSeriesSequence") or []:
            uids.append(str(item.get("SeriesInstanceUID", "")))
    else:
        for fr in ds.get("ReferencedFrameOfReferenceSequence") or []:
            for study in fr.get("RTReferencedStudySequence") or []:
                for series in study.get("RTReferencedSeriesSequence") or []:
                    uids.append(str(series.get("SeriesInstanceUID", "")))
    return [u for u in dict.fromkeys(uids) if u]


def describe(ds: Dataset, path: Union[str, Path]) -> AnnotationObject:
    kind = annotation_kind(ds)
    if kind is None:
        raise MedPrepError("not a DICOM SEG or RT Structure Set", path)
    if kind == "SEG":
        items = [(as_int(s.get("SegmentNumber")) or 0, str(s.get("SegmentLabel", "") or ""))
                 for s in ds.get("SegmentSequence") or []]
    else:
        items = [(as_int(s.get("ROINumber")) or 0, str(s.get("ROIName", "") or ""))
                 for s in ds.get("StructureSetROISequence") or []]
    items.sort()
    number = as_int(ds.get("SeriesNumber"))
    refs = _referenced_series(ds, kind)
    warnings = [] if refs else ["names no referenced image series"]
    return AnnotationObject(Path(path), kind, refs, [n for _, n in items], [k for k, _ in items], number,
                            warnings=warnings)


def read_annotation(source: Union[str, Path, Dataset], image: Union[Volume, ImageGrid],
                    keep_fractions: bool = False) -> LabelMap:
    """A SEG or RTSTRUCT (file or data set) as masks on the grid of its converted image series."""
    import pydicom

    if isinstance(source, Dataset):
        ds, where = source, None
    else:
        where = Path(source)
        try:
            ds = pydicom.dcmread(str(where))
        except (OSError, pydicom.errors.InvalidDicomError) as exc:
            raise MedPrepError(f"cannot read the annotation object ({exc.__class__.__name__})", where) from exc
    grid = image if isinstance(image, ImageGrid) else ImageGrid.from_volume(image)
    kind = annotation_kind(ds)
    try:
        if kind == "SEG":
            return read_seg(ds, grid, keep_fractions=keep_fractions)
        if kind == "RTSTRUCT":
            return read_rtstruct(ds, grid)
    except MedPrepError as exc:
        if exc.path is None and where is not None:
            raise MedPrepError(exc.what, where, exc.hint) from exc
        raise
    raise MedPrepError("not a DICOM SEG or RT Structure Set", where)


def deidentify_names(labelmap: LabelMap, path: Union[str, Path], anonymizer: Any) -> None:
    """Segment/ROI names and descriptions as `anonymizer` leaves them in a de-identified copy of the
    object (PS3.15 Table E.1-1: ROI Name emptied unless the Clean Descriptors Option keeps it), so a
    label map made with `convert --anonymize` says what `anonymize` would have written."""
    import pydicom

    ds = anonymizer.anonymize(pydicom.dcmread(str(path), stop_before_pixels=True))
    if labelmap.kind == "SEG":
        items = {as_int(s.get("SegmentNumber")) or 0: (s.get("SegmentLabel"), s.get("SegmentDescription"))
                 for s in ds.get("SegmentSequence") or []}
    else:
        items = {as_int(s.get("ROINumber")) or 0: (s.get("ROIName"), s.get("ROIDescription"))
                 for s in ds.get("StructureSetROISequence") or []}
    for s in labelmap.segments:
        name, description = items.get(s.number, (None, None))
        s.name, s.description = str(name or ""), str(description or "")
    label = ds.get("StructureSetLabel")
    if label is not None:
        labelmap.info["StructureSetLabel"] = str(label)
    else:
        labelmap.info.pop("StructureSetLabel", None)
