"""Backtest panel: runs workers.backtest.engine.run_backtest on a data file off the UI thread.

The engine runs in a plain thread (it holds no Qt object); its progress callback only stores a
float that a QTimer on the UI thread reads, so no Qt call ever happens off the UI thread.
"""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path

from app.qt import QtCore, QtWidgets
from workers.strategy.levels import StrategyParams

STAT_KEYS = ("net_pnl", "sharpe", "max_drawdown", "win_rate", "profit_factor", "exposure",
             "turnover", "fees", "n_trades")


def newest_recording(data_dir: str | Path) -> str:
    rec = Path(data_dir) / "recordings"
    dirs = sorted((p for p in rec.iterdir() if p.is_dir()), key=lambda p: p.name) if rec.is_dir() else []
    return str(dirs[-1]) if dirs else ""


class BacktestPanel(QtWidgets.QWidget):
    def __init__(self, data_dir: str | Path = "data", control=None, parent=None) -> None:
        super().__init__(parent)
        self.control = control
        self.result = None
        self.error: str | None = None
        self._progress = 0.0
        self._cancel = threading.Event()
        self._thread: threading.Thread | None = None
        form = QtWidgets.QFormLayout()
        self.path = QtWidgets.QLineEdit(newest_recording(data_dir))
        browse = QtWidgets.QPushButton("…")
        browse.clicked.connect(self._browse)
        row = QtWidgets.QHBoxLayout()
        row.addWidget(self.path)
        row.addWidget(browse)
        form.addRow("Data", row)
        self.params: dict[str, QtWidgets.QLineEdit] = {}
        for f in dataclasses.fields(StrategyParams):
            self.params[f.name] = QtWidgets.QLineEdit(str(f.default))
            form.addRow(f.name, self.params[f.name])
        self.costs = {k: QtWidgets.QLineEdit("0") for k in ("fee_per_share", "fee_bps", "slippage_bps")}
        for k, w in self.costs.items():
            form.addRow(k, w)
        self.run_btn = QtWidgets.QPushButton("Run")
        self.cancel_btn = QtWidgets.QPushButton("Cancel")
        self.cancel_btn.setEnabled(False)
        self.run_btn.clicked.connect(self.run)
        self.cancel_btn.clicked.connect(self._cancel.set)
        self.bar = QtWidgets.QProgressBar()
        self.bar.setRange(0, 1000)
        self.stats = QtWidgets.QTableWidget(len(STAT_KEYS), 2)
        self.stats.setHorizontalHeaderLabels(["Statistic", "Value"])
        self.status = QtWidgets.QLabel("")
        lay = QtWidgets.QVBoxLayout(self)
        lay.addLayout(form)
        btns = QtWidgets.QHBoxLayout()
        btns.addWidget(self.run_btn)
        btns.addWidget(self.cancel_btn)
        lay.addLayout(btns)
        lay.addWidget(self.bar)
        lay.addWidget(self.status)
        lay.addWidget(self.stats)
        self._timer = QtCore.QTimer(self)
        self._timer.setInterval(50)
        self._timer.timeout.connect(self._poll)

    def _browse(self) -> None:
        p, _ = QtWidgets.QFileDialog.getOpenFileName(self, "Data file", self.path.text())
        if p:
            self.path.setText(p)

    def config(self):
        from workers.backtest.engine import BacktestConfig, CostModel
        params = {k: w.text() for k, w in self.params.items()}
        costs = CostModel(**{k: float(w.text() or 0) for k, w in self.costs.items()})
        return BacktestConfig(params=params, costs=costs)

    def run(self) -> None:
        if self._thread is not None:
            return
        from workers.backtest import engine
        cfg, path = self.config(), self.path.text()
        self.result, self.error, self._progress = None, None, 0.0
        self._cancel.clear()

        def work() -> None:
            try:
                self.result = engine.run_backtest(path, cfg, progress=self._set_progress,
                                                  cancel=self._cancel.is_set)
            except Exception as e:  # shown in the panel, the run is over either way
                self.error = f"{type(e).__name__}: {e}"

        self._thread = threading.Thread(target=work, name="backtest", daemon=True)
        self.run_btn.setEnabled(False)
        self.cancel_btn.setEnabled(True)
        self.status.setText("running")
        self._thread.start()
        self._timer.start()

    def _set_progress(self, f: float) -> None:
        self._progress = f

    def _poll(self) -> None:
        self.bar.setValue(int(self._progress * 1000))
        if self._thread is None or self._thread.is_alive():
            return
        self._thread = None
        self._timer.stop()
        self.run_btn.setEnabled(True)
        self.cancel_btn.setEnabled(False)
        if self.error:
            self.status.setText(self.error)
            return
        self.status.setText("done")
        for i, k in enumerate(STAT_KEYS):
            self.stats.setItem(i, 0, QtWidgets.QTableWidgetItem(k))
            v = self.result.stats.get(k, float("nan"))
            self.stats.setItem(i, 1, QtWidgets.QTableWidgetItem(f"{v:.4g}"))
