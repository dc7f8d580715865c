"""Working orders and the average price as lines on the chart; dragging a line is a replace.

The window without a fleet (state fed by hand), its order service's client the scripted
exchange of tests/ui/test_ticket_kinds.py.  The drag is the trader's: a press on the line in
the chart's viewport, moves with the button held, a release.
"""

from __future__ import annotations

import msgspec
import pytest

from tests.procs import scaled_ms
from tests.ui.test_ticket_kinds import Exchange, sent

from tests.unit.test_app_orders import FakeClient
from workers import protocol as P
from workers.protocol import OrderStatus, OrderType, Side
from app.qt import QtCore, QtGui, QtWidgets
from app.window import MainWindow

WAIT = scaled_ms(3_000)
Button = QtCore.Qt.MouseButton


def ticks(w: MainWindow, prices) -> None:
    m = w.state.market
    q = m.quotes.get("MSFT")
    seq = q.seq if q else 0
    for i, p in enumerate(prices, 1):
        m.on_tick("MSFT", seq + i, P.now_ns(), p, round(p - 0.01, 2), round(p + 0.01, 2), 100, 100, 1000 * (seq + i))
    w._flush()


@pytest.fixture
def charted(make_window, qloop):  # noqa: F811
    """A window whose chart shows MSFT between 99.50 and 100.50 (last 100.00)."""
    w = make_window(confirm_orders=False)
    ex = Exchange()
    w.session.orders.client = FakeClient(ex)
    w.session.orders.synced = True
    ticks(w, [100.0, 100.5, 99.5, 100.0])
    assert w.chart.symbol == "MSFT"
    return w, ex


def _replace(up: P.OrderUpdate, **changes) -> P.OrderUpdate:
    return msgspec.structs.replace(up, ts=P.now_ns(), **changes)


def label(line) -> str:
    return line.label.toPlainText()


def at(chart, price: float, frac: float = 0.3) -> QtCore.QPoint:
    """The viewport pixel of ``price``, ``frac`` of the way across the plot (away from the labels)."""
    vb = chart.price_plot.getViewBox()
    (x0, x1), _ = vb.viewRange()
    return chart.view.mapFromScene(vb.mapViewToScene(QtCore.QPointF(x0 + frac * (x1 - x0), price)))


def drag(qtbot, chart, price: float, to: float) -> None:
    vp = chart.view.viewport()
    qtbot.wait(50)  # the layout and the chart's deferred refresh settle: pixels stay put
    start, end = at(chart, price), at(chart, to)
    # onto the line first, as a hand does: the hover is what tells pyqtgraph the line (not
    # the plot, which pans) takes the drag
    qtbot.mouseMove(vp, start - QtCore.QPoint(0, 20))
    qtbot.wait(15)
    qtbot.mouseMove(vp, start)
    qtbot.wait(15)
    assert (start, end) == (at(chart, price), at(chart, to)), "the view moved under the mouse"
    qtbot.mousePress(vp, Button.LeftButton, pos=start)
    for k in range(1, 5):  # moves with the button held (QTest's mouseMove carries no buttons)
        qtbot.wait(15)  # pyqtgraph drops moves closer than 10 ms (mouseRateLimit)
        p = start + (end - start) * (k / 4)
        ev = QtGui.QMouseEvent(QtCore.QEvent.Type.MouseMove, QtCore.QPointF(p), QtCore.QPointF(vp.mapToGlobal(p)),
                               Button.NoButton, Button.LeftButton, QtCore.Qt.KeyboardModifier.NoModifier)
        QtWidgets.QApplication.sendEvent(vp, ev)
    qtbot.mouseRelease(vp, Button.LeftButton, pos=end)


