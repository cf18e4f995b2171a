"""The PS3.15 Annex E options a user can ask for, and how they are recorded in the output."""
from __future__ import annotations

from dataclasses import Field, dataclass, field, fields
from typing import Any, List, Tuple

from ..errors import MedPrepError

BURNED_IN_POLICIES = ("skip", "keep", "fail")

# (option attribute, Table E.1-1 column, DCM code, code meaning), in the standard's code order.
_OPTIONS = (
    ("clean_descriptors", "clean_descriptors", "113105", "Clean Descriptors Option"),
    ("keep_dates", "retain_full_dates", "113106",
     "Retain Longitudinal Temporal Information Full Dates Option"),
    ("shift_dates", "retain_modified_dates", "113107",
     "Retain Longitudinal Temporal Information Modified Dates Option"),
    ("retain_patient_characteristics", "retain_patient_characteristics", "113108",
     "Retain Patient Characteristics Option"),
    ("retain_device_identity", "retain_device_id", "113109", "Retain Device Identity Option"),
    ("keep_uids", "retain_uid", "113110", "Retain UIDs Option"),
    ("keep_private", "retain_safe_private", "113111", "Retain Safe Private Option"),
    ("retain_institution_identity", "retain_institution_id", "113112", "Retain Institution Identity Option"),
)
BASIC_PROFILE_CODE = ("113100", "Basic Application Confidentiality Profile")


def _option(label: str, help: str, exclusive: str = "", choices: Tuple[str, ...] = (),
            default: Any = False, copy_only: bool = False) -> Any:
    """A user-facing option: its CLI flag (from the field name), checkbox label and help text live here only.

    `exclusive` names a group of options that exclude each other; `copy_only` marks an option that
    only a de-identified DICOM copy has (not `convert --anonymize`)."""
    return field(default=default, metadata={"label": label, "help": help, "exclusive": exclusive,
                                            "choices": choices, "copy_only": copy_only})


@dataclass(frozen=True)
class AnonymizeOptions:
    """The de-identification options. `medprep anonymize`/`convert --anonymize` build their flags and the
    Slicer panel its controls from these fields (`user_options`), so each is described once, here."""

    shift_dates: bool = _option(
        "Shift dates", "shift dates by a per-patient offset derived from the key (intervals kept)", "dates")
    keep_dates: bool = _option("Keep dates", "retain full dates", "dates")
    retain_patient_characteristics: bool = _option(
        "Retain patient characteristics", "keep sex, age, size, weight (needed for PET SUV)")
    retain_device_identity: bool = _option("Retain device identity", "keep scanner identity")
    retain_institution_identity: bool = _option("Retain institution identity", "keep institution identity")
    clean_descriptors: bool = _option(
        "Clean descriptors", "keep the coded sequences this option lists, each item cleaned; free-text "
        "descriptions cannot be proven free of identity, so they are removed as without it")
    keep_private: bool = _option(
        "Keep safe private attributes",
        "keep a safelist of private attributes (default: remove every private attribute)")
    keep_uids: bool = _option("Keep UIDs", "retain the original UIDs")
    on_burned_in: str = _option(
        "Burned-in identity", "series whose pixels may show identity (BurnedInAnnotation, ultrasound, "
        "secondary capture, scans): skip with a warning (default), keep, or fail",
        choices=BURNED_IN_POLICIES, default="skip")
    keep_damaged_pixels: bool = _option(
        "Keep damaged pixel data", "also write files whose pixel data is cut short or does not match Rows x "
        "Columns x frames x bits (default: withhold them; they are reported either way)", copy_only=True)

    def __post_init__(self) -> None:
        if self.shift_dates and self.keep_dates:
            raise MedPrepError("--shift-dates and --keep-dates exclude each other",
                               hint="choose shifted dates or full dates")
        if self.on_burned_in not in BURNED_IN_POLICIES:
            raise MedPrepError(f"unknown burned-in policy {self.on_burned_in!r}",
                               hint=f"use one of {', '.join(BURNED_IN_POLICIES)}")

    def columns(self) -> List[str]:
        """The Table E.1-1 option columns in force."""
        return [column for attr, column, _, _ in _OPTIONS if getattr(self, attr)]

    def method_codes(self) -> List[Tuple[str, str]]:
        """(DCM code value, meaning) for DeidentificationMethodCodeSequence: the profile, then each option."""
        return [BASIC_PROFILE_CODE] + [(code, meaning) for attr, _, code, meaning in _OPTIONS
                                       if getattr(self, attr)]

    @property
    def temporal_information(self) -> str:
        """LongitudinalTemporalInformationModified."""
        if self.keep_dates:
            return "UNMODIFIED"
        return "MODIFIED" if self.shift_dates else "REMOVED"


def user_options() -> List[Field]:
    """The option fields in the order a user sees them, each with label, help, exclusive group and choices."""
    return list(fields(AnonymizeOptions))
