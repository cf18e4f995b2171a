"""Gantry-tilted CT through the whole conversion, for both tilt signs, both vendors' sign conventions
for GantryDetectorTilt (GE, Philips) and every stored slice order (InstanceNumber rising with the
bed, falling, or unrelated to it).

`MedPrepSample.write_tilted_ct` writes each voxel with a known function of its LPS position, so
the uncorrected affine, the `_Tilt` volume's grid and every resampled value have exact known answers.
The geometry comes from ImageOrientationPatient and ImagePositionPatient alone; the tag's sign is
the vendor's and must not matter.

Measured with dcm2niix v1.0.20260724 on the series of `test_ball_stays_where_it_is` (20 degrees,
14 slices, 2 vendors x 2 signs x 3 orders; distance of the ball's centroid from its true centre):
its `_Tilt` volume is right (0.02 mm) in 4 of the 12 cases and 5.4 to 15.7 mm off in the others
(any top-down order, any negative tilt in GE's convention); its uncorrected affine shortens the
sheared slice axis by cos(tilt) (0.5 to 1.1 mm off bottom-up, 8.6 to 8.7 mm top-down). Ours is
0.021 mm off in all 24 volumes (the ball's sampling).
"""
from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest

from MedPrepLib.convert import ConvertOptions, convert
from MedPrepSample import TiltedStack, write_tilted_ct

TILT = 17.0
ROWS, COLS = 28, 9
STEP = 2.5
LPS_FROM_RAS = np.diag([-1.0, -1.0, 1.0])


def linear_hu(lps: np.ndarray) -> np.ndarray:
    """Linear interpolation reproduces it exactly; at least 2.3 HU per mm along every image axis for
    either tilt sign, so a voxel 0.5 mm out of place is off by more than the 1 HU tolerance."""
    return 3.0 * lps[..., 0] + 4.0 * lps[..., 1] + 5.0 * lps[..., 2]


def _convert(tmp_path: Path, stack_dir: Path, **options) -> dict:
    report = convert(stack_dir, tmp_path / "out", ConvertOptions(name_template="ct", gz=False, **options))
    return {o.nifti.name: o for o in report.written}


def _voxel_lps(img: nib.Nifti1Image) -> np.ndarray:
    """LPS position of every voxel of a NIfTI image, (x, y, z, 3)."""
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in img.shape], indexing="ij"), axis=-1).astype(float)
    return (ijk @ img.affine[:3, :3].T + img.affine[:3, 3]) @ LPS_FROM_RAS


def _check_uncorrected(img: nib.Nifti1Image, stack: TiltedStack) -> None:
    # Every voxel of every slice where the DICOM puts it, and holding its own value.
    truth = np.transpose(stack.voxel_lps((ROWS, COLS)), (2, 1, 0, 3))       # (x, y, z, 3)
    np.testing.assert_allclose(_voxel_lps(img), truth, atol=1e-4)
    np.testing.assert_allclose(img.get_fdata(), np.rint(linear_hu(truth)), atol=1e-6)
    # The slice axis is the bed step, sheared; dcm2niix writes the same direction scaled by cos(tilt)
    # (its slice distance |gap| x cos(GantryDetectorTilt)), which is exactly the step along the normal.
    axis = img.affine[:3, 2] @ LPS_FROM_RAS
    np.testing.assert_allclose(axis, [0.0, 0.0, STEP], atol=1e-5)
    assert axis @ stack.normal == pytest.approx(STEP * np.cos(np.radians(TILT)), abs=1e-5)
    # The qform cannot shear: it holds the slice planes' own frame, so pixdim[3] is their distance.
    qform = LPS_FROM_RAS @ img.header.get_qform()[:3, :3]
    np.testing.assert_allclose(qform, np.column_stack([stack.row * 0.7, stack.col * 0.5,
                                                       stack.normal * STEP * np.cos(np.radians(TILT))]), atol=1e-5)
    assert img.header["pixdim"][3] == pytest.approx(STEP * np.cos(np.radians(TILT)), abs=1e-5)


