"""A real market-data gateway replaying a recording (``--feed recording``): every recorded tick
in order with its recorded ts and a complete seq of the gateway's own; pause, resume, seek and
speed by command; the heartbeat's replay gauges; "replay finished" at the end.

Pacing is checked only from below (a replay can be late on a busy machine, never early): the
wall time across a recorded gap is at least the gap over the speed."""

from __future__ import annotations

import time

import numpy as np
import pytest
import zmq

from tests.integration.test_marketdata import FakeSupervisor, Sub
from tests.procs import log_text, scaled, start_worker, stop, wait_until
from workers import protocol as P
from workers.config import Endpoints
from workers.recording import open_recording, write_ticks

NS = 10**9
T0 = 1_796_308_325 * NS  # 2026-12-03 14:32:05 UTC


def _cols(ts: np.ndarray, price: float) -> dict[str, np.ndarray]:
    n = len(ts)
    last = price + (np.arange(n) % 50) * 0.01
    return {"seq": np.arange(1, n + 1), "ts": ts, "last": last, "bid": last - 0.01, "ask": last + 0.01,
            "bid_size": np.full(n, 100), "ask_size": np.arange(n) % 7 * 100 + 100, "volume": np.arange(n) * 10}


def _write(root, per_symbol: dict[str, np.ndarray]):
    for k, (sym, ts) in enumerate(per_symbol.items()):
        write_ticks(root / "parquet" / "ticks", sym, _cols(ts, 100.0 + 10 * k))
    return root


@pytest.fixture
def env(tmp_path):
    eps = Endpoints.ephemeral_ipc(tmp_path)
    ctx = zmq.Context()
    procs = []

    def start(*args: str, control: bool = False):
        proc = start_worker("marketdata", eps, *args, tmp_path=tmp_path, control=control)
        procs.append(proc)
        return proc

    yield eps, ctx, start
    for p in procs:
        stop(p)
    ctx.destroy(linger=0)


def _recorded(root) -> list[tuple]:
    """(symbol, ts, last, bid, ask, bid_size, ask_size, volume) of every tick, in recorded order."""
    return [(sym, *r[1:]) for _, sym, rows in open_recording(root).events() for r in rows]


def _got(ticks) -> list[tuple]:
    return [(t.symbol, t.ts, t.last, t.bid, t.ask, t.bid_size, t.ask_size, t.volume) for t in ticks]


@pytest.mark.parametrize("batch", ["256", "1"])
def test_speed_zero_gives_every_tick_in_order_with_recorded_ts_and_a_complete_seq(env, tmp_path, batch):
    eps, ctx, start = env
    # three symbols, interleaved in time, one of them crossing midnight UTC (two date partitions)
    root = _write(tmp_path / "rec", {
        "AAA": T0 + np.arange(3000) * 7_000_000,
        "BBB": T0 + 3_500_000 + np.arange(2000) * 11_000_000,
        "CCC": T0 + 34_000 * NS + np.arange(1500) * 13_000_000 // 2,
    })
    want = _recorded(root)
    sub = Sub(ctx, eps.ticks, b"tick.", b"depth.")
    proc = start("--feed", "recording", "--replay-file", str(root), "--speed", "0", "--start-delay", str(scaled(1.0)),
                 "--batch-ticks", batch)
    sub.until(lambda s: len(s.ticks) >= len(want), timeout=30, message=f"{len(want)} replayed ticks")
    sub.drain(100)
    got = _got(sub.ticks)
    # every tick with its recorded ts and values, in recorded order per symbol; one tick per
    # frame keeps the recorded order across symbols too (batched, a wake-up's ticks of a
    # symbol are one frame)
    assert sorted(got, key=lambda r: r[0]) == sorted(want, key=lambda r: r[0])
    if batch == "1":
        assert got == want
    for sym in ("AAA", "BBB", "CCC"):
        seqs = [t.seq for t in sub.ticks if t.symbol == sym]
        assert seqs == list(range(1, len(seqs) + 1)), sym
    assert {t.epoch for t in sub.ticks} != {0}
    wait_until(lambda: "replay finished" in log_text(proc), timeout=10, message="replay finished in the log")
    assert proc.poll() is None  # it stops publishing, not running
    assert stop(proc) == 0, log_text(proc)


