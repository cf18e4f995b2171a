"""De-identification of a planted-PHI tree: no leak anywhere, consistent UIDs, options honoured."""
from __future__ import annotations

import datetime
import hashlib
import io
import itertools
import json
from pathlib import Path
from typing import Dict, Iterator, List

import pydicom
import pytest
from pydicom.dataset import Dataset

import phi_planting as pp
from MedPrepLib.anonymize import AnonymizeOptions, Anonymizer, anonymize_tree
from MedPrepLib.anonymize.dates import shift_date, shift_datetime
from MedPrepLib.anonymize.keys import Keyring
from MedPrepLib.cli.main import main
from MedPrepLib.errors import MedPrepError


@pytest.fixture(scope="module")
def planted(tmp_path_factory) -> pp.Planted:
    return pp.write_planted_tree(tmp_path_factory.mktemp("planted"))


def run(planted: pp.Planted, tmp: Path, name: str, key: bytes = pp.KEY, jobs: int = 1, **options):
    anonymizer = Anonymizer(key, AnonymizeOptions(**options))
    out = tmp / name
    report = anonymize_tree(planted.root, out, anonymizer, jobs=jobs)
    return out, report, anonymizer


@pytest.fixture(scope="module")
def default_run(planted, tmp_path_factory):
    return run(planted, tmp_path_factory.mktemp("default"), "out")


def outputs(out: Path) -> Dict[str, Dataset]:
    """Every output data set by its (new) SOP instance UID."""
    return {str(ds.SOPInstanceUID): ds for ds in (pydicom.dcmread(p) for p in sorted(out.rglob("*.dcm")))}


def walk(ds: Dataset) -> Iterator:
    for elem in ds:
        yield elem
        if elem.VR == "SQ":
            for item in elem.value:
                yield from walk(item)


def by_original(out: Path, anonymizer: Anonymizer) -> Dict[str, Dataset]:
    new = outputs(out)
    return {orig: new[n] for orig, n in anonymizer.uids.items() if n in new}


# -- the leak tests -------------------------------------------------------------------------------

def test_no_planted_value_survives_anywhere(planted, default_run):
    out, report, _ = default_run
    assert report.written == 15
    assert pp.scan_for_needles(out, planted.needles) == []
    assert pp.original_uid_hits(out, planted.uids) == []


def test_the_scanners_do_find_planted_values(planted):
    # The leak tests above are only worth something if the scanners see what is planted.
    assert {n for _, n in pp.scan_for_needles(planted.root, planted.needles)} >= {b"phimark", b"zyxwvdoe"}
    assert pp.original_uid_hits(planted.root, planted.uids[:5])


def test_every_table_attribute_was_planted(planted):
    ds = pydicom.dcmread(next(planted.root.rglob("IM_*000.dcm")))
    missing = [f"{t:08X}" for t, _ in pp.table_tags() if t >> 16 not in (0, 2) and t not in ds]
    assert missing == []


def test_outputs_carry_no_private_attributes_and_a_zero_preamble(default_run):
    out, _, _ = default_run
    for path in out.rglob("*.dcm"):
        assert path.read_bytes()[:128] == b"\0" * 128
        ds = pydicom.dcmread(path)
        assert not any(e.tag.is_private for e in walk(ds))
        assert "SourceApplicationEntityTitle" not in ds.file_meta
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        assert ds.PatientIdentityRemoved == "YES"
        assert [c.CodeValue for c in ds.DeidentificationMethodCodeSequence] == ["113100"]
        assert ds.LongitudinalTemporalInformationModified == "REMOVED"
        assert ds.PatientName == ds.PatientID and str(ds.PatientID).startswith("ANON")


def test_output_names_are_built_from_new_identifiers(default_run):
    out, _, _ = default_run
    for path in out.rglob("*.dcm"):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        assert path.relative_to(out).parts == (ds.PatientID, ds.StudyInstanceUID, ds.SeriesInstanceUID,
                                               ds.SOPInstanceUID + ".dcm")


