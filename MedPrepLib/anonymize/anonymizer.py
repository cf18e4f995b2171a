"""De-identify one pydicom Dataset in place per PS3.15 Annex E (Basic Profile plus options).

`Anonymizer` is built once from a key and options; the action table is compiled to a dict then,
so per data set the work is one pass over its elements, recursing into sequences at any depth.
Attributes the table does not list are judged by their VR, so that nothing identifying slips
through because the table missed it: unlisted person names and dates are treated like listed
ones, and unlisted UIDs are remapped unless they name a class or transfer syntax.

An option's C (clean) is carried out only where there is a rewrite that leaves no identity:
dates shifted per patient (DA, DT; times stay, as the shift is whole days), sequences cleaned item
by item with the same table. No program can prove free text, AE titles or binary timestamps free of
identity, so for those a C falls back to the Basic Profile action (remove, empty or dummy).
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

from pydicom.datadict import dictionary_VR, keyword_for_tag
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag, Tag
from pydicom.uid import (PYDICOM_IMPLEMENTATION_UID, ExplicitVRBigEndian, ExplicitVRLittleEndian,
                         ImplicitVRLittleEndian, UID_dictionary)

from . import table_e1_1
from .dates import shift_date, shift_datetime
from .keys import Keyring
from .options import AnonymizeOptions
from .profile import compile_profile
from .safeprivate import is_safe

METHOD = f"MedPrep PS3.15 E.1-1 Basic Profile, DICOM {table_e1_1.STANDARD_RELEASE}"
IMPLEMENTATION_VERSION = "MEDPREP"
PREAMBLE = b"\0" * 128

# Dummy values (action D), valid for each VR's length and character rules.
_DUMMY: Dict[str, Any] = {
    "AE": "ANONYMOUS", "AS": "000Y", "CS": "ANONYMIZED", "DA": "19000101", "DS": "0",
    "DT": "19000101000000", "IS": "0", "LO": "ANONYMIZED", "LT": "ANONYMIZED", "PN": "ANONYMIZED",
    "SH": "ANONYMIZED", "ST": "ANONYMIZED", "TM": "000000", "UC": "ANONYMIZED", "UR": "", "UT": "ANONYMIZED",
    "AT": 0, "FL": 0.0, "FD": 0.0, "SL": 0, "SS": 0, "SV": 0, "UL": 0, "US": 0, "UV": 0,
}
_TEXT_VRS = frozenset(("AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST", "TM",
                       "UC", "UI", "UR", "UT"))
_BYTES_VRS = frozenset(("OB", "OD", "OF", "OL", "OV", "OW", "UN"))
def _dictionary_vr(tag: int) -> str:
    try:
        return dictionary_VR(tag).split(" or ")[0]  # "US or SS": either does for an empty or dummy value
    except KeyError:
        return "UN"


def _empty(vr: str) -> Any:
    if vr == "SQ":
        return Sequence()
    if vr in _TEXT_VRS:
        return ""
    return b"" if vr in _BYTES_VRS else None


def _values(value: Any) -> List[str]:
    if value is None:
        return []
    if isinstance(value, (list, tuple, MultiValue)):
        return [str(v) for v in value]
    return [value.decode("latin-1") if isinstance(value, bytes) else str(value)]


def _one_or_many(values: List[str]) -> Any:
    return values[0] if len(values) == 1 else values


class _Patient:
    """What the walk of one data set needs to know about its patient."""

    def __init__(self, pseudonym: str, days: Optional[int]):
        self.pseudonym = pseudonym
        self.days = days


class Anonymizer:
    """De-identifies data sets in place; the same key and options give the same output everywhere.

    Patient name and ID become a keyed pseudonym, UIDs become keyed 2.25 UIDs (the same in every
    file, reference and run), dates are removed, shifted per patient or kept as the options say.
    `uids` and `patients` record the mapping for users who must be able to re-identify.
    """

    def __init__(self, key: Optional[bytes] = None, options: Optional[AnonymizeOptions] = None):
        self.options = options or AnonymizeOptions()
        self.profile = compile_profile(self.options)
        self.keys = Keyring(key)
        self.uids: Dict[str, str] = {}
        self.patients: Dict[str, Dict[str, Any]] = {}
        self._rules: Dict[int, str] = {}
        self._keep_private = self.profile.private == "C"
        self._codes = self.options.method_codes()

    # -- mappings ---------------------------------------------------------------------------
    def uid(self, uid: str) -> str:
        """The replacement of one UID (registered UIDs, such as SOP classes, are not replaced)."""
        uid = uid.strip().rstrip("\0")
        if not uid or uid in UID_dictionary or self.options.keep_uids:
            return uid
        new = self.uids.get(uid)
        if new is None:
            new = self.uids[uid] = self.keys.uid(uid)
        return new

    @staticmethod
    def _patient_key(ds: Dataset) -> Tuple[str, str, str]:
        pid = str(ds.get("PatientID", "") or "").strip()
        name = str(ds.get("PatientName", "") or "").strip()
        return pid or name, pid, name

    def pseudonym(self, ds: Dataset) -> str:
        """The pseudonym that replaces the patient name and ID of an (original) data set."""
        return self.keys.pseudonym(self._patient_key(ds)[0])

    def patient(self, ds: Dataset) -> _Patient:
        """The patient of a data set: pseudonym and date offset."""
        key, pid, name = self._patient_key(ds)
        pseudonym = self.keys.pseudonym(key)
        days = self.keys.day_offset(key) if self.options.shift_dates else None
        if key not in self.patients:
            self.patients[key] = {"PatientID": pid, "PatientName": name, "pseudonym": pseudonym,
                                  "date_shift_days": days}
        return _Patient(pseudonym, days)

    # -- the walk ---------------------------------------------------------------------------
    def anonymize(self, ds: Dataset) -> Dataset:
        """De-identify `ds` (a full or header-only data set) in place and return it."""
        patient = self.patient(ds)
        self._walk(ds, patient)
        # Set by tag: this runs once per file, and keyword lookups would cost more than the rest.
        ds[0x00120062] = DataElement(0x00120062, "CS", "YES")  # PatientIdentityRemoved
        ds[0x00120063] = DataElement(0x00120063, "LO", METHOD)  # DeidentificationMethod
        codes = Sequence()
        for value, meaning in self._codes:
            item = Dataset()
            item[0x00080100] = DataElement(0x00080100, "SH", value)  # CodeValue
            item[0x00080102] = DataElement(0x00080102, "SH", "DCM")  # CodingSchemeDesignator
            item[0x00080104] = DataElement(0x00080104, "LO", meaning)  # CodeMeaning
            codes.append(item)
        ds[0x00120064] = DataElement(0x00120064, "SQ", codes)  # DeidentificationMethodCodeSequence
        # LongitudinalTemporalInformationModified
        ds[0x00280303] = DataElement(0x00280303, "CS", self.options.temporal_information)
        self._file_meta(ds)
        return ds

    def _file_meta(self, ds: Dataset) -> None:
        # Rebuilt from scratch: source and receiver AE titles and private meta information go.
        # Set by tag, as above: FileMetaDataset's keyword access costs a third of the whole walk.
        old = getattr(ds, "file_meta", None)
        if old is None:
            return

        def value(tag: int) -> str:
            elem = old.get(tag)
            return str(elem.value).strip("\0 ") if elem is not None and elem.value else ""

        sop_class = value(0x00020002) or str(ds.get("SOPClassUID", "") or "")
        instance = value(0x00020003)
        instance = self.uid(instance) if instance else str(ds.get("SOPInstanceUID", "") or "")  # walk remapped it
        syntax = value(0x00020010)
        if not syntax:  # a data set read without file meta: name its encoding
            implicit, little = getattr(ds, "original_encoding", None) or (None, None)
            if implicit is None:  # pydicom 2.4
                implicit, little = getattr(ds, "is_implicit_VR", True), getattr(ds, "is_little_endian", True)
            syntax = ImplicitVRLittleEndian if implicit else \
                ExplicitVRLittleEndian if little else ExplicitVRBigEndian
        meta = FileMetaDataset()
        meta[0x00020000] = DataElement(0x00020000, "UL", 0)  # FileMetaInformationGroupLength: pydicom writes it
        meta[0x00020001] = DataElement(0x00020001, "OB", b"\x00\x01")  # FileMetaInformationVersion
        for tag, uid in ((0x00020002, sop_class), (0x00020003, instance), (0x00020010, syntax)):
            if uid:
                meta[tag] = DataElement(tag, "UI", uid)
        meta[0x00020012] = DataElement(0x00020012, "UI", PYDICOM_IMPLEMENTATION_UID)  # ImplementationClassUID
        meta[0x00020013] = DataElement(0x00020013, "SH", IMPLEMENTATION_VERSION)  # ImplementationVersionName
        ds.file_meta = meta
        if hasattr(ds, "preamble"):
            ds.preamble = PREAMBLE

    def _rule(self, ds: Dataset, tag: BaseTag) -> str:
        action = self._rules.get(tag)
        if action is not None:
            return action
        action = self.profile.action(tag)
        if not action:
            try:
                vr = dictionary_VR(tag)
            except KeyError:  # not in the dictionary: judged by its encoded VR, not cached
                return self._unlisted(tag, ds.get_item(tag).VR or "UN")
            action = self._unlisted(tag, vr)
        self._rules[tag] = action
        return action

    def _unlisted(self, tag: int, vr: str) -> str:
        if vr in ("DA", "DT"):
            return "K" if self.options.keep_dates else ("C" if self.options.shift_dates else "X")
        if vr == "PN":
            return "X"
        if vr == "UI":
            keyword = keyword_for_tag(tag)
            return "K" if keyword.endswith(("ClassUID", "SyntaxUID")) else "U"
        return "K" if vr == "SQ" else ""

    def _private(self, ds: Dataset) -> set:
        """The private tags of this level that the Retain Safe Private option keeps."""
        if not self._keep_private:
            return set()
        creators = {(t.group, t.element): str(ds[t].value) for t in ds.keys()
                    if t.is_private and 0x10 <= t.element <= 0xFF}
        keep = set()
        for t in ds.keys():
            if t.is_private and t.element >= 0x1000:
                creator = creators.get((t.group, t.element >> 8))
                if creator is not None and is_safe(creator, t):
                    keep.add(t)
                    keep.add(Tag(t.group, t.element >> 8))
        return keep

    def _walk(self, ds: Dataset, patient: _Patient) -> None:
        kept_private = None
        for tag in list(ds.keys()):
            if tag.element == 0:  # group lengths: retired, and wrong once elements change
                del ds[tag]
                continue
            if tag.is_private:
                if kept_private is None:
                    kept_private = self._private(ds)
                vr = ds[tag].VR if tag in kept_private else ""
                if vr == "SQ":
                    for item in ds[tag].value:
                        self._walk(item, patient)
                elif vr in ("", "UN"):
                    # Not kept, or of unknown type: an untyped value could be a sequence that
                    # cannot be cleaned, so it goes too.
                    del ds[tag]
                continue
            action = self._rule(ds, tag)
            if action:
                self._apply(ds, tag, action, patient)

    def _apply(self, ds: Dataset, tag: BaseTag, action: str, patient: _Patient) -> None:
        if action == "X":
            del ds[tag]
            return
        vr = ds.get_item(tag).VR
        if not vr or vr == "UN":
            vr = _dictionary_vr(tag)
        if vr != "SQ" and action == "K":
            return
        if vr not in ("SQ", "UI") and action in ("Z", "P", "D"):
            # Replaced outright: the original value need not be decoded.
            value = _empty(vr) if action == "Z" else patient.pseudonym if action == "P" else \
                _DUMMY.get(vr, b"\0" * 8)
            ds[tag] = DataElement(tag, vr, value)
            return
        elem = ds[tag]
        vr = elem.VR
        if vr == "SQ":
            if action == "Z":
                elem.value = Sequence()
            elif action == "D":  # a dummy sequence: one empty item, nothing of the original content
                elem.value = Sequence([Dataset()])
            else:
                for item in elem.value:
                    self._walk(item, patient)
            return
        if action in ("U", "D", "P") and vr == "UI":
            if elem.value is not None:
                elem.value = _one_or_many([self.uid(v) for v in _values(elem.value)])
        elif action == "U":
            # A UID attribute written with another VR (by software whose dictionary predates it, or
            # read by an older pydicom): its text is still an identifier, so map it the same way.
            if isinstance(elem.value, (bytes, bytearray)) or elem.value is None:
                del ds[tag]
            else:
                elem.value = _one_or_many([self.uid(v) for v in _values(elem.value)])
        elif action == "Z":
            ds[tag] = DataElement(tag, vr, _empty(vr))
        elif action == "C":
            if not self._clean(ds, tag, elem, patient):
                self._apply(ds, tag, self.profile.basic_action(tag), patient)
        else:
            del ds[tag]  # no rewrite known to be safe for this combination: never keep by accident

    def _clean(self, ds: Dataset, tag: BaseTag, elem: DataElement, patient: _Patient) -> bool:
        """Carry out C where a rewrite exists; False when the value cannot be cleaned."""
        vr = elem.VR
        if patient.days is None or vr not in ("DA", "DT", "TM") or isinstance(elem.value, (bytes, bytearray)):
            return False
        if vr == "TM":
            return True  # the shift is whole days: times stay as they are
        shift = shift_date if vr == "DA" else shift_datetime
        shifted = [shift(v, patient.days) for v in _values(elem.value)]
        if any(s is None for s in shifted):
            ds[tag] = DataElement(tag, vr, "")  # a date that cannot be read cannot be shifted either
        elif shifted:
            elem.value = _one_or_many([s for s in shifted if s is not None])
        return True
