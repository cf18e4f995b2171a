"""Output names: dcm2niix placeholders and character rules, hostile values, collisions, real names."""
from __future__ import annotations

import os
import random
from pathlib import Path

import pydicom
import pytest
from conftest import require_conformance
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.tag import Tag

from MedPrepLib.dicomfile import is_dicom
from MedPrepLib.errors import MedPrepError
from MedPrepLib.naming import (
    FALLBACK_NAME,
    MAX_NAME_BYTES,
    MAX_VALUE_CHARS,
    PLACEHOLDERS,
    fields_from_dataset,
    postfix_for,
    render_name,
    safe_name,
    unique_name,
    vendor_name,
)

FIELDS = {
    "protocol_name": "T1 MPRAGE",
    "series_number": "7",
    "series_description": "sag t1",
    "datetime": "20200131235959",
    "folder_name": "subject01",
    "vendor": "Siemens",
    "echo_number": "2",
    "patient_id": "ID42",
    "patient_name": "Doe^Jane",
}


# --- placeholders -------------------------------------------------------------------------------

@pytest.mark.parametrize("template, expected", [
    ("%p", "T1_MPRAGE"),
    ("%s", "7"),
    ("%d", "sag_t1"),
    ("%t", "20200131235959"),
    ("%f", "subject01"),
    ("%v", "Siemens"),
    ("%e", "2"),
    ("%i", "ID42"),
    ("%n", "Doe^Jane"),  # dcm2niix keeps "^" (its issue 398)
    ("%P_%S", "T1_MPRAGE_7"),  # letters are case-insensitive, as in dcm2niix
    ("%4s", "0007"),
    ("sub-%f_%p", "sub-subject01_T1_MPRAGE"),
    ("100%%_%s", "100%_7"),
    ("plain", "plain"),
])
def test_placeholders(template, expected):
    assert render_name(template, FIELDS) == expected


def test_missing_values_render_empty_like_dcm2niix():
    # dcm_qa_ct_ge: no ProtocolName, series 2 -> "_2"
    assert render_name("%p_%s", {"series_number": "2"}) == "_2"
    assert render_name("%p_%s", {"protocol_name": None, "series_number": "2"}) == "_2"
    assert render_name("%v_%p_%s", {"protocol_name": "x"}) == "_x_"


def test_padding_applies_to_numbers_only():
    assert render_name("%4s", {"series_number": "12345"}) == "12345"
    assert render_name("%4s", {"series_number": "abc"}) == "abc"


@pytest.mark.parametrize("template", ["%h", "%w", "%p_%", "%4p", "%9%", "%/"])
def test_unknown_placeholder_is_a_clear_error(template):
    with pytest.raises(MedPrepError) as info:
        render_name(template, FIELDS)
    assert "placeholder" in str(info.value) and "%p" in info.value.hint


# --- dcm2niix character rules ------------------------------------------------------------------

@pytest.mark.parametrize("value, expected", [
    ("EPI PE=AP", "EPI_PE=AP"),
    ("3D Ax T1 MP-RAGE_R22", "3D_Ax_T1_MP-RAGE_R22"),
    ("ax_asc_35sl", "ax_asc_35sl"),
    ("REST1 w SMS PF7-8", "REST1_w_SMS_PF7-8"),
    ("Axial EPI-FMRI (Interleaved I to S)", "Axial_EPI-FMRI_(Interleaved_I_to_S)"),
    # Checked against dcm2niix v1.0.20260724 output names:
    ('a b<c>d:e;f"g*h|i?j^k(l)=m-n.o', "a_b_c_d_e_f_g_h_i_j^k(l)=m-n.o"),
    ("T1  double__under", "T1_double_under"),
    ("tab\tx", "tab_x"),
    ("x/y\\z", "x_y_z"),
    (".hidden", "_hidden"),
    ("Ünïcödé Straße", "Unicode_Straße"),
])
def test_dcm2niix_character_rules(value, expected):
    assert render_name("%p", {"protocol_name": value}) == expected


