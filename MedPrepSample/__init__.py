"""Synthetic DICOM with known geometry: a CT body phantom and a chest X-ray, written with pydicom.

Nothing is shipped: the images are computed from a seed, so the demo, the benchmarks and the tests
all get the same data. `write_series` is the general writer (any array, geometry, scaling and
transfer syntax); the phantoms only supply realistic content for it. The identity written into the
headers is obviously fake unless the caller passes its own `patient` fields.

A package of its own, not part of MedPrepLib: it is test and demo material, which the runtime package
that Slicer loads does not need (`medprep demo` and MedPrepTest import it when they run).
"""
from __future__ import annotations

import datetime
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

import numpy as np
import pydicom
from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    UID,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    generate_uid,
)

from MedPrepLib.atomic import atomic_open
from MedPrepLib.errors import MedPrepError

PathLike = Union[str, Path]

DEMO_PATIENT: dict[str, str] = {
    "PatientName": "DEMO^PATIENT",
    "PatientID": "MEDPREP-DEMO-0001",
    "PatientBirthDate": "19700101",
    "PatientSex": "O",
}

# The acquisition date of every sample; fixed so that the output is reproducible.
_DATE = "20240101"
_TIME = "120000"

_UNCOMPRESSED = (ExplicitVRLittleEndian, ImplicitVRLittleEndian)

# Per modality: the storage SOP class, whether the image lives in patient space (Image Plane
# module: position, orientation, PixelSpacing) or is a projection (ImagerPixelSpacing only),
# and the attributes its IOD requires beyond the common modules.
_MODALITIES: dict[str, dict[str, Any]] = {
    "CT": {
        "sop_class": "1.2.840.10008.5.1.4.1.1.2",
        "plane": True,
        "attrs": {
            "ImageType": ["ORIGINAL", "PRIMARY", "AXIAL"],
            "KVP": 120,
            "ConvolutionKernel": "STANDARD",
            "RescaleType": "HU",
        },
    },
    "MR": {
        "sop_class": "1.2.840.10008.5.1.4.1.1.4",
        "plane": True,
        "attrs": {
            "ImageType": ["ORIGINAL", "PRIMARY", "M", "ND"],
            "ScanningSequence": "GR",
            "SequenceVariant": "SP",
            "ScanOptions": "",
            "MRAcquisitionType": "3D",
            "RepetitionTime": 8.0,
            "EchoTime": 3.5,
            "EchoTrainLength": 1,
            "FlipAngle": 12,
            "MagneticFieldStrength": 3,
            "ImagingFrequency": 127.7,
            "ImagedNucleus": "1H",
        },
    },
    "PT": {
        "sop_class": "1.2.840.10008.5.1.4.1.1.128",
        "plane": True,
        "attrs": {
            "ImageType": ["ORIGINAL", "PRIMARY"],
            "SeriesType": ["STATIC", "IMAGE"],
            "Units": "BQML",
            "CountsSource": "EMISSION",
            "CorrectedImage": ["ATTN", "DECY"],
            "DecayCorrection": "START",
            "RandomsCorrectionMethod": "DLYD",
            "AttenuationCorrectionMethod": "CT",
            "ReconstructionMethod": "OSEM",
            "FrameReferenceTime": 0,
            "ActualFrameDuration": 120000,
            "SliceSensitivityFactor": 1,
            "DecayFactor": 1,
            "DoseCalibrationFactor": 1,
        },
    },
    "DX": {
        "sop_class": "1.2.840.10008.5.1.4.1.1.1.1",
        "plane": False,
        "attrs": {
            "ImageType": ["ORIGINAL", "PRIMARY"],
            "PresentationIntentType": "FOR PRESENTATION",
            "PixelIntensityRelationship": "LOG",
            "RescaleType": "US",
            "DetectorType": "SCINTILLATOR",
            "LossyImageCompression": "00",
            "BurnedInAnnotation": "NO",
        },
    },
    "CR": {
        "sop_class": "1.2.840.10008.5.1.4.1.1.1",
        "plane": False,
        "attrs": {
            "ImageType": ["ORIGINAL", "PRIMARY"],
            "BurnedInAnnotation": "NO",
        },
    },
}


def can_encode(transfer_syntax: str) -> bool:
    """Whether `write_series` can write this transfer syntax with the installed pydicom plug-ins."""
    uid = UID(transfer_syntax)
    if uid in _UNCOMPRESSED:
        return True
    try:
        from pydicom.pixels.encoders.base import get_encoder  # pydicom >= 3
    except ImportError:  # pragma: no cover - pydicom 2.4
        from pydicom.encoders import get_encoder
    try:
        return bool(get_encoder(uid).is_available)
    except NotImplementedError:
        return False


def _unit(v: Sequence[float], name: str) -> np.ndarray:
    a = np.asarray(v, dtype=float)
    n = np.linalg.norm(a)
    if a.shape != (3,) or n == 0:
        raise ValueError(f"{name} must be a non-zero 3-vector, got {v!r}")
    return a / n


def _stored_range(volume: np.ndarray, slope: float, intercept: float) -> tuple[bool, int]:
    """(signed, bits stored) that hold round((value - intercept) / slope) for every voxel."""
    vmin, vmax = float(volume.min()), float(volume.max())
    smin = int(np.rint((vmin - intercept) / slope))
    smax = int(np.rint((vmax - intercept) / slope))
    if smin >= 0:
        if smax > 65535:
            raise ValueError(f"values up to {vmax} need more than 16 bits with slope {slope}")
        return False, 12 if smax <= 4095 else 16
    if smin < -32768 or smax > 32767:
        raise ValueError(f"values {vmin}..{vmax} do not fit int16 with slope {slope}, intercept {intercept}")
    return True, 12 if (smin >= -2048 and smax <= 2047) else 16


def _charset(values: Sequence[Any]) -> str:
    """ISO_IR 100 (Latin-1) unless a text value needs UTF-8."""
    for v in values:
        if isinstance(v, str):
            try:
                v.encode("latin-1")
            except UnicodeEncodeError:
                return "ISO_IR 192"
    return "ISO_IR 100"


def _file_names(n: int, scheme: str, sop_uids: list[str]) -> list[str]:
    if scheme == "sequential":
        return [f"IM{k + 1:05d}.dcm" for k in range(n)]
    if scheme == "uid":
        return [f"{u}.dcm" for u in sop_uids]
    if scheme == "shuffled-noext":
        # Names whose sorted order is not the slice order and that have no extension, as some
        # scanners write them; the permutation is fixed so the output is reproducible.
        perm = np.random.default_rng(n).permutation(n)
        return [f"I{int(p) + 1:05d}" for p in perm]
    raise ValueError(f"file_names must be 'sequential', 'uid' or 'shuffled-noext', got {scheme!r}")


