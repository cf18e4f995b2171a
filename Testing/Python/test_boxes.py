"""Boxes through every spatial step, against known answers: paint a box as a mask, run the steps with
the mask as the label map, and the transformed box must be the box of the transformed mask (IoU >= 0.98),
in 2D (a radiograph through the cxr presets) and 3D (oblique, anisotropic, through orient, resampling,
crop/pad, the CT and MR presets and MNI registration)."""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from MedPrepLib.boxes import Box, read_boxes, transform_boxes
from MedPrepLib.preprocess import load_pipeline
from MedPrepLib.preprocess.pipeline import run_pipeline
from MedPrepLib.preprocess.registry import INDEX_MAP_KEY
from MedPrepLib.volume import Volume

def rotation(axis: int, degrees: float) -> np.ndarray:
    a = np.deg2rad(degrees)
    c, s = np.cos(a), np.sin(a)
    i, j = [k for k in range(3) if k != axis]
    r = np.eye(3)
    r[i, i], r[i, j], r[j, i], r[j, j] = c, -s, s, c
    return r


def mask_box(label: Volume):
    """(lo, hi) in pixel-edge coordinates (x, y, z) of the non-zero voxels, None if there are none."""
    nz = np.argwhere(np.asarray(label.array) > 0)
    if not len(nz):
        return None
    return nz.min(0)[::-1].astype(float), nz.max(0)[::-1] + 1.0


def iou(a_lo, a_hi, b_lo, b_hi, axes: int) -> float:
    inter = np.clip(np.minimum(a_hi, b_hi) - np.maximum(a_lo, b_lo), 0, None)[:axes].prod()
    union = (a_hi - a_lo)[:axes].prod() + (b_hi - b_lo)[:axes].prod() - inter
    return float(inter / union)


def check(image: Volume, box: Box, steps, expect: str = "kept") -> dict:
    mask = np.zeros(image.array.shape, np.uint8)
    lo, hi = [int(v) for v in box.lo], [int(v) for v in box.hi]
    if len(lo) == 2:
        mask[:, lo[1]:hi[1], lo[0]:hi[0]] = 1
    else:
        mask[lo[2]:hi[2], lo[1]:hi[1], lo[0]:hi[0]] = 1
    out, out_label = run_pipeline(image, load_pipeline(steps) if isinstance(steps, list) else steps,
                                  Volume(mask, image.affine.copy()))
    [result] = transform_boxes([box], out.meta[INDEX_MAP_KEY], out.affine)
    assert result["status"] == expect
    found = mask_box(out_label)
    if expect == "dropped":
        assert found is None
        return result
    pixels = np.array(result["pixels"])
    axes = 2 if out.array.shape[-3] == 1 else 3
    value = iou(pixels[:3], pixels[3:], found[0], found[1], axes)
    assert value >= 0.98, (steps, pixels, found)
    # world coordinates: the output pixel box's corners through the output affine
    world = np.array(result["ras_mm"]).reshape(2, 3)
    np.testing.assert_allclose(world[0], (out.affine @ np.r_[pixels[:3] - 0.5, 1])[:3], atol=1e-3)
    return result


@pytest.fixture(scope="module")
def radiograph() -> Volume:
    """A 300 x 260 radiograph (anisotropic pixels 0.2 x 0.14 mm), its rows not along the world axes."""
    rng = np.random.default_rng(0)
    array = rng.integers(0, 4095, (1, 260, 300)).astype(np.float32)
    affine = np.eye(4)
    affine[:3, :3] = rotation(2, 180) @ np.diag([0.2, 0.14, 1.0])
    affine[:3, 3] = [30, -20, 0]
    return Volume(array, affine, meta={"Modality": "DX", "PhotometricInterpretation": "MONOCHROME1",
                                       "WindowCenter": 2048, "WindowWidth": 4096})


@pytest.fixture(scope="module")
def volume3d() -> Volume:
    """64 x 60 x 24 voxels of 3 x 3.2 x 6 mm, oblique (rotated 20 deg about z and 12 about x), LPI-ish."""
    rng = np.random.default_rng(1)
    array = rng.normal(100, 30, (24, 60, 64)).astype(np.float32)
    affine = np.eye(4)
    affine[:3, :3] = rotation(0, 12) @ rotation(2, 20) @ np.diag([-3.0, -3.2, -6.0])
    affine[:3, 3] = -(affine[:3, :3] @ np.array([32, 30, 12]))
    return Volume(array, affine, meta={"Modality": "CT"})


def preset(name: str):
    """A preset with its dataset statistics given (one case has no dataset)."""
    return load_pipeline(name, ["dataset_zscore.mean=0", "dataset_zscore.std=1"])


BOX2D = Box((60.0, 40.0), (230.0, 210.0))
BOX3D = Box((14.0, 10.0, 4.0), (52.0, 50.0, 21.0))