# --- hostile values ------------------------------------------------------------------------------

def _assert_safe(name: str) -> None:
    assert name
    assert "/" not in name and "\\" not in name and os.sep not in name
    assert not name.startswith((".", "-"))
    assert name not in (".", "..")
    assert all(ord(c) >= 32 and c != "\x7f" for c in name)
    assert "\ufffd" not in name
    assert len(name.encode("utf-8")) <= MAX_NAME_BYTES  # also proves there are no lone surrogates
    assert "__" not in name


@pytest.mark.parametrize("value, expected", [
    ("../../etc/passwd", "_.._etc_passwd"),
    ("/etc/passwd", "_etc_passwd"),
    ("..", FALLBACK_NAME),
    ("....", FALLBACK_NAME),
    ("", FALLBACK_NAME),
    ("___", FALLBACK_NAME),
    ("a\x00b", "a_b"),
    ("\x1b[31mred", "_[31mred"),
    ("-rf", "_rf"),
    ("--", FALLBACK_NAME),
    ("line\nbreak", "line_break"),
    ("CON", "CON_"),
    ("nul.txt", "nul_.txt"),
    ("a\u202eb", "a_b"),  # right-to-left override would disguise the name
    ("\uff0fetc", "_etc"),  # a full-width solidus folds to "/" and is then replaced
])
def test_hostile_values(value, expected):
    name = render_name("%p", {"protocol_name": value})
    assert name == expected
    _assert_safe(name)


def test_long_values_are_bounded():
    assert render_name("%p", {"protocol_name": "x" * 5000}) == "x" * MAX_VALUE_CHARS
    many = {key: "y" * 5000 for key in FIELDS}
    name = render_name("%p_%d_%f_%i_%n_%p_%d", many)
    _assert_safe(name)
    assert len(name.encode("utf-8")) == MAX_NAME_BYTES


def test_reserved_name_at_the_length_limit():
    name = safe_name("CON." + "x" * 300)
    assert name.startswith("CON_.") and len(name.encode("utf-8")) == MAX_NAME_BYTES
    assert safe_name(name) == name


def test_multibyte_names_are_cut_on_a_character_boundary():
    name = render_name("%p%d%f%i", {k: "日本語" * 30 for k in FIELDS})
    _assert_safe(name)
    assert set(name) == set("日本語")


@pytest.mark.parametrize("errors", ["surrogateescape", "replace"])
def test_invalid_utf8_bytes(errors):
    value = b"T1\xff\xfe_\xc3(mprage".decode("utf-8", errors)
    name = render_name("%p_%s", {"protocol_name": value, "series_number": "3"})
    _assert_safe(name)
    assert name.startswith("T1_") and name.endswith("(mprage_3")


def test_random_hostile_strings_are_always_safe_and_stable():
    rng = random.Random(1234)
    alphabet = "ab./\\-_ :*?<>|\"';\x00\x01\x1f\x7f\t\n é日\u202e\ufffd\udcff\uff0f%"
    for _ in range(2000):
        value = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 80)))
        name = render_name("%p_%d", {"protocol_name": value, "series_description": value[::-1]})
        _assert_safe(name)
        assert safe_name(name) == name


# --- collisions ----------------------------------------------------------------------------------

def test_collisions_get_letters_like_dcm2niix():
    taken: set = set()
    names = [unique_name("T1_3", taken) for _ in range(4)]
    assert names == ["T1_3", "T1_3a", "T1_3b", "T1_3c"]
    assert taken == set(names)


def test_collisions_continue_after_z():
    taken: set = set()
    names = [unique_name("loc", taken) for _ in range(29)]
    assert names[26] == "locz" and names[27] == "locaa" and names[28] == "locab"
    assert len(set(names)) == 29


def test_collisions_ignore_case():
    assert unique_name("t1", {"T1"}) == "t1a"


