"""Matching rules of the simulated exchange, and positions derived from fills."""

from __future__ import annotations

import itertools

import pytest

from workers import protocol as P
from workers.exchange.client import FillEvent, FillRecord, Order, OrderEvent
from workers.positions import PositionBook
from workers.exchange.simulated import SimulatedExchange
from workers.protocol import OrderStatus, OrderType, Side

_seq = itertools.count(1)


def tick(symbol="AAA", bid=99.0, ask=101.0, bid_size=100, ask_size=100) -> P.Tick:
    return P.Tick(
        symbol=symbol,
        seq=next(_seq),
        ts=P.now_ns(),
        last=(bid + ask) / 2,
        bid=bid,
        ask=ask,
        bid_size=bid_size,
        ask_size=ask_size,
        volume=0,
    )


def order(cid, side=Side.BUY, qty=10, symbol="AAA", limit=None) -> Order:
    req = P.SendOrder(
        client_order_id=cid,
        symbol=symbol,
        side=side,
        qty=qty,
        order_type=OrderType.LIMIT if limit is not None else OrderType.MARKET,
        limit_price=limit,
        ts=P.now_ns(),
    )
    return Order.from_request(req, P.now_ns())


def fills(events):
    return [e.fill for e in events if isinstance(e, FillEvent)]


def statuses(events):
    return [e.order.status for e in events if isinstance(e, OrderEvent)]


@pytest.fixture
def ex():
    return SimulatedExchange()


def test_market_buy_fills_at_ask_and_sell_at_bid(ex):
    ex.on_tick(tick(bid=99.0, ask=101.0))
    buy = order("b1", Side.BUY, 10)
    ev = ex.submit(buy, P.now_ns())
    assert statuses(ev) == [OrderStatus.NEW, OrderStatus.FILLED]
    [f] = fills(ev)
    assert (f.qty, f.price, f.side, f.fill_id, f.order_id) == (10, 101.0, Side.BUY, "F1", "O1")
    assert (buy.status, buy.filled_qty, buy.avg_price) == (OrderStatus.FILLED, 10, 101.0)

    sell = order("s1", Side.SELL, 5)
    [f2] = fills(ex.submit(sell, P.now_ns()))
    assert (f2.price, f2.fill_id, sell.order_id) == (99.0, "F2", "O2")


def test_market_order_beyond_touch_size_partially_fills_then_completes_on_next_tick(ex):
    ex.on_tick(tick(ask=101.0, ask_size=30))
    o = order("m1", Side.BUY, 50)
    ev = ex.submit(o, P.now_ns())
    assert [f.qty for f in fills(ev)] == [30]
    assert o.status is OrderStatus.PARTIALLY_FILLED and o.remaining == 20
    assert ex.working("AAA") == [o]

    t2 = tick(ask=102.0, ask_size=100)
    ev = ex.on_tick(t2)
    [f] = fills(ev)
    assert (f.qty, f.price, f.cause_ts, f.origin_ts) == (20, 102.0, t2.ts, t2.ts)
    assert statuses(ev) == [OrderStatus.FILLED]
    assert o.avg_price == pytest.approx((30 * 101.0 + 20 * 102.0) / 50)
    assert ex.working() == []


def test_touch_liquidity_is_shared_until_the_next_tick(ex):
    ex.on_tick(tick(ask=101.0, ask_size=15))
    a, b = order("a", qty=10), order("b", qty=10)
    ex.submit(a, P.now_ns())
    ex.submit(b, P.now_ns())
    assert (a.filled_qty, b.filled_qty) == (10, 5)
    ex.on_tick(tick(ask=101.0, ask_size=15))
    assert b.status is OrderStatus.FILLED


def test_zero_touch_size_leaves_market_order_working(ex):
    ex.on_tick(tick(ask_size=0))
    o = order("z", qty=10)
    ev = ex.submit(o, P.now_ns())
    assert statuses(ev) == [OrderStatus.NEW] and fills(ev) == []
    assert o.is_working


def test_limit_order_rests_then_fills_when_market_crosses(ex):
    ex.on_tick(tick(bid=99.0, ask=101.0))
    buy = order("l1", Side.BUY, 10, limit=100.0)
    ev = ex.submit(buy, P.now_ns())
    assert statuses(ev) == [OrderStatus.NEW] and fills(ev) == []
    assert ex.on_tick(tick(bid=99.5, ask=100.5)) == []  # not crossed yet
    ev = ex.on_tick(tick(bid=99.0, ask=99.8, ask_size=100))
    [f] = fills(ev)
    assert f.price == 99.8  # min(limit, ask)
    assert buy.status is OrderStatus.FILLED

    sell = order("l2", Side.SELL, 10, limit=105.0)
    ex.submit(sell, P.now_ns())
    assert sell.status is OrderStatus.NEW
    [f] = fills(ex.on_tick(tick(bid=106.0, ask=107.0)))
    assert f.price == 106.0 and sell.status is OrderStatus.FILLED


def test_limit_fills_up_to_touch_size_per_tick(ex):
    ex.on_tick(tick(bid=99.0, ask=101.0))
    o = order("l", Side.BUY, 100, limit=100.0)
    ex.submit(o, P.now_ns())
    ex.on_tick(tick(bid=98.0, ask=99.0, ask_size=40))
    assert (o.status, o.filled_qty) == (OrderStatus.PARTIALLY_FILLED, 40)
    ex.on_tick(tick(bid=98.0, ask=99.5, ask_size=80))
    assert (o.status, o.filled_qty) == (OrderStatus.FILLED, 100)


