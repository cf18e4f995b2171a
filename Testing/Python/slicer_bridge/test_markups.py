"""Boxes and points on a volume as Slicer Markups (ROI and fiducial nodes of slicer-core's MRML)."""
from __future__ import annotations

import itertools

import numpy as np

from MedPrepLib.boxes import Box, transform_boxes
from MedPrepLib.preprocess import load_pipeline
from MedPrepLib.preprocess.pipeline import run_pipeline
from MedPrepLib.preprocess.registry import INDEX_MAP_KEY
from MedPrepLib.volume import Volume


def oblique_volume() -> Volume:
    a = np.deg2rad(25)
    rot = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    affine = np.eye(4)
    affine[:3, :3] = rot @ np.diag([0.8, 1.1, 3.0])
    affine[:3, 3] = [-20, 15, 40]
    return Volume(np.zeros((10, 40, 50), np.float32), affine)


def roi_corners(node) -> np.ndarray:
    from MedPrepBridge import _arrayFromMatrix

    m = _arrayFromMatrix(node.GetObjectToNodeMatrix())
    size = np.array(node.GetSize())
    return np.array([(m @ np.r_[np.array(s) * size / 2, 1])[:3] for s in itertools.product((-1, 1), repeat=3)])


def test_a_box_is_an_roi_on_the_volume_axes_and_a_point_a_fiducial(scene, bridge):
    volume = oblique_volume()
    steps = load_pipeline([{"step": "orient", "axcodes": "LPS"}, {"step": "resample", "size": [60, 30, 10]}])
    out, _ = run_pipeline(volume, steps)
    boxes = transform_boxes([Box((5.0, 6.0, 1.0), (30.0, 25.0, 7.0), "heart"), Box((12.5, 8.5, 2.5), (12.5, 8.5, 2.5)),
                             Box((60.0, 45.0, 9.0), (70.0, 50.0, 10.0))], out.meta[INDEX_MAP_KEY], out.affine)
    assert [b["status"] for b in boxes] == ["kept", "kept", "dropped"]
    roi, point = bridge.addBoxNodes(scene, boxes, out.affine)
    assert roi.GetClassName() == "vtkMRMLMarkupsROINode" and point.GetClassName() == "vtkMRMLMarkupsFiducialNode"
    # the ROI's corners are the box's corners on the output volume, in RAS
    px = np.array(boxes[0]["pixels"])
    expected = np.array([(out.affine @ np.r_[np.where(s, px[3:], px[:3]) - 0.5, 1])[:3]
                         for s in itertools.product((0, 1), repeat=3)])
    np.testing.assert_allclose(sorted(map(tuple, np.round(roi_corners(roi), 6))),
                               sorted(map(tuple, np.round(expected, 6))), atol=1e-5)
    # and the input box's corners: the steps kept world positions
    before = np.array([(volume.affine @ np.r_[np.where(s, [30, 25, 7], [5, 6, 1]) - 0.5, 1])[:3]
                       for s in itertools.product((0, 1), repeat=3)])
    np.testing.assert_allclose(sorted(map(tuple, np.round(roi_corners(roi), 4))),
                               sorted(map(tuple, np.round(before, 4))), atol=1e-3)
    position = [0.0, 0.0, 0.0]
    point.GetNthControlPointPosition(0, position)
    np.testing.assert_allclose(position, (volume.affine @ np.r_[12.0, 8.0, 2.0, 1])[:3], atol=1e-6)
