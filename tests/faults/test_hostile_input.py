"""Well-formed but hostile tick streams, as the outside reliability check sent them, into a real
strategy process (issue 11 items 5 and 6): absurd sequence numbers must not end the worker
through a counter that no longer packs, and a stream that numbers every row 1 must not flood
the log or silence the heartbeat."""

from __future__ import annotations

import pytest

from tests.integration.test_strategy_worker import FAST, FakeFleet
from tests.procs import log_text, start_worker, stop
from workers import protocol as P
from workers.config import Endpoints


@pytest.fixture
def rig(tmp_path):
    made: list = []

    def make(*args: str):
        eps = Endpoints.ephemeral_ipc(tmp_path)
        ff = FakeFleet(eps, control=True)
        # --orphan-timeout 0: the test's ROUTER is the supervisor, not our parent
        proc = start_worker("strategy", eps, *args, "--orphan-timeout", "0", "--heartbeat", "0.1",
                            tmp_path=tmp_path, control=True)
        made.extend([ff, proc])
        return ff, proc

    yield make
    for thing in reversed(made):
        if isinstance(thing, FakeFleet):
            thing.close()
        else:
            stop(thing)


def raw_tick(seq: int, price: float = 100.0) -> bytes:
    """A tick map packed by hand, so that a seq the protocol refuses can still be sent."""
    return P.tick_topic("AAPL") + P.TOPIC_SEP + P.packb({
        "v": 1, "type": "tick", "symbol": "AAPL", "seq": seq, "ts": P.now_ns(), "last": price,
        "bid": price - 0.01, "ask": price + 0.01, "bid_size": 100, "ask_size": 100, "volume": 1})


@pytest.mark.parametrize("top", [2**64 - 1, 2**63 - 1], ids=["uint64-max", "int64-max"])
def test_absurd_seq_jumps_do_not_end_the_strategy(rig, top):
    ff, proc = rig(*FAST)
    ff.wait(lambda: ff.counters(), message="first heartbeat")
    # the check's sequence: 1, top, 1, top, 1, 2 -- twice, so that the "ticks missed" sum
    # passes 2**64 whatever the tracker makes of each step back
    seqs = [1, top, 1, top, 1, 2] * 2
    ff.ticks_until([100.0], lambda got: ff.counters().get("ticks", 0) > 0, message="strategy reads ticks")
    before = ff.counters()
    for s in seqs:
        ff.ticks.send(raw_tick(s))
    ff.tick(100.0, seq=3)  # and then ordinary ticks again

    def settled(c):
        read = c.get("ticks", 0) + c.get("decode_errors", 0) - before.get("ticks", 0) - before.get("decode_errors", 0)
        return read >= len(seqs) + 1

    stats = ff.wait_counters(settled, message="every hostile tick read and a heartbeat after them")
    counters = stats["counters"]
    if top > P.INT64_MAX:
        # beyond int64: refused by the protocol (counted), never taken into a counter
        assert counters["decode_errors"] - before.get("decode_errors", 0) == 4
    else:
        # valid int64 seqs: the missed-tick total is saturated, never an unpackable int
        assert 0 < counters["ticks_missed"] <= P.INT64_MAX
    assert all(-P.INT64_MAX <= v <= P.INT64_MAX for v in counters.values() if isinstance(v, int))
    assert counters.get("handler_errors", 0) == 0
    # several heartbeats later it is still the same process, still reading ticks
    n = counters["ticks"]
    ff.ticks_until([100.0], lambda got: ff.counters().get("ticks", 0) > n + 5, message="ticks after the hostile ones")
    assert proc.poll() is None, log_text(proc)


def test_every_row_at_seq_1_does_not_flood_the_log(rig):
    ff, proc = rig(*FAST)
    ff.wait(lambda: ff.counters(), message="first heartbeat")
    ff.ticks_until([100.0], lambda got: ff.counters().get("ticks", 0) > 0, message="strategy reads ticks")
    size_before = len(log_text(proc))
    frames, rows_per = 150, P.MAX_TICKS_PER_FRAME
    for i in range(frames):
        price = 100.0 + (i % 7) * 0.1
        # half the frames all at seq 1 (duplicates), half 1, 2, 1, 2, ... (a restart per pair)
        seqs = [1] * rows_per if i % 2 else [1 + (r % 2) for r in range(rows_per)]
        rows = [(s, P.now_ns(), price, price - 0.01, price + 0.01, 100, 100, 1) for s in seqs]
        ff.ticks.send(P.encode_ticks("AAPL", rows))
    total = frames * rows_per
    before = ff.counters().get("ticks", 0)
    stats = ff.wait_counters(lambda c: c.get("ticks", 0) - before >= total, timeout=30,
                             message="all 150 frames of 1024 rows read")
    # 38,400 restarts and 76,000 duplicates: the log grows by a handful of rate-limited lines
    # with a suppressed count, not by a line per row (16 MB in the outside check)
    grown = log_text(proc)[size_before:]
    assert len(grown.splitlines()) < 50, grown[-2000:]
    assert len(grown) < 20_000
    assert stats["counters"].get("feed_restarts", 0) >= frames // 2 * rows_per // 2
    assert stats["counters"].get("ticks_stale", 0) >= frames // 2 * (rows_per - 1)
    assert proc.poll() is None
