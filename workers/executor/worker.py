"""The order executor: strategy signals in, risk-checked market orders out.

Sockets (see docs/executor.md):

* PULL bound on ``signals``: :class:`~workers.protocol.Signal` and
  :class:`~workers.protocol.Levels` from the strategies.
* PUB bound on ``events``: a :class:`~workers.protocol.SignalDecision` for every signal,
  every ``Levels`` as received, and :class:`~workers.protocol.Position` updates.
* SUB on ``ticks`` (``tick.``): last prices, for the price band and unrealized P&L.  Not
  polled: read every ``TICK_READ_INTERVAL`` (5 ms) and before the first signal of a symbol
  without a price, so a signal is checked against a last price at most that old (the newest
  frame of its symbol alone is decoded on the signal's path).
* SUB on ``execution`` (``exec.``): fills into the :class:`~workers.positions.PositionBook`
  and the tracker, order updates into the tracker.
* DEALER on ``orders`` for ``send_order``: up to ``--max-in-flight`` orders outstanding at
  once, each framed ``[client_order_id, "", request]`` so its reply comes back under the
  same id (the gateway echoes whatever envelope came in).  Lazy Pirate per order: no reply
  within ``--order-timeout`` -> the same request again, ``--order-retries`` attempts in all.
  The queries (get_positions, get_order, cancel_all) go on the same DEALER through a
  :class:`~workers.order_client.DealerClient`, framed under a tag no order id can have.

Nothing here waits for the gateway: a query's answer is a callback, its deadline one more
wake-up of the loop, so heartbeats and the streams go on while the gateway is down (a
blocking query on the loop thread once had the supervisor take the executor for silent).

Signals are never held up by an order in flight: a burst of signals goes out back to back
and the gateway journals them in one group commit (docs/performance.md).  An order whose
send gets no reply after every retry is UNKNOWN: it stays counted as working, new signals
are refused until it is resolved, and a timer asks the gateway about it with ``get_order``
every ``--reconcile-interval`` seconds (a late reply to one of its sends resolves it too).
It is never sent again under another ``client_order_id``.

This class owns the sockets and the wiring.  What became of each order (working, in flight,
unknown; resend or give up; settled by which evidence) is decided by the socket-free
:class:`~workers.executor.tracker.OrderTracker`, whose typed outcomes are turned into sends,
decisions and counters here.  Time comes from the injected :class:`~workers.clock.Clock`.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

import msgspec
import zmq

from workers import protocol as P
from workers.clock import LIVE_CLOCK, Clock
from workers.config import ConfigOf, at_least, build_parser_for, option, positive
from workers.errors import CommandError
from workers.executor import tracker as T
from workers.executor.risk import Decision, RiskChecker, RiskLimits
from workers.executor.tracker import OrderTracker
from workers.order_client import UNREADABLE_PREFIX, DealerClient, RetryPolicy, new_client_order_id
from workers.positions import PositionBook, fill_number
from workers.runtime import Worker, run_worker
from workers.sequence import SeqKind, SequenceTracker
from workers.symbols import parse_symbols

UNKNOWN_REASON = "order outcome unknown; reconciling"
#: what a signal refused while the executor resyncs with the gateway is told (then why, in brackets)
RESYNC_REASON = "resyncing with the exchange"
#: newest-frame-per-symbol cache bound (symbols are few; this only guards against a flood)
MAX_TICK_TOPICS = 10_000
#: seconds between two reads of the tick SUB when nothing else asks for a price
TICK_READ_INTERVAL = 0.005
#: most tick frames taken in one read (the rest wait for the next)
TICK_READ_BATCH = 4096
_NOBLOCK = int(zmq.NOBLOCK)
_MORE_NOBLOCK = int(zmq.NOBLOCK | zmq.SNDMORE)
_ZMQ_EVENTS = int(zmq.EVENTS)
_POLLIN = int(zmq.POLLIN)
#: fills remembered while a resync is under way (re-applied on top of its snapshot if it
#: does not hold them); beyond this the snapshot is asked for again instead
MAX_FILLS_DURING_SYNC = 100_000
#: fills asked for per get_fills of a resync, and pages at most (beyond them the positions
#: snapshot that ends every resync re-bases the book anyway)
FILLS_PAGE = 1000
MAX_FILL_PAGES = 100


class OrderExecutor(Worker):
    kind = "executor"
    timer_interval = 0.1
    config = ConfigOf("ExecutorConfig")

    def __init__(self, args: argparse.Namespace, clock: Clock = LIVE_CLOCK):
        # every deadline, rate window and timestamp of this process reads this clock, and so
        # does the runtime's loop: the times it hands to on_timer/next_wakeup are its readings
        super().__init__(args, clock)
        # refuses everything until setup() has read the limits (where a bad one can be reported)
        self.risk = RiskChecker(RiskLimits(kill_switch=True))
        self.book = PositionBook()
        cfg = self.config
        self.tracker = OrderTracker(clock, timeout=cfg.order_timeout, attempts=cfg.order_retries)
        self.paused = False
        #: a resync has completed once (positions loaded)
        self.synced = False
        self._tick_frames: dict[bytes, bytes] = {}
        # per symbol, with the market-data gateway's epoch: a new epoch is a restart, whatever seq says
        self._tick_seq = SequenceTracker()
        # one key: order updates and fills share the gateway's counter (and its epoch)
        self._exec_seq = SequenceTracker()
        #: every fill up to this number is accounted for: what get_fills asks after
        self._fills = T.FillWatermark()
        self._fills_known = False  # a snapshot has set the watermark (at start nothing is known)
        # The resync: get_fills (missed fills), get_orders (working orders), get_positions
        # (the book and the account's kill switch), one query at a time.  While one is wanted
        # or under way, signals are refused (RESYNC_REASON): nothing trades on a stale view.
        self._resync_why = "starting"  # '' once in step with the gateway
        self._resync_step = ""  # the query out now ('' none)
        self._resync_again = ""  # a reason to resync seen while one was under way
        self._resync_retry = False  # the last attempt failed: again next reconcile round
        self._fill_cursor = 0
        self._fill_pages = 0
        self._resync_stats: dict[str, int] = {}
        self._fills_during_sync: list[P.Fill] | None = None
        # queries out on the DEALER (their tags); one of each kind at a time, one per order
        self._order_queries: dict[str, bytes] = {}
        #: working orders to ask get_order about (stuck pending, missing after a resync) -> why
        self._order_checks: dict[str, str] = {}
        self._cancel_all_query: bytes | None = None
        #: the kill switch asked for a cancel_all the gateway has not answered yet
        self._cancel_all_wanted = False
        # The account's kill switch lives in the exchange gateway; the local one (risk limits)
        # follows it and is never off while the gateway is known to be on.
        self.gateway_kill: bool | None = None  # as the gateway last said (None: not heard)
        self.gateway_kill_reason = ""
        self._kill_wanted: bool | None = True if cfg.kill_switch else None  # set_kill_switch to send
        self._kill_reason = "executor started with --kill-switch" if cfg.kill_switch else ""
        self._kill_query: bytes | None = None
        #: the gateway has confirmed it keeps the switch: its "off" turns the local one off too
        self._kill_follows_gateway = False
        now = clock.monotonic()
        self._next_positions = now + cfg.position_interval
        self._next_reconcile = now + cfg.reconcile_interval

    # ------------------------------------------------------------------ setup
    def setup(self) -> None:
        ep, a = self.endpoints, self.config
        # read here, not in __init__: a ConfigError from setup() (a namespace that does not fit
        # ExecutorConfig) is what the runtime logs and turns into exit status 2
        self.risk = RiskChecker(a.limits())
        self.events = self.socket(zmq.PUB, bind=ep.events, sndhwm=a.events_hwm)
        # Execution first: within one wake-up, fills are booked before new signals are checked.
        self.execution = self.socket(zmq.SUB, connect=ep.execution, subscribe=[b"exec."], rcvhwm=a.events_hwm)
        self.ticks = self.socket(zmq.SUB, connect=ep.ticks, subscribe=[b"tick."], rcvhwm=a.events_hwm)
        self.signals = self.socket(zmq.PULL, bind=ep.signals, rcvhwm=a.events_hwm)
        # Orders: a DEALER, many in flight, replies matched by the client_order_id frame.
        # Its replies are read first in a wake-up (an ack waits for nothing else).
        # IMMEDIATE: an order is queued only on a live connection.  While the gateway is down a
        # send fails at once (the deadline resends it), instead of waiting in the pipe to be
        # delivered minutes later -- after the kill switch, say.
        self.order_pipe = self.socket(
            zmq.DEALER, connect=ep.orders, sndhwm=a.max_in_flight * 4, rcvhwm=a.max_in_flight * 4, options={zmq.IMMEDIATE: 1}
        )
        self.add_reader(self.order_pipe, self._on_order_reply, multipart=True)
        self.add_reader(self.execution, self._on_exec)
        # The ticks are not polled: read every TICK_READ_INTERVAL (next_wakeup), on the
        # timer and queries, and for a signal of a symbol without a price yet.  Only the
        # newest tick of a symbol matters here, and waking for every burst of the feed
        # (~1000/s) cost a process switch each, on the cores the strategy needs for the same
        # burst (the executor's CPU at 10k ticks/s: ~15% of a core -> ~12%).
        self._next_tick_read = self.clock.monotonic() + TICK_READ_INTERVAL
        self.add_reader(self.signals, self._on_signal_frame)
        # Queries (get_positions, get_order, cancel_all) try once because the timer asks
        # again; their replies come back on the order pipe, under tags of their own.
        # A reply after silence: the gateway is back, and may have restarted meanwhile.
        self.queries = DealerClient(self.order_pipe, RetryPolicy(a.order_timeout, 1), on_back=self._on_gateway_back,
                                    sockmon=self.sockmon)
        self._want_resync("starting")
        self._send_kill_switch()
        self._update_gauges()

    # ------------------------------------------------------------------ publishing
    def _publish(self, msg: P.Message) -> None:
        data = P.pub(msg)
        try:
            self.events.send(data, zmq.NOBLOCK)
        except zmq.Again:
            self.stats.inc("dropped")
            self.sockmon.count_drop(self.events)
            return
        self.sockmon.count_out(self.events, len(data))

    def _decide(self, sig: P.Signal, accepted: bool, reason: str, client_order_id: str | None = None) -> None:
        self._publish(
            P.SignalDecision(signal=sig, accepted=accepted, reason=reason, client_order_id=client_order_id, ts=self.clock.time_ns())
        )

    def _publish_positions(self, symbols=None) -> None:
        for msg in self.book.to_messages(self.clock.time_ns(), symbols):
            self._publish(msg)

    # ------------------------------------------------------------------ ticks
    def _on_tick(self, frame: bytes) -> None:
        # Only the newest tick per symbol matters here, so keep the raw frame and decode it
        # when a price is needed: a burst of ticks costs a dict store each, not a decode.
        i = frame.find(P.TOPIC_SEP)
        if i <= 0 or len(frame) > P.MAX_MESSAGE_BYTES:
            # (an oversized frame is refused now, not kept until it is decoded: the cache holds
            # one frame per topic, and the SUB's own size cap is wide -- see Worker.socket)
            self.stats.inc("decode_errors")
            self.rlog.warning("ticks", "tick frame without topic or over %d bytes dropped", P.MAX_MESSAGE_BYTES)
            return
        self.stats.inc("ticks")
        self._tick_frames[frame[:i]] = frame
        if len(self._tick_frames) > MAX_TICK_TOPICS:
            self._decode_ticks()

    def _read_ticks(self) -> None:
        """Take every tick frame waiting on the SUB (up to TICK_READ_BATCH)."""
        sock = self.ticks
        events, recv, on_tick = sock.getsockopt, sock.recv, self._on_tick
        count_in = self.sockmon.count_in
        nbytes = n = 0
        # EVENTS before each recv: cheaper than the zmq.Again that would end the loop
        while n < TICK_READ_BATCH and events(_ZMQ_EVENTS) & _POLLIN:
            try:
                frame = recv(_NOBLOCK)
            except zmq.Again:
                break
            n += 1
            nbytes += len(frame)
            on_tick(frame)
        if n:
            count_in(sock, nbytes, n)

    def _flush_ticks(self) -> None:
        """Bring prices up to date: read the waiting tick frames, decode the newest per symbol."""
        self._read_ticks()
        self._decode_ticks()

    def _decode_ticks(self) -> None:
        if not self._tick_frames:
            return
        frames, self._tick_frames = self._tick_frames, {}
        self._use_ticks(frames.values())

    def _price_for_signal(self, symbol: str) -> None:
        """The newest price of ``symbol`` before its signal is checked, at the least cost to
        the signal: the frames read so far (at most TICK_READ_INTERVAL old), that symbol's
        alone decoded; the socket is read first only for a symbol without a price yet."""
        if symbol not in self.risk.last_prices:
            self._read_ticks()
        frame = self._tick_frames.pop(P.tick_topic(symbol), None)
        if frame is not None:
            self._use_ticks((frame,))

    def _use_ticks(self, frames) -> None:
        if len(self._tick_seq) > MAX_TICK_TOPICS:
            self._tick_seq.clear()  # a flood of symbols: each starts over (FIRST), nothing lost
        for frame in frames:
            try:
                tick = P.last_tick(frame)  # a 'tick' or a batched 'ticks' frame: the newest
            except P.ProtocolError as e:
                self.stats.inc("decode_errors")
                self.rlog.warning("ticks", "bad tick dropped: %s", e)
                continue
            # (gaps are normal here: only the newest frame per symbol is decoded)
            ev = self._tick_seq.check(tick.symbol, tick.seq, tick.epoch or None)
            if not ev.fresh:
                self.stats.inc("stale_ticks")  # an older tick of the same incarnation: never move back
                continue
            if ev.kind is SeqKind.RESTART:
                self.stats.inc("tick_restarts")
                self.rlog.info("tick_restart", "ticks of %s restarted (seq %s -> %d, epoch %s -> %s)",
                               tick.symbol, ev.previous, tick.seq, ev.previous_epoch, tick.epoch or None)
            self.risk.set_last(tick.symbol, tick.last)
            self.book.mark(tick.symbol, tick.last)

    # ------------------------------------------------------------------ signals
    def _on_signal_frame(self, frame: bytes) -> None:
        try:
            msg = P.decode(frame, expect=(P.Signal, P.Levels))
        except P.ProtocolError as e:
            self.stats.inc("decode_errors")
            self.rlog.warning("signals", "bad message on signals dropped: %s", e)
            return
        if isinstance(msg, P.Levels):
            self.stats.inc("levels")
            self._publish(msg)
            return
        self._on_signal(msg)

    def _gate(self) -> str:
        """Why no signal may trade right now, or '' if they may."""
        # (the kill switch is a risk check: an order that reduces a position passes it)
        if self.paused:
            return "executor is paused"
        if self._resync_why and not self.config.trade_unsynced:
            self.stats.inc("refused_resyncing")
            return f"{RESYNC_REASON} ({self._resync_why})"
        unknown = len(self.tracker.unknown)
        if unknown > self.config.max_unknown_orders:
            return f"{unknown} order(s) with unknown outcome; reconciling"
        in_flight = len(self.tracker.in_flight)
        if in_flight >= self.config.max_in_flight:
            return f"{in_flight} orders already waiting for the gateway's reply"
        return ""

    def pending(self, symbol: str) -> int:
        return self.tracker.pending(symbol)

    def _on_signal(self, sig: P.Signal) -> None:
        self.stats.inc("signals")
        if sig.ts:
            self.stats.lat("signal_to_executor", max(0, self.clock.time_ns() - sig.ts))
            if sig.cause_ts:
                # the strategy's part, from the signal's own stamps (its tick's ts, its making)
                self.stats.lat("tick_to_signal", max(0, sig.ts - sig.cause_ts))
        self._price_for_signal(sig.symbol)
        gate = self._gate()
        if gate:
            decision = Decision(False, gate)
        else:
            decision = self.risk.check(
                sig.side,
                sig.symbol,
                sig.qty,
                sig.price,
                self.clock.monotonic(),
                self.book.qty(sig.symbol),
                self.tracker.pending(sig.symbol),
            )
        if not decision.accepted:
            self.stats.inc("rejected")
            self._decide(sig, False, decision.reason)
            return
        self.stats.inc("accepted")
        self._send_order(sig)

    def _send_order(self, sig: P.Signal) -> None:
        request = P.SendOrder(
            client_order_id=new_client_order_id(self.name),
            symbol=sig.symbol,
            side=sig.side,
            qty=sig.qty,
            order_type=P.OrderType.MARKET,
            source=f"strategy:{sig.strategy}",
            ts=self.clock.time_ns(),
            cause_ts=sig.ts,
            origin_ts=sig.cause_ts,
        )
        inf = self.tracker.submit(request, sig)
        self.stats.inc("orders")
        self._transmit(inf)

    def _transmit(self, inf: T.InFlight) -> None:
        tag, payload = inf.order.client_order_id.encode(), inf.call.payload
        send = self.order_pipe.send
        try:
            # the sends send_multipart would make, with int flags instead of its enum
            # arithmetic per frame (this is on every signal's path); libzmq keeps the three
            # frames one message either way
            send(tag, _MORE_NOBLOCK)
            send(b"", _MORE_NOBLOCK)
            send(payload, _NOBLOCK)
        except zmq.ZMQError:
            # the pipe to a gateway that is gone is full: the deadline resends it, or gives up
            self.stats.inc("order_send_blocked")
            self.sockmon.count_drop(self.order_pipe)
            return
        self.sockmon.count_out(self.order_pipe, len(tag) + len(payload))

    # ------------------------------------------------------------------ order replies
    def _next_deadline(self) -> float | None:
        d1, d2 = self.tracker.next_deadline(), self.queries.next_deadline()
        return d1 if d2 is None else d2 if d1 is None else min(d1, d2)

    def next_wakeup(self, now: float) -> float | None:
        # Called by the runtime before every poll: the poll must not sleep past a deadline.
        if now >= self._next_tick_read:
            self._next_tick_read = now + TICK_READ_INTERVAL
            self._read_ticks()
        deadline = self._next_deadline()
        if deadline is not None and deadline <= now:
            self._check_in_flight()
            deadline = self._next_deadline()
        wake = self._next_tick_read
        return wake if deadline is None or deadline > wake else deadline

    def _check_in_flight(self) -> None:
        # Replies already waiting first: an order or query answered while the loop was busy
        # (a long batch, a slow machine) must not be declared unanswered.
        self._drain(self.order_pipe)
        for out in self.tracker.on_timeouts():
            if isinstance(out, T.Resend):
                self.stats.inc("order_resends")
                self._transmit(out.flight)
            else:
                self._unknown(out)
        self.queries.on_timeouts(self.clock.monotonic())

    def _on_order_reply(self, frames: list[bytes]) -> None:
        t1 = self.clock.time_ns()
        if len(frames) != 3 or frames[1] != b"":
            self.stats.inc("decode_errors")
            self.rlog.warning("reply", "order reply of %d frames dropped (want [client_order_id, '', reply])", len(frames))
            return
        if self.queries.owns(frames[0]):
            if not self.queries.on_reply(frames[0], frames[2]):
                self.stats.inc("late_replies")  # a query's answer after it gave up
            return
        coid = frames[0].decode("utf-8", "replace")
        try:
            reply: T.SendReply = P.decode_reply(frames[2], P.SendOrder)
        except P.ProtocolError as e:
            # not an answer the tracker can act on; it makes the order unknown, never lost
            self.stats.inc("decode_errors")
            reply = P.ErrorReply(ok=False, reason=f"{UNREADABLE_PREFIX}: {e}")
        out = self.tracker.on_reply(coid, reply)
        if isinstance(out, T.Acked):
            wo = out.order
            self.stats.inc("acks")
            self.stats.lat("order_ack", t1 - out.sent_ns)  # retries included
            # order_ack split at the gateway's stamp (one host, one clock): on the way there
            # (our send, its wake-up) and back (its journal write, the reply, our wake-up)
            if reply.ts:
                self.stats.lat("order_to_gateway", max(0, reply.ts - out.sent_ns))
                self.stats.lat("gateway_to_ack", max(0, t1 - reply.ts))
            if wo.signal.ts:
                self.stats.lat("signal_to_order", max(0, out.sent_ns - wo.signal.ts))
            if wo.signal.cause_ts:
                self.stats.lat("tick_to_ack", max(0, t1 - wo.signal.cause_ts))
            if out.contradiction:
                self._contradiction(out.contradiction)
            self._decide(wo.signal, True, f"order {wo.status.value}", coid)
        elif isinstance(out, T.Rejected):
            self.stats.lat("order_ack", t1 - out.sent_ns)
            self.stats.inc("order_rejects")
            self._decide(out.order.signal, False, f"exchange rejected: {out.reason}", coid)
        elif isinstance(out, T.BecameUnknown):
            self._unknown(out)
        elif isinstance(out, T.Settled):
            self._resolved(out)
        else:
            self.stats.inc("late_replies")  # a resend's second answer, or after a restart

    def _unknown(self, out: T.BecameUnknown) -> None:
        self.stats.inc("unknown")
        coid = out.order.client_order_id
        detail = f": {out.detail}" if out.detail else ""
        self.rlog.warning("unknown", "order %s outcome unknown (%s%s); reconciling with get_order", coid, out.why, detail)
        self._decide(out.order.signal, True, UNKNOWN_REASON, coid)

    def _resolved(self, out: T.Settled) -> None:
        wo = out.order
        self.stats.inc("reconciled")
        self.log.info("order %s reconciled via %s: %s", wo.client_order_id, out.how, wo.status.value)
        if not out.accepted:
            self.stats.inc("order_rejects")
        self._decide(wo.signal, out.accepted, f"reconciled: order {wo.status.value}", wo.client_order_id)

    def _contradiction(self, what: str) -> None:
        self.stats.inc("order_contradictions")
        self.rlog.warning("contradiction", "conflicting final states, the first is kept: %s", what)

    # ------------------------------------------------------------------ execution stream
    def _on_exec(self, frame: bytes) -> None:
        try:
            _, msg = P.decode_pub(frame, expect=(P.Fill, P.OrderUpdate))
        except P.ProtocolError as e:
            self.stats.inc("decode_errors")
            self.rlog.warning("exec", "bad message on execution dropped: %s", e)
            return
        self._check_exec_seq(msg.seq, msg.epoch)
        if isinstance(msg, P.Fill):
            self._on_fill(msg)
        else:
            self._on_order_update(msg)

    def _check_exec_seq(self, seq: int, epoch: int) -> None:
        # A gap means reports may have been lost (HWM, reconnect); a new epoch (or, from a
        # gateway that gives none, a step back) means the gateway restarted.  Either way the
        # executor resyncs with it before it trades again.
        if not seq:
            return
        ev = self._exec_seq.check("execution", seq, epoch or None)
        kind = ev.kind
        if kind is SeqKind.IN_ORDER or kind is SeqKind.DUPLICATE or kind is SeqKind.LATE:
            return  # next in line, or a report already had: nothing was lost
        if kind is SeqKind.GAP:
            self.stats.inc("exec_gaps")
            self.rlog.warning("exec_gap", "execution stream gap: %d -> %d; resyncing", ev.previous, seq)
            self._want_resync("execution stream gap")
        elif kind is SeqKind.RESTART:
            self.stats.inc("exec_restarts")
            self.log.warning("exchange gateway restarted (execution seq %s -> %d, epoch %s -> %s); resyncing",
                             ev.previous, seq, ev.previous_epoch, epoch or None)
            self._want_resync("exchange gateway restarted")
        else:
            # FIRST: fills published after the startup snapshot but before this SUB had joined
            # (the slow-joiner window) would be lost without a trace of a gap, so resync once
            # more now that the subscription is live.
            self._want_resync("execution stream joined")

    def _on_fill(self, fill: P.Fill, missed: bool = False) -> None:
        """A fill from the stream, or one a resync's get_fills brought back (``missed``)."""
        if fill.origin_ts and not missed:
            t = self.clock.time_ns()
            self.stats.lat("tick_to_fill", max(0, t - fill.origin_ts))
            self.stats.lat("gateway_to_fill", max(0, t - fill.ts))
        applied = self.book.apply_fill(fill)
        n = fill_number(fill.fill_id)
        if n is not None:
            self._fills.saw(n)  # applied now or held already: accounted for either way
        if applied and self._fills_during_sync is not None and len(self._fills_during_sync) <= MAX_FILLS_DURING_SYNC:
            self._fills_during_sync.append(fill)  # one past the cap marks the overflow
        # The tracker de-duplicates on its own: a fill the book skips because a position
        # snapshot already holds it still completes its order.
        settled = self.tracker.on_fill(fill)
        if settled is not None:
            self._resolved(settled)
        if not applied:
            if not missed:
                self.stats.inc("duplicate_fills")
            return
        self.stats.inc("missed_fills" if missed else "fills")
        self._decode_ticks()  # the marks as of the last read: a fill does not wait for a read
        self._publish_positions((fill.symbol,))

    def _on_order_update(self, up: P.OrderUpdate) -> None:
        self.stats.inc("order_updates")
        out = self.tracker.on_order_update(up)
        if isinstance(out, T.Settled):
            self._resolved(out)
        elif isinstance(out, T.Contradiction):
            self._contradiction(out.error)

    # ------------------------------------------------------------------ reconciliation
    def _reconcile(self) -> None:
        """Ask get_order about the unknown orders, then about the orders to check (stuck
        pending, missing after a resync), none already asked.  While the gateway is not
        answering (the last query timed out), one question at a time: a dead gateway costs one
        request per round, not one per order."""
        budget = 1 if self.queries.silent else self.config.max_in_flight
        now = self.clock.monotonic()
        for coid in [*self.tracker.unknown_ids(), *self._order_checks]:
            if len(self._order_queries) >= budget:
                return
            if coid not in self._order_queries:
                self._order_queries[coid] = self.queries.submit(
                    P.GetOrder(client_order_id=coid), now, lambda reply, coid=coid: self._on_get_order(coid, reply))

    def _on_get_order(self, coid: str, reply: P.Reply | None) -> None:
        self._order_queries.pop(coid, None)
        if reply is None:
            self.stats.inc("reconcile_timeouts")  # asked again next round
            return
        if coid not in self.tracker.unknown:
            self._on_order_state(coid, reply)
            return
        out = self.tracker.on_get_order(coid, reply)
        self._order_checks.pop(coid, None)
        if isinstance(out, T.Settled):
            self._resolved(out)
        elif isinstance(out, T.NotPlaced):
            self._not_placed(out)
        elif isinstance(out, T.StillUnknown) and out.unreadable:
            self.rlog.warning("reconcile", "unreadable get_order reply for %s: %s", coid, out.reason)

    def _not_placed(self, out: T.NotPlaced) -> None:
        coid = out.order.client_order_id
        self.stats.inc("not_placed")
        self.log.warning("order %s never reached the exchange: %s", coid, out.reason)
        self._decide(out.order.signal, False, "order never reached the exchange (reconciled)", coid)

    def _on_order_state(self, coid: str, reply: P.Reply) -> None:
        """get_order's answer about a working order that was stuck pending or missing from the
        gateway's working orders after a resync."""
        why = self._order_checks.get(coid, "")
        out = self.tracker.on_order_state(coid, reply)
        if out is None or not isinstance(out, T.StillUnknown):
            self._order_checks.pop(coid, None)  # answered (a denial or unreadable: asked again)
        if isinstance(out, T.Resolved):
            wo = out.order
            self.stats.inc("orders_resolved")
            self.log.warning("order %s (%s) resolved by get_order: %s -> %s after %.1fs",
                             coid, why, out.was.value, wo.status.value, out.age)
            self._decide(wo.signal, wo.status is not P.OrderStatus.REJECTED,
                         f"resolved by get_order: order {wo.status.value} (was {out.was.value} for {out.age:.1f}s)", coid)
        elif isinstance(out, T.StillPending):
            self.stats.inc("still_pending")
            self.rlog.warning("still_pending", "order %s still %s at the exchange; asked again later", coid, out.order.status.value)
        elif isinstance(out, T.NotPlaced):
            self._not_placed(out)
        elif isinstance(out, T.Settled):
            self._resolved(out)
        elif isinstance(out, T.Contradiction):
            self._contradiction(out.error)
        elif isinstance(out, T.StillUnknown) and out.unreadable:
            self.rlog.warning("reconcile", "unreadable get_order reply for %s: %s", coid, out.reason)

    # ------------------------------------------------------------------ resync
    def _want_resync(self, why: str) -> bool:
        """Resync with the gateway before any signal trades again; False if one is under way
        (it is then done once more after it: the one under way may predate ``why``)."""
        if not self._resync_why:
            self._resync_why = why
        if self._resync_step:
            self._resync_again = self._resync_again or why
            return False
        self._start_resync()
        return True

    def _on_gateway_back(self) -> None:
        self.stats.inc("gateway_back")
        self.log.warning("exchange gateway answering again after silence; resyncing")
        self._want_resync("exchange gateway answering again")

    def _start_resync(self) -> None:
        self._resync_again = ""
        self._resync_retry = False
        self._resync_stats = {"fills": self.stats.counters.get("missed_fills", 0)}
        self._fills_during_sync = []
        self.stats.inc("resyncs_started")
        if self._fills_known:
            self._fill_cursor, self._fill_pages = self._fills.base, 0
            self._ask_fills()
        else:
            self._ask_orders()  # at start nothing is known to be missed: the snapshot is the base

    def _ask(self, step: str, msg: P.Message, on_reply) -> None:
        self._resync_step = step
        self.queries.submit(msg, self.clock.monotonic(), on_reply)

    def _resync_failed(self, step: str, reply: P.Reply | None, detail: str = "") -> None:
        self._resync_step = ""
        self._resync_retry = True  # again next reconcile round; signals stay refused meanwhile
        self._fills_during_sync = None
        if reply is None:
            self.stats.inc("sync_timeouts")
            self.rlog.warning("sync", "no %s reply from %s; resync retried", step, self.endpoints.orders)
        else:
            self.stats.inc("sync_errors")
            self.rlog.warning("sync", "%s refused: %s; resync retried", step, detail or reply.reason)

    def _ask_fills(self) -> None:
        self._ask("get_fills", P.GetFills(since_fill=self._fill_cursor, limit=FILLS_PAGE), self._on_fills)

    def _on_fills(self, reply: P.Reply | None) -> None:
        if reply is None:
            return self._resync_failed("get_fills", None)
        if reply.__class__ is not P.GetFillsReply or not reply.ok:
            # A gateway that keeps no fill history: the snapshot that ends the resync still
            # re-bases positions; only the orders the missed fills completed wait for the grace.
            self.stats.inc("resync_fills_refused")
            self.rlog.warning("get_fills", "get_fills refused: %s; positions re-based from the snapshot", reply.reason)
            return self._ask_orders()
        top = self._fill_cursor
        for fill in reply.fills:
            self._on_fill(fill, missed=True)
            n = fill_number(fill.fill_id)
            if n is not None:
                top = max(top, n)
        self._fill_pages += 1
        if reply.fills and top > self._fill_cursor and top < reply.last_fill and self._fill_pages < MAX_FILL_PAGES:
            self._fill_cursor = top
            return self._ask_fills()
        self._ask_orders()

    def _ask_orders(self) -> None:
        self._ask("get_orders", P.GetOrders(working_only=True), self._on_orders)

    def _on_orders(self, reply: P.Reply | None) -> None:
        if reply is None or reply.__class__ is not P.GetOrdersReply or not reply.ok:
            return self._resync_failed("get_orders", reply)
        outcomes, missing = self.tracker.missing_from(reply.orders)
        for out in outcomes:
            if isinstance(out, T.Settled):
                self._resolved(out)
            else:
                self._contradiction(out.error)
        for coid in missing:
            # it ended while we were not listening: asked about (not part of the gate: its
            # whole quantity stays pending, which only makes the position check stricter)
            self._order_checks[coid] = "not working at the exchange after a resync"
        self._resync_stats["missing_orders"] = len(missing)
        if missing:
            self._reconcile()
        self._ask("get_positions", P.GetPositions(), self._on_positions)

    def _on_positions(self, reply: P.Reply | None) -> None:
        applied, self._fills_during_sync = self._fills_during_sync, None
        if reply is None:
            return self._resync_failed("get_positions", None)
        problem = self._load_positions(reply, applied or [])
        if problem:
            return self._resync_failed("get_positions", reply, problem)
        self._read_gateway_kill(reply.kill_switch, reply.kill_reason)
        self._resync_step = ""
        missed = self.stats.counters.get("missed_fills", 0) - self._resync_stats.get("fills", 0)
        self.log.info("in step with the exchange (%s): %d missed fill(s) applied, %d order(s) to ask about, %d symbols, last fill %d",
                      self._resync_why, missed, self._resync_stats.get("missing_orders", 0), len(self.book), self.book.last_fill_seq)
        if self._resync_again:
            self._resync_why = self._resync_again
            self._start_resync()
            return
        self._resync_why = ""
        self._update_gauges()

    def _load_positions(self, reply: P.Reply, applied: list[P.Fill]) -> str:
        """Re-base the book on the snapshot; '' on success, else why not."""
        if not reply.ok or reply.__class__ is not P.GetPositionsReply:
            return reply.reason  # a refusal, or an ErrorReply saying why it could not be read
        if len(applied) > MAX_FILLS_DURING_SYNC:
            return "too many fills during the resync to replay; taking a newer snapshot"
        try:
            self.book.load_snapshot([msgspec.structs.asdict(p) for p in reply.positions], reply.last_fill_seq)
        except ValueError as e:
            return f"unreadable get_positions reply: {e}"
        self._fills.rebase(reply.last_fill_seq)
        self._fills_known = True
        # Fills read while the resync was under way were booked before the snapshot replaced
        # the book; those it does not hold (numbered after its last_fill_seq) go on top again.
        for fill in applied:
            n = fill_number(fill.fill_id)
            if n is None or n > reply.last_fill_seq:
                self.book.get(fill.symbol).apply(fill.side, fill.qty, fill.price)
        self._flush_ticks()
        if not self.synced:
            self.log.info("positions loaded: %d symbols, last fill %d", len(self.book), self.book.last_fill_seq)
        self.synced = True
        self.stats.inc("syncs")
        self._publish_positions()
        return ""

    # ------------------------------------------------------------------ kill switch
    def _set_local_kill(self, on: bool, why: str) -> None:
        if on != self.risk.limits.kill_switch:
            self.risk.limits = self.risk.limits.updated({"kill_switch": on})
            self.log.warning("kill switch %s (%s)", "ON" if on else "off", why)
            if not on:
                self._cancel_all_wanted = False
        self._update_gauges()

    def _read_gateway_kill(self, on: bool, reason: str) -> None:
        """The account's switch as a get_positions reply tells it (every resync)."""
        self.gateway_kill, self.gateway_kill_reason = on, reason
        if self._kill_wanted is not None:
            return  # a set_kill_switch of ours is on its way: its answer decides
        if on:
            # a relaunch with the switch on must not trade within seconds of its start
            self._kill_follows_gateway = True
            self._set_local_kill(True, f"on at the exchange: {reason or 'no reason given'}")
        elif self.risk.limits.kill_switch and self._kill_follows_gateway:
            self._set_local_kill(False, "released at the exchange")

    def _send_kill_switch(self) -> None:
        """Send the set_kill_switch asked for, unless one is out (asked again every reconcile
        round until the gateway answers)."""
        if self._kill_wanted is None or self._kill_query is not None:
            return
        on = self._kill_wanted
        msg = P.SetKillSwitch(on=on, reason=self._kill_reason if on else "", ts=self.clock.time_ns())
        self._kill_query = self.queries.submit(msg, self.clock.monotonic(), lambda reply, on=on: self._on_kill_switch(on, reply))
        self.stats.inc("kill_switch_sent")

    def _on_kill_switch(self, asked: bool, reply: P.Reply | None) -> None:
        self._kill_query = None
        if reply is None:
            self.stats.inc("kill_switch_timeouts")
            self.rlog.warning("kill_switch", "no set_kill_switch reply from %s; asking again", self.endpoints.orders)
            return
        newer = self._kill_wanted is not None and self._kill_wanted != asked
        if not newer:
            self._kill_wanted = None
        if reply.__class__ is P.SetKillSwitchReply and reply.ok:
            self.stats.inc("kill_switch_done")
            self.gateway_kill, self.gateway_kill_reason = reply.on, reply.kill_reason
            self._kill_follows_gateway = True
            if newer:
                self._send_kill_switch()
                # until the newer request is answered: on if either says on
                self._set_local_kill(self.risk.limits.kill_switch or reply.on, "set at the exchange")
            else:
                self._set_local_kill(reply.on, "set at the exchange")
            return
        # Refused, or not understood (a gateway that keeps no switch): the local state is all
        # there is, and it never says off while the gateway was last known to be on.
        self.stats.inc("kill_switch_refused")
        self.log.error("set_kill_switch %s refused by the exchange: %s; the executor's own switch stays %s",
                       "on" if asked else "off", reply.reason, "on" if asked or self.gateway_kill else "off")
        self._kill_follows_gateway = False
        if newer:
            self._send_kill_switch()
        elif not asked and self.gateway_kill is not True:
            self._set_local_kill(False, "the exchange keeps no switch to release")
        self._update_gauges()

    def _request_cancel_all(self) -> str:
        """Cancel every working order at the gateway, asked again every reconcile round until
        the gateway answers (while the kill switch stays on)."""
        self._cancel_all_wanted = True
        if self._cancel_all_query is None:
            self._cancel_all_query = self.queries.submit(P.CancelAll(ts=self.clock.time_ns()), self.clock.monotonic(), self._on_cancel_all)
            self.stats.inc("cancel_all_sent")
        return "requested"

    def _on_cancel_all(self, reply: P.Reply | None) -> None:
        self._cancel_all_query = None
        if reply is None:
            self.stats.inc("cancel_all_timeouts")
            self.rlog.warning("cancel_all", "no cancel_all reply from %s; asking again", self.endpoints.orders)
            return
        self._cancel_all_wanted = False
        if reply.ok:
            self.stats.inc("cancel_all_done")
            self.log.warning("cancel_all: %d order(s) cancelled at the exchange", len(getattr(reply, "cancelled", ())) or getattr(reply, "count", 0))
        else:
            self.stats.inc("cancel_all_refused")
            self.log.error("cancel_all refused by the exchange: %s", reply.reason)
        self._update_gauges()

    # ------------------------------------------------------------------ timer
    def on_timer(self, now: float) -> None:
        self._flush_ticks()
        if now >= self._next_reconcile:
            self._next_reconcile = now + self.config.reconcile_interval
            if self._resync_retry and not self._resync_step:
                self._start_resync()
            for wo in self.tracker.stuck(self.config.pending_timeout):
                self.stats.inc("stuck_orders")
                self._order_checks.setdefault(wo.client_order_id, f"{wo.status.value} for over {self.config.pending_timeout:g}s")
            for coid in [c for c in self._order_checks if c not in self.tracker.working]:
                del self._order_checks[coid]  # settled meanwhile by other evidence
            if self.tracker.unknown or self._order_checks:
                self._reconcile()
            if self._cancel_all_wanted and self.risk.limits.kill_switch:
                self._request_cancel_all()
            self._send_kill_switch()
            self.tracker.retire_expired()
        if now >= self._next_positions:
            self._next_positions = now + self.config.position_interval
            self._publish_positions()
        self._update_gauges()

    def _update_gauges(self) -> None:
        g = self.stats.gauges
        g["limits"] = self.risk.limits.to_dict()
        # symbol -> signed qty of the open positions (the headless status line shows these)
        g["positions"] = {sym: pos.qty for sym, pos in self.book.positions.items() if pos.qty}
        g["position_count"] = len(g["positions"])
        g["working_orders"] = len(self.tracker.working)
        g["unknown_orders"] = len(self.tracker.unknown)
        g["in_flight_orders"] = len(self.tracker.in_flight)
        g["orders_to_check"] = len(self._order_checks)
        g["kill_switch"] = self.risk.limits.kill_switch
        g["gateway_kill_switch"] = self.gateway_kill
        g["kill_switch_pending"] = self._kill_wanted
        g["synced"] = self.synced
        g["resyncing"] = self._resync_why
        g["cancel_all_pending"] = self._cancel_all_wanted
        g["queries_pending"] = len(self.queries.pending)

    # ------------------------------------------------------------------ commands
    def on_pause(self, paused: bool) -> None:
        self.paused = paused

    def on_command(self, cmd: str, args: dict) -> dict | None:
        if cmd == "kill_switch":
            on = args.get("on")
            if not isinstance(on, bool):
                raise CommandError("kill_switch needs {on: true|false}")
            reason = args.get("reason")
            self._kill_reason = reason if isinstance(reason, str) and reason else "kill_switch command to the executor"
            # The account's switch, at the gateway: every client's orders, and every restart.
            # On takes effect here at once; off only once the gateway says it is off.
            self._kill_wanted = on
            if on:
                self._set_local_kill(True, self._kill_reason)
            self._send_kill_switch()
            result: dict[str, Any] = {"kill_switch": self.risk.limits.kill_switch, "gateway": "requested"}
            if on and args.get("cancel_all", True):
                # Stop what is already working, not only what is still to come.  Answered
                # now, not when the gateway does: the outcome is in the log and the
                # cancel_all_* counters, and it is asked again until the gateway answers.
                result["cancel_all"] = self._request_cancel_all()
            elif not on:
                self._cancel_all_wanted = False
            self._update_gauges()
            return result
        if cmd == "set_limits":
            if "kill_switch" in args:
                # one way to the switch, through the gateway (see kill_switch)
                raise CommandError("the kill switch is set with the kill_switch command, not set_limits")
            try:
                self.risk.limits = self.risk.limits.updated(args)
            except (ValueError, TypeError) as e:
                raise CommandError(str(e)) from None
            self._update_gauges()
            return {"limits": self.risk.limits.to_dict()}
        if cmd == "get_limits":
            return {"limits": self.risk.limits.to_dict()}
        if cmd == "get_positions":
            self._flush_ticks()
            return {"positions": [m.to_dict() for m in self.book.to_messages(self.clock.time_ns())]}
        if cmd == "resync":
            # the outcome shows in syncs / sync_timeouts / sync_errors and the gauges synced, resyncing
            return {"resync": "requested" if self._want_resync("requested") else "already under way"}
        return super().on_command(cmd, args)


