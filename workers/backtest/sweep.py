"""Parameter sweeps: many backtests on one concurrent.futures executor.

The executor is a local process pool by default, or a Dask cluster's (``distributed.Client
(address).get_executor()``) when the user names one, so a sweep that outgrows one machine gets
more machines, not other code (docs/backtest.md, "Sweeps").  Each task opens the data itself
(a worker process keeps the last recording it opened), so only a path and a parameter set
travel to the workers.

On a local process pool the data is read once, here, not once more per worker: the columns and
depth this process read (and checked) go to a temporary file that each worker loads (a copy
of memory, no Parquet to decode, no pyarrow to import), and the workers are started before
that read so that their start-up overlaps it.  Spawning and reading are what a worker costs
beyond its backtests; against runs of a fraction of a second they were what kept two workers
from being twice as fast as one.
"""

from __future__ import annotations

import concurrent.futures as cf
import itertools
import multiprocessing
import os
import pickle
import random
import shutil
import tempfile
import uuid
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


#: (key, recording, depth or None: the recording's own) of the last data a worker opened
_cache: tuple[Any, Recording, Mapping[str, list] | None] | None = None


def _recording(data: str, shared: tuple[str, str] | None = None) -> tuple[Recording, Mapping[str, list] | None]:
    """The data of a task, kept for the next: loaded from ``shared`` (the file, and a token
    naming this sweep's copy, that :func:`run_sweep` wrote) or opened at ``data``."""
    global _cache
    key = shared or data
    if _cache is None or _cache[0] != key:
        _cache = None  # the last one is not needed while the next loads
        if shared is not None:
            with open(shared[0], "rb") as f:
                columns, depth = pickle.load(f)
            _cache = (key, Recording(Path(data), columns), depth)
        else:
            _cache = (key, open_recording(data), None)
    return _cache[1], _cache[2]


def run_one(data: str, base: BacktestConfig, params: dict[str, Any], shared: tuple[str, str] | None = None) -> SweepRow:
    """One backtest of a sweep (a top-level function: it is pickled to the workers)."""
    try:
        cfg = replace(base, params={**dict(base.params), **params})
        rec, depth = _recording(data, shared)
        res = run_backtest(rec, cfg, depth=depth)
        return SweepRow(params, res.stats)
    except Exception as e:  # one bad set is a row with its error, not a lost sweep
        return SweepRow(params, {}, f"{type(e).__name__}: {e}")


def _share(rec: Recording, folder: str) -> tuple[str, str] | None:
    """``rec``'s columns and depth in a file of ``folder`` for the workers of this machine;
    None when it cannot be written (a full disk: the workers then open the data themselves)."""
    path = os.path.join(folder, "recording.pickle")
    try:
        with open(path, "wb") as f:
            pickle.dump((rec.columns, rec.depth_by_symbol()), f, protocol=5)
    except OSError:
        return None
    return path, uuid.uuid4().hex


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
    own = executor is None
    client = None
    if executor is None:
        if dask:
            from distributed import Client

            client = Client(dask)
            executor = client.get_executor()
        else:
            n = max(1, min(workers or os.cpu_count() or 1, len(sets)))  # no idle processes
            executor = cf.ProcessPoolExecutor(max_workers=n, mp_context=multiprocessing.get_context("spawn"))
    local = isinstance(executor, cf.ProcessPoolExecutor)
    folder = None
    try:
        if local and sets:
            # a pool starts a process per task submitted while none is idle: start them all
            # now, to spawn and import while this process reads the data
            for _ in range(min(len(sets), getattr(executor, "_max_workers", 1))):
                executor.submit(int)
        rec = open_recording(data)  # a bad path fails here, once, with its reason
        shared = None
        if local and sets:
            folder = tempfile.mkdtemp(prefix="tickdesk-sweep-")
            shared = _share(rec, folder)
        del rec
        futures = {executor.submit(run_one, data, base, p, shared): i for i, p in enumerate(sets)}
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
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
