"""A FIX session over a TCP (or TLS) socket: the I/O around :class:`~workers.fix.session.FixSession`.

Non-blocking and driven by :meth:`FixConnection.step` (one wait on the socket, bounded by the
session's next timer), so the exchange gateway can run it from its own poll loop next to its
ZeroMQ sockets (``fileno()``), and a test or a script can run it with :meth:`run_until`.
"""

from __future__ import annotations

import select
import socket
import ssl
import time
from collections.abc import Callable

import simplefix

from workers.fix.session import Event, FixSession, SeqStore, State
from workers.fix.settings import FixSessionSettings


class FixConnection:
    """One initiator connection.  ``on_app`` gets each application message in sequence."""

    def __init__(self, settings: FixSessionSettings, on_app: Callable[[simplefix.FixMessage], None] | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.settings = settings
        self.session = FixSession(settings, SeqStore(settings.store_path, settings.session_id), clock=clock)
        self.on_app = on_app or (lambda m: None)
        self.sock: socket.socket | None = None
        self.clock = clock
        self._pending = b""

    # ------------------------------------------------------------------ connection
    def connect(self, timeout: float = 5.0) -> None:
        """Open the socket and send the Logon (its answer comes through :meth:`step`)."""
        s = self.settings
        sock = socket.create_connection((s.host, s.port), timeout=timeout)
        if s.tls:
            try:
                ctx = ssl.create_default_context(cafile=s.tls_ca_file or None)
                sock = ctx.wrap_socket(sock, server_hostname=s.host)
            except BaseException:  # a certificate not trusted, a handshake refused
                sock.close()
                raise
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        self.sock = sock
        self.session.connected()
        self._flush()

    def close(self, reason: str = "") -> None:
        if self.sock is not None:
            try:
                self._flush()
            except OSError:
                pass
            try:
                self.sock.close()
            finally:
                self.sock = None
        self.session.disconnected(reason)

    def logout(self, text: str = "", timeout: float = 2.0) -> None:
        """Log out and wait (bounded) for the venue's Logout, then close."""
        if self.sock is None:
            return
        self.session.logout(text)
        self._flush()
        self.run_until(lambda: self.session.state is State.CLOSED, timeout)
        self.close("logged out")

    def fileno(self) -> int:
        return self.sock.fileno() if self.sock is not None else -1

    @property
    def up(self) -> bool:
        return self.sock is not None and self.session.state is State.ACTIVE

    def take_events(self) -> list[Event]:
        ev, self.session.events = self.session.events, []
        return ev

    # ------------------------------------------------------------------ sending
    def send_app(self, msg_type: str, fields) -> int:
        seq = self.session.send_app(msg_type, fields)
        self._flush()
        return seq

    def _flush(self) -> None:
        data = self._pending + self.session.take_output()
        self._pending = b""
        if not data or self.sock is None:
            return
        try:
            n = self.sock.send(data)
        except (BlockingIOError, ssl.SSLWantWriteError):
            n = 0
        self._pending = data[n:]

    # ------------------------------------------------------------------ the loop
    def step(self, timeout: float = 0.5) -> None:
        """Wait up to ``timeout`` (or the session's next timer) for bytes; handle them and the
        timers; drop the connection when the session says it must go."""
        if self.sock is None:
            return
        wait = max(0.0, min(timeout, self.session.next_deadline() - self.clock()))
        wants_write = bool(self._pending)
        # TLS may hold decrypted bytes the socket no longer shows to select
        buffered = isinstance(self.sock, ssl.SSLSocket) and self.sock.pending() > 0
        try:
            r, w, _ = select.select([self.sock], [self.sock] if wants_write else [], [], 0.0 if buffered else wait)
        except (OSError, ValueError):
            self.close("socket error")
            return
        r = r or ([self.sock] if buffered else [])
        if w:
            self._flush()
        if r:
            try:
                data = self.sock.recv(65536)
            except (BlockingIOError, ssl.SSLWantReadError):
                data = None
            except OSError as e:
                self.close(f"connection lost: {e}")
                return
            if data == b"":
                self.close("the venue closed the connection")
                return
            if data:
                for m in self.session.receive(data):
                    self.on_app(m)
        self.session.poll()
        self._flush()
        if self.session.failure or self.session.state is State.CLOSED:
            self.close(self.session.failure)

    def run_until(self, done: Callable[[], bool], timeout: float) -> bool:
        end = self.clock() + timeout
        while not done():
            left = end - self.clock()
            if left <= 0 or self.sock is None:
                return done()
            self.step(min(left, 0.2))
        return True
