"""The recorder as a real process behind a real market-data gateway: every tick it received is
in the recording, a SIGKILL loses nothing written, and the size cap deletes the oldest."""

from __future__ import annotations

import signal

import numpy as np
import zmq

from tests.procs import scaled, start_worker, stop, wait_until
from workers import protocol as P
from workers.config import Endpoints
from workers.recording import open_recording


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
