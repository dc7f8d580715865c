"""What every benchmark module shares: run sizes, percentiles, payloads, the result record."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

SYMBOLS = ("AAPL", "MSFT", "GOOG", "AMZN")


@dataclass(frozen=True)
class Sizes:
    """How much each benchmark does: ``QUICK`` for CI (under a minute), ``FULL`` for the table."""

    name: str
    ticks: int  # ticks per throughput run (raw PUB/SUB, PUSH/PULL and the gateway)
    latency_s: float  # seconds of each paced latency run
    chain_s: float  # seconds of each full-pipeline run (tick -> fill)
    req_n: int  # sequential REQ round trips
    dealer_n: int  # pipelined orders
    memory_ticks: tuple[int, ...]  # RSS is read after each of these tick counts
    rates: tuple[int, ...] = (10_000, 50_000)
    chain_rates: tuple[int, ...] = (10_000, 50_000)
    inflight: int = 16
    #: also run the one-tick-per-frame form beside the batched one (the before/after comparison)
    both_forms: bool = True

    def scaled(self, factor: float) -> Sizes:
        """Tiny sizes for the smoke test (only counts shrink; rates stay)."""
        return Sizes(
            name=f"{self.name}x{factor:g}",
            ticks=max(1000, int(self.ticks * factor)),
            latency_s=max(0.3, self.latency_s * factor),
            chain_s=max(0.5, self.chain_s * factor),
            req_n=max(50, int(self.req_n * factor)),
            dealer_n=max(100, int(self.dealer_n * factor)),
            memory_ticks=tuple(max(1000, int(n * factor)) for n in self.memory_ticks),
            rates=self.rates,
            chain_rates=self.chain_rates,
            inflight=self.inflight,
            both_forms=self.both_forms,
        )


QUICK = Sizes("quick", ticks=300_000, latency_s=2.0, chain_s=3.0, req_n=2_000, dealer_n=5_000, memory_ticks=(1_000_000,),
              chain_rates=(10_000,), both_forms=False)
FULL = Sizes("full", ticks=2_000_000, latency_s=12.0, chain_s=15.0, req_n=20_000, dealer_n=60_000, memory_ticks=(1_000_000, 5_000_000))


def pct(samples_ns: Any) -> dict[str, float]:
    """p50/p99/p99.9/max in microseconds of an int64 array (or list) of nanoseconds."""
    import numpy as np

    a = np.asarray(samples_ns, dtype=np.int64)
    if a.size == 0:
        return {"n": 0, "p50_us": math.nan, "p99_us": math.nan, "p999_us": math.nan, "max_us": math.nan}
    q = np.percentile(a, [50, 99, 99.9]) / 1000.0
    return {"n": int(a.size), "p50_us": float(q[0]), "p99_us": float(q[1]), "p999_us": float(q[2]), "max_us": float(a.max()) / 1000.0}


def rate(count: int, t0_ns: int, t1_ns: int) -> float:
    dt = (t1_ns - t0_ns) / 1e9
    return count / dt if dt > 0 and count > 0 else 0.0


# ----------------------------------------------------------------------------- payloads
# The raw baselines send exactly what TickDesk sends: the same maps, packed with msgpack.


def tick_map(symbol: str, seq: int, ts: int, last: float = 190.01, bid: float = 190.0, ask: float = 190.02) -> dict:
    return {"v": 1, "type": "tick", "symbol": symbol, "seq": seq, "ts": ts, "last": last, "bid": bid, "ask": ask,
            "bid_size": 500, "ask_size": 700, "volume": 100 * seq}


def signal_map(i: int, ts: int) -> dict:
    return {"v": 1, "type": "signal", "id": f"bench-{i}", "strategy": "bench", "symbol": "AAPL", "side": "buy" if i % 2 else "sell",
            "qty": 100, "price": 190.01, "ts": ts, "cause_ts": ts, "reason": "breakout above resistance 190.00"}


def order_map(coid: str, i: int, ts: int) -> dict:
    return {"v": 1, "type": "send_order", "client_order_id": coid, "symbol": SYMBOLS[i % len(SYMBOLS)],
            "side": "buy" if (i // len(SYMBOLS)) % 2 == 0 else "sell", "qty": 1, "order_type": "market",
            "source": "bench", "ts": ts, "cause_ts": ts, "origin_ts": ts}


def order_reply_map(coid: str, n: int, ts: int) -> dict:
    return {"v": 1, "type": "send_order_reply", "ok": True, "reason": "", "client_order_id": coid, "order_id": f"O{n}",
            "status": "filled", "filled_qty": 1, "avg_price": 190.02, "ts": ts}


@dataclass
class Result:
    """One benchmark's figures; ``rows`` feed the table, everything goes to the JSON file."""

    name: str
    data: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    seconds: float = 0.0


def timed(fn, *args, **kw) -> tuple[Any, float]:
    t0 = time.monotonic()
    out = fn(*args, **kw)
    return out, time.monotonic() - t0
