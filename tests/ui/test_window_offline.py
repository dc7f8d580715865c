"""The main window without a fleet: state fed by hand, flushes run by hand.

Ticket validation and confirmation, CSV export, settings, theme, layout persistence.
"""

from __future__ import annotations

import csv

import pytest

from workers import protocol as P
from workers.protocol import OrderStatus, OrderType, Side
from app.orders import Outcome
from app.qt import QByteArray, Qt, QtWidgets
from app.settings import Settings, SettingsDialog
from app.window import MainWindow


def feed(w: MainWindow, sym="MSFT", n=3, last=100.0):
    m = w.state.market
    q = m.quotes.get(sym)
    seq = q.seq if q else 0
    for i in range(1, n + 1):
        p = last + i * 0.01
        m.on_tick(sym, seq + i, P.now_ns(), p, p - 0.01, p + 0.01, 100, 200, 1000 * (seq + i))
    w._flush()


def test_market_watch_rows_and_csv_export(make_window, tmp_path):
    w = make_window()
    feed(w, "MSFT")
    feed(w, "AAPL", last=200.0)
    assert sorted(w.market_watch.model.keys()) == ["AAPL", "MSFT"]
    assert [q.symbol for q in w.market_watch.visible_rows()] == ["AAPL", "MSFT"]  # sorted by symbol
    path = tmp_path / "mw.csv"
    assert w.market_watch.export_csv(str(path)) == 2
    rows = list(csv.DictReader(path.open()))
    assert {r["symbol"] for r in rows} == {"AAPL", "MSFT"} and float(rows[0]["last"]) > 0
    # the first symbol is shown on the chart and loaded into the ticket
    assert w.chart.symbol in ("AAPL", "MSFT") and w.ticket.symbol.currentText() == w.chart.symbol
    # the filter narrows the view and the export follows it
    w.market_watch.filter.setText("aap")
    assert w.market_watch.export_csv(str(path)) == 1


def test_ticket_validates_before_sending(make_window, qtbot):
    w = make_window(confirm_orders=False)
    sent = []
    w.session.orders.submit = lambda t: (sent.append(t), (True, "x"))[1]
    w.ticket.set_symbol("ZZZ")
    qtbot.mouseClick(w.ticket.buy, Qt.MouseButton.LeftButton)
    assert sent == [] and "No prices for ZZZ" in w.ticket.outcome.text()
    feed(w, "MSFT")
    w.ticket.set_symbol("MSFT")
    w.ticket.set_order_type(OrderType.LIMIT)
    w.ticket.limit.setValue(50.0)  # far outside the 5% band
    qtbot.mouseClick(w.ticket.buy, Qt.MouseButton.LeftButton)
    assert sent == [] and "band" in w.ticket.outcome.text()
    w.ticket.limit.setValue(99.5)
    w.ticket.qty.setValue(7)
    qtbot.mouseClick(w.ticket.sell, Qt.MouseButton.LeftButton)
    assert len(sent) == 1
    t = sent[0]
    assert (t.symbol, t.side, t.qty, t.order_type, t.limit_price) == ("MSFT", Side.SELL, 7, OrderType.LIMIT, 99.5)


def test_confirmation_can_refuse_and_can_be_turned_off(make_window, qtbot):
    w = make_window(confirm_orders=True)
    sent = []
    w.session.orders.submit = lambda t: (sent.append(t), (True, "x"))[1]
    feed(w, "MSFT")
    w.ticket.set_symbol("MSFT")
    qtbot.mouseClick(w.ticket.buy, Qt.MouseButton.LeftButton)
    box = w.findChild(QtWidgets.QMessageBox, "confirmOrder")
    assert box is not None and box.isVisible() and "BUY 100 MSFT" in box.text()
    qtbot.mouseClick(box.button(QtWidgets.QMessageBox.StandardButton.No), Qt.MouseButton.LeftButton)
    assert sent == [] and "not sent" in w.ticket.outcome.text()
    qtbot.mouseClick(w.ticket.buy, Qt.MouseButton.LeftButton)
    box = [b for b in w.findChildren(QtWidgets.QMessageBox, "confirmOrder") if b.isVisible()][0]
    box.checkBox().setChecked(True)  # "don't ask again"
    qtbot.mouseClick(box.button(QtWidgets.QMessageBox.StandardButton.Yes), Qt.MouseButton.LeftButton)
    assert len(sent) == 1 and not w.ui.confirm_orders
    assert not Settings(w.settings.path).load().confirm_orders  # persisted
    qtbot.mouseClick(w.ticket.buy, Qt.MouseButton.LeftButton)
    assert len(sent) == 2  # no dialog any more


