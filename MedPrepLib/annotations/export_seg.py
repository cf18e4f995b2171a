"""Label maps out as DICOM SEG (highdicom), referencing the image series they were drawn on.

The label map must lie on the grid of the reference series as `medprep convert` writes it (same
voxel centres; a flipped or permuted axis order, e.g. dcm2niix's, is accepted and undone). Label
value v becomes segment number v, so SEG -> label map -> SEG keeps numbers and voxels.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np

from .. import __version__
from ..atomic import atomic_path
from ..errors import MedPrepError
from ..volume import Volume
from .labelmap import ImageGrid
from .seg import import_highdicom

# Used when neither the label map's JSON nor the caller gives codes: SCT "Tissue".
DEFAULT_CODE = {"scheme": "SCT", "value": "85756007", "meaning": "Tissue"}


def on_grid(label: Volume, grid: ImageGrid, tol_mm: float = 1e-3) -> np.ndarray:
    """The label voxels in the grid's (slice, row, column) order, or a clear error when they do not fit."""
    import nibabel as nib

    arr_xyz = np.asarray(label.array).transpose(2, 1, 0) if label.array.ndim == 3 else None
    if arr_xyz is None:
        raise MedPrepError("the label map must be 3D (one integer per voxel)")
    ornt = nib.orientations.ornt_transform(nib.orientations.io_orientation(label.affine),
                                           nib.orientations.io_orientation(grid.affine))
    moved = nib.orientations.apply_orientation(arr_xyz, ornt)
    affine = label.affine @ nib.orientations.inv_ornt_aff(ornt, arr_xyz.shape)
    want = tuple(reversed(grid.shape))
    if moved.shape != want or not np.allclose(affine, grid.affine, atol=tol_mm):
        raise MedPrepError(f"the label map (shape {list(arr_xyz.shape)}) is not on the reference series' grid "
                           f"(shape {list(want)})", hint="use a label map made on the NIfTI of that series")
    return np.ascontiguousarray(moved.transpose(2, 1, 0))


def _code(hd: Any, c: Optional[Dict[str, str]]) -> Any:
    c = c or DEFAULT_CODE
    return hd.sr.CodedConcept(value=c["value"], scheme_designator=c["scheme"], meaning=c["meaning"])


def segment_rows(values: Sequence[int], names: Optional[Sequence[str]], sidecar: Optional[Path],
                 segments: Optional[List[Dict[str, Any]]] = None) -> List[Dict]:
    """One description per label value 1..max: from `names`, else the label map's JSON (a file, or its
    "Segments" rows as given), else "Segment v"."""
    top = max(values, default=0)
    known: Dict[int, Dict[str, Any]] = {}
    try:
        if segments is None and sidecar is not None and sidecar.is_file():
            segments = json.loads(sidecar.read_text()).get("Segments", [])
        for row in segments or []:
            known[int(row["label_value"])] = row
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise MedPrepError(f"unreadable label map JSON ({exc.__class__.__name__})", sidecar) from exc
    if names is not None:
        if len(names) < top:
            raise MedPrepError(f"{len(names)} name(s) given for label values up to {top}",
                               hint="give one name per label value 1, 2, ... (--names a,b,c)")
        kept = ("category", "type", "color_cielab_dicom")
        return [{"name": n, **{k: v for k, v in known.get(i, {}).items() if k in kept}}
                for i, n in enumerate(names, start=1)]
    return [known.get(i, {"name": f"Segment {i}"}) for i in range(1, top + 1)]


def export_seg(label: Volume, grid: ImageGrid, out_path: Union[str, Path], names: Optional[Sequence[str]] = None,
               sidecar: Optional[Path] = None, overwrite: bool = False, series_number: int = 300,
               segments: Optional[List[Dict[str, Any]]] = None) -> Path:
    """Write the label map as a BINARY DICOM SEG derived from the images on `grid`."""
    import pydicom

    hd = import_highdicom()
    voxels = on_grid(label, grid)
    if voxels.dtype.kind not in "iub" or (voxels.dtype.kind == "i" and voxels.min() < 0):
        raise MedPrepError("the label map must hold non-negative integers")
    values = sorted(int(v) for v in np.unique(voxels) if v != 0)
    if not values:
        raise MedPrepError("the label map is empty: nothing to export")
    rows = segment_rows(values, names, sidecar, segments)
    if not grid.paths or any(f is not None for _, f in grid.sources):
        raise MedPrepError("DICOM SEG export needs a reference series of single-frame images")
    sources = []
    for path in grid.paths:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        if "SpecificCharacterSet" in ds and not ds.SpecificCharacterSet:
            del ds.SpecificCharacterSet  # empty means the default repertoire, which highdicom wants absent
        sources.append(ds)
    descriptions = []
    for number, row in enumerate(rows, start=1):
        d = hd.seg.SegmentDescription(
            segment_number=number, segment_label=str(row.get("name") or f"Segment {number}")[:64],
            segmented_property_category=_code(hd, row.get("category")),
            segmented_property_type=_code(hd, row.get("type")),
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL)
        if row.get("color_cielab_dicom"):
            d.RecommendedDisplayCIELabValue = [int(v) for v in row["color_cielab_dicom"]]
        descriptions.append(d)
    # highdicom takes an integer label map as segment numbers per voxel (BINARY, one bit per segment frame).
    pixels = voxels.astype(np.uint8 if len(rows) < 256 else np.uint16)
    try:
        seg = hd.seg.Segmentation(
            source_images=sources, pixel_array=pixels,
            segmentation_type=hd.seg.SegmentationTypeValues.BINARY, segment_descriptions=descriptions,
            series_instance_uid=hd.UID(), series_number=series_number, sop_instance_uid=hd.UID(),
            instance_number=1, manufacturer="MedPrep", manufacturer_model_name="MedPrepLib",
            software_versions=__version__, device_serial_number="0", series_description="MedPrep segmentation")
    except (ValueError, TypeError, AttributeError) as exc:
        raise MedPrepError(f"highdicom refused the segmentation ({exc})") from exc
    out_path = Path(out_path)
    if out_path.exists() and not overwrite:
        raise MedPrepError("output exists", out_path, "use --overwrite to replace it")
    with atomic_path(out_path, overwrite=True) as tmp:
        seg.save_as(str(tmp))
    return out_path


def grid_from_files(files: Sequence[Union[str, Path]]) -> ImageGrid:
    """The grid of the image series made of exactly `files` (e.g. the files a Slicer node was loaded from)."""
    import os

    from ..convert import volume_from_series
    from ..discovery import scan

    wanted = {str(Path(f).resolve()) for f in files}
    if not wanted:
        raise MedPrepError("no reference image files given")
    folder = os.path.commonpath([str(Path(f).resolve().parent) for f in files])
    for series in scan(folder).series:
        if {str(Path(f.path).resolve()) for f in series.files} == wanted:
            return ImageGrid.from_volume(volume_from_series(series))
    raise MedPrepError("the reference image files no longer form one series", folder,
                       "load the images again")
