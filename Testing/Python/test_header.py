"""Header rows, their filters, and the `medprep header` command."""
from __future__ import annotations

import hashlib
import json
from io import BytesIO
from pathlib import Path

import pydicom
import pytest
from conftest import require_conformance
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.tag import Tag
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, MRImageStorage

from MedPrepLib.cli import main as cli
from MedPrepLib.errors import MedPrepError
from MedPrepLib.header import (
    ITEM_TAG,
    MAX_VALUE_CHARS,
    HeaderRow,
    check_keyword,
    filter_rows,
    header_rows,
    parse_tag,
)


def _item(**values) -> Dataset:
    ds = Dataset()
    for keyword, value in values.items():
        setattr(ds, keyword, value)
    return ds


def _dataset(transfer_syntax=ExplicitVRLittleEndian) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = transfer_syntax
    ds.file_meta.MediaStorageSOPClassUID = MRImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = "1.2.3.4"
    ds.SOPClassUID = MRImageStorage
    ds.SOPInstanceUID = "1.2.3.4"
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.PatientName = "Doe^Jane"
    ds.PatientID = "P-001"
    ds.Modality = "MR"
    ds.SeriesInstanceUID = "1.2.3"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "M"]
    ds.PixelSpacing = [0.5, 0.75]
    ds.FrameIncrementPointer = Tag(0x00181063)
    ds.StudyComments = "line one\nline two \x1b[31m \u202e\x9b"
    ds.ImageComments = "z" * 1000
    ds.ReferencedSeriesSequence = Sequence([
        _item(SeriesInstanceUID="1.2.3.1",
              ReferencedInstanceSequence=Sequence([_item(ReferencedSOPInstanceUID="1.2.3.1.1")])),
        _item(SeriesInstanceUID="1.2.3.2"),
    ])
    block = ds.private_block(0x0009, "ACME 1.0", create=True)
    block.add_new(0x01, "LO", "acme value")
    block.add_new(0x02, "OB", b"\x00\x01\x02\x03")
    block.add_new(0x03, "SQ", Sequence([_item(PatientID="hidden-in-private")]))
    ds.Rows = ds.Columns = 2
    ds.BitsAllocated = 16
    # Deliberately not 2x2x2 bytes: decoding this would fail, summarising it must not.
    ds.PixelData = b"\x00" * 6
    return ds


def _by_path(rows):
    return {row.path: row for row in rows}


def _write(ds: Dataset, path: Path) -> Path:
    if pydicom.__version__.startswith("2."):
        ds.is_little_endian = True
        ds.is_implicit_VR = ds.file_meta.TransferSyntaxUID == ImplicitVRLittleEndian
        ds.save_as(path, write_like_original=False)
    else:
        ds.save_as(path, enforce_file_format=True)
    return path


# --- rows ---------------------------------------------------------------------------------------

def test_file_meta_comes_first():
    rows = header_rows(_dataset())
    assert [row.tag for row in rows[:4]] == ["0002,0002", "0002,0003", "0002,0010", "0008,0005"]
    assert _by_path(rows)["TransferSyntaxUID"].value == ExplicitVRLittleEndian


def test_plain_elements():
    rows = _by_path(header_rows(_dataset()))
    name = rows["PatientName"]
    assert name == HeaderRow(tag="0010,0010", keyword="PatientName", name="Patient's Name", vr="PN",
                             value="Doe^Jane", depth=0, is_private=False, private_creator="",
                             path="PatientName")
    assert rows["ImageType"].value == "ORIGINAL\\PRIMARY\\M"
    assert rows["PixelSpacing"].value == "0.5\\0.75"
    assert rows["FrameIncrementPointer"].value == "(0018,1063)"


def test_display_values_are_one_line_and_bounded():
    rows = _by_path(header_rows(_dataset()))
    assert rows["StudyComments"].value == "line one\\nline two \\x1b[31m \\u202e\\x9b"
    long = rows["ImageComments"].value
    assert long.startswith("z" * MAX_VALUE_CHARS) and long.endswith("(1000 characters)")
    assert len(long) < MAX_VALUE_CHARS + 30


def test_pixel_data_is_summarised_not_decoded():
    rows = _by_path(header_rows(_dataset()))
    assert rows["PixelData"].value == "<pixel data: 6 bytes, not decoded>"


