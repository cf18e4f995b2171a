"""The JSON sidecar: BIDS key names where they exist, plus MedPrep provenance.

Identity (names, IDs, birth dates, institution, free text about the patient) is never copied
into the sidecar: the fields below are acquisition facts only.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Union

import numpy as np

from . import __version__
from .atomic import write_json

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

# (BIDS key, DICOM keyword); values in ms in DICOM become seconds in BIDS where BIDS says so.
_FIELDS = [
    ("Modality", "Modality"),
    ("Manufacturer", "Manufacturer"),
    ("ManufacturersModelName", "ManufacturerModelName"),
    ("SoftwareVersions", "SoftwareVersions"),
    ("MagneticFieldStrength", "MagneticFieldStrength"),
    ("BodyPartExamined", "BodyPartExamined"),
    ("SeriesNumber", "SeriesNumber"),
    ("SeriesDescription", "SeriesDescription"),
    ("ProtocolName", "ProtocolName"),
    ("ScanningSequence", "ScanningSequence"),
    ("SequenceVariant", "SequenceVariant"),
    ("ScanOptions", "ScanOptions"),
    ("SequenceName", "SequenceName"),
    ("ImageType", "ImageType"),
    ("EchoNumber", "EchoNumbers"),
    ("SliceThickness", "SliceThickness"),
    ("SpacingBetweenSlices", "SpacingBetweenSlices"),
    ("FlipAngle", "FlipAngle"),
    ("ConvolutionKernel", "ConvolutionKernel"),
    ("KVP", "KVP"),
    ("XRayExposure", "Exposure"),
    ("ExposureTime", "ExposureTime"),
    ("XRayTubeCurrent", "XRayTubeCurrent"),
    ("GantryDetectorTilt", "GantryDetectorTilt"),
    ("PhotometricInterpretation", "PhotometricInterpretation"),
    ("WindowCenter", "WindowCenter"),
    ("WindowWidth", "WindowWidth"),
    ("VOILUTFunction", "VOILUTFunction"),
    ("ViewPosition", "ViewPosition"),
    ("PatientPosition", "PatientPosition"),
    ("ImageOrientationPatientDICOM", "ImageOrientationPatient"),
    ("SeriesInstanceUID", "SeriesInstanceUID"),
    ("StudyInstanceUID", "StudyInstanceUID"),
    ("Units", "Units"),
    ("DecayCorrection", "DecayCorrection"),
    ("AttenuationCorrectionMethod", "AttenuationCorrectionMethod"),
    ("ReconstructionMethod", "ReconstructionMethod"),
    ("RescaleType", "RescaleType"),
]
_MS_TO_S = [("EchoTime", "EchoTime"), ("RepetitionTime", "RepetitionTime"), ("InversionTime", "InversionTime")]

# Attributes PET SUV needs; PatientWeight is identity-adjacent but needed for body-weight SUV.
_PET_FIELDS = ["PatientWeight", "PatientSize", "PatientSex", "PatientAge", "SeriesDate", "SeriesTime",
               "AcquisitionDate", "AcquisitionTime"]
_RADIO_FIELDS = ["RadiopharmaceuticalStartTime", "RadiopharmaceuticalStartDateTime", "RadionuclideTotalDose",
                 "RadionuclideHalfLife", "RadionuclidePositronFraction", "Radiopharmaceutical"]


def _plain(value: Any) -> Any:
    """JSON-friendly Python value of a pydicom element value."""
    if value is None:
        return None
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return [_plain(v) for v in value]
    if isinstance(value, bytes):
        return None
    if isinstance(value, (int, float, str)):
        if type(value) not in (int, float, str):
            # pydicom's DSfloat/IS/PersonName subclasses
            if isinstance(value, float):
                return float(value)
            if isinstance(value, int):
                return int(value)
            return str(value)
        return value
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)


def dicom_fields(ds: Dataset) -> Dict[str, Any]:
    """Acquisition facts from one header, under BIDS names."""
    out: Dict[str, Any] = {}
    for key, keyword in _FIELDS:
        value = ds.get(keyword)
        if value not in (None, ""):
            out[key] = _plain(value)
    for key, keyword in _MS_TO_S:
        value = ds.get(keyword)
        try:
            if value not in (None, ""):
                out[key] = float(value) / 1000.0
        except (TypeError, ValueError):
            pass
    if str(ds.get("Modality", "")) == "PT":
        for keyword in _PET_FIELDS:
            value = ds.get(keyword)
            if value not in (None, ""):
                out[keyword] = _plain(value)
        info = ds.get("RadiopharmaceuticalInformationSequence")
        if info:
            for keyword in _RADIO_FIELDS:
                value = info[0].get(keyword)
                if value not in (None, ""):
                    out[keyword] = _plain(value)
    return out


def provenance(history: List[Dict[str, Any]], warnings: List[str]) -> Dict[str, Any]:
    return {"software": "MedPrep", "version": __version__, "steps": history, "warnings": warnings}


def json_safe(obj: Any) -> Any:
    """The same structure with only JSON values: non-finite numbers become null, numpy values plain."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, bool) or obj is None or isinstance(obj, str):
        return obj
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, np.ndarray):
        return json_safe(obj.tolist())
    return str(obj)


def sidecar_dict(meta: Dict[str, Any], history: List[Dict[str, Any]], warnings: List[str]) -> Dict[str, Any]:
    out = {k: v for k, v in meta.items() if not k.startswith("_")}
    out["MedPrepProvenance"] = provenance(history, warnings)
    return json_safe(out)


def write_sidecar(volume, path: Union[str, Path], overwrite: bool = False) -> None:
    """Write the volume's metadata and provenance as a JSON sidecar, atomically."""
    write_json(path, sidecar_dict(volume.meta, volume.history, volume.warnings), overwrite=overwrite)
