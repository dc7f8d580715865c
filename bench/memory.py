"""Resident memory of every worker after 1M (and 5M) ticks: nothing may grow with the stream.

Processes: exchange gateway (journal on), executor, one strategy (default parameters, every
symbol) and the market-data gateway in its default tick form, paced at :data:`PACED_RATE`
ticks/s -- the fleet that reads ticks.  As a safety net the benchmark also pauses the feed
while any subscriber is more than :data:`MAX_BACKLOG` ticks behind and resumes it once they
have caught up (or stopped counting).  (Otherwise the subscribers' ZeroMQ queues fill towards their
high-water marks, which is bounded but adds up to ~15 MB of RSS at a moment that varies from
run to run, and the comparison would say more about queue depth than about leaks.)  At each
mark the feed is paused, the queues drain, and the RSS of each process is read from /proc.
"Flat" means the RSS at the last mark is within 10 % of the first one, for every process.
"""

from __future__ import annotations

from bench.common import SYMBOLS, Sizes
from bench.procs import Fleet

MEMORY_STRATEGY_ARGS = ("--symbols", ",".join(SYMBOLS))
#: pause the feed while a subscriber is this many ticks behind the gateway; resume below RESUME_AT
MAX_BACKLOG = 20_000
#: ticks/s in all: about half of what the slowest subscriber (a strategy reading one tick per
#: frame) takes, so queues stay near empty; the flow control above is only the safety net
PACED_RATE = 100_000
RESUME_AT = 5_000


def _drained(fleet: Fleet, names: list[str]) -> None:
    seen: dict[str, list[int]] = {n: [] for n in names}
    beats = {n: -1 for n in names}

    def quiet() -> bool:
        ok = True
        for n in names:
            w = fleet.workers[n]
            if w.heartbeats != beats[n]:
                beats[n] = w.heartbeats
                seen[n].append(w.counter("ticks") + w.counter("ticks_in"))
            h = seen[n]
            if not (len(h) >= 4 and h[-1] == h[-4]):
                ok = False
        return ok

    fleet.wait(quiet, 120, "the subscribers to drain")


def run(sizes: Sizes, log=print) -> dict:
    marks = sorted(sizes.memory_ticks)
    out: dict = {"marks": marks, "rss": {}}
    with Fleet("memory") as fleet:
        fleet.start("exchange", "exchange", "--journal", str(fleet.dir / "journal.sqlite"), "--fresh")
        fleet.start("executor", "executor")
        fleet.start("strategy", "strategy", *MEMORY_STRATEGY_ARGS)
        md = fleet.start("marketdata", "marketdata", "--rate", "0", "--start-delay", "3600", "--seed", "1")
        subs = ["exchange", "executor", "strategy"]
        fleet.fresh_stats(*subs)
        fleet.command("marketdata", "set_rate", rate=PACED_RATE / len(SYMBOLS))
        paused = [False]
        history: list[tuple[int, ...]] = []  # subscribers' counts, one entry per new heartbeat
        beats = [-1]

        def received(n: str) -> int:
            w = fleet.workers[n]
            return w.counter("ticks") + w.counter("ticks_in")

        # The strategy counts ticks; the exchange and the executor count frames (they decode
        # only the newest tick of a symbol's frames), so each is compared with its own unit.
        def behind(n: str) -> int:
            return md.counter("ticks" if n == "strategy" else "frames") - received(n)

        def published_up_to(mark: int) -> bool:
            # flow control from the heartbeats: the feed never runs far ahead of the slowest
            counts = tuple(received(n) for n in subs)
            hb = fleet.workers[subs[0]].heartbeats
            if hb != beats[0]:
                beats[0] = hb
                history.append(counts)
                del history[:-4]
            backlog = max(behind(n) for n in subs)
            # resume once caught up -- or once nobody is counting any more (a subscriber that
            # lost ticks would otherwise never "catch up"; the loss shows in the JSON)
            drained = len(history) == 4 and history[0] == history[-1]
            if not paused[0] and backlog > MAX_BACKLOG:
                fleet.command("marketdata", "pause")
                paused[0] = True
                out["pauses"] = out.get("pauses", 0) + 1
            elif paused[0] and (backlog < RESUME_AT or drained) and md.counter("ticks") < mark:
                fleet.command("marketdata", "resume")
                paused[0] = False
                history.clear()
            return md.counter("ticks") >= mark

        for mark in marks:
            log(f"memory: up to {mark:,} ticks")
            fleet.wait(lambda: published_up_to(mark), 120 + mark / 5_000, f"{mark} ticks published")
            if not paused[0]:
                fleet.command("marketdata", "pause")
                paused[0] = True
            _drained(fleet, subs)
            fleet.fresh_stats("marketdata")
            out["rss"][str(mark)] = {name: w.rss() for name, w in fleet.workers.items()}
            out.setdefault("published", {})[str(mark)] = md.counter("ticks")
            out.setdefault("received", {})[str(mark)] = {n: fleet.workers[n].counter("ticks") + fleet.workers[n].counter("ticks_in") for n in subs}
            if mark != marks[-1]:
                fleet.command("marketdata", "resume")
                paused[0] = False
    first, last = out["rss"][str(marks[0])], out["rss"][str(marks[-1])]
    out["growth"] = {n: (last[n] - first[n]) / first[n] if first[n] else 0.0 for n in first}
    out["flat"] = all(abs(g) <= 0.10 for g in out["growth"].values()) if len(marks) > 1 else None
    return out