def test_sequences_items_and_paths():
    rows = header_rows(_dataset())
    by_path = _by_path(rows)
    seq = by_path["ReferencedSeriesSequence"]
    assert (seq.vr, seq.value, seq.depth) == ("SQ", "2 items", 0)
    item = by_path["ReferencedSeriesSequence[0]"]
    assert (item.tag, item.name, item.depth) == (ITEM_TAG, "Item 1", 1)
    assert by_path["ReferencedSeriesSequence[1]"].name == "Item 2"
    uid = by_path["ReferencedSeriesSequence[0].SeriesInstanceUID"]
    assert (uid.value, uid.depth) == ("1.2.3.1", 1)
    nested = by_path["ReferencedSeriesSequence[0].ReferencedInstanceSequence[0].ReferencedSOPInstanceUID"]
    assert (nested.value, nested.depth) == ("1.2.3.1.1", 2)
    assert by_path["ReferencedSeriesSequence[0].ReferencedInstanceSequence"].value == "1 item"
    # Document order: the sequence, its first item, that item's elements, then the second item.
    paths = [row.path for row in rows]
    assert paths.index("ReferencedSeriesSequence") < paths.index("ReferencedSeriesSequence[0]") \
        < paths.index(nested.path) < paths.index("ReferencedSeriesSequence[1]")
    assert len(set(paths)) == len(paths)


def test_private_tags():
    rows = _by_path(header_rows(_dataset()))
    creator = rows["(0009,0010)"]
    assert (creator.is_private, creator.private_creator, creator.name, creator.value) == \
        (True, "ACME 1.0", "Private Creator", "ACME 1.0")
    value = rows["(0009,1001)"]
    assert (value.is_private, value.private_creator, value.keyword, value.value) == \
        (True, "ACME 1.0", "", "acme value")
    assert rows["(0009,1002)"].value == "<4 bytes>"
    inner = rows["(0009,1003)[0].PatientID"]
    assert (inner.is_private, inner.depth) == (False, 1)


def test_private_tags_can_be_left_out():
    rows = header_rows(_dataset(), include_private=False)
    assert not any(row.is_private for row in rows)
    assert not any("hidden-in-private" in row.value for row in rows)
    assert "PatientName" in _by_path(rows)


def test_known_private_dictionary_names():
    ds = Dataset()
    block = ds.private_block(0x0019, "SIEMENS MR HEADER", create=True)
    block.add_new(0x0A, "US", 5)
    row = _by_path(header_rows(ds))["(0019,100A)"]
    assert (row.name, row.private_creator, row.value) == ("NumberOfImagesInMosaic", "SIEMENS MR HEADER", "5")


def test_orphan_private_and_unknown_public_tags():
    ds = Dataset()
    ds.add_new(0x00111010, "LO", "no creator")
    ds.add_new(0x0018FFF1, "LO", "not in the dictionary")
    rows = _by_path(header_rows(ds))
    assert rows["(0011,1010)"].private_creator == ""
    assert rows["(0011,1010)"].value == "no creator"
    assert (rows["(0018,FFF1)"].keyword, rows["(0018,FFF1)"].value) == ("", "not in the dictionary")


def _raw(ds: Dataset, tag: int, vr, value: bytes) -> None:
    """Put an element into ds as if read from a file, so that pydicom has not checked its value."""
    ds[tag] = RawDataElement(Tag(tag), vr, len(value), value, 0, vr is None, True)


def test_invalid_values_never_raise_and_show_raw_value():
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    _raw(ds, 0x00100010, "PN", b"Do\xff\xfe^Jane ")  # invalid UTF-8
    _raw(ds, 0x00200013, "IS", b"1x2 ")  # not an integer
    _raw(ds, 0x00180050, "DS", b"thick")  # not a number
    _raw(ds, 0x00280010, "US", b"\x01\x02\x03")  # odd length for 2-byte numbers
    _raw(ds, 0x00280011, "XX", b"ab")  # unknown VR
    _raw(ds, 0x00091001, None, b"SOME TEXT ")  # implicit VR, no private creator
    _raw(ds, 0x00091002, None, b"\x00\xff\x10\x80")  # implicit VR binary
    rows = _by_path(header_rows(ds))
    assert rows["PatientName"].value.startswith("Do") and rows["PatientName"].value.endswith("^Jane")
    assert rows["InstanceNumber"].value == "1x2"
    assert rows["SliceThickness"].value == "thick"
    assert rows["Rows"].value == "\\x01\\x02\\x03"
    assert rows["Columns"].value
    assert rows["(0009,1001)"].value == "SOME TEXT"
    assert rows["(0009,1002)"].value == "<4 bytes>"


