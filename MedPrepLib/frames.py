"""Per-frame attributes of classic, mosaic and enhanced multi-frame DICOM, in one shape.

Every later stage (series splitting, slice sorting, scaling) works on `Frame` records, so the three
storage layouts share one code path. Enhanced objects keep most attributes in the Shared and
Per-frame Functional Groups; classic files keep them at the top level.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, List, Optional, Sequence, Tuple

from pydicom.dataset import Dataset

from . import siemens, uih
from .dicomfile import DicomFile
from .values import as_float, as_floats, as_int

Vec3 = Tuple[float, float, float]


@dataclass
class Frame:
    file: DicomFile
    index: Optional[int]          # frame number (0-based) inside a multi-frame file; None otherwise
    position: Optional[Vec3]      # ImagePositionPatient (LPS mm) of the frame's first voxel
    orientation: Optional[Tuple[float, ...]]  # ImageOrientationPatient (row then column cosines)
    pixel_spacing: Optional[Tuple[float, float]]  # (between rows, between columns), DICOM order
    thickness: Optional[float]
    slope: float
    intercept: float
    echo: Optional[int]
    echo_time: Optional[float]
    kind: str                     # "M" magnitude (or plain), "P" phase, "R" real, "I" imaginary, "B0" field map
    derived: bool
    localizer: bool
    instance: int
    time_key: Tuple[float, ...]   # orders volumes of a time series at one position
    mosaic_slices: int = 0        # Siemens mosaic or UIH grid: number of slices tiled in this frame
    mosaic_normal: Optional[Vec3] = None
    mosaic_grid: Optional[Tuple[int, int]] = None  # (tiles down, across) when not Siemens' square layout
    tile_positions: Optional[Tuple[Vec3, ...]] = None  # each tile's own ImagePositionPatient (UIH)
    philips_scale_slope: Optional[float] = None
    bvalue: Optional[float] = None
    gradient: Optional[Vec3] = None

    @property
    def ds(self) -> Dataset:
        return self.file.ds


def _first(ds: Optional[Dataset], seq: str) -> Optional[Dataset]:
    if ds is None:
        return None
    items = ds.get(seq)
    try:
        return items[0] if items else None
    except (TypeError, IndexError):
        return None


def _seconds(tm: Any) -> float:
    """DICOM TM (HHMMSS.frac) as seconds since midnight; 0 when absent or malformed."""
    s = str(tm or "").strip().replace(":", "")
    try:
        hh, mm = int(s[0:2] or 0), int(s[2:4] or 0)
        ss = float(s[4:] or 0)
    except ValueError:
        return 0.0
    return hh * 3600 + mm * 60 + ss


def classify_image_type(image_type: Sequence[str], philips_type: Optional[str] = None,
                        complex_component: Optional[str] = None) -> str:
    """"M", "P", "R", "I" or "B0" from ImageType/FrameType, the Philips private image type and, for
    enhanced frames, ComplexImageComponent (MAGNITUDE, PHASE, REAL, IMAGINARY; PS3.3 C.8.13.3)."""
    values = [str(v).upper() for v in image_type or ()]
    if philips_type:
        p = str(philips_type).upper()
        if p in ("B0", "B0 MAP"):
            return "B0"
        if p in ("P", "PHASE"):
            return "P"
        if p in ("R", "REAL"):
            return "R"
        if p in ("I", "IMAGINARY"):
            return "I"
    for v in values[2:]:
        if v in ("P", "PHASE"):
            return "P"
        if v in ("R", "REAL"):
            return "R"
        if v in ("I", "IMAGINARY"):
            return "I"
        if v in ("FIELD_MAP", "B0_MAP", "B0"):
            return "B0"
    return _COMPLEX_KIND.get(str(complex_component or "").upper(), "M")


_COMPLEX_KIND = {"PHASE": "P", "REAL": "R", "IMAGINARY": "I"}
# Dimension index pointers that locate a frame in space rather than in time or contrast (PS3.3 C.7.6.17).
_SPATIAL_DIMENSIONS = {0x00209056, 0x00209057, 0x00200032}  # StackID, InStackPositionNumber, ImagePositionPatient


def _is_localizer(ds: Dataset, image_type: Sequence[str]) -> bool:
    if any(str(v).upper() in ("LOCALIZER", "SCOUT") for v in image_type or ()):
        return True
    text = f"{ds.get('SeriesDescription', '')} {ds.get('ProtocolName', '')}".lower()
    return any(word in text for word in ("localizer", "localiser", "scout", "survey"))


def _is_derived(ds: Dataset, image_type: Sequence[str], bvalue: Optional[float],
                gradient: Optional[Vec3]) -> bool:
    if image_type and str(image_type[0]).upper() == "DERIVED":
        return True
    if str(ds.get("DiffusionDirectionality", "")).upper() == "ISOTROPIC":
        return True
    # Philips writes its trace (isotropic) DWI volume as a b>0 image with a zero gradient.
    if bvalue and bvalue > 0 and gradient is not None and all(abs(g) < 1e-6 for g in gradient):
        return str(ds.get("Manufacturer", "")).upper().startswith("PHILIPS")
    return False


def _diffusion(ds: Dataset) -> Tuple[Optional[float], Optional[Vec3]]:
    b = as_float(ds.get("DiffusionBValue"))
    g = as_floats(ds.get("DiffusionGradientOrientation"), 3)
    if b is None and (0x2001, 0x1003) in ds:  # Philips private b-value
        b = as_float(ds[0x2001, 0x1003].value)
    if g is None and (0x2005, 0x10B0) in ds:
        g = tuple(as_float(ds[0x2005, t].value) or 0.0 for t in (0x10B0, 0x10B1, 0x10B2)) \
            if all((0x2005, t) in ds for t in (0x10B0, 0x10B1, 0x10B2)) else None
    return b, g


def _private(ds: Optional[Dataset], group: int, creator: str, element: int) -> Any:
    """The value of private element `element` (0x00-0xFF) of `creator`'s block in `group`, or None."""
    if ds is None:
        return None
    try:
        block = ds.private_block(group, creator)
    except (KeyError, ValueError):
        return None
    return block[element].value if element in block else None


