"""Endpoints and shared configuration: defaults, TOML file, CLI flags (in that order)."""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import sys
import tomllib
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workers.errors import ConfigError

DEFAULT_HOST = "127.0.0.1"


# ---------------------------------------------------------------------------- declarations
#
# Each option is declared once, as a field of a frozen config dataclass: its type is the
# annotation, its default the field's default, its flag, help text and check the Opt in the
# field's metadata.  The argparse options, the TOML checks, the typed object a worker gets and
# the argv the supervisor passes are all generated from that one declaration, so a default or
# a check cannot drift between the command line, a config file and the fleet builder.
# Dataclasses rather than msgspec Structs: the declarations need free-form metadata per field
# (flag, help, argparse group) and checks shared with argparse's ``type=``; msgspec's
# ``Meta`` constraints would have been a second, differently-worded validation beside them.


@dataclass(frozen=True)
class Opt:
    """How one config field appears on the command line and in TOML (see :func:`option`)."""

    help: str
    #: the command-line flag; "--" + the field name with dashes when empty
    flag: str = ""
    #: value -> value (normalized); raises ValueError with the reason when the value is unfit
    check: Callable[[Any], Any] | None = None
    choices: tuple[Any, ...] = ()
    metavar: str | None = None
    #: argparse group title ("" = the parser's own options)
    group: str = ""
    #: a bool as --x / --no-x; otherwise a bool is a store_true switch (its default must be False)
    negatable: bool = False
    #: what --help says the default is when the value itself says too little (None, "", a path)
    default_text: str | None = None
    #: False: command line only (--config itself)
    toml: bool = True
    #: str field: a TOML array of strings is accepted too, joined with ","
    join: bool = False


def option(default: Any, help: str, **kw: Any) -> Any:
    """A config field with its default and how it shows on the command line and in TOML."""
    return field(default=default, metadata={"opt": Opt(help, **kw)})


def options_of(cls: type) -> Any:
    """A config field that is itself a declared config (its options join the enclosing one's)."""
    return field(default_factory=cls, metadata={"nested": True})


@dataclass(frozen=True)
class _Field:
    name: str
    base: type  # int, float, str, bool, tuple (tuple[str, ...]), or a nested config class
    optional: bool
    default: Any
    opt: Opt | None  # None: a nested config
    dest: str

    @property
    def flag(self) -> str:
        return self.opt.flag or "--" + self.name.replace("_", "-")


_FIELDS: dict[type, tuple[_Field, ...]] = {}


def _fields(cls: type) -> tuple[_Field, ...]:
    got = _FIELDS.get(cls)
    if got is not None:
        return got
    hints = typing.get_type_hints(cls)
    prefix = getattr(cls, "DEST_PREFIX", "")
    out = []
    for f in dataclasses.fields(cls):
        tp, optional = hints[f.name], False
        args = typing.get_args(tp)
        if type(None) in args:
            optional = True
            (tp,) = [a for a in args if a is not type(None)]
        base = typing.get_origin(tp) or tp
        if f.metadata.get("nested"):
            out.append(_Field(f.name, base, False, None, None, f.name))
            continue
        opt = f.metadata.get("opt")
        if opt is None:
            raise TypeError(f"{cls.__name__}.{f.name} is not declared with option()")
        out.append(_Field(f.name, base, optional, f.default, opt, prefix + f.name))
    _FIELDS[cls] = got = tuple(out)
    return got


def _leaves(cls: type, *, with_own_table: bool = True) -> list[_Field]:
    """Every option of ``cls``, nested configs flattened (those read from a TOML table of their
    own, such as [endpoints], left out unless ``with_own_table``)."""
    out: list[_Field] = []
    for f in _fields(cls):
        if f.opt is None:
            if with_own_table or not getattr(f.base, "TOML_TABLE", ""):
                out += _leaves(f.base, with_own_table=with_own_table)
        else:
            out.append(f)
    return out


def _describe(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (tuple, list)):
        return ",".join(map(str, value))
    return str(value)


