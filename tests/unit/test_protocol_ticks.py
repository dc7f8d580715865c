"""Ticks: the declarations accept exactly what they declare, and the batched ``ticks`` form
reads back exactly like the ``tick`` frames it replaces."""

from __future__ import annotations

import math

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from workers import protocol as P

symbols = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-", min_size=1, max_size=12)
prices = st.floats(min_value=0.01, max_value=1e6, allow_nan=False, allow_infinity=False)
ints = st.integers(min_value=0, max_value=2**62)
weird = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=4), st.binary(max_size=3), st.lists(st.integers(-5, 5), max_size=2),
)


@st.composite
def ticks(draw, symbol=None):
    bid = draw(prices)
    return P.Tick(
        symbol=symbol or draw(symbols),
        seq=draw(ints),
        ts=draw(ints),
        last=draw(prices),
        bid=bid,
        ask=bid + draw(st.floats(min_value=0.0, max_value=10.0)),
        bid_size=draw(st.integers(0, 10**6)),
        ask_size=draw(st.integers(0, 10**6)),
        volume=draw(ints),
    )


@given(ticks(), st.sampled_from([f.name for f in P.fields_of(P.Tick)]), weird)
def test_a_mutated_tick_is_accepted_only_if_its_declaration_allows_it(t, field, value):
    d = t.to_dict()
    d[field] = value
    try:
        back = P.Tick.from_dict(d)
    except P.ProtocolError as e:
        assert field in str(e) or "bid" in str(e)
        return
    # what got in is a valid tick: the declared ranges hold, ints only where ints are due
    assert back.symbol and 0 < back.last < P.MAX_PRICE and 0 < back.bid <= back.ask < P.MAX_PRICE
    assert all(type(getattr(back, n)) is int and getattr(back, n) >= 0 for n in ("seq", "ts", "bid_size", "ask_size", "volume"))
    assert all(type(getattr(back, n)) is float for n in ("last", "bid", "ask"))


@given(ticks(), st.sampled_from([f.name for f in P.fields_of(P.Tick) if f.required]))
def test_missing_field_is_named(t, field):
    d = t.to_dict()
    del d[field]
    with pytest.raises(P.ProtocolError, match=field):
        P.Tick.from_dict(d)


def test_int_prices_are_accepted_as_floats_like_before():
    d = P.Tick("AAPL", 1, 2, 1.0, 1.0, 2.0, 1, 1, 1).to_dict()
    d.update(last=3, bid=1, ask=4)
    t = P.Tick.from_dict(d)
    assert (t.last, t.bid, t.ask) == (3.0, 1.0, 4.0) and type(t.last) is float


def test_a_single_row_frame_is_the_tick_message():
    t = P.Tick("MSFT", 7, 123, 420.5, 420.49, 420.51, 300, 400, 10_000)
    assert P.pub(t) == P.encode_ticks("MSFT", [t.row])


@given(st.lists(ticks(symbol="AAPL"), min_size=1, max_size=40))
def test_ticks_frame_reads_back_as_the_same_ticks(ts):
    frame = P.encode_ticks("AAPL", [t.row for t in ts])
    assert list(P.iter_ticks(frame)) == ts
    assert P.last_tick(frame) == ts[-1]
    sym, rows = P.tick_rows(frame)
    assert sym == "AAPL" and rows == [t.row for t in ts]
    if len(ts) > 1:
        topic, msg = P.decode_pub(frame)
        assert isinstance(msg, P.Ticks) and msg.ticks == [t.row for t in ts] and topic == b"tick.AAPL"
        assert P.pub(msg) == frame


def test_single_row_is_the_classic_form():
    t = P.Tick("AAPL", 1, 2, 1.0, 1.0, 2.0, 1, 1, 1)
    frame = P.encode_ticks("AAPL", [t.row])
    _, msg = P.decode_pub(frame, expect=P.Tick)
    assert msg == t


def _frame(symbol: str, rows: list, **extra) -> bytes:
    d = {"v": 1, "type": "ticks", "symbol": symbol, "ticks": rows, **extra}
    return b"tick." + symbol.encode() + b"\x00" + msgpack.packb(d)


