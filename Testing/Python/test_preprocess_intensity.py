"""Intensity and modality steps against known answers; dataset statistics; pipeline validation."""
from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk

from MedPrepLib.errors import MedPrepError
from MedPrepLib.preprocess import load_pipeline, run_pipeline
from MedPrepLib.preprocess.pipeline import load_statistics, save_statistics
from MedPrepLib.preprocess.suv import suv_factor
from MedPrepLib.volume import Volume


def step(name, **params):
    return load_pipeline([{"step": name, **params}])


def run(vol, name, label=None, **params):
    return run_pipeline(vol, step(name, **params), label)[0].array


def noisy(shape=(8, 16, 16), seed=0, loc=100.0, scale=30.0):
    return Volume(np.random.default_rng(seed).normal(loc, scale, shape).astype(np.float32), np.eye(4))


def test_modality_lut_gives_hu():
    stored = np.array([[[0, 1000, 2000]]], np.int16)
    vol = Volume(stored, np.eye(4), slope=1.0, inter=-1024.0, meta={"RescaleSlope": 1.0, "RescaleIntercept": -1024.0})
    np.testing.assert_array_equal(run(vol, "modality_lut"), [[[-1024, -24, 976]]])
    assert run_pipeline(vol, step("modality_lut"))[0].meta["RescaleIntercept"] == 0.0
    out = run_pipeline(vol, step("modality_lut", dtype="int16"))[0]
    assert out.array.dtype == np.int16 and out.slope == 1.0 and out.inter == 0.0
    # auto: exact int16 for integral slope/intercept, float32 when that would round or overflow.
    auto = run_pipeline(vol, step("modality_lut"))[0].array
    assert auto.dtype == np.int16 and auto.tolist() == [[[-1024, -24, 976]]]
    overflowing = Volume(np.array([[[-3, 20000]]], np.int16), np.eye(4), slope=2.0, inter=-1024.0)
    assert run_pipeline(overflowing, step("modality_lut"))[0].array.dtype == np.float32
    via_int32 = Volume(np.array([[[-3, 20000]]], np.int16), np.eye(4), slope=2.0, inter=-20000.0)
    out = run_pipeline(via_int32, step("modality_lut"))[0].array  # 2 * 20000 overflows int16 on the way
    assert out.dtype == np.int16 and out.tolist() == [[[-20006, 20000]]]
    fitting = Volume(np.array([[[-3, 16000]]], np.int16), np.eye(4), slope=2.0, inter=-1024.0)
    assert run_pipeline(fitting, step("modality_lut"))[0].array.tolist() == [[[-1030, 30976]]]
    assert run_pipeline(fitting, step("modality_lut"))[0].array.dtype == np.int16
    wide = Volume(np.array([[[0, 60000]]], np.uint16), np.eye(4), slope=1.0, inter=-1024.0)
    assert run_pipeline(wide, step("modality_lut"))[0].array.dtype == np.float32
    fractional = Volume(stored, np.eye(4), slope=0.5, inter=0.0)
    np.testing.assert_array_equal(run(fractional, "modality_lut"), [[[0, 500, 1000]]])
    assert run(fractional, "modality_lut").dtype == np.float32


def test_clip_window_and_bounds():
    vol = Volume(np.linspace(-1000, 1000, 64, dtype=np.float32).reshape(1, 8, 8), np.eye(4))
    a = run(vol, "clip", level=40, width=400)
    assert a.min() == pytest.approx(-160) and a.max() == pytest.approx(240)
    b = run(vol, "clip", min=-200, max=250)
    np.testing.assert_array_equal(b, np.clip(vol.array, -200, 250))


