"""Layouts the conformance data has one example of, or none: UIH grids with known tiles, RGB colour
images (PlanarConfiguration 0 and 1, YBR), classic multi-phase series with per-phase slopes."""
from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from MedPrepLib.convert import ConvertOptions, convert, read_dicom
from MedPrepLib.errors import MedPrepError
from MedPrepLib.volume import RGB24
from MedPrepLib.preprocess.pipeline import load_pipeline, run_pipeline
from MedPrepSample import write_multiphase, write_rgb_series, write_uih_grid

LPS_TO_RAS = np.array([-1.0, -1.0, 1.0])


def _only(report):
    assert len(report.written) == 1, report
    return report.written[0]


# --- UIH grids -----------------------------------------------------------------------------------

def test_uih_grid_unpacks_tiles_with_their_own_positions(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    n_t, n_z, rows, cols = 3, 5, 8, 6          # 5 tiles: 2 down x 3 across, one tile left blank
    volume = rng.integers(1, 4000, size=(n_t, n_z, rows, cols)).astype(np.uint16)
    row, col = np.array([0.8, 0.6, 0.0]), np.array([-0.6, 0.8, 0.0])
    origin, spacing = np.array([-40.0, 12.5, -7.0]), (2.0, 2.5, 3.5)
    bvalues = [0.0, 1000.0, 1000.0]
    gradients = [(0.0, 0.0, 0.0), (1.0, 0.0, 0.0), (0.0, 0.6, 0.8)]
    write_uih_grid(tmp_path / "in", volume, spacing=spacing, origin_lps=origin, row_dir=row, col_dir=col,
                   bvalues=bvalues, gradients=gradients, series_number=9)
    out = _only(convert(tmp_path / "in", tmp_path / "out", ConvertOptions(name_template="%p_%s_%t", gz=False)))
    # The study date is "***": dcm2niix's %t is then the study time alone.
    assert out.nifti.name == "dti_grid_9_132222.nii"
    img = nib.load(str(out.nifti))
    assert img.shape == (cols, rows, n_z, n_t)
    np.testing.assert_array_equal(np.asarray(img.dataobj).transpose(3, 2, 1, 0), volume)
    normal = np.cross(row, col)
    for k in (0, n_z - 1):  # the grid's position is not shifted like a Siemens mosaic's corner
        expected = (origin + k * spacing[2] * normal) * LPS_TO_RAS
        np.testing.assert_allclose((img.affine @ [0, 0, k, 1])[:3], expected, atol=1e-4)
    np.testing.assert_allclose(img.affine[:3, 0], row * spacing[0] * LPS_TO_RAS, atol=1e-6)
    assert (tmp_path / "out" / "dti_grid_9_132222.bval").read_text() == "0 1000 1000\n"
    bvec = np.loadtxt(tmp_path / "out" / "dti_grid_9_132222.bvec")
    # UIH gradients are in image space; FSL's convention negates x on a positive-determinant affine.
    flip = -1.0 if np.linalg.det(img.affine[:3, :3]) > 0 else 1.0
    np.testing.assert_allclose(bvec.T, [[0, 0, 0], [flip, 0, 0], [0, 0.6, 0.8]], atol=1e-6)


@pytest.mark.conformance
@pytest.mark.parametrize("set_name, folder, template, stem", [
    ("dcm_qa_uih", "DTI_132225", "%p_%s_%t", "dti_tra_dir16_PA_rot_12_132222"),           # UIH, image space
    ("dcm_qa_philips", "Vanderbilt_2018", "%p_%s", "WIP_dti_ax_601"),                     # Philips private RL/AP/FH
    ("dcm_qa_xa30", "10_DWI_dir80_PA", "%s_%p", "10_DWI_dir80_PA"),                       # enhanced, patient space
])
def test_gradient_tables_match_dcm2niix_up_to_the_voxel_axes(tmp_path: Path, set_name, folder, template, stem):
    """Real DWI: our .bval is dcm2niix's, and each .bvec direction points the same way in the patient
    frame once both files are read against their own NIfTI's axes (FSL convention)."""
    from conftest import require_conformance

    root = require_conformance() / set_name
    convert(root / "In" / folder, tmp_path, ConvertOptions(name_template=template, gz=False, ignore_derived=True))
    np.testing.assert_allclose(np.loadtxt(tmp_path / f"{stem}.bval"), np.loadtxt(root / "Ref" / f"{stem}.bval"),
                               atol=1e-3)

    def world(nifti: Path, bvec: Path) -> np.ndarray:
        affine = nib.load(str(nifti)).affine[:3, :3]
        axes = affine / np.linalg.norm(affine, axis=0)
        vecs = np.loadtxt(bvec).T
        if np.linalg.det(affine) > 0:
            vecs[:, 0] *= -1
        return vecs @ axes.T

    ref_nifti = next(p for p in (root / "Ref").iterdir() if p.name in (f"{stem}.nii", f"{stem}.nii.gz"))
    ours = world(tmp_path / f"{stem}.nii", tmp_path / f"{stem}.bvec")
    ref = world(ref_nifti, root / "Ref" / f"{stem}.bvec")
    weighted = np.linalg.norm(ref, axis=1) > 0.5
    assert weighted.sum() > 5 and np.array_equal(weighted, np.linalg.norm(ours, axis=1) > 0.5)
    # A diffusion direction and its opposite are the same measurement.
    np.testing.assert_allclose(np.abs(np.sum(ours * ref, axis=1))[weighted], 1.0, atol=1e-4)


# --- RGB colour -----------------------------------------------------------------------------------

@pytest.mark.parametrize("planar, photometric", [(0, "RGB"), (1, "RGB"), (0, "YBR_FULL")])
def test_rgb_written_as_rgb24(tmp_path: Path, planar: int, photometric: str) -> None:
    rng = np.random.default_rng(planar)
    rgb = rng.integers(0, 256, size=(3, 5, 7, 3)).astype(np.uint8)
    if photometric == "YBR_FULL":
        rgb[...] = rng.integers(0, 256, size=(1, 1, 1, 3))  # YBR round trips are exact for flat colours only
    write_rgb_series(tmp_path / "in", rgb, planar=planar, photometric=photometric)
    out = _only(convert(tmp_path / "in", tmp_path / "out", ConvertOptions(gz=False)))
    img = nib.load(str(out.nifti))
    assert img.get_data_dtype() == RGB24 and img.shape == (7, 5, 3)
    stored = np.asarray(img.dataobj)
    triplets = np.stack([stored["R"], stored["G"], stored["B"]], axis=-1).transpose(2, 1, 0, 3)
    tolerance = 1 if photometric == "YBR_FULL" else 0
    assert np.abs(triplets.astype(int) - rgb.astype(int)).max() <= tolerance
    assert json.loads(out.sidecar.read_text())["ColorImage"] == "RGB24"


def test_preprocessing_refuses_colour_in_one_line(tmp_path: Path) -> None:
    write_rgb_series(tmp_path / "in", np.zeros((2, 4, 4, 3), np.uint8))
    vol = read_dicom(tmp_path / "in")[0]
    assert vol.is_rgb
    with pytest.raises(MedPrepError) as err:
        run_pipeline(vol, load_pipeline({"steps": [{"step": "zscore"}]}))
    assert "colour (RGB)" in str(err.value) and "\n" not in err.value.one_line()


# --- classic multi-phase series ------------------------------------------------------------------

def test_multiphase_ordered_by_trigger_time_with_per_phase_slopes(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    triggers = [300.0, 100.0, 200.0]
    slopes = [0.5, 2.0, 1.0]
    phases = np.stack([np.round(rng.uniform(0, 500, size=(4, 6, 5)) / s) * s for s in slopes])
    write_multiphase(tmp_path / "in", phases, triggers, slopes, series_number=4)
    out = _only(convert(tmp_path / "in", tmp_path / "out", ConvertOptions(gz=False)))
    img = nib.load(str(out.nifti))
    assert img.get_data_dtype() == np.float32 and img.shape == (5, 6, 4, 3)
    data = np.asarray(img.dataobj).transpose(3, 2, 1, 0)
    for t, phase in enumerate(np.argsort(triggers)):
        np.testing.assert_allclose(data[t], phases[phase], atol=1e-3)


def test_rgb_round_trips_through_nifti_and_simpleitk(tmp_path: Path) -> None:
    from MedPrepLib.nifti import read_nifti, write_nifti
    from MedPrepLib.volume import Volume

    array = np.random.default_rng(5).integers(0, 256, size=(2, 3, 4, 3)).astype(np.uint8).view(RGB24)[..., 0]
    vol = Volume(array=array, affine=np.diag([-0.5, -0.6, 2.0, 1.0]))
    back = read_nifti(write_nifti(vol, tmp_path / "c.nii.gz"))
    assert back.is_rgb and np.array_equal(back.array, array)
    image = vol.to_sitk()
    assert image.GetNumberOfComponentsPerPixel() == 3 and image.GetSize() == (4, 3, 2)
    again = Volume.from_sitk(image)
    assert again.is_rgb and np.array_equal(again.array, array)
    np.testing.assert_allclose(again.affine, vol.affine)


# --- postfixes of a field map stored as separate classic series -----------------------------------

def test_field_map_echoes_and_phase_difference_as_separate_series(tmp_path: Path) -> None:
    """Siemens' gre_field_mapping: both magnitude echoes in one series (split into _e1, _e2) and the
    phase difference, echo 2, as a series of its own: dcm2niix still names it _e2_ph."""
    from MedPrepSample import write_series

    data = np.zeros((2, 4, 4))
    mag = write_series(tmp_path / "in" / "mag1", data, modality="MR", series_number=8,
                       extra={"EchoNumbers": 1, "ImageType": ["ORIGINAL", "PRIMARY", "M", "ND"],
                              "ProtocolName": "gre_field_mapping"})
    uid = str(__import__("pydicom").dcmread(mag[0]).SeriesInstanceUID)
    write_series(tmp_path / "in" / "mag2", data, modality="MR", series_number=8, series_uid=uid,
                 extra={"EchoNumbers": 2, "ImageType": ["ORIGINAL", "PRIMARY", "M", "ND"], "EchoTime": 7.38,
                        "ProtocolName": "gre_field_mapping"})
    write_series(tmp_path / "in" / "phase", data, modality="MR", series_number=9,
                 extra={"EchoNumbers": 2, "ImageType": ["ORIGINAL", "PRIMARY", "P", "ND"],
                        "ProtocolName": "gre_field_mapping"})
    report = convert(tmp_path / "in", tmp_path / "out", ConvertOptions(name_template="%s_%p", gz=False))
    names = sorted(o.nifti.name for o in report.written)
    assert names == ["8_gre_field_mapping_e1.nii", "8_gre_field_mapping_e2.nii", "9_gre_field_mapping_e2_ph.nii"]
    # With the echo in the template, the postfix does not repeat it.
    report = convert(tmp_path / "in", tmp_path / "out2", ConvertOptions(name_template="%s_e%e", gz=False))
    assert sorted(o.nifti.name for o in report.written) == ["8_e1.nii", "8_e2.nii", "9_e2_ph.nii"]
