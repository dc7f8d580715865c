"""Questions and notices the window puts to the trader.

Every dialog here is opened with ``open()``, never ``exec()``: a nested event loop would hold
the flush, the supervisor's poll and the feeds while the trader reads, and a kill switch
pressed meanwhile would wait for the answer.  The answer arrives in a callback.
"""

from __future__ import annotations

from collections.abc import Callable

from app.qt import QtWidgets

__all__ = ["DONT_ASK_TEXT", "ask", "choose", "show_table", "show_text"]

MB = QtWidgets.QMessageBox
Yes, No = MB.StandardButton.Yes, MB.StandardButton.No

DONT_ASK_TEXT = "Don't ask again (Settings to turn it back on)"


def ask(parent: QtWidgets.QWidget, title: str, text: str, on_answer: Callable[[bool, bool], None], *,
        warning: bool = False, object_name: str = "", default: bool | None = None,
        offer_dont_ask: bool = False) -> QtWidgets.QMessageBox:
    """A Yes/No question; ``on_answer(yes, dont_ask_again)`` runs when it is answered.

    ``default`` True or False makes Yes or No the default button (None: Qt's choice);
    ``offer_dont_ask`` adds the "don't ask again" box, whose state the answer carries (False
    without it).  Closing the dialog counts as No.
    """
    box = MB(MB.Icon.Warning if warning else MB.Icon.Question, title, text, Yes | No, parent)
    if object_name:
        box.setObjectName(object_name)  # tests and style sheets find the box by it
    if default is not None:
        box.setDefaultButton(Yes if default else No)
    never = None
    if offer_dont_ask:
        never = QtWidgets.QCheckBox(DONT_ASK_TEXT)
        box.setCheckBox(never)

    def done(_result: int) -> None:
        yes = box.clickedButton() is box.button(Yes)
        try:
            on_answer(yes, bool(never is not None and never.isChecked()))
        finally:
            box.deleteLater()

    box.finished.connect(done)
    box.open()
    return box


def choose(parent: QtWidgets.QWidget, title: str, text: str, choices: list[tuple[str, str]],
           on_answer: Callable[[str | None], None], *, warning: bool = False, object_name: str = "",
           default: str | None = None) -> QtWidgets.QMessageBox:
    """A question with named answers and Cancel; ``on_answer(key)`` gets the chosen choice's
    key, or None for Cancel (or the dialog closed).  ``choices``: (key, button text)."""
    box = MB(MB.Icon.Warning if warning else MB.Icon.Question, title, text, MB.StandardButton.Cancel, parent)
    if object_name:
        box.setObjectName(object_name)
    buttons = {}
    for key, label in choices:
        b = box.addButton(label, MB.ButtonRole.AcceptRole)
        b.setObjectName(f"choice_{key}")
        buttons[b] = key
        if key == default:
            box.setDefaultButton(b)
    if default is None:
        box.setDefaultButton(MB.StandardButton.Cancel)

    def done(_result: int) -> None:
        try:
            on_answer(buttons.get(box.clickedButton()))
        finally:
            box.deleteLater()

    box.finished.connect(done)
    box.open()
    return box


def show_text(parent: QtWidgets.QWidget, title: str, text: str, monospace: bool = False) -> QtWidgets.QMessageBox:
    """An information box with a Close button (e.g. the hotkey list)."""
    box = MB(MB.Icon.Information, title, text, MB.StandardButton.Close, parent)
    if monospace:
        box.setStyleSheet("QLabel { font-family: monospace; }")
    box.finished.connect(box.deleteLater)
    box.open()
    return box


def show_table(parent: QtWidgets.QWidget, title: str, headers: list[str], rows: list[tuple[str, ...]],
               object_name: str = "") -> QtWidgets.QDialog:
    """A read-only table in a resizable dialog with Close (e.g. the hotkey list): one row per
    entry, cells never wrapped into each other the way a message box's text wraps."""
    dlg = QtWidgets.QDialog(parent)
    dlg.setWindowTitle(title)
    if object_name:
        dlg.setObjectName(object_name)
    table = QtWidgets.QTableWidget(len(rows), len(headers), dlg)
    table.setObjectName("promptTable")
    table.setHorizontalHeaderLabels(headers)
    table.verticalHeader().hide()
    table.setEditTriggers(QtWidgets.QAbstractItemView.EditTrigger.NoEditTriggers)
    table.setWordWrap(False)
    for r, row in enumerate(rows):
        for c, text in enumerate(row):
            table.setItem(r, c, QtWidgets.QTableWidgetItem(text))
    table.resizeColumnsToContents()
    table.horizontalHeader().setStretchLastSection(True)
    buttons = QtWidgets.QDialogButtonBox(QtWidgets.QDialogButtonBox.StandardButton.Close, dlg)
    buttons.rejected.connect(dlg.reject)
    lay = QtWidgets.QVBoxLayout(dlg)
    lay.addWidget(table)
    lay.addWidget(buttons)
    width = sum(table.columnWidth(c) for c in range(len(headers))) + 48
    height = table.horizontalHeader().height() + sum(table.rowHeight(r) for r in range(len(rows))) + 80
    screen = (parent.screen() if parent is not None else None) or QtWidgets.QApplication.primaryScreen()
    avail = screen.availableGeometry() if screen is not None else None
    if avail is not None:
        width, height = min(width, avail.width() - 40), min(height, avail.height() - 40)
    dlg.resize(width, height)
    dlg.finished.connect(dlg.deleteLater)
    dlg.open()
    return dlg