def convert(f: _Field, value: Any, *, choices: bool = True) -> Any:
    """``value`` (from TOML, a namespace or the command line) as the field's type, checked;
    ValueError with the reason otherwise."""
    if value is None:
        if f.optional:
            return None
        raise ValueError("a value is required")
    b = f.base
    if b is bool:
        if not isinstance(value, bool):
            raise ValueError(f"must be true or false, got {value!r}")
    elif b is int:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"must be an integer, got {value!r}")
    elif b is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"must be a number, got {value!r}")
        value = float(value)
        if not math.isfinite(value):
            raise ValueError(f"must be a finite number, got {value!r}")
    elif b is str:
        if f.opt.join and isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
            value = ",".join(value)
        if not isinstance(value, str):
            raise ValueError(f"must be a string, got {value!r}")
    elif b is tuple and f.opt.check is None:
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise ValueError(f"must be a list of strings, got {value!r}")
        value = tuple(value)
    if choices and f.opt.choices and value not in f.opt.choices:
        raise ValueError(f"must be one of {', '.join(map(str, f.opt.choices))}, got {value!r}")
    if f.opt.check is not None:
        value = f.opt.check(value)
    return value


def _cli_type(f: _Field) -> Callable[[str], Any]:
    base = f.base

    def parse(text: str) -> Any:
        # a ValueError from int()/float() lets argparse say "invalid int value: 'x'"; a failed
        # check becomes ArgumentTypeError, whose own words argparse shows
        value = int(text) if base is int else float(text) if base is float else text
        try:
            return convert(f, value, choices=False)  # argparse checks choices itself
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    parse.__name__ = base.__name__
    return parse


def _help(f: _Field) -> str:
    text = f.opt.help
    shown = f.opt.default_text
    if shown is None and not (f.default is None or f.default == "" or f.base is bool and not f.opt.negatable):
        shown = _describe(f.default)
    if shown:
        text += f" (default {shown})" if shown[0].isdigit() or shown[0] == "-" else f" (default: {shown})"
    return text.replace("%", "%%")


def add_options(p: argparse.ArgumentParser, cls: type, *, defaults: bool = True) -> None:
    """The command-line options of config class ``cls`` (nested configs included) on ``p``.
    ``defaults=False``: every option defaults to None, which :func:`from_namespace` reads as
    "not given" (the window fills endpoints from its settings that way)."""
    groups: dict[str, Any] = {}
    if getattr(cls, "UNSET_DEFAULTS", False):
        defaults = False
    for f in _fields(cls):
        if f.opt is None:
            add_options(p, f.base, defaults=defaults)
            continue
        title = f.opt.group
        g = p if not title else groups.get(title) or groups.setdefault(title, p.add_argument_group(title))
        default = f.default if defaults else None
        kw: dict[str, Any] = {"dest": f.dest, "help": _help(f), "default": default}
        if f.base is bool:
            kw["action"] = argparse.BooleanOptionalAction if f.opt.negatable else "store_true"
        else:
            kw.update(type=_cli_type(f), metavar=f.opt.metavar)
            if f.opt.choices:
                kw["choices"] = f.opt.choices
        g.add_argument(f.flag, **kw)


def build_parser_for(cls: type, prog: str, description: str, **kw: Any) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=description, **kw)
    add_options(p, cls)
    return p


def from_namespace(cls: type, ns: argparse.Namespace, **override: Any) -> Any:
    """The typed ``cls`` from an argparse namespace (None or a missing dest: the default);
    every value checked again, since a namespace may come from anywhere (tests, TOML)."""
    kw: dict[str, Any] = {}
    for f in _fields(cls):
        if f.opt is None:
            kw[f.name] = from_namespace(f.base, ns)
            continue
        value = getattr(ns, f.dest, None)
        if value is None or (value == "" and getattr(cls, "UNSET_DEFAULTS", False)):
            continue
        try:
            kw[f.name] = convert(f, value)
        except ValueError as e:
            raise ConfigError(f"{f.flag}: {e}") from None
    kw.update(override)
    try:
        return cls(**kw)
    except ValueError as e:  # a check across fields (__post_init__)
        raise ConfigError(str(e)) from None


def build(cls: type, values: Mapping[str, Any]) -> Any:
    """``cls`` from values by (flattened) field name; the rest keep their defaults."""
    kw: dict[str, Any] = {}
    for f in _fields(cls):
        if f.opt is None:
            kw[f.name] = build(f.base, values)
        elif f.name in values:
            kw[f.name] = values[f.name]
    return cls(**kw)