def test_pixels_geometry_and_scaling_untouched(planted, default_run):
    out, _, anonymizer = default_run
    mapped = by_original(out, anonymizer)
    keywords = ("Rows", "Columns", "BitsAllocated", "BitsStored", "PixelRepresentation", "ImagePositionPatient",
                "ImageOrientationPatient", "PixelSpacing", "SliceThickness", "RescaleSlope", "RescaleIntercept",
                "ImagerPixelSpacing", "NumberOfFrames", "SharedFunctionalGroupsSequence", "InstanceNumber")
    assert set(mapped) == {sop for sop, f in planted.files.items() if f["modality"] != "US"}
    for sop, new in mapped.items():
        orig = pydicom.dcmread(planted.files[sop]["path"])
        assert new.PixelData == orig.PixelData
        for kw in keywords:
            assert new.get(kw) == orig.get(kw), kw
        if "PerFrameFunctionalGroupsSequence" in orig:
            positions = [i.PlanePositionSequence[0].ImagePositionPatient for i in orig.PerFrameFunctionalGroupsSequence]
            assert [i.PlanePositionSequence[0].ImagePositionPatient
                    for i in new.PerFrameFunctionalGroupsSequence] == positions


def test_uids_are_consistent_across_files_and_references(planted, default_run):
    out, _, anonymizer = default_run
    mapped = by_original(out, anonymizer)
    studies, frames = {}, {}
    for sop, new in mapped.items():
        facts = planted.files[sop]
        assert str(new.SOPInstanceUID).startswith("2.25.") and len(new.SOPInstanceUID) <= 64
        if facts["first_sop"] != sop:
            assert new.ReferencedImageSequence[0].ReferencedSOPInstanceUID == mapped[facts["first_sop"]].SOPInstanceUID
        orig = pydicom.dcmread(facts["path"], stop_before_pixels=True)
        studies.setdefault(orig.StudyInstanceUID, set()).add(new.StudyInstanceUID)
        frames.setdefault(orig.FrameOfReferenceUID, set()).add(new.FrameOfReferenceUID)
        # The same planted UID in a nested item of every file maps to the same new UID everywhere.
        assert new.FlowIdentifierSequence[0] == Dataset()  # a D sequence keeps no original content
    assert all(len(v) == 1 for v in studies.values()) and len({next(iter(v)) for v in studies.values()}) == 3
    assert all(len(v) == 1 for v in frames.values())


def test_nested_uid_references_map_like_top_level_ones(planted, tmp_path):
    # One file's SOP UID planted deep inside another file must map to that file's new SOP UID.
    first = next(iter(planted.files))
    other = pydicom.dcmread(planted.files[first]["path"])
    inner = Dataset()
    inner.ReferencedSOPInstanceUID = first
    item = Dataset()
    item.SourceImageSequence = pydicom.Sequence([inner])
    other.ReferencedImageSequence = pydicom.Sequence([item])
    anonymizer = Anonymizer(pp.KEY)
    anonymizer.anonymize(other)
    assert other.ReferencedImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID == \
        anonymizer.uid(first) == other.SOPInstanceUID


def test_burned_in_series_are_withheld_kept_or_fatal(planted, default_run, tmp_path):
    _, report, _ = default_run
    assert [(w.series_number, w.modality) for w in report.withheld] == [(9, "US")]
    out, report, _ = run(planted, tmp_path, "keep", on_burned_in="keep")
    assert report.written == 16 and not report.withheld
    assert pp.scan_for_needles(out, planted.needles) == []
    with pytest.raises(MedPrepError, match="burned|identity"):
        run(planted, tmp_path, "fail", on_burned_in="fail")
    assert not (tmp_path / "fail").exists()


def test_fail_policy_in_workers_leaves_nothing_behind(planted, tmp_path):
    out = tmp_path / "existing"
    out.mkdir()
    with pytest.raises(MedPrepError, match="burned|identity"):
        run(planted, tmp_path, "existing", jobs=2, on_burned_in="fail")
    assert list(out.iterdir()) == []  # the folder was there before: it stays, empty