def test_outcomes_are_shown_at_once(make_window):
    w = make_window()
    w._on_outcome(Outcome("rejected", "BUY 5 MSFT REJECTED: no liquidity", "c1", ok=False))
    assert w.ticket.outcome.property("tone") == "bad" and "no liquidity" in w.ticket.outcome.text()
    w._on_outcome(Outcome("unknown", "NO REPLY: order UNKNOWN", "c2", ok=False))
    assert w.ticket.outcome.property("tone") == "warn"


def test_blotters_follow_orders_and_fills(make_window):
    w = make_window()
    feed(w, "MSFT")
    st = w.state
    st.orders.apply_map({"client_order_id": "c1", "order_id": "O1", "symbol": "MSFT", "side": "buy", "qty": 10,
                         "filled_qty": 0, "avg_price": 0.0, "status": "new", "ts": 1, "order_type": "limit",
                         "limit_price": 99.0, "source": "manual"})
    w._flush()
    assert w.working.model.keys() == ["c1"] and w.history.model.keys() == ["c1"]
    st.orders.apply_map({"client_order_id": "c1", "status": "filled", "filled_qty": 10, "avg_price": 99.0, "ts": 2})
    st.on_fill(P.Fill(fill_id="F1", client_order_id="c1", order_id="O1", symbol="MSFT", side=Side.BUY, qty=10,
                      price=99.0, ts=P.now_ns(), source="manual"))
    w._flush()
    assert w.working.model.rowCount() == 0
    assert w.history.model.row_at(0).status is OrderStatus.FILLED
    assert w.fills.model.keys() == ["F1"] and w.positions.model.keys() == ["MSFT"]
    assert "+10" == w.positions.model.index(0, 1).data()
    assert "P&L" in w.pnl_label.text()


def test_settings_dialog_applies_limits_and_refuses_remote_endpoints(make_window, qtbot):
    w = make_window()
    dlg = SettingsDialog(w.ui, w.session.endpoints, w)
    qtbot.addWidget(dlg)
    dlg.max_qty.setValue(42)
    dlg.endpoint_edits["ticks"].setText("tcp://10.0.0.5:5555")
    dlg._accept()
    assert dlg.result_settings() is None and "not loopback" in dlg.error.text()
    dlg.endpoint_edits["ticks"].setText("tcp://127.0.0.1:6555")
    dlg._accept()
    s = dlg.result_settings()
    assert s is not None and s.risk["max_order_qty"] == 42 and s.endpoints == {"ticks": "tcp://127.0.0.1:6555"}
    w.apply_settings(s)
    assert w.session.orders.risk.limits.max_order_qty == 42
    loaded = Settings(w.settings.path).load()
    assert loaded.risk["max_order_qty"] == 42 and loaded.endpoints["ticks"] == "tcp://127.0.0.1:6555"


def test_theme_toggle_and_layout_are_persisted(make_window, qtbot):
    w = make_window()
    assert w.ui.theme == "dark"
    w.toggle_theme()
    assert w.ui.theme == "light" and Settings(w.settings.path).load().theme == "light"
    w.docks["signals"].raise_()
    w.docks["log"].hide()
    w.fills.view.horizontalHeader().setSectionHidden(2, True)
    w.fills.view.setColumnWidth(0, 123)
    w.close()
    w2 = make_window()
    assert w2.ui.theme == "light"
    assert not w2.docks["log"].isVisible() and w2.docks["signals"].isVisible()
    assert w2.fills.view.horizontalHeader().isSectionHidden(2)
    assert w2.fills.view.columnWidth(0) == 123
    assert isinstance(w2.settings.value("window/geometry"), QByteArray)


