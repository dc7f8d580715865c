"""The send_order fast path: the specialised validator agrees with the generic one on valid
orders, on every field mutated to something odd, and on orders with fields left out."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tests.unit.fastpath import same, verdicts
from tests.unit.test_protocol import orders
from workers import protocol as P

weird = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=4), st.sampled_from(["buy", "sell", "market", "limit", "", "x" * 200]), st.binary(max_size=3),
    st.lists(st.integers(-5, 5), max_size=2), st.dictionaries(st.text(max_size=2), st.integers(), max_size=1),
)


fast, generic = verdicts(P.SendOrder)


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