def _ice_echo(pf: Optional[Dataset]) -> Optional[int]:
    """Siemens XA echo number: the first number after "X_" of the per-frame ICE dimensions
    (0021,xx06 of "SIEMENS MR SDI 02"), which XA enhanced objects carry instead of EchoNumbers."""
    items = _private(pf, 0x0021, "SIEMENS MR SDI 02", 0xFE)
    try:
        item = items[0] if items else None
    except (TypeError, IndexError):
        return None
    dims = str(_private(item, 0x0021, "SIEMENS MR SDI 02", 0x06) or "").split("_")
    return as_int(dims[1]) if len(dims) > 2 and dims[0] == "X" else None


def _philips_scale(ds: Optional[Dataset]) -> Optional[float]:
    if ds is not None and (0x2005, 0x100E) in ds:
        return as_float(ds[0x2005, 0x100E].value)
    return None


def classic_frame(f: DicomFile) -> Frame:
    ds = f.ds
    image_type = list(ds.get("ImageType", []) or [])
    philips_type = ds[0x2005, 0x1011].value if (0x2005, 0x1011) in ds else None
    bvalue, gradient = _diffusion(ds)
    mosaic_n, mosaic_normal = siemens.mosaic_info(ds)
    grid = tiles = None
    if not mosaic_n:
        mosaic_n = uih.grid_slices(ds)
        grid = uih.grid_shape(mosaic_n, int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)) \
            if mosaic_n else None
        if grid is None:
            mosaic_n = 0
        else:
            tiles = uih.slice_positions(ds, mosaic_n)
            if bvalue is None and gradient is None:
                bvalue, gradient = uih.diffusion(ds)
    echo = as_int(ds.get("EchoNumbers"))
    # Phases of a multi-phase series (cine, ASL, any TriggerTime series) follow their trigger time,
    # whatever order their acquisition times and instance numbers are in.
    time_key = (
        float(as_int(ds.get("TemporalPositionIdentifier")) or 0),
        float(as_int(ds.get("AcquisitionNumber")) or 0),
        as_float(ds.get("TriggerTime")) or 0.0,
        _seconds(ds.get("AcquisitionTime")),
        float(as_int(ds.get("InstanceNumber")) or 0),
    )
    return Frame(
        file=f,
        index=None,
        position=as_floats(ds.get("ImagePositionPatient"), 3) or (tiles[0] if tiles else None),
        orientation=as_floats(ds.get("ImageOrientationPatient"), 6),
        pixel_spacing=as_floats(ds.get("PixelSpacing"), 2) or as_floats(ds.get("ImagerPixelSpacing"), 2),
        thickness=as_float(ds.get("SliceThickness")),
        slope=as_float(ds.get("RescaleSlope")) or 1.0,
        intercept=as_float(ds.get("RescaleIntercept")) or 0.0,
        echo=echo,
        echo_time=as_float(ds.get("EchoTime")),
        kind=classify_image_type(image_type, philips_type),
        derived=_is_derived(ds, image_type, bvalue, gradient),
        localizer=_is_localizer(ds, image_type),
        instance=as_int(ds.get("InstanceNumber")) or 0,
        time_key=time_key,
        mosaic_slices=mosaic_n,
        mosaic_normal=mosaic_normal,
        mosaic_grid=grid,
        tile_positions=tiles,
        philips_scale_slope=_philips_scale(ds),
        bvalue=bvalue,
        gradient=gradient,
    )


