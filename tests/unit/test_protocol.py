"""Protocol: every message round-trips; malformed input is rejected with a reason, never a crash."""

from __future__ import annotations

import math

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from workers import protocol as P

symbols = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-", min_size=1, max_size=12)
prices = st.floats(min_value=0.01, max_value=1e6, allow_nan=False, allow_infinity=False)
qtys = st.integers(min_value=1, max_value=P.MAX_QTY)
ids = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=40)
ts = st.integers(min_value=0, max_value=2**63 - 1)
sides = st.sampled_from(list(P.Side))


@st.composite
def ticks(draw):
    bid = draw(prices)
    ask = bid + draw(st.floats(min_value=0.0, max_value=10.0))
    return P.Tick(
        symbol=draw(symbols),
        seq=draw(st.integers(min_value=1, max_value=2**40)),
        ts=draw(ts),
        last=draw(prices),
        bid=bid,
        ask=ask,
        bid_size=draw(st.integers(0, 10**6)),
        ask_size=draw(st.integers(0, 10**6)),
        volume=draw(st.integers(0, 2**40)),
    )


@st.composite
def orders(draw):
    kind = draw(st.sampled_from(list(P.OrderType)))
    trail = draw(st.booleans())
    return P.SendOrder(
        client_order_id=draw(ids),
        symbol=draw(symbols),
        side=draw(sides),
        qty=draw(qtys),
        order_type=kind,
        limit_price=draw(prices) if kind.has_limit else None,
        stop_price=draw(prices) if kind in (P.OrderType.STOP, P.OrderType.STOP_LIMIT) else None,
        trail_amount=draw(prices) if kind is P.OrderType.TRAILING_STOP and trail else None,
        trail_pct=draw(st.floats(0.01, 99.0)) if kind is P.OrderType.TRAILING_STOP and not trail else None,
        tif=draw(st.sampled_from([P.TimeInForce.DAY, P.TimeInForce.GTC] if kind.is_stop else list(P.TimeInForce))),
        source=draw(st.text(max_size=30)),
        ts=draw(ts),
        cause_ts=draw(ts),
        origin_ts=draw(ts),
    )


def _priced(cls, *id_fields, **drawn):
    """A Signal or Fill: both carry an instrument, a side, a size and a price at a time."""
    return st.builds(cls, **dict.fromkeys(id_fields, ids), symbol=symbols, side=sides, qty=qtys, price=prices, ts=ts, **drawn)


def signals():
    return _priced(P.Signal, "id", "strategy", cause_ts=ts, reason=st.text(max_size=100))


def fills():
    return _priced(P.Fill, "fill_id", "client_order_id", "order_id", seq=st.integers(0, 2**40))


@given(st.one_of(ticks(), orders(), signals(), fills()))
def test_round_trip(msg):
    assert P.decode(msg.pack()) == msg


@given(ticks())
def test_published_frame_round_trip_and_topic(tick):
    frame = P.pub(tick)
    assert frame.startswith(b"tick." + tick.symbol.encode() + b"\x00")
    topic, back = P.decode_pub(frame, expect=P.Tick)
    assert topic == b"tick." + tick.symbol.encode()
    assert back == tick


@given(signals(), st.booleans())
def test_signal_decision_nests_a_valid_signal(sig, accepted):
    d = P.SignalDecision(signal=sig, accepted=accepted, ts=1, reason="x", client_order_id="c1" if accepted else None)
    back = P.decode(d.pack())
    assert back.parsed_signal == sig
    assert back.accepted is accepted


@settings(suppress_health_check=[HealthCheck.too_slow], max_examples=300)
@given(st.binary(max_size=512))
def test_random_bytes_raise_protocol_error_only(data):
    try:
        P.decode(data)
    except P.ProtocolError as e:
        assert str(e)


@settings(max_examples=300)
@given(st.dictionaries(st.text(max_size=10), st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1), st.floats(), st.text(max_size=10), st.binary(max_size=10)), max_size=12))
def test_random_maps_raise_protocol_error_only(d):
    d = dict(d)
    d.setdefault("v", 1)
    try:
        P.decode(msgpack.packb(d))
    except P.ProtocolError as e:
        assert str(e)


