"""Clients of the orders endpoint with Lazy Pirate retries (zguide ch. 4), written once.

The policy: send the request on a REQ socket; no reply within ``timeout`` -> close that
socket with linger 0 (a REQ that lost its reply is stuck in its send/recv lockstep), open a
new one and send the *same bytes* again; after ``retries`` attempts in all, give up with
``None``.  The gateway is idempotent on ``client_order_id``, so a resend can never create a
second order, and ``None`` means UNKNOWN: the caller reconciles the order later with
``get_order`` and never sends it again under a new ``client_order_id``.  A reply that cannot
be read becomes an error reply (:func:`decode_reply`), never an exception.

One implementation, four faces:

* :class:`LazyPirate` -- the policy of one request as a sans-IO state machine: it holds the
  bytes, counts attempts, keeps the deadline and says what to do next; it owns no socket.
* :class:`DealerClient` -- many requests at once over a DEALER that a worker's poll loop
  reads (the executor's queries): it never waits; the loop hands it replies and asks it for
  its next deadline.  A worker loop must never block on the gateway (its heartbeats would
  stop and the supervisor would take it for silent), so this is the face for workers.
* :class:`OrderClient` -- blocking (tests, scripts; never inside a worker loop).
* :class:`AsyncOrderClient` -- asyncio, for the window (one REQ per request, so concurrent
  requests never queue behind each other).

Loops that step many requests without blocking (``bench/chaos.py``) drive
:class:`LazyPirate` themselves with NOBLOCK receives.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import zmq

from workers import protocol as P
from workers.config import enable_ipv6

if TYPE_CHECKING:
    from workers.sockmon import SocketMonitor

#: replies to get_orders can be large; a connecting socket must not trip on them (runtime.py)
REPLY_MAXMSGSIZE = P.MAX_REPLY_BYTES
UNREADABLE_PREFIX = "unreadable reply"


@dataclass(frozen=True)
class RetryPolicy:
    timeout: float = 1.0  # seconds to wait for one reply
    retries: int = 3  # attempts in all (the first one included)

    def __post_init__(self) -> None:
        if not self.timeout > 0 or self.retries < 1:
            raise ValueError(f"a retry policy needs timeout > 0 and at least 1 attempt, got {self}")


class PirateStats:
    """What a client's requests went through, summed over its requests."""

    __slots__ = ("requests", "resends", "timeouts", "unreadable", "given_up")

    def __init__(self) -> None:
        for k in self.__slots__:
            setattr(self, k, 0)

    def as_dict(self) -> dict[str, int]:
        return {k: getattr(self, k) for k in self.__slots__}


def decode_reply(data: bytes) -> dict:
    """A reply frame as a map; an unreadable one as the map of an ``ErrorReply`` whose reason
    starts with :data:`UNREADABLE_PREFIX` (the outcome of the request is then unknown).
    Maps, not structs, because ``request()`` callers (bench/chaos.py) read keys; ``ask()``
    turns the map into the typed reply."""
    try:
        return P.unpack_map(data, P.MAX_REPLY_BYTES)
    except P.ProtocolError as e:
        return P.ErrorReply(ok=False, reason=f"{UNREADABLE_PREFIX}: {e}").to_dict()


def is_unreadable(reply: dict) -> bool:
    """Is ``reply`` the stand-in :func:`decode_reply` makes of a frame it could not read?"""
    return reply.get("ok") is False and str(reply.get("reason", "")).startswith(UNREADABLE_PREFIX)