def test_hotkeys_are_bound(make_window):
    w = make_window()
    keys = {a.text(): [k.toString() for k in a.shortcuts()] for a in w.actions()}
    assert keys["Buy"] == ["Ctrl+B"] and keys["Sell"] == ["Ctrl+S"]
    assert keys["KILL SWITCH"] == ["F12", "Ctrl+Shift+K"] and keys["Cancel all working orders"] == ["Ctrl+Shift+X"]
    assert w.trading_toolbar.isVisible() and w.kill_button.isVisible()
    menu = w.createPopupMenu()
    assert w.trading_toolbar.toggleViewAction() not in menu.actions()  # the kill switch cannot be hidden


def test_limit_price_starts_from_the_market_as_it_is_now(make_window):
    w = make_window(confirm_orders=False)
    feed(w, "MSFT", n=3, last=100.0)
    w.ticket.set_symbol("MSFT")
    w.ticket.set_order_type(OrderType.MARKET)
    feed(w, "MSFT", n=3, last=120.0)  # the market moves while the ticket is on market orders
    w.ticket.set_order_type(OrderType.LIMIT)
    assert w.ticket.limit.value() == pytest.approx(120.03)
    w.ticket.limit.setValue(119.5)  # the trader's own price is not overwritten by new ticks
    feed(w, "MSFT", n=3, last=121.0)
    assert w.ticket.limit.value() == pytest.approx(119.5)


def test_a_long_warning_never_pushes_kill_switch_on_off_the_status_bar(make_window, qtbot):
    import logging

    w = make_window()
    w.resize(900, 700)  # a narrow window: every label is short of room
    w.session.control.kill_engaged = True
    w.status_bar.alert("KILL SWITCH: cancelled 3 of 3 working orders, paused sr-1 and sr-2, executor kill switch on; " * 6,
                       logging.WARNING)
    w._update_status()
    kill, bar = w.status_bar.kill, w.statusBar()

    def shown_whole():
        g = kill.geometry()
        whole = kill.fontMetrics().horizontalAdvance("KILL SWITCH ON")
        return kill.isVisible() and kill.text() == "KILL SWITCH ON" and g.width() >= whole and 0 <= g.left() and g.right() <= bar.width()

    qtbot.waitUntil(shown_whole, timeout=2000)


def test_a_crash_loop_at_start_up_is_shown_as_such(make_window):
    """A worker backing off is named in the status bar, its reason in the tooltip and the
    workers panel's state tip (the supervisor thread's snapshot is what the window shows)."""
    from workers.supervisor import WorkerSpec, WorkerView

    w = make_window()
    reason = "crash loop at start-up: 3 starts in a row died before ready (or within 1s of it); next try in 1.0s"
    w.session.sup.workers["exchange"] = WorkerView(spec=WorkerSpec("exchange", "exchange"), state="backoff", restarts=3,
                                                   reason=reason, quick_deaths=3)
    w._slow()
    assert "crash loop: exchange" in w.status_bar.workers.text()
    assert reason in w.status_bar.workers.toolTip()
    m = w.workers_panel.model
    r = m.row_for("exchange")
    state_col = [c.key for c in m.columns].index("state")
    assert m.index(r, state_col).data() == "BACKOFF"
    assert reason in m.index(r, state_col).data(Qt.ItemDataRole.ToolTipRole)


