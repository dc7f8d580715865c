"""Helpers for the tests that hold a specialised validator to the generic one's verdicts."""

from __future__ import annotations

from typing import Any, Callable

from workers import protocol as P


def verdict(decode: Callable[[dict], P.Message], d: dict) -> Any:
    """The decoded message, or "rejected"."""
    try:
        return decode(d)
    except P.ProtocolError:
        return "rejected"


def generic(cls: type[P.Message]) -> Callable[[dict], P.Message]:
    """The generic Message.from_dict of ``cls`` (what its own from_dict specialises)."""
    return lambda d: P.Message.from_dict.__func__(cls, d)


def same(a: Any, b: Any) -> bool:
    """Equal verdicts: the same message with the same field types (int -> float included), or
    both rejected.  (NaN never gets in, so plain equality is enough.)"""
    if isinstance(a, P.Message) and isinstance(b, P.Message):
        return a == b and all(type(getattr(a, n)) is type(getattr(b, n)) for n in a._names)
    return a == b
