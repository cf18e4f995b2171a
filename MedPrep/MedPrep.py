from __future__ import annotations

import dataclasses
import importlib.util
import json
import logging
import os
import sys
from pathlib import Path
from typing import Annotated

import qt
import slicer
import vtk
from slicer import vtkMRMLLabelMapVolumeNode, vtkMRMLScalarVolumeNode
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

# In a built extension MedPrepLib is installed beside this file; in a source checkout added through
# "Additional module paths" it is one folder up.
if importlib.util.find_spec("MedPrepLib") is None:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import MedPrepBridge
import MedPrepPresenter as presenter

# MedPrepLib's dependencies that Slicer does not bundle: (import name, requirement).
REQUIREMENTS = [
    ("nibabel", "nibabel>=5.0"),
    ("yaml", "PyYAML>=6.0"),
    ("pylibjpeg", "pylibjpeg>=2.0"),
    ("libjpeg", "pylibjpeg-libjpeg>=2.1"),
    ("openjpeg", "pylibjpeg-openjpeg>=2.0"),
    ("rle", "pylibjpeg-rle>=2.0"),
    ("isal", "isal>=1.6"),
    ("highdicom", "highdicom>=0.22"),
]

# Packages only some pipeline steps need, installed on demand when a pipeline that uses the step runs:
# {step name: [(import name, requirement)]}. nilearn is large (scikit-learn, pandas) and only ships the
# MNI152 template that register_mni registers to.
STEP_REQUIREMENTS = {
    "register_mni": [("nilearn", "nilearn>=0.10")],
}

# Node attribute holding what MedPrep knows about a volume it made: source files, metadata, history.
RECORD_ATTRIBUTE = "MedPrep.record"
# Segment/ROI names, numbers, colours and codes of a label map read from a DICOM SEG or RTSTRUCT (its JSON rows).
SEGMENTS_ATTRIBUTE = "MedPrep.segments"
CUSTOM_PRESET = "(custom)"

logger = logging.getLogger(__name__)


#
# MedPrep
#