def _inside(img: nib.Nifti1Image, stack: TiltedStack) -> np.ndarray:
    """Output voxels on an input slice plane and within its rows and columns (no fill mixed in)."""
    q = _voxel_lps(img)
    rel = q[..., None, :] - stack.positions                                   # (x, y, z, slice, 3)
    on_plane = np.abs(rel @ stack.normal) < 1e-3
    r = rel @ stack.col / stack.spacing[1]
    c = rel @ stack.row / stack.spacing[0]
    within = (r > -1e-3) & (r < ROWS - 1 + 1e-3) & (c > -1e-3) & (c < COLS - 1 + 1e-3)
    return np.any(on_plane & within, axis=-1)


@pytest.mark.parametrize("order", ["ascending", "descending", "shuffled"])
@pytest.mark.parametrize("sign", [1.0, -1.0])
@pytest.mark.parametrize("vendor", ["GE", "Philips"])
def test_tilt_corrected_volume_has_the_known_values_at_the_known_places(tmp_path, vendor, sign, order) -> None:
    stack = write_tilted_ct(tmp_path / "in", sign * TILT, linear_hu, vendor=vendor, order=order,
                            rows=ROWS, cols=COLS, spacing=(0.7, 0.5, STEP), n_slices=7)
    assert stack.gantry_tilt_tag == (sign if vendor == "GE" else -sign) * TILT
    written = _convert(tmp_path, tmp_path / "in", tilt_correct=True)
    assert sorted(written) == ["ct.nii", "ct_Tilt_1.nii"]
    _check_uncorrected(nib.load(str(written["ct.nii"].nifti)), stack)

    img = nib.load(str(written["ct_Tilt_1.nii"].nifti))
    # Orthogonal grid: rows and columns as in the slices, slice axis along the normal at the
    # distance between slice planes; the rows grow by the whole in-plane shift, nothing cut off.
    lps = LPS_FROM_RAS @ img.affine[:3, :3]
    np.testing.assert_allclose(lps[:, 0], stack.row * 0.7, atol=1e-6)
    np.testing.assert_allclose(lps[:, 1], stack.col * 0.5, atol=1e-6)
    np.testing.assert_allclose(lps[:, 2], stack.normal * STEP * np.cos(np.radians(TILT)), atol=1e-5)
    shift_rows = 6 * STEP * np.sin(np.radians(TILT)) / 0.5
    assert img.shape == (COLS, ROWS + int(np.ceil(shift_rows - 1e-6)), 7)
    # Every input voxel lies inside the output grid.
    corners = stack.voxel_lps((ROWS, COLS)).reshape(-1, 3)
    ijk = (corners - _voxel_lps(img)[0, 0, 0]) @ np.linalg.inv(lps).T
    assert ijk.min() > -1e-6 and np.all(ijk.max(axis=0) < np.array(img.shape) - 1 + 1e-6)
    # Values: the linear field at each voxel's own position (stored rounding + interpolation <= 1 HU).
    inside = _inside(img, stack)
    assert inside.sum() >= 0.8 * ROWS * COLS * 7
    error = np.abs(img.get_fdata() - linear_hu(_voxel_lps(img)))[inside]
    assert error.max() <= 1.0


def _ball(center: np.ndarray, radius: float = 4.0):
    return lambda lps: 1000.0 * np.clip(radius + 0.5 - np.linalg.norm(lps - center, axis=-1), 0.0, 1.0) - 1000.0


def _centroid(img: nib.Nifti1Image) -> np.ndarray:
    w = np.clip(img.get_fdata() + 1000.0, 0.0, None)
    return (w[..., None] * _voxel_lps(img)).reshape(-1, 3).sum(axis=0) / w.sum()


@pytest.mark.parametrize("order", ["ascending", "descending", "shuffled"])
@pytest.mark.parametrize("sign", [1.0, -1.0])
@pytest.mark.parametrize("vendor", ["GE", "Philips"])
def test_ball_stays_where_it_is(tmp_path, vendor, sign, order) -> None:
    # 14 slices 2 mm apart at 20 degrees: the slices drift 9 mm in-plane over the stack, so a volume
    # resampled with the shift the wrong way, or an origin not moved with it, puts the ball far off.
    center = np.array([3.0, 2.0, 33.0])
    write_tilted_ct(tmp_path / "in", sign * 20.0, _ball(center), vendor=vendor, order=order,
                    rows=64, cols=24, spacing=(0.7, 0.5, 2.0), n_slices=14, origin_lps=(-5.0, -12.0, 20.0))
    written = _convert(tmp_path, tmp_path / "in", tilt_correct=True)
    for name in ("ct.nii", "ct_Tilt_1.nii"):
        np.testing.assert_allclose(_centroid(nib.load(str(written[name].nifti))), center, atol=0.05)


