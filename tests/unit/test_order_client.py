"""The one Lazy Pirate implementation (workers/order_client.py): the policy without a network,
then both faces against a real REP socket that loses a reply."""

from __future__ import annotations

import asyncio
import threading

import msgpack
import pytest
import zmq

from workers import protocol as P
from workers.order_client import (
    AsyncOrderClient,
    LazyPirate,
    OrderClient,
    PirateStats,
    RetryPolicy,
    decode_reply,
    is_unreadable,
)

OK = msgpack.packb({"v": 1, "type": "ping_reply", "ok": True, "reason": ""})


def test_same_bytes_every_attempt_then_unknown():
    stats = PirateStats()
    call = LazyPirate(b"req", RetryPolicy(timeout=0.5, retries=3), stats)
    sent = []
    now = 100.0
    while True:
        sent.append(call.begin(now))
        assert call.remaining(now) == 0.5 and not call.expired(now) and call.expired(now + 0.5)
        now += 0.5
        if not call.on_timeout():
            break
    assert sent == [b"req"] * 3
    assert call.done and call.reply is None
    assert stats.as_dict() == {"requests": 1, "resends": 2, "timeouts": 3, "unreadable": 0, "given_up": 1}
    with pytest.raises(RuntimeError):
        call.begin(now)


def test_a_reply_ends_the_request_and_garbage_becomes_an_error_reply():
    call = LazyPirate(b"req", RetryPolicy(0.1, 3))
    call.begin(0.0)
    assert call.on_timeout()
    call.begin(0.1)
    assert call.on_reply(OK)["ok"] is True and call.done and call.stats.resends == 1
    bad = LazyPirate(b"req", RetryPolicy(0.1, 1))
    bad.begin(0.0)
    reply = bad.on_reply(b"\xc1 not msgpack")
    assert reply["ok"] is False and is_unreadable(reply) and bad.stats.unreadable == 1
    # a declared ErrorReply, so the typed face reads it with its reason
    typed = P.reply_of(reply, P.Ping)
    assert isinstance(typed, P.ErrorReply) and typed.reason == reply["reason"] and typed.reason.startswith("unreadable reply: ")
    assert not is_unreadable(decode_reply(OK))


def test_policy_is_checked():
    for bad in ((0, 3), (1.0, 0)):
        with pytest.raises(ValueError):
            RetryPolicy(*bad)


class FlakyRep:
    """A REP server in a thread that drops the first ``drop`` requests (reads, never answers)."""

    def __init__(self, endpoint: str, drop: int):
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.ROUTER)  # a ROUTER can leave a request unanswered
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.bind(endpoint)
        self.drop = drop
        self.seen: list[bytes] = []
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            if not self.sock.poll(20):
                continue
            ident, empty, body = self.sock.recv_multipart()
            self.seen.append(body)
            if len(self.seen) > self.drop:
                self.sock.send_multipart([ident, empty, OK])

    def close(self) -> None:
        self._stop.set()
        self.thread.join(2)
        self.ctx.destroy(linger=0)


@pytest.fixture
def endpoint(tmp_path):
    return f"ipc://{tmp_path}/orders"


def test_blocking_client_resends_the_same_request_after_a_lost_reply(endpoint):
    srv = FlakyRep(endpoint, drop=1)
    client = OrderClient(endpoint, RetryPolicy(timeout=0.2, retries=3), ctx=zmq.Context())
    try:
        ping = P.Ping(ts=P.now_ns())
        reply = client.request(ping)
        assert reply is not None and reply["ok"] is True
        assert srv.seen == [ping.pack()] * 2 and client.resends == 1 and client.timeouts == 1
        assert client.request(ping)["ok"]  # the answered socket is kept and still in step
    finally:
        client.close()
        client.ctx.destroy(linger=0)
        srv.close()


def test_async_client_gives_up_with_none_after_every_attempt(endpoint):
    srv = FlakyRep(endpoint, drop=99)
    import zmq.asyncio

    ctx = zmq.asyncio.Context()
    client = AsyncOrderClient(endpoint, RetryPolicy(timeout=0.1, retries=2), ctx=ctx)
    try:
        assert asyncio.run(client.request_raw(b"\x81\xa1v\x01")) is None
        assert srv.seen == [b"\x81\xa1v\x01"] * 2 and client.stats.given_up == 1
        srv.drop = 0
        reply = asyncio.run(client.request_raw(b"again"))
        assert reply is not None and reply["ok"] is True
    finally:
        ctx.destroy(linger=0)
        srv.close()
