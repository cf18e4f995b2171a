"""The MedPrep module as Slicer runs it: module, Widget with the real .ui, Logic, on real MRML, through
Slicer's own ScriptedLoadableModule and parameterNodeWrapper (Testing/Python/slicer_harness).

Every button is clicked on the demo data (the DICOM `medprep demo` writes, with fewer CT slices),
the parameter node is checked against every bound widget both ways through Slicer's GUI connectors,
and the scene is saved and read back. What needs the application's views is listed in the README.
"""
from __future__ import annotations

import json
import typing
from pathlib import Path

import numpy as np
import pytest

from MedPrepLib.cli.demo_cmd import write_sample
from MedPrepLib.nifti import read_nifti
from MedPrepSample import write_ct_series, write_cxr

SLICES = 12  # the demo CT is 512x512x200; fewer slices keep the test quick, nothing else changes


@pytest.fixture(scope="session")
def demo(tmp_path_factory) -> Path:
    """DICOM of `medprep demo`: dicom/ct (body CT, series 1) and dicom/cxr (chest X-ray, series 2)."""
    dicom = tmp_path_factory.mktemp("demo") / "dicom"
    write_sample(dicom / "ct", SLICES, False, lambda d: write_ct_series(d, n_slices=SLICES, series_number=1))
    write_sample(dicom / "cxr", 1, False, lambda d: [write_cxr(d, series_number=2)])
    return dicom


@pytest.fixture(scope="session")
def module(harness):
    import slicer_harness

    return slicer_harness.loadMedPrep()


@pytest.fixture
def errors(harness, monkeypatch):
    """What the panel shows in error pop-ups (logged only, as Slicer does in testing mode)."""
    shown = []
    monkeypatch.setattr(harness.util, "errorDisplay", lambda text, *args, **kwargs: shown.append(text))
    monkeypatch.setattr(harness.util, "pip_install", lambda *args: pytest.fail("the panel tried to pip install"))
    return shown


@pytest.fixture
def panel(harness, module, errors):
    """The module's widget, entered, on an empty scene (closing the scene is part of the test)."""
    harness.mrmlScene.Clear(0)
    module.widgetRepresentation()
    module.enter()
    yield module._widget
    module.exit()


def bound_widgets(ui) -> dict:
    return {w.property("SlicerParameterName"): w for w in vars(ui).values()
            if hasattr(w, "property") and w.property("SlicerParameterName")}


def scan_and_load(widget, folder: Path, row: int = 0):
    widget.ui.inputFolderButton.directory = str(folder)
    widget.ui.scanButton.click()
    widget.ui.seriesTable.selectRow(row)
    widget.ui.loadButton.click()
    return widget._parameterNode.inputVolume


# ---------------------------------------------------------------------------------------------
# The module and its life cycle


def test_module_registers_like_slicer_does(harness, module):
    assert module.title == "MedPrep" and module.categories == ["Utilities"]
    assert "NIfTI" in module.helpText and module.icon is not None
    assert "MedPrep" in harness.selfTests  # "Reload and Test" finds MedPrepTest through this
    assert type(harness.util.getModuleLogic("MedPrep")).__name__ == "MedPrepLogic"


def test_setup_builds_the_panel_from_the_ui_file(harness, panel):
    ui = panel.ui
    assert panel.parent.layout().itemAt(0).widget().objectName == "MedPrep"
    assert [ui.presetComboBox.itemText(i) for i in range(ui.presetComboBox.count)] == \
        ["(custom)"] + panel.logic.presetNames()
    # The .ui file's own connections hand the scene to every node selector.
    for selector in (ui.inputVolumeSelector, ui.inputLabelSelector, ui.outputVolumeSelector, ui.outputLabelSelector):
        assert selector.mrmlScene() is harness.mrmlScene
    assert ui.inputVolumeSelector.nodeTypes == ("vtkMRMLScalarVolumeNode",)
    assert ui.inputLabelSelector.nodeTypes == ("vtkMRMLLabelMapVolumeNode",)
    assert set(bound_widgets(ui)) == set(type(panel._parameterNode).allParameters)


def test_enter_connects_and_exit_disconnects_the_parameter_node(harness, module, panel):
    p = panel._parameterNode
    assert p.parameterNode is panel.logic.getParameterNode().parameterNode
    panel.ui.saveNameLineEdit.text = "connected"
    assert p.saveName == "connected"
    module.exit()
    panel.ui.saveNameLineEdit.text = "not seen"
    assert p.saveName == "connected"
    p.saveName = "from node"
    assert panel.ui.saveNameLineEdit.text == "not seen"
    module.enter()
    assert panel.ui.saveNameLineEdit.text == "from node"
    panel.ui.saveNameLineEdit.text = "again"
    assert p.saveName == "again"


