"""Questions and notices the window puts to the trader.

Every dialog here is opened with ``open()``, never ``exec()``: a nested event loop would hold
the flush, the supervisor's poll and the feeds while the trader reads, and a kill switch
pressed meanwhile would wait for the answer.  The answer arrives in a callback.
"""

from __future__ import annotations

from collections.abc import Callable

from app.qt import QtWidgets

__all__ = ["DONT_ASK_TEXT", "ask", "show_text"]

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


def show_text(parent: QtWidgets.QWidget, title: str, text: str, monospace: bool = False) -> QtWidgets.QMessageBox:
    """An information box with a Close button (e.g. the hotkey list)."""
    box = MB(MB.Icon.Information, title, text, MB.StandardButton.Close, parent)
    if monospace:
        box.setStyleSheet("QLabel { font-family: monospace; }")
    box.finished.connect(box.deleteLater)
    box.open()
    return box
