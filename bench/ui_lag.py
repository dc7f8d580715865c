"""UI-thread event-loop lag and chart frame time of the real window at high tick rates.

For each total tick rate (default 10k, 50k and 100k ticks/s over the feed's 4 symbols) this
starts the default fleet (market data, exchange, executor, two strategies) behind a real
MainWindow -- offscreen unless a display is set -- warms up, then for ``--seconds`` records:

* lag: a 10 ms PreciseTimer on the UI thread; each firing's lateness against the previous
  one plus 10 ms (what a click or a key press waits at most, roughly);
* flush: the window's 30 Hz flush (state -> models -> chart) duration;
* chart: ChartWidget.refresh() frame time (median / p99) as the chart reports it;
* what the feed published, what the window received and the ticks it missed (sequence
  gaps), and the window process's CPU use.

No assertions: it prints a table.  ``python bench/ui_lag.py --help`` for the options.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from workers.config import Endpoints  # noqa: E402
from workers.launcher import parse  # noqa: E402


SYMBOLS = ("AAPL", "MSFT", "GOOG", "AMZN", "IBM", "ORCL", "INTC", "CSCO")


def publish(endpoint: str, rate: float, symbols: int) -> int:
    """``--source blast``: a bare tick publisher (random walk, real protocol frames, paced in
    1 ms batches), so the window can be driven past what the Python market-data gateway
    reaches on a small machine.  Runs until SIGTERM."""
    import random
    import signal

    import zmq

    from workers import protocol as P

    stop = {"now": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.__setitem__("now", True))
    sock = zmq.Context.instance().socket(zmq.PUB)
    sock.setsockopt(zmq.SNDHWM, 100_000)
    sock.setsockopt(zmq.LINGER, 0)
    sock.bind(endpoint)
    syms = SYMBOLS[:symbols]
    topics = [P.tick_topic(s) + P.TOPIC_SEP for s in syms]
    px = [100.0 + 50 * i for i in range(len(syms))]
    seq = [0] * len(syms)
    vol = [0] * len(syms)
    pack = P.packb
    rnd = random.Random(1).gauss
    t0 = time.monotonic()
    sent = 0
    while not stop["now"]:
        due = int((time.monotonic() - t0) * rate)
        n = min(due - sent, 5000)
        if n <= 0:
            time.sleep(0.001)
            continue
        now = time.time_ns()
        for k in range(n):
            i = (sent + k) % len(syms)
            p = round(max(1.0, px[i] + rnd(0, 0.02)), 2)
            px[i] = p
            seq[i] += 1
            vol[i] += 100
            frame = topics[i] + pack({"v": 1, "type": "tick", "symbol": syms[i], "seq": seq[i], "ts": now, "last": p,
                                      "bid": round(p - 0.01, 2), "ask": round(p + 0.01, 2), "bid_size": 100,
                                      "ask_size": 100, "volume": vol[i]})
            try:
                sock.send(frame, zmq.NOBLOCK)
            except zmq.Again:
                pass
        sent += n
    sock.close(0)
    return 0


def pct(samples: list[float], q: float) -> float:
    if not samples:
        return float("nan")
    s = sorted(samples)
    return s[min(len(s) - 1, int(q * len(s)))]


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


async def measure(rate_total: int, symbols: int, seconds: float, warmup: float, tmp: Path, fleet: str,
                  source: str) -> dict:
    from app.main import build_session
    from app.qt import Qt, QtCore, QTimer

    QEvent = QtCore.QEvent
    from app.settings import Settings
    from app.window import MainWindow

    eps = Endpoints.ephemeral_ipc(tmp)
    per_symbol = rate_total / symbols
    args = parse(["--data-dir", str(tmp / "data"), "--fresh", "--seed", "5", "--tick-rate", f"{per_symbol:g}",
                  *eps.as_args()])
    settings = Settings(tmp / "tickdesk.ini")
    ui = settings.load()
    session = build_session(args, settings, ui)
    if fleet == "feed":  # the market-data gateway alone: the window's own cost, without contention
        for name in [n for n, x in session.sup.workers.items() if x.spec.kind != "marketdata"]:
            del session.sup.workers[name]
    blaster = None
    if source == "blast":  # a bare publisher instead of the market-data gateway
        session.sup.workers.pop("marketdata", None)
        blaster = subprocess.Popen([sys.executable, __file__, "--publish", eps.ticks, "--publish-rate", str(rate_total),
                                    "--symbols", str(symbols)])
    paint_ms: list[float] = []

    class TimedWindow(MainWindow):
        """Times the window's repaints (one UpdateRequest paints every dirty widget)."""

        def event(self, e):
            if e.type() != QEvent.Type.UpdateRequest:
                return super().event(e)
            t0 = time.perf_counter()
            r = super().event(e)
            paint_ms.append((time.perf_counter() - t0) * 1000.0)
            return r

    w = TimedWindow(session, settings, ui)
    w.resize(1600, 960)
    w.show()
    w.start()
    try:
        t_end = time.monotonic() + 30
        while time.monotonic() < t_end and not all(x.state == "running" for x in session.sup.workers.values()):
            await asyncio.sleep(0.1)
        await asyncio.sleep(warmup)

        lags: list[float] = []
        last = {"t": 0.0}

        def tick() -> None:
            now = time.perf_counter()
            if last["t"]:
                lags.append(max(0.0, (now - last["t"]) * 1000.0 - 10.0))
            last["t"] = now

        gc_ms: list[float] = []
        gc_t = {"t": 0.0}

        def on_gc(phase, info) -> None:
            if phase == "start":
                gc_t["t"] = time.perf_counter()
            elif info.get("generation") == 2:
                gc_ms.append((time.perf_counter() - gc_t["t"]) * 1000.0)

        gc.callbacks.append(on_gc)
        timer = QTimer()
        timer.setTimerType(Qt.TimerType.PreciseTimer)
        timer.setInterval(10)
        timer.timeout.connect(tick)
        chart = w.chart.chart
        if chart is not None:
            chart.reset_stats()
        w._flush_ms.clear()
        flushes: list[float] = []
        st = session.state
        ticks0, missed0 = st.market.total_ticks, st.market.total_missed
        md = session.sup.workers.get("marketdata")
        pub0 = md.counter("ticks") if md else 0
        paint_ms.clear()
        cpu0, t0 = cpu_seconds(), time.monotonic()
        timer.start()
        end = t0 + seconds
        while time.monotonic() < end:
            await asyncio.sleep(0.25)
            flushes.extend(w._flush_ms)
            w._flush_ms.clear()
        timer.stop()
        gc.callbacks.remove(on_gc)
        elapsed = time.monotonic() - t0
        cpu = cpu_seconds() - cpu0
        received = st.market.total_ticks - ticks0
        missed = st.market.total_missed - missed0
        # the gateway reports its counter every heartbeat: take the newest after a short wait
        await asyncio.sleep(0.6)
        published = (md.counter("ticks") - pub0) if md else float("nan")
        frame = chart.frame_time_ms() if chart is not None else {}
        return {
            "target": rate_total,
            "published": published / (elapsed + 0.6),
            "received": received / elapsed,
            "missed_pct": 100.0 * missed / max(1, received + missed),
            "lag_p50": pct(lags, 0.50), "lag_p99": pct(lags, 0.99), "lag_max": max(lags) if lags else float("nan"),
            "lag_n": len(lags),
            "flush_p50": pct(flushes, 0.5), "flush_p99": pct(flushes, 0.99),
            "chart_med": frame.get("median", float("nan")), "chart_p99": frame.get("p99", float("nan")),
            "chart_n": frame.get("count", 0),
            "cpu_pct": 100.0 * cpu / elapsed,
            "max_batch": st.streams["ticks"].max_batch,
            "paint_p50": pct(paint_ms, 0.5), "paint_p99": pct(paint_ms, 0.99), "paint_n": len(paint_ms),
            "gc2_n": len(gc_ms), "gc2_max": max(gc_ms) if gc_ms else 0.0,
        }
    finally:
        w.close()
        if blaster is not None:
            blaster.terminate()
            blaster.wait(10)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench/ui_lag.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--rates", default="10000,50000,100000", help="total ticks/s to try, comma-separated (default %(default)s)")
    p.add_argument("--symbols", type=int, default=4, help="symbols of the default feed (the rate is split over them) (default %(default)s)")
    p.add_argument("--seconds", type=float, default=10.0, help="measuring time per rate (default %(default)s)")
    p.add_argument("--fleet", choices=("full", "feed"), default="full",
                   help="full: the default fleet (strategies, executor, exchange also take every tick); "
                        "feed: the market-data gateway alone (default %(default)s)")
    p.add_argument("--source", choices=("gateway", "blast"), default="gateway",
                   help="gateway: ticks from the market-data worker; blast: from a bare publisher in this script "
                        "(reaches rates the Python gateway cannot on a small machine) (default %(default)s)")
    p.add_argument("--publish", metavar="ENDPOINT", help=argparse.SUPPRESS)
    p.add_argument("--publish-rate", type=float, default=0.0, help=argparse.SUPPRESS)
    p.add_argument("--warmup", type=float, default=3.0, help="seconds after the fleet is up before measuring (default %(default)s)")
    a = p.parse_args(argv)
    if a.publish:
        return publish(a.publish, a.publish_rate, a.symbols)
    rates = [int(float(r)) for r in a.rates.split(",") if r.strip()]

    import logging

    import qasync

    from app.qt import QApplication

    logging.basicConfig(level=logging.WARNING)
    app = QApplication.instance() or QApplication(["ui_lag"])
    app.setQuitOnLastWindowClosed(False)
    loop = qasync.QSelectorEventLoop(app)  # as app/main.py
    asyncio.set_event_loop(loop)
    results = []

    async def run_all():
        for r in rates:
            with tempfile.TemporaryDirectory(prefix="tdlag") as d:
                print(f"... {r:,} ticks/s", file=sys.stderr, flush=True)
                results.append(await measure(r, a.symbols, a.seconds, a.warmup, Path(d), a.fleet, a.source))

    with loop:
        loop.run_until_complete(run_all())

    fleet = "default fleet" if a.fleet == "full" else "market-data gateway only"
    if a.source == "blast":
        fleet += ", ticks from a bare publisher (no market-data gateway)"
    print(f"\nUI event-loop lag, window + {fleet}, {os.cpu_count()} CPUs, {a.seconds:g} s per rate "
          f"(platform {os.environ.get('QT_QPA_PLATFORM', 'default')}, load average {os.getloadavg()[0]:.1f})\n")
    head = (f"{'target/s':>9} {'published/s':>12} {'received/s':>11} {'missed':>7} | {'lag p50':>8} {'p99':>7} {'max':>7} ms"
            f" | {'flush p50':>9} {'p99':>6} ms | {'chart med':>9} {'p99':>6} ms | {'UI CPU':>6}")
    print(head)
    print("-" * len(head))
    for r in results:
        print(f"{r['target']:>9,} {r['published']:>12,.0f} {r['received']:>11,.0f} {r['missed_pct']:>6.1f}% | "
              f"{r['lag_p50']:>8.2f} {r['lag_p99']:>7.2f} {r['lag_max']:>7.1f}    | "
              f"{r['flush_p50']:>9.2f} {r['flush_p99']:>6.2f}    | {r['chart_med']:>9.2f} {r['chart_p99']:>6.2f}    | "
              f"{r['cpu_pct']:>5.0f}%   paint {r['paint_p50']:.1f}/{r['paint_p99']:.1f} ms n={r['paint_n']} "
              f"gc2 {r['gc2_n']} max {r['gc2_max']:.1f} ms, largest batch {r['max_batch']:,}")
    print("\nlag: lateness of a 10 ms timer on the UI thread; missed: ticks the window lost in sequence gaps "
          "(dropped by ZeroMQ when the window falls behind); UI CPU: the window process (1 core = 100%).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
