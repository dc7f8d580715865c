"""Micro-benchmarks in one process: the tick decoder the consumers use, and the simulator.

* **decode + validate a 256-row ``ticks`` frame** through the product's own reader,
  :func:`workers.protocol.tick_rows` (the fast path every consumer uses: ``(symbol, rows)``,
  the whole frame checked) and :func:`workers.protocol.iter_ticks` (typed ``Tick`` objects),
  per tick; beside them the bare ``msgpack.unpackb`` of the same frame (no checks) for scale,
  and :func:`workers.protocol.encode_ticks` (the gateway's packer).  The frame is the gateway's:
  256 rows of one symbol made by the simulator, packed by ``encode_ticks``.
* **the simulated feed alone**: ticks/s that :class:`~workers.marketdata.sim_feed.SymbolSim`
  makes, 256 at a time per symbol, as rows (what the gateway does before it packs), and the
  block refill's share of it; and through ``SymbolSim.rows`` (the same rows without a ``Tick``
  per tick) where the simulator has it.  Compared with the gateway's throughput this says
  whether the simulator limits it.

Each figure is the median of ``REPEATS`` timed loops (``time.perf_counter_ns``); nothing is
asserted.  Whatever ``workers/protocol.py`` exposes at the time is used (a reader it lacks is
reported as missing, not faked).
"""

from __future__ import annotations

import statistics
import time
from typing import Any, Callable

from bench.common import SYMBOLS, Sizes

ROWS = 256
REPEATS = 15


def _median_ns(fn: Callable[[], Any], ops: int, repeats: int = REPEATS, loops: int = 1) -> float:
    """Median over ``repeats`` of the time of ``loops`` calls of ``fn``, per op (``ops`` per call)."""
    fn()  # warm up (caches, first-call paths)
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter_ns()
        for _ in range(loops):
            fn()
        samples.append((time.perf_counter_ns() - t0) / (loops * ops))
    return statistics.median(samples)


def sim_rows(symbol: str, n: int, seed: int = 1) -> list[list]:
    """``n`` ticks of ``symbol`` from the simulator, as ``ticks`` rows."""
    from workers.marketdata.sim_feed import SimFeed

    nt = SimFeed([symbol], seed=seed).sims[symbol].next_tick
    rows = []
    for _ in range(n):
        t = nt()
        rows.append([t.seq, t.ts, t.last, t.bid, t.ask, t.bid_size, t.ask_size, t.volume])
    return rows


def tick_frame(rows: int = ROWS, symbol: str = "AAPL") -> bytes:
    """A published ``ticks`` frame of ``rows`` rows, as the gateway sends it."""
    from workers import protocol as P

    return P.encode_ticks(symbol, sim_rows(symbol, rows))


def decoder(repeats: int = REPEATS) -> dict:
    import msgpack

    from workers import protocol as P

    rows = sim_rows("AAPL", ROWS)
    frame = P.encode_ticks("AAPL", rows)
    payload = frame[frame.index(b"\x00") + 1:]
    loops = 20
    out: dict[str, Any] = {"rows": ROWS, "frame_bytes": len(frame), "repeats": repeats}
    if hasattr(P, "tick_rows"):
        sym, got = P.tick_rows(frame)
        assert sym == "AAPL" and len(got) == ROWS  # the frame is read whole, not skipped
        out["tick_rows_us"] = _median_ns(lambda: P.tick_rows(frame), ROWS, repeats, loops) / 1000
    if hasattr(P, "iter_ticks"):
        out["iter_ticks_us"] = _median_ns(lambda: list(P.iter_ticks(frame)), ROWS, repeats, loops) / 1000
    out["unpackb_us"] = _median_ns(lambda: msgpack.unpackb(payload), ROWS, repeats, loops) / 1000
    out["encode_ticks_us"] = _median_ns(lambda: P.encode_ticks("AAPL", rows), ROWS, repeats, loops) / 1000
    return out


def simulator(repeats: int = REPEATS) -> dict:
    """Ticks/s the simulator makes alone (4 symbols, 256 rows per symbol in turn, like the
    gateway's bursts at ``--rate 0``), and the refill's cost per tick."""
    from workers.marketdata.sim_feed import BLOCK, SimFeed

    feed = SimFeed(SYMBOLS, seed=1)
    gens = [feed.sims[s].next_tick for s in SYMBOLS]

    def burst() -> None:
        for nt in gens:
            rows = []
            add = rows.append
            for _ in range(ROWS):
                t = nt()
                add([t.seq, t.ts, t.last, t.bid, t.ask, t.bid_size, t.ask_size, t.volume])

    per_tick_ns = _median_ns(burst, ROWS * len(gens), repeats, loops=8)  # 8 x 1024 ticks: refills included
    sim = feed.sims[SYMBOLS[0]]
    refill_ns = _median_ns(sim._refill, BLOCK, repeats, loops=4)
    out = {"ticks_per_s": 1e9 / per_tick_ns, "per_tick_us": per_tick_ns / 1000, "refill_per_tick_us": refill_ns / 1000,
           "block": BLOCK}
    sims = [feed.sims[s] for s in SYMBOLS]
    if all(hasattr(s, "rows") for s in sims):  # the row fast path (no Tick object per tick)
        rows_ns = _median_ns(lambda: [s.rows(ROWS) for s in sims], ROWS * len(sims), repeats, loops=8)
        out["rows_ticks_per_s"] = 1e9 / rows_ns
        out["rows_per_tick_us"] = rows_ns / 1000
    return out


def run(sizes: Sizes, log=print) -> dict:
    repeats = REPEATS if sizes.name.startswith("full") else 7
    log("micro: tick decoder (256-row frame)")
    out = {"decode": decoder(repeats)}
    log("micro: simulated feed alone")
    out["sim"] = simulator(repeats)
    return out


if __name__ == "__main__":
    import json

    from bench.common import FULL

    print(json.dumps(run(FULL), indent=1))
