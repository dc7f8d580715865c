"""Run a real worker with every latency sample kept: ``python -m bench.instrumented OUT KIND [args]``.

This is ``main.py worker KIND [args]`` with one difference: before the worker is built,
``workers.runtime.Stats`` is replaced by :class:`RecordingStats`, which does everything the
runtime's ``Stats`` does (the heartbeat still reports windowed percentiles) and also appends
each latency sample to an ``array('q')`` per hop and notes the monotonic time of the first and
last increment of the ``ticks`` counter, plus (time, count) each time it passes a multiple of
1000 (so a receive rate can be taken over any part of the run, e.g. after a warm-up).  Heartbeat percentiles only describe the last 8192
samples of each 0.1 s window; the benchmarks want exact percentiles over the whole run and the
receive rate measured where the ticks arrive.

When the worker exits (SIGTERM from the benchmark), OUT.json gets the counters, gauges and
first/last times, and OUT.<hop>.i64 the raw samples (native int64, nanoseconds).
"""

from __future__ import annotations

import json
import sys
import time
from array import array
from pathlib import Path
from typing import Any

from workers import runtime

#: counters whose first and last increment times are recorded (receive-rate measurements)
TIMED_COUNTERS = ("ticks",)
#: per hop, at most this many samples are kept (memory bound for long runs)
MAX_SAMPLES = 20_000_000
#: a timed counter's (time, count) is noted each time it passes a multiple of this
TIMELINE_STEP = 1000


class RecordingStats(runtime.Stats):
    instances: list[RecordingStats] = []

    def __init__(self) -> None:
        super().__init__()
        self.samples: dict[str, array] = {}
        self.first: dict[str, int] = {}
        self.last: dict[str, int] = {}
        self.first_n: dict[str, int] = {}
        self.timeline: dict[str, list[tuple[int, int]]] = {}
        RecordingStats.instances.append(self)

    def inc(self, key: str, n: int = 1) -> None:
        super().inc(key, n)
        if key in TIMED_COUNTERS:
            t = time.monotonic_ns()
            if key not in self.first:
                self.first[key] = t
                self.first_n[key] = n
                self.timeline[key] = []
            self.last[key] = t
            c = self.counters[key]
            if c // TIMELINE_STEP != (c - n) // TIMELINE_STEP:
                self.timeline[key].append((t, c))

    def _arr(self, hop: str) -> array:
        a = self.samples.get(hop)
        if a is None:
            a = self.samples[hop] = array("q")
        return a

    def lat(self, hop: str, ns: int) -> None:
        super().lat(hop, ns)
        a = self._arr(hop)
        if len(a) < MAX_SAMPLES:
            a.append(ns)

    def lat_many(self, hop: str, values) -> None:  # present when the runtime has it
        values = list(values)
        super().lat_many(hop, values)
        a = self._arr(hop)
        if len(a) < MAX_SAMPLES:
            a.extend(values)


def dump(out: Path) -> None:
    counters: dict[str, int] = {}
    gauges: dict[str, Any] = {}
    first: dict[str, int] = {}
    last: dict[str, int] = {}
    first_n: dict[str, int] = {}
    timeline: dict[str, list] = {}
    hops: dict[str, int] = {}
    for st in RecordingStats.instances:
        counters.update(st.counters)
        gauges.update({k: v for k, v in st.gauges.items() if isinstance(v, (int, float, str, bool))})
        first.update(st.first)
        last.update(st.last)
        first_n.update(st.first_n)
        timeline.update(st.timeline)
        for hop, a in st.samples.items():
            with open(f"{out}.{hop}.i64", "wb") as f:
                a.tofile(f)
            hops[hop] = len(a)
    tmp = Path(f"{out}.tmp")
    tmp.write_text(json.dumps({"counters": counters, "gauges": gauges, "first": first, "last": last, "first_n": first_n, "timeline": timeline, "hops": hops}))
    tmp.replace(out)  # the benchmark waits for OUT itself: write it last, atomically


def load_result(out: Path) -> dict[str, Any]:
    """The JSON summary with ``samples[hop]`` as numpy int64 arrays."""
    import numpy as np

    d = json.loads(Path(out).read_text())
    d["samples"] = {hop: np.fromfile(f"{out}.{hop}.i64", dtype=np.int64) for hop in d["hops"]}
    return d


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print("usage: python -m bench.instrumented OUT KIND [worker options]", file=sys.stderr)
        return 2
    out, kind, rest = Path(argv[0]), argv[1], argv[2:]
    runtime.Stats = RecordingStats  # Worker.__init__ builds its Stats from this module global
    from workers.registry import run

    try:
        return run(kind, rest)
    finally:
        dump(out)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