@pytest.mark.parametrize("steps", [
    "cxr-pneumonia", "cxr-heart-detection",
    [{"step": "orient", "axcodes": "LPS"}],
    [{"step": "resample", "spacing": [0.3, 0.3]}],
    [{"step": "resample", "size": [128, 160]}, {"step": "orient", "axcodes": "RAS"}],
])
def test_a_2d_box_follows_every_step_and_preset(radiograph, steps):
    check(radiograph, BOX2D, steps if isinstance(steps, list) else preset(steps))


@pytest.mark.parametrize("steps", [
    "ct-liver",
    [{"step": "orient", "axcodes": "RAS"}],
    [{"step": "orient", "axcodes": "PIR"}, {"step": "resample", "spacing": [1.5, 1.5, 1.5]}],
    [{"step": "resample", "size": [200, 190, 160]}],
    [{"step": "crop_pad", "shape": [80, 70, 30]}],
])
def test_a_3d_box_follows_every_step_and_preset_on_oblique_anisotropic_input(volume3d, steps):
    check(volume3d, BOX3D, steps if isinstance(steps, list) else preset(steps))


def test_a_box_cut_by_a_crop_is_clipped_and_one_outside_is_dropped(volume3d, radiograph):
    result = check(volume3d, BOX3D, [{"step": "crop_pad", "shape": [30, 60, 24]}], expect="clipped")
    assert result["pixels"][0] == 0.0  # the crop keeps x 17..46 of the input: the box starts before it
    check(radiograph, Box((2.0, 2.0), (20.0, 30.0)), [{"step": "crop_pad", "shape": [200, 200]}], expect="dropped")


@pytest.mark.skipif(importlib.util.find_spec("nilearn") is None, reason="nilearn (the MNI152 template) is absent")
def test_a_box_follows_mni_registration(volume3d, monkeypatch):
    """The registration's fit is replaced by a known rotation: what is checked is that the step's world
    map carries the box (the fit itself is tested in test_preprocess_register)."""
    import SimpleITK as sitk

    from MedPrepLib.preprocess import register_mni as rm

    def known(fixed, moving, mask, p):
        t = sitk.Euler3DTransform((0.0, -10.0, 5.0), 0.1, -0.15, 0.2, (4.0, -3.0, 2.0))
        return t, 0.0

    monkeypatch.setattr(rm, "fit_transform", known)
    check(volume3d, Box((16.0, 14.0, 6.0), (48.0, 46.0, 19.0)), [{"step": "register_mni", "spacing": 1.0}])


def test_points_follow_the_steps(radiograph):
    steps = load_pipeline([{"step": "orient", "axcodes": "LPS"}, {"step": "resample", "size": [150, 130]}])
    out, _ = run_pipeline(radiograph, steps)
    [p] = transform_boxes([Box((100.5, 60.5), (100.5, 60.5))], out.meta[INDEX_MAP_KEY], out.affine)
    assert p["kind"] == "point" and p["status"] == "kept"
    # the point's world position is unchanged by steps that keep world positions
    before = radiograph.affine @ np.array([100.0, 60.0, 0.0, 1.0])
    np.testing.assert_allclose(p["ras_mm"][:2], before[:2], atol=1e-6)


def test_box_tables_rsna_corner_resized_copy_and_coco(tmp_path):
    (tmp_path / "rsna.csv").write_text("patientId,x,y,width,height,Target\na,10,20,30,40,1\na,1,2,3,4,1\nb,,,,,0\n")
    boxes = read_boxes(tmp_path / "rsna.csv", "patientId")
    assert boxes["b"] == [] and [(b.lo, b.hi) for b in boxes["a"]] == [((10, 20), (40, 60)), ((1, 2), (4, 6))]
    (tmp_path / "heart.csv").write_text("label,x0,y0,w,h,name,img_shape_x,img_shape_y\nheart,91,71,77,102,c1,224,224\n")
    [heart] = read_boxes(tmp_path / "heart.csv", "name", "label")["c1"]
    assert heart.category == "heart" and heart.drawn_on == (224.0, 224.0) and heart.hi == (168.0, 173.0)
    # drawn on a 224 x 224 copy of a 448 x 672 image: back to the input's pixels, then through the steps
    m = {"index_to_index": np.eye(4).tolist(), "input_shape_xyz": [448, 672, 1], "output_shape_xyz": [448, 672, 1]}
    [r] = transform_boxes([heart], m, np.eye(4))
    assert r["pixels"] == [182.0, 213.0, 0.0, 336.0, 519.0, 1.0]
    (tmp_path / "corners.tsv").write_text("id\txmin\tymin\txmax\tymax\nq\t1\t2\t5\t9\n")
    assert read_boxes(tmp_path / "corners.tsv", "id")["q"][0].hi == (5.0, 9.0)
    coco = {"images": [{"id": 7, "file_name": "img3.dcm", "width": 9, "height": 9}],
            "annotations": [{"id": 1, "image_id": 7, "bbox": [1, 2, 3, 4], "category_id": 2}],
            "categories": [{"id": 2, "name": "heart"}]}
    import json

    (tmp_path / "c.json").write_text(json.dumps(coco))
    [c] = read_boxes(tmp_path / "c.json")["img3"]
    assert (c.lo, c.hi, c.category) == ((1.0, 2.0), (4.0, 6.0), "heart")

