"""Recorder throughput through sockets (docs/recording.md; the worker is workers/recorder/worker.py).

    python -m bench.recorder                 # 4M ticks per run, rates 250k, 500k, 1M/s and as fast as possible
    python -m bench.recorder --quick         # 1M ticks, 1M/s and as fast as possible
    python -m bench.recorder --repeat 3      # the median of 3 runs of each row
    python -m bench.recorder --rates 1000000,0 --ticks 2000000

Each row is one run, all in one invocation:

* a **publisher** process binds the ticks endpoint (an XPUB: it sends exactly as the gateway's
  PUB does, SNDHWM the gateway's default, and it sees when the subscriber has subscribed, so no
  tick goes out before anyone listens) and sends pre-encoded ``ticks`` frames of 256 rows of 4
  symbols, the market-data gateway's batched form (``protocol.encode_ticks``, what
  ``--batch-ticks 256`` sends), paced to the row's rate (0: as fast as it can);
* the receiver is either a **plain SUB** process that only counts frames (the raw PUB/SUB
  ceiling of the same frames, same RCVHWM), or a **real recorder** (``main.py worker recorder``
  under bench.procs' stand-in supervisor), which is then stopped (SIGTERM: its teardown rolls the
  last raw log and waits for the roll thread) and its recording read back.

Reported: the publisher's achieved rate, ticks received, lost (the recorder's heartbeat ``lost``
counter: seq gaps it saw; for the plain SUB, sent - received), the seq gaps and rows in Parquet
after teardown, and the teardown time (the backlog of rolls).  Nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import zmq

from bench.procs import REPO, Fleet
from workers import protocol as P

SYMBOLS = ("AAPL", "MSFT", "GOOG", "AMZN")
ROWS = 256
#: the market-data gateway's default SNDHWM (workers/marketdata/gateway.py DEFAULT_HWM)
SNDHWM = 100_000
#: the recorder's default ticks RCVHWM (RecorderConfig.tick_hwm), also the plain SUB's
RCVHWM = 1_000_000
T0 = 1_767_366_600 * 10**9


def frames(n_ticks: int) -> list[bytes]:
    """``n_ticks`` (a multiple of 256) as ticks frames, the symbols in turn, seq per symbol."""
    out, seq, ts = [], dict.fromkeys(SYMBOLS, 0), T0
    for k in range(n_ticks // ROWS):
        s = SYMBOLS[k % len(SYMBOLS)]
        rows = []
        for _ in range(ROWS):
            seq[s] += 1
            ts += 1_000
            px = 100.0 + (seq[s] % 100) * 0.01
            rows.append((seq[s], ts, px, px - 0.01, px + 0.01, 100, 200, seq[s]))
        out.append(P.encode_ticks(s, rows, epoch=1))
    return out


# ----------------------------------------------------------------------------- child processes


def publish(endpoint: str, n_ticks: int, rate: float) -> None:
    """The publisher: encode, bind, wait for a ``tick.`` subscription and ``go`` on stdin,
    send, print ``{"sent", "seconds"}``."""
    fs = frames(n_ticks)
    ctx = zmq.Context()
    pub = ctx.socket(zmq.XPUB)
    pub.setsockopt(zmq.LINGER, 2000)
    pub.setsockopt(zmq.SNDHWM, SNDHWM)
    pub.bind(endpoint)
    print("ready", flush=True)
    while True:  # the subscriber's SUBSCRIBE: from now on it is sent every frame
        if pub.recv().startswith(b"\x01tick."):
            break
    print("subscribed", flush=True)
    sys.stdin.readline()
    send = pub.send
    per_frame = ROWS / rate if rate > 0 else 0.0
    clock = time.perf_counter
    t0 = clock()
    for k, f in enumerate(fs):
        if per_frame:
            due = t0 + k * per_frame
            while clock() < due:
                pass
        send(f)
    dt = clock() - t0
    t_end = time.monotonic()  # system-wide: comparable with the other processes' times
    print(json.dumps({"sent": len(fs) * ROWS, "seconds": dt, "t_start": t_end - dt, "t_end": t_end}), flush=True)
    pub.close()
    ctx.term()


def count(endpoint: str) -> None:
    """The plain SUB: count frames until 2 s of silence after the first, print the ticks."""
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.RCVHWM, RCVHWM)
    sub.setsockopt(zmq.SUBSCRIBE, b"tick.")
    sub.connect(endpoint)
    n = 0
    t_last = 0.0
    recv = sub.recv
    while sub.poll(60_000 if n == 0 else 2_000):
        while True:
            try:
                recv(zmq.NOBLOCK)
            except zmq.Again:
                break
            n += 1
        t_last = time.monotonic()
    print(json.dumps({"received": n * ROWS, "t_last": t_last}), flush=True)
    sub.close(0)
    ctx.term()


def _child(*args: str, stdout=subprocess.PIPE) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "bench.recorder", *args], cwd=REPO, stdin=subprocess.PIPE,
                            stdout=stdout, text=True)


def _expect(proc: subprocess.Popen, word: str, what: str) -> None:
    line = proc.stdout.readline().strip()
    if line != word:
        raise RuntimeError(f"{what}: expected {word!r}, got {line!r}")


# ----------------------------------------------------------------------------- one run


def run(receiver: str, n_ticks: int, rate: float) -> dict:
    fleet = Fleet("recorder")
    pub = cnt = None
    try:
        ep = fleet.endpoints.ticks
        pub = _child("publish", ep, str(n_ticks), str(rate))
        _expect(pub, "ready", "publisher")
        if receiver == "sub":
            cnt = _child("count", ep)
        else:
            rec = fleet.start("recorder", "recorder", "--record-dir", str(fleet.dir / "recordings"), "--roll-seconds", "2")
        _expect(pub, "subscribed", "publisher")
        pub.stdin.write("go\n")
        pub.stdin.flush()
        sent = json.loads(pub.stdout.readline())
        pub.wait(30)
        out = {"receiver": receiver, "target": rate, "sent": sent["sent"], "rate": sent["sent"] / sent["seconds"]}

        def timing(got: int, t_last: float) -> dict:
            # receive rate: from the first tick sent to the last one received (at "max" the
            # publisher only fills the queues, and this is what the receiver can take);
            # drain: how long after the last send the receiver still had ticks queued
            return {"received": got, "recv_rate": got / max(1e-9, t_last - sent["t_start"]), "drain_s": max(0.0, t_last - sent["t_end"])}

        if receiver == "sub":
            c = json.loads(cnt.stdout.readline())
            cnt.wait(10)
            return {**out, **timing(c["received"], c["t_last"]), "lost": sent["sent"] - c["received"], "gaps": None, "rows": None,
                    "teardown_s": None}

        # the recorder has it all when its tick counter reaches what was sent (or stops moving
        # for 10 heartbeats); each heartbeat's arrival time stands for its count (0.1 s apart)
        seen = {"beats": rec.heartbeats, "n": -1, "t": 0.0, "still": 0}

        def settled() -> bool:
            if rec.heartbeats == seen["beats"]:
                return False
            seen["beats"] = rec.heartbeats
            n = rec.counter("ticks")
            if n != seen["n"]:
                seen.update(n=n, t=time.monotonic(), still=0)
            else:
                seen["still"] += 1
            return n >= sent["sent"] or seen["still"] >= 10

        fleet.wait(settled, 300, "the recorder to take every tick")
        received, lost, backlog = rec.counter("ticks"), rec.counter("lost"), rec.gauge("roll_backlog", 0)
        out.update(timing(received, seen["t"]))
        t = time.perf_counter()
        fleet.stop("recorder", timeout=300)
        teardown = time.perf_counter() - t
        from workers.recording import open_recording

        (folder,) = [p for p in (fleet.dir / "recordings").iterdir() if p.is_dir()]
        r = open_recording(folder)
        gaps = 0
        for s in r.symbols:
            q = r.tick_columns(s)["seq"]
            gaps += int(q[-1] - q[0] + 1 - len(q)) + int(q[0] - 1)  # a gap at the start is lost too
        gaps += n_ticks // len(SYMBOLS) * (len(SYMBOLS) - len(r.symbols))
        return {**out, "lost": lost, "gaps": gaps, "rows": r.n_ticks, "teardown_s": teardown,
                "backlog": backlog}
    finally:
        for p in (pub, cnt):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()
        fleet.close()


def _median(runs: list[dict]) -> dict:
    out = dict(runs[0])
    for k, v in out.items():
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            out[k] = statistics.median(r[k] for r in runs)
    out["runs"] = len(runs)
    return out


def _fmt(v, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd")
    pp = sub.add_parser("publish")
    pp.add_argument("endpoint")
    pp.add_argument("ticks", type=int)
    pp.add_argument("rate", type=float)
    pc = sub.add_parser("count")
    pc.add_argument("endpoint")
    p.add_argument("--quick", action="store_true", help="1M ticks per run, rates 1M/s and max")
    p.add_argument("--ticks", type=int, default=None, help="ticks per run (default 4M; --quick 1M)")
    p.add_argument("--rates", default=None, help="comma-separated ticks/s, 0 = as fast as possible (default 250000,500000,1000000,0)")
    p.add_argument("--repeat", type=int, default=1, help="runs per row; the median is shown")
    p.add_argument("--json", default=None, help="also write the rows as JSON here")
    a = p.parse_args(argv)
    if a.cmd == "publish":
        publish(a.endpoint, a.ticks, a.rate)
        return 0
    if a.cmd == "count":
        count(a.endpoint)
        return 0
    n = a.ticks or (1_000_000 if a.quick else 4_000_000)
    n -= n % (ROWS * len(SYMBOLS))
    rates = [float(x) for x in (a.rates or ("1000000,0" if a.quick else "250000,500000,1000000,0")).split(",")]
    rows = []
    for rate in rates:
        for receiver in ("sub", "recorder"):
            runs = [run(receiver, n, rate) for _ in range(a.repeat)]
            rows.append(_median(runs))
            print(f"  {receiver} at {rate:,.0f}/s: {rows[-1]}", file=sys.stderr, flush=True)
    print(f"recorder through sockets: {n:,} ticks per run in ticks frames of {ROWS} rows, {len(SYMBOLS)} symbols, "
          f"ipc, median of {a.repeat}")
    print(f"| {'receiver':20} | {'target/s':>10} | {'sent/s':>10} | {'received':>10} | {'received/s':>10} | {'drain s':>7} | {'lost':>9} "
          f"| {'Parquet gaps':>12} | {'Parquet rows':>12} | {'teardown s':>10} |")
    print(f"|{'-' * 22}|{'-' * 12}|{'-' * 12}|{'-' * 12}|{'-' * 12}|{'-' * 9}|{'-' * 11}|{'-' * 14}|{'-' * 14}|{'-' * 12}|")
    for r in rows:
        name = "plain SUB (counts)" if r["receiver"] == "sub" else "recorder"
        target = "max" if not r["target"] else f"{r['target']:,.0f}"
        print(f"| {name:20} | {target:>10} | {r['rate']:10,.0f} | {r['received']:10,.0f} | {r['recv_rate']:10,.0f} | {r['drain_s']:7.2f} | {r['lost']:9,.0f} | "
              f"{_fmt(r['gaps'], '12,.0f'):>12} | {_fmt(r['rows'], '12,.0f'):>12} | {_fmt(r['teardown_s'], '10.1f'):>10} |")
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
