"""The Slicer panel without Qt: the .ui / parameter-node contract, checked statically, and the presenter's data.

The panel itself runs in Slicer's own Python layer in slicer_bridge/test_module_panel.py (make test-slicer).
"""
from __future__ import annotations

import ast
import dataclasses
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

ROOT = Path(__file__).resolve().parents[2]
MODULE = ROOT / "MedPrep" / "MedPrep.py"
UI_FILE = ROOT / "MedPrep" / "Resources" / "UI" / "MedPrep.ui"
sys.path.insert(0, str(ROOT / "MedPrep"))

import MedPrepPresenter as presenter  # noqa: E402

import MedPrepSample as sample  # noqa: E402
from MedPrepLib import naming  # noqa: E402
from MedPrepLib.anonymize import AnonymizeOptions, Anonymizer  # noqa: E402
from MedPrepLib.discovery import scan  # noqa: E402
from MedPrepLib.header import header_rows  # noqa: E402
from MedPrepLib.preprocess import get_step, load_pipeline, run_pipeline  # noqa: E402
from MedPrepLib.preprocess.orient import AXCODES  # noqa: E402
from MedPrepLib.preprocess.resample import INTERPOLATORS  # noqa: E402
from MedPrepLib.volume import Volume  # noqa: E402

# ---------------------------------------------------------------------------------------------
# Static contract: MedPrep.py <-> MedPrep.ui


def ui_widgets() -> dict[str, ET.Element]:
    return {w.get("name"): w for w in ET.parse(UI_FILE).iter("widget")}


def ui_parameters() -> dict[str, ET.Element]:
    out = {}
    for widget in ui_widgets().values():
        for prop in widget.findall("property"):
            if prop.get("name") == "SlicerParameterName":
                name = prop.find("string").text
                assert name not in out, f"parameter {name} is bound to two widgets"
                out[name] = widget
    return out


def module_tree() -> ast.Module:
    return ast.parse(MODULE.read_text())


def parameter_fields() -> dict[str, str]:
    """Field name -> annotation source of the @parameterNodeWrapper class."""
    for node in module_tree().body:
        if isinstance(node, ast.ClassDef) and any(
                isinstance(d, ast.Name) and d.id == "parameterNodeWrapper" for d in node.decorator_list):
            return {stmt.target.id: ast.unparse(stmt.annotation)
                    for stmt in node.body if isinstance(stmt, ast.AnnAssign)}
    raise AssertionError("no @parameterNodeWrapper class in MedPrep.py")


def used_ui_names() -> set[str]:
    """Every `self.ui.NAME` that MedPrep.py reads."""
    return {node.attr for node in ast.walk(module_tree())
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute)
            and node.value.attr == "ui" and isinstance(node.value.value, ast.Name) and node.value.value.id == "self"}


def widget_property(widget: ET.Element, name: str):
    for prop in widget.findall("property"):
        if prop.get("name") == name:
            value = prop[0]
            if value.tag == "stringlist":
                return [s.text for s in value]
            if value.tag == "bool":
                return value.text == "true"
            return value.text
    return None


def test_every_widget_the_module_uses_is_in_the_ui():
    missing = sorted(used_ui_names() - set(ui_widgets()))
    assert not missing, f"MedPrep.py uses widgets that MedPrep.ui does not have: {missing}"
    added = {control.widget for control in presenter.anonymizeControls()}  # made by the widget, not the .ui
    missing = sorted(set(presenter.enableRules(presenter.PanelState())) - set(ui_widgets()) - added)
    assert not missing, f"enable rules name widgets that MedPrep.ui does not have: {missing}"


def test_names_the_widget_calls_exist():
    """MedPrep.py runs only inside Slicer: catch a misspelt logic, presenter or bridge name here."""
    tree = module_tree()
    logic = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "MedPrepLogic")
    methods = {n.name for n in logic.body if isinstance(n, ast.FunctionDef)} | {"getParameterNode"}
    # Read, not imported: the bridge needs vtk, which only the slicer-test extra installs.
    bridge = {n.name for n in ast.parse((ROOT / "MedPrep" / "MedPrepBridge.py").read_text()).body
              if isinstance(n, ast.FunctionDef)}

    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute):
            continue
        owner = node.value
        if isinstance(owner, ast.Attribute) and owner.attr == "logic":
            assert node.attr in methods, f"MedPrepLogic has no {node.attr}"
        elif isinstance(owner, ast.Name) and owner.id == "presenter":
            assert hasattr(presenter, node.attr), f"MedPrepPresenter has no {node.attr}"
        elif isinstance(owner, ast.Name) and owner.id == "MedPrepBridge":
            assert node.attr in bridge, f"MedPrepBridge has no {node.attr}"


