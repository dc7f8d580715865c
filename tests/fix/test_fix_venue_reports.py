"""How the FIX venue client reads ExecutionReports, without a socket: a fill once whatever the
venue resends, filled is final, done-for-day expires the rest, a cancel's own ClOrdID found."""

from __future__ import annotations

import simplefix

from workers import protocol as P
from workers.exchange.client import FillEvent, Order, OrderEvent
from workers.fix.settings import FixSessionSettings
from workers.fix.venue import FixExchange
from workers.protocol import OrderStatus, OrderType, Side


def er(**f) -> simplefix.FixMessage:
    m = simplefix.FixMessage()
    m.append_pair(35, "8")
    tags = {"cl": 11, "orig": 41, "oid": 37, "exec_id": 17, "exec_type": 150, "status": 39, "cum": 14, "avg": 6,
            "last_qty": 32, "last_px": 31, "text": 58}
    for k, v in f.items():
        m.append_pair(tags[k], v)
    return m


def exchange(tmp_path) -> tuple[FixExchange, Order]:
    ex = FixExchange(FixSessionSettings(sender_comp_id="TD", target_comp_id="V", host="127.0.0.1", port=1,
                                        store_path=tmp_path / "s"))
    o = Order.from_request(P.SendOrder(client_order_id="c-1", symbol="AAPL", side=Side.BUY, qty=100,
                                       order_type=OrderType.LIMIT, limit_price=10.0), P.now_ns())
    o.status = OrderStatus.PENDING_NEW
    ex.orders["c-1"] = o
    return ex, o


def fills(ex: FixExchange) -> list:
    return [e.fill for e in ex._events if isinstance(e, FillEvent)]


def test_a_fill_is_taken_once_whatever_is_resent(tmp_path):
    ex, o = exchange(tmp_path)
    ex._on_app(er(cl="c-1", oid="V1", exec_id="E1", exec_type="F", status="1", cum="40", avg="10", last_qty="40",
                  last_px="10"))
    ex._on_app(er(cl="c-1", oid="V1", exec_id="E1", exec_type="F", status="1", cum="40", avg="10", last_qty="40",
                  last_px="10"))  # the same ExecID again
    assert [(f.qty, f.price, f.fill_id) for f in fills(ex)] == [(40, 10.0, "F1")] and o.filled_qty == 40
    # after a restart the ExecIDs are forgotten: the cumulative quantity says it is not new
    again, o2 = exchange(tmp_path)
    o2.filled_qty, o2.status = 40, OrderStatus.PARTIALLY_FILLED
    again._on_app(er(cl="c-1", exec_id="E1", exec_type="F", status="1", cum="40", avg="10", last_qty="40", last_px="10"))
    assert fills(again) == [] and o2.filled_qty == 40
    again._on_app(er(cl="c-1", exec_id="E2", exec_type="F", status="2", cum="100", avg="10", last_qty="60", last_px="10"))
    assert [f.qty for f in fills(again)] == [60] and o2.status is OrderStatus.FILLED


def test_filled_is_final_and_done_for_day_expires_the_rest(tmp_path):
    ex, o = exchange(tmp_path)
    ex._on_app(er(cl="c-1", exec_id="E1", exec_type="F", status="2", cum="100", avg="10", last_qty="100", last_px="10"))
    ex._on_app(er(cl="c-1", exec_id="E0", exec_type="0", status="0", cum="0"))  # a late "new"
    assert o.status is OrderStatus.FILLED and o.filled_qty == 100
    ex2, o2 = exchange(tmp_path)
    ex2._on_app(er(cl="c-1", exec_id="E1", exec_type="F", status="1", cum="30", avg="10", last_qty="30", last_px="10"))
    ex2._on_app(er(cl="c-1", exec_id="E2", exec_type="3", status="3", cum="30", text="done for day"))
    assert o2.status is OrderStatus.EXPIRED and o2.filled_qty == 30 and o2.reason == "done for day"


def test_a_report_under_a_cancels_own_id_is_the_orders(tmp_path):
    ex, o = exchange(tmp_path)
    fid = ex._new_id("c-1", "c")
    ex._on_app(er(cl=fid, orig="c-1", exec_id="E9", exec_type="4", status="4", cum="0", text="cancelled on request"))
    snaps = [e.order for e in ex._events if isinstance(e, OrderEvent)]
    assert snaps[-1].client_order_id == "c-1" and o.status is OrderStatus.CANCELLED
    ex._on_app(er(cl="nobody", exec_id="E10", exec_type="0", status="0"))
    assert "did not send" in ex.notices[-1]
