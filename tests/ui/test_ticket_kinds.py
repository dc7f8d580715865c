"""The ticket's order kinds and the working orders' modify-in-place, clicked as a trader does.

Offline (the window without a fleet, state fed by hand, the order service's client a script
that answers as the exchange gateway does): what the ticket's fields put in send_order,
refusals in the trader's words, presets, one tick up/down, Bid/Mid/Ask, the confirmation's
notional and distance, a double-click or F2 in the working orders sending replace_order, a
bracket's children under their parent.  Then one test over a real fleet: a stop order from
the ticket, moved in the blotter with a replace the gateway carries out.
"""

from __future__ import annotations

import msgspec
import pytest

from tests.procs import scaled_ms
from tests.ui.test_window import TIMEOUT, desk  # noqa: F401  (fixtures)
from tests.ui.test_window_offline import feed
from tests.unit.test_app_orders import FakeClient
from workers import protocol as P
from workers.protocol import OrderStatus, OrderType, Side, TimeInForce
from app.models.table import RowRole
from app.qt import Qt, QtCore, QtWidgets
from app.window import MainWindow

WAIT = scaled_ms(3_000)


class Exchange:
    """Answers the window's requests as the gateway would: orders accepted (NEW), replaces
    carried out on the order as it was sent (or refused with ``refuse``)."""

    def __init__(self):
        self.orders: dict[str, P.OrderUpdate] = {}
        self.refuse = ""

    def __call__(self, msg):
        if isinstance(msg, P.SendOrder):
            terms = {k: getattr(msg, k) for k in P.ORDER_TERMS}
            self.orders[msg.client_order_id] = P.OrderUpdate(
                client_order_id=msg.client_order_id, order_id=f"O{len(self.orders) + 1}", filled_qty=0, avg_price=0.0,
                status=OrderStatus.NEW, ts=P.now_ns(), source=msg.source, **terms)
            return P.SendOrderReply(ok=True, client_order_id=msg.client_order_id, order_id=f"O{len(self.orders)}",
                                    status=OrderStatus.NEW, ts=P.now_ns())
        if isinstance(msg, P.ReplaceOrder):
            o = self.orders.get(msg.orig_client_order_id)
            if o is None or self.refuse:
                return P.ReplaceOrderReply(ok=False, reason=self.refuse or "unknown order",
                                           client_order_id=msg.orig_client_order_id, replace_id=msg.client_order_id)
            changes = {k: v for k in ("qty", "limit_price", "stop_price") if (v := getattr(msg, k)) is not None}
            o = self.orders[o.client_order_id] = msgspec.structs.replace(o, ts=P.now_ns(), **changes)
            return P.ReplaceOrderReply(ok=True, client_order_id=o.client_order_id, order_id=o.order_id, status=o.status,
                                       replace_id=msg.client_order_id, order=o)
        return None

    def add(self, w: MainWindow, **fields) -> P.OrderUpdate:
        """A working order the exchange and the window both know (as after a sync)."""
        base = dict(client_order_id=f"manual-t-{len(self.orders) + 1}", order_id=f"O{len(self.orders) + 1}", symbol="MSFT",
                    side=Side.BUY, qty=100, filled_qty=0, avg_price=0.0, status=OrderStatus.NEW, ts=P.now_ns(),
                    order_type=OrderType.LIMIT, limit_price=99.5, source="manual")
        up = P.OrderUpdate(**(base | fields))
        self.orders[up.client_order_id] = up
        w.state.orders.apply_update(up)
        w._flush()
        return up


@pytest.fixture
def desk_offline(make_window, qloop):  # noqa: F811
    """A window (no fleet, no confirmation) whose order service talks to :class:`Exchange`."""
    w = make_window(confirm_orders=False)
    ex = Exchange()
    w.session.orders.client = FakeClient(ex)
    w.session.orders.synced = True
    feed(w, "MSFT", last=100.0)  # last 100.03, bid 100.02, ask 100.04
    w.ticket.set_symbol("MSFT")
    return w, ex


def sent(w: MainWindow, kind) -> list:
    return [m for m in w.session.orders.client.sent if isinstance(m, kind)]


