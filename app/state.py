"""The window's in-memory state: what the network said, kept without Qt.

The feeds (app.feeds) write here as messages arrive -- per-symbol conflated quotes, bars
built tick by tick, bounded ring buffers of orders, fills, signals and log lines -- and
mark what changed.  About 30 times a second the window calls :meth:`AppState.collect`,
which hands over everything that changed since the last call as one :class:`Changes`, and
pushes exactly that to its table models and the chart.  Nothing here imports Qt, so all of
it is tested with plain pytest and protocol messages.
"""

from __future__ import annotations

import collections
import logging
import operator
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec

from workers import protocol as P
from workers.positions import PositionBook, SymbolPosition
from workers.ratelimit import KeyedLimiter
from workers.protocol import OrderStatus, OrderType, Side
from workers.sequence import SeqKind, SequenceTracker
from app.depth import DepthState

try:  # the chart's bar builder is Qt-free numpy; the window still runs without it
    from app.chart.bars import MultiIntervalBars
except ImportError:  # pragma: no cover - only while app/chart is being written
    MultiIntervalBars = None  # type: ignore[assignment,misc]

#: bar intervals (seconds) built for every symbol
BAR_INTERVALS = (1, 5, 60)
MAX_ORDERS = 20_000
MAX_FILLS = 20_000
MAX_SIGNALS = 20_000
MAX_LOG = 5_000
#: fill ids remembered to drop a fill seen twice (snapshot + stream, resends)
SEEN_FILL_IDS = 100_000

#: symbols held besides the watched ones (Settings > Market > Max symbols): a publisher with a
#: huge universe must not grow the window without bound (50,000 symbols took it to 3.3 GB)
MAX_SYMBOLS = 500
#: an unwatched symbol without a tick for this long may give its place to a new one.  0 (the
#: default): never, new symbols past the cap are refused.  Replacement is opt-in (Settings >
#: Market) because a replaced symbol leaves traces outside this state (the ticket's symbol
#: list keeps every symbol it was shown), so under a churning flood it would still grow.
IDLE_EVICT_S = 0.0
#: distinct refused symbols remembered between two notices, only to count them in the notice
REFUSED_REMEMBERED = 10_000
#: seconds between two "universe cap reached" notices in the log
UNIVERSE_NOTICE_S = 10.0

#: seconds without a tick after which a quote is shown stale (Settings could change it:
#: MarketState.configure(stale_after_s=...)); the simulator ticks every symbol several times a second
STALE_AFTER_S = 5.0
#: live ticks remembered while a snapshot is asked for, to replay into the snapshot's bars; past
#: this the bars of the snapshot are not used (the live-built bars stay)
SNAPSHOT_RECORD_MAX = 200_000

#: statuses shown in the working-orders blotter: live at the exchange, or possibly live
LIVE_STATUSES = frozenset(P.WORKING_STATUSES | {OrderStatus.UNKNOWN})


# ----------------------------------------------------------------------------- market


class Quote:
    """The latest tick of one symbol (conflated: only the newest values are kept)."""

    __slots__ = (
        "symbol", "last", "bid", "ask", "bid_size", "ask_size", "volume", "ref", "ts", "seq",
        "ticks", "missed", "restarts", "rate", "_rate_ticks", "bars", "active", "stale", "epoch",
    )

    def __init__(self, symbol: str):
        self.symbol = symbol
        self.last = self.bid = self.ask = 0.0
        self.bid_size = self.ask_size = 0
        self.volume = 0  # cumulative volume as the feed reports it
        self.ref = 0.0  # reference for the change column: the first price this window saw
        self.ts = 0  # origin timestamp (ns) of the newest tick
        self.seq = 0
        self.ticks = 0  # ticks received
        self.missed = 0  # ticks lost in sequence gaps
        self.restarts = 0  # times the feed's sequence started over
        self.rate = 0.0  # ticks per second, updated by MarketState.update_rates
        self._rate_ticks = 0
        self.bars: Any = None  # MarketState.bars[symbol], here too: the tick path saves a lookup
        self.active = 0.0  # monotonic time of the last rate pass that saw it tick (idle eviction, staleness)
        self.stale = False  # no tick for MarketState.stale_after_s (greyed in the market watch)
        self.epoch = 0  # the publisher's incarnation of the newest tick (0: not given)

    @property
    def change(self) -> float:
        return self.last - self.ref if self.ref else 0.0

    @property
    def change_pct(self) -> float:
        return (self.last / self.ref - 1.0) * 100.0 if self.ref else 0.0

    @property
    def spread(self) -> float:
        return self.ask - self.bid