def test_the_market_settings_bound_the_window_at_start_and_when_changed(make_window):
    w = make_window(max_symbols=2, watchlist=["WL1"])
    m = w.state.market
    assert m.max_symbols == 2 and m.is_watched("WL1")
    for sym in ("AAA", "BBB", "CCC", "DDD", "WL1"):
        feed(w, sym)
    # at most two unwatched symbols held (the chart's first symbol is watched), the rest
    # refused, the watch list's held beside them
    assert m.held_unwatched() == 2 and "WL1" in m.quotes and "DDD" not in m.quotes
    assert m.refused_ticks == 3
    s = w.ui
    s.max_symbols, s.watchlist = 3, ["WL1", "ZZZ"]
    w.apply_settings(s)
    feed(w, "DDD")
    assert "DDD" in m.quotes and m.is_watched("ZZZ")
    # a symbol the window let go of leaves the ticket's list
    assert w.ticket.symbol.findText("BBB") >= 0
    m.evict("BBB")
    w._flush()
    assert w.ticket.symbol.findText("BBB") < 0 and w.ticket.symbol.findText("AAA") >= 0
    assert "BBB" not in [r.symbol for r in w.market_watch.model.rows()]


def test_an_open_confirmation_shows_the_market_as_it_is_now(make_window, qtbot):
    # found trying the window on a real display: a confirmation left open showed the prices
    # of when it opened while the market moved on under it
    w = make_window(confirm_orders=True)
    w.session.orders.submit = lambda t: (True, "x")
    feed(w, "MSFT", last=100.0)
    w.ticket.set_symbol("MSFT")
    qtbot.mouseClick(w.ticket.buy, Qt.MouseButton.LeftButton)
    box = [b for b in w.findChildren(QtWidgets.QMessageBox, "confirmOrder") if b.isVisible()][0]
    assert "last 100.03" in box.text()
    feed(w, "MSFT", n=1, last=120.0)
    assert "last 120.01" in box.text() and "100.03" not in box.text()
    qtbot.mouseClick(box.button(QtWidgets.QMessageBox.StandardButton.No), Qt.MouseButton.LeftButton)
    feed(w, "MSFT", n=1, last=130.0)  # answered: nothing holds the closed box
    assert w._confirm is None


def _settle(qtbot, w: MainWindow) -> None:
    for _ in range(3):  # the layout follows the window's size at the slow refresh
        qtbot.wait(20)
        w._slow()


def test_at_900x600_sell_is_whole_and_docks_grow_back_with_the_window(make_window, qtbot):
    w = make_window()
    feed(w, "MSFT")
    w.resize(1600, 960)
    _settle(qtbot, w)
    big = w.docks["positions"].width(), w.docks["working"].height()
    w.resize(900, 600)
    _settle(qtbot, w)
    sell = w.ticket.sell
    assert w.width() <= 900
    r = sell.geometry().translated(sell.parentWidget().mapTo(w, sell.parentWidget().rect().topLeft()))
    assert sell.isVisible() and w.rect().contains(r) and sell.width() >= sell.minimumSizeHint().width()
    assert w.ticket.rect().contains(sell.geometry())  # inside its dock, not cut at the dock's edge
    w.resize(1600, 960)
    _settle(qtbot, w)
    # no Reset layout needed: the docks take their share of the grown window again
    assert w.docks["positions"].width() >= 0.9 * big[0] and w.docks["working"].height() >= 0.9 * big[1]
    assert not w.ticket.compact


def test_quitting_with_a_position_or_working_order_asks(make_window, qtbot):
    w = make_window(confirm_quit=True)
    feed(w, "MSFT")
    w.state.positions.get("MSFT").apply(Side.BUY, 100, 100.0)
    w.close()
    box = w.findChild(QtWidgets.QMessageBox, "confirmQuit")
    assert w.isVisible() and box is not None and box.isVisible() and "1 open position" in box.text()
    qtbot.mouseClick(box.button(QtWidgets.QMessageBox.StandardButton.No), Qt.MouseButton.LeftButton)
    assert w.isVisible() and not w._closing
    w.close()
    box = [b for b in w.findChildren(QtWidgets.QMessageBox, "confirmQuit") if b.isVisible()][0]
    box.checkBox().setChecked(True)  # an expert: never ask again
    with qtbot.waitSignal(w.closed, timeout=5000):
        qtbot.mouseClick(box.button(QtWidgets.QMessageBox.StandardButton.Yes), Qt.MouseButton.LeftButton)
    assert not Settings(w.settings.path).load().confirm_quit


