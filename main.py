"""TickDesk's one entry point, for every role.

    python main.py                      open the workstation (starts the worker fleet)
    python main.py --headless           run the fleet with no window
    python main.py worker KIND [...]    run one worker (how the supervisor starts them)
    python main.py keys generate DIR    create CurveZMQ key pairs
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
    from workers.launcher import main as launcher_main

    return launcher_main(argv)


if __name__ == "__main__":
    import multiprocessing

    multiprocessing.freeze_support()
    sys.exit(main())
