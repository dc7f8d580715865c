"""One record per entity: the gateway's records, the journal's columns and what is published
derive from the message declarations, and stay in line with them."""

from __future__ import annotations

import msgspec
import pytest

from workers import protocol as P
from workers.exchange import journal as J
from workers.exchange.client import FillRecord, Order
from workers.protocol import OrderStatus, OrderType, Side


def names(cls) -> list[str]:
    return [f.name for f in msgspec.structs.fields(cls) if f.name != "v"]


def test_the_order_record_is_order_update_without_seq_plus_its_creation_time():
    assert names(Order) == [n for n in names(P.OrderUpdate) if n not in P.STREAM_FIELDS] + ["created_ts"]
    # every term of a send_order is kept on the record under the same name
    assert set(P.ORDER_TERMS) <= set(names(Order)) and set(P.ORDER_TERMS) <= set(names(P.SendOrder))


def test_the_fill_record_is_fill_without_seq_after_its_number():
    assert names(FillRecord) == ["n"] + [n for n in names(P.Fill) if n not in P.STREAM_FIELDS]


def test_journal_columns_are_the_record_fields():
    assert J.ORDER_COLUMNS == tuple(names(Order))
    assert J.FILL_COLUMNS == tuple(names(FillRecord))


def orders() -> list:
    limit = Order(client_order_id="c-1", symbol="AAPL", side=Side.SELL, qty=300, order_type=OrderType.LIMIT, limit_price=190.25,
                  source="manual", order_id="O7", status=OrderStatus.PARTIALLY_FILLED, filled_qty=120, avg_price=190.3,
                  created_ts=1, ts=2, cause_ts=3, origin_ts=4)
    market = Order(client_order_id="c-2", symbol="MSFT", side=Side.BUY, qty=1, source="strategy.sr1", order_id="O8",
                   status=OrderStatus.FILLED, filled_qty=1, avg_price=410.5, ts=10**18, cause_ts=10**18 - 5, origin_ts=10**18 - 9)
    rejected = Order(client_order_id="c-3", symbol="ZZZ", side=Side.BUY, qty=5, order_id="-", status=OrderStatus.REJECTED,
                     reason="no market data for ZZZ")
    return [limit, market, rejected]


@pytest.mark.parametrize("order", orders(), ids=lambda o: o.client_order_id)
def test_a_published_order_update_carries_every_field_of_the_record(order):
    topic, msg = P.decode_pub(P.pub(order.to_update(42)))
    assert topic == b"exec.order." + order.symbol.encode() and msg.seq == 42
    for name in names(Order):
        if name != "created_ts":
            assert getattr(msg, name) == getattr(order, name), name


def test_a_published_fill_carries_every_field_of_the_record():
    fill = FillRecord(9, "F9", "c-1", "O7", "AAPL", Side.SELL, 120, 190.3, 123, "manual", 100, 90)
    topic, msg = P.decode_pub(P.pub(fill.to_message(43)))
    assert topic == b"exec.fill.AAPL" and msg.seq == 43
    assert [getattr(msg, n) for n in names(FillRecord)[1:]] == [getattr(fill, n) for n in names(FillRecord)[1:]]


def test_an_order_round_trips_through_the_journal(tmp_path):
    j = J.Journal(tmp_path / "j.sqlite")
    j.write(orders(), [FillRecord(1, "F1", "c-1", "O7", "AAPL", Side.SELL, 120, 190.3, 123)], {"c-1": b"r"}, {})
    j.close()
    j = J.Journal(tmp_path / "j.sqlite")
    rec = j.load()
    assert rec.orders == orders() and rec.fills[0].fill_id == "F1"
    j.close()


def test_the_windows_rows_and_their_columns_derive_from_the_declarations():
    from app.models import tables
    from app.state import FillRow, OrderRow

    assert names(OrderRow) == [n for n in names(P.OrderUpdate) if n not in P.STREAM_FIELDS] + ["created_ts"]
    assert names(FillRow) == [n for n in names(P.Fill) if n not in P.STREAM_FIELDS] + ["latency_us"]
    # every column of the order and fill tables shows a field of its row (or one derived from it)
    derived = {"value", "flags"}  # qty * price; the order kind's flags (triggered, emulated, trail, TP/SL, OCO)
    for columns, row in ((tables.WORKING_COLUMNS, OrderRow), (tables.HISTORY_COLUMNS, OrderRow), (tables.FILL_COLUMNS, FillRow)):
        assert {c.key for c in columns} - derived <= set(names(row)), row.__name__


def test_what_the_gateway_publishes_stays_readable_by_its_declaration():
    # a broker's long reject text is cut in the report (the journal keeps it whole)
    long = Order(client_order_id="c-9", symbol="AAPL", side=Side.BUY, qty=1, order_id="O9", status=OrderStatus.REJECTED,
                 reason="x" * 5000)
    _, msg = P.decode_pub(P.pub(long.to_update(1)))
    assert len(msg.reason) == P.MAX_TEXT and msg.reason.endswith("…") and len(long.reason) == 5000
    # an order held for its first market data has no order_id yet: get_order still answers it
    held = Order(client_order_id="c-10", symbol="AAPL", side=Side.BUY, qty=1)
    reply = P.decode_reply(P.packb(P.GetOrderReply(ok=True, client_order_id="c-10", status=held.status, order=held.to_update())),
                           P.GetOrder)
    assert isinstance(reply, P.GetOrderReply) and reply.order.order_id == "" and reply.order.status is OrderStatus.PENDING_NEW
    # an unreadable request's refusal is cut too
    assert len(P.unpack_map(P.error_reply("y" * 5000, "send_order"))["reason"]) == P.MAX_TEXT


def test_exchange_clients_written_against_updated_ts_keep_working():
    o = Order(client_order_id="c", symbol="A", side=Side.BUY, qty=1)
    o.updated_ts = 123
    assert o.ts == 123 and o.updated_ts == 123


def test_a_get_orders_reply_beyond_one_frame_limit_is_still_read():
    ups = [o.to_update() for o in orders()] * 1500  # ~4,500 orders: well over 256 KiB
    data = P.packb(P.GetOrdersReply(ok=True, orders=ups))
    assert len(data) > P.MAX_MESSAGE_BYTES
    from workers.order_client import decode_reply

    typed = P.reply_of(decode_reply(data), P.GetOrders)
    assert isinstance(typed, P.GetOrdersReply) and len(typed.orders) == len(ups)
    assert len(P.decode_reply(data, P.GetOrders).orders) == len(ups)
