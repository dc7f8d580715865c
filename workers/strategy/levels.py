"""Support/resistance signal logic: pure Python, no sockets, deterministic.

Support is the lowest and resistance the highest price of the last ``window`` ticks of a
symbol, computed *before* the current tick joins the window; otherwise a new high would
always equal the resistance and a breakout could never be seen.  The rolling low/high are
monotonic deques, so each tick costs O(1) amortised whatever the window length.

Signals:

* breakout: the price rises more than ``breakout_bps`` above resistance -> buy;
  breakdown: it falls more than ``breakout_bps`` below support -> sell.
* bounce: the price enters the support zone (within ``bounce_bps`` above support, not broken
  through it), then turns up by ``turn_bps`` from the lowest price of that touch -> buy;
  the mirror image at resistance -> sell.

A backtest, which has a symbol's whole history at once, scans it as a :class:`PriceColumn`: the
rolling low/high of every tick computed up front with numpy, and only the ticks where a zone is
touched (or a touch is open) judged in Python -- the same decisions as the deques, tick for tick.

Every signal passes a per-symbol cooldown measured on tick timestamps (so replays and tests
are deterministic) and a position check on the strategy's own virtual position, which it
books when it emits a signal and reverts when the executor rejects it.  A signal is never
allowed to take ``|position|`` beyond ``max_position``; its quantity is cut down to the room
left, and it is suppressed when no room is left.
"""

from __future__ import annotations

import bisect
import collections
import dataclasses
import itertools
import math
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from workers.protocol import MAX_QTY, Side, Signal, now_ns

MODES = ("breakout", "bounce", "both")
_BPS = 1e-4
#: how many emitted signals are remembered so that a late rejection can still be reverted
MAX_REMEMBERED_SIGNALS = 10_000


# ----------------------------------------------------------------------------- parameters


@dataclass(frozen=True, slots=True)
class StrategyParams:
    """Tunable parameters of the support/resistance strategy (see docs/strategy.md).

    The defaults aim at a few signals per minute per symbol on the simulated feed at 5 ticks
    per second (about 3/min there: 2.4 bounces, 0.8 breakouts): a 200 tick window is 40 s of
    history, the bps thresholds sit around one tick's noise of that feed (~4 bps), and the
    cooldown caps a symbol at six signals a minute.
    """

    #: ticks in the rolling window that defines support (low) and resistance (high)
    window: int = 200
    #: ticks the window must hold before the strategy trades (capped at ``window``)
    min_fill: int = 50
    #: "breakout", "bounce" or "both"
    mode: str = "both"
    #: how far beyond a level (basis points) the price must go to count as a breakout
    breakout_bps: float = 3.0
    #: width of the zone above support / below resistance (bps) in which a price "touches" it
    bounce_bps: float = 5.0
    #: how far the price must turn back from the touch extreme (bps) to confirm a bounce
    turn_bps: float = 5.0
    #: the window's range (resistance - support, bps of support) below which bounces are off
    min_range_bps: float = 20.0
    #: seconds between two signals of one symbol (tick time)
    cooldown: float = 10.0
    #: quantity of one signal
    qty: int = 100
    #: largest absolute virtual position per symbol
    max_position: int = 300
    #: whether a sell may open or extend a short position
    allow_short: bool = True

    def __post_init__(self) -> None:
        problems = _check_params(self)
        if problems:
            raise ValueError("; ".join(problems))

    # -- conversions
    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    def replace(self, **changes: Any) -> StrategyParams:
        """A copy with ``changes`` applied; values are coerced (strings from a UI edit box,
        ints for floats from TOML) and the result validated.  Raises ValueError."""
        unknown = sorted(set(changes) - set(self.field_names()))
        if unknown:
            raise ValueError(f"unknown parameter(s): {', '.join(unknown)}; known: {', '.join(self.field_names())}")
        coerced = {name: _coerce(name, _FIELD_TYPES[name], value) for name, value in changes.items()}
        return dataclasses.replace(self, **coerced)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> StrategyParams:
        """Parameters from a map (CLI namespace, TOML table); unknown keys are ignored."""
        names = set(cls.field_names())
        return cls().replace(**{k: v for k, v in values.items() if k in names and v is not None})

    # -- derived
    @property
    def effective_min_fill(self) -> int:
        return min(self.min_fill, self.window)

    @property
    def cooldown_ns(self) -> int:
        return int(self.cooldown * 1e9)