def choose(qtbot, combo: QtWidgets.QComboBox, text: str) -> None:
    """Pick an item the way the keyboard does: Down from the first until it shows ``text``."""
    combo.setFocus()
    qtbot.keyClick(combo, Qt.Key.Key_Home)
    for _ in range(combo.count()):
        if combo.currentText() == text:
            return
        qtbot.keyClick(combo, Qt.Key.Key_Down)
    assert combo.currentText() == text


def type_into(qtbot, spin: QtWidgets.QAbstractSpinBox, text: str) -> None:
    """Select what the field holds and type over it, then Enter."""
    qtbot.mouseClick(spin, Qt.MouseButton.LeftButton)
    qtbot.keyClick(spin, Qt.Key.Key_A, Qt.KeyboardModifier.ControlModifier)
    qtbot.keyClicks(spin, text)
    qtbot.keyClick(spin, Qt.Key.Key_Return)


def click(qtbot, widget) -> None:
    qtbot.mouseClick(widget, Qt.MouseButton.LeftButton)


def test_the_ticket_fields_go_into_send_order(desk_offline, qtbot):
    w, _ex = desk_offline
    t = w.ticket
    choose(qtbot, t.order_type, "Stop limit")
    assert t.limit.isEnabled() and t.stop.isEnabled() and not t.trail.isEnabled()
    type_into(qtbot, t.stop, "100.10")
    click(qtbot, t.ask_button)  # the ask into the limit (a stop limit's limit)
    assert t.limit.value() == pytest.approx(100.04) and t.stop.value() == pytest.approx(100.10)
    choose(qtbot, t.tif, "GTC")
    type_into(qtbot, t.take_profit, "20")  # ticks
    type_into(qtbot, t.stop_loss, "10")
    click(qtbot, t.preset_buttons[1])  # 500
    click(qtbot, t.buy)
    qtbot.waitUntil(lambda: bool(sent(w, P.SendOrder)), timeout=WAIT)
    req = sent(w, P.SendOrder)[0]
    assert (req.symbol, req.side, req.qty, req.order_type) == ("MSFT", Side.BUY, 500, OrderType.STOP_LIMIT)
    assert (req.stop_price, req.limit_price, req.tif) == (pytest.approx(100.10), pytest.approx(100.04), TimeInForce.GTC)
    # the bracket's legs around the entry (the limit): 20 ticks above, 10 below
    assert req.take_profit_price == pytest.approx(100.24) and req.stop_loss_price == pytest.approx(99.94)
    assert req.trail_amount is None and req.trail_pct is None
    qtbot.waitUntil(lambda: "accepted" in t.outcome.text(), timeout=WAIT)

    # a trailing stop in percent; the bracket's offsets as a price distance
    choose(qtbot, t.order_type, "Trailing stop")
    assert t.stop_stack.currentWidget() is t.trail_box and t.stop_label.text() == "Trail"
    choose(qtbot, t.trail_unit, "%")
    type_into(qtbot, t.trail, "1.5")
    choose(qtbot, t.bracket_unit, "price")
    assert t.take_profit.value() == pytest.approx(0.20)  # 20 ticks kept as their distance
    type_into(qtbot, t.take_profit, "0")
    type_into(qtbot, t.stop_loss, "0")
    click(qtbot, t.sell)
    qtbot.waitUntil(lambda: len(sent(w, P.SendOrder)) == 2, timeout=WAIT)
    req = sent(w, P.SendOrder)[1]
    assert (req.side, req.order_type, req.trail_pct, req.trail_amount, req.stop_price, req.limit_price) == (
        Side.SELL, OrderType.TRAILING_STOP, 1.5, None, None, None)
    assert req.take_profit_price is None and req.stop_loss_price is None and req.tif is TimeInForce.GTC


