"""MedPrep.ui outside Slicer: PySide6 stand-ins for the CTK and qMRML widgets it uses, and a loader.

The stand-ins have the properties, signals and slots the .ui file and MedPrep.py use, and draw as
titled frames so that the panel can be rendered offscreen for the README. Run this file to
write Resources/Screenshots/MedPrep-panel.png.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from types import SimpleNamespace

os.environ["QT_QPA_PLATFORM"] = "offscreen"  # no display here or in CI

from PySide6 import QtCore, QtWidgets  # noqa: E402 - the platform must be chosen before Qt loads
from PySide6.QtUiTools import QUiLoader  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
UI_FILE = ROOT / "MedPrep" / "Resources" / "UI" / "MedPrep.ui"
SCREENSHOT = ROOT / "Resources" / "Screenshots" / "MedPrep-panel.png"


class qMRMLWidget(QtWidgets.QWidget):
    mrmlSceneChanged = QtCore.Signal(object)

    @QtCore.Slot(object)
    def setMRMLScene(self, scene) -> None:
        self.mrmlSceneChanged.emit(scene)


class ctkCollapsibleButton(QtWidgets.QGroupBox):
    """A titled frame whose content hides when collapsed, like CTK's collapsible section button."""

    contentsCollapsed = QtCore.Signal(bool)

    def __init__(self, parent=None):
        super().__init__(parent)
        self._text = ""
        self._collapsed = False
        self.setStyleSheet("ctkCollapsibleButton { font-weight: bold; }")

    def _getText(self) -> str:
        return self._text

    def _setText(self, text: str) -> None:
        self._text = text
        self._updateTitle()

    def _getCollapsed(self) -> bool:
        return self._collapsed

    def _setCollapsed(self, collapsed: bool) -> None:
        self._collapsed = collapsed
        for child in self.findChildren(QtWidgets.QWidget, options=QtCore.Qt.FindDirectChildrenOnly):
            child.setVisible(not collapsed)
        self._updateTitle()
        self.contentsCollapsed.emit(collapsed)

    def _updateTitle(self) -> None:
        self.setTitle(("\u25b6 " if self._collapsed else "\u25bc ") + self._text)

    text = QtCore.Property(str, _getText, _setText)
    collapsed = QtCore.Property(bool, _getCollapsed, _setCollapsed)


class ctkDirectoryButton(QtWidgets.QPushButton):
    directoryChanged = QtCore.Signal(str)

    def __init__(self, parent=None):
        super().__init__(parent)
        self._directory = ""
        self.setText("(choose a folder)")
        self.setStyleSheet("text-align: left; padding: 3px 6px;")

    def _getDirectory(self) -> str:
        return self._directory

    def _setDirectory(self, directory: str) -> None:
        self._directory = directory
        self.setText(directory or "(choose a folder)")
        self.directoryChanged.emit(directory)

    directory = QtCore.Property(str, _getDirectory, _setDirectory)


class ctkSliderWidget(QtWidgets.QWidget):
    """Slider and spin box for one float value."""

    valueChanged = QtCore.Signal(float)

    def __init__(self, parent=None):
        super().__init__(parent)
        layout = QtWidgets.QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self._slider = QtWidgets.QSlider(QtCore.Qt.Horizontal)
        self._slider.setRange(0, 1000)
        self._spin = QtWidgets.QDoubleSpinBox()
        layout.addWidget(self._slider)
        layout.addWidget(self._spin)
        self._spin.valueChanged.connect(self._onSpin)
        self._slider.valueChanged.connect(self._onSlider)
        self._setRange(0.0, 1.0)

    def _setRange(self, low: float, high: float) -> None:
        self._spin.setRange(low, high)

    def _onSpin(self, value: float) -> None:
        span = self._spin.maximum() - self._spin.minimum() or 1.0
        self._slider.blockSignals(True)
        self._slider.setValue(round(1000 * (value - self._spin.minimum()) / span))
        self._slider.blockSignals(False)
        self.valueChanged.emit(value)

    def _onSlider(self, position: int) -> None:
        span = self._spin.maximum() - self._spin.minimum()
        self._spin.setValue(self._spin.minimum() + span * position / 1000.0)

    value = QtCore.Property(float, lambda self: self._spin.value(), lambda self, v: self._spin.setValue(v))
    minimum = QtCore.Property(float, lambda self: self._spin.minimum(), lambda self, v: self._spin.setMinimum(v))
    maximum = QtCore.Property(float, lambda self: self._spin.maximum(), lambda self, v: self._spin.setMaximum(v))
    singleStep = QtCore.Property(float, lambda self: self._spin.singleStep(),
                                 lambda self, v: self._spin.setSingleStep(v))
    decimals = QtCore.Property(int, lambda self: self._spin.decimals(), lambda self, v: self._spin.setDecimals(v))


class qMRMLNodeComboBox(QtWidgets.QComboBox):
    """Lists "nodes" given by name; keeps the node-type settings the .ui file gives it."""

    currentNodeChanged = QtCore.Signal(object)

    def __init__(self, parent=None):
        super().__init__(parent)
        self._settings = {"nodeTypes": [], "showChildNodeTypes": True, "noneEnabled": False,
                          "addEnabled": True, "removeEnabled": True, "renameEnabled": False}
        self.setMinimumWidth(120)

    def _prop(name, kind):
        return QtCore.Property(kind, lambda self: self._settings[name],
                               lambda self, v: self._settings.__setitem__(name, v))

    nodeTypes = _prop("nodeTypes", "QStringList")
    showChildNodeTypes = _prop("showChildNodeTypes", bool)
    noneEnabled = _prop("noneEnabled", bool)
    addEnabled = _prop("addEnabled", bool)
    removeEnabled = _prop("removeEnabled", bool)
    renameEnabled = _prop("renameEnabled", bool)
    del _prop

    @QtCore.Slot(object)
    def setMRMLScene(self, scene) -> None:
        self.clear()
        if self._settings["noneEnabled"]:
            self.addItem("None")