def _write(path: Path, ds: Dataset) -> None:
    with atomic_open(path, "wb", overwrite=True) as fh:
        if int(pydicom.__version__.split(".")[0]) >= 3:
            pydicom.dcmwrite(fh, ds, enforce_file_format=True)
        else:  # pragma: no cover - pydicom 2.4
            ds.is_little_endian = True
            ds.is_implicit_VR = ds.file_meta.TransferSyntaxUID == ImplicitVRLittleEndian
            pydicom.dcmwrite(fh, ds, write_like_original=False)


def write_series(
    out_dir: PathLike,
    volume: np.ndarray,
    *,
    modality: str = "CT",
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    origin_lps: Sequence[float] = (0.0, 0.0, 0.0),
    row_dir: Sequence[float] = (1.0, 0.0, 0.0),
    col_dir: Sequence[float] = (0.0, 1.0, 0.0),
    slope: float = 1.0,
    intercept: float = 0.0,
    photometric: str = "MONOCHROME2",
    transfer_syntax: str = ExplicitVRLittleEndian,
    series_number: int = 1,
    series_description: str = "MedPrep synthetic series",
    patient: dict[str, Any] | None = None,
    file_names: str = "sequential",
    study_uid: str | None = None,
    series_uid: str | None = None,
    frame_of_reference_uid: str | None = None,
    extra: dict[str, Any] | None = None,
    slice_positions: Sequence[Sequence[float]] | None = None,
    instance_numbers: Sequence[int] | None = None,
) -> list[Path]:
    """Write `volume` as classic single-frame DICOM files, one per slice, into `out_dir`.

    volume: real-world values (e.g. HU), shape (z, y, x), or (t, z, y, x) for a time series (one
        file per slice and time point, same positions repeated, TemporalPositionIdentifier = t + 1).
        Stored as round((value - intercept) / slope) in uint16 or int16, BitsStored 12 when it fits.
        Values are stored as given whatever `photometric` says (MONOCHROME1 does not invert them).
    spacing: (column spacing sx, row spacing sy, slice spacing sz) in mm; PixelSpacing is written in
        DICOM's order [sy, sx], or ImagerPixelSpacing for projection modalities (DX, CR).
    origin_lps, row_dir, col_dir: position of the first voxel of slice 0 and the directions of
        increasing column and row index, in the patient (LPS) frame. Slice k lies at
        origin + k * sz * (row_dir x col_dir).
    transfer_syntax: Explicit or Implicit VR Little Endian, or any compressed syntax pydicom can
        encode here (see `can_encode`: RLE Lossless always, JPEG 2000 / JPEG-LS with their plug-ins).
    patient: identity fields (PatientName, PatientID, ...) that replace the fake demo identity.
    file_names: "sequential" (IM00001.dcm...), "uid" (<SOPInstanceUID>.dcm) or "shuffled-noext"
        (I00042..., not in slice order, no extension).
    extra: keyword -> value set on every file last, overriding anything above; None removes the element.
    slice_positions: ImagePositionPatient of each slice (n_z x 3), replacing origin + k * sz * normal,
        e.g. for a gantry-tilted stack whose slices are displaced in-plane (see `write_tilted_ct`).
    instance_numbers: InstanceNumber of each file (time-major for 4D), instead of 1, 2, 3, ...
    Returns the written paths in slice order (time-major for 4D).
    """
    modality = modality.upper()
    if modality not in _MODALITIES:
        raise ValueError(f"modality must be one of {sorted(_MODALITIES)}, got {modality!r}")
    if slope <= 0:
        raise ValueError(f"slope must be positive, got {slope}")
    volume = np.asarray(volume)
    if volume.ndim == 3:
        volume4 = volume[None]
    elif volume.ndim == 4:
        volume4 = volume
    else:
        raise ValueError(f"volume must be (z, y, x) or (t, z, y, x), got shape {volume.shape}")
    n_t, n_z, rows, cols = volume4.shape
    ts = UID(transfer_syntax)
    if not can_encode(ts):
        raise MedPrepError(f"cannot encode transfer syntax {ts.name}", hint="install the pydicom "
                           "encoder plug-in for it (pyjpegls for JPEG-LS, pylibjpeg-openjpeg for JPEG 2000)")
    spec = _MODALITIES[modality]
    sx, sy, sz = (float(v) for v in spacing)
    row = _unit(row_dir, "row_dir")
    col = _unit(col_dir, "col_dir")
    if abs(float(row @ col)) > 1e-6:
        raise ValueError("row_dir and col_dir must be orthogonal")
    normal = np.cross(row, col)
    origin = np.asarray(origin_lps, dtype=float)
    if slice_positions is None:
        positions = origin + np.outer(np.arange(n_z) * sz, normal)
    else:
        positions = np.asarray(slice_positions, dtype=float)
        if positions.shape != (n_z, 3):
            raise ValueError(f"slice_positions must be {n_z} x 3, got shape {positions.shape}")
    if instance_numbers is not None and len(instance_numbers) != n_t * n_z:
        raise ValueError(f"instance_numbers needs {n_t * n_z} values, got {len(instance_numbers)}")
    signed, bits = _stored_range(volume4, slope, intercept)
    dtype = np.int16 if signed else np.uint16
    identity = dict(DEMO_PATIENT)
    identity.update(patient or {})
    unknown = [k for k in list(identity) + list(extra or {}) if tag_for_keyword(k) is None]
    if unknown:
        raise ValueError(f"not DICOM keywords: {', '.join(unknown)}")

    study_uid = study_uid or generate_uid()
    series_uid = series_uid or generate_uid()
    frame_of_reference_uid = frame_of_reference_uid or generate_uid()
    sop_uids = [generate_uid() for _ in range(n_t * n_z)]
    names = _file_names(n_t * n_z, file_names, sop_uids)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    base: dict[str, Any] = {
        "SpecificCharacterSet": _charset(list(identity.values()) + list((extra or {}).values())
                                         + [series_description]),
        "SOPClassUID": spec["sop_class"],
        "StudyDate": _DATE, "SeriesDate": _DATE, "AcquisitionDate": _DATE, "ContentDate": _DATE,
        "StudyTime": _TIME, "SeriesTime": _TIME, "AcquisitionTime": _TIME, "ContentTime": _TIME,
        "AccessionNumber": "DEMO0001",
        "Modality": modality,
        "Manufacturer": "MedPrep",
        "ManufacturerModelName": "Synthetic phantom",
        "ReferringPhysicianName": "",
        "StudyDescription": "MedPrep synthetic study",
        "SeriesDescription": series_description,
        **identity,
        "StudyInstanceUID": study_uid,
        "SeriesInstanceUID": series_uid,
        "StudyID": "1",
        "SeriesNumber": int(series_number),
        "SamplesPerPixel": 1,
        "PhotometricInterpretation": photometric,
        "Rows": rows,
        "Columns": cols,
        "BitsAllocated": 16,
        "BitsStored": bits,
        "HighBit": bits - 1,
        "PixelRepresentation": int(signed),
    }
    base.update(spec["attrs"])
    if spec["plane"]:
        base.update({
            "FrameOfReferenceUID": frame_of_reference_uid,
            "PositionReferenceIndicator": "",
            "PatientPosition": "HFS",
            "ImageOrientationPatient": [round(float(v), 10) for v in np.concatenate([row, col])],
            "PixelSpacing": [sy, sx],
            "SliceThickness": sz,
        })
        if modality == "MR":
            base["SpacingBetweenSlices"] = sz
    else:
        base.update({
            "ImagerPixelSpacing": [sy, sx],
            "PatientOrientation": ["L", "F"],
        })
        if modality == "DX":
            base["PresentationLUTShape"] = "INVERSE" if photometric == "MONOCHROME1" else "IDENTITY"
            # +1: stored value rises with X-ray intensity, which is the MONOCHROME1 storage sense.
            base["PixelIntensityRelationshipSign"] = 1 if photometric == "MONOCHROME1" else -1
    if modality in ("CT", "DX", "PT") or slope != 1.0 or intercept != 0.0:
        base["RescaleIntercept"] = intercept
        base["RescaleSlope"] = slope
    if n_t > 1:
        base["NumberOfTemporalPositions"] = n_t

    paths: list[Path] = []
    for t in range(n_t):
        for k in range(n_z):
            i = t * n_z + k
            stored = np.rint((volume4[t, k].astype(np.float64) - intercept) / slope).astype(dtype)
            ds = Dataset()
            for key, value in base.items():
                setattr(ds, key, value)
            ds.file_meta = FileMetaDataset()
            ds.file_meta.MediaStorageSOPClassUID = spec["sop_class"]
            ds.file_meta.TransferSyntaxUID = ts
            ds.PixelData = stored.tobytes()
            if ts not in _UNCOMPRESSED:
                ds.compress(ts, stored)
            ds.InstanceNumber = int(instance_numbers[i]) if instance_numbers is not None else i + 1
            ds.AcquisitionNumber = t + 1
            if spec["plane"]:
                pos = positions[k]
                ds.ImagePositionPatient = [round(float(v), 6) for v in pos]
                ds.SliceLocation = round(float(pos @ normal), 6)
            if n_t > 1:
                ds.TemporalPositionIdentifier = t + 1
                ds.AcquisitionTime = (datetime.datetime(2024, 1, 1, 12) +
                                      datetime.timedelta(seconds=2.0 * t)).strftime("%H%M%S.%f")
            ds.SOPInstanceUID = sop_uids[i]
            ds.file_meta.MediaStorageSOPInstanceUID = sop_uids[i]
            for key, value in (extra or {}).items():
                if value is None:
                    if key in ds:
                        delattr(ds, key)
                else:
                    setattr(ds, key, value)
            path = out / names[i]
            _write(path, ds)
            paths.append(path)
    return paths