class LazyPirate:
    """The Lazy Pirate policy of ONE request, without sockets (sans-IO).

    The driver, per attempt::

        payload = call.begin(now)        # send these bytes on an open REQ socket
        ... wait up to call.remaining(now) seconds (or poll until call.expired(now)) ...
        reply = call.on_reply(frame)     # a reply came: done (a map, maybe an error reply)
        # or, no reply in time: close the socket with linger 0, then
        if call.on_timeout(): ...        # True: open a new socket and begin() again
        else: ...                        # False: given up; the outcome is unknown (None)
    """

    __slots__ = ("payload", "policy", "stats", "tries", "deadline", "done", "reply")

    def __init__(self, payload: bytes, policy: RetryPolicy, stats: PirateStats | None = None):
        self.payload = payload
        self.policy = policy
        self.stats = stats if stats is not None else PirateStats()
        self.tries = 0
        self.deadline = 0.0
        self.done = False
        self.reply: dict | None = None
        self.stats.requests += 1

    def begin(self, now: float) -> bytes:
        """Start the next attempt at ``now`` (monotonic seconds); the bytes to send."""
        if self.done:
            raise RuntimeError("this request is over")
        if self.tries >= self.policy.retries:
            raise RuntimeError("no attempt left: on_timeout() said so")
        if self.tries:
            self.stats.resends += 1
        self.tries += 1
        self.deadline = now + self.policy.timeout
        return self.payload

    def remaining(self, now: float) -> float:
        """Seconds the current attempt may still wait for its reply."""
        return max(0.0, self.deadline - now)

    def remaining_ms(self, now: float) -> int:
        """:meth:`remaining` for zmq's poll (at least 1 ms, so a poll never degenerates to a peek)."""
        return max(1, int(self.remaining(now) * 1000 + 0.999))

    def expired(self, now: float) -> bool:
        return now >= self.deadline

    def on_reply(self, data: bytes) -> dict:
        """A reply arrived for the current attempt: the request is over."""
        self.done = True
        self.reply = decode_reply(data)
        if is_unreadable(self.reply):
            self.stats.unreadable += 1
        return self.reply

    def on_timeout(self) -> bool:
        """The current attempt got no reply in time (the caller closes its socket, linger 0).
        True: another attempt follows, with the same bytes.  False: given up, outcome unknown."""
        self.stats.timeouts += 1
        if self.tries < self.policy.retries:
            return True
        self.done = True
        self.reply = None
        self.stats.given_up += 1
        return False


def open_req(ctx: zmq.Context, endpoint: str, curve: Any = None) -> zmq.Socket:
    """A REQ socket as every Lazy Pirate client needs it (linger 0, wide MAXMSGSIZE, CURVE)."""
    s = ctx.socket(zmq.REQ)
    s.setsockopt(zmq.LINGER, 0)
    s.setsockopt(zmq.MAXMSGSIZE, REPLY_MAXMSGSIZE)
    if curve is not None:
        curve.apply_client(s)
    s.connect(endpoint)
    return s


class PirateCounters:
    """``resends``, ``timeouts`` and ``unreadable`` of a client's ``stats`` (PirateStats), read
    as attributes of the client: every Lazy Pirate client reports them the same way."""

    stats: PirateStats
    resends = property(lambda self: self.stats.resends)
    timeouts = property(lambda self: self.stats.timeouts)
    unreadable = property(lambda self: self.stats.unreadable)


class _ClientBase(PirateCounters):
    def __init__(self, endpoint: str, policy: RetryPolicy, curve: Any):
        self.endpoint = endpoint
        self.policy = policy
        self._curve = curve
        self.stats = PirateStats()


class OrderClient(_ClientBase):
    """Blocking Lazy Pirate client.  Keeps its REQ socket between requests while they are
    answered; a timeout throws it away."""

    def __init__(self, endpoint: str, policy: RetryPolicy = RetryPolicy(), ctx: zmq.Context | None = None, curve=None):
        super().__init__(endpoint, policy, curve)
        self.ctx = ctx or enable_ipv6(zmq.Context.instance())
        self._sock: zmq.Socket | None = None

    def request_raw(self, payload: bytes) -> dict | None:
        """Send ``payload`` with retries; the reply map, or None after every attempt."""
        call = LazyPirate(payload, self.policy, self.stats)
        while True:
            if self._sock is None:
                self._sock = open_req(self.ctx, self.endpoint, self._curve)
            self._sock.send(call.begin(time.monotonic()))
            if self._sock.poll(call.remaining_ms(time.monotonic()), zmq.POLLIN):
                return call.on_reply(self._sock.recv())
            self.close()
            if not call.on_timeout():
                return None

    def request(self, msg: P.Message) -> dict | None:
        return self.request_raw(msg.pack())

    def ask(self, msg: P.Message) -> P.Reply | None:
        """:meth:`request`, answered with the typed reply (None: no reply after every attempt)."""
        d = self.request(msg)
        return None if d is None else P.reply_of(d, type(msg))

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close(0)
            self._sock = None


