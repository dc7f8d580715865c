"""Parameter sweeps: many backtests on one concurrent.futures executor.

The executor is a local process pool by default, or a Dask cluster's (``distributed.Client
(address).get_executor()``) when the user names one, so a sweep that outgrows one machine gets
more machines, not other code (docs/backtest.md, "Sweeps").  Each task opens the data itself
(a worker process keeps the last recording it opened), so only a path and a parameter set
travel to the workers.
"""

from __future__ import annotations

import concurrent.futures as cf
import itertools
import multiprocessing
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from workers.backtest.engine import BacktestConfig, run_backtest
from workers.recording import Recording, open_recording
from workers.strategy.levels import StrategyParams


@dataclass(frozen=True)
class SweepRow:
    params: dict[str, Any]
    stats: dict[str, float]
    error: str = ""


def grid(params: Mapping[str, Sequence]) -> list[dict[str, Any]]:
    """Every combination, in the order the values were given."""
    names = list(params)
    for n in names:
        if n not in StrategyParams.field_names():
            raise ValueError(f"unknown parameter {n!r} (known: {', '.join(StrategyParams.field_names())})")
    return [dict(zip(names, combo)) for combo in itertools.product(*(list(params[n]) for n in names))]


def random_search(space: Mapping[str, Sequence], n: int, seed: int = 0) -> list[dict[str, Any]]:
    """``n`` distinct sets drawn from ``space``'s values (fewer if the space is smaller)."""
    every = grid(space)
    rng = random.Random(seed)
    return rng.sample(every, min(n, len(every)))


_cache: tuple[str, Recording] | None = None


def _recording(data: str) -> Recording:
    global _cache
    if _cache is None or _cache[0] != data:
        _cache = (data, open_recording(data))
    return _cache[1]


def run_one(data: str, base: BacktestConfig, params: dict[str, Any]) -> SweepRow:
    """One backtest of a sweep (a top-level function: it is pickled to the workers)."""
    try:
        cfg = replace(base, params={**dict(base.params), **params})
        res = run_backtest(_recording(data), cfg)
        return SweepRow(params, res.stats)
    except Exception as e:  # one bad set is a row with its error, not a lost sweep
        return SweepRow(params, {}, f"{type(e).__name__}: {e}")


def run_sweep(
    data: str | Path,
    sets: list[dict[str, Any]],
    base: BacktestConfig = BacktestConfig(),
    *,
    workers: int | None = None,
    dask: str | None = None,
    executor: cf.Executor | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[SweepRow]:
    """A row per set of ``sets``, in their order."""
    data = str(data)
    open_recording(data)  # a bad path fails here, once, with its reason
    own = executor is None
    client = None
    if executor is None:
        if dask:
            from distributed import Client

            client = Client(dask)
            executor = client.get_executor()
        else:
            executor = cf.ProcessPoolExecutor(max_workers=workers or None, mp_context=multiprocessing.get_context("spawn"))
    try:
        futures = {executor.submit(run_one, data, base, p): i for i, p in enumerate(sets)}
        rows: list[SweepRow | None] = [None] * len(sets)
        done = 0
        for fut in cf.as_completed(futures):
            rows[futures[fut]] = fut.result()
            done += 1
            if progress is not None:
                progress(done, len(sets))
        return [r for r in rows if r is not None]
    finally:
        if own:
            executor.shutdown(wait=True)
        if client is not None:
            client.close()
