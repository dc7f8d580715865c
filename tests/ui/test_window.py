"""The main window over a real fleet (offscreen, ipc endpoints in tmp_path, fresh journal).

Each test starts the five worker processes behind a MainWindow, drives the window the way
a trader would (clicks, keys) and waits on conditions with qtbot.waitUntil.  The fixture
closes the window and checks that every worker process it ever saw is gone.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass, field

import pytest

from tests.procs import scaled, scaled_ms
from workers.config import Endpoints
from workers.launcher import parse
from workers.protocol import OrderStatus, OrderType
from app.main import build_session
from app.qt import Qt, QTimer
from app.settings import Settings
from app.window import MainWindow

pytestmark = pytest.mark.slow

# ms, what a quiet machine needs with a margin, times the suite's one timeout factor
START_TIMEOUT = scaled_ms(10_000)  # five Python processes starting on 2 cores
TIMEOUT = scaled_ms(5_000)

# Strategies trade AAPL and GOOG only, so MSFT and AMZN positions are the manual ticket's alone.
FLEET_TOML = """
[fleet.marketdata]
symbols = "AAPL,MSFT,GOOG,AMZN"

[[fleet.strategies]]
name = "sr-breakout"
symbols = "AAPL"
mode = "breakout"

[[fleet.strategies]]
name = "sr-bounce"
symbols = "GOOG"
mode = "bounce"
"""


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@dataclass
class Desk:
    window: MainWindow
    pids: set[int] = field(default_factory=set)

    @property
    def sup(self):
        return self.window.session.sup

    @property
    def state(self):
        return self.window.state


@pytest.fixture
def desk(qtbot, qloop, tmp_path):
    cfg = tmp_path / "fleet.toml"
    cfg.write_text(FLEET_TOML)
    eps = Endpoints.ephemeral_ipc(tmp_path)
    args = parse(["--data-dir", str(tmp_path / "data"), "--fresh", "--seed", "11", "--tick-rate", "40",
                  "--config", str(cfg), *eps.as_args()])
    settings = Settings(tmp_path / "tickdesk.ini")
    ui = settings.load()
    ui.confirm_orders = False
    ui.confirm_cancel_all = False
    ui.confirm_quit = False  # the fixture closes windows with positions open
    session = build_session(args, settings, ui)
    d = Desk(MainWindow(session, settings, ui))
    session.sup.listeners.append(lambda name, text: text.startswith("started pid ") and d.pids.add(int(text.split()[-1])))
    w = d.window
    w.resize(1400, 900)
    w.show()
    qtbot.waitExposed(w)
    w.start()
    try:
        qtbot.waitUntil(lambda: all(x.state == "running" for x in session.sup.workers.values()), timeout=START_TIMEOUT)
        qtbot.waitUntil(lambda: w.market_watch.model.rowCount() == 4 and session.orders.synced, timeout=TIMEOUT)
        yield d
    finally:
        w.close()
        w.deleteLater()
        leftover = [p for p in d.pids if alive(p)]
        assert not leftover, f"worker processes left behind: {leftover}"


def cell(panel, key, column: str) -> str:
    """The text a table shows for row ``key`` in ``column``."""
    m = panel.model
    r = m.row_for(key)
    if r is None:
        return ""
    c = [col.key for col in m.columns].index(column)
    return m.index(r, c).data()


def load_ticket(qtbot, w: MainWindow, symbol: str) -> None:
    """Double-click the symbol in the market watch (fills the ticket)."""
    mw = w.market_watch
    src = mw.model.index(mw.model.row_for(symbol), 0)
    idx = mw.proxy.mapFromSource(src)
    rect = mw.view.visualRect(idx)
    qtbot.mouseClick(mw.view.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    qtbot.mouseDClick(mw.view.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    qtbot.waitUntil(lambda: w.ticket.symbol.currentText() == symbol, timeout=TIMEOUT)


def manual_orders(d: Desk) -> list:
    return [o for o in d.state.orders.orders.values() if o.source == "manual"]


def test_ticks_reach_market_watch_and_chart(qtbot, desk):
    w = desk.window
    qtbot.waitUntil(lambda: all(cell(w.market_watch, s, "last") for s in ("AAPL", "MSFT", "GOOG", "AMZN")), timeout=TIMEOUT)
    # selecting a symbol switches the chart, which draws its candles
    load_ticket(qtbot, w, "AMZN")
    assert w.chart.symbol == "AMZN"
    qtbot.waitUntil(lambda: w.chart.bar_count() >= 2, timeout=TIMEOUT)
    chart = w.chart.chart
    if chart is not None:
        qtbot.waitUntil(lambda: chart.drawn_candles >= 2 and chart.symbol == "AMZN", timeout=TIMEOUT)
    before = desk.state.market.quotes["AMZN"].ticks
    qtbot.waitUntil(lambda: desk.state.market.quotes["AMZN"].ticks > before + 20, timeout=TIMEOUT)
    assert w.flushes > 10 and desk.state.streams["ticks"].decode_errors == 0


def test_market_order_clicked_buy_is_filled_with_position(qtbot, desk):
    w = desk.window
    load_ticket(qtbot, w, "MSFT")
    w.ticket.set_order_type(OrderType.MARKET)
    w.ticket.qty.setValue(10)
    qtbot.mouseClick(w.ticket.buy, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: any(f.source == "manual" and f.symbol == "MSFT" for f in w.fills.model.rows()), timeout=TIMEOUT)
    order = manual_orders(desk)[0]
    qtbot.waitUntil(lambda: cell(w.history, order.client_order_id, "status") == "FILLED", timeout=TIMEOUT)
    qtbot.waitUntil(lambda: cell(w.positions, "MSFT", "qty") == "+10", timeout=TIMEOUT)
    # the ticket says so too: from the reply, or from the stream if the fill came first
    qtbot.waitUntil(lambda: "BUY 10 MSFT" in w.ticket.outcome.text() and "filled" in w.ticket.outcome.text(),
                    timeout=TIMEOUT)
    # the sell hotkey flattens it
    w.activateWindow()
    qtbot.keyClick(w, Qt.Key.Key_S, Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(lambda: cell(w.positions, "MSFT", "qty") == "0", timeout=TIMEOUT)
    assert len(manual_orders(desk)) == 2


def test_limit_order_away_from_market_is_cancelled_from_the_blotter(qtbot, desk):
    w = desk.window
    load_ticket(qtbot, w, "AMZN")
    last = desk.state.market.quotes["AMZN"].last
    w.ticket.set_order_type(OrderType.LIMIT)
    w.ticket.limit.setValue(round(last * 0.97, 2))  # 3% under: inside the 5% band, far from the market
    w.ticket.qty.setValue(5)
    qtbot.mouseClick(w.ticket.buy, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: manual_orders(desk) and cell(w.working, manual_orders(desk)[0].client_order_id, "status") == "NEW",
                    timeout=TIMEOUT)
    coid = manual_orders(desk)[0].client_order_id
    assert w.working.select_key(coid)
    w.working.view.setFocus()
    qtbot.keyClick(w.working.view, Qt.Key.Key_Delete)
    qtbot.waitUntil(lambda: cell(w.history, coid, "status") == "CANCELLED", timeout=TIMEOUT)
    qtbot.waitUntil(lambda: w.working.model.row_for(coid) is None, timeout=TIMEOUT)
    assert desk.state.position("AMZN") is None or desk.state.position("AMZN").qty == 0


def test_kill_switch_cancels_orders_and_stops_strategies(qtbot, desk):
    w = desk.window
    load_ticket(qtbot, w, "MSFT")
    last = desk.state.market.quotes["MSFT"].last
    w.ticket.set_order_type(OrderType.LIMIT)
    w.ticket.limit.setValue(round(last * 1.03, 2))  # a sell far above the market: stays working
    qtbot.mouseClick(w.ticket.sell, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: len(w.working.model.rows()) == 1 and w.working.model.rows()[0].status is OrderStatus.NEW,
                    timeout=TIMEOUT)
    coid = w.working.model.rows()[0].client_order_id

    qtbot.mouseClick(w.kill_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: getattr(w, "last_kill_report", None) is not None, timeout=TIMEOUT)
    rep = w.last_kill_report
    assert rep.ok, rep.text()
    assert rep.live_before >= 1 and rep.ended == rep.live_before and set(rep.strategies) == {"sr-breakout", "sr-bounce"}
    assert w.banner.isVisible() and "KILL SWITCH engaged" in w.banner.text()
    qtbot.waitUntil(lambda: cell(w.history, coid, "status") == "CANCELLED", timeout=TIMEOUT)
    # the working blotter drops a finished order at a flush of its own (under load, one later)
    qtbot.waitUntil(lambda: w.working.model.rowCount() == 0, timeout=TIMEOUT)
    # the workers panel shows the strategies paused; the executor reports its kill switch on
    qtbot.waitUntil(lambda: cell(w.workers_panel, "sr-breakout", "state") == "PAUSED"
                    and cell(w.workers_panel, "sr-bounce", "state") == "PAUSED", timeout=TIMEOUT)
    qtbot.waitUntil(lambda: desk.sup.workers["executor"].stats.get("gauges", {}).get("kill_switch") is True, timeout=TIMEOUT)
    # and the ticket refuses manual orders while it is on
    n = len(manual_orders(desk))
    qtbot.mouseClick(w.ticket.buy, Qt.MouseButton.LeftButton)
    assert "kill switch" in w.ticket.outcome.text() and len(manual_orders(desk)) == n


def test_sigkilled_worker_shows_its_restart(qtbot, desk):
    w = desk.window
    old = desk.sup.workers["sr-bounce"].pid
    assert cell(w.workers_panel, "sr-bounce", "pid") == str(old)
    os.kill(old, signal.SIGKILL)
    qtbot.waitUntil(lambda: cell(w.workers_panel, "sr-bounce", "restarts") == "1"
                    and cell(w.workers_panel, "sr-bounce", "pid") not in ("", str(old))
                    and cell(w.workers_panel, "sr-bounce", "state") == "RUNNING", timeout=START_TIMEOUT)
    assert not alive(old)
    assert any("died" in ln.text for ln in desk.state.log.items if ln.source == "sr-bounce")


def test_closing_the_window_stops_every_worker(qtbot, desk):
    w = desk.window
    pids = {x.pid for x in desk.sup.workers.values()}
    assert len(pids) == 6 and all(alive(p) for p in pids)  # 5 + the recorder
    with qtbot.waitSignal(w.closed, timeout=TIMEOUT):
        w.close()
    assert not any(alive(p) for p in pids)
    assert all(x.proc is None and x.state == "stopped" for x in desk.sup.workers.values())


def select_worker(w: MainWindow, name: str) -> None:
    assert w.workers_panel.select_key(name)
    w.workers_panel._update_buttons()


def test_workers_panel_restart_stop_start_and_params(qtbot, desk):
    from app.panels.workers import StrategyParamsDialog

    w = desk.window
    assert "started pid" in w.log_panel.plain_text()
    old = desk.sup.workers["sr-breakout"].pid
    select_worker(w, "sr-breakout")
    qtbot.mouseClick(w.workers_panel.buttons["restart"], Qt.MouseButton.LeftButton)
    # the click returned before the old process was even asked to stop: nothing waits on the UI thread
    assert desk.sup.workers["sr-breakout"].pid == old and alive(old)
    qtbot.waitUntil(lambda: cell(w.workers_panel, "sr-breakout", "restarts") == "1"
                    and cell(w.workers_panel, "sr-breakout", "pid") != str(old)
                    and cell(w.workers_panel, "sr-breakout", "state") == "RUNNING", timeout=START_TIMEOUT)
    assert not alive(old)

    select_worker(w, "sr-bounce")
    qtbot.mouseClick(w.workers_panel.buttons["stop"], Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: cell(w.workers_panel, "sr-bounce", "state") == "STOPPED", timeout=TIMEOUT)
    qtbot.wait(1500)  # a stopped worker is not restarted behind the trader's back
    assert desk.sup.workers["sr-bounce"].proc is None and cell(w.workers_panel, "sr-bounce", "restarts") == "0"
    select_worker(w, "sr-bounce")
    qtbot.mouseClick(w.workers_panel.buttons["start"], Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: cell(w.workers_panel, "sr-bounce", "state") == "RUNNING", timeout=START_TIMEOUT)

    # live parameters of a strategy: get_params -> dialog -> set_params
    select_worker(w, "sr-breakout")
    qtbot.mouseClick(w.workers_panel.buttons["params"], Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: any(d.isVisible() for d in w.findChildren(StrategyParamsDialog)), timeout=TIMEOUT)
    dlg = [d for d in w.findChildren(StrategyParamsDialog) if d.isVisible()][0]
    dlg.edits["qty"].setText("37")
    dlg._accept()
    qtbot.waitUntil(lambda: desk.sup.workers["sr-breakout"].stats.get("gauges", {}).get("params", {}).get("qty") == 37,
                    timeout=TIMEOUT)


def test_order_without_reply_is_unknown_then_reconciled(qtbot, desk):
    """The exchange is down: the ticket's order gets no reply after every retry, shows as
    UNKNOWN at once, and once the exchange is back get_order settles it -- never a new order."""
    w = desk.window
    load_ticket(qtbot, w, "MSFT")
    w.ticket.set_order_type(OrderType.MARKET)
    w.ticket.qty.setValue(3)
    w.session.control.spawn(w.session.control.stop_worker("exchange"))
    qtbot.waitUntil(lambda: desk.sup.workers["exchange"].proc is None, timeout=TIMEOUT)
    qtbot.mouseClick(w.ticket.buy, Qt.MouseButton.LeftButton)
    coid = manual_orders(desk)[0].client_order_id
    qtbot.waitUntil(lambda: cell(w.working, coid, "status") == "UNKNOWN", timeout=TIMEOUT)
    assert "UNKNOWN" in w.ticket.outcome.text() and w.ticket.outcome.property("tone") == "warn"
    w.session.control.spawn(w.session.control.start_worker("exchange"))
    qtbot.waitUntil(lambda: cell(w.history, coid, "status") not in ("UNKNOWN", "PENDING_NEW", ""), timeout=START_TIMEOUT)
    o = desk.state.orders.get(coid)
    # the exchange never saw it (every try went to a closed endpoint): not placed, and not re-sent
    assert o.status is OrderStatus.REJECTED and "never reached the exchange" in o.reason
    qtbot.waitUntil(lambda: w.working.model.row_for(coid) is None, timeout=TIMEOUT)
    assert len(manual_orders(desk)) == 1


@pytest.mark.parametrize("how", ["sleep", "busy"])
def test_a_ten_second_ui_stall_restarts_no_worker(qtbot, desk, how):
    """The UI thread blocked for 10 s in a slot (a blocking call, then a busy Python loop):
    the supervisor, on its own thread, goes on answering every heartbeat -- no worker is
    restarted, none even found its supervisor silent (no control reconnect)."""
    w = desk.window
    sup = desk.sup
    before = {n: (x.pid, x.restarts) for n, x in sup.workers.items()}
    reconnects = {n: x.counter("control_reconnects") for n, x in sup.workers.items()}
    done = []

    def stall() -> None:
        if how == "sleep":
            time.sleep(10.0)
        else:
            end = time.monotonic() + 10.0
            while time.monotonic() < end:
                pass
        done.append(time.monotonic())

    QTimer.singleShot(0, stall)
    qtbot.waitUntil(lambda: bool(done), timeout=int(scaled(30_000)))
    stalled_until = done[0]
    # a heartbeat the supervisor got after the stall, from every worker, shown in the window
    qtbot.waitUntil(lambda: all(x.heartbeat_age is not None and time.monotonic() - x.heartbeat_age > stalled_until
                                for x in sup.workers.values()), timeout=TIMEOUT)
    assert {n: (x.pid, x.restarts) for n, x in sup.workers.items()} == before
    assert all(x.state == "running" for x in sup.workers.values())
    assert {n: x.counter("control_reconnects") for n, x in sup.workers.items()} == reconnects
    assert not [ln.text for ln in desk.state.log.items if "died" in ln.text or "silent" in ln.text]
    assert w.session.sup.health.get("stalls", 0) == 0  # the supervisor's loop itself never stalled


def positions_row_click(qtbot, w: MainWindow, symbol: str) -> None:
    p = w.positions
    qtbot.waitUntil(lambda: p.model.row_for(symbol) is not None, timeout=TIMEOUT)
    idx = p.proxy.mapFromSource(p.model.index(p.model.row_for(symbol), 0))
    qtbot.mouseClick(p.view.viewport(), Qt.MouseButton.LeftButton, pos=p.view.visualRect(idx).center())


def test_kill_switch_is_the_accounts_survives_a_gateway_restart_and_lets_flatten_through(qtbot, desk):
    from workers import protocol as P
    from workers.order_client import OrderClient, new_client_order_id
    from app.qt import QtWidgets

    w, ctl = desk.window, desk.window.session.control
    load_ticket(qtbot, w, "MSFT")
    w.ticket.set_order_type(OrderType.MARKET)
    w.ticket.qty.setValue(100)
    qtbot.mouseClick(w.ticket.buy, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: desk.state.positions.qty("MSFT") == 100, timeout=TIMEOUT)
    assert "filled filled" not in w.ticket.outcome.text()
    # the manual position (strategies trade AAPL and GOOG here), shown once the fill is in
    qtbot.waitUntil(lambda: "Pos +100" in w.ticket.quote.text(), timeout=TIMEOUT)

    qtbot.keyClick(w, Qt.Key.Key_F12)
    qtbot.waitUntil(lambda: w.last_kill_report is not None, timeout=TIMEOUT)
    assert w.last_kill_report.account == "on", w.last_kill_report.text()
    assert ctl.account_kill is True and w.kill_button.text().startswith("KILL SWITCH ON")

    # the exchange gateway dies and comes back: the account's switch is still on there
    old = desk.sup.workers["exchange"].pid
    os.kill(old, signal.SIGKILL)
    qtbot.waitUntil(lambda: desk.sup.workers["exchange"].pid not in (None, old)
                    and desk.sup.workers["exchange"].state == "running", timeout=START_TIMEOUT)
    ctl.account_kill = None  # the next read must come from the restarted gateway
    qtbot.waitUntil(lambda: ctl.account_kill is not None, timeout=TIMEOUT)
    assert ctl.account_kill is True and ctl.kill_engaged

    # any client's order that grows a position is refused at the exchange, a strategy's too.
    # MSFT: its position is the +100 above and nothing else trades it, so a buy grows it (a
    # strategy's symbol may be short at this moment, when a buy only reduces and is allowed)
    client = OrderClient(desk.window.session.endpoints.orders)
    try:
        r = client.ask(P.SendOrder(client_order_id=new_client_order_id("sr-bounce"), symbol="MSFT", side=P.Side.BUY,
                                   qty=10, source="strategy.sr-bounce", ts=P.now_ns()))
    finally:
        client.close()
    assert r is not None and not r.ok and r.reason.startswith("kill switch"), r

    # Flatten from the positions table: a market sell of the 100, filled while the switch is on
    positions_row_click(qtbot, w, "MSFT")
    assert w.selected_position_symbols() == ["MSFT"]
    qtbot.mouseClick(w.flatten_button, Qt.MouseButton.LeftButton)
    def sells():
        return [o for o in manual_orders(desk) if o.symbol == "MSFT" and o.side is P.Side.SELL]

    # the fill and the order's final update are two reports: wait for both
    qtbot.waitUntil(lambda: desk.state.positions.qty("MSFT") == 0 and any(o.status is OrderStatus.FILLED for o in sells()),
                    timeout=TIMEOUT)
    assert len(sells()) == 1 and sells()[0].filled_qty == 100
    assert ctl.kill_engaged  # flattening does not release anything

    # Release asks: resume the strategies or keep them paused
    qtbot.mouseClick(w.release_button, Qt.MouseButton.LeftButton)
    box = w.findChild(QtWidgets.QMessageBox, "confirmRelease")
    assert box is not None and box.isVisible()
    qtbot.mouseClick(box.findChild(QtWidgets.QPushButton, "choice_keep"), Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: ctl.account_kill is False, timeout=TIMEOUT)
    assert not ctl.kill_engaged and w.kill_button.text() == "KILL SWITCH  F12"
    qtbot.waitUntil(lambda: "account off" in w.banner.text(), timeout=TIMEOUT)
    assert "kept paused" in w.banner.text() and "kill switch" not in w.ticket.outcome.text().lower().replace(
        "kill switch released", "")
    assert cell(w.workers_panel, "sr-breakout", "state") == "PAUSED" and cell(w.workers_panel, "sr-bounce", "state") == "PAUSED"
