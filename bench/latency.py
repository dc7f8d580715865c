"""Per-hop latency at paced tick rates, from the timestamps the messages carry.

* **tick -> strategy**: the market-data gateway paced at R ticks/s in all (4 symbols) into one
  real strategy; the strategy's own ``tick_to_strategy`` samples (``now - tick.ts`` right after
  decoding), every one of them, via :mod:`bench.instrumented`.  Two processes, like the raw
  PUB/SUB latency baseline that runs at the same rate with the same pacing code.
* **the chain**: exchange gateway (journal on, ``synchronous=NORMAL``), executor, strategy and
  market data, all real (every one of them reads both tick forms; the full run measures the
  chain with batched frames and with one tick per frame).  The strategy runs with parameters
  that make it trade often (window 100, breakouts only, 10 ms cooldown per symbol: a few
  hundred signals/s), the executor with its rate limit lifted.  Hops, as the workers record them:
  ``signal_to_executor`` (signal ``ts`` -> executor pulled it), ``order_ack`` (executor's
  send on its DEALER -> the reply), ``tick_to_ack`` (the tick's ``ts`` -> that reply) and ``tick_to_fill`` (the
  tick's ``ts`` -> the fill reaching the executor on the execution stream).  And the pieces of
  that path: ``tick_to_signal`` (tick ``ts`` -> the strategy made the signal), ``signal_to_order``
  (signal made -> the executor sent its order), ``order_to_gateway`` (sent -> the gateway's stamp
  on the reply), ``gateway_to_ack`` (that stamp -> the reply read) and ``gateway_to_fill`` (the
  fill's own stamp -> the fill read).
"""

from __future__ import annotations

import time

from bench.common import SYMBOLS, Sizes, pct
from bench.procs import DEFAULT_HEARTBEAT, Fleet
from bench.ticks import STRATEGY_ARGS, tick_form_args

CHAIN_STRATEGY_ARGS = ("--symbols", ",".join(SYMBOLS), "--window", "100", "--min-fill", "50", "--mode", "breakout",
                       "--breakout-bps", "1", "--cooldown", "0.01", "--qty", "1", "--max-position", "3")
CHAIN_EXECUTOR_ARGS = ("--max-orders-per-sec", "100000", "--max-position", "1000")
#: the executor's hops, in the order an order lives them (the last five split the others: where
#: the time of tick -> fill goes; the gateway's stamps, ``reply.ts`` and ``fill.ts``, are on the
#: same host clock as the executor's)
CHAIN_HOPS = ("signal_to_executor", "order_ack", "tick_to_ack", "tick_to_fill",
              "tick_to_signal", "signal_to_order", "order_to_gateway", "gateway_to_ack", "gateway_to_fill")


def per_symbol(rate: float) -> str:
    return f"{rate / len(SYMBOLS):g}"


def tick_to_strategy(sizes: Sizes, rate: float, batched: bool | None = None) -> dict:
    form = tick_form_args(batched) if batched is not None else []
    with Fleet("lat") as fleet:
        hb = DEFAULT_HEARTBEAT
        fleet.start("marketdata", "md", "--rate", per_symbol(rate), "--start-delay", "3600", "--seed", "1", *form, heartbeat=hb)
        fleet.start("strategy", "s0", *STRATEGY_ARGS, instrumented=True, heartbeat=hb)
        # no wait for the subscription: a tick lost to a slow start would not change percentiles
        cpu0 = {n: w.cpu() for n, w in fleet.workers.items()}
        t0 = time.monotonic()
        fleet.command("md", "set_rate", rate=rate / len(SYMBOLS))
        t_end = time.monotonic() + sizes.latency_s
        fleet.wait(lambda: time.monotonic() >= t_end, sizes.latency_s + 5, "the run")
        fleet.command("md", "pause")
        cpu = {n: round((w.cpu() - cpu0[n]) / (time.monotonic() - t0), 3) for n, w in fleet.workers.items()}
        res = fleet.result("s0")
    lat = res["samples"].get("tick_to_strategy")
    return {"rate": rate, "batched": batched, "latency": pct(lat if lat is not None else []),
            "received": res["counters"].get("ticks", 0), "lost": res["counters"].get("ticks_missed", 0), "cpu": cpu}


def chain(sizes: Sizes, rate: float, batched: bool | None = True) -> dict:
    with Fleet("chain") as fleet:
        journal = fleet.dir / "journal.sqlite"
        hb = DEFAULT_HEARTBEAT
        fleet.start("exchange", "ex", "--journal", str(journal), "--fresh", heartbeat=hb)
        fleet.start("executor", "ox", *CHAIN_EXECUTOR_ARGS, instrumented=True, heartbeat=hb)
        fleet.start("strategy", "s0", *CHAIN_STRATEGY_ARGS, instrumented=True, heartbeat=hb)
        fleet.start("marketdata", "md", "--rate", per_symbol(rate), "--start-delay", "3600", "--seed", "1", *tick_form_args(batched), heartbeat=hb)
        cpu0 = {n: w.cpu() for n, w in fleet.workers.items()}
        t0 = time.monotonic()
        fleet.command("md", "set_rate", rate=rate / len(SYMBOLS))
        t_end = time.monotonic() + sizes.chain_s
        fleet.wait(lambda: time.monotonic() >= t_end, sizes.chain_s + 5, "the run")
        fleet.command("md", "pause")
        cpu = {n: round((w.cpu() - cpu0[n]) / (time.monotonic() - t0), 3) for n, w in fleet.workers.items()}
        ox = fleet.result("ox")
        s0 = fleet.result("s0")
    hops = {hop: pct(ox["samples"][hop]) for hop in CHAIN_HOPS if hop in ox["samples"]}
    if "tick_to_strategy" in s0["samples"]:
        hops["tick_to_strategy"] = pct(s0["samples"]["tick_to_strategy"])
    c = ox["counters"]
    return {"rate": rate, "batched": batched, "hops": hops, "signals": s0["counters"].get("signals", 0), "orders": c.get("orders", 0),
            "acks": c.get("acks", 0), "fills": c.get("fills", 0), "rejected": c.get("rejected", 0),
            "seconds": sizes.chain_s, "cpu": cpu}


def run(sizes: Sizes, log=print) -> dict:
    from bench.ticks import gateway_supports

    out = {}
    if not gateway_supports("--batch-ticks"):
        forms = [None]
    else:
        forms = [True, False] if sizes.both_forms else [True]
    for r in sizes.rates:
        for b in forms:
            tag = {True: "batched", False: "classic", None: "classic"}[b]
            log(f"latency: tick -> strategy at {r}/s ({tag})")
            out[f"tick_{r}_{tag}"] = tick_to_strategy(sizes, r, b)
    for r in sizes.chain_rates:
        for b in forms:
            tag = {True: "batched", False: "classic", None: "classic"}[b]
            log(f"latency: tick -> fill chain at {r}/s ({tag})")
            out[f"chain_{r}_{tag}"] = chain(sizes, r, b)
    return out