def test_working_orders_and_the_average_price_are_lines(charted):
    w, ex = charted
    buy = ex.add(w, limit_price=99.80, qty=100)
    stop = ex.add(w, side=Side.SELL, order_type=OrderType.STOP_LIMIT, stop_price=99.70, limit_price=99.65, qty=40)
    ex.add(w, symbol="AAPL", limit_price=200.0)  # another symbol's: not on this chart
    w.state.on_fill(P.Fill(fill_id="F1", client_order_id="x-1", order_id="O9", symbol="MSFT", side=Side.BUY, qty=50,
                           price=99.9, ts=P.now_ns(), source="manual"))
    w._flush()
    lines = w.chart.chart.order_lines()
    assert set(lines) == {f"{buy.client_order_id}|limit_price", f"{stop.client_order_id}|limit_price",
                          f"{stop.client_order_id}|stop_price"}
    line = lines[f"{buy.client_order_id}|limit_price"]
    assert line.value() == pytest.approx(99.80) and label(line) == "BUY 100 LMT 99.80" and line.movable
    assert label(lines[f"{stop.client_order_id}|stop_price"]) == "SELL 40 STP LMT stop 99.70"
    assert label(lines[f"{stop.client_order_id}|limit_price"]) == "SELL 40 STP LMT 99.65"
    avg = w.chart.chart.average_line
    assert avg.isVisible() and avg.value() == pytest.approx(99.9) and label(avg) == "AVG +50 @ 99.90"
    # a fill moves the line's quantity; a cancel takes the line away; flat: no average line
    w.state.orders.apply_update(_replace(ex.orders[buy.client_order_id], filled_qty=30, status=OrderStatus.PARTIALLY_FILLED))
    w.state.orders.apply_update(_replace(ex.orders[stop.client_order_id], status=OrderStatus.CANCELLED))
    w._flush()
    lines = w.chart.chart.order_lines()
    assert set(lines) == {f"{buy.client_order_id}|limit_price"}
    assert label(lines[f"{buy.client_order_id}|limit_price"]) == "BUY 70 LMT 99.80"
    w.state.on_fill(P.Fill(fill_id="F2", client_order_id="x-2", order_id="O10", symbol="MSFT", side=Side.SELL, qty=50,
                           price=100.0, ts=P.now_ns(), source="manual"))
    w._flush()
    assert not w.chart.chart.average_line.isVisible()
    # another symbol on the chart shows its own
    ticks(w, [100.0])
    w.state.market.on_tick("AAPL", 1, P.now_ns(), 200.0, 199.99, 200.01, 1, 1, 1)
    w.chart.set_symbol("AAPL")
    assert [k.split("|")[1] for k in w.chart.chart.order_lines()] == ["limit_price"]


def test_dragging_a_line_sends_a_replace_at_the_new_price(charted, qtbot):
    w, ex = charted
    buy = ex.add(w, limit_price=99.80, qty=100)
    chart = w.chart.chart
    key = f"{buy.client_order_id}|limit_price"
    drag(qtbot, chart, 99.80, 99.93)
    qtbot.waitUntil(lambda: bool(sent(w, P.ReplaceOrder)), timeout=WAIT)
    req = sent(w, P.ReplaceOrder)[0]
    assert req.orig_client_order_id == buy.client_order_id and req.qty is None and req.stop_price is None
    # on the tick (0.01), where the mouse let go (a pixel is ~0.003 here)
    assert req.limit_price == round(req.limit_price, 2) and abs(req.limit_price - 99.93) <= 0.011
    qtbot.waitUntil(lambda: w.state.orders.get(buy.client_order_id).limit_price == req.limit_price, timeout=WAIT)
    w._flush()
    line = chart.order_lines()[key]
    assert line.value() == pytest.approx(req.limit_price) and label(line) == f"BUY 100 LMT {req.limit_price:.2f}"
    assert w.chart.pending == {}