def test_scale_zscore_minmax_log_percentile():
    vol = noisy()
    np.testing.assert_allclose(run(vol, "scale", divide_by=3071), vol.array / 3071, rtol=1e-6)
    z = run(vol, "zscore")
    assert abs(z.mean()) < 1e-5 and z.std() == pytest.approx(1.0, abs=1e-5)
    m = run(vol, "minmax", out_min=-1, out_max=1)
    assert m.min() == pytest.approx(-1) and m.max() == pytest.approx(1)
    pos = Volume(np.abs(vol.array), np.eye(4))
    np.testing.assert_allclose(run(pos, "log"), np.log1p(pos.array), rtol=1e-6)
    lo, hi = np.percentile(vol.array, [2, 98])
    p = run(vol, "percentile_clip", lower=2, upper=98)
    assert p.min() == pytest.approx(lo) and p.max() == pytest.approx(hi)


def test_zscore_within_nonzero_and_label_masks():
    arr = np.zeros((4, 10, 10), np.float32)
    arr[:, 2:8, 2:8] = np.random.default_rng(1).normal(500, 20, (4, 6, 6))
    vol = Volume(arr, np.eye(4))
    z = run(vol, "zscore", mask="nonzero")
    inside = z[arr != 0]
    assert abs(inside.mean()) < 1e-5 and inside.std() == pytest.approx(1, abs=1e-5)
    lab = Volume((arr > 500).astype(np.uint8), np.eye(4))
    zl = run(vol, "zscore", label=lab, mask="label", zero_outside=True)
    assert abs(zl[arr > 500].mean()) < 1e-5 and np.all(zl[arr <= 500] == 0)
    with pytest.raises(MedPrepError, match="no label map"):
        run(vol, "zscore", mask="label")


def test_xray_window_then_monochrome1_inversion():
    # DICOM PS3.3 C.11.2.1.2.1 LINEAR: c=100, w=201 maps [0, 200] linearly onto [0, 1].
    stored = np.array([[[-50, 0, 100, 200, 400]]], np.int16)
    meta = {"WindowCenter": [100.5, 40], "WindowWidth": [201, 400], "PhotometricInterpretation": "MONOCHROME2"}
    vol = Volume(stored, np.eye(4), slope=1.0, inter=0.0, meta=meta)
    np.testing.assert_allclose(run(vol, "xray_display"), [[[0, 0, 0.5, 1, 1]]], atol=1e-6)
    # MONOCHROME1: the modality LUT (slope 2) and the window come first, the inversion last.
    vol1 = Volume(stored // 2, np.eye(4), slope=2.0, inter=0.0,
                  meta=dict(meta, PhotometricInterpretation="MONOCHROME1"))
    out = run_pipeline(vol1, step("xray_display", out_max=255))[0]
    np.testing.assert_allclose(out.array, [[[255, 255, 127.5, 0, 0]]], atol=1e-4)
    assert out.meta["PhotometricInterpretation"] == "MONOCHROME2"
    assert "WindowCenter" not in out.meta and "WindowCenter" in vol1.meta  # stale for the output values
    sig = run(vol, "xray_display", window_center=100, window_width=200, function="SIGMOID")
    assert sig[0, 0, 2] == pytest.approx(0.5)


PET_META = {"Units": "BQML", "DecayCorrection": "START", "PatientWeight": 70.0,
            "RadionuclideTotalDose": 370e6, "RadionuclideHalfLife": 6586.2,
            "RadiopharmaceuticalStartTime": "093000", "SeriesDate": "20240101", "SeriesTime": "103000.00",
            "AcquisitionDate": "20240101", "AcquisitionTime": "103500"}


def test_suv_body_weight_qiba():
    decayed = 370e6 * 2 ** (-3600 / 6586.2)
    expected = 70_000 / decayed
    assert suv_factor(PET_META) == pytest.approx(expected, rel=1e-9)
    vol = Volume(np.full((2, 3, 3), 5000.0, np.float32), np.eye(4), meta=dict(PET_META))
    out = run_pipeline(vol, step("suv"))[0]
    np.testing.assert_allclose(out.array, 5000 * expected, rtol=1e-6)
    # Injection before midnight, scan after: the clock wraps.
    late = dict(PET_META, RadiopharmaceuticalStartTime="233000", SeriesTime="003000", AcquisitionTime="003500")
    del late["SeriesDate"], late["AcquisitionDate"]
    assert suv_factor(late) == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("key", ["PatientWeight", "RadionuclideTotalDose", "RadionuclideHalfLife",
                                 "RadiopharmaceuticalStartTime", "SeriesTime", "Units"])
