"""The one Lazy Pirate implementation (workers/order_client.py): the policy without a network,
the blocking and asyncio faces against a real REP socket that loses a reply, and the DEALER
face of the worker loops against a ROUTER that answers out of order, or is not there."""

from __future__ import annotations

import asyncio
import threading

import msgpack
import pytest
import zmq

from workers import protocol as P
from workers.order_client import (
    AsyncOrderClient,
    DealerClient,
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


# ---------------------------------------------------------------------------- DealerClient
# The face for worker loops: many requests at once over a DEALER the caller reads, no call
# that waits.  Real sockets, time passed in by hand (a deadline is hit exactly).


class Pair:
    """A DEALER (IMMEDIATE, as the executor's) and, when bound, the ROUTER it talks to."""

    def __init__(self, endpoint: str, bind: bool = True):
        self.endpoint = endpoint
        self.ctx = zmq.Context()
        self.router = None
        if bind:
            self.bind()
        self.dealer = self.ctx.socket(zmq.DEALER)
        self.dealer.setsockopt(zmq.LINGER, 0)
        self.dealer.setsockopt(zmq.IMMEDIATE, 1)
        self.dealer.connect(endpoint)

    def bind(self):
        self.router = self.ctx.socket(zmq.ROUTER)
        self.router.setsockopt(zmq.LINGER, 0)
        self.router.bind(self.endpoint)

    def unbind(self):
        self.router.close(0)
        self.router = None

    def requests(self, want: int, timeout_ms: int = 5000) -> list[list[bytes]]:
        got = []
        while len(got) < want and self.router.poll(timeout_ms):
            got.append(self.router.recv_multipart())
        return got

    def replies(self, client: DealerClient, timeout_ms: int = 5000) -> int:
        """Hand every reply the DEALER has (waiting for the first) to the client."""
        n = 0
        if not self.dealer.poll(timeout_ms):
            return 0
        while True:
            try:
                tag, empty, payload = self.dealer.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return n
            assert empty == b"" and client.owns(tag)
            client.on_reply(tag, payload)
            n += 1

    def close(self):
        self.ctx.destroy(linger=0)


def _connected(pair: Pair) -> None:
    # IMMEDIATE: a send before the connection is up fails; wait for it with a probe
    deadline = 100
    while deadline:
        try:
            pair.dealer.send_multipart([b"probe", b"", b"x"], zmq.NOBLOCK)
            pair.requests(1)
            return
        except zmq.Again:
            pair.dealer.poll(50)
            deadline -= 1
    raise AssertionError("the DEALER never connected")


def test_dealer_client_many_at_once_each_answer_to_its_request(endpoint):
    pair = Pair(endpoint)
    _connected(pair)
    client = DealerClient(pair.dealer, RetryPolicy(timeout=1.0, retries=1))
    done: dict[str, object] = {}
    try:
        for coid in ("a", "b", "c"):
            client.submit(P.GetOrder(client_order_id=coid), 0.0, lambda r, coid=coid: done.__setitem__(coid, r))
        client.submit(P.GetPositions(), 0.0, lambda r: done.__setitem__("positions", r))
        reqs = pair.requests(4)
        assert len(reqs) == 4 and not done and len(client.pending) == 4  # nothing waited
        # answered out of order, each under the envelope it came with
        for ident, tag, empty, body in reversed(reqs):
            req = P.unpack_map(body)
            if req["type"] == "get_order":
                rep = P.GetOrderReply(ok=True, client_order_id=req["client_order_id"], order_id="O-" + req["client_order_id"], status=P.OrderStatus.NEW)
            else:
                rep = P.GetPositionsReply(ok=True, positions=[], last_fill_seq=4)
            pair.router.send_multipart([ident, tag, empty, rep.pack()])
        while len(done) < 4:
            assert pair.replies(client)
        assert {k: v.order_id for k, v in done.items() if k != "positions"} == {"a": "O-a", "b": "O-b", "c": "O-c"}
        assert isinstance(done["positions"], P.GetPositionsReply) and done["positions"].last_fill_seq == 4
        assert not client.pending and client.next_deadline() is None and not client.silent
        # a reply for a tag no longer pending is counted, never delivered twice
        ident, tag, empty, body = reqs[0]
        pair.router.send_multipart([ident, tag, empty, P.GetPositionsReply(ok=True).pack()])
        pair.replies(client)
        assert client.late == 1 and len(done) == 4
    finally:
        pair.close()


def test_dealer_client_against_a_dead_peer_gives_up_on_time_and_asks_again_when_it_is_back(endpoint):
    pair = Pair(endpoint, bind=False)  # nothing listening
    events: list[str] = []
    client = DealerClient(pair.dealer, RetryPolicy(timeout=1.0, retries=2), on_back=lambda: events.append("back"))
    outcome: list[object] = []
    try:
        client.submit(P.CancelAll(ts=1), 10.0, outcome.append)
        assert client.unsent == 1 and not outcome  # could not be handed to a connection; no wait
        # the unsent attempt is offered again soon, inside its deadline
        assert 10.0 < client.next_deadline() < 11.0
        client.on_timeouts(10.5)
        assert not outcome and client.stats.timeouts == 0
        client.on_timeouts(11.0)  # first attempt over: the same bytes again
        assert client.stats.resends == 1 and not outcome
        client.on_timeouts(12.0)  # last attempt over: given up, outcome unknown
        assert outcome == [None] and client.silent and not client.pending and client.stats.given_up == 1
        assert events == []  # silence alone is no comeback

        # the peer comes back: an unsent attempt reaches it on the next offer, without waiting
        # for the timeout
        pair.bind()
        outcome.clear()
        client.submit(P.CancelAll(ts=2), 20.0, outcome.append)
        t = 20.0
        reqs = []
        # simulated time creeps (the attempt lasts until 21.0) while real time gives the DEALER
        # its reconnect, however long a busy machine takes for it
        while not reqs and t < 20.99:
            t += 0.005
            client.on_timeouts(t)
            reqs = pair.requests(1, timeout_ms=50)
        assert reqs, "the request never reached the peer inside its first attempt"
        ident, tag, empty, body = reqs[0]
        assert P.unpack_map(body) == P.unpack_map(P.CancelAll(ts=2).pack())
        pair.router.send_multipart([ident, tag, empty, P.CancelAllReply(ok=True, cancelled=["x"], count=1).pack()])
        pair.router.send_multipart([ident, tag, empty, P.CancelAllReply(ok=True).pack()])  # a second answer: no second comeback
        assert pair.replies(client) == 2
        assert isinstance(outcome[0], P.CancelAllReply) and outcome[0].cancelled == ["x"] and not client.silent
        # the peer answering again after silence is said once, before that answer's callback
        # (the executor resyncs with a gateway that may have restarted meanwhile)
        assert events == ["back"] and client.comebacks == 1 and client.late == 1
    finally:
        pair.close()


def test_dealer_client_reads_an_unreadable_reply_as_an_error_reply(endpoint):
    pair = Pair(endpoint)
    _connected(pair)
    client = DealerClient(pair.dealer, RetryPolicy(timeout=1.0, retries=1))
    outcome: list[object] = []
    try:
        client.submit(P.GetOrder(client_order_id="a"), 0.0, outcome.append)
        (ident, tag, empty, _), = pair.requests(1)
        pair.router.send_multipart([ident, tag, empty, b"\xc1 not msgpack"])
        pair.replies(client)
        (reply,) = outcome
        assert isinstance(reply, P.ErrorReply) and reply.reason.startswith("unreadable reply") and client.unreadable == 1
    finally:
        pair.close()