def test_quitting_flat_does_not_ask(make_window, qtbot):
    w = make_window(confirm_quit=True)
    feed(w, "MSFT")
    with qtbot.waitSignal(w.closed, timeout=5000):
        w.close()


def test_the_account_kill_switch_found_on_is_shown_on_and_release_clears_the_ticket(make_window, qtbot):
    w = make_window(confirm_orders=False)
    feed(w, "MSFT")
    w.ticket.set_symbol("MSFT")
    ctl = w.session.control
    ctl.apply_account(True, "pressed in another window")  # what get_positions_reply said at start
    assert ctl.kill_engaged and w.kill_button.text().startswith("KILL SWITCH ON") and w.release_action.isVisible()
    assert w.banner.isVisible() and "pressed in another window" in w.banner.text()
    sent = []
    w.session.orders.submit = lambda t: (sent.append(t), (True, "x"))[1]
    qtbot.mouseClick(w.ticket.buy, Qt.MouseButton.LeftButton)  # opens a position: refused in the ticket
    assert sent == [] and "kill switch" in w.ticket.outcome.text() and w.ticket.outcome.property("tone") == "bad"
    w._update_status()
    assert "KILL SWITCH ON" in w.status_bar.kill.text()
    ctl.apply_account(False)  # the exchange says off: the window's stays on until Release
    assert ctl.kill_engaged
    ctl._set_engaged(False, "")  # what Release does first
    assert w.kill_button.text() == "KILL SWITCH  F12" and not w.release_action.isVisible()
    assert "kill switch is on" not in w.ticket.outcome.text() and w.ticket.outcome.property("tone") == "ok"
    w._update_status()
    assert w.status_bar.kill.text() == ""


def test_an_ok_banner_goes_away_by_itself(make_window, qtbot, monkeypatch):
    import app.window as window_mod

    monkeypatch.setattr(window_mod, "BANNER_OK_S", 0.05)
    w = make_window()
    w.show_banner("kill switch released: account off", "ok")
    assert w.banner.isVisible()
    qtbot.waitUntil(lambda: not w.banner.isVisible(), timeout=2000)
    w.show_banner("KILL SWITCH INCOMPLETE", "bad")
    qtbot.wait(150)
    assert w.banner.isVisible()  # a problem stays until something replaces it


def test_f1_lists_every_key_one_per_row_with_the_chart_keys(make_window):
    from app.window import HOTKEYS

    w = make_window()
    dlg = w.show_hotkeys()
    table = dlg.findChild(QtWidgets.QTableWidget, "promptTable")
    keys = [table.item(r, 0).text() for r in range(table.rowCount())]
    assert keys == [k for k, _v, _g in HOTKEYS] and not table.wordWrap()
    assert {"Left / Right", "+ / -", "End or Home", "Ctrl+Shift+F", "Ctrl+Alt+F"} <= set(keys)
    dlg.close()


def test_the_limit_price_follows_the_symbol(make_window, qtbot):
    w = make_window()
    feed(w, "MSFT", last=100.0)
    feed(w, "AAPL", last=200.0)
    w.ticket.set_symbol("MSFT")
    w.ticket.set_order_type(OrderType.LIMIT)
    w.ticket.limit.setValue(99.5)
    w.ticket.symbol.setCurrentText("")
    qtbot.keyClicks(w.ticket.symbol, "AAPL")
    assert abs(w.ticket.limit.value() - 200.03) < 0.02  # AAPL's last, not MSFT's 99.50
    qtbot.keyClicks(w.ticket.symbol, "X")  # "AAPLX": no prices, no price kept
    assert w.ticket.limit.value() == 0.0


