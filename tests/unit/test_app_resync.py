"""Issue 12, items 3, 4 and 6 on the window's side (scripted exchange, no sockets): the fills
blotter fills from get_fills, pages through it and never shows a fill twice; an order stuck
pending is queried and resolved, shown as querying meanwhile; positions per source."""

from __future__ import annotations

import asyncio

from tests.unit.test_app_orders import FakeClient, market
from workers import protocol as P
from workers.protocol import OrderStatus, Side
from app.models.tables import HISTORY_COLUMNS, POSITION_COLUMNS
from app.orders import OrderService
from app.state import OrderRow


def fill(n, sym="MSFT", side=Side.BUY, qty=10, price=100.0, source="manual", coid=None):
    return P.Fill(fill_id=f"F{n}", client_order_id=coid or f"c{n}", order_id=f"O{n}", symbol=sym, side=side, qty=qty,
                  price=price, ts=P.now_ns(), source=source)


def history_exchange(n_fills, page_cap, positions=None, last_fill_seq=0):
    journal = [fill(i, qty=1) for i in range(1, n_fills + 1)]
    asked = []

    def answer(msg):
        if isinstance(msg, P.GetPositions):
            return P.GetPositionsReply(ok=True, positions=positions or [], last_fill_seq=last_fill_seq)
        if isinstance(msg, P.GetOrders):
            return P.GetOrdersReply(ok=True, orders=[])
        if isinstance(msg, P.GetFills):
            asked.append(msg.since_fill)
            page = [f for f in journal if int(f.fill_id[1:]) > msg.since_fill][:min(page_cap, msg.limit or page_cap)]
            return P.GetFillsReply(ok=True, fills=page, last_fill=n_fills)
        return None

    return answer, asked


def test_sync_pages_through_get_fills_and_keeps_each_fill_once():
    st = market()
    # F2 already came on the live stream before the window asked
    st.on_fill(fill(2, qty=1))
    answer, asked = history_exchange(25, page_cap=10, positions=[P.NetPosition("MSFT", 25, 100.0, 0.0)], last_fill_seq=25)
    svc = OrderService(st, "ipc://unused", client=FakeClient(answer))
    assert asyncio.run(svc.sync())
    ids = [f.fill_id for f in st.fills.items]
    assert sorted(ids, key=lambda i: int(i[1:])) == [f"F{i}" for i in range(1, 26)] and len(ids) == 25
    assert asked[0] == 0
    assert len(asked) >= 3  # paged, not one request
    assert svc.history_fills == 24
    # the net position is the exchange's, not the exchange's plus the replayed history
    assert st.position("MSFT").qty == 25
    # history fills carry no tick-to-fill latency measured here
    assert all(f.latency_us == 0 for f in st.fills.items if f.fill_id != "F2")
    # a resync asks only for what is newer, and nothing new means nothing added
    asked.clear()
    assert asyncio.run(svc.sync())
    assert asked == [25] and len(st.fills) == 25


def test_a_gateway_without_get_fills_still_syncs():
    st = market()

    def answer(msg):
        if isinstance(msg, P.GetPositions):
            return P.GetPositionsReply(ok=True)
        if isinstance(msg, P.GetOrders):
            return P.GetOrdersReply(ok=True)
        if isinstance(msg, P.GetFills):
            return P.ErrorReply(ok=False, reason="unknown message type 'get_fills'")
        return None

    svc = OrderService(st, "ipc://unused", client=FakeClient(answer))
    assert asyncio.run(svc.sync()) and svc.synced and not svc.fills_supported
    assert any("fills history not loaded" in ln.text for ln in st.log.items)


def status_cell(row) -> str:
    col = next(c for c in HISTORY_COLUMNS if c.key == "status")
    return col.text(row)


