"""Clients of the orders endpoint with Lazy Pirate retries (zguide ch. 4), written once.

The policy: send the request on a REQ socket; no reply within ``timeout`` -> close that
socket with linger 0 (a REQ that lost its reply is stuck in its send/recv lockstep), open a
new one and send the *same bytes* again; after ``retries`` attempts in all, give up with
``None``.  The gateway is idempotent on ``client_order_id``, so a resend can never create a
second order, and ``None`` means UNKNOWN: the caller reconciles the order later with
``get_order`` and never sends it again under a new ``client_order_id``.  A reply that cannot
be read becomes an error reply (:func:`decode_reply`), never an exception.

One implementation, three faces:

* :class:`LazyPirate` -- the policy of one request as a sans-IO state machine: it holds the
  bytes, counts attempts, keeps the deadline and says what to do next; it owns no socket.
* :class:`OrderClient` -- blocking (executor queries, tests, scripts).
* :class:`AsyncOrderClient` -- asyncio, for the window (one REQ per request, so concurrent
  requests never queue behind each other).

Loops that step many requests without blocking (``bench/chaos.py``) drive
:class:`LazyPirate` themselves with NOBLOCK receives.
"""

from __future__ import annotations

import itertools
import os
import time
from dataclasses import dataclass
from typing import Any

import zmq

from workers import protocol as P

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
        self.ctx = ctx or zmq.Context.instance()
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


class AsyncOrderClient(_ClientBase):
    """The same policy for asyncio (zmq.asyncio), used by the window."""

    def __init__(self, endpoint: str, policy: RetryPolicy = RetryPolicy(), ctx=None, curve=None):
        import zmq.asyncio

        super().__init__(endpoint, policy, curve)
        self.ctx = ctx or zmq.asyncio.Context.instance()

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
