"""The FIX 4.4 session layer against an independent engine: QuickFIX/C++ (the quickfix-py
wheel, a test-only dependency) as the acceptor, validating every message against its FIX44.xml
data dictionary, in its own process on a real TCP socket.  Logon, heartbeats, a test request,
sequence numbers that survive a restart, a gap on either side answered by a resend, a
rejected logon and a silent venue."""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.procs import scaled
from workers.fix.connection import FixConnection
from workers.fix.session import State
from workers.fix.settings import FixSessionSettings

pytest.importorskip("quickfix", reason="the FIX counterparty is QuickFIX (pip install quickfix-py, Linux)")

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Acceptor:
    """The QuickFIX acceptor process and the events it printed."""

    def __init__(self, folder: Path, **cfg):
        self.port = free_port()
        self.folder = folder
        conf = folder / "acceptor.json"
        folder.mkdir(parents=True, exist_ok=True)
        conf.write_text(json.dumps({"folder": str(folder / "qf"), "port": self.port, **cfg}))
        self.proc = subprocess.Popen([sys.executable, "-m", "tests.fix.qf_acceptor", str(conf)], cwd=REPO,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.events: queue.Queue = queue.Queue()
        self.seen: list[dict] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.wait("ready", scaled(20))

    def _read(self) -> None:
        for line in self.proc.stdout:
            try:
                self.events.put(json.loads(line))
            except ValueError:
                pass

    def wait(self, kind: str, timeout: float, drive: FixConnection | None = None, **match) -> dict:
        """The next event of ``kind`` (whose fields match ``match``), any seen before included;
        ``drive``: our side's connection, run meanwhile (it answers what the acceptor sends)."""
        for ev in self.seen:
            if ev["event"] == kind and all(ev.get(k) == v for k, v in match.items()):
                self.seen.remove(ev)
                return ev
        import time

        end = time.monotonic() + timeout
        while True:
            left = end - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {kind} {match or ''} from the acceptor in {timeout:.0f} s; seen: "
                                     f"{[e['event'] + ':' + str(e.get('type', '')) for e in self.seen]}; "
                                     f"stderr: {self.stderr_tail()}")
            try:
                ev = self.events.get(timeout=min(left, 0.02) if drive is not None else left)
            except queue.Empty:
                if drive is not None:
                    drive.step(0.02)
                continue
            if ev["event"] == kind and all(ev.get(k) == v for k, v in match.items()):
                return ev
            self.seen.append(ev)

    def command(self, line: str) -> None:
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def stderr_tail(self) -> str:
        if self.proc.poll() is None:
            return "(running)"
        return (self.proc.stderr.read() or "")[-1500:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, signal.SIGCONT)
                self.command("quit")
                self.proc.wait(timeout=scaled(10))
            except (OSError, subprocess.TimeoutExpired, BrokenPipeError):
                self.proc.kill()
                self.proc.wait()
        for f in (self.proc.stdin, self.proc.stderr):
            try:
                f.close()
            except OSError:
                pass
        self._reader.join(timeout=scaled(5))  # it ends at the pipe's end, then closes it
        self.proc.stdout.close()


@pytest.fixture
def venue(tmp_path):
    made = []

    def make(**cfg) -> Acceptor:
        a = Acceptor(tmp_path / f"venue{len(made)}", **cfg)
        made.append(a)
        return a

    yield make
    for a in made:
        a.stop()


def ours(tmp_path, port: int, hb: int = 1, **kw) -> FixSessionSettings:
    return FixSessionSettings(sender_comp_id="TICKDESK", target_comp_id="VENUE", host="127.0.0.1", port=port,
                              heartbeat_s=hb, store_path=tmp_path / "fix-store", **kw)


def logged_on(conn: FixConnection) -> None:
    conn.connect()
    assert conn.run_until(lambda: conn.up or bool(conn.session.failure), scaled(10)), conn.take_events()
    assert conn.up, (conn.session.failure, conn.take_events())


def test_logon_heartbeats_and_logout(venue, tmp_path):
    v = venue()
    conn = FixConnection(ours(tmp_path, v.port, hb=1))
    logged_on(conn)
    v.wait("logon", scaled(5))
    logon = v.wait("admin_in", scaled(5), type="A")
    assert "|108=1|" in logon["raw"] and logon["seq"] == 1
    # a second without anything to say: a Heartbeat, which the dictionary accepts
    v.wait("admin_in", scaled(5), drive=conn, type="0")
    assert conn.up and conn.session.counters["heartbeats_out"] >= 1
    conn.logout("end of day")
    v.wait("logout", scaled(5))
    assert conn.session.state is State.DISCONNECTED and not conn.session.failure


