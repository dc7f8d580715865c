"""The embedded default fleet, and the fleet described by a TOML config file.

Defaults: a simulated market on four symbols, the simulated exchange with its journal in the
user's data folder, one executor, and two support/resistance strategies (a breakout one and a
bounce one on different symbols), so that a fresh install trades within seconds -- by itself, on
the same account as the window's ticket; ``no_strategies`` (``--no-strategies``) leaves them out.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workers.config import Endpoints, RuntimeConfig, at_least, check_table, data_dir, load_toml, option, options_of, table_argv, toml_table
from workers.exchange.gateway import DEFAULT_JOURNAL_NAME, ExchangeConfig
from workers.executor.worker import ExecutorConfig
from workers.marketdata.gateway import MarketDataConfig
from workers.recorder.worker import RecorderConfig
from workers.strategy.worker import StrategyConfig
from workers.errors import ConfigError
from workers.supervisor import WorkerSpec

DEFAULT_STRATEGIES: tuple[dict[str, Any], ...] = (
    {"name": "sr-breakout", "symbols": "AAPL,MSFT", "mode": "breakout"},
    {"name": "sr-bounce", "symbols": "GOOG,AMZN", "mode": "bounce"},
)

#: the options of each worker kind: what a [fleet.KIND] or [worker.KIND] table may hold
KIND_CONFIGS: dict[str, type] = {
    "marketdata": MarketDataConfig,
    "strategy": StrategyConfig,
    "executor": ExecutorConfig,
    "exchange": ExchangeConfig,
    "recorder": RecorderConfig,
}


@dataclass(frozen=True)
class FleetConfig:
    """What main.py builds its fleet from (flags, or the [tickdesk] and [endpoints] tables)."""

    config: str | None = option(None, "fleet and worker settings (see docs/architecture.md, Configuration)", metavar="TOML", toml=False)
    data_dir: str | None = option(None, "journal, logs and state", default_text="the user's app-data folder")
    tick_rate: float = option(20.0, "simulated ticks per second per symbol", check=at_least(0))
    seed: int | None = option(None, "seed of the simulated market", default_text="random")
    fresh: bool = option(False, "start with an empty exchange journal (forget orders and positions)")
    no_strategies: bool = option(False, "run no strategies: only the window's manual ticket trades (the defaults "
                                        "run two that trade the same account by themselves)")
    no_record: bool = option(False, "run no recorder (same as [fleet.recorder] enabled = false): no ticks kept for backtests")
    curve_dir: str | None = option(None, "CurveZMQ keys (main.py keys generate DIR): every socket of the fleet and the window uses CURVE")
    endpoints: Endpoints = options_of(Endpoints)


def _worker_args(kind: str, table: dict[str, Any], where: str, **base: Any) -> list[str]:
    # a [fleet.KIND] table may also set the runtime options every worker has (heartbeat, ...)
    return table_argv([KIND_CONFIGS[kind], RuntimeConfig], table, where, base)


def default_fleet(
    *,
    data: Path | None = None,
    tick_rate: float = FleetConfig.tick_rate,
    seed: int | None = None,
    config_path: str | None = None,
    fresh_journal: bool = False,
    strategies: bool = True,
    record: bool = True,
) -> list[WorkerSpec]:
    """The workers to start.  ``config_path`` may override any part (see docs/architecture.md,
    Configuration); every [fleet.*] key is checked against its worker's declared options here,
    so a typo stops the start with the key and file named (ConfigError), not a worker later."""
    data = Path(data) if data else data_dir()
    cfg = load_toml(config_path)

    def where(kind: str) -> str:
        return f"{config_path}: [fleet.{kind}]"

    common = ["--config", str(config_path)] if config_path else []
    fleet = toml_table(cfg, "fleet", config_path)

    md: dict[str, Any] = {"rate": tick_rate}
    if seed is not None:
        md["seed"] = seed
    md_args = _worker_args("marketdata", toml_table(cfg, "fleet.marketdata", config_path), where("marketdata"), **md)

    ex_table = dict(toml_table(cfg, "fleet.exchange", config_path))
    # --fresh wipes the journal: only at the fleet's start, never when a crashed gateway is
    # restarted (that would forget every order and position it journaled)
    fresh = bool(check_table({"fresh": ex_table.pop("fresh", False)}, [ExchangeConfig], where("exchange")).get("fresh")) or fresh_journal
    ex_args = _worker_args("exchange", ex_table, where("exchange"), journal=str(data / DEFAULT_JOURNAL_NAME))

    exe_args = _worker_args("executor", toml_table(cfg, "fleet.executor", config_path), where("executor"))

    # the recorder is on unless [fleet.recorder] says enabled = false (docs/backtest.md)
    rec_table = dict(toml_table(cfg, "fleet.recorder", config_path))
    enabled = rec_table.pop("enabled", True)
    if not isinstance(enabled, bool):
        raise ConfigError(f"{where('recorder')}: enabled must be true or false")
    record = record and enabled  # --no-record: the table is still checked (a typo stops the start)
    rec_args = _worker_args("recorder", rec_table, where("recorder"), record_dir=str(data / "recordings"))

    unknown = sorted(set(fleet) - {"marketdata", "exchange", "executor", "recorder", "strategies"})
    if unknown:
        raise ConfigError(f"{config_path}: unknown table [fleet.{unknown[0]}] (known: exchange, executor, marketdata, recorder, strategies)")
    specs = [
        WorkerSpec("exchange", "exchange", ex_args + common, first_start_args=["--fresh"] if fresh else []),
        WorkerSpec("marketdata", "marketdata", md_args + common),
        WorkerSpec("executor", "executor", exe_args + common),
    ]
    if record:
        specs.append(WorkerSpec("recorder", "recorder", rec_args + common))
    tables = fleet.get("strategies", DEFAULT_STRATEGIES)
    if not isinstance(tables, (list, tuple)) or not all(isinstance(t, dict) for t in tables):
        raise ConfigError(f"{config_path}: fleet.strategies must be an array of tables ([[fleet.strategies]])")
    # --no-strategies: the config's strategies are still checked (a typo stops the start either way)
    for i, strat in enumerate(tables):
        opts = dict(strat)
        name = opts.pop("name", None)
        if not isinstance(name, str) or not name:
            raise ConfigError(f"{config_path}: [[fleet.strategies]] #{i + 1} needs a name")
        spec = WorkerSpec(name, "strategy", _worker_args("strategy", opts, f"{config_path}: [[fleet.strategies]] {name}") + common)
        if strategies:
            specs.append(spec)
    check_worker_tables(cfg, config_path, {s.name: s.kind for s in specs})
    return specs


def check_worker_tables(cfg: dict[str, Any], config_path: Any, names: dict[str, str]) -> None:
    """[worker.KIND] and [worker.NAME] of the fleet's workers, checked as each worker will
    check them when it starts (a table of a worker not in this fleet is left alone: it may be
    for a worker started by hand on another host)."""
    for key, table in toml_table(cfg, "worker", config_path).items():
        kind = key if key in KIND_CONFIGS else names.get(key)
        if kind is None:
            continue
        if not isinstance(table, dict):
            raise ConfigError(f"{config_path}: [worker.{key}] must be a table")
        check_table(table, [RuntimeConfig, KIND_CONFIGS[kind]], f"{config_path}: [worker.{key}]")
