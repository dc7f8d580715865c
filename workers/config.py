"""Endpoints and shared configuration: defaults, TOML file, CLI flags (in that order)."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_HOST = "127.0.0.1"


@dataclass(frozen=True)
class Endpoints:
    """Where each socket binds or connects.  Defaults are loopback only (see DESIGN.md)."""

    ticks: str = f"tcp://{DEFAULT_HOST}:5555"
    signals: str = f"tcp://{DEFAULT_HOST}:5556"
    orders: str = f"tcp://{DEFAULT_HOST}:5557"
    execution: str = f"tcp://{DEFAULT_HOST}:5558"
    events: str = f"tcp://{DEFAULT_HOST}:5559"
    control: str = f"tcp://{DEFAULT_HOST}:5560"

    NAMES = ("ticks", "signals", "orders", "execution", "events", "control")

    def as_args(self) -> list[str]:
        out = []
        for name in self.NAMES:
            out += [f"--{name}", getattr(self, name)]
        return out

    @classmethod
    def from_args(cls, ns: argparse.Namespace) -> Endpoints:
        base = cls()
        kw = {n: getattr(ns, f"ep_{n}", None) or getattr(base, n) for n in cls.NAMES}
        return cls(**kw)

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


def add_endpoint_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("endpoints")
    d = Endpoints()
    for n in Endpoints.NAMES:
        g.add_argument(f"--{n}", dest=f"ep_{n}", metavar="URL", default=None, help=f"{n} endpoint (default {getattr(d, n)})")


def add_common_args(p: argparse.ArgumentParser) -> None:
    """Options every worker understands (runtime, control channel, logging)."""
    add_endpoint_args(p)
    g = p.add_argument_group("runtime")
    g.add_argument("--config", metavar="TOML", default=None, help="TOML file whose [worker.NAME] table sets defaults")
    g.add_argument("--name", default=None, help="instance name (default: the worker kind)")
    g.add_argument(
        "--no-control",
        action="store_true",
        help="run standalone: no supervisor, no heartbeats, never exit for lack of a supervisor",
    )
    g.add_argument("--heartbeat", type=float, default=0.5, help="seconds between heartbeats (default 0.5)")
    g.add_argument(
        "--orphan-timeout",
        type=float,
        default=5.0,
        help="exit when the supervisor has been silent this many seconds (0: never; default 5)",
    )
    g.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING (default INFO)")
    g.add_argument("--curve-dir", default=None, help="directory with CurveZMQ keys (needed to bind non-loopback)")


def load_toml(path: str | os.PathLike | None) -> dict[str, Any]:
    if not path:
        return {}
    with open(path, "rb") as f:
        return tomllib.load(f)


def apply_toml_defaults(p: argparse.ArgumentParser, argv: list[str], section: str) -> None:
    """If ``--config FILE`` is in argv, set parser defaults from ``[section]`` of that file,
    so explicit CLI flags still win."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config", default=None)
    ns, _ = pre.parse_known_args(argv)
    data = load_toml(ns.config)
    node: Any = data
    for part in section.split("."):
        node = node.get(part, {}) if isinstance(node, dict) else {}
    if node:
        p.set_defaults(**{k.replace("-", "_"): v for k, v in node.items()})
    eps = data.get("endpoints", {})
    if eps:
        p.set_defaults(**{f"ep_{k}": v for k, v in eps.items() if k in Endpoints.NAMES})


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


def is_loopback(endpoint: str) -> bool:
    """True for ipc://, inproc:// and tcp:// on 127.0.0.0/8, ::1 or localhost."""
    if endpoint.startswith(("ipc://", "inproc://")):
        return True
    if not endpoint.startswith("tcp://"):
        return False
    host = endpoint[len("tcp://") :].rsplit(":", 1)[0].strip("[]")
    return host == "localhost" or host.startswith("127.") or host == "::1"


def dataclass_from_ns(cls, ns: argparse.Namespace, **override):
    """Build a config dataclass from the argparse namespace fields of the same names."""
    kw = {f.name: getattr(ns, f.name) for f in dataclasses.fields(cls) if hasattr(ns, f.name)}
    kw.update(override)
    return cls(**kw)


__all__ = [
    "Endpoints",
    "add_common_args",
    "add_endpoint_args",
    "apply_toml_defaults",
    "data_dir",
    "resources_dir",
    "is_loopback",
    "free_port",
    "dataclass_from_ns",
    "field",
]
