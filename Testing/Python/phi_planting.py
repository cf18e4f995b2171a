"""A DICOM tree full of planted, greppable patient data, for the de-identification tests.

Two patients, three studies, series of several modalities (CT, MR, PET with a
RadiopharmaceuticalInformationSequence, DX, an enhanced multi-frame MR, and an ultrasound series
that must be withheld for burned-in annotation). Every attribute of PS3.15 Table E.1-1 gets a
marker value of its VR; private blocks, nested sequences, the preamble and the file and folder
names carry markers too. `Planted.needles` lists every byte string that must not appear anywhere
in a de-identified output; `Planted.markers` gives each table attribute's own marker, so that an
output made with Annex E options can be checked attribute by attribute against the option columns
(`leaks`).
"""
from __future__ import annotations

import datetime
import functools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
from pydicom import __version__ as PYDICOM_VERSION
from pydicom.datadict import dictionary_VR, keyword_for_tag
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian

from conftest import REFERENCE

MARK = "PHIMARK"
UID_ROOT = "1.2.826.0.1.3680043.10.999."
SIZE = 32  # rows and columns: small images keep the tests fast
CT_CLASS = "1.2.840.10008.5.1.4.1.1.2"
MR_CLASS = "1.2.840.10008.5.1.4.1.1.4"
PET_CLASS = "1.2.840.10008.5.1.4.1.1.128"
DX_CLASS = "1.2.840.10008.5.1.4.1.1.1.1"
ENH_MR_CLASS = "1.2.840.10008.5.1.4.1.1.4.1"
US_CLASS = "1.2.840.10008.5.1.4.1.1.6.1"
KEY = b"planted-phi-test-key"
PYDICOM3 = int(PYDICOM_VERSION.split(".")[0]) >= 3

PATIENTS = {
    "A": {"PatientName": "Zyxwvdoe^Qqjohn^Mid", "PatientID": "PID-PHIMARK-A", "PatientBirthDate": "19320517"},
    "B": {"PatientName": "Zyxwvroe^Qqjane", "PatientID": "PID-PHIMARK-B", "PatientBirthDate": "19331108"},
}
NAME_PARTS = ["Zyxwvdoe", "Qqjohn", "Zyxwvroe", "Qqjane"]
# (patient, study date, accession); patient A has two studies 401 days apart.
STUDIES = [("A", "19350302", "ACCPHIMARK1"), ("A", "19360406", "ACCPHIMARK2"), ("B", "19350710", "ACCPHIMARK3")]


def table_tags() -> List[Tuple[int, str]]:
    """(tag, VR) of every single-tag row of Table E.1-1, plus one instance of each repeating row.

    From the shared reference table when present, else from the product's generated table.
    """
    rows: List[Tuple[int, str]] = []
    ref = REFERENCE / "ps315_table_e1_1.json"
    if ref.is_file():
        for e in json.loads(ref.read_text())["basic_profile"]:
            if e["tag"] == "PRIVATE":
                continue
            tag = e["tag"].lower()
            if "x" in tag:  # a repeating row (curves, overlays): plant its first group's data element
                tag = tag[:4].replace("x", "0") + (tag[4:] if "x" not in tag[4:] else "3000")
            rows.append((int(tag, 16), e.get("vr") or ""))
    else:
        from MedPrepLib.anonymize import table_e1_1

        rows = [(t, "") for t in table_e1_1.BASIC] + [(v | (0x3000 if v & 0xFFFF == 0 else 0), "")
                                                       for v, _, _ in table_e1_1.BASIC_MASKED]
    out = []
    for tag, vr in rows:
        if not vr:
            try:
                vr = dictionary_VR(tag)
            except KeyError:
                vr = "OB" if tag >> 24 in (0x50, 0x60) else "LO"
            if tag >> 24 == 0x50:
                vr = "OB"
        out.append((tag, vr.split(" or ")[0]))
    return out