def test_no_staging_left_and_a_failing_file_never_reaches_a_final_name(planted, tmp_path, monkeypatch):
    out, report, _ = run(planted, tmp_path, "clean", jobs=2)
    assert report.written == 15
    assert not [p for p in out.rglob("*") if p.name.startswith(".")]
    # A write that breaks half-way through (disk full, say) is reported; nothing of it is published.
    import MedPrepLib.anonymize.tree as tree

    def broken(fh, ds, *args, **kwargs):
        fh.write(b"half a header")
        raise ValueError("a value pydicom cannot encode")

    monkeypatch.setattr(tree.pydicom, "dcmwrite", broken)
    monkeypatch.setattr(tree, "write_header", broken)
    out, report, _ = run(planted, tmp_path, "broken")
    assert report.written == 0 and len(report.unreadable) == 16
    assert [p for p in out.rglob("*")] == []


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_full_disk_stops_the_run_with_one_clear_error(planted, tmp_path, monkeypatch, jobs):
    import errno

    import MedPrepLib.anonymize.tree as tree

    def full(fh, ds, *args, **kwargs):
        fh.write(b"half a header")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(tree.pydicom, "dcmwrite", full)
    monkeypatch.setattr(tree, "write_header", full)
    with pytest.raises(MedPrepError, match="cannot write the de-identified copy: No space left"):
        run(planted, tmp_path, "full", jobs=jobs)
    assert not (tmp_path / "full").exists()


def test_an_interrupted_parallel_run_leaves_nothing(planted, tmp_path):
    def interrupt(done: int, total: int) -> None:
        if done < total:
            raise KeyboardInterrupt

    out = tmp_path / "interrupted"
    with pytest.raises(KeyboardInterrupt):
        anonymize_tree(planted.root, out, Anonymizer(pp.KEY), progress=interrupt, jobs=2)
    assert not out.exists()


def test_files_sharing_a_sop_instance_uid_both_arrive(planted, tmp_path):
    src = tmp_path / "twins"
    src.mkdir()
    first = sorted(p for p in planted.root.rglob("*") if p.is_file() and pydicom.misc.is_dicom(p)
                   and pydicom.dcmread(p, stop_before_pixels=True, force=True).get("Modality") == "CT")[0]
    ds = pydicom.dcmread(first)
    ds.save_as(src / "a.dcm")
    ds.InstanceNumber = 99  # another image, mislabelled with the same SOP Instance UID
    ds.save_as(src / "b.dcm")
    out = tmp_path / "twins-out"
    report = anonymize_tree(src, out, Anonymizer(pp.KEY))
    names = sorted(p.name for p in out.rglob("*.dcm"))
    assert report.written == 2 and len(names) == 2 and names[1] == names[0].replace(".dcm", "_2.dcm")
    assert sorted(int(pydicom.dcmread(p).InstanceNumber) for p in out.rglob("*.dcm"))[1] == 99


def test_non_dicom_and_broken_files_are_counted_not_copied(default_run):
    _, report, _ = default_run
    assert report.not_dicom == 1
    assert sum(report.not_images.values()) + len(report.unreadable) == 1


def test_same_key_gives_byte_identical_output(planted, default_run, tmp_path):
    out, _, first = default_run
    again, _, second = run(planted, tmp_path, "again", jobs=2)  # also: workers change nothing
    assert second.uids == first.uids and second.patients == first.patients

    def digests(root: Path) -> Dict[str, str]:
        return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in root.rglob("*") if p.is_file()}

    assert digests(again) == digests(out)
    other, _, _ = run(planted, tmp_path, "other", key=b"another key")
    assert not set(digests(other)) & set(digests(out))


def test_without_a_key_each_run_differs(planted, tmp_path):
    a, _, _ = run(planted, tmp_path, "a", key=None)
    b, _, _ = run(planted, tmp_path, "b", key=None)
    assert {p.name for p in a.rglob("*.dcm")}.isdisjoint({p.name for p in b.rglob("*.dcm")})


def test_input_is_never_modified(planted, tmp_path):
    before = {p: p.read_bytes() for p in planted.root.rglob("*") if p.is_file()}
    run(planted, tmp_path, "x", shift_dates=True, keep_private=True, clean_descriptors=True)
    assert {p: p.read_bytes() for p in planted.root.rglob("*") if p.is_file()} == before


# -- every option combination, attribute by attribute ---------------------------------------------

