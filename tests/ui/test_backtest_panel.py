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
