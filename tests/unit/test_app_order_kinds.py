"""Issue 13's order kinds in the window's Qt-free part: the ticket's terms and their sentences,
what send_order carries, replace_order and set_oco through the order service (scripted
exchange), and the order book taking the new order_update fields."""

from __future__ import annotations

import asyncio

import msgspec
import pytest

from workers import protocol as P
from workers.executor.risk import RiskChecker, RiskLimits
from workers.protocol import OrderStatus, OrderType, Side, TimeInForce
from app.orders import Ticket, confirmation_text, snap, validate_ticket
from app.state import AppState, OrderBook
from tests.unit.test_app_orders import NoBars, synced_service


def market(last=100.0):
    st = AppState(bars_factory=NoBars)
    st.market.on_tick("MSFT", 1, P.now_ns(), last, last - 0.01, last + 0.01, 100, 100, 1000)
    return st


RISK = RiskChecker(RiskLimits(max_order_qty=1000, price_band_pct=5.0))


def reason(t: Ticket, st=None) -> str:
    d = validate_ticket(t, st or market(), RISK)
    return "" if d else d.reason


@pytest.mark.parametrize("ticket, expected", [
    (Ticket("MSFT", Side.BUY, 10, OrderType.STOP), "A stop order needs a positive stop price."),
    (Ticket("MSFT", Side.BUY, 10, OrderType.STOP, stop_price=99.0), "A buy stop's price must be above the last price 100.00"),
    (Ticket("MSFT", Side.SELL, 10, OrderType.STOP, stop_price=101.0), "A sell stop's price must be below the last price"),
    (Ticket("MSFT", Side.BUY, 10, OrderType.STOP_LIMIT, stop_price=101.0), "A stop limit order needs a positive limit price."),
    (Ticket("MSFT", Side.SELL, 10, OrderType.TRAILING_STOP), "A trailing stop needs a trail amount or a trail percentage."),
    (Ticket("MSFT", Side.SELL, 10, OrderType.TRAILING_STOP, trail_amount=0.5, trail_pct=1.0), "not both"),
    (Ticket("MSFT", Side.SELL, 10, OrderType.TRAILING_STOP, trail_pct=120.0), "between 0 and 100"),
    (Ticket("MSFT", Side.BUY, 10, OrderType.STOP, stop_price=101.0, tif=TimeInForce.IOC),
     "IOC applies to market and limit orders, not to a stop order"),
    (Ticket("MSFT", Side.BUY, 10, OrderType.LIMIT, 99.0, take_profit_price=98.0),
     "The take-profit price must be above the limit price 99.00 for a buy."),
    (Ticket("MSFT", Side.SELL, 10, OrderType.LIMIT, 101.0, stop_loss_price=100.5),
     "The stop-loss price must be above the limit price 101.00 for a sell."),
    (Ticket("MSFT", Side.BUY, 10, take_profit_price=99.0), "The take-profit price must be above the entry 100.01"),
    (Ticket("MSFT", Side.BUY, 10, OrderType.LIMIT, 99.0, stop_loss_price=98.0, stop_loss_tif=TimeInForce.FOK),
     "their time in force is DAY or GTC"),
    # the risk check prices a stop at its stop: 106 is outside the 5 % band
    (Ticket("MSFT", Side.BUY, 10, OrderType.STOP, stop_price=106.0), "Risk: price 106.00 outside 5.0% band"),
])
def test_invalid_terms_are_refused_with_a_sentence(ticket, expected):
    assert expected in reason(ticket)


@pytest.mark.parametrize("ticket", [
    Ticket("MSFT", Side.BUY, 10, OrderType.STOP, stop_price=101.0, tif=TimeInForce.GTC),
    Ticket("MSFT", Side.SELL, 10, OrderType.STOP_LIMIT, stop_price=99.0, limit_price=98.9),
    Ticket("MSFT", Side.SELL, 10, OrderType.TRAILING_STOP, trail_amount=0.5),
    Ticket("MSFT", Side.BUY, 10, OrderType.TRAILING_STOP, trail_pct=1.0),
    Ticket("MSFT", Side.BUY, 10, tif=TimeInForce.FOK),
    Ticket("MSFT", Side.BUY, 10, OrderType.LIMIT, 99.0, tif=TimeInForce.IOC),
    Ticket("MSFT", Side.BUY, 10, OrderType.LIMIT, 99.0, take_profit_price=101.0, stop_loss_price=98.0),
])
def test_valid_kinds_pass(ticket):
    assert reason(ticket) == ""