class MedPrep(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("MedPrep")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Utilities")]
        self.parent.dependencies = []
        self.parent.contributors = ["MedPrep developers"]
        self.parent.helpText = _("""
Turn hospital DICOM into clean, anonymous, ML-ready NIfTI: scan a folder, load a series, inspect
and de-identify its header, preprocess it (orientation, spacing, size, intensity), check the result
against the input and save it as NIfTI with a provenance sidecar. "Export pipeline" writes the steps
as a file that <code>medprep run</code> replays over a whole dataset.
""")
        self.parent.acknowledgementText = _("""
MedPrep reads DICOM with pydicom and SimpleITK and writes NIfTI with nibabel.
""")


#
# MedPrepParameterNode
#


def _withAnonymizeOptions(cls):
    """Add one field per anonymization option (presenter.anonymizeControls, from MedPrepLib's description
    of the options): a flag, or a choice among the option's values. parameterNodeWrapper reads the
    fields from the class annotations, so they are added there before it runs."""
    for control in presenter.anonymizeControls():
        cls.__annotations__[control.parameter] = (
            Annotated[str, Choice(list(control.choices))] if control.choices else type(control.default))
        setattr(cls, control.parameter, control.default)
    return cls


@parameterNodeWrapper
@_withAnonymizeOptions
class MedPrepParameterNode:
    """The panel's state, saved with the scene. Field names are the SlicerParameterName values in MedPrep.ui,
    and for the anonymization options those of the controls the widget adds (_withAnonymizeOptions)."""

    # Load
    inputFolder: Path
    ignoreDerived: bool = False
    # Header
    inputVolume: vtkMRMLScalarVolumeNode
    headerSearch: str = ""
    headerShowPrivate: bool = True
    # Anonymize
    anonymizationKey: str = ""
    anonymizedFolder: Path
    # Preprocess
    orientation: Annotated[str, Choice(presenter.ORIENTATIONS)] = "RAS"
    resample: bool = True
    spacingX: Annotated[float, WithinRange(0.01, 100.0)] = 1.0
    spacingY: Annotated[float, WithinRange(0.01, 100.0)] = 1.0
    spacingZ: Annotated[float, WithinRange(0.01, 100.0)] = 1.0
    interpolation: Annotated[str, Choice(presenter.INTERPOLATIONS)] = "linear"
    cropPad: bool = False
    sizeX: Annotated[int, WithinRange(1, 4096)] = 128
    sizeY: Annotated[int, WithinRange(1, 4096)] = 128
    sizeZ: Annotated[int, WithinRange(1, 4096)] = 128
    intensity: Annotated[str, Choice(presenter.INTENSITY_METHODS)] = presenter.NO_INTENSITY
    intensityLow: Annotated[float, WithinRange(-100000.0, 100000.0)] = 0.0
    intensityHigh: Annotated[float, WithinRange(-100000.0, 100000.0)] = 1.0
    inputLabel: vtkMRMLLabelMapVolumeNode
    # Quality check
    outputVolume: vtkMRMLScalarVolumeNode
    outputLabel: vtkMRMLLabelMapVolumeNode
    overlayOpacity: Annotated[float, WithinRange(0.0, 1.0)] = 0.5
    # Save
    saveFolder: Path
    saveName: str = ""
    compress: bool = True


def preprocessSettings(p: MedPrepParameterNode) -> presenter.PreprocessSettings:
    return presenter.PreprocessSettings(
        orientation=p.orientation, resample=p.resample, spacing=(p.spacingX, p.spacingY, p.spacingZ),
        interpolation=p.interpolation, cropPad=p.cropPad, size=(p.sizeX, p.sizeY, p.sizeZ),
        intensity=p.intensity, intensityRange=(p.intensityLow, p.intensityHigh))


def setPreprocessSettings(p: MedPrepParameterNode, s: presenter.PreprocessSettings) -> None:
    with slicer.util.NodeModify(p.parameterNode):
        p.orientation = s.orientation
        p.resample = s.resample
        p.spacingX, p.spacingY, p.spacingZ = s.spacing
        p.interpolation = s.interpolation
        p.cropPad = s.cropPad
        p.sizeX, p.sizeY, p.sizeZ = s.size
        p.intensity = s.intensity
        p.intensityLow, p.intensityHigh = s.intensityRange


def _path(value: Path | None) -> str:
    # An unset Path field reads back as Path("."): treat it as empty rather than "the current folder".
    return "" if value is None or str(value) in ("", ".") else str(value)


#
# MedPrepWidget
#


class MedPrepWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """Thin GUI: reads the parameter node, calls MedPrepLogic, shows results through MedPrepPresenter."""

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._scan = None
        self._preset: dict | None = None  # the chosen preset's pipeline document, until a step field is edited
        self._presetFormSteps: list[dict] | None = None
        self._busy = False
        self._overlayShown = False
        self._headerRows: tuple = (None, [])

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/MedPrep.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = MedPrepLogic()
        self.progress = presenter.ProgressReporter(self.ui.progressBar, self.ui.statusLabel, slicer.app.processEvents)
        self.addAnonymizeOptionControls()

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)

        self.ui.presetComboBox.addItems([CUSTOM_PRESET] + self.logic.presetNames())
        self.ui.scanButton.clicked.connect(self.onScan)
        self.ui.loadButton.clicked.connect(self.onLoad)
        self.ui.seriesTable.itemSelectionChanged.connect(self.updateGuiState)
        self.ui.previewAnonymizationButton.clicked.connect(self.onPreviewAnonymization)
        self.ui.anonymizeButton.clicked.connect(self.onAnonymize)
        self.ui.presetComboBox.currentIndexChanged.connect(self.onPresetChanged)
        self.ui.applyPreprocessButton.clicked.connect(self.onApplyPreprocess)
        self.ui.compareButton.clicked.connect(self.onCompare)
        self.ui.overlayButton.clicked.connect(self.onOverlay)
        self.ui.saveButton.clicked.connect(self.onSave)
        self.ui.exportPipelineButton.clicked.connect(self.onExportPipeline)
        self.ui.saveDicomSegButton.clicked.connect(self.onSaveDicomSeg)
        self.ui.cancelButton.clicked.connect(self.progress.cancel)
        self.ui.headerCollapsibleButton.contentsCollapsed.connect(lambda collapsed: self.updateHeaderTable())

        self.initializeParameterNode()

    def addAnonymizeOptionControls(self) -> None:
        """A check box (or a labelled combo box for a choice) per anonymization option, two a row, with
        MedPrepLib's label and help, bound to its parameter-node field like the .ui file's widgets."""
        layout = self.ui.anonOptionsWidget.layout()
        for index, control in enumerate(presenter.anonymizeControls()):
            if control.choices:
                widget = qt.QComboBox()
                widget.addItems(list(control.choices))
                cell = qt.QWidget()
                row = qt.QHBoxLayout(cell)
                row.setContentsMargins(0, 0, 0, 0)
                row.addWidget(qt.QLabel(control.label + ":"))
                row.addWidget(widget)
            else:
                widget = cell = qt.QCheckBox(control.label)
            widget.setObjectName(control.widget)
            widget.setToolTip(control.help)
            widget.setProperty("SlicerParameterName", control.parameter)
            layout.addWidget(cell, index // 2, index % 2)
            setattr(self.ui, control.widget, widget)

    def cleanup(self) -> None:
        self.removeObservers()

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.onParameterNodeModified)

    def onSceneStartClose(self, caller, event) -> None:
        self.setParameterNode(None)
        self._scan = None
        self._headerRows = (None, [])
        presenter.fillTable(self.ui.seriesTable, presenter.SERIES_COLUMNS, [], qt.QTableWidgetItem)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())

    def setParameterNode(self, inputParameterNode: MedPrepParameterNode | None) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            # exit() has already let go of the node when the module is entered again.
            if self.hasObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.onParameterNodeModified):
                self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.onParameterNodeModified)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.onParameterNodeModified)
            self.onParameterNodeModified()

    # -- state --------------------------------------------------------------------------------

    def onParameterNodeModified(self, caller=None, event=None) -> None:
        p = self._parameterNode
        if self._preset is not None and self._presetFormSteps != presenter.pipelineSteps(preprocessSettings(p)):
            # A step field was edited: the form, not the preset, is what Apply runs from now on.
            self._preset = self._presetFormSteps = None
            self.ui.presetComboBox.setCurrentIndex(0)
        self.ui.intensityRangeLabel.setText(presenter.intensityRangeLabel(p.intensity))
        if self._overlayShown:
            self.logic.setOverlayOpacity(p.overlayOpacity)
        self.updateHeaderTable()
        self.updateGuiState()

    def panelState(self) -> presenter.PanelState:
        p = self._parameterNode
        return presenter.PanelState(
            inputFolder=_path(p.inputFolder),
            seriesSelected=self._scan is not None and self.selectedSeriesIndex() is not None,
            inputVolumeFromDicom=bool(p.inputVolume and self.logic.sourceFiles(p.inputVolume)),
            inputVolume=p.inputVolume is not None,
            anonymizedFolder=_path(p.anonymizedFolder),
            anonymizeOptions={name: p.getValue(name) for name in presenter.ANONYMIZE_OPTIONS},
            hasSteps=bool(self.currentPipelineSteps()), intensity=p.intensity,
            outputVolume=p.outputVolume is not None,
            saveFolder=_path(p.saveFolder), saveName=p.saveName, busy=self._busy)

    def updateGuiState(self) -> None:
        if self._parameterNode:
            presenter.applyEnableRules(self.ui, self.panelState())

    def selectedSeriesIndex(self) -> int | None:
        rows = self.ui.seriesTable.selectionModel().selectedRows()
        return rows[0].row() if rows else None

    def currentPipelineSteps(self) -> list[dict]:
        if self._preset is not None:
            return list(self._preset["steps"])
        return presenter.pipelineSteps(preprocessSettings(self._parameterNode))

    def currentPipeline(self, steps: list[dict]) -> dict:
        """`steps` as a pipeline document: with the chosen preset's name and output types, if any."""
        return dict(self._preset or {"name": "custom"}, steps=steps)

    def runTask(self, text: str, task) -> object | None:
        """Run `task(progress)` with the progress bar and Cancel active; errors become one-line messages."""
        self._busy = True
        self.updateGuiState()
        self.progress.start(text)
        result, message = None, _("Done")
        try:
            result = task(self.progress)
        except presenter.Cancelled:
            message = _("Cancelled")
        except Exception as exc:
            logger.exception(text)
            message = str(exc)
            slicer.util.errorDisplay(f"{text}: {exc}")
        finally:
            self._busy = False
            self.progress.finish(message)
            self.updateGuiState()
        return result

    # -- Load ---------------------------------------------------------------------------------

    def onScan(self) -> None:
        if not self.ensureRequirements():
            return
        p = self._parameterNode
        result = self.runTask(_("Scanning"), lambda progress: self.logic.scanFolder(
            _path(p.inputFolder), p.ignoreDerived, progress))
        if result is None:
            return
        self._scan = result
        presenter.fillTable(self.ui.seriesTable, presenter.SERIES_COLUMNS, presenter.seriesRows(result.series),
                            qt.QTableWidgetItem)
        self.ui.scanStatusLabel.setText(presenter.scanStatus(result))
        if result.series:
            self.ui.seriesTable.selectRow(0)
        self.updateGuiState()

    def onLoad(self) -> None:
        series = self._scan.series[self.selectedSeriesIndex()]
        node = self.runTask(_("Loading"), lambda progress: self.logic.loadSeries(series))
        if node is None:
            return
        self._parameterNode.inputVolume = node
        labels = self.runTask(_("Loading annotations"), lambda progress: self.logic.loadAnnotations(
            series, node, self._scan.annotations_of(series)))
        if labels:
            self._parameterNode.inputLabel = labels[0]
        if not _path(self._parameterNode.anonymizedFolder):
            self._parameterNode.anonymizedFolder = Path(_path(self._parameterNode.inputFolder) + "-anonymized")
        if not self._parameterNode.saveName:
            self._parameterNode.saveName = presenter.defaultSaveName(series.description, series.series_number)
        slicer.util.setSliceViewerLayers(background=node, fit=True)

    # -- Header and anonymization ---------------------------------------------------------------

    def updateHeaderTable(self, anonymized: bool = False) -> int:
        """Fill the header table (original | anonymized when `anonymized`); returns the number of changed rows."""
        p = self._parameterNode
        if p is None:
            return 0
        if not self.ui.headerCollapsibleButton.collapsed and p.inputVolume and self.logic.sourceFiles(p.inputVolume):
            if anonymized:
                original, after = self.logic.previewAnonymization(p.inputVolume, self.logic.anonymizer(p))
                shown = {r.path for r in self.logic.filterRows(original, p) + self.logic.filterRows(after, p)}
                rows = presenter.comparisonTableRows(original, after, shown)
                presenter.fillTable(self.ui.headerTable, presenter.COMPARE_COLUMNS, rows, qt.QTableWidgetItem)
                return presenter.changedRowCount(rows)
            if self._headerRows[0] != p.inputVolume.GetID():
                # Read once per volume, not on every parameter change (search typing, sliders).
                self._headerRows = (p.inputVolume.GetID(), self.logic.headerRows(p.inputVolume))
            rows = self.logic.filterRows(self._headerRows[1], p)
            presenter.fillTable(self.ui.headerTable, presenter.HEADER_COLUMNS,
                                presenter.headerTableRows(rows), qt.QTableWidgetItem)
        else:
            presenter.fillTable(self.ui.headerTable, presenter.HEADER_COLUMNS, [], qt.QTableWidgetItem)
        return 0

    def onPreviewAnonymization(self) -> None:
        self.ui.headerCollapsibleButton.collapsed = False
        changed = self.runTask(_("Previewing anonymization"), lambda progress: self.updateHeaderTable(anonymized=True))
        if changed is not None:
            self.ui.statusLabel.setText(_("{count} header values change").format(count=changed))

    def onAnonymize(self) -> None:
        p = self._parameterNode
        report = self.runTask(_("Anonymizing"), lambda progress: self.logic.anonymizeFolder(
            _path(p.inputFolder), _path(p.anonymizedFolder), self.logic.anonymizer(p), progress))
        if report is not None:
            parts = [_("{files} files of {series} series written, {withheld} series withheld").format(
                files=report.written, series=report.series_written, withheld=len(report.withheld))]
            if report.damaged:  # the damaged-input counts only when there are any, as the CLI's summary
                parts.append(_("{damaged} files with damaged pixel data withheld").format(damaged=len(report.damaged)))
            if report.unreadable:
                parts.append(_("{unreadable} damaged files not read").format(unreadable=len(report.unreadable)))
            self.ui.statusLabel.setText(", ".join(parts))

    # -- Preprocess -----------------------------------------------------------------------------

    def onPresetChanged(self, index: int) -> None:
        if index <= 0:
            self._preset = self._presetFormSteps = None
            return
        if not self.ensureRequirements():
            self.ui.presetComboBox.setCurrentIndex(0)
            return
        preset = self.logic.presetPipeline(self.ui.presetComboBox.currentText)
        settings, unsupported = presenter.settingsFromSteps(preset["steps"])
        self._preset = None  # filling the form must not reset the preset choice
        setPreprocessSettings(self._parameterNode, settings)
        self._preset = preset
        self._presetFormSteps = presenter.pipelineSteps(settings)
        if unsupported:
            self.ui.statusLabel.setText(_("Preset steps not shown in the form (still applied): {steps}")
                                        .format(steps=", ".join(unsupported)))
        self.updateGuiState()

    def onApplyPreprocess(self) -> None:
        p = self._parameterNode
        # Presets made for datasets (ct-liver, cxr-pneumonia) end with steps fitted on all training cases:
        # one volume runs the steps before them; Export pipeline keeps them for `medprep run`.
        steps, leftOut = self.logic.perImageSteps(self.currentPipelineSteps())
        leftOutText = _("Applied the steps before {steps}, which need a whole dataset: export the pipeline "
                        "and run it with medprep run").format(steps=", ".join(leftOut))
        if not steps:
            self.ui.statusLabel.setText(leftOutText)
            return
        if not self.ensureRequirements(steps):
            return
        result = self.runTask(_("Preprocessing"), lambda progress: self.logic.preprocess(
            p.inputVolume, self.currentPipeline(steps), p.inputLabel, progress))
        if result is not None:
            with slicer.util.NodeModify(p.parameterNode):
                p.outputVolume, p.outputLabel = result
            self.onCompare()
            if leftOut:
                self.ui.statusLabel.setText(leftOutText)

    # -- Quality check --------------------------------------------------------------------------

    def onCompare(self) -> None:
        self._overlayShown = False
        self.logic.showSideBySide(self._parameterNode.inputVolume, self._parameterNode.outputVolume)

    def onOverlay(self) -> None:
        p = self._parameterNode
        self.logic.showOverlay(p.inputVolume, p.outputVolume, p.overlayOpacity)
        self._overlayShown = True

    # -- Save -----------------------------------------------------------------------------------

    def onSave(self) -> None:
        p = self._parameterNode
        paths = self.runTask(_("Saving"), lambda progress: self.logic.save(
            p.outputVolume, _path(p.saveFolder), p.saveName, p.outputLabel, p.compress))
        if paths:
            self.ui.statusLabel.setText(_("Saved {files}").format(files=", ".join(str(f.name) for f in paths)))

    def onSaveDicomSeg(self) -> None:
        p = self._parameterNode
        path = qt.QFileDialog.getSaveFileName(self.parent, _("Save label map as DICOM SEG"), "", "DICOM (*.dcm)")
        if not path:
            return
        written = self.runTask(_("Saving"), lambda progress: self.logic.saveAsDicomSeg(p.inputLabel, p.inputVolume,
                                                                                        path))
        if written:
            self.ui.statusLabel.setText(_("Saved {files}").format(files=Path(written).name))

    def onExportPipeline(self) -> None:
        path = qt.QFileDialog.getSaveFileName(
            self.parent, _("Export pipeline"), os.path.join(_path(self._parameterNode.saveFolder), "pipeline.json"),
            _("Pipeline (*.json *.yaml *.yml)"))
        if path:
            pipeline = self.currentPipeline(self.currentPipelineSteps())
            self.runTask(_("Exporting pipeline"), lambda progress: self.logic.exportPipeline(pipeline, path))

    # -- Dependencies ---------------------------------------------------------------------------

    def ensureRequirements(self, steps: list[dict] | None = None) -> bool:
        """Ask before installing what MedPrep (and, given `steps`, those pipeline steps) still lacks."""
        missing = self.logic.missingRequirements(steps)
        if not missing:
            return True
        if not slicer.util.confirmOkCancelDisplay(
                _("MedPrep needs these Python packages, which are not installed in Slicer yet:\n\n{packages}\n\n"
                  "Install them now?").format(packages="\n".join(missing))):
            return False
        with slicer.util.WaitCursor():
            self.logic.installRequirements(missing)
        return not self.logic.missingRequirements(steps)


