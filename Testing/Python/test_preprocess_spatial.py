"""Spatial preprocessing steps against known answers: orientation, resampling, crop/pad, label alignment."""
from __future__ import annotations

import itertools

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from MedPrepLib.errors import MedPrepError
from MedPrepLib.preprocess import load_pipeline, run_pipeline
from MedPrepLib.preprocess.orient import AXCODES, axcodes_of, reorient_array
from MedPrepLib.volume import Volume


def oblique_affine(spacing=(0.8, 0.9, 2.5), origin=(-20.0, 31.0, 7.5), angle=0.3):
    """A LPI-ish affine, rotated a little about z, so no axis is trivially aligned."""
    c, s = np.cos(angle), np.sin(angle)
    rot = np.array([[-c, s, 0], [-s, -c, 0], [0, 0, -1.0]])
    aff = np.eye(4)
    aff[:3, :3] = rot * np.asarray(spacing)
    aff[:3, 3] = origin
    return aff


def step(name, **params):
    return load_pipeline([{"step": name, **params}])


def world_of(affine, shape_zyx):
    """World coordinates of every voxel centre, array-shaped (z, y, x, 3)."""
    k, j, i = np.meshgrid(*[np.arange(n) for n in shape_zyx], indexing="ij")
    ijk1 = np.stack([i, j, k, np.ones_like(i)], axis=-1).astype(float)
    return (ijk1 @ affine.T)[..., :3]


# ---------------------------------------------------------------- orientation

def test_all_48_axcodes_are_exact_permutations_matching_nibabel():
    arr = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6)
    aff = oblique_affine()
    assert axcodes_of(aff) == "LPI"
    for code in AXCODES:
        out, out_aff = reorient_array(arr, aff, code)
        assert axcodes_of(out_aff) == code
        # Every voxel keeps its value at its place in space.
        src = world_of(aff, arr.shape).reshape(-1, 3)
        dst = world_of(out_aff, out.shape).reshape(-1, 3)
        order_src = np.lexsort(np.round(src, 6).T)
        order_dst = np.lexsort(np.round(dst, 6).T)
        np.testing.assert_allclose(src[order_src], dst[order_dst], atol=1e-9)
        np.testing.assert_array_equal(arr.reshape(-1)[order_src], out.reshape(-1)[order_dst])
        # Independent answer: nibabel's orientation transform on the (x, y, z) array.
        ornt = nib.orientations.ornt_transform(nib.orientations.io_orientation(aff),
                                               nib.orientations.axcodes2ornt(tuple(code)))
        ref = nib.orientations.apply_orientation(arr.T, ornt)
        np.testing.assert_array_equal(out, np.ascontiguousarray(ref.T))
        np.testing.assert_allclose(out_aff, aff @ nib.orientations.inv_ornt_aff(ornt, arr.T.shape), atol=1e-9)


def test_orientation_round_trip_and_4d():
    rng = np.random.default_rng(1)
    arr = rng.integers(0, 1000, size=(3, 4, 5, 6)).astype(np.int16)
    aff = oblique_affine()
    for code in ("RAS", "PIR", "SLA"):
        out, out_aff = reorient_array(arr, aff, code)
        assert out.shape[0] == 3 and np.shares_memory(out, arr)  # a view: no copy of the volume
        back, back_aff = reorient_array(out, out_aff, "LPI")
        np.testing.assert_array_equal(back, arr)
        np.testing.assert_allclose(back_aff, aff, atol=1e-9)


def test_orient_step_matches_simpleitk_dicomorient():
    arr = np.random.default_rng(2).normal(size=(7, 8, 9)).astype(np.float32)
    aff = np.diag([-1.0, 1.0, 2.0, 1.0])  # L, A, S
    vol = Volume(arr, aff)
    out, _ = run_pipeline(vol, step("orient", axcodes="LPS"))
    ref = sitk.DICOMOrient(vol.to_sitk(), "LPS")
    np.testing.assert_array_equal(out.array, sitk.GetArrayFromImage(ref))
    np.testing.assert_allclose(out.to_sitk().GetOrigin(), ref.GetOrigin(), atol=1e-9)
    assert out.history[-1] == {"step": "orient", "params": {"axcodes": "LPS"}}
    assert vol.history == []  # the input is not modified


# ---------------------------------------------------------------- resampling

