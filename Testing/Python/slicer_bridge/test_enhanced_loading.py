"""The Slicer panel loads an enhanced multi-echo MR object as one volume node per echo and image kind,
through the same reader as `medprep convert` (slicer-core, no Qt)."""
from __future__ import annotations

import numpy as np
import pytest

import MedPrepSample as sample

from .test_logic import ijk_to_ras

vtk = pytest.importorskip("vtk", reason="vtk is not installed: it comes with slicer-core (`make test-slicer`)")


def test_multi_echo_enhanced_series_loads_as_separate_volumes(MedPrep, scene, tmp_path):  # noqa: F811
    from vtk.util.numpy_support import vtk_to_numpy

    rng = np.random.default_rng(0)
    shape = (3, 5, 4)
    images = {(e, k): rng.integers(0, 300, size=shape).astype(np.float64) * 2 - (300 if k == "P" else 0)
              for e in (1, 2) for k in ("M", "P")}
    sample.write_enhanced_mr(tmp_path / "in" / "fmap.dcm", images, echo_times=(4.0, 9.5), spacing=(0.8, 0.9, 2.0),
                             frame_order="shuffled", scaling=((0.5, 0.0), (1.0, -10.0), (2.0, 10.0)),
                             series_description="fmap")

    logic = MedPrep.MedPrepLogic()
    result = logic.scanFolder(str(tmp_path / "in"))
    nodes = {s.postfix: logic.loadSeries(s, scene=scene) for s in result.series}

    assert sorted(nodes) == ["_e1", "_e1_ph", "_e2", "_e2_ph"]
    assert len({n.GetName() for n in nodes.values()}) == 4
    assert scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode") == 4
    for postfix, node in nodes.items():
        key = (int(postfix[2]), "P" if postfix.endswith("_ph") else "M")
        assert node.GetName().endswith(postfix)
        assert node.GetImageData().GetDimensions() == (shape[2], shape[1], shape[0])
        voxels = vtk_to_numpy(node.GetImageData().GetPointData().GetScalars()).reshape(shape)
        assert np.array_equal(voxels.astype(np.float64), images[key]), postfix
    np.testing.assert_allclose(ijk_to_ras(nodes["_e1"]), ijk_to_ras(nodes["_e2_ph"]), atol=1e-9)