def from_mapping(cls: type, table: Mapping[str, Any], where: str = "", **base: Any) -> Any:
    """The typed ``cls`` from a TOML table over ``base`` values (see :func:`check_table`)."""
    try:
        return build(cls, {**base, **check_table(table, [cls], where, by="name")})
    except ValueError as e:
        raise ConfigError(f"{where}: {e}" if where else str(e)) from None


def option_names(cls: type) -> set[str]:
    """Field names a TOML table for ``cls`` may use (nested configs flattened, [endpoints] not)."""
    return {f.name for f in _leaves(cls, with_own_table=False) if f.opt.toml}


def table_argv(decls: Sequence[type], table: Mapping[str, Any], where: str, base: Mapping[str, Any] | None = None) -> list[str]:
    """The flags that hand a TOML table (over ``base`` values) to a worker whose options are
    ``decls``: every key checked as the worker will check it, then passed as its flag, so the
    worker reads back exactly these values whatever its own tables say."""
    values = {**(base or {}), **check_table(table, decls, where, by="name")}
    out: list[str] = []
    for cls in decls:
        mine = {k: v for k, v in values.items() if k in option_names(cls)}
        try:
            cfg = build(cls, mine)
        except ValueError as e:
            raise ConfigError(f"{where}: {e}") from None
        out += to_argv(cfg, mine)
    return out


def check_table(table: Mapping[str, Any], decls: Sequence[type], where: str, *, by: str = "dest") -> dict[str, Any]:
    """The values of a TOML table by dest (or field name), each checked against its field in
    ``decls``; ConfigError naming ``where`` and the key for an unknown key or an unfit value."""
    known = {f.name: f for cls in decls for f in _leaves(cls, with_own_table=False) if f.opt.toml}
    out: dict[str, Any] = {}
    for key, value in table.items():
        f = known.get(str(key).replace("-", "_"))
        if f is None:
            raise ConfigError(f"{where}: unknown key {key!r} (known: {', '.join(sorted(known))})")
        try:
            out[f.dest if by == "dest" else f.name] = convert(f, value)
        except ValueError as e:
            raise ConfigError(f"{where}: {key}: {e}") from None
    return out


def to_argv(cfg: Any, names: Iterable[str] | None = None) -> list[str]:
    """The flags that make a worker read ``cfg`` back: every field that differs from its
    default, or exactly the fields in ``names`` (nested configs flattened)."""
    wanted = None if names is None else set(names)
    out: list[str] = []
    for f in _fields(type(cfg)):
        value = getattr(cfg, f.name)
        if f.opt is None:
            out += to_argv(value, None if wanted is None else wanted)
            continue
        if (value == f.default) if wanted is None else (f.name not in wanted):
            continue
        if f.base is bool:
            if f.opt.negatable:
                out.append(f.flag if value else "--no-" + f.flag[2:])
            elif value:
                out.append(f.flag)
        elif value is not None:
            # "--flag=value": a value that starts with "-" (or is empty) stays a value
            out.append(f"{f.flag}={_describe(value) if not isinstance(value, float) else repr(value)}")
    return out


class ConfigOf:
    """``config = ConfigOf(MarketDataConfig)`` in a worker class: ``self.config`` is the typed
    config read from ``self.args`` on first use (ConfigError if a value does not fit), and
    run_worker knows which declaration checks the worker's TOML tables."""

    def __init__(self, cls: type | str):
        # a name: the config class is declared further down the worker's module, beside its parser
        self._cls = cls
        self._module = ""
        self.attr = "config"

    def __set_name__(self, owner: type, name: str) -> None:
        self.attr = name
        self._module = owner.__module__

    @property
    def cls(self) -> type:
        if isinstance(self._cls, str):
            self._cls = getattr(sys.modules[self._module], self._cls)
        return self._cls

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            return self
        value = from_namespace(self.cls, obj.args)
        obj.__dict__[self.attr] = value  # a non-data descriptor: the instance's copy wins from now on
        return value


def field_default(cls: type, name: str) -> Any:
    """The declared default of ``cls.name`` (for code that needs one default, not a config)."""
    return next(f.default for f in _fields(cls) if f.name == name)


def _endpoint(port: int, role: str) -> Any:
    return option(f"tcp://{DEFAULT_HOST}:{port}", f"{role} endpoint", metavar="URL", group="endpoints")


