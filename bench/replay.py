"""Replay "as fast as possible" beside the raw batched PUB/SUB ceiling (docs/marketdata.md,
"The recording feed"; the gateway is workers/marketdata/gateway.py).

    python -m bench.replay                 # 2M ticks of 4 symbols, median of 1
    python -m bench.replay --quick         # 500k ticks
    python -m bench.replay --repeat 3      # the median of 3 runs of each row

Both rows replay the same recording (Parquet, written here) to the same receiver, a plain SUB
process that only counts frames and their rows (from the frame's array header, no decoding),
on ipc, in one invocation:

* **TickDesk**: the market-data gateway (``main.py worker marketdata --feed recording
  --replay-file REC --speed 0 --start-paused``) under bench.procs' stand-in supervisor, resumed
  once the SUB has subscribed; it publishes ticks frames with its own seq and epoch, the
  snapshot cache's bars kept as live.
* **raw**: a process with plain pyzmq and msgpack that reads the same recording with the same
  reader, then sends every symbol's rows in frames of the same 256 rows (``tick.<SYM>`` topic,
  the same msgpack map with a new seq per row and the epoch), the symbols in turn: the batched
  PUB/SUB ceiling for the same framing and payload, encoding included.

Reported: ticks received, frames and rows per frame, the receive rate (first to last frame at
the SUB), lost (sent - received), and TickDesk / raw.  Opening the recording is not timed in
either row.  Nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import zmq

from bench.procs import REPO, Fleet

SYMBOLS = ("AAPL", "MSFT", "GOOG", "AMZN")
ROWS = 256  # the gateway's default --batch-ticks
RCVHWM = 1_000_000
T0 = 1_767_366_600 * 10**9


def make_recording(root: Path, n_ticks: int) -> Path:
    """``n_ticks`` in 4 symbols, interleaved in time as a live session's are, 1 ms apart."""
    from workers.recording import write_ticks

    rec = root / "rec"
    per = n_ticks // len(SYMBOLS)
    rng = np.random.default_rng(1)
    for k, s in enumerate(SYMBOLS):
        last = np.round(100.0 + 50 * k + np.cumsum(rng.normal(0, 0.01, per)), 2)
        last = np.maximum(last, 1.0)
        write_ticks(rec / "parquet" / "ticks", s, {
            "seq": np.arange(1, per + 1), "ts": T0 + np.arange(per) * 4_000_000 + k * 1_000_000,
            "last": last, "bid": np.round(last - 0.01, 2), "ask": np.round(last + 0.01, 2),
            "bid_size": np.full(per, 300), "ask_size": np.full(per, 400), "volume": np.arange(per) * 10,
        })
    return rec


# ----------------------------------------------------------------------------- child processes


def _rows_in(frame: bytes) -> int:
    """Rows of a ``tick`` or ``ticks`` frame from the msgpack array header after the
    ``ticks`` key (the map's keys come in declaration order: type, symbol, ticks)."""
    k = frame.find(b"\xa5ticks", frame.find(b"\xa6symbol"))
    if k < 0:
        return 1  # a single ``tick``
    b = frame[k + 6]
    if 0x90 <= b <= 0x9F:
        return b & 0x0F
    if b == 0xDC:
        return int.from_bytes(frame[k + 7:k + 9], "big")
    return 0


def count(endpoint: str) -> None:
    """The plain SUB: count frames and rows until 3 s of silence after the first frame."""
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.RCVHWM, RCVHWM)
    sub.setsockopt(zmq.SUBSCRIBE, b"tick.")
    sub.connect(endpoint)
    print("ready", flush=True)
    frames = rows = 0
    t_first = t_last = 0.0
    recv, rows_in, clock = sub.recv, _rows_in, time.monotonic
    while sub.poll(120_000 if frames == 0 else 3_000):
        if not frames:
            t_first = clock()
        while True:
            try:
                f = recv(zmq.NOBLOCK)
            except zmq.Again:
                break
            frames += 1
            rows += rows_in(f)
        t_last = clock()
    print(json.dumps({"frames": frames, "rows": rows, "t_first": t_first, "t_last": t_last}), flush=True)
    sub.close(0)
    ctx.term()


def rawpub(endpoint: str, rec: str) -> None:
    """The raw publisher: read the recording, wait for a subscription and ``go``, then encode
    and send every symbol's rows in 256-row frames, the symbols in turn."""
    import msgpack

    from workers.recording import open_recording

    r = open_recording(rec)
    cols = {s: r.tick_columns(s) for s in r.symbols}
    fields = ("ts", "last", "bid", "ask", "bid_size", "ask_size", "volume")
    ctx = zmq.Context()
    pub = ctx.socket(zmq.XPUB)
    pub.setsockopt(zmq.LINGER, 5000)
    pub.setsockopt(zmq.SNDHWM, 100_000)  # the gateway's default --hwm
    pub.bind(endpoint)
    print("ready", flush=True)
    while not pub.recv().startswith(b"\x01tick."):
        pass
    sys.stdin.readline()
    packb, send = msgpack.packb, pub.send
    t0 = time.monotonic()
    # each symbol's columns as Python rows in chunks, as the gateway takes them from the reader
    pos = dict.fromkeys(cols, 0)
    seq = dict.fromkeys(cols, 0)
    sent = 0
    live = list(cols)
    while live:
        for s in list(live):
            c, i = cols[s], pos[s]
            j = min(i + ROWS, len(c["ts"]))
            if j <= i:
                live.remove(s)
                continue
            q = seq[s]
            # the quickest plain form: the new seq zipped in with the columns, a list per row
            rows = list(map(list, zip(range(q + 1, q + 1 + j - i), *(c[f][i:j].tolist() for f in fields))))
            seq[s] = q + len(rows)
            pos[s] = j
            send(b"tick." + s.encode() + b"\x00" + packb({"type": "ticks", "symbol": s, "ticks": rows, "epoch": 1}))
            sent += len(rows)
    t1 = time.monotonic()
    print(json.dumps({"sent": sent, "t0": t0, "t1": t1}), flush=True)
    pub.close()
    ctx.term()