def test_cleanup_on_unload_removes_the_observers(harness, module):
    import MedPrep
    import qt

    parent = harness.qMRMLWidget()
    parent.setLayout(qt.QVBoxLayout())
    parent.setMRMLScene(harness.mrmlScene)
    widget = MedPrep.MedPrepWidget(parent)
    widget.setup()
    assert widget.Observations
    # Slicer's moduleAboutToBeUnloaded("MedPrep") reaches this slot of every MedPrep widget (reload).
    widget._onModuleAboutToBeUnloaded("MedPrep")
    assert widget.Observations == []
    widget._parameterNode.disconnectGui(widget._parameterNodeGuiTag)


def test_closing_the_scene_resets_the_panel(harness, panel, demo):
    scan_and_load(panel, demo / "ct")
    assert panel.ui.seriesTable.rowCount == 1
    harness.mrmlScene.Clear(0)
    assert panel.ui.seriesTable.rowCount == 0 and panel._scan is None
    assert panel._parameterNode is not None and panel._parameterNode.inputVolume is None
    assert panel.ui.inputVolumeSelector.currentNode() is None
    panel.ui.saveNameLineEdit.text = "after close"
    assert panel.logic.getParameterNode().saveName == "after close"


# ---------------------------------------------------------------------------------------------
# Parameter node <-> widgets, through Slicer's GUI connectors


def _values(harness, parameterClass, name: str, tmp_path: Path) -> list:
    """Two valid values of a field, different from its default."""
    from slicer.parameterNodeWrapper import Choice, WithinRange, findFirstAnnotation, splitAnnotations

    info = parameterClass.allParameters[name]
    kind, annotations = splitAnnotations(info.unalteredType)
    choice = findFirstAnnotation(annotations, Choice)
    bounds = findFirstAnnotation(annotations, WithinRange)
    if choice:
        return [c for c in choice.choices if c != info.default.value][:2]
    if kind is bool:
        return [not info.default.value, info.default.value]
    if kind is str:
        return [f"{name}-one", f"{name} two"]
    if kind is Path:
        return [tmp_path / "first", tmp_path / "second"]
    if kind in (int, float):
        span = bounds.maximum - bounds.minimum
        return [kind(round(bounds.minimum + span * f, 2)) if kind is float else kind(bounds.minimum + 3 + i)
                for i, f in enumerate((0.25, 0.5))]
    if isinstance(kind, type) and issubclass(kind, harness.vtkMRMLNode):
        return [harness.mrmlScene.AddNewNodeByClass(kind.__name__, f"{name} {i}") for i in range(2)]
    raise AssertionError(f"{name}: no test values for {kind}")


def _read(widget):
    cls = type(widget).__name__
    if cls == "QCheckBox":
        return widget.checked
    if cls == "QLineEdit":
        return widget.text
    if cls == "QComboBox":
        return widget.currentText
    if cls in ("QDoubleSpinBox", "QSpinBox", "ctkSliderWidget"):
        return widget.value
    if cls == "ctkDirectoryButton":
        return Path(widget.directory)
    if cls == "qMRMLNodeComboBox":
        return widget.currentNode()
    raise AssertionError(f"no reader for {cls}")


def _write(widget, value) -> None:
    cls = type(widget).__name__
    if cls == "QCheckBox":
        widget.checked = value
    elif cls == "QLineEdit":
        widget.text = value
    elif cls == "QComboBox":
        widget.currentIndex = widget.findText(value)
    elif cls in ("QDoubleSpinBox", "QSpinBox", "ctkSliderWidget"):
        widget.value = value
    elif cls == "ctkDirectoryButton":
        widget.directory = str(value)
    elif cls == "qMRMLNodeComboBox":
        widget.setCurrentNode(value)
    else:
        raise AssertionError(f"no writer for {cls}")


def _same(a, b) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return abs(a - b) < 1e-9
    if hasattr(a, "GetID") or hasattr(b, "GetID"):
        return a is b or (a is not None and b is not None and a.GetID() == b.GetID())
    return a == b