def test_parameter_names_and_parameter_node_fields_match_both_ways():
    fields, bound = set(parameter_fields()), set(ui_parameters())
    assert not bound - fields, f"SlicerParameterName without a parameter-node field: {sorted(bound - fields)}"
    assert not fields - bound, f"parameter-node fields without a widget: {sorted(fields - bound)}"


def test_each_bound_widget_can_represent_its_field_type():
    """The pairs Slicer's parameterNodeWrapper GUI connectors accept (guiConnectors.py)."""
    fields = parameter_fields()
    for name, widget in ui_parameters().items():
        annotation, cls = fields[name], widget.get("class")
        if annotation == "bool":
            assert cls in ("QCheckBox", "QPushButton"), name
        elif annotation == "str":
            assert cls in ("QLineEdit", "QTextEdit"), name
        elif annotation.startswith("Annotated[str, Choice("):
            assert cls == "QComboBox", name
        elif annotation.startswith("Annotated[float"):
            assert cls in ("QDoubleSpinBox", "ctkSliderWidget"), name
            assert "WithinRange" in annotation, f"{name}: ctkSliderWidget and spin boxes need WithinRange"
        elif annotation.startswith("Annotated[int"):
            assert cls in ("QSpinBox", "QSlider"), name
        elif annotation == "Path":
            assert cls in ("ctkDirectoryButton", "ctkPathLineEdit"), name
        elif annotation.startswith("vtkMRML"):
            assert cls == "qMRMLNodeComboBox", name
            assert widget_property(widget, "nodeTypes") == [annotation], name
            # Label maps are scalar volumes too: hide them where a scalar volume is asked for.
            assert widget_property(widget, "showChildNodeTypes") is False, name
        else:
            raise AssertionError(f"{name}: no GUI connector for {annotation}")


def test_node_selectors_get_the_scene_from_the_panel():
    connected = {c.find("receiver").text for c in ET.parse(UI_FILE).iter("connection")
                 if c.find("signal").text == "mrmlSceneChanged(vtkMRMLScene*)"}
    selectors = {name for name, w in ui_widgets().items() if w.get("class") == "qMRMLNodeComboBox"}
    assert selectors and selectors == connected


def test_choices_and_option_names_exist_in_medpreplib():
    assert set(presenter.ORIENTATIONS) - {presenter.KEEP_ORIENTATION} <= set(AXCODES)
    assert set(presenter.INTERPOLATIONS) <= set(INTERPOLATORS)
    for method in set(presenter.INTENSITY_METHODS) - {presenter.NO_INTENSITY}:
        params = {f.name for f in dataclasses.fields(get_step(method).params)}
        names, _ = presenter._RANGE_PARAMETERS.get(method, ((), ""))
        assert set(names) <= params, method

def test_every_anonymize_option_has_a_panel_control_described_by_medpreplib():
    """The panel's anonymization controls come from AnonymizeOptions' own description (label, help,
    exclusive group, choices): every field, none twice, no name clash with the .ui file's parameters."""
    controls = presenter.anonymizeControls()
    assert [c.option for c in controls] == [f.name for f in dataclasses.fields(AnonymizeOptions)]
    assert len({c.parameter for c in controls}) == len({c.widget for c in controls}) == len(controls)
    assert not {c.parameter for c in controls} & set(parameter_fields())
    assert not {c.widget for c in controls} & set(ui_widgets())
    for c, f in zip(controls, dataclasses.fields(AnonymizeOptions)):
        assert (c.label, c.help, c.exclusive, c.choices, c.default) == (
            f.metadata["label"], f.metadata["help"], f.metadata["exclusive"], tuple(f.metadata["choices"]), f.default)
    assert presenter.ANONYMIZE_OPTIONS["keepUids"] == "keep_uids"
    assert presenter.ANONYMIZE_OPTIONS["onBurnedIn"] == "on_burned_in"