def test_suv_names_the_missing_attribute(key):
    meta = {k: v for k, v in PET_META.items() if k != key}
    with pytest.raises(MedPrepError, match=key):
        suv_factor(meta)
    with pytest.raises(MedPrepError, match="BQML"):
        suv_factor(dict(PET_META, Units="CNTS"))


def test_denoise_wraps_simpleitk_filters():
    vol = noisy(seed=4)
    img = sitk.GetImageFromArray(vol.array)
    np.testing.assert_array_equal(run(vol, "denoise", method="median", radius=1),
                                  sitk.GetArrayFromImage(sitk.Median(img, [1, 1, 1])))
    np.testing.assert_array_equal(run(vol, "denoise", method="curvature_flow", iterations=3, time_step=0.05),
                                  sitk.GetArrayFromImage(sitk.CurvatureFlow(img, 0.05, 3)))
    np.testing.assert_array_equal(run(vol, "denoise", method="bilateral", domain_sigma=1.0, range_sigma=60.0),
                                  sitk.GetArrayFromImage(sitk.Bilateral(img, 1.0, 60.0)))


def _edge_phantom():
    """A noise-free step edge (100 -> 300 along x) and a copy with Gaussian noise of sd 20."""
    x = np.indices((12, 40, 40))[2]
    clean = np.where(x >= 20, 300.0, 100.0).astype(np.float32)
    noisy_copy = (clean + np.random.default_rng(3).normal(0, 20, clean.shape)).astype(np.float32)
    return clean, noisy_copy


def _rmse(a, clean):
    inner = (slice(2, -2),) * 3  # the filters' own borders are not what is measured
    return float(np.sqrt(np.mean((a[inner] - clean[inner]) ** 2)))


def _edge_width(a):
    """Samples of the mean profile across the edge that lie between 10 % and 90 % of the step."""
    profile = a[2:-2, 2:-2, :].mean(axis=(0, 1))
    return int(np.sum((profile > 120) & (profile < 280)))


@pytest.mark.parametrize("method,params", [("median", {"radius": 1}), ("curvature_flow", {"iterations": 5}),
                                           ("bilateral", {"domain_sigma": 1.0, "range_sigma": 60.0})])
def test_denoise_removes_noise_and_keeps_the_edge(method, params):
    clean, noisy_copy = _edge_phantom()
    out = run(Volume(noisy_copy, np.eye(4)), "denoise", method=method, **params)
    assert _rmse(out, clean) < 0.4 * _rmse(noisy_copy, clean)  # measured: 0.21-0.35 of the noise
    assert _edge_width(out) <= 1  # the step stays a step (measured: 0 samples)
    # The measure does catch a blur that removes as much noise: a Gaussian of sigma 0.7 voxel.
    blurred = sitk.GetArrayFromImage(sitk.SmoothingRecursiveGaussian(sitk.GetImageFromArray(noisy_copy), 0.7))
    assert _edge_width(blurred) >= 2


def test_n4_removes_a_smooth_multiplicative_field():
    z, y, x = np.indices((16, 32, 32))
    tissue = np.where((x - 16) ** 2 + (y - 16) ** 2 < 140, 200.0, 0.0) + 1.0
    field = np.exp(0.4 * (x / 31.0 - 0.5))
    vol = Volume((tissue * field).astype(np.float32), np.eye(4))
    out = run(vol, "n4", shrink_factor=2, iterations=[20, 20], mask="nonzero")
    inside = tissue > 100
    cv = lambda a: a[inside].std() / a[inside].mean()  # noqa: E731
    assert cv(out) < 0.5 * cv(vol.array)


# ---------------------------------------------------------------- dataset statistics
# Through `compute_statistics`, the pass `medprep run` and `medprep stats` make: the cases are NIfTI files
# read by the pool's workers, and every value is checked against numpy over the same training voxels.

@pytest.fixture(scope="module")
def pool():
    from MedPrepLib.executor.local import LocalPool

    with LocalPool(2) as workers:
        yield workers