def test_every_bound_widget_round_trips_through_the_parameter_node(harness, panel, tmp_path):
    p = panel._parameterNode
    widgets = bound_widgets(panel.ui)
    for name in type(p).allParameters:
        widget = widgets[name]
        fromWidget, fromNode = _values(harness, type(p), name, tmp_path)
        _write(widget, fromWidget)
        assert _same(p.getValue(name), fromWidget), f"{name}: widget -> node gave {p.getValue(name)!r}"
        p.setValue(name, fromNode)
        assert _same(_read(widget), fromNode), f"{name}: node -> widget gave {_read(widget)!r}"
        assert _same(p.getValue(name), fromNode), f"{name}: the widget wrote {p.getValue(name)!r} back"


def test_volume_selectors_offer_the_right_node_classes(harness, panel):
    scalar = harness.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "ct")
    label = harness.mrmlScene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "liver")
    def items(selector):
        return [selector.itemText(i) for i in range(selector.count)]

    assert items(panel.ui.inputVolumeSelector) == ["None", "ct"]
    assert items(panel.ui.inputLabelSelector) == ["None", "liver"]
    panel.ui.inputLabelSelector.setCurrentNode(label)
    harness.mrmlScene.RemoveNode(label)  # the selector lets go, and so does the parameter node
    assert panel._parameterNode.inputLabel is None
    assert panel._parameterNode.inputVolume is None and scalar.GetScene() is harness.mrmlScene


def test_saving_and_reloading_the_scene_keeps_the_parameters(harness, module, panel, demo, tmp_path):
    node = scan_and_load(panel, demo / "ct")
    p = panel._parameterNode
    with harness.util.NodeModify(p.parameterNode):
        p.orientation, p.spacingX, p.sizeZ, p.intensity, p.intensityLow = "LPS", 0.75, 64, "clip", -200.0
        p.anonymizationKey, p.keepDates, p.saveFolder, p.overlayOpacity = "project-key", True, tmp_path / "out", 0.3
    saved = {name: p.getValue(name) for name in type(p).allParameters}

    scene = harness.mrmlScene
    scene.SetURL(str(tmp_path / "scene.mrml"))
    assert scene.Commit()
    scene.Clear(0)
    assert panel._parameterNode.inputVolume is None
    scene.SetURL(str(tmp_path / "scene.mrml"))
    assert scene.Connect()  # File > Load scene: replaces the scene's content

    p = panel.logic.getParameterNode()
    for name, value in saved.items():
        got = p.getValue(name)
        if hasattr(value, "GetID"):
            assert got is not None and got.GetID() == value.GetID() and got.GetName() == node.GetName(), name
        else:
            assert _same(got, value), f"{name}: {value!r} saved, {got!r} loaded"
    module.exit()
    module.enter()  # the panel shows what the loaded scene holds
    assert panel.ui.orientationComboBox.currentText == "LPS" and panel.ui.spacingXSpinBox.value == 0.75
    assert panel.ui.inputVolumeSelector.currentNode().GetName() == node.GetName()
    # The record MedPrep keeps on its nodes comes back with the scene.
    assert len(panel.logic.sourceFiles(p.inputVolume)) == SLICES


# ---------------------------------------------------------------------------------------------
# Every button, on the demo data


def test_scan_and_load_the_demo_series(harness, panel, demo, errors):
    ui = panel.ui
    assert not ui.scanButton.enabled
    ui.inputFolderButton.directory = str(demo)
    assert ui.scanButton.enabled and not ui.loadButton.enabled
    ui.scanButton.click()
    rows = [[ui.seriesTable.item(r, c).text() for c in range(ui.seriesTable.columnCount)]
            for r in range(ui.seriesTable.rowCount)]
    assert [row[:5] for row in rows] == [["1", "CT", "CT body phantom", f"512x512x{SLICES}", str(SLICES)],
                                         ["2", "DX", "Chest PA", "2048x2048x1", "1"]]
    assert ui.scanStatusLabel.text == f"2 series in {SLICES + 1} files"
    assert ui.loadButton.enabled
    ui.loadButton.click()
    node = panel._parameterNode.inputVolume
    assert node.GetImageData().GetDimensions() == (512, 512, SLICES)
    assert ui.inputVolumeSelector.currentNode() is node
    assert panel._parameterNode.saveName == "001_CT_body_phantom"
    assert Path(panel._parameterNode.anonymizedFolder) == Path(str(demo) + "-anonymized")
    for name in ("Red", "Yellow", "Green"):  # shown in every slice view
        composite = harness.app.layoutManager().sliceWidget(name).mrmlSliceCompositeNode()
        assert composite.GetBackgroundVolumeID() == node.GetID()
    ui.seriesTable.selectRow(1)
    ui.loadButton.click()
    assert panel._parameterNode.inputVolume.GetImageData().GetDimensions() == (2048, 2048, 1)
    assert errors == []


