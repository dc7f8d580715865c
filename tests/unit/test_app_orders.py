"""Manual orders: validation, risk, outcomes, UNKNOWN and its reconciliation (fake client)."""

from __future__ import annotations

import asyncio

from workers import protocol as P
from workers.executor.risk import RiskLimits
from workers.order_client import RetryPolicy
from workers.protocol import OrderStatus, OrderType, Side
from app import orders as orders_mod
from app.orders import OrderService, Ticket, validate_ticket
from app.state import AppState


class NoBars:
    def add_tick(self, *a):
        pass


class FakeClient:
    """Answers requests from a script: a callable (msg -> declared reply or None), handed
    over as a map like AsyncOrderClient.request does."""

    def __init__(self, answer):
        self.answer = answer
        self.sent: list[P.Message] = []
        self.policy = RetryPolicy(0.01, 3)

    async def request(self, msg):
        self.sent.append(msg)
        await asyncio.sleep(0)
        reply = self.answer(msg)
        return None if reply is None else reply.to_dict()

    async def ask(self, msg):  # as AsyncOrderClient.ask: the map read as its typed reply
        d = await self.request(msg)
        return None if d is None else P.reply_of(d, type(msg))


def synced_service(st, answer) -> OrderService:
    """An OrderService over a scripted exchange, taken as synced (no startup sync in the test)."""
    svc = OrderService(st, "ipc://unused", client=FakeClient(answer))
    svc.synced = True
    return svc


def market(last=100.0):
    st = AppState(bars_factory=NoBars)
    st.market.on_tick("MSFT", 1, P.now_ns(), last, last - 0.01, last + 0.01, 100, 100, 1000)
    return st


def test_validation_messages():
    st = market()
    from workers.executor.risk import RiskChecker

    risk = RiskChecker(RiskLimits(max_order_qty=500, price_band_pct=5.0))
    assert validate_ticket(Ticket("", Side.BUY, 1), st, risk).reason == "Enter a symbol."
    assert "No prices for ZZZ" in validate_ticket(Ticket("zzz", Side.BUY, 1), st, risk).reason
    assert "at least 1" in validate_ticket(Ticket("MSFT", Side.BUY, 0), st, risk).reason
    assert "limit price" in validate_ticket(Ticket("MSFT", Side.BUY, 1, OrderType.LIMIT, 0.0), st, risk).reason
    assert "exceeds max order qty 500" in validate_ticket(Ticket("MSFT", Side.BUY, 501), st, risk).reason
    assert "band" in validate_ticket(Ticket("MSFT", Side.BUY, 1, OrderType.LIMIT, 90.0), st, risk).reason
    assert validate_ticket(Ticket("msft", Side.SELL, 10, OrderType.LIMIT, 99.0), st, risk)
    # the one symbol rule (workers/symbols.py): named in the reason, never sent
    bad = validate_ticket(Ticket("MS FT", Side.BUY, 1), st, risk)
    assert not bad and bad.reason.startswith("Invalid symbol 'MS FT'")
    assert "Invalid symbol" in validate_ticket(Ticket("ÄPL", Side.BUY, 1), st, risk).reason


def run(coro):
    return asyncio.run(coro)


async def wait_status(st, coid, status, tries):
    """Polls the order until it reaches ``status`` (or ``tries`` polls 10 ms apart pass)."""
    for _ in range(tries):
        await asyncio.sleep(0.01)
        if st.orders.get(coid).status is status:
            return


def test_ack_and_fill_outcomes():
    st = market()

    def answer(msg):
        if isinstance(msg, P.SendOrder):
            return P.SendOrderReply(ok=True, client_order_id=msg.client_order_id, order_id="O9",
                                    status=OrderStatus.FILLED, filled_qty=msg.qty, avg_price=100.01)
        return None

    svc = OrderService(st, "ipc://unused", client=FakeClient(answer))
    seen = []
    svc.listeners.append(seen.append)

    async def main():
        d, coid = svc.submit(Ticket("MSFT", Side.BUY, 10))
        assert d and coid.startswith("manual-")
        assert st.orders.get(coid).status is OrderStatus.PENDING_NEW  # visible before the reply
        await asyncio.sleep(0.05)
        return coid

    coid = run(main())
    o = st.orders.get(coid)
    assert o.status is OrderStatus.FILLED and o.order_id == "O9" and o.source == "manual"
    assert [x.kind for x in seen] == ["sent", "filled"]
    req = svc.client.sent[0]
    assert req.source == "manual" and req.order_type is OrderType.MARKET and req.limit_price is None


def test_reject_shows_the_reason():
    st = market()
    svc = OrderService(st, "ipc://unused", client=FakeClient(
        lambda m: P.SendOrderReply(ok=False, reason="insufficient liquidity", client_order_id=m.client_order_id,
                                   status=OrderStatus.REJECTED)))
    seen = []
    svc.listeners.append(seen.append)

    async def main():
        _, coid = svc.submit(Ticket("MSFT", Side.SELL, 10, OrderType.LIMIT, 99.5))
        await asyncio.sleep(0.05)
        return coid

    coid = run(main())
    assert st.orders.get(coid).status is OrderStatus.REJECTED
    assert seen[-1].kind == "rejected" and "insufficient liquidity" in seen[-1].text and not seen[-1].ok


def test_invalid_ticket_is_not_sent():
    st = market()
    svc = OrderService(st, "ipc://unused", RiskLimits(kill_switch=True), client=FakeClient(lambda m: None))
    d, coid = svc.submit(Ticket("MSFT", Side.BUY, 10))
    assert not d and coid is None and "kill switch" in d.reason
    assert svc.client.sent == [] and len(st.orders) == 0


