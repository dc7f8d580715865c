"""Backtest panel: one backtest with its equity, drawdown, trades and statistics, and
parameter sweeps with a sortable table, a heat map and "send the best set to a live strategy".

The engine (workers.backtest.engine.run_backtest) and the sweep (workers.backtest.sweep.
run_sweep) run in a plain thread: they hold no Qt object, and their progress callbacks only
store numbers that a QTimer on the UI thread reads.  The thread leaves its result in an
attribute; the same timer sees the thread end and paints.  So no Qt call ever happens off the
UI thread, and the window keeps its frame rate during a run (docs/window.md, "Backtest panel").
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import datetime as _dt
import math
import multiprocessing
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from app.models import columns as C
from app.models.columns import Column
from app.models.table import RecordTableModel
from app.panels.table_panel import TablePanel
from app.qt import Qt, QtCore, QtWidgets
from workers.strategy.levels import StrategyParams

#: (key of BacktestResult.stats, label, format) of the statistics table, in its order
STATS: tuple[tuple[str, str, Callable[[float], str]], ...] = (
    ("net_pnl", "Net P&L", lambda v: f"{v:+,.2f}"),
    ("return_pct", "Return", lambda v: f"{v:+.2f}%"),
    ("sharpe", "Sharpe (ann.)", lambda v: f"{v:.2f}"),
    ("max_drawdown", "Max drawdown", lambda v: f"{v:,.2f}"),
    ("max_drawdown_pct", "Max drawdown %", lambda v: f"{v:.2f}%"),
    ("win_rate", "Win rate", lambda v: f"{v * 100:.1f}%"),
    ("profit_factor", "Profit factor", lambda v: "∞" if math.isinf(v) else f"{v:.2f}"),
    ("exposure", "Exposure", lambda v: f"{v * 100:.1f}%"),
    ("turnover", "Turnover", lambda v: f"{v:.2f}×"),
    ("fees", "Fees", lambda v: f"{v:,.2f}"),
    ("slippage", "Slippage", lambda v: f"{v:,.2f}"),
    ("n_trades", "Trades", lambda v: f"{v:,.0f}"),
    ("n_fills", "Fills", lambda v: f"{v:,.0f}"),
    ("signals", "Signals", lambda v: f"{v:,.0f}"),
    ("ticks", "Ticks", lambda v: f"{v:,.0f}"),
    ("ticks_per_s", "Speed (ticks/s)", lambda v: f"{v:,.0f}"),
)
STAT_KEYS = tuple(k for k, _, _ in STATS)
#: sweep metrics: the columns of the results table and what the heat map and "best" can rank
SWEEP_METRICS = ("net_pnl", "sharpe", "max_drawdown", "win_rate", "profit_factor", "exposure", "turnover",
                 "fees", "n_trades")
#: metrics where lower is better (the rest: higher)
LOWER_IS_BETTER = frozenset({"max_drawdown", "max_drawdown_pct", "fees", "turnover"})
COST_FIELDS = ("fee_per_share", "fee_bps", "slippage_bps")
DEFAULT_GRID = "window=100,200\ncooldown=5,10"


def newest_recording(data_dir: str | Path) -> str:
    rec = Path(data_dir) / "recordings"
    # the running session's own recording has no Parquet until its first roll: skip it then
    dirs = sorted((p for p in rec.iterdir() if (p / "parquet" / "ticks").is_dir()), key=lambda p: p.name) if rec.is_dir() else []
    return str(dirs[-1]) if dirs else ""


def parse_grid(text: str) -> dict[str, list[Any]]:
    """``param=v1,v2,...`` lines (blank lines and ``#`` comments skipped) as the sweep's space;
    numbers become numbers, so the table sorts them as numbers.  Raises ValueError."""
    space: dict[str, list[Any]] = {}
    for n, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name, sep, values = line.partition("=")
        name = name.strip().replace("-", "_")
        vals = [_number(v.strip()) for v in values.split(",") if v.strip()]
        if not sep or not name or not vals:
            raise ValueError(f"line {n}: {line!r} is not param=v1,v2,...")
        if name in space:
            raise ValueError(f"line {n}: {name} given twice")
        space[name] = vals
    if not space:
        raise ValueError("no parameters: one param=v1,v2,... line each")
    return space


def _number(s: str) -> Any:
    for t in (int, float):
        try:
            return t(s)
        except ValueError:
            pass
    return s


def best_index(values: list[float], metric: str) -> int | None:
    """Index of the best finite value of ``metric`` (first of equals), None if there is none."""
    sign = -1.0 if metric in LOWER_IS_BETTER else 1.0
    best = None
    for i, v in enumerate(values):
        if v is None or not math.isfinite(v) and not (math.isinf(v) and sign * v > 0):
            continue
        if best is None or sign * v > sign * values[best]:
            best = i
    return best


def heat_grid(rows: list, x: str, y: str | None, metric: str) -> tuple[list, list, np.ndarray]:
    """(x values, y values, z[j, i]) of ``metric`` over two parameters of the sweep's rows;
    with more parameters in the sweep a cell holds the best value over the others, and a cell
    without a value (an error row) is NaN."""
    xs = list(dict.fromkeys(r.params[x] for r in rows))
    ys = list(dict.fromkeys(r.params[y] for r in rows)) if y else [""]
    z = np.full((len(ys), len(xs)), np.nan)
    sign = -1.0 if metric in LOWER_IS_BETTER else 1.0
    for r in rows:
        v = r.stats.get(metric)
        if v is None or not math.isfinite(v):
            continue
        i, j = xs.index(r.params[x]), ys.index(r.params[y]) if y else 0
        if not math.isfinite(z[j, i]) or sign * v > sign * z[j, i]:
            z[j, i] = v
    return xs, ys, z


def _when(ts: int) -> str:
    return _dt.datetime.fromtimestamp(ts / 1e9).strftime("%Y-%m-%d %H:%M:%S") if ts else ""


TRADE_COLUMNS = (
    Column("symbol", "Symbol", C.attr("symbol"), width=70),
    Column("side", "Side", C.attr("side"), width=50, tone=lambda t: "up" if t.side == "long" else "down"),
    Column("qty", "Qty", C.attr("qty"), C.integer, align="r", width=60),
    Column("entry_ts", "Entry time", C.attr("entry_ts"), _when, width=140, csv=lambda t: C.iso_ns(t.entry_ts)),
    Column("entry_price", "Entry", C.attr("entry_price"), C.price4, align="r", width=80),
    Column("exit_ts", "Exit time", C.attr("exit_ts"), _when, width=140, csv=lambda t: C.iso_ns(t.exit_ts)),
    Column("exit_price", "Exit", C.attr("exit_price"), C.price4, align="r", width=80),
    Column("held", "Held", lambda t: (t.exit_ts - t.entry_ts) / 1e9, C.duration, align="r", width=64),
    Column("pnl", "P&L", C.attr("pnl"), C.signed, align="r", width=90, tone=lambda t: C.updown(t.pnl)),
)


def _param_text(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def _metric_fmt(m: str) -> Callable[[Any], str]:
    fmt = next((f for k, _, f in STATS if k == m), lambda v: f"{v:.4g}")
    return lambda v: "" if v is None or (isinstance(v, float) and math.isnan(v)) else fmt(v)


def sweep_columns(names: list[str]) -> tuple[Column, ...]:
    """A column per swept parameter, then the metrics and the error of a set."""
    cols = [Column(f"p_{n}", n, lambda r, n=n: r.params[n], _param_text,
                   align="r", width=max(64, 8 * len(n) + 16)) for n in names]
    label = {k: lbl for k, lbl, _ in STATS}
    for m in SWEEP_METRICS:
        cols.append(Column(m, label.get(m, m), lambda r, m=m: r.stats.get(m, math.nan), _metric_fmt(m), align="r",
                           width=84, tone=(lambda r: C.updown(r.stats.get("net_pnl", 0.0))) if m == "net_pnl" else None))
    cols.append(Column("error", "Error", lambda r: r.error, width=200, tone=lambda r: "bad" if r.error else None))
    return tuple(cols)


class _Job:
    """One background run: its thread, its progress and cancel flag, its outcome."""

    def __init__(self, name: str, work: Callable[["_Job"], Any]) -> None:
        self.progress = 0.0
        self.cancel = threading.Event()
        self.result: Any = None
        self.error: str | None = None
        self.on_cancel: Callable[[], None] | None = None  # also called from the UI thread

        def run() -> None:
            try:
                self.result = work(self)
            except Exception as e:  # shown in the panel; the run is over either way
                self.error = f"{type(e).__name__}: {e}"

        self.thread = threading.Thread(target=run, name=name, daemon=True)

    def request_cancel(self) -> None:
        self.cancel.set()
        if self.on_cancel is not None:
            self.on_cancel()


class SendParamsDialog(QtWidgets.QDialog):
    """Pick the live strategy that gets ``params``; showing exactly what is sent is the
    confirmation (OK sends, Cancel does not)."""

    def __init__(self, params: dict[str, Any], strategies: list[str], parent=None,
                 others: dict[str, Any] | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("sendParamsDialog")
        self.setWindowTitle("Send parameters to a live strategy")
        lay = QtWidgets.QVBoxLayout(self)
        text = ", ".join(f"{k}={v}" for k, v in params.items())
        rest = ", ".join(f"{k}={v}" for k, v in (others or {}).items())
        msg = QtWidgets.QLabel(f"Set <b>{text}</b> on the running strategy below?"
                               + (f"<br>With the other parameters the sweep ran with: {rest}." if rest else "")
                               + "<br>It trades with them from its next tick.")
        msg.setWordWrap(True)
        lay.addWidget(msg)
        self.strategy = QtWidgets.QComboBox(self)
        self.strategy.addItems(strategies)
        form = QtWidgets.QFormLayout()
        form.addRow("Strategy", self.strategy)
        lay.addLayout(form)
        self.buttons = QtWidgets.QDialogButtonBox(QtWidgets.QDialogButtonBox.StandardButton.Ok
                                                  | QtWidgets.QDialogButtonBox.StandardButton.Cancel, self)
        self.buttons.button(QtWidgets.QDialogButtonBox.StandardButton.Ok).setText("Send")
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        lay.addWidget(self.buttons)


def _section(title: str) -> QtWidgets.QLabel:
    lbl = QtWidgets.QLabel(title)
    f = lbl.font()
    f.setBold(True)
    lbl.setFont(f)
    return lbl


class BacktestPanel(QtWidgets.QWidget):
    """Attributes:
        result: the last run's BacktestResult (None before one finished).
        rows: the last sweep's SweepRows.
        control: the fleet's control (app.control.FleetControl) or None (no fleet: nothing
            can be sent to a live strategy).
    """

    def __init__(self, data_dir: str | Path = "data", control=None, parent=None, dark: bool = True) -> None:
        super().__init__(parent)
        from app.chart.backtest_plots import EquityPlots, HeatMap  # pyqtgraph only when a panel is made

        self.setObjectName("backtestPanel")
        self.control = control
        self._data_dir = Path(data_dir)
        self.result = None
        self.rows: list = []
        self.sweep_base: dict[str, Any] = {}
        self.error: str | None = None
        self._job: _Job | None = None
        self._sweep: _Job | None = None
        self._send_dialog: SendParamsDialog | None = None

        # ---- settings column: data, parameters, costs (shared by a run and a sweep's base)
        settings = QtWidgets.QWidget()
        grid = QtWidgets.QGridLayout(settings)
        grid.setContentsMargins(6, 4, 6, 4)
        grid.setHorizontalSpacing(6)
        grid.setVerticalSpacing(3)
        self.path = QtWidgets.QLineEdit(newest_recording(data_dir))
        self.path.setPlaceholderText("recording folder, .parquet or tick .csv")
        self.path.setToolTip("A recording folder (data folder/recordings/...), a Parquet file or a tick CSV")
        browse = QtWidgets.QToolButton()
        browse.setText("…")
        browse.setToolTip("Choose a recording folder")
        browse.clicked.connect(self._browse)
        row = QtWidgets.QHBoxLayout()
        row.addWidget(self.path, 1)
        row.addWidget(browse)
        grid.addWidget(QtWidgets.QLabel("Data"), 0, 0)
        grid.addLayout(row, 0, 1, 1, 3)
        grid.addWidget(_section("Strategy (support / resistance)"), 1, 0, 1, 4)
        self.params: dict[str, QtWidgets.QWidget] = {}
        r = 2
        for i, f in enumerate(dataclasses.fields(StrategyParams)):
            if f.type in (bool, "bool"):
                w = QtWidgets.QCheckBox()
                w.setChecked(bool(f.default))
            elif f.name == "mode":
                w = QtWidgets.QComboBox()
                w.addItems(["both", "breakout", "bounce"])
                w.setCurrentText(str(f.default))
            else:
                w = QtWidgets.QLineEdit(str(f.default))
                w.setMaximumWidth(90)
            self.params[f.name] = w
            grid.addWidget(QtWidgets.QLabel(f.name), r + i // 2, 2 * (i % 2))
            grid.addWidget(w, r + i // 2, 2 * (i % 2) + 1)
        r += (len(self.params) + 1) // 2
        grid.addWidget(_section("Costs"), r, 0, 1, 4)
        self.costs = {k: QtWidgets.QLineEdit("0") for k in COST_FIELDS}
        self.cash = QtWidgets.QLineEdit("100000")
        for i, (k, w) in enumerate([*self.costs.items(), ("initial_cash", self.cash)]):
            w.setMaximumWidth(90)
            grid.addWidget(QtWidgets.QLabel(k), r + 1 + i // 2, 2 * (i % 2))
            grid.addWidget(w, r + 1 + i // 2, 2 * (i % 2) + 1)
        grid.setRowStretch(r + 4, 1)
        scroll = QtWidgets.QScrollArea()
        scroll.setWidget(settings)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QtWidgets.QFrame.Shape.NoFrame)
        scroll.setMinimumWidth(settings.sizeHint().width() + 16)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)

        # ---- run tab: buttons and progress over the plots | statistics, and the trades
        self.run_btn = QtWidgets.QPushButton("Run backtest")
        self.run_btn.setToolTip("Backtest the strategy with these parameters on the data (off the UI thread)")
        self.cancel_btn = QtWidgets.QPushButton("Cancel")
        self.cancel_btn.setEnabled(False)
        self.run_btn.clicked.connect(self.run)
        self.cancel_btn.clicked.connect(self.cancel)
        self.bar = QtWidgets.QProgressBar()
        self.bar.setRange(0, 1000)
        self.bar.setTextVisible(True)
        self.bar.setFormat("%p%")
        self.status = QtWidgets.QLabel("")
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        top = QtWidgets.QHBoxLayout()
        top.setContentsMargins(4, 4, 4, 0)
        top.addWidget(self.run_btn)
        top.addWidget(self.cancel_btn)
        top.addWidget(self.bar, 1)
        top.addWidget(self.status, 2)

        self.plots = EquityPlots(dark)
        self.stats = QtWidgets.QTableWidget(len(STATS), 1)
        self.stats.setObjectName("backtestStats")
        self.stats.setHorizontalHeaderLabels(["Value"])
        self.stats.setVerticalHeaderLabels([lbl for _, lbl, _ in STATS])
        self.stats.horizontalHeader().setStretchLastSection(True)
        self.stats.verticalHeader().setDefaultSectionSize(20)
        self.stats.setEditTriggers(QtWidgets.QAbstractItemView.EditTrigger.NoEditTriggers)
        self.stats.setMinimumWidth(230)
        self.stats.setMaximumWidth(280)
        self.trades_model = RecordTableModel(TRADE_COLUMNS, key=id)
        self.trades = TablePanel("backtest_trades", self.trades_model)
        results = QtWidgets.QTabWidget()
        results.setDocumentMode(True)
        curves = QtWidgets.QSplitter(Qt.Orientation.Horizontal)
        curves.addWidget(self.plots)
        curves.addWidget(self.stats)
        curves.setStretchFactor(0, 1)
        curves.setChildrenCollapsible(False)
        results.addTab(curves, "Equity && drawdown")
        results.addTab(self.trades, "Trades")
        self.results_tabs = results
        run_tab = QtWidgets.QWidget()
        lay = QtWidgets.QVBoxLayout(run_tab)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(2)
        lay.addLayout(top)
        lay.addWidget(results, 1)

        # ---- sweep tab: grid, workers, Dask | results table and heat map
        self.grid_edit = QtWidgets.QPlainTextEdit(DEFAULT_GRID)
        self.grid_edit.setToolTip("One param=v1,v2,... line per swept parameter; the other parameters and the "
                                  "costs are the Backtest settings on the left")
        self.grid_edit.setMaximumHeight(80)
        self.workers = QtWidgets.QSpinBox()
        self.workers.setRange(0, 256)
        self.workers.setSpecialValueText(f"auto ({os.cpu_count() or 1})")
        self.workers.setToolTip("Local worker processes (auto: one per core); ignored with a Dask address")
        self.dask = QtWidgets.QLineEdit()
        self.dask.setPlaceholderText("tcp://scheduler:8786 (empty: local processes)")
        self.sweep_btn = QtWidgets.QPushButton("Run sweep")
        self.sweep_cancel_btn = QtWidgets.QPushButton("Cancel")
        self.sweep_cancel_btn.setEnabled(False)
        self.sweep_btn.clicked.connect(self.run_sweep)
        self.sweep_cancel_btn.clicked.connect(self.cancel_sweep)
        self.sweep_bar = QtWidgets.QProgressBar()
        self.sweep_bar.setFormat("")  # "%v / %m sets" once a sweep runs
        self.sweep_bar.setRange(0, 1)
        self.sweep_bar.setValue(0)
        self.sweep_status = QtWidgets.QLabel("")
        self.sweep_status.setWordWrap(True)
        form = QtWidgets.QFormLayout()
        form.setContentsMargins(4, 4, 4, 4)
        form.addRow("Grid", self.grid_edit)
        form.addRow("Workers", self.workers)
        form.addRow("Dask", self.dask)
        sb = QtWidgets.QHBoxLayout()
        sb.addWidget(self.sweep_btn)
        sb.addWidget(self.sweep_cancel_btn)
        form.addRow(sb)
        form.addRow(self.sweep_bar)
        form.addRow(self.sweep_status)
        sweep_left = QtWidgets.QWidget()
        sweep_left.setLayout(form)
        sweep_left.setMaximumWidth(320)
        form.setFieldGrowthPolicy(QtWidgets.QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        left_box = QtWidgets.QVBoxLayout()
        left_box.setContentsMargins(0, 0, 0, 0)
        left_box.addWidget(sweep_left)
        left_box.addStretch(1)

        self.heat_x, self.heat_y, self.heat_metric = QtWidgets.QComboBox(), QtWidgets.QComboBox(), QtWidgets.QComboBox()
        self.heat_metric.addItems(SWEEP_METRICS)
        for c in (self.heat_x, self.heat_y, self.heat_metric):
            c.currentIndexChanged.connect(self._paint_heat)
        self.heat_x.setToolTip("The heat map's x parameter")
        self.heat_y.setToolTip("The heat map's y parameter")
        self.heat_metric.setToolTip("The metric of the heat map, and what ranks the best set")
        hm = QtWidgets.QHBoxLayout()
        hm.setContentsMargins(4, 2, 4, 0)
        for lbl, c in (("x", self.heat_x), ("y", self.heat_y), ("metric", self.heat_metric)):
            hm.addWidget(QtWidgets.QLabel(lbl))
            hm.addWidget(c, 1)
        self.heat = HeatMap(dark)
        self.best_label = QtWidgets.QLabel("")
        self.best_label.setWordWrap(True)
        self.best_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.send_btn = QtWidgets.QPushButton("Send best to live strategy…")
        self.send_btn.clicked.connect(self.ask_send_best)
        self.send_status = QtWidgets.QLabel("")
        self.send_status.setWordWrap(True)
        heat_box = QtWidgets.QWidget()
        hb = QtWidgets.QVBoxLayout(heat_box)
        hb.setContentsMargins(0, 0, 0, 0)
        hb.setSpacing(2)
        hb.addLayout(hm)
        hb.addWidget(self.heat, 1)
        best = QtWidgets.QHBoxLayout()
        best.setContentsMargins(4, 0, 4, 2)
        best.addWidget(self.best_label, 1)
        best.addWidget(self.send_btn)
        hb.addLayout(best)
        hb.addWidget(self.send_status)
        self.sweep_model = RecordTableModel(sweep_columns([]), key=id)
        self.sweep_table = TablePanel("backtest_sweep", self.sweep_model)
        self._sweep_split = QtWidgets.QSplitter(Qt.Orientation.Horizontal)
        self._sweep_split.addWidget(self.sweep_table)
        self._sweep_split.addWidget(heat_box)
        self._sweep_split.setStretchFactor(0, 1)
        self._sweep_split.setStretchFactor(1, 1)
        self._sweep_split.setChildrenCollapsible(False)
        sweep_tab = QtWidgets.QWidget()
        sl = QtWidgets.QHBoxLayout(sweep_tab)
        sl.setContentsMargins(0, 0, 0, 0)
        sl.addLayout(left_box)
        sl.addWidget(self._sweep_split, 1)

        self.tabs = QtWidgets.QTabWidget()
        self.tabs.addTab(run_tab, "Backtest")
        self.tabs.addTab(sweep_tab, "Sweep")
        split = QtWidgets.QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(scroll)
        split.addWidget(self.tabs)
        split.setStretchFactor(1, 1)
        split.setChildrenCollapsible(False)
        outer = QtWidgets.QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(split)

        self._timer = QtCore.QTimer(self)
        self._timer.setInterval(50)
        self._timer.timeout.connect(self._poll)
        self._update_send()

    # ------------------------------------------------------------------ settings
    def set_theme(self, dark: bool) -> None:
        self.plots.set_theme(dark)
        self.heat.set_theme(dark)
        self._paint_heat()

    def showEvent(self, event) -> None:
        # a fresh start records its first recording only after the window is built: the
        # panel offers it once it exists, and never overwrites a path the trader chose
        if not self.path.text().strip():
            self.path.setText(newest_recording(self._data_dir))
        super().showEvent(event)

    def _browse(self) -> None:
        start = self.path.text() or str(self._data_dir / "recordings")
        p = QtWidgets.QFileDialog.getExistingDirectory(self, "Recording folder", start)
        if p:
            self.path.setText(p)

    def param_values(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, w in self.params.items():
            if isinstance(w, QtWidgets.QCheckBox):
                out[k] = w.isChecked()
            elif isinstance(w, QtWidgets.QComboBox):
                out[k] = w.currentText()
            else:
                out[k] = w.text().strip()
        return out

    def config(self):
        """The settings as a BacktestConfig (ValueError: a field is not valid)."""
        from workers.backtest.engine import BacktestConfig, CostModel

        params = self.param_values()
        StrategyParams.from_mapping(params)  # a bad value is refused here, with its name
        try:
            costs = CostModel(**{k: float(w.text() or 0) for k, w in self.costs.items()})
            cash = float(self.cash.text())
        except ValueError as e:
            raise ValueError(f"costs: {e}") from None
        return BacktestConfig(params=params, costs=costs, initial_cash=cash)

    # ------------------------------------------------------------------ one run
    def run(self) -> None:
        if self._job is not None:
            return
        from workers.backtest import engine

        try:
            cfg, path = self.config(), self.path.text().strip()
        except ValueError as e:
            self.status.setText(f"not run: {e}")
            return
        self.result, self.error = None, None

        def work(job: _Job):
            return engine.run_backtest(path, cfg, progress=lambda f: setattr(job, "progress", f),
                                       cancel=job.cancel.is_set)

        self._job = _Job("backtest", work)
        self.run_btn.setEnabled(False)
        self.cancel_btn.setEnabled(True)
        self.bar.setValue(0)
        self.status.setText("running…")
        self._job.thread.start()
        self._timer.start()

    def cancel(self) -> None:
        if self._job is not None:
            self._job.request_cancel()

    @property
    def running(self) -> bool:
        return self._job is not None or self._sweep is not None

    def _poll(self) -> None:
        if self._job is not None:
            self.bar.setValue(int(self._job.progress * 1000))
            if not self._job.thread.is_alive():
                self._run_done(self._job)
        if self._sweep is not None:
            done, n = self._sweep.progress if isinstance(self._sweep.progress, tuple) else (0, self.sweep_bar.maximum())
            self.sweep_bar.setMaximum(max(1, n))
            self.sweep_bar.setValue(done)
            if not self._sweep.thread.is_alive():
                self._sweep_done(self._sweep)
        if not self.running:
            self._timer.stop()

    def _run_done(self, job: _Job) -> None:
        self._job = None
        self.run_btn.setEnabled(True)
        self.cancel_btn.setEnabled(False)
        if job.error:
            self.error = job.error
            self.status.setText("Cancelled" if job.error.startswith("Cancelled") else job.error)
            return
        self.result = res = job.result
        self.bar.setValue(1000)
        self.show_result(res)
        st = res.stats
        self.status.setText(f"done: {st.get('ticks', 0):,.0f} ticks in {st.get('seconds', 0):.2f} s, "
                            f"{st.get('n_trades', 0):,.0f} trades")

    def show_result(self, res) -> None:
        """Paint one BacktestResult (on the UI thread; everything in it is already computed)."""
        tones = RecordTableModel.tones
        for i, (k, _, fmt) in enumerate(STATS):
            v = res.stats.get(k)
            item = QtWidgets.QTableWidgetItem("" if v is None else fmt(v))
            item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            if k in ("net_pnl", "return_pct") and v and tones.get(C.updown(v)):
                item.setForeground(tones[C.updown(v)])
            self.stats.setItem(i, 0, item)
        trades = list(getattr(res, "trades", []) or [])
        self.trades_model.set_rows(trades)
        self.results_tabs.setTabText(1, f"Trades ({len(trades):,})")
        eq = getattr(res, "equity", None)
        if eq is None:
            self.plots.clear_result()
            return
        cash = getattr(getattr(res, "config", None), "initial_cash", float(eq[0]) if len(eq) else 0.0)
        self.plots.set_result(res.equity_ts, eq, res.drawdown, cash, [(t.exit_ts, t.pnl) for t in trades])

    # ------------------------------------------------------------------ sweeps
    def run_sweep(self) -> None:
        if self._sweep is not None:
            return
        from workers.backtest import sweep

        try:
            space = parse_grid(self.grid_edit.toPlainText())
            sets = sweep.grid(space)
            base = self.config()
        except ValueError as e:
            self.sweep_status.setText(f"not run: {e}")
            return
        path, n, addr = self.path.text().strip(), self.workers.value() or None, self.dask.text().strip()

        def work(job: _Job):
            # the panel makes the executor so that Cancel can drop the sets not started yet
            if addr:
                from distributed import Client

                client = Client(addr, timeout=10)
                ex = client.get_executor()
            else:
                client = None
                ex = cf.ProcessPoolExecutor(max_workers=n, mp_context=multiprocessing.get_context("spawn"))
            job.on_cancel = lambda: ex.shutdown(wait=False, **({} if addr else {"cancel_futures": True}))
            if job.cancel.is_set():
                job.on_cancel()
            try:
                rows = sweep.run_sweep(path, sets, base, executor=ex,
                                       progress=lambda d, t: setattr(job, "progress", (d, t)))
            except cf.CancelledError:
                raise RuntimeError("Cancelled") from None
            finally:
                ex.shutdown(wait=True) if not addr else ex.shutdown(wait=False)
                if client is not None:
                    client.close()
            return list(space), rows, dict(base.params)

        self._sweep = _Job("sweep", work)
        self._sweep.progress = (0, len(sets))
        self.sweep_btn.setEnabled(False)
        self.sweep_cancel_btn.setEnabled(True)
        self.sweep_bar.setFormat("%v / %m sets")
        self.sweep_bar.setMaximum(len(sets))
        self.sweep_bar.setValue(0)
        self.sweep_status.setText(f"running {len(sets)} sets on {'Dask at ' + addr if addr else 'local processes'}…")
        self._sweep.thread.start()
        self._timer.start()

    def cancel_sweep(self) -> None:
        if self._sweep is not None:
            self._sweep.request_cancel()
            self.sweep_status.setText("cancelling (sets already running finish first)…")

    def _sweep_done(self, job: _Job) -> None:
        self._sweep = None
        self.sweep_btn.setEnabled(True)
        self.sweep_cancel_btn.setEnabled(False)
        if job.error:
            self.sweep_status.setText("Cancelled" if "Cancelled" in job.error else job.error)
            return
        names, rows, base = job.result
        self.show_sweep(names, rows, base)
        bad = sum(1 for r in rows if r.error)
        self.sweep_status.setText(f"done: {len(rows)} sets" + (f", {bad} failed (see Error)" if bad else ""))

    def show_sweep(self, names: list[str], rows: list, base: dict[str, Any] | None = None) -> None:
        """Paint a sweep's rows: the table (new columns: the parameters may differ), the heat
        map's choices and the best set.  ``base``: the other parameters the sweep ran with."""
        self.rows = rows
        self.sweep_names = names
        self.sweep_base = dict(base or {})
        old = self.sweep_table
        self.sweep_model = RecordTableModel(sweep_columns(names), key=id)
        self.sweep_table = TablePanel("backtest_sweep", self.sweep_model)
        self.sweep_model.set_rows(rows)
        self._sweep_split.replaceWidget(0, self.sweep_table)
        old.deleteLater()
        for c in (self.heat_x, self.heat_y):
            c.blockSignals(True)
            c.clear()
            c.addItems(names)
        self.heat_y.insertItem(0, "(none)")
        self.heat_x.setCurrentIndex(0)
        self.heat_y.setCurrentIndex(2 if len(names) > 1 else 0)
        for c in (self.heat_x, self.heat_y):
            c.blockSignals(False)
        self._paint_heat()

    def _paint_heat(self, *_: Any) -> None:
        if not self.rows or not self.heat_x.currentText():
            self._update_send()
            return
        x, y, m = self.heat_x.currentText(), self.heat_y.currentText(), self.heat_metric.currentText()
        y = None if y in ("", "(none)", x) else y
        xs, ys, z = heat_grid(self.rows, x, y, m)
        label = {k: lbl for k, lbl, _ in STATS}.get(m, m)
        others = [n for n in self.sweep_names if n not in (x, y)]
        title = label + (f" · best of {', '.join(others)}" if others else "")
        self.heat.set_grid(xs, ys, z, x, y or "", title)
        self._update_send()

    def best_row(self):
        """The sweep's best row by the heat map's metric (None: no row has a value)."""
        m = self.heat_metric.currentText()
        i = best_index([r.stats.get(m, math.nan) if not r.error else math.nan for r in self.rows], m)
        return None if i is None else self.rows[i]

    def best_params(self) -> dict[str, Any]:
        """Every parameter of the best set's backtest: the swept ones and the rest as the sweep
        ran them, typed.  All of them are sent, so the live strategy trades what was tested,
        not the tested values mixed with whatever it ran before."""
        best = self.best_row()
        if best is None:
            return {}
        return StrategyParams.from_mapping({**self.sweep_base, **best.params}).as_dict()

    def _update_send(self) -> None:
        best = self.best_row() if self.rows else None
        if best is not None:
            m = self.heat_metric.currentText()
            self.best_label.setText(f"Best by {m}: <b>{', '.join(f'{k}={v}' for k, v in best.params.items())}</b> "
                                    f"({_metric_fmt(m)(best.stats.get(m))})")
        else:
            self.best_label.setText("")
        why = ""
        if self.control is None:
            why = "No fleet attached: there is no live strategy to send parameters to"
        elif best is None:
            why = "Run a sweep first: the best set of its results is sent"
        self.send_btn.setEnabled(not why)
        self.send_btn.setToolTip(why or "Set the best set's parameters on a running strategy (asks which, first)")

    def ask_send_best(self) -> None:
        best = self.best_row()
        if best is None or self.control is None:
            return
        names = self.control.names("strategy")
        if not names:
            self.send_status.setText("no strategy is running: start one in the Workers panel")
            return
        full = self.best_params()
        dlg = SendParamsDialog(dict(best.params), names, self, others={k: v for k, v in full.items() if k not in best.params})
        self._send_dialog = dlg

        def done(code: int) -> None:
            self._send_dialog = None
            if code == QtWidgets.QDialog.DialogCode.Accepted:
                self.send_params(dlg.strategy.currentText(), full, ", ".join(f"{k}={v}" for k, v in best.params.items()))
            else:
                self.send_status.setText("not sent (cancelled)")
            dlg.deleteLater()

        dlg.finished.connect(done)
        dlg.open()

    def send_params(self, name: str, params: dict[str, Any], text: str | None = None) -> None:
        """``set_params`` to the live strategy ``name``, as the Workers panel's params dialog
        sends it; ``text`` is what the status line calls them (default: all of them)."""
        text = text or ", ".join(f"{k}={v}" for k, v in params.items())
        self.send_status.setText(f"sending {text} to {name}…")
        task = self.control.spawn(self.control.strategy_command(name, "set_params", params))

        def replied(t) -> None:
            try:
                r = t.result()
            except Exception as e:
                self.send_status.setText(f"{name}: {type(e).__name__}: {e}")
                return
            if r is None:
                self.send_status.setText(f"{name}: no reply to set_params (see the log)")
            elif not r.ok:
                self.send_status.setText(f"{name} refused {text}: {r.reason}")
            else:
                self.send_status.setText(f"{name} now trades with {text}")

        task.add_done_callback(replied)