@dataclass(frozen=True)
class Endpoints:
    """Where each socket binds or connects.  Defaults are loopback only (see DESIGN.md)."""

    ticks: str = _endpoint(5555, "ticks")
    signals: str = _endpoint(5556, "signals")
    orders: str = _endpoint(5557, "orders")
    execution: str = _endpoint(5558, "execution")
    events: str = _endpoint(5559, "events")
    control: str = _endpoint(5560, "control")
    snapshot: str = _endpoint(5561, "snapshot")

    NAMES = ("ticks", "signals", "orders", "execution", "events", "control", "snapshot")
    #: namespace dests are ep_<name> (--orders would clash with nothing today, but a worker's
    #: own option may one day be called like an endpoint)
    DEST_PREFIX = "ep_"
    #: read from the [endpoints] table of a config file, never from a worker's table
    TOML_TABLE = "endpoints"
    #: an endpoint not given stays None in the namespace, so the window can fill it from its
    #: settings before the declared default applies
    UNSET_DEFAULTS = True

    def as_args(self) -> list[str]:
        out = []
        for name in self.NAMES:
            out += [f"--{name}", getattr(self, name)]
        return out

    @classmethod
    def from_args(cls, ns: argparse.Namespace) -> Endpoints:
        return from_namespace(cls, ns)

    @classmethod
    def ephemeral_ipc(cls, directory: str | os.PathLike) -> Endpoints:
        """One ipc:// endpoint per role inside ``directory`` (tests, single host)."""
        d = Path(directory)
        return cls(**{n: f"ipc://{d / n}.sock" for n in cls.NAMES})

    @classmethod
    def ephemeral_tcp(cls, host: str = DEFAULT_HOST) -> Endpoints:
        """Free loopback tcp ports, picked by the kernel (tests)."""
        return cls(**{n: f"tcp://{host}:{free_port(host)}" for n in cls.NAMES})


def free_port(host: str = DEFAULT_HOST) -> int:
    import socket

    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def at_least(lo: float) -> Callable[[Any], Any]:
    def check(v: Any) -> Any:
        if v < lo:
            raise ValueError(f"must be >= {lo:g}, got {v!r}")
        return v

    return check


def positive(v: Any) -> Any:
    if not v > 0:
        raise ValueError(f"must be a positive number, got {v!r}")
    return v


def between(lo: float, hi: float) -> Callable[[Any], Any]:
    def check(v: Any) -> Any:
        if not lo <= v <= hi:
            raise ValueError(f"must be {lo:g}..{hi:g}, got {v!r}")
        return v

    return check


@dataclass(frozen=True)
class RuntimeConfig:
    """Options every worker understands (endpoints, control channel, logging)."""

    endpoints: Endpoints = options_of(Endpoints)
    config: str | None = option(None, "TOML file whose [worker.KIND] and [worker.NAME] tables set defaults", metavar="TOML", group="runtime", toml=False)
    name: str | None = option(None, "instance name", default_text="the worker kind", group="runtime")
    no_control: bool = option(False, "run standalone: no supervisor, no heartbeats, never exit for lack of a supervisor", group="runtime")
    heartbeat: float = option(0.5, "seconds between heartbeats", group="runtime")
    orphan_timeout: float = option(5.0, "exit when a remote supervisor (not our parent) has been silent this many seconds (0: never)", group="runtime")
    log_level: str = option("INFO", "DEBUG, INFO, WARNING", group="runtime")
    curve_dir: str | None = option(None, "directory with CurveZMQ keys (needed to bind non-loopback)", group="runtime")


def add_endpoint_args(p: argparse.ArgumentParser) -> None:
    add_options(p, Endpoints)


def add_common_args(p: argparse.ArgumentParser) -> None:
    """Options every worker understands: :class:`RuntimeConfig`."""
    add_options(p, RuntimeConfig)


def load_toml(path: str | os.PathLike | None) -> dict[str, Any]:
    """The file as a dict; ConfigError naming the file when it is missing or not TOML."""
    if not path:
        return {}
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except OSError as e:
        raise ConfigError(f"config file {path}: {e.strerror or e}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config file {path}: not valid TOML: {e}") from None


