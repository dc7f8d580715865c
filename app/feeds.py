"""The window's subscriptions: asyncio tasks that drain SUB sockets into :mod:`app.state`.

Each wake-up awaits one frame, then takes every frame already queued with ``NOBLOCK``
until ``zmq.Again`` (measured: awaiting one message at a time tops out near 50k msgs/s
with a 200 ms median lag; draining keeps up past 150k/s).  A batch is handed to a plain
function that decodes and updates dicts; nothing here touches a widget.  A time budget
per slice makes a flood yield back to Qt every few milliseconds, so painting and input
never wait for the network; what the socket cannot hold meanwhile is dropped by ZeroMQ
and shows up as sequence gaps.

Every tick frame, either form, goes through :func:`workers.protocol.tick_frame`: the
declarations validate it whole (in C) or say exactly what is wrong, for the count and the log;
the frame's ``epoch`` goes with every row to ``MarketState.on_tick``.

Depth (``depth.<SYMBOL>``, the order book a ladder shows) comes on the same socket: its frames
are told from tick frames by their topic and go to :class:`app.depth.DepthState`, decoded whole
against ``P.Depth`` (a bad one is counted, never raised).  Only the symbols a ladder shows are
subscribed (``DepthState.want`` -> :meth:`Subscription.set_extra_topics`).

Late joining (the zguide's Clone pattern): :class:`SnapshotLoader` asks the market-data
gateway's snapshot endpoint for the last tick of every symbol and the session's bars once the
ticks subscription is connected (at start, and again whenever a symbol's stream restarts: a
new epoch), on its own asyncio task with the Lazy Pirate client every request of the window
uses, so the UI never waits on it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import zmq
import zmq.asyncio

from workers import protocol as P
from workers.config import enable_ipv6
from workers.order_client import AsyncOrderClient, RetryPolicy
from workers.ratelimit import KeyedLimiter
from workers.sockmon import SocketMonitor
from workers.runtime import CONNECTED_MAXMSGSIZE
from workers.sequence import SeqKind, SequenceTracker
from app.state import AppState, StreamStats
from app.tasks import Tasks

log = logging.getLogger("tickdesk.app.feeds")

#: frames taken from a socket before the handler runs on them
CHUNK = 1024
#: seconds of work before a drain yields to the Qt loop
SLICE_BUDGET = 0.006
RCVHWM = 500_000


#: seconds between two log lines of one kind (a flood of bad frames costs one line per interval)
LOG_INTERVAL = 5.0


def _suffix(n: int) -> str:
    return f" ({n} similar suppressed)" if n else ""


class _Decoder:
    """What every stream's decoder shares: the state it feeds, the stream's counters, and a
    limiter so that a flood of bad frames costs one log line per interval."""

    #: the stream's name in ``AppState.streams`` and in the log
    stream = ""
    #: what a bad frame is called in the log
    frame_kind = ""

    def __init__(self, state: AppState):
        self.state = state
        self.stats = state.streams[self.stream]
        self._rl = KeyedLimiter(LOG_INTERVAL)

    def _bad_frame(self, e: P.ProtocolError) -> None:
        self.stats.decode_errors += 1
        if self._rl.allow("bad"):
            self.state.log.warning(self.stream, f"dropped a bad {self.frame_kind} frame: {e}{_suffix(self._rl.take_suppressed('bad'))}")


#: what a depth frame of the ticks endpoint starts with (tick frames start with ``tick.``)
DEPTH_PREFIX = b"depth."


class TickDecoder(_Decoder):
    """Frames of the ticks stream (``tick`` or batched ``ticks``) into ``MarketState.on_tick``;
    ``depth`` frames of the same socket into ``AppState.depth``."""

    stream = "ticks"
    frame_kind = "tick"

    def _depth(self, frame: bytes) -> None:
        try:
            _, msg = P.decode_pub(frame, expect=P.Depth)
        except P.ProtocolError as e:
            self.state.depth.decode_errors += 1
            self.stats.decode_errors += 1
            if self._rl.allow("bad depth"):
                self.state.log.warning(self.stream, f"dropped a bad depth frame: {e}{_suffix(self._rl.take_suppressed('bad depth'))}")
            return
        self.state.depth.on_depth(msg)

    def __call__(self, frames: list[bytes]) -> None:
        market = self.state.market
        on_tick = market.on_tick
        quotes = market.quotes
        for frame in frames:
            if frame.startswith(DEPTH_PREFIX):  # ~10 a second per subscribed symbol: off the tick path
                self._depth(frame)
                continue
            # either form, checked whole by the protocol's declarations before any tick is used
            try:
                sym, rows, epoch = P.tick_frame(frame)
            except P.ProtocolError as e:
                self._bad_frame(e)
                continue
            # the universe cap is asked once per frame: a refused frame costs nothing per row
            if sym not in quotes and not market.admit(sym):
                market.refuse(sym, len(rows))
                continue
            for r in rows:
                on_tick(sym, *r, epoch)
        self.stats.received += len(frames)


class ExecDecoder(_Decoder):
    """Order updates and fills (``exec.``) into the order book, fills and positions.

    The stream's ``seq`` goes through the shared tracker (workers/sequence.py): a gap or a
    restart of the exchange gateway asks for a resync of orders and positions; a duplicate or
    late order update is dropped, so an order's state never moves backwards.  Fills go to the
    state whatever their ``seq``: it drops repeated fill ids itself, and counts them.
    """

    stream = "execution"
    frame_kind = "execution"

    def __init__(self, state: AppState):
        super().__init__(state)
        self.seq = SequenceTracker()

    def _on_seq(self, msg) -> bool:
        """False if ``msg`` is a duplicate or late message."""
        st = self.state
        if not msg.seq:  # not numbered: nothing to check
            return True
        ev = self.seq.check("execution", msg.seq, msg.epoch or None)
        kind = ev.kind
        if kind is SeqKind.IN_ORDER:
            st.exec_seq = msg.seq
            return True
        if kind is SeqKind.FIRST:
            st.exec_seq = msg.seq
            if msg.seq > 1:
                # A late joiner: reports before this one went out before our subscription
                # took hold (the window's first sync may have run before them), so ask again
                # now that the stream is live (the Clone pattern's "subscribe, then snapshot").
                st.resync_wanted = True
            return True
        if kind is SeqKind.GAP:
            st.exec_gaps += 1
            st.log.warning("execution", f"execution stream gap {ev.previous} -> {ev.seq} ({ev.missing} missed): resyncing orders and positions")
        elif kind is SeqKind.RESTART:
            st.log.info("execution", f"execution stream restarted ({ev.previous} -> {ev.seq}): resyncing")
        else:
            if self._rl.allow("stale"):
                st.log.warning("execution", f"{kind.value} execution message (seq {ev.seq} after {ev.previous})"
                               f"{_suffix(self._rl.take_suppressed('stale'))}")
            return False
        st.exec_seq = msg.seq
        st.resync_wanted = True
        return True

    def __call__(self, frames: list[bytes]) -> None:
        st = self.state
        for frame in frames:
            try:
                _, msg = P.decode_pub(frame, expect=(P.Fill, P.OrderUpdate))
            except P.ProtocolError as e:
                self._bad_frame(e)
                continue
            fresh = self._on_seq(msg)
            if isinstance(msg, P.Fill):
                st.on_fill(msg)
            elif fresh:
                st.orders.apply_update(msg)
        self.stats.received += len(frames)
        self.stats.gaps = st.exec_gaps


class EventsDecoder(_Decoder):
    """The executor's events: signal decisions, strategy levels, positions."""

    stream = "events"
    frame_kind = "event"

    def __call__(self, frames: list[bytes]) -> None:
        st = self.state
        for frame in frames:
            try:
                _, msg = P.decode_pub(frame, expect=(P.SignalDecision, P.Levels, P.Position))
            except P.ProtocolError as e:
                self._bad_frame(e)
                continue
            if isinstance(msg, P.SignalDecision):
                st.on_decision(msg)
            elif isinstance(msg, P.Levels):
                st.on_levels(msg)
            # Position messages: the window keeps its own book from the same fills (so it
            # stays right while the executor restarts); the executor's copy is not needed.
        self.stats.received += len(frames)


