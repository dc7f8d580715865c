"""The FIX 4.4 session layer of an initiator, sans I/O: bytes in, bytes out, a clock.

:class:`FixSession` frames what arrives (body length and checksum checked: a garbled message
is dropped and counted, it never advances a sequence number), answers the session's own
messages (Heartbeat, TestRequest, ResendRequest, SequenceReset, Logout, Reject) and hands the
application messages (ExecutionReport, ...) to its caller in sequence order.  The codec --
fields to bytes and back, body length and checksum written -- is simplefix's.

Rules chosen here, each what a desk's initiator does:

* **Sequence numbers survive restarts** (:class:`SeqStore`): the next outgoing number is on
  disk (fsynced) before the message carrying it is sent, so a crash never sends a number
  twice; the next expected incoming number is saved lazily (a crash may make the venue resend
  what was already read: fills are deduplicated by ExecID above this layer).
* **A ResendRequest is answered with a SequenceReset-GapFill**, never by sending old orders
  again: an order the trader sent minutes ago must not reach the market now.  What became of
  those orders is asked with OrderStatusRequest after the logon (the gateway's resync).
* **A gap in what arrives** is asked for once (ResendRequest from the expected number to
  infinity); messages beyond the gap are dropped meanwhile and come again as PossDup.
* **A number lower than expected** without PossDupFlag means the two sides disagree about the
  session: Logout and disconnect, with the reason for the trader (no silent reset).
* **Silence**: a Heartbeat goes out after HeartBtInt without sending; after 1.2 x HeartBtInt
  without hearing anything a TestRequest goes out, and after one more HeartBtInt without an
  answer the venue is silent: :attr:`failure` says so and the caller disconnects.
"""

from __future__ import annotations

import os
import re
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import simplefix

from workers.durable import sync_dir, sync_file
from workers.fix.settings import FixSessionSettings

SOH = b"\x01"
#: a body longer than this is not a message of this session: garbled
MAX_BODY = 1 << 20

# tags of the standard header and trailer, and of the session messages
BEGIN_STRING, BODY_LENGTH, MSG_TYPE, SENDER, TARGET, SEQ_NUM, SENDING_TIME = 8, 9, 35, 49, 56, 34, 52
POSS_DUP, ORIG_SENDING_TIME, CHECKSUM = 43, 122, 10
TEXT, TEST_REQ_ID, HEART_BT_INT, ENCRYPT_METHOD, RESET_SEQ = 58, 112, 108, 98, 141
BEGIN_SEQ, END_SEQ, NEW_SEQ, GAP_FILL, REF_SEQ = 7, 16, 36, 123, 45
USERNAME, PASSWORD = 553, 554

HEARTBEAT, TEST_REQUEST, RESEND_REQUEST, REJECT, SEQUENCE_RESET, LOGOUT, LOGON = b"0", b"1", b"2", b"3", b"4", b"5", b"A"
ADMIN = frozenset((HEARTBEAT, TEST_REQUEST, RESEND_REQUEST, REJECT, SEQUENCE_RESET, LOGOUT, LOGON))


class State(Enum):
    DISCONNECTED = "disconnected"
    LOGON_SENT = "logon sent"
    ACTIVE = "logged on"
    LOGOUT_SENT = "logout sent"
    CLOSED = "closed"


class SeqStoreError(RuntimeError):
    """The stored sequence numbers cannot be trusted: refused, never guessed."""


