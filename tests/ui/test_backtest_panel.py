"""The Backtest panel: a run on a real recording shows the engine's own numbers, curves and
trades; Cancel stops a run; a sweep on two local processes fills the sortable table and the
heat map; the best set goes to a live strategy of a real fleet."""

from __future__ import annotations

import os
import types

import numpy as np
import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from app.panels.backtest import STATS, BacktestPanel, SendParamsDialog  # noqa: E402
from app.qt import Qt, QtCore, QtWidgets  # noqa: E402
from tests.procs import scaled_ms  # noqa: E402
from workers.backtest import engine, sweep  # noqa: E402
from workers.backtest.engine import BacktestConfig, run_backtest  # noqa: E402
from workers.recording import write_ticks  # noqa: E402

TIMEOUT = scaled_ms(20_000)
PARAMS = {"window": 30, "min_fill": 10, "cooldown": 0.5, "qty": 100, "max_position": 300}


def walk(n: int, seed: int, start: float) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    last = np.maximum(np.round(start + np.cumsum(rng.normal(0, 0.05, n)), 2), 1.0)
    return {"seq": np.arange(1, n + 1), "ts": 1_700_000_000 * 10**9 + np.arange(n) * 100_000_000 + seed,
            "last": last, "bid": np.round(last - 0.01, 2), "ask": np.round(last + 0.01, 2),
            "bid_size": np.full(n, 500), "ask_size": np.full(n, 500), "volume": np.arange(n) * 10}


@pytest.fixture
def data(tmp_path):
    """A data folder holding one recording of two symbols; the panel finds it as the newest."""
    rec = tmp_path / "data" / "recordings" / "20261204T120000-1"
    for k, sym in enumerate(("AAPL", "MSFT")):
        write_ticks(rec / "parquet" / "ticks", sym, walk(4000, k + 1, 100.0 + 50 * k))
    return tmp_path / "data", rec


def set_params(p: BacktestPanel, values: dict) -> None:
    for k, v in values.items():
        p.params[k].setText(str(v))


def test_a_run_shows_the_engines_numbers_curves_and_trades(qtbot, data):
    folder, rec = data
    p = BacktestPanel(data_dir=folder)
    qtbot.addWidget(p)
    p.show()
    assert p.path.text() == str(rec)  # the newest recording of the data folder, ready to run
    set_params(p, PARAMS)
    p.costs["fee_per_share"].setText("0.005")
    p.costs["slippage_bps"].setText("1")
    qtbot.mouseClick(p.run_btn, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: p.status.text().startswith("done"), timeout=TIMEOUT)
    want = run_backtest(rec, BacktestConfig(params=PARAMS, costs=engine.CostModel(fee_per_share=0.005, slippage_bps=1)))
    assert want.stats["n_trades"] >= 5 and want.stats["fees"] > 0
    shown = {k: p.stats.item(i, 0).text() for i, (k, _, _) in enumerate(STATS)}
    for k, _, fmt in STATS:
        if k not in ("ticks_per_s",):  # a speed, not a result
            assert shown[k] == fmt(want.stats[k]), k
    assert p.bar.value() == p.bar.maximum()
    x, y = p.plots.equity_curve.getData()
    assert np.array_equal(y, want.equity) and len(x) == len(want.equity)
    assert np.allclose(-p.plots.drawdown_curve.getData()[1], want.drawdown)
    assert p.trades_model.rowCount() == len(want.trades)
    assert p.results_tabs.tabText(1) == f"Trades ({len(want.trades):,})"
    # a bad value is refused with its name, and nothing runs
    p.params["window"].setText("-3")
    qtbot.mouseClick(p.run_btn, Qt.MouseButton.LeftButton)
    assert p.status.text().startswith("not run") and "window" in p.status.text() and not p.running


