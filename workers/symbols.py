"""The one symbol rule of TickDesk: what a symbol may look like, and how typed text becomes one.

Every process reads symbols from people (CLI flags, TOML, the order ticket) and from the wire.
They must agree, or a strategy told ``aapl`` waits forever for ticks the feed publishes as
``AAPL``.  So there is one rule, :data:`SYMBOL_PATTERN` (the protocol validates wire symbols
with it too), and one normal form: upper case.

* :func:`normalize_symbol` -- one symbol: stripped, upper-cased, checked.
* :func:`parse_symbols` -- a list as people write it: ``"aapl, MSFT BRK.B"`` or a TOML array.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

#: longest symbol: the wire protocol's limit, which topics and journal columns rely on
MAX_SYMBOL_LEN = 32

#: The rule, as a regex for ``re.search`` (msgspec's ``Meta(pattern=...)`` searches too, hence
#: the anchors).  ``\A``/``\Z`` rather than ``^``/``$``: ``$`` also matches before a trailing
#: newline, which would let ``"AAPL\n"`` through.  ASCII only on purpose: ``str.isalnum`` (the
#: old check) accepts thousands of Unicode letters that no venue lists and that upper-case
#: into ASCII (``"ſ".upper() == "S"``), so two spellings could name one symbol.
SYMBOL_PATTERN = r"\A[A-Za-z0-9._/-]{1,%d}\Z" % MAX_SYMBOL_LEN
SYMBOL_RE = re.compile(SYMBOL_PATTERN)

#: what parse_symbols splits on: commas and any whitespace, so "AAPL, MSFT" and "AAPL MSFT" agree
_SEPARATORS = re.compile(r"[,\s]+")


def is_valid_symbol(s: object) -> bool:
    """Does ``s`` follow the rule as it stands (no stripping, any case)?"""
    return isinstance(s, str) and SYMBOL_RE.search(s) is not None


def normalize_symbol(s: object) -> str:
    """``" aapl "`` -> ``"AAPL"``; ValueError naming the symbol if it breaks the rule."""
    if not isinstance(s, str):
        raise ValueError(f"a symbol must be text, got {type(s).__name__} {s!r}")
    text = s.strip()
    # checked before upper-casing: upper() maps some non-ASCII letters onto ASCII ones
    if SYMBOL_RE.search(text) is None:
        raise ValueError(
            f"invalid symbol {text!r}: a symbol is 1..{MAX_SYMBOL_LEN} ASCII letters, digits or . _ - /"
        )
    return text.upper()


def parse_symbols(value: str | Iterable[str]) -> tuple[str, ...]:
    """Comma/space separated text or an iterable of symbols -> normalised symbols, first
    occurrence kept, in order.  Empty text gives ``()``; what "no symbols" means (every
    symbol, the feed's defaults, ...) is the caller's choice.

    Items of an iterable are split too, so ``["AAPL,MSFT"]`` from a TOML file means two.
    """
    if isinstance(value, str):
        items: Iterable[object] = (value,)
    elif isinstance(value, Iterable):
        items = value
    else:
        raise ValueError(f"symbols must be text or a list, got {type(value).__name__} {value!r}")
    out: dict[str, None] = {}
    for item in items:
        if not isinstance(item, str):
            raise ValueError(f"a symbol must be text, got {type(item).__name__} {item!r}")
        for part in _SEPARATORS.split(item):
            if part:
                out.setdefault(normalize_symbol(part), None)
    return tuple(out)


__all__ = ["MAX_SYMBOL_LEN", "SYMBOL_PATTERN", "SYMBOL_RE", "is_valid_symbol", "normalize_symbol", "parse_symbols"]