# ---------------------------------------------------------------------------------------------
# Enhanced (multi-frame) MR

ENHANCED_MR_STORAGE = "1.2.840.10008.5.1.4.1.1.4.1"
_COMPONENT = {"M": "MAGNITUDE", "P": "PHASE", "R": "REAL", "I": "IMAGINARY"}
# DimensionIndexPointer -> FunctionalGroupPointer of the dimensions write_enhanced_mr declares.
_DIMENSIONS = (
    ("StackID", "FrameContentSequence"),
    ("InStackPositionNumber", "FrameContentSequence"),
    ("EffectiveEchoTime", "MREchoSequence"),
    ("ComplexImageComponent", "MRImageFrameTypeSequence"),
)


def _item(**values: Any) -> Dataset:
    ds = Dataset()
    for key, value in values.items():
        setattr(ds, key, value)
    return ds


def write_enhanced_mr(
    path: PathLike,
    images: dict[tuple[int, str], np.ndarray],
    *,
    echo_times: Sequence[float],
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    origin_lps: Sequence[float] = (0.0, 0.0, 0.0),
    row_dir: Sequence[float] = (1.0, 0.0, 0.0),
    col_dir: Sequence[float] = (0.0, 1.0, 0.0),
    scaling: Sequence[tuple[float, float]] = ((1.0, 0.0),),
    frame_order: str = "dimension",
    dimension_index: bool = True,
    positions: bool = True,
    series_number: int = 1,
    series_description: str = "MedPrep synthetic enhanced MR",
    series_uid: str | None = None,
    seed: int = 0,
) -> Path:
    """Write one Enhanced MR Image Storage object (one file, one frame per slice and image) to `path`.

    images: (echo index, kind) -> real-world values of shape (z, y, x); echo index counts from 1 and
        picks the frame's EffectiveEchoTime from `echo_times` (the object has no echo numbers, as the
        standard's MR Echo functional group has none); kind is "M", "P", "R" or "I"
        (ComplexImageComponent MAGNITUDE, PHASE, REAL, IMAGINARY).
    spacing, origin_lps, row_dir, col_dir: as in `write_series`; slice k of every image lies at
        origin + k * sz * (row_dir x col_dir).
    scaling: (RescaleSlope, RescaleIntercept) pairs given to the frames in turn, in the Pixel Value
        Transformation functional group of each frame; stored = round((value - intercept) / slope)
        as int16. With one pair every frame shares it.
    frame_order: "dimension" (images in the order given, slices in order) or "shuffled" (a fixed
        permutation drawn from `seed`: readers must order frames by their own attributes).
    dimension_index: declare the Dimension Index (stack, in-stack position, echo time, image kind)
        and give every frame its DimensionIndexValues.
    positions: False leaves out Plane Position and Orientation (a non-conformant object whose frames
        have no place in the patient).
    """
    keys = list(images)
    first = np.asarray(images[keys[0]])
    n_z, rows, cols = first.shape
    row = _unit(row_dir, "row_dir")
    col = _unit(col_dir, "col_dir")
    normal = np.cross(row, col)
    sx, sy, sz = (float(v) for v in spacing)
    origin = np.asarray(origin_lps, dtype=float)
    kinds = sorted({k for _, k in keys})

    frames = [(e, kind, z) for e, kind in keys for z in range(n_z)]
    if frame_order == "shuffled":
        frames = [frames[i] for i in np.random.default_rng(seed).permutation(len(frames))]
    elif frame_order != "dimension":
        raise ValueError(f"frame_order must be 'dimension' or 'shuffled', got {frame_order!r}")

    per_frame = []
    pixels = []
    for i, (e, kind, z) in enumerate(frames):
        slope, intercept = scaling[i % len(scaling)]
        values = np.asarray(images[(e, kind)][z], dtype=np.float64)
        stored = np.rint((values - intercept) / slope)
        if stored.min() < -32768 or stored.max() > 32767:
            raise ValueError(f"echo {e} {kind} slice {z}: values do not fit int16 with slope {slope}")
        pixels.append(stored.astype("<i2"))
        content = _item(StackID="1", InStackPositionNumber=z + 1, TemporalPositionIndex=1)
        if dimension_index:
            content.DimensionIndexValues = [1, z + 1, e, kinds.index(kind) + 1]
        fg = _item(
            FrameContentSequence=[content],
            MREchoSequence=[_item(EffectiveEchoTime=float(echo_times[e - 1]))],
            MRImageFrameTypeSequence=[_item(FrameType=["ORIGINAL", "PRIMARY", kind, "NONE"],
                                            PixelPresentation="MONOCHROME", VolumetricProperties="VOLUME",
                                            VolumeBasedCalculationTechnique="NONE",
                                            ComplexImageComponent=_COMPONENT[kind], AcquisitionContrast="T1")],
            PixelValueTransformationSequence=[_item(RescaleSlope=slope, RescaleIntercept=intercept,
                                                    RescaleType="US")],
        )
        if positions:
            pos = origin + z * sz * normal
            fg.PlanePositionSequence = [_item(ImagePositionPatient=[round(float(v), 6) for v in pos])]
        per_frame.append(fg)

    shared = _item(PixelMeasuresSequence=[_item(PixelSpacing=[sy, sx], SliceThickness=sz,
                                                SpacingBetweenSlices=sz)])
    if positions:
        shared.PlaneOrientationSequence = [
            _item(ImageOrientationPatient=[round(float(v), 10) for v in np.concatenate([row, col])])]
    sop_uid = generate_uid()
    ds = _item(
        SpecificCharacterSet="ISO_IR 100",
        ImageType=["ORIGINAL", "PRIMARY", "T1", "MIXED" if len(kinds) > 1 else "NONE"],
        SOPClassUID=ENHANCED_MR_STORAGE, SOPInstanceUID=sop_uid,
        StudyDate=_DATE, SeriesDate=_DATE, ContentDate=_DATE, AcquisitionDateTime=_DATE + _TIME,
        StudyTime=_TIME, SeriesTime=_TIME, ContentTime=_TIME,
        AccessionNumber="DEMO0001", Modality="MR", Manufacturer="MedPrep",
        ManufacturerModelName="Synthetic phantom", ReferringPhysicianName="",
        StudyDescription="MedPrep synthetic study", SeriesDescription=series_description,
        ProtocolName=series_description, **DEMO_PATIENT,
        StudyInstanceUID=generate_uid(), SeriesInstanceUID=series_uid or generate_uid(),
        FrameOfReferenceUID=generate_uid(), StudyID="1", SeriesNumber=int(series_number), InstanceNumber=1,
        ContentQualification="PRODUCT", MRAcquisitionType="3D", MagneticFieldStrength=3,
        SamplesPerPixel=1, PhotometricInterpretation="MONOCHROME2", NumberOfFrames=len(frames),
        Rows=rows, Columns=cols, BitsAllocated=16, BitsStored=16, HighBit=15, PixelRepresentation=1,
        BurnedInAnnotation="NO", LossyImageCompression="00",
        SharedFunctionalGroupsSequence=[shared], PerFrameFunctionalGroupsSequence=per_frame,
    )
    if dimension_index:
        organization = generate_uid()
        ds.DimensionOrganizationSequence = [_item(DimensionOrganizationUID=organization)]
        ds.DimensionIndexSequence = [
            _item(DimensionOrganizationUID=organization, DimensionIndexPointer=tag_for_keyword(pointer),
                  FunctionalGroupPointer=tag_for_keyword(group))
            for pointer, group in _DIMENSIONS]
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ENHANCED_MR_STORAGE
    ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.PixelData = np.stack(pixels).tobytes()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _write(path, ds)
    return path


