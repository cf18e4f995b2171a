"""MedPrep's datasets in the real trainers: nnU-Net v2 (integrity check, fingerprint, plan), MONAI and TorchIO.

Run by `make test-clients` in `.venv-clients`; nothing here is mocked.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
import torchio as tio
from monai.data import MetaTensor
from monai.transforms import Compose, EnsureChannelFirst, EnsureChannelFirstd, LoadImage, LoadImaged, Orientation, \
    Orientationd

from conftest import medprep, pairs

LIVER = ["--label-names", "liver,tumour"]


def plan_with_nnunet(dataset: Path, env: dict) -> dict:
    """Copy `dataset` (DatasetNNN_Name) into nnUNet_raw, run nnU-Net's integrity check, fingerprint
    and experiment planning (no preprocessing), and return its plans file."""
    shutil.copytree(dataset, Path(env["nnUNet_raw"]) / dataset.name)
    number = str(int(dataset.name[len("Dataset"):len("Dataset") + 3]))
    command = str(Path(sys.executable).parent / "nnUNetv2_plan_and_preprocess")  # the venv's, PATH or not
    done = subprocess.run([command, "-d", number, "--verify_dataset_integrity",
                           "--no_pp", "-npfp", "1"], env=env, capture_output=True, text=True)
    assert done.returncode == 0, f"nnU-Net refused {dataset.name}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return json.loads((Path(env["nnUNet_preprocessed"]) / dataset.name / "nnUNetPlans.json").read_text())


def normalisation_of(plans: dict) -> set:
    return {tuple(c["normalization_schemes"]) for c in plans["configurations"].values()
            if "normalization_schemes" in c}


def check_monai_and_torchio(image: Path, label: Path, hu: bool) -> None:
    """MONAI and TorchIO load image and label on one grid, with the tumour where the image says it is."""
    keys = ["image", "label"]
    monai = Compose([LoadImaged(keys, image_only=True), EnsureChannelFirstd(keys),
                     Orientationd(keys, axcodes="RAS")])({"image": str(image), "label": str(label)})
    assert monai["image"].shape == monai["label"].shape and monai["image"].shape[0] == 1
    np.testing.assert_allclose(monai["image"].affine.numpy(), monai["label"].affine.numpy(), atol=1e-4)
    values, seg = monai["image"].numpy()[0], monai["label"].numpy()[0]
    assert set(np.unique(seg)) <= {0, 1, 2} and (seg == 2).any()
    # The label lies on the image's content: tumour brighter than liver brighter than the rest.
    assert values[seg == 2].mean() > values[seg == 1].mean() > values[seg == 0].mean()
    if hu:
        assert 90 < values[seg == 2].mean() < 130 and 40 < values[seg == 1].mean() < 80

    subject = tio.Subject(image=tio.ScalarImage(image), label=tio.LabelMap(label))
    subject.check_consistent_space()
    assert subject.image.spatial_shape == subject.label.spatial_shape
    data, seg = subject.image.data[0].numpy(), subject.label.data[0].numpy()
    assert data[seg == 2].mean() > data[seg == 1].mean()


def test_nnunet_raw_from_nifti_without_sidecar_gets_ct_normalisation(nifti_dataset, tmp_path, nnunet_env):
    out = tmp_path / "raw"
    done = medprep("run", "nnunet-raw", str(nifti_dataset), str(out), "--workers", "1", "--modality", "CT",
                   "--dataset-id", "501", "--dataset-name", "LiverRaw", *LIVER)
    assert "1 training image(s) have no label map" in done.stderr  # liver_004 goes to imagesTs, said so
    dataset = out / "Dataset501_LiverRaw"
    ds = json.loads((dataset / "dataset.json").read_text())
    assert ds["channel_names"] == {"0": "CT"} and ds["numTraining"] == 4
    assert ds["labels"] == {"background": 0, "liver": 1, "tumour": 2}
    assert [p.name for p in (dataset / "imagesTs").iterdir()] == ["liver_004_0000.nii.gz"]
    plans = plan_with_nnunet(dataset, nnunet_env)
    assert normalisation_of(plans) == {("CTNormalization",)}
    fg = plans["foreground_intensity_properties_per_channel"]["0"]
    assert 40 < fg["mean"] < 100  # nnU-Net saw HU of the labelled voxels: liver and tumour
    for image, label in pairs(dataset):
        check_monai_and_torchio(image, label, hu=True)


def test_without_modality_nnunet_would_zscore_and_we_warn(nifti_dataset, tmp_path):
    out = tmp_path / "raw"
    done = medprep("run", "nnunet-raw", str(nifti_dataset), str(out), "--workers", "1",
                   "--split", str(nifti_dataset.parent / "split.csv"))
    assert "the modality of the images is unknown" in done.stderr and "--modality CT" in done.stderr
    assert "have no label map" not in done.stderr  # the unlabelled case is a test case by the split
    assert json.loads((out / "dataset.json").read_text())["channel_names"] == {"0": "image"}


def test_ct_liver_normalised_once_nnunet_told_noNorm(nifti_dataset, tmp_path, nnunet_env):
    out = tmp_path / "norm"
    medprep("run", "ct-liver", str(nifti_dataset), str(out), "--workers", "1", "--set", "output.format=nnunet",
            "--set", "resample.spacing=[2,2,3]", "--split", str(nifti_dataset.parent / "split.csv"),
            "--dataset-id", "502", "--dataset-name", "LiverNorm", *LIVER)
    dataset = out / "Dataset502_LiverNorm"
    ds = json.loads((dataset / "dataset.json").read_text())
    assert ds["channel_names"] == {"0": "noNorm"} and ds["medprep"]["normalized_by"] == ["dataset_zscore"]
    plans = plan_with_nnunet(dataset, nnunet_env)
    assert normalisation_of(plans) == {("NoNormalization",)}
    for image, label in pairs(dataset):
        check_monai_and_torchio(image, label, hu=False)


def test_dicom_converted_with_sidecars_then_nnunet(converted_dicom_dataset, tmp_path, nnunet_env):
    """DICOM -> `medprep convert` (sidecar: Modality CT) -> nnunet-raw: the channel is CT with no option."""
    out = tmp_path / "dcm"
    medprep("run", "nnunet-raw", str(converted_dicom_dataset / "images"), str(out), "--workers", "1",
            "--labels", str(converted_dicom_dataset / "labels"), "--dataset-id", "503", "--dataset-name",
            "LiverDicom", *LIVER)
    dataset = out / "Dataset503_LiverDicom"
    assert json.loads((dataset / "dataset.json").read_text())["channel_names"] == {"0": "CT"}
    plans = plan_with_nnunet(dataset, nnunet_env)
    assert normalisation_of(plans) == {("CTNormalization",)}
    for image, label in pairs(dataset):
        check_monai_and_torchio(image, label, hu=True)


def test_dicom_tree_run_names_the_channel_from_the_header(dicom_tree, tmp_path):
    out = tmp_path / "tree"
    done = medprep("run", "nnunet-raw", str(dicom_tree), str(out), "--workers", "1")
    assert "4 training image(s) have no label map" in done.stderr  # DICOM labels: not paired yet
    assert json.loads((out / "dataset.json").read_text())["channel_names"] == {"0": "CT"}
    for image in sorted((out / "imagesTs").glob("*.nii.gz")):
        loaded = Compose([LoadImage(image_only=True), EnsureChannelFirst(), Orientation(axcodes="RAS")])(str(image))
        assert loaded.shape[1:] == (34, 30, 16)
        tio.ScalarImage(image).load()


@pytest.mark.parametrize("fmt", ["npy"])
def test_npy_outputs_load_in_monai_and_torchio_on_the_nifti_grid(nifti_dataset, tmp_path, fmt):
    """The same run as NIfTI and as .npy: with the sidecar's array affine, MONAI and TorchIO put the
    arrays exactly where the NIfTI files are."""
    common = ["--workers", "1", "--split", str(nifti_dataset.parent / "split.csv"),
              "--set", "resample.spacing=[2,2,3]"]
    medprep("run", "ct-liver", str(nifti_dataset), str(tmp_path / "nii"), *common)
    medprep("run", "ct-liver", str(nifti_dataset), str(tmp_path / fmt), *common, "--set", f"output.format={fmt}")
    cases = sorted(p.name[:-len(".nii.gz")] for p in (tmp_path / "nii" / "images").glob("*.nii.gz"))
    assert len(cases) == 5
    for case in cases:
        nii_image, nii_label = (tmp_path / "nii" / d / f"{case}.nii.gz" for d in ("images", "labels")) \
            if case != "liver_004" else (tmp_path / "nii" / "images" / f"{case}.nii.gz", None)
        side = json.loads((tmp_path / fmt / "images" / f"{case}.json").read_text())["MedPrepGeometry"]
        affine = np.array(side["array_affine_ras"])
        assert side["orientation_xyz"] == "RAS" and side["axes"] == "channel, z, y, x"
        array = np.load(tmp_path / fmt / "images" / f"{case}.npy")

        # MONAI: the .npy through LoadImage + EnsureChannelFirst(channel_dim=0), given the sidecar's affine.
        loaded = EnsureChannelFirst(channel_dim=0)(LoadImage(image_only=True)(str(tmp_path / fmt / "images" /
                                                                                  f"{case}.npy")))
        as_placed = Orientation(axcodes="RAS")(MetaTensor(loaded.as_tensor(), affine=torch.as_tensor(affine)))
        reference = Compose([LoadImage(image_only=True), EnsureChannelFirst(), Orientation(axcodes="RAS")])(
            str(nii_image))
        assert as_placed.shape == reference.shape
        np.testing.assert_allclose(as_placed.affine.numpy(), reference.affine.numpy(), atol=1e-4)
        np.testing.assert_allclose(as_placed.numpy(), reference.numpy(), atol=1e-5)

        # TorchIO: the array as it is, with the same affine.
        image = tio.ScalarImage(tensor=torch.from_numpy(array), affine=affine)
        canonical = tio.ToCanonical()(tio.Subject(image=image))["image"]
        ref = tio.ToCanonical()(tio.Subject(image=tio.ScalarImage(nii_image)))["image"]
        np.testing.assert_allclose(canonical.affine, ref.affine, atol=1e-4)
        np.testing.assert_allclose(canonical.data.numpy(), ref.data.numpy(), atol=1e-5)
        if nii_label is not None:
            label = tio.LabelMap(tensor=torch.from_numpy(np.load(tmp_path / fmt / "labels" / f"{case}.npy")),
                                 affine=affine)
            tio.Subject(image=image, label=label).check_consistent_space()
            np.testing.assert_array_equal(label.data.numpy()[0].transpose(2, 1, 0),
                                          np.asarray(nib.load(str(nii_label)).dataobj))


def test_dicom_tree_with_seg_becomes_an_nnunet_training_set(dicom_tree_with_seg, tmp_path, nnunet_env):
    """A hospital-style tree (CT series + their SEG) straight into nnU-Net: every case in imagesTr."""
    out = tmp_path / "seg"
    medprep("run", "nnunet-raw", str(dicom_tree_with_seg), str(out), "--workers", "1",
            "--dataset-id", "504", "--dataset-name", "LiverSeg", *LIVER)
    dataset = out / "Dataset504_LiverSeg"
    ds = json.loads((dataset / "dataset.json").read_text())
    assert ds["channel_names"] == {"0": "CT"} and ds["numTraining"] == 4
    assert ds["labels"] == {"background": 0, "liver": 1, "tumour": 2}
    assert not (dataset / "imagesTs").exists()
    plans = plan_with_nnunet(dataset, nnunet_env)
    assert normalisation_of(plans) == {("CTNormalization",)}
    assert len(pairs(dataset)) == 4
    for image, label in pairs(dataset):
        check_monai_and_torchio(image, label, hu=True)
