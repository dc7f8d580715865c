"""The embedded default fleet, and the fleet described by a TOML config file.

Defaults: a simulated market on four symbols, the simulated exchange with its journal in the
user's data folder, one executor, and two support/resistance strategies (a breakout one and a
bounce one on different symbols), so that a fresh install trades within seconds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from workers.config import data_dir, load_toml
from workers.supervisor import WorkerSpec

DEFAULT_SYMBOLS = ("AAPL", "MSFT", "GOOG", "AMZN")

DEFAULT_STRATEGIES: tuple[dict[str, Any], ...] = (
    {"name": "sr-breakout", "symbols": "AAPL,MSFT", "mode": "breakout"},
    {"name": "sr-bounce", "symbols": "GOOG,AMZN", "mode": "bounce"},
)


def _flags(options: dict[str, Any]) -> list[str]:
    """{'max_position': 500, 'mode': 'both'} -> ['--max-position', '500', '--mode', 'both']"""
    out: list[str] = []
    for key, value in options.items():
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            # true -> --flag; false -> --no-flag (argparse BooleanOptionalAction options)
            out.append(flag if value else "--no-" + key.replace("_", "-"))
        elif isinstance(value, (list, tuple)):
            out += [flag, ",".join(map(str, value))]
        else:
            out += [flag, str(value)]
    return out


def default_fleet(
    *,
    data: Path | None = None,
    tick_rate: float = 20.0,
    seed: int | None = None,
    config_path: str | None = None,
    fresh_journal: bool = False,
) -> list[WorkerSpec]:
    """The workers to start.  ``config_path`` may override any part (see docs/architecture.md, Configuration)."""
    data = Path(data) if data else data_dir()
    cfg = load_toml(config_path)
    fleet = cfg.get("fleet", {})
    common = ["--config", str(config_path)] if config_path else []

    md_opts: dict[str, Any] = {"feed": "sim", "rate": tick_rate, "symbols": ",".join(DEFAULT_SYMBOLS)}
    if seed is not None:
        md_opts["seed"] = seed
    md_opts.update(fleet.get("marketdata", {}))

    ex_opts: dict[str, Any] = {"journal": str(data / "exchange-journal.sqlite")}
    ex_opts.update(fleet.get("exchange", {}))
    # --fresh wipes the journal: only at the fleet's start, never when a crashed gateway is
    # restarted (that would forget every order and position it journaled)
    fresh = bool(ex_opts.pop("fresh", False)) or fresh_journal

    exe_opts: dict[str, Any] = dict(fleet.get("executor", {}))

    specs = [
        WorkerSpec("exchange", "exchange", _flags(ex_opts) + common, first_start_args=["--fresh"] if fresh else []),
        WorkerSpec("marketdata", "marketdata", _flags(md_opts) + common),
        WorkerSpec("executor", "executor", _flags(exe_opts) + common),
    ]
    for strat in fleet.get("strategies", DEFAULT_STRATEGIES):
        opts = dict(strat)
        name = opts.pop("name")
        specs.append(WorkerSpec(name, "strategy", _flags(opts) + common))
    return specs