class MarketState:
    """Quotes and bars of the symbols held; ``on_tick`` is the hot path (one call per tick).

    Sequence numbers go through the shared tracker (workers/sequence.py) with the publisher's
    ``epoch``: a new epoch is a restart of that symbol's stream whatever its ``seq`` (the
    restarted gateway's first tick is used at once, its volume starts over, and a snapshot is
    asked for: :attr:`snapshot_wanted`); a step back within one epoch is a late or duplicate
    tick that must never move a quote back.  A publisher that gives no epoch (0) gets the old
    rule: a step back to seq 1 (or 0) is a restart, and each symbol's count of restarts seen
    here stands in for the epoch (as ``~restarts``, which no real epoch can equal).

    Staleness: a quote with no tick for ``stale_after_s`` is :attr:`Quote.stale` (decided at
    each rate pass, twice a second); :meth:`ticking` and :meth:`stale_count` are what the
    status bar reads.

    Late joining (the zguide's Clone pattern): the feeds subscribe first, call
    :meth:`begin_snapshot`, ask the gateway's snapshot endpoint and hand the reply to
    :meth:`apply_snapshot`, which sets each quote and its sequence to the snapshot's (live ticks
    of the same epoch with a seq at or below it are then dropped as duplicates), loads the
    session's bars and replays into them the live ticks that arrived after the snapshot's.

    The universe is bounded.  Watched symbols (the configured watch list, symbols with orders
    or positions, the chart's) are always held; at most ``max_symbols`` others are.  A new
    symbol past the cap takes the place of the unwatched symbol idle the longest if
    ``idle_evict_s`` is set and one has had no tick for that long; otherwise its ticks are
    refused and counted
    (``refused_ticks``), and :class:`AppState` tells the trader in the log, rate-limited.  A
    refused tick costs two set lookups, and nothing per tick depends on how many symbols the
    publisher has.
    """

    def __init__(self, intervals: tuple[int, ...] = BAR_INTERVALS, bars_factory: Callable[[], Any] | None = None,
                 max_symbols: int = MAX_SYMBOLS, idle_evict_s: float = IDLE_EVICT_S):
        self.quotes: dict[str, Quote] = {}
        self.bars: dict[str, Any] = {}
        self.dirty: set[str] = set()
        self.total_ticks = 0
        self.total_missed = 0
        self.rate = 0.0  # all symbols, ticks/s
        self.seq = SequenceTracker(step_back="late")
        # bound once: the in-order test runs for every tick the window gets
        self._in_order = self.seq.check_run
        if bars_factory is None and MultiIntervalBars is not None:
            bars_factory = lambda: MultiIntervalBars(intervals=intervals)  # noqa: E731
        self._bars_factory = bars_factory
        self._rate_t = time.monotonic()
        self._rate_total = 0
        # ---- the universe bound
        self.max_symbols = max(0, int(max_symbols))
        self.idle_evict_s = float(idle_evict_s)
        self._watch: dict[str, frozenset[str]] = {}  # reason -> symbols (watchlist, chart, trading)
        self.watched: frozenset[str] = frozenset()
        self._unwatched = 0  # held symbols that are not watched: what the cap bounds
        self.refused_ticks = 0  # ticks of symbols refused by the cap, ever
        self._refused_recent: set[str] = set()  # distinct since the last notice (bounded)
        self._refused_overflow = False  # more distinct than REFUSED_REMEMBERED since the last notice
        self.evicted_total = 0
        self._evicted: list[str] = []  # since the last collect
        self._idle: collections.deque[str] = collections.deque()  # eviction candidates, idlest first
        self._refused_at_pass = 0
        # ---- staleness and late joining
        self.stale_after_s = STALE_AFTER_S
        self.stale_symbols = 0  # held symbols whose quote is stale, as of the last rate pass
        #: a snapshot should be asked for (at start, and after a publisher restarted)
        self.snapshot_wanted = True
        self.snapshots_applied = 0
        self.snapshot_epoch = 0  # the epoch of the last snapshot applied
        self._recording: list | None = None  # live ticks while a snapshot is asked for

    # ------------------------------------------------------------------ the universe
    def configure(self, max_symbols: int | None = None, watchlist=None, idle_evict_s: float | None = None,
                  stale_after_s: float | None = None) -> None:
        """Apply the settings (Settings > Market): the cap, the watch list, the idle time, the
        time without a tick after which a quote is stale.  A lower cap takes effect as symbols
        go idle; nothing held is dropped at once."""
        if stale_after_s is not None and stale_after_s > 0:
            self.stale_after_s = float(stale_after_s)
        if max_symbols is not None:
            self.max_symbols = max(0, int(max_symbols))
        if idle_evict_s is not None:
            self.idle_evict_s = float(idle_evict_s)
        if watchlist is not None:
            self.set_watched("watchlist", watchlist)

    def set_watched(self, reason: str, symbols) -> None:
        """The symbols watched for one reason ("watchlist", "chart", "trading"), replacing
        that reason's previous set.  Watched symbols are never refused nor evicted."""
        new = frozenset(s for s in symbols if isinstance(s, str) and s)
        if self._watch.get(reason, frozenset()) == new:
            return
        self._watch[reason] = new
        self.watched = frozenset().union(*self._watch.values())
        # rare (a setting, the chart's symbol, a new traded symbol): a pass over what is held
        self._unwatched = sum(1 for s in self.quotes if s not in self.watched)

    def watch(self, reason: str, symbol: str) -> None:
        """Add one symbol to a reason's watched set."""
        if symbol not in self._watch.get(reason, ()):
            self.set_watched(reason, self._watch.get(reason, frozenset()) | {symbol})

    def is_watched(self, symbol: str) -> bool:
        return symbol in self.watched

    def admit(self, symbol: str) -> bool:
        """Hold ``symbol`` if it is held, watched, under the cap or can replace an idle symbol."""
        if symbol in self.quotes:
            return True
        if symbol in self.watched:
            self._new_symbol(symbol)
            return True
        if self._unwatched >= self.max_symbols and not self._evict_idle():
            return False
        self._unwatched += 1
        self._new_symbol(symbol)
        return True

    def refuse(self, symbol: str, n: int = 1) -> None:
        """Count ``n`` ticks of ``symbol`` refused by the cap."""
        self.refused_ticks += n
        recent = self._refused_recent
        if symbol not in recent:
            if len(recent) < REFUSED_REMEMBERED:
                recent.add(symbol)
            else:
                self._refused_overflow = True

    def take_refused(self) -> tuple[int, bool]:
        """(distinct symbols refused since the last call, True if more than that)."""
        n, more = len(self._refused_recent), self._refused_overflow
        self._refused_recent = set()
        self._refused_overflow = False
        return n, more

    def _evict_idle(self) -> bool:
        """Drop the idlest unwatched symbol that had no tick since the candidates were chosen."""
        idle = self._idle
        while idle:
            sym = idle.popleft()
            q = self.quotes.get(sym)
            if q is None or sym in self.watched or q.ticks != q._rate_ticks:
                continue  # gone, watched meanwhile, or ticked again since the rate pass
            self.evict(sym)
            return True
        return False

    def evict(self, symbol: str) -> bool:
        """Forget everything held for ``symbol`` (its quote, bars and sequence)."""
        q = self.quotes.pop(symbol, None)
        if q is None:
            return False
        self.bars.pop(symbol, None)
        self.seq.forget(symbol)
        self.dirty.discard(symbol)
        if symbol not in self.watched:
            self._unwatched -= 1
        self._evicted.append(symbol)
        self.evicted_total += 1
        return True

    def take_evicted(self) -> list[str]:
        ev, self._evicted = self._evicted, []
        return ev

    def held_unwatched(self) -> int:
        return self._unwatched

    def _new_symbol(self, symbol: str) -> Quote:
        q = self.quotes[symbol] = Quote(symbol)
        q.active = time.monotonic()
        if self._bars_factory is not None:
            q.bars = self.bars[symbol] = self._bars_factory()
        return q

    def on_tick(self, symbol: str, seq: int, ts: int, last: float, bid: float, ask: float,
                bid_size: int, ask_size: int, volume: int, epoch: int = 0) -> None:
        q = self.quotes.get(symbol)
        if q is None:
            if not self.admit(symbol):
                self.refuse(symbol)
                return
            q = self.quotes[symbol]
        if not self._in_order(symbol, seq, seq, 1, epoch or ~q.restarts) and not self._out_of_order(q, seq, epoch):
            return  # late or duplicate tick: never move the quote backwards
        q.seq = seq
        q.epoch = epoch
        delta = volume - q.volume if volume >= q.volume else 0
        if not q.ref:
            q.ref = last
            delta = 0  # the first tick carries the whole day's volume, not a trade
        # one store each: a 7-tuple assignment builds and unpacks a tuple on every tick
        q.last = last
        q.bid = bid
        q.ask = ask
        q.bid_size = bid_size
        q.ask_size = ask_size
        q.volume = volume
        q.ts = ts
        q.ticks += 1
        self.total_ticks += 1
        self.dirty.add(symbol)
        bars = q.bars
        if bars is not None:
            bars.add_tick(ts, last, delta)
            if self._recording is not None:
                self._record(symbol, epoch, seq, ts, last, delta)

    def _out_of_order(self, q: Quote, seq: int, epoch: int = 0) -> bool:
        """A tick that is not the next of its symbol (or its first): True if it is to be used."""
        if epoch:
            ev = self.seq.check(q.symbol, seq, epoch)
            if ev.kind is SeqKind.RESTART:
                # a new incarnation of the gateway: its cumulative volume starts over, and what
                # it holds (the session's bars) is asked for again
                q.restarts += 1
                q.volume = 0
                self.snapshot_wanted = True
        else:
            last = self.seq.last(q.symbol)
            if last is not None and seq <= 1 and seq <= last:
                # the gateway restarted: its cumulative volume starts over too
                q.restarts += 1
                q.volume = 0
                self.snapshot_wanted = True
            ev = self.seq.check(q.symbol, seq, ~q.restarts)
        if ev.kind is SeqKind.GAP:
            q.missed += ev.missing
            self.total_missed += ev.missing
        return ev.fresh

    # ------------------------------------------------------------------ staleness
    def ticking(self) -> bool:
        """True while at least one held symbol ticks (its quote is not stale).  False with no
        symbol at all: the status bar's ticks dot must not be green then."""
        return len(self.quotes) > self.stale_symbols

    def stale_count(self) -> int:
        """Held symbols whose quote is stale (no tick for ``stale_after_s``)."""
        return self.stale_symbols

    def stale(self) -> list[str]:
        return sorted(s for s, q in self.quotes.items() if q.stale)

    # ------------------------------------------------------------------ late joining
    def begin_snapshot(self) -> None:
        """A snapshot is about to be asked for: remember live ticks until it is applied."""
        self.snapshot_wanted = False
        self._recording = []

    def abandon_snapshot(self) -> None:
        """The snapshot did not come: stop remembering, ask again later."""
        self._recording = None
        self.snapshot_wanted = True

    def _record(self, symbol: str, epoch: int, seq: int, ts: int, last: float, delta: int) -> None:
        rec = self._recording
        if len(rec) >= SNAPSHOT_RECORD_MAX:
            self._recording = None  # too long a wait: keep the live-built bars instead
            return
        rec.append((symbol, epoch, seq, ts, last, delta))

    def apply_snapshot(self, reply: P.GetSnapshotReply) -> tuple[int, int]:
        """Apply a ``get_snapshot_reply``; returns (quotes set, symbols whose bars were loaded).

        A symbol's quote is taken from the snapshot unless a live tick already moved it past
        it (same epoch and a seq at or beyond the snapshot's, or a newer ``ts``).  Its sequence
        becomes the snapshot's, so live ticks the snapshot holds are dropped as duplicates.
        Bars of an interval are replaced by the snapshot's only when those reach back at least
        as far as the ones built here (a restarted gateway that holds less never shortens the
        chart), and live ticks newer than the snapshot's are replayed into them."""
        recorded, self._recording = self._recording, None
        snap_seq: dict[str, tuple[int, int]] = {}
        quotes_set = 0
        for t in reply.ticks:
            sym = t.symbol
            if not self.admit(sym):
                continue
            q = self.quotes[sym]
            epoch = t.epoch or reply.epoch
            snap_seq[sym] = (epoch, t.seq)
            st = self.seq.stats(sym)
            ahead = st is not None and epoch and st.epoch == epoch and st.seq >= t.seq
            if ahead or q.ts > t.ts:
                continue
            self.seq.forget(sym)
            self.seq.check(sym, t.seq, epoch or ~q.restarts)
            q.seq, q.epoch = t.seq, epoch
            q.last, q.bid, q.ask = t.last, t.bid, t.ask
            q.bid_size, q.ask_size, q.volume, q.ts = t.bid_size, t.ask_size, t.volume, t.ts
            if not q.ref:
                q.ref = t.last
            q.active = time.monotonic()  # a snapshot's quote is as fresh as its gateway says
            self.dirty.add(sym)
            quotes_set += 1
        loaded = 0
        if recorded is not None:
            by_symbol: dict[str, list[P.SymbolBars]] = collections.defaultdict(list)
            for sb in reply.bars:
                by_symbol[sb.symbol].append(sb)
            for sym, series in by_symbol.items():
                if sym in self.quotes and self._load_bars(sym, series, snap_seq.get(sym), recorded):
                    loaded += 1
        self.snapshots_applied += 1
        self.snapshot_epoch = reply.epoch
        return quotes_set, loaded

    def _load_bars(self, symbol: str, series: list[P.SymbolBars], snap: tuple[int, int] | None, recorded: list) -> bool:
        bars = self.bars.get(symbol)
        if bars is None or not hasattr(bars, "intervals"):
            return False
        import numpy as np  # the bar builder is numpy already

        done = False
        for iv in bars.intervals:
            iv_ns = int(round(iv * 1e9))
            # the snapshot's own interval, else the coarsest of its intervals that divides this one
            src = [sb for sb in series if sb.bars and iv_ns % (sb.interval * 1_000_000_000) == 0]
            if not src:
                continue
            sb = max(src, key=lambda b: b.interval)
            s = bars.series(iv)
            first_here = s.view()[0][0] if len(s) else None
            first_snap = sb.bars[0][0] / 1e9
            if first_here is not None and first_snap > first_here:
                continue
            cols = np.array(sb.bars, dtype=np.float64).T
            s.clear()
            s.add_bars(cols[0] / 1e9, cols[1], cols[2], cols[3], cols[4], cols[5])
            for r_sym, r_epoch, r_seq, r_ts, r_last, r_delta in recorded:
                if r_sym != symbol:
                    continue
                if snap is not None and snap[0] and r_epoch == snap[0] and r_seq <= snap[1]:
                    continue  # the snapshot's bars hold it already
                s.add_tick(r_ts, r_last, r_delta)
            done = True
        if done:
            self.dirty.add(symbol)
        return done

    def update_rates(self, now: float) -> None:
        """Ticks per second, per symbol and in total, over the time since the last call."""
        dt = now - self._rate_t
        if dt < 0.5:
            return
        stale_limit = now - self.stale_after_s
        stale_n = 0
        for sym, q in self.quotes.items():
            n = q.ticks - q._rate_ticks
            if n:
                q.active = now
            rate = n / dt
            q._rate_ticks = q.ticks
            stale = q.active < stale_limit
            if stale:
                stale_n += 1
            if rate != q.rate or stale is not q.stale:
                q.rate = rate
                q.stale = stale
                self.dirty.add(sym)
        self.stale_symbols = stale_n
        self.rate = (self.total_ticks - self._rate_total) / dt
        self._rate_total = self.total_ticks
        self._rate_t = now
        self._choose_idle(now)

    def _choose_idle(self, now: float) -> None:
        """Eviction candidates, idlest first, when new symbols were refused since the last pass
        (held symbols only: the cost is bounded by the cap, never by the publisher's universe)."""
        pressure = self.refused_ticks != self._refused_at_pass
        self._refused_at_pass = self.refused_ticks
        if not pressure or self.idle_evict_s <= 0:
            self._idle.clear()
            return
        limit = now - self.idle_evict_s
        watched = self.watched
        idle = sorted((q.active, s) for s, q in self.quotes.items() if q.active <= limit and s not in watched)
        self._idle = collections.deque(s for _, s in idle)

    def take_dirty(self) -> set[str]:
        d, self.dirty = self.dirty, set()
        return d


