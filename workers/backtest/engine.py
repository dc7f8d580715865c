"""Backtests: the live strategy, risk checks, venue and ledger code on a simulated clock.

Nothing here is a re-implementation (docs/backtest.md, "The engine"):

* the strategy is :class:`workers.strategy.levels.SRStrategy`, fed the recorded ticks-frame
  rows exactly as the strategy worker feeds it frames;
* each signal goes through the executor's :class:`workers.executor.risk.RiskChecker` with the
  executor's default limits (position and working orders of its symbol, the order rate in a
  sliding second of market time) and becomes the executor's market order;
* the order goes to :class:`workers.exchange.simulated.SimulatedExchange` (the venue the
  exchange gateway runs: matching, order kinds, partial fills against the touch and depth);
* fills move a :class:`workers.positions.PositionBook`, like the gateway's.

The clock is the data's: every call gets the current tick's ``ts``; no wall clock, no sockets.

Why it is fast: symbols only meet at the risk checker's rate window, so each symbol's rows are
scanned ahead on their own up to its next signal (``SRStrategy.next_signal``), and signals are
decided in time order across symbols from a heap.  A symbol's ticks reach the venue only while
it has working orders (a market order larger than the touch keeps working and fills on later
ticks); otherwise the venue gets the signal's tick just before the order, which is all a
market order reads.  The decisions are the ones a tick-by-tick loop in time order makes.

The strategy scans each symbol's columns as one :class:`workers.strategy.levels.PriceColumn`
(the rolling low/high computed with numpy, Python only on the ticks that touch a zone), and
rows are made only for the ticks the venue or the risk checker reads (:class:`_Rows`).
tests/unit/test_backtest_fast.py holds it to the tick-by-tick signals.
"""

from __future__ import annotations

import dataclasses
import heapq
import math
import time
import bisect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from workers import protocol as P
from workers.exchange.client import FillEvent, Order
from workers.exchange.simulated import SimulatedExchange
from workers.executor.risk import RiskChecker, RiskLimits
from workers.positions import PositionBook
from workers.recording import Recording, open_recording
from workers.strategy.levels import PriceColumn, SRStrategy, StrategyParams

STRATEGIES = ("sr",)
#: points of the equity curve (plus one at every fill)
EQUITY_POINTS = 2_000
_YEAR_NS = 365.25 * 86_400 * 10**9


@dataclass(frozen=True)
class CostModel:
    """What a fill costs beyond its price: ``fee_per_share`` per share plus ``fee_bps`` of the
    notional, and ``slippage_bps`` of the price against the trader (a buy pays more, a sell
    gets less).  Applied in the ledger; the venue's fill prices stay the market's."""

    fee_per_share: float = 0.0
    fee_bps: float = 0.0
    slippage_bps: float = 0.0

    def __post_init__(self) -> None:
        for k, v in dataclasses.asdict(self).items():
            if not (math.isfinite(v) and 0 <= v < 10_000):
                raise ValueError(f"{k} must be in [0, 10000), not {v}")


@dataclass(frozen=True)
class BacktestConfig:
    strategy: str = "sr"
    #: StrategyParams fields (strings are coerced, as from the command line)
    params: Mapping[str, Any] = field(default_factory=dict)
    #: None: every symbol of the data
    symbols: tuple[str, ...] | None = None
    costs: CostModel = field(default_factory=CostModel)
    initial_cash: float = 100_000.0
    limits: RiskLimits = field(default_factory=RiskLimits)

    def strategy_params(self) -> StrategyParams:
        if self.strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy {self.strategy!r} (known: {', '.join(STRATEGIES)})")
        return StrategyParams.from_mapping(dict(self.params))


@dataclass(frozen=True)
class Trade:
    """A round trip of one symbol: from flat to flat (or to a reversal)."""

    symbol: str
    side: str  # "long" | "short"
    qty: int  # the largest absolute position held
    entry_ts: int
    entry_price: float  # average entry
    exit_ts: int
    exit_price: float  # average exit
    pnl: float  # after fees and slippage


@dataclass
class LedgerFill:
    """A venue fill and what the ledger made of it."""

    fill: P.Fill
    price: float  # after slippage
    fee: float


@dataclass
class BacktestResult:
    config: BacktestConfig
    signals: list[P.Signal]
    decisions: list[tuple[str, bool, str]]  # signal id, accepted, reason
    fills: list[LedgerFill]
    equity_ts: np.ndarray
    equity: np.ndarray
    drawdown: np.ndarray
    trades: list[Trade]
    stats: dict[str, float]


class Cancelled(Exception):
    pass


def _tick(sym: str, r) -> P.Tick:
    return P.Tick(sym, r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7])