GOOD = [1, 10, 100.0, 99.99, 100.01, 5, 6, 7]


@pytest.mark.parametrize(
    "row, why",
    [
        ([1, 10, 100.0, 100.02, 100.01, 5, 6, 7], "bid"),
        ([1, 10, math.nan, 99.99, 100.01, 5, 6, 7], "last"),
        ([1, 10, math.inf, 99.99, 100.01, 5, 6, 7], "last"),
        ([1, 10, 0.0, 99.99, 100.01, 5, 6, 7], "last"),
        ([-1, 10, 100.0, 99.99, 100.01, 5, 6, 7], "seq"),
        ([True, 10, 100.0, 99.99, 100.01, 5, 6, 7], "seq"),
        ([1, 10, 100.0, 99.99, 100.01, -5, 6, 7], "bid_size"),
        ([1, 10, 100.0, 99.99, 100.01, 5, 6], "length 8"),
        ([1, 10, 100.0, 99.99, 100.01, 5, 6, 7, 8], "length 8"),
        ("nope", "array"),
        ([1, 10, "100", 99.99, 100.01, 5, 6, 7], "last"),
    ],
)
def test_one_bad_row_rejects_the_whole_frame(row, why):
    frame = _frame("AAPL", [GOOD, row, GOOD])
    for read in (P.tick_rows, P.iter_ticks, P.last_tick, P.decode_pub):
        with pytest.raises(P.ProtocolError, match=why):
            read(frame)


@pytest.mark.parametrize(
    "frame, why",
    [
        (_frame("AAPL", []), "length >= 1"),
        (_frame("AAPL", [GOOD] * 1025), "length <= 1024"),
        (_frame("AAPL", "rows"), "array"),
        (b"tick.MSFT\x00" + _frame("AAPL", [GOOD, GOOD]).split(b"\x00", 1)[1], "topic"),
        (b"tick.AAPL\x00" + P.Tick("MSFT", 1, 2, 1.0, 1.0, 2.0, 1, 1, 1).pack(), "topic"),
        (_frame("AA PL", [GOOD, GOOD]), "symbol"),
        (b"tick.AAPL\x00" + msgpack.packb({"v": 1, "type": "ticks", "ticks": [GOOD]}), "symbol"),
        (b"tick.AAPL\x00" + msgpack.packb({"v": 2, "type": "ticks", "symbol": "AAPL", "ticks": [GOOD]}), "version"),
        (b"tick.AAPL\x00" + P.Ping(ts=1).pack(), "unexpected"),
        (b"tick.AAPL\x00" + msgpack.packb({"v": 1, "type": "tock"}), "unknown"),
        (b"tick.AAPL\x00\x93\x01", "msgpack"),
        (b"no separator", "separator"),
    ],
)
def test_bad_tick_frames_are_protocol_errors(frame, why):
    with pytest.raises(P.ProtocolError, match=why):
        P.tick_rows(frame)


def test_int_prices_in_rows_are_normalised():
    sym, rows = P.tick_rows(_frame("AAPL", [[1, 10, 100, 99, 101, 5, 6, 7]]))
    assert rows == [(1, 10, 100.0, 99.0, 101.0, 5, 6, 7)] and type(rows[0][2]) is float


def test_old_style_expect_tick_refuses_the_batched_form():
    """What a consumer that has not moved to iter_ticks sees: a counted decode error, no crash."""
    frame = _frame("AAPL", [GOOD, GOOD])
    with pytest.raises(P.ProtocolError, match="unexpected message type 'ticks'"):
        P.decode_pub(frame, expect=P.Tick)


@given(st.binary(max_size=64))
def test_random_bytes_after_a_tick_topic_raise_protocol_error_only(data):
    try:
        P.tick_rows(b"tick.AAPL\x00" + data)
    except P.ProtocolError as e:
        assert str(e)


@given(st.dictionaries(st.sampled_from(["v", "type", "symbol", "ticks", "seq"]), weird, max_size=5))
def test_random_ticks_maps_raise_protocol_error_only(d):
    d.setdefault("type", "ticks")
    try:
        P.tick_rows(b"tick.AAPL\x00" + msgpack.packb(d))
    except P.ProtocolError as e:
        assert str(e)
