"""The window's order-book depth: the last ``depth`` message of each symbol, without Qt.

The market-data gateway publishes a symbol's whole book (up to 10 levels a side, best first)
as one ``depth`` message on the ticks endpoint, topic ``depth.<SYMBOL>``, about 10 times a
second (docs/protocol.md).  Each message replaces the previous one, so what is kept is one
:class:`Book` per symbol (conflated, like quotes).  Sequence numbers go through the shared
tracker (workers/sequence.py) with the publisher's ``epoch``, as ticks do: a new epoch is a
restart whatever its ``seq`` (the new book is used at once); an older ``seq`` of the same
epoch is a late or duplicate message, dropped and counted, so a book never moves backwards.
Epoch 0 (a publisher that does not say) keeps the ticks' old rule: a step back to seq 1 or 0
is a restart, anything else is late.

What is subscribed is narrow: the window asks the publisher for the depth of the symbols a
ladder shows (:meth:`DepthState.want`; app.feeds turns that into ``depth.<SYMBOL>``
subscriptions), not every symbol's.  A publisher with thousands of symbols at 10 depth
messages a second each would otherwise cost the window a core for books nobody looks at.
A book is kept only for a symbol the market state holds (the universe cap applies), and the
snapshot (``get_snapshot_reply.depth``) fills the books of every held symbol once.
"""

from __future__ import annotations

from collections.abc import Callable

from workers import protocol as P
from workers.sequence import SeqKind, SequenceTracker

__all__ = ["Book", "DepthState"]


class Book:
    """One symbol's book as last published: ``bids`` best (highest) first, ``asks`` best
    (lowest) first, each a list of ``(price, size)``.  ``version`` counts the changes this
    window applied (a view repaints when it moved)."""

    __slots__ = ("symbol", "seq", "epoch", "ts", "bids", "asks", "version")

    def __init__(self, symbol: str):
        self.symbol = symbol
        self.seq = 0
        self.epoch = 0
        self.ts = 0
        self.bids: list = []
        self.asks: list = []
        self.version = 0

    def set(self, d: P.Depth, epoch: int | None = None) -> None:
        self.seq, self.epoch, self.ts = d.seq, d.epoch if epoch is None else epoch, d.ts
        self.bids, self.asks = d.bids, d.asks
        self.version += 1


class DepthState:
    """The books of the held symbols, fed by app.feeds (``on_depth``, ``apply_snapshot``).

    Attributes:
        books: symbol -> :class:`Book`.
        received: depth messages handed in; ``applied``: those that changed a book;
        ``late``: dropped as older (or the same) ``seq`` of the book's epoch; ``restarts``:
        books replaced by a new epoch (or, without epochs, a step back to seq 1);
        ``refused``: messages of symbols the market state does not hold; ``decode_errors``:
        bad frames (counted by the decoder).
        wanted: the symbols whose depth is subscribed (what the ladders show).
        on_want: called with the new wanted set when it changes (app.feeds subscribes).
    """

    def __init__(self, held: Callable[[str], bool] | None = None):
        self.books: dict[str, Book] = {}
        self._held = held or (lambda _s: True)
        self.seq = SequenceTracker(step_back="late")
        self.received = 0
        self.applied = 0
        self.late = 0
        self.restarts = 0
        self.refused = 0
        self.decode_errors = 0
        self.wanted: frozenset[str] = frozenset()
        self._want: dict[str, frozenset[str]] = {}
        self.on_want: Callable[[frozenset[str]], None] | None = None

    # ------------------------------------------------------------------ subscriptions
    def want(self, who: str, symbols) -> None:
        """The symbols ``who`` (a ladder) shows, replacing what it showed before."""
        new = frozenset(s for s in symbols if isinstance(s, str) and s)
        if self._want.get(who, frozenset()) == new:
            return
        self._want[who] = new
        wanted = frozenset().union(*self._want.values())
        if wanted != self.wanted:
            self.wanted = wanted
            if self.on_want is not None:
                self.on_want(wanted)

    # ------------------------------------------------------------------ the stream
    def on_depth(self, d: P.Depth) -> bool:
        """Apply one depth message; False if it was dropped (late, or a symbol not held)."""
        self.received += 1
        sym = d.symbol
        book = self.books.get(sym)
        if book is None:
            if not self._held(sym):
                self.refused += 1
                return False
            book = self.books[sym] = Book(sym)
        if not self._fresh(book, d.seq, d.epoch):
            self.late += 1
            return False
        book.set(d)
        self.applied += 1
        return True

    def _fresh(self, book: Book, seq: int, epoch: int) -> bool:
        sym = book.symbol
        if not epoch:
            last = self.seq.last(sym)
            if last is not None and seq <= 1 and seq <= last:
                self.seq.forget(sym)  # the publisher started over: its counter too
                self.restarts += 1
            ev = self.seq.check(sym, seq, None)
        else:
            ev = self.seq.check(sym, seq, epoch)
            if ev.kind is SeqKind.RESTART:
                self.restarts += 1
        return ev.fresh

    def apply_snapshot(self, depth: list[P.Depth], epoch: int = 0) -> int:
        """The snapshot's books (``get_snapshot_reply.depth``; ``epoch``: the reply's, for
        messages that carry none).  A book the live stream already moved past (same epoch, a
        ``seq`` at or beyond the snapshot's) is kept; returns the books set."""
        n = 0
        for d in depth:
            sym = d.symbol
            ep = d.epoch or epoch
            st = self.seq.stats(sym)
            if st is not None and ep and st.epoch == ep and st.seq >= d.seq:
                continue
            book = self.books.get(sym)
            if book is None:
                if not self._held(sym):
                    continue
                book = self.books[sym] = Book(sym)
            self.seq.forget(sym)
            self.seq.check(sym, d.seq, ep or None)
            book.set(d, ep)
            n += 1
        return n

    # ------------------------------------------------------------------ reading it
    def get(self, symbol: str) -> Book | None:
        return self.books.get(symbol)

    def forget(self, symbols) -> None:
        """Drop the books of symbols no longer held (the universe cap evicted them)."""
        for s in symbols:
            if self.books.pop(s, None) is not None:
                self.seq.forget(s)

    def counters(self) -> dict[str, int]:
        return {"received": self.received, "applied": self.applied, "late": self.late, "restarts": self.restarts,
                "refused": self.refused, "decode_errors": self.decode_errors, "books": len(self.books)}
