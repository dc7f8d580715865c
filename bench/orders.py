"""Orders through the real exchange gateway, journal on, against the raw REQ/REP server.

Processes: ``main.py worker exchange`` with a fresh SQLite journal in the temp dir (WAL;
``--journal-sync normal`` by default: a committed order survives a crash of the process;
``full`` adds an fsync per batch for power loss) and ``main.py worker marketdata`` at 250
ticks/s per symbol, so the simulated exchange has a market to fill against.

* **round trip**: the benchmark's REQ client (:func:`bench.clients.req_roundtrips`, the same
  code that measures the raw REP server) sends market orders of 1 share, one at a time,
  alternating sides so positions stay small, and times send -> reply.  The raw REP server
  (:func:`bench.raw.peer_rep`) runs beside the fleet and is measured in alternating quarters
  with the gateway -- raw, gateway, raw, gateway -- so that both figures of the ratio come
  from the same seconds on the same busy machine (the fleet's market data keeps ticking).
* **sustained**: one DEALER keeps 16 orders in flight (:func:`bench.clients.dealer_pipelined`);
  the gateway's group commit journals whatever arrived together in one transaction.

Every reply must say ``ok`` (counted as ``bad`` otherwise).
"""

from __future__ import annotations

import itertools
import time

import msgpack
import zmq

from bench.clients import dealer_pipelined, req_roundtrips
from bench.common import SYMBOLS, Sizes, order_map, pct
from bench.procs import Fleet, kill_peers, run_peer

_run = itertools.count(1)


def _ok(reply: dict) -> bool:
    return bool(reply.get("ok")) and reply.get("status") in ("filled", "new", "partially_filled")


def exchange_orders(sizes: Sizes, sync: str = "normal", req: bool = True, dealer: bool = True) -> dict:
    with Fleet("orders") as fleet:
        fleet.start("exchange", "ex", "--journal", str(fleet.dir / "journal.sqlite"), "--fresh", "--journal-sync", sync)
        fleet.start("marketdata", "md", "--rate", "250", "--seed", "1")
        ex = fleet.workers["ex"]
        fleet.wait(lambda: ex.counter("ticks_in") >= 8, 20, "the exchange to see the market")
        ctx = zmq.Context()
        packer = msgpack.Packer()
        tag = f"b{time.time_ns() % 10**9}x{next(_run)}"
        clock = time.time_ns
        out: dict = {"sync": sync}
        try:
            if req:
                raw_ep = f"ipc://{fleet.dir}/raw-rep.sock"
                rep = run_peer("bench.raw", "rep", "--endpoint", raw_ep)
                try:
                    rep.stdout.readline()  # bound
                    td_ns, raw_ns, td_s, bad = [], [], [], 0
                    quarter = max(50, sizes.req_n // 2)
                    for half in range(2):
                        r = req_roundtrips(ctx, raw_ep, lambda i: packer.pack(order_map(f"{tag}raw{half}-{i}", i, clock())), quarter)
                        raw_ns += r["rtt_ns"]
                        r = req_roundtrips(ctx, fleet.endpoints.orders, lambda i: packer.pack(order_map(f"{tag}r{half}-{i}", i, clock())),
                                           quarter, check=_ok)
                        td_ns += r["rtt_ns"]
                        td_s.append(r["req_s"])
                        bad += r["bad"]
                finally:
                    kill_peers(rep)
                out.update(rtt=pct(td_ns), req_s=sum(td_s) / len(td_s), req_bad=bad, raw_rtt=pct(raw_ns))
            if dealer:
                d = dealer_pipelined(ctx, fleet.endpoints.orders, lambda i: packer.pack(order_map(f"{tag}d-{i}", i, clock())),
                                     sizes.dealer_n, sizes.inflight, check=_ok)
                out.update(per_s=d["per_s"], dealer_bad=d["bad"], dealer_rtt=pct(d["rtt_ns"]))
        finally:
            ctx.destroy(linger=0)
        fleet.fresh_stats("ex")
        c = ex.stats.get("counters", {})
        out.update(orders=c.get("orders", 0), fills=c.get("fills", 0), rejects=c.get("rejects", 0))
        lat = ex.stats.get("latency", {}).get("order_journal")
        if lat:
            out["journal_last_window"] = lat
    return out


def run(sizes: Sizes, log=print) -> dict:
    log("orders: exchange gateway, journal synchronous=normal")
    out = {"normal": exchange_orders(sizes, "normal")}
    log("orders: exchange gateway, journal synchronous=full (sustained only)")
    out["full"] = exchange_orders(sizes, "full", req=False)
    return out


__all__ = ["SYMBOLS", "exchange_orders", "run"]
