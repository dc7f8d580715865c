"""Tick throughput: the real market-data gateway at ``--rate 0`` into 1 and 3 real strategies.

Processes: ``main.py worker marketdata`` and N strategies (through :mod:`bench.instrumented`,
which notes when their ``ticks`` counter passes each thousand).  The gateway binds first and
stays silent (``--start-delay 3600``); the strategies connect to the bound endpoint, and two
heartbeats after they are up a ``set_rate 0`` command starts the feed at full speed until
``--max-ticks``, so no tick is lost to a slow joiner.  The receive rate is taken in each strategy from the first thousand-mark of
the burst to its last tick; loss is what the gateway published minus what each strategy
counted (sequence gaps are reported too).  The strategies subscribe to every symbol.
"""

from __future__ import annotations

from bench.common import SYMBOLS, Sizes
from bench.procs import Fleet

#: strategy options for pure throughput: a real strategy, default logic, every symbol
STRATEGY_ARGS = ("--symbols", ",".join(SYMBOLS))


def gateway_supports(option: str) -> bool:
    from workers.marketdata.gateway import build_parser

    return any(option in a.option_strings for a in build_parser()._actions)


def tick_form_args(batched: bool | None) -> list[str]:
    """Gateway flags for one tick per frame (the classic form), batched frames, or (None)
    whatever the gateway does by default."""
    if batched is None or not gateway_supports("--batch-ticks"):
        return []
    return ["--batch-ticks", "256" if batched else "1"]


def burst_rate(res: dict, key: str = "ticks") -> float:
    """Receive rate from the first thousand-mark to the last tick (skips start-up effects)."""
    tl = res.get("timeline", {}).get(key) or []
    final = res["counters"].get(key, 0)
    t_last = res["last"].get(key, 0)
    if not tl:
        return 0.0
    t0, c0 = tl[0]
    dt = (t_last - t0) / 1e9
    return (final - c0) / dt if dt > 0 and final > c0 else 0.0


def throughput(sizes: Sizes, subs: int = 1, batched: bool = True, log=print) -> dict:
    n = sizes.ticks
    with Fleet("ticks") as fleet:
        # bound but silent until set_rate: subscribers connect to a bound endpoint at once
        gw = fleet.start("marketdata", "md", "--rate", "0", "--start-delay", "3600", "--seed", "1", "--max-ticks", str(n),
                         *tick_form_args(batched))
        names = [f"s{i}" for i in range(subs)]
        for name in names:
            fleet.start("strategy", name, *STRATEGY_ARGS, instrumented=True)
        fleet.fresh_stats(*names)  # connected and subscribed well before this
        cpu0 = {name: w.cpu() for name, w in fleet.workers.items()}
        fleet.command("md", "set_rate", rate=0)
        fleet.wait(lambda: gw.gauge("done"), 60 + n / 20_000, "the gateway to publish every tick")
        fleet.fresh_stats("md")
        published = gw.counter("ticks")
        seen: dict[str, list[int]] = {s: [] for s in names}
        beats: dict[str, int] = {s: -1 for s in names}

        def settled() -> bool:
            # every strategy has them all, or has stopped counting (four quiet heartbeats)
            ok = True
            for s in names:
                w = fleet.workers[s]
                c = w.counter("ticks")
                if w.heartbeats != beats[s]:
                    beats[s] = w.heartbeats
                    seen[s].append(c)
                hist = seen[s]
                if c < published and not (len(hist) >= 5 and hist[-1] == hist[-5]):
                    ok = False
            return ok

        fleet.wait(settled, 60 + n / 20_000, "the strategies to drain")
        # CPU time each process spent on the burst, per tick it handled: which side limits
        cpu_us = {name: round((w.cpu() - cpu0[name]) / max(1, published) * 1e6, 3) for name, w in fleet.workers.items()}
        results = [fleet.result(s) for s in names]
    rates = [burst_rate(r) for r in results]
    received = [r["counters"].get("ticks", 0) for r in results]
    gaps = sum(r["counters"].get("ticks_missed", 0) for r in results)
    lost = sum(max(0, published - c) for c in received)
    return {"subs": subs, "batched": batched, "published": published, "received": received, "per_s": min(rates),
            "rates": rates, "lost": max(lost, gaps), "seq_gaps": gaps,
            "decode_errors": sum(r["counters"].get("decode_errors", 0) for r in results),
            "cpu_us_per_tick": cpu_us}


def run(sizes: Sizes, log=print) -> dict:
    out = {}
    if not gateway_supports("--batch-ticks"):
        forms = [False]
    else:
        forms = [True, False] if sizes.both_forms else [True]
    for batched in forms:
        tag = "batched" if batched else "classic"
        log(f"ticks: gateway -> 1 strategy ({tag})")
        out[f"1_{tag}"] = throughput(sizes, 1, batched, log)
    tag = "batched" if forms[0] else "classic"
    log(f"ticks: gateway -> 3 strategies ({tag})")
    out[f"3_{tag}"] = throughput(sizes, 3, forms[0], log)
    return out
