"""The recorder: every tick of the ticks endpoint, kept as a recording (docs/backtest.md).

Crash tolerant in two steps, like the exchange's journal:

* **Raw log.**  Frames are appended as they come, each ``[u32 length][frame]``, with one
  ``write`` per batch of the event loop (``raw-<n>.log`` in the recording's folder).  A SIGKILL
  loses at most the batch being read; a torn last record is counted and skipped when read.
* **Roll.**  Every ``--roll-seconds`` (and at a clean stop) the current log is closed, a new
  one started, and the closed one decoded and written as Parquet files
  (``parquet/ticks/date=.../symbol=.../part-<n>.parquet``, workers/recording.py) before it is
  deleted.  At start, logs a killed recorder left behind (in any recording) are rolled first.

Lost ticks are counted, never hidden: a frame that does not decode (``bad_frames``) and every
gap in a symbol's ``seq`` within one epoch of the gateway (``lost``: ticks the SUB queue
dropped).  Size cap: after a roll, while the recordings folder is over ``--max-mb``, the oldest
recording other than the current one is deleted (``deleted_recordings``).  A write that fails
(a full disk) stops the recording with one error in the log and ``recording: false`` in the
heartbeat; the worker stays up, and tries again at the next roll.
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import struct
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import zmq

from workers import protocol as P
from workers.config import ConfigOf, at_least, build_parser_for, data_dir, option, positive
from workers.recording import TICK_COLUMNS, RecordingError, write_ticks
from workers.runtime import Worker, run_worker

_LEN = struct.Struct("<I")
COUNTERS = ("frames", "ticks", "bytes", "rolls", "lost", "bad_frames", "torn_records", "write_errors", "deleted_recordings")


def read_log(path: Path) -> tuple[list[bytes], bool]:
    """The frames of a raw log, and whether its end was torn (a record cut short)."""
    data = path.read_bytes()
    out, i, n = [], 0, len(data)
    while i + 4 <= n:
        (size,) = _LEN.unpack_from(data, i)
        if i + 4 + size > n:
            break
        out.append(data[i + 4: i + 4 + size])
        i += 4 + size
    return out, i != n


def frames_to_columns(frames: list[bytes]) -> tuple[dict[str, dict[str, np.ndarray]], int]:
    """Tick frames as columns per symbol, and how many frames did not decode."""
    per: dict[str, list] = {}
    bad = 0
    for f in frames:
        try:
            sym, rows, _epoch = P.tick_frame(f)
        except (P.ProtocolError, ValueError):
            bad += 1
            continue
        per.setdefault(sym, []).extend(rows)
    cols = {}
    for sym, rows in per.items():
        t = list(zip(*rows))
        cols[sym] = {c: np.array(t[k]) for k, c in enumerate(TICK_COLUMNS)}
    return cols, bad


def roll_log(log: Path, part: int) -> tuple[int, int, bool]:
    """Write ``log``'s ticks as Parquet beside it, then delete it: (ticks, bad frames, torn)."""
    frames, torn = read_log(log)
    # decoding makes millions of tuples of scalars, which cannot form cycles but would trigger
    # the cyclic collector again and again (about a third of the roll): pause it meanwhile
    was = gc.isenabled()
    gc.disable()
    try:
        cols, bad = frames_to_columns(frames)
    finally:
        if was:
            gc.enable()
    root = log.parent / "parquet" / "ticks"
    n = 0
    for sym, c in cols.items():
        try:
            write_ticks(root, sym, c, part=part)
        except RecordingError:
            # rows that cannot be trusted are kept out of the recording (counted as bad)
            bad += 1
            continue
        n += len(c["ts"])
    log.unlink()
    return n, bad, torn


@dataclass(frozen=True)
class RecorderConfig:
    record_dir: str | None = option(None, "where recordings go (a folder per run)", default_text="<data folder>/recordings")
    max_mb: float = option(1024.0, "size cap of the recordings folder in MiB: beyond it the oldest recordings are deleted", check=positive)
    roll_seconds: float = option(30.0, "seconds between two rolls of the raw log into Parquet", check=positive)
    tick_hwm: int = option(1_000_000, "receive high-water mark of the ticks SUB socket", check=at_least(1))