def cases(n, offset=0.0):
    return [(noisy(seed=i, loc=100 + 10 * i + offset), None) for i in range(n)]


def dataset_statistics(folder, pipeline, pool, train, held_out=()):
    """The statistics of `pipeline` over `train`, written as NIfTI cases beside `held_out` (not training)."""
    from MedPrepLib.cases import Case
    from MedPrepLib.dataset_statistics import compute_statistics
    from MedPrepLib.nifti import write_nifti

    folder.mkdir(parents=True, exist_ok=True)
    found = []
    for i, (image, label) in enumerate(list(train) + list(held_out)):
        label_path = write_nifti(label, folder / f"case{i}_label.nii.gz") if label is not None else None
        found.append(Case(f"case{i}", write_nifti(image, folder / f"case{i}.nii.gz"), label_path,
                          training=i < len(train)))
    warnings = []
    statistics = compute_statistics(found, pipeline, pool, warn=warnings.append)
    assert warnings == []
    return statistics


def test_dataset_zscore_statistics_pool_the_training_voxels(tmp_path, pool):
    pipeline = load_pipeline([{"step": "scale", "divide_by": 2}, {"step": "dataset_zscore"}])
    train = cases(3)
    # a test case far from the others: the statistics would move if it were used
    stats = dataset_statistics(tmp_path / "in", pipeline, pool, train, held_out=cases(1, offset=5000))
    pooled = np.concatenate([v.array.ravel() / 2 for v, _ in train]).astype(np.float64)
    assert stats[1]["mean"] == pytest.approx(pooled.mean(), rel=1e-9)
    assert stats[1]["std"] == pytest.approx(pooled.std(), rel=1e-9)
    save_statistics(tmp_path / "s.json", pipeline, stats, ["a", "b", "c"])
    assert json.loads((tmp_path / "s.json").read_text())["training_cases"] == ["a", "b", "c"]
    again = load_statistics(tmp_path / "s.json", pipeline)
    out = run_pipeline(train[0][0], pipeline, statistics=again)[0]
    expected = (train[0][0].array / 2 - pooled.mean()) / pooled.std()
    np.testing.assert_allclose(out.array, expected, rtol=1e-4, atol=1e-4)
    assert out.history[-1]["params"]["mean"] == pytest.approx(pooled.mean())
    with pytest.raises(MedPrepError, match="has no statistics"):
        run_pipeline(train[0][0], pipeline)


def test_nnunet_ct_uses_labelled_foreground(tmp_path, pool):
    rng = np.random.default_rng(7)
    train = []
    for i in range(3):
        arr = rng.normal(-800, 50, (8, 16, 16)).astype(np.float32)
        lab = np.zeros(arr.shape, np.uint8)
        lab[2:6, 4:12, 4:12] = 1
        arr[lab > 0] = rng.normal(60 + 10 * i, 20, int(lab.sum()))
        train.append((Volume(arr, np.eye(4)), Volume(lab, np.eye(4))))
    pipeline = step("nnunet_ct")
    stats = dataset_statistics(tmp_path / "in", pipeline, pool, train)[0]
    fg = np.concatenate([v.array[lab.array > 0] for v, lab in train]).astype(np.float64)
    assert stats["mean"] == pytest.approx(fg.mean()) and stats["std"] == pytest.approx(fg.std())
    assert stats["lower"] == pytest.approx(np.percentile(fg, 0.5))
    assert stats["upper"] == pytest.approx(np.percentile(fg, 99.5))
    out = run_pipeline(train[0][0], pipeline, train[0][1], statistics={0: stats})[0].array
    assert out.min() == pytest.approx((stats["lower"] - stats["mean"]) / stats["std"], rel=1e-5)