# ----------------------------------------------------------------------------- orders


class _OrderRowMethods:
    __slots__ = ()

    @property
    def is_live(self) -> bool:
        return self.status in LIVE_STATUSES

    @property
    def remaining(self) -> int:
        return max(0, self.qty - self.filled_qty)

    @property
    def signed_remaining(self) -> int:
        return self.remaining if self.side is Side.BUY else -self.remaining

    @property
    def querying(self) -> bool:
        """This window is asking the exchange about it (pending past its timeout, or a cancel
        without an answer): the blotters show "PENDING_NEW (QUERYING)"."""
        return self.reason.startswith(QUERYING_REASON)


#: the reason an order carries while the window asks the exchange about it (app/orders.py)
QUERYING_REASON = "querying the exchange"


#: One order as this window knows it, the manual ticket's and the strategies' alike: the
#: fields of ``order_update`` (``ts``: its latest change) plus when this window first saw it.
OrderRow = P.derive_record(
    "OrderRow", P.OrderUpdate, drop=P.STREAM_FIELDS, last=[("created_ts", int, 0)], module=__name__,
    namespace={k: v for k, v in vars(_OrderRowMethods).items() if not k.startswith("__")},
)


def _parse(enum_cls, value, default=None):
    try:
        return enum_cls(value)
    except (ValueError, TypeError):
        return default