_FIELD_TYPES: dict[str, type] = {"window": int, "min_fill": int, "mode": str, "breakout_bps": float, "bounce_bps": float,
                                 "turn_bps": float, "min_range_bps": float, "cooldown": float, "qty": int,
                                 "max_position": int, "allow_short": bool}
assert set(_FIELD_TYPES) == {f.name for f in dataclasses.fields(StrategyParams)}


def _coerce(name: str, typ: type, value: Any) -> Any:
    try:
        if typ is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.strip().lower() in ("true", "yes", "on", "1", "false", "no", "off", "0"):
                return value.strip().lower() in ("true", "yes", "on", "1")
            if isinstance(value, int) and value in (0, 1):
                return bool(value)
            raise ValueError
        if typ is int:
            if isinstance(value, bool):
                raise ValueError
            if isinstance(value, float):
                if not value.is_integer():
                    raise ValueError
                return int(value)
            return int(value)
        if typ is float:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if typ is str:
            if not isinstance(value, str):
                raise ValueError
            return value.strip()
    except (TypeError, ValueError, OverflowError):
        pass
    raise ValueError(f"parameter '{name}' must be a {typ.__name__}, got {value!r}")


def _check_params(p: StrategyParams) -> list[str]:
    problems = []
    for name, typ in _FIELD_TYPES.items():
        v = getattr(p, name)
        ok = isinstance(v, typ) and not (typ is not bool and isinstance(v, bool))
        if typ is float and isinstance(v, int) and not isinstance(v, bool):
            ok = True
        if not ok:
            problems.append(f"'{name}' must be a {typ.__name__}, got {type(v).__name__}")
    if problems:
        return problems

    def rng(name: str, lo: float, hi: float) -> None:
        v = getattr(p, name)
        if not (lo <= v <= hi):  # also false for NaN
            problems.append(f"'{name}' must be between {lo:g} and {hi:g}, got {v}")

    rng("window", 2, 1_000_000)
    rng("min_fill", 1, 1_000_000)
    rng("breakout_bps", 0, 5000)
    rng("bounce_bps", 0, 5000)
    rng("turn_bps", 0, 5000)
    rng("min_range_bps", 0, 10_000)
    rng("cooldown", 0, 86_400)
    rng("qty", 1, MAX_QTY)
    rng("max_position", 0, MAX_QTY)
    if p.mode not in MODES:
        problems.append(f"'mode' must be one of {', '.join(MODES)}, got {p.mode!r}")
    return problems


# ----------------------------------------------------------------------------- rolling range


class RollingRange:
    """Low and high of the last ``window`` prices, O(1) amortised per push.

    Two monotonic deques of (index, price): ``_lo`` keeps prices increasing from the front,
    so its front is the window's low; ``_hi`` keeps them decreasing.  Each price enters and
    leaves each deque at most once.
    """

    __slots__ = ("window", "_n", "_first", "_lo", "_hi")

    def __init__(self, window: int):
        if window < 1:
            raise ValueError("window must be >= 1")
        self.window = window
        self._n = 0  # prices pushed so far
        self._first = 0  # index of the oldest price the deques still represent
        self._lo: collections.deque[tuple[int, float]] = collections.deque()
        self._hi: collections.deque[tuple[int, float]] = collections.deque()

    @property
    def low(self) -> float | None:
        return self._lo[0][1] if self._lo else None

    @property
    def high(self) -> float | None:
        return self._hi[0][1] if self._hi else None

    @property
    def fill(self) -> int:
        """How many of the last ``window`` prices the range is based on."""
        return self._n - self._first

    def push(self, price: float) -> None:
        n = self._n
        lo, hi = self._lo, self._hi
        # ties: keep the newest, it stays in the window longest
        while lo and lo[-1][1] >= price:
            lo.pop()
        lo.append((n, price))
        while hi and hi[-1][1] <= price:
            hi.pop()
        hi.append((n, price))
        self._n = n = n + 1
        first = n - self.window
        if first > self._first:
            self._first = first
            if lo[0][0] < first:
                lo.popleft()
            if hi[0][0] < first:
                hi.popleft()

    def resize(self, window: int) -> None:
        """Change the window length.  Shrinking takes effect at once; growing fills up as
        prices arrive (prices that already left the window are gone)."""
        if window < 1:
            raise ValueError("window must be >= 1")
        self.window = window
        first = self._n - window
        if first > self._first:
            self._first = first
            while self._lo and self._lo[0][0] < first:
                self._lo.popleft()
            while self._hi and self._hi[0][0] < first:
                self._hi.popleft()

    def clear(self) -> None:
        self._lo.clear()
        self._hi.clear()
        self._first = self._n

    def load(self, prices, k: int) -> None:
        """The state of a fresh range after pushing ``prices[:k]`` (a numpy column), without
        pushing them one by one: a deque holds the prices of the window that stay below
        (``_lo``; above for ``_hi``) every later one, ties kept newest as :meth:`push` does."""
        import numpy as np

        first = max(0, k - self.window)
        seg = prices[first:k]
        self._n, self._first = k, first
        for dq, ufunc, beats in ((self._lo, np.minimum, np.less), (self._hi, np.maximum, np.greater)):
            dq.clear()
            if not len(seg):
                continue
            later = ufunc.accumulate(seg[::-1])[::-1]  # extreme of seg[j:]
            keep = np.ones(len(seg), dtype=bool)
            keep[:-1] = beats(seg[:-1], later[1:])
            idx = np.flatnonzero(keep)
            dq.extend(zip((idx + first).tolist(), seg[idx].tolist()))