def test_an_order_pending_beyond_its_timeout_is_queried_and_resolved():
    st = market()
    now = P.now_ns()
    st.orders.add(OrderRow(client_order_id="m1", symbol="MSFT", side=Side.BUY, qty=5, source="manual",
                           status=OrderStatus.PENDING_NEW, created_ts=now - 10**10, ts=now - 10**10))
    st.orders.add(OrderRow(client_order_id="m2", symbol="MSFT", side=Side.BUY, qty=5, source="manual",
                           status=OrderStatus.PENDING_NEW, created_ts=now, ts=now))
    gate = asyncio.Event()

    async def run():
        async def answer_later(msg):
            await gate.wait()
            return P.GetOrderReply(ok=True, order=P.OrderUpdate(
                client_order_id="m1", order_id="O9", symbol="MSFT", side=Side.BUY, qty=5, filled_qty=5, avg_price=100.0,
                status=OrderStatus.FILLED, ts=P.now_ns())).to_dict()

        client = FakeClient(lambda m: None)
        client.request = answer_later
        svc = OrderService(st, "ipc://unused", client=client)
        svc.synced = True
        stuck = svc.stuck()
        assert [o.client_order_id for o in stuck] == ["m1"]  # m2 is young
        task = asyncio.ensure_future(svc._query_stuck(stuck[0]))
        await asyncio.sleep(0.01)
        # while the answer is out, the blotter says so
        assert status_cell(st.orders.get("m1")) == "PENDING_NEW (QUERYING)"
        gate.set()
        await task
        return svc

    svc = asyncio.run(run())
    row = st.orders.get("m1")
    assert row.status is OrderStatus.FILLED and not row.querying and status_cell(row) == "FILLED"
    assert svc.stuck() == [] or [o.client_order_id for o in svc.stuck()] == ["m2"]


def test_a_cancel_without_answer_is_queried():
    st = market()
    now = P.now_ns()
    row = st.orders.add(OrderRow(client_order_id="m3", symbol="MSFT", side=Side.BUY, qty=5, source="manual",
                                 status=OrderStatus.NEW, created_ts=now, ts=now))
    st.orders.cancel_sent["m3"] = now - 10**10
    answer = lambda m: P.GetOrderReply(ok=True, order=P.OrderUpdate(  # noqa: E731
        client_order_id="m3", order_id="O3", symbol="MSFT", side=Side.BUY, qty=5, filled_qty=0, avg_price=0.0,
        status=OrderStatus.CANCELLED, ts=P.now_ns()))
    svc = OrderService(st, "ipc://unused", client=FakeClient(answer))
    assert [o.client_order_id for o in svc.stuck()] == ["m3"]
    asyncio.run(svc._query_stuck(row))
    assert row.status is OrderStatus.CANCELLED and svc.stuck() == []


def test_positions_are_attributed_to_their_source_with_totals():
    st = market(100.0)
    st.on_fill(fill(1, qty=10, price=100.0, source="manual"))
    st.on_fill(fill(2, qty=30, price=100.0, source="strategy.sr-bounce"))
    st.on_fill(fill(3, side=Side.SELL, qty=5, price=102.0, source="strategy.sr-bounce"))
    # a fill without a source takes its order's
    st.orders.add(OrderRow(client_order_id="k4", symbol="MSFT", side=Side.SELL, qty=4, source="manual",
                           status=OrderStatus.NEW))
    st.on_fill(fill(4, side=Side.SELL, qty=4, price=101.0, source="", coid="k4"))
    assert st.manual_position("MSFT") == 6 and st.position("MSFT").qty == 31
    rows = st.position_rows("MSFT")
    assert [(r.key, r.source, r.qty) for r in rows] == [
        ("MSFT", "net", 31), ("MSFT manual", "manual", 6), ("MSFT strategy.sr-bounce", "strategy.sr-bounce", 25)]
    pnl = st.pnl_by_source()
    assert pnl["manual"][0] == 4.0 and pnl["strategy.sr-bounce"][0] == 10.0
    # the source rows are marked to market too
    st.market.on_tick("MSFT", 2, P.now_ns(), 110.0, 109.99, 110.01, 100, 100, 1100)
    st.collect()
    assert st.positions_by_source("MSFT")["manual"].unrealized_pnl == 6 * 10.0
    assert sum(u for _, u in st.pnl_by_source().values()) == st.pnl_totals()[1]
    src_col = next(c for c in POSITION_COLUMNS if c.key == "source")
    assert [src_col.text(r) for r in rows] == ["net", "manual", "strategy.sr-bounce"]
    # one source only: one row, named by its source
    assert [(r.key, r.source) for r in market().position_rows("MSFT")] == []
    st2 = market()
    st2.on_fill(fill(1, source="manual"))
    assert [(r.key, r.source) for r in st2.position_rows("MSFT")] == [("MSFT", "manual")]
