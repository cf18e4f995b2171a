"""Fixtures of the client tests: a small synthetic abdominal CT dataset with liver and tumour labels.

These tests run in their own environment (`make test-clients`: nnunetv2, MONAI, TorchIO, CPU torch),
never in the main suite. Every image is tiny, so that nnU-Net's fingerprint and planning take seconds.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import List

import nibabel as nib
import numpy as np
import pytest

SHAPE = (16, 30, 34)                  # (z, y, x)
SPACING = (1.5, 1.25, 3.0)            # (x, y, z) mm
LPS_AFFINE = np.diag([-SPACING[0], -SPACING[1], SPACING[2], 1.0])  # NIfTI of an LPS-stored volume


def phantom(seed: int):
    """(HU volume, label map) in (z, y, x): air, a body, a liver (1) and a tumour in it (2)."""
    rng = np.random.default_rng(seed)
    z, y, x = np.mgrid[:SHAPE[0], :SHAPE[1], :SHAPE[2]]
    body = ((y - 15) / 13) ** 2 + ((x - 17) / 15) ** 2 <= 1
    liver = body & (((y - 12 - seed % 3) / 6) ** 2 + ((x - 12) / 7) ** 2 + ((z - 8) / 6) ** 2 <= 1)
    tumour = liver & (((y - 12 - seed % 3) / 2.5) ** 2 + ((x - 11) / 2.5) ** 2 + ((z - 8) / 2.5) ** 2 <= 1)
    hu = np.full(SHAPE, -1000.0)
    hu[body] = 20.0
    hu[liver] = 60.0
    hu[tumour] = 110.0
    hu += rng.normal(0, 8, SHAPE)
    label = np.zeros(SHAPE, np.uint8)
    label[liver] = 1
    label[tumour] = 2
    return np.rint(hu).astype(np.int16), label


def medprep(*args: str) -> subprocess.CompletedProcess:
    """The `medprep` command line of this environment; fails the test with its stderr."""
    done = subprocess.run([sys.executable, "-m", "MedPrepLib.cli.main", *args], capture_output=True, text=True)
    assert done.returncode == 0, f"medprep {' '.join(args)}: {done.stderr}"
    return done


@pytest.fixture(scope="session")
def nifti_dataset(tmp_path_factory) -> Path:
    """4 training cases (image + _seg label, LPS-stored, no sidecar) and 1 unlabelled test case."""
    root = tmp_path_factory.mktemp("nifti")
    for i in range(5):
        hu, label = phantom(i)
        name = f"liver_{i:03d}"
        nib.save(nib.Nifti1Image(hu.T, LPS_AFFINE), str(root / f"{name}.nii.gz"))
        if i < 4:
            nib.save(nib.Nifti1Image(label.T, LPS_AFFINE), str(root / f"{name}_seg.nii.gz"))
    (root.parent / "split.csv").write_text("".join(f"liver_{i:03d},{'test' if i == 4 else 'train'}\n"
                                                   for i in range(5)))
    return root


@pytest.fixture(scope="session")
def dicom_tree(tmp_path_factory) -> Path:
    """The same phantoms as CT DICOM series (MedPrepSample), one series per case."""
    from MedPrepSample import write_series

    root = tmp_path_factory.mktemp("dicom")
    for i in range(4):
        hu, _ = phantom(i)
        write_series(root / f"case{i}", hu.astype(np.float64), modality="CT", spacing=SPACING,
                     origin_lps=(-20.0, -15.0, 10.0 * i), intercept=-1024.0, series_number=i + 1,
                     series_description="abdomen")
    return root


@pytest.fixture(scope="session")
def converted_dicom_dataset(dicom_tree, tmp_path_factory) -> Path:
    """`medprep convert` of the DICOM tree (NIfTI + sidecar saying CT) with label maps drawn on the
    converted grids (labels/<name>.nii.gz): the DICOM route to an nnU-Net training set today."""
    root = tmp_path_factory.mktemp("converted")
    medprep("convert", str(dicom_tree), str(root / "images"), "--name", "liver_%s")
    (root / "labels").mkdir()
    for image in sorted((root / "images").glob("*.nii.gz")):
        img = nib.load(str(image))
        hu = img.get_fdata()
        label = np.zeros(hu.shape, np.uint8)
        label[(hu > 45) & (hu < 85)] = 1
        label[hu >= 85] = 2
        nib.save(nib.Nifti1Image(label, img.affine), str(root / "labels" / image.name))
    return root


def pairs(folder: Path) -> List[tuple]:
    """(image, label) files of an nnU-Net dataset's imagesTr/labelsTr."""
    out = []
    for image in sorted((folder / "imagesTr").glob("*_0000.nii.gz")):
        label = folder / "labelsTr" / image.name.replace("_0000.nii.gz", ".nii.gz")
        assert label.is_file(), f"no label for {image.name}"
        out.append((image, label))
    assert out, f"no training case in {folder}"
    return out


@pytest.fixture(scope="session")
def nnunet_env(tmp_path_factory) -> dict:
    """nnU-Net's three folders, for the nnUNetv2_* commands."""
    base = tmp_path_factory.mktemp("nnunet")
    env = dict(os.environ)
    for key in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        (base / key).mkdir()
        env[key] = str(base / key)
    env["nnUNet_n_proc_DA"] = "1"
    return env


@pytest.fixture(scope="session")
def dicom_tree_with_seg(dicom_tree, converted_dicom_dataset, tmp_path_factory) -> Path:
    """The DICOM tree with each series' labels as a DICOM SEG (`medprep export-seg`) beside it."""
    root = tmp_path_factory.mktemp("dicom_seg")
    for i in range(4):
        shutil.copytree(dicom_tree / f"case{i}", root / f"case{i}")
        medprep("export-seg", str(converted_dicom_dataset / "labels" / f"liver_{i + 1}.nii.gz"),
                str(dicom_tree / f"case{i}"), str(root / f"case{i}" / "seg.dcm"), "--names", "liver,tumour")
    return root
