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