#: seconds between two reads of the socket monitor's events (the connected dot's delay)
WATCH_EVERY_S = 0.2


class Subscription:
    """One SUB socket and the task that drains it in batches into ``handler``."""

    def __init__(self, ctx: zmq.asyncio.Context, endpoint: str, topics: list[bytes],
                 handler: Callable[[list[bytes]], None], stats: StreamStats, *, rcvhwm: int = RCVHWM,
                 budget: float = SLICE_BUDGET, tasks: Tasks | None = None, sockmon: SocketMonitor | None = None):
        self.ctx = ctx
        #: the window's socket monitor (the Network panel reads it); one per socket at most,
        #: libzmq replaces a socket's monitor by a second one
        self.sockmon = sockmon if sockmon is not None else SocketMonitor()
        self.endpoint = endpoint
        self.topics = topics
        self.handler = handler
        self.stats = stats
        self.rcvhwm = rcvhwm
        self.budget = budget
        self.handler_errors = 0
        self.tasks = tasks if tasks is not None else Tasks(f"feed.{stats.name}")
        self._sock: zmq.asyncio.Socket | None = None
        self._rl = KeyedLimiter(LOG_INTERVAL)
        self.curve = None  # CurveKeys, when the fleet runs with CurveZMQ
        #: topics subscribed besides ``topics``, changed while running (the ladders' depth)
        self.extra_topics: frozenset[bytes] = frozenset()

    def set_extra_topics(self, topics) -> None:
        """Subscribe ``topics`` besides the fixed ones (and drop the extra ones not in it);
        before :meth:`start` they are only remembered."""
        new = frozenset(topics)
        s = self._sock
        if s is not None:
            for t in self.extra_topics - new:
                s.setsockopt(zmq.UNSUBSCRIBE, t)
            for t in new - self.extra_topics:
                s.setsockopt(zmq.SUBSCRIBE, t)
        self.extra_topics = new

    def start(self) -> None:
        s = self.ctx.socket(zmq.SUB)
        s.setsockopt(zmq.LINGER, 0)
        s.setsockopt(zmq.RCVHWM, self.rcvhwm)
        # A connecting socket whose MAXMSGSIZE trips never reconnects (libzmq 4.3): allow large
        # frames here and refuse anything over the protocol's limit when decoding instead.
        s.setsockopt(zmq.MAXMSGSIZE, CONNECTED_MAXMSGSIZE)
        if self.curve is not None:
            self.curve.apply_client(s)
        for t in (*self.topics, *self.extra_topics):
            s.setsockopt(zmq.SUBSCRIBE, t)
        self.sockmon.watch(s, self.stats.name, connect=self.endpoint)
        s.connect(self.endpoint)
        self._sock = s
        self.tasks.spawn(self._drain(s), "drain")
        self.tasks.spawn(self._watch(s), "watch")

    async def _drain(self, s: zmq.asyncio.Socket) -> None:
        # A blocking twin of the same socket: its NOBLOCK recv is a plain call, not a future.
        sync = zmq.Socket.shadow(s.underlying)
        stats = self.stats
        clock = time.perf_counter
        while True:
            frame = await s.recv()
            t0 = clock()
            batch = [frame]
            n = 1
            while True:
                drained = False
                try:
                    for _ in range(CHUNK):
                        batch.append(sync.recv(zmq.NOBLOCK))
                except zmq.Again:
                    drained = True
                n += len(batch) - 1
                self.sockmon.count_in(s, sum(map(len, batch)), msgs=len(batch))
                self._handle(batch)
                batch = []
                if drained:
                    break
                if clock() - t0 > self.budget:
                    await asyncio.sleep(0)  # let Qt paint and take input, then carry on
                    t0 = clock()
            stats.batches += 1
            if n > stats.max_batch:
                stats.max_batch = n
            stats.last_message = time.monotonic()

    def _handle(self, batch: list[bytes]) -> None:
        try:
            self.handler(batch)
        except Exception as e:  # one bad handler call must not end the subscription
            self.handler_errors += 1
            if self._rl.allow("handler"):
                log.exception("feed %s handler failed: %s%s", self.stats.name, e, _suffix(self._rl.take_suppressed("handler")))

    async def _watch(self, s: zmq.asyncio.Socket) -> None:
        """The connection state, from the socket monitor's events (read a few times a second:
        the monitor queues them meanwhile)."""
        mon = self.sockmon
        try:
            while True:
                mon.poll()
                rep = mon.report_of(s)
                if rep is not None:
                    self.stats.connected = rep.state == "connected"
                await asyncio.sleep(WATCH_EVERY_S)
        finally:
            mon.forget(s)

    def close(self) -> None:
        self.tasks.cancel_all()
        if self._sock is not None:
            self._sock.close(0)
            self._sock = None

    async def aclose(self) -> None:
        await self.tasks.aclose()
        if self._sock is not None:
            self._sock.close(0)
            self._sock = None


