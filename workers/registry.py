"""Worker kinds: ``main.py worker KIND`` runs ``main(argv)`` of the module named here."""

from __future__ import annotations

import importlib

WORKER_MODULES = {
    "marketdata": "workers.marketdata.gateway",
    "strategy": "workers.strategy.worker",
    "executor": "workers.executor.worker",
    "exchange": "workers.exchange.gateway",
    "recorder": "workers.recorder.worker",
}


def run(kind: str, argv: list[str]) -> int:
    try:
        module = importlib.import_module(WORKER_MODULES[kind])
    except KeyError:
        raise SystemExit(f"unknown worker {kind!r}; choose one of: {', '.join(WORKER_MODULES)}") from None
    return module.main(argv)
