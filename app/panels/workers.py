"""The workers panel: every process of the fleet, its health, and its controls."""

from __future__ import annotations

import shlex

from app.models.table import RecordTableModel
from app.models.tables import WORKER_COLUMNS
from app.panels.table_panel import TablePanel
from app.qt import QtWidgets, Signal
from app.settings import CheckedDialog

ACTIONS = (
    ("restart", "Restart", "Restart the selected worker process"),
    ("stop", "Stop", "Stop the selected worker process (no automatic restart)"),
    ("start", "Start", "Start the selected worker process"),
    ("pause", "Pause", "Strategy/executor: stop trading, keep running (the supervisor's pause command)"),
    ("resume", "Resume", "Strategy/executor: resume trading"),
    ("params", "Params…", "Strategy: view and edit its parameters live (get_params / set_params)"),
    ("args", "Args…", "Edit the worker's command-line options (applied at its next restart)"),
)


class WorkersPanel(TablePanel):
    """Signals:
        action(str, str): (worker name, action) for one of ACTIONS.
    """

    action = Signal(str, str)

    def __init__(self, workers: dict, parent=None):
        self.buttons: dict[str, QtWidgets.QPushButton] = {}
        for key, text, tip in ACTIONS:
            b = QtWidgets.QPushButton(text)
            b.setObjectName(f"worker_{key}")
            b.setToolTip(tip)
            self.buttons[key] = b
        super().__init__("workers", RecordTableModel(WORKER_COLUMNS, key=lambda w: w.name), filterable=False,
                         buttons=tuple(self.buttons.values()), parent=parent)
        self.workers = workers
        self.view.setSelectionMode(QtWidgets.QAbstractItemView.SelectionMode.SingleSelection)
        self.model.set_rows(list(workers.values()))
        self._sig: dict[str, tuple] = {}
        for key, b in self.buttons.items():
            b.clicked.connect(lambda _=False, key=key: self._fire(key))
        self.view.selectionModel().currentRowChanged.connect(self._update_buttons)
        self._update_buttons()

    def selected_name(self) -> str | None:
        w = self.current_row()
        if w is None:
            rows = self.selected_rows()
            w = rows[0] if rows else None
        return w.name if w is not None else None

    def _fire(self, key: str) -> None:
        name = self.selected_name()
        if name:
            self.action.emit(name, key)

    def _update_buttons(self, *_) -> None:
        name = self.selected_name()
        w = self.workers.get(name) if name else None
        running = w is not None and w.proc is not None
        kind = w.spec.kind if w is not None else ""
        self.buttons["restart"].setEnabled(w is not None)
        self.buttons["stop"].setEnabled(running)
        self.buttons["start"].setEnabled(w is not None and not running)
        self.buttons["pause"].setEnabled(running and kind in ("strategy", "executor") and w.state != "paused")
        self.buttons["resume"].setEnabled(running and kind in ("strategy", "executor") and w.state == "paused")
        self.buttons["params"].setEnabled(running and kind == "strategy")
        self.buttons["args"].setEnabled(w is not None)

    def add_context_actions(self, menu) -> None:
        for key, text, _ in ACTIONS:
            a = menu.addAction(text, lambda key=key: self._fire(key))
            a.setEnabled(self.buttons[key].isEnabled())
        menu.addSeparator()

    def refresh(self) -> None:
        """Repaint rows whose shown text changed (called a few times a second)."""
        if len(self.workers) != self.model.rowCount():
            self.model.set_rows(list(self.workers.values()))
        changed = []
        cols = self.model.columns
        for name, w in self.workers.items():
            sig = tuple(c.text(w) for c in cols)
            if self._sig.get(name) != sig:
                self._sig[name] = sig
                changed.append(name)
        if changed:
            self.model.refresh_rows(changed)
            self._update_buttons()


class StrategyParamsDialog(CheckedDialog):
    """A form over a strategy's parameters (from ``get_params``); returns the changed ones."""

    def __init__(self, name: str, params: dict, parent=None):
        super().__init__(parent)
        self.setWindowTitle(f"Parameters of {name}")
        self.params = dict(params)
        form = QtWidgets.QFormLayout()
        self.edits: dict[str, QtWidgets.QWidget] = {}
        decl = strategy_options()
        for k, v in sorted(params.items()):
            opt = decl.get(k)
            if isinstance(v, bool):
                e = QtWidgets.QCheckBox()
                e.setChecked(v)
            elif opt is not None and opt.choices:
                e = QtWidgets.QComboBox()  # a declared set of values is picked, never typed
                e.addItems([str(c) for c in opt.choices])
                e.setCurrentText(str(v))
            else:
                e = QtWidgets.QLineEdit(str(v))
            e.setObjectName(f"param_{k}")
            if opt is not None:
                e.setToolTip(f"{opt.help} ({k})")
            self.edits[k] = e
            lbl = QtWidgets.QLabel(param_title(k))
            lbl.setToolTip(e.toolTip() or k)
            form.addRow(lbl, e)
        note = QtWidgets.QLabel("Changes apply at once (set_params); they last until the worker restarts.")
        note.setObjectName("muted")
        self._lay_out(note, form)
        self.changes: dict = {}

    def _accept(self) -> None:
        changes = {}
        for k, e in self.edits.items():
            old = self.params[k]
            if isinstance(e, QtWidgets.QCheckBox):
                new = e.isChecked()
            elif isinstance(e, QtWidgets.QComboBox):
                new = e.currentText()
            else:
                text = e.text().strip()
                try:
                    new = type(old)(text) if isinstance(old, (int, float)) else text
                except ValueError:
                    return self._fail(f"{k}: {text!r} is not a {type(old).__name__}")
            if new != old:
                changes[k] = new
        self.changes = changes
        self.accept()


#: words a parameter's name abbreviates, spelled out for its label
_WORDS = {"bps": "(bps)", "qty": "quantity", "min": "minimum", "max": "maximum"}


def param_title(name: str) -> str:
    """``breakout_bps`` -> "Breakout (bps)": a label a trader reads (the name is in the tooltip)."""
    words = [_WORDS.get(w, w) for w in name.split("_")]
    return " ".join(words)[:1].upper() + " ".join(words)[1:]


def strategy_options() -> dict:
    """The strategy's declared options (help, choices) by field name, for the Params form."""
    import dataclasses

    from workers.strategy.worker import StrategyConfig

    return {f.name: f.metadata["opt"] for f in dataclasses.fields(StrategyConfig) if "opt" in f.metadata}


def ask_args(parent, name: str, args: list[str]) -> list[str] | None:
    text, ok = QtWidgets.QInputDialog.getText(parent, f"Options of {name}",
                                              "Command-line options (applied at the next restart):",
                                              QtWidgets.QLineEdit.EchoMode.Normal, shlex.join(args))
    if not ok:
        return None
    try:
        return shlex.split(text)
    except ValueError:
        return None


__all__ = ["WorkersPanel", "StrategyParamsDialog", "ask_args"]