def test_cancel_stops_a_run_and_the_panel_can_run_again(qtbot, monkeypatch, data):
    def slow(path, cfg, progress=None, cancel=None):
        for i in range(10**8):
            if i % 1000 == 0:
                progress(min(1.0, i / 10**7))
                if cancel():
                    raise engine.Cancelled()
        raise AssertionError("never cancelled")

    p = BacktestPanel(data_dir=data[0])
    qtbot.addWidget(p)
    monkeypatch.setattr(engine, "run_backtest", slow)
    qtbot.mouseClick(p.run_btn, Qt.MouseButton.LeftButton)
    assert not p.run_btn.isEnabled() and p.cancel_btn.isEnabled()
    qtbot.waitUntil(lambda: p.bar.value() > 0, timeout=TIMEOUT)  # progress reaches the bar
    qtbot.mouseClick(p.cancel_btn, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: p.status.text() == "Cancelled", timeout=TIMEOUT)
    assert p.run_btn.isEnabled() and not p.cancel_btn.isEnabled() and p.result is None
    monkeypatch.setattr(engine, "run_backtest", lambda *a, **k: types.SimpleNamespace(stats={"net_pnl": 12.5}))
    qtbot.mouseClick(p.run_btn, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: p.status.text().startswith("done"), timeout=TIMEOUT)
    assert p.stats.item(0, 0).text() == "+12.50"