STANDINS = [qMRMLWidget, ctkCollapsibleButton, ctkDirectoryButton, ctkSliderWidget, qMRMLNodeComboBox]


def application() -> QtWidgets.QApplication:
    return QtWidgets.QApplication.instance() or QtWidgets.QApplication([])


def loadPanel():
    """(root widget, ui) where ui has one attribute per named widget, like slicer.util.childWidgetVariables."""
    application()
    loader = QUiLoader()
    for cls in STANDINS:
        loader.registerCustomWidget(cls)
    file = QtCore.QFile(str(UI_FILE))
    file.open(QtCore.QFile.ReadOnly)
    # The .ui connects qMRML signals by their C++ signatures, which the stand-ins cannot offer; connect by hand.
    QtCore.qInstallMessageHandler(lambda *args: None)
    try:
        root = loader.load(file)
    finally:
        QtCore.qInstallMessageHandler(None)
        file.close()
    if root is None:
        raise RuntimeError(f"cannot load {UI_FILE}: {loader.errorString()}")
    ui = SimpleNamespace(**{w.objectName(): w for w in root.findChildren(QtCore.QObject) if w.objectName()})
    for combo in root.findChildren(qMRMLNodeComboBox):
        root.mrmlSceneChanged.connect(combo.setMRMLScene)
    return root, ui


def renderPanel(path: Path = SCREENSHOT) -> Path:
    """The panel with example content, all sections open, saved as a PNG."""
    sys.path.insert(0, str(ROOT / "MedPrep"))
    import MedPrepPresenter as presenter

    root, ui = loadPanel()
    root.setMRMLScene(object())
    ui.inputFolderButton.directory = "/data/hospital-export/case042"
    rows = [["2", "CT", "Abdomen 1.0 B30f", "512x512x301", "301", ""],
            ["3", "CT", "Abdomen 5.0 B30f", "512x512x61", "61", "slice spacing varies by 0.2 mm"],
            ["901", "SR", "Dose report", "0x0x1", "1", "derived"]]
    presenter.fillTable(ui.seriesTable, presenter.SERIES_COLUMNS, rows, QtWidgets.QTableWidgetItem)
    ui.seriesTable.selectRow(0)
    ui.seriesTable.setMinimumHeight(110)
    ui.scanStatusLabel.setText("3 series in 364 files; 2 skipped (not DICOM: 2)")
    ui.inputVolumeSelector.addItem("2: Abdomen 1.0 B30f")
    ui.outputVolumeSelector.addItem("2: Abdomen 1.0 B30f-preprocessed")
    ui.inputVolumeSelector.setCurrentIndex(1)
    ui.outputVolumeSelector.setCurrentIndex(1)
    for axis in "XYZ":
        getattr(ui, f"spacing{axis}SpinBox").setValue(1.0)
        getattr(ui, f"size{axis}SpinBox").setRange(1, 4096)
        getattr(ui, f"size{axis}SpinBox").setValue(128)
    ui.compressCheckBox.setChecked(True)
    ui.anonOutputFolderButton.directory = "/data/hospital-export/case042-anonymized"
    ui.saveFolderButton.directory = "/data/nifti"
    ui.saveNameLineEdit.setText("002_Abdomen_1_0_B30f")
    ui.anonKeyLineEdit.setText("project-key")
    for name, choices in (("orientationComboBox", presenter.ORIENTATIONS),
                          ("interpolationComboBox", presenter.INTERPOLATIONS),
                          ("intensityComboBox", presenter.INTENSITY_METHODS)):
        getattr(ui, name).addItems(choices)
    ui.presetComboBox.addItems(["(custom)", "ct-liver", "mr-heart"])
    ui.orientationComboBox.setCurrentText("RAS")
    ui.resampleCheckBox.setChecked(True)
    ui.intensityComboBox.setCurrentText("clip")
    ui.intensityLowSpinBox.setRange(-5000, 5000)
    ui.intensityHighSpinBox.setRange(-5000, 5000)
    ui.intensityLowSpinBox.setValue(-200)
    ui.intensityHighSpinBox.setValue(250)
    ui.intensityRangeLabel.setText(presenter.intensityRangeLabel("clip"))
    ui.fadeSlider.value = 0.5
    ui.statusLabel.setText("Loaded 2: Abdomen 1.0 B30f (301 slices)")
    ui.progressBar.setValue(100)
    presenter.applyEnableRules(ui, presenter.PanelState(
        inputFolder="/data", seriesSelected=True, inputVolumeFromDicom=True, inputVolume=True,
        anonymizedFolder="/out", hasSteps=True, intensity="clip", outputVolume=True,
        saveFolder="/data/nifti", saveName="case"))
    for section in ("headerCollapsibleButton", "anonymizeCollapsibleButton", "preprocessCollapsibleButton",
                    "qaCollapsibleButton", "saveCollapsibleButton"):
        getattr(ui, section).collapsed = section == "headerCollapsibleButton"
    root.resize(460, 10)
    root.adjustSize()
    root.resize(460, root.sizeHint().height())
    path.parent.mkdir(parents=True, exist_ok=True)
    if not root.grab().save(str(path)):
        raise RuntimeError(f"cannot write {path}")
    return path


if __name__ == "__main__":
    print(renderPanel())
