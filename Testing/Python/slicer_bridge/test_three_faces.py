"""One core, three faces: `medprep preprocess`, `medprep run` and the Slicer panel's Apply + Save write
the same files for the same DICOM series, label map, pipeline and dataset statistics.

The Slicer side runs in Slicer's own Python layer (Testing/Python/slicer_harness) over slicer-core's
MRML classes: the series is loaded into a volume node, the label map is a label map node, and the
files come from `MedPrepLogic.preprocess` then `MedPrepLogic.save`, as the panel's buttons call them.
"""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

import MedPrepSample as sample
from MedPrepLib.cases import read_label
from MedPrepLib.cli.main import main as medprep
from MedPrepLib.convert import volume_from_series
from MedPrepLib.discovery import scan
from MedPrepLib.nifti import write_nifti
from MedPrepLib.volume import Volume

pytest.importorskip("vtk", reason="vtk is not installed: it comes with slicer-core (`make test-slicer`)")

PIPELINE = {
    "name": "three-faces",
    "steps": [{"step": "modality_lut"},
              {"step": "orient", "axcodes": "RAS"},
              {"step": "resample", "spacing": [1.2, 1.1, 1.5], "interpolator": "bspline"},
              {"step": "crop_pad", "shape": [16, 18, 10]},
              {"step": "clip", "min": -150.0, "max": 300.0},
              {"step": "dataset_zscore"}],
    "output": {"dtype": "float32", "label_dtype": "uint8"},
}


@pytest.fixture
def case(tmp_path):
    """A DICOM series in tree/c1, a label map on its grid, the pipeline file and a labels table for `run`."""
    series_dir = tmp_path / "tree" / "c1"
    sample.write_ct_series(series_dir, n_slices=9, rows=22, cols=19, spacing=(0.9, 0.8, 2.0),
                           patient={"PatientName": "Doe^Jane", "PatientID": "MRN-12345"})
    image = volume_from_series(scan(series_dir).series[0])
    labels = np.zeros(image.array.shape, np.uint8)
    labels[2:7, 4:15, 3:12] = 1
    labels[4:6, 8:12, 5:9] = 2
    write_nifti(Volume(labels, image.affine), tmp_path / "c1_label.nii.gz")
    (tmp_path / "labels.csv").write_text("id,label\nc1,c1_label.nii.gz\n")
    (tmp_path / "pipeline.json").write_text(json.dumps(PIPELINE))
    return tmp_path


def contents(path: Path) -> bytes:
    """A file's bytes; a .gz file's uncompressed bytes (gzip's header holds a time stamp)."""
    data = path.read_bytes()
    return gzip.decompress(data) if path.suffix == ".gz" else data


def test_cli_run_and_slicer_write_the_same_files(MedPrep, harness, case):
    run_dir, cli_dir, slicer_dir = case / "run", case / "cli", case / "slicer"
    assert medprep(["run", str(case / "pipeline.json"), str(case / "tree"), str(run_dir), "--workers", "1",
                    "--labels", str(case / "labels.csv"), "--id-column", "id", "--label-column", "label"]) == 0
    manifest = (run_dir / "manifest.csv").read_text().splitlines()
    assert len(manifest) == 2 and ",written," in manifest[1], manifest
    statistics = run_dir / "statistics.json"
    assert len(json.loads(statistics.read_text())["training_cases"]) == 1

    assert medprep(["preprocess", str(case / "tree" / "c1"), str(cli_dir / "c1.nii.gz"),
                    "--pipeline", str(case / "pipeline.json"), "--statistics", str(statistics),
                    "--label", str(case / "c1_label.nii.gz"), str(cli_dir / "c1_label.nii.gz")]) == 0

    logic = MedPrep.MedPrepLogic()
    scene = harness.mrmlScene
    node = logic.loadSeries(logic.scanFolder(str(case / "tree" / "c1")).series[0], scene=scene)
    labelNode = MedPrep.MedPrepBridge.addVolumeNode(scene, read_label(case / "c1_label.nii.gz"), "c1 label",
                                                    labelmap=True)
    out, outLabel = logic.preprocess(node, str(case / "pipeline.json"), labelNode, scene=scene,
                                     statistics=str(statistics))
    saved = logic.save(out, str(slicer_dir), "c1", outLabel, compress=True)
    assert [p.name for p in saved] == ["c1.nii.gz", "c1.json", "c1_label.nii.gz"]

    run_image = next(p for p in (run_dir / "images").glob("*.nii.gz"))
    run_files = {"image": run_image, "sidecar": run_image.with_name(run_image.name[:-7] + ".json"),
                 "label": run_dir / "labels" / run_image.name}
    cli_files = {"image": cli_dir / "c1.nii.gz", "sidecar": cli_dir / "c1.json", "label": cli_dir / "c1_label.nii.gz"}
    slicer_files = dict(zip(("image", "sidecar", "label"), saved))
    for role in ("image", "label"):
        assert contents(cli_files[role]) == contents(run_files[role]), f"CLI and run differ: {role}"
        assert contents(slicer_files[role]) == contents(run_files[role]), f"Slicer and run differ: {role}"
    sidecars = [json.loads(files["sidecar"].read_text()) for files in (run_files, cli_files, slicer_files)]
    assert sidecars[1] == sidecars[0] and sidecars[2] == sidecars[0]
    assert sidecars[0]["MedPrepPipeline"]["name"] == "three-faces"
    assert [s["step"] for s in sidecars[0]["MedPrepProvenance"]["steps"]] == \
        ["dicom_to_nifti"] + [s["step"] for s in PIPELINE["steps"]]
    assert "Doe" not in json.dumps(sidecars[0]) and "MRN-12345" not in json.dumps(sidecars[0])
