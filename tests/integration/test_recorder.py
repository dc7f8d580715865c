"""The recorder as a real process behind a real market-data gateway: every tick it received is
in the recording, a SIGKILL loses nothing written, and the size cap deletes the oldest; in a
real fleet, depth, order updates, fills and signal decisions are recorded as they were sent."""

from __future__ import annotations

import json
import signal

import numpy as np
import pytest
import zmq

from tests.procs import scaled, start_worker, stop, wait_until
from workers import protocol as P
from workers.config import Endpoints
from workers.fleet import default_fleet
from workers.recording import open_recording, table_counts
from workers.supervisor import Supervisor, SupervisorConfig


def recordings(root):
    return sorted(p for p in root.iterdir() if p.is_dir()) if root.exists() else []


def parquet_ticks(folder) -> int:
    try:
        return open_recording(folder).n_ticks
    except Exception:
        return 0


def test_a_recording_holds_every_tick_and_survives_a_kill(tmp_path):
    eps = Endpoints.ephemeral_ipc(tmp_path)
    root = tmp_path / "recordings"
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"tick.")
    sub.connect(eps.ticks)
    procs = []
    try:
        rec = start_worker("recorder", eps, "--record-dir", str(root), "--roll-seconds", "1", tmp_path=tmp_path)
        procs.append(rec)
        md = start_worker("marketdata", eps, "--rate", "200", "--seed", "3", tmp_path=tmp_path)
        procs.append(md)
        seen: dict[str, dict[int, tuple]] = {}

        def drain():
            while sub.poll(0):
                sym, rows, _ = P.tick_frame(sub.recv())
                for r in rows:
                    seen.setdefault(sym, {})[r[0]] = tuple(r)

        # rolled into Parquet while running (roll every second)
        wait_until(lambda: recordings(root) and parquet_ticks(recordings(root)[0]) >= 400, timeout=30,
                   message="the recorder rolled 400 ticks into Parquet")
        drain()
        assert stop(rec) == 0
        drain()
        r = open_recording(recordings(root)[0])
        assert set(r.symbols) == {"AAPL", "MSFT", "GOOG", "AMZN"}
        for sym in r.symbols:
            c = r.tick_columns(sym)
            seqs = c["seq"].tolist()
            assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), f"{sym}: a gap in the recording"
            for k, s in enumerate(seqs):  # each recorded tick is the tick on the wire
                if s in seen.get(sym, {}):
                    w = seen[sym][s]
                    assert (int(c["ts"][k]), float(c["last"][k]), float(c["bid"][k]), float(c["ask"][k])) == (w[1], w[2], w[3], w[4])
        assert not list(recordings(root)[0].glob("raw-*.log")), "a clean stop leaves no raw log"

        # SIGKILL: the raw log stays, the next recorder rolls it first
        rec2 = start_worker("recorder", eps, "--record-dir", str(root), "--roll-seconds", "600", tmp_path=tmp_path)
        procs.append(rec2)
        wait_until(lambda: len(recordings(root)) == 2 and any(p.stat().st_size > 20_000 for p in recordings(root)[1].glob("raw-*.log")),
                   timeout=30, message="the second recorder wrote its raw log")
        rec2.send_signal(signal.SIGKILL)
        rec2.wait(scaled(10))
        killed = recordings(root)[1]
        assert parquet_ticks(killed) == 0 and list(killed.glob("raw-*.log"))
        rec3 = start_worker("recorder", eps, "--record-dir", str(root), "--roll-seconds", "600", tmp_path=tmp_path)
        procs.append(rec3)
        wait_until(lambda: not list(killed.glob("raw-*.log")) and parquet_ticks(killed) > 0, timeout=30,
                   message="the killed recorder's raw log rolled by the next one")
        k = open_recording(killed)
        for sym in k.symbols:
            seqs = k.tick_columns(sym)["seq"]
            assert np.all(np.diff(seqs) == 1), f"{sym}: the killed recording has a gap"
    finally:
        for p in procs:
            stop(p)
        ctx.destroy(linger=0)


def test_the_size_cap_deletes_the_oldest_recording_never_the_current(tmp_path):
    eps = Endpoints.ephemeral_ipc(tmp_path)
    root = tmp_path / "recordings"
    old = root / "20000101T000000-1" / "parquet"
    old.mkdir(parents=True)
    (old / "filler.bin").write_bytes(b"\0" * 3 * 2**20)
    procs = []
    try:
        procs.append(start_worker("marketdata", eps, "--rate", "100", "--seed", "4", tmp_path=tmp_path))
        procs.append(start_worker("recorder", eps, "--record-dir", str(root), "--roll-seconds", "0.5", "--max-mb", "2", tmp_path=tmp_path))
        wait_until(lambda: not (root / "20000101T000000-1").exists(), timeout=30, message="the oldest recording deleted at the cap")
        current = recordings(root)
        assert len(current) == 1
        wait_until(lambda: parquet_ticks(current[0]) > 0, timeout=30, message="the current recording kept and rolled")
    finally:
        for p in procs:
            stop(p)


FLEET = """
[fleet.marketdata]
rate = 50
seed = 7
depth_hz = 10

[fleet.recorder]
roll_seconds = 1

[[fleet.strategies]]
name = "sr-fast"
symbols = "AAPL,MSFT,GOOG,AMZN"
mode = "both"
window = 30
cooldown = 0.5
"""


