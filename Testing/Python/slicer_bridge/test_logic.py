"""MedPrepLogic on a real MRML scene, in Slicer's own Python layer (Testing/Python/slicer_harness): the real
ScriptedLoadableModuleLogic and parameter node wrapper over slicer-core. The views (showSideBySide,
showOverlay) are checked on the harness's slice logics in test_module_panel.py.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

import MedPrepSample as sample
from MedPrepLib.convert import volume_from_series
from MedPrepLib.errors import MedPrepError
from MedPrepLib.nifti import read_nifti
from MedPrepLib.preprocess import load_pipeline, run_pipeline
from MedPrepLib.volume import Volume

vtk = pytest.importorskip("vtk", reason="vtk is not installed: it comes with slicer-core (`make test-slicer`)")


@pytest.fixture
def scene(harness):
    return harness.mrmlScene


def options(MedPrep, **changes):
    """The module's parameter node with the anonymization and header fields the Logic reads."""
    parameters = MedPrep.MedPrepLogic().getParameterNode()
    values = {c.parameter: c.default for c in MedPrep.presenter.anonymizeControls()}
    values.update(anonymizationKey="project-key", headerSearch="", headerShowPrivate=True)
    values.update(changes)
    for name, value in values.items():
        parameters.setValue(name, value)
    return parameters


def ijk_to_ras(node) -> np.ndarray:
    m = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(m)
    return np.array([[m.GetElement(r, c) for c in range(4)] for r in range(4)])


@pytest.fixture
def ct(tmp_path):
    sample.write_ct_series(tmp_path / "dicom", n_slices=6, rows=20, cols=16, spacing=(0.8, 0.8, 2.0),
                           patient={"PatientName": "Doe^Jane", "PatientID": "MRN-12345"})
    return tmp_path / "dicom"


def test_scan_load_header_and_anonymize(MedPrep, scene, ct, tmp_path):
    logic = MedPrep.MedPrepLogic()
    result = logic.scanFolder(str(ct))
    node = logic.loadSeries(result.series[0], scene=scene)

    assert node.GetScene() is scene and node.GetImageData().GetDimensions() == (16, 20, 6)
    np.testing.assert_allclose(ijk_to_ras(node), volume_from_series(result.series[0]).affine, atol=1e-9)
    assert len(logic.sourceFiles(node)) == 6
    assert len(node.GetAttribute("DICOM.instanceUIDs").split()) == 6

    params = options(MedPrep)
    rows = {r.keyword: r.value for r in logic.headerRows(node)}
    assert rows["PatientID"] == "MRN-12345"
    searched = logic.filterRows(logic.headerRows(node), options(MedPrep, headerSearch="MRN-"))
    assert [r.keyword for r in searched] == ["PatientID"]
    before, after = logic.previewAnonymization(node, logic.anonymizer(params))
    assert {r.keyword: r.value for r in before}["PatientID"] == "MRN-12345"
    assert "MRN-12345" not in {r.keyword: r.value for r in after}["PatientID"]

    report = logic.anonymizeFolder(str(ct), str(tmp_path / "anon"), logic.anonymizer(params))
    written = list((tmp_path / "anon").rglob("*.dcm"))
    assert report.written == len(written) == 6
    assert not any(b"MRN-12345" in p.read_bytes() or b"Doe^Jane" in p.read_bytes() for p in written)

    with pytest.raises(MedPrepError, match="exclude"):
        logic.anonymizer(options(MedPrep, shiftDates=True, keepDates=True))


def test_preprocess_matches_medprep_run_and_leaves_the_input_alone(MedPrep, scene, ct, tmp_path):
    logic = MedPrep.MedPrepLogic()
    series = logic.scanFolder(str(ct)).series[0]
    node = logic.loadSeries(series, scene=scene)
    voxels = logic.volumeFromNode(node).scaled().copy()
    labels = np.zeros((6, 20, 16), np.uint8)
    labels[2:4, 5:15, 4:12] = 1
    label = MedPrep.MedPrepBridge.addVolumeNode(scene, Volume(labels, ijk_to_ras(node)), "liver", labelmap=True)
    steps = MedPrep.presenter.pipelineSteps(MedPrep.presenter.PreprocessSettings(
        orientation="LPS", resample=True, spacing=(1.6, 1.6, 2.0), interpolation="linear",
        intensity="clip", intensityRange=(-200.0, 250.0)))

    seen = []
    out, outLabel = logic.preprocess(node, steps, label, progress=lambda done, total: seen.append((done, total)),
                                     scene=scene)
    assert seen == [(0, 3), (1, 3), (2, 3), (3, 3)]
    np.testing.assert_array_equal(logic.volumeFromNode(node).scaled(), voxels)  # input untouched
    assert out.GetID() != node.GetID() and outLabel.IsA("vtkMRMLLabelMapVolumeNode")
    np.testing.assert_allclose(out.GetSpacing(), (1.6, 1.6, 2.0), atol=1e-9)
    np.testing.assert_allclose(ijk_to_ras(outLabel), ijk_to_ras(out), atol=1e-9)

    # What `medprep run` computes from the same DICOM with the exported pipeline file:
    logic.exportPipeline(steps, str(tmp_path / "pipeline.yaml"))
    expected, expectedLabel = run_pipeline(volume_from_series(series), load_pipeline(tmp_path / "pipeline.yaml"),
                                           Volume(labels, volume_from_series(series).affine))
    ours = logic.volumeFromNode(out)
    assert ours.array.dtype == expected.array.dtype
    np.testing.assert_array_equal(ours.scaled(), expected.scaled())
    np.testing.assert_allclose(ours.affine, expected.affine, atol=1e-9)
    np.testing.assert_array_equal(MedPrep.MedPrepBridge.volumeFromNode(outLabel).array, expectedLabel.array)

    written = logic.save(out, str(tmp_path / "out"), "case", outLabel, compress=True)
    assert [p.name for p in written] == ["case.nii.gz", "case.json", "case_label.nii.gz"]
    saved = read_nifti(written[0])
    np.testing.assert_allclose(saved.affine, ijk_to_ras(out), atol=1e-5)
    np.testing.assert_array_equal(saved.scaled(), expected.scaled())
    np.testing.assert_array_equal(read_nifti(written[2]).array, expectedLabel.array)
    provenance = json.loads(written[1].read_text())["MedPrepProvenance"]
    assert [s["step"] for s in provenance["steps"]] == ["dicom_to_nifti", "orient", "resample", "clip"]