def _price(v: Any) -> float | None:
    """A price field of a map: a positive finite number, else None (absent, or unreadable)."""
    if isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v < P.MAX_PRICE:
        return float(v)
    return None


#: the order's terms that a replace_order changes, and the ones issue 13's kinds add; an
#: update carrying them sets them unless it is older than the last one that did
_PRICE_TERMS = ("limit_price", "stop_price", "trail_amount", "trail_pct", "take_profit_price", "stop_loss_price")
_TIF_TERMS = ("tif", "take_profit_tif", "stop_loss_tif")


class OrderBook:
    """Every order seen (bounded), keyed by client_order_id, with what changed since the last
    :meth:`take_changes`.  Updates never move an order backwards: a terminal order stays
    terminal and the filled quantity never shrinks, whatever order the reply and the
    stream's updates arrive in."""

    def __init__(self, max_orders: int = MAX_ORDERS):
        self.orders: collections.OrderedDict[str, OrderRow] = collections.OrderedDict()
        self.max_orders = max_orders
        self._new: list[str] = []
        self._changed: set[str] = set()
        self._evicted: list[str] = []
        #: client_order_id -> when a cancel was sent and not answered yet (ns)
        self.cancel_sent: dict[str, int] = {}
        #: client_order_id -> ts of the newest map that set the order's terms: a stream update
        #: published before a replace and read after its reply must not undo it
        self._terms_ts: dict[str, int] = {}

    def mark_changed(self, coid: str) -> None:
        if coid in self.orders:
            self._changed.add(coid)

    def __len__(self) -> int:
        return len(self.orders)

    def get(self, coid: str) -> OrderRow | None:
        return self.orders.get(coid)

    def live(self, symbol: str | None = None) -> list[OrderRow]:
        return [o for o in self.orders.values() if o.is_live and (symbol is None or o.symbol == symbol)]

    def pending_qty(self, symbol: str) -> int:
        """Signed remaining quantity of the live orders in ``symbol`` (for risk checks)."""
        return sum(o.signed_remaining for o in self.orders.values() if o.symbol == symbol and o.is_live)

    def add(self, row: OrderRow) -> OrderRow:
        """Add an order this window is about to send (status pending_new)."""
        if row.client_order_id in self.orders:
            return self.orders[row.client_order_id]
        now = P.now_ns()
        row.created_ts = row.created_ts or now
        row.ts = row.ts or now
        self.orders[row.client_order_id] = row
        self._new.append(row.client_order_id)
        self._evict()
        return row

    def _evict(self) -> None:
        if len(self.orders) <= self.max_orders:
            return
        for coid in list(self.orders):
            if len(self.orders) <= self.max_orders:
                break
            if not self.orders[coid].is_live:
                del self.orders[coid]
                self._evicted.append(coid)
                self._terms_ts.pop(coid, None)
                self._changed.discard(coid)

    def set_status(self, coid: str, status: OrderStatus, reason: str = "") -> OrderRow | None:
        """A status decided on this side (UNKNOWN after every retry; its reconciliation)."""
        o = self.orders.get(coid)
        if o is None:
            return None
        if o.status.is_terminal and status is not o.status:
            return o
        o.status = status
        if reason:
            o.reason = reason
        o.ts = P.now_ns()
        self._changed.add(coid)
        return o

    def apply_map(self, m: Mapping[str, Any]) -> OrderRow | None:
        """Apply an order map (a send/get_order reply, a get_orders entry, an OrderUpdate)."""
        coid = m.get("client_order_id")
        if not isinstance(coid, str) or not coid:
            return None
        status = _parse(OrderStatus, m.get("status"))
        o = self.orders.get(coid)
        if o is None:
            side = _parse(Side, m.get("side"))
            sym = m.get("symbol")
            qty = m.get("qty")
            if side is None or not isinstance(sym, str) or not isinstance(qty, int) or isinstance(qty, bool) or qty <= 0:
                return None
            o = OrderRow(
                client_order_id=coid, symbol=sym, side=side, qty=qty,
                order_type=_parse(OrderType, m.get("order_type"), OrderType.MARKET),
                source=str(m.get("source") or ""),
                status=status or OrderStatus.PENDING_NEW,
                created_ts=_int(m.get("created_ts")) or _int(m.get("ts")),
            )
            self.add(o)
        else:
            self._changed.add(coid)
        self._apply_terms(o, m)
        if status is not None and not (o.status.is_terminal and status is not o.status):
            if status is not o.status and o.querying:
                o.reason = ""  # the exchange said what it is
            o.status = status
        filled = _int(m.get("filled_qty"))
        if filled > o.filled_qty:
            o.filled_qty = filled
            avg = m.get("avg_price")
            if isinstance(avg, (int, float)) and not isinstance(avg, bool):
                o.avg_price = float(avg)
        oid = m.get("order_id")
        if isinstance(oid, str) and oid:
            o.order_id = oid
        reason = m.get("reason")
        if isinstance(reason, str) and reason:
            o.reason = reason
        o.ts = _int(m.get("ts")) or P.now_ns()
        return o

    def _apply_terms(self, o: OrderRow, m: Mapping[str, Any]) -> None:
        """The order's terms from ``m`` where it carries them: quantity and prices (a replace's
        changes, a trailing stop's moving stop), time in force, the bracket, and the flags.
        Keys absent from ``m`` (a send or cancel reply) leave the row as it is."""
        ts = _int(m.get("ts"))
        coid = o.client_order_id
        if ts and ts < self._terms_ts.get(coid, 0):
            return  # older than the terms the row holds (a late stream update)
        if ts:
            self._terms_ts[coid] = ts
        qty = m.get("qty")
        if isinstance(qty, int) and not isinstance(qty, bool) and 0 < qty <= P.MAX_QTY:
            o.qty = qty
        for k in _PRICE_TERMS:
            if k in m:
                setattr(o, k, _price(m[k]))
        for k in _TIF_TERMS:
            if k in m and (tif := _parse(P.TimeInForce, m[k])) is not None:
                setattr(o, k, tif)
        if m.get("triggered") is True:
            o.triggered = True  # a triggered stop stays triggered
        if isinstance(m.get("emulated"), bool):
            o.emulated = m["emulated"]
        for k in ("parent_id", "oco_group"):
            if isinstance(m.get(k), str) and (m[k] or k == "oco_group"):
                setattr(o, k, m[k])

    def children(self, parent_id: str) -> list[OrderRow]:
        """A bracket's children (``<parent>.tp``, ``<parent>.sl``) this window holds."""
        out = []
        for suffix in P.BRACKET_SUFFIXES:
            c = self.orders.get(parent_id + suffix)
            if c is not None:
                out.append(c)
        return out

    def apply_update(self, up: P.OrderUpdate) -> OrderRow | None:
        return self.apply_map(msgspec.structs.asdict(up))

    def take_changes(self) -> tuple[list[OrderRow], list[OrderRow], list[str]]:
        """(new orders oldest first, changed orders, evicted client_order_ids)."""
        new = [self.orders[c] for c in self._new if c in self.orders]
        seen = set(self._new)
        changed = [self.orders[c] for c in self._changed if c in self.orders and c not in seen]
        evicted = self._evicted
        self._new, self._changed, self._evicted = [], set(), []
        return new, changed, evicted