# ---------------------------------------------------------------------------------------------
# Presenter logic (no Qt)


def test_form_steps_are_a_valid_pipeline_and_round_trip_through_the_form():
    settings = presenter.PreprocessSettings(orientation="LPS", resample=True, spacing=(1.5, 1.5, 3.0),
                                            interpolation="bspline", cropPad=True, size=(32, 32, 8),
                                            intensity="percentile_clip", intensityRange=(1.0, 99.0))
    steps = presenter.pipelineSteps(settings)
    assert [s["step"] for s in steps] == ["orient", "resample", "crop_pad", "percentile_clip"]
    load_pipeline({"steps": steps})  # MedPrepLib validates every step and parameter
    again, unsupported = presenter.settingsFromSteps(steps)
    assert again == settings and unsupported == []
    assert presenter.pipelineSteps(presenter.PreprocessSettings(orientation="keep")) == []


def test_preset_steps_the_form_cannot_show_are_reported():
    steps = [{"step": "modality_lut"}, {"step": "orient", "axcodes": "RAS"},
             {"step": "resample", "spacing": [1.0, 1.0, 1.0], "fill": -1024}, {"step": "zscore"}]
    settings, unsupported = presenter.settingsFromSteps(steps)
    assert unsupported == ["modality_lut", "resample"]
    assert settings.orientation == "RAS" and not settings.resample and settings.intensity == "zscore"


def test_exported_pipeline_replays_with_identical_results(tmp_path):
    steps = presenter.pipelineSteps(presenter.PreprocessSettings(
        orientation="LPS", resample=True, spacing=(2.0, 2.0, 2.0), intensity="minmax", intensityRange=(0.0, 1.0)))
    pipeline = load_pipeline({"name": "panel", "steps": steps})
    pipeline.save(tmp_path / "pipeline.json")
    replayed = load_pipeline(tmp_path / "pipeline.json")
    assert replayed.digest() == pipeline.digest()
    image = Volume(np.random.default_rng(1).normal(size=(6, 7, 8)).astype(np.float32),
                   np.diag([1.2, 0.9, 2.5, 1.0]))
    a, _ = run_pipeline(image, pipeline)
    b, _ = run_pipeline(image, replayed)
    np.testing.assert_array_equal(a.array, b.array)
    np.testing.assert_array_equal(a.affine, b.affine)


def test_enable_rules():
    ready = presenter.PanelState(inputFolder="/in", seriesSelected=True, inputVolumeFromDicom=True,
                                 inputVolume=True, anonymizedFolder="/anon", hasSteps=True, outputVolume=True,
                                 saveFolder="/out", saveName="case", intensity="clip")
    rules = presenter.enableRules(ready)
    assert all(v for k, v in rules.items() if k != "cancelButton") and not rules["cancelButton"]

    busy = presenter.enableRules(dataclasses.replace(ready, busy=True))
    assert busy["cancelButton"] and not any(busy[k] for k in (
        "scanButton", "loadButton", "anonymizeButton", "applyPreprocessButton", "saveButton"))

    empty = presenter.enableRules(presenter.PanelState())
    assert not any(empty[k] for k in ("scanButton", "loadButton", "previewAnonymizationButton",
                                      "applyPreprocessButton", "compareButton", "saveButton"))
    # Options of one exclusive group (the dates) grey each other out; the others stay.
    chosen = presenter.enableRules(dataclasses.replace(ready, anonymizeOptions={"keepDates": True}))
    assert not chosen["shiftDatesCheckBox"] and chosen["keepDatesCheckBox"]
    chosen = presenter.enableRules(dataclasses.replace(ready, anonymizeOptions={"shiftDates": True}))
    assert not chosen["keepDatesCheckBox"] and chosen["shiftDatesCheckBox"]
    assert "keepUidsCheckBox" not in chosen
    assert not presenter.enableRules(dataclasses.replace(ready, intensity="zscore"))["intensityLowSpinBox"]
    assert not presenter.enableRules(dataclasses.replace(ready, saveName=""))["saveButton"]
    # A volume that did not come from DICOM has no header to preview.
    assert not presenter.enableRules(dataclasses.replace(ready, inputVolumeFromDicom=False))[
        "previewAnonymizationButton"]