def test_marketable_limit_fills_immediately(ex):
    ex.on_tick(tick(bid=99.0, ask=101.0, ask_size=100))
    o = order("ml", Side.BUY, 10, limit=102.0)
    ev = ex.submit(o, P.now_ns())
    [f] = fills(ev)
    assert f.price == 101.0 and o.status is OrderStatus.FILLED


def test_limit_order_without_market_data_rests(ex):
    o = order("nl", Side.SELL, 10, limit=50.0)
    ev = ex.submit(o, P.now_ns())
    assert statuses(ev) == [OrderStatus.NEW]
    [f] = fills(ex.on_tick(tick(bid=51.0, ask=52.0)))
    assert f.price == 51.0


def test_cancel_working_order(ex):
    ex.on_tick(tick())
    o = order("c1", Side.BUY, 10, limit=90.0)
    ex.submit(o, P.now_ns())
    res = ex.cancel(o, P.now_ns())
    assert res.ok and o.status is OrderStatus.CANCELLED
    assert statuses(res.events) == [OrderStatus.CANCELLED]
    assert ex.working() == []
    assert fills(ex.on_tick(tick(bid=80.0, ask=85.0))) == []


def test_cancel_filled_order_is_refused(ex):
    ex.on_tick(tick())
    o = order("c2", qty=10)
    ex.submit(o, P.now_ns())
    assert o.status is OrderStatus.FILLED
    res = ex.cancel(o, P.now_ns())
    assert not res.ok and "not working" in res.reason and res.events == []
    assert o.status is OrderStatus.FILLED


def test_market_order_without_market_data_is_rejected(ex):
    o = order("r1", symbol="ZZZ")
    ev = ex.submit(o, P.now_ns())
    assert statuses(ev) == [OrderStatus.REJECTED]
    assert o.reason == "no market data for ZZZ"
    assert o.order_id == "O1"  # a rejected order still has an id (it is journaled)


def test_ids_continue_after_recover():
    ex = SimulatedExchange()
    ex.on_tick(tick())
    resting = order("keep", Side.BUY, 10, limit=50.0)
    ex.submit(resting, P.now_ns())
    ex.submit(order("f"), P.now_ns())
    state = ex.state()

    ex2 = SimulatedExchange()
    assert ex2.recover([resting], state, P.now_ns()) == []
    assert ex2.working("AAA") == [resting]
    ex2.on_tick(tick(bid=40.0, ask=45.0))
    assert resting.status is OrderStatus.FILLED
    nxt = order("n")
    ex2.submit(nxt, P.now_ns())
    assert nxt.order_id == f"O{state['next_order_n']}"


def test_recover_rejects_orders_never_acknowledged():
    ex = SimulatedExchange()
    pending = order("p")
    [ev] = ex.recover([pending], {}, P.now_ns())
    assert ev.order.status is OrderStatus.REJECTED and pending.order_id


# ----------------------------------------------------------------------------- positions


def fill(n, side, qty, price, symbol="AAA") -> FillRecord:
    return FillRecord(n, f"F{n}", f"c{n}", f"O{n}", symbol, side, qty, price, 0)


def test_positions_average_cost_and_realized_pnl_on_reduce():
    book = PositionBook()
    book.apply(fill(1, Side.BUY, 10, 100.0))
    book.apply(fill(2, Side.BUY, 10, 110.0))
    p = book.get("AAA")
    assert (p.qty, p.avg_price, p.realized_pnl) == (20, 105.0, 0.0)
    book.apply(fill(3, Side.SELL, 5, 120.0))
    assert (p.qty, p.avg_price, p.realized_pnl) == (15, 105.0, 75.0)
    book.apply(fill(4, Side.SELL, 15, 100.0))
    assert (p.qty, p.avg_price, p.realized_pnl) == (0, 0.0, 0.0)
    assert book.last_fill_seq == 4


def test_positions_flip_realizes_the_closed_part_and_opens_at_fill_price():
    book = PositionBook()
    book.apply(fill(1, Side.BUY, 10, 100.0))
    book.apply(fill(2, Side.SELL, 25, 90.0))
    p = book.get("AAA")
    assert (p.qty, p.avg_price, p.realized_pnl) == (-15, 90.0, -100.0)
    book.apply(fill(3, Side.BUY, 5, 80.0))  # short covers lower: profit
    assert (p.qty, p.avg_price, p.realized_pnl) == (-10, 90.0, -50.0)
    book.apply(fill(4, Side.BUY, 30, 85.0))  # flip back long
    assert (p.qty, p.avg_price, p.realized_pnl) == (20, 85.0, 0.0)


def test_positions_are_per_symbol_and_from_simulated_fills(ex):
    ex.on_tick(tick("AAA", bid=10.0, ask=11.0))
    ex.on_tick(tick("BBB", bid=20.0, ask=21.0))
    book = PositionBook()
    for o in (order("1", Side.BUY, 10, "AAA"), order("2", Side.SELL, 4, "BBB"), order("3", Side.SELL, 4, "AAA")):
        for f in fills(ex.submit(o, P.now_ns())):
            book.apply(f)
    assert [(m["symbol"], m["qty"]) for m in book.to_list()] == [("AAA", 6), ("BBB", -4)]
    assert book.get("AAA").realized_pnl == pytest.approx(4 * (10.0 - 11.0))
