"""Chart frame-time benchmark: hours of 1 s bars, live ticks, refresh + offscreen render.

    python bench/chart_frame.py [--hours 10] [--frames 300] [--windows 100,500,2000]

For each visible window (bars across the screen) the chart follows the live edge while every
frame feeds ``--ticks-per-frame`` ticks spread over 1/30 s of simulated time (so a new 1 s bar
starts every 30 frames, as at a 30 Hz refresh), then times ``ChartWidget.refresh()`` and a full
render of the widget into an image (``QWidget.grab``: every item repainted, the worst case; the
app itself only repaints what changed). A second pass pans one step per frame (a user dragging),
which rebuilds the cached picture whenever the view leaves the drawn margin. Prints a table;
asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("PYQTGRAPH_QT_LIB", "PySide6")
if __package__ in (None, ""):  # run as a script: make the repo root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
from PySide6 import QtWidgets  # noqa: E402

from app.chart import ChartWidget, MultiIntervalBars  # noqa: E402

NS = 1_000_000_000
FRAME_S = 1 / 30


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bench/chart_frame.py", description=__doc__.split("\n")[0])
    p.add_argument("--hours", type=float, default=10.0, help="hours of 1 s history to preload (default 10)")
    p.add_argument("--frames", type=int, default=300, help="frames measured per scenario (default 300)")
    p.add_argument("--windows", default="100,500,2000",
                   help="comma-separated visible window sizes in bars (default 100,500,2000)")
    p.add_argument("--ticks-per-frame", type=int, default=20,
                   help="live ticks fed before each refresh (default 20, ~600 ticks/s at 30 Hz)")
    p.add_argument("--size", default="1280x800", help="widget size WxH in pixels (default 1280x800)")
    p.add_argument("--markers", type=int, default=500, help="signal/fill markers spread over history (default 500)")
    p.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    return p


def synthetic_history(hours: float, seed: int) -> tuple[MultiIntervalBars, int, float]:
    """(bars, next tick time ns, last price): 2 ticks per second of random walk."""
    rng = np.random.default_rng(seed)
    n = max(2, int(hours * 3600 * 2))
    t0 = (int(time.time()) // 60) * 60 * NS - int(hours * 3600) * NS
    ts = t0 + np.arange(n, dtype=np.int64) * (NS // 2)
    px = np.round(100 + np.cumsum(rng.normal(0, 0.02, n)), 2)
    vol = rng.integers(1, 100, n)
    bars = MultiIntervalBars(intervals=(1, 5, 60))
    bars.add_ticks(ts, px, vol)
    return bars, int(ts[-1]) + NS // 2, float(px[-1])


def pct(a: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(a), q)) if a else float("nan")


def run_window(app, chart: ChartWidget, bars: MultiIntervalBars, window: int, frames: int,
               ticks_per_frame: int, state: dict, pan: bool) -> dict:
    rng = np.random.default_rng(window)
    if pan:
        chart.set_follow(False)
    else:
        chart.go_live()
    chart.set_visible_bars(window)
    chart.refresh()
    app.processEvents()
    chart.grab()
    chart.reset_stats()
    rebuilds0 = chart.candle_rebuilds
    refresh_ms, render_ms, drawn, groups = [], [], [], []
    step = max(1.0, window * 0.01)
    for _ in range(frames):
        dt = int(FRAME_S * NS) // ticks_per_frame
        for _ in range(ticks_per_frame):
            state["price"] = round(state["price"] + float(rng.normal(0, 0.01)), 2)
            bars.add_tick(state["t"], state["price"], int(rng.integers(1, 20)))
            state["t"] += dt
        if pan:
            chart.pan_bars(-step)
        t0 = time.perf_counter()
        chart.refresh()
        t1 = time.perf_counter()
        chart.grab()
        t2 = time.perf_counter()
        refresh_ms.append((t1 - t0) * 1e3)
        render_ms.append((t2 - t1) * 1e3)
        drawn.append(chart.drawn_candles)
        groups.append(chart.group_size)
    frame = [a + b for a, b in zip(refresh_ms, render_ms)]
    paint = chart.paint_time_ms()
    return {
        "window": window, "scenario": "pan" if pan else "live",
        "drawn": max(drawn), "k": max(groups),
        "refresh_med": pct(refresh_ms, 50), "refresh_p99": pct(refresh_ms, 99),
        "render_med": pct(render_ms, 50), "render_p99": pct(render_ms, 99),
        "frame_p99": pct(frame, 99), "paint_med": paint["median"], "paint_p99": paint["p99"],
        "rebuilds": chart.candle_rebuilds - rebuilds0,
    }


def idle_refresh(chart: ChartWidget, n: int = 2000) -> tuple[float, float]:
    """Median / p99 of refresh() with no change, in microseconds."""
    chart.refresh()
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        chart.refresh()
        out.append((time.perf_counter() - t0) * 1e6)
    return pct(out, 50), pct(out, 99)


def tick_cost(seed: int, n: int = 200_000) -> tuple[float, float]:
    """add_tick on MultiIntervalBars(1, 5, 60) and vectorised add_ticks, microseconds per tick."""
    rng = np.random.default_rng(seed)
    ts = (1_700_000_040 * NS + np.cumsum(rng.integers(0, NS // 100, n))).tolist()
    px = (100 + np.cumsum(rng.normal(0, 0.01, n))).tolist()
    m = MultiIntervalBars()
    t0 = time.perf_counter()
    for a, b in zip(ts, px):
        m.add_tick(a, b, 1)
    scalar = (time.perf_counter() - t0) / n * 1e6
    m = MultiIntervalBars()
    t0 = time.perf_counter()
    m.add_ticks(np.asarray(ts), np.asarray(px), np.ones(n))
    vector = (time.perf_counter() - t0) / n * 1e6
    return scalar, vector


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    windows = [int(w) for w in args.windows.split(",") if w.strip()]
    width, height = (int(v) for v in args.size.lower().split("x"))
    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication([])

    t0 = time.perf_counter()
    bars, next_t, price = synthetic_history(args.hours, args.seed)
    load_s = time.perf_counter() - t0
    chart = ChartWidget()
    chart.resize(width, height)
    chart.show()
    chart.set_series("BENCH", bars)
    s = bars.series(1)
    kinds = ("signal_buy", "signal_sell", "signal_rejected", "fill_buy", "fill_sell")
    times = s.times()
    for i, idx in enumerate(np.linspace(0, len(s) - 1, args.markers).astype(int).tolist() if args.markers else []):
        chart.add_marker(int(times[idx] * NS), float(s.closes()[idx]), kinds[i % 5], text=f"bench {i}")
    app.processEvents()

    state = {"t": next_t, "price": price}
    rows = []
    for pan in (False, True):
        for w in windows:
            rows.append(run_window(app, chart, bars, w, args.frames, args.ticks_per_frame, state, pan))
    idle_med, idle_p99 = idle_refresh(chart)
    scalar, vector = tick_cost(args.seed)
    chart.close()

    print(f"chart frame benchmark: {args.hours:g} h of 1 s bars ({len(s)} bars held, loaded in "
          f"{load_s * 1e3:.0f} ms), {args.ticks_per_frame} ticks/frame, {args.frames} frames per row, "
          f"widget {width}x{height}, Qt platform {os.environ.get('QT_QPA_PLATFORM')}")
    head = (f"{'scenario':<8} {'visible':>7} {'drawn':>6} {'k':>4} {'refresh med':>11} {'refresh p99':>11} "
            f"{'render med':>10} {'render p99':>10} {'frame p99':>9} {'paint med':>9} {'paint p99':>9} "
            f"{'rebuilds':>8}")
    print(head)
    print("-" * len(head))
    for r in rows:
        print(f"{r['scenario']:<8} {r['window']:>7} {r['drawn']:>6} {r['k']:>4} {r['refresh_med']:>9.2f}ms "
              f"{r['refresh_p99']:>9.2f}ms {r['render_med']:>8.2f}ms {r['render_p99']:>8.2f}ms "
              f"{r['frame_p99']:>7.2f}ms {r['paint_med']:>7.2f}ms {r['paint_p99']:>7.2f}ms {r['rebuilds']:>8}")
    print(f"refresh() with nothing changed: median {idle_med:.1f} us, p99 {idle_p99:.1f} us")
    print(f"MultiIntervalBars(1,5,60).add_tick: {scalar:.2f} us/tick; add_ticks (vectorised): {vector:.3f} us/tick")
    print("render = QWidget.grab() of the whole widget (every item repainted); paint = candle/volume "
          "QPicture replay inside it; drawn = candles in the pictures (max over frames)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