class SeqStore:
    """The session's next outgoing and next expected incoming sequence numbers, in one small
    file per session (``<folder>/<session>.seqnums``: ``out in``), replaced atomically."""

    def __init__(self, folder: Path, session_id: str):
        self.folder = Path(folder)
        self.path = self.folder / (re.sub(r"[^A-Za-z0-9._-]+", "_", session_id) + ".seqnums")
        self.next_out, self.next_in = self._load()
        self._saved = (self.next_out, self.next_in)

    def _load(self) -> tuple[int, int]:
        try:
            text = self.path.read_text(encoding="ascii")
        except FileNotFoundError:
            return 1, 1
        except (OSError, UnicodeDecodeError) as e:
            raise SeqStoreError(f"{self.path}: cannot read: {e}") from None
        parts = text.split()
        if len(parts) != 2 or not all(p.isdigit() for p in parts) or min(int(p) for p in parts) < 1:
            raise SeqStoreError(f"{self.path}: not two sequence numbers ({text[:40]!r}); the session cannot go on "
                                "from it: agree a reset with the venue, then delete the file")
        return int(parts[0]), int(parts[1])

    def save(self, sync: bool = True) -> None:
        now = (self.next_out, self.next_in)
        if now == self._saved:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=self.path.name, dir=self.folder)
        try:
            with os.fdopen(fd, "w", encoding="ascii") as f:
                f.write(f"{now[0]} {now[1]}\n")
                if sync:
                    f.flush()
                    sync_file(f.fileno())
            os.replace(tmp, self.path)
            if sync:
                sync_dir(self.folder)  # the rename too: a power loss must not bring the old numbers back
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
        self._saved = now

    def reset(self) -> None:
        self.next_out = self.next_in = 1
        self.save()


def utc_timestamp(now_s: float | None = None) -> str:
    """FIX UTCTimestamp with milliseconds: ``YYYYMMDD-HH:MM:SS.sss``."""
    t = time.time() if now_s is None else now_s
    ms = int(t * 1000) % 1000
    return time.strftime("%Y%m%d-%H:%M:%S", time.gmtime(t)) + f".{ms:03d}"


def checksum(data: bytes) -> int:
    return sum(data) % 256


@dataclass
class Event:
    """Something the trader should see about the session (the gateway logs and reports it)."""

    kind: str  # "logon", "logout", "rejected", "gap", "garbled", "reject", "silent", "error"
    text: str


