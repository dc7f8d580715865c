"""The one module that imports the Qt binding.

Every other module of the window imports Qt names from here (``from app.qt import QtCore,
QtWidgets, Signal``), so the binding, its version pin and any shim live in one place.
Qt-free modules (app.state, app.feeds, app.orders, app.control) import nothing from here.
pyqtgraph is imported only by the chart's modules, and each of them imports this module
first, so pyqtgraph finds its binding already chosen.  The rule is checked by import-linter
(pyproject.toml, ``lint-imports``) and by tests/unit/test_layering.py.
"""

from __future__ import annotations

import os
import sys

# pyqtgraph picks its binding from this variable when it is first imported.  Set, not
# defaulted: a PYQTGRAPH_QT_LIB=PyQt5 left in a trader's environment would otherwise load a
# second Qt into the process, whose widgets cannot live in our QApplication.
os.environ["PYQTGRAPH_QT_LIB"] = "PySide6"
if "pyqtgraph.Qt" in sys.modules and getattr(sys.modules["pyqtgraph.Qt"], "QT_LIB", "PySide6") != "PySide6":
    raise ImportError("pyqtgraph was imported before app.qt and chose another Qt binding; import app.qt first")

from PySide6 import QtCore, QtGui, QtWidgets  # noqa: E402
from PySide6.QtCore import (  # noqa: E402
    QAbstractTableModel,
    QByteArray,
    QModelIndex,
    QObject,
    QSettings,
    QSortFilterProxyModel,
    Qt,
    QTimer,
    Signal,
    Slot,
)
from PySide6.QtGui import QAction, QColor, QFont, QKeySequence, QShortcut  # noqa: E402
from PySide6.QtWidgets import QApplication, QWidget  # noqa: E402
from shiboken6 import wrapInstance  # noqa: E402  (numpy memory handed to Qt as QRectF*, app.chart.candles)

QT_VERSION = QtCore.qVersion()


def _without_opengl() -> bool:
    """Stand-ins for Qt's OpenGL bindings where they are absent (the frozen bundle leaves them
    out: 9.4 MB, docs/packaging.md).  pyqtgraph 0.14 imports PySide6.QtOpenGL and subclasses
    QOpenGLWidget at import time but uses them only for its experimental OpenGL curves, which
    TickDesk never turns on; the stand-ins let it import and fail loudly if ever used.
    Returns whether they were put in."""
    try:
        import PySide6.QtOpenGL  # noqa: F401
        import PySide6.QtOpenGLWidgets  # noqa: F401
        return False
    except ImportError:
        pass
    import types

    import PySide6

    why = "Qt's OpenGL is not in this build (docs/packaging.md, Size)"
    gl = types.ModuleType("PySide6.QtOpenGL", why)

    def _missing(name: str):
        raise AttributeError(f"PySide6.QtOpenGL.{name}: {why}")

    gl.__getattr__ = _missing  # type: ignore[method-assign]

    class QOpenGLWidget(QtWidgets.QWidget):
        def __init__(self, *args, **kwargs):
            raise RuntimeError(f"QOpenGLWidget: {why}")

    widgets = types.ModuleType("PySide6.QtOpenGLWidgets", why)
    widgets.QOpenGLWidget = QOpenGLWidget  # type: ignore[attr-defined]
    for mod in (gl, widgets):
        sys.modules[mod.__name__] = mod
        setattr(PySide6, mod.__name__.rpartition(".")[2], mod)
    return True


OPENGL_STAND_INS = _without_opengl()

__all__ = [
    "QtCore",
    "QtGui",
    "QtWidgets",
    "QAbstractTableModel",
    "QByteArray",
    "QModelIndex",
    "QObject",
    "QSettings",
    "QSortFilterProxyModel",
    "Qt",
    "QTimer",
    "Signal",
    "Slot",
    "QAction",
    "QColor",
    "QFont",
    "QKeySequence",
    "QShortcut",
    "QApplication",
    "QWidget",
    "wrapInstance",
    "QT_VERSION",
]