# ---------------------------------------------------------------------------------------------
# CT body phantom


def _ellipse(img: np.ndarray, xs: np.ndarray, ys: np.ndarray, cx: float, cy: float,
             ax: float, ay: float, value: int) -> None:
    """Paint a filled ellipse (centre, semi-axes in mm) into `img`, touching only its bounding box."""
    if ax <= 0 or ay <= 0:
        return
    c0, c1 = np.searchsorted(xs, (cx - ax, cx + ax))
    r0, r1 = np.searchsorted(ys, (cy - ay, cy + ay))
    if c0 >= c1 or r0 >= r1:
        return
    u = ((xs[c0:c1] - cx) / ax) ** 2
    v = ((ys[r0:r1] - cy) / ay) ** 2
    sub = img[r0:r1, c0:c1]
    sub[(v[:, None] + u[None, :]) <= 1.0] = value


def _bump(t: float, start: float, end: float) -> float:
    """0 outside [start, end], rising smoothly to 1 in the middle: organ extent along z."""
    if t <= start or t >= end:
        return 0.0
    return float(np.sin(np.pi * (t - start) / (end - start)) ** 0.5)


def ct_phantom(n_slices: int = 300, rows: int = 512, cols: int = 512,
               spacing: Sequence[float] = (0.7, 0.7, 1.0), seed: int = 0) -> np.ndarray:
    """A body CT in HU, int16 array (z, y, x), from the abdomen (slice 0) up to the chest.

    Anatomy is sized in mm for a 36 cm field of view (scaled down to fit smaller ones); along z it
    always spans the whole stack, so any slice count shows abdomen, liver and lungs. Slice 0 is
    inferior, x runs to the patient's left and y to posterior (LPS with identity orientation).
    """
    sx, sy, sz = (float(v) for v in spacing)
    rng = np.random.default_rng(seed)
    xs = (np.arange(cols) - (cols - 1) / 2.0) * sx
    ys = (np.arange(rows) - (rows - 1) / 2.0) * sy
    scale = min(1.0, 0.95 * min(cols * sx, rows * sy) / 360.0)
    xs_s, ys_s = xs / scale, ys / scale  # anatomy coordinates in mm of a full-size body
    length = max(n_slices - 1, 1) * sz / scale

    # Fixed random features: lung vessels (normalised position in the lung and drift along z),
    # bowel gas pockets, and the two liver lesions (one hypodense, one hyperdense).
    vessels = rng.uniform(-0.8, 0.8, size=(2, 18, 4))
    gas = rng.uniform(-1, 1, size=(12, 3))
    lesions = [(-75.0, -20.0, 0.46 * length, 16.0, 20), (-35.0, 15.0, 0.53 * length, 9.0, 120)]

    out = np.empty((n_slices, rows, cols), dtype=np.int16)
    for k in range(n_slices):
        t = k / max(n_slices - 1, 1)
        z = t * length
        img = np.full((rows, cols), -1000, dtype=np.int16)
        a = 160.0 + 12.0 * np.sin(np.pi * t)
        b = 112.0 + 8.0 * np.sin(1.3 * np.pi * t)
        fat = 14.0 + 6.0 * np.cos(2.0 * np.pi * t)
        _ellipse(img, xs_s, ys_s, 0.0, 0.0, a, b, -100)
        _ellipse(img, xs_s, ys_s, 0.0, 0.0, a - fat, b - fat, 40)
        ai, bi = a - fat, b - fat
        spine_y = 0.55 * bi

        # Abdomen: pelvis, bowel gas, kidneys, liver with lesions, spleen, stomach.
        pel = _bump(t, -0.05, 0.16)
        for side in (-1, 1):
            _ellipse(img, xs_s, ys_s, side * 0.6 * ai, 0.25 * bi, 30 * pel, 55 * pel, 450)
        if t < 0.4:
            for gx, gy, gt in gas:
                r = 9.0 * _bump(t, 0.2 * gt + 0.12, 0.2 * gt + 0.22)
                _ellipse(img, xs_s, ys_s, gx * 0.5 * ai, gy * 0.4 * bi - 10, r, r, -950)
        kid = _bump(t, 0.2, 0.42)
        for side in (-1, 1):
            _ellipse(img, xs_s, ys_s, side * 62.0, spine_y - 8, 26 * kid, 36 * kid, 160)
            _ellipse(img, xs_s, ys_s, side * 62.0, spine_y - 8, 10 * kid, 16 * kid, 10)
        liv = _bump(t, 0.3, 0.64)
        _ellipse(img, xs_s, ys_s, -0.38 * ai, -0.05 * bi, 0.5 * ai * liv, 0.62 * bi * liv, 60)
        for lx, ly, lz, lr, lv in lesions:
            if liv > 0 and abs(z - lz) < lr:
                r = float(np.sqrt(lr ** 2 - (z - lz) ** 2))
                _ellipse(img, xs_s, ys_s, lx, ly, r, r, lv)
        spl = _bump(t, 0.4, 0.62)
        _ellipse(img, xs_s, ys_s, 0.55 * ai, 0.25 * bi, 32 * spl, 48 * spl, 50)
        sto = _bump(t, 0.45, 0.6)
        _ellipse(img, xs_s, ys_s, 0.3 * ai, -0.35 * bi, 40 * sto, 30 * sto, 30)
        _ellipse(img, xs_s, ys_s, 0.3 * ai, -0.5 * bi, 30 * sto, 12 * sto, -950)

        # Chest: lungs with vessels, heart (contrast-filled chambers), ribs.
        lung = _bump(t, 0.56, 1.5)
        for n, side in enumerate((-1, 1)):
            lx, la, lb = side * 0.45 * ai, 0.36 * ai * lung, 0.62 * bi * lung
            _ellipse(img, xs_s, ys_s, lx, 0.05 * bi, la, lb, -850)
            for vx, vy, dx, dy in vessels[n]:
                px, py = vx + 0.3 * dx * t, vy + 0.3 * dy * t
                if px * px + py * py < 0.8:
                    _ellipse(img, xs_s, ys_s, lx + px * la, 0.05 * bi + py * lb, 2.5, 2.5, 40)
        hrt = _bump(t, 0.6, 0.82)
        _ellipse(img, xs_s, ys_s, 20.0, -0.3 * bi, 62 * hrt, 50 * hrt, 50)
        _ellipse(img, xs_s, ys_s, 20.0, -0.3 * bi, 50 * hrt, 40 * hrt, 220)
        if t > 0.5:
            for n in range(9):
                ang = np.pi * (0.15 + 0.7 * n / 8.0)
                if (t * 14 + 0.3 * n / 8.0) % 1.0 < 0.45:
                    for side in (-1, 1):
                        _ellipse(img, xs_s, ys_s, side * 0.93 * ai * np.sin(ang),
                                 -0.93 * bi * np.cos(ang), 6.0, 4.0, 750)

        # Spine (discs between vertebral bodies), canal, aorta and IVC with contrast.
        disc = (t * 17.0) % 1.0 < 0.15
        _ellipse(img, xs_s, ys_s, 0.0, spine_y, 18.0, 16.0, 90 if disc else 1100)
        if not disc:
            _ellipse(img, xs_s, ys_s, 0.0, spine_y, 15.0, 13.0, 280)
        _ellipse(img, xs_s, ys_s, 0.0, spine_y + 28.0, 16.0, 13.0, 700)
        _ellipse(img, xs_s, ys_s, 0.0, spine_y + 26.0, 8.0, 7.0, 15)
        _ellipse(img, xs_s, ys_s, 0.0, spine_y + 46.0, 5.0, 10.0, 650)
        _ellipse(img, xs_s, ys_s, 20.0, spine_y - 30.0, 12.0, 12.0, 260)
        if t < 0.62:
            _ellipse(img, xs_s, ys_s, -24.0, spine_y - 32.0, 11.0, 10.0, 140)

        # Triangular noise from two uniform draws: ~12 HU, much cheaper than Gaussian.
        noise = rng.integers(-15, 16, size=(rows, cols), dtype=np.int16)
        noise += rng.integers(-15, 16, size=(rows, cols), dtype=np.int16)
        np.maximum(img + noise, -1024, out=out[k])
    return out


