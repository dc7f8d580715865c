"""Recorder throughput, offline (docs/recording.md; the worker is workers/recorder/worker.py).

    python -m bench.recorder            # 2M ticks in frames of 256 rows, 4 symbols
    python -m bench.recorder --quick    # 200k ticks

Two stages, each on one core, no sockets:

* ingest: what the worker does per received frame (decode the ticks frame with the protocol's
  own ``tick_frame`` to check ``seq``, length-prefix it) and per batch of 64 frames (one
  ``os.write`` to the raw log);
* roll: the worker's own ``roll_log`` (read the raw log, decode, write zstd Parquet by date and
  symbol, delete the log), then ``open_recording`` reading it back.

The socket side (SUB receive at the gateway's rate) is measured by bench's gateway runs; the
recorder keeps up with 0 lost while ingest is faster than the feed.  Nothing is asserted.
"""

from __future__ import annotations

import argparse
import os
import struct
import tempfile
import time
from pathlib import Path

from workers import protocol as P
from workers.recorder.worker import roll_log
from workers.recording import open_recording

SYMBOLS = ("AAPL", "MSFT", "GOOG", "AMZN")
_LEN = struct.Struct("<I")
ROWS, BATCH = 256, 64


def frames(n_ticks: int) -> list[bytes]:
    out, seq, ts = [], {s: 0 for s in SYMBOLS}, 1_767_366_600 * 10**9
    for k in range(n_ticks // ROWS):
        s = SYMBOLS[k % len(SYMBOLS)]
        rows = []
        for _ in range(ROWS):
            seq[s] += 1
            ts += 1_000_000
            px = 100.0 + (seq[s] % 100) * 0.01
            rows.append((seq[s], ts, px, px - 0.01, px + 0.01, 100, 200, seq[s]))
        out.append(P.encode_ticks(s, rows))
    return out


def ingest(fs: list[bytes], log: Path) -> float:
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    last: dict = {}
    lost = 0
    t = time.perf_counter()
    for i in range(0, len(fs), BATCH):
        buf = []
        for f in fs[i: i + BATCH]:
            sym, rows, epoch = P.tick_frame(f)
            prev = last.get((sym, epoch))
            if prev is not None and rows[0][0] > prev + 1:
                lost += rows[0][0] - prev - 1
            last[(sym, epoch)] = rows[-1][0]
            buf.append(_LEN.pack(len(f)))
            buf.append(f)
        os.write(fd, b"".join(buf))
    dt = time.perf_counter() - t
    os.close(fd)
    assert lost == 0
    return dt


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    a = p.parse_args(argv)
    n = 200_000 if a.quick else 2_000_000
    fs = frames(n)
    n = len(fs) * ROWS
    with tempfile.TemporaryDirectory() as d:
        rec = Path(d) / "rec"
        rec.mkdir()
        log = rec / "raw-0.log"
        t_in = ingest(fs, log)
        size = log.stat().st_size
        t = time.perf_counter()
        got, bad, torn = roll_log(log, part=0)
        t_roll = time.perf_counter() - t
        t = time.perf_counter()
        r = open_recording(rec)
        t_read = time.perf_counter() - t
        pq = sum(f.stat().st_size for f in rec.rglob("*.parquet"))
    assert got == n and r.n_ticks == n and not bad and not torn
    print(f"recorder, {n:,} ticks in frames of {ROWS} rows, {len(SYMBOLS)} symbols")
    print(f"| {'stage':38} | {'ticks/s':>12} | {'bytes':>12} |")
    print(f"|{'-' * 40}|{'-' * 14}|{'-' * 14}|")
    print(f"| {'ingest (decode, seq check, raw log)':38} | {n / t_in:12,.0f} | {size:12,} |")
    print(f"| {'roll (raw log -> Parquet zstd)':38} | {n / t_roll:12,.0f} | {pq:12,} |")
    print(f"| {'open_recording (read + checks)':38} | {n / t_read:12,.0f} | {'':12} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
