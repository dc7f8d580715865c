"""Positions and P&L from fills: pure logic, no zmq.

Average-cost accounting per symbol.  A fill that adds to a position (or opens one) moves the
average price; a fill against the position realizes ``closed_qty * (price - avg) * sign``
and leaves the average alone; a fill that crosses zero closes the old position, realizes its
P&L and opens the rest at the fill price.  Unrealized P&L is ``qty * (last - avg)``.

Positions derive from fills only, and each fill counts once: fills are remembered by
``fill_id``.  The exchange numbers its fills ``F<n>`` with increasing ``n`` and its
``get_positions`` reply says up to which ``n`` (``last_fill_seq``) the snapshot includes;
after :meth:`PositionBook.load_snapshot` every fill with ``n <= last_fill_seq`` is skipped,
so fills that were queued on the stream while the snapshot was taken are not counted twice.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from workers import protocol as P

#: how many fill ids to remember for de-duplication (a duplicate arrives within seconds)
SEEN_FILLS = 200_000


def fill_number(fill_id: str) -> int | None:
    """``"F42"`` -> 42; None for ids that do not follow the exchange's ``F<n>`` scheme."""
    if len(fill_id) > 1 and fill_id[0] == "F" and fill_id[1:].isdigit():
        return int(fill_id[1:])
    return None


@dataclass(slots=True)
class SymbolPosition:
    symbol: str
    qty: int = 0  # signed: > 0 long, < 0 short
    avg_price: float = 0.0  # average entry price of the open qty (0 when flat)
    realized_pnl: float = 0.0
    last: float = 0.0  # last traded price, 0 if none seen

    @property
    def unrealized_pnl(self) -> float:
        if not self.qty or self.last <= 0:
            return 0.0
        return self.qty * (self.last - self.avg_price)

    def apply(self, side: P.Side | str, qty: int, price: float) -> None:
        signed = qty if P.Side(side) is P.Side.BUY else -qty
        old = self.qty
        if old == 0 or (old > 0) == (signed > 0):
            # opening or adding: the average moves towards the fill price
            total = abs(old) + qty
            self.avg_price = (abs(old) * self.avg_price + qty * price) / total
            self.qty = old + signed
            return
        closed = min(qty, abs(old))
        direction = 1 if old > 0 else -1
        self.realized_pnl += closed * (price - self.avg_price) * direction
        self.qty = old + signed
        if self.qty == 0:
            self.avg_price = 0.0
        elif (self.qty > 0) != (old > 0):
            # flipped: what is left over opened a new position at the fill price
            self.avg_price = price

    def to_message(self, ts: int) -> P.Position:
        return P.Position(
            symbol=self.symbol,
            qty=self.qty,
            avg_price=self.avg_price,
            realized_pnl=self.realized_pnl,
            unrealized_pnl=self.unrealized_pnl,
            ts=ts,
            last=self.last,
        )


class PositionBook:
    """Every symbol's position, built from fills (and optionally a snapshot first)."""

    def __init__(self) -> None:
        self.positions: dict[str, SymbolPosition] = {}
        #: fills numbered up to here are already inside the loaded snapshot
        self.last_fill_seq = 0
        self._seen: set[str] = set()
        self._seen_order: collections.deque[str] = collections.deque()

    def get(self, symbol: str) -> SymbolPosition:
        pos = self.positions.get(symbol)
        if pos is None:
            pos = self.positions[symbol] = SymbolPosition(symbol)
        return pos

    def qty(self, symbol: str) -> int:
        pos = self.positions.get(symbol)
        return pos.qty if pos else 0

    def _remember(self, fill_id: str) -> None:
        self._seen.add(fill_id)
        self._seen_order.append(fill_id)
        if len(self._seen_order) > SEEN_FILLS:
            self._seen.discard(self._seen_order.popleft())

    def apply_fill(self, fill: P.Fill) -> bool:
        """Apply a fill once.  Returns False (and changes nothing) for a fill already counted."""
        if fill.fill_id in self._seen:
            return False
        n = fill_number(fill.fill_id)
        if n is not None and n <= self.last_fill_seq:
            return False
        self._remember(fill.fill_id)
        self.get(fill.symbol).apply(fill.side, fill.qty, fill.price)
        return True

    def mark(self, symbol: str, last: float) -> bool:
        """Record the last price of ``symbol``; True if the book holds that symbol."""
        pos = self.positions.get(symbol)
        if pos is None:
            return False
        pos.last = last
        return True

    def load_snapshot(self, positions: Iterable[Mapping[str, Any]], last_fill_seq: int) -> None:
        """Start from the exchange's ``get_positions`` reply.

        Each entry needs ``symbol`` and ``qty`` and may carry ``avg_price`` and
        ``realized_pnl`` (if absent, the realized P&L counted so far is kept).  Last prices
        already known are kept.  Raises ValueError for an
        entry that cannot be read, leaving the book as it was.
        """
        fresh: dict[str, SymbolPosition] = {}
        for entry in positions:
            if not isinstance(entry, Mapping):
                raise ValueError("position entry is not a map")
            symbol = entry.get("symbol")
            if not isinstance(symbol, str) or not symbol:
                raise ValueError("position entry has no symbol")
            old = self.positions.get(symbol)
            qty = entry.get("qty")
            avg = entry.get("avg_price", 0.0)
            # a gateway that does not report realized P&L keeps what this book has counted
            realized = entry.get("realized_pnl", old.realized_pnl if old else 0.0)
            if isinstance(qty, bool) or not isinstance(qty, int):
                raise ValueError(f"position {symbol}: qty must be an integer")
            for name, v in (("avg_price", avg), ("realized_pnl", realized)):
                if isinstance(v, bool) or not isinstance(v, (int, float)):
                    raise ValueError(f"position {symbol}: {name} must be a number")
            fresh[symbol] = SymbolPosition(
                symbol, qty, float(avg) if qty else 0.0, float(realized), old.last if old else 0.0
            )
        if isinstance(last_fill_seq, bool) or not isinstance(last_fill_seq, int) or last_fill_seq < 0:
            raise ValueError("last_fill_seq must be a non-negative integer")
        # Symbols the snapshot does not list are flat; their marks and realized P&L survive.
        for symbol, old in self.positions.items():
            fresh.setdefault(symbol, SymbolPosition(symbol, realized_pnl=old.realized_pnl, last=old.last))
        self.positions = fresh
        self.last_fill_seq = last_fill_seq

    def to_messages(self, ts: int, symbols: Iterable[str] | None = None) -> list[P.Position]:
        names = self.positions.keys() if symbols is None else symbols
        return [self.positions[s].to_message(ts) for s in names if s in self.positions]

    def __len__(self) -> int:
        return len(self.positions)