def write_ct_series(out_dir: PathLike, n_slices: int = 300, rows: int = 512, cols: int = 512,
                    spacing: Sequence[float] = (0.7, 0.7, 1.0), seed: int = 0,
                    **write_series_kwargs: Any) -> list[Path]:
    """Write `ct_phantom` as an axial CT series (stored = HU + 1024, RescaleIntercept -1024)."""
    volume = ct_phantom(n_slices, rows, cols, spacing, seed)
    kwargs: dict[str, Any] = {
        "modality": "CT",
        "spacing": spacing,
        # Centre the field of view on the isocentre, as a scanner does.
        "origin_lps": (-(cols - 1) / 2.0 * spacing[0], -(rows - 1) / 2.0 * spacing[1],
                       -(n_slices - 1) * spacing[2]),
        "intercept": -1024.0,
        "slope": 1.0,
        "series_description": "CT body phantom",
        "extra": {"WindowCenter": 40, "WindowWidth": 400, "BodyPartExamined": "CHESTABDOMEN"},
    }
    kwargs.update(write_series_kwargs)
    return write_series(out_dir, volume, **kwargs)


# ---------------------------------------------------------------------------------------------
# Gantry-tilted CT

# GantryDetectorTilt (0018,1120) is nominal ("not intended for mathematical computations", PS3.3
# C.8.15.3.3) and its sign is the vendor's: GE writes +18.5 for slices whose column direction points
# to the feet (ImageOrientationPatient 1\0\0\0\0.948\-0.317 in the GE HiSpeed series of dcm_qa_ct),
# Philips the opposite sign for the same geometry (dcm2niix negates Philips' value before correcting:
# nii_dicom_batch.cpp, nii_saveNII3Dtilt, "see 'Manix' example from Osirix").
_TILT_SIGN = {"GE": 1.0, "PHILIPS": -1.0}
_TILT_VENDOR = {"GE": ("GE MEDICAL SYSTEMS", "LightSpeed16"), "PHILIPS": ("Philips", "Brilliance 64")}