@dataclass
class Planted:
    root: Path
    needles: List[bytes] = field(default_factory=list)
    uids: List[str] = field(default_factory=list)
    files: Dict[str, dict] = field(default_factory=dict)  # SOP instance UID -> facts about the file
    markers: Dict[int, bytes] = field(default_factory=dict)  # table attribute -> its own planted marker

    def add(self, text: str) -> None:
        if text.encode() not in self.needles:
            self.needles.append(text.encode())


class _Uids:
    def __init__(self, planted: Planted):
        self.n = 0
        self.planted = planted

    def __call__(self) -> str:
        self.n += 1
        uid = f"{UID_ROOT}{self.n}"
        self.planted.uids.append(uid)
        return uid


def _marker(i: int, tag: int, vr: str, planted: Planted, uid: _Uids):
    """A value of `vr` that identifies tag number i, registered as a needle when greppable."""
    text = f"{MARK}{i:04d}"
    if vr in ("AE", "CS", "SH", "LO", "LT", "ST", "UT", "UC"):
        return text
    if vr == "PN":
        return f"{text}^{MARK}GIVEN"
    if vr == "UR":
        return f"http://{text.lower()}.invalid/"
    if vr == "DA":
        value = (datetime.date(1931, 1, 1) + datetime.timedelta(days=3 * i)).strftime("%Y%m%d")
        planted.add(value)
        return value
    if vr == "DT":
        value = (datetime.date(1931, 1, 1) + datetime.timedelta(days=3 * i + 1)).strftime("%Y%m%d") + "101010"
        planted.add(value)
        return value
    if vr == "TM":
        value = f"1010{i % 60:02d}.{700000 + i}"
        planted.add(value)
        return value
    if vr == "DS":
        value = f"98765.{i:04d}"
        planted.add(value)
        return value
    if vr == "IS":
        value = str(876500000 + i)
        planted.add(value)
        return value
    if vr == "AS":
        return f"{i % 1000:03d}Y"
    if vr == "UI":
        return uid()
    if vr in ("US", "SS", "UL", "SL", "AT"):
        return 4321
    if vr in ("FL", "FD"):
        return 43.21
    if vr == "SQ":
        inner = Dataset()
        inner.ReferencedSOPClassUID = CT_CLASS
        inner.ReferencedSOPInstanceUID = uid()
        inner.PersonName = f"{MARK}{i:04d}NESTED^Deep"
        item = Dataset()
        item.ReferencedSOPClassUID = CT_CLASS
        item.ReferencedSOPInstanceUID = uid()
        item.OperatorsName = f"{MARK}{i:04d}ITEM"
        item.SourceImageSequence = Sequence([inner])
        return Sequence([item])
    return f"{text}\0".encode()  # OB, OW, UN: bytes


def plant(ds: Dataset, planted: Planted, uid: _Uids) -> None:
    """Every Table E.1-1 attribute the object does not already have, with a marker value."""
    for i, (tag, vr) in enumerate(table_tags()):
        if tag >> 16 in (0x0000, 0x0002) or tag in ds:  # command set and file meta: not in a data set
            continue
        value = _marker(i, tag, vr, planted, uid)
        ds[tag] = DataElement(tag, vr, value)
        if vr in ("DS", "IS"):
            planted.markers[tag] = str(value).encode()
        elif vr not in ("DA", "DT", "TM", "UI", "AS", "US", "SS", "UL", "SL", "AT", "FL", "FD"):
            planted.markers[tag] = f"{MARK}{i:04d}".encode()  # text, bytes, URL and nested items carry it
    # Private attributes: one unknown block (removed even with --keep-private) and one safelisted.
    block = ds.private_block(0x0011, f"{MARK} CREATOR", create=True)
    block.add_new(0x01, "LO", f"{MARK}PRIVATE value")
    block.add_new(0x02, "SQ", Sequence([Dataset()]))
    block[0x02].value[0].PatientName = f"{MARK}PRIVSEQ^Name"
    siemens = ds.private_block(0x0019, "SIEMENS MR HEADER", create=True)
    siemens.add_new(0x0C, "IS", "1000")  # B_value: on the safelist
    siemens.add_new(0x10, "LO", f"{MARK}SIEMENS unlisted")


