"""Telemetry of a worker process: counters, gauges and per-hop latency percentiles, reported
with every heartbeat (see :mod:`workers.control_channel`), and the process's RSS.

Kept apart from the loop (:mod:`workers.runtime`) so that tools that only measure (the
benchmarks' ``RecordingStats``, tests) need none of the sockets.
"""

from __future__ import annotations

import collections
import os
import sys
from array import array
from typing import Any

try:  # for cheap percentiles at every heartbeat (LatencyRecorder.snapshot); optional
    import numpy as _np
except ImportError:  # pragma: no cover - numpy is a dependency, but the runtime works without
    _np = None

_I64_MAX = 2**63 - 1
try:
    _PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
except (ValueError, OSError, AttributeError):  # pragma: no cover - not POSIX
    _PAGE_SIZE = 4096


class LatencyRecorder:
    """Recent latency samples (ns) of one hop; percentiles in microseconds per snapshot.

    The samples since the last snapshot are kept in an ``array('q')`` (at most the newest
    ``maxlen`` count), not as Python ints: the snapshot at every heartbeat then needs no sort,
    no conversion and no freeing of thousands of int objects (a deque of 8192 ints cost ~0.3 ms
    per heartbeat, all of it a pause in the worker's loop).
    """

    __slots__ = ("samples", "count", "maxlen")

    def __init__(self, maxlen: int = 8192):
        self.samples = array("q")
        self.maxlen = maxlen
        self.count = 0

    def add(self, ns: int) -> None:
        s = self.samples
        try:
            s.append(ns)
        except OverflowError:  # beyond int64: a broken clock; keep the sample, clamped
            s.append(_I64_MAX if ns > 0 else -_I64_MAX)
        self.count += 1
        if len(s) >= 2 * self.maxlen:
            del s[: len(s) - self.maxlen]

    def add_many(self, values: list[int]) -> None:
        """Several samples at once (e.g. every tick of a batched frame)."""
        s = self.samples
        before = len(s)
        try:
            s.extend(values)
        except OverflowError:
            del s[before:]  # extend may have taken a prefix before failing
            for v in values:
                self.add(v)
            return
        self.count += len(values)
        if len(s) >= 2 * self.maxlen:
            del s[: len(s) - self.maxlen]

    def snapshot(self) -> dict[str, float] | None:
        s = self.samples
        if not s:
            return None
        if len(s) > self.maxlen:
            del s[: len(s) - self.maxlen]
        n = len(s)
        ranks = [min(n - 1, int(q * n)) for q in (0.50, 0.99, 0.999)] + [n - 1]
        if _np is not None and n > 64:
            # the same order statistics as sorting, by partition, on a copy of the raw buffer
            a = _np.frombuffer(s, dtype=_np.int64).copy()
            a.partition(ranks)
            vals = [int(a[k]) for k in ranks]
        else:
            srt = sorted(s)
            vals = [srt[k] for k in ranks]
        del s[:]
        p50, p99, p999, mx = vals
        return {"n": n, "p50_us": p50 / 1000.0, "p99_us": p99 / 1000.0, "p999_us": p999 / 1000.0, "max_us": mx / 1000.0}


class Stats:
    """Counters and per-hop latencies that a worker reports with every heartbeat."""

    def __init__(self) -> None:
        self.counters: collections.Counter[str] = collections.Counter()
        self.latency: dict[str, LatencyRecorder] = {}
        self.gauges: dict[str, Any] = {}

    def inc(self, key: str, n: int = 1) -> None:
        self.counters[key] += n

    def lat(self, hop: str, ns: int) -> None:
        rec = self.latency.get(hop)
        if rec is None:
            rec = self.latency[hop] = LatencyRecorder()
        rec.add(ns)

    def lat_many(self, hop: str, values: list[int]) -> None:
        """Record several latency samples (ns) of one hop; cheaper than one :meth:`lat` each."""
        rec = self.latency.get(hop)
        if rec is None:
            rec = self.latency[hop] = LatencyRecorder()
        rec.add_many(values)

    def snapshot(self) -> dict[str, Any]:
        lat = {}
        for hop, rec in self.latency.items():
            snap = rec.snapshot()
            if snap:
                lat[hop] = snap
        # Counters saturate at int64 on the way out: a count a peer can drive (ticks missed
        # across an absurd seq jump) must never make the heartbeat unpackable.
        return {"counters": {k: _int64(v) for k, v in self.counters.items()}, "latency": lat,
                "gauges": {k: _int64(v) for k, v in self.gauges.items()}}


#: what msgpack (and SQLite) hold: larger Python ints are saturated, not sent
INT64_MAX = 2**63 - 1


def _int64(v: Any) -> Any:
    if v.__class__ is int and not -INT64_MAX <= v <= INT64_MAX:
        return INT64_MAX if v > 0 else -INT64_MAX
    return v


_statm: tuple[int, int] | None = None  # (pid, fd): a forked child must open its own


def rss_bytes() -> int:
    """Resident set size of this process, or 0 where it cannot be read cheaply."""
    global _statm
    try:
        # one raw fd kept open and re-read from offset 0 (the kernel regenerates the text):
        # a text-mode open() per heartbeat cost ~50 us of the loop
        pid = os.getpid()
        if _statm is None or _statm[0] != pid:
            _statm = (pid, os.open("/proc/self/statm", os.O_RDONLY))
        return int(os.pread(_statm[1], 128, 0).split()[1]) * _PAGE_SIZE
    except (OSError, ValueError, IndexError, AttributeError):
        pass
    try:
        import resource

        r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return r if sys.platform == "darwin" else r * 1024
    except Exception:
        return 0


__all__ = ["LatencyRecorder", "Stats", "rss_bytes"]