def test_submit_sends_every_term_and_the_row_holds_them():
    st = market()
    svc = synced_service(st, lambda m: P.SendOrderReply(ok=True, client_order_id=m.client_order_id, order_id="O1",
                                                         status=OrderStatus.NEW))

    async def main():
        t = Ticket("msft", Side.BUY, 10, OrderType.STOP_LIMIT, limit_price=101.2, stop_price=101.0, tif=TimeInForce.GTC,
                   take_profit_price=103.0, stop_loss_price=100.0, trail_amount=9.0)  # trail: not this type's
        d, coid = svc.submit(t)
        assert d, d.reason
        await asyncio.sleep(0.05)
        return coid

    coid = asyncio.run(main())
    req = svc.client.sent[0]
    assert isinstance(req, P.SendOrder) and req.symbol == "MSFT"
    assert (req.order_type, req.limit_price, req.stop_price, req.tif) == (OrderType.STOP_LIMIT, 101.2, 101.0, TimeInForce.GTC)
    assert (req.take_profit_price, req.stop_loss_price, req.trail_amount, req.trail_pct) == (103.0, 100.0, None, None)
    row = st.orders.get(coid)
    assert (row.stop_price, row.tif, row.take_profit_price, row.status) == (101.0, TimeInForce.GTC, 103.0, OrderStatus.NEW)


def test_confirmation_text_shows_notional_and_distance():
    q = market().market.quotes["MSFT"]
    text = confirmation_text(Ticket("MSFT", Side.BUY, 100, OrderType.LIMIT, 99.01, take_profit_price=101.0), q)
    assert "Notional: 9,901.00 (100 x 99.01)" in text
    assert "Limit 99.01: -1.00 (-1.00%) from the ask" in text
    assert "Take profit 101.00 (GTC): +1.99 (+2.01%) from the entry" in text
    # each leg's time in force, in the text and in the order's description
    legs = Ticket("MSFT", Side.BUY, 100, OrderType.LIMIT, 99.01, take_profit_price=101.0, stop_loss_price=98.0,
                  take_profit_tif=TimeInForce.DAY)
    text = confirmation_text(legs, q)
    assert "Take profit 101.00 (DAY)" in text and "Stop loss 98.00 (GTC)" in text
    assert legs.describe().endswith("TP 101.00 DAY SL 98.00")
    text = confirmation_text(Ticket("MSFT", Side.SELL, 10, OrderType.STOP, stop_price=98.0), q)
    assert "Notional: 980.00" in text and "Stop 98.00: -2.00 (-2.00%) from the last" in text
    assert "at market" in confirmation_text(Ticket("MSFT", Side.SELL, 10), q)


def working(st, svc_answer, **terms):
    """A service with one working MSFT order (O1) already acknowledged."""
    svc = synced_service(st, svc_answer)
    up = P.OrderUpdate(client_order_id="manual-a-1", order_id="O1", symbol="MSFT", side=Side.BUY, qty=10,
                       filled_qty=0, avg_price=0.0, status=OrderStatus.NEW, ts=P.now_ns(),
                       **({"order_type": OrderType.LIMIT, "limit_price": 99.0} | terms))
    st.orders.apply_update(up)
    return svc, up


def test_replace_applies_the_replied_order():
    st = market()

    def answer(m):
        assert isinstance(m, P.ReplaceOrder)
        order = msgspec.structs.replace(up, qty=m.qty or up.qty, limit_price=m.limit_price or up.limit_price,
                                        ts=P.now_ns())
        return P.ReplaceOrderReply(ok=True, client_order_id="manual-a-1", order_id="O1", status=OrderStatus.NEW,
                                   replace_id=m.client_order_id, order=order)

    svc, up = working(st, answer)
    seen = []
    svc.listeners.append(seen.append)
    asyncio.run(_await(lambda: svc.replace("manual-a-1", qty=20, limit_price=99.5)))
    req = svc.client.sent[0]
    assert req.orig_client_order_id == "manual-a-1" and req.client_order_id.startswith("replace-")
    assert (req.qty, req.limit_price, req.stop_price) == (20, 99.5, None)
    row = st.orders.get("manual-a-1")
    assert (row.qty, row.limit_price) == (20, 99.5)
    assert [o.kind for o in seen] == ["replace_sent", "replaced"] and seen[-1].client_order_id == "manual-a-1"
    assert svc.replacing == {}
    # the stream's update published before the replace, read after it, does not undo it
    st.orders.apply_update(up)
    assert (row.qty, row.limit_price) == (20, 99.5)


async def _await(start):
    """Start the request inside a running loop (as the window does) and wait for it."""
    await start()