class _Rows:
    """A symbol's recorded columns as ticks-frame rows, each made when it is read: the venue
    and the risk checker read a few rows per signal, so making every row up front would cost
    more than the strategy's whole scan.  ``item`` gives the Python values ``tolist`` does."""

    __slots__ = ("_items", "_n")

    def __init__(self, cols: Mapping[str, np.ndarray]):
        self._items = [cols[c].item for c in P.TICK_ROW_FIELDS]
        self._n = len(cols["ts"])

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, i: int) -> tuple:
        return tuple([item(i) for item in self._items])


def run_backtest(
    data: str | Path | Recording,
    config: BacktestConfig = BacktestConfig(),
    progress: Callable[[float], None] | None = None,
    cancel: Callable[[], bool] | None = None,
    *,
    depth: Mapping[str, Sequence[P.Depth]] | None = None,
) -> BacktestResult:
    """Run ``config``'s strategy over ``data`` (see the module docstring).

    ``depth``: each symbol's book snapshots in time order; None (the default) takes the
    recording's own depth table, if it has one, as the live venue got them from the replay.
    The venue gets the newest one at or before the tick an order meets (every one while orders
    work), so a market order larger than the touch walks the levels behind it as in the gateway."""
    t0 = time.perf_counter()
    rec = data if isinstance(data, Recording) else open_recording(data)
    if config.symbols:
        rec = rec.only(config.symbols)
    if depth is None:
        depth = rec.depth_by_symbol()
    params = config.strategy_params()
    strat = SRStrategy(config.strategy, params, session="bt", market_clock=True)
    risk = RiskChecker(config.limits)
    venue = SimulatedExchange()
    book = PositionBook()
    costs = config.costs
    syms = rec.symbols
    rows_of = {s: _Rows(rec.columns[s]) for s in syms}
    # the strategy's input per symbol: a PriceColumn, or (prices it cannot take) every row
    scan_in: dict[str, Any] = {}
    for s in syms:
        col = strat.column(rec.columns[s]["last"], rec.columns[s]["ts"])
        scan_in[s] = col if col is not None else list(zip(*(rec.columns[s][c].tolist() for c in P.TICK_ROW_FIELDS)))
    total = max(1, rec.n_ticks)
    books = {s: list(depth.get(s, ())) for s in syms} if depth else {}
    book_ts = {s: [d.ts for d in b] for s, b in books.items()}
    dfed = dict.fromkeys(syms, 0)  # depth snapshots of each symbol the venue has seen
    fed = dict.fromkeys(syms, -1)  # last row index each symbol's venue market has seen
    scanned = dict.fromkeys(syms, 0)  # rows of each symbol the strategy has seen
    signals: list[P.Signal] = []
    decisions: list[tuple[str, bool, str]] = []
    fills: list[LedgerFill] = []
    order_n = 0
    last_report = 0.0

    def report(force: bool = False) -> None:
        nonlocal last_report
        if cancel is not None and cancel():
            raise Cancelled()
        if progress is None:
            return
        now = time.perf_counter()
        if force or now - last_report >= 0.05:
            last_report = now
            progress(min(1.0, sum(scanned.values()) / total))

    def book_fills(events) -> None:
        for ev in events:
            if ev.__class__ is FillEvent:
                f = ev.fill
                book.apply(f)
                slip = f.price * costs.slippage_bps * 1e-4
                price = f.price + slip if f.side is P.Side.BUY else f.price - slip
                fee = costs.fee_per_share * f.qty + costs.fee_bps * 1e-4 * f.price * f.qty
                fills.append(LedgerFill(P.Fill(f.fill_id, f.client_order_id, f.order_id, f.symbol, f.side, f.qty, f.price, f.ts), price, fee))

    def feed_to(sym: str, j: int) -> None:
        """The venue's market of ``sym`` up to row ``j``: every row while orders work, else
        only row ``j`` (what a market order or a new limit reads)."""
        rows = rows_of[sym]
        snaps = books.get(sym)
        i = fed[sym] + 1
        while i <= j and venue.working(sym):
            r = rows[i]
            book_fills(venue.on_tick(_tick(sym, r)))
            if snaps:
                depth_to(sym, snaps, r[1], every=True)
            i += 1
        if i <= j:
            r = rows[j]
            book_fills(venue.on_tick(_tick(sym, r)))
            if snaps:
                depth_to(sym, snaps, r[1], every=False)
        fed[sym] = max(fed[sym], j)

    def depth_to(sym: str, snaps: list[P.Depth], ts: int, every: bool) -> None:
        # after the tick of the same moment: the venue then takes only the levels behind the
        # touch from a snapshot no newer than its tick
        k = dfed[sym]
        stop = bisect.bisect_right(book_ts[sym], ts)
        if not every and stop - k > 1:
            k = stop - 1
        for d in snaps[k:stop]:
            book_fills(venue.on_depth(d))
        dfed[sym] = max(k, stop)

    def scan(sym: str) -> tuple[int, int, str, int, P.Signal] | None:
        src = scan_in[sym]
        fast = src.__class__ is PriceColumn
        start = scanned[sym]
        # scan in slices, so that progress and cancel are heard on long symbols
        while start < len(src):
            stop = min(len(src), start + 200_000)
            if fast:
                hit = strat.next_signal_in(sym, src, start, stop=stop)
            else:
                hit = strat.next_signal(sym, src, start, stop=stop)
            if hit is not None:
                i, sig = hit
                scanned[sym] = i + 1
                return (sig.cause_ts, syms.index(sym), sym, i, sig)
            scanned[sym] = start = stop
            report()
        return None

    heap = [h for h in (scan(s) for s in syms) if h is not None]
    heapq.heapify(heap)
    while heap:
        ts, _, sym, i, sig = heapq.heappop(heap)
        signals.append(sig)
        feed_to(sym, i)
        risk.set_last(sym, rows_of[sym][i][2])
        pending = sum(o.remaining if o.side is P.Side.BUY else -o.remaining for o in venue.working(sym))
        decision = risk.check(sig.side, sym, sig.qty, sig.price, ts / 1e9, book.qty(sym), pending)
        decisions.append((sig.id, decision.accepted, decision.reason))
        if decision.accepted:
            order_n += 1
            req = P.SendOrder(client_order_id=f"bt-{order_n}", symbol=sym, side=sig.side, qty=sig.qty,
                              order_type=P.OrderType.MARKET, source=f"strategy:{sig.strategy}", ts=ts,
                              cause_ts=sig.ts, origin_ts=sig.cause_ts)
            events = venue.submit(Order.from_request(req, ts), ts)
            book_fills(events)
            if any(ev.__class__ is not FillEvent and ev.order.status is P.OrderStatus.REJECTED for ev in events):
                strat.on_rejected(sig)
        else:
            strat.on_rejected(sig)
        nxt = scan(sym)
        if nxt is not None:
            heapq.heappush(heap, nxt)
        report()
    # orders still working when the data ends fill on the rest of their symbol's ticks
    for sym in syms:
        feed_to(sym, len(rows_of[sym]) - 1)
    report(force=True)
    elapsed = time.perf_counter() - t0
    eq_ts, equity, exposure = _equity(rec, fills, config.initial_cash)
    dd = np.maximum.accumulate(equity) - equity if len(equity) else equity
    trades = _trades(fills)
    stats = _stats(rec, config, fills, trades, eq_ts, equity, dd, exposure)
    stats["signals"] = float(len(signals))
    stats["ticks"] = float(rec.n_ticks)
    stats["seconds"] = elapsed
    stats["ticks_per_s"] = rec.n_ticks / elapsed if elapsed > 0 else 0.0
    return BacktestResult(config, signals, decisions, fills, eq_ts, equity, dd, trades, stats)


