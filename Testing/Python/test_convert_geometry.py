"""`medprep convert` on synthetic DICOM with known geometry and values.

Each series is written with a known first-voxel position, row/column directions and spacing, so
the NIfTI affine has one right answer: voxel (i, j, k) -> LPS origin + i*sx*row + j*sy*col
+ k*sz*normal, then x and y negated for RAS. DICOM's PixelSpacing is [row spacing (sy), column
spacing (sx)]; sample.write_series takes spacing as (sx, sy, sz) and writes it in DICOM's order.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import List, Sequence

import nibabel as nib
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.uid import generate_uid

import MedPrepSample as sample
from conftest import rotation
from MedPrepLib.cli import main as cli_main

STEM = "1_MedPrep_synthetic_series"
RAS_FROM_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])
SPACING = (0.7, 0.9, 2.5)           # (sx: between columns, sy: between rows, sz: between slices)
ORIGIN = (-12.5, 30.25, 101.0)      # LPS of the first voxel of the first slice
SHAPE = (10, 24, 32)                # (slices, rows, columns)


_OBLIQUE = rotation(0.4, -0.3, 0.5)
ORIENTATIONS = {
    "axial": ((1, 0, 0), (0, 1, 0)),
    "coronal": ((1, 0, 0), (0, 0, -1)),
    "sagittal": ((0, 1, 0), (0, 0, -1)),
    "double_oblique": (tuple(_OBLIQUE[:, 0]), tuple(_OBLIQUE[:, 1])),
}


@pytest.fixture
def convert(capsys, tmp_path):
    def run(inp: Path, *args: str, out: Path = None) -> Path:
        out = out or tmp_path / "out"
        capsys.readouterr()
        rc = cli_main.main(["convert", str(inp), str(out), "--quiet", *args])
        err = capsys.readouterr().err
        assert rc == 0, err
        assert "Traceback" not in err and "error" not in err, err
        return out
    return run


def _values(shape, lo=-1000, hi=3000, seed=0, dtype=np.int16) -> np.ndarray:
    return np.random.default_rng(seed).integers(lo, hi, size=shape).astype(dtype)


def _source_affine(origin, row, col, spacing) -> np.ndarray:
    """The right answer: voxel (i=column, j=row, k=slice) of the written series -> RAS."""
    row = np.asarray(row, float) / np.linalg.norm(row)
    col = np.asarray(col, float) / np.linalg.norm(col)
    sx, sy, sz = spacing
    lps = np.eye(4)
    lps[:3, 0] = row * sx
    lps[:3, 1] = col * sy
    lps[:3, 2] = np.cross(row, col) * sz
    lps[:3, 3] = origin
    return RAS_FROM_LPS @ lps


def _scramble(paths: List[Path], seed: int = 0) -> List[Path]:
    """Random names without extension, InstanceNumber reversed; returns the paths in slice order."""
    rng = np.random.default_rng(seed)
    n = len(paths)
    out = []
    for k, p in enumerate(paths):
        ds = pydicom.dcmread(p)
        ds.InstanceNumber = n - k
        p.unlink()
        new = p.with_name(rng.bytes(8).hex())
        ds.save_as(new)
        out.append(new)
    return out


def _assert_image_matches(img: nib.Nifti1Image, volume_zyx: np.ndarray, src_affine: np.ndarray,
                          atol: float = 1e-4) -> None:
    """Every output voxel holds the value written at the same place in the patient."""
    # Output voxel -> written voxel must be a whole-voxel map (a permutation/flip of the grid).
    m = np.linalg.inv(src_affine) @ img.affine
    grid = np.round(m)
    np.testing.assert_allclose(m, grid, atol=1e-4)
    data = np.asanyarray(img.dataobj)
    ijk = np.indices(data.shape[:3]).reshape(3, -1)
    src = (grid[:3, :3] @ ijk + grid[:3, 3:]).astype(int)
    expected = volume_zyx[src[2], src[1], src[0]].reshape(data.shape[:3])
    np.testing.assert_allclose(data, expected, atol=atol, rtol=0)
    # And, as documented, i follows the DICOM column, j the row, k rises along the slice normal.
    np.testing.assert_allclose(img.affine, src_affine, atol=1e-4)


def _sidecar(out: Path, stem: str = STEM) -> dict:
    return json.loads((out / f"{stem}.json").read_text())


# -- classic 3D orientations ---------------------------------------------------------------------

@pytest.mark.parametrize("orientation", list(ORIENTATIONS), ids=list(ORIENTATIONS))
def test_orientation_affine_values_and_itk(tmp_path, convert, orientation):
    row, col = ORIENTATIONS[orientation]
    vol = _values(SHAPE)
    paths = sample.write_series(tmp_path / "in", vol, spacing=SPACING, origin_lps=ORIGIN, row_dir=row,
                                col_dir=col, file_names="shuffled-noext")
    _scramble(paths, seed=len(orientation))
    out = convert(tmp_path / "in")
    img = nib.load(str(out / f"{STEM}.nii.gz"))
    assert img.shape == (32, 24, 10)
    src = _source_affine(ORIGIN, row, col, SPACING)
    _assert_image_matches(img, vol, src)
    np.testing.assert_allclose(img.header.get_zooms(), SPACING, atol=1e-5)
    assert int(img.header["sform_code"]) == 1 and int(img.header["qform_code"]) == 1
    np.testing.assert_allclose(img.get_qform(), src, atol=1e-4)

    # Explicit voxel -> RAS points, straight from the definition.
    normal = np.cross(np.asarray(row, float) / np.linalg.norm(row), np.asarray(col, float) / np.linalg.norm(col))
    for i, j, k in [(0, 0, 0), (31, 0, 0), (0, 23, 0), (0, 0, 9), (5, 7, 3), (31, 23, 9)]:
        lps = (np.asarray(ORIGIN) + i * SPACING[0] * np.asarray(row, float) / np.linalg.norm(row)
               + j * SPACING[1] * np.asarray(col, float) / np.linalg.norm(col) + k * SPACING[2] * normal)
        ras = img.affine @ [i, j, k, 1]
        np.testing.assert_allclose(ras[:3], [-lps[0], -lps[1], lps[2]], atol=1e-4)

    # SimpleITK (GDCM's slice sorting) agrees on origin, spacing, direction and voxels.
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(tmp_path / "in")))
    itk = reader.Execute()
    lps_aff = RAS_FROM_LPS @ img.affine
    spacing = np.linalg.norm(lps_aff[:3, :3], axis=0)
    np.testing.assert_allclose(itk.GetOrigin(), lps_aff[:3, 3], atol=1e-4)
    np.testing.assert_allclose(itk.GetSpacing(), spacing, atol=1e-5)
    np.testing.assert_allclose(np.reshape(itk.GetDirection(), (3, 3)), lps_aff[:3, :3] / spacing, atol=1e-5)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(itk), np.asanyarray(img.dataobj).T)


def test_uncompressed_output_is_the_same(tmp_path, convert):
    row, col = ORIENTATIONS["double_oblique"]
    vol = _values(SHAPE, seed=5)
    sample.write_series(tmp_path / "in", vol, spacing=SPACING, origin_lps=ORIGIN, row_dir=row, col_dir=col)
    out = convert(tmp_path / "in", "--no-gz")
    assert sorted(p.name for p in out.iterdir()) == [f"{STEM}.json", f"{STEM}.nii"]
    _assert_image_matches(nib.load(str(out / f"{STEM}.nii")), vol, _source_affine(ORIGIN, row, col, SPACING))


# -- values and scaling ------------------------------------------------------------------------------

def test_ct_intercept_keeps_stored_int16_losslessly(tmp_path, convert):
    hu = _values(SHAPE, lo=-1024, hi=2500, seed=1)
    hu[:, :3, :] = -2000            # padding outside the field of view, below -1024: stored < 0
    paths = sample.write_series(tmp_path / "in", hu, modality="CT", spacing=SPACING, origin_lps=ORIGIN,
                                intercept=-1024.0, slope=1.0)
    out = convert(tmp_path / "in")
    img = nib.load(str(out / f"{STEM}.nii.gz"))
    assert img.get_data_dtype() == np.int16
    # nibabel moves the header's scl_slope/scl_inter into dataobj when it loads a file.
    assert float(img.dataobj.slope) == 1.0 and float(img.dataobj.inter) == -1024.0
    stored = np.stack([pydicom.dcmread(p).pixel_array for p in paths])
    assert stored.dtype == np.int16
    np.testing.assert_array_equal(np.asanyarray(img.dataobj.get_unscaled()).T, stored)
    _assert_image_matches(img, hu, _source_affine(ORIGIN, (1, 0, 0), (0, 1, 0), SPACING), atol=0)  # HU exactly
    assert _sidecar(out)["RescaleIntercept"] == -1024.0


def test_rescale_slope_varying_per_slice_gives_float_values(tmp_path, convert):
    stored = _values((5, 24, 32), lo=0, hi=1000, seed=2, dtype=np.uint16)
    paths = sample.write_series(tmp_path / "in", stored, modality="MR", spacing=SPACING, origin_lps=ORIGIN,
                                intercept=0.0, slope=1.0, extra={"RescaleIntercept": -10.0})
    slopes = [0.5, 1.0, 2.0, 0.25, 4.0]
    for p, s in zip(paths, slopes):
        ds = pydicom.dcmread(p)
        ds.RescaleSlope = s
        ds.save_as(p)
    _scramble(paths, seed=9)
    out = convert(tmp_path / "in")
    img = nib.load(str(out / f"{STEM}.nii.gz"))
    assert img.get_data_dtype().kind == "f"
    expected = stored.astype(np.float64) * np.array(slopes)[:, None, None] - 10.0
    _assert_image_matches(img, expected, _source_affine(ORIGIN, (1, 0, 0), (0, 1, 0), SPACING), atol=1e-3)
    assert any("vary" in w for w in _sidecar(out)["MedPrepProvenance"]["warnings"])


def test_monochrome1_dx_is_inverted_with_imager_pixel_spacing(tmp_path, convert):
    image = _values((1, 40, 30), lo=0, hi=4096, seed=3, dtype=np.uint16)
    path = sample.write_series(tmp_path / "in", image, modality="DX", photometric="MONOCHROME1",
                               spacing=(0.15, 0.2, 1.0))[0]
    ds = pydicom.dcmread(path)
    assert "PixelSpacing" not in ds and [float(v) for v in ds.ImagerPixelSpacing] == [0.2, 0.15]
    assert int(ds.BitsStored) == 12
    out = convert(tmp_path / "in")
    img = nib.load(str(out / f"{STEM}.nii.gz"))
    data = np.asanyarray(img.dataobj)
    assert data.shape[:2] == (30, 40) and int(np.prod(data.shape)) == 30 * 40
    np.testing.assert_array_equal(data.reshape(30, 40), 4095 - image[0].T.astype(np.int32))
    np.testing.assert_allclose(img.header.get_zooms()[:2], (0.15, 0.2), atol=1e-6)
    side = _sidecar(out)
    assert side["PhotometricInterpretation"] == "MONOCHROME2"
    assert side.get("InvertedFromMonochrome1") is True
    assert side.get("PixelSpacingSource") == "ImagerPixelSpacing" or any(
        "ImagerPixelSpacing" in w for w in side["MedPrepProvenance"]["warnings"])


def test_monochrome1_window_moves_with_the_inversion(tmp_path, convert):
    """A window that showed the MONOCHROME1 image shows the inverted image the same way."""
    image = _values((1, 16, 12), lo=0, hi=4096, seed=5, dtype=np.uint16)
    sample.write_series(tmp_path / "in", image, modality="DX", photometric="MONOCHROME1",
                        extra={"WindowCenter": 1000, "WindowWidth": 800, "RescaleSlope": 1, "RescaleIntercept": 0})
    out = convert(tmp_path / "in")
    side = _sidecar(out)
    assert side["WindowCenterDICOM"] == 1000 and side["WindowWidth"] == 800
    assert side["WindowCenter"] == 4095 - 1000
    data = np.asanyarray(nib.load(str(out / f"{STEM}.nii.gz")).dataobj).reshape(12, 16).T

    def linear_window(v, c, w):
        return np.clip((v - (c - 0.5)) / (w - 1) + 0.5, 0, 1)

    # MONOCHROME1 display: 1 - window(original); MONOCHROME2 display of ours: window(inverted).
    np.testing.assert_allclose(linear_window(data, side["WindowCenter"], 800),
                               1 - linear_window(image[0].astype(float), 1000, 800), atol=2e-3)


def test_12bit_unsigned_with_garbage_high_bits_is_masked(tmp_path, convert):
    vol = _values((4, 24, 32), lo=0, hi=4096, seed=4, dtype=np.uint16)
    paths = sample.write_series(tmp_path / "in", vol, modality="MR", spacing=SPACING, origin_lps=ORIGIN)
    rng = np.random.default_rng(4)
    for k, p in enumerate(paths):
        ds = pydicom.dcmread(p)
        assert int(ds.BitsStored) == 12 and int(ds.PixelRepresentation) == 0
        garbage = rng.integers(1, 16, size=vol[k].shape).astype(np.uint16) << 12
        ds.PixelData = (vol[k] | garbage).astype("<u2").tobytes()
        ds.save_as(p)
    out = convert(tmp_path / "in")
    _assert_image_matches(nib.load(str(out / f"{STEM}.nii.gz")), vol,
                          _source_affine(ORIGIN, (1, 0, 0), (0, 1, 0), SPACING))


def test_12bit_signed_is_sign_extended(tmp_path, convert):
    vol = _values((4, 24, 32), lo=-2048, hi=2048, seed=6)
    paths = sample.write_series(tmp_path / "in", vol, modality="MR", spacing=SPACING, origin_lps=ORIGIN)
    rng = np.random.default_rng(6)
    for k, p in enumerate(paths):
        ds = pydicom.dcmread(p)
        assert int(ds.BitsStored) == 12 and int(ds.PixelRepresentation) == 1
        # 12-bit two's complement in the low bits, anything at all in the 4 bits above.
        low = vol[k].astype(np.int32) & 0x0FFF
        raw = (low | (rng.integers(0, 16, size=low.shape) << 12)).astype("<u2")
        ds.PixelData = raw.tobytes()
        ds.save_as(p)
    out = convert(tmp_path / "in")
    img = nib.load(str(out / f"{STEM}.nii.gz"))
    assert np.asanyarray(img.dataobj).min() < 0
    _assert_image_matches(img, vol, _source_affine(ORIGIN, (1, 0, 0), (0, 1, 0), SPACING))


# -- 4D and split series ---------------------------------------------------------------------------

def test_4d_time_series_from_single_slice_files(tmp_path, convert):
    vol = _values((3, 5, 24, 32), seed=7)
    paths = sample.write_series(tmp_path / "in", vol, modality="MR", spacing=SPACING, origin_lps=ORIGIN,
                                file_names="shuffled-noext",
                                extra={"AcquisitionNumber": None, "AcquisitionTime": None})
    # Only TemporalPositionIdentifier tells the time points apart; InstanceNumber runs backwards.
    assert pydicom.dcmread(paths[-1]).TemporalPositionIdentifier == 3
    _scramble(paths, seed=7)
    out = convert(tmp_path / "in")
    img = nib.load(str(out / f"{STEM}.nii.gz"))
    assert img.shape == (32, 24, 5, 3)
    data = np.asanyarray(img.dataobj)
    for t in range(3):
        np.testing.assert_array_equal(data[..., t], vol[t].T)
    np.testing.assert_allclose(img.affine, _source_affine(ORIGIN, (1, 0, 0), (0, 1, 0), SPACING), atol=1e-4)


def _write_parts(folder: Path, parts: Sequence[dict], n: int = 4) -> List[np.ndarray]:
    """Several image kinds under one SeriesInstanceUID; returns the volume written for each part."""
    uid = generate_uid()
    vols = []
    for i, extra in enumerate(parts):
        vol = _values((n, 24, 32), lo=0 if i == 0 else -2000, hi=2000, seed=20 + i)
        sample.write_series(folder / f"part{i}", vol, modality="MR", spacing=SPACING, origin_lps=ORIGIN,
                            series_uid=uid, extra=extra)
        vols.append(vol)
    return vols


def test_multi_echo_gives_e2_output(tmp_path, convert):
    vols = _write_parts(tmp_path / "in", [{"EchoNumbers": 1, "EchoTime": 3.0},
                                         {"EchoNumbers": 2, "EchoTime": 6.0}])
    out = convert(tmp_path / "in")
    names = sorted(p.name for p in out.glob("*.nii.gz"))
    assert len(names) == 2 and f"{STEM}_e2.nii.gz" in names
    first = [n for n in names if n != f"{STEM}_e2.nii.gz"][0]
    src = _source_affine(ORIGIN, (1, 0, 0), (0, 1, 0), SPACING)
    _assert_image_matches(nib.load(str(out / first)), vols[0], src)
    _assert_image_matches(nib.load(str(out / f"{STEM}_e2.nii.gz")), vols[1], src)
    side = _sidecar(out, f"{STEM}_e2")
    assert side["EchoTime"] == pytest.approx(0.006) and side["EchoNumber"] == 2


def test_magnitude_and_phase_give_ph_output(tmp_path, convert):
    vols = _write_parts(tmp_path / "in", [{"ImageType": ["ORIGINAL", "PRIMARY", "M", "ND"]},
                                         {"ImageType": ["ORIGINAL", "PRIMARY", "P", "ND"]}])
    out = convert(tmp_path / "in")
    names = sorted(p.name[: -len(".nii.gz")] for p in out.glob("*.nii.gz"))
    assert len(names) == 2
    phase = [n for n in names if n.endswith("_ph")]
    magnitude = [n for n in names if "_ph" not in n]
    assert len(phase) == 1 and len(magnitude) == 1
    src = _source_affine(ORIGIN, (1, 0, 0), (0, 1, 0), SPACING)
    _assert_image_matches(nib.load(str(out / f"{magnitude[0]}.nii.gz")), vols[0], src)
    _assert_image_matches(nib.load(str(out / f"{phase[0]}.nii.gz")), vols[1], src)


def test_derived_and_localizer_are_separated_and_dropped_on_request(tmp_path, convert):
    uid = generate_uid()
    vol = _values((4, 24, 32), seed=30)
    sample.write_series(tmp_path / "in" / "orig", vol, modality="MR", spacing=SPACING, origin_lps=ORIGIN,
                        series_uid=uid)
    sample.write_series(tmp_path / "in" / "derived", _values((4, 24, 32), seed=31), modality="MR",
                        spacing=SPACING, origin_lps=ORIGIN, series_uid=uid,
                        extra={"ImageType": ["DERIVED", "SECONDARY", "M", "ND"]})
    sample.write_series(tmp_path / "in" / "loc", _values((1, 24, 32), seed=32), modality="MR",
                        spacing=SPACING, origin_lps=(0, 0, 0), row_dir=(1, 0, 0), col_dir=(0, 0, -1),
                        series_uid=uid, extra={"ImageType": ["ORIGINAL", "PRIMARY", "LOCALIZER"]})
    sample.write_series(tmp_path / "in" / "scout", _values((1, 24, 32), seed=33), modality="MR",
                        series_number=9, series_description="scout",
                        extra={"ImageType": ["ORIGINAL", "PRIMARY", "LOCALIZER"]})
    out = convert(tmp_path / "in")
    names = sorted(p.name[: -len(".nii.gz")] for p in out.glob("*.nii.gz"))
    assert len(names) == 4 and STEM in names and "9_scout" in names
    assert f"{STEM}_derived" in names and f"{STEM}_i" in names
    _assert_image_matches(nib.load(str(out / f"{STEM}.nii.gz")), vol,
                          _source_affine(ORIGIN, (1, 0, 0), (0, 1, 0), SPACING))

    kept = convert(tmp_path / "in", "--ignore-derived", out=tmp_path / "kept")
    assert sorted(p.name for p in kept.iterdir()) == [f"{STEM}.json", f"{STEM}.nii.gz"]
    _assert_image_matches(nib.load(str(kept / f"{STEM}.nii.gz")), vol,
                          _source_affine(ORIGIN, (1, 0, 0), (0, 1, 0), SPACING))


def _multiframe(tmp_path, with_geometry: bool):
    """One legacy multi-frame file (no functional groups) holding a 4-frame stack."""
    stack = _values((4, 6, 5), lo=0, hi=1000, seed=9, dtype=np.uint16)
    path = sample.write_series(tmp_path / "in", stack[:1], modality="MR", spacing=(0.5, 0.6, 2.0),
                               origin_lps=ORIGIN)[0]
    ds = pydicom.dcmread(path)
    ds.NumberOfFrames = 4
    ds.PixelData = stack.astype("<u2").tobytes()
    if with_geometry:
        ds.SpacingBetweenSlices = 2.0
    else:
        del ds.ImagePositionPatient
    ds.save_as(path)
    return stack


@pytest.mark.parametrize("with_geometry", [True, False])
def test_classic_multiframe_reads_every_frame(tmp_path, convert, with_geometry):
    stack = _multiframe(tmp_path, with_geometry)
    out = convert(tmp_path / "in")
    img = nib.load(str(out / f"{STEM}.nii.gz"))
    assert img.shape == (5, 6, 4)
    np.testing.assert_array_equal(np.asanyarray(img.dataobj), stack.transpose(2, 1, 0))
    if with_geometry:
        np.testing.assert_allclose(img.affine[:3, 2], [0, 0, 2.0], atol=1e-6)
        np.testing.assert_allclose(img.affine[:3, 3], [-ORIGIN[0], -ORIGIN[1], ORIGIN[2]], atol=1e-6)