def test_header_search_and_private_rows(panel, demo, errors):
    ui = panel.ui
    scan_and_load(panel, demo / "ct")
    assert ui.headerTable.rowCount == 0  # collapsed: nothing read
    ui.headerCollapsibleButton.collapsed = False
    shown = {ui.headerTable.item(r, 1).text(): ui.headerTable.item(r, 3).text() for r in range(ui.headerTable.rowCount)}
    assert shown["PatientName"] == "DEMO^PATIENT" and shown["Modality"] == "CT"
    ui.headerSearchLineEdit.text = "PatientName"
    assert [ui.headerTable.item(r, 1).text() for r in range(ui.headerTable.rowCount)] == ["PatientName"]
    assert errors == []


def test_preview_and_run_anonymization(panel, demo, tmp_path, errors):
    ui = panel.ui
    scan_and_load(panel, demo / "ct")
    ui.anonKeyLineEdit.text = "project-key"
    ui.shiftDatesCheckBox.checked = True
    assert not ui.keepDatesCheckBox.enabled
    ui.previewAnonymizationButton.click()
    assert not ui.headerCollapsibleButton.collapsed
    assert [ui.headerTable.horizontalHeaderItem(c).text() for c in range(5)] == \
        ["Tag", "Keyword", "VR", "Original", "Anonymized"]
    pairs = {ui.headerTable.item(r, 1).text(): (ui.headerTable.item(r, 3).text(), ui.headerTable.item(r, 4).text())
             for r in range(ui.headerTable.rowCount)}
    assert pairs["PatientName"][0] == "DEMO^PATIENT" and "DEMO" not in pairs["PatientName"][1]
    assert pairs["PatientIdentityRemoved"] == ("", "YES")
    assert ui.statusLabel.text.endswith("header values change")

    ui.anonOutputFolderButton.directory = str(tmp_path / "anon")
    ui.anonymizeButton.click()
    assert ui.statusLabel.text == f"{SLICES} files of 1 series written, 0 series withheld"
    written = list((tmp_path / "anon").rglob("*.dcm"))
    assert len(written) == SLICES and not any(b"DEMO^PATIENT" in f.read_bytes() for f in written)
    assert errors == []


def test_preprocess_with_a_preset(harness, panel, demo, errors):
    ui = panel.ui
    node = scan_and_load(panel, demo / "ct")
    ui.presetComboBox.currentIndex = ui.presetComboBox.findText("ct-liver")
    assert ui.presetComboBox.currentText == "ct-liver" and panel._parameterNode.orientation == "RAS"
    ui.applyPreprocessButton.click()
    assert errors == []
    out = panel._parameterNode.outputVolume
    assert out is not None and out is not node and ui.outputVolumeSelector.currentNode() is out
    np.testing.assert_allclose(out.GetSpacing(), (1.5, 1.5, 1.0), atol=1e-6)
    values = harness.util.arrayFromVolume(out)
    assert values.min() >= -200 and values.max() <= 250  # up to the clip; dataset_zscore needs a dataset
    assert "dataset_zscore" in ui.statusLabel.text
    assert [s["step"] for s in json.loads(out.GetAttribute("MedPrep.record"))["history"]][-1] == "clip"
    # Editing a step field turns the preset back into "(custom)": the form is what Apply runs then.
    ui.intensityHighSpinBox.value = 300.0
    assert ui.presetComboBox.currentText == "(custom)" and panel.currentPipelineSteps()[-1]["max"] == 300.0