# ----------------------------------------------------------------------------- results


def _equity(rec: Recording, fills: list[LedgerFill], cash0: float) -> tuple[np.ndarray, np.ndarray, float]:
    """Equity marked to the last trade at EQUITY_POINTS even times and at every fill, and the
    fraction of the time any position was open."""
    t_first, t_last = rec.first_ts, rec.last_ts
    # offsets from the start, not absolute times: a float64 of 1.7e18 ns is only good to 256 ns
    grid = np.array([t_first], dtype=np.int64)
    if t_last > t_first:
        grid = t_first + np.linspace(0, t_last - t_first, EQUITY_POINTS).astype(np.int64)
        grid[-1] = t_last
    fts = np.array([lf.fill.ts for lf in fills], dtype=np.int64)
    ts = np.unique(np.concatenate([grid, fts]))
    equity = np.full(len(ts), float(cash0))
    open_any = np.zeros(len(ts), dtype=bool)
    # cash after each fill (fills are in time order within the run)
    signed = np.array([lf.fill.qty if lf.fill.side is P.Side.BUY else -lf.fill.qty for lf in fills], dtype=np.int64)
    flow = np.array([-s * lf.price - lf.fee for s, lf in zip(signed.tolist(), fills)], dtype=np.float64)
    if fills:
        order = np.argsort(fts, kind="stable")
        fts_o, flow_o = fts[order], flow[order]
        k = np.searchsorted(fts_o, ts, side="right")  # fills at or before each time
        cash = np.concatenate([[0.0], np.cumsum(flow_o)])[k]
        equity = equity + cash
        for sym in rec.symbols:
            sel = np.array([lf.fill.symbol == sym for lf in fills], dtype=bool)[order]
            if not sel.any():
                continue
            pos = np.concatenate([[0], np.cumsum(signed[order][sel])])[np.searchsorted(fts_o[sel], ts, side="right")]
            col = rec.columns[sym]
            j = np.searchsorted(col["ts"], ts, side="right") - 1
            last = np.where(j >= 0, col["last"][np.clip(j, 0, None)], 0.0)
            equity = equity + pos * last
            open_any |= pos != 0
    exposure = 0.0
    if len(ts) > 1 and ts[-1] > ts[0]:
        exposure = float(np.sum(np.diff(ts)[open_any[:-1]]) / (ts[-1] - ts[0]))
    return ts, equity, exposure