#
# MedPrepLogic
#


class MedPrepLogic(ScriptedLoadableModuleLogic):
    """Everything the panel does, callable from the Python console with explicit nodes and parameters.

    Example::

        logic = slicer.util.getModuleLogic("MedPrep")
        scan = logic.scanFolder("/data/case1")
        volume = logic.loadSeries(scan.series[0])
        result, _ = logic.preprocess(volume, [{"step": "orient", "axcodes": "RAS"}])
        logic.save(result, "/data/out", "case1")
    """

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        self.outputMarkups: list = []  # Markups the last `preprocess` carried onto its output

    def getParameterNode(self) -> MedPrepParameterNode:
        return MedPrepParameterNode(super().getParameterNode())

    # -- dependencies -----------------------------------------------------------------------------

    @staticmethod
    def missingRequirements(steps: list[dict] | None = None) -> list[str]:
        """Requirements not installed yet: MedPrepLib's own, plus those of the pipeline `steps` when given.

        Example (console), before running a pipeline that registers to MNI152::

            steps = [{"step": "register_mni"}]
            logic.installRequirements(logic.missingRequirements(steps))
        """
        needed = list(REQUIREMENTS)
        for name in dict.fromkeys(str(step.get("step")) for step in steps or [] if isinstance(step, dict)):
            needed += [r for r in STEP_REQUIREMENTS.get(name, []) if r not in needed]
        return [requirement for module, requirement in needed if importlib.util.find_spec(module) is None]

    @staticmethod
    def installRequirements(requirements: list[str]) -> None:
        """Install with Slicer's package manager (slicer.packaging from 5.12, pip_install before)."""
        if importlib.util.find_spec("slicer.packaging") is not None:
            import slicer.packaging
            from packaging.requirements import Requirement

            slicer.packaging.pip_ensure([Requirement(r) for r in requirements], requester="MedPrep")
        else:
            slicer.util.pip_install(" ".join(requirements))

    # -- load ---------------------------------------------------------------------------------

    @staticmethod
    def scanFolder(folder: str, ignoreDerived: bool = False, progress=None):
        """The image series under `folder` (MedPrepLib.discovery.scan)."""
        from MedPrepLib.discovery import scan
        from MedPrepLib.errors import MedPrepError

        if not folder:
            raise ValueError(_("Choose a DICOM folder first"))
        result = scan(folder, ignore_derived=ignoreDerived, progress=progress)
        if result.n_files == 0:  # as `medprep scan` says it
            raise MedPrepError("no files found", folder, "check the path")
        return result

    @staticmethod
    def loadSeries(series, name: str | None = None, scene=None) -> vtkMRMLScalarVolumeNode:
        """A new volume node with the series as MedPrepLib reads it (see MedPrepBridge for why)."""
        from MedPrepLib.convert import volume_from_series

        scene = scene or slicer.mrmlScene
        volume = volume_from_series(series)
        node = MedPrepBridge.addVolumeNode(scene, volume, name or _seriesNodeName(series))
        _writeRecord(node, volume, [str(f.path) for f in series.files])
        # Other Slicer modules (e.g. DICOM header browsing) find the source instances through this attribute.
        node.SetAttribute("DICOM.instanceUIDs", " ".join(str(f.ds.get("SOPInstanceUID", "")) for f in series.files))
        for warning in volume.warnings:
            logger.warning(f"{node.GetName()}: {warning}")
        return node

    @staticmethod
    def loadAnnotations(series, volumeNode, annotations, scene=None) -> list:
        """A label map node per SEG/RTSTRUCT of `series`, on the grid of its loaded `volumeNode`
        (same IJKToRAS), as `medprep convert` writes it; segment names etc. kept in a node attribute."""
        from MedPrepLib.annotations import read_annotation
        from MedPrepLib.convert import volume_from_series

        scene = scene or slicer.mrmlScene
        nodes = []
        if not annotations:
            return nodes
        # The volume again for its slice positions and source images (the node keeps only voxels and geometry).
        volume = volume_from_series(series)
        for annotation in annotations:
            labelmap = read_annotation(annotation.path, volume)
            node = MedPrepBridge.addVolumeNode(
                scene, labelmap.volume(), scene.GenerateUniqueName(f"{volumeNode.GetName()} {annotation.kind}"),
                labelmap=True)
            node.SetAttribute(SEGMENTS_ATTRIBUTE, json.dumps(labelmap.sidecar()["Segments"]))
            for warning in labelmap.warnings:
                logger.warning(f"{node.GetName()}: {warning}")
            nodes.append(node)
        return nodes

    def saveAsDicomSeg(self, labelNode, volumeNode, path: str, names: list[str] | None = None) -> Path:
        """A label map or segmentation node as a DICOM SEG referencing the DICOM series `volumeNode` was
        loaded from. A segmentation's segments become segments 1, 2, ... in its order, with its names."""
        from MedPrepLib.annotations.export_seg import export_seg, grid_from_files

        files = self.sourceFiles(volumeNode)
        if labelNode is None or not files:
            raise ValueError(_("Choose a label map drawn on a volume loaded from DICOM by MedPrep"))
        if not path:
            raise ValueError(_("Choose where to save the DICOM SEG"))
        segments = None
        if labelNode.IsA("vtkMRMLSegmentationNode"):
            label, segmentNames = _segmentationAsLabelVolume(labelNode, volumeNode)
            names = names or segmentNames
        else:
            label = MedPrepBridge.volumeFromNode(labelNode)
            text = labelNode.GetAttribute(SEGMENTS_ATTRIBUTE)
            segments = json.loads(text) if text else None
        return export_seg(label, grid_from_files(files), path, names=names, segments=segments, overwrite=True)

    @staticmethod
    def sourceFiles(volumeNode) -> list[str]:
        """The DICOM files a node was loaded from (empty for volumes MedPrep did not load)."""
        return _readRecord(volumeNode).get("files", [])

    # -- header and anonymization -----------------------------------------------------------------

    def headerDataset(self, volumeNode):
        import pydicom

        files = self.sourceFiles(volumeNode)
        if not files:
            raise ValueError(_("{name} was not loaded from DICOM by MedPrep").format(name=volumeNode.GetName()))
        return pydicom.dcmread(files[0], stop_before_pixels=True, force=True)

    def headerRows(self, volumeNode) -> list:
        from MedPrepLib.header import header_rows

        return header_rows(self.headerDataset(volumeNode))

    @staticmethod
    def filterRows(rows: list, parameterNode: MedPrepParameterNode) -> list:
        from MedPrepLib.header import filter_rows

        return filter_rows(rows, search=parameterNode.headerSearch or None,
                           private=None if parameterNode.headerShowPrivate else False)

    @staticmethod
    def anonymizer(parameterNode: MedPrepParameterNode):
        """A MedPrepLib Anonymizer from the panel's key and options."""
        from MedPrepLib.anonymize import AnonymizeOptions, Anonymizer

        options = AnonymizeOptions(**{option: getattr(parameterNode, field)
                                      for field, option in presenter.ANONYMIZE_OPTIONS.items()})
        return Anonymizer(parameterNode.anonymizationKey.encode("utf-8") or None, options)

    def previewAnonymization(self, volumeNode, anonymizer) -> tuple[list, list]:
        """Header rows before and after de-identification of the node's first file; nothing is written."""
        from MedPrepLib.header import header_rows

        original = self.headerDataset(volumeNode)
        after = anonymizer.anonymize(self.headerDataset(volumeNode))
        return header_rows(original), header_rows(after)

    @staticmethod
    def anonymizeFolder(inputFolder: str, outputFolder: str, anonymizer, progress=None):
        """De-identified copy of every image series under `inputFolder` (MedPrepLib.anonymize.anonymize_tree)."""
        from MedPrepLib.anonymize import anonymize_tree

        return anonymize_tree(inputFolder, outputFolder, anonymizer, progress=progress)

    # -- preprocess ---------------------------------------------------------------------------------

    @staticmethod
    def presetNames() -> list[str]:
        from MedPrepLib.preprocess.pipeline import PRESET_DIR

        # Listed from the files so that the panel opens before PyYAML is installed.
        return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))

    @staticmethod
    def presetPipeline(name: str) -> dict:
        """The preset's pipeline document (name, description, steps, output) as its file gives it."""
        from MedPrepLib.preprocess.pipeline import PRESET_DIR, read_document

        return dict(read_document(PRESET_DIR / f"{name}.yaml"))

    @staticmethod
    def perImageSteps(steps: list[dict]) -> tuple[list[dict], list[str]]:
        """The steps one volume can run (those before the first that needs a whole dataset's statistics),
        and the names of the steps left for `medprep run`."""
        from MedPrepLib.preprocess.pipeline import load_pipeline

        statistics = load_pipeline({"steps": steps}).statistics_steps()
        first = min(statistics, default=len(steps))
        return list(steps[:first]), [str(step["step"]) for step in steps[first:]]

    def preprocess(self, inputVolume, pipeline, inputLabel=None, progress=None, scene=None,
                   markups: list | None = None, statistics: str | None = None
                   ) -> tuple[vtkMRMLScalarVolumeNode, vtkMRMLLabelMapVolumeNode | None]:
        """Run a pipeline on a volume (and label map); new nodes hold the results, the inputs stay as they are.

        `pipeline`: a list of steps, a pipeline document (name, steps, output), a pipeline file or a
        preset name; `statistics`: the statistics.json of a `medprep run`, for the steps that need a
        dataset's statistics. The case runs through MedPrepLib.process.process_case, the path of
        `medprep preprocess` and `medprep run`, so `save` writes the files they write.
        `progress(done, total)` is called between steps (it may raise to cancel). `markups` (ROI and
        fiducial nodes on the input) follow the steps: new nodes on the output hold them
        (`self.outputMarkups`), boxes clipped or dropped by a crop as `medprep run` does.
        """
        from MedPrepLib.preprocess import load_pipeline, load_statistics
        from MedPrepLib.preprocess.registry import INDEX_MAP_KEY
        from MedPrepLib.process import process_case

        scene = scene or slicer.mrmlScene
        pipeline = load_pipeline(pipeline)
        values = load_statistics(statistics, pipeline) if statistics else None
        image = self.volumeFromNode(inputVolume)
        image.meta.pop(INDEX_MAP_KEY, None)  # this node's voxels are the input of these steps
        boxes = MedPrepBridge.boxesFromNodes(markups or [], image.affine)
        label = MedPrepBridge.volumeFromNode(inputLabel) if inputLabel else None
        result = process_case(image, pipeline, None, label, values, boxes=boxes or None, progress=progress)
        image, label = result.image, result.label
        outputVolume = MedPrepBridge.addVolumeNode(scene, image, scene.GenerateUniqueName(
            inputVolume.GetName() + "-preprocessed"))
        _writeRecord(outputVolume, image, self.sourceFiles(inputVolume), pipeline.output)
        self.outputMarkups = []
        if result.boxes:
            self.outputMarkups = MedPrepBridge.addBoxNodes(scene, result.boxes, image.affine,
                                                           outputVolume.GetName() + "-box")
        outputLabel = None
        if label is not None:
            outputLabel = MedPrepBridge.addVolumeNode(scene, label, scene.GenerateUniqueName(
                inputLabel.GetName() + "-preprocessed"), labelmap=True)
            _writeRecord(outputLabel, label, [], pipeline.output)
        return outputVolume, outputLabel

    def loadBoxes(self, volumeNode, path: str, caseId: str, idColumn: str = "", categoryColumn: str = "",
                  scene=None) -> list:
        """The boxes and points a table or COCO file gives case `caseId`, as Markups on `volumeNode`."""
        from MedPrepLib.boxes import identity_map, read_boxes, transform_boxes

        scene = scene or slicer.mrmlScene
        image = self.volumeFromNode(volumeNode)
        found = read_boxes(path, idColumn, categoryColumn).get(caseId, [])
        return MedPrepBridge.addBoxNodes(scene, transform_boxes(found, identity_map(image), image.affine),
                                         image.affine, volumeNode.GetName() + "-box")

    @staticmethod
    def volumeFromNode(volumeNode):
        """The node's voxels with the metadata, warnings and history MedPrep recorded for it."""
        record = _readRecord(volumeNode)
        volume = MedPrepBridge.volumeFromNode(volumeNode, meta=record.get("meta"), stored=record.get("stored"))
        volume.warnings = list(record.get("warnings", []))
        volume.history = list(record.get("history", [{"step": "slicer_volume", "params": {
            "node": volumeNode.GetName()}}]))
        return volume

    @staticmethod
    def exportPipeline(pipeline, path: str) -> None:
        """Write a pipeline (a list of steps or a document with name, steps and output) as a file for
        `medprep run` (JSON, or YAML by extension); a list of steps is named after the file."""
        from MedPrepLib.preprocess.pipeline import load_pipeline

        document = {"name": Path(path).stem, "steps": pipeline} if isinstance(pipeline, list) else pipeline
        load_pipeline(document).save(path)

    # -- quality check --------------------------------------------------------------------------------

    def showSideBySide(self, before, after) -> None:
        """Input left, result right, in linked views: panning or scrolling one moves the other."""
        layoutManager = slicer.app.layoutManager()
        layoutManager.setLayout(slicer.vtkMRMLLayoutNode.SlicerLayoutSideBySideView)
        for viewName, volume in (("Red", before), ("Yellow", after)):
            composite = layoutManager.sliceWidget(viewName).mrmlSliceCompositeNode()
            composite.SetBackgroundVolumeID(volume.GetID() if volume else None)
            composite.SetForegroundVolumeID(None)
            composite.SetLinkedControl(True)
            composite.SetHotLinkedControl(True)
        slicer.util.resetSliceViews()

    def showOverlay(self, before, after, opacity: float = 0.5) -> None:
        """The result over the input in the same views; `setOverlayOpacity` fades between them."""
        slicer.app.layoutManager().setLayout(slicer.vtkMRMLLayoutNode.SlicerLayoutFourUpView)
        slicer.util.setSliceViewerLayers(background=before, foreground=after, foregroundOpacity=opacity, fit=True)

    @staticmethod
    def setOverlayOpacity(opacity: float) -> None:
        for composite in slicer.util.getNodesByClass("vtkMRMLSliceCompositeNode"):
            composite.SetForegroundOpacity(opacity)

    # -- save -----------------------------------------------------------------------------------------

    def save(self, volumeNode, folder: str, name: str, labelNode=None, compress: bool = True) -> list[Path]:
        """NAME.nii[.gz] + NAME.json (metadata and provenance), and NAME_label.nii[.gz] for the label map,
        written by MedPrepLib's writer with the voxel types of the pipeline that made the volume (as
        `medprep preprocess` writes them); a volume no pipeline made keeps its stored values."""
        from MedPrepLib.export import OutputPaths, write_outputs
        from MedPrepLib.preprocess.pipeline import OutputParams

        if not folder or not name:
            raise ValueError(_("Choose an output folder and a file name"))
        record = _readRecord(volumeNode)
        output = OutputParams(**record["output"]) if "output" in record else OutputParams("nifti", "keep", "keep")
        output = dataclasses.replace(output, format="nifti", slices=False, gz=compress)
        suffix = ".nii.gz" if compress else ".nii"
        paths = OutputPaths(Path(folder) / f"{name}{suffix}",
                            Path(folder) / f"{name}_label{suffix}" if labelNode is not None else None)
        label = self.volumeFromNode(labelNode) if labelNode is not None else None
        written = write_outputs(paths, self.volumeFromNode(volumeNode), label, output, overwrite=True)
        return [Path(p) for p in written["image"] + written["label"]]


