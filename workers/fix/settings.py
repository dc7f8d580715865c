"""A QuickFIX-style session settings file, and where the credentials come from.

The file is what a broker's onboarding sheet maps onto directly (docs/venues.md)::

    [DEFAULT]
    ConnectionType=initiator
    HeartBtInt=30
    FileStorePath=fix-store

    [SESSION]
    BeginString=FIX.4.4
    SenderCompID=TICKDESK
    TargetCompID=BROKER
    SocketConnectHost=fix.broker.example
    SocketConnectPort=9878
    PasswordEnv=TICKDESK_FIX_PASSWORD

``[DEFAULT]`` values apply to every ``[SESSION]``; a session's own keys win.  Keys are
QuickFIX's own where QuickFIX has one.  Credentials are never in this file nor on a command
line (both end up in shell histories, process lists and support tickets): ``PasswordEnv``
names an environment variable, ``PasswordFile`` a file that only its owner can read.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path


class FixSettingsError(ValueError):
    """The settings file cannot be used; the message says which line or key, and why."""


#: the only FIX version this client speaks
BEGIN_STRING = "FIX.4.4"


@dataclass(frozen=True)
class FixSessionSettings:
    """One initiator session, as read from the file (validated)."""

    sender_comp_id: str
    target_comp_id: str
    host: str
    port: int
    heartbeat_s: int = 30
    begin_string: str = BEGIN_STRING
    #: where the sequence numbers are kept across restarts (relative: to the settings file)
    store_path: Path = Path("fix-store")
    reset_on_logon: bool = False
    username: str = ""
    #: the password, read from PasswordEnv or PasswordFile (never from the file itself)
    password: str = field(default="", repr=False)
    tls: bool = False
    tls_ca_file: str = ""
    reconnect_s: float = 5.0
    #: every key of the session as written, for the parts that read their own (market data...)
    raw: dict[str, str] = field(default_factory=dict, repr=False, compare=False)

    @property
    def session_id(self) -> str:
        return f"{self.begin_string}:{self.sender_comp_id}->{self.target_comp_id}"


def parse_sections(text: str, source: str = "<settings>") -> list[tuple[str, dict[str, str]]]:
    """``[(section name, {key: value})]`` in file order; several ``[SESSION]`` may appear."""
    sections: list[tuple[str, dict[str, str]]] = []
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            name = line[1:-1].strip().upper()
            if name not in ("DEFAULT", "SESSION"):
                raise FixSettingsError(f"{source}:{n}: unknown section [{line[1:-1]}] (only [DEFAULT] and [SESSION])")
            sections.append((name, {}))
            continue
        if "=" not in line:
            raise FixSettingsError(f"{source}:{n}: expected Key=Value, got {line!r}")
        if not sections:
            raise FixSettingsError(f"{source}:{n}: {line.split('=', 1)[0].strip()} before any [DEFAULT] or [SESSION]")
        key, value = (p.strip() for p in line.split("=", 1))
        if not key:
            raise FixSettingsError(f"{source}:{n}: a value without a key")
        sections[-1][1][key] = value
    return sections


def _flag(v: str, key: str) -> bool:
    if v.upper() in ("Y", "YES", "TRUE", "1"):
        return True
    if v.upper() in ("N", "NO", "FALSE", "0", ""):
        return False
    raise FixSettingsError(f"{key}={v!r}: expected Y or N")


def _int(v: str, key: str, lo: int, hi: int) -> int:
    try:
        n = int(v)
    except ValueError:
        raise FixSettingsError(f"{key}={v!r}: expected a whole number") from None
    if not lo <= n <= hi:
        raise FixSettingsError(f"{key}={n}: expected {lo}..{hi}")
    return n


def read_secret_file(path: Path) -> str:
    """The first line of ``path``, refused unless only its owner may read or write it (POSIX)."""
    try:
        st = path.stat()
    except OSError as e:
        raise FixSettingsError(f"PasswordFile {path}: {e.strerror or e}") from None
    if os.name == "posix" and st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise FixSettingsError(f"PasswordFile {path}: readable by others (mode {stat.S_IMODE(st.st_mode):o}); "
                               f"chmod 600 {path}")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise FixSettingsError(f"PasswordFile {path}: cannot read: {e}") from None
    if not lines or not lines[0].strip():
        raise FixSettingsError(f"PasswordFile {path}: empty")
    return lines[0].strip()


def load_settings(path: str | Path, env: dict[str, str] | None = None) -> list[FixSessionSettings]:
    """Every ``[SESSION]`` of the file at ``path``; raises FixSettingsError with the reason."""
    path = Path(path)
    env = os.environ if env is None else env
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise FixSettingsError(f"{path}: cannot read: {e}") from None
    defaults: dict[str, str] = {}
    out: list[FixSessionSettings] = []
    for name, keys in parse_sections(text, str(path)):
        if name == "DEFAULT":
            defaults.update(keys)
            continue
        k = {**defaults, **keys}
        where = f"{path} [SESSION] #{len(out) + 1}"
        for secret in ("Password", "RawData"):
            if secret in k:
                raise FixSettingsError(f"{where}: {secret}= in the settings file; use PasswordEnv= (an environment "
                                       "variable) or PasswordFile= (a file only you can read)")
        missing = [m for m in ("SenderCompID", "TargetCompID", "SocketConnectHost", "SocketConnectPort") if not k.get(m)]
        if missing:
            raise FixSettingsError(f"{where}: missing {', '.join(missing)}")
        begin = k.get("BeginString", BEGIN_STRING)
        if begin != BEGIN_STRING:
            raise FixSettingsError(f"{where}: BeginString={begin}: only {BEGIN_STRING} is spoken")
        if k.get("ConnectionType", "initiator").lower() != "initiator":
            raise FixSettingsError(f"{where}: ConnectionType={k['ConnectionType']}: TickDesk is the initiator")
        password = ""
        if k.get("PasswordEnv"):
            password = env.get(k["PasswordEnv"], "")
            if not password:
                raise FixSettingsError(f"{where}: PasswordEnv={k['PasswordEnv']}, but that variable is not set")
        elif k.get("PasswordFile"):
            pf = Path(k["PasswordFile"])
            password = read_secret_file(pf if pf.is_absolute() else path.parent / pf)
        store = Path(k.get("FileStorePath", "fix-store"))
        out.append(FixSessionSettings(
            sender_comp_id=k["SenderCompID"], target_comp_id=k["TargetCompID"], host=k["SocketConnectHost"],
            port=_int(k["SocketConnectPort"], "SocketConnectPort", 1, 65535),
            heartbeat_s=_int(k.get("HeartBtInt", "30"), "HeartBtInt", 1, 3600),
            begin_string=begin, store_path=store if store.is_absolute() else path.parent / store,
            reset_on_logon=_flag(k.get("ResetOnLogon", "N"), "ResetOnLogon"),
            username=k.get("Username", ""), password=password,
            tls=_flag(k.get("SocketUseSSL", "N"), "SocketUseSSL"), tls_ca_file=k.get("SocketCAFile", ""),
            reconnect_s=float(_int(k.get("ReconnectInterval", "5"), "ReconnectInterval", 1, 3600)),
            raw=dict(k),
        ))
    if not out:
        raise FixSettingsError(f"{path}: no [SESSION] section")
    return out