def test_histogram_standardization_maps_percentiles_onto_landmarks(tmp_path, pool):
    train = [(Volume(np.random.default_rng(i).gamma(2 + i, 50, (8, 16, 16)).astype(np.float32), np.eye(4)), None)
             for i in range(4)]
    pipeline = step("histogram_standardization")
    stats = dataset_statistics(tmp_path / "in", pipeline, pool, train, held_out=[(noisy(loc=1e4), None)])[0]
    landmarks = np.array(stats["landmarks"])
    # Nyul & Udupa: each training case's 1st, 10th, ..., 90th, 99th percentiles scaled so that its 1st and
    # 99th land on 0 and 100, averaged over the training cases
    q = np.array([np.percentile(v.array, [1, 10, 20, 30, 40, 50, 60, 70, 80, 90, 99]) for v, _ in train])
    expected = ((q - q[:, :1]) * 100 / (q[:, -1:] - q[:, :1])).mean(axis=0)
    np.testing.assert_allclose(landmarks, expected, rtol=1e-9, atol=1e-9)
    for vol, _ in train:
        out = run_pipeline(vol, pipeline, statistics={0: stats})[0].array
        q = np.percentile(out, [1, 10, 20, 30, 40, 50, 60, 70, 80, 90, 99])
        np.testing.assert_allclose(q, landmarks, atol=0.5)


# ---------------------------------------------------------------- validation

@pytest.mark.parametrize("steps,message", [
    ([{"step": "sharpen"}], "unknown preprocessing step 'sharpen'"),
    ([{"step": "resample", "spacing": [1, 1, 1], "interp": "linear"}], "has no parameter 'interp'"),
    ([{"step": "resample", "spacing": [1, 1, -1]}], "below its minimum"),
    ([{"step": "resample", "spacing": [1, 1, 1, 1]}], "must have 2 or 3 values"),
    ([{"step": "resample", "spacing": [1, 1], "size": [2, 2]}], "exactly one of"),
    ([{"step": "resample", "spacing": [1, 1], "interpolator": "cubic"}], "choose one of"),
    ([{"step": "orient", "axcodes": "RRS"}], "choose one of"),
    ([{"step": "clip", "level": 40}], "level and width go together"),
    ([{"step": "scale", "divide_by": "x"}], "must be a number"),
    ([{"step": "crop_pad"}], "needs parameter 'shape'"),
    ([{"step": "percentile_clip", "upper": 101}], "above its maximum"),
    ([{"resample": {}}], "has no 'step' name"),
    ([], "no steps"),
])
def test_pipeline_validation_errors_are_clear(steps, message):
    with pytest.raises(MedPrepError, match=message):
        load_pipeline(steps)


def test_pipeline_save_replay_and_overrides(tmp_path):
    p = load_pipeline("ct-liver", overrides=["resample.spacing=[2, 2, 2]", "output.dtype=float16"])
    assert p.steps[2].params.spacing == [2.0, 2.0, 2.0] and p.output.dtype == "float16"
    for name in ("p.yaml", "p.json"):
        p.save(tmp_path / name)
        again = load_pipeline(str(tmp_path / name))
        assert again.digest() == p.digest() and again.to_dict() == p.to_dict()
    assert load_pipeline("ct-liver").digest() != p.digest()
    with pytest.raises(MedPrepError, match="no pipeline file or preset"):
        load_pipeline("ct-lung")
    with pytest.raises(MedPrepError, match="lacks"):
        load_pipeline("ct-liver", overrides=["denoise.radius=2"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("steps: [step: orient\n")
    with pytest.raises(MedPrepError, match="not valid YAML"):
        load_pipeline(str(bad))


def test_step_catalogue_describes_every_parameter_as_json():
    from MedPrepLib.preprocess import describe

    catalogue = json.loads(json.dumps(describe()))
    assert {"orient", "resample", "crop_pad", "zscore", "suv", "n4", "nnunet_ct"} <= set(catalogue)
    assert catalogue["resample"]["spatial"] and not catalogue["clip"]["spatial"]
    assert catalogue["orient"]["params"]["axcodes"]["default"] == "RAS"
    assert len(catalogue["orient"]["params"]["axcodes"]["choices"]) == 48
    assert catalogue["crop_pad"]["params"]["shape"]["required"]
    assert catalogue["dataset_zscore"]["dataset_statistics"] == ["mean", "std"]
