"""TickDesk's one entry point, for every role.

    python main.py                      open the workstation (starts the worker fleet)
    python main.py --headless           run the fleet with no window
    python main.py worker KIND [...]    run one worker (how the supervisor starts them)
    python main.py keys generate DIR    create CurveZMQ key pairs
    python main.py data ...             list, export and import recordings
    python main.py backtest --data PATH run a strategy on a recording, no sockets
    python main.py sweep --data PATH    backtests over a parameter grid (local pool or Dask)

This module is the composition root: the only place that knows both halves.  workers/ never
imports the window (an import-linter contract in pyproject.toml checks it), so the choice of
window or headless fleet is made here; every role imports only what it runs, and a worker
process never loads Qt.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "worker":
        from workers.registry import WORKER_MODULES, run

        if len(argv) < 2 or argv[1] in ("-h", "--help"):
            print(f"usage: main.py worker {{{','.join(WORKER_MODULES)}}} [options]  (--help after KIND for its options)")
            return 0 if len(argv) >= 2 else 2
        return run(argv[1], argv[2:])
    if argv and argv[0] == "keys":
        from workers.keys import main as keys_main

        return keys_main(argv[1:])
    if argv and argv[0] == "data":
        from workers.recorder.cli import main as data_main

        return data_main(argv[1:])
    if argv and argv[0] == "backtest":
        from workers.backtest.cli import backtest_main

        return backtest_main(argv[1:])
    if argv and argv[0] == "sweep":
        from workers.backtest.cli import sweep_main

        return sweep_main(argv[1:])
    return run_fleet(argv)


def run_fleet(argv: list[str]) -> int:
    """The fleet with the window, or headless with ``--headless``; one set of options for both."""
    from workers.errors import ConfigError
    from workers.launcher import parse
    from workers.runtime import setup_logging

    try:
        args = parse(argv)
    except ConfigError as e:  # a config file that does not fit the declared options: one line, like a bad flag
        print(f"main.py: error: {e}", file=sys.stderr)
        return 2
    setup_logging(args.log_level, "tickdesk")
    if args.headless:
        from workers.launcher import run_headless

        return run_headless(args)
    from app.main import run_app

    return run_app(args)


if __name__ == "__main__":
    import multiprocessing

    multiprocessing.freeze_support()
    sys.exit(main())