FLAGS = ("retain_patient_characteristics", "retain_device_identity", "retain_institution_identity",
         "clean_descriptors", "keep_private", "keep_uids")


def option_sets() -> Iterator[Dict[str, bool]]:
    """Every combination the CLI offers: no dates, shifted or full dates, times every subset of the rest."""
    for dates in ({}, {"shift_dates": True}, {"keep_dates": True}):
        for chosen in itertools.product((False, True), repeat=len(FLAGS)):
            yield {**dates, **{f: True for f, on in zip(FLAGS, chosen) if on}}


def _label(options: Dict[str, bool]) -> str:
    return "+".join(sorted(options)) or "basic"


def test_every_option_combination_keeps_only_what_its_columns_keep(planted):
    """A planted value may survive only where a column of the options in force says K (keep).

    Every Table E.1-1 attribute carries its own marker (free text, AE titles, binary timestamps,
    sequences, numbers), so a value that an option marks C (clean, or for dates: modify) but that
    cannot be modified shows up here under the attribute's name. All 192 combinations run in
    process on one planted file reduced to what they concern: the marked attributes that some option
    column lists, the patient's identity and the private blocks (the other attributes get their
    Basic Profile action under any option: the tree runs above and below check them).
    """
    listed = {v for rows in pp.option_columns().values() for v, _, _ in rows}
    ds = pydicom.dcmread(next(f["path"] for f in planted.files.values() if f["modality"] == "PT"))
    identity = {0x00080016, 0x00080018, 0x00080050, 0x00100010, 0x00100020, 0x00100030}
    for elem in list(ds):
        if not (elem.tag.is_private or elem.tag in identity or (elem.tag in planted.markers and elem.tag in listed)):
            del ds[elem.tag]
    raw = io.BytesIO()
    pydicom.dcmwrite(raw, ds)
    found = {}
    for options in option_sets():
        ds = pydicom.dcmread(io.BytesIO(raw.getvalue()))
        Anonymizer(pp.KEY, AnonymizeOptions(**options)).anonymize(ds)
        out = io.BytesIO()
        pydicom.dcmwrite(out, ds)
        leaks = pp.leaks(out.getvalue(), planted, pp.kept_by(options))
        if leaks:
            found[_label(options)] = leaks
    assert found == {}


def test_the_attribute_check_sees_kept_and_leaked_values(planted):
    # The check above is only worth something if it sees a planted value and honours a K.
    raw = next(iter(planted.files.values()))["path"].read_bytes()
    assert set(pp.leaks(raw, planted, pp.kept_by({}))) >= {"00102110 Allergies", "00340007 FrameOriginTimestamp",
                                                           "00081030 StudyDescription"}
    assert "00080080 InstitutionName" not in pp.leaks(raw, planted, pp.kept_by({"retain_institution_identity": True}))
    assert len(planted.markers) > 400


@pytest.mark.parametrize("flags", [
    ["--shift-dates", "--retain-patient-characteristics", "--clean-descriptors", "--keep-private"],
    ["--keep-dates", "--retain-device-identity", "--retain-institution-identity", "--keep-uids"],
    ["--shift-dates", "--retain-patient-characteristics", "--retain-device-identity",
     "--retain-institution-identity", "--clean-descriptors", "--keep-private", "--keep-uids"],
])
def test_option_combinations_through_the_cli(planted, tmp_path, flags):
    out = tmp_path / "o"
    assert main(["anonymize", str(planted.root), str(out), "--key", "k", *flags]) == 0
    options = {f[2:].replace("-", "_"): True for f in flags}
    kept = pp.kept_by(options)
    files = sorted(p for p in out.rglob("*") if p.is_file())
    assert len(files) == 15
    assert {str(p): pp.leaks(p.read_bytes(), planted, kept) for p in files} == {str(p): [] for p in files}
    assert pp.scan_for_needles(out, pp.forbidden(planted)) == []


# -- options --------------------------------------------------------------------------------------

def _day(value: str) -> datetime.date:
    return datetime.datetime.strptime(value, "%Y%m%d").date()