class FixSession:
    """One initiator session.  Feed it :meth:`connected`, :meth:`receive` and :meth:`poll`;
    send what :meth:`take_output` returns; read :attr:`events` and :attr:`failure`.

    Attributes:
        state: where the session is.
        failure: why the session must be dropped now ("" while it may go on).
        counters: garbled, gaps, duplicates, resend_requests, rejects, app_in, app_out.
    """

    def __init__(self, settings: FixSessionSettings, store: SeqStore, clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time):
        self.settings = settings
        self.store = store
        self.clock, self.wall = clock, wall
        self.state = State.DISCONNECTED
        self.failure = ""
        self.events: list[Event] = []
        self.counters = dict.fromkeys(("garbled", "gaps", "duplicates", "resend_requests", "rejects", "app_in",
                                       "app_out", "heartbeats_out", "test_requests_out"), 0)
        self._buf = bytearray()
        self._out = bytearray()
        self._last_sent = self._last_heard = 0.0
        self._test_sent_at: float | None = None
        self._logon_sent_at = 0.0
        self._resend_target: int | None = None  # the gap being filled: resend asked up to here
        self._test_n = 0
        self.hb = float(settings.heartbeat_s)

    # ------------------------------------------------------------------ the connection
    def connected(self) -> None:
        """The TCP (or TLS) connection is up: log on."""
        now = self.clock()
        self._buf.clear()
        self.failure = ""
        self._test_sent_at = None
        self._resend_target = None
        if self.settings.reset_on_logon:
            self.store.reset()
        fields: list[tuple[int, object]] = [(ENCRYPT_METHOD, 0), (HEART_BT_INT, self.settings.heartbeat_s)]
        if self.settings.reset_on_logon:
            fields.append((RESET_SEQ, "Y"))
        if self.settings.username:
            fields.append((USERNAME, self.settings.username))
        if self.settings.password:
            fields.append((PASSWORD, self.settings.password))
        self._send(LOGON, fields)
        self.state = State.LOGON_SENT
        self._logon_sent_at = self._last_heard = now

    def disconnected(self, reason: str = "") -> None:
        self.store.save()
        if self.state not in (State.CLOSED, State.DISCONNECTED):
            self.events.append(Event("logout", f"disconnected: {reason}" if reason else "disconnected"))
        self.state = State.DISCONNECTED
        self._buf.clear()
        self._out.clear()

    def logout(self, text: str = "") -> None:
        if self.state in (State.ACTIVE, State.LOGON_SENT):
            self._send(LOGOUT, [(TEXT, text)] if text else [])
            self.state = State.LOGOUT_SENT

    def take_output(self) -> bytes:
        """The bytes to send now (and the incoming sequence number saved, lazily)."""
        out = bytes(self._out)
        self._out.clear()
        self.store.save(sync=False)
        return out

    # ------------------------------------------------------------------ sending
    def send_app(self, msg_type: bytes | str, fields: Iterable[tuple[int, object]]) -> int:
        """An application message (NewOrderSingle, ...) with the session's header; returns
        its MsgSeqNum.  Refused (RuntimeError) unless logged on."""
        if self.state is not State.ACTIVE:
            raise RuntimeError(f"FIX session {self.settings.session_id} is {self.state.value}, not logged on")
        self.counters["app_out"] += 1
        return self._send(msg_type.encode() if isinstance(msg_type, str) else msg_type, list(fields))

    def _header(self, m: simplefix.FixMessage, msg_type: bytes, seq: int, sent: str | None = None) -> str:
        s = self.settings
        sent = sent or utc_timestamp(self.wall())
        m.append_pair(BEGIN_STRING, s.begin_string, header=True)
        m.append_pair(MSG_TYPE, msg_type, header=True)
        m.append_pair(SENDER, s.sender_comp_id, header=True)
        m.append_pair(TARGET, s.target_comp_id, header=True)
        m.append_pair(SEQ_NUM, seq, header=True)
        m.append_pair(SENDING_TIME, sent, header=True)
        return sent

    def _send(self, msg_type: bytes, fields: list[tuple[int, object]]) -> int:
        seq = self.store.next_out
        self.store.next_out = seq + 1
        self.store.save()  # on disk before it goes out: a crash never sends a number twice
        m = simplefix.FixMessage()
        self._header(m, msg_type, seq)
        for tag, value in fields:
            m.append_pair(tag, value)
        self._out += m.encode()
        self._last_sent = self.clock()
        return seq

    def _gap_fill(self, begin: int, new_seq: int) -> None:
        """SequenceReset-GapFill over [begin, new_seq): sent under the number ``begin``."""
        m = simplefix.FixMessage()
        sent = self._header(m, SEQUENCE_RESET, begin)
        m.append_pair(POSS_DUP, "Y", header=True)
        # not later than SendingTime, which a venue checks (one clock reading for both)
        m.append_pair(ORIG_SENDING_TIME, sent, header=True)
        m.append_pair(GAP_FILL, "Y")
        m.append_pair(NEW_SEQ, new_seq)
        self._out += m.encode()
        self._last_sent = self.clock()

    # ------------------------------------------------------------------ timers
    def poll(self) -> None:
        """Heartbeats, test requests, and the verdicts on a silent venue."""
        now = self.clock()
        if self.state is State.LOGON_SENT and now - self._logon_sent_at > max(10.0, 2 * self.hb):
            self._fail("silent", f"no answer to the logon in {now - self._logon_sent_at:.0f} s")
            return
        if self.state is not State.ACTIVE:
            return
        if self._test_sent_at is not None and now - self._test_sent_at >= self.hb:
            self._fail("silent", f"the venue is silent: nothing for {now - self._last_heard:.0f} s, "
                                 "a test request unanswered")
            return
        if self._test_sent_at is None and now - self._last_heard >= 1.2 * self.hb:
            self._test_n += 1
            self._send(TEST_REQUEST, [(TEST_REQ_ID, f"TEST-{self._test_n}")])
            self._test_sent_at = now
            self.counters["test_requests_out"] += 1
        if now - self._last_sent >= self.hb:
            self._send(HEARTBEAT, [])
            self.counters["heartbeats_out"] += 1

    def next_deadline(self) -> float:
        """When :meth:`poll` next has something to do (for the caller's wait)."""
        if self.state is State.LOGON_SENT:
            return self._logon_sent_at + max(10.0, 2 * self.hb)
        if self.state is not State.ACTIVE:
            return self.clock() + 1.0
        t = self._last_sent + self.hb
        t = min(t, (self._test_sent_at + self.hb) if self._test_sent_at is not None else self._last_heard + 1.2 * self.hb)
        return t

    def _fail(self, kind: str, text: str) -> None:
        if not self.failure:
            self.failure = text
            self.events.append(Event(kind, text))

    # ------------------------------------------------------------------ receiving
    def receive(self, data: bytes) -> list[simplefix.FixMessage]:
        """Bytes from the venue; returns the application messages now in sequence."""
        self._buf += data
        out: list[simplefix.FixMessage] = []
        while not self.failure:
            frame = self._next_frame()
            if frame is None:
                break
            msg = _parse(frame)
            if msg is None:
                self._garbled("not a FIX message")
                continue
            self._last_heard = self.clock()
            self._test_sent_at = None  # anything heard answers a test request
            app = self._on_message(msg)
            if app is not None:
                out.append(app)
        return out

    def _garbled(self, why: str) -> None:
        self.counters["garbled"] += 1
        # one event per burst, not per message: a broken line must not flood the log
        if self.counters["garbled"] in (1, 10, 100, 1000) or self.counters["garbled"] % 10_000 == 0:
            self.events.append(Event("garbled", f"garbled message dropped ({why}; {self.counters['garbled']} so far)"))

    def _next_frame(self) -> bytes | None:
        buf = self._buf
        while True:
            start = buf.find(b"8=FIX")
            if start < 0:
                # keep a tail that may be the start of the next message
                del buf[: max(0, len(buf) - 5)]
                return None
            if start:
                self._garbled("bytes before BeginString")
                del buf[:start]
            first = buf.find(SOH)
            if first < 0:
                return None
            second = buf.find(SOH, first + 1)
            if second < 0:
                if len(buf) > 64:
                    self._drop_to_next()
                    continue
                return None
            field = bytes(buf[first + 1:second])
            if not field.startswith(b"9=") or not field[2:].isdigit() or int(field[2:]) > MAX_BODY:
                self._garbled("bad BodyLength")
                self._drop_to_next()
                continue
            body_end = second + 1 + int(field[2:])
            end = body_end + 7  # "10=nnn" SOH
            # another message starting inside the body it claims: the length is wrong (tag 8
            # is only ever first), so do not wait for bytes that would swallow that message
            inner = buf.find(b"\x018=FIX", second, min(len(buf), body_end))
            if inner >= 0:
                self._garbled("BodyLength runs into the next message")
                del buf[: inner + 1]
                continue
            if len(buf) < end:
                return None
            trailer = bytes(buf[body_end:end])
            if not (trailer.startswith(b"10=") and trailer[3:6].isdigit() and trailer[6:7] == SOH):
                self._garbled("BodyLength does not reach the CheckSum")
                self._drop_to_next()
                continue
            if int(trailer[3:6]) != checksum(bytes(buf[:body_end])):
                self._garbled("bad CheckSum")
                del buf[:end]
                continue
            frame = bytes(buf[:end])
            del buf[:end]
            return frame

    def _drop_to_next(self) -> None:
        nxt = self._buf.find(b"8=FIX", 1)
        del self._buf[: nxt if nxt > 0 else len(self._buf)]

    def _on_message(self, m: simplefix.FixMessage) -> simplefix.FixMessage | None:
        s = self.settings
        mt = m.get(MSG_TYPE)
        if m.get(SENDER) != s.target_comp_id.encode() or m.get(TARGET) != s.sender_comp_id.encode():
            self._fail("error", f"a message from {m.get(SENDER)!r} to {m.get(TARGET)!r}: not this session "
                                f"({s.target_comp_id} -> {s.sender_comp_id})")
            self.logout("CompID problem")
            return None
        raw_seq = m.get(SEQ_NUM)
        if raw_seq is None or not raw_seq.isdigit():
            self._garbled("no MsgSeqNum")
            return None
        seq = int(raw_seq)
        expected = self.store.next_in
        if mt == LOGOUT:
            return self._on_logout(m, seq)
        if mt == SEQUENCE_RESET and m.get(GAP_FILL) != b"Y":
            return self._on_reset(m)
        if mt == LOGON:
            self._on_logon(m)
        if seq < expected:
            if m.get(POSS_DUP) == b"Y":
                self.counters["duplicates"] += 1
                return None
            text = f"MsgSeqNum too low, expecting {expected} but received {seq}"
            self._fail("error", f"{text}: the two sides disagree about the session (agree a reset with the venue)")
            self.logout(text)
            return None
        if seq > expected:
            if mt == TEST_REQUEST:
                self._send(HEARTBEAT, [(TEST_REQ_ID, m.get(TEST_REQ_ID) or b"")])
            if mt == RESEND_REQUEST:
                self._on_resend_request(m)
            if self._resend_target is None:  # asked to infinity: once until it is filled
                self.counters["gaps"] += 1
                self.events.append(Event("gap", f"messages {expected}..{seq - 1} missing: asked again"))
                self._send(RESEND_REQUEST, [(BEGIN_SEQ, expected), (END_SEQ, 0)])
                self._resend_target = seq
            return None
        # seq == expected: in order
        self.store.next_in = seq + 1
        if self._resend_target is not None and seq >= self._resend_target:
            self._resend_target = None
        if mt == SEQUENCE_RESET:  # a gap fill, in order
            new = m.get(NEW_SEQ)
            if new is not None and new.isdigit() and int(new) > seq:
                self.store.next_in = int(new)
            return None
        if mt == HEARTBEAT or mt == LOGON:
            return None
        if mt == TEST_REQUEST:
            self._send(HEARTBEAT, [(TEST_REQ_ID, m.get(TEST_REQ_ID) or b"")])
            return None
        if mt == RESEND_REQUEST:
            self._on_resend_request(m)
            return None
        if mt == REJECT:
            self.counters["rejects"] += 1
            self.events.append(Event("reject", f"the venue rejected our message {_s(m.get(REF_SEQ))}: {_s(m.get(TEXT))}"))
            return m
        if self.state is not State.ACTIVE:
            return None
        self.counters["app_in"] += 1
        return m

    def _on_logon(self, m: simplefix.FixMessage) -> None:
        if self.state is State.LOGON_SENT:
            if m.get(RESET_SEQ) == b"Y" and not self.settings.reset_on_logon:
                self.store.next_in = 1
            self.state = State.ACTIVE
            self.events.append(Event("logon", f"logged on to {self.settings.target_comp_id}"))

    def _on_logout(self, m: simplefix.FixMessage, seq: int) -> None:
        text = _s(m.get(TEXT))
        if seq == self.store.next_in:
            self.store.next_in = seq + 1
        if self.state is State.LOGON_SENT:
            self._fail("rejected", f"logon rejected: {text or 'no reason given'}")
        elif self.state is State.LOGOUT_SENT:
            self.events.append(Event("logout", "logged out"))
        else:
            self._send(LOGOUT, [])
            self._fail("logout", f"the venue logged out: {text or 'no reason given'}")
        self.state = State.CLOSED
        return None

    def _on_reset(self, m: simplefix.FixMessage) -> None:
        """SequenceReset-Reset: the expected number is set, whatever this message's own."""
        new = m.get(NEW_SEQ)
        if new is None or not new.isdigit():
            self._garbled("SequenceReset without NewSeqNo")
            return None
        n = int(new)
        if n < self.store.next_in:
            self.counters["rejects"] += 1
            self.events.append(Event("error", f"SequenceReset to {n} below the expected {self.store.next_in}: ignored"))
            return None
        self.store.next_in = n
        self._resend_target = None
        return None

    def _on_resend_request(self, m: simplefix.FixMessage) -> None:
        b, e = m.get(BEGIN_SEQ), m.get(END_SEQ)
        if b is None or not b.isdigit():
            self._garbled("ResendRequest without BeginSeqNo")
            return
        begin = int(b)
        self.counters["resend_requests"] += 1
        end = self.store.next_out - 1 if e in (None, b"0") or not e.isdigit() else min(int(e), self.store.next_out - 1)
        if begin > end:
            return
        # old orders are never sent again (see the module's text): the whole range is a gap
        self._gap_fill(begin, end + 1)
        self.events.append(Event("gap", f"the venue asked for {begin}..{end} again: gap-filled (orders are "
                                        "never resent; their state is asked for instead)"))


def _s(v: bytes | None) -> str:
    return v.decode("utf-8", "replace") if v else ""


def _parse(frame: bytes) -> simplefix.FixMessage | None:
    p = simplefix.FixParser()
    try:
        p.append_buffer(frame)
        m = p.get_message()
    except Exception:  # simplefix raises its own errors on a malformed field
        return None
    if m is None or m.get(MSG_TYPE) is None:
        return None
    return m
