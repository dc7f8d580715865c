"""The log panel: supervisor events, feed problems, order outcomes, warnings (newest last)."""

from __future__ import annotations

import html
import logging

from app.models.columns import clock_s
from app.panels.table_panel import bar_over, tool_bar
from app.qt import QtGui, QtWidgets
from app.state import EventLog, LogLine

LEVELS = (("All", logging.DEBUG), ("Info+", logging.INFO), ("Warnings+", logging.WARNING), ("Errors", logging.ERROR))


class LogPanel(QtWidgets.QWidget):
    def __init__(self, log: EventLog, parent=None):
        super().__init__(parent)
        self.setObjectName("panel_log")
        self.log = log
        self.level = QtWidgets.QComboBox(self)
        for text, lvl in LEVELS:
            self.level.addItem(text, lvl)
        self.level.setCurrentIndex(1)
        self.clear_button = QtWidgets.QToolButton(self)
        self.clear_button.setText("Clear")
        self.text = QtWidgets.QPlainTextEdit(self)
        self.text.setObjectName("logText")
        self.text.setReadOnly(True)
        self.text.setMaximumBlockCount(log.items.maxlen or 5000)
        self.text.setLineWrapMode(QtWidgets.QPlainTextEdit.LineWrapMode.NoWrap)
        f = QtGui.QFontDatabase.systemFont(QtGui.QFontDatabase.SystemFont.FixedFont)
        f.setPointSize(max(8, f.pointSize() - 1))
        self.text.setFont(f)
        bar = tool_bar()
        bar.addWidget(self.level)
        bar.addStretch(1)
        bar.addWidget(self.clear_button)
        bar_over(self, bar, self.text)
        self.colors = {logging.ERROR: "#ff6b6b", logging.WARNING: "#f0b429", logging.INFO: "", logging.DEBUG: "#7d8590"}
        self.level.currentIndexChanged.connect(self.rebuild)
        self.clear_button.clicked.connect(self.text.clear)

    def _html(self, line: LogLine) -> str:
        color = self.colors.get(line.level if line.level in self.colors else (logging.ERROR if line.level > 40 else logging.INFO), "")
        lvl = logging.getLevelName(line.level)[:4]
        body = f"{clock_s(line.ts)} {lvl:<4} [{html.escape(line.source)}] {html.escape(line.text)}"
        body = body.replace(" ", "&nbsp;", 0)
        return f'<span style="color:{color}">{body}</span>' if color else f"<span>{body}</span>"

    def append(self, lines: list[LogLine]) -> None:
        minimum = self.level.currentData()
        shown = [ln for ln in lines if ln.level >= minimum]
        if not shown:
            return
        bar = self.text.verticalScrollBar()
        at_end = bar.value() >= bar.maximum() - 4
        for ln in shown:
            self.text.appendHtml(self._html(ln))
        if at_end:
            bar.setValue(bar.maximum())

    def rebuild(self) -> None:
        self.text.clear()
        self.append(list(self.log.items))

    def set_dark(self, dark: bool) -> None:
        self.colors = ({logging.ERROR: "#ff6b6b", logging.WARNING: "#f0b429", logging.INFO: "", logging.DEBUG: "#7d8590"}
                       if dark else {logging.ERROR: "#b71c1c", logging.WARNING: "#8a5a00", logging.INFO: "", logging.DEBUG: "#8a919c"})
        self.rebuild()

    def plain_text(self) -> str:
        return self.text.toPlainText()
