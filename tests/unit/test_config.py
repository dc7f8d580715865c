"""Typed configuration: each option declared once (workers/config.py), read from defaults,
TOML tables and flags in that order, and handed to a worker as one typed object."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest

from tests.procs import REPO
from workers.config import (
    ConfigError,
    Endpoints,
    RuntimeConfig,
    add_common_args,
    from_namespace,
    parse_worker_argv,
    to_argv,
)
from workers.exchange import gateway as exchange
from workers.exchange.limits import DEFAULTS as HARD_DEFAULTS
from workers.exchange.limits import HardLimitsConfig
from workers.executor import worker as executor
from workers.executor.risk import RiskLimits
from workers.fleet import FleetConfig, default_fleet
from workers.launcher import LauncherConfig
from workers.launcher import build_parser as launcher_parser
from workers.launcher import parse as launcher_parse
from workers.marketdata import gateway as marketdata
from workers.strategy import worker as strategy
from workers.strategy.levels import StrategyParams

KINDS = {
    "marketdata": (marketdata.MarketDataConfig, marketdata.build_parser),
    "strategy": (strategy.StrategyConfig, strategy.build_parser),
    "executor": (executor.ExecutorConfig, executor.build_parser),
    "exchange": (exchange.ExchangeConfig, exchange.build_parser),
}

#: a value other than the default for every option of every kind (the round trip below)
NON_DEFAULT = {
    "marketdata": dict(feed="replay", symbols="aapl,MSFT", rate=7.5, seed=-3, max_ticks=10, start_delay=0.25, file="-odd name.csv",
                       speed=86400.0, loop=True, ticks_per_bar=8, spread_bps=0.1, hwm=7, batch_ticks=1),
    "strategy": dict(symbols=("GOOG",), window=30, min_fill=10, mode="bounce", breakout_bps=1.5, bounce_bps=2.25, turn_bps=0.1,
                     min_range_bps=0.0, cooldown=0.5, qty=7, max_position=70, allow_short=False, levels_interval=0.0,
                     levels_refresh=0.3, signal_hwm=5, tick_hwm=6, max_symbols=2),
    "executor": dict(max_order_qty=5, max_position=0, price_band_pct=0.5, max_orders_per_sec=2, kill_switch=True, symbols="AAPL,BRK.B",
                     order_timeout=0.2, order_retries=9, max_in_flight=1, reconcile_interval=0.1, max_unknown_orders=4,
                     trade_unsynced=True, position_interval=2.5, events_hwm=10),
    "exchange": dict(journal="/tmp/j.sqlite", fresh=True, journal_sync="full", exec_hwm=0, tick_hwm=3, market_wait=0.0, batch=16,
                     hard=HardLimitsConfig(hard_max_order_qty=1, hard_max_position=2, hard_price_band_pct=3.5, hard_max_orders_per_sec=4)),
}


def worker_parser(kind: str):
    _, build = KINDS[kind]
    p = build()
    add_common_args(p)
    return p


def read(kind: str, argv: list[str]):
    """What ``main.py worker KIND argv`` reads: (runtime config, the kind's config)."""
    cls, _ = KINDS[kind]
    ns = parse_worker_argv(worker_parser(kind), argv, kind, [RuntimeConfig, cls])
    return from_namespace(RuntimeConfig, ns), from_namespace(cls, ns)


def flags_of(cls) -> list[str]:
    out = []
    for f in dataclasses.fields(cls):
        if f.metadata.get("nested"):
            out += flags_of(f.type if isinstance(f.type, type) else getattr(sys.modules[cls.__module__], f.type))
        else:
            out.append(f.metadata["opt"].flag or "--" + f.name.replace("_", "-"))
    return out


# ---------------------------------------------------------------------------- defaults


@pytest.mark.parametrize("kind", KINDS)
def test_no_flags_no_file_gives_the_declared_defaults(kind):
    cls, _ = KINDS[kind]
    runtime, cfg = read(kind, [])
    assert cfg == cls() and runtime == RuntimeConfig()
    assert runtime.endpoints == Endpoints()


def test_defaults_come_from_the_logic_they_configure():
    # declared once: the config reads the defaults of the objects it builds, never copies them
    assert strategy.StrategyConfig().params == StrategyParams()
    assert executor.ExecutorConfig().limits() == RiskLimits()
    assert exchange.ExchangeConfig().hard.limits() == HARD_DEFAULTS
    assert set(StrategyParams.field_names()) <= {f.name for f in dataclasses.fields(strategy.StrategyConfig)}
    assert LauncherConfig().log_level == RuntimeConfig().log_level
    assert FleetConfig().tick_rate == 20.0 and LauncherConfig().fleet == FleetConfig()


# ---------------------------------------------------------------------------- TOML, flags


def test_toml_tables_override_defaults_and_flags_override_toml(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        '[endpoints]\nticks = "ipc:///tmp/t.sock"\n\n'
        '[worker.strategy]\nwindow = 50\nqty = 7\nsymbols = ["msft"]\nheartbeat = 0.25\n\n'
        '[worker.sr-a]\nwindow = 12\nmin_fill = 6\nallow-short = false\n'
    )
    runtime, c = read("strategy", ["--config", str(cfg)])
    assert (c.window, c.qty, c.symbols, runtime.heartbeat) == (50, 7, ("MSFT",), 0.25)
    assert runtime.endpoints.ticks == "ipc:///tmp/t.sock" and runtime.endpoints.orders == Endpoints().orders
    # the instance's own table over the kind's, flags over both
    runtime, c = read("strategy", ["--config", str(cfg), "--name", "sr-a", "--qty", "9", "--ticks", "ipc:///tmp/u.sock"])
    assert (c.window, c.min_fill, c.qty, c.allow_short) == (12, 6, 9, False)
    assert runtime.name == "sr-a" and runtime.endpoints.ticks == "ipc:///tmp/u.sock"


@pytest.mark.parametrize(
    "table, key, why",
    [
        ("[worker.strategy]\nwindow = \"wide\"\n", "window", "must be an integer"),
        ("[worker.strategy]\ncooldown = true\n", "cooldown", "must be a number"),
        ("[worker.strategy]\nmode = \"sideways\"\n", "mode", "must be one of"),
        ("[worker.strategy]\nwindo = 30\n", "'windo'", "unknown key"),
        ("[worker.strategy]\nticks = \"ipc:///x\"\n", "'ticks'", "unknown key"),  # endpoints live in [endpoints]
        ("[worker.strategy]\nmax_symbols = 0\n", "max_symbols", "must be >= 1"),
        ("[endpoints]\ntick = \"ipc:///x\"\n", "'tick'", "unknown key"),
        ("[worker.sr-a]\nsymbols = [\"AA$PL\"]\n", "symbols", "AA$PL"),
    ],
)
def test_a_bad_toml_value_or_key_is_refused_naming_file_and_key(tmp_path, table, key, why):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(table)
    with pytest.raises(ConfigError) as e:
        read("strategy", ["--config", str(cfg), "--name", "sr-a"])
    assert str(cfg) in str(e.value) and key in str(e.value) and why in str(e.value)


def test_a_range_across_fields_is_refused_like_a_bad_value(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text("[worker.strategy]\nwindow = 1\n")  # StrategyParams: window >= 2
    with pytest.raises(ConfigError, match="window"):
        read("strategy", ["--config", str(cfg)])


def test_a_bad_config_file_is_exit_status_2_with_one_line(tmp_path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[worker.executor]\nmax_order_qty = \"lots\"\n")
    out = subprocess.run([sys.executable, str(REPO / "main.py"), "worker", "executor", "--config", str(cfg), "--no-control"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr and "max_order_qty" in out.stderr and str(cfg) in out.stderr
    broken = tmp_path / "broken.toml"
    broken.write_text("[worker.executor\n")
    out = subprocess.run([sys.executable, str(REPO / "main.py"), "--headless", "--config", str(broken)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "not valid TOML" in out.stderr and "Traceback" not in out.stderr


def test_flags_keep_their_spelling_and_checks():
    p = worker_parser("marketdata")
    with pytest.raises(SystemExit) as e:
        p.parse_args(["--rate", "-1"])
    assert e.value.code == 2
    with pytest.raises(SystemExit):
        p.parse_args(["--batch-ticks", "0"])
    with pytest.raises(SystemExit):
        worker_parser("executor").parse_args(["--symbols", "AAPL,BAD!"])
    ns = worker_parser("strategy").parse_args(["--no-allow-short", "--symbols", "*"])
    assert ns.allow_short is False and ns.symbols == ()
    ns = worker_parser("exchange").parse_args(["--hard-max-position", "5", "--journal-sync", "full"])
    assert from_namespace(exchange.ExchangeConfig, ns).hard.hard_max_position == 5


# ---------------------------------------------------------------------------- --help


@pytest.mark.parametrize("kind", KINDS)
def test_help_lists_every_declared_option(kind):
    cls, _ = KINDS[kind]
    text = worker_parser(kind).format_help()
    for flag in flags_of(cls) + flags_of(RuntimeConfig):
        assert flag in text, f"{flag} missing from main.py worker {kind} --help"
    assert "(default" in text


def test_main_help_lists_every_launcher_option():
    text = launcher_parser().format_help()
    for flag in flags_of(LauncherConfig):
        assert flag in text


# ---------------------------------------------------------------------------- round trip


@pytest.mark.parametrize("kind", KINDS)
def test_config_to_argv_and_back_is_equal(kind):
    cls, _ = KINDS[kind]
    cfg = cls(**NON_DEFAULT[kind])
    argv = to_argv(cfg)
    assert read(kind, argv)[1] == cfg
    assert to_argv(cls()) == []


def test_runtime_round_trip():
    rc = RuntimeConfig(endpoints=Endpoints.ephemeral_ipc("/tmp/x"), name="sr-1", no_control=True, heartbeat=0.2, orphan_timeout=0.0,
                       log_level="DEBUG", curve_dir="/keys")
    assert read("strategy", to_argv(rc))[0] == rc


def test_what_the_supervisor_passes_reads_back_as_the_fleet_table(tmp_path):
    cfg = tmp_path / "fleet.toml"
    cfg.write_text(
        '[fleet.marketdata]\nrate = 50\nseed = 7\nsymbols = ["AAPL", "MSFT"]\n\n'
        '[fleet.executor]\nmax_position = 5000\nkill_switch = false\nsymbols = "aapl"\n\n'
        '[fleet.exchange]\njournal_sync = "full"\nfresh = true\nhard_max_order_qty = 99\n\n'
        '[[fleet.strategies]]\nname = "sr-fast"\nsymbols = "AAPL,MSFT,GOOG"\nwindow = 30\nallow_short = false\ncooldown = 0.5\n'
    )
    specs = {s.name: s for s in default_fleet(data=tmp_path, tick_rate=33.0, config_path=str(cfg))}
    assert set(specs) == {"exchange", "marketdata", "executor", "recorder", "sr-fast"}

    def reads(name):
        s = specs[name]
        return read(s.kind, ["--name", name, *s.args, *s.first_start_args])[1]

    assert reads("marketdata") == marketdata.MarketDataConfig(rate=50.0, seed=7, symbols="AAPL,MSFT")
    assert reads("executor") == executor.ExecutorConfig(max_position=5000, symbols="aapl")
    ex = reads("exchange")
    assert (ex.journal_sync, ex.fresh, ex.hard.hard_max_order_qty, ex.journal) == ("full", True, 99, str(tmp_path / exchange.DEFAULT_JOURNAL_NAME))
    assert "--fresh" not in specs["exchange"].args  # a restart never wipes the journal again
    assert reads("sr-fast") == strategy.StrategyConfig(symbols=("AAPL", "MSFT", "GOOG"), window=30, allow_short=False, cooldown=0.5)
    # the embedded fleet: the market-data rate is the launcher's tick rate
    plain = {s.name: s for s in default_fleet(data=tmp_path)}
    assert read("marketdata", plain["marketdata"].args)[1].rate == FleetConfig().tick_rate


@pytest.mark.parametrize(
    "toml, key",
    [
        ("[fleet.executor]\nmax_postion = 1\n", "max_postion"),
        ("[fleet.marketdata]\nrate = \"fast\"\n", "rate"),
        ("[fleet.exchange]\nfresh = \"yes\"\n", "fresh"),
        ("[[fleet.strategies]]\nname = \"s\"\nwindow = 1.5\n", "window"),
        ("[fleet.strategy]\nwindow = 3\n", "fleet.strategy"),
        ("[worker.executor]\nqty = 3\n", "qty"),
        ("[tickdesk]\ntick_rat = 3\n", "tick_rat"),
        ("[tickdesk]\nseed = 1.5\n", "seed"),
    ],
)
def test_the_launcher_refuses_a_bad_fleet_file_before_starting_anything(tmp_path, toml, key):
    cfg = tmp_path / "fleet.toml"
    cfg.write_text(toml)
    with pytest.raises(ConfigError) as e:
        launcher_parse(["--config", str(cfg), "--data-dir", str(tmp_path)])
    assert key in str(e.value) and str(cfg) in str(e.value)


def test_launcher_tables_and_flags(tmp_path):
    cfg = tmp_path / "fleet.toml"
    cfg.write_text('[tickdesk]\ntick_rate = 40\nstatus_every = 2\n\n[endpoints]\norders = "ipc:///tmp/o.sock"\n')
    ns = launcher_parse(["--config", str(cfg), "--tick-rate", "60"])
    lc = from_namespace(LauncherConfig, ns)
    assert (lc.fleet.tick_rate, lc.status_every, lc.fleet.endpoints.orders) == (60.0, 2.0, "ipc:///tmp/o.sock")
    # an endpoint left unset stays None in the namespace: the window fills it from its settings
    assert ns.ep_ticks is None and lc.fleet.endpoints.ticks == Endpoints().ticks


def test_the_recorder_is_on_by_default_and_off_by_its_table(tmp_path):
    specs = {s.name: s for s in default_fleet(data=tmp_path)}
    assert f"--record-dir={tmp_path / 'recordings'}" in specs["recorder"].args
    cfg = tmp_path / "fleet.toml"
    cfg.write_text("[fleet.recorder]\nenabled = false\n")
    assert "recorder" not in {s.name for s in default_fleet(data=tmp_path, config_path=str(cfg))}
    cfg.write_text("[fleet.recorder]\nmax_mb = 64\nroll_second = 5\n")
    with pytest.raises(ConfigError, match="roll_second"):
        default_fleet(data=tmp_path, config_path=str(cfg))