@pytest.mark.parametrize("postfix, expected", [
    ("_e2", "fmap_5_e2"),
    ("_ph", "fmap_5_ph"),
    ("_real", "fmap_5_real"),
    ("_imaginary", "fmap_5_imaginary"),
    ("_Tilt", "fmap_5_Tilt"),
    ("_Eq", "fmap_5_Eq"),
    ("_e2_ph", "fmap_5_e2_ph"),
    ("/../x", "fmap_5_.._x"),
    ("", "fmap_5"),
    (None, "fmap_5"),
])
def test_postfixes(postfix, expected):
    assert unique_name("fmap_5", set(), postfix) == expected


def test_postfix_then_collision():
    taken = {"fmap_5_e2"}
    assert unique_name("fmap_5", taken, "_e2") == "fmap_5_e2a"
    assert unique_name("fmap_5", taken, "_e1") == "fmap_5_e1"


def test_unique_name_sanitises_its_base():
    name = unique_name("../../x", set())
    _assert_safe(name)
    assert name == "_.._x"


# --- fields from a header ------------------------------------------------------------------------

@pytest.mark.parametrize("manufacturer, expected", [
    ("SIEMENS", "Siemens"),
    ("Siemens HealthCare GmbH", "Siemens"),
    ("GE MEDICAL SYSTEMS", "GE"),
    ("Philips Medical Systems", "Philips"),
    ("Philips", "Philips"),
    ("TOSHIBA_MEC", "Toshiba"),
    ("CANON_MEC", "Canon"),
    ("Hitachi Medical Corporation", "Hitachi"),
    ("UIH", "UIH"),
    ("United Imaging Healthcare", "UIH"),
    ("Bruker BioSpin MRI GmbH", "Bruker"),
    ("FUJIFILM Corporation", "FUJIFILM"),
    ("  ", None),
    (None, None),
])
def test_vendor_names(manufacturer, expected):
    assert vendor_name(manufacturer) == expected


def _mr(**values) -> Dataset:
    ds = Dataset()
    for keyword, value in values.items():
        setattr(ds, keyword, value)
    return ds


def test_fields_from_dataset():
    ds = _mr(ProtocolName="EPI PE=AP", SeriesNumber=3, SeriesDescription="desc", StudyDate="20180918",
             StudyTime="121229.940000", Manufacturer="SIEMENS", EchoNumbers=[2, 3], PatientID="P1",
             PatientName="Doe^John")
    fields = fields_from_dataset(ds, "mr_0003")
    assert {k: v for k, v in fields.items() if v is not None} == {
        "protocol_name": "EPI PE=AP",
        "series_number": "3",
        "series_description": "desc",
        "datetime": "20180918121230",  # dcm2niix rounds the fractional seconds
        "folder_name": "mr_0003",
        "vendor": "Siemens",
        "vendor_short": "Si",
        "echo_number": "2",
        "patient_id": "P1",
        "patient_name": "Doe^John",
    }
    assert render_name("%p_%s", fields) == "EPI_PE=AP_3"


def test_fields_fallbacks():
    # dcm2niix: no ProtocolName -> SeriesDescription -> SequenceName (not for Siemens, whose sequence
    # name changes within a DWI series); %t uses the study date and time only.
    ds = _mr(SequenceName="*tfl3d1", SeriesDate="20200101", SeriesTime="1212")
    fields = fields_from_dataset(ds, None)
    assert fields["protocol_name"] == "*tfl3d1"
    assert fields["datetime"] is None
    assert render_name("%p", fields) == "_tfl3d1"
    assert fields_from_dataset(_mr(SeriesDescription="t2 tse", SequenceName="x"), None)["protocol_name"] == "t2 tse"
    assert fields_from_dataset(_mr(Manufacturer="SIEMENS", SequenceName="*ep_b1000#2"), None)["protocol_name"] is None
    empty = fields_from_dataset(Dataset(), "")
    assert set(empty.values()) == {None, "NA"}  # %m and %v are "NA" when the manufacturer is unknown
    assert render_name("%p_%s_%t", empty) == FALLBACK_NAME
    assert render_name("%v_%m", empty) == "NA_NA"
    assert fields_from_dataset(_mr(Manufacturer="Hitachi Medical Corporation"), None)["vendor"] == "NA"