def test_no_reply_is_unknown_then_reconciled_never_resent(monkeypatch):
    monkeypatch.setattr(orders_mod, "RECONCILE_EVERY", 0.01)
    st = market()
    phase = {"up": False}

    def answer(msg):
        if isinstance(msg, P.SendOrder):
            return None  # lost
        if isinstance(msg, P.GetOrder) and phase["up"]:
            order = P.OrderUpdate(client_order_id=msg.client_order_id, status=OrderStatus.NEW, order_id="O5",
                                  symbol="MSFT", side=Side.BUY, qty=10, filled_qty=0, avg_price=0.0, ts=1)
            return P.GetOrderReply(ok=True, client_order_id=msg.client_order_id, status=OrderStatus.NEW, order=order)
        return None

    svc = synced_service(st, answer)
    seen = []
    svc.listeners.append(seen.append)

    async def main():
        svc.start()
        _, coid = svc.submit(Ticket("MSFT", Side.BUY, 10))
        await wait_status(st, coid, OrderStatus.UNKNOWN, 100)
        assert st.orders.get(coid).status is OrderStatus.UNKNOWN and st.orders.get(coid).is_live
        phase["up"] = True
        await wait_status(st, coid, OrderStatus.NEW, 200)
        await svc.aclose()
        return coid

    coid = run(main())
    assert st.orders.get(coid).status is OrderStatus.NEW and st.orders.get(coid).order_id == "O5"
    sends = [m for m in svc.client.sent if isinstance(m, P.SendOrder)]
    assert len(sends) == 1  # retries are the client's job with the same id; never a new order
    assert [o.kind for o in seen if o.kind in ("unknown", "reconciled")] == ["unknown", "reconciled"]


def test_unknown_order_the_exchange_never_saw(monkeypatch):
    monkeypatch.setattr(orders_mod, "RECONCILE_EVERY", 0.01)
    st = market()

    def answer(msg):
        if isinstance(msg, P.GetOrder):
            return P.GetOrderReply(ok=False, reason=f"unknown client_order_id {msg.client_order_id}")
        return None

    svc = synced_service(st, answer)

    async def main():
        svc.start()
        _, coid = svc.submit(Ticket("MSFT", Side.BUY, 10))
        await wait_status(st, coid, OrderStatus.REJECTED, 300)
        await svc.aclose()
        return coid

    coid = run(main())
    o = st.orders.get(coid)
    assert o.status is OrderStatus.REJECTED and "never reached the exchange" in o.reason


def test_sync_loads_positions_and_orders():
    st = market()

    def answer(msg):
        if isinstance(msg, P.GetPositions):
            return P.GetPositionsReply(ok=True, positions=[P.NetPosition("MSFT", -50, 101.0, 5.0)], last_fill_seq=3)
        if isinstance(msg, P.GetOrders):
            return P.GetOrdersReply(ok=True, orders=[P.OrderUpdate(
                client_order_id="x1", order_id="O1", symbol="MSFT", side=Side.SELL, qty=50, filled_qty=0, avg_price=0.0,
                status=OrderStatus.NEW, ts=1, order_type=OrderType.LIMIT, limit_price=105.0, source="strategy")])
        return None

    svc = OrderService(st, "ipc://unused", client=FakeClient(answer))
    assert run(svc.sync())
    pos = st.position("MSFT")
    assert pos.qty == -50 and pos.realized_pnl == 5.0 and pos.last == 100.0
    o = st.orders.get("x1")
    assert o.is_live and o.order_type is OrderType.LIMIT and o.limit_price == 105.0


def test_cancel_all_reports_the_count():
    st = market()
    svc = OrderService(st, "ipc://unused", client=FakeClient(
        lambda m: P.CancelAllReply(ok=True, cancelled=["a", "b"], count=2)))
    seen = []
    svc.listeners.append(seen.append)
    reply = run(svc.cancel_all())
    assert reply.cancelled == ["a", "b"] and "2 orders" in seen[-1].text


def test_an_unreadable_or_failed_answer_is_unknown_never_rejected(monkeypatch):
    """An ErrorReply (unreadable reply, or the gateway failed on the request) may hide a live
    order: the window says UNKNOWN and reconciles, and unreadable get_order answers count
    neither way, so it is never called 'not placed' on their account."""
    monkeypatch.setattr(orders_mod, "RECONCILE_EVERY", 0.01)
    st = market()
    phase = {"up": False}

    def answer(msg):
        if isinstance(msg, P.SendOrder) or not phase["up"]:
            return P.ErrorReply(ok=False, reason="unreadable reply: 'send_order_reply' field 'reason': too long")
        order = P.OrderUpdate(client_order_id=msg.client_order_id, status=OrderStatus.FILLED, order_id="O9",
                              symbol="MSFT", side=Side.BUY, qty=10, filled_qty=10, avg_price=100.0, ts=1)
        return P.GetOrderReply(ok=True, client_order_id=msg.client_order_id, status=OrderStatus.FILLED, order=order)

    svc = synced_service(st, answer)

    async def main():
        svc.start()
        _, coid = svc.submit(Ticket("MSFT", Side.BUY, 10))
        await wait_status(st, coid, OrderStatus.UNKNOWN, 100)
        for _ in range(20):  # many unreadable get_order answers: still unknown, not rejected
            await asyncio.sleep(0.01)
        assert st.orders.get(coid).status is OrderStatus.UNKNOWN
        phase["up"] = True
        await wait_status(st, coid, OrderStatus.FILLED, 300)
        await svc.aclose()
        return coid

    coid = run(main())
    assert st.orders.get(coid).status is OrderStatus.FILLED and st.orders.get(coid).filled_qty == 10