def _trailing(x, w: int, ufunc, pad: float):
    """``ufunc`` (numpy.minimum or maximum) of ``x[max(0, j - w + 1):j + 1]`` for every ``j``, in
    O(len(x)) whatever ``w`` (van Herk / Gil-Werman: a window of ``w`` spans at most two blocks
    of ``w``, so it is the suffix of one block joined with the prefix of the next).  ``pad`` in
    front makes the first, shorter windows come out of the same formula."""
    import numpy as np

    n = len(x)
    w = max(1, min(w, n))
    blocks = -(-(n + w - 1) // w)
    buf = np.full(blocks * w, pad, dtype=np.float64)
    buf[w - 1:w - 1 + n] = x
    b = buf.reshape(blocks, w)
    pre = ufunc.accumulate(b, axis=1).ravel()
    suf = ufunc.accumulate(b[:, ::-1], axis=1)[:, ::-1].ravel()
    return ufunc(suf[:n], pre[w - 1:w - 1 + n])


class PriceColumn:
    """A symbol's whole price history, prepared for :meth:`SupportResistance.scan_column`.

    ``sup[i]``/``res[i]`` are the low/high of the ``window`` prices before tick ``i`` -- what the
    deques hold when tick ``i`` is judged -- and ``candidates`` the ticks from which the window
    holds enough prices (``need``) and that :meth:`SupportResistance.scan` would judge even
    with no touch open, i.e. that are not strictly inside both zones.  Min and max are exact,
    and the zone bounds are the same float products as in ``scan``, so the candidates are the
    same ticks.  Only for float64 prices that are finite and positive (:meth:`usable`): a NaN
    or a signed zero would compare differently in numpy and in the deques."""

    __slots__ = ("window", "need", "zone", "last", "price", "ts", "sup", "res", "candidates")

    def __init__(self, last, ts, p: StrategyParams):
        import numpy as np

        if not self.usable(last) or len(ts) != len(last):
            raise ValueError("a PriceColumn needs float64 prices, finite and positive, one per time")
        n = len(last)
        self.window = p.window
        self.need = min(p.min_fill, p.window)
        self.zone = p.bounce_bps * _BPS
        self.last = last
        sup = np.empty(n)
        res = np.empty(n)
        if n:
            sup[0], res[0] = math.inf, -math.inf  # never read: no tick is judged on an empty window
            sup[1:] = _trailing(last[:-1], p.window, np.minimum, math.inf)
            res[1:] = _trailing(last[:-1], p.window, np.maximum, -math.inf)
        k = self.need
        above_sup, below_res = 1.0 + self.zone, 1.0 - self.zone
        inside = (sup[k:] * above_sup < last[k:]) & (last[k:] < res[k:] * below_res)
        self.candidates: list[int] = (np.flatnonzero(~inside) + k).tolist()
        self.price: list[float] = last.tolist()
        self.ts: list[int] = ts.tolist()
        self.sup: list[float] = sup.tolist()
        self.res: list[float] = res.tolist()

    @staticmethod
    def usable(last) -> bool:
        import numpy as np

        return (isinstance(last, np.ndarray) and last.dtype == np.float64 and last.ndim == 1
                and bool(np.all(np.isfinite(last) & (last > 0))))

    def __len__(self) -> int:
        return len(self.price)

    def fits(self, p: StrategyParams) -> bool:
        return p.window == self.window and min(p.min_fill, p.window) == self.need and p.bounce_bps * _BPS == self.zone


# ----------------------------------------------------------------------------- per symbol


@dataclass(frozen=True, slots=True)
class Intent:
    """What the strategy wants to do on one tick, after cooldown and position checks."""

    side: Side
    qty: int
    reason: str
    level: float


def fmt_price(x: float) -> str:
    """Price text for reasons: two decimals when exact ("101.50"), else enough digits."""
    return f"{x:.2f}" if abs(x - round(x, 2)) < 1e-9 else f"{x:.10g}"


_CONSTS: dict[int, tuple] = {}


def _consts(p: StrategyParams) -> tuple:
    """The factors :meth:`SupportResistance._evaluate` multiplies levels by, once per
    parameter set (frozen, so its identity names them): ``(p, 1 - brk, 1 + zone, 1 + turn,
    min_range_bps, mode, 1 + brk, cooldown_ns, 1 - zone, 1 - turn)``."""
    k = _CONSTS.get(id(p))
    if k is None or k[0] is not p:
        brk, zone, turn = p.breakout_bps * _BPS, p.bounce_bps * _BPS, p.turn_bps * _BPS
        k = (p, 1.0 - brk, 1.0 + zone, 1.0 + turn, p.min_range_bps, p.mode, 1.0 + brk, p.cooldown_ns,
             1.0 - zone, 1.0 - turn)
        if len(_CONSTS) > 64:
            _CONSTS.clear()
        _CONSTS[id(p)] = k
    return k


class SupportResistance:
    """Levels, bounce state, cooldown and virtual position of one symbol."""

    __slots__ = ("symbol", "_range", "position", "_last_signal_ts", "_sup_touch", "_res_touch", "_sup_touch_n",
                 "_res_touch_n", "_ticks", "_col", "_stale")

    def __init__(self, symbol: str, window: int):
        self.symbol = symbol
        self._range = RollingRange(window)
        self.position = 0
        self._last_signal_ts: int | None = None
        # bounce state: extreme price of the current touch of a zone (None = not touching)
        self._sup_touch: float | None = None
        self._res_touch: float | None = None
        self._sup_touch_n = 0
        self._res_touch_n = 0
        self._ticks = 0
        # [column, k]: the book has seen that PriceColumn's first k prices through scan_column
        # (None: fed tick by tick); _stale: the deques do not hold them yet (rebuilt when read,
        # as a backtest scans on without ever reading them)
        self._col: list | None = None
        self._stale = False

    @property
    def range(self) -> RollingRange:
        if self._stale:
            self._sync()
        return self._range

    def _unbind(self) -> None:
        if self._stale:
            self._sync()
        self._col = None

    def _sync(self) -> None:
        col, k = self._col
        self._range.load(col.last, k)
        self._stale = False

    @property
    def support(self) -> float | None:
        return self.range.low

    @property
    def resistance(self) -> float | None:
        return self.range.high

    def reset_window(self) -> None:
        """Forget the price history (feed restart); the position is kept."""
        if self._col is not None:
            self._unbind()
        self._range.clear()
        self._sup_touch = self._res_touch = None

    def on_price(self, price: float, ts: int, p: StrategyParams, trading: bool,
                 count: Callable[[str], None] | None = None) -> Intent | None:
        """Evaluate one tick against the levels of the ticks before it, then add it to the window."""
        if self._col is not None:
            self._unbind()
        rng = self._range
        sup = rng._lo[0][1] if rng._lo else None
        intent = None
        self._ticks += 1
        if trading and sup is not None and rng._n - rng._first >= min(p.min_fill, p.window):
            intent = self._evaluate(price, ts, sup, rng._hi[0][1], p, count)
        else:
            self._sup_touch = self._res_touch = None
        rng.push(price)
        return intent

    def scan(self, rows, start: int, p: StrategyParams, trading: bool,
             count: Callable[[str], None] | None = None, stop: int | None = None) -> tuple[int, Intent] | None:
        """:meth:`on_price` for the rows of a ``ticks`` frame (``(seq, ts, last, ...)``) from
        ``start`` on (to ``stop``, default all), up to and including the first that makes an
        intent: ``(its index, the intent)``, or None when the rows are used up.  Stopping there lets the caller act on
        the signal (a dropped one gives its position back) before the next tick is judged,
        exactly as tick by tick.

        The same decisions at a fraction of the cost per tick: a tick that touches no zone
        while no touch is open -- strictly between ``support * (1 + bounce)`` and
        ``resistance * (1 - bounce)`` -- can neither break out nor start, turn or end a
        bounce (see :meth:`_evaluate` and :meth:`_bounce`), so it is only pushed into the
        window.  tests/unit/test_strategy.py holds the two paths to the same signals."""
        if self._col is not None:
            self._unbind()
        rng = self._range
        push, lo, hi = rng.push, rng._lo, rng._hi
        need = min(p.min_fill, p.window)
        zone = p.bounce_bps * _BPS
        above_sup, below_res = 1.0 + zone, 1.0 - zone
        consts = _consts(p)
        for i in range(start, len(rows) if stop is None else stop):
            r = rows[i]
            price = r[2]
            self._ticks += 1
            intent = None
            if trading and lo and rng._n - rng._first >= need:
                if not (self._sup_touch is None and self._res_touch is None
                        and lo[0][1] * above_sup < price < hi[0][1] * below_res):
                    intent = self._evaluate(price, r[1], lo[0][1], hi[0][1], p, count, consts)
            else:
                self._sup_touch = self._res_touch = None
            push(price)
            if intent is not None:
                return i, intent
        return None

    def scan_column(self, col: PriceColumn, start: int, p: StrategyParams, trading: bool,
                    count: Callable[[str], None] | None = None, stop: int | None = None) -> tuple[int, Intent] | None:
        """:meth:`scan` over a :class:`PriceColumn`: the same decisions, tick for tick, without
        pushing every price through the deques or judging the ticks ``scan`` skips -- those
        are jumped over to the next candidate whenever no touch is open; with a touch open
        every tick is judged, as there.  The book must have seen exactly ``col``'s prices
        before ``start``, through this method (a fresh book starts at 0)."""
        bound = self._col
        if bound is None:
            if start != 0 or self._range._n != 0:
                raise ValueError("scan_column starts at 0 on a book that has seen no price")
            self._col = bound = [col, 0]
        elif bound[0] is not col or bound[1] != start:
            raise ValueError("scan_column continues the column where it stopped")
        elif not self._stale:  # read since: a resize or clear through .range shows here
            rng = self._range
            if rng._n != start or rng._first != max(0, start - rng.window) or rng.window != col.window:
                raise ValueError("the book's window changed since the column's last scan")
        if not col.fits(p):
            raise ValueError("the column was prepared for other parameters")
        n = len(col) if stop is None else min(stop, len(col))
        base = self._ticks - start
        self._stale = True
        i = start
        if not trading or i < col.need:
            self._sup_touch = self._res_touch = None
            i = n if not trading else max(i, min(col.need, n))
        cand, price, ts, sup, res = col.candidates, col.price, col.ts, col.sup, col.res
        k = bisect.bisect_left(cand, i)
        nc = len(cand)
        evaluate = self._evaluate
        consts = _consts(p)
        while i < n:
            if self._sup_touch is None and self._res_touch is None:
                if k < nc and cand[k] < i:
                    k = bisect.bisect_left(cand, i, k)
                if k >= nc or cand[k] >= n:
                    break
                i = cand[k]
                k += 1
            self._ticks = base + i + 1
            intent = evaluate(price[i], ts[i], sup[i], res[i], p, count, consts)
            if intent is not None:
                bound[1] = i + 1
                return i, intent
            i += 1
        self._ticks = base + n
        bound[1] = n
        return None

    def _evaluate(self, price: float, ts: int, sup: float, res: float, p: StrategyParams,
                  count: Callable[[str], None] | None, k: tuple | None = None) -> Intent | None:
        if k is None:
            k = _consts(p)
        _, below_brk, _, _, _, mode, above_brk, cooldown_ns, _, _ = k
        side = None
        why = ""  # the reason's words; its price is formatted only for a signal that goes out
        level = 0.0
        if mode != "bounce":
            if price > res * above_brk:
                side, level, why = Side.BUY, res, "breakout above resistance "
            elif price < sup * below_brk:
                side, level, why = Side.SELL, sup, "breakdown below support "
        if mode != "breakout":
            if side is None:
                side, level, why = self._bounce(price, sup, res, p, k)
            else:
                self._sup_touch = self._res_touch = None
        if side is None:
            return None
        # a triggered setup is consumed even if cooldown or position suppress it below,
        # so that it does not fire later at a price that no longer fits its reason
        last = self._last_signal_ts
        if last is not None and ts - last < cooldown_ns:
            if count:
                count("suppressed_cooldown")
            return None
        qty = self._room(side, p)
        if qty <= 0:
            if count:
                count("suppressed_position")
            return None
        self._last_signal_ts = ts
        self.position += qty if side is Side.BUY else -qty
        return Intent(side, qty, why + fmt_price(level), level)

    def _bounce(self, price: float, sup: float, res: float, p: StrategyParams,
                k: tuple | None = None) -> tuple[Side | None, float, str]:
        """A bounce's side, level and reason words (its price not yet appended), or None."""
        if k is None:
            k = _consts(p)
        _, below_brk, above_zone, above_turn, min_range_bps, _, above_brk, _, below_zone, below_turn = k
        if res - sup < sup * min_range_bps * _BPS:
            self._sup_touch = self._res_touch = None
            return None, 0.0, ""
        n = self._ticks
        # a touch older than the window no longer describes these levels
        touch = self._sup_touch
        if touch is not None and n - self._sup_touch_n > p.window:
            touch = self._sup_touch = None
        if self._res_touch is not None and n - self._res_touch_n > p.window:
            self._res_touch = None
        if touch is not None:
            if price < sup * below_brk:  # broke through: not a bounce
                self._sup_touch = None
            elif price >= touch * above_turn and price > touch:
                self._sup_touch = None
                return Side.BUY, sup, "bounce off support "
            elif price < touch:
                self._sup_touch = price
        elif sup * below_brk <= price <= sup * above_zone:
            self._sup_touch = price
            self._sup_touch_n = n

        touch = self._res_touch
        if touch is not None:
            if price > res * above_brk:
                self._res_touch = None
            elif price <= touch * below_turn and price < touch:
                self._res_touch = None
                return Side.SELL, res, "bounce off resistance "
            elif price > touch:
                self._res_touch = price
        elif res * below_zone <= price <= res * above_brk:
            self._res_touch = price
            self._res_touch_n = n
        return None, 0.0, ""

    def _room(self, side: Side, p: StrategyParams) -> int:
        pos = self.position
        if side is Side.BUY:
            room = p.max_position - pos
        else:
            floor = -p.max_position if p.allow_short else 0
            room = pos - floor
        return min(p.qty, room)


# ----------------------------------------------------------------------------- the strategy


def new_session_id() -> str:
    """Short id that differs between runs, so signal ids stay unique across restarts."""
    n = time.time_ns() // 1_000_000
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while n:
        n, r = divmod(n, 36)
        out = digits[r] + out
    return out or "0"


class SRStrategy:
    """Support/resistance strategy over many symbols: turns prices into protocol Signals.

    ``count`` receives the name of every suppressed setup ("suppressed_cooldown",
    "suppressed_position") so the worker can report them.
    """

    def __init__(self, name: str, params: StrategyParams | None = None, session: str | None = None,
                 count: Callable[[str], None] | None = None, market_clock: bool = False):
        self.name = name
        #: stamp signals with their tick's time, not the wall clock (a backtest's simulated clock)
        self._market_clock = market_clock
        self.params = params or StrategyParams()
        self.session = session or new_session_id()
        self.active = True
        self.books: dict[str, SupportResistance] = {}
        self._count = count
        self._seq = itertools.count(1)
        # signal id -> (symbol, signed qty), to revert a rejected signal exactly once
        self._open: collections.OrderedDict[str, tuple[str, int]] = collections.OrderedDict()

    def book(self, symbol: str) -> SupportResistance:
        b = self.books.get(symbol)
        if b is None:
            b = self.books[symbol] = SupportResistance(symbol, self.params.window)
        return b

    def on_price(self, symbol: str, price: float, ts: int, now: int | None = None) -> Signal | None:
        """Feed one tick; return the Signal it triggers, if any (its position is booked)."""
        b = self.books.get(symbol) or self.book(symbol)
        intent = b.on_price(price, ts, self.params, self.active, self._count)
        if intent is None:
            return None
        return self._signal(symbol, intent, price, ts, now)

    def on_rows(self, symbol: str, rows) -> Iterator[Signal]:
        """Feed the rows of one ``ticks`` frame of ``symbol``; yield each Signal they trigger,
        stamped when it is made.  The next row is judged only once the caller has handled
        the signal (see :meth:`SupportResistance.scan`)."""
        i, n = 0, len(rows)
        while i < n:
            hit = self.next_signal(symbol, rows, i)
            if hit is None:
                return
            i, sig = hit
            yield sig
            i += 1

    def next_signal(self, symbol: str, rows, start: int, now: int | None = None, stop: int | None = None) -> tuple[int, Signal] | None:
        """Feed ``rows[start:]`` up to and including the first row that makes a signal:
        ``(its index, the Signal)`` (its position booked), or None when the rows are used up.
        ``now`` stamps the signal (default: the wall clock, or the row's time with
        ``market_clock``); ``stop`` ends the scan early (None when reached)."""
        b = self.books.get(symbol) or self.book(symbol)
        hit = b.scan(rows, start, self.params, self.active, self._count, stop)
        if hit is None:
            return None
        i, intent = hit
        r = rows[i]
        return i, self._signal(symbol, intent, r[2], r[1], r[1] if now is None and self._market_clock else now)

    def column(self, last, ts) -> PriceColumn | None:
        """``last`` and ``ts`` (numpy columns of one symbol's whole history) prepared for
        :meth:`next_signal_in` with the current parameters; None when the prices are not ones
        the column path decides exactly like the deques (see :class:`PriceColumn`)."""
        return PriceColumn(last, ts, self.params) if PriceColumn.usable(last) else None

    def next_signal_in(self, symbol: str, col: PriceColumn, start: int, now: int | None = None,
                       stop: int | None = None) -> tuple[int, Signal] | None:
        """:meth:`next_signal` over a :class:`PriceColumn` of ``symbol`` (see
        :meth:`SupportResistance.scan_column`): the same signals as the column's rows fed to
        :meth:`next_signal` from the first on."""
        b = self.books.get(symbol) or self.book(symbol)
        hit = b.scan_column(col, start, self.params, self.active, self._count, stop)
        if hit is None:
            return None
        i, intent = hit
        ts = col.ts[i]
        return i, self._signal(symbol, intent, col.price[i], ts, ts if now is None and self._market_clock else now)

    def _signal(self, symbol: str, intent: Intent, price: float, ts: int, now: int | None) -> Signal:
        sig = Signal(
            id=f"{self.name}-{self.session}-{next(self._seq)}",
            strategy=self.name,
            symbol=symbol,
            side=intent.side,
            qty=intent.qty,
            price=float(price),
            ts=now_ns() if now is None else now,
            cause_ts=ts,
            reason=intent.reason,
        )
        self._open[sig.id] = (symbol, intent.qty if intent.side is Side.BUY else -intent.qty)
        if len(self._open) > MAX_REMEMBERED_SIGNALS:
            self._open.popitem(last=False)
        return sig

    def on_tick(self, tick, now: int | None = None) -> Signal | None:
        return self.on_price(tick.symbol, tick.last, tick.ts, now)

    def on_rejected(self, signal: Signal) -> bool:
        """Revert the virtual position booked for ``signal``; True if it was ours and open.

        Safe to call twice or for foreign signals: only a remembered id is reverted, once.
        """
        entry = self._open.pop(signal.id, None)
        if entry is None:
            return False
        symbol, signed = entry
        b = self.books.get(symbol)
        if b is None:
            return False
        b.position -= signed
        return True

    def on_accepted(self, signal_id: str) -> None:
        """The executor took the signal: it can no longer be rejected, forget it."""
        self._open.pop(signal_id, None)

    def set_params(self, params: StrategyParams) -> None:
        if params.window != self.params.window:
            for b in self.books.values():
                b.range.resize(params.window)
        self.params = params

    def set_position(self, symbol: str, qty: int) -> None:
        """Overwrite the virtual position (to resync it with the executor's real one)."""
        self.book(symbol).position = int(qty)

    def reset_window(self, symbol: str) -> None:
        b = self.books.get(symbol)
        if b is not None:
            b.reset_window()

    def positions(self) -> dict[str, int]:
        return {s: b.position for s, b in self.books.items()}

    def warmed_up(self, symbol: str) -> bool:
        b = self.books.get(symbol)
        return b is not None and b.range.fill >= self.params.effective_min_fill
