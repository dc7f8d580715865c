"""Declarative table columns (as vn.py declares its monitors), without Qt.

A table is a tuple of :class:`Column`; each says how to read a value from a row object,
how to show it, how to align and colour it, and what to write to CSV.  The Qt model in
:mod:`app.models.table` only interprets these declarations, so adding a column is one line
here and the tests can check formatting without a QApplication.
"""

from __future__ import annotations

import datetime as _dt
import math
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any


@dataclass(frozen=True)
class Column:
    """One column: ``key`` (stable id for settings and CSV), ``title`` (header), ``get`` (raw
    value, also the sort key), ``fmt`` (display text), ``align`` ("l" or "r"), ``tone``
    (row -> "up" | "down" | "warn" | "bad" | "muted" | None, coloured by the theme),
    ``tip`` (row -> tooltip), ``width`` (initial pixels), ``csv`` (row -> exported value)."""

    key: str
    title: str
    get: Callable[[Any], Any]
    fmt: Callable[[Any], str] = str
    align: str = "l"
    tone: Callable[[Any], str | None] | None = None
    tip: Callable[[Any], str] | None = None
    width: int = 80
    csv: Callable[[Any], Any] | None = None
    header_tip: str = ""

    def text(self, row: Any) -> str:
        try:
            return self.fmt(self.get(row))
        except Exception:  # a view must never raise into Qt
            return "?"

    def export(self, row: Any) -> Any:
        try:
            if self.csv is not None:
                return self.csv(row)
            v = self.get(row)
            if isinstance(v, Enum):
                return v.value
            return "" if v is None else v
        except Exception:
            return ""


def attr(name: str) -> Callable[[Any], Any]:
    def get(row: Any) -> Any:
        return getattr(row, name)

    get.__name__ = f"attr_{name}"
    return get


# ----------------------------------------------------------------------------- formatters


def price(v: float | None) -> str:
    if v is None or v == 0 or (isinstance(v, float) and not math.isfinite(v)):
        return ""
    return f"{v:,.2f}"


def price4(v: float | None) -> str:
    if not v:
        return ""
    return f"{v:,.4f}"


def signed(v: float) -> str:
    return f"{v:+,.2f}" if v else "0.00"


def pct(v: float) -> str:
    return f"{v:+.2f}%" if v else "0.00%"


def integer(v: int | None) -> str:
    return "" if v is None else f"{v:,}"


def signed_int(v: int) -> str:
    return f"{v:+,}" if v else "0"


def rate(v: float) -> str:
    if v >= 10_000:
        return f"{v / 1000:.0f}k"
    if v >= 100:
        return f"{v:,.0f}"
    return f"{v:.1f}" if v else "0"


def enum(v: Any) -> str:
    return v.value if isinstance(v, Enum) else ("" if v is None else str(v))


def upper(v: Any) -> str:
    return enum(v).upper()


def clock_ns(ts: int) -> str:
    """Wall-clock time of a nanosecond timestamp, with milliseconds (local time)."""
    if not ts:
        return ""
    t = _dt.datetime.fromtimestamp(ts / 1e9)
    return t.strftime("%H:%M:%S.") + f"{t.microsecond // 1000:03d}"


def iso_ns(ts: int) -> str:
    if not ts:
        return ""
    return _dt.datetime.fromtimestamp(ts / 1e9, tz=_dt.timezone.utc).isoformat(timespec="microseconds")


def clock_s(ts: float) -> str:
    if not ts:
        return ""
    t = _dt.datetime.fromtimestamp(ts)
    return t.strftime("%H:%M:%S.") + f"{t.microsecond // 1000:03d}"


def duration(s: float | None) -> str:
    if s is None or s <= 0:
        return ""
    s = int(s)
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"


def age(s: float | None) -> str:
    if s is None:
        return "-"
    return f"{s:.1f}s"


def micros(v: float | None) -> str:
    if not v:
        return ""
    if v >= 10_000:
        return f"{v / 1000:,.1f} ms"
    return f"{v:,.0f} µs"


def updown(v: float) -> str | None:
    if v > 0:
        return "up"
    if v < 0:
        return "down"
    return None