def ct_like(shape=(20, 40, 36), spacing=(0.7, 0.8, 2.0), seed=0):
    rng = np.random.default_rng(seed)
    z, y, x = np.indices(shape)
    arr = (np.sin(x / 3.0) * 100 + np.cos(y / 4.0) * 80 + z * 5 + rng.normal(0, 5, shape)).astype(np.float32)
    aff = oblique_affine(spacing)
    return Volume(arr, aff)


def centre_and_extent(img):
    size = np.array(img.GetSize())
    centre = img.TransformContinuousIndexToPhysicalPoint(((size - 1) / 2.0).tolist())
    return np.array(centre), size * np.array(img.GetSpacing())


@pytest.mark.parametrize("interp,sitk_interp", [("linear", sitk.sitkLinear), ("bspline", sitk.sitkBSpline),
                                                ("nearest", sitk.sitkNearestNeighbor)])
def test_resample_to_spacing_equals_plain_simpleitk_and_keeps_centre(interp, sitk_interp):
    vol = ct_like()
    new_spacing = [1.1, 1.3, 1.5]
    out, _ = run_pipeline(vol, step("resample", spacing=new_spacing, interpolator=interp, through_plane=interp))
    src = vol.to_sitk()
    size = [int(round(n * s / t)) for n, s, t in zip(src.GetSize(), src.GetSpacing(), new_spacing)]
    centre, extent = centre_and_extent(src)
    direction = np.reshape(src.GetDirection(), (3, 3))
    origin = centre - direction @ ((np.array(size) - 1) / 2.0 * np.array(new_spacing))
    ref = sitk.Resample(src, size, sitk.Transform(), sitk_interp, origin.tolist(), new_spacing,
                        src.GetDirection(), 0.0, sitk.sitkFloat32)
    np.testing.assert_allclose(out.array, sitk.GetArrayFromImage(ref), rtol=1e-5, atol=1e-4)
    got = out.to_sitk()
    np.testing.assert_allclose(got.GetSpacing(), new_spacing, atol=1e-9)
    got_centre, got_extent = centre_and_extent(got)
    np.testing.assert_allclose(got_centre, centre, atol=1e-6)
    np.testing.assert_allclose(got_extent, extent, atol=np.max(new_spacing) / 2 + 1e-6)