def enhanced_frames(f: DicomFile) -> List[Frame]:
    ds = f.ds
    shared = _first(ds, "SharedFunctionalGroupsSequence")
    per_frame = ds.get("PerFrameFunctionalGroupsSequence") or []
    n = as_int(ds.get("NumberOfFrames")) or len(per_frame)
    top_type = list(ds.get("ImageType", []) or [])
    top_echo = as_int(ds.get("EchoNumbers"))
    # Volumes of one object are ordered by their non-spatial dimension index values, the last declared
    # dimension first (the order dcm2niix gives; dimensions that split the object, such as echo or
    # image kind, are constant within each volume); then by temporal position and acquisition number.
    dims = [as_int(item.get("DimensionIndexPointer")) for item in ds.get("DimensionIndexSequence") or []]
    temporal_dims = [k for k, ptr in enumerate(dims) if ptr not in _SPATIAL_DIMENSIONS]
    frames = []
    for i in range(n):
        pf = per_frame[i] if i < len(per_frame) else None

        def item(seq: str, pf: Optional[Dataset] = pf) -> Optional[Dataset]:
            return _first(pf, seq) or _first(shared, seq)

        pos = item("PlanePositionSequence")
        ori = item("PlaneOrientationSequence")
        meas = item("PixelMeasuresSequence")
        pvt = item("PixelValueTransformationSequence")
        content = item("FrameContentSequence")
        echo_item = item("MREchoSequence")
        ftype = item("MRImageFrameTypeSequence") or item("CTImageFrameTypeSequence")
        diff = item("MRDiffusionSequence")
        philips = _first(pf, (0x2005, 0x140F)) if pf is not None else None
        frame_type = list(ftype.get("FrameType", []) or []) if ftype is not None else top_type
        philips_type = philips[0x2005, 0x1011].value if philips is not None and (0x2005, 0x1011) in philips \
            else None
        echo = as_int(philips.get("EchoNumbers")) if philips is not None else None
        if echo is None:
            echo = _ice_echo(pf) if pf is not None else None
        if echo is None:
            echo = top_echo
        bvalue = as_float(diff.get("DiffusionBValue")) if diff is not None else None
        gradient = None
        if diff is not None:
            gitem = _first(diff, "DiffusionGradientDirectionSequence")
            if gitem is not None:
                gradient = as_floats(gitem.get("DiffusionGradientOrientation"), 3)
        temporal = as_int(content.get("TemporalPositionIndex")) if content is not None else None
        acq = as_int(content.get("FrameAcquisitionNumber")) if content is not None else None
        dim = content.get("DimensionIndexValues") if content is not None else None
        dim = (dim,) if isinstance(dim, int) else tuple(dim or ())  # one value reads as an int
        order = tuple(float(dim[k]) for k in reversed(temporal_dims) if k < len(dim))
        frames.append(Frame(
            file=f,
            index=i,
            position=as_floats(pos.get("ImagePositionPatient"), 3) if pos is not None else None,
            orientation=as_floats(ori.get("ImageOrientationPatient"), 6) if ori is not None else None,
            pixel_spacing=as_floats(meas.get("PixelSpacing"), 2) if meas is not None else None,
            thickness=as_float(meas.get("SliceThickness")) if meas is not None else None,
            slope=(as_float(pvt.get("RescaleSlope")) or 1.0) if pvt is not None else 1.0,
            intercept=(as_float(pvt.get("RescaleIntercept")) or 0.0) if pvt is not None else 0.0,
            echo=echo,
            echo_time=as_float(echo_item.get("EffectiveEchoTime")) if echo_item is not None else None,
            kind=classify_image_type(frame_type, philips_type,
                                     (ftype.get("ComplexImageComponent") if ftype is not None else None)
                                     or ds.get("ComplexImageComponent")),
            derived=_is_derived(ds, frame_type, bvalue, gradient),
            localizer=_is_localizer(ds, frame_type),
            instance=as_int(ds.get("InstanceNumber")) or 0,
            time_key=order + (float(temporal or 0), float(acq or 0), float(i), 0.0),
            philips_scale_slope=_philips_scale(philips),
            bvalue=bvalue,
            gradient=gradient,
        ))
    return frames


def classic_multiframe(f: DicomFile, first: Frame, n: int) -> List[Frame]:
    """Frames of a multi-frame object without functional groups (legacy NM, XA/RF cine, ...).

    With a position, orientation and slice spacing the frames are a stack along the normal (as
    SpacingBetweenSlices defines for such objects); otherwise they keep their stored order.
    """
    import numpy as np

    ds = f.ds
    step = as_float(ds.get("SpacingBetweenSlices")) or None
    frames = []
    for i in range(n):
        position = None
        if first.position is not None and first.orientation is not None and step:
            row, col = np.asarray(first.orientation[:3]), np.asarray(first.orientation[3:])
            normal = np.cross(row, col)
            position = tuple((np.asarray(first.position) + i * step * normal).tolist())
        frames.append(dataclasses.replace(first, index=i, position=position,
                                          time_key=first.time_key[:-1] + (float(i),)))
    return frames


def file_frames(f: DicomFile) -> List[Frame]:
    if "PerFrameFunctionalGroupsSequence" in f.ds or "SharedFunctionalGroupsSequence" in f.ds:
        return enhanced_frames(f)
    frame = classic_frame(f)
    n = as_int(f.ds.get("NumberOfFrames")) or 1
    return classic_multiframe(f, frame, n) if n > 1 and not frame.mosaic_slices else [frame]