def test_preprocess_refuses_dataset_statistics_steps(MedPrep, scene, ct):
    logic = MedPrep.MedPrepLogic()
    node = logic.loadSeries(logic.scanFolder(str(ct)).series[0], scene=scene)
    before = scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode")
    with pytest.raises(MedPrepError, match="statistics"):
        logic.preprocess(node, [{"step": "dataset_zscore"}], scene=scene)
    assert scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode") == before


def test_volumes_not_loaded_by_medprep_save_with_a_history_entry(MedPrep, scene, tmp_path):
    logic = MedPrep.MedPrepLogic()
    node = MedPrep.MedPrepBridge.addVolumeNode(scene, Volume(np.ones((2, 3, 4), np.int16), np.eye(4)), "plain")
    assert logic.sourceFiles(node) == []
    logic.save(node, str(tmp_path), "plain", compress=False)
    provenance = json.loads((tmp_path / "plain.json").read_text())["MedPrepProvenance"]
    assert provenance["steps"] == [{"step": "slicer_volume", "params": {"node": "plain"}}]
    assert (tmp_path / "plain.nii").is_file()


def test_missing_requirements_names_what_slicer_would_install(MedPrep, monkeypatch):
    monkeypatch.setattr(MedPrep, "REQUIREMENTS", [("json", "json-is-stdlib"), ("no_such_module_xyz", "xyz>=1")])
    assert MedPrep.MedPrepLogic.missingRequirements() == ["xyz>=1"]


def test_step_requirements_are_asked_for_only_when_the_pipeline_uses_the_step(MedPrep, monkeypatch):
    from MedPrepLib.preprocess import get_step

    assert [module for module, _ in MedPrep.STEP_REQUIREMENTS["register_mni"]] == ["nilearn"]
    for name in MedPrep.STEP_REQUIREMENTS:
        get_step(name)  # every key names a real step
    monkeypatch.setattr(MedPrep, "REQUIREMENTS", [("json", "json-is-stdlib")])
    monkeypatch.setattr(MedPrep, "STEP_REQUIREMENTS", {"register_mni": [("no_such_module_xyz", "xyz>=1")],
                                                       "n4": [("json", "json-is-stdlib")]})
    missing = MedPrep.MedPrepLogic.missingRequirements
    assert missing() == [] and missing([{"step": "orient"}, {"step": "n4"}]) == []
    assert missing([{"step": "n4"}, {"step": "register_mni"}, {"step": "register_mni", "spacing": 2}]) == ["xyz>=1"]


def test_parameter_node_annotations_resolve(MedPrep):
    """parameterNodeWrapper reads the fields with typing.get_type_hints: every annotation must evaluate."""
    import typing

    hints = typing.get_type_hints(MedPrep.MedPrepParameterNode, include_extras=True)
    assert hints["inputVolume"] is MedPrep.vtkMRMLScalarVolumeNode
    assert hints["inputLabel"] is MedPrep.vtkMRMLLabelMapVolumeNode
    assert typing.get_origin(hints["orientation"]) is typing.Annotated