def test_shift_dates_keeps_intervals_and_times(planted, tmp_path):
    out, _, anonymizer = run(planted, tmp_path, "shift", shift_dates=True)
    assert pp.scan_for_needles(out, [s[1].encode() for s in pp.STUDIES]) == []
    dates: Dict[str, set] = {}
    for sop, new in by_original(out, anonymizer).items():
        facts = planted.files[sop]
        dates.setdefault(facts["patient"], set()).add((facts["study_date"], new.StudyDate))
        assert new.StudyTime == "081500" and new.AcquisitionTime == "082512.5"
        assert new.LongitudinalTemporalInformationModified == "MODIFIED"
        assert "113107" in [c.CodeValue for c in new.DeidentificationMethodCodeSequence]
        offset = (_day(new.StudyDate) - _day(facts["study_date"])).days
        assert -3650 <= offset < 0
        if facts["modality"] == "PT":
            rp = new.RadiopharmaceuticalInformationSequence[0]
            assert rp.RadiopharmaceuticalStartTime == "074500"
            assert (_day(rp.RadiopharmaceuticalStartDateTime[:8]) - _day(facts["study_date"])).days == offset
            assert rp.RadiopharmaceuticalStartDateTime[8:] == "074500"
        if facts["modality"] == "MRE":
            fc = new.PerFrameFunctionalGroupsSequence[1].FrameContentSequence[0]
            assert fc.FrameAcquisitionDateTime == new.StudyDate + "083001"
    pairs_a = sorted(dates["A"])
    assert len(pairs_a) == 2
    (o1, n1), (o2, n2) = pairs_a
    assert (_day(o2) - _day(o1)).days == (_day(n2) - _day(n1)).days == 401
    offset_a = (_day(n1) - _day(o1)).days
    (ob, nb), = dates["B"]
    assert (_day(nb) - _day(ob)).days != offset_a  # one offset per patient, not one per run


def test_keep_dates_and_patient_characteristics(planted, tmp_path):
    out, _, anonymizer = run(planted, tmp_path, "keep", keep_dates=True, retain_patient_characteristics=True)
    for sop, new in by_original(out, anonymizer).items():
        assert new.StudyDate == planted.files[sop]["study_date"]
        assert (new.PatientSex, new.PatientAge, new.PatientWeight, new.PatientSize) == ("F", "041Y", 71.5, 1.68)
        assert new.LongitudinalTemporalInformationModified == "UNMODIFIED"
    _, _, default = run(planted, tmp_path, "default")
    new = pydicom.dcmread(next((tmp_path / "default").rglob("*.dcm")))
    assert "PatientWeight" not in new and "PatientAge" not in new and new.PatientSex == ""
    with pytest.raises(MedPrepError):
        AnonymizeOptions(shift_dates=True, keep_dates=True)


def test_clean_never_keeps_what_cannot_be_cleaned(planted, tmp_path):
    """Free text marked C is removed as in the Basic Profile; sequences marked C are cleaned item by item;
    binary timestamps marked C by --shift-dates get the Basic Profile's dummy or go."""
    out, _, _ = run(planted, tmp_path, "clean", clean_descriptors=True, retain_patient_characteristics=True,
                    shift_dates=True)
    for path in out.rglob("*.dcm"):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        for keyword in ("SeriesDescription", "StudyDescription", "ImageComments", "Allergies", "PatientState",
                        "SpecialNeeds", "PreMedication", "CertifiedTimestamp"):
            assert keyword not in ds, keyword
        assert 0x00100042 not in ds  # SexParametersForClinicalUseCategoryComment
        assert ds.FrameOriginTimestamp == b"\0" * 8  # D: a dummy, never the original bytes
        item = ds.AdmittingDiagnosesCodeSequence[0]
        assert "OperatorsName" not in item and str(item.ReferencedSOPInstanceUID).startswith("2.25.")
        assert "PHIMARK" not in str(item)
        assert (ds.PatientSex, ds.PatientAge) == ("F", "041Y")  # K: kept as they are


def test_keep_private_keeps_only_the_safelist(planted, tmp_path):
    out, _, _ = run(planted, tmp_path, "private", keep_private=True)
    for path in out.rglob("*.dcm"):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        private = {e.tag: e.value for e in ds if e.tag.is_private}
        assert private == {0x00190010: "SIEMENS MR HEADER", 0x0019100C: "1000"}
    assert pp.scan_for_needles(out, planted.needles) == []