def _allow_list(text: str) -> str:
    parse_symbols(text)  # the one symbol rule (limits() parses it again into the frozenset)
    return text


_L = RiskLimits()  # the executor's limits keep their defaults in RiskLimits
_RISK, _ORDERS, _EVENTS = "risk limits", "orders", "events"


@dataclass(frozen=True)
class ExecutorConfig:
    """Every option of the order executor."""

    max_order_qty: int = option(_L.max_order_qty, "largest order quantity", check=at_least(1), group=_RISK)
    max_position: int = option(_L.max_position, "largest absolute position per symbol, working orders included", check=at_least(0), group=_RISK)
    price_band_pct: float = option(_L.price_band_pct, "reject a signal priced more than this % away from the last trade", check=positive, group=_RISK)
    max_orders_per_sec: int = option(_L.max_orders_per_sec, "orders accepted in any sliding 1-second window", check=at_least(1), group=_RISK)
    kill_switch: bool = option(_L.kill_switch, "start with the kill switch on (and turn the exchange's on): refuse every signal that would increase a position", default_text="off", group=_RISK)
    symbols: str = option("", "comma-separated allow-list of tradable symbols", check=_allow_list, join=True, default_text="all", group=_RISK)
    order_timeout: float = option(1.0, "seconds to wait for one reply from the order gateway", check=positive, group=_ORDERS)
    order_retries: int = option(3, "send attempts per order before its outcome is unknown", check=at_least(1), group=_ORDERS)
    max_in_flight: int = option(64, "orders sent and not yet answered by the gateway; beyond it new signals are refused", check=at_least(1), group=_ORDERS)
    reconcile_interval: float = option(1.0, "seconds between get_order queries for unknown orders and position-sync retries", check=positive, group=_ORDERS)
    max_unknown_orders: int = option(0, "refuse new signals while more than this many orders have an unknown outcome", check=at_least(0), group=_ORDERS)
    trade_unsynced: bool = option(False, "accept signals before a resync with the gateway has completed (at start and after a reconnect)", default_text="refuse them", group=_ORDERS)
    pending_timeout: float = option(5.0, "seconds an order may stay pending_new before the gateway is asked about it (get_order)", check=positive, group=_ORDERS)
    position_interval: float = option(1.0, "seconds between full position publications", check=positive, group=_EVENTS)
    events_hwm: int = option(100_000, "send/receive high-water mark of the stream sockets", check=at_least(1), group=_EVENTS)

    def __post_init__(self) -> None:
        self.limits()  # RiskLimits checks them too: refuse at start-up what it would refuse later

    def limits(self) -> RiskLimits:
        """The RiskLimits the options ask for (ValueError naming the bad one)."""
        return RiskLimits(
            max_order_qty=self.max_order_qty,
            max_position=self.max_position,
            price_band_pct=self.price_band_pct,
            max_orders_per_sec=self.max_orders_per_sec,
            kill_switch=self.kill_switch,
            allowed_symbols=frozenset(parse_symbols(self.symbols)),
        )


def build_parser() -> argparse.ArgumentParser:
    return build_parser_for(ExecutorConfig, "main.py worker executor", "Order executor: risk-checks strategy signals and sends them as market orders.")


def main(argv: list[str]) -> int:
    return run_worker(OrderExecutor, build_parser(), argv)