@dataclass
class TiltedStack:
    """Where every voxel of a series written by `write_tilted_ct` lies (LPS mm), in bed order."""

    paths: list[Path]            # one file per slice, slice 0 (lowest bed position) first
    row: np.ndarray              # direction of increasing column index
    col: np.ndarray              # direction of increasing row index (tilted out of the axial plane)
    positions: np.ndarray        # ImagePositionPatient of each slice (n x 3)
    spacing: tuple[float, float]  # mm between columns, between rows
    gantry_tilt_tag: float       # GantryDetectorTilt as the vendor writes it

    @property
    def normal(self) -> np.ndarray:
        return np.cross(self.row, self.col)

    def voxel_lps(self, shape: tuple[int, int]) -> np.ndarray:
        """LPS position of every voxel of slices `shape` (rows, cols) large: (z, y, x, 3)."""
        j, i = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
        inplane = j[..., None] * self.spacing[1] * self.col + i[..., None] * self.spacing[0] * self.row
        return self.positions[:, None, None, :] + inplane[None]


def tilted_orientation(tilt_deg: float) -> tuple[np.ndarray, np.ndarray]:
    """Row and column directions of an axial slice plane tilted by `tilt_deg` about the patient's
    left-right axis (positive: the column direction, anterior to posterior, leans to the feet)."""
    t = np.radians(tilt_deg)
    return np.array([1.0, 0.0, 0.0]), np.array([0.0, np.cos(t), -np.sin(t)])


def write_tilted_ct(out_dir: PathLike, tilt_deg: float, field: Callable[[np.ndarray], np.ndarray], *,
                    vendor: str = "GE", order: str = "ascending", rows: int = 32, cols: int = 16,
                    spacing: Sequence[float] = (0.7, 0.5, 2.0), bed_z: Sequence[float] | None = None,
                    n_slices: int = 8, origin_lps: Sequence[float] = (-5.0, -8.0, 20.0),
                    **write_series_kwargs: Any) -> TiltedStack:
    """Write an axial CT acquired with the gantry tilted by `tilt_deg` (either sign), sampling `field`.

    As on the scanner, the slice plane is tilted (`tilted_orientation`) while the bed moves the
    patient along LPS z, so slice k lies at origin + bed_z[k] * z: displaced in-plane from the slice
    before by bed step x sin(tilt), the sheared stack every gantry-tilted CT is. `field` maps LPS
    positions (..., 3) to HU; each voxel holds it at the voxel's position, so where every value
    belongs is known exactly. `vendor` ("GE" or "Philips") sets Manufacturer and the sign of
    GantryDetectorTilt by that vendor's convention (see `_TILT_SIGN`). `order` is how InstanceNumber
    runs against the bed: "ascending", "descending" or "shuffled" (a fixed permutation).
    spacing: (between columns, between rows, bed step); `bed_z` overrides the bed steps (variable
    spacing). Returns the geometry written.
    """
    key = vendor.upper()
    if key not in _TILT_SIGN:
        raise ValueError(f"vendor must be 'GE' or 'Philips', got {vendor!r}")
    dc, dr, step = (float(v) for v in spacing)
    z = np.arange(n_slices) * step if bed_z is None else np.asarray(bed_z, dtype=float)
    row, col = tilted_orientation(tilt_deg)
    positions = np.asarray(origin_lps, dtype=float) + np.outer(z, [0.0, 0.0, 1.0])
    stack = TiltedStack(paths=[], row=row, col=col, positions=positions, spacing=(dc, dr),
                        gantry_tilt_tag=round(_TILT_SIGN[key] * float(tilt_deg), 6))
    values = np.asarray(field(stack.voxel_lps((rows, cols))), dtype=float)
    n = len(z)
    if order == "ascending":
        numbers = list(range(1, n + 1))
    elif order == "descending":
        numbers = list(range(n, 0, -1))
    elif order == "shuffled":
        numbers = [int(v) + 1 for v in np.random.default_rng(n).permutation(n)]
    else:
        raise ValueError(f"order must be 'ascending', 'descending' or 'shuffled', got {order!r}")
    manufacturer, model = _TILT_VENDOR[key]
    extra = {"Manufacturer": manufacturer, "ManufacturerModelName": model,
             "GantryDetectorTilt": stack.gantry_tilt_tag}
    extra.update(write_series_kwargs.pop("extra", None) or {})
    kwargs: dict[str, Any] = {"modality": "CT", "intercept": -1024.0, "slope": 1.0,
                              "series_description": f"tilted CT {tilt_deg:+g} deg", "extra": extra}
    kwargs.update(write_series_kwargs)
    stack.paths = write_series(out_dir, values, spacing=(dc, dr, step), row_dir=row, col_dir=col,
                               slice_positions=positions, instance_numbers=numbers, **kwargs)
    return stack


# ---------------------------------------------------------------------------------------------
# Chest X-ray phantom


def _soft(d: np.ndarray, width: float) -> np.ndarray:
    """1 inside (d < 0), 0 outside, with a linear edge `width` wide: soft anatomical borders."""
    return np.clip(0.5 - d / width, 0.0, 1.0)


