"""The window as a late joiner over real sockets (issue 12, items 1 and 2): a PUB of ticks with
an epoch and a fake snapshot ROUTER (as the market-data gateway's, docs/protocol.md) behind the
window's Feeds.  The window subscribes, asks get_snapshot, opens the chart with the session's
bars, joins the live stream with no gap and no duplicate, and after the publisher restarts
(a new epoch, seq from 1) takes its first tick at once and asks for a snapshot again."""

from __future__ import annotations

import asyncio

import zmq
import zmq.asyncio

from tests.procs import scaled
from workers import protocol as P
from workers.config import Endpoints
from app.feeds import Feeds
from app.state import AppState

T0 = 1_700_000_000
E1, E2 = 1_111_000_000_000_000_001, 1_111_000_000_000_000_999


class FakeGateway:
    """Publishes AAPL ticks and answers get_snapshot with its last tick and its 1 s bars."""

    def __init__(self, eps: Endpoints, epoch: int):
        ctx = zmq.Context.instance()
        self.pub = ctx.socket(zmq.PUB)
        self.pub.setsockopt(zmq.LINGER, 0)
        self.pub.bind(eps.ticks)
        self.router = ctx.socket(zmq.ROUTER)
        self.router.setsockopt(zmq.LINGER, 0)
        self.router.bind(eps.snapshot)
        self.epoch = epoch
        self.seq = 0
        self.last: P.Tick | None = None
        self.bars: list[tuple] = []
        self.requests = 0

    def tick(self) -> None:
        self.seq += 1
        ts = (T0 + self.seq) * 10**9  # one bar a tick: the bars tell which ticks they hold
        px = 100.0 + self.seq * 0.01
        row = (self.seq, ts, px, px - 0.01, px + 0.01, 100, 100, 1000 + self.seq)
        self.last = P.Tick("AAPL", *row, epoch=self.epoch)
        self.bars.append((ts, px, px, px, px, 1))
        self.pub.send(P.encode_ticks("AAPL", [row], epoch=self.epoch))

    def restart(self, epoch: int) -> None:
        self.epoch, self.seq, self.bars = epoch, 0, []

    def serve(self) -> None:
        while self.router.poll(0):
            ident, empty, data = self.router.recv_multipart()
            req = P.decode(data)
            assert isinstance(req, P.GetSnapshot)
            self.requests += 1
            reply = P.GetSnapshotReply(ok=True, epoch=self.epoch, ticks=[self.last] if self.last else [],
                                       bars=[P.SymbolBars("AAPL", 1, list(self.bars))])
            self.router.send_multipart([ident, empty, reply.pack()])

    def close(self) -> None:
        self.pub.close(0)
        self.router.close(0)


async def until(pred, gw: FakeGateway, timeout: float, tick: bool = True) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + scaled(timeout)
    while not pred():
        if loop.time() > end:
            raise AssertionError("condition not reached in time")
        if tick:
            gw.tick()
        gw.serve()
        await asyncio.sleep(0.005)


def test_late_joiner_gets_the_session_then_the_stream_and_a_restart_resumes_at_once(tmp_path):
    eps = Endpoints.ephemeral_ipc(tmp_path)
    st = AppState()
    gw = FakeGateway(eps, E1)
    for _ in range(300):  # the session so far: the window was not there
        gw.tick()

    async def main():
        feeds = Feeds(st, eps, ctx=zmq.asyncio.Context())
        feeds.start()
        m = st.market
        try:
            await until(lambda: m.snapshots_applied == 1, gw, 10)
            q = m.quotes["AAPL"]
            one = m.bars["AAPL"].series(1)
            # the chart opens with the session's history, not from the first live tick
            assert one.view()[0][0] == T0 + 1
            # live for a while: every tick once, no gap, no duplicate
            await until(lambda: q.seq >= gw.seq and gw.seq > 400, gw, 10)
            await until(lambda: q.seq == gw.seq, gw, 5, tick=False)
            times = one.view()[0]
            assert len(one) == gw.seq and list(times) == [float(T0 + i) for i in range(1, gw.seq + 1)]
            assert q.missed == 0
            # the publisher restarts: a new epoch, seq from 1, a higher price level
            old = q.seq
            gw.restart(E2)
            gw.seq = 0
            await until(lambda: q.epoch == E2, gw, 5)
            # quotes moved on at once: the restarted gateway's ticks, though their seq is far lower
            assert q.seq < old and q.restarts == 1 and q.last < 101.0
            await until(lambda: m.snapshots_applied == 2, gw, 10)
            assert gw.requests == 2
        finally:
            await feeds.aclose()

    try:
        asyncio.run(main())
    finally:
        gw.close()


def test_no_snapshot_endpoint_the_stream_still_fills_the_quotes(tmp_path):
    from workers.order_client import RetryPolicy

    eps = Endpoints.ephemeral_ipc(tmp_path)
    st = AppState()
    pub = zmq.Context.instance().socket(zmq.PUB)
    pub.setsockopt(zmq.LINGER, 0)
    pub.bind(eps.ticks)

    async def main():
        feeds = Feeds(st, eps, ctx=zmq.asyncio.Context())
        feeds.snapshot.retry_s = 0.05
        feeds.snapshot.client.policy = RetryPolicy(timeout=0.05, retries=1)
        feeds.start()
        try:
            seq = 0
            loop = asyncio.get_running_loop()
            end = loop.time() + scaled(10)
            while feeds.snapshot.failures < 2 or "AAPL" not in st.market.quotes:
                assert loop.time() < end
                seq += 1
                pub.send(P.encode_ticks("AAPL", [(seq, P.now_ns(), 100.0, 99.99, 100.01, 1, 1, seq)], epoch=E1))
                await asyncio.sleep(0.005)
        finally:
            await feeds.aclose()

    try:
        asyncio.run(main())
    finally:
        pub.close(0)
    assert st.market.quotes["AAPL"].last == 100.0
    assert any("snapshot not loaded" in ln.text for ln in st.log.items)
