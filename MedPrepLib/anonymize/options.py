"""The PS3.15 Annex E options a user can ask for, and how they are recorded in the output."""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Tuple

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


@dataclass(frozen=True)
class AnonymizeOptions:
    shift_dates: bool = False
    keep_dates: bool = False
    retain_patient_characteristics: bool = False
    retain_device_identity: bool = False
    retain_institution_identity: bool = False
    clean_descriptors: bool = False
    keep_private: bool = False
    keep_uids: bool = False
    on_burned_in: str = "skip"
    keep_damaged_pixels: bool = False  # write files whose pixel data is incomplete (reported either way)

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