@pytest.mark.parametrize("date, time, expected", [
    ("20180925", "132222", "20180925132222"),
    ("***", "132222", "132222"),       # de-identified date: dcm2niix writes the time alone
    (None, "134431.5", "134432"),      # no date: the time alone, rounded
    ("20180925", None, "20180925000000"),
    (None, None, None),
])
def test_study_time_without_a_date(date, time, expected):
    ds = Dataset()
    if date is not None:
        _raw(ds, 0x00080020, "DA", date.encode().ljust(8))
    if time is not None:
        _raw(ds, 0x00080030, "TM", time.encode() + (b" " if len(time) % 2 else b""))
    assert fields_from_dataset(ds, None)["datetime"] == expected


def test_every_dcm2niix_placeholder():
    ds = _mr(ProtocolName="prot", SeriesDescription="desc", SeriesNumber=5, StudyDate="20240101",
             StudyTime="101010", Manufacturer="UIH", EchoNumbers=3, PatientID="PID", PatientName="Doe^J",
             ImageComments="note", AccessionNumber="ACC9", SeriesInstanceUID="1.2.3", StudyInstanceUID="1.2.4",
             PerformedProcedureStepDescription="brain", InstanceNumber=17, AcquisitionNumber=2, StudyID="S7",
             TemporalPositionIdentifier=4, SequenceName="epi_dti", ReceiveCoilName="HEAD32",
             ScanningSequence=["EP", "SE"])
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.file_meta.MediaStorageSOPInstanceUID = "1.2.5"
    fields = fields_from_dataset(ds, "folder", "IM0001.dcm")
    expected = {"a": "HEAD32", "b": "IM0001.dcm", "c": "note", "d": "desc", "e": "3", "f": "folder", "g": "ACC9",
                "i": "PID", "j": "1.2.3", "k": "1.2.4", "l": "brain", "m": "UI", "n": "Doe^J", "o": "1.2.5",
                "p": "prot", "q": "EP\\SE", "r": "17", "s": "5", "t": "20240101101010", "u": "2", "v": "UIH", "x": "S7",
                "y": "4", "z": "epi_dti"}
    assert set(expected) == set(PLACEHOLDERS)
    for letter, value in expected.items():
        assert render_name(f"%{letter}", fields) == safe_name(value), letter
    assert render_name("%m_%s", fields) == "UI_5"
    assert render_name("%3s_%3r_%3y", fields) == "005_017_004"


def test_echo_postfix_is_left_out_when_the_template_names_the_echo():
    assert postfix_for("%p_%s", "_e2_ph") == "_e2_ph"
    assert postfix_for("%p_%e", "_e2_ph") == "_ph"
    assert postfix_for("%p_%E", "_e12") == ""


def test_ge_run_number_for_y():
    ds = _mr(Manufacturer="GE MEDICAL SYSTEMS", TemporalPositionIdentifier=4)
    ds.private_block(0x0019, "GEMS_ACQU_01", create=True).add_new(0xA2, "SL", 12)
    assert fields_from_dataset(ds, None)["run_number"] == "12"


def _raw(ds: Dataset, tag: int, vr: str, value: bytes) -> None:
    """Put an element into ds as if read from a file, so that pydicom has not checked its value."""
    ds[tag] = RawDataElement(Tag(tag), vr, len(value), value, 0, False, True)