@given(orders(), st.sampled_from(["qty", "symbol", "side", "client_order_id", "limit_price", "order_type"]), st.one_of(st.none(), st.booleans(), st.integers(-5, 0), st.floats(allow_nan=True), st.text(max_size=3), st.binary(max_size=3), st.lists(st.integers(-10, 10), max_size=2)))
def test_mutated_orders_are_rejected_or_still_valid(order, field, value):
    d = order.to_dict()
    d[field] = value
    try:
        back = P.decode(msgpack.packb(d, use_bin_type=True))
    except P.ProtocolError as e:
        assert str(e)
        return
    # Accepted only if it is still a well-formed order.
    assert back.qty > 0 and back.symbol and back.client_order_id
    assert back.limit_price is None or (math.isfinite(back.limit_price) and back.limit_price > 0)


@pytest.mark.parametrize(
    "payload, reason",
    [
        (b"", "empty"),
        (b"\xc1", "not a msgpack"),
        (msgpack.packb([1, 2, 3]), "must be a msgpack map"),
        (msgpack.packb({"v": 2, "type": "ping"}), "unsupported protocol version"),
        (msgpack.packb({"v": 1}), "no 'type'"),
        (msgpack.packb({"v": 1, "type": "launch_rockets"}), "unknown message type"),
        (msgpack.packb({"v": 1, "type": "send_order", "symbol": "A", "side": "buy", "qty": 1}), "missing field 'client_order_id'"),
        (msgpack.packb({"v": 1, "type": "send_order", "client_order_id": "c", "symbol": "A", "side": "hold", "qty": 1}), "field 'side': Invalid enum value 'hold'"),
        (msgpack.packb({"v": 1, "type": "send_order", "client_order_id": "c", "symbol": "A", "side": "buy", "qty": 10**12}), "field 'qty': Expected `int` <= 10000000"),
        (msgpack.packb({"v": 1, "type": "send_order", "client_order_id": "c", "symbol": "A", "side": "buy", "qty": 1.5}), "field 'qty': Expected `int`, got `float`"),
        (msgpack.packb({"v": 1, "type": "send_order", "client_order_id": "c", "symbol": "A", "side": "buy", "qty": 1, "order_type": "limit"}), "needs 'limit_price'"),
        (msgpack.packb({"v": 1, "type": "send_order", "client_order_id": "c", "symbol": "A", "side": "buy", "qty": 1, "order_type": "limit", "limit_price": float("inf")}), "field 'limit_price': Expected `float` < 1000000000.0"),
        (msgpack.packb({"v": 1, "type": "send_order", "client_order_id": "c", "symbol": "A", "side": "buy", "qty": 1, "order_type": "limit", "limit_price": -3.0}), "field 'limit_price': Expected `float` > 0.0"),
        (msgpack.packb({"v": 1, "type": "send_order", "client_order_id": "c", "symbol": "A B", "side": "buy", "qty": 1}), "field 'symbol': a symbol is 1..32 ASCII letters, digits or . _ - /"),
        (msgpack.packb({"v": 1, "type": "tick", "symbol": "A", "seq": 1, "ts": 1, "last": 1.0, "bid": 2.0, "ask": 1.0, "bid_size": 1, "ask_size": 1, "volume": 1}), "bid 2.0 above ask"),
        (b"\x81" + b"\xa1v" + b"\x01" + b"x" * (P.MAX_MESSAGE_BYTES + 1), "exceeds"),
    ],
)
def test_rejections_say_what_is_wrong(payload, reason):
    with pytest.raises(P.ProtocolError, match=reason):
        P.decode(payload)


def test_expect_rejects_other_types_on_an_endpoint():
    fill = P.Fill(fill_id="F1", client_order_id="c", order_id="O1", symbol="A", side=P.Side.BUY, qty=1, price=1.0, ts=1)
    with pytest.raises(P.ProtocolError, match="unexpected message type 'fill'"):
        P.decode(fill.pack(), expect=P.Tick)


def test_published_frame_without_separator_is_rejected():
    with pytest.raises(P.ProtocolError, match="topic separator"):
        P.decode_pub(b"\x00abc")
    with pytest.raises(P.ProtocolError):
        P.decode_pub(b"no separator at all")


