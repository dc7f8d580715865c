"""Clients of the orders endpoint with Lazy Pirate retries (zguide ch. 4).

A REQ socket that gets no reply within ``timeout`` is closed with linger 0, reopened and
the *same* request is sent again.  The gateway is idempotent on ``client_order_id``, so a
resend can never create a second order.  After ``retries`` attempts the call returns
``None``: the caller must treat the order as UNKNOWN and reconcile it later with
``get_order``; it must never send it again under a new ``client_order_id``.
"""

from __future__ import annotations

import itertools
import os
import time
from dataclasses import dataclass

import zmq

from workers import protocol as P


@dataclass(frozen=True)
class RetryPolicy:
    timeout: float = 1.0  # seconds to wait for one reply
    retries: int = 3  # attempts in all


class OrderClient:
    """Blocking REQ client (executor, tests, scripts)."""

    def __init__(self, endpoint: str, policy: RetryPolicy = RetryPolicy(), ctx: zmq.Context | None = None, curve=None):
        self.endpoint = endpoint
        self.policy = policy
        self.ctx = ctx or zmq.Context.instance()
        self._curve = curve
        self._sock: zmq.Socket | None = None
        self.resends = 0
        self.timeouts = 0

    def _open(self) -> zmq.Socket:
        s = self.ctx.socket(zmq.REQ)
        s.setsockopt(zmq.LINGER, 0)
        s.setsockopt(zmq.MAXMSGSIZE, P.MAX_MESSAGE_BYTES * 64)  # replies to get_orders can be large
        if self._curve is not None:
            self._curve.apply_client(s)
        s.connect(self.endpoint)
        return s

    def request_raw(self, payload: bytes) -> dict | None:
        """Send ``payload`` with retries; return the reply map, or None after every retry."""
        for attempt in range(self.policy.retries):
            if self._sock is None:
                self._sock = self._open()
            if attempt:
                self.resends += 1
            self._sock.send(payload)
            if self._sock.poll(int(self.policy.timeout * 1000), zmq.POLLIN):
                data = self._sock.recv()
                try:
                    return P.unpack_map(data)
                except P.ProtocolError as e:
                    return P.reply("", False, f"unreadable reply: {e}")
            self.timeouts += 1
            self._sock.close(0)
            self._sock = None
        return None

    def request(self, msg: P.Message) -> dict | None:
        return self.request_raw(msg.pack())

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close(0)
            self._sock = None


class AsyncOrderClient:
    """The same Lazy Pirate client for asyncio (zmq.asyncio), used by the window."""

    def __init__(self, endpoint: str, policy: RetryPolicy = RetryPolicy(), ctx=None, curve=None):
        import zmq.asyncio

        self.endpoint = endpoint
        self.policy = policy
        self.ctx = ctx or zmq.asyncio.Context.instance()
        self._curve = curve
        self.resends = 0
        self.timeouts = 0

    async def request_raw(self, payload: bytes) -> dict | None:
        # One REQ socket per request: concurrent requests from the UI never queue behind each
        # other, and a lost reply cannot desynchronise a shared REQ's send/recv lockstep.
        for attempt in range(self.policy.retries):
            s = self.ctx.socket(zmq.REQ)
            s.setsockopt(zmq.LINGER, 0)
            s.setsockopt(zmq.MAXMSGSIZE, P.MAX_MESSAGE_BYTES * 64)
            if self._curve is not None:
                self._curve.apply_client(s)
            s.connect(self.endpoint)
            try:
                if attempt:
                    self.resends += 1
                await s.send(payload)
                if await s.poll(int(self.policy.timeout * 1000), zmq.POLLIN):
                    data = await s.recv()
                    try:
                        return P.unpack_map(data)
                    except P.ProtocolError as e:
                        return P.reply("", False, f"unreadable reply: {e}")
                self.timeouts += 1
            finally:
                s.close(0)
        return None

    async def request(self, msg: P.Message) -> dict | None:
        return await self.request_raw(msg.pack())


_counter = itertools.count(1)
_session = f"{os.getpid():x}{int(time.time()) & 0xFFFFFF:06x}"


def new_client_order_id(prefix: str) -> str:
    """A client_order_id unique across restarts: prefix, process/session tag, counter."""
    return f"{prefix}-{_session}-{next(_counter)}"