def test_default_save_name():
    """The panel's default name follows the library's one file-name rule (naming.safe_name)."""
    assert presenter.defaultSaveName("Abdomen 1.0 / B30f", 2) == "002_Abdomen_1.0_B30f"
    assert presenter.defaultSaveName("", None) == naming.FALLBACK_NAME
    assert presenter.defaultSaveName("", 7) == "007"
    # What safe_name guards against and the old copy did not: Windows' reserved names, a leading
    # dot or dash, accents dropped as dcm2niix does, a bounded length.
    for description in ("CON", "..hidden", "-rf", "Tête ÉPAULE", "x" * 400, "a\tb"):
        assert presenter.defaultSaveName(description, None) == naming.safe_name(description)
        assert presenter.defaultSaveName(description, 3) == naming.safe_name(f"003_{description}")


# ---------------------------------------------------------------------------------------------
# What the tables show (the harness checks them on the real panel: slicer_bridge/test_module_panel.py)


@pytest.fixture(scope="module")
def dicom_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("dicom")
    sample.write_ct_series(folder / "a", n_slices=4, rows=16, cols=12, series_number=3,
                           series_description="Abdomen 1.0",
                           patient={"PatientName": "Doe^Jane", "PatientID": "MRN-12345"})
    sample.write_ct_series(folder / "b", n_slices=3, rows=8, cols=8, series_number=7, series_description="Scout")
    (folder / "notes.txt").write_text("not DICOM")
    return folder


def test_series_rows_and_scan_status(dicom_folder):
    result = scan(dicom_folder)
    rows = presenter.seriesRows(result.series)
    assert [r[:5] for r in rows] == [["3", "CT", "Abdomen 1.0", "12x16x4", "4"],
                                     ["7", "CT", "Scout", "8x8x3", "3"]]
    assert presenter.scanStatus(result) == "2 series in 8 files; 1 skipped (not DICOM: 1)"


def private_dataset() -> Dataset:
    ds = Dataset()
    ds.PatientName = "Doe^Jane"
    ds.PatientID = "MRN-12345"
    ds.Modality = "CT"
    item = Dataset()
    item.CodeValue = "T-D4000"
    item.CodeMeaning = "Abdomen"
    ds.AnatomicRegionSequence = Sequence([item])
    block = ds.private_block(0x0029, "ACME 1.0", create=True)
    block.add_new(0x10, "LO", "secret")
    return ds


def test_header_rows_indent_sequences_and_mark_private_rows():
    shown = presenter.headerTableRows(header_rows(private_dataset()))
    code = next(r for r in shown if r[1] == "CodeValue")
    assert code[0] == "    0008,0100" and code[3] == "T-D4000"  # one level inside AnatomicRegionSequence
    assert next(r for r in shown if r[1] == "AnatomicRegionSequence")[0] == "0008,2218"
    private = [r for r in shown if r[1].startswith(presenter.PRIVATE_MARK)]
    assert any("ACME 1.0" in r[1] and r[3] == "secret" for r in private)
    assert next(r for r in shown if r[1] == "PatientName")[0] == "0010,0010"


def test_anonymization_preview_pairs_original_and_anonymized_values():
    original = private_dataset()
    after = Anonymizer(b"key", AnonymizeOptions()).anonymize(private_dataset())
    table = presenter.comparisonTableRows(header_rows(original), header_rows(after))
    shown = {r[1]: r for r in table}
    assert shown["PatientName"][3] == "Doe^Jane" and "Doe" not in shown["PatientName"][4]
    assert any(r[4] == presenter.REMOVED for r in shown.values() if r[1].startswith(presenter.PRIVATE_MARK))
    assert shown["PatientIdentityRemoved"][3:] == ["", "YES"]
    assert presenter.changedRowCount(table) >= 3

    # A search that finds the original name still pairs it with its pseudonym.
    shown = {r.path for r in header_rows(original) if "Doe" in r.value}
    searched = presenter.comparisonTableRows(header_rows(original), header_rows(after), shown)
    assert [(r[1], r[3]) for r in searched] == [("PatientName", "Doe^Jane")] and "Doe" not in searched[0][4]