def test_rgb_series_loads_as_a_vector_volume(MedPrep, scene, tmp_path):
    """Colour FA maps, secondary captures: three components per voxel in a vector volume node, as
    Slicer's own DICOM reader loads them, with the same geometry as the NIfTI MedPrep writes."""
    rgb = np.random.default_rng(0).integers(0, 256, size=(3, 5, 4, 3)).astype(np.uint8)
    sample.write_rgb_series(tmp_path / "rgb", rgb, planar=1, spacing=(0.5, 0.7, 2.0))
    logic = MedPrep.MedPrepLogic()
    series = logic.scanFolder(str(tmp_path / "rgb")).series[0]
    node = logic.loadSeries(series, scene=scene)
    assert node.IsA("vtkMRMLVectorVolumeNode")
    image = node.GetImageData()
    assert image.GetDimensions() == (4, 5, 3) and image.GetNumberOfScalarComponents() == 3
    values = vtk.util.numpy_support.vtk_to_numpy(image.GetPointData().GetScalars()).reshape(3, 5, 4, 3)
    np.testing.assert_array_equal(values, rgb)
    np.testing.assert_allclose(ijk_to_ras(node), volume_from_series(series).affine, atol=1e-9)


def test_per_image_steps_stop_at_the_first_step_that_needs_a_dataset(MedPrep):
    logic = MedPrep.MedPrepLogic
    steps, leftOut = logic.perImageSteps(logic.presetPipeline("ct-liver")["steps"])
    assert [s["step"] for s in steps] == ["modality_lut", "orient", "resample", "clip"]
    assert leftOut == ["dataset_zscore"]
    clip = {"step": "clip", "min": 0.0, "max": 1.0}
    assert logic.perImageSteps([{"step": "dataset_zscore"}, clip]) == ([], ["dataset_zscore", "clip"])
    assert logic.perImageSteps([clip]) == ([clip], [])


def test_scanning_a_folder_without_files_is_an_error_like_medprep_scan(MedPrep, tmp_path):
    with pytest.raises(MedPrepError, match="no files found"):
        MedPrep.MedPrepLogic.scanFolder(str(tmp_path))


def test_boxes_load_as_markups_and_follow_apply(MedPrep, scene, ct, tmp_path):
    """A box and a point from a table load on the volume; Apply carries them onto the output volume as
    `medprep run` carries them into boxes.csv (same pixels), the box cut by the crop clipped."""
    from MedPrepLib.boxes import Box, identity_map, transform_boxes
    from MedPrepLib.convert import volume_from_series
    from MedPrepLib.preprocess import load_pipeline
    from MedPrepLib.preprocess.registry import INDEX_MAP_KEY

    logic = MedPrep.MedPrepLogic()
    series = logic.scanFolder(str(ct)).series[0]
    node = logic.loadSeries(series, scene=scene)
    (tmp_path / "boxes.csv").write_text("case,x,y,z,width,height,depth\nc1,2,3,1,10,12,4\nc1,5,6,2,,,\n")
    loaded = logic.loadBoxes(node, str(tmp_path / "boxes.csv"), "c1", "case", scene=scene)
    assert [n.GetClassName() for n in loaded] == ["vtkMRMLMarkupsROINode", "vtkMRMLMarkupsFiducialNode"]
    steps = [{"step": "orient", "axcodes": "RAS"}, {"step": "resample", "spacing": [0.5, 0.6, 1.0]},
             {"step": "crop_pad", "shape": [12, 16, 10]}]
    out, _ = logic.preprocess(node, steps, scene=scene, markups=loaded)
    roi, point = logic.outputMarkups
    # what the same steps give for the same boxes outside Slicer
    image = volume_from_series(series)
    expected, _ = run_pipeline(image, load_pipeline(steps))
    boxes = [Box((2.0, 3.0, 1.0), (12.0, 15.0, 5.0)), Box((5.0, 6.0, 2.0), (5.0, 6.0, 2.0))]
    moved = transform_boxes(boxes, expected.meta[INDEX_MAP_KEY], expected.affine)
    assert [b["status"] for b in moved] == ["clipped", "kept"]
    back = MedPrep.MedPrepBridge.boxesFromNodes([roi, point], ijk_to_ras(out))
    np.testing.assert_allclose(np.r_[back[0].lo, back[0].hi], moved[0]["pixels"], atol=1e-4)
    np.testing.assert_allclose(back[1].lo, moved[1]["pixels"][:3], atol=1e-4)
    assert transform_boxes(boxes, identity_map(image), image.affine)[0]["status"] == "kept"


def test_the_node_record_holds_the_sidecar_metadata_not_reader_state(MedPrep, scene, ct):
    """What a node carries in the scene (saved with it) is JSON a sidecar would hold: no private reader
    keys (slice positions, source frames) turned into repr strings of numpy arrays."""
    logic = MedPrep.MedPrepLogic()
    series = logic.scanFolder(str(ct)).series[0]
    assert "_slice_positions_lps" in volume_from_series(series).meta  # what the reader keeps for itself
    node = logic.loadSeries(series, scene=scene)
    record = json.loads(node.GetAttribute(MedPrep.RECORD_ATTRIBUTE))
    assert not [key for key in record["meta"] if key.startswith("_")]
    assert "array(" not in json.dumps(record) and record["meta"]["Modality"] == "CT"
    out, _ = logic.preprocess(node, [{"step": "clip", "min": 0, "max": 100}], scene=scene)
    assert json.loads(out.GetAttribute(MedPrep.RECORD_ATTRIBUTE))["output"]["dtype"] == "float32"