def _int(v: Any) -> int:
    return v if isinstance(v, int) and not isinstance(v, bool) else 0


# ----------------------------------------------------------------------------- positions by source


class PositionRow:
    """One row of the positions panel: a symbol's net position (keyed by the symbol alone;
    ``source`` is the one source that traded it, or "net" when several did) or one source's
    share of it (keyed "<symbol> <source>", shown only when several sources share the symbol)."""

    __slots__ = ("key", "symbol", "source", "pos")

    def __init__(self, source: str, pos: SymbolPosition, net: bool = False):
        self.symbol = pos.symbol
        self.source = source
        self.key = pos.symbol if net else f"{pos.symbol} {source}"
        self.pos = pos

    qty = property(lambda self: self.pos.qty)
    avg_price = property(lambda self: self.pos.avg_price)
    last = property(lambda self: self.pos.last)
    realized_pnl = property(lambda self: self.pos.realized_pnl)
    unrealized_pnl = property(lambda self: self.pos.unrealized_pnl)

    @property
    def is_net(self) -> bool:
        return self.key == self.symbol


# ----------------------------------------------------------------------------- fills, signals


#: A fill as this window shows it: the fields of ``fill`` plus its latency as seen here
#: (tick -> fill: origin_ts to arrival, in microseconds).
FillRow = P.derive_record("FillRow", P.Fill, drop=P.STREAM_FIELDS, last=[("latency_us", float, 0.0)], frozen=True, module=__name__)
_fill_values = operator.attrgetter(*[f.name for f in P.fields_of(P.Fill) if f.name not in P.STREAM_FIELDS])


