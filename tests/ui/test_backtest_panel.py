import os
import types

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from app.panels.backtest import BacktestPanel  # noqa: E402
from workers.backtest import engine  # noqa: E402


def test_run_shows_net_pnl_and_cancel(qtbot, monkeypatch):
    def fake(data, cfg, progress=None, cancel=None):
        for i in range(10**7):
            progress(i / 10**7) if i % 1000 == 0 else None
            if cancel() or data == "short" and i > 100:
                break
        if cancel():
            raise engine.Cancelled("cancelled")
        return types.SimpleNamespace(stats={"net_pnl": 123.5})

    monkeypatch.setattr(engine, "run_backtest", fake)
    p = BacktestPanel(data_dir="/nonexistent")
    qtbot.addWidget(p)
    p.path.setText("short")
    p.run_btn.click()
    qtbot.waitUntil(lambda: p.status.text() == "done", timeout=10000)
    assert p.stats.item(0, 1).text() == "123.5"
    p.path.setText("long")
    p.run_btn.click()
    p.cancel_btn.click()
    qtbot.waitUntil(lambda: p.status.text().startswith("Cancelled"), timeout=10000)


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
