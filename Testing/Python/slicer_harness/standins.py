"""Every stand-in of the harness, in one place: what Slicer's application provides and pip cannot.

Everything else is real: Slicer's `parameterNodeWrapper`, `ScriptedLoadableModule`, `i18n` and `testing`
(../shared/slicer-python), `slicer.util` and every MRML/VTK class (slicer-core), Qt widgets (PySide6 with
PythonQt's naming, `pythonqt.py`).

Stand-in (what it replaces): what it does / what it leaves out.

- `ctkCollapsibleButton` (CTK): `text`, `collapsed` (hides the content), `contentsCollapsed(bool)`; drawn as a
  titled frame / CTK's look and animation.
- `ctkDirectoryButton` (CTK): `directory` (kept absolute once changed, and unchanged for an equal folder, as
  CTK's QDir), `directoryChanged(QString)` / the folder dialog.
- `ctkPathLineEdit` (CTK): `currentPath`, `currentPathChanged(QString)` / filters, history, browse button.
- `ctkSliderWidget` (CTK): `value`, `minimum`, `maximum`, `singleStep`, `decimals`, `valueChanged(double)`;
  slider and spin box / CTK's popup and tracking options.
- `qMRMLWidget` (Slicer): `setMRMLScene`, `mrmlScene()`, `mrmlSceneChanged`.
- `qSlicerScriptedLoadableModuleWidget` (Slicer): a module's panel, a qMRMLWidget with `self()` (the Python
  Widget) and `isEntered` / the help and developer sections.
- `qMRMLNodeComboBox` (Slicer): lists the scene's nodes of `nodeTypes` (exact class unless
  `showChildNodeTypes`), a None item when `noneEnabled`, follows nodes added and removed, `currentNode()`,
  `setCurrentNode()`, `currentNodeID`, `currentNodeChanged(vtkMRMLNode*)` / add, rename and remove actions,
  attribute filters.
- `Application`, i.e. `slicer.app` (qSlicerApplication): `processEvents`, `testingEnabled()` (True, as with
  `Slicer --testing`: message boxes are logged, confirmations answer OK), `applicationName`,
  `moduleManager()`, `layoutManager()`, cursor overrides, `translate` / settings, Python console, rendering.
- `ModuleManager` (qSlicerModuleManager): `module(name)`, `moduleAboutToBeUnloaded(QString)` / loading modules.
- `ScriptedModule`, i.e. `slicer.modules.<name>` (qSlicerScriptedLoadableModule): `path`, `title` and the other
  fields a ScriptedLoadableModule fills, `widgetRepresentation()` (the Widget made and set up once, as Slicer
  does), `enter()`, `exit()` / the module panel around it.
- `LayoutManager` (qSlicerLayoutManager): sets the scene up as the application does (default slice orientation
  presets, application and color logic, vtkMRMLLayoutLogic, one vtkMRMLSliceLogic per slice view) and gives
  `setLayout`/`layout` on the real layout node, `sliceWidget(name)` with the real `mrmlSliceNode()`,
  `mrmlSliceCompositeNode()` and `sliceLogic()`, `mrmlSliceLogics()`, `resetSliceViews()` (each slice logic
  fits) / views, rendering, interaction.
- `slicer.modules.volumes.logic()` (Volumes module): a real vtkSlicerVolumesLogic on the scene.

Widgets the harness does not have (`ABSENT`) exist as names so that Slicer's GUI connectors can test
`type(widget) in (...)`, and refuse to be made: Slicer's wrapper tests that need them are skipped by name.
"""
from __future__ import annotations

import os
import types
from pathlib import Path

import slicer
import vtk
from PySide6 import QtCore, QtWidgets

from .pythonqt import pythonQtClass


def _qobjectProperty(kind, attribute: str, changed=None):
    def get(self):
        return getattr(self, attribute)

    def set(self, value):
        setattr(self, attribute, value)
        if changed:
            changed(self)

    return QtCore.Property(kind, get, set)