@pytest.mark.parametrize("sign", [1.0, -1.0])
@pytest.mark.parametrize("vendor", ["GE", "Philips"])
def test_tilt_with_variable_spacing_equalized(tmp_path, vendor, sign) -> None:
    bed = np.array([0.0, 3.0, 6.0, 9.0, 10.0, 15.0, 20.0, 25.0])
    stack = write_tilted_ct(tmp_path / "in", sign * TILT, linear_hu, vendor=vendor, order="descending",
                            rows=ROWS, cols=COLS, spacing=(0.7, 0.5, 3.0), bed_z=bed)
    written = _convert(tmp_path, tmp_path / "in", tilt_correct=True, equalize_spacing=True)
    assert sorted(written) == ["ct.nii", "ct_Tilt_Eq_1.nii"]
    plain = nib.load(str(written["ct.nii"].nifti))
    # One affine cannot place every slice: as dcm2niix, it starts at the first stored slice (here the
    # top one) and steps by its gap to the next (sheared, where dcm2niix takes cos(tilt) of it).
    at = _voxel_lps(plain)[0, 0]
    np.testing.assert_allclose(at[-1], stack.positions[-1], atol=1e-4)
    np.testing.assert_allclose(at[-2], stack.positions[-2], atol=1e-4)

    img = nib.load(str(written["ct_Tilt_Eq_1.nii"].nifti))
    lps = LPS_FROM_RAS @ img.affine[:3, :3]
    m = lps / np.linalg.norm(lps, axis=0)
    np.testing.assert_allclose(m.T @ m, np.eye(3), atol=1e-6)
    np.testing.assert_allclose(m[:, 2], stack.normal, atol=1e-6)
    q = _voxel_lps(img)
    dist = (q - stack.positions[0]) @ stack.normal
    extent = (stack.positions[-1] - stack.positions[0]) @ stack.normal
    r = (q - stack.positions[:, None, None, None, :])[..., :] @ stack.col / 0.5    # (slice, x, y, z)
    c = (q - stack.positions[0]) @ stack.row / 0.7
    inside = (dist > -1e-6) & (dist < extent + 1e-6) & np.all((r > 0) & (r < ROWS - 1), axis=0) \
        & (c > -1e-6) & (c < COLS - 1 + 1e-6)
    assert inside.sum() > 0.3 * ROWS * COLS * img.shape[2]      # rows that every slice covers
    error = np.abs(img.get_fdata() - linear_hu(q))[inside]
    assert error.max() <= 1.5          # stored rounding, then rounding after each of the two stages


def test_nominal_tilt_without_sheared_positions_is_not_corrected(tmp_path) -> None:
    # Slices already resampled (positions along the normal) that still carry the scanner's tag: the
    # tag is nominal, so nothing is shifted, and the disagreement is reported.
    stack = write_tilted_ct(tmp_path / "in", TILT, linear_hu, rows=ROWS, cols=COLS, n_slices=5,
                            spacing=(0.7, 0.5, STEP))
    normal = stack.normal
    for k, path in enumerate(stack.paths):
        ds = pydicom.dcmread(str(path))
        ds.ImagePositionPatient = [float(v) for v in stack.positions[0] + k * STEP * normal]
        ds.save_as(str(path))
    written = _convert(tmp_path, tmp_path / "in", tilt_correct=True)
    assert sorted(written) == ["ct.nii"]
    assert any("GantryDetectorTilt is 17 degrees but the slice positions show a tilt of 0.00" in w
               for w in written["ct.nii"].warnings)
    img = nib.load(str(written["ct.nii"].nifti))
    np.testing.assert_allclose(img.affine[:3, 2] @ LPS_FROM_RAS, STEP * normal, atol=1e-5)