def test_invalid_values_from_a_file(tmp_path):
    ds = _dataset()
    ds.InstanceNumber = 123
    data = _write(ds, tmp_path / "x.dcm").read_bytes()
    data = data.replace(b"Doe^Jane", b"D\xffe^Jane").replace(b"123 ", b"a\xffc ")
    read = pydicom.dcmread(BytesIO(data))
    rows = _by_path(header_rows(read))
    assert rows["PatientName"].value.endswith("e^Jane")
    assert rows["InstanceNumber"].value.startswith("a") and rows["InstanceNumber"].value.endswith("c")


def test_implicit_vr_file(tmp_path):
    path = _write(_dataset(ImplicitVRLittleEndian), tmp_path / "implicit.dcm")
    rows = _by_path(header_rows(pydicom.dcmread(path)))
    assert rows["PatientName"].value == "Doe^Jane"
    assert rows["(0009,1001)"].value == "acme value"
    # Implicit VR cannot say that an unknown private element is a sequence: it stays bytes.
    assert rows["(0009,1003)"].value.endswith(" bytes>")


# --- filters ------------------------------------------------------------------------------------

@pytest.mark.parametrize("text", ["0010,0010", "(0010,0010)", "00100010", " (0010, 0010) ", "0010,0010".lower()])
def test_parse_tag_forms(text):
    assert parse_tag(text) == Tag(0x00100010)


@pytest.mark.parametrize("text", ["", "0010", "0010,00100", "GGGG,EEEE", "PatientName", "0x0010,0x0010"])
def test_parse_tag_rejects(text):
    with pytest.raises(MedPrepError) as info:
        parse_tag(text)
    assert "GGGG,EEEE" in info.value.hint


def test_check_keyword():
    assert check_keyword("patientname") == "PatientName"
    with pytest.raises(MedPrepError) as info:
        check_keyword("PatientNme")
    assert "PatientName" in info.value.hint


def test_filter_by_tag_and_keyword():
    rows = header_rows(_dataset())
    by_tag = filter_rows(rows, tag="(0010,0010)")
    assert [row.path for row in by_tag] == ["PatientName"]
    by_keyword = filter_rows(rows, keyword="seriesinstanceuid")
    assert [row.path for row in by_keyword] == [
        "ReferencedSeriesSequence",  # (0008,1115) comes before (0020,000E)
        "ReferencedSeriesSequence[0]",
        "ReferencedSeriesSequence[0].SeriesInstanceUID",
        "ReferencedSeriesSequence[1]",
        "ReferencedSeriesSequence[1].SeriesInstanceUID",
        "SeriesInstanceUID",
    ]
    assert filter_rows(rows, keyword="Series") == []


def test_filter_keeps_a_matched_sequence_whole():
    rows = header_rows(_dataset())
    found = filter_rows(rows, keyword="ReferencedInstanceSequence")
    assert [row.path for row in found] == [
        "ReferencedSeriesSequence",
        "ReferencedSeriesSequence[0]",
        "ReferencedSeriesSequence[0].ReferencedInstanceSequence",
        "ReferencedSeriesSequence[0].ReferencedInstanceSequence[0]",
        "ReferencedSeriesSequence[0].ReferencedInstanceSequence[0].ReferencedSOPInstanceUID",
    ]


def test_filter_search_is_case_insensitive_over_tag_keyword_name_value():
    rows = header_rows(_dataset())
    assert [row.path for row in filter_rows(rows, search="DOE^")] == ["PatientName"]
    assert "PatientName" in [row.path for row in filter_rows(rows, search="patient's")]
    assert [row.path for row in filter_rows(rows, search="0008,0060")] == ["Modality"]
    assert "(0009,1001)" in [row.path for row in filter_rows(rows, search="ACME VALUE")]


def test_filter_private():
    rows = header_rows(_dataset())
    public = filter_rows(rows, private=False)
    assert public == [row for row in header_rows(_dataset(), include_private=False)]
    private = filter_rows(rows, private=True)
    assert {row.path for row in private} >= {"(0009,0010)", "(0009,1001)", "(0009,1003)[0].PatientID"}
    assert all(row.is_private or row.path.startswith("(0009,1003)") for row in private)
    assert filter_rows(rows, search="hidden-in-private", private=False) == []
    assert filter_rows(rows) == rows


def test_filter_bad_tag_raises():
    with pytest.raises(MedPrepError):
        filter_rows(header_rows(_dataset()), tag="0010-0010")


# --- the command --------------------------------------------------------------------------------

