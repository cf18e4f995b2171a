"""Label maps to integers and exact real-world integers: one rule each, used by every face."""
from __future__ import annotations

import numpy as np
import pytest

from MedPrepLib.errors import MedPrepError
from MedPrepLib.export import as_dtype
from MedPrepLib.labels import label_array, label_volume
from MedPrepLib.nifti import write_nifti
from MedPrepLib.cases import read_label
from MedPrepLib.volume import Volume


@pytest.mark.parametrize("values, dtype", [
    ([0, 1, 255], np.uint8), ([-1, 0, 3], np.int16), ([0, 300], np.int16), ([0, 40000], np.int32),
    ([0.0, 2.0, 7.0], np.uint8), ([True, False], np.uint8),
])
def test_label_values_become_the_smallest_integer_type(values, dtype):
    out = label_array(np.array(values))
    assert out.dtype == dtype
    np.testing.assert_array_equal(out, np.array(values).astype(np.int64))


@pytest.mark.parametrize("values, message", [
    ([0.0, 0.5], "whole numbers"), ([0.0, np.nan], "whole numbers"), ([0.0, np.inf], "whole numbers"),
    ([0, 2 ** 40], "do not fit a 32-bit label map"), ([1 + 1j], "whole numbers"),
])
def test_non_integral_label_values_are_refused_in_one_line(values, message):
    with pytest.raises(MedPrepError, match=message) as err:
        label_array(np.array(values), "labels/case1.nii.gz")
    assert "\n" not in str(err.value) and "labels/case1.nii.gz" in str(err.value)


def test_label_volume_applies_slope_and_intercept():
    vol = Volume(np.array([[[0, 1, 2]]], np.int16), np.eye(4), slope=2.0, inter=1.0)
    out = label_volume(vol)
    assert (out.slope, out.inter) == (1.0, 0.0) and out.array.dtype == np.uint8
    np.testing.assert_array_equal(out.array, [[[1, 3, 5]]])
    with pytest.raises(MedPrepError, match="whole numbers"):
        label_volume(Volume(np.array([[[0, 1]]], np.int16), np.eye(4), slope=0.5))


def test_read_label_and_export_follow_the_rule(tmp_path):
    """`medprep preprocess/run` read labels, and the export writes them, by the same rule: fractional
    labels are refused (the export used to round them silently), whole ones keep their values."""
    affine = np.eye(4)
    path = write_nifti(Volume(np.array([[[0.0, 2.0, 300.0]]], np.float32), affine), tmp_path / "l.nii.gz", gz=True)
    label = read_label(path)
    assert label.array.dtype == np.int16
    np.testing.assert_array_equal(label.array, [[[0, 2, 300]]])
    bad = write_nifti(Volume(np.array([[[0.0, 2.5]]], np.float32), affine), tmp_path / "bad.nii.gz", gz=True)
    with pytest.raises(MedPrepError, match="whole numbers") as err:
        read_label(bad)
    assert str(bad) in str(err.value)
    with pytest.raises(MedPrepError, match="whole numbers"):
        as_dtype(Volume(np.array([[[0.0, 2.5]]], np.float32), affine), "uint8", "label")
    out = as_dtype(Volume(np.array([[[0.0, 2.0]]], np.float32), affine), "uint8", "label")
    assert out.array.dtype == np.uint8 and out.array.tolist() == [[[0, 2]]]


@pytest.mark.parametrize("stored_dtype", [np.int16, np.uint16, np.uint8, np.int32])
@pytest.mark.parametrize("slope, inter", [(1.0, 0.0), (1.0, -1024.0), (2.0, -1024.0), (3.0, 7.0), (-1.0, 100.0)])
def test_integer_values_are_exact(stored_dtype, slope, inter):
    info = np.iinfo(stored_dtype)
    stored = np.linspace(max(info.min, -3000), min(info.max, 4095), 50).astype(stored_dtype).reshape(2, 5, 5)
    vol = Volume(stored, np.eye(4), slope=slope, inter=inter)
    truth = stored.astype(np.int64) * int(slope) + int(inter)
    out = vol.integer_values((np.int16, np.int32))
    expected = np.int16 if truth.min() >= -32768 and truth.max() <= 32767 else np.int32
    assert out.dtype == expected
    np.testing.assert_array_equal(out, truth)


def test_integer_values_none_when_inexact_or_too_wide():
    stored = np.array([[[0, 1, 4095]]], np.uint16)
    assert Volume(stored, np.eye(4), slope=0.5).integer_values() is None
    assert Volume(stored, np.eye(4), inter=0.25).integer_values() is None
    assert Volume(stored.astype(np.float32), np.eye(4), slope=2.0).integer_values() is None
    assert Volume(stored, np.eye(4), slope=100.0).integer_values((np.int16,)) is None
    assert Volume(stored, np.eye(4), slope=100.0).integer_values((np.int16, np.int32)).dtype == np.int32
