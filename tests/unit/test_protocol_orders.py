"""The send_order fast path: the specialised validator agrees with the generic one on valid
orders, on every field mutated to something odd, and on orders with fields left out."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tests.unit.fastpath import generic as generic_of
from tests.unit.fastpath import same, verdict
from tests.unit.test_protocol import ids, prices, symbols
from workers import protocol as P

ints = st.integers(min_value=0, max_value=2**63 - 1)
weird = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=4), st.sampled_from(["buy", "sell", "market", "limit", "", "x" * 200]), st.binary(max_size=3),
    st.lists(st.integers(-5, 5), max_size=2), st.dictionaries(st.text(max_size=2), st.integers(), max_size=1),
)


@st.composite
def orders(draw):
    kind = draw(st.sampled_from(list(P.OrderType)))
    return P.SendOrder(
        client_order_id=draw(ids),
        symbol=draw(symbols),
        side=draw(st.sampled_from(list(P.Side))),
        qty=draw(st.integers(1, P.MAX_QTY)),
        order_type=kind,
        limit_price=draw(prices) if kind is P.OrderType.LIMIT else None,
        source=draw(st.text(max_size=30)),
        ts=draw(ints),
        cause_ts=draw(ints),
        origin_ts=draw(ints),
    )


def generic(d: dict):
    return verdict(generic_of(P.SendOrder), d)


def fast(d: dict):
    return verdict(P.SendOrder.from_dict, d)


@given(orders())
def test_fast_order_decode_equals_generic_on_valid_orders(o):
    d = o.to_dict()
    P._symbol("symbol", o.symbol)  # a symbol seen before: the fast path's own case
    assert same(fast(d), generic(d))
    assert fast(d) == o


@given(orders(), st.sampled_from(P.SendOrder._names), weird)
def test_fast_order_decode_equals_generic_on_mutations(o, field, value):
    d = o.to_dict()
    P._symbol("symbol", o.symbol)
    d[field] = value
    assert same(fast(d), generic(d))


@given(orders(), st.sets(st.sampled_from(P.SendOrder._names), min_size=1))
def test_fast_order_decode_equals_generic_without_fields(o, missing):
    d = o.to_dict()
    for name in missing:
        del d[name]
    assert same(fast(d), generic(d))
