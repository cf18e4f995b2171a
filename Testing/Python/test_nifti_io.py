"""NIfTI reading and writing against nibabel: every layout nibabel writes reads back the same."""
from __future__ import annotations

import gzip

import nibabel as nib
import numpy as np
import pytest

from MedPrepLib.errors import MedPrepError
from MedPrepLib.nifti import read_nifti, set_gzip_threads, write_nifti
from MedPrepLib.volume import Volume

AFFINE = np.array([[-0.8, 0.1, 0.0, 90.0], [0.0, 0.75, -0.2, -120.0], [0.05, 0.0, 2.5, 33.0], [0, 0, 0, 1]])


def _expected(img: nib.Nifti1Image):
    """(z, y, x[, ...]) stored values, slope, inter, affine as nibabel sees them."""
    data = np.asanyarray(img.dataobj.get_unscaled())
    return np.ascontiguousarray(data.T), img.dataobj.slope, img.dataobj.inter, img.affine


@pytest.mark.parametrize("kind", [nib.Nifti1Image, nib.Nifti2Image])
@pytest.mark.parametrize("dtype", ["<i2", ">i2", "<f4", ">f8", "u1"])
@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_read_equals_nibabel(tmp_path, kind, dtype, suffix):
    rng = np.random.default_rng(0)
    data = (rng.normal(size=(7, 6, 5)) * 50).astype(np.dtype(dtype).newbyteorder("="))
    img = kind(data.astype(dtype), AFFINE)
    img.header.set_data_dtype(np.dtype(dtype))
    img.header.set_slope_inter(2.0, -3.0)
    img.header.extensions.append(nib.nifti1.Nifti1Extension("comment", b"an extension moves the voxels"))
    path = tmp_path / f"img{suffix}"
    nib.save(img, path)
    expected, slope, inter, affine = _expected(nib.load(path))
    vol = read_nifti(path)
    assert vol.array.dtype.isnative and vol.array.shape == (5, 6, 7)
    np.testing.assert_array_equal(vol.array, expected)
    assert (vol.slope, vol.inter) == (slope, inter) == (2.0, -3.0)
    np.testing.assert_allclose(vol.affine, affine)


def test_4d_and_2d_and_no_scaling(tmp_path):
    for shape in [(4, 3, 2, 5), (9, 8)]:
        data = np.arange(np.prod(shape), dtype=np.int16).reshape(shape)
        nib.save(nib.Nifti1Image(data, np.eye(4)), tmp_path / "x.nii.gz")
        vol = read_nifti(tmp_path / "x.nii.gz")
        np.testing.assert_array_equal(vol.array, data.T)
        assert (vol.slope, vol.inter) == (1.0, 0.0)


@pytest.mark.parametrize("threads", [1, 2])
def test_round_trip_of_a_strided_view(tmp_path, threads):
    base = np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6)
    view = np.flip(np.transpose(base, (0, 2, 1)), 1)  # what a reorientation hands the writer
    set_gzip_threads(threads)
    try:
        write_nifti(Volume(view, AFFINE), tmp_path / "v.nii.gz")
    finally:
        set_gzip_threads(2)
    np.testing.assert_array_equal(read_nifti(tmp_path / "v.nii.gz").array, view)
    np.testing.assert_array_equal(np.asanyarray(nib.load(tmp_path / "v.nii.gz").dataobj).T, view)


@pytest.mark.parametrize("damage", ["truncated", "not nifti", "empty"])
def test_damaged_files_give_one_clear_error(tmp_path, damage):
    nib.save(nib.Nifti1Image(np.ones((8, 8, 8), np.int16), np.eye(4)), tmp_path / "ok.nii")
    raw = (tmp_path / "ok.nii").read_bytes()
    payload = {"truncated": raw[:-100], "not nifti": b"\x00" * 400, "empty": b""}[damage]
    bad = tmp_path / "bad.nii.gz"
    bad.write_bytes(gzip.compress(payload))
    with pytest.raises(MedPrepError, match="cannot read NIfTI"):
        read_nifti(bad)


@pytest.mark.parametrize("shape", [(30, 40, 50), (3, 30, 40, 50)])
def test_a_reoriented_view_is_written_without_a_whole_copy(tmp_path, shape):
    """A permuted and flipped view (what `orient` returns) is written slice by slice: exact voxels,
    and the writer's peak allocation stays far below the array's size."""
    import io
    import tracemalloc

    from MedPrepLib.nifti import _write_stream

    base = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
    view = np.flip(np.swapaxes(base, -1, -3), -2)  # strided, not C-contiguous
    assert not view.flags.c_contiguous
    vol = Volume(view, np.diag([2.0, 1.0, 1.5, 1.0]))
    sink = io.BytesIO()
    tracemalloc.start()
    try:
        _write_stream(sink, vol)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak - len(sink.getvalue()) < view.nbytes / 4, f"peak {peak} bytes for a {view.nbytes}-byte array"
    path = tmp_path / "v.nii"
    path.write_bytes(sink.getvalue())
    np.testing.assert_array_equal(read_nifti(path).array, view)