def _trades(fills: list[LedgerFill]) -> list[Trade]:
    """Round trips per symbol: one opens when a position leaves flat, closes when it is flat
    again; a fill through zero closes one and opens the next."""
    out: list[Trade] = []
    state: dict[str, dict[str, Any]] = {}
    for lf in fills:
        f = lf.fill
        s = state.setdefault(f.symbol, {"pos": 0})
        q = f.qty if f.side is P.Side.BUY else -f.qty
        fee_per = lf.fee / f.qty
        while q:
            pos = s["pos"]
            if pos == 0:
                s.update(pos=0, start=f.ts, sign=1 if q > 0 else -1, in_q=0, in_v=0.0, out_q=0, out_v=0.0, fees=0.0, peak=0)
            sign = s["sign"]
            if q * sign > 0:  # opening or adding
                step = q
                s["in_q"] += abs(step)
                s["in_v"] += abs(step) * lf.price
            else:  # reducing, up to flat
                step = -sign * min(abs(q), abs(pos))
                s["out_q"] += abs(step)
                s["out_v"] += abs(step) * lf.price
            s["fees"] += fee_per * abs(step)
            s["pos"] = pos + step
            s["peak"] = max(s["peak"], abs(s["pos"]))
            q -= step
            if s["pos"] == 0:
                entry = s["in_v"] / s["in_q"]
                exit_ = s["out_v"] / s["out_q"]
                pnl = sign * (s["out_v"] - s["in_v"]) - s["fees"]
                out.append(Trade(f.symbol, "long" if sign > 0 else "short", s["peak"], s["start"], entry, f.ts, exit_, pnl))
    return out


def _stats(rec, config, fills, trades, eq_ts, equity, dd, exposure) -> dict[str, float]:
    cash0 = config.initial_cash
    wins = [t.pnl for t in trades if t.pnl > 0]
    losses = [t.pnl for t in trades if t.pnl <= 0]
    notional = sum(lf.fill.qty * lf.fill.price for lf in fills)
    # Sharpe on the returns of the evenly spaced equity points, annualised by how many such
    # steps a calendar year holds (data in market time, 24x365)
    grid = np.linspace(eq_ts[0], eq_ts[-1], EQUITY_POINTS) if len(eq_ts) > 1 else eq_ts
    sharpe = 0.0
    if len(grid) > 2 and eq_ts[-1] > eq_ts[0]:
        eq = np.interp(grid, eq_ts, equity)
        rets = np.diff(eq) / np.where(eq[:-1] != 0, eq[:-1], 1.0)
        sd = float(np.std(rets, ddof=1))
        if sd > 0:
            steps_per_year = _YEAR_NS / ((eq_ts[-1] - eq_ts[0]) / (len(grid) - 1))
            sharpe = float(np.mean(rets)) / sd * math.sqrt(steps_per_year)
    peak = np.maximum.accumulate(equity) if len(equity) else equity
    dd_pct = float(np.max(dd / peak)) if len(equity) else 0.0
    return {
        "net_pnl": float(equity[-1] - cash0) if len(equity) else 0.0,
        "return_pct": float((equity[-1] - cash0) / cash0 * 100) if len(equity) else 0.0,
        "sharpe": sharpe,
        "max_drawdown": float(np.max(dd)) if len(dd) else 0.0,
        "max_drawdown_pct": dd_pct * 100,
        "win_rate": len(wins) / len(trades) if trades else 0.0,
        "profit_factor": (sum(wins) / -sum(losses)) if losses and sum(losses) < 0 else (math.inf if wins else 0.0),
        "exposure": exposure,
        "turnover": notional / cash0,
        "fees": sum(lf.fee for lf in fills),
        "slippage": sum(abs(lf.price - lf.fill.price) * lf.fill.qty for lf in fills),
        "n_trades": float(len(trades)),
        "n_fills": float(len(fills)),
    }