def test_replace_refused_unknown_and_not_sent():
    st = market()
    answers = iter([P.ReplaceOrderReply(ok=False, reason="qty 5 must exceed filled 6", client_order_id="manual-a-1",
                                        status=OrderStatus.PARTIALLY_FILLED), None])
    svc, _ = working(st, lambda m: next(answers))
    seen = []
    svc.listeners.append(seen.append)
    asyncio.run(_await(lambda: svc.replace("manual-a-1", qty=11)))
    assert seen[-1].kind == "replace_rejected" and "qty 5 must exceed filled 6" in seen[-1].text
    assert st.orders.get("manual-a-1").qty == 10
    asyncio.run(_await(lambda: svc.replace("manual-a-1", limit_price=99.2)))
    assert seen[-1].kind == "replace_unknown" and not seen[-1].ok
    n = len(svc.client.sent)
    # refused here, nothing sent: a stop price on a limit order, a qty at the filled, a done order
    for kw in ({"stop_price": 101.0}, {"qty": 0}, {"limit_price": -1.0}):
        asyncio.run(_await(lambda: svc.replace("manual-a-1", **kw)))
        assert seen[-1].kind == "replace_rejected" and "not sent" in seen[-1].text
    st.orders.set_status("manual-a-1", OrderStatus.FILLED)
    asyncio.run(_await(lambda: svc.replace("manual-a-1", qty=12)))
    assert "only a working order" in seen[-1].text and len(svc.client.sent) == n


def test_replace_a_stop_price_checked_against_the_market():
    st = market()
    svc, _ = working(st, lambda m: None, order_type=OrderType.STOP, limit_price=None, stop_price=101.0)
    seen = []
    svc.listeners.append(seen.append)
    asyncio.run(_await(lambda: svc.replace("manual-a-1", stop_price=99.5)))
    assert seen[-1].kind == "replace_rejected" and "above the last price 100.00" in seen[-1].text
    assert svc.client.sent == []


def test_set_oco_marks_the_group():
    st = market()
    svc, up = working(st, lambda m: P.SetOcoReply(ok=True, oco_group="oco-1"))
    st.orders.apply_update(msgspec.structs.replace(up, client_order_id="manual-a-2", side=Side.SELL, limit_price=101.0))
    seen = []
    svc.listeners.append(seen.append)
    asyncio.run(_await(lambda: svc.set_oco(["manual-a-1", "manual-a-2"])))
    assert svc.client.sent[0].client_order_ids == ["manual-a-1", "manual-a-2"]
    assert st.orders.get("manual-a-2").oco_group == "oco-1" and seen[-1].kind == "oco_set"
    asyncio.run(_await(lambda: svc.set_oco(["manual-a-1"])))
    assert seen[-1].kind == "oco_rejected" and len(svc.client.sent) == 1


def test_order_book_takes_the_new_fields_and_children():
    book = OrderBook()
    t0 = P.now_ns()
    parent = P.OrderUpdate(client_order_id="m-1", order_id="O1", symbol="MSFT", side=Side.BUY, qty=10, filled_qty=10,
                           avg_price=100.0, status=OrderStatus.FILLED, ts=t0, order_type=OrderType.LIMIT,
                           limit_price=100.0, take_profit_price=102.0, stop_loss_price=99.0, tif=TimeInForce.GTC)
    book.apply_update(parent)
    sl = P.OrderUpdate(client_order_id="m-1.sl", order_id="O3", symbol="MSFT", side=Side.SELL, qty=10, filled_qty=0,
                       avg_price=0.0, status=OrderStatus.NEW, ts=t0 + 2, order_type=OrderType.STOP, stop_price=99.0,
                       parent_id="m-1", oco_group="m-1", emulated=True)
    book.apply_update(sl)
    tp = msgspec.structs.replace(sl, client_order_id="m-1.tp", order_id="O2", order_type=OrderType.LIMIT,
                                 stop_price=None, limit_price=102.0, emulated=False)
    book.apply_update(tp)
    assert [c.client_order_id for c in book.children("m-1")] == ["m-1.tp", "m-1.sl"]
    row = book.get("m-1.sl")
    assert (row.parent_id, row.oco_group, row.emulated, row.stop_price) == ("m-1", "m-1", True, 99.0)
    assert book.get("m-1").take_profit_price == 102.0 and book.get("m-1").tif is TimeInForce.GTC
    # triggered stays once seen; a partial fill that grows the child's qty is taken
    book.apply_update(msgspec.structs.replace(sl, triggered=True, qty=10, ts=t0 + 3))
    book.apply_update(msgspec.structs.replace(sl, triggered=False, qty=15, ts=t0 + 4))
    assert row.triggered and row.qty == 15
    # a send reply (no terms) leaves them
    book.apply_map({"client_order_id": "m-1.sl", "status": "new", "order_id": "O3"})
    assert row.qty == 15 and row.stop_price == 99.0


def test_snap_to_the_tick():
    assert snap(100.004) == 100.0 and snap(100.006) == 100.01 and snap(99.995) in (99.99, 100.0)


def test_a_ticket_with_both_trails_is_refused_not_trimmed():
    st = market()
    svc = synced_service(st, lambda m: None)
    d, coid = svc.submit(Ticket("MSFT", Side.SELL, 10, OrderType.TRAILING_STOP, trail_amount=0.5, trail_pct=1.0))
    assert not d and coid is None and "not both" in d.reason and svc.client.sent == []