#: first frame of a DealerClient request: a NUL never starts a client_order_id the executor
#: makes (name-session-counter), so replies to queries and to orders share one DEALER safely
DEALER_TAG_PREFIX = b"\x00q"
#: a request that could not be handed to a connection (ZMQ_IMMEDIATE and no peer, or a full
#: pipe) is offered again this often within its attempt, so a gateway that comes back is
#: asked at once instead of after the whole timeout
UNSENT_RETRY_S = 0.05


class DealerRequest:
    """One request of a :class:`DealerClient`: its Lazy Pirate, its tag and what to call."""

    __slots__ = ("tag", "request", "call", "on_done", "sent", "retry_at")

    def __init__(self, tag: bytes, request: type[P.Message], call: LazyPirate, on_done: Callable[[P.Reply | None], None]):
        self.tag = tag
        self.request = request
        self.call = call
        self.on_done = on_done
        self.sent = False  # the current attempt reached a connection
        self.retry_at = 0.0  # when an unsent attempt is offered again

    def wake_at(self) -> float:
        return self.call.deadline if self.sent else min(self.retry_at, self.call.deadline)


class DealerClient(PirateCounters):
    """Lazy Pirate requests over a DEALER read by the caller's poll loop: many at once, and no
    call ever waits.

    Each request goes out as ``[tag, "", payload]`` (the gateway echoes the envelope), so its
    reply is found by its tag, whatever else shares the socket (the executor's orders go on
    the same DEALER under their ``client_order_id``: :meth:`owns` tells the two apart).  The
    driver::

        client.submit(msg, now, on_done)   # sent now (or offered again until it can be)
        client.on_reply(tag, payload)      # a frame [tag, "", payload] the loop read
        client.next_deadline()             # the loop's poll must not sleep past it
        client.on_timeouts(now)            # resends, gives up: on_done(None)

    ``on_done`` is called once per request, with the typed reply (``P.reply_of``: the reply
    class of the request or an ``ErrorReply``) or None when every attempt went unanswered.
    Time is the caller's (``now``): the client reads no clock.
    """

    def __init__(self, sock: zmq.Socket, policy: RetryPolicy = RetryPolicy(), *, prefix: bytes = DEALER_TAG_PREFIX,
                 on_back: Callable[[], None] | None = None, sockmon: SocketMonitor | None = None):
        self.sock = sock
        #: the worker's monitor, to count what goes out on ``sock`` (None: not counted)
        self.sockmon = sockmon
        self.policy = policy
        self.prefix = prefix
        self.stats = PirateStats()
        #: tag -> request, in submission order
        self.pending: dict[bytes, DealerRequest] = {}
        self._ids = itertools.count(1)
        #: attempts that could not be handed to a connection when first made
        self.unsent = 0
        #: replies for a tag no longer pending (an answer after its request gave up)
        self.late = 0
        #: the last request to end went unanswered (and nothing answered since): the peer may
        #: be down, and a caller may then ask one thing at a time
        self.silent = False
        #: called once when a reply comes after silence (before that reply's own callback): the
        #: peer is back, and may have restarted meanwhile -- a caller resyncs with it
        self.on_back = on_back
        #: times the peer answered again after silence
        self.comebacks = 0

    def owns(self, tag: bytes) -> bool:
        """Is ``tag`` (a reply's first frame) one of this client's?"""
        return tag.startswith(self.prefix)

    def submit(self, msg: P.Message, now: float, on_done: Callable[[P.Reply | None], None], policy: RetryPolicy | None = None) -> bytes:
        """Send ``msg``; ``on_done`` gets its outcome later.  Returns the request's tag."""
        req = DealerRequest(self.prefix + str(next(self._ids)).encode(), type(msg), LazyPirate(msg.pack(), policy or self.policy, self.stats), on_done)
        self.pending[req.tag] = req
        req.call.begin(now)
        self._send(req, now, first=True)
        return req.tag

    def _send(self, req: DealerRequest, now: float, first: bool) -> None:
        try:
            self.sock.send_multipart([req.tag, b"", req.call.payload], zmq.NOBLOCK)
            req.sent = True
        except zmq.ZMQError:
            # no connection (IMMEDIATE) or a full pipe: offered again soon, within the attempt
            req.sent = False
            req.retry_at = now + UNSENT_RETRY_S
            if first:
                self.unsent += 1
                # a drop once per request, not per offer: the offers repeat every
                # UNSENT_RETRY_S while the peer is away and would swamp the count
                if self.sockmon is not None:
                    self.sockmon.count_drop(self.sock)
            return
        if self.sockmon is not None:
            self.sockmon.count_out(self.sock, len(req.tag) + len(req.call.payload))

    def on_reply(self, tag: bytes, payload: bytes) -> bool:
        """A reply frame under ``tag``; False if no request waits for it (late, or not ours)."""
        req = self.pending.pop(tag, None)
        if self.silent:  # whatever it answers, the peer is there
            self.silent = False
            self.comebacks += 1
            if self.on_back is not None:
                self.on_back()
        if req is None:
            self.late += 1
            return False
        reply = P.reply_of(req.call.on_reply(payload), req.request)
        req.on_done(reply)
        return True

    def next_deadline(self) -> float | None:
        """When :meth:`on_timeouts` has work (None: no request pending)."""
        if not self.pending:
            return None
        return min(r.wake_at() for r in self.pending.values())

    def on_timeouts(self, now: float) -> None:
        """Offer unsent attempts again; past its deadline a request is sent again (the same
        bytes) or, after its last attempt, given up: ``on_done(None)``."""
        for req in [r for r in self.pending.values() if r.wake_at() <= now]:
            if now < req.call.deadline:
                self._send(req, now, first=False)
                continue
            if req.call.on_timeout():
                req.call.begin(now)
                self._send(req, now, first=True)
                continue
            del self.pending[req.tag]  # before the callback: it may submit again
            self.silent = True
            req.on_done(None)