def test_pause_resume_seek_speed_and_the_replay_gauges(env, tmp_path):
    eps, ctx, start = env
    # AAA every 20 ms for 4 s, then a 1.5 s hole, then 4 s more; BBB every 50 ms throughout
    a = np.concatenate([T0 + np.arange(200) * 20_000_000, T0 + 5_500_000_000 + np.arange(200) * 20_000_000])
    b = T0 + 1_000_000 + np.arange(190) * 50_000_000
    root = _write(tmp_path / "rec", {"AAA": a, "BBB": b})
    first, last = int(a[0]), int(a[-1])
    sup = FakeSupervisor(ctx, eps.control)
    sub = Sub(ctx, eps.ticks)
    proc = start("--feed", "recording", "--replay-file", str(root), "--speed", "1", "--orphan-timeout", "0",
                 "--heartbeat", "0.1", control=True)
    wait_until(lambda: sup.drain() or sup.heartbeats, timeout=15, message="a heartbeat")

    def gauges():
        sup.drain()
        return sup.heartbeats[-1].stats["gauges"]

    g = gauges()
    assert g["feed"] == "recording" and g["replay"] is True and g["speed"] == 1.0
    assert g["replay_first_ts"] == first and g["replay_last_ts"] == last
    sub.until(lambda s: sup.drain() or len(s.ticks) >= 20, message="ticks at speed 1")

    # pause: once the reply is in, the stream goes quiet and stays quiet over heartbeats
    assert sup.command("pause").ok
    wait_until(lambda: (sup.drain(), sub.drain(100) == 0)[1], timeout=10, message="no ticks while paused")
    n_paused = len(sub.ticks)
    wait_until(lambda: gauges()["replay_paused"] and gauges()["replay_status"] == "paused", timeout=10, message="paused gauge")
    hb = len(sup.heartbeats)
    wait_until(lambda: (sub.drain(50), sup.drain(), len(sup.heartbeats) >= hb + 5)[2], timeout=10, message="5 heartbeats while paused")
    assert len(sub.ticks) == n_paused, "published while paused"
    pos = gauges()["replay_ts"]
    assert first <= pos <= sub.ticks[-1].ts + 50_000_000

    # seek while paused: nothing yet; on resume the next ticks start at the target, seq going on
    target = int(a[250])  # after the hole
    r = sup.command("seek", ts=target)
    assert r.ok and r.result["ts"] == target and 0 < r.result["fraction"] < 1
    assert sub.drain(200) == 0
    last_seq = {s: max(t.seq for t in sub.ticks if t.symbol == s) for s in {t.symbol for t in sub.ticks}}
    assert sup.command("set_speed", speed=10).ok
    assert sup.command("resume").ok
    sub.until(lambda s: sup.drain() or len(s.ticks) >= n_paused + 20, message="ticks after the seek")
    after = sub.ticks[n_paused:]
    assert after[0].ts >= target and min(t.ts for t in after) >= target
    assert after[0].symbol == "AAA" and after[0].ts == target  # the first row at the target (BBB ended before it)
    for s in {t.symbol for t in after}:
        assert min(t.seq for t in after if t.symbol == s) == last_seq.get(s, 0) + 1, "seq goes on across a seek"
    wait_until(lambda: gauges()["speed"] == 10.0 and gauges()["replay_ts"] >= target, timeout=10, message="gauges after seek")

    # a seek by fraction back to the start, at speed 1: the wall time across the recorded
    # 1.5 s hole is at least the hole (late is possible on a busy machine; early never)
    assert sup.command("set_speed", speed=1).ok
    assert sup.command("seek", fraction=0.0).ok
    stamps: list[tuple[int, float]] = []  # (ts, when received) of AAA from the new start on

    def collect():
        sup.drain()
        k = len(sub.ticks)
        sub.drain(20)
        now = time.monotonic()
        for t in sub.ticks[k:]:
            # what was sent before the seek may still be queued: count from the new start
            if t.symbol == "AAA" and (stamps or t.ts == first):
                stamps.append((t.ts, now))
        return any(ts >= int(a[200]) for ts, _ in stamps)

    wait_until(collect, timeout=30, message="AAA past the recorded hole at speed 1")
    before_hole = max(w for ts, w in stamps if ts <= int(a[199]))
    after_hole = min(w for ts, w in stamps if ts >= int(a[200]))
    assert after_hole - before_hole >= 0.9 * 1.5
    assert [ts for ts, _ in stamps] == sorted(ts for ts, _ in stamps)

    # at full speed to the end: replay finished, the process stays up
    assert sup.command("set_speed", speed=0).ok
    wait_until(lambda: gauges().get("status") == "replay finished", timeout=20, message="replay finished")
    g = gauges()
    assert g["done"] is True and g["replay_status"] == "finished" and g["replay_fraction"] == 1.0
    assert not sup.command("set_rate", rate=5).ok  # a recording's pace is its speed
    assert not sup.command("seek").ok
    assert proc.poll() is None
    assert sup.command("stop").ok
    assert proc.wait(scaled(10)) == 0


def test_snapshot_serves_the_last_replayed_tick(env, tmp_path):
    eps, ctx, start = env
    root = _write(tmp_path / "rec", {"AAA": T0 + np.arange(500) * NS // 100})
    want = _recorded(root)
    proc = start("--feed", "recording", "--replay-file", str(root), "--speed", "0")
    wait_until(lambda: "replay finished" in log_text(proc), timeout=15, message="replay finished")
    req = ctx.socket(zmq.DEALER)
    req.setsockopt(zmq.LINGER, 0)
    req.connect(eps.snapshot)
    req.send(P.GetSnapshot().pack())
    assert req.poll(int(scaled(5) * 1000)), "no snapshot reply"
    reply = P.decode(req.recv())
    req.close()
    (t,) = reply.ticks
    assert (t.symbol, t.seq, t.ts, t.last) == ("AAA", 500, want[-1][1], want[-1][2])
    assert any(sb.bars for sb in reply.bars)  # bars of market time, as the chart asks for them
    assert stop(proc) == 0


def test_an_unreadable_recording_refuses_to_start(env, tmp_path):
    eps, ctx, start = env
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"PAR1 not really")
    proc = start("--feed", "recording", "--replay-file", str(bad))
    assert proc.wait(scaled(15)) == 2
    assert "bad.parquet" in log_text(proc)
    proc2 = start("--feed", "recording")
    assert proc2.wait(scaled(15)) == 2
    assert "--replay-file" in log_text(proc2)
