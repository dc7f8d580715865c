"""SIGKILL each worker kind ten times while orders flow, then check nothing was lost or doubled.

One real fleet per worker kind, under the supervisor on ipc:// endpoints, with a fast restart
backoff.  A test client sends ~150 market orders/s through Lazy Pirate REQ lanes (timeout ->
new socket, the SAME client_order_id again; after 4 tries the order is "unknown" and is
reconciled with get_order, never resent under a new id) on GOOG/AMZN, while the strategy
trades AAPL/MSFT through the executor.  After each kill the test waits until the successor
serves (exchange: answers a ping; market data: its ticks arrive; executor: positions
re-loaded; strategy: counting ticks) and records how long that took.

After the last kill the load stops, every unknown order is reconciled, the strategies and the
executor are paused until nothing is working, the fleet is stopped and its SQLite journal is
opened read-only.  Checked (see bench/chaos.py, ``Verdict``):

* every order the client got an answer for, and every order the executor reported as
  acknowledged, is in the journal (once: client_order_id is its primary key, and a GROUP BY
  confirms it);
* every order is resolved: acked, rejected, or -- only after three get_order denials -- not
  placed, and then it is not in the journal either;
* no order has more fill quantity than it asked for, a filled one exactly its quantity, and
  every fill published on the execution stream is in the journal with the same contents;
* the gateway's get_positions equals the sum of the journal's fills, and the executor's
  positions equal the gateway's;
* gaps and restarts are reported: feed restarts by the strategy, execution-stream restarts
  by the executor, position re-syncs by each executor incarnation.

Timings are printed (``pytest -s``), never asserted.
"""

from __future__ import annotations

import time

import pytest

from bench.chaos import KINDS, ChaosFleet, summarize

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

KILLS = 10
DWELL = 0.3  # seconds of load between a worker serving again and the next kill

RESULTS: dict[str, dict] = {}


@pytest.fixture(scope="module", autouse=True)
def recovery_table():
    yield
    if not RESULTS:
        return
    print("\n\nSIGKILL recovery (kill -> successor serving) and order books")
    print(f"{'kind':<11} {'kills':>5} {'median s':>9} {'max s':>7} {'sent':>6} {'orders/s':>8} {'acked':>6} {'rej':>4} {'recon':>5} {'n.p.':>4} {'resend':>6} {'lost':>4} {'dup':>4}")
    for kind, r in RESULTS.items():
        v = r["verdict"]
        times = r["times"]
        med = sorted(times)[len(times) // 2] if times else 0.0
        print(
            f"{kind:<11} {len(times):>5} {med:>9.2f} {max(times, default=0):>7.2f} {v.sent:>6} {r['rate']:>8.0f} {v.acked:>6} "
            f"{v.rejected:>4} {v.reconciled:>5} {v.not_placed:>4} {v.resends:>6} {len(v.lost):>4} {len(v.duplicated):>4}"
        )


@pytest.mark.parametrize("kind", KINDS)
def test_sigkill_under_load_loses_and_doubles_nothing(kind, tmp_path):
    fleet = ChaosFleet(tmp_path, seed=KINDS.index(kind) + 1)
    try:
        fleet.start()
        t0 = time.monotonic()
        for _ in range(KILLS):
            fleet.kill(kind)
            fleet.run_for(DWELL)
        load_seconds = time.monotonic() - t0
        verdict = fleet.finish()
        restarts = {w.name: w.restarts for w in fleet.sup.workers.values()}
    finally:
        fleet.stop()

    times = fleet.recoveries[kind]
    rate = verdict.sent / max(load_seconds, 1e-9)
    RESULTS[kind] = {"verdict": verdict, "times": times, "rate": rate}
    c = verdict.counters
    print(f"\n{kind}: {KILLS} kills, recovery {summarize(times)}; client sent {verdict.sent} ({rate:.0f}/s), "
          f"acked {verdict.acked}, rejected {verdict.rejected}, reconciled {verdict.reconciled}, not placed {verdict.not_placed}, "
          f"resends {verdict.resends}; strategy orders acked {verdict.strategy_orders}; journal {verdict.journal_orders} orders, "
          f"{verdict.journal_fills} fills; rejections {verdict.reject_reasons}\n  counters {c}")

    assert len(times) == KILLS
    assert verdict.ok, verdict.problems()
    assert verdict.acked > 0 and verdict.strategy_orders > 0, "both the client and the strategy traded"
    # only the killed kind was restarted: a crash does not take its neighbours down
    killed = [w.name for w in fleet.sup.workers.values() if w.spec.kind == kind]
    assert all(n == (KILLS if name in killed else 0) for name, n in restarts.items()), restarts

    if kind == "marketdata":
        # Every restart starts the per-symbol seq at 1 again; subscribers see it go back.
        assert c["observer"]["feed_restarts"] >= KILLS
        s = c["strategy"]
        assert s["feed_restarts"] + s["ticks_out_of_order"] >= KILLS, s
    elif kind == "exchange":
        # The execution stream's seq restarts with the gateway; the executor notices and
        # re-bases its positions on get_positions.
        assert c["executor"]["exec_restarts"] >= 1, c["executor"]
        assert c["executor"]["syncs"] >= 2, c["executor"]
    elif kind == "executor":
        # Each incarnation loads its positions from the gateway before trading.
        assert c["executor"]["syncs"] >= KILLS + 1, c["executor"]
    elif kind == "strategy":
        assert c["strategy"]["ticks"] > 0


def test_fresh_journal_is_wiped_on_the_first_start_only():
    """`main.py --headless --fresh` must not wipe the journal again when the supervisor
    restarts a crashed gateway (found by the exchange run above: every restart forgot every
    order, and fill ids F1, F2, ... came back with other contents)."""
    from workers.fleet import default_fleet

    ex = next(s for s in default_fleet(data="/nonexistent", fresh_journal=True) if s.kind == "exchange")
    assert "--fresh" not in ex.args and ex.first_start_args == ["--fresh"]
    ex = next(s for s in default_fleet(data="/nonexistent") if s.kind == "exchange")
    assert "--fresh" not in ex.args and not ex.first_start_args
