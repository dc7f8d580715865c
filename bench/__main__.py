"""``python -m bench``: TickDesk against raw pyzmq + msgpack, measured in one run, one table.

    python -m bench                 # the full run (a few minutes; the table in docs/performance.md)
    python -m bench --quick         # CI smoke run, under a minute on 2 cores
    python -m bench --json out.json # also write every figure (and the table rows) as JSON
    python -m bench --repeat 3      # run everything 3 times, report the median of each figure
    python -m bench --only raw,ticks,micro

Each benchmark is its own module (bench/raw.py, ticks.py, micro.py, latency.py, orders.py,
memory.py, ui.py); bench/report.py builds the table.  Every process is started here and stopped before
its benchmark returns.  Nothing asserts on time: targets are shown as met or not.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import traceback
from typing import Any

from bench import common, report

MODULES = ("raw", "ticks", "micro", "latency", "orders", "memory", "ui")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench", description="TickDesk benchmarks beside raw pyzmq + msgpack baselines.")
    p.add_argument("--quick", action="store_true", help="small sizes for CI (under a minute on 2 cores); default: the full run")
    p.add_argument("--json", metavar="PATH", default=None, help="also write all figures and the table rows to PATH as JSON")
    p.add_argument("--only", default=",".join(MODULES), help=f"comma-separated subset of: {', '.join(MODULES)} (default: all)")
    p.add_argument("--repeat", type=int, default=1, help="run each benchmark N times and report medians (default 1)")
    p.add_argument("--scale", type=float, default=1.0, help="multiply every size (count, duration) by this (default 1)")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    return p


def load() -> list[float]:
    try:
        return list(os.getloadavg())
    except OSError:
        return []


def median_merge(runs: list[Any]) -> Any:
    """Element-wise median of numbers across runs of the same shape (first run's value otherwise)."""
    first = runs[0]
    if isinstance(first, dict):
        return {k: median_merge([r[k] for r in runs if isinstance(r, dict) and k in r]) for k in first}
    if isinstance(first, bool) or not isinstance(first, (int, float)):
        return first
    nums = [r for r in runs if isinstance(r, (int, float)) and not isinstance(r, bool)]
    m = statistics.median(nums)
    return int(m) if isinstance(first, int) and float(m).is_integer() else m


def run_module(name: str, sizes: common.Sizes, tmp: str, log) -> dict:
    if name == "raw":
        from bench import raw

        return raw.run(sizes, tmp, log)
    mod = __import__(f"bench.{name}", fromlist=["run"])
    return mod.run(sizes, log=log)


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    sizes = common.QUICK if a.quick else common.FULL
    if a.scale != 1.0:
        sizes = sizes.scaled(a.scale)
    only = [m.strip() for m in a.only.split(",") if m.strip()]
    unknown = set(only) - set(MODULES)
    if unknown:
        print(f"unknown benchmark(s): {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2

    def log(msg: str) -> None:
        if not a.quiet:
            print(f"[{time.monotonic() - t0:6.1f}s] {msg}", file=sys.stderr, flush=True)

    t0 = time.monotonic()
    load_before = load()
    results: dict[str, Any] = {}
    errors: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="tickdesk-bench-") as tmp:
        for name in only:
            runs = []
            for i in range(max(1, a.repeat)):
                if a.repeat > 1:
                    log(f"== {name}, run {i + 1} of {a.repeat}")
                try:
                    runs.append(run_module(name, sizes, tmp, log))
                except Exception as e:  # one broken benchmark must not hide the others
                    errors[name] = f"{type(e).__name__}: {e}\n{traceback.format_exc()}"
                    log(f"{name} failed: {type(e).__name__}: {e}")
                    break
            if runs:
                results[name] = median_merge(runs) if len(runs) > 1 else runs[0]
    elapsed = time.monotonic() - t0
    results["errors"] = errors
    rows = report.rows(results)
    meta = {
        "sizes": sizes.name, "repeat": a.repeat, "elapsed_s": round(elapsed, 1), "cpus": os.cpu_count(),
        "load_before": load_before, "load_after": load(), "python": platform.python_version(),
        "pyzmq": _version("zmq"), "msgpack": _version("msgpack"), "platform": platform.platform(),
    }
    print(f"TickDesk benchmarks ({sizes.name}{f', median of {a.repeat} runs' if a.repeat > 1 else ''}): "
          f"{meta['cpus']} CPUs, Python {meta['python']}, pyzmq {meta['pyzmq']}, msgpack {meta['msgpack']}, "
          f"load average {_fmt_load(load_before)} before, {_fmt_load(meta['load_after'])} after, {elapsed:.0f} s")
    print()
    print(report.render(rows))
    ui = results.get("ui") or {}
    if ui.get("text"):
        print()
        print(f"UI-thread lag ({ui.get('command', 'bench/ui_lag.py')}):")
        print(ui["text"])
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"meta": meta, "results": results, "rows": [r.as_dict() for r in rows]}, f, indent=1, default=str)
    return 1 if errors else 0


def _version(mod: str) -> str:
    try:
        m = __import__(mod)
        v = getattr(m, "__version__", None) or getattr(m, "version", "?")
        return ".".join(map(str, v)) if isinstance(v, tuple) else str(v)
    except Exception:
        return "?"


def _fmt_load(la: list[float]) -> str:
    return "/".join(f"{x:.2f}" for x in la) if la else "n/a"


if __name__ == "__main__":
    sys.exit(main())
