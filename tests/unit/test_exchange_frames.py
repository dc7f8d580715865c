"""The gateway's fast execution-report frames are byte for byte the protocol's own encoding."""

from __future__ import annotations

import pytest

from workers import protocol as P
from workers.exchange.client import FillRecord, Order
from workers.protocol import OrderStatus, OrderType, Side


def orders() -> list[Order]:
    limit = Order("c-1", "AAPL", Side.SELL, 300, OrderType.LIMIT, 190.25, "manual", "O7", OrderStatus.PARTIALLY_FILLED,
                  120, 190.3, "", 1, 2, 3, 4)
    market = Order("c-2", "MSFT", Side.BUY, 1, source="strategy.sr1", order_id="O8", status=OrderStatus.FILLED,
                   filled_qty=1, avg_price=410.5, updated_ts=10**18, cause_ts=10**18 - 5, origin_ts=10**18 - 9)
    rejected = Order("c-3", "ZZZ", Side.BUY, 5, order_id="-", status=OrderStatus.REJECTED, reason="no market data for ZZZ")
    return [limit, market, rejected]


@pytest.mark.parametrize("order", orders(), ids=lambda o: o.client_order_id)
def test_update_frame_is_the_protocol_encoding(order):
    frame = order.update_frame(42)
    assert frame == P.pub(order.to_update(42))
    topic, msg = P.decode_pub(frame)
    assert topic == b"exec.order." + order.symbol.encode()
    assert msg == order.to_update(42)


def test_fill_frame_is_the_protocol_encoding():
    fill = FillRecord(9, "F9", "c-1", "O7", "AAPL", Side.SELL, 120, 190.3, 123, "manual", 100, 90)
    frame = fill.fill_frame(43)
    assert frame == P.pub(fill.to_message(43))
    assert P.decode_pub(frame) == (b"exec.fill.AAPL", fill.to_message(43))