def test_each_bracket_leg_has_its_own_tif(desk_offline, qtbot):
    w, _ex = desk_offline
    t = w.ticket
    choose(qtbot, t.order_type, "Limit")
    # a leg's TIF is there only while the leg is on
    assert not t.take_profit_tif.isVisible() and not t.stop_loss_tif.isVisible()
    type_into(qtbot, t.take_profit, "20")
    assert t.take_profit_tif.isVisible() and not t.stop_loss_tif.isVisible()
    type_into(qtbot, t.stop_loss, "10")
    assert t.stop_loss_tif.isVisible()
    # a leg rests: DAY or GTC, nothing else to choose (GTC, the protocol's default, first)
    assert [t.take_profit_tif.itemText(i) for i in range(t.take_profit_tif.count())] == ["GTC", "DAY"]
    assert t.take_profit_tif.currentText() == "GTC" and t.stop_loss_tif.currentText() == "GTC"
    choose(qtbot, t.take_profit_tif, "DAY")
    click(qtbot, t.buy)
    qtbot.waitUntil(lambda: bool(sent(w, P.SendOrder)), timeout=WAIT)
    req = sent(w, P.SendOrder)[0]
    assert req.take_profit_price is not None and req.stop_loss_price is not None
    assert (req.take_profit_tif, req.stop_loss_tif, req.tif) == (TimeInForce.DAY, TimeInForce.GTC, TimeInForce.DAY)
    qtbot.waitUntil(lambda: "accepted" in t.outcome.text(), timeout=WAIT)
    # the other way round
    choose(qtbot, t.take_profit_tif, "GTC")
    choose(qtbot, t.stop_loss_tif, "DAY")
    click(qtbot, t.sell)
    qtbot.waitUntil(lambda: len(sent(w, P.SendOrder)) == 2, timeout=WAIT)
    req = sent(w, P.SendOrder)[1]
    assert (req.side, req.take_profit_tif, req.stop_loss_tif) == (Side.SELL, TimeInForce.GTC, TimeInForce.DAY)
    # a leg turned off hides its TIF and sends the default for it
    type_into(qtbot, t.stop_loss, "0")
    assert not t.stop_loss_tif.isVisible() and t.take_profit_tif.isVisible()
    click(qtbot, t.buy)
    qtbot.waitUntil(lambda: len(sent(w, P.SendOrder)) == 3, timeout=WAIT)
    req = sent(w, P.SendOrder)[2]
    assert req.stop_loss_price is None and req.stop_loss_tif is TimeInForce.GTC


def test_only_the_valid_tifs_can_be_chosen(desk_offline, qtbot):
    w, _ = desk_offline
    t = w.ticket
    choose(qtbot, t.order_type, "Limit")
    choose(qtbot, t.tif, "IOC")
    choose(qtbot, t.order_type, "Stop")
    assert t.current_tif() is TimeInForce.DAY  # IOC is not a stop's: back to DAY
    enabled = {t.tif.itemText(i): t.tif.model().item(i).isEnabled() for i in range(t.tif.count())}
    assert enabled == {"DAY": True, "GTC": True, "IOC": False, "FOK": False}
    choose(qtbot, t.order_type, "Market")
    assert all(t.tif.model().item(i).isEnabled() for i in range(t.tif.count()))


@pytest.mark.parametrize("setup, expected", [
    (lambda t, q: (t.set_order_type(OrderType.STOP), t.stop.setValue(99.0)),
     "A buy stop's price must be above the last price 100.03"),
    (lambda t, q: (t.set_order_type(OrderType.TRAILING_STOP), t.trail.setValue(0)),
     "A trailing stop needs a trail amount or a trail percentage."),
    (lambda t, q: (t.set_order_type(OrderType.LIMIT), t.limit.setValue(99.0), t.stop_loss.setValue(150)),
     None),  # a stop loss 150 ticks under the limit is fine ...
    (lambda t, q: (t.set_order_type(OrderType.STOP), t.stop.setValue(110.0)), "outside 5.0% band"),
])
def test_invalid_combinations_are_refused_with_a_sentence(desk_offline, qtbot, setup, expected):
    w, _ = desk_offline
    t = w.ticket
    setup(t, w.state.market.quotes["MSFT"])
    click(qtbot, t.buy)
    if expected is None:
        qtbot.waitUntil(lambda: bool(sent(w, P.SendOrder)), timeout=WAIT)
        return
    assert expected in t.outcome.text() and "not sent" in t.outcome.text()
    assert t.outcome.property("tone") == "bad" and sent(w, P.SendOrder) == []


