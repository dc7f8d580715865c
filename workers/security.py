"""CurveZMQ for TickDesk: one server key pair for the fleet, client keys with roles, and an
allow-list of roles per endpoint.

Layout of a key directory (``python main.py keys generate DIR`` makes it):

    DIR/server.key              server public key      (give to every client)
    DIR/server.key_secret       server key pair        (only on hosts that bind)
    DIR/client.key_secret       the fleet's own client key pair (workers, the local window)
    DIR/authorized/ROLE/*.key   public keys allowed to connect, one folder per role
    DIR/authorized/*.key        (older layout) read as role ``trader``, ``client.key`` as ``worker``

Every socket that binds becomes a CURVE server; every socket that connects becomes a CURVE
client of the fleet's server key.  The ZAP handler (RFC 27) runs inside the worker's own poll
loop -- no authenticator thread -- and admits a key only on the endpoints its role may use
(:data:`ENDPOINT_ROLES`): a key that may place orders is not a key that may speak on the
control channel or push signals that the executor turns into orders.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import zmq
import zmq.auth

from workers.ratelimit import RateLimitedLogger

log = logging.getLogger("tickdesk.security")

ZAP_ENDPOINT = "inproc://zeromq.zap.01"
#: the ZAP domain of a socket whose endpoint has no entry in ENDPOINT_ROLES (the supervisor's
#: control socket): only ``worker`` keys
ZAP_DOMAIN = "tickdesk"

#: who may hold a key, and what for
ROLES = ("worker", "trader", "strategy", "observer")
#: the roles admitted on each bound endpoint (its ZAP domain is the endpoint's name)
#:   worker:   the fleet's own processes (and the fleet's client.key): everything
#:   trader:   a window elsewhere: orders, and every stream it shows
#:   strategy: a strategy elsewhere: ticks in, signals out, decisions and fills back
#:   observer: read-only: the streams, no orders, no signals, no control
ENDPOINT_ROLES: dict[str, frozenset[str]] = {
    "ticks": frozenset({"worker", "trader", "strategy", "observer"}),
    "signals": frozenset({"worker", "strategy"}),
    "orders": frozenset({"worker", "trader"}),
    "execution": frozenset({"worker", "trader", "strategy", "observer"}),
    "events": frozenset({"worker", "trader", "strategy", "observer"}),
    "control": frozenset({"worker"}),
    "snapshot": frozenset({"worker", "trader", "strategy", "observer"}),
}
_DEFAULT_ROLES = frozenset({"worker"})


def roles_for(domain: str) -> frozenset[str]:
    """The roles admitted on a ZAP domain; an unknown domain admits only ``worker``."""
    return ENDPOINT_ROLES.get(domain, _DEFAULT_ROLES)


def _read_role_dir(folder: Path, role: str, into: dict[bytes, str]) -> None:
    for f in sorted(folder.glob("*.key")):
        pub, _ = zmq.auth.load_certificate(f)
        if into.get(pub, role) != role:
            raise ValueError(f"{f}: this key is also listed as {into[pub]!r}; a key has one role")
        into[pub] = role


@dataclass(frozen=True)
class CurveKeys:
    server_public: bytes
    server_secret: bytes | None  # only where something binds
    client_public: bytes
    client_secret: bytes
    authorized: dict[bytes, str]  # z85 public key -> its role (ROLES)

    @classmethod
    def load(cls, directory: str | Path) -> CurveKeys:
        d = Path(directory)
        server_public, server_secret = None, None
        if (d / "server.key_secret").exists():
            server_public, server_secret = zmq.auth.load_certificate(d / "server.key_secret")
        elif (d / "server.key").exists():
            server_public, _ = zmq.auth.load_certificate(d / "server.key")
        if server_public is None:
            raise FileNotFoundError(f"no server.key in {d}: run 'main.py keys generate {d}'")
        client_public, client_secret = zmq.auth.load_certificate(d / "client.key_secret")
        authorized: dict[bytes, str] = {}
        auth_dir = d / "authorized"
        if auth_dir.is_dir():
            for role in ROLES:
                if (auth_dir / role).is_dir():
                    _read_role_dir(auth_dir / role, role, authorized)
            for f in sorted(auth_dir.glob("*.key")):  # the older, flat layout
                role = "worker" if f.name == "client.key" else "trader"
                pub, _ = zmq.auth.load_certificate(f)
                authorized.setdefault(pub, role)
            unknown = [p.name for p in auth_dir.iterdir() if p.is_dir() and p.name not in ROLES]
            if unknown:
                raise ValueError(f"{auth_dir}: unknown role folder(s) {', '.join(sorted(unknown))}; roles are {', '.join(ROLES)}")
        return cls(server_public, server_secret, client_public, client_secret, authorized)

    def apply_server(self, sock: zmq.Socket, endpoint: str = "") -> None:
        """Make ``sock`` a CURVE server whose ZAP domain is ``endpoint``'s name (``ticks``,
        ``orders``, ...): the handler admits the roles of :data:`ENDPOINT_ROLES` there."""
        if self.server_secret is None:
            raise RuntimeError("this host has no server.key_secret, so it cannot bind with CURVE")
        sock.curve_secretkey = self.server_secret
        sock.curve_publickey = self.server_public
        sock.curve_server = True
        sock.zap_domain = (endpoint or ZAP_DOMAIN).encode()

    def apply_client(self, sock: zmq.Socket) -> None:
        sock.curve_serverkey = self.server_public
        sock.curve_publickey = self.client_public
        sock.curve_secretkey = self.client_secret


class ZapHandler:
    """Answers ZAP requests for CURVE connections from a key -> role allow-list, in the
    caller's loop: a known key is admitted only on an endpoint (domain) its role may use."""

    def __init__(self, ctx: zmq.Context, authorized: dict[bytes, str], log_every: float = 5.0):
        self.authorized = {zmq.utils.z85.decode(k) if len(k) == 40 else k: role for k, role in authorized.items()}
        self.sock = ctx.socket(zmq.REP)
        self.sock.linger = 0
        self.sock.bind(ZAP_ENDPOINT)
        self.allowed = 0
        self.denied = 0
        # a stranger may knock thousands of times: one line per reason per interval, with counts
        self.rlog = RateLimitedLogger(log, log_every)

    def handle(self, frames: list[bytes]) -> None:
        if len(frames) < 6:
            # Not a ZAP request we can answer; a REP must still reply to stay in lockstep.
            self.sock.send_multipart([b"1.0", frames[1] if len(frames) > 1 else b"", b"400", b"malformed", b"", b""])
            return
        version, request_id, domain, address, _identity, mechanism = frames[:6]
        credentials = frames[6:]
        role = self.authorized.get(credentials[0]) if mechanism == b"CURVE" and credentials else None
        where = domain.decode(errors="replace")
        if role is not None and role in roles_for(where):
            self.allowed += 1
            user = zmq.utils.z85.encode(credentials[0])
            self.sock.send_multipart([b"1.0", request_id, b"200", b"OK", user, b""])
            return
        self.denied += 1
        who = address.decode(errors="replace")
        if role is None:
            self.rlog.warning(("unknown", where), "refused %s connection from %s on %s: key not authorized",
                              mechanism.decode(errors="replace"), who, where)
            self.sock.send_multipart([b"1.0", request_id, b"400", b"not authorized", b"", b""])
        else:
            self.rlog.warning(("role", where, role), "refused a %s key from %s on %s: that role may not use this endpoint",
                              role, who, where)
            self.sock.send_multipart([b"1.0", request_id, b"400", f"role {role} not allowed".encode(), b"", b""])

    def close(self) -> None:
        self.sock.close(0)


def generate(directory: str | Path, extra_clients: list[str] | None = None) -> dict[str, Path]:
    """Create the server and the fleet's client key pair (role ``worker``) in ``directory``,
    and any extra clients given as ``NAME`` (role ``trader``) or ``NAME:ROLE``."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    auth_dir = d / "authorized"
    auth_dir.mkdir(exist_ok=True)
    wanted: list[tuple[str, str | None]] = [("server", None), ("client", "worker")]
    for spec in extra_clients or []:
        name, _, role = spec.partition(":")
        role = role or "trader"
        if role not in ROLES:
            raise ValueError(f"client {name!r}: unknown role {role!r}; roles are {', '.join(ROLES)}")
        if not name or name in ("server", "client"):
            raise ValueError(f"client name {name!r} is taken or empty")
        wanted.append((name, role))
    made: dict[str, Path] = {}
    for name, role in wanted:
        pub, sec = zmq.auth.create_certificates(d, name)
        made[name] = Path(sec)
        if role is not None:
            (auth_dir / role).mkdir(exist_ok=True)
            (auth_dir / role / f"{name}.key").write_bytes(Path(pub).read_bytes())
    for f in d.glob("*.key_secret"):
        f.chmod(0o600)
    return made