class RecorderWorker(Worker):
    kind = "recorder"
    timer_interval = 0.5
    config = ConfigOf("RecorderConfig")

    def setup(self) -> None:
        a = self.config
        self.root = Path(a.record_dir) if a.record_dir else data_dir() / "recordings"
        self.root.mkdir(parents=True, exist_ok=True)
        for k in COUNTERS:
            self.stats.counters[k] = 0
        self._roll_leftovers()
        self.folder = self.root / (time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + f"-{os.getpid()}")
        self.folder.mkdir(parents=True, exist_ok=True)
        self._part = 0
        self._buf: list[bytes] = []
        self._fd: int | None = None
        self._recording = True
        self._open_log()
        self._next_roll = time.monotonic() + a.roll_seconds
        self._last_seq: dict[tuple[str, int], int] = {}
        self.ticks = self.socket(zmq.SUB, connect=self.endpoints.ticks, rcvhwm=a.tick_hwm, subscribe=[b"tick."])
        self.add_reader(self.ticks, self._on_tick)
        self.log.info("recording ticks into %s (cap %.0f MiB)", self.folder, a.max_mb)

    def _open_log(self) -> None:
        self._log_path = self.folder / f"raw-{self._part}.log"
        try:
            self._fd = os.open(self._log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            self._recording = True
        except OSError as e:
            self._fail(e)

    def _fail(self, e: OSError) -> None:
        self.stats.inc("write_errors")
        if self._recording:
            self.log.error("recording stopped: %s (retried at the next roll)", e)
        self._recording = False
        self._buf.clear()

    def _roll_leftovers(self) -> None:
        for log in sorted(self.root.glob("*/raw-*.log")):
            try:
                part = int(log.stem.split("-")[1]) + 1000  # apart from the parts its run wrote
                n, bad, torn = roll_log(log, part)
            except (OSError, ValueError, RecordingError) as e:
                self.log.error("could not roll %s left by a stopped recorder: %s", log, e)
                continue
            self.stats.inc("bad_frames", bad)
            self.stats.inc("torn_records", int(torn))
            self.log.info("rolled %s left by a stopped recorder: %d ticks", log, n)

    def _on_tick(self, frame: bytes) -> None:
        self.stats.inc("frames")
        try:
            sym, rows, epoch = P.tick_frame(frame)
        except (P.ProtocolError, ValueError):
            self.stats.inc("bad_frames")
            return
        key = (sym, epoch)
        last = self._last_seq.get(key)
        first = rows[0][0]
        if last is not None and first > last + 1:
            self.stats.inc("lost", first - last - 1)
        self._last_seq[key] = rows[-1][0]
        self.stats.inc("ticks", len(rows))
        if self._recording:
            self._buf.append(_LEN.pack(len(frame)))
            self._buf.append(bytes(frame))

    def on_batch_end(self) -> None:
        if not self._buf or self._fd is None:
            return
        data = b"".join(self._buf)
        self._buf.clear()
        try:
            os.write(self._fd, data)  # one write per batch
            self.stats.inc("bytes", len(data))
        except OSError as e:
            self._fail(e)

    def on_timer(self, now: float) -> None:
        if now >= self._next_roll:
            self._next_roll = now + self.config.roll_seconds
            self._roll()
        self.stats.gauges["recording"] = self._recording
        self.stats.gauges["folder"] = str(self.folder)

    def _roll(self) -> None:
        self.on_batch_end()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        log, part = self._log_path, self._part
        self._part += 1
        self._open_log()
        if log.exists():
            try:
                n, bad, torn = roll_log(log, part)
                self.stats.inc("rolls")
                self.stats.inc("bad_frames", bad)
                self.stats.inc("torn_records", int(torn))
            except OSError as e:
                self._fail(e)
        self._enforce_cap()

    def _enforce_cap(self) -> None:
        cap = self.config.max_mb * 2**20

        def size(p: Path) -> int:
            return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())

        others = sorted(p for p in self.root.iterdir() if p.is_dir() and p != self.folder)
        total = sum(size(p) for p in others) + size(self.folder)
        while total > cap and others:
            victim = others.pop(0)
            total -= size(victim)
            shutil.rmtree(victim, ignore_errors=True)
            self.stats.inc("deleted_recordings")
            self.log.info("deleted the oldest recording %s (over the %.0f MiB cap)", victim.name, self.config.max_mb)

    def teardown(self) -> None:
        try:
            self._roll()
        finally:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
                if self._log_path.exists() and self._log_path.stat().st_size == 0:
                    self._log_path.unlink()


def build_parser() -> argparse.ArgumentParser:
    return build_parser_for(RecorderConfig, "main.py worker recorder", "Recorder: SUB ticks, append raw frames, roll them into Parquet recordings.")


def main(argv: list[str]) -> int:
    return run_worker(RecorderWorker, build_parser(), argv)