def test_sequence_numbers_survive_a_restart(venue, tmp_path):
    v = venue()
    first = FixConnection(ours(tmp_path, v.port, hb=5))
    logged_on(first)
    first.logout()
    sent = first.session.store.next_out
    assert sent >= 3  # logon, logout
    # a new process: the same store; QuickFIX logs out a session whose numbers went back
    again = FixConnection(ours(tmp_path, v.port, hb=5))
    assert again.session.store.next_out == sent
    logged_on(again)
    assert v.wait("admin_in", scaled(5), type="A", seq=sent)
    again.logout()


def test_a_gap_in_what_we_sent_is_gap_filled_never_resent(venue, tmp_path):
    """The venue missed some of our numbers (a crash after they were stored): it asks for them
    again and gets a SequenceReset-GapFill, not old orders."""
    v = venue()
    first = FixConnection(ours(tmp_path, v.port, hb=5))
    logged_on(first)
    first.logout()
    store = first.session.store
    store.next_out += 5
    store.save()
    again = FixConnection(ours(tmp_path, v.port, hb=5))
    logged_on(again)
    resend = v.wait("admin_in", scaled(5), drive=again, type="4")
    assert "|123=Y|" in resend["raw"] and "|43=Y|" in resend["raw"]
    assert again.session.counters["resend_requests"] == 1
    again.run_until(lambda: False, scaled(1))
    assert again.up
    again.logout()
    v.wait("logout", scaled(5))


def test_a_gap_in_what_the_venue_sent_is_asked_for(venue, tmp_path):
    v = venue()
    conn = FixConnection(ours(tmp_path, v.port, hb=5))
    logged_on(conn)
    v.command("gap 3")
    v.wait("gap_made", scaled(5), drive=conn)
    v.wait("admin_in", scaled(5), drive=conn, type="2")  # our ResendRequest
    # QuickFIX fills the gap; its TestRequest is answered (at once: it may come beyond the gap)
    hb = v.wait("admin_in", scaled(5), drive=conn, type="0")
    assert "|112=GAP|" in hb["raw"]
    assert conn.session.counters["gaps"] == 1 and conn.up
    conn.logout()


def test_a_rejected_logon_is_told_with_the_venues_reason(venue, tmp_path):
    v = venue(password="secret")
    conn = FixConnection(ours(tmp_path, v.port, hb=5, password="wrong"))
    conn.connect()
    conn.run_until(lambda: bool(conn.session.failure), scaled(10))
    assert conn.session.failure.startswith("logon rejected: ") and "bad password" in conn.session.failure
    assert [e.kind for e in conn.take_events()][:1] == ["rejected"]
    assert conn.sock is None  # dropped
    ok = FixConnection(ours(tmp_path, v.port, hb=5, password="secret"))
    logged_on(ok)
    ok.logout()


def test_a_silent_venue_is_noticed(venue, tmp_path):
    v = venue()
    conn = FixConnection(ours(tmp_path, v.port, hb=1))
    logged_on(conn)
    os.kill(v.proc.pid, signal.SIGSTOP)
    try:
        conn.run_until(lambda: bool(conn.session.failure), scaled(10))
    finally:
        os.kill(v.proc.pid, signal.SIGCONT)
    assert conn.session.failure.startswith("the venue is silent"), conn.session.failure
    assert conn.session.counters["test_requests_out"] == 1 and conn.sock is None


def test_fix_over_tls_checks_the_venues_certificate(venue, tmp_path):
    """SocketUseSSL=Y: the session runs over TLS to QuickFIX's SSL acceptor, trusting only the
    CA it is given; a certificate it cannot verify is a refused connection, never a logon."""
    import shutil
    import ssl

    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make the test's certificate")
    cert, key = tmp_path / "venue.pem", tmp_path / "venue.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=scaled(60))
    v = venue(tls={"cert": str(cert), "key": str(key)})
    conn = FixConnection(ours(tmp_path, v.port, hb=1, tls=True, tls_ca_file=str(cert)))
    logged_on(conn)
    assert isinstance(conn.sock, ssl.SSLSocket)
    v.wait("admin_in", scaled(5), drive=conn, type="0")  # heartbeats over TLS too
    conn.logout()
    v.wait("logout", scaled(5))
    # the system's CAs do not know the venue's self-signed certificate: refused at the handshake
    stranger = FixConnection(ours(tmp_path, v.port, hb=1, tls=True))
    with pytest.raises(ssl.SSLCertVerificationError):
        stranger.connect()
    assert stranger.sock is None and stranger.session.store.next_out == conn.session.store.next_out