@dataclass(slots=True, frozen=True)
class SignalRow:
    key: int
    ts: int
    strategy: str
    symbol: str
    side: Side
    qty: int
    price: float
    reason: str
    accepted: bool
    decision: str
    client_order_id: str
    signal_id: str


class RingLog:
    """A bounded newest-last buffer that also hands over what was added since last asked."""

    def __init__(self, maxlen: int):
        self.items: collections.deque = collections.deque(maxlen=maxlen)
        self._new: list = []
        self.total = 0

    def append(self, item) -> None:
        self.items.append(item)
        self._new.append(item)
        self.total += 1
        if len(self._new) > self.items.maxlen:  # nobody collected for a long time
            del self._new[: len(self._new) - self.items.maxlen]

    def take_new(self) -> list:
        new, self._new = self._new, []
        return new

    def __len__(self) -> int:
        return len(self.items)


@dataclass(slots=True, frozen=True)
class LogLine:
    ts: float  # wall clock seconds
    level: int  # logging level
    source: str
    text: str


class EventLog(RingLog):
    """The log panel's lines: the supervisor's events, feed problems, order outcomes.

    This is the message bridge of the window: code without Qt reports to the trader by
    adding a line here; the log panel and the status bar show it at the next flush.
    """

    def __init__(self, maxlen: int = MAX_LOG):
        super().__init__(maxlen)
        self.counts: collections.Counter[int] = collections.Counter()

    def add(self, level: int, source: str, text: str) -> LogLine:
        line = LogLine(time.time(), level, source, text)
        self.counts[level] += 1
        self.append(line)
        return line

    def info(self, source: str, text: str) -> LogLine:
        return self.add(logging.INFO, source, text)

    def warning(self, source: str, text: str) -> LogLine:
        return self.add(logging.WARNING, source, text)

    def error(self, source: str, text: str) -> LogLine:
        return self.add(logging.ERROR, source, text)


