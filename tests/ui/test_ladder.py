"""The price ladder (app/panels/ladder.py) in the real window: clicked, dragged and keyed the
way a trader does, at the geometry of a price's row and column.

Offline tests feed the state by hand (ticks, depth, orders) and catch what the window hands
to the order service; the last test runs a real fleet (the simulated market's depth) and
places an order with a click that must appear at its price.
"""

from __future__ import annotations

import pytest

from tests.procs import scaled_ms
from workers import protocol as P
from workers.protocol import OrderStatus, OrderType, Side
from app.feeds import TickDecoder
from app.panels.ladder import ASK, BID, BUY_ORDERS, PRICE, SELL_ORDERS
from app.qt import Qt, QtCore, QtGui, QtWidgets
from app.state import OrderRow
from app.window import MainWindow

EPOCH = 42
LEFT = Qt.MouseButton.LeftButton


@pytest.fixture
def make_window(make_window):
    """The shared offline window (tests/ui/conftest.py), ladder orders sent without asking."""
    return lambda **ui_changes: make_window(**{"confirm_orders": False, **ui_changes})


class Orders:
    """What the window handed to the order service."""

    def __init__(self, w: MainWindow):
        self.sent, self.cancelled, self.replaced = [], [], []
        svc = w.session.orders
        svc.submit = lambda t: (self.sent.append(t), (P_OK, f"manual-{len(self.sent)}"))[1]
        svc.cancel = lambda coid: self.cancelled.append(coid)
        svc.replace = lambda coid, **kw: self.replaced.append((coid, kw))


class _Ok:
    reason = ""

    def __bool__(self) -> bool:
        return True


P_OK = _Ok()


def tick(w: MainWindow, last: float, sym: str = "MSFT", bid_size: int = 300, ask_size: int = 400) -> None:
    m = w.state.market
    q = m.quotes.get(sym)
    seq = (q.seq if q else 0) + 1
    m.on_tick(sym, seq, P.now_ns(), last, round(last - 0.01, 2), round(last + 0.01, 2), bid_size, ask_size,
              1000 * seq, EPOCH)


def depth(w: MainWindow, best_bid: float, seq: int, sym: str = "MSFT", epoch: int = EPOCH, base: int = 100) -> P.Depth:
    bids = [(round(best_bid - i * 0.01, 2), base * (i + 1)) for i in range(10)]
    asks = [(round(best_bid + 0.02 + i * 0.01, 2), base * (i + 2)) for i in range(10)]
    d = P.Depth(sym, seq, P.now_ns(), bids, asks, epoch=epoch)
    TickDecoder(w.state)([P.pub(d)])  # through the feed's decoder, as from the socket
    return d


def market(w: MainWindow, last: float = 100.0, seq: int = 1) -> None:
    """A quote and then its book (the book newer than the quote, as the gateway sends them)."""
    tick(w, last)
    depth(w, round(last - 0.01, 2), seq)
    w._flush()


def at(w: MainWindow, price: float, column: int) -> QtCore.QPoint:
    r = w.ladder.view.cell_rect(price, column)
    assert r is not None, f"{price} is not on the ladder"
    return r.center()


def own_order(w: MainWindow, side: Side, price: float, qty: int = 100, coid: str = "manual-own-1",
              order_type: OrderType = OrderType.LIMIT, status: OrderStatus = OrderStatus.NEW) -> OrderRow:
    row = OrderRow(client_order_id=coid, symbol="MSFT", side=side, qty=qty, order_type=order_type,
                   limit_price=price if order_type.has_limit else None,
                   stop_price=price if order_type is OrderType.STOP else None, source="manual", status=status)
    w.state.orders.add(row)
    w._flush()
    return row