def test_keep_uids_retains_them(planted, tmp_path):
    out, _, _ = run(planted, tmp_path, "uids", keep_uids=True)
    found = {u for _, u in pp.original_uid_hits(out, planted.uids)}
    assert {s for s, f in planted.files.items() if f["modality"] != "US"} <= found


def test_device_and_institution_options(planted, tmp_path):
    out, _, _ = run(planted, tmp_path, "inst", retain_institution_identity=True, retain_device_identity=True)
    ds = pydicom.dcmread(next(out.rglob("*.dcm")), stop_before_pixels=True)
    assert ds.InstitutionName == "PHIMARKINSTITUTION General Hospital"
    assert [c.CodeValue for c in ds.DeidentificationMethodCodeSequence] == ["113100", "113109", "113112"]


# -- the in-memory API the converter uses ---------------------------------------------------------

def test_header_only_dataset_gets_the_same_mapping_as_the_tree(planted, default_run):
    out, _, _ = default_run
    sop, facts = next((s, f) for s, f in planted.files.items() if f["modality"] == "CT")
    header = pydicom.dcmread(facts["path"], stop_before_pixels=True)
    del header.file_meta
    Anonymizer(pp.KEY).anonymize(header)
    written = outputs(out)[header.SOPInstanceUID]
    for kw in ("PatientID", "PatientName", "StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID"):
        assert header.get(kw) == written.get(kw)
    assert not any(e.tag.is_private for e in walk(header))


# -- the command line ----------------------------------------------------------------------------

def test_cli_writes_mapping_and_warns(planted, tmp_path, capsys):
    mapping = tmp_path / "map.json"
    key_file = tmp_path / "key"
    key_file.write_text("secret\n")
    assert main(["anonymize", str(planted.root), str(tmp_path / "o"), "--key-file", str(key_file),
                 "--shift-dates", "--mapping", str(mapping)]) == 0
    err = capsys.readouterr().err
    assert "series 9 (US" in err and "identifies" in err
    assert "PHIMARK" not in err  # no input path either: those are named only with --show-paths
    table = json.loads(mapping.read_text())
    assert {p["PatientID"] for p in table["patients"]} == {"PID-PHIMARK-A", "PID-PHIMARK-B"}
    again = tmp_path / "o2"
    assert main(["anonymize", str(planted.root), str(again), "--key", "secret", "--shift-dates"]) == 0
    assert sorted(p.relative_to(again) for p in again.rglob("*.dcm")) == \
        sorted(p.relative_to(tmp_path / "o") for p in (tmp_path / "o").rglob("*.dcm"))


@pytest.mark.parametrize("umask", [0o022, 0o000])
def test_mapping_is_private_whatever_the_umask(planted, tmp_path, monkeypatch, umask):
    """The mapping re-identifies patients: 0600, also while written, and never a copy elsewhere."""
    import os
    import stat
    import types

    import MedPrepLib.atomic as atomic

    writing = []

    def dump(obj, fh, **kwargs):  # where and with which mode the mapping is while being written
        writing.append((Path(fh.name).parent, stat.S_IMODE(os.fstat(fh.fileno()).st_mode)))
        json.dump(obj, fh, **kwargs)

    monkeypatch.setattr(atomic, "json", types.SimpleNamespace(dump=dump))
    mapping = tmp_path / "keys" / "map.json"
    mapping.parent.mkdir()
    mapping.write_text("{}")
    mapping.chmod(0o644)  # an older, readable mapping is replaced by a private one
    previous = os.umask(umask)
    try:
        assert main(["anonymize", str(planted.root), str(tmp_path / "o"), "--key", "k", "--mapping",
                     str(mapping)]) == 0
    finally:
        os.umask(previous)
    assert stat.S_IMODE(mapping.stat().st_mode) == 0o600
    assert writing == [(mapping.parent, 0o600)]
    assert [p.name for p in mapping.parent.iterdir()] == ["map.json"]
    assert not [p for p in (tmp_path / "o").rglob("*") if p.suffix == ".json"]
    assert json.loads(mapping.read_text())["patients"]