def test_preprocess_with_custom_settings_and_a_label_map(harness, panel, demo, errors):
    from MedPrepLib.volume import Volume
    import MedPrepBridge

    ui = panel.ui
    node = scan_and_load(panel, demo / "ct")
    labels = np.zeros((SLICES, 512, 512), np.uint8)
    labels[8:16, 200:300, 200:300] = 1
    label = MedPrepBridge.addVolumeNode(harness.mrmlScene, Volume(labels, panel.logic.volumeFromNode(node).affine),
                                        "liver", labelmap=True)
    ui.orientationComboBox.currentIndex = ui.orientationComboBox.findText("LPS")
    ui.resampleCheckBox.checked = True
    for axis, value in zip("XYZ", (2.0, 2.0, 4.0)):
        getattr(ui, f"spacing{axis}SpinBox").value = value
    ui.cropPadCheckBox.checked = True
    ui.sizeXSpinBox.value, ui.sizeYSpinBox.value, ui.sizeZSpinBox.value = 200, 180, 6
    ui.intensityComboBox.currentIndex = ui.intensityComboBox.findText("minmax")
    assert ui.intensityLowSpinBox.enabled and ui.intensityRangeLabel.text == "Output range:"
    ui.intensityLowSpinBox.value, ui.intensityHighSpinBox.value = 0.0, 1.0
    ui.inputLabelSelector.setCurrentNode(label)
    assert ui.presetComboBox.currentIndex == 0
    ui.applyPreprocessButton.click()
    assert errors == []
    p = panel._parameterNode
    assert p.outputVolume.GetImageData().GetDimensions() == (200, 180, 6)
    np.testing.assert_allclose(p.outputVolume.GetSpacing(), (2.0, 2.0, 4.0), atol=1e-6)
    result = harness.util.arrayFromVolume(p.outputVolume)
    assert result.min() == pytest.approx(0.0) and result.max() == pytest.approx(1.0)
    assert p.outputLabel.IsA("vtkMRMLLabelMapVolumeNode") and ui.outputLabelSelector.currentNode() is p.outputLabel
    assert harness.util.arrayFromVolume(p.outputLabel).max() == 1


def test_before_after_and_overlay(harness, panel, demo, errors):
    ui = panel.ui
    node = scan_and_load(panel, demo / "ct")
    ui.resampleCheckBox.checked = True
    ui.applyPreprocessButton.click()  # shows before | after by itself
    out = panel._parameterNode.outputVolume
    layout = harness.app.layoutManager()
    assert layout.layout == harness.vtkMRMLLayoutNode.SlicerLayoutSideBySideView
    red, yellow = (layout.sliceWidget(n).mrmlSliceCompositeNode() for n in ("Red", "Yellow"))
    assert (red.GetBackgroundVolumeID(), yellow.GetBackgroundVolumeID()) == (node.GetID(), out.GetID())
    assert red.GetLinkedControl() and yellow.GetHotLinkedControl()

    ui.fadeSlider.value = 0.3
    ui.overlayButton.click()
    assert layout.layout == harness.vtkMRMLLayoutNode.SlicerLayoutFourUpView
    for name in ("Red", "Yellow", "Green"):
        composite = layout.sliceWidget(name).mrmlSliceCompositeNode()
        assert (composite.GetBackgroundVolumeID(), composite.GetForegroundVolumeID()) == (node.GetID(), out.GetID())
        assert composite.GetForegroundOpacity() == pytest.approx(0.3)
    ui.fadeSlider.value = 0.8  # the fade slider moves the overlay
    assert all(layout.sliceWidget(n).mrmlSliceCompositeNode().GetForegroundOpacity() == pytest.approx(0.8)
               for n in ("Red", "Yellow", "Green"))
    ui.compareButton.click()
    assert layout.layout == harness.vtkMRMLLayoutNode.SlicerLayoutSideBySideView
    assert errors == []


def test_save_and_export_pipeline(harness, panel, demo, tmp_path, monkeypatch, errors):
    import qt

    ui = panel.ui
    scan_and_load(panel, demo / "ct")
    ui.resampleCheckBox.checked = True
    ui.applyPreprocessButton.click()
    assert not ui.saveButton.enabled  # no folder yet
    ui.saveFolderButton.directory = str(tmp_path)
    ui.compressCheckBox.checked = False
    ui.saveButton.click()
    assert ui.statusLabel.text == "Saved 001_CT_body_phantom.nii, 001_CT_body_phantom.json"
    saved = read_nifti(tmp_path / "001_CT_body_phantom.nii")
    np.testing.assert_allclose(saved.scaled(), harness.util.arrayFromVolume(panel._parameterNode.outputVolume))

    asked = []

    def getSaveFileName(parent, caption, directory, filter):
        asked.append((caption, directory, filter))
        return str(tmp_path / "pipeline.yaml")

    monkeypatch.setattr(qt.QFileDialog, "getSaveFileName", getSaveFileName)
    ui.exportPipelineButton.click()
    assert asked and asked[0][1] == str(tmp_path / "pipeline.json")
    from MedPrepLib.preprocess import load_pipeline

    assert [s.spec.name for s in load_pipeline(tmp_path / "pipeline.yaml").steps] == ["orient", "resample"]
    assert errors == []