@pytest.fixture
def medprep(monkeypatch, capsys):
    """Run `medprep ...` through the real entry point, with only this command registered."""
    monkeypatch.setattr(cli, "COMMANDS", ["header_cmd"])

    def run(*argv):
        code = cli.main([str(a) for a in argv])
        out, err = capsys.readouterr()
        return code, out, err
    return run


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_cli_file_table(tmp_path, medprep):
    path = _write(_dataset(), tmp_path / "a.dcm")
    before = _digest(path)
    code, out, err = medprep("header", path)
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert lines[0] == f"# {path}"
    assert any(line.startswith("(0010,0010) PN PatientName") and line.endswith("Doe^Jane") for line in lines)
    assert any(line.startswith("(0020,000E) UI   SeriesInstanceUID") for line in lines)  # indented by depth
    assert "ACME" not in out and "hidden-in-private" not in out
    assert "PixelData" not in out  # read with stop_before_pixels
    assert _digest(path) == before


def test_cli_private_shows_creator(tmp_path, medprep):
    path = _write(_dataset(), tmp_path / "a.dcm")
    code, out, _ = medprep("header", path, "--private")
    assert code == 0
    assert any("[ACME 1.0]" in line and line.endswith("acme value") for line in out.splitlines())


def test_cli_json(tmp_path, medprep):
    path = _write(_dataset(), tmp_path / "a.dcm")
    code, out, _ = medprep("header", path, "--json", "--keyword", "patientname")
    assert code == 0
    assert json.loads(out) == [{"tag": "0010,0010", "keyword": "PatientName", "name": "Patient's Name",
                                "vr": "PN", "value": "Doe^Jane", "depth": 0, "is_private": False,
                                "private_creator": "", "path": "PatientName"}]


def test_cli_tag_and_search(tmp_path, medprep):
    path = _write(_dataset(), tmp_path / "a.dcm")
    code, out, _ = medprep("header", path, "--tag", "0008,0060")
    assert code == 0 and out.splitlines()[1:] == ["(0008,0060) CS Modality MR"]
    code, out, err = medprep("header", path, "--search", "no such text anywhere")
    assert code == 0 and out.splitlines()[1:] == [] and "no matching" in err


def test_cli_directory_uses_first_dicom_of_sorted_walk(tmp_path, medprep):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "0_notes.txt").write_text("not dicom\n")
    first = _write(_dataset(), tmp_path / "a" / "z_file")
    second = _write(_dataset(), tmp_path / "b" / "a_file.dcm")
    code, out, _ = medprep("header", tmp_path, "--keyword", "Modality")
    assert code == 0 and out.splitlines() == [f"# {first}", "(0008,0060) CS Modality MR"]
    code, out, err = medprep("header", tmp_path, "--keyword", "Modality", "--json")
    assert code == 0 and len(json.loads(out)) == 1 and str(first) in err
    code, out, _ = medprep("header", tmp_path, "--keyword", "Modality", "--all", "--json")
    assert [entry["file"] for entry in json.loads(out)] == [str(first), str(second)]


@pytest.mark.parametrize("make, message", [
    (lambda d: (d / "notes.txt").write_text("hello") and d / "notes.txt", "not a DICOM file"),
    (lambda d: d / "missing.dcm", "no such file or folder"),
    (lambda d: d, "no DICOM files found"),
])
def test_cli_bad_input_is_one_line(tmp_path, medprep, make, message):
    code, out, err = medprep("header", make(tmp_path))
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and message in err and "Traceback" not in err


@pytest.mark.parametrize("option, value, message", [
    ("--tag", "10,10", "invalid tag"),
    ("--keyword", "PatientNme", "did you mean PatientName"),
])
def test_cli_bad_filter_is_one_line(tmp_path, medprep, option, value, message):
    path = _write(_dataset(), tmp_path / "a.dcm")
    code, out, err = medprep("header", path, option, value)
    assert code == 1 and out == "" and err.count("\n") == 1 and message in err


@pytest.mark.conformance
def test_conformance_headers(medprep):
    root = require_conformance()
    for name in ["dcm_qa_enh/In/Philips/IM_0027_fMAP.dcm", "dcm_qa_ts/In/3.dcm",
                 "dcm_qa_nih/In/20180918Si/mr_0003/epi_pe_ap-00001.dcm"]:
        ds = pydicom.dcmread(root / name)
        rows = header_rows(ds)
        assert rows and len({row.path for row in rows}) == len(rows)
        assert any(row.path == "PixelData" and row.value.startswith("<pixel data") for row in rows)
    code, out, _ = medprep("header", root / "dcm_qa_nih/In/20180918Si", "--private", "--search", "csa image")
    assert code == 0 and "[SIEMENS CSA HEADER] CSA Image Header Info" in out
