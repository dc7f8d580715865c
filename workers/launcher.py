"""The fleet's side of ``python main.py [--headless]``: the command line, the supervisor, the
headless runner.

``parse`` reads main.py's options (both modes share them) and ``make_supervisor`` builds the
fleet they describe; the window (``app.main.run_app``) builds its supervisor here too.  The
headless runner runs the supervisor on its own thread, exactly as the window does
(:mod:`workers.supervisor_thread`), and logs a status line every few seconds from its
snapshots; ``--duration`` ends it cleanly with a summary whose counters add up every
incarnation of each worker, the dead ones included.  Which of the two runs is main.py's choice
(the composition root): nothing under workers/ imports the window.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import time
from pathlib import Path

from dataclasses import dataclass

from workers.config import RuntimeConfig, add_options, apply_toml_defaults, data_dir, from_namespace, option, options_of, positive
from workers.fleet import FleetConfig, default_fleet
from workers.supervisor import Supervisor, SupervisorConfig, SupervisorError
from workers.supervisor_thread import SupervisorThread

log = logging.getLogger("tickdesk.headless")


@dataclass(frozen=True)
class LauncherConfig:
    """main.py's options (window and headless alike): how to run, and the fleet to run."""

    headless: bool = option(False, "run the worker fleet without a window")
    duration: float = option(0.0, "stop cleanly after this many seconds (0: run until Ctrl-C)")
    screenshot: str | None = option(None, "window mode: save a screenshot when --duration ends", metavar="PNG")
    status_every: float = option(5.0, "headless: seconds between status lines", check=positive)
    log_level: str = option(RuntimeConfig.log_level, "DEBUG, INFO, WARNING; worker logs go to DATA_DIR/logs")
    fleet: FleetConfig = options_of(FleetConfig)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="main.py",
        description="TickDesk: a trading workstation over a fleet of ZeroMQ worker processes. "
        "Without options it opens the window on the embedded defaults (simulated market and exchange).",
        epilog="Other commands: 'main.py worker KIND --help' (run one worker), 'main.py keys generate DIR' (CurveZMQ keys).",
    )
    add_options(p, LauncherConfig)
    return p


def parse(argv: list[str]) -> argparse.Namespace:
    """main.py's namespace (defaults < [tickdesk] and [endpoints] tables < flags); ConfigError
    for a config file that does not fit the declarations.  The window fills unset endpoints
    (None) from its settings before :func:`make_supervisor` reads the typed config."""
    p = build_parser()
    apply_toml_defaults(p, argv, "tickdesk", [LauncherConfig])
    args = p.parse_args(argv)
    f = from_namespace(LauncherConfig, args).fleet
    # the fleet's tables ([fleet.*], [worker.*]) are checked now, so that a typo stops main.py
    # with the key named before a window opens or a worker starts (the specs are built again)
    default_fleet(data=Path(f.data_dir) if f.data_dir else data_dir(), config_path=f.config)
    return args


def make_supervisor(args: argparse.Namespace) -> Supervisor:
    f = from_namespace(LauncherConfig, args).fleet
    data = Path(f.data_dir) if f.data_dir else data_dir()
    data.mkdir(parents=True, exist_ok=True)
    specs = default_fleet(data=data, tick_rate=f.tick_rate, seed=f.seed, config_path=f.config, fresh_journal=f.fresh,
                          strategies=not f.no_strategies, record=not f.no_record)
    return Supervisor(f.endpoints, specs, SupervisorConfig(log_dir=str(data / "logs"), curve_dir=f.curve_dir))


def status_line(sup: Supervisor | SupervisorThread) -> str:
    t = sup.totals()
    up = sum(1 for w in sup.workers.values() if w.state in ("running", "paused"))
    pos = positions_text(sup)
    return (
        f"ticks {t['ticks']} ({t['ticks_per_s']:.0f}/s) | signals {t['signals']} | orders {t['orders']} "
        f"(rejected {t['rejected']}) | fills {t['fills']} | positions {pos or '-'} | "
        f"workers {up}/{len(sup.workers)} up, restarts {t['restarts']} | drops {t['dropped']}"
    )


def positions_text(sup: Supervisor | SupervisorThread) -> str:
    for w in sup.workers.values():
        if w.spec.kind == "executor":
            positions = w.stats.get("gauges", {}).get("positions") or {}
            if isinstance(positions, dict):
                return " ".join(f"{s} {q:+d}" for s, q in sorted(positions.items()) if isinstance(q, int) and q)
    return ""


def run_headless(args: argparse.Namespace) -> int:
    cfg = from_namespace(LauncherConfig, args)
    sup = SupervisorThread(make_supervisor(args))
    stop = {"why": ""}

    def on_signal(signum, _frame):
        stop["why"] = signal.Signals(signum).name

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    log.info("starting %d workers; logs in %s", len(sup.workers), sup.config.log_dir)
    try:
        sup.start()
    except SupervisorError as e:
        log.error("%s", e)
        return 2
    t0 = time.monotonic()
    next_status = t0 + cfg.status_every
    exit_code = 0
    try:
        while not stop["why"]:
            time.sleep(0.1)  # the supervisor runs on its own thread; this one reports
            sup.poll()
            now = time.monotonic()
            if now >= next_status:
                log.info("%s", status_line(sup))
                next_status = now + cfg.status_every
            if cfg.duration and now - t0 >= cfg.duration:
                stop["why"] = f"duration {cfg.duration:g}s reached"
            failed = sup.failed()
            if failed:
                for w in failed:
                    log.error("%s could not start: %s (log: %s/%s.log)", w.name, w.reason, sup.config.log_dir, w.name)
                stop["why"] = "a worker could not start"
                exit_code = 2
    finally:
        log.info("stopping (%s)", stop["why"] or "error")
        # one last look at the counters before the workers go
        deadline = time.monotonic() + 0.6
        while time.monotonic() < deadline:
            time.sleep(0.05)
        sup.poll()
        final = status_line(sup)
        sup.stop()
    print_summary(sup, final, time.monotonic() - t0)
    return exit_code


def print_summary(sup: Supervisor | SupervisorThread, final: str, elapsed: float) -> None:
    out = sys.stdout
    print(f"TickDesk headless run: {elapsed:.1f} s", file=out)
    print(final, file=out)
    print(f"{'worker':<14} {'kind':<11} {'restarts':>8} {'exit':>5}  counters (every incarnation)", file=out)
    for w in sup.workers.values():
        c = w.counters()
        counters = " ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(c.items()) if v)
        print(f"{w.name:<14} {w.spec.kind:<11} {w.restarts:>8} {str(w.exit_code):>5}  {counters}", file=out)
    out.flush()

