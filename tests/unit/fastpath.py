"""Helpers for the tests that hold a specialised validator to the generic one's verdicts."""

from __future__ import annotations

from typing import Any, Callable

from workers import protocol as P


def verdicts(cls: type[P.Message]) -> tuple[Callable[[dict], Any], Callable[[dict], Any]]:
    """(fast, generic): the verdict of ``cls.from_dict`` (the specialised validator) and of the
    generic ``Message.from_dict`` it specialises -- the decoded message, or "rejected"."""

    def verdict(decode: Callable[[dict], P.Message], d: dict) -> Any:
        try:
            return decode(d)
        except P.ProtocolError:
            return "rejected"

    generic = P.Message.from_dict.__func__
    return (lambda d: verdict(cls.from_dict, d)), (lambda d: verdict(lambda x: generic(cls, x), d))


def same(a: Any, b: Any) -> bool:
    """Equal verdicts: the same message with the same field types (int -> float included), or
    both rejected.  (NaN never gets in, so plain equality is enough.)"""
    if isinstance(a, P.Message) and isinstance(b, P.Message):
        return a == b and all(type(getattr(a, n)) is type(getattr(b, n)) for n in a._names)
    return a == b
