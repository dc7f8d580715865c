"""The FIX venue client (workers/fix/venue.py) against QuickFIX/C++ as the venue: orders go
out as NewOrderSingle / OrderCancelRequest / OrderCancelReplaceRequest that QuickFIX validates
against FIX44.xml; its ExecutionReports come back as order snapshots and fills -- fills,
partial fills, rejects, cancels, replaces, a refused cancel; a restart asks for the working
orders' status and doubles no fill; with the link down orders are refused, never queued."""

from __future__ import annotations

import os
import signal

import pytest

from tests.fix.test_fix_session_quickfix import Acceptor, ours, venue  # noqa: F401  (fixture)
from tests.procs import scaled
from workers import protocol as P
from workers.exchange.client import FillEvent, Order, OrderEvent
from workers.fix.venue import FixExchange
from workers.protocol import OrderStatus, OrderType, Side, TimeInForce

pytest.importorskip("quickfix", reason="the FIX counterparty is QuickFIX (pip install quickfix-py, Linux)")


def order(coid: str, qty: int, price: float | None, symbol: str = "AAPL", side: Side = Side.BUY,
          tif: TimeInForce = TimeInForce.DAY) -> Order:
    req = P.SendOrder(client_order_id=coid, symbol=symbol, side=side, qty=qty,
                      order_type=OrderType.LIMIT if price is not None else OrderType.MARKET, limit_price=price, tif=tif)
    o = Order.from_request(req, P.now_ns())
    o.status = OrderStatus.PENDING_NEW
    return o


class Driver:
    """The gateway's side of the seam: poll on a timer, keep every event."""

    def __init__(self, ex: FixExchange):
        self.ex = ex
        self.events: list = []

    def until(self, done, timeout: float = 10.0) -> bool:
        import time

        end = time.monotonic() + scaled(timeout)
        while True:
            self.events += self.ex.poll(P.now_ns())  # what the gateway's timer collects
            if done():
                return True
            if time.monotonic() > end:
                return False
            self.ex.conn.step(0.01)

    def fills(self, coid: str) -> list:
        return [e.fill for e in self.events if isinstance(e, FillEvent) and e.fill.client_order_id == coid]

    def last(self, coid: str) -> Order | None:
        snaps = [e.order for e in self.events if isinstance(e, OrderEvent) and e.order.client_order_id == coid]
        return snaps[-1] if snaps else None


@pytest.fixture
def desk(venue, tmp_path):  # noqa: F811
    v = venue(venue=True)
    d = Driver(FixExchange(ours(tmp_path, v.port, hb=5, reconnect_s=1.0)))
    assert d.until(lambda: d.ex.conn.up), d.ex.notices
    yield v, d
    d.ex.close()


def test_a_fill_a_partial_fill_a_replace_and_a_cancel(desk):
    v, d = desk
    a = order("c-1", 50, 101.5)
    assert d.ex.submit(a, P.now_ns()) == []  # nothing yet: the venue answers through poll
    assert d.until(lambda: (d.last("c-1") or order("x", 1, 1.0)).status is OrderStatus.FILLED)
    assert [(f.qty, f.price) for f in d.fills("c-1")] == [(50, 101.5)]
    assert d.last("c-1").order_id.startswith("V") and d.last("c-1").avg_price == 101.5
    # larger than the venue's 100: 100 now, the rest works
    b = order("c-2", 300, 99.0)
    d.ex.submit(b, P.now_ns())
    assert d.until(lambda: (d.last("c-2") or order("x", 1, 1.0)).status is OrderStatus.PARTIALLY_FILLED)
    assert [f.qty for f in d.fills("c-2")] == [100] and d.last("c-2").filled_qty == 100
    # replace: quantity and price changed at the venue, the order keeps its id
    assert d.ex.replace(b, 400, 99.5, None, P.now_ns()).ok
    assert d.until(lambda: d.last("c-2").qty == 400 and d.last("c-2").limit_price == 99.5)
    assert d.last("c-2").client_order_id == "c-2" and d.last("c-2").status is OrderStatus.PARTIALLY_FILLED
    # cancel: the cancel's own ClOrdID is mapped back to the order
    assert d.ex.cancel(b, P.now_ns()).ok
    assert d.until(lambda: d.last("c-2").status is OrderStatus.CANCELLED)
    assert d.last("c-2").filled_qty == 100 and len(d.fills("c-2")) == 1
    # QuickFIX took every message of ours as valid FIX 4.4 (a bad one would be a Reject)
    kinds = []
    while True:
        try:
            kinds.append(v.wait("app_in", 0.01)["raw"].split("|35=")[1][0])
        except AssertionError:
            break
    assert kinds == ["D", "D", "G", "F"] and d.ex.conn.session.counters["rejects"] == 0