class _ctkCollapsibleButton(QtWidgets.QGroupBox):
    contentsCollapsed = QtCore.Signal(bool)

    def __init__(self, parent=None):
        super().__init__(parent)
        self._text, self._collapsed = "", False
        self.setStyleSheet("QGroupBox { font-weight: bold; }")

    def _update(self) -> None:
        for child in self.findChildren(QtWidgets.QWidget, options=QtCore.Qt.FindDirectChildrenOnly):
            child.setVisible(not self._collapsed)
        self.setTitle(("\u25b6 " if self._collapsed else "\u25bc ") + self._text)

    def childEvent(self, event) -> None:
        # Content the .ui loader adds after `collapsed` was set is hidden too, as in CTK.
        super().childEvent(event)
        if event.added() and event.child().isWidgetType() and self._collapsed:
            event.child().setVisible(False)

    def showEvent(self, event) -> None:
        self._update()
        super().showEvent(event)

    def _getCollapsed(self) -> bool:
        return self._collapsed

    def _setCollapsed(self, collapsed: bool) -> None:
        if collapsed != self._collapsed:
            self._collapsed = collapsed
            self._update()
            self.contentsCollapsed.emit(collapsed)

    text = _qobjectProperty(str, "_text", _update)
    collapsed = QtCore.Property(bool, _getCollapsed, _setCollapsed)


class _ctkDirectoryButton(QtWidgets.QPushButton):
    directoryChanged = QtCore.Signal(str)

    def __init__(self, parent=None):
        super().__init__(parent)
        self._directory = "."
        self.setStyleSheet("text-align: left; padding: 3px 6px;")
        self.setText(self._directory)

    def _getDirectory(self) -> str:
        return self._directory

    def _setDirectory(self, directory: str) -> None:
        # CTK keeps a QDir: an equal folder changes nothing, a new one is kept as an absolute path.
        if QtCore.QDir(directory) == QtCore.QDir(self._directory):
            return
        self._directory = QtCore.QDir(directory).absolutePath()
        self.setText(self._directory)
        self.directoryChanged.emit(self._directory)

    directory = QtCore.Property(str, _getDirectory, _setDirectory)


class _ctkPathLineEdit(QtWidgets.QLineEdit):
    currentPathChanged = QtCore.Signal(str)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.textChanged.connect(self.currentPathChanged)

    currentPath = QtCore.Property(str, QtWidgets.QLineEdit.text, QtWidgets.QLineEdit.setText)


class _ctkSliderWidget(QtWidgets.QWidget):
    valueChanged = QtCore.Signal(float)

    def __init__(self, parent=None):
        super().__init__(parent)
        layout = QtWidgets.QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self._slider = QtWidgets.QSlider(QtCore.Qt.Horizontal)
        self._slider.setRange(0, 1000)
        self._spin = QtWidgets.QDoubleSpinBox()
        self._spin.setRange(0.0, 99.0)
        layout.addWidget(self._slider)
        layout.addWidget(self._spin)
        self._spin.valueChanged.connect(self._onSpin)
        self._slider.valueChanged.connect(self._onSlider)

    def _onSpin(self, value: float) -> None:
        span = self._spin.maximum() - self._spin.minimum() or 1.0
        self._slider.blockSignals(True)
        self._slider.setValue(round(1000 * (value - self._spin.minimum()) / span))
        self._slider.blockSignals(False)
        self.valueChanged.emit(value)

    def _onSlider(self, position: int) -> None:
        self._spin.setValue(self._spin.minimum() + (self._spin.maximum() - self._spin.minimum()) * position / 1000.0)

    value = QtCore.Property(float, lambda self: self._spin.value(), lambda self, v: self._spin.setValue(v))
    minimum = QtCore.Property(float, lambda self: self._spin.minimum(), lambda self, v: self._spin.setMinimum(v))
    maximum = QtCore.Property(float, lambda self: self._spin.maximum(), lambda self, v: self._spin.setMaximum(v))
    singleStep = QtCore.Property(float, lambda self: self._spin.singleStep(),
                                 lambda self, v: self._spin.setSingleStep(v))
    decimals = QtCore.Property(int, lambda self: self._spin.decimals(), lambda self, v: self._spin.setDecimals(v))