def cxr_phantom(rows: int = 2048, cols: int = 2048, seed: int = 0, pneumonia: bool = True) -> np.ndarray:
    """A PA chest radiograph, uint16 (rows, cols), 12-bit, bright = attenuating (display sense).

    Image left is the patient's right (PatientOrientation L\\F). With `pneumonia`, the right lower
    lung holds a soft opacity (inside PNEUMONIA_BOX); the heart lies inside HEART_BOX.
    """
    rng = np.random.default_rng(seed)
    X = np.linspace(-1.0, 1.0, cols, dtype=np.float32)[None, :]
    Y = np.linspace(-1.0, 1.0, rows, dtype=np.float32)[:, None]
    edge = 4.0 / min(rows, cols)
    absx = np.abs(X)

    # Torso: neck widening into shoulders; brightness follows the path length through the body.
    half = 0.2 + 0.62 / (1.0 + np.exp(-(Y + 0.8) / 0.05))
    body = _soft(absx - half, 0.02)
    path = np.sqrt(np.clip(1.0 - (X / half) ** 2, 0.0, 1.0))
    img = 250.0 + body * (1150.0 + 1100.0 * path)

    # Lungs: ellipses cut below by diaphragm domes, with faint vascular texture; the heart, which
    # sits on the diaphragm left of the midline, hides part of the left lung.
    above_diaphragm = _soft(Y - 0.38, 0.08)
    heart = _soft((((X - 0.12) / 0.3) ** 2 + ((Y - 0.28) / 0.22) ** 2) - 1.0, 0.15) * above_diaphragm
    texture = np.ones((rows, cols), dtype=np.float32)
    for fx, fy, phx, phy in rng.uniform([9, 9, 0, 0], [23, 23, 2 * np.pi, 2 * np.pi], size=(4, 4)):
        texture += 0.04 * np.sin(fx * X + phx) * np.sin(fy * Y + phy)
    lungs = []
    for side in (-1.0, 1.0):
        cx = side * 0.38
        dome = 0.42 - 0.2 * np.cos(np.clip((X - cx) / 0.32, -1.0, 1.0) * np.pi / 2.0)
        ell = (((X - cx) / 0.27) ** 2 + ((Y + 0.05) / 0.62) ** 2) - 1.0
        lung = _soft(ell, 0.05) * _soft(Y - dome, 0.03)
        lung *= 1.0 - heart
        lungs.append(lung)
        img -= 1050.0 * lung * (0.85 + 0.15 * path) * texture
    img += 150.0 * heart

    # Mediastinum and spine down the middle, vertebrae as a faint periodic pattern.
    img += 380.0 * _soft(absx - 0.12, 0.04) * _soft(-0.75 - Y, 0.05) * above_diaphragm
    img += 260.0 * _soft(absx - 0.05, 0.01) * (0.8 + 0.2 * (np.cos(Y * 2 * np.pi * 11) > -0.6))

    # Posterior ribs: arcs rising from the spine and falling at the lateral chest wall.
    for i in range(10):
        y0 = -0.6 + 0.1 * i
        r0, r1 = np.searchsorted(Y[:, 0], (y0 - 0.2, y0 + 0.35))
        Yr = Y[r0:r1]
        centre = y0 - 0.12 + 0.7 * (absx - 0.45) ** 2
        rib = _soft(np.abs(Yr - centre) - 0.016, edge * 3) * _soft(absx - 0.8, 0.05) * (absx > 0.07)
        img[r0:r1] += 330.0 * rib * body[r0:r1]

    # Clavicles: bands from the sternal notch out to the shoulders.
    for side in (-1.0, 1.0):
        p0, p1 = np.array([side * 0.07, -0.68]), np.array([side * 0.5, -0.75])
        d = p1 - p0
        s = np.clip(((X - p0[0]) * d[0] + (Y - p0[1]) * d[1]) / float(d @ d), 0.0, 1.0)
        dist = np.hypot(X - p0[0] - s * d[0], Y - p0[1] - s * d[1])
        img += 480.0 * _soft(dist - 0.022, edge * 3) * body

    # Pneumonia: a patchy soft opacity in the right lower zone (image left).
    blob = np.exp(-(((X + 0.4) / 0.12) ** 2 + ((Y - 0.15) / 0.1) ** 2))
    patch = 0.8 + 0.2 * np.sin(40.0 * X + 1.0) * np.sin(35.0 * Y + 2.0)
    img += 650.0 * blob * patch * lungs[0] * pneumonia

    img += rng.normal(0.0, 18.0, size=(rows, cols)).astype(np.float32)
    return np.clip(np.rint(img), 0, 4095).astype(np.uint16)


def write_cxr(out_dir: PathLike, rows: int = 2048, cols: int = 2048, photometric: str = "MONOCHROME1",
              seed: int = 0, pneumonia: bool = True, **write_series_kwargs: Any) -> Path:
    """Write `cxr_phantom` as a DX For Presentation file (12-bit, ImagerPixelSpacing 0.139 mm).

    With MONOCHROME1 (the default, as many detectors write it) the stored values are inverted,
    4095 - value, so that the image still displays with bone white.
    """
    image = cxr_phantom(rows, cols, seed, pneumonia)
    center, width = 2048, 3600
    if photometric == "MONOCHROME1":
        image = 4095 - image
        center = 4095 - center
    elif photometric != "MONOCHROME2":
        raise ValueError(f"photometric must be MONOCHROME1 or MONOCHROME2, got {photometric!r}")
    extra = {
        "ViewPosition": "PA",
        "BodyPartExamined": "CHEST",
        "WindowCenter": center,
        "WindowWidth": width,
        "KVP": 125,
        "ImageLaterality": "U",
    }
    extra.update(write_series_kwargs.pop("extra", None) or {})
    kwargs: dict[str, Any] = {
        "modality": "DX",
        "spacing": (0.139, 0.139, 1.0),
        "photometric": photometric,
        "series_description": "Chest PA",
        "extra": extra,
    }
    kwargs.update(write_series_kwargs)
    return write_series(out_dir, image[None], **kwargs)[0]


# ---------------------------------------------------------------------------------------------
# Vendor layouts the conformance data lacks variants of: UIH grids, colour images, multi-phase series


def write_uih_grid(out_dir: PathLike, volume: np.ndarray, *, spacing: Sequence[float] = (2.0, 2.0, 3.0),
                   origin_lps: Sequence[float] = (0.0, 0.0, 0.0), row_dir: Sequence[float] = (1.0, 0.0, 0.0),
                   col_dir: Sequence[float] = (0.0, 1.0, 0.0), bvalues: Sequence[float] | None = None,
                   gradients: Sequence[Sequence[float]] | None = None, series_number: int = 1) -> list[Path]:
    """Write a (t, z, y, x) uint16 volume as United Imaging grids: one file per time point, its z
    slices tiled row by row, ceil(sqrt(z)) across, in UIH's private "Image Private Header" block
    (0065,xx50 number of images, 0065,xx51 one item per tile with its ImagePositionPatient, and
    0065,xx09 / 0065,xx37 b-value and image-space gradient when given). No top-level position.
    """
    volume = np.asarray(volume)
    n_t, n_z, rows, cols = volume.shape
    across = int(np.ceil(np.sqrt(n_z)))
    down = int(np.ceil(n_z / across))
    row, col = _unit(row_dir, "row_dir"), _unit(col_dir, "col_dir")
    normal = np.cross(row, col)
    sx, sy, sz = (float(v) for v in spacing)
    origin = np.asarray(origin_lps, dtype=float)
    study_uid, series_uid, frame_uid = generate_uid(), generate_uid(), generate_uid()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for t in range(n_t):
        grid = np.zeros((down * rows, across * cols), dtype=np.uint16)
        for k in range(n_z):
            r, c = divmod(k, across)
            grid[r * rows:(r + 1) * rows, c * cols:(c + 1) * cols] = volume[t, k]
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = _MODALITIES["MR"]["sop_class"]
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.SOPClassUID = _MODALITIES["MR"]["sop_class"]
        for key, value in DEMO_PATIENT.items():
            setattr(ds, key, value)
        ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "VFRAME"]
        ds.Modality, ds.Manufacturer, ds.ProtocolName = "MR", "UIH", "dti_grid"
        ds.StudyDate, ds.StudyTime = "***", "132222"  # de-identified date, as UIH exports often have
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study_uid, series_uid, frame_uid
        ds.SeriesNumber, ds.InstanceNumber = series_number, t + 1
        ds.ImageOrientationPatient = [round(float(v), 10) for v in np.concatenate([row, col])]
        ds.PixelSpacing, ds.SliceThickness, ds.SpacingBetweenSlices = [sy, sx], sz, sz
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.Rows, ds.Columns = grid.shape
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        block = ds.private_block(0x0065, "Image Private Header", create=True)
        block.add_new(0x50, "DS", str(n_z))
        items = []
        for k in range(n_z):
            item = Dataset()
            item.ImagePositionPatient = [round(float(v), 6) for v in origin + k * sz * normal]
            items.append(item)
        block.add_new(0x51, "SQ", items)
        if bvalues is not None:
            block.add_new(0x09, "FD", float(bvalues[t]))
        if gradients is not None:
            block.add_new(0x37, "FD", [float(v) for v in gradients[t]])
        ds.PixelData = grid.tobytes()
        path = out / f"{t + 1:08d}.dcm"
        _write(path, ds)
        paths.append(path)
    return paths