def _base(modality: str, sop_class: str, patient: str, study: Tuple[str, str, str], study_uid: str,
          series_uid: str, sop_uid: str, series_number: int, frame_uid: str) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.SourceApplicationEntityTitle = f"{MARK}AET"
    ds.preamble = (f"{MARK}-PREAMBLE-" * 16).encode()[:128]
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    ds.Modality = modality
    for k, v in PATIENTS[patient].items():
        setattr(ds, k, v)
    ds.StudyDate, ds.AccessionNumber = study[1], study[2]
    ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = study[1]
    ds.StudyTime, ds.SeriesTime, ds.AcquisitionTime, ds.ContentTime = "081500", "082000", "082512.5", "083000"
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study_uid, series_uid, frame_uid
    ds.SeriesNumber = series_number
    ds.StudyDescription = f"{MARK}STUDY study of {PATIENTS[patient]['PatientName'].split('^')[0]}"
    ds.SeriesDescription = f"{MARK}SERIES series {series_number} {PATIENTS[patient]['PatientName'].split('^')[0]}"
    ds.ImageComments = f"{MARK}COMMENT comment: patient {PATIENTS[patient]['PatientID']} looked anxious"
    ds.InstitutionName = f"{MARK}INSTITUTION General Hospital"
    ds.PatientSex, ds.PatientAge, ds.PatientWeight, ds.PatientSize = "F", "041Y", "71.5", "1.68"
    ds.Rows = ds.Columns = SIZE
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    return ds


def _pixels(seed: int, frames: int = 1) -> bytes:
    # Values below 4096: no two adjacent bytes are printable, so no marker can appear by chance.
    rng = np.random.default_rng(seed)
    return rng.integers(0, 4096, size=(frames, SIZE, SIZE), dtype=np.uint16).tobytes()