def test_a_refused_drag_snaps_back_and_says_why(charted, qtbot):
    w, ex = charted
    stop = ex.add(w, side=Side.SELL, order_type=OrderType.STOP, limit_price=None, stop_price=99.70, qty=100)
    chart = w.chart.chart
    key = f"{stop.client_order_id}|stop_price"
    ex.refuse = "stop_price outside the hard price band"
    drag(qtbot, chart, 99.70, 99.60)
    qtbot.waitUntil(lambda: bool(sent(w, P.ReplaceOrder)), timeout=WAIT)
    assert abs(sent(w, P.ReplaceOrder)[0].stop_price - 99.60) <= 0.011
    qtbot.waitUntil(lambda: chart.order_lines()[key].value() == pytest.approx(99.70), timeout=WAIT)
    assert "refused: stop_price outside the hard price band" in w.ticket.outcome.text()
    # refused in the window (a sell stop dragged above the last price): not sent, back again
    drag(qtbot, chart, 99.70, 100.20)
    qtbot.waitUntil(lambda: "not sent: a sell stop must stay below the last price" in w.ticket.outcome.text(), timeout=WAIT)
    assert len(sent(w, P.ReplaceOrder)) == 1
    qtbot.waitUntil(lambda: chart.order_lines()[key].value() == pytest.approx(99.70), timeout=WAIT)
    # an order that cannot be replaced (not acknowledged yet) has a line that does not move
    w.state.orders.apply_update(_replace(ex.orders[stop.client_order_id], status=OrderStatus.PENDING_NEW))
    w._flush()
    assert not chart.order_lines()[key].movable


def test_an_order_beyond_the_view_is_a_tag_at_the_plot_edge(charted, qtbot):
    w, ex = charted
    chart = w.chart.chart
    vb = chart.price_plot.getViewBox()
    y_before = vb.viewRange()[1]
    assert y_before[1] < 101  # the market's range, 99.50 .. 100.50 with a margin
    far = ex.add(w, order_type=OrderType.STOP, limit_price=None, stop_price=195.0, qty=100)
    low = ex.add(w, side=Side.SELL, limit_price=None, order_type=OrderType.STOP, stop_price=50.0, qty=40)
    near = ex.add(w, limit_price=99.80, qty=10)
    qtbot.waitUntil(lambda: len(chart.order_edge_tags()) == 2, timeout=WAIT)
    tags = chart.order_edge_tags()
    up, down = tags[f"{far.client_order_id}|stop_price"], tags[f"{low.client_order_id}|stop_price"]
    assert up.text == "▲ BUY 100 STP 195.00" and down.text == "▼ SELL 40 STP 50.00"
    assert f"{near.client_order_id}|limit_price" not in tags  # in the view: its line, no tag
    # the y-range stays on the market: not widened to take the orders in
    assert vb.viewRange()[1] == pytest.approx(y_before)
    # pinned inside the plot, at the edge the order lies beyond
    plot = vb.boundingRect()
    for tag, at_top in ((up, True), (down, False)):
        r = tag.mapRectToParent(tag.boundingRect())
        assert plot.contains(r), (r, plot)
        assert (r.top() - plot.top() < 4) if at_top else (plot.bottom() - r.bottom() < 4)
    # the market moves up to the order's neighbourhood: the line is in view, the tag goes
    ticks(w, [194.0, 195.5, 194.5])
    qtbot.waitUntil(lambda: f"{far.client_order_id}|stop_price" not in chart.order_edge_tags(), timeout=WAIT)
    assert chart.order_lines()[f"{far.client_order_id}|stop_price"].value() == pytest.approx(195.0)
    # cancelled: no line, no tag
    assert chart.order_edge_tags()[f"{low.client_order_id}|stop_price"].text == "▼ SELL 40 STP 50.00"
    w.state.orders.apply_update(_replace(ex.orders[low.client_order_id], status=OrderStatus.CANCELLED))
    w._flush()
    assert f"{low.client_order_id}|stop_price" not in chart.order_edge_tags()
    assert f"{low.client_order_id}|stop_price" not in chart.order_lines()


def _held_move(vp, start: QtCore.QPoint, end: QtCore.QPoint, qtbot) -> None:
    for k in range(1, 5):  # moves with the button held (QTest's mouseMove carries no buttons)
        qtbot.wait(15)
        p = start + (end - start) * (k / 4)
        ev = QtGui.QMouseEvent(QtCore.QEvent.Type.MouseMove, QtCore.QPointF(p), QtCore.QPointF(vp.mapToGlobal(p)),
                               Button.NoButton, Button.LeftButton, QtCore.Qt.KeyboardModifier.NoModifier)
        QtWidgets.QApplication.sendEvent(vp, ev)


