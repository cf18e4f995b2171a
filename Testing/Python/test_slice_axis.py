"""The NIfTI slice axis of an ordinary (untilted) stack, as dcm2niix computes it.

dcm2niix starts the slice axis at the series' first slice in stored (InstanceNumber) order and
steps by that slice's Euclidean distance to the next, straight along the slice normal
(nii_dicom_batch.cpp: intersliceDistance of the first two sorted slices becomes xyzMM[3]; nii_dicom.cpp
nifti_dicom2mat puts it on the normal). A stored order that is not monotonic it re-sorts bottom up.
With positions rounded by the scanner the first gap differs from the mean one: averaging over the
stack put the affine 0.01 mm and more off dcm2niix's. On these very series dcm2niix v1.0.20260724
gives the affines asserted here (max difference 7.6e-6 mm; also for sagittal, coronal and flipped
axial orientations stored either way).
"""
from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from MedPrepLib.convert import ConvertOptions, convert
from MedPrepSample import write_series

LPS_FROM_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
BED = [0.0, 2.99, 6.0, 9.0, 12.0, 15.01]


def _write(tmp_path: Path, numbers, row=(1.0, 0.0, 0.0), col=(0.0, 1.0, 0.0), noise=None) -> np.ndarray:
    row, col = np.asarray(row), np.asarray(col)
    normal = np.cross(row, col)
    positions = np.array([-20.0, -15.0, 30.0]) + np.outer(BED, normal)
    if noise is not None:
        positions = positions + noise
    data = (np.arange(len(BED) * 6 * 5).reshape(len(BED), 6, 5) % 50).astype(np.int16)
    write_series(tmp_path / "in", data, spacing=(0.7, 0.6, 3.0), row_dir=row, col_dir=col,
                 slice_positions=positions, instance_numbers=numbers)
    return positions


def _affine(tmp_path: Path) -> np.ndarray:
    report = convert(tmp_path / "in", tmp_path / "out", ConvertOptions(name_template="x", gz=False))
    return LPS_FROM_RAS @ nib.load(str(report.written[0].nifti)).affine


def test_first_gap_from_the_first_stored_slice(tmp_path) -> None:
    positions = _write(tmp_path, [1, 2, 3, 4, 5, 6])
    lps = _affine(tmp_path)
    np.testing.assert_allclose(lps[:3, 2], [0.0, 0.0, 2.99], atol=1e-6)
    np.testing.assert_allclose(lps[:3, 3], positions[0], atol=1e-6)


def test_top_down_storage_anchors_at_the_top(tmp_path) -> None:
    positions = _write(tmp_path, [6, 5, 4, 3, 2, 1])
    lps = _affine(tmp_path)
    # The gap between the two top slices, and the top slice exactly where it is.
    np.testing.assert_allclose(lps[:3, 2], [0.0, 0.0, 3.01], atol=1e-6)
    np.testing.assert_allclose(lps[:3, 3] + 5 * lps[:3, 2], positions[-1], atol=1e-6)


def test_unordered_storage_anchors_at_the_bottom(tmp_path) -> None:
    positions = _write(tmp_path, [3, 1, 6, 2, 5, 4])
    lps = _affine(tmp_path)
    np.testing.assert_allclose(lps[:3, 2], [0.0, 0.0, 2.99], atol=1e-6)
    np.testing.assert_allclose(lps[:3, 3], positions[0], atol=1e-6)


def test_rounding_off_the_normal_is_no_tilt(tmp_path) -> None:
    # Oblique slices whose positions were rounded to 3 decimals: the drift off the normal over the
    # stack stays within the position tolerance, so the axis is the normal, not a shear.
    o = 1.0 / np.sqrt(2.0)
    noise = np.zeros((len(BED), 3))
    noise[1] = [0.0004, -0.0003, 0.0002]
    noise[-1] = [0.0, 0.0, 0.004]
    positions = _write(tmp_path, [1, 2, 3, 4, 5, 6], row=(o, -o, 0.0), col=(0.0, 0.0, -1.0), noise=noise)
    lps = _affine(tmp_path)
    normal = np.cross([o, -o, 0.0], [0.0, 0.0, -1.0])
    np.testing.assert_allclose(lps[:3, 2], normal * np.linalg.norm(positions[1] - positions[0]), atol=1e-6)
    m = lps[:3, :3] / np.linalg.norm(lps[:3, :3], axis=0)
    assert m.T @ m == pytest.approx(np.eye(3), abs=1e-6)
