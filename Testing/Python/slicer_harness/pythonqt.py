"""`qt` as Slicer's Python sees it (PythonQt), made from PySide6: the naming layer, not a stand-in.

PythonQt and PySide6 wrap the same Qt classes but name things differently. What this layer changes,
and nothing more:

- Qt properties are Python attributes (`checkBox.checked = True`, `lineEdit.text`, `comboBox.currentText`),
  and a property hides the method of the same name, as in PythonQt (`lineEdit.text()` fails there, so it
  fails here). QStringList properties read back as tuples.
- `obj.name` is the object name; `obj.connect("clicked()", callable)` connects by C++ signature.
- `QFileDialog.getOpenFileName` / `getSaveFileName` return the path only.
- `QUiLoader` builds every widget of a .ui file from these classes (and the CTK and qMRML classes of
  `standins`), and makes the .ui file's signal/slot connections between them.

Classes are made on first use (`qt.QCheckBox` is a subclass of PySide6's QCheckBox with the above) and
cached, so `type(widget) is qt.QCheckBox` holds for widgets from a .ui file as in Slicer.
"""
from __future__ import annotations

import types
import xml.etree.ElementTree as ET

from PySide6 import QtCore, QtGui, QtWidgets
from PySide6.QtUiTools import QUiLoader as _QUiLoader

_SOURCES = (QtCore, QtGui, QtWidgets)
_classes: dict[type, type] = {}


_reading: set = set()


def _qtProperty(name: str, stringList: bool) -> property:
    def get(self):
        key = (id(self), name)
        if key in _reading:
            # Qt is calling a virtual getter (QProgressBar::text, QWidget::sizeHint) and PySide6 looks
            # for a Python override under the same name: there is none, Qt's own implementation answers.
            raise AttributeError(name)
        _reading.add(key)
        try:
            value = QtCore.QObject.property(self, name)
        finally:
            _reading.discard(key)
        return tuple(value) if stringList and isinstance(value, list) else value

    def set(self, value):
        if stringList and isinstance(value, tuple):
            value = list(value)
        QtCore.QObject.setProperty(self, name, value)

    return property(get, set)


def _connect(self, *args):
    """PythonQt's `obj.connect("signal(args)", callable)`; PySide6's connect otherwise."""
    if args and isinstance(args[0], str) and len(args) == 2:
        signal = getattr(self, args[0].split("(")[0])
        signal.connect(args[1])
        return True
    return QtCore.QObject.connect(self, *args)


def _disconnect(self, *args):
    if args and isinstance(args[0], str) and len(args) == 2:
        return getattr(self, args[0].split("(")[0]).disconnect(args[1])
    return QtCore.QObject.disconnect(self, *args)


def _findChildren(self, kind=None, *args, **kwargs):
    """`findChildren(qt.QWidget)` finds a qt.QCheckBox, as in PythonQt where qt.QCheckBox derives from qt.QWidget.

    The PythonQt-named classes here are siblings of each other (each derives from its PySide6 class
    only), so a search by class searches by the PySide6 class under it.
    """
    if kind is None:
        return QtCore.QObject.findChildren(self, QtCore.QObject, *args, **kwargs)
    return QtCore.QObject.findChildren(self, _pysideClass(kind), *args, **kwargs)


def pythonQtClass(base: type, name: str | None = None) -> type:
    """`base` (a QObject class of PySide6 or a stand-in) with PythonQt's naming."""
    if base in _classes:
        return _classes[base]
    namespace = {"__module__": base.__module__ if name else "qt", "__qualname__": name or base.__name__}
    meta = base.staticMetaObject
    # Properties a Python class (a stand-in) defines are Python attributes already.
    defined = {name for klass in base.__mro__ for name, value in vars(klass).items()
               if isinstance(value, QtCore.Property)}
    for index in range(meta.propertyCount()):
        prop = meta.property(index)
        if prop.name() not in defined:
            namespace[prop.name()] = _qtProperty(prop.name(), prop.typeName() == "QStringList")
    namespace["name"] = property(QtCore.QObject.objectName, QtCore.QObject.setObjectName)
    namespace["connect"] = _connect
    namespace["disconnect"] = _disconnect
    if issubclass(base, QtWidgets.QFileDialog):
        for method in ("getOpenFileName", "getSaveFileName"):
            original = getattr(base, method)
            namespace[method] = staticmethod(lambda *args, _original=original, **kw: _original(*args, **kw)[0])
    namespace["findChildren"] = _findChildren
    cls = type(name or base.__name__, (base,), namespace)
    _classes[base] = cls
    return cls


def _pysideClass(cls: type) -> type:
    """The PySide6 class a stand-in extends (itself for PySide6 classes)."""
    return next(c for c in cls.__mro__ if c.__module__.startswith("PySide6"))


def _lookup(name: str):
    for source in _SOURCES:
        value = getattr(source, name, None)
        if value is not None:
            if isinstance(value, type) and issubclass(value, QtCore.QObject):
                return pythonQtClass(value)
            return value
    raise AttributeError(f"module 'qt' has no attribute '{name}'")


class QUiLoader(_QUiLoader):
    """Loads a .ui file into PythonQt-named widgets; `widgetClasses` maps the custom (CTK, qMRML) class names."""

    widgetClasses: dict[str, type] = {}

    def createWidget(self, className, parent=None, name=""):
        cls = self.widgetClasses.get(className)
        if cls is None:
            base = getattr(QtWidgets, className, None)
            if base is None:
                raise RuntimeError(f"the harness has no widget class {className} (add it to standins)")
            cls = pythonQtClass(base)
        widget = cls(parent)
        widget.setObjectName(name)
        return widget

    def load(self, device, parentWidget=None):
        data = bytes(device.readAll())
        buffer = QtCore.QBuffer()
        buffer.setData(QtCore.QByteArray(data))
        buffer.open(QtCore.QIODevice.ReadOnly)
        # Qt cannot connect signals with MRML pointer arguments from Python classes; the .ui file's own
        # <connections> are made below instead, sender signal to receiver slot, exactly as listed.
        QtCore.qInstallMessageHandler(lambda *args: None)
        try:
            root = super().load(buffer, parentWidget)
            if root is not None:
                objects = {QtCore.QObject.objectName(w): w for w in [root] + root.findChildren(QtCore.QObject)}
                for connection in ET.fromstring(data).iter("connection"):
                    sender, receiver = objects[connection.findtext("sender")], objects[connection.findtext("receiver")]
                    signature, slotSignature = connection.findtext("signal"), connection.findtext("slot")
                    # Made once, in Python, whether or not Qt could make it from the signatures.
                    QtCore.QObject.disconnect(sender, QtCore.SIGNAL(signature), receiver, QtCore.SLOT(slotSignature))
                    getattr(sender, signature.split("(")[0]).connect(getattr(receiver, slotSignature.split("(")[0]))
        finally:
            QtCore.qInstallMessageHandler(None)
        return root


def makeModule() -> types.ModuleType:
    module = types.ModuleType("qt", __doc__)
    module.QUiLoader = QUiLoader

    def __getattr__(name: str):
        value = _lookup(name)
        setattr(module, name, value)
        return value

    module.__getattr__ = __getattr__
    return module
