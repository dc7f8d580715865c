"""Sweeps: the same rows from a Dask LocalCluster, a local process pool and a serial run."""

from __future__ import annotations

import concurrent.futures as cf

import numpy as np
import pytest

from workers.backtest.engine import BacktestConfig, run_backtest
from workers.backtest.sweep import grid, random_search, run_sweep
from workers.recording import open_recording, write_ticks


@pytest.fixture
def data(tmp_path):
    rng = np.random.default_rng(11)
    for sym, start in (("AAPL", 100.0), ("MSFT", 60.0)):
        n = 3000
        last = np.round(start + np.cumsum(rng.normal(0, 0.05, n)), 2)
        cols = {"seq": np.arange(1, n + 1), "ts": 1_700_000_000 * 10**9 + np.arange(n) * 50_000_000,
                "last": last, "bid": last - 0.01, "ask": last + 0.01, "bid_size": np.full(n, 500),
                "ask_size": np.full(n, 500), "volume": np.arange(n)}
        write_ticks(tmp_path / "rec" / "parquet" / "ticks", sym, cols)
    return tmp_path / "rec"


SPACE = {"window": [20, 40], "turn_bps": [3.0, 6.0]}
BASE = BacktestConfig(params={"min_fill": 10, "cooldown": 0.2})


def serial(data, sets):
    rec = open_recording(data)
    return [run_backtest(rec, BacktestConfig(params={**BASE.params, **s})).stats["net_pnl"] for s in sets]


def test_a_sweep_on_a_dask_local_cluster_gives_one_row_per_set_equal_to_serial_runs(data):
    from distributed import Client, LocalCluster

    sets = grid(SPACE)
    assert len(sets) == 4
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        rows = run_sweep(data, sets, BASE, dask=cluster.scheduler_address)
        with Client(cluster) as client:
            assert len(client.scheduler_info()["workers"]) == 2
    assert [r.params for r in rows] == sets
    assert all(not r.error for r in rows)
    assert [r.stats["net_pnl"] for r in rows] == serial(data, sets)
    assert len({r.stats["n_trades"] for r in rows}) > 1  # the parameters did change something


def test_a_local_pool_and_a_bad_set(data):
    sets = [*random_search(SPACE, 2, seed=1), {"window": 0}]
    done = []
    with cf.ProcessPoolExecutor(2) as pool:
        rows = run_sweep(data, sets, BASE, executor=pool, progress=lambda d, n: done.append((d, n)))
    assert done[-1] == (3, 3)
    assert [r.stats["net_pnl"] for r in rows[:2]] == serial(data, sets[:2])
    assert rows[2].error and "window" in rows[2].error and not rows[2].stats
