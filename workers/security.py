"""CurveZMQ for TickDesk: one server key pair for the fleet, an allow-list of client keys.

Layout of a key directory (``python main.py keys generate DIR`` makes it):

    DIR/server.key          server public key      (give to every client)
    DIR/server.key_secret   server key pair        (only on hosts that bind)
    DIR/client.key_secret   the fleet's own client key pair (workers, window)
    DIR/authorized/*.key    public keys allowed to connect (the fleet's client.key is one)

Every socket that binds becomes a CURVE server; every socket that connects becomes a CURVE
client of the fleet's server key.  The ZAP handler (RFC 27) runs inside the worker's own poll
loop — no authenticator thread — and admits only public keys found in ``authorized/``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import zmq
import zmq.auth

log = logging.getLogger("tickdesk.security")

ZAP_ENDPOINT = "inproc://zeromq.zap.01"
ZAP_DOMAIN = "tickdesk"


@dataclass(frozen=True)
class CurveKeys:
    server_public: bytes
    server_secret: bytes | None  # only where something binds
    client_public: bytes
    client_secret: bytes
    authorized: frozenset[bytes]  # z85 public keys allowed to connect

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
        authorized = set()
        auth_dir = d / "authorized"
        if auth_dir.is_dir():
            for f in sorted(auth_dir.glob("*.key")):
                pub, _ = zmq.auth.load_certificate(f)
                authorized.add(pub)
        return cls(server_public, server_secret, client_public, client_secret, frozenset(authorized))

    def apply_server(self, sock: zmq.Socket) -> None:
        if self.server_secret is None:
            raise RuntimeError("this host has no server.key_secret, so it cannot bind with CURVE")
        sock.curve_secretkey = self.server_secret
        sock.curve_publickey = self.server_public
        sock.curve_server = True
        sock.zap_domain = ZAP_DOMAIN.encode()

    def apply_client(self, sock: zmq.Socket) -> None:
        sock.curve_serverkey = self.server_public
        sock.curve_publickey = self.client_public
        sock.curve_secretkey = self.client_secret


class ZapHandler:
    """Answers ZAP requests for CURVE connections from an allow-list, in the caller's loop."""

    def __init__(self, ctx: zmq.Context, authorized: frozenset[bytes]):
        self.authorized = {zmq.utils.z85.decode(k) if len(k) == 40 else k for k in authorized}
        self.sock = ctx.socket(zmq.REP)
        self.sock.linger = 0
        self.sock.bind(ZAP_ENDPOINT)
        self.allowed = 0
        self.denied = 0

    def handle(self, frames: list[bytes]) -> None:
        if len(frames) < 6:
            # Not a ZAP request we can answer; a REP must still reply to stay in lockstep.
            self.sock.send_multipart([b"1.0", frames[1] if len(frames) > 1 else b"", b"400", b"malformed", b"", b""])
            return
        version, request_id, _domain, address, _identity, mechanism = frames[:6]
        credentials = frames[6:]
        ok = mechanism == b"CURVE" and bool(credentials) and credentials[0] in self.authorized
        if ok:
            self.allowed += 1
            user = zmq.utils.z85.encode(credentials[0])
            self.sock.send_multipart([b"1.0", request_id, b"200", b"OK", user, b""])
        else:
            self.denied += 1
            log.warning("refused %s connection from %s: key not authorized", mechanism.decode(errors="replace"), address.decode(errors="replace"))
            self.sock.send_multipart([b"1.0", request_id, b"400", b"not authorized", b"", b""])

    def close(self) -> None:
        self.sock.close(0)


def generate(directory: str | Path, extra_clients: list[str] | None = None) -> dict[str, Path]:
    """Create the server and client key pairs (and any extra named clients) in ``directory``."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    auth_dir = d / "authorized"
    auth_dir.mkdir(exist_ok=True)
    made: dict[str, Path] = {}
    for name in ["server", "client", *(extra_clients or [])]:
        pub, sec = zmq.auth.create_certificates(d, name)
        made[name] = Path(sec)
        if name != "server":
            target = auth_dir / f"{name}.key"
            target.write_bytes(Path(pub).read_bytes())
    for f in d.glob("*.key_secret"):
        f.chmod(0o600)
    return made
