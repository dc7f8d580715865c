"""The recorder: ticks, depth, execution reports and signals, kept as a recording
(docs/recording.md, docs/backtest.md).

What it subscribes to, each the way the window does (a SUB beside the others: it takes nothing
from anyone): ``tick.`` and ``depth.`` on the ticks endpoint, ``exec.`` (``order_update``,
``fill``) on the execution endpoint, ``signal.`` (``signal_decision``: every signal the
executor pulled from the strategies, with its decision) on the events endpoint.  The signals
endpoint itself is the executor's PULL: a second PULL there would steal half the signals.

Crash tolerant in two steps, like the exchange's journal:

* **Raw log.**  Frames are appended as they come, each ``[u32 length][frame]``, with one
  ``write`` per batch of the event loop (``raw-<n>.log`` in the recording's folder), every
  stream in the one log (a frame's topic says which table it goes to).  A SIGKILL loses at most
  the batch being read; a torn last record is counted and skipped when read.
* **Roll.**  Every ``--roll-seconds`` (and at a clean stop) the current log is closed and a new
  one started at once; the closed one is handed to the roll thread, which decodes it, writes
  it as Parquet (``parquet/<table>/date=.../symbol=.../part-<n>.parquet``, workers/recording.py),
  rewrites ``meta.json`` and then deletes the log.  The loop goes on receiving meanwhile (a roll
  costs about as much CPU as the ticks took to arrive; on the loop it would stall receiving).
  One thread: rolls are done in order, and never two at once on one folder.  ``raw-<n>.log``
  always becomes ``part-<n>``, so a log rolled twice (a kill between its Parquet files and its
  deletion) overwrites its own files: nothing doubled.  At start, logs a killed recorder left
  behind (in any recording) are rolled first, by the same thread.

Lost messages are counted, never hidden: a frame that does not decode (``bad_frames``) and
every gap in a symbol's ``seq`` within one epoch of the gateway (``lost``: ticks the SUB queue
dropped; ``depth_lost`` for depth, ``exec_lost`` for the execution stream's own ``seq``).
Size cap: after a roll, while the recordings folder is over ``--max-mb``, the oldest recording
other than the current one is deleted (``deleted_recordings``).  A write that fails (a full
disk) stops the recording with one error in the log and ``recording: false`` in the heartbeat;
the worker stays up, and tries again at the next roll.
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import struct
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import msgspec
import numpy as np
import zmq

from workers import protocol as P
from workers.config import ConfigOf, at_least, build_parser_for, data_dir, option, positive
from workers.recording import TABLES, TICK_COLUMNS, RecordingError, message_row, read_meta, utc_now, write_meta, write_table, write_ticks
from workers.runtime import Worker, run_worker

_LEN = struct.Struct("<I")
COUNTERS = ("frames", "ticks", "depth", "orders", "fills", "signals", "bytes", "rolls", "lost", "depth_lost", "exec_lost",
            "bad_frames", "torn_records", "write_errors", "deleted_recordings")

#: topic prefix of a frame in the raw log -> its table (tick. first: the hot path)
TOPIC_TABLES = ((b"tick.", "ticks"), (b"depth.", "depth"), (b"exec.order.", "orders"), (b"exec.fill.", "fills"), (b"signal.", "signals"))
_EXPECT = {"depth": P.Depth, "orders": P.OrderUpdate, "fills": P.Fill, "signals": P.SignalDecision}


def read_log(path: Path) -> tuple[list[bytes], bool]:
    """The frames of a raw log, and whether its end was torn (a record cut short)."""
    data = path.read_bytes()
    out, i, n = [], 0, len(data)
    mv = memoryview(data)
    while i + 4 <= n:
        (size,) = _LEN.unpack_from(data, i)
        if i + 4 + size > n:
            break
        out.append(mv[i + 4: i + 4 + size])
        i += 4 + size
    return out, i != n


# The roll's decoder of tick frames: the frames were checked one by one when they arrived
# (the log holds only frames that passed P.tick_frame), and write_ticks checks every row again
# before anything is written, so here the rows go straight into a structured numpy array, which
# makes the columns in C: about 4x the speed of tuples transposed with zip.
_RowT = tuple[int, int, float, float, float, int, int, int]


class _RawTicks(msgspec.Struct, tag="ticks", tag_field="type"):
    symbol: str
    ticks: list[_RowT]
    epoch: int = 0


class _RawTick(msgspec.Struct, tag="tick", tag_field="type"):
    symbol: str
    seq: int
    ts: int
    last: float
    bid: float
    ask: float
    bid_size: int
    ask_size: int
    volume: int
    epoch: int = 0


_RAW_DECODER = msgspec.msgpack.Decoder(_RawTicks | _RawTick)
_TICK_DTYPE = np.dtype([(c, "i8" if c in ("seq", "ts", "bid_size", "ask_size", "volume") else "f8") for c in TICK_COLUMNS])


@dataclass
class LogContents:
    """A raw log decoded: tick columns per symbol, rows of the other tables per symbol."""

    ticks: dict[str, dict[str, np.ndarray]]
    rows: dict[str, dict[str, list[dict]]]
    bad: int


def frames_to_tables(frames) -> LogContents:
    """The frames of a raw log sorted into tables; a frame that does not decode is counted."""
    per: dict[str, list] = {}
    rows: dict[str, dict[str, list[dict]]] = {}
    bad = 0
    for f in frames:
        i = f.find(b"\x00") if isinstance(f, bytes) else bytes(f[:64]).find(b"\x00")
        if i <= 0:
            bad += 1
            continue
        topic = bytes(f[:i])
        table = next((t for p, t in TOPIC_TABLES if topic.startswith(p)), None)
        try:
            if table == "ticks":
                m = _RAW_DECODER.decode(f[i + 1:])
                if m.__class__ is _RawTicks:
                    per.setdefault(m.symbol, []).extend(m.ticks)
                else:
                    per.setdefault(m.symbol, []).append((m.seq, m.ts, m.last, m.bid, m.ask, m.bid_size, m.ask_size, m.volume))
            elif table is not None:
                name, sym, row = message_row(P.decode(bytes(f[i + 1:]), _EXPECT[table]))
                rows.setdefault(name, {}).setdefault(sym, []).append(row)
            else:
                bad += 1
        except (msgspec.ValidationError, msgspec.DecodeError, P.ProtocolError, ValueError):
            bad += 1
    ticks = {}
    for sym, r in per.items():
        a = np.array(r, dtype=_TICK_DTYPE)
        ticks[sym] = {c: a[c] for c in TICK_COLUMNS}
    return LogContents(ticks, rows, bad)


def frames_to_columns(frames) -> tuple[dict[str, dict[str, np.ndarray]], int]:
    """Tick frames as columns per symbol, and how many frames did not decode."""
    c = frames_to_tables(frames)
    return c.ticks, c.bad


def roll_log(log: Path, part: int) -> tuple[dict[str, int], int, bool]:
    """Write ``log``'s frames as Parquet tables beside it (``part-<part>`` files), then delete
    it: (rows written per table, bad frames, torn)."""
    frames, torn = read_log(log)
    # decoding makes millions of tuples of scalars, which cannot form cycles but would trigger
    # the cyclic collector again and again: pause it meanwhile
    was = gc.isenabled()
    gc.disable()
    try:
        c = frames_to_tables(frames)
    finally:
        if was:
            gc.enable()
    del frames
    root = log.parent / "parquet"
    counts = dict.fromkeys(TABLES, 0)
    bad = c.bad
    for sym, cols in c.ticks.items():
        try:
            write_ticks(root / "ticks", sym, cols, part=part)
        except RecordingError:
            # rows that cannot be trusted are kept out of the recording (counted as bad)
            bad += 1
            continue
        counts["ticks"] += len(cols["ts"])
    for name, per_sym in c.rows.items():
        for sym, rows in per_sym.items():
            try:
                write_table(root / name, name, sym, rows, part=part)
            except RecordingError:
                bad += 1
                continue
            counts[name] += len(rows)
    log.unlink()
    return counts, bad, torn


def _started_of(folder: Path) -> str:
    meta = read_meta(folder)
    if meta and meta.get("started"):
        return str(meta["started"])
    try:  # the folder's name is its start time
        t = time.strptime(folder.name.split("-")[0], "%Y%m%dT%H%M%S")
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", t)
    except ValueError:
        return ""


@dataclass(frozen=True)
class RecorderConfig:
    record_dir: str | None = option(None, "where recordings go (a folder per run)", default_text="<data folder>/recordings")
    max_mb: float = option(1024.0, "size cap of the recordings folder in MiB: beyond it the oldest recordings are deleted", check=positive)
    roll_seconds: float = option(30.0, "seconds between two rolls of the raw log into Parquet", check=positive)
    tick_hwm: int = option(1_000_000, "receive high-water mark of the ticks SUB socket (frames)", check=at_least(1))
    events_hwm: int = option(100_000, "receive high-water mark of the execution and events SUB sockets", check=at_least(1))


@dataclass
class _RollResult:
    counts: dict[str, int]
    bad: int
    torn: bool
    deleted: int
    leftover: Path | None = None


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
        # one thread: rolls in order, one at a time (see the module docstring)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="roll")
        self._pending: list[Future] = []
        leftovers = sorted(self.root.glob("*/raw-*.log"))
        self.folder = self.root / (time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + f"-{os.getpid()}")
        self.folder.mkdir(parents=True, exist_ok=True)
        self._started_at = utc_now()
        for log in leftovers:
            self._pending.append(self._pool.submit(self._roll_leftover, log))
        self._part = 0
        self._buf: list[bytes] = []
        self._fd: int | None = None
        self._recording = True
        self._open_log()
        self._next_roll = self.clock.monotonic() + a.roll_seconds
        self._last_seq: dict[tuple[str, int], int] = {}
        self._depth_seq: dict[tuple[str, int], int] = {}
        self._exec_seq: dict[int, int] = {}
        ep = self.endpoints
        self.ticks = self.socket(zmq.SUB, connect=ep.ticks, rcvhwm=a.tick_hwm, subscribe=[b"tick.", b"depth."])
        self.execution = self.socket(zmq.SUB, connect=ep.execution, rcvhwm=a.events_hwm, subscribe=[b"exec."])
        self.events = self.socket(zmq.SUB, connect=ep.events, rcvhwm=a.events_hwm, subscribe=[b"signal."])
        self.add_reader(self.ticks, self._on_market)
        self.add_reader(self.execution, self._on_exec)
        self.add_reader(self.events, self._on_event)
        self.log.info("recording into %s (cap %.0f MiB)", self.folder, a.max_mb)

    # ------------------------------------------------------------------ the loop's side
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

    def _keep(self, frame: bytes) -> None:
        if self._recording:
            self._buf.append(_LEN.pack(len(frame)))
            self._buf.append(frame)

    def _on_market(self, frame: bytes) -> None:
        self.stats.inc("frames")
        if frame.startswith(b"depth."):
            self._on_depth(frame)
            return
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
        self._keep(frame)

    def _on_depth(self, frame: bytes) -> None:
        try:
            topic, d = P.decode_pub(frame, P.Depth)
        except (P.ProtocolError, ValueError):
            self.stats.inc("bad_frames")
            return
        key = (d.symbol, d.epoch)
        last = self._depth_seq.get(key)
        if last is not None and d.seq > last + 1:
            self.stats.inc("depth_lost", d.seq - last - 1)
        self._depth_seq[key] = d.seq
        self.stats.inc("depth")
        self._keep(frame)

    def _on_exec(self, frame: bytes) -> None:
        try:
            _topic, m = P.decode_pub(frame, (P.OrderUpdate, P.Fill))
        except (P.ProtocolError, ValueError):
            self.stats.inc("bad_frames")
            return
        last = self._exec_seq.get(m.epoch)
        if last is not None and m.seq > last + 1:
            self.stats.inc("exec_lost", m.seq - last - 1)
        if m.seq:
            self._exec_seq[m.epoch] = max(m.seq, last or 0)
        self.stats.inc("orders" if m.__class__ is P.OrderUpdate else "fills")
        self._keep(frame)

    def _on_event(self, frame: bytes) -> None:
        try:
            P.decode_pub(frame, P.SignalDecision)
        except (P.ProtocolError, ValueError):
            self.stats.inc("bad_frames")
            return
        self.stats.inc("signals")
        self._keep(frame)

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
        self._harvest()
        self.stats.gauges["recording"] = self._recording
        self.stats.gauges["folder"] = str(self.folder)
        self.stats.gauges["roll_backlog"] = len(self._pending)

    def _roll(self) -> None:
        """Close the current log, start the next, and hand the closed one to the roll thread."""
        self.on_batch_end()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        log, part = self._log_path, self._part
        self._part += 1
        self._open_log()
        if log.exists():
            self._pending.append(self._pool.submit(self._roll_current, log, part))

    def _harvest(self, wait: bool = False) -> None:
        """Count what the roll thread finished (counters are the loop's: only it touches them)."""
        keep = []
        for f in self._pending:
            if not (wait or f.done()):
                keep.append(f)
                continue
            try:
                r: _RollResult = f.result()
            except (OSError, RecordingError, ValueError) as e:
                # the raw log stays where it is: the next start rolls it (nothing lost)
                self.stats.inc("write_errors")
                self.log.error("a roll failed: %s (its raw log is kept and rolled at the next start)", e)
                continue
            self.stats.inc("rolls", int(r.leftover is None))
            self.stats.inc("bad_frames", r.bad)
            self.stats.inc("torn_records", int(r.torn))
            self.stats.inc("deleted_recordings", r.deleted)
            if r.leftover is not None:
                self.log.info("rolled %s left by a stopped recorder: %s", r.leftover, r.counts)
        self._pending = keep

    # ------------------------------------------------------------------ the roll thread's side
    def _roll_current(self, log: Path, part: int) -> _RollResult:
        counts, bad, torn = roll_log(log, part)
        write_meta(self.folder, started=self._started_at, closed=None)
        return _RollResult(counts, bad, torn, self._enforce_cap())

    def _roll_leftover(self, log: Path) -> _RollResult:
        folder = log.parent
        counts, bad, torn = roll_log(log, int(log.stem.split("-")[1]))
        if not list(folder.glob("raw-*.log")):
            # its recorder is gone: the recording is closed now
            write_meta(folder, started=_started_of(folder), closed=utc_now())
        return _RollResult(counts, bad, torn, 0, leftover=log)

    def _enforce_cap(self) -> int:
        cap = self.config.max_mb * 2**20

        def size(p: Path) -> int:
            return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())

        others = sorted(p for p in self.root.iterdir() if p.is_dir() and p != self.folder)
        total = sum(size(p) for p in others) + size(self.folder)
        deleted = 0
        while total > cap and others:
            victim = others.pop(0)
            total -= size(victim)
            shutil.rmtree(victim, ignore_errors=True)
            deleted += 1
            self.log.info("deleted the oldest recording %s (over the %.0f MiB cap)", victim.name, self.config.max_mb)
        return deleted

    def teardown(self) -> None:
        try:
            self._roll()
            self._harvest(wait=True)  # every roll done before the process ends
        finally:
            self._pool.shutdown(wait=True)
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
                if self._log_path.exists() and self._log_path.stat().st_size == 0:
                    self._log_path.unlink()
            try:
                write_meta(self.folder, started=self._started_at, closed=utc_now())
            except (OSError, RecordingError) as e:
                self.log.error("could not write %s: %s", self.folder / "meta.json", e)


def build_parser() -> argparse.ArgumentParser:
    return build_parser_for(RecorderConfig, "main.py worker recorder",
                            "Recorder: SUB ticks, depth, execution reports and signal decisions, append raw frames, roll them into Parquet recordings.")


def main(argv: list[str]) -> int:
    return run_worker(RecorderWorker, build_parser(), argv)
