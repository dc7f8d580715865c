"""Soak: minutes of order load on the real fleet while random workers are SIGKILLed.

    python bench/soak.py [--minutes 2] [--kill-every 10] [--seed 1] [--rate 150] [--json PATH]

The fleet (market data, exchange gateway, executor, one strategy) runs under the supervisor
on ipc:// endpoints in a temporary folder.  A test client sends ``--rate`` market orders per
second with Lazy Pirate retries (the same client_order_id on every retry; "unknown" after
the last one, then reconciled with get_order), the strategy trades through the executor, and
every ``--kill-every`` seconds one worker, of a kind drawn with ``--seed``, gets SIGKILL.
Each kill waits until the successor serves again and records that recovery time.

At the end the load stops, every order is settled, the fleet is stopped and its journal
read: the table shows orders sent, acked, filled, lost (acked but not journaled, or never
resolved even after reconciliation), duplicated (more filled than ordered, a fill id with two
contents, a journal row that disagrees with its fills), the longest recovery per kind, and
the RSS growth of each worker's longest-lived process.  The exit status is 1 when anything
was lost or duplicated, or positions disagree; ``--json PATH`` writes the result as JSON.
See docs/reliability.md.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.chaos import KINDS, ChaosFleet, Verdict  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bench/soak.py", description="Order load on the real fleet with random SIGKILLs; prints what was lost or doubled.")
    p.add_argument("--minutes", type=float, default=2.0, help="minutes of load (default 2)")
    p.add_argument("--kill-every", type=float, default=10.0, help="seconds between two SIGKILLs (default 10)")
    p.add_argument("--seed", type=int, default=1, help="seed of the kill schedule and the order flow (default 1)")
    p.add_argument("--rate", type=float, default=150.0, help="test-client market orders per second (default 150)")
    p.add_argument("--kinds", default=",".join(KINDS), help=f"worker kinds to kill (default {','.join(KINDS)})")
    p.add_argument("--json", metavar="PATH", default=None, help="also write the result as JSON to PATH")
    p.add_argument("--workdir", default=None, help="keep journal and worker logs here (default: a temporary folder, removed when all is well)")
    return p


def run(args: argparse.Namespace) -> dict:
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    unknown = set(kinds) - set(KINDS)
    if unknown:
        raise SystemExit(f"unknown worker kinds: {', '.join(sorted(unknown))}")
    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="tickdesk-soak-"))
    rng = random.Random(args.seed)
    fleet = ChaosFleet(workdir, seed=args.seed, order_rate=args.rate)
    kills: list[dict] = []
    t0 = time.monotonic()
    try:
        fleet.start()
        started = time.monotonic()
        end = started + args.minutes * 60
        next_kill = started + args.kill_every
        next_note = started + 10
        while time.monotonic() < end:
            fleet.pump()
            now = time.monotonic()
            if now >= next_kill and kinds:
                kind = rng.choice(kinds)
                took = fleet.kill(kind, timeout=60)
                kills.append({"at_s": round(now - started, 1), "kind": kind, "recovery_s": round(took, 3)})
                print(f"  {now - started:6.1f}s  SIGKILL {kind:<10} back and serving in {took:.2f}s", flush=True)
                next_kill = time.monotonic() + args.kill_every
            if now >= next_note:
                print(f"  {now - started:6.1f}s  {len(fleet.load.orders)} orders sent", flush=True)
                next_note = now + 10
        load_seconds = time.monotonic() - started
        verdict = fleet.finish()
    finally:
        fleet.stop()
    result = report(args, fleet, verdict, kills, load_seconds, time.monotonic() - t0)
    result["workdir"] = str(workdir)
    if verdict.ok and not args.workdir:
        shutil.rmtree(workdir, ignore_errors=True)
        result["workdir"] = None
    return result


def report(args, fleet: ChaosFleet, v: Verdict, kills: list[dict], load_seconds: float, total_seconds: float) -> dict:
    lost, dup = len(v.lost), len(v.duplicated)
    recovery = {}
    for kind in KINDS:
        t = fleet.recoveries[kind]
        recovery[kind] = {"kills": len(t), "median_s": statistics.median(t) if t else None, "max_s": max(t) if t else None}
    memory = fleet.memory()
    return {
        "config": {"minutes": args.minutes, "kill_every_s": args.kill_every, "seed": args.seed, "rate": args.rate},
        "load_seconds": load_seconds,
        "total_seconds": total_seconds,
        "orders": {
            "sent": v.sent,
            "per_second": v.sent / load_seconds if load_seconds else 0.0,
            "acked": v.acked,
            "rejected": v.rejected,
            "filled": v.filled,
            "reconciled": v.reconciled,
            "not_placed": v.not_placed,
            "resends": v.resends,
            "lost": lost,
            "duplicated": dup,
            "strategy_orders_acked": v.strategy_orders,
            "journal_orders": v.journal_orders,
            "journal_fills": v.journal_fills,
        },
        "problems": v.problems(),
        "reject_reasons": v.reject_reasons,
        "kills": kills,
        "recovery": recovery,
        "memory": memory,
        "counters": v.counters,
        "ok": v.ok,
    }


def print_table(r: dict) -> None:
    c, o = r["config"], r["orders"]
    print()
    print(f"TickDesk soak: {c['minutes']:g} min of load, SIGKILL every {c['kill_every_s']:g} s (seed {c['seed']}), {len(r['kills'])} kills")
    print(f"{'orders sent':<34}{o['sent']:>10}   ({o['per_second']:.0f}/s from the test client)")
    print(f"{'acked (ok)':<34}{o['acked']:>10}")
    print(f"{'rejected (answered, with reason)':<34}{o['rejected']:>10}" + (f"   {r['reject_reasons']}" if r["reject_reasons"] else ""))
    print(f"{'filled':<34}{o['filled']:>10}")
    print(f"{'unknown, then found by get_order':<34}{o['reconciled']:>10}")
    print(f"{'unknown, never reached the gateway':<34}{o['not_placed']:>10}")
    print(f"{'Lazy Pirate resends':<34}{o['resends']:>10}")
    print(f"{'strategy orders acked':<34}{o['strategy_orders_acked']:>10}")
    print(f"{'LOST':<34}{o['lost']:>10}")
    print(f"{'DUPLICATED':<34}{o['duplicated']:>10}")
    print(f"{'journal: orders / fills':<34}{o['journal_orders']:>10} / {o['journal_fills']}")
    print()
    print(f"{'recovery (kill -> serving)':<14}{'kills':>6}{'median s':>10}{'longest s':>11}")
    for kind, rec in r["recovery"].items():
        med = f"{rec['median_s']:.2f}" if rec["median_s"] is not None else "-"
        mx = f"{rec['max_s']:.2f}" if rec["max_s"] is not None else "-"
        print(f"{kind:<14}{rec['kills']:>6}{med:>10}{mx:>11}")
    print()
    print(f"{'memory (RSS)':<14}{'start MiB':>10}{'end MiB':>9}{'growth MiB':>12}{'over s':>8}   (longest-lived process of each worker)")
    for name, m in sorted(r["memory"].items()):
        print(f"{name:<14}{m['start_mib']:>10.1f}{m['end_mib']:>9.1f}{m['growth_mib']:>+12.1f}{m['seconds']:>8.0f}")
    obs = r["counters"].get("observer", {})
    exe = r["counters"].get("executor", {})
    st = r["counters"].get("strategy", {})
    print()
    print(
        f"gaps and restarts seen: tick subscriber {obs.get('gaps', 0)} gaps / {obs.get('feed_restarts', 0)} feed restarts; "
        f"strategy {st.get('tick_gaps', 0)} gaps, {st.get('feed_restarts', 0)} restarts; "
        f"executor {exe.get('exec_gaps', 0)} exec gaps, {exe.get('exec_restarts', 0)} exec restarts, {exe.get('syncs', 0)} position syncs"
    )
    if r["problems"]:
        print(f"\nPROBLEMS: {r['problems']}")
    if r.get("workdir"):
        print(f"journal and logs kept in {r['workdir']}")
    print(f"\nresult: {'OK' if r['ok'] else 'FAILED'} ({r['total_seconds']:.0f} s)")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    print(f"soak: {args.minutes:g} min, SIGKILL every {args.kill_every:g} s, {args.rate:g} orders/s, seed {args.seed}", flush=True)
    result = run(args)
    print_table(result)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2, default=str))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
