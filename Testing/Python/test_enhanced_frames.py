"""Enhanced multi-frame MR written by `sample.write_enhanced_mr`: echoes and image kinds split into one
volume each, per-frame scaling, frame order, frames without position, and dropped frames reported.

Every volume is planted with known real-world values that the stored integers represent exactly
(even numbers, slopes 0.5/1/2, even intercepts), so the output is checked voxel for voxel.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Dict, Tuple

import nibabel as nib
import numpy as np
import pytest

import MedPrepSample as sample
from MedPrepLib.convert import ConvertOptions, convert, volume_from_series
from MedPrepLib.discovery import scan

SHAPE = (4, 6, 5)                   # (slices, rows, columns)
SPACING = (0.8, 0.9, 2.0)
ORIGIN = (5.0, -3.0, 7.0)
ROW, COL = (0.0, 1.0, 0.0), (0.0, 0.0, -1.0)   # sagittal: every axis differs from the identity
ECHO_TIMES = (4.0, 9.5)
VARYING = ((0.5, 0.0), (1.0, -10.0), (2.0, 10.0))
POSTFIX = {(1, "M"): "_e1", (2, "M"): "_e2", (1, "P"): "_e1_ph", (2, "P"): "_e2_ph"}


def planted(seed: int = 1) -> Dict[Tuple[int, str], np.ndarray]:
    rng = np.random.default_rng(seed)
    return {(e, k): rng.integers(0, 500, size=SHAPE).astype(np.float64) * 2 - (400 if k == "P" else 0)
            for e in (1, 2) for k in ("M", "P")}


def expected_affine() -> np.ndarray:
    lps = np.eye(4)
    lps[:3, 0] = np.array(ROW) * SPACING[0]
    lps[:3, 1] = np.array(COL) * SPACING[1]
    lps[:3, 2] = np.cross(ROW, COL) * SPACING[2]
    lps[:3, 3] = ORIGIN
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps


def write(path: Path, images, **kwargs) -> Path:
    options = dict(echo_times=ECHO_TIMES, spacing=SPACING, origin_lps=ORIGIN, row_dir=ROW, col_dir=COL)
    options.update(kwargs)
    return sample.write_enhanced_mr(path, images, **options)


def volumes_by_postfix(folder: Path):
    return {s.postfix: volume_from_series(s) for s in scan(folder).series}


@pytest.mark.parametrize("frame_order", ["dimension", "shuffled"])
@pytest.mark.parametrize("dimension_index", [True, False])
def test_echoes_and_kinds_become_one_volume_each(tmp_path, frame_order, dimension_index):
    images = planted()
    write(tmp_path / "in" / "fmap.dcm", images, frame_order=frame_order, dimension_index=dimension_index)
    vols = volumes_by_postfix(tmp_path / "in")
    assert sorted(vols) == sorted(POSTFIX.values())
    for key, postfix in POSTFIX.items():
        vol = vols[postfix]
        assert vol.array.shape == SHAPE
        assert np.array_equal(vol.scaled(np.float64), images[key]), postfix
        assert np.allclose(vol.affine, expected_affine(), atol=1e-6)
        assert not any("left out" in w for w in vol.warnings), vol.warnings


def test_scaling_that_varies_from_frame_to_frame_gives_float32_real_values(tmp_path):
    images = planted(2)
    write(tmp_path / "in" / "fmap.dcm", images, frame_order="shuffled", scaling=VARYING)
    report = convert(tmp_path / "in", tmp_path / "out", ConvertOptions(name_template="%s", gz=False))
    written = {o.nifti.name: o.nifti for o in report.written}
    assert sorted(written) == sorted(f"1{p}.nii" for p in POSTFIX.values())
    for key, postfix in POSTFIX.items():
        img = nib.load(str(written[f"1{postfix}.nii"]))
        assert img.get_data_dtype() == np.float32
        # NIfTI (x, y, z) is our (z, y, x) array transposed; the affine is the DICOM geometry.
        assert np.array_equal(img.get_fdata().transpose(2, 1, 0), images[key]), postfix
        assert np.allclose(img.affine, expected_affine(), atol=1e-5)
        assert img.header["sform_code"] == 1


def test_uniform_scaling_keeps_stored_integers(tmp_path):
    images = planted(3)
    write(tmp_path / "in" / "fmap.dcm", images, scaling=((2.0, -400.0),))
    for key, postfix in POSTFIX.items():
        vol = volumes_by_postfix(tmp_path / "in")[postfix]
        assert vol.array.dtype == np.int16 and (vol.slope, vol.inter) == (2.0, -400.0)
        assert np.array_equal(vol.scaled(np.float64), images[key])


def test_classic_and_enhanced_copies_of_one_acquisition_give_the_same_volumes(tmp_path):
    images = planted(4)
    write(tmp_path / "enh" / "fmap.dcm", images, frame_order="shuffled", scaling=((2.0, -400.0),))
    uid = "1.2.826.0.1.3680043.8.498.1"
    for (echo, kind), values in images.items():
        sample.write_series(tmp_path / "cl" / f"{echo}{kind}", values, modality="MR", spacing=SPACING,
                            origin_lps=ORIGIN, row_dir=ROW, col_dir=COL, slope=2.0, intercept=-400.0,
                            series_uid=uid, extra={"EchoNumbers": echo, "EchoTime": ECHO_TIMES[echo - 1],
                                                   "ImageType": ["ORIGINAL", "PRIMARY", kind, "NONE"]})
    enhanced, classic = volumes_by_postfix(tmp_path / "enh"), volumes_by_postfix(tmp_path / "cl")
    assert sorted(enhanced) == sorted(classic) == sorted(POSTFIX.values())
    for postfix in POSTFIX.values():
        assert np.array_equal(enhanced[postfix].scaled(np.float64), classic[postfix].scaled(np.float64))
        assert np.allclose(enhanced[postfix].affine, classic[postfix].affine, atol=1e-6)
        assert enhanced[postfix].meta["EchoTime"] == classic[postfix].meta["EchoTime"]


def test_one_later_echo_phase_object_keeps_its_postfix(tmp_path):
    """A phase difference stored apart from its magnitudes (its own series) is still `_ph`."""
    images = planted(5)
    write(tmp_path / "in" / "phase.dcm", {(1, "P"): images[(1, "P")]})
    series = scan(tmp_path / "in").series
    assert [s.postfix for s in series] == ["_ph"]


def test_frames_without_position_are_written_with_unknown_geometry(tmp_path):
    """No Plane Position/Orientation: frames keep their stored order, the NIfTI says the geometry is
    unknown (qform/sform code 0, as dcm2niix) and both warnings and sidecar say so."""
    images = {(1, "M"): planted(6)[(1, "M")]}
    write(tmp_path / "in" / "t1.dcm", images, positions=False)
    messages = []
    report = convert(tmp_path / "in", tmp_path / "out", ConvertOptions(name_template="%s", gz=False),
                     warn=messages.append)
    out = report.written[0]
    img = nib.load(str(out.nifti))
    assert img.header["sform_code"] == 0 and img.header["qform_code"] == 0
    assert img.header.get_zooms() == pytest.approx((SPACING[0], SPACING[1], SPACING[2]))
    assert np.array_equal(img.get_fdata().transpose(2, 1, 0), images[(1, "M")])
    sidecar = json.loads(out.sidecar.read_text())
    assert sidecar["PatientGeometryUnknown"] is True
    assert any("geometry unknown" in w for w in sidecar["MedPrepProvenance"]["warnings"])
    assert any("geometry unknown" in m for m in messages)


def test_duplicate_frames_are_counted_once_per_series_in_sidecar_and_on_stderr(tmp_path):
    volume = planted(7)[(1, "M")]
    paths = sample.write_series(tmp_path / "in", volume, modality="MR", spacing=SPACING)
    for p in paths[:3]:
        shutil.copy(p, p.with_name("copy_" + p.name))
    messages = []
    report = convert(tmp_path / "in", tmp_path / "out", ConvertOptions(name_template="%s", gz=False),
                     warn=messages.append)
    (out,) = report.written
    assert out.shape == [SHAPE[2], SHAPE[1], SHAPE[0]]
    dup = [w for w in out.warnings if "duplicate" in w]
    assert len(dup) == 1 and dup[0].startswith("3 frame(s) at duplicate positions left out"), out.warnings
    assert json.loads(out.sidecar.read_text())["MedPrepProvenance"]["warnings"].count(dup[0]) == 1
    assert sum("duplicate" in m for m in messages) == 1


def test_siemens_xa_echo_number_comes_from_the_ice_dimensions(tmp_path):
    """XA enhanced objects carry no EchoNumbers; the per-frame ICE dimensions "X_<echo>_..." (private
    creator SIEMENS MR SDI 02) do. A phase difference stored alone as echo 2 is then `_e2_ph`."""
    import pydicom

    path = write(tmp_path / "in" / "phase.dcm", {(2, "P"): planted(8)[(2, "P")]})
    assert [s.postfix for s in scan(tmp_path / "in").series] == ["_ph"]  # no echo number: nothing to say
    ds = pydicom.dcmread(str(path))
    for k, fg in enumerate(ds.PerFrameFunctionalGroupsSequence):
        ice = pydicom.Dataset()
        ice.private_block(0x0021, "SIEMENS MR SDI 02", create=True).add_new(0x06, "LO", f"X_2_1_1_1_1_{k + 1}_1_1")
        fg.private_block(0x0021, "SIEMENS MR SDI 02", create=True).add_new(0xFE, "SQ", [ice])
    ds.save_as(str(path))
    (series,) = scan(tmp_path / "in").series
    assert series.postfix == "_e2_ph"
    assert np.array_equal(volume_from_series(series).scaled(np.float64), planted(8)[(2, "P")])