class LogBridgeHandler(logging.Handler):
    """Python logging (tickdesk.* loggers) into the EventLog, WARNING and above by default."""

    def __init__(self, log: EventLog, level: int = logging.WARNING):
        super().__init__(level)
        self._log = log

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._log.add(record.levelno, record.name.removeprefix("tickdesk."), record.getMessage())
        except Exception:  # a log handler must never raise
            pass


# ----------------------------------------------------------------------------- streams


@dataclass
class StreamStats:
    """Health of one subscription, shown in the status bar."""

    name: str
    received: int = 0
    decode_errors: int = 0
    gaps: int = 0  # sequence gaps (exec stream; ticks count per symbol)
    connected: bool = False
    last_message: float = 0.0  # monotonic
    batches: int = 0
    max_batch: int = 0

    def age(self, now: float) -> float | None:
        return now - self.last_message if self.last_message else None


# ----------------------------------------------------------------------------- everything


@dataclass
class Changes:
    """What changed since the previous flush; built by :meth:`AppState.collect`."""

    symbols: set[str] = field(default_factory=set)  # quotes to repaint
    evicted_symbols: list[str] = field(default_factory=list)  # symbols no longer held (idle, over the cap)
    new_orders: list[OrderRow] = field(default_factory=list)
    changed_orders: list[OrderRow] = field(default_factory=list)
    evicted_orders: list[str] = field(default_factory=list)
    new_fills: list[FillRow] = field(default_factory=list)
    positions: set[str] = field(default_factory=set)
    new_signals: list[SignalRow] = field(default_factory=list)
    levels: dict[tuple[str, str], P.Levels] = field(default_factory=dict)
    new_log: list[LogLine] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.symbols or self.evicted_symbols or self.new_orders or self.changed_orders or self.evicted_orders or self.new_fills
                    or self.positions or self.new_signals or self.levels or self.new_log)