def test_reply_shapes():
    # a request that was not one: exactly v, type, ok, reason (docs/protocol.md)
    assert P.unpack_map(P.error_reply("qty too big", "send_order")) == {"v": 1, "type": "send_order_reply", "ok": False, "reason": "qty too big"}
    assert P.unpack_map(P.error_reply("garbage")) == {"v": 1, "type": "error", "ok": False, "reason": "garbage"}
    # and the typed reader sees it with the reply's defaults: no status, so not an order
    r = P.decode_reply(P.error_reply("qty too big", "send_order"), P.SendOrder)
    assert isinstance(r, P.SendOrderReply) and not r.ok and r.status is None
    ok = P.SendOrderReply(ok=True, client_order_id="c1", order_id="O1", status=P.OrderStatus.FILLED, filled_qty=5, avg_price=1.5, ts=9)
    assert P.decode_reply(P.packb(ok), P.SendOrder) == ok
    with pytest.raises(P.ProtocolError, match="unexpected message type 'ping_reply'"):
        P.decode_reply(P.packb(P.PingReply(ok=True)), P.SendOrder)


def test_every_request_has_a_declared_reply():
    assert set(P.REPLY_FOR) == set(P.REQUEST_CLASSES) | set(P.SNAPSHOT_REQUESTS)
    for req, rep in P.REPLY_FOR.items():
        assert rep.TYPE == f"{req.TYPE}_reply"
        assert {"ok", "reason"} <= {f.name for f in P.fields_of(rep)}


def test_a_payload_without_v_is_read_as_version_1():
    assert P.decode(msgpack.packb({"type": "ping", "ts": 5})) == P.Ping(ts=5)


def test_order_status_terminal_set():
    assert P.OrderStatus.FILLED.is_terminal and P.OrderStatus.REJECTED.is_terminal
    assert not P.OrderStatus.NEW.is_terminal and not P.OrderStatus.UNKNOWN.is_terminal


# ---- what the outside reliability check found accepted (issue 11 item 9)

LOOKALIKES = ["ÄPL", "АAPL", "ＡＡＰＬ", "AAPL١", "AAPL\n", "", "A" * 33, "ſ"]


@pytest.mark.parametrize("v", [True, 1.0, "1", 0, 2, None])
def test_only_the_integer_1_is_version_1(v):
    d = {"v": v, "type": "ping", "ts": 1}
    with pytest.raises(P.ProtocolError, match="version|field 'v'"):
        P.decode(msgpack.packb(d))
    with pytest.raises(P.ProtocolError, match="version|field 'v'"):
        P.from_map(d)


@pytest.mark.parametrize("symbol", LOOKALIKES)
def test_symbols_outside_the_documented_alphabet_are_refused_with_the_rule(symbol):
    order = {"v": 1, "type": "send_order", "client_order_id": "c", "symbol": symbol, "side": "buy", "qty": 1}
    tick = {"v": 1, "type": "tick", "symbol": symbol, "seq": 1, "ts": 1, "last": 1.0, "bid": 1.0, "ask": 1.0,
            "bid_size": 1, "ask_size": 1, "volume": 1}
    for d in (order, tick):
        with pytest.raises(P.ProtocolError) as e:
            P.decode(msgpack.packb(d))
        # the limit the reason states is the real one (it said 1..128 when the limit was 32)
        assert str(e.value).endswith("field 'symbol': a symbol is 1..32 ASCII letters, digits or . _ - /")


@pytest.mark.parametrize("seq", [2**63, 2**64 - 1])
def test_sequence_numbers_beyond_int64_are_refused(seq):
    tick = {"v": 1, "type": "tick", "symbol": "AAPL", "seq": seq, "ts": 1, "last": 1.0, "bid": 1.0, "ask": 1.0,
            "bid_size": 1, "ask_size": 1, "volume": 1}
    with pytest.raises(P.ProtocolError, match="field 'seq'"):
        P.decode(msgpack.packb(tick))
    tick["seq"] = 2**63 - 1
    assert P.decode(msgpack.packb(tick)).seq == 2**63 - 1
