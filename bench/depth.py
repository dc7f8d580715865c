"""What publishing depth costs the market-data gateway: ticks/s and CPU with depth on and off.

Two measurements, 4 symbols, at 10k and 50k ticks/s in all:

* **the real process**: ``main.py worker marketdata`` paced at the rate (batched frames, the
  default), one SUB in this process on ``tick.`` and ``depth.``.  The gateway is started once
  per rate and ``set_depth_hz`` switches depth between 10 per second per symbol (the default)
  and 0 in alternating segments (on, off, on, off, ...) so both sides come from the same
  process and the same seconds of a busy machine.  Per segment: ticks/s received, depth
  messages/s received, the gateway's CPU (user + system, /proc) as a share of one core.
* **the feed loop in process**: the gateway set up on inproc endpoints with no subscriber and
  a manual clock; ``_publish`` is called with one millisecond of ticks at a time (10 or 50,
  the bursts the paced gateway sends) while the clock advances 1 ms per call, so depth goes
  out at exactly 10 per second per symbol of simulated time.  CPU time per tick (median of
  the loops), depth on against off; and one depth message alone (read the book, build, pack,
  send, cache), per message.

Medians over the segments / loops.  Nothing is asserted.  ``python -m bench.depth [--quick]``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import zmq

from bench.common import SYMBOLS
from bench.procs import Fleet, cpu_seconds
from workers import protocol as P

RATES = (10_000, 50_000)
DEPTH_HZ = 10.0


def real_process(rate: int, segments: int, seconds: float, log=print) -> dict:
    """Alternating depth-on / depth-off segments of one paced gateway."""
    per_symbol = rate / len(SYMBOLS)
    out: dict[str, list[dict]] = {"on": [], "off": []}
    with Fleet("depth") as fleet:
        gw = fleet.start("marketdata", "md", "--rate", f"{per_symbol:g}", "--start-delay", "3600", "--seed", "1",
                         "--depth-hz", f"{DEPTH_HZ:g}")
        sub = fleet.socket(zmq.SUB, RCVHWM=1_000_000)
        sub.setsockopt(zmq.SUBSCRIBE, b"tick.")
        sub.setsockopt(zmq.SUBSCRIBE, b"depth.")
        sub.connect(fleet.endpoints.ticks)
        fleet.command("md", "set_rate", rate=per_symbol)
        poller = zmq.Poller()
        poller.register(sub, zmq.POLLIN)
        poller.register(fleet.control, zmq.POLLIN)
        counts = {"ticks": 0, "depth": 0, "bad": 0}

        def run_for(duration: float) -> None:
            end = time.monotonic() + duration
            while True:
                left = end - time.monotonic()
                if left <= 0:
                    return
                ready = dict(poller.poll(max(1, int(left * 1000))))
                if fleet.control in ready:
                    fleet.pump()
                if sub in ready:
                    for _ in range(10_000):
                        try:
                            frame = sub.recv(zmq.NOBLOCK)
                        except zmq.Again:
                            break
                        if frame.startswith(b"depth."):
                            counts["depth"] += 1
                        else:
                            try:
                                counts["ticks"] += len(P.tick_rows(frame)[1])
                            except P.ProtocolError:
                                counts["bad"] += 1

        run_for(0.5)  # the subscription in place, the pacing settled
        for i in range(2 * segments):
            mode = "on" if i % 2 == 0 else "off"
            fleet.command("md", "set_depth_hz", hz=DEPTH_HZ if mode == "on" else 0.0)
            run_for(0.2)  # what was queued under the other mode is read first
            t0, c0, n0, d0 = time.monotonic(), cpu_seconds(gw.pid), counts["ticks"], counts["depth"]
            run_for(seconds)
            dt = time.monotonic() - t0
            seg = {"ticks_per_s": (counts["ticks"] - n0) / dt, "depth_per_s": (counts["depth"] - d0) / dt,
                   "cpu": (cpu_seconds(gw.pid) - c0) / dt}
            out[mode].append(seg)
            log(f"  {rate:>6} ticks/s depth {mode:<3}: {seg['ticks_per_s']:>8.0f} ticks/s received, "
                f"{seg['depth_per_s']:5.1f} depth/s, gateway CPU {seg['cpu']:.1%}")
        fleet.command("md", "pause")
        if counts["bad"]:
            log(f"  ({counts['bad']} unreadable tick frames)")
    return {mode: {k: statistics.median(s[k] for s in segs) for k in segs[0]} for mode, segs in out.items()}


def feed_loop(rate: int, loops: int, sim_seconds: float) -> dict:
    """CPU µs per tick of the gateway's publishing, one ms burst at a time, depth on and off."""
    from workers.clock import ManualClock
    from workers.config import add_common_args
    from workers.marketdata.gateway import MarketDataGateway, build_parser

    burst = max(1, rate // 1000)
    bursts = int(sim_seconds * 1000)
    res: dict[str, list[float]] = {"on": [], "off": []}
    for i in range(2 * loops):
        mode = "on" if i % 2 == 0 else "off"
        parser = build_parser()
        add_common_args(parser)
        eps = [f"--{n}=inproc://depth-bench-{n}" for n in ("ticks", "snapshot", "control")]
        clock = ManualClock()
        gw = MarketDataGateway(parser.parse_args([*eps, "--no-control", "--seed", "1",
                                                  "--depth-hz", f"{DEPTH_HZ if mode == 'on' else 0:g}"]), clock=clock)
        gw.setup()
        try:
            gw._publish(burst * 4)  # the first refills of the simulator's blocks
            t0 = time.process_time()
            for _ in range(bursts):
                gw._publish(burst)
                clock.advance(0.001)
            cpu = time.process_time() - t0
            ticks = bursts * burst
            res[mode].append(cpu / ticks * 1e6)
            if mode == "on":
                want = DEPTH_HZ * sim_seconds * len(SYMBOLS)
                got = gw.stats.counters["depth_frames"]
                assert abs(got - want) <= len(SYMBOLS) + 1, (got, want)
        finally:
            gw._close()
    return {mode: statistics.median(v) for mode, v in res.items()}


def one_depth(n: int = 20_000, repeats: int = 5) -> float:
    """µs to publish one depth message (book read, P.Depth, pack, send, cache), median."""
    import timeit

    from workers.clock import ManualClock
    from workers.config import add_common_args
    from workers.marketdata.gateway import MarketDataGateway, build_parser

    parser = build_parser()
    add_common_args(parser)
    eps = [f"--{n}=inproc://depth-one-{n}" for n in ("ticks", "snapshot", "control")]
    gw = MarketDataGateway(parser.parse_args([*eps, "--no-control", "--seed", "1"]), clock=ManualClock())
    gw.setup()
    try:
        gw._publish(40)
        return statistics.median(timeit.repeat(lambda: gw._send_depth("AAPL", 1, 0.0), number=n, repeat=repeats)) / n * 1e6
    finally:
        gw._close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="shorter segments and fewer loops")
    ap.add_argument("--skip-process", action="store_true", help="only the in-process feed loop")
    a = ap.parse_args(argv)
    segments, seconds = (2, 1.0) if a.quick else (3, 2.0)
    loops, sim_s = (3, 2.0) if a.quick else (7, 4.0)
    rows = []
    for rate in RATES:
        loop = feed_loop(rate, loops, sim_s)
        proc = None if a.skip_process else real_process(rate, segments, seconds)
        rows.append((rate, loop, proc))
    print()
    print(f"one depth message (book read, build, pack, send, cache): {one_depth():.1f} µs")
    print()
    print("| rate (4 symbols) | depth | feed loop CPU per tick | ticks/s received | depth msgs/s | gateway CPU (one core) |")
    print("| --- | --- | --- | --- | --- | --- |")
    for rate, loop, proc in rows:
        for mode in ("off", "on"):
            label = f"{DEPTH_HZ:g}/s per symbol" if mode == "on" else "off"
            p = proc[mode] if proc else None
            cells = (f"{p['ticks_per_s']:,.0f}", f"{p['depth_per_s']:.1f}", f"{p['cpu']:.1%}") if p else ("—", "—", "—")
            print(f"| {rate:,} ticks/s | {label} | {loop[mode]:.3f} µs | {' | '.join(cells)} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