def test_a_sweep_on_two_processes_fills_the_table_the_heat_map_and_the_best_set(qtbot, data):
    _, rec = data
    p = BacktestPanel(data_dir=data[0])
    qtbot.addWidget(p)
    p.resize(1300, 600)
    p.show()
    set_params(p, PARAMS)
    p.tabs.setCurrentIndex(1)
    p.grid_edit.setPlainText("window=20,30,60\ncooldown=0.5,2")
    p.workers.setValue(2)
    qtbot.mouseClick(p.sweep_btn, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: p.sweep_status.text().startswith("done"), timeout=scaled_ms(60_000))
    assert p.sweep_bar.value() == p.sweep_bar.maximum() == 6
    # every row is the serial backtest of its set
    base = BacktestConfig(params=PARAMS)
    for r in p.rows:
        want = sweep.run_one(str(rec), base, r.params)
        assert not r.error and {k: v for k, v in r.stats.items() if k not in ("seconds", "ticks_per_s")} == \
            {k: v for k, v in want.stats.items() if k not in ("seconds", "ticks_per_s")}
    # the table: one row per set, sorted by a click on a metric's header
    t = p.sweep_table
    assert t.model.rowCount() == 6
    col = [c.key for c in t.model.columns].index("net_pnl")
    header = t.view.horizontalHeader()
    qtbot.mouseClick(header.viewport(), Qt.MouseButton.LeftButton,
                     pos=QtCore.QPoint(header.sectionViewportPosition(col) + header.sectionSize(col) // 2, header.height() // 2))
    assert header.sortIndicatorSection() == col
    down = header.sortIndicatorOrder() == Qt.SortOrder.DescendingOrder
    pnl = sorted((r.stats["net_pnl"] for r in p.rows), reverse=down)
    assert [t.proxy.index(i, col).data() for i in range(6)] == [f"{v:+,.2f}" for v in pnl]
    # the heat map: window across, cooldown up, the metric in each cell; the best is its maximum
    p.heat_metric.setCurrentText("net_pnl")
    z = p.heat.image.image  # [x, y]
    assert z.shape == (3, 2)
    for r in p.rows:
        i, j = [20, 30, 60].index(r.params["window"]), [0.5, 2].index(r.params["cooldown"])
        assert z[i, j] == r.stats["net_pnl"]
    best = max(p.rows, key=lambda r: r.stats["net_pnl"])
    assert p.best_row() is best and f"window={best.params['window']}" in p.best_label.text()
    p.heat_metric.setCurrentText("max_drawdown")  # lower is better
    assert p.best_row() is min(p.rows, key=lambda r: r.stats["max_drawdown"])
    # without a fleet there is nobody to send to: the button says why
    assert not p.send_btn.isEnabled() and "No fleet" in p.send_btn.toolTip()
    # a grid that is not one is refused with its line
    p.grid_edit.setPlainText("window=")
    qtbot.mouseClick(p.sweep_btn, Qt.MouseButton.LeftButton)
    assert p.sweep_status.text().startswith("not run: line 1")


@pytest.mark.slow
def test_send_best_sets_the_parameters_of_a_live_strategy(qtbot, desk, data):
    """Over a real fleet: the best set of a sweep, sent from the panel, is what the running
    strategy then reports in its heartbeat."""
    w = desk.window
    _, rec = data
    p = w.backtest
    w.docks["backtest"].show()
    w.docks["backtest"].raise_()
    set_params(p, PARAMS)
    p.path.setText(str(rec))
    base = BacktestConfig(params=PARAMS)
    sets = sweep.grid({"window": [20, 40], "qty": [37, 41]})
    rows = [sweep.run_one(str(rec), base, s) for s in sets]
    # the base as the panel's fields give it: text
    p.show_sweep(["window", "qty"], rows, {**{k: str(v) for k, v in PARAMS.items()}, "mode": "bounce", "allow_short": False})
    p.heat_metric.setCurrentText("net_pnl")
    best = p.best_row()
    assert best is max(rows, key=lambda r: r.stats["net_pnl"])
    assert p.send_btn.isEnabled()
    qtbot.mouseClick(p.send_btn, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: any(d.isVisible() for d in p.findChildren(SendParamsDialog)), timeout=TIMEOUT)
    dlg = next(d for d in p.findChildren(SendParamsDialog) if d.isVisible())
    assert "cooldown=0.5" in dlg.findChild(QtWidgets.QLabel).text()  # the unswept ones are named too
    dlg.strategy.setCurrentText("sr-bounce")
    qtbot.mouseClick(dlg.buttons.button(QtWidgets.QDialogButtonBox.StandardButton.Ok), Qt.MouseButton.LeftButton)

    def live():
        return desk.sup.workers["sr-bounce"].stats.get("gauges", {}).get("params", {})

    # every parameter the best set was tested with, not the swept ones alone
    tested = {**PARAMS, "mode": "bounce", "allow_short": False, **best.params}
    qtbot.waitUntil(lambda: all(live().get(k) == v for k, v in tested.items()), timeout=TIMEOUT)
    qtbot.waitUntil(lambda: p.send_status.text() == f"sr-bounce now trades with window={best.params['window']}, "
                                                    f"qty={best.params['qty']}", timeout=TIMEOUT)
    # the other strategy is untouched
    assert desk.sup.workers["sr-breakout"].stats.get("gauges", {}).get("params", {}).get("qty") != best.params["qty"]


def test_the_window_has_a_hidden_backtest_dock_shown_from_the_view_menu(make_window, qtbot):
    w = make_window()
    dock = w.docks["backtest"]
    assert not dock.isVisible()  # the default layout stays the trading one
    view = next(a.menu() for a in w.menuBar().actions() if a.text() == "&View")
    act = next(a for a in view.actions() if a.text() == "Backtest")
    act.trigger()
    qtbot.waitUntil(lambda: dock.isVisible() and not dock.visibleRegion().isEmpty())
    assert w.dockWidgetArea(dock) == w.dockWidgetArea(w.docks["network"])
    assert dock in w.tabifiedDockWidgets(w.docks["network"])


from tests.ui.test_window import desk  # noqa: E402,F401  (the real-fleet fixture)


def test_the_panel_needs_no_colour_map_file(qtbot, tmp_path, monkeypatch):
    """The frozen bundle leaves pyqtgraph's colour-map files out (build.spec): the heat map's
    colours come from code, so the window builds without them (it once failed to start)."""
    import pyqtgraph as pg

    def no_file(name):
        raise FileNotFoundError(f"pyqtgraph/colors/maps/{name}")

    monkeypatch.setattr(pg.colormap, "_getFromFile", no_file)
    panel = BacktestPanel(data_dir=tmp_path)
    qtbot.addWidget(panel)
    cmap = panel.heat.cmap
    lo, hi = cmap.map([0.0, 1.0], mode="byte")[:, :3].tolist()
    assert lo == [68, 1, 84] and hi == [253, 231, 37]
