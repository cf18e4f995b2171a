"""Loading a SEG/RTSTRUCT through the panel's logic gives a label map node aligned with the loaded
image (slicer-core MRML), and "Save as DICOM SEG" writes it back."""
from __future__ import annotations

import numpy as np
import pydicom
import pytest

import MedPrepSample as sample
from MedPrepLib.annotations import read_annotation
from MedPrepLib.annotations.export_seg import grid_from_files

from .test_logic import ijk_to_ras

hd = pytest.importorskip("highdicom")
vtk = pytest.importorskip("vtk", reason="vtk is not installed: it comes with slicer-core (`make test-slicer`)")


def test_seg_loads_as_aligned_label_map_and_saves_back(MedPrep, scene, tmp_path):  # noqa: F811
    # Oblique, anisotropic: any transposition or flip between image and label node shows.
    hu = np.zeros((4, 10, 12), np.float32)
    paths = sample.write_series(tmp_path / "dicom" / "ct", hu, spacing=(0.8, 1.1, 2.5), origin_lps=(5, -7, 30),
                                row_dir=(np.cos(0.4), np.sin(0.4), 0.0), col_dir=(0.0, 0.0, -1.0),
                                file_names="shuffled-noext")
    grid = grid_from_files(paths)
    sources = {}
    for p in paths:
        ds = pydicom.dcmread(str(p))
        sources[str(ds.SOPInstanceUID)] = ds
    labels = np.zeros((4, 10, 12), np.uint8)
    labels[1, 2:5, 3:9] = 1
    labels[3, 7, 0:2] = 2
    code = hd.sr.CodedConcept("85756007", "SCT", "Tissue")
    desc = [hd.seg.SegmentDescription(i, name, code, code, hd.seg.SegmentAlgorithmTypeValues.MANUAL)
            for i, name in ((1, "liver"), (2, "tumour"))]
    seg = hd.seg.Segmentation([sources[uid] for uid, _ in grid.sources], labels,
                              hd.seg.SegmentationTypeValues.BINARY, desc, hd.UID(), 50, hd.UID(), 1, "t", "t", "1", "1")
    seg.save_as(str(tmp_path / "dicom" / "seg.dcm"))

    logic = MedPrep.MedPrepLogic()
    result = logic.scanFolder(str(tmp_path / "dicom"))
    (series,) = result.series
    node = logic.loadSeries(series, scene=scene)
    (label,) = logic.loadAnnotations(series, node, result.annotations_of(series), scene=scene)
    assert label.IsA("vtkMRMLLabelMapVolumeNode")
    assert np.allclose(ijk_to_ras(label), ijk_to_ras(node))
    assert label.GetImageData().GetDimensions() == node.GetImageData().GetDimensions()
    voxels = vtk.util.numpy_support.vtk_to_numpy(label.GetImageData().GetPointData().GetScalars())
    assert np.array_equal(voxels.reshape(labels.shape), labels)

    out = tmp_path / "saved.dcm"
    logic.saveAsDicomSeg(label, node, str(out))
    back = read_annotation(out, grid)
    assert np.array_equal(back.label_array(), labels) and [s.name for s in back.segments] == ["liver", "tumour"]

    # A segmentation node (what the Segment Editor makes) exports the same way, names from its segments.
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "drawn")
    assert MedPrep.slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(label, segmentation)
    for i, name in enumerate(("Liver", "Tumour")):
        segmentation.GetSegmentation().GetNthSegment(i).SetName(name)
    logic.saveAsDicomSeg(segmentation, node, str(out))
    back = read_annotation(out, grid)
    assert np.array_equal(back.label_array(), labels) and [s.name for s in back.segments] == ["Liver", "Tumour"]