def test_fields_from_invalid_values():
    ds = Dataset()
    _raw(ds, 0x00080020, "DA", b"2020")  # StudyDate
    _raw(ds, 0x00080030, "TM", b"noon")  # StudyTime
    _raw(ds, 0x00200011, "IS", b"abc ")  # SeriesNumber
    _raw(ds, 0x00180086, "IS", b"1")  # EchoNumbers
    _raw(ds, 0x00181030, "LO", b"T1\xff\xfe(")  # ProtocolName: not valid in the default character set
    _raw(ds, 0x00080070, "US", b"abc")  # Manufacturer with a wrong VR: cannot be converted at all
    fields = fields_from_dataset(ds, "x")
    assert fields["series_number"] == "abc"
    assert fields["echo_number"] == "1"
    assert fields["datetime"] is None
    assert fields["vendor"] == "NA"  # an unreadable manufacturer is an unknown one, as in dcm2niix
    name = render_name("%p_%s", fields)
    _assert_safe(name)
    assert name.startswith("T1") and name.endswith("(_abc")


# --- the conformance set: dcm2niix's own output names -------------------------------------------

# set -> (dcm2niix -f pattern, postfixes dcm2niix added to split images; see conformance MANIFEST.md)
CONFORMANCE_SETS = {
    "dcm_qa_nih": ("%p_%s", [""]),
    "dcm_qa_orientation": ("%p_%s", [""]),
    "dcm_qa_ts": ("%s", [""]),
    "dcm_qa_12bit": ("%s", [""]),
    "dcm_qa_enh": ("%v_%p_%s", ["", "_e1", "_e2_fieldmaphz"]),
    "dcm_qa_ct_ge": ("%p_%s", ["", "_Tilt_Eq_1"]),
    "dcm_qa_philips": ("%p_%s", [""]),
    "dcm_qa_ge": ("%d_%s", [""]),
    # StudyDate is "***" there: %t is the study time alone, which keeps two runs of series 12 apart.
    "dcm_qa_uih": ("%p_%s_%t", [""]),
}


def _first_file_of_each_series(folder: Path) -> dict[str, Dataset]:
    series: dict[str, Dataset] = {}
    for dirpath, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            path = Path(dirpath) / name
            if not is_dicom(path):
                continue
            ds = pydicom.dcmread(path, stop_before_pixels=True)
            # dcm2niix keeps images apart when their series numbers differ, even under one UID.
            series.setdefault(f"{ds.SeriesInstanceUID}|{ds.get('SeriesNumber')}", ds)
    return series


@pytest.mark.conformance
@pytest.mark.parametrize("set_name", sorted(CONFORMANCE_SETS))
def test_conformance_names_match_dcm2niix(set_name):
    root = require_conformance() / set_name
    template, postfixes = CONFORMANCE_SETS[set_name]
    names = [render_name(template, fields_from_dataset(ds, None))
             for ds in _first_file_of_each_series(root / "In").values()]
    references = {p.name.split(".")[0] for p in (root / "Ref").iterdir()}
    # Every reference is one of our names plus a dcm2niix postfix, and every name has a reference.
    produced = {name + postfix for name in names for postfix in postfixes}
    assert references <= produced
    assert all(any(name + postfix in references for postfix in postfixes) for name in names)


@pytest.mark.conformance
def test_conformance_examples():
    root = require_conformance()
    nih = _first_file_of_each_series(root / "dcm_qa_nih" / "In" / "20180918Si" / "mr_0003")
    assert [render_name("%p_%s", fields_from_dataset(ds, None)) for ds in nih.values()] == ["EPI_PE=AP_3"]
    ct = _first_file_of_each_series(root / "dcm_qa_ct_ge" / "In")
    assert [render_name("%p_%s", fields_from_dataset(ds, None)) for ds in ct.values()] == ["_2"]
    enh = _first_file_of_each_series(root / "dcm_qa_enh" / "In")
    assert sorted(render_name("%v_%p_%s", fields_from_dataset(ds, None)) for ds in enh.values()) == [
        "Philips_WIP_B0_NS_801", "Siemens_REST1_w_SMS_PF7-8_6"]