def _write(ds: Dataset, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if PYDICOM3:
        ds.save_as(str(path), enforce_file_format=True)
    else:
        ds.is_little_endian, ds.is_implicit_VR = True, False
        ds.save_as(str(path), write_like_original=False)


def write_planted_tree(root: Path, with_table: bool = True) -> Planted:
    """Write the tree under root/in and describe it; `with_table` plants every E.1-1 attribute."""
    planted = Planted(root=root / "in")
    planted.markers.update({0x00081030: f"{MARK}STUDY".encode(), 0x0008103E: f"{MARK}SERIES".encode(),
                            0x00204000: f"{MARK}COMMENT".encode(), 0x00080080: f"{MARK}INSTITUTION".encode()})
    uid = _Uids(planted)
    for text in [MARK, *NAME_PARTS] + [p["PatientID"] for p in PATIENTS.values()] + \
            [p["PatientBirthDate"] for p in PATIENTS.values()] + [s[1] for s in STUDIES] + [s[2] for s in STUDIES]:
        planted.add(text)
    seed = 0
    # (study index, modality, series number, slices)
    layout = [(0, "CT", 2, 4), (0, "PT", 3, 3), (0, "US", 9, 1), (1, "MR", 4, 3), (1, "MRE", 5, 1),
              (2, "DX", 6, 1), (2, "CT", 7, 3)]
    study_uids = [uid() for _ in STUDIES]
    frame_uids = {}
    for study_index, modality, number, slices in layout:
        patient, date, accession = study = STUDIES[study_index]
        series_uid = uid()
        frame_uid = frame_uids.setdefault(study_index, uid())
        folder = planted.root / f"{MARK}_{PATIENTS[patient]['PatientName'].replace('^', '_')}" / \
            f"study_{accession}_{date}" / f"series{number}_{modality}"
        first_sop = None
        for k in range(slices):
            seed += 1
            sop = uid()
            cls = {"CT": CT_CLASS, "PT": PET_CLASS, "MR": MR_CLASS, "DX": DX_CLASS, "MRE": ENH_MR_CLASS,
                   "US": US_CLASS}[modality]
            ds = _base("MR" if modality == "MRE" else modality, cls, patient, study, study_uids[study_index],
                       series_uid, sop, number, frame_uid)
            ds.InstanceNumber = k + 1
            if modality in ("CT", "PT", "MR"):
                ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
                ds.ImagePositionPatient = [-20.0, -30.0, 5.0 + 2.5 * k]
                ds.PixelSpacing = [0.8, 0.9]
                ds.SliceThickness = 2.5
                ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
            if modality == "CT":
                ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
            if modality == "PT":
                ds.Units, ds.DecayCorrection, ds.CorrectedImage = "BQML", "START", ["ATTN", "DECY"]
                ds.RescaleSlope, ds.RescaleIntercept = "0.5", 0
                rp = Dataset()
                rp.Radiopharmaceutical = "Fluorodeoxyglucose"
                rp.RadiopharmaceuticalStartTime = "074500"
                rp.RadiopharmaceuticalStartDateTime = date + "074500"
                rp.RadionuclideTotalDose = "370000000"
                rp.RadionuclideHalfLife = "6586.2"
                ds.RadiopharmaceuticalInformationSequence = Sequence([rp])
            if modality == "DX":
                ds.ImagerPixelSpacing = [0.15, 0.15]
                ds.PresentationIntentType = "FOR PRESENTATION"
                ds.ImageType = ["ORIGINAL", "PRIMARY"]
            if modality == "US":
                ds.BurnedInAnnotation = "YES"
            frames = 1
            if modality == "MRE":
                frames = 3
                ds.NumberOfFrames = frames
                ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "NONE"]
                shared = Dataset()
                pm = Dataset()
                pm.PixelSpacing, pm.SliceThickness = [0.8, 0.9], 2.5
                po = Dataset()
                po.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
                shared.PixelMeasuresSequence = Sequence([pm])
                shared.PlaneOrientationSequence = Sequence([po])
                ds.SharedFunctionalGroupsSequence = Sequence([shared])
                per = []
                for f in range(frames):
                    item = Dataset()
                    pp = Dataset()
                    pp.ImagePositionPatient = [-20.0, -30.0, 5.0 + 2.5 * f]
                    fc = Dataset()
                    fc.FrameAcquisitionDateTime = date + f"0830{f:02d}"
                    fc.FrameReferenceDateTime = date + f"0830{f:02d}"
                    fc.StackID, fc.InStackPositionNumber = "1", f + 1
                    fc.DimensionIndexValues = [1, f + 1]
                    item.PlanePositionSequence = Sequence([pp])
                    item.FrameContentSequence = Sequence([fc])
                    per.append(item)
                ds.PerFrameFunctionalGroupsSequence = Sequence(per)
            if first_sop is None:
                first_sop = sop
            else:
                ref = Dataset()
                ref.ReferencedSOPClassUID = cls
                ref.ReferencedSOPInstanceUID = first_sop
                ds.ReferencedImageSequence = Sequence([ref])
            if with_table:
                plant(ds, planted, uid)
            ds.PixelData = _pixels(seed, frames)
            name = f"IM_{MARK}_{PATIENTS[patient]['PatientID']}_{k:03d}.dcm"
            _write(ds, folder / name)
            planted.files[sop] = {"patient": patient, "study_date": date, "series_number": number,
                                  "modality": modality, "first_sop": first_sop, "path": folder / name}
    # A non-DICOM file and a broken DICOM file: skipped and reported, never copied.
    notes = planted.root / f"notes_{MARK}.txt"
    notes.write_text(f"{MARK} notes about {NAME_PARTS[0]}\n")
    broken = planted.root / f"broken_{MARK}.dcm"
    broken.write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00\x10\x00UI\xff\x7f" + b"1.2")
    return planted


# Each Annex E option of MedPrep and the Table E.1-1 column it applies.
OPTION_COLUMNS = {
    "shift_dates": "retain_modified_dates", "keep_dates": "retain_full_dates",
    "retain_patient_characteristics": "retain_patient_characteristics",
    "retain_device_identity": "retain_device_id", "retain_institution_identity": "retain_institution_id",
    "clean_descriptors": "clean_descriptors", "keep_private": "retain_safe_private", "keep_uids": "retain_uid",
}


