"""Simulated market: a range-bound, mean-reverting price per symbol, quoted on a tick grid.

The model (docs/marketdata.md has the long form), per symbol and per tick ``t``:

* **Fair value** ``F`` follows a slow Ornstein-Uhlenbeck process in log space around the
  configured ``base`` (so it drifts but never wanders off), plus rare *regime shifts*: with
  probability ``regime_prob`` per tick it jumps by ``N(0, regime_jump)`` (log).  Between
  shifts ``F`` is nearly constant, which is what gives a chart visible ranges.
* **Mid price** ``x`` is a second, faster OU process around ``F`` with a flat-bottomed pull:
  inside the range ``F*(1 ± range_width)`` only the weak ``reversion`` acts, outside it the
  strong ``wall`` pull pushes it back.  So the price wanders inside the range and bounces off
  its edges: support and resistance that a strategy can really find, until the next regime
  shift breaks out of them.
* **Quote**: a spread of 1..``max_spread_ticks`` ticks (1 most often), bid/ask on the tick grid
  and centred on ``x``; sizes are whole lots (1..20 lots).
* **Trade**: ``last`` is the ask when the tick's shock pushed the price up (a buyer lifted the
  offer), else the bid; with a spread of 2+ ticks one trade in ten prints inside the spread.
  So ``bid <= last <= ask`` always holds.  ``volume`` is cumulative since the feed started and
  grows by 1..10 lots per tick.

Random numbers are drawn from numpy in blocks of :data:`BLOCK` ticks per symbol and turned
into plain Python lists, so emitting one tick is a handful of list look-ups and one
:class:`~workers.protocol.Tick` constructor call.  Fair value (a linear recursion) is computed
by numpy for the whole block; only the mid price's recursion, whose pull depends on where the
price is, runs as a Python loop.  :meth:`SymbolSim.rows` hands out the same ticks as ``ticks``
rows without making a ``Tick`` per tick, for a publisher that packs rows anyway.  Every symbol has its own generator seeded
from ``(seed, crc32(symbol))``: a symbol's sequence does not depend on which other symbols
are simulated, and the same seed gives the same sequence.

**The book.**  Each symbol also keeps an order book (:class:`SymbolBook`, read with
:meth:`SymbolSim.book`): up to :data:`~workers.protocol.MAX_DEPTH_LEVELS` levels a side, one tick
apart, outward from the current tick's bid and ask.  Its best levels ARE the last tick's bid,
ask and sizes (the tick is the top of the book, whatever moment the book is read at); the
levels behind keep a resting size per price, which drifts by a few lots between two reads and
is drawn afresh for a price that enters the ten levels.  The book is built only when it is
read (the gateway reads it at most ``--depth-hz`` times a second per symbol), not per tick, so
the tick path costs exactly what it did; and its sizes come from a generator of their own
(a :class:`random.Random` seeded from ``seed`` and ``crc32(symbol)``), so the ticks stay the
same for a seed however often the book is read (the sizes behind the touch depend on when it
is read).
"""

from __future__ import annotations

import math
import random
import time
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from itertools import repeat

import numpy as np

from workers.protocol import MAX_DEPTH_LEVELS, Tick

#: ticks generated per symbol per numpy refill: a refill stalls the gateway while it runs
#: (~0.37 ms for 1024 ticks, ~1.3 ms for 4096) and costs a fixed ~30 us of numpy calls, so
#: smaller blocks smooth the bursts for a little more per tick (0.36 against 0.33 us)
BLOCK = 1024

#: probabilities of a 1, 2 or 3 tick spread (truncated to ``max_spread_ticks``)
_SPREAD_WEIGHTS = (0.6, 0.3, 0.1)
#: chance that a resting level behind the touch changes its size between two reads of the book
_LEVEL_CHANGE = 0.5
#: most lots such a change adds or takes
_LEVEL_STEP = 4
#: a price new to the book rests 1..20 lots, plus this many per level behind the touch (the
#: deeper levels of a real book hold more on average)
_LEVEL_DEPTH_LOTS = 2
#: a change also closes this fraction of the gap to the level's mean fresh size, so sizes
#: wander around it instead of drifting off (stdev ~6 lots)
_LEVEL_PULL = 0.1