@pytest.mark.slow
def test_a_fleet_recording_holds_depth_orders_fills_and_signals(tmp_path):
    """The whole fleet under the supervisor: what the recorder kept of depth, the execution
    stream and the signal decisions is what went over the wire, with nothing stolen from the
    executor (its signals still became orders and fills)."""
    cfg = tmp_path / "fleet.toml"
    cfg.write_text(FLEET)
    eps = Endpoints.ephemeral_ipc(tmp_path)
    root = tmp_path / "recordings"
    ctx = zmq.Context()
    wire: dict[str, list] = {"depth": [], "exec": [], "signals": []}
    socks = {}
    for name, ep, topic in (("depth", eps.ticks, b"depth."), ("exec", eps.execution, b"exec."), ("signals", eps.events, b"signal.")):
        s = ctx.socket(zmq.SUB)
        s.setsockopt(zmq.SUBSCRIBE, topic)
        s.connect(ep)
        socks[name] = s

    def drain():
        for name, s in socks.items():
            while s.poll(0):
                wire[name].append(P.decode_pub(s.recv())[1])

    specs = default_fleet(data=tmp_path, config_path=str(cfg), fresh_journal=True)
    sup = Supervisor(eps, specs, SupervisorConfig(log_dir=str(tmp_path / "logs"), heartbeat_timeout=5.0))
    sup.start()
    try:
        def rolled_everything():
            sup.poll(10)
            drain()
            folders = recordings(root)
            if not folders:
                return False
            counts = table_counts(folders[0])[0]
            return all(counts[t] > 0 for t in ("ticks", "depth", "orders", "fills", "signals"))

        wait_until(rolled_everything, timeout=90, interval=0.0,
                   message="the recorder rolled ticks, depth, orders, fills and signals into Parquet while running")
        rec_w = sup.workers["recorder"]
        # its heartbeats count every stream (and say nothing was lost)
        wait_until(lambda: sup.poll(10) or all(rec_w.counter(k) > 0 for k in ("ticks", "depth", "orders", "fills", "signals")),
                   timeout=30, interval=0.0, message="the recorder's counters in its heartbeat")
        assert rec_w.counter("lost") == 0 and rec_w.counter("exec_lost") == 0 and rec_w.counter("bad_frames") == 0
    finally:
        sup.stop()
    drain()
    for s in socks.values():
        s.close(0)
    ctx.destroy(linger=0)

    (folder,) = recordings(root)
    assert not list(folder.glob("raw-*.log")), "a clean stop leaves no raw log"
    meta = json.loads((folder / "meta.json").read_text())
    counts, symbols = table_counts(folder)
    assert meta["format"] == 1 and meta["closed"] and meta["counts"] == counts and meta["symbols"] == symbols
    rec = open_recording(folder)

    # execution stream: one counter for updates and fills, recorded without a gap, each report
    # as it was on the wire
    orders, fills = rec.table("orders").to_pylist(), rec.table("fills").to_pylist()
    seqs = sorted(r["seq"] for r in orders + fills)
    assert seqs == list(range(seqs[0], seqs[-1] + 1)), "a gap in the recorded execution stream"
    recorded = {r["seq"]: r for r in orders + fills}
    for m in wire["exec"]:
        if seqs[0] <= m.seq <= seqs[-1]:
            r = recorded[m.seq]
            assert (r["symbol"], r["ts"], r["client_order_id"]) == (m.symbol, m.ts, m.client_order_id)
            if isinstance(m, P.Fill):
                assert (r["fill_id"], r["qty"], r["price"]) == (m.fill_id, m.qty, m.price)
            else:
                assert (r["status"], r["filled_qty"], r["order_id"]) == (m.status.value, m.filled_qty, m.order_id)

    # signals: the executor's decisions; the accepted ones are the strategy's orders
    sigs = {r["id"]: r for r in rec.table("signals").to_pylist()}
    on_wire = {m.signal.id: m for m in wire["signals"]}
    assert set(sigs) <= set(on_wire)
    for sid, r in sigs.items():
        m = on_wire[sid]
        assert (r["symbol"], r["side"], r["qty"], r["accepted"], r["client_order_id"]) == (m.signal.symbol, m.signal.side.value, m.signal.qty, m.accepted, m.client_order_id)
    accepted = {r["client_order_id"] for r in sigs.values() if r["accepted"]}
    assert accepted & {r["client_order_id"] for r in fills}, "a recorded signal became a recorded fill"

    # depth: every symbol's own counter without a gap, levels as published, and in events()
    depth = rec.table("depth")
    by_seq = {(r["symbol"], r["seq"]): r for r in depth.to_pylist()}
    for sym in set(depth.column("symbol").to_pylist()):
        s = sorted(q for (y, q) in by_seq if y == sym)
        assert s == list(range(s[0], s[-1] + 1)), f"{sym}: a gap in the recorded depth"
    for d in wire["depth"]:
        r = by_seq.get((d.symbol, d.seq))
        if r is not None:
            assert list(zip(r["bid_px"], r["bid_sz"])) == [tuple(x) for x in d.bids] and r["ts"] == d.ts
    kinds = [k for k, _, _ in rec.events(kinds=("ticks", "depth"))]
    assert kinds.count("depth") == depth.num_rows and "ticks" in kinds
