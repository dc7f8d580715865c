"""Backtest throughput and sweep scaling (docs/performance.md, "Backtests").

    python -m bench.backtest            # 2M ticks, 3 runs; sweep of 8 sets on 1 and 2 workers, 3 runs each
    python -m bench.backtest --quick    # 200k ticks

Ticks are a seeded random walk in 4 symbols (10 ticks/s each in market time) written as a
recording (the Parquet layout of workers/recording.py) and read back once; the throughput is
the engine alone on the loaded recording (strategy scan, risk checks, venue, ledger, equity
and statistics), median of the runs, on one core.  A sweep's time is from the call to the
rows, its pool's start and the data's read included.  Nothing is asserted.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from workers.backtest.engine import BacktestConfig, run_backtest
from workers.backtest.sweep import grid, run_sweep
from workers.recording import open_recording, write_ticks

SYMBOLS = ("AAPL", "MSFT", "GOOG", "AMZN")
PARAMS = {"window": 200, "min_fill": 50, "cooldown": 10.0}


def make(folder: Path, n_ticks: int, seed: int = 7) -> Path:
    rng = np.random.default_rng(seed)
    per = n_ticks // len(SYMBOLS)
    t0 = 1_700_000_000 * 10**9
    for k, sym in enumerate(SYMBOLS):
        last = np.round(np.maximum(1.0, 100.0 + 20 * k + np.cumsum(rng.normal(0, 0.03, per))), 2)
        cols = {"seq": np.arange(1, per + 1), "ts": t0 + np.arange(per) * 100_000_000 + k, "last": last,
                "bid": np.round(last - 0.01, 2), "ask": np.round(last + 0.01, 2),
                "bid_size": rng.integers(1, 20, per) * 100, "ask_size": rng.integers(1, 20, per) * 100,
                "volume": np.arange(per) * 100}
        write_ticks(folder / "parquet" / "ticks", sym, cols)
    return folder


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.backtest")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--runs", type=int, default=3)
    a = p.parse_args(argv)
    n = 200_000 if a.quick else 2_000_000
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        data = make(Path(tmp) / "rec", n)
        write_s = time.perf_counter() - t
        t = time.perf_counter()
        rec = open_recording(data)
        read_s = time.perf_counter() - t
        runs = [run_backtest(rec, BacktestConfig(params=PARAMS)) for _ in range(a.runs)]
        tps = statistics.median(r.stats["ticks_per_s"] for r in runs)
        sets = grid({"window": [100, 200, 300, 400], "cooldown": [5.0, 10.0]})
        small = make(Path(tmp) / "small", n // 4, seed=8)
        # like with like: the same sets on the same data, each time from a new pool (start-up
        # and the data's read included), 1 and 2 workers taking turns so that neither gets a
        # quieter machine or this process's one-off costs; medians of the runs
        times: dict[int, list[float]] = {1: [], 2: []}
        # the backtests' own seconds (inside the workers): on 2 workers each runs beside the
        # other, and how much slower that makes it is the machine's, not the pool's
        inside: dict[int, list[float]] = {1: [], 2: []}
        for _ in range(a.runs):
            for w in (1, 2):
                t = time.perf_counter()
                out = run_sweep(small, sets, BacktestConfig(params={"min_fill": 50}), workers=w)
                times[w].append(time.perf_counter() - t)
                inside[w].append(sum(r.stats["seconds"] for r in out))
        sweep = {w: statistics.median(ts) for w, ts in times.items()}
        busy = {w: statistics.median(ts) for w, ts in inside.items()}
    rows = [
        ("recording written (Parquet, zstd)", f"{n / write_s / 1e3:,.0f}k ticks/s", ""),
        ("recording read and checked", f"{n / read_s / 1e3:,.0f}k ticks/s", ""),
        (f"backtest, support/resistance, {n:,} ticks, {runs[0].stats['signals']:.0f} signals", f"{tps / 1e3:,.0f}k ticks/s (median of {a.runs})", ">= 1,000k ticks/s"),
        (f"sweep of {len(sets)} sets, {n // 4:,} ticks each: 1 worker / 2 workers", f"{sweep[1]:.2f} s / {sweep[2]:.2f} s = {sweep[1] / sweep[2]:.2f}x (medians of {a.runs})", ">= 1.8x"),
        ("  its backtests' own seconds, summed: 1 worker / 2 workers side by side", f"{busy[1]:.2f} s / {busy[2]:.2f} s (each {busy[2] / busy[1] - 1:+.0%} slower beside another)", ""),
        ("  2 workers' wall time beyond their summed seconds / 2 (pool, data, the last task alone)", f"{sweep[2] - busy[2] / 2:.2f} s (1 worker: {sweep[1] - busy[1]:.2f} s)", ""),
    ]
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    print(f"| {'what'.ljust(w0)} | {'measured'.ljust(w1)} | target |")
    print(f"| {'-' * w0} | {'-' * w1} | --- |")
    for r in rows:
        print(f"| {r[0].ljust(w0)} | {r[1].ljust(w1)} | {r[2]} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