def toml_table(data: Mapping[str, Any], dotted: str, path: Any = "") -> dict[str, Any]:
    """``[a.b]`` of a loaded file ({} when absent); ConfigError when it is not a table."""
    node: Any = data
    for part in dotted.split("."):
        node = node.get(part, {}) if isinstance(node, dict) else None
        if not isinstance(node, dict):
            raise ConfigError(f"{path}: [{dotted}] must be a table")
    return node


def config_path(argv: list[str]) -> str | None:
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config", default=None)
    ns, _ = pre.parse_known_args(argv)
    return ns.config


def apply_toml_defaults(p: argparse.ArgumentParser, argv: list[str], section: str, decls: Sequence[type] = ()) -> None:
    """If ``--config FILE`` is in argv, set parser defaults from ``[section]`` and
    ``[endpoints]`` of that file, so explicit CLI flags still win.  Every key must be an
    option of ``decls`` and every value of its type: ConfigError naming file, table and key."""
    path = config_path(argv)
    data = load_toml(path)
    if not data:
        return
    table = toml_table(data, section, path)
    if decls:
        values = check_table(table, decls, f"{path}: [{section}]")
    else:  # a parser without declarations: its dests, unchecked
        values = {str(k).replace("-", "_"): v for k, v in table.items()}
    values.update(check_table(toml_table(data, Endpoints.TOML_TABLE, path), [Endpoints], f"{path}: [{Endpoints.TOML_TABLE}]"))
    p.set_defaults(**values)


def parse_worker_argv(parser: argparse.ArgumentParser, argv: list[str], kind: str, decls: Sequence[type] = ()) -> argparse.Namespace:
    """A worker's namespace: declared defaults < [worker.KIND] < [worker.NAME] < flags (and
    [endpoints] under the endpoint flags); ConfigError for a table that does not fit ``decls``."""
    apply_toml_defaults(parser, argv, f"worker.{kind}", decls)
    args = parser.parse_args(argv)
    if args.name:
        apply_toml_defaults(parser, argv, f"worker.{args.name}", decls)
        args = parser.parse_args(argv)
    return args


def data_dir() -> Path:
    """Where journals and state live: TICKDESK_DATA_DIR, else the user's app-data folder."""
    env = os.environ.get("TICKDESK_DATA_DIR")
    if env:
        return Path(env)
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local"))
        return base / "TickDesk"
    xdg = os.environ.get("XDG_DATA_HOME")
    return (Path(xdg) if xdg else Path.home() / ".local" / "share") / "tickdesk"


def resources_dir() -> Path:
    """The bundled resources folder, found both from source and inside a PyInstaller bundle."""
    frozen_base = getattr(sys, "_MEIPASS", None)
    if frozen_base:
        return Path(frozen_base) / "resources"
    return Path(__file__).resolve().parent.parent / "resources"


def enable_ipv6(ctx: Any) -> Any:
    """Let the sockets of zmq context ``ctx`` use IPv6 endpoints (``tcp://[::1]:5557``, which
    the docs list as loopback).  libzmq leaves IPv6 off by default; with it on, IPv4 addresses
    work as before.  Every context TickDesk makes goes through here."""
    import zmq

    ctx.set(zmq.IPV6, 1)
    return ctx


def is_loopback(endpoint: str) -> bool:
    """True for ipc://, inproc:// and tcp:// on 127.0.0.0/8, ::1 or localhost."""
    if endpoint.startswith(("ipc://", "inproc://")):
        return True
    if not endpoint.startswith("tcp://"):
        return False
    host = endpoint[len("tcp://") :].rsplit(":", 1)[0].strip("[]")
    return host == "localhost" or host.startswith("127.") or host == "::1"


__all__ = [
    "ConfigOf",
    "enable_ipv6",
    "Endpoints",
    "Opt",
    "RuntimeConfig",
    "add_options",
    "at_least",
    "between",
    "build",
    "build_parser_for",
    "check_table",
    "config_path",
    "convert",
    "field_default",
    "from_mapping",
    "from_namespace",
    "load_toml",
    "option",
    "option_names",
    "parse_worker_argv",
    "options_of",
    "positive",
    "table_argv",
    "to_argv",
    "toml_table",
    "add_common_args",
    "add_endpoint_args",
    "apply_toml_defaults",
    "data_dir",
    "resources_dir",
    "is_loopback",
    "free_port",
    "field",
]
