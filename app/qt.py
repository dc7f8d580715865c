"""The one module that imports the Qt binding.

Every other module of the window imports Qt names from here (``from app.qt import QtCore,
QtWidgets, Signal``), so the binding, its version pin and any shim live in one place.
Qt-free modules (app.state, app.feeds, app.orders, app.control) import nothing from here.
"""

from __future__ import annotations

import os

# pyqtgraph picks its binding from this variable; make sure it never loads another one.
os.environ.setdefault("PYQTGRAPH_QT_LIB", "PySide6")

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
    "QT_VERSION",
]
