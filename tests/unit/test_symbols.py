"""The one symbol rule (workers/symbols.py)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from workers.symbols import MAX_SYMBOL_LEN, SYMBOL_PATTERN, is_valid_symbol, normalize_symbol, parse_symbols

SYMBOL_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-/"


def test_text_and_lists_are_split_normalised_and_deduplicated_in_order():
    assert parse_symbols(" aapl, MSFT,,aapl ") == ("AAPL", "MSFT")
    assert parse_symbols("msft aapl\tgoog") == ("MSFT", "AAPL", "GOOG")
    assert parse_symbols(["brk.b", "BRK.B", "EUR/USD"]) == ("BRK.B", "EUR/USD")
    assert parse_symbols(["AAPL,MSFT", " goog "]) == ("AAPL", "MSFT", "GOOG")
    assert parse_symbols(("a" for _ in range(3))) == ("A",)
    assert parse_symbols("") == () and parse_symbols([]) == () and parse_symbols(" , ") == ()


@pytest.mark.parametrize("bad", ["AA$PL", "X" * (MAX_SYMBOL_LEN + 1), "ÄPPLE", "ſpy", "AAPL\x00", "*"])
def test_a_bad_symbol_is_named_in_the_error(bad):
    with pytest.raises(ValueError) as e:
        parse_symbols(f"MSFT,{bad}")
    assert repr(bad.strip()) in str(e.value)


def test_non_text_is_refused():
    for bad in (None, 5, [1], ["AAPL", None]):
        with pytest.raises(ValueError):
            parse_symbols(bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        normalize_symbol(3)


def test_normalize_symbol():
    assert normalize_symbol(" eur/usd ") == "EUR/USD"
    assert normalize_symbol("X" * MAX_SYMBOL_LEN) == "X" * MAX_SYMBOL_LEN
    for bad in ("", "   ", "AA PL", "A\tB"):
        with pytest.raises(ValueError):
            normalize_symbol(bad)
    assert not is_valid_symbol("AAPL\n") and not is_valid_symbol("AA PL") and not is_valid_symbol(None)


def test_pattern_is_anchored_for_search_semantics():
    # msgspec's Meta(pattern=...) uses re.search: the pattern itself must refuse what surrounds a symbol
    rx = re.compile(SYMBOL_PATTERN)
    assert rx.search("AAPL") and rx.search("brk.b")
    for bad in ("AAPL\n", " AAPL", "AAPL ", "A$", "", "X" * 33):
        assert rx.search(bad) is None, bad


@given(st.lists(st.text(alphabet=SYMBOL_CHARS, min_size=1, max_size=MAX_SYMBOL_LEN), max_size=20))
def test_parse_is_idempotent_and_keeps_first_occurrences(items):
    once = parse_symbols(items)
    assert parse_symbols(once) == once
    assert parse_symbols(",".join(items)) == once
    assert list(once) == list(dict.fromkeys(s.upper() for s in items))
    assert all(is_valid_symbol(s) and s == s.upper() for s in once)


@given(st.text(max_size=40))
def test_normalize_agrees_with_the_pattern(text):
    s = text.strip()
    if re.search(SYMBOL_PATTERN, s):
        assert normalize_symbol(text) == s.upper()
    else:
        with pytest.raises(ValueError):
            normalize_symbol(text)
