"""PET activity concentration (Bq/ml) to body-weight SUV, following the QIBA SUV pseudo-code.

SUVbw = C * weight[g] / (injected dose [Bq] decayed from injection to scan start). Only images
with Units BQML and DecayCorrection START (decay-corrected to the scan start) are accepted.
Meta keys read (DICOM keywords): Units, DecayCorrection, PatientWeight (kg), RadionuclideTotalDose
(Bq), RadionuclideHalfLife (s), RadiopharmaceuticalStartDateTime or RadiopharmaceuticalStartTime,
SeriesDate/SeriesTime and AcquisitionDate/AcquisitionTime (scan start: the series time unless it is
after the acquisition time, as QIBA prescribes).
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Tuple

import numpy as np

from ..errors import MedPrepError
from ..volume import Volume
from .masks import intensities
from .registry import register


@dataclass(frozen=True)
class SuvParams:
    patient_weight: Optional[float] = field(default=None, metadata={
        "min": 0.1, "max": 1000.0, "help": "kg, when the header lacks PatientWeight"})
    injected_dose: Optional[float] = field(default=None, metadata={
        "min": 0.0, "help": "Bq at injection, when the header lacks RadionuclideTotalDose"})


def _need(meta: Dict[str, Any], key: str, tag: str) -> Any:
    value = meta.get(key)
    if value is None or value == "":
        raise MedPrepError(f"PET SUV needs {key} {tag}, which the series lacks",
                           hint=f"convert with {key} kept in the metadata, or give it as a suv parameter")
    return value


def _clock(date: Optional[str], time: str) -> dt.datetime:
    """A DICOM DA + TM (HHMMSS.ffffff, colons tolerated) as a datetime; no date gives a fixed day."""
    t = str(time).replace(":", "").strip()
    whole, _, frac = t.partition(".")
    whole = whole.ljust(6, "0")
    micro = int((frac + "000000")[:6]) if frac else 0
    day = dt.datetime.strptime(str(date).replace("-", "")[:8], "%Y%m%d") if date else dt.datetime(2000, 1, 1)
    return day.replace(hour=int(whole[:2]), minute=int(whole[2:4]), second=int(whole[4:6]), microsecond=micro)


def _datetime(meta: Dict[str, Any], dt_key: str, date_key: str, time_key: str, tag: str) -> dt.datetime:
    if meta.get(dt_key):
        value = str(meta[dt_key])
        return _clock(value[:8], value[8:] or "000000")
    return _clock(meta.get(date_key), _need(meta, time_key, tag))


def suv_factor(meta: Dict[str, Any], weight: Optional[float] = None, dose: Optional[float] = None) -> float:
    """The factor turning Bq/ml into SUVbw for this series' metadata."""
    units = str(_need(meta, "Units", "(0054,1001)")).upper()
    if units != "BQML":
        raise MedPrepError(f"PET SUV needs Units BQML, the series has {units}",
                           hint="only activity-concentration PET images can be turned into SUV")
    correction = str(_need(meta, "DecayCorrection", "(0054,1102)")).upper()
    if correction != "START":
        raise MedPrepError(f"PET SUV needs DecayCorrection START, the series has {correction}",
                           hint="this decay correction is not supported")
    weight_kg = float(weight if weight is not None else _need(meta, "PatientWeight", "(0010,1030)"))
    total_dose = float(dose if dose is not None else _need(meta, "RadionuclideTotalDose", "(0018,1074)"))
    half_life = float(_need(meta, "RadionuclideHalfLife", "(0018,1075)"))
    if weight_kg <= 0 or total_dose <= 0 or half_life <= 0:
        raise MedPrepError("PET SUV needs a positive PatientWeight, RadionuclideTotalDose and RadionuclideHalfLife",
                           hint="fix the header values or give patient_weight / injected_dose")
    injection = _datetime(meta, "RadiopharmaceuticalStartDateTime", "SeriesDate",
                          "RadiopharmaceuticalStartTime", "(0018,1072)")
    scan = _datetime(meta, "", "SeriesDate", "SeriesTime", "(0008,0031)")
    if meta.get("AcquisitionTime"):
        acquisition = _datetime(meta, "", "AcquisitionDate", "AcquisitionTime", "(0008,0032)")
        scan = min(scan, acquisition)
    decay_s = (scan - injection).total_seconds()
    if decay_s < 0 and not meta.get("RadiopharmaceuticalStartDateTime"):
        decay_s += 24 * 3600  # injected before midnight, scanned after: times without dates wrap
    if decay_s < 0:
        raise MedPrepError("PET SUV: the scan starts before the injection",
                           hint="check SeriesTime and RadiopharmaceuticalStartTime")
    decayed_dose = total_dose * 2.0 ** (-decay_s / half_life)
    return weight_kg * 1000.0 / decayed_dose


@register("suv", SuvParams)
def suv(image: Volume, label: Optional[Volume], p: SuvParams) -> Tuple[Volume, Optional[Volume]]:
    """Bq/ml to body-weight SUV (g/ml) with the QIBA decay correction."""
    factor = suv_factor(image.meta, p.patient_weight, p.injected_dose)
    values = intensities(image)
    out = np.multiply(values, values.dtype.type(factor))
    result = image.with_values(out)
    result.meta["Units"] = "GML"
    result.meta["SUVbwScaleFactor"] = factor
    return result, label