@dataclass(frozen=True)
class SymbolParams:
    """How one simulated symbol behaves.  Fractions are of the price; rates are per tick."""

    base: float
    #: stdev of the per-tick price shock, as a fraction of fair value
    volatility: float = 0.0004
    tick_size: float = 0.01
    #: spread is 1..max_spread_ticks ticks
    max_spread_ticks: int = 3
    #: shares per lot; quote sizes and trade sizes are whole lots
    lot: int = 100
    #: half-width of the trading range around fair value, as a fraction
    range_width: float = 0.003
    #: weak pull towards fair value inside the range (fraction of the gap closed per tick)
    reversion: float = 0.005
    #: strong pull back once the price is outside the range
    wall: float = 0.3
    #: stdev of the per-tick log change of fair value
    fair_drift: float = 0.00004
    #: pull of fair value back to ``base`` per tick (log space); keeps the walk bounded
    fair_reversion: float = 0.0002
    #: probability per tick of a regime shift (fair value jumps, the range moves)
    regime_prob: float = 1 / 1500
    #: stdev of a regime shift's log jump
    regime_jump: float = 0.006

    def __post_init__(self) -> None:
        if not (self.base > 0 and math.isfinite(self.base)):
            raise ValueError(f"base price must be positive, got {self.base}")
        if not self.tick_size > 0:
            raise ValueError(f"tick size must be positive, got {self.tick_size}")
        if self.base < 10 * self.tick_size:
            raise ValueError("base price must be at least 10 ticks")
        if not 1 <= self.max_spread_ticks <= 100:
            raise ValueError("max_spread_ticks must be 1..100")
        if self.lot < 1:
            raise ValueError("lot must be >= 1")
        for name in ("volatility", "range_width", "fair_drift", "regime_jump"):
            if not 0 <= getattr(self, name) < 0.5:
                raise ValueError(f"{name} must be in [0, 0.5)")
        for name in ("reversion", "wall", "fair_reversion", "regime_prob"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in [0, 1]")


#: the default simulated universe (bases roughly where these traded in 2024)
DEFAULT_PARAMS: dict[str, SymbolParams] = {
    "AAPL": SymbolParams(base=190.0, volatility=0.0004),
    "MSFT": SymbolParams(base=420.0, volatility=0.00035),
    "GOOG": SymbolParams(base=170.0, volatility=0.00045),
    "AMZN": SymbolParams(base=185.0, volatility=0.0005, range_width=0.004),
}
DEFAULT_SYMBOLS: tuple[str, ...] = tuple(DEFAULT_PARAMS)


def params_for(symbol: str) -> SymbolParams:
    """Parameters of ``symbol``: the table above, else derived from the name (stable across runs)."""
    p = DEFAULT_PARAMS.get(symbol)
    if p is not None:
        return p
    h = zlib.crc32(symbol.encode())
    # 20.00 .. 499.99, and a volatility in 0.0003 .. 0.0006: different symbols look different
    return SymbolParams(base=20.0 + (h % 48000) / 100.0, volatility=0.0003 + ((h >> 16) % 31) / 100000.0)


def _ar1(e0: float, a: float, shocks: np.ndarray) -> np.ndarray:
    """``e[t] = a * e[t-1] + shocks[t]`` for every t of the block, from ``e[-1] = e0``, in numpy:
    ``e[t] = a**t * (e0 + cumsum(shocks / a**j))``, in segments short enough that ``a**-j``
    stays small (one segment for the default parameters)."""
    n = len(shocks)
    if a <= 0.0:
        return shocks.astype(float, copy=True)
    if a >= 1.0:
        return e0 + np.cumsum(shocks)
    seg = n if a**n >= 1e-6 else max(1, int(math.log(1e-6) / math.log(a)))
    out = np.empty(n)
    for start in range(0, n, seg):
        part = shocks[start:start + seg]
        powers = a ** np.arange(1, len(part) + 1)
        out[start:start + len(part)] = powers * (e0 + np.cumsum(part / powers))
        e0 = float(out[start + len(part) - 1])
    return out


def _decimals(step: float) -> int:
    """Decimal places needed to print multiples of ``step`` exactly (0.01 -> 2, 0.25 -> 2, 5 -> 0)."""
    return max(0, -Decimal(repr(step)).normalize().as_tuple().exponent)


Level = list  # [price, size]


class SymbolBook:
    """The resting sizes of one symbol's book behind the touch, per price (in ticks).

    :meth:`read` builds the book around a tick's quote: the tick's bid and ask with their sizes
    first, then a level per tick outward, each with the size it had at the last read if its
    price was in the book then (half the time moved by up to :data:`_LEVEL_STEP` lots and pulled
    a little towards the level's mean fresh size), else a fresh one.  Prices that leave the ten levels are forgotten.  The former best bid, once the
    bid moved up, is the second level with the size it had as the best: the book moves with
    the quote, not around it.

    Plain Python with :class:`random.Random` (``rand``): a read is ~20 levels, for which numpy's
    per-call overhead cost ~30 us against ~8 us this way.
    """

    __slots__ = ("p", "levels", "_rand", "_bids", "_asks")

    def __init__(self, params: SymbolParams, rand: random.Random, levels: int = MAX_DEPTH_LEVELS):
        if not 1 <= levels <= MAX_DEPTH_LEVELS:
            raise ValueError(f"a book has 1..{MAX_DEPTH_LEVELS} levels a side, got {levels}")
        self.p = params
        self.levels = levels
        self._rand = rand
        self._bids: dict[int, int] = {}  # price in ticks -> size (shares)
        self._asks: dict[int, int] = {}

    def read(self, bid_i: int, ask_i: int, bid: float, ask: float, bid_size: int, ask_size: int,
             decimals: int) -> tuple[list[Level], list[Level]]:
        """``(bids, asks)``, best first, for the quote ``bid``/``ask`` (``bid_i``/``ask_i`` in
        ticks).  The best levels are exactly ``[bid, bid_size]`` and ``[ask, ask_size]``."""
        p, n, r, lot = self.p, self.levels, self._rand.random, self.p.lot
        tick, f = p.tick_size, 10.0 ** decimals
        steps = 2 * _LEVEL_STEP + 1
        out = []
        for mem, start, sign, best, top, count in (
            (self._bids, bid_i, -1, bid, bid_size, max(0, min(n, bid_i))),  # every bid above zero
            (self._asks, ask_i, 1, ask, ask_size, n),
        ):
            levels: list[Level] = [[best, top]] if count else []
            kept: dict[int, int] = {start: top}
            for j in range(1, count):
                at = start + sign * j
                old = mem.get(at)
                if old is None:
                    size = (1 + int(r() * 20) + _LEVEL_DEPTH_LOTS * j) * lot
                elif r() < _LEVEL_CHANGE:
                    lots = old // lot
                    lots += int(r() * steps) - _LEVEL_STEP + round(_LEVEL_PULL * (10.5 + _LEVEL_DEPTH_LOTS * j - lots))
                    size = max(1, lots) * lot
                else:
                    size = old
                kept[at] = size
                # the price exactly as numpy rounds the simulator's quotes (x * 10**d, rint,
                # / 10**d): a level that becomes the touch later is the very float the tick carries
                levels.append([round(at * tick * f) / f, size])
            if sign < 0:
                self._bids = kept
            else:
                self._asks = kept
            out.append(levels)
        return out[0], out[1]


class SymbolSim:
    """The state of one simulated symbol; :meth:`next_tick` returns its next tick, :meth:`book`
    its order book at the last tick."""

    __slots__ = (
        "symbol", "p", "seq", "_rng", "_clock", "_log_fair", "_log_base", "_mid", "_volume",
        "_bid", "_ask", "_last", "_bsz", "_asz", "_vol", "_i", "_n", "_decimals", "_book",
    )

    def __init__(self, symbol: str, params: SymbolParams, seed: int | None, clock: Callable[[], int]):
        self.symbol = symbol
        self.p = params
        self.seq = 0
        # seed None: fresh OS entropy; otherwise (seed, symbol) so each symbol has its own stream
        key = None if seed is None else [int(seed) & 0xFFFFFFFFFFFFFFFF, zlib.crc32(symbol.encode())]
        self._rng = np.random.default_rng(key)
        # the book's sizes from a stream of their own: reading the book never shifts the ticks
        self._book = SymbolBook(params, random.Random(None if key is None else f"book:{key[0]}:{key[1]}"))
        self._clock = clock
        self._log_base = math.log(params.base)
        self._log_fair = self._log_base
        self._mid = params.base
        self._volume = 0
        self._decimals = _decimals(params.tick_size)
        self._i = self._n = 0
        self._bid = self._ask = self._last = self._bsz = self._asz = self._vol = []

    @property
    def mid(self) -> float:
        """The model's current (unrounded) mid price, for tests and diagnostics."""
        return self._mid

    @property
    def fair(self) -> float:
        return math.exp(self._log_fair)

    def _refill(self, n: int = BLOCK) -> None:
        p, rng = self.p, self._rng
        z = rng.standard_normal(n)
        fair_shock = rng.standard_normal(n) * p.fair_drift
        if p.regime_prob > 0:
            shifts = rng.random(n) < p.regime_prob
            fair_shock[shifts] += rng.standard_normal(int(shifts.sum())) * p.regime_jump

        # Fair value is a linear AR(1) in log space, so numpy computes it for the whole block
        # (with its exp); only the mid price's recursion, whose pull depends on where it is,
        # runs as a plain float loop over lists -- a few operations per tick.
        lb = self._log_base
        log_fair = lb + _ar1(self._log_fair - lb, 1.0 - p.fair_reversion, fair_shock)
        fair = np.exp(log_fair)
        x = self._mid
        theta, wall, floor = p.reversion, p.wall, 20 * p.tick_size
        mids: list[float] = []
        add = mids.append
        for f, w, s in zip(fair.tolist(), (p.range_width * fair).tolist(), (p.volatility * fair * z).tolist()):
            d = x - f
            if d > w:
                x -= wall * (d - w)
            elif d < -w:
                x -= wall * (d + w)
            x += s - theta * d
            if x < floor:  # never quote at or below zero, however wild the parameters
                x = floor
            add(x)
        self._log_fair, self._mid = float(log_fair[-1]), x

        # Quote on the tick grid, in integer ticks so that bid < ask holds exactly.
        k = rng.choice(np.arange(1, 4), size=n, p=_SPREAD_WEIGHTS)
        np.minimum(k, p.max_spread_ticks, out=k)
        mid_ticks = np.asarray(mids) / p.tick_size
        bid_i = np.floor(mid_ticks - k / 2.0 + 0.5).astype(np.int64)
        np.maximum(bid_i, 1, out=bid_i)
        ask_i = bid_i + k
        buyer = z > 0  # an up-shock is a buyer lifting the offer
        last_i = np.where(buyer, ask_i, bid_i)
        inside = (k >= 2) & (rng.random(n) < 0.1)
        last_i = np.where(inside, bid_i + 1, last_i)

        ts, dec = p.tick_size, self._decimals
        self._bid = np.round(bid_i * ts, dec).tolist()
        self._ask = np.round(ask_i * ts, dec).tolist()
        self._last = np.round(last_i * ts, dec).tolist()
        self._bsz = (rng.integers(1, 21, n) * p.lot).tolist()
        self._asz = (rng.integers(1, 21, n) * p.lot).tolist()
        vol = np.cumsum(rng.integers(1, 11, n) * p.lot) + self._volume
        self._volume = int(vol[-1])
        self._vol = vol.tolist()
        self._i, self._n = 0, n

    def rows(self, k: int) -> list[list]:
        """The next ``k`` ticks as ``ticks`` rows ``[seq, ts, last, bid, ask, bid_size,
        ask_size, volume]`` (docs/protocol.md), without making a :class:`Tick` per tick: the
        same ticks, in the same order, as ``k`` calls of :meth:`next_tick`, except that every row
        carries one ``ts``, read from the clock once (a publisher stamps a frame when it sends it).
        About 5x cheaper per tick than :meth:`next_tick` plus a row built from the tick."""
        out: list[list] = []
        if k <= 0:
            return out
        ts = self._clock()
        extend = out.extend
        while k > 0:
            i = self._i
            if i >= self._n:
                self._refill()
                i = 0
            j = min(self._n, i + k)
            seq = self.seq
            m = j - i
            extend(map(list, zip(range(seq + 1, seq + 1 + m), repeat(ts, m), self._last[i:j], self._bid[i:j], self._ask[i:j],
                                 self._bsz[i:j], self._asz[i:j], self._vol[i:j])))
            self.seq = seq + m
            self._i = j
            k -= m
        return out

    def book(self) -> tuple[list[Level], list[Level]]:
        """The order book at the last tick handed out (by :meth:`next_tick` or :meth:`rows`):
        ``(bids, asks)``, each ``[[price, size], ...]`` best first, up to
        :data:`~workers.protocol.MAX_DEPTH_LEVELS` levels a side one tick apart, the best
        levels equal to that tick's ``bid, bid_size`` and ``ask, ask_size``.  Empty before the
        first tick.  Each call moves the resting sizes behind the touch on (see
        :class:`SymbolBook`): read it when the book is published, not more often."""
        i = self._i - 1
        if self.seq == 0 or i < 0:
            return [], []
        bid, ask, ts = self._bid[i], self._ask[i], self.p.tick_size
        # the quote back in whole ticks: exact, since it was rounded from whole ticks
        return self._book.read(round(bid / ts), round(ask / ts), bid, ask, self._bsz[i], self._asz[i], self._decimals)

    def next_tick(self) -> Tick:
        i = self._i
        if i >= self._n:
            self._refill()
            i = 0
        self._i = i + 1
        self.seq += 1
        return Tick(
            self.symbol, self.seq, self._clock(), self._last[i], self._bid[i], self._ask[i],
            self._bsz[i], self._asz[i], self._vol[i],
        )


class SimFeed:
    """Several simulated symbols; :meth:`next` returns their ticks round-robin.

    ``params`` overrides the parameters of some symbols (others come from :func:`params_for`).
    ``clock`` stamps ``ts`` at creation (``time.time_ns`` by default).
    """

    def __init__(
        self,
        symbols: Iterable[str] | None = None,
        seed: int | None = None,
        params: dict[str, SymbolParams] | None = None,
        clock: Callable[[], int] = time.time_ns,
    ):
        syms = tuple(dict.fromkeys(symbols)) if symbols else DEFAULT_SYMBOLS
        if not syms:
            raise ValueError("no symbols to simulate")
        params = params or {}
        self.symbols: tuple[str, ...] = syms
        self.seed = seed
        self.sims: dict[str, SymbolSim] = {s: SymbolSim(s, params.get(s) or params_for(s), seed, clock) for s in syms}
        self._order: Sequence[SymbolSim] = tuple(self.sims.values())
        self._rr = 0

    def next(self) -> Tick:
        """The next tick, cycling through the symbols in order."""
        sim = self._order[self._rr]
        self._rr = (self._rr + 1) % len(self._order)
        return sim.next_tick()

    def tick(self, symbol: str) -> Tick:
        """The next tick of one symbol."""
        return self.sims[symbol].next_tick()

    def ticks(self, n: int) -> list[Tick]:
        nxt = self.next
        return [nxt() for _ in range(n)]

    def __iter__(self):
        return self

    def __next__(self) -> Tick:
        return self.next()


__all__ = ["BLOCK", "DEFAULT_PARAMS", "DEFAULT_SYMBOLS", "SimFeed", "SymbolBook", "SymbolParams", "SymbolSim", "params_for"]