def test_an_edge_tag_dragged_into_the_chart_moves_its_order_there(charted, qtbot):
    """A stop far above the market is a tag at the top edge; dragged down into the plot and
    let go at a price, the order is replaced there; let go outside the view, nothing is sent."""
    w, ex = charted
    chart = w.chart.chart
    far = ex.add(w, order_type=OrderType.STOP, limit_price=None, stop_price=195.0, qty=100)
    key = f"{far.client_order_id}|stop_price"
    qtbot.waitUntil(lambda: key in chart.order_edge_tags(), timeout=WAIT)
    qtbot.wait(50)
    tag = chart.order_edge_tags()[key]
    assert tag.movable and "drag" in tag.toolTip()
    vp = chart.view.viewport()

    def tag_point() -> QtCore.QPoint:
        return chart.view.mapFromScene(tag.mapToScene(tag.boundingRect().center()))

    # a click on the tag, or a jiggle, moves nothing (the tag sits at a price of the view)
    start = tag_point()
    qtbot.mouseClick(vp, Button.LeftButton, pos=start)
    qtbot.mousePress(vp, Button.LeftButton, pos=start)
    _held_move(vp, start, start + QtCore.QPoint(0, 3), qtbot)
    qtbot.mouseRelease(vp, Button.LeftButton, pos=start + QtCore.QPoint(0, 3))
    # dragged out below the plot (over the volume): beyond the view, back to its edge
    below = chart.view.mapFromScene(chart.price_plot.getViewBox().sceneBoundingRect().bottomLeft()) + QtCore.QPoint(
        start.x() - 0, 30)
    below.setX(start.x())
    qtbot.mousePress(vp, Button.LeftButton, pos=start)
    _held_move(vp, start, below, qtbot)
    qtbot.mouseRelease(vp, Button.LeftButton, pos=below)
    qtbot.wait(20)
    assert not sent(w, P.ReplaceOrder) and chart.order_edge_tags()[key].text == "▲ BUY 100 STP 195.00"
    # into the plot, let go at 100.20
    start, end = tag_point(), at(chart, 100.20, frac=0.82)
    qtbot.mousePress(vp, Button.LeftButton, pos=start)
    _held_move(vp, start, end, qtbot)
    assert tag.text.startswith("↕ BUY 100 STP 100.")  # reads the price under the mouse
    qtbot.mouseRelease(vp, Button.LeftButton, pos=end)
    qtbot.waitUntil(lambda: bool(sent(w, P.ReplaceOrder)), timeout=WAIT)
    req = sent(w, P.ReplaceOrder)[0]
    assert req.orig_client_order_id == far.client_order_id and req.limit_price is None
    assert req.stop_price == round(req.stop_price, 2) and abs(req.stop_price - 100.20) <= 0.011
    qtbot.waitUntil(lambda: w.state.orders.get(far.client_order_id).stop_price == req.stop_price, timeout=WAIT)
    w._flush()
    assert key not in chart.order_edge_tags()
    assert chart.order_lines()[key].value() == pytest.approx(req.stop_price)


def test_an_edge_tag_of_an_order_that_cannot_move_stays_put(charted, qtbot):
    w, ex = charted
    chart = w.chart.chart
    trail = ex.add(w, side=Side.SELL, order_type=OrderType.TRAILING_STOP, limit_price=None, stop_price=50.0,
                   trail_amount=50.0, qty=10)
    key = f"{trail.client_order_id}|stop_price"
    qtbot.waitUntil(lambda: key in chart.order_edge_tags(), timeout=WAIT)
    tag = chart.order_edge_tags()[key]
    assert not tag.movable and not tag.acceptedMouseButtons() & Button.LeftButton