def _child(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "bench.replay", *args], cwd=REPO, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)


def _expect(proc: subprocess.Popen, word: str, what: str) -> None:
    line = proc.stdout.readline().strip()
    if line != word:
        raise RuntimeError(f"{what}: expected {word!r}, got {line!r}")


# ----------------------------------------------------------------------------- one run


def run(kind: str, rec: Path, n_ticks: int) -> dict:
    fleet = Fleet("replay")
    procs: list[subprocess.Popen] = []
    try:
        ep = fleet.endpoints.ticks
        if kind == "raw":
            pub = _child("rawpub", ep, str(rec))
            procs.append(pub)
            _expect(pub, "ready", "raw publisher")
        else:
            md = fleet.start("marketdata", "marketdata", "--feed", "recording", "--replay-file", str(rec), "--speed", "0",
                             "--start-paused")
            fleet.wait(lambda: md.gauge("replay_paused") is True, 60, "the replay opened, paused")
        cnt = _child("count", ep)
        procs.append(cnt)
        _expect(cnt, "ready", "counter")
        if kind == "raw":
            pub.stdin.write("go\n")
            pub.stdin.flush()
        else:
            # the SUB's subscription reaches the PUB after its connect: the gateway's socket
            # stats show the peer; then resume (nothing went out while paused)
            fleet.wait(lambda: any(s.get("name") == "ticks" and s.get("peers", 0) >= 1 for s in md.stats.get("sockets", [])),
                       30, "the counter connected")
            time.sleep(0.2)  # a SUBSCRIBE follows the connect by a round trip; nothing measured here
            fleet.command("marketdata", "resume")
        c = json.loads(cnt.stdout.readline())
        sent = n_ticks
        if kind == "raw":
            sent = json.loads(pub.stdout.readline())["sent"]
        else:
            fleet.fresh_stats("marketdata")
            sent = md.counter("ticks")
        secs = max(1e-9, c["t_last"] - c["t_first"])
        return {"kind": kind, "sent": sent, "received": c["rows"], "frames": c["frames"],
                "rows_per_frame": c["rows"] / max(1, c["frames"]), "rate": c["rows"] / secs, "seconds": secs,
                "lost": sent - c["rows"]}
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        fleet.close()


def _median(runs: list[dict]) -> dict:
    out = dict(runs[0])
    for k, v in out.items():
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            out[k] = statistics.median(r[k] for r in runs)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd")
    pc = sub.add_parser("count")
    pc.add_argument("endpoint")
    pr = sub.add_parser("rawpub")
    pr.add_argument("endpoint")
    pr.add_argument("rec")
    p.add_argument("--quick", action="store_true", help="500k ticks")
    p.add_argument("--ticks", type=int, default=None, help="ticks in the recording (default 2M; --quick 500k)")
    p.add_argument("--repeat", type=int, default=1, help="runs per row; the median is shown")
    p.add_argument("--json", default=None, help="also write the rows as JSON here")
    a = p.parse_args(argv)
    if a.cmd == "count":
        count(a.endpoint)
        return 0
    if a.cmd == "rawpub":
        rawpub(a.endpoint, a.rec)
        return 0
    n = a.ticks or (500_000 if a.quick else 2_000_000)
    with tempfile.TemporaryDirectory(prefix="tickdesk-replay-") as tmp:
        rec = make_recording(Path(tmp), n)
        n = n - n % len(SYMBOLS)
        rows = {}
        for kind in ("raw", "tickdesk"):
            runs = [run(kind, rec, n) for _ in range(a.repeat)]
            rows[kind] = _median(runs)
            print(f"  {kind}: {rows[kind]}", file=sys.stderr, flush=True)
    ratio = rows["tickdesk"]["rate"] / rows["raw"]["rate"] if rows["raw"]["rate"] else 0.0
    print(f"replay as fast as possible: {n:,} recorded ticks of {len(SYMBOLS)} symbols, ipc, plain counting SUB, "
          f"median of {a.repeat}")
    print(f"| {'publisher':34} | {'received':>10} | {'frames':>8} | {'rows/frame':>10} | {'ticks/s':>10} | {'lost':>7} |")
    print(f"|{'-' * 36}|{'-' * 12}|{'-' * 10}|{'-' * 12}|{'-' * 12}|{'-' * 9}|")
    names = {"raw": "raw pyzmq + msgpack, 256-row frames", "tickdesk": "market-data gateway, --speed 0"}
    for k in ("raw", "tickdesk"):
        r = rows[k]
        print(f"| {names[k]:34} | {r['received']:10,.0f} | {r['frames']:8,.0f} | {r['rows_per_frame']:10.1f} | {r['rate']:10,.0f} | {r['lost']:7,.0f} |")
    print(f"TickDesk / raw: {ratio:.2f}x (target >= 0.70x)")
    if a.json:
        Path(a.json).write_text(json.dumps({"rows": rows, "ratio": ratio}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