def test_sizes_shown_match_the_depth_fed(make_window):
    w = make_window()
    market(w, 100.0)
    v = w.ladder.view
    assert w.ladder.symbol == "MSFT"  # followed the chart's first symbol
    assert v.bids == {9999 - i: 100 * (i + 1) for i in range(10)}
    assert v.asks == {10001 + i: 100 * (i + 2) for i in range(10)}
    assert (v.best_bid, v.best_ask, v.last) == (9999, 10001, 10000)
    for price in (99.99, 99.95, 100.01, 100.05):  # the rows are on screen, where the sizes are painted
        assert v.cell_rect(price, BID) is not None
    # a newer tick moves the top of the book before the next depth message
    tick(w, 100.02, bid_size=77)
    w._flush()
    assert v.bids[10001] == 77 and 10001 not in v.asks and v.last == 10002


def test_click_in_the_bid_column_places_a_buy_limit_at_that_price(make_window, qtbot):
    w = make_window()
    o = Orders(w)
    market(w)
    w.ladder.qty.setValue(300)
    qtbot.mouseClick(w.ladder.view, LEFT, pos=at(w, 99.95, BID))
    t = o.sent[-1]
    assert (t.symbol, t.side, t.qty, t.order_type, t.limit_price) == ("MSFT", Side.BUY, 300, OrderType.LIMIT, 99.95)
    # the empty buy-order cell is the bid side too
    qtbot.mouseClick(w.ladder.view, LEFT, pos=at(w, 99.97, BUY_ORDERS))
    assert (o.sent[-1].side, o.sent[-1].limit_price) == (Side.BUY, 99.97)
    assert "sent" in w.ladder.message.text()


def test_click_in_the_ask_column_places_a_sell_limit(make_window, qtbot):
    w = make_window()
    o = Orders(w)
    market(w)
    qtbot.mouseClick(w.ladder.view, LEFT, pos=at(w, 100.04, ASK))
    t = o.sent[-1]
    assert (t.side, t.order_type, t.limit_price, t.qty) == (Side.SELL, OrderType.LIMIT, 100.04, w.ticket.qty.value())
    # the price column places nothing (it moves the cursor)
    qtbot.mouseClick(w.ladder.view, LEFT, pos=at(w, 100.03, PRICE))
    assert len(o.sent) == 1 and w.ladder.view.cursor == 10003


def test_click_on_ones_own_order_cancels_it(make_window, qtbot):
    w = make_window()
    o = Orders(w)
    market(w)
    own_order(w, Side.BUY, 99.96, qty=200)
    cell = w.ladder.view.own[(Side.BUY, 9996)]
    assert cell.qty == 200 and cell.coids == ["manual-own-1"]
    qtbot.mouseClick(w.ladder.view, LEFT, pos=at(w, 99.96, BUY_ORDERS))
    assert o.cancelled == ["manual-own-1"] and not o.sent
    # a strategy's order is shown at its price, but it is not the trader's: a click on it
    # neither cancels it nor places an order on top of it, and says whose it is
    w.state.orders.add(OrderRow(client_order_id="strat-1", symbol="MSFT", side=Side.SELL, qty=5,
                                order_type=OrderType.LIMIT, limit_price=100.05, source="strategy:sr-bounce",
                                status=OrderStatus.NEW))
    w._flush()
    view = w.ladder.view
    assert (Side.SELL, 10005) not in view.own
    assert view.others[(Side.SELL, 10005)].qty == 5 and view.others[(Side.SELL, 10005)].coids == ["strat-1"]
    qtbot.mouseClick(view, LEFT, pos=at(w, 100.05, SELL_ORDERS))
    assert o.cancelled == ["manual-own-1"] and not o.sent and not o.replaced
    assert "sr-bounce" in w.ladder.message.text() and "theirs" in w.ladder.message.text()
    # nor is it dragged, nor picked up by M, nor cancelled by Delete at its row
    qtbot.mousePress(view, LEFT, pos=at(w, 100.05, SELL_ORDERS))
    qtbot.mouseRelease(view, LEFT, pos=at(w, 100.07, SELL_ORDERS))
    view.setFocus()
    view.cursor = 10005
    for key in (Qt.Key.Key_Delete, Qt.Key.Key_M, Qt.Key.Key_Up, Qt.Key.Key_M):
        qtbot.keyClick(view, key)
    assert o.cancelled == ["manual-own-1"] and not o.replaced and view.picked is None
    # a click beside it, in the empty sell cell of another row, still places a sell limit
    qtbot.mouseClick(view, LEFT, pos=at(w, 100.06, SELL_ORDERS))
    assert [(t.side, t.limit_price) for t in o.sent] == [(Side.SELL, 100.06)]