class _qMRMLWidget(QtWidgets.QWidget):
    mrmlSceneChanged = QtCore.Signal(object)

    def __init__(self, parent=None):
        super().__init__(parent)
        self._scene = None

    def setMRMLScene(self, scene) -> None:
        if scene is not self._scene:
            self._scene = scene
            self.mrmlSceneChanged.emit(scene)

    def mrmlScene(self):
        return self._scene


class _qSlicerScriptedLoadableModuleWidget(_qMRMLWidget):
    """A module's panel; `self()` is its Python Widget object."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self._python = None
        self._entered = False

    def self(self):
        return self._python

    isEntered = QtCore.Property(bool, lambda self: self._entered)


class _qMRMLNodeComboBox(QtWidgets.QComboBox):
    currentNodeChanged = QtCore.Signal(object)

    def __init__(self, parent=None):
        super().__init__(parent)
        self._scene, self._observations, self._ids = None, [], []
        self._nodeTypes, self._showChildNodeTypes, self._noneEnabled = [], True, False
        self._addEnabled = self._removeEnabled = True
        self._renameEnabled = False
        self.setMinimumWidth(120)
        self.currentIndexChanged.connect(lambda index: self.currentNodeChanged.emit(self.currentNode()))

    def _accepts(self, node) -> bool:
        if self._showChildNodeTypes:
            return any(node.IsA(t) for t in self._nodeTypes)
        return node.GetClassName() in self._nodeTypes

    def _populate(self, *args) -> None:
        current = self.currentNodeID
        ids = [None] if self._noneEnabled else []
        if self._scene is not None:
            for index in range(self._scene.GetNumberOfNodes()):
                node = self._scene.GetNthNode(index)
                if self._accepts(node) and not node.GetHideFromEditors():
                    ids.append(node.GetID())
        blocked = self.blockSignals(True)
        self.clear()
        self._ids = ids
        for nodeId in ids:
            self.addItem("None" if nodeId is None else self._scene.GetNodeByID(nodeId).GetName())
        self.setCurrentIndex(ids.index(current) if current in ids else (0 if self._noneEnabled else -1))
        self.blockSignals(blocked)
        if self.currentNodeID != current:  # the current node left the scene
            self.currentNodeChanged.emit(self.currentNode())

    def setMRMLScene(self, scene) -> None:
        for observed, tag in self._observations:
            observed.RemoveObserver(tag)
        self._scene, self._observations = scene, []
        if scene is not None:
            self._observations = [(scene, scene.AddObserver(event, self._populate)) for event in (
                scene.NodeAddedEvent, scene.NodeRemovedEvent, scene.EndCloseEvent, scene.EndImportEvent)]
        self._populate()

    def mrmlScene(self):
        return self._scene

    def currentNode(self):
        nodeId = self.currentNodeID
        return self._scene.GetNodeByID(nodeId) if nodeId and self._scene is not None else None

    def setCurrentNode(self, node) -> None:
        self.setCurrentNodeID(node.GetID() if node is not None else "")

    def setCurrentNodeID(self, nodeId: str) -> None:
        nodeId = nodeId or None
        if nodeId in self._ids:
            self.setCurrentIndex(self._ids.index(nodeId))
        elif nodeId is None:
            self.setCurrentIndex(-1)

    def _getCurrentNodeID(self) -> str:
        index = QtWidgets.QComboBox.currentIndex(self)
        return (self._ids[index] or "") if 0 <= index < len(self._ids) else ""

    currentNodeID = QtCore.Property(str, _getCurrentNodeID, setCurrentNodeID)
    def _setNodeTypes(self, nodeTypes) -> None:
        self._nodeTypes = list(nodeTypes)
        self._populate()

    # PythonQt gives a QStringList property as a tuple.
    nodeTypes = QtCore.Property("QStringList", lambda self: tuple(self._nodeTypes), _setNodeTypes)
    showChildNodeTypes = _qobjectProperty(bool, "_showChildNodeTypes", _populate)
    noneEnabled = _qobjectProperty(bool, "_noneEnabled", _populate)
    addEnabled = _qobjectProperty(bool, "_addEnabled")
    removeEnabled = _qobjectProperty(bool, "_removeEnabled")
    renameEnabled = _qobjectProperty(bool, "_renameEnabled")


CTK = {"ctkCollapsibleButton": _ctkCollapsibleButton, "ctkDirectoryButton": _ctkDirectoryButton,
       "ctkPathLineEdit": _ctkPathLineEdit, "ctkSliderWidget": _ctkSliderWidget}
QMRML = {"qMRMLWidget": _qMRMLWidget, "qMRMLNodeComboBox": _qMRMLNodeComboBox,
         "qSlicerScriptedLoadableModuleWidget": _qSlicerScriptedLoadableModuleWidget}

# Named by Slicer's GUI connectors (guiConnectors.py) or wrapper tests, not provided here.
ABSENT = {
    "ctk": ["ctkCheckBox", "ctkCheckablePushButton", "ctkComboBox", "ctkDoubleSpinBox", "ctkDoubleSlider",
            "ctkRangeWidget", "ctkDoubleRangeSlider", "ctkColorPickerButton"],
    "slicer": ["qMRMLSliderWidget", "qMRMLSpinBox", "qMRMLRangeWidget", "qMRMLSubjectHierarchyComboBox",
               "qMRMLSubjectHierarchyTreeView"],
}


def _absent(name: str) -> type:
    def refuse(*args, **kwargs):
        raise NotImplementedError(f"{name} is not provided by the harness (see slicer_harness/standins.py)")

    return type(name, (), {"__init__": refuse, "__module__": "harness-absent"})


def ctkModule() -> types.ModuleType:
    module = types.ModuleType("ctk", "CTK widgets of the harness (stand-ins; see standins.py)")
    for name, cls in CTK.items():
        setattr(module, name, pythonQtClass(cls, name))
    for name in ABSENT["ctk"]:
        setattr(module, name, _absent(name))
    return module


def qmrmlClasses() -> dict[str, type]:
    classes = {name: pythonQtClass(cls, name) for name, cls in QMRML.items()}
    classes.update({name: _absent(name) for name in ABSENT["slicer"]})
    return classes


# ---------------------------------------------------------------------------------------------
# The application


class _SliceWidget:
    def __init__(self, logic):
        self._logic = logic

    def sliceLogic(self):
        return self._logic

    def mrmlSliceNode(self):
        return self._logic.GetSliceNode()

    def mrmlSliceCompositeNode(self):
        return self._logic.GetSliceCompositeNode()


class LayoutManager:
    """qSlicerLayoutManager without views: the layout node, view nodes and slice logics are Slicer's own
    (vtkMRMLLayoutLogic, vtkMRMLSliceLogic), set up on the scene as the application does at startup."""

    SLICE_VIEWS = ("Red", "Yellow", "Green")

    def __init__(self, scene):
        self._scene = scene
        defaultSliceNode = slicer.vtkMRMLSliceNode()
        defaultSliceNode.AddDefaultSliceOrientationPresets(scene)
        scene.AddDefaultNode(defaultSliceNode)
        self.applicationLogic = slicer.vtkSlicerApplicationLogic()
        self.applicationLogic.SetMRMLScene(scene)
        colorLogic = slicer.vtkSlicerColorLogic()
        colorLogic.SetMRMLApplicationLogic(self.applicationLogic)
        colorLogic.SetMRMLScene(scene)
        self.applicationLogic.SetModuleLogic("Colors", colorLogic)
        self._layoutLogic = slicer.vtkMRMLLayoutLogic()
        self._layoutLogic.SetMRMLScene(scene)
        self.setLayout(slicer.vtkMRMLLayoutNode.SlicerLayoutFourUpView)
        self._sliceLogics = {}
        for name in self.SLICE_VIEWS:
            logic = slicer.vtkMRMLSliceLogic()
            logic.SetMRMLApplicationLogic(self.applicationLogic)
            logic.SetMRMLScene(scene)
            logic.AddSliceNode(name)
            self._sliceLogics[name] = logic

    def setLayout(self, layout: int) -> None:
        self._layoutLogic.GetLayoutNode().SetViewArrangement(layout)

    @property
    def layout(self) -> int:
        return self._layoutLogic.GetLayoutNode().GetViewArrangement()

    def sliceViewNames(self) -> list[str]:
        return list(self.SLICE_VIEWS)

    def sliceWidget(self, name: str):
        logic = self._sliceLogics.get(name)
        return _SliceWidget(logic) if logic is not None else None

    def mrmlSliceLogics(self):
        logics = vtk.vtkCollection()
        for logic in self._sliceLogics.values():
            logics.AddItem(logic)
        return logics

    def resetSliceViews(self) -> None:
        for logic in self._sliceLogics.values():
            logic.FitSliceToAll()


class ModuleManager(QtCore.QObject):
    moduleAboutToBeUnloaded = QtCore.Signal(str)

    def __init__(self):
        super().__init__()
        self._modules = {}

    def module(self, name: str):
        return self._modules.get(name)

    def connect(self, signature: str, slot) -> bool:
        getattr(self, signature.split("(")[0]).connect(slot)
        return True

    def disconnect(self, signature: str, slot) -> bool:
        return getattr(self, signature.split("(")[0]).disconnect(slot)


class ScriptedModule:
    """qSlicerScriptedLoadableModule: the `parent` a ScriptedLoadableModule fills, and its widget representation."""

    def __init__(self, name: str, path: Path):
        self.name = name
        self.path = str(path)
        self.title, self.categories, self.dependencies, self.contributors = "", [], [], []
        self.helpText = self.acknowledgementText = ""
        self.icon = None
        self.isEntered = False
        self._widget = None
        self._panel = None

    def widgetRepresentation(self):
        """The module's panel, made on first use as Slicer does (module Widget class, then setup())."""
        if self._panel is None:
            import importlib

            module = importlib.import_module(self.name)
            self._panel = slicer.qSlicerScriptedLoadableModuleWidget()
            self._panel.setLayout(QtWidgets.QVBoxLayout())
            self._panel.setMRMLScene(slicer.mrmlScene)
            self._widget = getattr(module, self.name + "Widget")(self._panel)
            self._panel._python = self._widget
            self._widget.setup()
        return self._panel

    def enter(self) -> None:
        self.widgetRepresentation()
        self._panel._entered = self.isEntered = True
        self._widget.enter()

    def exit(self) -> None:
        self._widget.exit()
        self._panel._entered = self.isEntered = False