def test_resample_to_size_and_to_reference(tmp_path):
    vol = ct_like()
    out, _ = run_pipeline(vol, step("resample", size=[24, 30]))
    assert out.shape_xyz == (24, 30, 20)
    np.testing.assert_allclose(np.array(out.shape_xyz) * out.spacing, np.array(vol.shape_xyz) * vol.spacing)
    ref_img = sitk.Image([10, 12, 9], sitk.sitkUInt8)
    ref_img.SetSpacing([2.0, 2.5, 3.0])
    ref_img.SetOrigin([-10.0, 5.0, 3.0])
    ref_path = tmp_path / "ref.nii.gz"
    sitk.WriteImage(ref_img, str(ref_path))
    out, _ = run_pipeline(vol, step("resample", reference=str(ref_path)))
    ref = sitk.ReadImage(str(ref_path))
    expected = sitk.Resample(vol.to_sitk(), ref, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    np.testing.assert_allclose(out.array, sitk.GetArrayFromImage(expected), atol=1e-4)
    np.testing.assert_allclose(out.to_sitk().GetOrigin(), ref.GetOrigin(), atol=1e-5)


def test_anisotropic_resampling_is_separate_in_plane_and_through_plane():
    # Each slice is constant (its index): nearest through-plane must give only original slice values,
    # while a plain linear 3D resampling blends neighbouring slices.
    shape = (10, 24, 24)
    arr = np.broadcast_to(np.arange(shape[0], dtype=np.float32)[:, None, None], shape).copy()
    vol = Volume(arr, np.diag([0.5, 0.5, 4.0, 1.0]))
    out, _ = run_pipeline(vol, step("resample", spacing=[1.0, 1.0, 1.5], interpolator="linear"))
    assert set(np.unique(out.array)) <= set(range(shape[0]))
    assert out.spacing == pytest.approx((1.0, 1.0, 1.5))
    blended, _ = run_pipeline(vol, step("resample", spacing=[1.0, 1.0, 1.5], anisotropy_threshold=10.0))
    assert not set(np.unique(blended.array)) <= set(range(shape[0]))


def test_resample_2d_image_keeps_single_slice():
    arr = np.random.default_rng(3).uniform(0, 255, size=(1, 50, 40)).astype(np.float32)
    vol = Volume(arr, np.diag([0.2, 0.2, 1.0, 1.0]))
    out, _ = run_pipeline(vol, step("resample", size=[32, 32], interpolator="bspline"))
    assert out.array.shape == (1, 32, 32)
    assert abs(float(out.array.mean()) - float(arr.mean())) < 5


# ---------------------------------------------------------------- crop / pad

def test_crop_pad_centre_keeps_positions_and_fills():
    arr = np.arange(6 * 8 * 10, dtype=np.float32).reshape(6, 8, 10)
    vol = Volume(arr, oblique_affine())
    out, _ = run_pipeline(vol, step("crop_pad", shape=[6, 12, 4], fill=-7))
    assert out.array.shape == (4, 12, 6)
    # Output voxel (x, y, z) = input voxel (x + 2, y - 2, z + 1): crop 2 in x, pad 2 in y, crop 1 in z.
    np.testing.assert_array_equal(out.array[:, 2:10, :], arr[1:5, :, 2:8])
    assert np.all(out.array[:, :2] == -7) and np.all(out.array[:, 10:] == -7)
    np.testing.assert_allclose(out.affine[:3, 3], (vol.affine @ [2, -2, 1, 1])[:3])


@pytest.mark.parametrize("pipeline", [
    [{"step": "orient", "axcodes": "RAS"}],
    [{"step": "crop_pad", "shape": [6, 12, 4], "fill": -1024}],
    [{"step": "orient", "axcodes": "LPS"}, {"step": "crop_pad", "shape": [12, 6, 4], "fill": -1024}],
])
def test_spatial_steps_keep_stored_values_and_scaling(pipeline):
    """A step that only moves voxels keeps a scaled integer volume's stored values, dtype, slope
    and intercept (no silent float copy, no rescale reset to 1/0), and its real-world values."""
    stored = np.arange(6 * 8 * 10, dtype=np.int16).reshape(6, 8, 10)
    vol = Volume(stored, oblique_affine(), slope=2.0, inter=-1024.0)
    label = Volume(np.ones(stored.shape, np.uint8), oblique_affine(), slope=3.0, inter=1.0)
    out, olabel = run_pipeline(vol, load_pipeline(pipeline), label)
    assert out.array.dtype == np.int16 and (out.slope, out.inter) == (2.0, -1024.0)
    assert olabel.array.dtype == np.uint8 and (olabel.slope, olabel.inter) == (3.0, 1.0)
    world = world_of(out.affine, out.array.shape)
    world1 = np.c_[world.reshape(-1, 3), np.ones(world[..., 0].size)].T
    src = np.rint(np.linalg.solve(vol.affine, world1)[:3]).astype(int)
    inside = np.all((src >= 0) & (src < np.array(vol.shape_xyz)[:, None]), axis=0).reshape(out.array.shape)
    i, j, k = src
    moved = stored[np.clip(k, 0, 5), np.clip(j, 0, 7), np.clip(i, 0, 9)].reshape(out.array.shape)
    np.testing.assert_array_equal(out.array[inside], moved[inside])
    assert np.all(out.scaled()[~inside] == -1024)       # padding in real-world units


def test_crop_pad_fill_without_a_stored_value_gives_real_world_values():
    """A fill the stored type cannot hold (here -1023.5 with slope 2) turns the output into real-world floats."""
    stored = np.arange(4 * 4 * 4, dtype=np.int16).reshape(4, 4, 4)
    vol = Volume(stored, oblique_affine(), slope=2.0, inter=-1024.0)
    out, _ = run_pipeline(vol, step("crop_pad", shape=[6, 4, 4], fill=-1023.5))
    assert (out.slope, out.inter) == (1.0, 0.0) and out.array.dtype.kind == "f"
    np.testing.assert_array_equal(out.array[:, :, 1:5], vol.scaled())
    assert np.all(out.array[:, :, [0, 5]] == -1023.5)


def test_crop_pad_foreground_centres_on_label():
    arr = np.zeros((20, 30, 30), np.float32)
    lab = np.zeros((20, 30, 30), np.uint8)
    lab[5:9, 20:26, 2:6] = 1
    arr[lab > 0] = 100
    vol, label = Volume(arr, np.eye(4)), Volume(lab, np.eye(4))
    out, olab = run_pipeline(vol, step("crop_pad", shape=[10, 10, 10], centre="foreground"), label)
    assert olab.array.sum() == lab.sum()
    # The window stays inside the image where it fits: x starts at 0 (bbox 2..5), not at -1.
    np.testing.assert_allclose(out.affine[:3, 3], [0, 18, 2])


# ---------------------------------------------------------------- labels follow the image

SPATIAL_CASES = [
    [{"step": "orient", "axcodes": "RAS"}],
    [{"step": "orient", "axcodes": "SPL"}],
    [{"step": "resample", "spacing": [1.2, 1.1, 1.4], "interpolator": "nearest"}],
    [{"step": "resample", "spacing": [0.9, 0.9, 0.6], "interpolator": "nearest", "through_plane": "nearest"}],
    [{"step": "resample", "size": [33, 21, 17], "interpolator": "nearest"}],
    [{"step": "crop_pad", "shape": [30, 50, 24]}],
    [{"step": "crop_pad", "shape": [16, 16, 8], "centre": "foreground"}],
    [{"step": "orient", "axcodes": "RAS"}, {"step": "resample", "spacing": [1.5, 1.5, 1.5], "interpolator": "nearest"},
     {"step": "crop_pad", "shape": [20, 20, 20], "centre": "foreground"}],
]


@pytest.mark.parametrize("steps", SPATIAL_CASES, ids=lambda s: "+".join(x["step"] for x in s))
def test_label_stays_voxel_aligned_after_every_spatial_step(steps):
    shape = (20, 40, 36)
    lab = np.zeros(shape, np.uint8)
    lab[6:13, 10:25, 8:20] = 1
    lab[8:11, 14:20, 11:15] = 2
    vol = Volume(lab.astype(np.float32) * 100, oblique_affine(spacing=(0.7, 0.8, 2.0)))
    label = Volume(lab, vol.affine.copy())
    pipeline = load_pipeline(steps)
    for n in range(1, len(steps) + 1):
        out, olab = run_pipeline(vol, load_pipeline(steps[:n]), label)
        np.testing.assert_array_equal(olab.affine, out.affine)
        np.testing.assert_array_equal(np.rint(out.array / 100).astype(np.uint8), olab.array)
        assert set(np.unique(olab.array)) <= {0, 1, 2}
        assert olab.array.dtype == np.uint8
    assert [h["step"] for h in olab.history] == [s["step"] for s in steps] == [
        h["step"] for h in out.history]
    assert len(pipeline.steps) == len(steps)


@pytest.mark.parametrize("label_interpolator", ["nearest", "label_gaussian"])
def test_label_and_linear_image_share_centre_of_mass(label_interpolator):
    shape = (16, 32, 32)
    lab = np.zeros(shape, np.uint8)
    lab[4:12, 8:20, 10:26] = 1
    vol = Volume(lab.astype(np.float32), oblique_affine(spacing=(0.8, 0.8, 1.0)))
    out, olab = run_pipeline(vol, step("resample", spacing=[0.6, 0.7, 0.9], label_interpolator=label_interpolator),
                             Volume(lab, vol.affine.copy()))
    world = world_of(out.affine, out.array.shape)
    com_img = (world * out.array[..., None]).sum((0, 1, 2)) / out.array.sum()
    com_lab = (world * olab.array[..., None]).sum((0, 1, 2)) / olab.array.sum()
    np.testing.assert_allclose(com_img, com_lab, atol=0.3)


def test_label_on_another_grid_is_refused():
    vol = ct_like()
    bad = Volume(np.zeros((5, 5, 5), np.uint8), np.eye(4))
    with pytest.raises(MedPrepError, match="not on the image grid"):
        run_pipeline(vol, step("orient"), bad)


def test_all_orientations_with_label_pipeline():
    vol = ct_like(shape=(6, 7, 8))
    lab = Volume((vol.array > vol.array.mean()).astype(np.uint8), vol.affine.copy())
    for code in itertools.islice(AXCODES, 0, 48, 7):
        out, olab = run_pipeline(vol, step("orient", axcodes=code), lab)
        np.testing.assert_array_equal(olab.array, (out.array > vol.array.mean()).astype(np.uint8))


def test_storage_order_is_the_same_physical_image_without_a_copy():
    from MedPrepLib.preprocess.grid import storage_order

    base = np.random.default_rng(5).normal(size=(4, 5, 6))
    aff = oblique_affine()

    def world(arr, affine):
        """World position (rounded) -> value for every voxel."""
        zyx = np.indices(arr.shape).reshape(3, -1)
        ijk1 = np.vstack([zyx[::-1], np.ones(zyx.shape[1])])
        xyz = np.round((affine @ ijk1)[:3].T, 6)
        return dict(zip(map(tuple, xyz), arr.reshape(-1)))

    expected = world(base, aff)
    for code in AXCODES:
        view, view_aff = reorient_array(base, aff, code)
        stored, stored_aff = storage_order(view, view_aff)
        assert stored.flags.c_contiguous and np.shares_memory(stored, base), code
        assert world(stored, stored_aff) == expected, code
    copied, copied_aff = storage_order(base[:, ::2], aff)  # not a permutation of a buffer: copied
    assert copied.flags.c_contiguous and world(copied, copied_aff) == world(base[:, ::2], aff)


@pytest.mark.parametrize("code", ["RAS", "LPS", "PIR"])
@pytest.mark.parametrize("grid", ["coarser", "finer", "oblique", "partly outside"])
def test_linear_resampling_in_slabs_equals_one_call(monkeypatch, code, grid):
    """Slabs (each with only the input it samples) give bit for bit what one SimpleITK call gives."""
    from MedPrepLib.preprocess import resample as rs
    from MedPrepLib.preprocess.grid import centred_affine, to_sitk

    arr = (np.random.default_rng(7).normal(size=(20, 50, 40)) * 300).astype(np.int16)
    aff = np.array([[-0.7, 0, 0, 10.0], [0, -0.7, 0, 8.0], [0, 0, 1.0, -3.0], [0, 0, 0, 1]])
    spacing = {"coarser": (1.5, 1.5, 1.0), "finer": (0.35, 0.4, 0.5), "oblique": (1.1, 0.9, 0.8),
               "partly outside": (1.5, 1.5, 1.0)}[grid]
    size = np.maximum(1, np.rint(np.array(arr.shape[::-1]) * np.array([0.7, 0.7, 1.0]) / spacing))
    out_aff = centred_affine(aff, arr.shape[::-1], spacing, size)
    if grid == "oblique":
        c, s = np.cos(0.3), np.sin(0.3)
        out_aff[:3, :3] = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]) @ out_aff[:3, :3]
    if grid == "partly outside":
        out_aff[:3, 3] += 9.0
    one = sitk.GetArrayFromImage(rs.resample_filter(size, out_aff, "linear", -1024, np.dtype(np.float32))
                                 .Execute(to_sitk(arr, aff)))
    view, view_aff = reorient_array(arr, aff, code)
    monkeypatch.setattr(rs, "SLAB_BYTES", 3 * int(size[0] * size[1]) * 4)  # three output slices a slab
    slabs = rs._resample3d(view, view_aff, size, out_aff, "linear", -1024, np.dtype(np.float32))
    np.testing.assert_array_equal(slabs, one)
    if grid != "oblique":  # a rotated grid's corners leave the field of view too
        assert (grid == "partly outside") == bool((one == -1024).any())


