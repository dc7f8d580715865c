"""A real strategy under a real market-data gateway: it joins late from the gateway's snapshot,
and after ``kill -9`` of the gateway it takes the new incarnation's epoch as a restart (its
``seq`` starts again, lower) and keeps trading on the new ticks.  The test plays the
supervisor of the strategy (to read its heartbeats) and subscribes to the ticks itself to see
when the new gateway's first tick goes out."""

from __future__ import annotations

import zmq

from tests.integration.test_marketdata import FakeSupervisor, Sub
from tests.procs import start_worker, stop, wait_until
from workers.config import Endpoints


def _counters(sup: FakeSupervisor) -> dict:
    sup.drain()
    return sup.heartbeats[-1].stats["counters"] if sup.heartbeats else {}


def _fresh_counters(sup: FakeSupervisor, predicate, timeout: float, message: str) -> dict:
    """Wait for a heartbeat sent after this call whose counters satisfy ``predicate``."""
    n = len(sup.heartbeats)

    def ok():
        sup.drain()
        beats = sup.heartbeats[n:]
        return beats and predicate(beats[-1].stats["counters"]) and beats[-1].stats["counters"]

    return wait_until(ok, timeout=timeout, message=message)


def test_kill_9_of_the_gateway_is_a_restart_and_the_strategy_keeps_counting(tmp_path):
    eps = Endpoints.ephemeral_ipc(tmp_path)
    ctx = zmq.Context()
    procs = []
    try:
        feed_args = ("--rate", "50", "--seed", "7", "--symbols", "AAPL,MSFT,GOOG")
        old = start_worker("marketdata", eps, *feed_args, tmp_path=tmp_path)
        procs.append(old)
        sub = Sub(ctx, eps.ticks)
        sub.until(lambda s: len(s.ticks) >= 200, message="the first gateway's ticks")  # a strategy joining late

        sup = FakeSupervisor(ctx, eps.control)
        strat = start_worker("strategy", eps, "--symbols", "AAPL,MSFT", "--heartbeat", "0.1", "--orphan-timeout", "0",
                             tmp_path=tmp_path, control=True)
        procs.append(strat)
        c = _fresh_counters(sup, lambda c: c.get("snapshots") == 1 and c.get("ticks", 0) >= 100, 15,
                            "the strategy joined from the snapshot and counts live ticks")
        # the late join: a symbol's window starts at the snapshot's tick (or, if a live tick of
        # it came first, at that tick), with no gap and nothing twice
        assert c["snapshot_ticks"] <= 2 and c["tick_gaps"] == 0 and c["ticks_stale"] == 0 and c["feed_restarts"] == 0
        old_epoch = sub.ticks[-1].epoch

        old.kill()  # kill -9: no goodbye, the ipc socket files stay behind
        old.wait()
        sub.drain()
        old_seq = max(t.seq for t in sub.ticks)
        before = _counters(sup)
        new = start_worker("marketdata", eps, *feed_args, tmp_path=tmp_path)
        procs.append(new)
        sub.until(lambda s: s.ticks[-1].epoch != old_epoch, timeout=15, message="the new gateway's first tick")
        first = next(t for t in sub.ticks if t.epoch != old_epoch)
        assert first.seq < old_seq  # a lower seq, of a new epoch

        # within 2 s (scaled) of that tick the strategy counts the new ticks, as a restart of each symbol
        c = _fresh_counters(
            sup, lambda c: c["feed_restarts"] >= before["feed_restarts"] + 2 and c["ticks"] >= before["ticks"] + 20, 2,
            "the strategy counting the new gateway's ticks")
        assert c["feed_restarts"] == before["feed_restarts"] + 2  # one per symbol it trades, once
        assert c["ticks_stale"] == 0 and c["tick_gaps"] == 0  # the lower seq is not taken for late data
        levels = sup.command("get_levels")
        assert levels.ok and all(v["fill"] >= 1 for v in levels.result["levels"].values())
    finally:
        for p in procs:
            stop(p)
        ctx.destroy(linger=0)
