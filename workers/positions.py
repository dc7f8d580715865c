"""The one position book of TickDesk: positions and P&L from fills, no zmq.

The exchange gateway, the executor and the window all hold positions, and they must agree to
the cent, so the arithmetic lives here once.  Average cost per symbol:

* a fill that opens or adds moves the average towards the fill price;
* a fill against the position realizes ``closed * (price - avg) * sign(qty)`` and leaves the
  average alone (flat: the average is 0);
* a fill that crosses zero closes the old position and opens the rest at the fill price;
* unrealized P&L is ``qty * (last - avg)``, 0 without a last price.  No fees.

Positions derive from fills only.  The gateway numbers its fills ``F<n>`` (``n`` strictly
increasing) and :attr:`PositionBook.last_fill_seq` is the newest ``n`` a book includes.  Two
ways in, because the two sides of the execution stream need different guarantees:

* :meth:`PositionBook.apply` -- the *source* of the fills (the exchange gateway, its journal
  replay): every fill is new by construction, so no de-duplication, and ``last_fill_seq``
  follows the fills.  :meth:`PositionBook.to_list` / :meth:`~PositionBook.net_positions` are
  then its ``get_positions`` reply.
* :meth:`PositionBook.apply_fill` -- a *consumer* of the stream (executor, window): each
  fill counts once (remembered by ``fill_id``), and after :meth:`~PositionBook.load_snapshot`
  (a ``get_positions`` reply) fills the snapshot already holds (``n <= last_fill_seq``) are
  skipped, so fills queued on the stream while the snapshot was taken are not counted twice.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from workers import protocol as P

#: how many fill ids a consumer remembers for de-duplication (a duplicate arrives within seconds)
SEEN_FILLS = 200_000


class FillLike(Protocol):
    """What the book reads of a fill: a wire :class:`~workers.protocol.Fill` or the
    gateway's ``FillRecord`` both qualify."""

    @property
    def fill_id(self) -> str: ...
    @property
    def symbol(self) -> str: ...
    @property
    def side(self) -> P.Side: ...
    @property
    def qty(self) -> int: ...
    @property
    def price(self) -> float: ...


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
    last: float = 0.0  # last traded price, 0 if none seen (the gateway never marks)

    @property
    def unrealized_pnl(self) -> float:
        if not self.qty or self.last <= 0:
            return 0.0
        return self.qty * (self.last - self.avg_price)

    def apply(self, side: P.Side | str, qty: int, price: float) -> float:
        """Book one execution; returns the P&L it realized."""
        signed = qty if (side if side.__class__ is P.Side else P.Side(side)) is P.Side.BUY else -qty
        old = self.qty
        if old == 0 or (old > 0) == (signed > 0):
            total = abs(old) + qty
            self.avg_price = (abs(old) * self.avg_price + qty * price) / total
            self.qty = old + signed
            return 0.0
        closed = min(qty, abs(old))
        realized = closed * (price - self.avg_price) * (1 if old > 0 else -1)
        self.realized_pnl += realized
        self.qty = old + signed
        if self.qty == 0:
            self.avg_price = 0.0
        elif (self.qty > 0) != (old > 0):
            # flipped: what is left over opened a new position at the fill price
            self.avg_price = price
        return realized

    def to_message(self, ts: int) -> P.Position:
        # the net position (to_map) with its mark
        return P.Position(**self.to_map(), unrealized_pnl=self.unrealized_pnl, ts=ts, last=self.last)

    def to_map(self) -> dict[str, Any]:
        """The net position as a ``get_positions`` reply lists it (what :meth:`PositionBook.load_snapshot` reads)."""
        return {"symbol": self.symbol, "qty": self.qty, "avg_price": self.avg_price, "realized_pnl": self.realized_pnl}

    def to_net(self) -> P.NetPosition:
        return P.NetPosition(symbol=self.symbol, qty=self.qty, avg_price=self.avg_price, realized_pnl=self.realized_pnl)


#: the exchange gateway's former name for the same record
PositionState = SymbolPosition


class PositionBook:
    """Every symbol's position, built from fills (and, for a consumer, a snapshot first)."""

    def __init__(self) -> None:
        self.positions: dict[str, SymbolPosition] = {}
        #: the newest fill number this book includes (see the module docstring)
        self.last_fill_seq = 0
        self._seen: set[str] = set()
        self._seen_order: collections.deque[str] = collections.deque()

    # ---- reading
    def get(self, symbol: str) -> SymbolPosition:
        """The position of ``symbol``, created flat if the book has none (to apply to)."""
        pos = self.positions.get(symbol)
        if pos is None:
            pos = self.positions[symbol] = SymbolPosition(symbol)
        return pos

    def find(self, symbol: str) -> SymbolPosition | None:
        """The position of ``symbol`` or None; never adds an entry (a flat row in a reply)."""
        return self.positions.get(symbol)

    def qty(self, symbol: str) -> int:
        pos = self.positions.get(symbol)
        return pos.qty if pos else 0

    def __len__(self) -> int:
        return len(self.positions)

    # ---- the source of the fills (exchange gateway, journal replay)
    def apply(self, fill: FillLike) -> SymbolPosition:
        """Book a fill this process numbered itself: no de-duplication (each is new by
        construction), and ``last_fill_seq`` moves up to its number."""
        pos = self.get(fill.symbol)
        pos.apply(fill.side, fill.qty, fill.price)
        n = fill_number(fill.fill_id)
        if n is not None and n > self.last_fill_seq:
            self.last_fill_seq = n
        return pos

    def to_list(self) -> list[dict[str, Any]]:
        """Every position as a map, by symbol: the ``positions`` of a ``get_positions`` reply."""
        return [self.positions[s].to_map() for s in sorted(self.positions)]

    def net_positions(self) -> list[P.NetPosition]:
        """The same as typed :class:`~workers.protocol.NetPosition` records (``GetPositionsReply``)."""
        return [self.positions[s].to_net() for s in sorted(self.positions)]

    # ---- a consumer of the execution stream (executor, window)
    def _remember(self, fill_id: str) -> None:
        self._seen.add(fill_id)
        self._seen_order.append(fill_id)
        if len(self._seen_order) > SEEN_FILLS:
            self._seen.discard(self._seen_order.popleft())

    def apply_fill(self, fill: FillLike) -> bool:
        """Apply a fill once.  Returns False (and changes nothing) for a fill already counted:
        seen before, or inside the loaded snapshot."""
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
        """Start from the exchange's ``get_positions`` reply (:meth:`to_list` of its book).

        Each entry needs ``symbol`` and ``qty`` and may carry ``avg_price`` and
        ``realized_pnl`` (if absent, the realized P&L counted so far is kept).  Last prices
        already known are kept.  Raises ValueError for an entry that cannot be read, leaving
        the book as it was.
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
            fresh[symbol] = SymbolPosition(symbol, qty, float(avg) if qty else 0.0, float(realized), old.last if old else 0.0)
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


__all__ = ["SEEN_FILLS", "FillLike", "PositionBook", "PositionState", "SymbolPosition", "fill_number"]