def test_flatten_sends_market_orders_that_close_each_position(make_window, qtbot):
    w = make_window(confirm_orders=False)
    feed(w, "MSFT")
    feed(w, "AAPL", last=200.0)
    w.state.positions.get("MSFT").apply(Side.BUY, 100, 100.0)
    w.state.positions.get("AAPL").apply(Side.SELL, 30, 200.0)
    assert [(t.symbol, t.side, t.qty, t.order_type) for t in w.flatten_tickets(["AAPL", "MSFT", "GOOG"])] == [
        ("AAPL", Side.BUY, 30, OrderType.MARKET), ("MSFT", Side.SELL, 100, OrderType.MARKET)]


def test_the_ticks_dot_is_not_green_while_no_symbol_ticks(make_window):
    w = make_window()
    s = w.state.streams["ticks"]
    s.connected = True
    feed(w, "MSFT")
    m = w.state.market
    w.status_bar.refresh(w.state, {"decode_errors": 0, "dropped": 0, "restarts": 0}, {}, False,
                         __import__("app.statusbar", fromlist=["UiTimes"]).UiTimes(0, 0, None))
    dot = w.status_bar.streams._segments[0][1]
    m.stale_symbols = len(m.quotes)  # every quote stale (what the rate pass decides)
    w.status_bar.refresh(w.state, {"decode_errors": 0, "dropped": 0, "restarts": 0}, {}, False,
                         __import__("app.statusbar", fromlist=["UiTimes"]).UiTimes(0, 0, None))
    from app.models.table import RecordTableModel
    assert w.status_bar.streams._segments[0][1] == RecordTableModel.tones.get("warn") != RecordTableModel.tones.get("up")
    del dot


def test_params_dialog_names_parameters_and_offers_the_modes(make_window, qtbot):
    from app.panels.workers import StrategyParamsDialog

    w = make_window()
    dlg = StrategyParamsDialog("sr-bounce", {"mode": "bounce", "breakout_bps": 5.0, "allow_short": True}, w)
    mode = dlg.findChild(QtWidgets.QComboBox, "param_mode")
    assert mode is not None and {mode.itemText(i) for i in range(mode.count())} >= {"bounce", "breakout"}
    labels = {lbl.text() for lbl in dlg.findChildren(QtWidgets.QLabel)}
    assert "Breakout (bps)" in labels and "breakout_bps" not in labels
    mode.setCurrentText("breakout")
    dlg._accept()
    assert dlg.changes == {"mode": "breakout"}


def test_moved_prices_wait_for_a_quote_flush_but_orders_and_fills_do_not(make_window):
    """Ticking prices repaint at about 10 Hz (QUOTE_EVERY flushes), orders and fills at the
    next flush: a price held back is shown, not lost, at the next quote flush."""
    from app.window import QUOTE_EVERY

    assert QUOTE_EVERY > 1
    w = make_window()
    feed(w, "MSFT", last=100.0)
    m = w.state.market
    seq = m.quotes["MSFT"].seq
    m.on_tick("MSFT", seq + 1, P.now_ns(), 123.45, 123.44, 123.46, 100, 200, 1)
    w.state.orders.apply_map({"client_order_id": "c9", "order_id": "O9", "symbol": "MSFT", "side": "buy", "qty": 5,
                              "filled_qty": 0, "avg_price": 0.0, "status": "new", "ts": 1, "order_type": "limit",
                              "limit_price": 99.0, "source": "manual"})
    repainted = []
    w.market_watch.model.dataChanged.connect(lambda a, b, *_: repainted.append((a.row(), b.row())))
    w._flush(quotes=False)
    assert w.working.model.keys() == ["c9"]  # the order at once
    assert repainted == []  # the price not yet
    w._flush(quotes=True)
    assert repainted == [(0, 0)]
    last_col = [c.key for c in w.market_watch.model.columns].index("last")
    assert w.market_watch.model.index(0, last_col).data() == "123.45"