def test_presets_tick_up_down_and_bid_ask_mid(desk_offline, qtbot):
    w, _ = desk_offline
    t = w.ticket
    assert [b.text() for b in t.preset_buttons] == ["100", "500", "1,000"]
    click(qtbot, t.preset_buttons[2])
    assert t.qty.value() == 1000
    # Bid on a market ticket makes it a limit at the bid
    click(qtbot, t.bid_button)
    assert t.current_type() is OrderType.LIMIT and t.limit.value() == pytest.approx(100.02)
    click(qtbot, t.tick_up)
    click(qtbot, t.tick_up)
    assert t.limit.value() == pytest.approx(100.04)
    click(qtbot, t.tick_down)
    assert t.limit.value() == pytest.approx(100.03)
    # the keys, from wherever the focus is in the window
    w.activateWindow()
    qtbot.waitUntil(lambda: QtWidgets.QApplication.activeWindow() is w, timeout=WAIT)
    w.working.view.setFocus()
    qtbot.keyClick(w.working.view, Qt.Key.Key_Down, Qt.KeyboardModifier.ControlModifier)
    qtbot.keyClick(w.working.view, Qt.Key.Key_Down, Qt.KeyboardModifier.ControlModifier)
    assert t.limit.value() == pytest.approx(100.01)
    qtbot.keyClick(w.working.view, Qt.Key.Key_Up, Qt.KeyboardModifier.ControlModifier)
    assert t.limit.value() == pytest.approx(100.02)
    # mid of 100.02 / 100.04; on a stop the buttons set the stop
    click(qtbot, t.mid_button)
    assert t.limit.value() == pytest.approx(100.03)
    choose(qtbot, t.order_type, "Stop")
    click(qtbot, t.ask_button)
    assert t.stop.value() == pytest.approx(100.04)
    click(qtbot, t.tick_up)
    assert t.stop.value() == pytest.approx(100.05)
    # presets follow Settings
    s = w.ui.__class__(**{**w.ui.__dict__, "qty_presets": [25, 50]})
    w.apply_settings(s)
    assert [b.text() for b in t.preset_buttons] == ["25", "50"]
    click(qtbot, t.preset_buttons[0])
    assert t.qty.value() == 25


def test_the_confirmation_shows_notional_and_distance_and_can_be_turned_off(desk_offline, qtbot):
    w, _ = desk_offline
    w.ui.confirm_orders = True
    t = w.ticket
    click(qtbot, t.bid_button)  # limit 100.02
    click(qtbot, t.tick_down)  # 100.01
    qtbot.mouseClick(t.preset_buttons[1], Qt.MouseButton.LeftButton)  # 500
    click(qtbot, t.buy)
    box = [b for b in w.findChildren(QtWidgets.QMessageBox, "confirmOrder") if b.isVisible()][0]
    text = box.text()
    assert "BUY 500 MSFT @ 100.01 LMT" in text
    assert "Notional: 50,005.00 (500 x 100.01)" in text
    assert "Limit 100.01: -0.03 (-0.03%) from the ask" in text
    box.checkBox().setChecked(True)  # "don't ask again": the expert's switch
    click(qtbot, box.button(QtWidgets.QMessageBox.StandardButton.Yes))
    qtbot.waitUntil(lambda: len(sent(w, P.SendOrder)) == 1, timeout=WAIT)
    click(qtbot, t.sell)
    qtbot.waitUntil(lambda: len(sent(w, P.SendOrder)) == 2, timeout=WAIT)
    assert not [b for b in w.findChildren(QtWidgets.QMessageBox, "confirmOrder") if b.isVisible()]


def cell_index(w: MainWindow, coid: str, key: str):
    panel = w.working
    src = panel.model.index(panel.model.row_for(coid), [c.key for c in panel.model.columns].index(key))
    return panel.proxy.mapFromSource(src)