def test_cancel_stops_a_running_scan(harness, panel, demo, errors, monkeypatch):
    ui = panel.ui
    ui.inputFolderButton.directory = str(demo)
    seen = []
    original = panel.progress.__call__.__func__

    def progress(reporter, done, total):
        seen.append(done)
        if done == 2:
            assert ui.cancelButton.enabled and not ui.scanButton.enabled
            ui.cancelButton.click()  # as if pressed while the scan let events through
        original(reporter, done, total)

    monkeypatch.setattr(type(panel.progress), "__call__", progress)
    ui.scanButton.click()
    assert seen[-1] == 2 and ui.statusLabel.text == "Cancelled" and ui.progressBar.value == 0
    assert ui.seriesTable.rowCount == 0 and ui.scanButton.enabled and not ui.cancelButton.enabled
    assert errors == []


def test_errors_are_one_line_messages(harness, panel, tmp_path, errors):
    panel.ui.inputFolderButton.directory = str(tmp_path / "missing")
    panel.ui.scanButton.click()
    assert errors == [f"Scanning: no files found ({tmp_path / 'missing'}); check the path"]
    assert panel.ui.statusLabel.text == errors[0][len("Scanning: "):]


# ---------------------------------------------------------------------------------------------
# MedPrepTest, as "Reload and Test" runs it


def test_MedPrepTest_runs_unchanged(harness, module, errors):
    harness.selfTests["MedPrep"](msec=0)  # ScriptedLoadableModule.runTest -> MedPrepTest().runTest()


def test_parameter_annotations_are_what_the_wrapper_saw(module):
    import MedPrep

    hints = typing.get_type_hints(MedPrep.MedPrepParameterNode, include_extras=True)
    assert set(hints) == set(MedPrep.MedPrepParameterNode.allParameters)


def test_readme_picture_script_renders_the_panel_on_the_demo_data(harness, module, demo, tmp_path, errors):
    from PySide6.QtGui import QImage
    from slicer_harness.render_panel import WIDTH, renderPanel

    harness.mrmlScene.Clear(0)
    path = renderPanel(demo.parent, tmp_path / "panel.png", slices=SLICES)
    image = QImage(str(path))
    assert image.width() >= WIDTH and image.height() > 800
    ui = module._widget.ui
    assert ui.seriesTable.rowCount == 2 and ui.outputVolumeSelector.currentNode() is not None
    assert errors == []


def test_every_anonymize_option_has_a_cli_flag_and_a_panel_control_bound_to_the_parameter_node(panel):
    """MedPrepLib describes each AnonymizeOptions field once; `medprep anonymize` and the panel both build
    their controls from it. Every field has a flag and a control with its help, and what the control
    sets reaches the Anonymizer the Logic builds through the parameter node."""
    import argparse
    import dataclasses

    from MedPrepLib.anonymize import AnonymizeOptions
    from MedPrepLib.cli import anonymize_cmd

    parser = argparse.ArgumentParser()
    anonymize_cmd.register(parser.add_subparsers())
    flags = {action.dest: action for action in parser._subparsers._group_actions[0].choices["anonymize"]._actions}
    p, widgets = panel._parameterNode, bound_widgets(panel.ui)
    import MedPrepPresenter  # beside MedPrep.py, importable once the module is loaded

    controls = {c.option: c for c in MedPrepPresenter.anonymizeControls()}
    for option in dataclasses.fields(AnonymizeOptions):
        meta = option.metadata
        assert option.name in flags and flags[option.name].help == meta["help"], option.name
        control = controls[option.name]
        widget = widgets[control.parameter]
        assert widget is getattr(panel.ui, control.widget) and widget.toolTip == meta["help"], option.name
        if meta["choices"]:
            assert list(flags[option.name].choices) == list(meta["choices"])
            assert [widget.itemText(i) for i in range(widget.count)] == list(meta["choices"])
            values = [c for c in meta["choices"] if c != option.default][:1] + [option.default]
        else:
            assert widget.text == meta["label"]
            values = [not option.default, option.default]
        for value in values:
            _write(widget, value)
            assert p.getValue(control.parameter) == value, option.name
            assert getattr(panel.logic.anonymizer(p).options, option.name) == value, option.name