class AsyncOrderClient(_ClientBase):
    """The same policy for asyncio (zmq.asyncio), used by the window."""

    def __init__(self, endpoint: str, policy: RetryPolicy = RetryPolicy(), ctx=None, curve=None):
        import zmq.asyncio

        super().__init__(endpoint, policy, curve)
        self.ctx = ctx or enable_ipv6(zmq.asyncio.Context.instance())

    async def request_raw(self, payload: bytes) -> dict | None:
        # One REQ socket per request: concurrent requests from the UI never queue behind each
        # other, and a lost reply cannot desynchronise a shared REQ's send/recv lockstep.
        call = LazyPirate(payload, self.policy, self.stats)
        while True:
            s = open_req(self.ctx, self.endpoint, self._curve)
            try:
                await s.send(call.begin(time.monotonic()))
                if await s.poll(call.remaining_ms(time.monotonic()), zmq.POLLIN):
                    return call.on_reply(await s.recv())
            finally:
                s.close(0)
            if not call.on_timeout():
                return None

    async def request(self, msg: P.Message) -> dict | None:
        return await self.request_raw(msg.pack())

    async def ask(self, msg: P.Message) -> P.Reply | None:
        """:meth:`request`, answered with the typed reply (None: no reply after every attempt)."""
        d = await self.request(msg)
        return None if d is None else P.reply_of(d, type(msg))

    def close(self) -> None:
        """Nothing to close between requests (each owns its socket); here for symmetry."""


_counter = itertools.count(1)
_session = f"{os.getpid():x}{int(time.time()) & 0xFFFFFF:06x}"


def new_client_order_id(prefix: str) -> str:
    """A client_order_id unique across restarts: prefix, process/session tag, counter."""
    return f"{prefix}-{_session}-{next(_counter)}"


__all__ = [
    "AsyncOrderClient",
    "DEALER_TAG_PREFIX",
    "DealerClient",
    "DealerRequest",
    "LazyPirate",
    "OrderClient",
    "PirateStats",
    "RetryPolicy",
    "decode_reply",
    "is_unreadable",
    "PirateCounters",
    "new_client_order_id",
    "open_req",
]