@functools.lru_cache(maxsize=None)
def option_columns() -> Dict[str, List[Tuple[int, int, str]]]:
    """Each option column of Table E.1-1 as (value, mask, action) rows.

    From the shared reference table when present, else from the product's generated table.
    """
    ref = REFERENCE / "ps315_table_e1_1.json"
    if ref.is_file():
        columns: Dict[str, List[Tuple[int, int, str]]] = {}
        for name, rows in json.loads(ref.read_text())["options"].items():
            columns[name] = []
            for text, action in rows.items():
                if text == "PRIVATE":
                    continue
                text = text.lower()
                value = int(text.replace("x", "0"), 16)
                mask = int("".join("0" if c == "x" else "f" for c in text), 16)
                columns[name].append((value, mask, action))
        return columns
    from MedPrepLib.anonymize import table_e1_1

    return {name: [(t, 0xFFFFFFFF, a) for t, a in rows.items()] + table_e1_1.OPTIONS_MASKED.get(name, [])
            for name, rows in table_e1_1.OPTIONS.items()}


def kept_by(options: Dict[str, bool]) -> Callable[[int], bool]:
    """Whether a column of the options in force says K (keep) for a tag."""
    columns = option_columns()
    rows = [r for o, on in options.items() if on and o in OPTION_COLUMNS for r in columns[OPTION_COLUMNS[o]]]
    keep = {v for v, m, a in rows if a == "K" and m == 0xFFFFFFFF}
    masked = [(v, m) for v, m, a in rows if a == "K" and m != 0xFFFFFFFF]
    return lambda tag: tag in keep or any(tag & m == v for v, m in masked)


def forbidden(planted: Planted) -> List[bytes]:
    """Values no option may keep: the patient's name, IDs, birth date, accession numbers, private text."""
    return [n.encode() for n in NAME_PARTS] + [p[k].encode() for p in PATIENTS.values()
                                               for k in ("PatientID", "PatientBirthDate")] + \
        [s[2].encode() for s in STUDIES] + \
        [f"{MARK}{what}".encode() for what in ("PRIVATE", "PRIVSEQ", "SIEMENS", "-PREAMBLE", "AET")]


def leaks(data: bytes, planted: Planted, kept: Callable[[int], bool]) -> List[str]:
    """The planted values found in `data` that the options in force do not keep."""
    data = data.lower()
    found = [f"{tag:08X} {keyword_for_tag(tag) or '(new attribute)'}" for tag, marker in planted.markers.items()
             if marker.lower() in data and not kept(tag)]
    return found + [n.decode() for n in forbidden(planted) if n.lower() in data]


def scan_for_needles(out_dir: Path, needles: List[bytes]) -> List[Tuple[str, bytes]]:
    """(file, needle) for every needle found in any output file's bytes or in any output path."""
    found = []
    lowered = [n.lower() for n in needles]
    for path in sorted(out_dir.rglob("*")):
        rel = str(path.relative_to(out_dir)).encode().lower()
        for n in lowered:
            if n in rel:
                found.append((str(path), n))
        if path.is_file():
            data = path.read_bytes().lower()
            for n in lowered:
                if n in data:
                    found.append((str(path), n))
    return found


def original_uid_hits(out_dir: Path, uids: List[str]) -> List[Tuple[str, str]]:
    found = []
    for path in sorted(p for p in out_dir.rglob("*") if p.is_file()):
        data = path.read_bytes()
        for u in uids:
            # The UID followed by anything but another digit ("...999.1" is not "...999.12").
            start = data.find(u.encode())
            while start >= 0:
                end = start + len(u)
                if end >= len(data) or not chr(data[end]).isdigit():
                    found.append((str(path), u))
                    break
                start = data.find(u.encode(), start + 1)
    return found


def first_value(ds: Dataset, tag: int) -> Optional[object]:
    return ds[tag].value if tag in ds else None
