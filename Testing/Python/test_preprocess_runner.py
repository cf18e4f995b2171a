"""`medprep preprocess`, `medprep run` and `medprep qa` end to end, and the export formats."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from MedPrepLib.cli.main import main
from MedPrepLib.nifti import read_nifti
from MedPrepLib.preprocess import load_pipeline, run_pipeline

AFFINE = np.diag([-2.0, -2.0, 3.0, 1.0])


def write_case(folder: Path, name: str, seed: int, loc: float = 0.0, label_name: str = None, shape=(12, 24, 20)):
    rng = np.random.default_rng(seed)
    arr = rng.normal(loc, 50, shape).astype(np.int16)  # (z, y, x)
    lab = np.zeros(shape, np.uint8)
    lab[3:8, 6:16, 5:12] = 1 + seed % 2
    folder.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(arr.T, AFFINE), str(folder / f"{name}.nii.gz"))
    if label_name:
        lab_path = Path(label_name)
        lab_path.parent.mkdir(parents=True, exist_ok=True)
        nib.save(nib.Nifti1Image(lab.T, AFFINE), str(lab_path))
    return arr, lab


def manifest(out: Path):
    with open(out / "manifest.csv", newline="") as fh:
        return {r["case"]: r for r in csv.DictReader(fh)}


def test_preprocess_one_case_outputs_load_unchanged_in_nibabel(tmp_path, capsys):
    arr, lab = write_case(tmp_path / "in", "img", 0, label_name=str(tmp_path / "in" / "lab.nii.gz"))
    pipe = tmp_path / "p.yaml"
    pipe.write_text("steps:\n  - step: modality_lut\n  - step: orient\n    axcodes: LPS\n"
                    "  - step: resample\n    spacing: [1.5, 1.5, 2]\n  - step: zscore\n")
    out = tmp_path / "out" / "img.nii.gz"
    rc = main(["preprocess", str(tmp_path / "in" / "img.nii.gz"), str(out), "--pipeline", str(pipe),
               "--label", str(tmp_path / "in" / "lab.nii.gz"), str(tmp_path / "out" / "lab.nii.gz"),
               "--qa", str(tmp_path / "out" / "qa.png"), "--save-pipeline", str(tmp_path / "out" / "p.json")])
    assert rc == 0
    expected, expected_lab = run_pipeline(read_nifti(tmp_path / "in" / "img.nii.gz"), load_pipeline(str(pipe)),
                                          read_nifti(tmp_path / "in" / "lab.nii.gz"))
    img = nib.load(str(out))
    np.testing.assert_array_equal(np.asarray(img.dataobj), expected.array.T)
    np.testing.assert_allclose(img.affine, expected.affine, atol=1e-5)
    assert nib.aff2axcodes(img.affine) == ("L", "P", "S")
    labimg = nib.load(str(tmp_path / "out" / "lab.nii.gz"))
    np.testing.assert_array_equal(np.asarray(labimg.dataobj), expected_lab.array.T)
    np.testing.assert_allclose(labimg.affine, img.affine, atol=1e-6)
    side = json.loads((tmp_path / "out" / "img.json").read_text())
    assert [s["step"] for s in side["MedPrepProvenance"]["steps"]] == ["modality_lut", "orient", "resample", "zscore"]
    assert (tmp_path / "out" / "qa.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert load_pipeline(str(tmp_path / "out" / "p.json")).digest() == load_pipeline(str(pipe)).digest()
    # Inputs untouched, outputs not overwritten without --overwrite, one-line errors.
    assert rc == 0 and main(["preprocess", str(tmp_path / "in" / "img.nii.gz"), str(out), "--pipeline", str(pipe)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"medprep: error: output exists ({out}); use --overwrite to replace it"]
    assert main(["preprocess", str(tmp_path / "in" / "img.nii.gz"), str(out), "--preset", "ct-lung"]) == 1
    assert "no pipeline file or preset named 'ct-lung'" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("steps:\n  - step: resample\n    spacing: [1, 1, 0]\n")
    assert main(["preprocess", str(tmp_path / "in" / "img.nii.gz"), str(tmp_path / "x.nii.gz"),
                 "--pipeline", str(bad)]) == 1
    assert "parameter resample.spacing = 0.0 is below its minimum 0.001" in capsys.readouterr().err


def test_export_numpy_formats(tmp_path):
    write_case(tmp_path / "in", "img", 0)
    src = str(tmp_path / "in" / "img.nii.gz")
    vol = read_nifti(src)
    assert main(["preprocess", src, str(tmp_path / "a.npy"), "--preset", "mr-heart",
                 "--set", "crop_pad.shape=[16,16]", "--set", "output.dtype=float16"]) == 0
    a = np.load(tmp_path / "a.npy")
    assert a.shape == (1, 12, 16, 16) and a.dtype == np.float16
    side = json.loads((tmp_path / "a.json").read_text())
    assert side["MedPrepGeometry"]["spacing_xyz"] == [2.0, 2.0, 3.0]
    assert main(["preprocess", src, str(tmp_path / "s.npy"), "--preset", "nnunet-raw",
                 "--set", "output.slices=true", "--set", "output.dtype=int16"]) == 0
    slices = sorted(tmp_path.glob("s_z*.npy"))
    assert len(slices) == 12 and np.load(slices[0]).shape == (1, 24, 20)
    np.testing.assert_array_equal(np.load(slices[5])[0], vol.array[5][::-1, ::-1])  # LPS -> RAS flips x, y
    assert main(["preprocess", src, str(tmp_path / "b.npz"), "--preset", "nnunet-raw"]) == 0
    with np.load(tmp_path / "b.npz") as z:
        assert z["image"].shape == (1, 12, 24, 20) and z["affine"].shape == (4, 4)


def test_run_dataset_statistics_from_training_split_only(tmp_path):
    inp = tmp_path / "ds"
    train_arrays = []
    for i in range(3):
        train_arrays.append(write_case(inp, f"tr{i}", i, loc=100.0 * i, label_name=str(inp / f"tr{i}_seg.nii.gz"))[0])
    write_case(inp, "te0", 9, loc=5000.0)  # very different: would move the statistics if it were used
    (tmp_path / "split.csv").write_text("case,split\ntr0,train\ntr1,train\ntr2,train\nte0,test\n")
    out = tmp_path / "out"
    rc = main(["run", "ct-liver", str(inp), str(out), "--workers", "1", "--split", str(tmp_path / "split.csv"),
               "--set", "resample.spacing=[2,2,3]", "--set", "clip.min=-10000", "--set", "clip.max=10000"])
    assert rc == 0
    stats = json.loads((out / "statistics.json").read_text())
    pooled = np.concatenate([a.ravel() for a in train_arrays]).astype(np.float64)
    assert stats["training_cases"] == ["tr0", "tr1", "tr2"]
    assert stats["steps"]["4"]["values"]["mean"] == pytest.approx(pooled.mean(), rel=1e-6)
    assert stats["steps"]["4"]["values"]["std"] == pytest.approx(pooled.std(), rel=1e-6)
    rows = manifest(out)
    assert {r["split"] for r in rows.values()} == {"train", "test"} and rows["te0"]["split"] == "test"
    assert rows["tr1"]["label_in"] == "tr1_seg.nii.gz" and rows["te0"]["label_in"] == ""
    te = nib.load(str(out / "images" / "te0.nii.gz")).get_fdata()
    assert te.mean() > 10  # standardised with the training statistics, not its own


def test_run_is_parallel_resumable_and_survives_a_broken_case(tmp_path, capsys):
    inp = tmp_path / "ds"
    for i in range(3):
        write_case(inp / "images", f"c{i}", i, label_name=str(inp / "labels" / f"c{i}.nii.gz"))
    (inp / "images" / "broken.nii.gz").write_bytes(b"not a nifti")
    out = tmp_path / "out"
    args = ["run", "mr-heart", str(inp), str(out), "--workers", "2", "--qa", "--set", "crop_pad.shape=[16,16]"]
    assert main(args) == 1
    captured = capsys.readouterr()
    assert "medprep: broken failed: cannot read NIfTI" in captured.err
    assert "4 cases: 3 written, 0 unchanged, 1 failed" in captured.out
    rows = manifest(out)
    assert rows["broken"]["status"] == "failed" and rows["c1"]["status"] == "written"
    assert "labels/c1.nii.gz" in rows["c1"]["outputs"].split(";")
    assert (out / "qa" / "index.html").read_text().count("<img") == 3
    olab = nib.load(str(out / "labels" / "c0.nii.gz"))
    assert olab.shape == (16, 16, 12) and np.asarray(olab.dataobj).sum() > 0
    # Rerun: unchanged cases are skipped, the broken one is tried again.
    (inp / "images" / "broken.nii.gz").unlink()
    assert main(args) == 0
    assert "3 cases: 0 written, 3 unchanged, 0 failed" in capsys.readouterr().out
    # A changed input is redone; so is everything when the pipeline changes.
    path = inp / "images" / "c2.nii.gz"
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    assert main(args[:3] + [str(out), "--workers", "1", "--qa", "--set", "crop_pad.shape=[16,16]"]) == 0
    assert "1 written, 2 unchanged" in capsys.readouterr().out
    assert main(args[:3] + [str(out), "--workers", "1", "--set", "crop_pad.shape=[18,16]"]) == 0
    assert "3 written, 0 unchanged" in capsys.readouterr().out


def test_run_nnunet_layout(tmp_path):
    inp = tmp_path / "msd"
    for i in range(2):
        write_case(inp / "imagesTr", f"liver_{i:03d}_0000", i,
                   label_name=str(inp / "labelsTr" / f"liver_{i:03d}.nii.gz"))
    write_case(inp / "imagesTs", "liver_100_0000", 5)
    out = tmp_path / "nn"
    assert main(["run", "nnunet-raw", str(inp), str(out), "--workers", "1"]) == 0
    assert sorted(p.name for p in (out / "imagesTr").iterdir()) == ["liver_000_0000.nii.gz", "liver_001_0000.nii.gz"]
    assert sorted(p.name for p in (out / "labelsTr").iterdir()) == ["liver_000.nii.gz", "liver_001.nii.gz"]
    assert [p.name for p in (out / "imagesTs").iterdir()] == ["liver_100_0000.nii.gz"]
    ds = json.loads((out / "dataset.json").read_text())
    assert ds["numTraining"] == 2 and ds["file_ending"] == ".nii.gz"
    assert ds["labels"] == {"background": 0, "label_1": 1, "label_2": 2}
    img = nib.load(str(out / "imagesTr" / "liver_000_0000.nii.gz"))
    assert img.get_data_dtype() == np.int16 and nib.aff2axcodes(img.affine) == ("R", "A", "S")


@pytest.mark.parametrize("workers", [1, 2])
def test_run_dicom_tree_names_cases_without_patient_data(tmp_path, workers, monkeypatch):
    import MedPrepLib.discovery as discovery
    from MedPrepSample import write_ct_series

    monkeypatch.setattr(discovery, "SCAN_CHUNK", 4)  # with 2 workers, they read the headers in chunks

    for i in range(workers):  # 2 workers run only where there are 2 cases
        write_ct_series(tmp_path / "dicom" / "DEMO^PATIENT" / f"ct{i}", n_slices=6, rows=32, cols=32,
                        spacing=(10, 10, 20), seed=i, series_uid=f"1.2.826.0.1.3680043.8.498.{i + 1}")
    out = tmp_path / "out"
    assert main(["run", "ct-liver", str(tmp_path / "dicom"), str(out), "--workers", str(workers),
                 "--set", "resample.spacing=[12,12,20]"]) == 0
    names = sorted(p.name for p in (out / "images").glob("*.nii.gz"))
    assert len(names) == workers
    for name in names:
        assert name.startswith("series-") and "DEMO" not in name
        assert "dicom_to_nifti" in (out / "images" / name.replace(".nii.gz", ".json")).read_text()


def test_a_nifti_run_does_not_load_the_dicom_stack():
    """What the workers of a NIfTI run import (the fork server's preload) leaves pydicom out: it costs
    each run 0.3 s and 23 MB. pydicom and nibabel's DICOM-free parts still work afterwards."""
    code = ("import sys, importlib\n"
            "from MedPrepLib import cases\n"
            "from MedPrepLib.executor.local import worker_imports\n"
            "for name in worker_imports(cases.PRELOAD): importlib.import_module(name)\n"
            "assert 'pydicom' not in sys.modules, 'pydicom was imported'\n"
            "import pydicom, pydicom.dataset\n"
            "from nibabel.nicom import csareader\n"
            "import nibabel as nib\n"
            "assert nib.Nifti1Header().get_data_shape() == (0,)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_qa_command(tmp_path):
    write_case(tmp_path, "img", 0, label_name=str(tmp_path / "lab.nii.gz"))
    png = tmp_path / "qa" / "x.png"
    assert main(["qa", str(tmp_path / "img.nii.gz"), str(tmp_path / "img.nii.gz"), str(png),
                 "--label", str(tmp_path / "lab.nii.gz")]) == 0
    plain = tmp_path / "qa" / "plain.png"
    assert main(["qa", str(tmp_path / "img.nii.gz"), str(tmp_path / "img.nii.gz"), str(plain)]) == 0
    from PIL import Image

    with Image.open(png) as im, Image.open(plain) as im_plain:
        rgb = np.asarray(im.convert("RGB")).astype(int)
        rgb_plain = np.asarray(im_plain.convert("RGB")).astype(int)
    assert rgb.shape == rgb_plain.shape and rgb.shape[1] >= 560
    red = (rgb[..., 0] - np.maximum(rgb[..., 1], rgb[..., 2])) > 60  # label 1 is drawn in red over grey
    rows = np.nonzero(red.any(axis=1))[0]
    assert red.sum() > 100, "the label is not drawn"
    assert rows.min() > rgb.shape[0] // 2, "the label must be drawn on the output row only"
    assert not ((rgb_plain[..., 0] - np.maximum(rgb_plain[..., 1], rgb_plain[..., 2])) > 60).any()
    # The input row is the same picture with or without a label, and it shows the slices.
    top = slice(0, int(rgb.shape[0] * 0.45))  # title and input row
    assert np.array_equal(rgb[top], rgb_plain[top])
    grey = rgb_plain[rgb.shape[0] // 4, :, 0]
    assert grey.max() - grey.min() > 100, "the slices are not drawn"


@pytest.mark.parametrize("workers", [1, 2])
def test_second_pass_from_the_statistics_pass_images_equals_a_whole_run(tmp_path, workers, monkeypatch):
    """Training cases continue in pass 2 from where pass 1 left them: the outputs (voxels, sidecar)
    are those of the whole pipeline applied with the same statistics, and nothing staged is left."""
    from MedPrepLib.export import case_targets, write_outputs
    from MedPrepLib.preprocess.pipeline import load_statistics
    from MedPrepLib.cases import read_image, read_label

    inp = tmp_path / "ds"
    for i in range(3):
        write_case(inp / "images", f"tr{i}", i, label_name=str(inp / "labels" / f"tr{i}.nii.gz"))
    pipe = tmp_path / "p.json"
    pipe.write_text(json.dumps({"name": "t", "steps": [
        {"step": "orient", "axcodes": "RAS"}, {"step": "resample", "spacing": [1.5, 1.7, 2.0]},
        {"step": "nnunet_ct"}, {"step": "crop_pad", "shape": [10, 12, 9]}, {"step": "dataset_zscore"},
        {"step": "clip", "min": -2, "max": 2}]}))
    out = tmp_path / "out"
    from MedPrepLib.stage import Stage

    loaded = []
    original_take = Stage.take
    monkeypatch.setattr(Stage, "take", lambda self, case_id: loaded.append(case_id) or
                        original_take(self, case_id))
    assert main(["run", str(pipe), str(inp), str(out), "--workers", str(workers)]) == 0
    assert not [p for p in out.iterdir() if p.name.startswith(".")]
    if workers == 1:  # in this process: the second pass did start from the staged images
        assert sorted(loaded) == ["tr0", "tr1", "tr2"]
    pipeline = load_pipeline(str(pipe))
    statistics = load_statistics(out / "statistics.json", pipeline)
    for i in range(3):
        image, label = run_pipeline(read_image(inp / "images" / f"tr{i}.nii.gz"), pipeline,
                                    read_label(inp / "labels" / f"tr{i}.nii.gz"), statistics)
        ref = tmp_path / "ref"
        write_outputs(case_targets(ref, f"tr{i}", pipeline.output, True, True), image, label, pipeline.output)
        outputs = sorted(p for p in out.rglob(f"tr{i}*") if p.is_file())
        assert len(outputs) == 3  # image with its sidecar, and the label
        for got in outputs:
            expected = ref / got.relative_to(out)
            if got.suffix == ".json":
                assert json.loads(got.read_text()) == json.loads(expected.read_text()), got.name
            else:
                a, b = nib.load(got), nib.load(expected)
                np.testing.assert_array_equal(np.asanyarray(a.dataobj), np.asanyarray(b.dataobj))
                np.testing.assert_array_equal(a.affine, b.affine)


def test_a_staged_case_comes_back_as_it_went_in(tmp_path):
    """The stage keeps voxel buffers out of the pickle: contiguous arrays and strided views both come
    back equal, writable, with their metadata, once (the file goes when taken); a cut-short file is
    one clear error."""
    from MedPrepLib.errors import MedPrepError
    from MedPrepLib.stage import Stage
    from MedPrepLib.volume import Volume

    stage = Stage(tmp_path, 2)
    values = np.random.default_rng(1).standard_normal((5, 6, 7)).astype(np.float32)
    image = Volume(array=values, affine=np.diag([1.5, 1.5, 2.0, 1.0]), meta={"Modality": "CT"})
    image.history.append({"step": "resample", "params": {"spacing": [1.5, 1.5, 2.0]}})
    label = Volume(array=(values > 0).astype(np.uint8)[:, ::-1], affine=image.affine.copy())
    stage.save("case", image, label)
    back, back_label = stage.take("case")
    assert not (stage.folder / "case.pickle").exists() and stage.take("case") is None
    assert np.array_equal(back.array, values) and back.array.dtype == np.float32 and back.array.flags.writeable
    assert np.array_equal(back_label.array, label.array) and np.array_equal(back.affine, image.affine)
    assert back.meta == image.meta and back.history == image.history
    assert stage.take("other") is None
    stage.save("case", image, label)
    path = stage.folder / "case.pickle"
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(MedPrepError, match="incomplete"):
        stage.take("case")
    stage.remove()
    assert not stage.folder.exists()


def started(name: str):
    """When a job started; it takes long enough for the other worker to be up before it ends."""
    import time

    now = time.monotonic()
    time.sleep(0.5)
    return name, now


def test_workers_take_the_largest_cases_first():
    """A large case started last would run alone at the end: jobs go to the workers largest first,
    and each result still comes back under its own index."""
    from MedPrepLib.executor.local import LocalPool

    names = ["small", "large", "medium", "tiny"]
    with LocalPool(2) as pool:
        outcomes = list(pool.map(started, [(name,) for name in names], sizes=[10, 1000, 100, 1]))
    assert sorted(o.index for o in outcomes) == [0, 1, 2, 3]
    assert all(o.value[0] == names[o.index] and o.worker.startswith("worker ") for o in outcomes)
    order = [o.value[0] for o in sorted(outcomes, key=lambda o: o.value[1])]
    assert set(order[:2]) == {"large", "medium"}, order