# ---------------------------------------------------------------- colour (RGB24) images

def rgb_volume(shape_zyx=(6, 9, 11), affine=None, seed=4):
    """A smooth colour volume (three different ramps plus noise) and its (z, y, x, 3) uint8 channels."""
    from MedPrepLib.volume import RGB24

    rng = np.random.default_rng(seed)
    z, y, x = np.meshgrid(*[np.linspace(0, 1, n) for n in shape_zyx], indexing="ij")
    planes = np.stack([200 * x + 20 * z, 180 * y + 30 * x, 150 * z + 60 * y], axis=-1)
    channels = np.clip(planes + rng.uniform(0, 40, planes.shape), 0, 255).astype(np.uint8)
    array = np.ascontiguousarray(channels).view(RGB24)[..., 0]
    return Volume(array=array, affine=oblique_affine() if affine is None else affine), channels


def grey(channel, affine):
    return Volume(array=np.ascontiguousarray(channel), affine=affine.copy())


@pytest.mark.parametrize("axcodes", ["RAS", "LPS", "PIR", "SLA"])
def test_orient_colour_equals_each_channel_oriented(axcodes):
    vol, channels = rgb_volume()
    out, _ = run_pipeline(vol, step("orient", axcodes=axcodes))
    assert out.is_rgb and axcodes_of(out.affine) == axcodes
    for c, name in enumerate("RGB"):
        alone, _ = run_pipeline(grey(channels[..., c], vol.affine), step("orient", axcodes=axcodes))
        assert np.array_equal(out.array[name], alone.array)
        np.testing.assert_array_equal(out.affine, alone.affine)