#: how the window asks for a snapshot: a reply holds every symbol's bars, so allow it time
SNAPSHOT_POLICY = RetryPolicy(timeout=3.0, retries=2)
#: seconds between two snapshot attempts that got no usable reply (a gateway without the endpoint)
SNAPSHOT_RETRY_S = 5.0
#: seconds the loader waits for the ticks subscription to connect before it asks anyway
SNAPSHOT_CONNECT_WAIT_S = 5.0


class SnapshotLoader:
    """Asks the snapshot endpoint whenever ``MarketState.snapshot_wanted`` (start, a restart)
    and applies the reply; one request at a time, never on the UI's call stack."""

    def __init__(self, state: AppState, endpoint: str, ticks: StreamStats, curve=None,
                 policy: RetryPolicy = SNAPSHOT_POLICY, client: AsyncOrderClient | None = None,
                 retry_s: float = SNAPSHOT_RETRY_S, poll_s: float = 0.1):
        self.state = state
        self.ticks = ticks
        self.client = client or AsyncOrderClient(endpoint, policy, curve=curve)
        self.retry_s = retry_s
        self.poll_s = poll_s
        self.requests = 0
        self.failures = 0
        self._rl = KeyedLimiter(60.0)

    async def run(self) -> None:
        market = self.state.market
        t0 = time.monotonic()
        # subscribe first, then ask: ticks published after the snapshot are then on the way
        while not self.ticks.connected and time.monotonic() - t0 < SNAPSHOT_CONNECT_WAIT_S:
            await asyncio.sleep(self.poll_s)
        while True:
            if market.snapshot_wanted:
                if not await self.load_once():
                    await asyncio.sleep(self.retry_s)
                    continue
            await asyncio.sleep(self.poll_s)

    async def load_once(self) -> bool:
        """One request and its application; False (and asked again later) without a usable reply."""
        market = self.state.market
        market.begin_snapshot()
        self.requests += 1
        reply = await self.client.ask(P.GetSnapshot())
        if reply is None or not reply.ok or reply.__class__ is not P.GetSnapshotReply:
            market.abandon_snapshot()
            self.failures += 1
            why = "no reply" if reply is None else (getattr(reply, "reason", "") or "refused")
            if self._rl.allow("fail"):
                self.state.log.warning("ticks", f"market-data snapshot not loaded ({why}): quotes and the chart "
                                       f"fill from live ticks; asking again{_suffix(self._rl.take_suppressed('fail'))}")
            return False
        quotes, bars = market.apply_snapshot(reply)
        books = self.state.depth.apply_snapshot(reply.depth, reply.epoch)
        self.state.log.info("ticks", f"snapshot loaded: {quotes} quotes, bars of {bars} symbols"
                            f"{f', depth of {books}' if books else ''}"
                            f"{' (oldest bars left out)' if reply.truncated else ''}")
        return True