def write_rgb_series(out_dir: PathLike, rgb: np.ndarray, *, planar: int = 0, photometric: str = "RGB",
                     spacing: Sequence[float] = (1.0, 1.0, 2.0), origin_lps: Sequence[float] = (0.0, 0.0, 0.0),
                     series_number: int = 1) -> list[Path]:
    """Write a (z, y, x, 3) uint8 RGB volume as colour Secondary Capture files, one per slice.

    planar: PlanarConfiguration 0 (R,G,B interleaved per pixel) or 1 (one plane per colour).
    photometric: "RGB", or "YBR_FULL" to store the same colours as Y, Cb, Cr (PS3.3 C.7.6.3.1.2).
    """
    rgb = np.asarray(rgb, dtype=np.uint8)
    n_z, rows, cols, _ = rgb.shape
    sx, sy, sz = (float(v) for v in spacing)
    study_uid, series_uid, frame_uid = generate_uid(), generate_uid(), generate_uid()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for k in range(n_z):
        pixels = rgb[k]
        if photometric == "YBR_FULL":
            try:
                from pydicom.pixels import convert_color_space
            except ImportError:  # pydicom 2
                from pydicom.pixel_data_handlers.util import convert_color_space
            pixels = convert_color_space(pixels, "RGB", "YBR_FULL")
        stored = np.ascontiguousarray(pixels.transpose(2, 0, 1) if planar else pixels)
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
        for key, value in DEMO_PATIENT.items():
            setattr(ds, key, value)
        ds.Modality, ds.Manufacturer, ds.SeriesDescription = "OT", "MedPrep", "colour map"
        ds.StudyDate, ds.StudyTime = _DATE, _TIME
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study_uid, series_uid, frame_uid
        ds.SeriesNumber, ds.InstanceNumber = series_number, k + 1
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [float(origin_lps[0]), float(origin_lps[1]), float(origin_lps[2]) + k * sz]
        ds.PixelSpacing, ds.SliceThickness = [sy, sx], sz
        ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, photometric, planar
        ds.Rows, ds.Columns = rows, cols
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
        ds.PixelData = stored.tobytes()
        path = out / f"RGB{k + 1:05d}.dcm"
        _write(path, ds)
        paths.append(path)
    return paths


def write_multiphase(out_dir: PathLike, phases: np.ndarray, trigger_times: Sequence[float],
                     slopes: Sequence[float], **kwargs: Any) -> list[Path]:
    """Write a (t, z, y, x) real-valued series as classic files, one per slice and phase, with a
    TriggerTime per phase and a RescaleSlope that changes from phase to phase.

    Each phase goes to its own subfolder; acquisition times run against the trigger times and
    instance numbers restart per phase, so only the trigger time orders the phases.
    """
    study_uid, series_uid, frame_uid = generate_uid(), generate_uid(), generate_uid()
    paths: list[Path] = []
    n_t = len(phases)
    for t in range(n_t):
        clock = (datetime.datetime(2024, 1, 1, 12) + datetime.timedelta(seconds=10.0 * (n_t - t))).strftime("%H%M%S")
        paths += write_series(Path(out_dir) / f"phase{t}", phases[t], modality="MR", slope=float(slopes[t]),
                              study_uid=study_uid, series_uid=series_uid, frame_of_reference_uid=frame_uid,
                              extra={"TriggerTime": float(trigger_times[t]), "AcquisitionTime": clock},
                              **kwargs)
    return paths


# Where cxr_phantom draws the heart and the pneumonia, as (x0, y0, x1, y1) fractions of the image's
# width and height (the shapes' extents in its [-1, 1] coordinates, the heart cut by the diaphragm).
HEART_BOX = (0.41, 0.53, 0.71, 0.70)
PNEUMONIA_BOX = (0.19, 0.48, 0.40, 0.64)


def write_cxr_dataset(images_dir: PathLike, n: int = 8, size: int = 256) -> list[Path]:
    """A small labelled radiograph set in the RSNA layout: `images_dir/<patientId>.dcm`, two images
    per patient (PatientID DEMO-<k>), every second one with pneumonia. `cxr_dataset_tables` gives
    its tables."""
    import shutil
    import tempfile

    images_dir = Path(images_dir)
    images_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for i in range(n):
        with tempfile.TemporaryDirectory(dir=images_dir.parent) as tmp:
            f = write_cxr(tmp, rows=size, cols=size, seed=i, pneumonia=bool(i % 2), series_number=10 + i,
                          patient={"PatientID": f"DEMO-{i // 2}", "PatientName": "DEMO^PATIENT"})
            target = images_dir / f"cxr-{i:03d}.dcm"
            shutil.move(str(f), target)
        written.append(target)
    return written


def cxr_dataset_tables(n: int = 8, size: int = 256) -> dict[str, str]:
    """The tables of `write_cxr_dataset`, as CSV text:

    labels.csv: RSNA pneumonia style, patientId,x,y,width,height,Target in the image's pixels, one row
        per box (an image without pneumonia has one row without a box); cxr-001 has two boxes.
    heart.csv: the public heart-detection table's style, label,x0,y0,w,h,name,img_shape_x,img_shape_y,
        its boxes drawn on a 224 x 224 copy of each image.
    """
    def box(fractions: tuple, scale: float) -> list[float]:
        x0, y0, x1, y1 = (round(f * scale, 1) for f in fractions)
        return [x0, y0, round(x1 - x0, 1), round(y1 - y0, 1)]

    labels = ["patientId,x,y,width,height,Target"]
    heart = ["label,x0,y0,w,h,name,img_shape_x,img_shape_y"]
    for i in range(n):
        name = f"cxr-{i:03d}"
        if i % 2:
            x, y, w, h = box(PNEUMONIA_BOX, size)
            boxes = [[x, y, w, h]] if i != 1 else [[x, y, w, round(h / 2, 1)], [x, round(y + h / 2, 1), w,
                                                                               round(h / 2, 1)]]
            labels += [f"{name},{b[0]},{b[1]},{b[2]},{b[3]},1" for b in boxes]
        else:
            labels.append(f"{name},,,,,0")
        heart.append("heart," + ",".join(str(v) for v in box(HEART_BOX, 224)) + f",{name},224,224")
    return {"labels.csv": "\n".join(labels) + "\n", "heart.csv": "\n".join(heart) + "\n"}