def _segmentationAsLabelVolume(segmentationNode, referenceNode):
    """Every segment of a segmentation node as labels 1, 2, ... on the reference volume's grid, and their names."""
    segmentation = segmentationNode.GetSegmentation()
    ids = vtk.vtkStringArray()
    names = []
    for i in range(segmentation.GetNumberOfSegments()):
        ids.InsertNextValue(segmentation.GetNthSegmentID(i))
        names.append(segmentation.GetNthSegment(i).GetName())
    scene = segmentationNode.GetScene()
    labelNode = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", scene.GenerateUniqueName("MedPrep export"))
    try:
        if not slicer.vtkSlicerSegmentationsModuleLogic.ExportSegmentsToLabelmapNode(
                segmentationNode, ids, labelNode, referenceNode):
            raise ValueError(_("The segmentation could not be exported as a label map"))
        return MedPrepBridge.volumeFromNode(labelNode), names
    finally:
        scene.RemoveNode(labelNode)


def _seriesNodeName(series) -> str:
    number = series.series_number if series.series_number is not None else ""
    return f"{number}: {series.description}{series.postfix}".strip(": ") or "series"


def _writeRecord(node, volume, files: list[str], output=None) -> None:
    # A node attribute, not logic state: it is saved with the scene and every logic instance sees it.
    # The metadata as the sidecar has it: the private keys are a reader's working state (numpy arrays),
    # which the node's voxels no longer match once a step has run.
    from MedPrepLib.sidecar import json_safe

    record = {"files": files, "meta": json_safe({k: v for k, v in volume.meta.items() if not k.startswith("_")}),
              "warnings": volume.warnings, "history": json_safe(volume.history),
              "stored": MedPrepBridge.storedRescale(volume)}
    if output is not None:
        record["output"] = dataclasses.asdict(output)
    node.SetAttribute(RECORD_ATTRIBUTE, json.dumps(record))