class AppState:
    """Everything the window shows, fed by the network, drained by the 30 Hz flush."""

    def __init__(self, bars_factory: Callable[[], Any] | None = None, max_symbols: int = MAX_SYMBOLS,
                 idle_evict_s: float = IDLE_EVICT_S):
        self.market = MarketState(bars_factory=bars_factory, max_symbols=max_symbols, idle_evict_s=idle_evict_s)
        #: the order books of the held symbols (depth.<SYMBOL>, what the price ladder shows: app/depth.py)
        self.depth = DepthState(held=self.market.quotes.__contains__)
        self.orders = OrderBook()
        self.fills = RingLog(MAX_FILLS)
        self.signals = RingLog(MAX_SIGNALS)
        self.log = EventLog()
        self.positions = PositionBook()
        self.levels: dict[tuple[str, str], P.Levels] = {}
        self.streams = {n: StreamStats(n) for n in ("ticks", "execution", "events")}
        #: set when the execution stream skipped messages: positions and orders need a resync
        self.resync_wanted = False
        self.exec_seq = 0
        self.exec_gaps = 0
        self.duplicate_fills = 0
        self._seen_fills: set[str] = set()
        self._seen_order: collections.deque[str] = collections.deque()
        self._dirty_positions: set[str] = set()
        self._dirty_levels: dict[tuple[str, str], P.Levels] = {}
        self._signal_keys = 0
        self._universe_rl = KeyedLimiter(UNIVERSE_NOTICE_S)
        self._refused_noticed = 0  # refused_ticks at the last notice
        #: positions per source ("manual", "strategy.<name>", ...), from every fill seen once
        #: (the stream and get_fills); the net book above is the exchange's, re-based on its snapshot
        self.source_positions: dict[str, PositionBook] = {}

    def source_of(self, f) -> str:
        """Who traded a fill: its ``source``, else its order's, else "unknown"."""
        src = getattr(f, "source", "") or ""
        if not src:
            o = self.orders.get(f.client_order_id)
            src = o.source if o is not None else ""
        return src or "unknown"

    def manual_position(self, symbol: str) -> int:
        """The signed quantity the manual ticket holds in ``symbol`` (strategies' left out)."""
        book = self.source_positions.get("manual")
        return book.qty(symbol) if book is not None else 0

    def position_rows(self, symbol: str) -> list[PositionRow]:
        """The positions panel's rows of ``symbol``: the net row, then one per source that traded it."""
        shares = self.positions_by_source(symbol)
        net = self.positions.positions.get(symbol)
        if net is None:
            return []
        if len(shares) <= 1:
            return [PositionRow(next(iter(shares), "net"), net, net=True)]
        return [PositionRow("net", net, net=True), *(PositionRow(src, p) for src, p in shares.items())]

    def stale_position_keys(self, symbol: str) -> list[str]:
        """Rows of ``symbol`` the panel may hold that :meth:`position_rows` no longer gives."""
        keep = {r.key for r in self.position_rows(symbol)}
        return [f"{symbol} {src}" for src in self.source_positions if f"{symbol} {src}" not in keep]

    def positions_by_source(self, symbol: str) -> dict[str, SymbolPosition]:
        return {src: b.positions[symbol] for src, b in sorted(self.source_positions.items()) if symbol in b.positions}

    def pnl_by_source(self) -> dict[str, tuple[float, float]]:
        """source -> (realized, unrealized) over every symbol."""
        out = {}
        for src, b in sorted(self.source_positions.items()):
            out[src] = (sum(p.realized_pnl for p in b.positions.values()), sum(p.unrealized_pnl for p in b.positions.values()))
        return out

    # ---- execution stream (its seq is checked by app.feeds.ExecDecoder)
    def on_fill(self, f: P.Fill, now_ns: int | None = None, history: bool = False) -> bool:
        """Record a fill once; False for one seen before.  ``history``: from ``get_fills``, not
        the stream (its tick-to-fill latency is not measured here)."""
        if f.fill_id in self._seen_fills:
            self.duplicate_fills += 1
            return False
        self._seen_fills.add(f.fill_id)
        self._seen_order.append(f.fill_id)
        if len(self._seen_order) > SEEN_FILL_IDS:
            self._seen_fills.discard(self._seen_order.popleft())
        now_ns = now_ns or P.now_ns()
        lat = (now_ns - f.origin_ts) / 1000.0 if not history and f.origin_ts and now_ns > f.origin_ts else 0.0
        self.fills.append(FillRow(*_fill_values(f), latency_us=lat))
        self.market.watch("trading", f.symbol)
        src = self.source_of(f)
        book = self.source_positions.get(src)
        if book is None:
            book = self.source_positions[src] = PositionBook()
        if book.apply_fill(f):
            self._dirty_positions.add(f.symbol)
        if self.positions.apply_fill(f):
            q = self.market.quotes.get(f.symbol)
            if q is not None and q.last:
                self.positions.mark(f.symbol, q.last)
            self._dirty_positions.add(f.symbol)
        q = self.market.quotes.get(f.symbol)
        if q is not None and q.last:
            book.mark(f.symbol, q.last)
        return True

    def load_positions(self, positions: list, last_fill_seq: int) -> None:
        """Re-base positions on the exchange's get_positions snapshot (raises ValueError)."""
        self.positions.load_snapshot(positions, last_fill_seq)
        self.market.set_watched("trading", self.market._watch.get("trading", frozenset()) | set(self.positions.positions))
        for sym in self.positions.positions:
            q = self.market.quotes.get(sym)
            if q is not None and q.last:
                self.positions.mark(sym, q.last)
            self._dirty_positions.add(sym)

    # ---- events stream
    def on_decision(self, d: P.SignalDecision) -> None:
        s = d.signal  # validated with the decision: a Signal
        self._signal_keys += 1
        self.signals.append(SignalRow(
            key=self._signal_keys, ts=s.ts or d.ts, strategy=s.strategy, symbol=s.symbol, side=s.side, qty=s.qty,
            price=s.price, reason=s.reason, accepted=d.accepted, decision=d.reason,
            client_order_id=d.client_order_id or "", signal_id=s.id,
        ))

    def on_levels(self, lv: P.Levels) -> None:
        key = (lv.symbol, lv.strategy)
        self.levels[key] = lv
        self._dirty_levels[key] = lv

    # ---- the flush
    def collect(self, now: float | None = None, quotes: bool = True) -> Changes:
        """Everything that changed since the last call (the 30 Hz flush calls this).

        ``quotes=False`` leaves moved prices pending for a later call: the window takes them
        at a lower rate than order events (see ``QUOTE_EVERY`` in app/window.py), so that a
        table of ticking prices is not repainted 30 times a second."""
        now = time.monotonic() if now is None else now
        m = self.market
        m.update_rates(now)
        symbols = m.take_dirty() if quotes else set()
        # marking positions to market is cheap and only for symbols whose price moved
        for sym in symbols:
            for book in self.source_positions.values():
                sp = book.positions.get(sym)
                if sp is not None:
                    sp.last = m.quotes[sym].last
            if sym in self.positions.positions:
                q = m.quotes[sym]
                pos = self.positions.positions[sym]
                if pos.last != q.last:
                    pos.last = q.last
                    # a flat row shows Last too: it must not stand still while the market moves
                    self._dirty_positions.add(sym)
        new_orders, changed_orders, evicted = self.orders.take_changes()
        for o in new_orders:  # a symbol with an order is watched: never refused, never evicted
            m.watch("trading", o.symbol)
        self._universe_notice(now)
        ch = Changes(
            symbols=symbols,
            evicted_symbols=m.take_evicted(),
            new_orders=new_orders,
            changed_orders=changed_orders,
            evicted_orders=evicted,
            new_fills=self.fills.take_new(),
            positions=self._dirty_positions,
            new_signals=self.signals.take_new(),
            levels=self._dirty_levels,
            new_log=self.log.take_new(),
        )
        self._dirty_positions = set()
        self._dirty_levels = {}
        return ch

    def _universe_notice(self, now: float) -> None:
        """Tell the trader, at most once per UNIVERSE_NOTICE_S, that ticks were refused."""
        m = self.market
        refused = m.refused_ticks - self._refused_noticed
        if not refused or not self._universe_rl.allow("cap", now):
            return
        self._refused_noticed = m.refused_ticks
        self._universe_rl.take_suppressed("cap")
        n, more = m.take_refused()
        self.log.warning(
            "ticks", f"{n:,}{'+' if more else ''} symbols ignored: universe cap {m.max_symbols:,} reached "
            f"({refused:,} ticks dropped, {m.refused_ticks:,} in all; watched symbols are always kept; "
            f"Settings > Market: raise the cap or add symbols to the watch list)")

    # ---- summaries
    def position(self, symbol: str) -> SymbolPosition | None:
        return self.positions.positions.get(symbol)

    def pnl_totals(self) -> tuple[float, float]:
        realized = sum(p.realized_pnl for p in self.positions.positions.values())
        unrealized = sum(p.unrealized_pnl for p in self.positions.positions.values())
        return realized, unrealized