@pytest.mark.parametrize("spacing", [[1.2, 1.1, 1.0], [0.6, 0.5, 2.0]])  # the second: nnU-Net's two passes
def test_resample_colour_nearest_equals_each_channel_resampled(spacing):
    vol, channels = rgb_volume()
    out, _ = run_pipeline(vol, step("resample", spacing=spacing, interpolator="nearest"))
    assert out.is_rgb
    for c, name in enumerate("RGB"):
        alone, _ = run_pipeline(grey(channels[..., c], vol.affine),
                                step("resample", spacing=spacing, interpolator="nearest"))
        assert alone.array.dtype == np.uint8 and np.array_equal(out.array[name], alone.array)
        np.testing.assert_allclose(out.affine, alone.affine)


@pytest.mark.parametrize("interpolator", ["linear", "bspline"])
def test_resample_colour_interpolates_each_component_like_itk_and_stays_uint8(interpolator):
    """Against SimpleITK resampling the vector image itself (per-component interpolation)."""
    vol, _ = rgb_volume(affine=np.diag([0.9, 1.1, 1.3, 1.0]))
    z, y, x = np.indices(vol.array.shape)
    vol.array["R"] = 255 * ((x // 2 + y // 2 + z) % 2)  # hard edges: B-spline overshoots 0 and 255
    spacing = [0.7, 0.8, 1.0]
    out, _ = run_pipeline(vol, step("resample", spacing=spacing, interpolator=interpolator))
    assert out.is_rgb and out.array.dtype.names == ("R", "G", "B")
    ref_img = sitk.Resample(vol.to_sitk(), out.to_sitk(), sitk.Transform(),
                            {"linear": sitk.sitkLinear, "bspline": sitk.sitkBSpline}[interpolator], 0.0,
                            sitk.sitkVectorFloat32)
    ref = sitk.GetArrayFromImage(ref_img)  # (z, y, x, 3) float
    got = np.stack([out.array[n] for n in "RGB"], axis=-1).astype(float)
    assert np.abs(got - np.clip(ref, 0, 255)).max() <= 0.5 + 1e-3  # rounded to the nearest uint8
    if interpolator == "bspline":
        assert ref.min() < -1 and ref.max() > 256  # the clipping above was needed


def test_crop_pad_colour_moves_channels_together_and_pads_each_with_fill():
    vol, channels = rgb_volume()
    for shape, fill in (([5, 13, 4], 0.0), ([15, 4, 8], 7.0)):
        out, _ = run_pipeline(vol, step("crop_pad", shape=shape, fill=fill))
        assert out.is_rgb and out.shape_xyz == tuple(shape)
        for c, name in enumerate("RGB"):
            alone, _ = run_pipeline(grey(channels[..., c], vol.affine), step("crop_pad", shape=shape, fill=fill))
            assert np.array_equal(out.array[name], alone.array)
            np.testing.assert_allclose(out.affine, alone.affine)
    padded, _ = run_pipeline(vol, step("crop_pad", shape=[15, 9, 6], fill=7.0))
    assert padded.array[0, 0, 0].tolist() == (7, 7, 7)
    with pytest.raises(MedPrepError, match="fill 300 is not a colour value"):
        run_pipeline(vol, step("crop_pad", shape=[15, 9, 6], fill=300.0))


def test_crop_pad_colour_foreground_is_any_channel():
    from MedPrepLib.volume import RGB24

    array = np.zeros((5, 8, 10), RGB24)
    array[2, 5, 7] = (0, 0, 9)  # only blue
    vol = Volume(array=array, affine=np.eye(4))
    out, _ = run_pipeline(vol, step("crop_pad", shape=[3, 3, 3], centre="foreground"))
    assert out.array[1, 1, 1].tolist() == (0, 0, 9)


def test_only_steps_that_move_voxels_take_colour():
    """The registry says which steps take colour; an intensity step after them refuses in one line."""
    from MedPrepLib.preprocess.registry import describe

    assert sorted(n for n, d in describe().items() if d["colour"]) == ["crop_pad", "orient", "resample"]
    vol, _ = rgb_volume()
    with pytest.raises(MedPrepError) as err:
        run_pipeline(vol, load_pipeline([{"step": "orient"}, {"step": "resample", "spacing": [2, 2, 2]},
                                         {"step": "clip", "min": 0, "max": 100}]))
    line = err.value.one_line()
    assert "step 'clip' cannot take a colour (RGB) image" in line and "\n" not in line
    assert "crop_pad, orient, resample" in line
