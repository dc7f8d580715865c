"""``main.py backtest`` and ``main.py sweep`` (docs/backtest.md)."""

from __future__ import annotations

import argparse
import math
import sys
import time

from workers.backtest.engine import STRATEGIES, BacktestConfig, Cancelled, CostModel, run_backtest
from workers.recording import RecordingError


def _kv(text: str) -> tuple[str, str]:
    k, sep, v = text.partition("=")
    if not sep or not k:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return k.strip(), v.strip()


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="a recording folder, a Parquet file or folder, a tick or daily OHLCV CSV")
    p.add_argument("--strategy", default="sr", choices=STRATEGIES, help="the strategy (sr: support/resistance)")
    p.add_argument("--param", action="append", type=_kv, default=[], metavar="K=V", help="a strategy parameter (repeatable)")
    p.add_argument("--symbols", default="", help="comma-separated symbols (default: every symbol of the data)")
    p.add_argument("--fee-per-share", type=float, default=0.0)
    p.add_argument("--fee-bps", type=float, default=0.0)
    p.add_argument("--slippage-bps", type=float, default=0.0)
    p.add_argument("--cash", type=float, default=100_000.0, help="initial cash")
    p.add_argument("--progress", action="store_true", help="a progress bar on stderr even when it is not a terminal")


def _config(a: argparse.Namespace) -> BacktestConfig:
    syms = tuple(s.strip().upper() for s in a.symbols.split(",") if s.strip()) or None
    return BacktestConfig(strategy=a.strategy, params=dict(a.param), symbols=syms,
                          costs=CostModel(a.fee_per_share, a.fee_bps, a.slippage_bps), initial_cash=a.cash)


class Bar:
    """A one-line progress bar on stderr (only on a terminal, or when asked)."""

    def __init__(self, label: str, on: bool):
        self.label, self.on, self.t0 = label, on, time.monotonic()

    def __call__(self, frac: float) -> None:
        if not self.on:
            return
        n = int(frac * 30)
        sys.stderr.write(f"\r{self.label} [{'#' * n}{'.' * (30 - n)}] {frac:5.1%} {time.monotonic() - self.t0:6.1f} s")
        sys.stderr.flush()

    def done(self) -> None:
        if self.on:
            sys.stderr.write("\n")


def backtest_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="main.py backtest", description="Run a strategy over recorded or imported data, in process, on the data's clock.")
    _common(p)
    p.add_argument("--signals-out", help="every signal and its risk decision, JSON lines")
    p.add_argument("--report", help="an HTML report (equity, drawdown, statistics, trades)")
    p.add_argument("--csv", help="a folder for trades.csv, fills.csv, equity.csv")
    a = p.parse_args(argv)
    from workers.backtest import report as R

    try:
        cfg = _config(a)
        cfg.strategy_params()
    except ValueError as e:
        print(f"main.py backtest: error: {e}", file=sys.stderr)
        return 2
    bar = Bar("backtest", a.progress or sys.stderr.isatty())
    try:
        res = run_backtest(a.data, cfg, progress=bar)
    except (RecordingError, ValueError) as e:
        bar.done()
        print(f"main.py backtest: error: {e}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, Cancelled):
        bar.done()
        print("main.py backtest: interrupted", file=sys.stderr)
        return 130
    bar.done()
    print(R.stats_table(res))
    try:
        if a.signals_out:
            print(f"signals: {R.write_signals(res, a.signals_out)}")
        if a.report:
            print(f"report: {R.write_html(res, a.report)}")
        if a.csv:
            print("csv: " + ", ".join(str(x) for x in R.write_csv(res, a.csv)))
    except OSError as e:  # a full disk, a folder that cannot be made: said, not a traceback
        print(f"main.py backtest: error: cannot write the results: {e}", file=sys.stderr)
        return 2
    return 0


def _values(text: str) -> list:
    out = []
    for v in text.split(","):
        v = v.strip()
        if v:
            out.append(v)
    return out


def sweep_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="main.py sweep", description="Backtests over a parameter grid or a random search, one row per set.")
    _common(p)
    p.add_argument("--grid", action="append", type=_kv, default=[], metavar="K=V1,V2", help="a parameter's values (repeatable)")
    p.add_argument("--random", type=int, default=0, metavar="N", help="draw N sets from the grid instead of all")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=None, help="local worker processes (default: one per core)")
    p.add_argument("--dask", default=None, metavar="ADDRESS", help="run on this Dask scheduler (tcp://host:8786)")
    p.add_argument("--out", help="results as CSV")
    p.add_argument("--sort", default="net_pnl", help="the statistic the table is sorted by (descending)")
    a = p.parse_args(argv)
    from workers.backtest.sweep import grid, random_search, run_sweep

    try:
        cfg = _config(a)
        space = {k: _values(v) for k, v in a.grid}
        if not space:
            raise ValueError("give at least one --grid NAME=V1,V2")
        sets = random_search(space, a.random, a.seed) if a.random else grid(space)
        for s in sets:  # every set checked before any work is sent out
            BacktestConfig(params={**dict(cfg.params), **s}).strategy_params()
    except ValueError as e:
        print(f"main.py sweep: error: {e}", file=sys.stderr)
        return 2
    bar = Bar(f"sweep of {len(sets)}", a.progress or sys.stderr.isatty())
    try:
        rows = run_sweep(a.data, sets, cfg, workers=a.workers, dask=a.dask, progress=lambda d, n: bar(d / n))
    except (RecordingError, OSError) as e:
        bar.done()
        print(f"main.py sweep: error: {e}", file=sys.stderr)
        return 2
    bar.done()
    names = list(space)
    key = a.sort

    def score(r):
        v = r.stats.get(key, -math.inf)
        return -math.inf if v != v else v

    ordered = sorted(rows, key=score, reverse=True)
    cols = ["net_pnl", "sharpe", "max_drawdown", "win_rate", "profit_factor", "n_trades"]
    print("  ".join([*(n.rjust(10) for n in names), *(c.rjust(13) for c in cols), "error"]))
    for r in ordered:
        vals = [f"{r.stats.get(c, float('nan')):13.3f}" for c in cols]
        print("  ".join([*(str(r.params[n]).rjust(10) for n in names), *vals, r.error]))
    if a.out:
        import csv

        with open(a.out, "w", newline="") as f:
            w = csv.writer(f)
            stat_names = sorted({k for r in rows for k in r.stats})
            w.writerow([*names, *stat_names, "error"])
            for r in ordered:
                w.writerow([*(r.params[n] for n in names), *(r.stats.get(k, "") for k in stat_names), r.error])
        print(f"results: {a.out}")
    return 0 if all(not r.error for r in rows) else 1
