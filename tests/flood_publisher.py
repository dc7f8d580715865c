"""A rogue tick publisher, as the outside check put in front of the window: it binds a PUB
socket and publishes valid ticks for a universe of distinct symbols, round after round, until
SIGTERM.  Some named symbols (the ones a test watches) tick among the flood.

    python -m tests.flood_publisher ENDPOINT --symbols 50000 --rate 50000 --watched AAPL,MSFT

``--rate`` paces it (frames per second, 0: as fast as it can) so a 2-core machine shared with
other tests keeps a core for the window under test.  Its stdout says ``round N`` after each
full pass over the universe.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time

import zmq

from workers import protocol as P


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("endpoint")
    ap.add_argument("--symbols", type=int, default=50_000)
    ap.add_argument("--rate", type=float, default=50_000.0)
    ap.add_argument("--watched", default="")
    ap.add_argument("--every", type=int, default=1000, help="universe frames between two ticks of the watched symbols")
    args = ap.parse_args(argv)
    watched = [w for w in args.watched.split(",") if w]
    stop = False

    def on_term(*_):
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    ctx = zmq.Context()
    pub = ctx.socket(zmq.PUB)
    pub.setsockopt(zmq.SNDHWM, 0)  # a flood, not a drop test: every frame is offered to the window
    pub.setsockopt(zmq.LINGER, 0)
    pub.bind(args.endpoint)
    names = [f"U{i:05d}" for i in range(args.symbols)]
    seq = {w: 0 for w in watched}
    sent = 0
    t0 = time.monotonic()
    rnd = 0
    try:
        while not stop:
            rnd += 1
            for i, sym in enumerate(names):
                ts = P.now_ns()
                px = 100.0 + (i % 50) * 0.01 + rnd * 0.01
                pub.send(P.encode_ticks(sym, [[rnd, ts, px, px - 0.01, px + 0.01, 10, 10, 100 * rnd]]))
                sent += 1
                if i % args.every == 0:
                    for w in watched:
                        seq[w] += 1
                        pub.send(P.encode_ticks(w, [[seq[w], ts, 50.0, 49.99, 50.01, 1, 1, seq[w]]]))
                        sent += 1
                if args.rate and sent % 500 == 0:
                    ahead = sent / args.rate - (time.monotonic() - t0)
                    if ahead > 0:
                        time.sleep(ahead)  # pacing, not synchronisation
                if stop:
                    break
            print(f"round {rnd}", flush=True)
    except KeyboardInterrupt:
        pass
    finally:
        pub.close(0)
        ctx.term()
    return 0


if __name__ == "__main__":
    sys.exit(main())