def test_a_reject_and_a_refused_cancel_say_why(desk):
    _v, d = desk
    r = order("c-9", 10, 5.0, symbol="REJ")
    d.ex.submit(r, P.now_ns())
    assert d.until(lambda: (d.last("c-9") or order("x", 1, 1.0)).status is OrderStatus.REJECTED)
    assert d.last("c-9").reason == "unknown symbol REJ" and not d.fills("c-9")
    f = order("c-10", 10, None)
    d.ex.submit(f, P.now_ns())
    assert d.until(lambda: (d.last("c-10") or order("x", 1, 1.0)).status is OrderStatus.FILLED)
    assert [(x.qty, x.price) for x in d.fills("c-10")] == [(10, 100.0)]
    d.ex.cancel(f, P.now_ns())
    assert d.until(lambda: "refused" in d.last("c-10").reason)
    assert d.last("c-10").reason == "cancel refused by the venue: too late: the order is done"
    assert d.last("c-10").status is OrderStatus.FILLED


def test_a_restart_asks_for_the_working_orders_and_doubles_no_fill(desk, tmp_path):
    v, d = desk
    b = order("c-2", 300, 99.0)
    d.ex.submit(b, P.now_ns())
    assert d.until(lambda: (d.last("c-2") or order("x", 1, 1.0)).status is OrderStatus.PARTIALLY_FILLED)
    journaled = d.last("c-2")  # what the gateway's journal holds
    state = d.ex.state()
    d.ex.conn.close("the gateway was killed")  # no logout: a crash
    again = Driver(FixExchange(ours(tmp_path, v.port, hb=5)))
    assert again.ex.recover([journaled], state, P.now_ns()) == []
    assert again.until(lambda: again.last("c-2") is not None), again.ex.notices
    assert again.last("c-2").filled_qty == 100 and not again.fills("c-2")  # the status, not a second fill
    assert again.ex.next_fill_n == state["next_fill_n"]
    asked = []
    while not asked:
        ev = v.wait("app_in", scaled(5))
        asked = [ev] if "|35=H|" in ev["raw"] else []
    assert "|11=c-2|" in asked[0]["raw"]
    again.ex.close()


def test_with_the_link_down_orders_are_refused_not_queued(desk):
    v, d = desk
    os.kill(v.proc.pid, signal.SIGKILL)
    assert d.until(lambda: not d.ex.conn.up)
    o = order("c-20", 10, 100.0)
    events = d.ex.submit(o, P.now_ns())
    assert [e.order.status for e in events] == [OrderStatus.REJECTED]
    assert "not connected" in events[0].order.reason and "not sent" in events[0].order.reason
    assert not d.ex.cancel(o, P.now_ns()).ok


def test_the_line_dropped_mid_order_nothing_lost_nothing_doubled(desk):
    """An order the venue has not answered; the line goes down; the venue fills it meanwhile.
    On the reconnect the venue's missed reports come back through the sequence gap and the
    status request answers too: one fill, the order filled."""
    v, d = desk
    o = order("c-30", 40, 55.0, symbol="SLOW")
    assert d.ex.submit(o, P.now_ns()) == []
    v.wait("app_in", scaled(5), drive=d.ex.conn)
    v.command("drop")
    v.wait("dropped", scaled(5), drive=d.ex.conn)
    assert d.until(lambda: not d.ex.conn.up)
    v.command("fill SLOW")  # while we are away: the venue keeps the reports for the resend
    v.wait("filled", scaled(5))
    assert d.until(lambda: d.last("c-30") is not None and d.last("c-30").status is OrderStatus.FILLED, timeout=20), \
        d.ex.notices
    assert [(f.qty, f.price) for f in d.fills("c-30")] == [(40, 55.0)]
    assert d.ex.conn.session.counters["gaps"] >= 1  # came back through a ResendRequest
    # the status request's answer comes too (a report of the same cumulative quantity): still one fill
    while "|35=H|" not in v.wait("app_in", scaled(5), drive=d.ex.conn)["raw"]:
        pass
    # three reports of it in all: new and the fill (resent), then the status
    assert d.until(lambda: sum(isinstance(e, OrderEvent) and e.order.client_order_id == "c-30" for e in d.events) >= 3)
    assert len(d.fills("c-30")) == 1 and d.last("c-30").filled_qty == 40
