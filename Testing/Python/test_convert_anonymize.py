"""`medprep convert --anonymize`: NIfTI and sidecars with no identity anywhere.

The planted-PHI tree (phi_planting.py) fills every Table E.1-1 attribute, private attributes,
nested sequences, free text and the input file and folder names with markers; every byte of
every output (uncompressed NIfTI headers and voxels, sidecars) and every output name is searched.
"""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import phi_planting as pp
import pytest

from MedPrepLib.cli.main import main
from MedPrepLib.convert import read_dicom

TEMPLATE = "%s_%d_%p_%i_%n_%t_%v_%e"


@pytest.fixture(scope="module")
def planted(tmp_path_factory) -> pp.Planted:
    return pp.write_planted_tree(tmp_path_factory.mktemp("planted"))


def _convert(planted: pp.Planted, out: Path, *extra: str) -> int:
    return main(["convert", str(planted.root), str(out), "--anonymize", "--key", pp.KEY.decode(),
                 "--name", TEMPLATE, "--quiet", *extra])


def test_no_identity_in_any_output_byte_or_name(planted, tmp_path, capsys):
    out = tmp_path / "nii"
    assert _convert(planted, out, "--no-gz") == 0
    written = sorted(out.glob("*.nii"))
    assert written, "nothing converted"
    assert pp.scan_for_needles(out, planted.needles) == []
    assert pp.original_uid_hits(out, planted.uids) == []
    # The markers would be found if they were there: the same run without --anonymize leaks them.
    leaky = tmp_path / "leaky"
    assert main(["convert", str(planted.root), str(leaky), "--name", TEMPLATE, "--quiet", "--no-gz"]) == 0
    assert pp.scan_for_needles(leaky, planted.needles)


def test_compressed_outputs_are_clean_too(planted, tmp_path):
    out = tmp_path / "gz"
    assert _convert(planted, out) == 0
    plain = tmp_path / "plain"
    plain.mkdir()
    for p in out.iterdir():
        data = gzip.decompress(p.read_bytes()) if p.name.endswith(".gz") else p.read_bytes()
        (plain / p.name.replace(".gz", "")).write_bytes(data)
    assert pp.scan_for_needles(plain, planted.needles) == []
    assert pp.original_uid_hits(plain, planted.uids) == []


def test_nifti_header_text_fields_and_sidecar_carry_no_identity(planted, tmp_path):
    out = tmp_path / "hdr"
    assert _convert(planted, out, "--no-gz") == 0
    for nii in out.glob("*.nii"):
        hdr = nib.load(str(nii)).header
        for field in ("descrip", "aux_file", "intent_name"):
            assert not bytes(hdr[field]).strip(b"\x00") or bytes(hdr[field]).startswith(b"MedPrep")
        assert not nib.load(str(nii)).header.extensions
        sidecar = json.loads(nii.with_suffix(".json").read_text())
        for key in ("PatientName", "PatientID", "PatientBirthDate", "InstitutionName", "StudyDate"):
            assert key not in sidecar
        assert sidecar["MedPrepProvenance"]["steps"][0]["params"]["anonymize"] is True


def test_voxels_and_affine_equal_plain_conversion(planted, tmp_path):
    out = tmp_path / "same"
    assert _convert(planted, out, "--no-gz", "--on-burned-in", "keep") == 0
    got = {}
    for p in out.glob("*.nii"):
        img = nib.load(str(p))
        got.setdefault((img.shape, np.round(img.affine, 3).tobytes()), []).append(img.get_fdata())
    originals = read_dicom(planted.root)
    assert len(originals) == sum(len(v) for v in got.values())
    for vol in originals:
        k = (vol.shape_xyz, np.round(vol.affine, 3).tobytes())
        assert k in got, f"no anonymized output with shape {vol.shape_xyz} and the original affine"
        data = vol.scaled().astype(np.float64).T
        assert any(np.array_equal(a, data) for a in got[k])


def test_burned_in_series_are_withheld_by_default_and_fatal_on_request(planted, tmp_path, capsys):
    out = tmp_path / "burn"
    assert _convert(planted, out, "--no-gz") == 0
    err = capsys.readouterr().err
    assert "pixels may show patient identity" in err
    assert _convert(planted, tmp_path / "fail", "--no-gz", "--on-burned-in", "fail") == 1
    assert "Traceback" not in capsys.readouterr().err


def test_folder_placeholder_is_refused(planted, tmp_path, capsys):
    rc = main(["convert", str(planted.root), str(tmp_path / "f"), "--anonymize", "--name", "%f_%s"])
    assert rc == 1
    assert "%f" in capsys.readouterr().err
    assert not (tmp_path / "f").exists()


def test_messages_name_no_input_path(planted, tmp_path, capsys):
    """Warnings and errors on stderr: input file and folder names carry markers too."""
    def needles_in(text: str):
        return [n for n in planted.needles if n.decode("utf-8", "replace") in text]

    capsys.readouterr()
    main(["convert", str(planted.root), str(tmp_path / "plain"), "--quiet"])
    plain = capsys.readouterr().err
    assert needles_in(plain), "without --anonymize the damaged file is named: this test can see paths"
    assert _convert(planted, tmp_path / "anon") == 0
    err = capsys.readouterr().err
    assert "<input>" in err and needles_in(err) == []