class _VolumesModule:
    def logic(self):
        logic = slicer.vtkSlicerVolumesLogic()
        logic.SetMRMLApplicationLogic(slicer.app.layoutManager().applicationLogic)
        logic.SetMRMLScene(slicer.mrmlScene)
        return logic


class Application(QtCore.QObject):
    """slicer.app"""

    applicationName = "Slicer"

    def __init__(self, qapplication):
        super().__init__()
        self._qapplication = qapplication
        self._moduleManager = ModuleManager()
        self._layoutManager = None
        self.temporaryPath = os.environ.get("TMPDIR", "/tmp")

    def processEvents(self) -> None:
        self._qapplication.processEvents()

    def testingEnabled(self) -> bool:
        return True

    def moduleManager(self):
        return self._moduleManager

    def layoutManager(self):
        if self._layoutManager is None:
            self._layoutManager = LayoutManager(slicer.mrmlScene)
        return self._layoutManager

    def setOverrideCursor(self, cursor) -> None:
        self._qapplication.setOverrideCursor(cursor)

    def restoreOverrideCursor(self) -> None:
        self._qapplication.restoreOverrideCursor()

    def translate(self, context: str, text: str) -> str:
        return QtCore.QCoreApplication.translate(context, text)


def registerScriptedModule(name: str, path: Path) -> ScriptedModule:
    """What Slicer does for a module found on "Additional module paths": import it and make its parent."""
    import importlib
    import sys

    if str(Path(path).parent) not in sys.path:
        sys.path.insert(0, str(Path(path).parent))
    module = ScriptedModule(name, path)
    slicer.app.moduleManager()._modules[name] = module
    setattr(slicer.modules, name.lower(), module)
    python = importlib.import_module(name)
    module.instance = getattr(python, name)(module)
    return module