def _readRecord(node) -> dict:
    text = node.GetAttribute(RECORD_ATTRIBUTE) if node else None
    return json.loads(text) if text else {}


#
# MedPrepTest
#


class MedPrepTest(ScriptedLoadableModuleTest):
    """Runs inside Slicer (Reload and Test, or ctest): DICOM -> load -> anonymize -> preprocess -> save -> read back."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_MedPrepEndToEnd()

    def test_MedPrepEndToEnd(self):
        import tempfile

        import numpy as np

        import MedPrepSample as sample
        from MedPrepLib.nifti import read_nifti

        logic = MedPrepLogic()
        missing = logic.missingRequirements()
        if missing:
            self.delayDisplay(f"Installing {', '.join(missing)}")
            logic.installRequirements(missing)
        work = Path(tempfile.mkdtemp(prefix="MedPrepTest-"))
        spacing = (0.8, 0.8, 2.0)
        sample.write_ct_series(work / "dicom", n_slices=12, rows=48, cols=40, spacing=spacing,
                               patient={"PatientName": "Doe^Jane", "PatientID": "MRN-12345"})

        self.delayDisplay("Scan and load")
        scan = logic.scanFolder(str(work / "dicom"))
        self.assertEqual(len(scan.series), 1)
        volumeNode = logic.loadSeries(scan.series[0])
        self.assertEqual(volumeNode.GetImageData().GetDimensions(), (40, 48, 12))
        np.testing.assert_allclose(volumeNode.GetSpacing(), spacing, atol=1e-6)
        reference = self._slicerDicomLoad(scan.series[0])
        matrix, referenceMatrix = vtk.vtkMatrix4x4(), vtk.vtkMatrix4x4()
        volumeNode.GetIJKToRASMatrix(matrix)
        reference.GetIJKToRASMatrix(referenceMatrix)
        for row in range(4):
            for col in range(4):
                self.assertAlmostEqual(matrix.GetElement(row, col), referenceMatrix.GetElement(row, col), places=4)

        self.delayDisplay("Header and anonymization")
        parameterNode = logic.getParameterNode()
        parameterNode.anonymizationKey = "test-key"
        keywords = {row.keyword: row.value for row in logic.headerRows(volumeNode)}
        self.assertIn("Doe", keywords["PatientName"])
        _original, after = logic.previewAnonymization(volumeNode, logic.anonymizer(parameterNode))
        anonymized = {row.keyword: row.value for row in after}
        self.assertNotIn("Doe", anonymized.get("PatientName", ""))
        self.assertEqual(anonymized["PatientIdentityRemoved"], "YES")
        report = logic.anonymizeFolder(str(work / "dicom"), str(work / "anonymized"), logic.anonymizer(parameterNode))
        self.assertEqual(report.written, 12)
        for path in (work / "anonymized").rglob("*.dcm"):
            self.assertNotIn(b"MRN-12345", path.read_bytes())

        self.delayDisplay("Preprocess")
        steps = presenter.pipelineSteps(presenter.PreprocessSettings(
            orientation="LPS", resample=True, spacing=(1.6, 1.6, 2.0), intensity="minmax",
            intensityRange=(0.0, 1.0)))
        voxelsBefore = slicer.util.arrayFromVolume(volumeNode).copy()
        outputNode, _label = logic.preprocess(volumeNode, steps)
        np.testing.assert_array_equal(slicer.util.arrayFromVolume(volumeNode), voxelsBefore)
        np.testing.assert_allclose(outputNode.GetSpacing(), (1.6, 1.6, 2.0), atol=1e-6)
        result = slicer.util.arrayFromVolume(outputNode)
        self.assertAlmostEqual(float(result.min()), 0.0, places=5)
        self.assertAlmostEqual(float(result.max()), 1.0, places=5)

        self.delayDisplay("Quality check views")
        logic.showSideBySide(volumeNode, outputNode)
        logic.showOverlay(volumeNode, outputNode, 0.3)
        logic.setOverlayOpacity(0.7)

        self.delayDisplay("Save and read back")
        written = logic.save(outputNode, str(work / "out"), "case")
        saved = read_nifti(written[0])
        outputMatrix = vtk.vtkMatrix4x4()
        outputNode.GetIJKToRASMatrix(outputMatrix)
        for row in range(4):
            for col in range(4):
                self.assertAlmostEqual(saved.affine[row, col], outputMatrix.GetElement(row, col), places=4)
        np.testing.assert_allclose(saved.scaled(), result, atol=1e-6)
        sidecar = json.loads((work / "out" / "case.json").read_text())
        self.assertEqual([s["step"] for s in sidecar["MedPrepProvenance"]["steps"]],
                         ["dicom_to_nifti", "orient", "resample", "minmax"])
        # Apply ran the pipeline as `medprep preprocess` runs it: the sidecar names it as theirs do.
        self.assertEqual(sidecar["MedPrepPipeline"]["name"], "custom")
        logic.exportPipeline(steps, str(work / "out" / "pipeline.json"))
        self.assertEqual(json.loads((work / "out" / "pipeline.json").read_text())["steps"][0]["step"], "orient")
        self.delayDisplay("Test passed")

    @staticmethod
    def _slicerDicomLoad(series):
        """The series loaded the way DICOMScalarVolumePlugin loads it, for comparing geometry."""
        files = vtk.vtkStringArray()
        for f in series.files:
            files.InsertNextValue(str(f.path))
        return slicer.modules.volumes.logic().AddArchetypeScalarVolume(str(series.files[0].path), "reference", 0, files)
