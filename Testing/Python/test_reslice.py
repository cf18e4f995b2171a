"""Gantry-tilt and slice-spacing correction on synthetic stacks whose geometry is known exactly.

The stacks are built the way a tilted CT is acquired: the bed moves along LPS z while the slice
plane is tilted about the patient's left-right axis, so every slice is displaced in-plane (down its
columns) from the one before. Voxel values are chosen so that where each should end up is known.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import pytest

from MedPrepLib import volume as volume_module
from MedPrepLib.affine import LPS_FROM_RAS
from MedPrepLib.geometry import SPACING_TOL_MM, stack_affine
from MedPrepLib.reslice import _stack_of, correction_postfix, equalized_step, tilt_and_spacing_correct
from MedPrepLib.volume import Volume

P0 = np.array([-20.0, -15.0, 30.0])
DR, DC = 0.5, 0.7          # mm between rows, between columns: different, to catch swapped axes


def _orientation(tilt_deg: float) -> np.ndarray:
    t = np.radians(tilt_deg)
    return np.array([1.0, 0.0, 0.0, 0.0, np.cos(t), -np.sin(t)])


def _positions(bed_z: Sequence[float]) -> np.ndarray:
    return P0 + np.outer(bed_z, [0.0, 0.0, 1.0])


def _voxel_lps(orientation: np.ndarray, positions: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """LPS position of every input voxel, shape (z, y, x, 3)."""
    row, col = orientation[:3], orientation[3:]
    j, i = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
    inplane = j[..., None] * DR * col + i[..., None] * DC * row
    return positions[:, None, None, :] + inplane[None]


def tilted_volume(bed_z: Sequence[float], tilt_deg: float, array: np.ndarray) -> Volume:
    """A Volume as series_to_volume makes it, slice positions and normal included."""
    orientation = _orientation(tilt_deg)
    positions = _positions(bed_z)
    geom = stack_affine(orientation, (DR, DC), positions, None)
    normal = np.cross(orientation[:3], orientation[3:])
    meta = {"_slice_positions_lps": positions, "_slice_normal": normal}
    if geom.tilt_deg > 0.01:
        meta["GantryTiltDegrees"] = geom.tilt_deg
    if geom.variable_spacing:
        meta["VariableSliceSpacing"] = True
    return Volume(array=array, affine=geom.affine, meta=meta, warnings=list(geom.warnings))


def linear_field(lps: np.ndarray) -> np.ndarray:
    """Reproduced exactly by linear interpolation, so every resampled voxel has a known value."""
    return 3.0 * lps[..., 0] - 2.0 * lps[..., 1] + 5.0 * lps[..., 2] + 1000.0


def out_lps(vol: Volume) -> np.ndarray:
    """LPS position of every output voxel, shape (z, y, x, 3)."""
    lps = LPS_FROM_RAS @ vol.affine
    k, j, i = np.meshgrid(*[np.arange(n) for n in vol.array.shape], indexing="ij")
    ijk1 = np.stack([i, j, k, np.ones_like(i)], axis=-1).astype(float)
    return (ijk1 @ lps.T)[..., :3]


def assert_orthogonal_along_normal(vol: Volume, tilt_deg: float, step: Optional[float] = None) -> None:
    lps = (LPS_FROM_RAS @ vol.affine)[:3, :3]
    assert not vol.is_sheared
    spacing = np.linalg.norm(lps, axis=0)
    np.testing.assert_allclose(lps.T @ lps, np.diag(spacing ** 2), atol=1e-9)
    orientation = _orientation(tilt_deg)
    np.testing.assert_allclose(lps[:, 0], orientation[:3] * DC, atol=1e-12)
    np.testing.assert_allclose(lps[:, 1], orientation[3:] * DR, atol=1e-12)
    np.testing.assert_allclose(lps[:, 2] / spacing[2], np.cross(orientation[:3], orientation[3:]), atol=1e-12)
    if step is not None:
        assert spacing[2] == pytest.approx(step, abs=1e-9)


def inside_every_slice(vol: Volume, src: Volume, rows: int) -> np.ndarray:
    """Output rows whose position lies within the rows of every input slice (no fill mixed in)."""
    lps = LPS_FROM_RAS @ vol.affine
    col = lps[:3, 1] / DR
    y = np.arange(vol.array.shape[1])
    # The column coordinate does not depend on k: the output slice axis is orthogonal to col.
    q = ((lps[:3, 3] + np.outer(y, lps[:3, 1]))[None] - src.meta["_slice_positions_lps"][:, None]) @ col / DR
    return np.all((q > -1e-6) & (q < rows - 1 + 1e-6), axis=0)


def test_feature_at_known_point_lands_on_its_voxel() -> None:
    # 30 degrees and 3 mm bed steps displace each slice by exactly -1.5 mm = -3 rows: no
    # interpolation, so a single bright voxel must come out whole, at its physical position.
    rows, cols, bed = 40, 12, np.arange(8) * 3.0
    data = np.zeros((len(bed), rows, cols), dtype=np.int16)
    k0, j0, i0 = 5, 7, 4
    data[k0, j0, i0] = 1000
    vol = tilted_volume(bed, 30.0, data)
    out = tilt_and_spacing_correct(vol, tilt=True, equalize=True)
    assert out is not None and correction_postfix(out) == "_Tilt"    # spacing is constant
    assert_orthogonal_along_normal(out, 30.0, step=3.0 * np.cos(np.radians(30.0)))
    assert out.array.shape == (8, rows + 21, cols)                     # 7 slices x 3 rows of shift
    assert out.array.dtype == np.int16
    point = _voxel_lps(_orientation(30.0), _positions(bed), rows, cols)[k0, j0, i0]
    ijk = np.linalg.solve(LPS_FROM_RAS @ out.affine, np.append(point, 1.0))[:3]
    np.testing.assert_allclose(ijk, np.round(ijk), atol=1e-9)
    i, j, k = (int(v) for v in np.round(ijk))
    assert out.array[k, j, i] == 1000
    assert int(out.array.astype(np.int64).sum()) == 1000


def test_fractional_shift_keeps_the_feature_centroid() -> None:
    # 18.5 degrees, 4 mm bed steps: a shift of -2.5406 rows per slice, split between two rows.
    rows, cols, bed = 30, 6, np.arange(6) * 4.0
    data = np.zeros((len(bed), rows, cols), dtype=np.float32)
    k0, j0, i0 = 4, 9, 2
    data[k0, j0, i0] = 100.0
    out = tilt_and_spacing_correct(tilted_volume(bed, 18.5, data), tilt=True, equalize=False)
    assert out is not None
    mass = out.array[k0]
    assert mass.sum() == pytest.approx(100.0, rel=1e-6)
    assert np.count_nonzero(mass) == 2                              # linear: the two nearest rows
    j, i = np.indices(mass.shape)
    centroid = np.array([(i * mass).sum(), (j * mass).sum()]) / mass.sum()
    point = _voxel_lps(_orientation(18.5), _positions(bed), rows, cols)[k0, j0, i0]
    ijk = np.linalg.solve(LPS_FROM_RAS @ out.affine, np.append(point, 1.0))[:3]
    np.testing.assert_allclose(ijk, [centroid[0], centroid[1], k0], atol=1e-5)


@pytest.mark.parametrize("tilt_deg", [18.5, -12.0])
def test_tilt_and_variable_spacing_reproduce_a_linear_field(tilt_deg: float) -> None:
    # GE-like: 4 mm steps, one short gap, then 7 mm steps (along the bed, so tilted along the normal).
    bed = np.concatenate([np.arange(5) * 4.0, 17.1 + np.arange(5) * 7.0])
    rows, cols = 80, 5
    orientation = _orientation(tilt_deg)
    data = linear_field(_voxel_lps(orientation, _positions(bed), rows, cols)).astype(np.float32)
    vol = tilted_volume(bed, tilt_deg, data)
    assert vol.is_sheared and vol.meta["VariableSliceSpacing"]
    out = tilt_and_spacing_correct(vol, tilt=True, equalize=True, padding_value=-9999.0)
    assert out is not None and correction_postfix(out) == "_Tilt_Eq"
    dist = (_positions(bed) - P0) @ np.cross(orientation[:3], orientation[3:])
    step = equalized_step(dist)
    assert_orthogonal_along_normal(out, tilt_deg, step=step)
    assert out.array.shape[0] == int(np.floor(dist[-1] / step + 1e-6)) + 1
    # First output slice through the first input slice, last one at the last slice's distance.
    first_lps = LPS_FROM_RAS @ out.affine
    assert (first_lps[:3, 3] - P0) @ np.cross(orientation[:3], orientation[3:]) == pytest.approx(0.0, abs=1e-9)
    assert (out.array.shape[0] - 1) * step == pytest.approx(dist[-1], abs=1e-6)
    inside = inside_every_slice(out, vol, rows)
    assert inside.sum() > rows // 2
    expected = linear_field(out_lps(out))
    np.testing.assert_allclose(out.array[:, inside], expected[:, inside], atol=2e-3)
    assert np.any(out.array == -9999.0)                             # the grid grew by the shift
    assert "GantryTiltDegrees" not in out.meta and "VariableSliceSpacing" not in out.meta
    assert not any(w.startswith(("gantry tilt of", "slice spacing varies")) for w in out.warnings)
    assert out.history[-1]["step"] == "tilt_and_spacing_correct"
    np.testing.assert_allclose(out.meta["_slice_positions_lps"][-1] - out.meta["_slice_positions_lps"][0],
                               dist[-1] * np.cross(orientation[:3], orientation[3:]), atol=1e-9)
    # Corrected once is corrected: nothing left to do.
    assert tilt_and_spacing_correct(out, tilt=True, equalize=True) is None


def test_equalize_only_keeps_the_shear_and_the_field() -> None:
    bed = np.array([0.0, 2.0, 4.0, 9.0, 14.0, 19.0])
    rows, cols, tilt = 20, 4, 10.0
    data = linear_field(_voxel_lps(_orientation(tilt), _positions(bed), rows, cols))
    vol = tilted_volume(bed, tilt, data)
    out = tilt_and_spacing_correct(vol, tilt=False, equalize=True)
    assert out is not None and correction_postfix(out) == "_Eq"
    assert out.array.shape[1:] == (rows, cols)
    lps = LPS_FROM_RAS @ out.affine
    # Still sheared: equidistant slices, each still displaced like the bed moves (along z).
    np.testing.assert_allclose(lps[:3, 2] / np.linalg.norm(lps[:3, 2]), [0.0, 0.0, 1.0], atol=1e-12)
    np.testing.assert_allclose(out.array, linear_field(out_lps(out)), atol=1e-9)


def test_untilted_variable_spacing_is_only_equalized() -> None:
    bed = np.array([0.0, 1.0, 2.0, 3.0, 6.0, 10.0])
    data = linear_field(_voxel_lps(_orientation(0.0), _positions(bed), 6, 5))
    vol = tilted_volume(bed, 0.0, data)
    assert tilt_and_spacing_correct(vol, tilt=True, equalize=False) is None
    out = tilt_and_spacing_correct(vol, tilt=True, equalize=True)
    assert out is not None and correction_postfix(out) == "_Eq"
    assert out.array.shape == (11, 6, 5)                             # 1 mm, the smallest step
    assert_orthogonal_along_normal(out, 0.0, step=1.0)
    np.testing.assert_allclose(out.array, linear_field(out_lps(out)), atol=1e-9)


def test_integer_rounding_and_padding_follow_dcm2niix() -> None:
    # Slices displaced by exactly half a row each (0.25 mm down the columns per 1 mm along the
    # normal): rows of 10 and 15 blend to 12.5, stored as 13 (halves away from zero, where numpy
    # would round to 12); next to padding the nearer row is copied instead of blended.
    rows, cols = 8, 3
    orientation = np.array([1.0, 0.0, 0.0, 0.0, 1.0, 0.0])
    positions = P0 + np.outer(np.arange(3), [0.0, 0.5 * DR, 1.0])
    data = np.zeros((3, rows, cols), dtype=np.int16)
    data[:, 0::2] = 10
    data[:, 1::2] = 15
    data[:, 6:] = -1500
    geom = stack_affine(orientation, (DR, DC), positions, None)
    vol = Volume(array=data, affine=geom.affine, meta={"_slice_positions_lps": positions})
    out = tilt_and_spacing_correct(vol, tilt=True, equalize=False, padding_value=-1500)
    assert out is not None and out.array.shape == (3, rows + 1, cols)
    assert out.array[1, :, 0].tolist() == [-1500, 13, 13, 13, 13, 13, 15, -1500, -1500]
    assert out.array[0, :, 0].tolist() == [10, 15, 10, 15, 10, 15, -1500, -1500, -1500]
    assert out.array[2, :, 0].tolist() == [-1500, 10, 15, 10, 15, 10, 15, -1500, -1500]


def test_nothing_to_correct_returns_none() -> None:
    data = np.zeros((4, 5, 6), dtype=np.int16)
    vol = tilted_volume(np.arange(4) * 2.0, 0.0, data)
    assert tilt_and_spacing_correct(vol, tilt=True, equalize=True) is None
    tilted = tilted_volume(np.arange(4) * 2.0, 15.0, data)
    assert tilt_and_spacing_correct(tilted, tilt=False, equalize=True) is None


def test_affine_only_volume_is_still_tilt_corrected() -> None:
    # A sheared volume read back from NIfTI has no slice positions: the affine is enough for tilt.
    bed = np.arange(5) * 2.5
    data = linear_field(_voxel_lps(_orientation(20.0), _positions(bed), 16, 3))
    vol = tilted_volume(bed, 20.0, data)
    bare = Volume(array=vol.array, affine=vol.affine)
    out = tilt_and_spacing_correct(bare, tilt=True, equalize=True, padding_value=-9999.0)
    assert out is not None and correction_postfix(out) == "_Tilt"
    inside = inside_every_slice(out, vol, 16)
    np.testing.assert_allclose(out.array[:, inside], linear_field(out_lps(out))[:, inside], atol=1e-9)


def test_uncorrectable_stacks_raise() -> None:
    with pytest.raises(ValueError, match="3 slices"):
        tilt_and_spacing_correct(tilted_volume([0.0, 3.0], 20.0, np.zeros((2, 4, 4), np.int16)), True, True)
    four_d = tilted_volume(np.arange(4) * 3.0, 20.0, np.zeros((4, 4, 4), np.int16))
    four_d.array = np.zeros((2, 4, 4, 4), np.int16)
    with pytest.raises(ValueError, match="4D"):
        tilt_and_spacing_correct(four_d, True, True)


def test_dcm2niix_slice_count_cap() -> None:
    # dcm_qa_ct_ge: 13 x 4.002, 1.081, 13 x 6.999 mm -> 56 slices 2.62 mm apart, not 134 at 1.081.
    steps = [4.00192601] * 13 + [1.08108902] + [6.99862891] * 13
    dist = np.concatenate([[0.0], np.cumsum(steps)])
    assert equalized_step(dist) == pytest.approx(dist[-1] / 55)
    assert equalized_step(np.array([0.0, 1.0, 2.0, 4.0])) == pytest.approx(1.0)


def test_convert_writes_the_corrected_volume_beside_the_series(tmp_path) -> None:
    import json

    import nibabel as nib
    import pydicom

    from MedPrepLib.convert import ConvertOptions, convert
    from MedPrepSample import write_series

    tilt = 18.5
    orientation = _orientation(tilt)
    bed = np.array([0.0, 4.0, 8.0, 9.0, 16.0, 23.0])
    rows, cols = 24, 10
    data = np.arange(len(bed) * rows * cols, dtype=np.int16).reshape(len(bed), rows, cols) % 200 - 1000
    paths = write_series(tmp_path / "in", data, spacing=(DC, DR, 1.0), origin_lps=P0,
                         row_dir=orientation[:3], col_dir=orientation[3:])
    for path, z in zip(paths, bed):
        # The bed moves along z while the gantry is tilted: positions off the slice normal.
        ds = pydicom.dcmread(str(path))
        ds.ImagePositionPatient = [float(v) for v in P0 + [0.0, 0.0, z]]
        ds.GantryDetectorTilt = tilt
        ds.add_new(0x00280120, "SS", -1500)                           # PixelPaddingValue
        ds.save_as(str(path))

    plain = convert(tmp_path / "in", tmp_path / "plain", ConvertOptions(name_template="%s"))
    assert [o.nifti.name for o in plain.written] == ["1.nii.gz"]

    options = ConvertOptions(name_template="%s", tilt_correct=True, equalize_spacing=True)
    report = convert(tmp_path / "in", tmp_path / "out", options)
    assert [o.nifti.name for o in report.written] == ["1.nii.gz", "1_Tilt_Eq_1.nii.gz"]
    extra = report.written[1]
    img = nib.load(str(extra.nifti))
    m = img.affine[:3, :3] / np.linalg.norm(img.affine[:3, :3], axis=0)
    np.testing.assert_allclose(m.T @ m, np.eye(3), atol=1e-6)
    assert img.get_data_dtype() == np.int16
    assert list(img.shape) == extra.shape and img.shape[2] == 2 * len(bed)   # dcm2niix's cap
    sidecar = json.loads(extra.sidecar.read_text())
    steps = [s["step"] for s in sidecar["MedPrepProvenance"]["steps"]]
    assert steps == ["dicom_to_nifti", "tilt_and_spacing_correct"]
    assert sidecar["MedPrepProvenance"]["steps"][0]["params"]["tilt_correct"] is True
    assert sidecar["MedPrepProvenance"]["steps"][1]["params"]["padding_value"] == -1500
    assert not any(k.startswith("_") for k in sidecar)


@pytest.mark.parametrize("extra", [0.0, 0.5 * SPACING_TOL_MM, 0.99 * SPACING_TOL_MM, 1.01 * SPACING_TOL_MM,
                                   2 * SPACING_TOL_MM, 0.3])
def test_variable_spacing_one_rule_for_convert_and_reslice(extra):
    """The stack geometry (meta["VariableSliceSpacing"], warnings) and reslice's equalization decide
    "spacing varies" alike on either side of the tolerance: one rule, not two copies that drift."""
    bed_z = [0.0, 0.6, 1.2 + extra, 1.8 + extra]
    vol = tilted_volume(bed_z, 0.0, np.zeros((4, 3, 3), np.int16))
    expected = extra > SPACING_TOL_MM
    assert bool(vol.meta.get("VariableSliceSpacing")) is expected
    assert _stack_of(vol).variable is expected


def test_lps_from_ras_has_one_home():
    """LPS_FROM_RAS lives in MedPrepLib.affine only; Volume no longer re-exports it."""
    assert not hasattr(volume_module, "LPS_FROM_RAS")
    np.testing.assert_array_equal(LPS_FROM_RAS, np.diag([-1.0, -1.0, 1.0, 1.0]))


def test_spacing_from_the_affine_computed_in_affine_py_only():
    """Voxel spacing and axis directions come from affine.voxel_spacing/axis_directions: no module
    of the library or the Slicer module takes the norm of an affine's columns itself."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    pattern = re.compile(r"linalg\.norm\([^)]*\[:3, *(:3|0|1|2)\]")
    offenders = [f"{p.relative_to(root)}:{n}" for folder in ("MedPrepLib", "MedPrep")
                 for p in sorted((root / folder).rglob("*.py")) if p.name != "affine.py"
                 for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1) if pattern.search(line)]
    assert offenders == []