def edit_cell(qtbot, w: MainWindow, coid: str, key: str, text: str, how: str = "double-click") -> None:
    view = w.working.view
    idx = cell_index(w, coid, key)
    rect = view.visualRect(idx)
    if how == "double-click":
        qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
        qtbot.mouseDClick(view.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    else:
        qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
        qtbot.keyClick(view, Qt.Key.Key_F2)
    editor = view.indexWidget(view.currentIndex()) or view.focusWidget()
    assert isinstance(editor, QtWidgets.QAbstractSpinBox), editor
    qtbot.keyClick(editor, Qt.Key.Key_A, Qt.KeyboardModifier.ControlModifier)
    qtbot.keyClicks(editor, text)
    qtbot.keyClick(editor, Qt.Key.Key_Return)


def test_modify_in_place_sends_replace_order(desk_offline, qtbot):
    w, ex = desk_offline
    up = ex.add(w, limit_price=99.5, qty=100)
    coid = up.client_order_id
    edit_cell(qtbot, w, coid, "limit_price", "99.40")
    qtbot.waitUntil(lambda: bool(sent(w, P.ReplaceOrder)), timeout=WAIT)
    req = sent(w, P.ReplaceOrder)[0]
    assert (req.orig_client_order_id, req.limit_price, req.qty, req.stop_price) == (coid, 99.4, None, None)
    assert req.client_order_id.startswith("replace-")
    qtbot.waitUntil(lambda: w.working.model.index(w.working.model.row_for(coid), 0).data(RowRole).limit_price == 99.4,
                    timeout=WAIT)
    w._flush()
    assert cell_index(w, coid, "limit_price").data() == "99.40"
    assert "modify buy 100 MSFT to limit 99.40: done" in w.ticket.outcome.text()
    # F2 on the quantity
    edit_cell(qtbot, w, coid, "qty", "150", how="F2")
    qtbot.waitUntil(lambda: len(sent(w, P.ReplaceOrder)) == 2, timeout=WAIT)
    assert sent(w, P.ReplaceOrder)[1].qty == 150 and sent(w, P.ReplaceOrder)[1].limit_price is None
    qtbot.waitUntil(lambda: w.state.orders.get(coid).qty == 150, timeout=WAIT)
    # F2 on a cell that cannot be edited opens the order's price; a refusal says why
    ex.refuse = "limit_price outside the hard price band"
    edit_cell(qtbot, w, coid, "symbol", "99.30", how="F2")
    qtbot.waitUntil(lambda: "refused: limit_price outside the hard price band" in w.ticket.outcome.text(), timeout=WAIT)
    assert w.state.orders.get(coid).limit_price == 99.4
    # a stop order's stop, and a market order has nothing to edit but its quantity
    stop = ex.add(w, order_type=OrderType.STOP, limit_price=None, stop_price=101.0, side=Side.BUY)
    ex.refuse = ""
    edit_cell(qtbot, w, stop.client_order_id, "stop_price", "101.25")
    qtbot.waitUntil(lambda: len(sent(w, P.ReplaceOrder)) == 4, timeout=WAIT)
    assert sent(w, P.ReplaceOrder)[3].stop_price == 101.25
    assert not (w.working.proxy.flags(cell_index(w, stop.client_order_id, "limit_price")) & Qt.ItemFlag.ItemIsEditable)


def test_children_are_shown_under_their_parent_with_their_state(desk_offline, qtbot):
    w, ex = desk_offline
    t0 = P.now_ns()
    parent = ex.add(w, client_order_id="manual-p-1", qty=200, filled_qty=100, avg_price=99.5,
                    status=OrderStatus.PARTIALLY_FILLED, take_profit_price=101.0, stop_loss_price=99.0,
                    tif=TimeInForce.GTC, ts=t0)
    other = ex.add(w, client_order_id="manual-o-1", qty=300, limit_price=99.0, ts=t0 + 1)
    child = dict(symbol="MSFT", side=Side.SELL, qty=100, parent_id="manual-p-1", oco_group="manual-p-1",
                 tif=TimeInForce.GTC)
    ex.add(w, client_order_id="manual-p-1.tp", limit_price=101.0, **child)
    ex.add(w, client_order_id="manual-p-1.sl", order_type=OrderType.STOP, limit_price=None, stop_price=99.0,
           emulated=True, **child)
    rows = [o.client_order_id for o in w.working.visible_rows()]
    # the newest family first (the children came last, their parent's place counts), children right after it
    assert rows == ["manual-o-1", "manual-p-1", "manual-p-1.tp", "manual-p-1.sl"]
    assert cell_index(w, "manual-p-1.sl", "symbol").data() == "↳ MSFT"
    assert "stop-loss of manual-p-1" in cell_index(w, "manual-p-1.sl", "symbol").data(Qt.ItemDataRole.ToolTipRole)
    assert cell_index(w, "manual-p-1.sl", "stop_price").data() == "99.00"
    assert "EMULATED" in cell_index(w, "manual-p-1.sl", "flags").data() and "OCO" in cell_index(w, "manual-p-1.sl", "flags").data()
    assert cell_index(w, "manual-p-1", "flags").data() == "TP 101.00 · SL 99.00"
    assert cell_index(w, "manual-p-1", "tif").data() == "GTC"
    # sorted by quantity (the header clicked), either way, the children stay under their parent
    header = w.working.view.horizontalHeader()
    qcol = [c.key for c in w.working.model.columns].index("qty")
    for _ in range(2):
        x = header.sectionViewportPosition(qcol) + header.sectionSize(qcol) // 2
        qtbot.mouseClick(header.viewport(), Qt.MouseButton.LeftButton, pos=QtCore.QPoint(x, 5))
        rows = [o.client_order_id for o in w.working.visible_rows()]
        i = rows.index("manual-p-1")
        assert rows[i + 1:i + 3] == ["manual-p-1.tp", "manual-p-1.sl"], rows
    # a triggered stop says so; the parent filled leaves the blotter, its children stay
    w.state.orders.apply_update(msgspec.structs.replace(ex.orders["manual-p-1.sl"], triggered=True, ts=P.now_ns()))
    w.state.orders.apply_update(msgspec.structs.replace(parent, filled_qty=200, status=OrderStatus.FILLED, ts=P.now_ns()))
    w._flush()
    assert "TRIGGERED" in cell_index(w, "manual-p-1.sl", "flags").data()
    assert "manual-p-1" not in w.working.model and {"manual-p-1.tp", "manual-p-1.sl", other.client_order_id} <= set(
        w.working.model.keys())


def test_oco_from_the_context_menu_action(desk_offline, qtbot):
    w, ex = desk_offline
    a = ex.add(w, limit_price=99.0)
    b = ex.add(w, side=Side.SELL, limit_price=101.0)
    w.session.orders.client.answer = lambda m: P.SetOcoReply(ok=True, oco_group="oco-x") if isinstance(m, P.SetOco) else ex(m)
    view = w.working.view
    view.selectAll()
    w.working.set_oco_selected()
    qtbot.waitUntil(lambda: bool(sent(w, P.SetOco)), timeout=WAIT)
    assert set(sent(w, P.SetOco)[0].client_order_ids) == {a.client_order_id, b.client_order_id}
    qtbot.waitUntil(lambda: w.state.orders.get(a.client_order_id).oco_group == "oco-x", timeout=WAIT)


# ----------------------------------------------------------------------------- real fleet

@pytest.mark.slow
def test_a_stop_order_from_the_ticket_moved_in_the_blotter_over_a_real_fleet(desk, qtbot):  # noqa: F811
    w = desk.window
    qtbot.waitUntil(lambda: w.state.market.quotes.get("MSFT") is not None and w.state.market.quotes["MSFT"].last > 0,
                    timeout=TIMEOUT)
    t = w.ticket
    t.set_symbol("MSFT")
    choose(qtbot, t.order_type, "Stop")
    choose(qtbot, t.tif, "GTC")
    last = w.state.market.quotes["MSFT"].last
    type_into(qtbot, t.stop, f"{last * 1.03:.2f}")  # a buy stop 3 % above: it rests
    click(qtbot, t.buy)
    qtbot.waitUntil(lambda: any(o.order_type is OrderType.STOP and o.status is OrderStatus.NEW
                                for o in w.state.orders.live("MSFT")), timeout=TIMEOUT)
    o = next(o for o in w.state.orders.live("MSFT") if o.order_type is OrderType.STOP)
    assert o.tif is TimeInForce.GTC and o.stop_price == pytest.approx(round(last * 1.03, 2))
    qtbot.waitUntil(lambda: o.client_order_id in w.working.model, timeout=TIMEOUT)
    new_stop = round(last * 1.04, 2)
    edit_cell(qtbot, w, o.client_order_id, "stop_price", f"{new_stop:.2f}")
    qtbot.waitUntil(lambda: "modify" in t.outcome.text() and ("done" in t.outcome.text() or "refused" in t.outcome.text()),
                    timeout=TIMEOUT)
    if "replace_order" in t.outcome.text() and "refused" in t.outcome.text():
        pytest.skip(f"the gateway refuses replace_order: {t.outcome.text()}")
    assert "done" in t.outcome.text(), t.outcome.text()
    qtbot.waitUntil(lambda: w.state.orders.get(o.client_order_id).stop_price == pytest.approx(new_stop), timeout=TIMEOUT)
    w._flush()
    assert cell_index(w, o.client_order_id, "stop_price").data() == f"{new_stop:,.2f}"
    # and the quantity, then cancel it
    edit_cell(qtbot, w, o.client_order_id, "qty", "150", how="F2")
    qtbot.waitUntil(lambda: w.state.orders.get(o.client_order_id).qty == 150, timeout=TIMEOUT)
    w.session.orders.cancel(o.client_order_id)
    qtbot.waitUntil(lambda: w.state.orders.get(o.client_order_id).status is OrderStatus.CANCELLED, timeout=TIMEOUT)


def test_quantity_presets_setting_round_trips_and_refuses_nonsense(tmp_path):
    from app.settings import Settings, parse_presets

    assert parse_presets("") == [100, 500, 1000] and parse_presets("10, 20 30") == [10, 20, 30]
    for bad in ("10 x", "0", "1 2 3 4 5 6 7"):
        with pytest.raises(ValueError):
            parse_presets(bad)
    s = Settings(tmp_path / "t.ini")
    ui = s.load()
    ui.qty_presets = [5, 50, 5000]
    s.save(ui)
    assert Settings(tmp_path / "t.ini").load().qty_presets == [5, 50, 5000]
    s.set_value("orders/qty_presets", "lots")
    assert s.load().qty_presets == [100, 500, 1000]  # a hand-edited file with nonsense


def test_the_working_orders_count_follows_the_rows(desk_offline):
    w, ex = desk_offline
    ex.add(w)
    ex.add(w)
    assert w.working.count.text() == "2 rows"


def test_typing_a_leg_keeps_the_bracket_shown_and_the_focus(desk_offline, qtbot):
    """A leg's TIF appearing widens the bracket, which may move it to a row of its own: the
    field being typed in stays on screen with the focus (it went to Buy once)."""
    w, _ex = desk_offline
    t = w.ticket
    choose(qtbot, t.order_type, "Limit")
    for width in range(t.COMPACT_BELOW, 1200, 40):  # whichever widths move the bracket
        t.take_profit.setValue(0)
        t.stop_loss.setValue(0)
        w.resizeDocks([w.findChild(QtWidgets.QDockWidget, "dock_ticket")], [width], Qt.Orientation.Horizontal)
        qtbot.wait(1)
        t.take_profit.setFocus()
        qtbot.keyClick(t.take_profit, Qt.Key.Key_A, Qt.KeyboardModifier.ControlModifier)
        qtbot.keyClicks(t.take_profit, "20")
        assert t.bracket_box.isVisible() and t.take_profit_tif.isVisible(), t.width()
        assert t.take_profit.hasFocus(), (t.width(), QtWidgets.QApplication.focusWidget())