@pytest.mark.parametrize("argv, message", [
    (["--key", "k"], "input not found"),
    (["--key-file", "/nonexistent/key"], "cannot read key file"),
])
def test_cli_errors_are_one_line(tmp_path, capsys, argv, message):
    in_dir = tmp_path / "missing" if message == "input not found" else tmp_path
    assert main(["anonymize", str(in_dir), str(tmp_path.parent / "out-x"), *argv]) == 1
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_cli_refuses_output_inside_input(planted, capsys):
    assert main(["anonymize", str(planted.root), str(planted.root / "anon")]) == 1
    assert "inside the input" in capsys.readouterr().err


# -- building blocks ------------------------------------------------------------------------------

def test_date_shifting():
    assert shift_date("20240301", -1) == "20240229"
    assert shift_date("2024-03-01", -1) is None
    assert shift_datetime("20240101120000.5+0100", -365) == "20230101120000.5+0100"
    assert shift_datetime("2024", -1) is None


def test_keyring_is_deterministic_and_keyed():
    a, b = Keyring(b"k1"), Keyring(b"k2")
    assert a.uid("1.2.3") == Keyring(b"k1").uid("1.2.3") != b.uid("1.2.3")
    assert len(a.uid("1.2.3")) <= 64 and a.uid("1.2.3").startswith("2.25.")
    assert a.day_offset("p") == Keyring(b"k1").day_offset("p") < 0
    offsets: List[int] = [a.day_offset(str(i)) for i in range(50)]
    assert len(set(offsets)) > 40


def test_uid_attribute_written_with_another_vr_is_still_remapped():
    """(300A,0054) is a UID attribute newer than some dictionaries: a writer may store it as LO."""
    anonymizer = Anonymizer(pp.KEY, AnonymizeOptions())
    ds = Dataset()
    ds.PatientName = "Qqjohn^Zyxwvdoe"
    ds.add_new(0x300A0054, "LO", "1.2.826.0.1.3680043.10.999.77")
    anonymizer.anonymize(ds)
    # Table E.1-1 says U (replace by a consistent UID): kept, and replaced by the keyed UID of the
    # original, so that references to it still agree.
    assert 0x300A0054 in ds
    assert ds[0x300A0054].value == anonymizer.uid("1.2.826.0.1.3680043.10.999.77")
    assert ds[0x300A0054].value.startswith("2.25.")


def test_cli_names_unreadable_input_files_only_when_asked(planted, tmp_path, capsys):
    """Hospital exports name folders after patients: a file that cannot be read is counted on stderr,
    and named only with --show-paths."""
    import shutil

    tree = tmp_path / "in"
    shutil.copytree(planted.root, tree)
    broken = tree / "DOE^PHIMARK-FOLDER" / "IM0001"
    broken.parent.mkdir()
    good = next(p for p in sorted(tree.rglob("*")) if p.is_file() and p.read_bytes()[128:132] == b"DICM")
    broken.write_bytes(good.read_bytes()[:400])  # a header cut short
    assert main(["anonymize", str(tree), str(tmp_path / "o"), "--key", "k"]) == 0
    err = capsys.readouterr().err
    assert "1 file(s) not written: unreadable" in err and "--show-paths" in err
    assert "PHIMARK" not in err
    assert main(["anonymize", str(tree), str(tmp_path / "o2"), "--key", "k", "--show-paths"]) == 0
    assert "DOE^PHIMARK-FOLDER" in capsys.readouterr().err


@pytest.mark.parametrize("option", ["shift_dates", "clean_descriptors"])
def test_text_cleaning_options_work_on_headers_without_every_identity_attribute(option):
    """Found by the Slicer panel's preview on the demo CT, which has no OtherPatientIDs."""
    ds = Dataset()
    ds.PatientName = "Doe^Jane"
    ds.PatientID = "MRN-12345"
    ds.StudyDescription = "CT for Doe"
    ds.StudyDate = "20240131"
    Anonymizer(b"key", AnonymizeOptions(**{option: True})).anonymize(ds)
    assert "Doe" not in str(ds.get("PatientName", "")) and ds.PatientIdentityRemoved == "YES"
    assert "Doe" not in str(ds.get("StudyDescription", ""))