class Feeds:
    """The three subscriptions of the window (ticks, execution, events) and the snapshot loader."""

    def __init__(self, state: AppState, endpoints, ctx: zmq.asyncio.Context | None = None, curve=None,
                 tasks: Tasks | None = None):
        self.state = state
        self.ctx = ctx or enable_ipv6(zmq.asyncio.Context())
        self._own_ctx = ctx is None
        self.tasks = tasks.child("feeds") if tasks is not None else Tasks("feeds")
        st = state.streams
        #: every socket of the window's feeds (the Network panel shows them)
        self.sockmon = SocketMonitor()
        m = self.sockmon
        self.subs = [
            Subscription(self.ctx, endpoints.ticks, [b"tick."], TickDecoder(state), st["ticks"], tasks=self.tasks.child("ticks"),
                         sockmon=m),
            Subscription(self.ctx, endpoints.execution, [b"exec."], ExecDecoder(state), st["execution"],
                         tasks=self.tasks.child("execution"), sockmon=m),
            Subscription(self.ctx, endpoints.events, [b"signal.", b"levels.", b"position."], EventsDecoder(state), st["events"],
                         tasks=self.tasks.child("events"), sockmon=m),
        ]
        for sub in self.subs:
            sub.curve = curve
        # the ladders' symbols: their depth is subscribed on the ticks socket, nothing else's
        ticks = self.subs[0]
        state.depth.on_want = lambda syms: ticks.set_extra_topics(P.depth_topic(s) for s in syms)
        state.depth.on_want(state.depth.wanted)
        snap_ep = getattr(endpoints, "snapshot", "")
        self.snapshot = SnapshotLoader(state, snap_ep, st["ticks"], curve=curve) if snap_ep else None
        self._snap_tasks = self.tasks.child("snapshot")

    def start(self) -> None:
        for s in self.subs:
            s.start()
        if self.snapshot is not None:
            self._snap_tasks.spawn(self.snapshot.run(), "load")

    async def aclose(self) -> None:
        await self._snap_tasks.aclose()
        for s in self.subs:
            await s.aclose()
        self.close()

    def close(self) -> None:
        """Cancel the tasks and close every socket now (the tasks unwind on the next turn)."""
        self._snap_tasks.cancel_all()
        for s in self.subs:
            s.close()
        if self._own_ctx and not self.ctx.closed:
            self.ctx.destroy(linger=0)