def test_drag_own_order_to_another_price_replaces_it(make_window, qtbot):
    w = make_window()
    o = Orders(w)
    market(w)
    own_order(w, Side.SELL, 100.05)
    view = w.ladder.view
    start, end = at(w, 100.05, SELL_ORDERS), at(w, 100.08, SELL_ORDERS)
    qtbot.mousePress(view, LEFT, pos=start)
    mid = QtCore.QPoint(end.x(), (start.y() + end.y()) // 2)
    qtbot.mouseMove(view, mid)
    qtbot.mouseMove(view, end)
    qtbot.mouseRelease(view, LEFT, pos=end)
    assert o.replaced == [("manual-own-1", {"limit_price": 100.08})] and not o.cancelled and not o.sent
    # a stop moves its stop price
    own_order(w, Side.SELL, 99.96, coid="manual-stop", order_type=OrderType.STOP)
    qtbot.mousePress(view, LEFT, pos=at(w, 99.96, SELL_ORDERS))
    qtbot.mouseRelease(view, LEFT, pos=at(w, 99.94, SELL_ORDERS))
    assert o.replaced[-1] == ("manual-stop", {"stop_price": 99.94})
    assert view.own[(Side.SELL, 9996)].stop  # marked S


def test_keys_place_cancel_move_and_centre(make_window, qtbot):
    w = make_window()
    o = Orders(w)
    market(w)
    view = w.ladder.view
    view.setFocus()
    qtbot.keyClick(view, Qt.Key.Key_Down)  # the cursor starts at the last trade
    qtbot.keyClick(view, Qt.Key.Key_Down)
    assert view.cursor == 9998
    qtbot.keyClick(view, Qt.Key.Key_B)
    assert (o.sent[-1].side, o.sent[-1].limit_price) == (Side.BUY, 99.98)
    qtbot.keyClick(view, Qt.Key.Key_Up, Qt.KeyboardModifier.ShiftModifier)  # ten ticks
    assert view.cursor == 10008
    qtbot.keyClick(view, Qt.Key.Key_S)
    assert (o.sent[-1].side, o.sent[-1].limit_price) == (Side.SELL, 100.08)
    # Delete cancels the trader's orders at the cursor (both sides)
    own_order(w, Side.SELL, 100.08, coid="manual-a")
    own_order(w, Side.SELL, 100.08, coid="manual-b")
    assert view.own[(Side.SELL, 10008)].qty == 200
    qtbot.keyClick(view, Qt.Key.Key_Delete)
    assert sorted(o.cancelled) == ["manual-a", "manual-b"]
    # M picks them up, the cursor moves, M puts them down: a replace each
    qtbot.keyClick(view, Qt.Key.Key_M)
    qtbot.keyClick(view, Qt.Key.Key_Up)
    qtbot.keyClick(view, Qt.Key.Key_Up)
    qtbot.keyClick(view, Qt.Key.Key_M)
    assert sorted(o.replaced) == [("manual-a", {"limit_price": 100.1}), ("manual-b", {"limit_price": 100.1})]
    # PageUp scrolls (Auto-centre off), C centres on the last trade again
    qtbot.keyClick(view, Qt.Key.Key_PageUp)
    assert view.centre > 10000 + 5 and not w.ladder.auto.isChecked()
    qtbot.keyClick(view, Qt.Key.Key_C)
    assert view.centre == 10000 and view.cursor == 10000 and w.ladder.auto.isChecked()
    # Ctrl+B and Ctrl+S are the window's (the ticket's Buy and Sell), never the ladder's B and S
    sent = len(o.sent)
    qtbot.keyClick(view, Qt.Key.Key_B, Qt.KeyboardModifier.ControlModifier)
    qtbot.keyClick(view, Qt.Key.Key_S, Qt.KeyboardModifier.ControlModifier)
    assert not [t for t in o.sent[sent:] if t.order_type is OrderType.LIMIT]


def test_recentres_when_the_last_trade_leaves_the_middle(make_window, qtbot):
    w = make_window()
    market(w, 100.0)
    view = w.ladder.view
    band = int(view.rows() * 0.25)
    tick(w, round(100.0 + (band - 1) * 0.01, 2))  # inside the band: the ladder stays
    w._flush()
    assert view.centre == 10000
    tick(w, 100.0 + (band + 3) * 0.01)
    w._flush()
    assert view.centre == 10000 + band + 3 and view.cell_rect(100.0 + (band + 3) * 0.01, PRICE) is not None
    # the wheel scrolls by hand: Auto-centre goes off and a move does not re-centre
    ev_pos = at(w, view.price_of(view.centre), PRICE)
    e = QtGui.QWheelEvent(QtCore.QPointF(ev_pos), QtCore.QPointF(view.mapToGlobal(ev_pos)), QtCore.QPoint(),
                          QtCore.QPoint(0, 240), Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier,
                          Qt.ScrollPhase.NoScrollPhase, False)
    QtWidgets.QApplication.sendEvent(view, e)  # two notches up
    assert view.centre == 10000 + band + 3 + 6 and not w.ladder.auto.isChecked()
    tick(w, 99.0)
    w._flush()
    assert view.centre == 10000 + band + 3 + 6
    qtbot.mouseClick(w.ladder.centre_button, LEFT)
    assert view.centre == 9900 and w.ladder.auto.isChecked()


def test_the_rows_stay_under_the_pointer(make_window):
    """Auto-centre does not move the prices under the mouse (a click must land where the trader
    aimed) unless the last trade leaves the screen; leaving the ladder re-centres."""
    w = make_window()
    market(w, 100.0)
    view = w.ladder.view
    band = int(view.rows() * 0.25)
    p = QtCore.QPointF(5, 5)
    QtWidgets.QApplication.sendEvent(view, QtGui.QEnterEvent(p, p, view.mapToGlobal(p)))
    assert view.hovered
    tick(w, 100.0 + (band + 2) * 0.01)
    w._flush()
    assert view.centre == 10000
    QtWidgets.QApplication.sendEvent(view, QtCore.QEvent(QtCore.QEvent.Type.Leave))
    assert not view.hovered and view.centre == 10000 + band + 2
    QtWidgets.QApplication.sendEvent(view, QtGui.QEnterEvent(p, p, view.mapToGlobal(p)))
    tick(w, 99.0)  # off the screen: shown whatever the pointer
    w._flush()
    assert view.centre == 9900


def test_depth_of_another_epoch_replaces_an_older_seq_is_dropped(make_window):
    w = make_window()
    tick(w, 100.0)
    depth(w, 99.99, seq=10)
    w._flush()
    v = w.ladder.view
    assert v.bids[9999] == 100
    depth(w, 99.50, seq=9)  # late: same epoch, older seq
    depth(w, 99.60, seq=10)  # duplicate
    w._flush()
    assert 9950 not in v.bids and 9960 not in v.bids and w.state.depth.late == 2
    depth(w, 98.00, seq=1, epoch=EPOCH + 1, base=7)  # the gateway restarted
    w._flush()
    assert v.bids[9800] == 7 and 9999 not in v.bids and w.state.depth.restarts == 1


def test_confirmation_follows_the_setting_and_the_ladders_own_box(make_window, qtbot):
    w = make_window(confirm_orders=True)
    o = Orders(w)
    market(w)
    assert w.ladder.confirm.isChecked()
    qtbot.mouseClick(w.ladder.view, LEFT, pos=at(w, 99.95, BID))
    box = w.findChild(QtWidgets.QMessageBox, "confirmOrder")
    assert box is not None and box.isVisible() and "BUY 100 MSFT @ 99.95 LMT" in box.text() and not o.sent
    box.checkBox().setChecked(True)  # don't ask again: the ladder's box goes off, not the setting
    qtbot.mouseClick(box.button(QtWidgets.QMessageBox.StandardButton.Yes), LEFT)
    assert o.sent[-1].limit_price == 99.95
    assert not w.ladder.confirm.isChecked() and w.ui.confirm_orders
    assert str(w.settings.value("ladder/confirm")).lower() == "false"
    qtbot.mouseClick(w.ladder.view, LEFT, pos=at(w, 100.03, ASK))
    assert o.sent[-1].limit_price == 100.03  # sent at once
    # with the setting off, the ladder's box alone does not ask
    w.ladder.confirm.setChecked(True)
    w.ui.confirm_orders = False
    qtbot.mouseClick(w.ladder.view, LEFT, pos=at(w, 100.04, ASK))
    assert o.sent[-1].limit_price == 100.04


def test_symbol_follows_the_chart_or_is_chosen_in_the_ladder(make_window, qtbot):
    w = make_window()
    market(w)
    tick(w, 200.0, sym="AAPL")
    w._flush()
    w.market_watch.select_symbol("AAPL")
    w._flush()
    assert w.chart.symbol == "AAPL" and w.ladder.symbol == "AAPL" and w.state.depth.wanted == {"AAPL"}
    # chosen in the ladder: it stays there while the chart moves on
    box = w.ladder.symbol_box
    box.setCurrentIndex(box.findText("MSFT"))
    box.activated.emit(box.currentIndex())
    assert w.ladder.symbol == "MSFT" and not w.ladder.follow.isChecked()
    w.market_watch.select_symbol("AAPL")
    w._flush()
    assert w.ladder.symbol == "MSFT"
    w.ladder.follow.setChecked(True)
    w._flush()
    assert w.ladder.symbol == w.chart.symbol


def test_repaints_only_when_its_symbol_changed(make_window):
    w = make_window()
    market(w)
    asked = w.ladder.repaints_asked
    w._flush()
    w._flush()
    assert w.ladder.repaints_asked == asked  # nothing moved
    tick(w, 200.0, sym="AAPL")  # another symbol
    w._flush()
    assert w.ladder.repaints_asked == asked
    tick(w, 100.01)
    w._flush()
    assert w.ladder.repaints_asked == asked + 1


def test_f1_lists_the_ladder_keys(make_window):
    from app.window import HOTKEYS

    keys = [k for k, _v, g in HOTKEYS if g == "Ladder"]
    assert {"B / S", "Delete", "C", "M, then M or Enter", "Up / Down (Shift: 10)"} <= set(keys)
    assert "Ctrl+9" in [k for k, _v, _g in HOTKEYS]
    w = make_window()
    w.focus_panel("ladder", w.ladder.view)
    assert w.docks["ladder"].isVisible()


# ----------------------------------------------------------------------------- a real fleet

from tests.ui.test_window import desk  # noqa: E402,F401  (the real fleet's fixture)

TIMEOUT = scaled_ms(10_000)


@pytest.mark.slow
def test_live_depth_and_a_click_places_an_order_at_its_price(qtbot, desk):
    w = desk.window
    lad = w.ladder
    lad.follow.setChecked(False)
    lad.set_symbol("MSFT")
    qtbot.waitUntil(lambda: w.state.depth.get("MSFT") is not None, timeout=TIMEOUT)  # the snapshot's, or live
    first = w.state.depth.get("MSFT").seq
    qtbot.waitUntil(lambda: w.state.depth.get("MSFT").seq >= first + 3, timeout=TIMEOUT)  # live, subscribed
    book = w.state.depth.get("MSFT")
    assert len(book.bids) >= 5 and len(book.asks) == P.MAX_DEPTH_LEVELS
    qtbot.waitUntil(lambda: len(lad.view.asks) >= 5 and len(lad.view.bids) >= 5, timeout=TIMEOUT)
    # a buy limit twenty ticks under the best bid rests; the ladder is scrolled there by hand
    lad.auto.setChecked(False)
    t = lad.view.best_bid - 20
    lad.view.centre_on(t)
    price = lad.view.price_of(t)
    qtbot.mouseClick(lad.view, LEFT, pos=at(w, price, BID))
    mine = lambda: [o for o in w.state.orders.orders.values() if o.source == "manual" and o.symbol == "MSFT"]  # noqa: E731
    qtbot.waitUntil(lambda: any(o.status is OrderStatus.NEW for o in mine()), timeout=TIMEOUT)
    o = mine()[0]
    assert (o.side, o.order_type, o.limit_price) == (Side.BUY, OrderType.LIMIT, price)
    qtbot.waitUntil(lambda: (Side.BUY, t) in lad.view.own, timeout=TIMEOUT)
    assert lad.view.own[(Side.BUY, t)].coids == [o.client_order_id]
    # a click on it cancels it at the exchange
    qtbot.mouseClick(lad.view, LEFT, pos=at(w, price, BUY_ORDERS))
    qtbot.waitUntil(lambda: o.status is OrderStatus.CANCELLED, timeout=TIMEOUT)
    qtbot.waitUntil(lambda: (Side.BUY, t) not in lad.view.own, timeout=TIMEOUT)


def test_a_ladder_per_symbol(make_window, qtbot, tmp_path):
    """View > New price ladder (Ctrl+Shift+D) opens another ladder on the chart's symbol, its
    own dock beside the first; each trades its own symbol; closing its dock removes it (its
    symbol no longer held for it); the open ones come back at the next start."""
    w = make_window()
    o = Orders(w)
    market(w)  # MSFT
    tick(w, 200.0, sym="AAPL")
    w._flush()
    w.resize(1000, 700)  # a laptop's window: two ladders side by side would not fit beside the rest
    qtbot.waitUntil(lambda: w.width() == 1000, timeout=scaled_ms(2000))
    w.activateWindow()
    qtbot.waitUntil(w.isActiveWindow, timeout=scaled_ms(2000))
    w.ladder.view.setFocus()
    qtbot.keyClick(w.ladder.view, Qt.Key.Key_D, Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
    assert len(w.ladders) == 2
    second = w.ladders[1]
    dock = w.findChild(QtWidgets.QDockWidget, "dock_ladder2")
    assert dock is not None and dock.widget() is second and dock.isVisible()
    QtWidgets.QApplication.processEvents()
    assert w.width() == 1000 and w.minimumSizeHint().width() <= 1000  # not grown: a tab of the first instead
    assert second.symbol == "MSFT" and not second.follow.isChecked()
    second.symbol_box.setEditText("AAPL")
    second._symbol_typed()
    w._flush()
    assert second.symbol == "AAPL" and w.ladder.symbol == "MSFT"
    # each places on its own symbol, outcomes on its own line
    qtbot.mouseClick(second.view, LEFT, pos=second.view.cell_rect(199.99, BID).center())
    qtbot.mouseClick(w.ladder.view, LEFT, pos=at(w, 99.99, BID))
    assert [(t.symbol, t.side, t.limit_price) for t in o.sent] == [("AAPL", Side.BUY, 199.99), ("MSFT", Side.BUY, 99.99)]
    assert "AAPL" in second.message.text() and "MSFT" in w.ladder.message.text()
    # both repaint with the flush; the first keeps following the chart
    tick(w, 200.05, sym="AAPL")
    w._flush()
    assert second.view.last == 20005
    # kept for the next start
    w.save_layout()
    assert w.settings.value("ladder/extra") == "AAPL"
    again = make_window()  # the next start, on the same settings
    assert len(again.ladders) == 2 and again.ladders[1].symbol == "AAPL" and not again.ladders[1].follow.isChecked()
    assert again.findChild(QtWidgets.QDockWidget, "dock_ladder2").isVisible()
    # closed: gone, its symbol's book no longer wanted for it
    dock.close()
    qtbot.waitUntil(lambda: len(w.ladders) == 1, timeout=scaled_ms(2000))
    assert "ladder2" not in w.docks and w.settings.value("ladder/extra") == ""
    assert second.on_outcome not in w.session.orders.listeners
