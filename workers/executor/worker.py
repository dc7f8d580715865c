"""The order executor: strategy signals in, risk-checked market orders out.

Sockets (see docs/executor.md):

* PULL bound on ``signals``: :class:`~workers.protocol.Signal` and
  :class:`~workers.protocol.Levels` from the strategies.
* PUB bound on ``events``: a :class:`~workers.protocol.SignalDecision` for every signal,
  every ``Levels`` as received, and :class:`~workers.protocol.Position` updates.
* SUB on ``ticks`` (``tick.``): last prices, for the price band and unrealized P&L.
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
#: newest-frame-per-symbol cache bound (symbols are few; this only guards against a flood)
MAX_TICK_TOPICS = 10_000
#: at most one positions resync per this many seconds after exec-stream gaps
RESYNC_MIN_INTERVAL_S = 5.0
#: fills remembered while a get_positions is out (re-applied on top of its snapshot if it
#: does not hold them); beyond this the snapshot is asked for again instead
MAX_FILLS_DURING_SYNC = 100_000


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
        self.synced = False
        self._tick_frames: dict[bytes, bytes] = {}
        # one key: order updates and fills share the gateway's counter
        self._exec_seq = SequenceTracker()
        self._resync_wanted = False
        self._last_resync = -1e9
        # queries out on the DEALER (their tags); one of each kind at a time, one per order
        self._positions_query: bytes | None = None
        self._fills_during_sync: list[P.Fill] | None = None
        self._order_queries: dict[str, bytes] = {}
        self._cancel_all_query: bytes | None = None
        #: the kill switch asked for a cancel_all the gateway has not answered yet
        self._cancel_all_wanted = False
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
        self.add_reader(self.ticks, self._on_tick)
        self.add_reader(self.signals, self._on_signal_frame)
        # Queries (get_positions, get_order, cancel_all) try once because the timer asks
        # again; their replies come back on the order pipe, under tags of their own.
        self.queries = DealerClient(self.order_pipe, RetryPolicy(a.order_timeout, 1))
        self._request_positions()
        self._update_gauges()

    # ------------------------------------------------------------------ publishing
    def _publish(self, msg: P.Message) -> None:
        try:
            self.events.send(P.pub(msg), zmq.NOBLOCK)
        except zmq.Again:
            self.stats.inc("dropped")

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
            self._flush_ticks()

    def _flush_ticks(self) -> None:
        if not self._tick_frames:
            return
        frames, self._tick_frames = self._tick_frames, {}
        for frame in frames.values():
            try:
                tick = P.last_tick(frame)  # a 'tick' or a batched 'ticks' frame: the newest
            except P.ProtocolError as e:
                self.stats.inc("decode_errors")
                self.rlog.warning("ticks", "bad tick dropped: %s", e)
                continue
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
        if self.risk.limits.kill_switch:
            return "kill switch is on"
        if self.paused:
            return "executor is paused"
        if not self.synced and not self.config.trade_unsynced:
            return "positions not loaded from the exchange yet"
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
        self._flush_ticks()
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
        try:
            self.order_pipe.send_multipart([inf.order.client_order_id.encode(), b"", inf.call.payload], zmq.NOBLOCK)
        except zmq.ZMQError:
            # the pipe to a gateway that is gone is full: the deadline resends it, or gives up
            self.stats.inc("order_send_blocked")

    # ------------------------------------------------------------------ order replies
    def _next_deadline(self) -> float | None:
        d1, d2 = self.tracker.next_deadline(), self.queries.next_deadline()
        return d1 if d2 is None else d2 if d1 is None else min(d1, d2)

    def next_wakeup(self, now: float) -> float | None:
        # Called by the runtime before every poll: the poll must not sleep past a deadline.
        deadline = self._next_deadline()
        if deadline is not None and deadline <= now:
            self._check_in_flight()
            deadline = self._next_deadline()
        return deadline

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
        self._check_exec_seq(msg.seq)
        if isinstance(msg, P.Fill):
            self._on_fill(msg)
        else:
            self._on_order_update(msg)

    def _check_exec_seq(self, seq: int) -> None:
        # A gap means fills may have been lost (HWM, reconnect); a step back means the gateway
        # restarted.  Either way the position book is re-based on a get_positions snapshot.
        if not seq:
            return
        ev = self._exec_seq.check("execution", seq)
        kind = ev.kind
        if kind is SeqKind.IN_ORDER or kind is SeqKind.DUPLICATE:
            return  # next in line, or the same report again: nothing was lost
        if kind is SeqKind.GAP:
            self.stats.inc("exec_gaps")
            self.rlog.warning("exec_gap", "execution stream gap: %d -> %d; resyncing positions", ev.previous, seq)
        elif kind is SeqKind.RESTART:
            self.stats.inc("exec_restarts")
        # FIRST too: fills published after the startup snapshot but before this SUB had joined
        # (the slow-joiner window) would be lost without a trace of a gap, so take one more
        # snapshot now that the subscription is live.
        self._resync_wanted = True

    def _on_fill(self, fill: P.Fill) -> None:
        if fill.origin_ts:
            self.stats.lat("tick_to_fill", max(0, self.clock.time_ns() - fill.origin_ts))
        applied = self.book.apply_fill(fill)
        if applied and self._fills_during_sync is not None and len(self._fills_during_sync) <= MAX_FILLS_DURING_SYNC:
            self._fills_during_sync.append(fill)  # one past the cap marks the overflow
        # The tracker de-duplicates on its own: a fill the book skips because a position
        # snapshot already holds it still completes its order.
        settled = self.tracker.on_fill(fill)
        if settled is not None:
            self._resolved(settled)
        if not applied:
            self.stats.inc("duplicate_fills")
            return
        self.stats.inc("fills")
        self._flush_ticks()
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
        """Ask get_order about the unknown orders not already asked.  While the gateway is
        not answering (the last query timed out), one question at a time: a dead gateway
        costs one request per round, not one per unknown order."""
        budget = 1 if self.queries.silent else self.config.max_in_flight
        now = self.clock.monotonic()
        for coid in self.tracker.unknown_ids():
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
        out = self.tracker.on_get_order(coid, reply)
        if isinstance(out, T.Settled):
            self._resolved(out)
        elif isinstance(out, T.NotPlaced):
            self.stats.inc("not_placed")
            self.log.warning("order %s never reached the exchange: %s", coid, out.reason)
            self._decide(out.order.signal, False, "order never reached the exchange (reconciled)", coid)
        elif isinstance(out, T.StillUnknown) and out.unreadable:
            self.rlog.warning("reconcile", "unreadable get_order reply for %s: %s", coid, out.reason)

    def _request_positions(self) -> bool:
        """Ask for a positions snapshot unless one is being asked for; False if one is."""
        if self._positions_query is not None:
            return False
        # a gap seen from now on needs a snapshot taken after it: this one may predate it
        self._resync_wanted = False
        self._fills_during_sync = []
        self._positions_query = self.queries.submit(P.GetPositions(), self.clock.monotonic(), self._on_positions)
        return True

    def _on_positions(self, reply: P.Reply | None) -> None:
        self._positions_query = None
        applied, self._fills_during_sync = self._fills_during_sync, None
        if not self._load_positions(reply, applied or []):
            self._resync_wanted = True  # retried on the reconcile timer

    def _load_positions(self, reply: P.Reply | None, applied: list[P.Fill]) -> bool:
        if reply is None:
            self.stats.inc("sync_timeouts")
            self.rlog.warning("sync", "no get_positions reply from %s; will retry", self.endpoints.orders)
            return False
        if not reply.ok or reply.__class__ is not P.GetPositionsReply:
            # a refusal, or an ErrorReply saying why the reply could not be read
            self.stats.inc("sync_errors")
            self.rlog.warning("sync", "get_positions refused: %s", reply.reason)
            return False
        if len(applied) > MAX_FILLS_DURING_SYNC:
            return False  # too many to replay (see _on_fill): the next snapshot is newer
        try:
            self.book.load_snapshot([msgspec.structs.asdict(p) for p in reply.positions], reply.last_fill_seq)
        except ValueError as e:
            self.stats.inc("sync_errors")
            self.rlog.warning("sync", "unreadable get_positions reply: %s", e)
            return False
        # Fills read while the reply was on its way were booked before the snapshot replaced
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
        return True

    # ------------------------------------------------------------------ kill switch
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
            if not self.synced:
                self._request_positions()
            elif self._resync_wanted and now - self._last_resync >= RESYNC_MIN_INTERVAL_S:
                if self._request_positions():
                    self._last_resync = now
            if self.tracker.unknown:
                self._reconcile()
            if self._cancel_all_wanted and self.risk.limits.kill_switch:
                self._request_cancel_all()
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
        g["kill_switch"] = self.risk.limits.kill_switch
        g["synced"] = self.synced
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
            self.risk.limits = self.risk.limits.updated({"kill_switch": on})
            result: dict[str, Any] = {"kill_switch": on}
            if on and args.get("cancel_all", True):
                # Stop what is already working, not only what is still to come.  Answered
                # now, not when the gateway does: the outcome is in the log and the
                # cancel_all_* counters, and it is asked again until the gateway answers.
                result["cancel_all"] = self._request_cancel_all()
            elif not on:
                self._cancel_all_wanted = False
            self.log.warning("kill switch %s", "ON" if on else "off")
            self._update_gauges()
            return result
        if cmd == "set_limits":
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
            # the snapshot's outcome shows in syncs / sync_timeouts / sync_errors and `synced`
            return {"resync": "requested" if self._request_positions() else "already under way"}
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
    kill_switch: bool = option(_L.kill_switch, "start with the kill switch on: reject every signal", default_text="off", group=_RISK)
    symbols: str = option("", "comma-separated allow-list of tradable symbols", check=_allow_list, join=True, default_text="all", group=_RISK)
    order_timeout: float = option(1.0, "seconds to wait for one reply from the order gateway", check=positive, group=_ORDERS)
    order_retries: int = option(3, "send attempts per order before its outcome is unknown", check=at_least(1), group=_ORDERS)
    max_in_flight: int = option(64, "orders sent and not yet answered by the gateway; beyond it new signals are refused", check=at_least(1), group=_ORDERS)
    reconcile_interval: float = option(1.0, "seconds between get_order queries for unknown orders and position-sync retries", check=positive, group=_ORDERS)
    max_unknown_orders: int = option(0, "refuse new signals while more than this many orders have an unknown outcome", check=at_least(0), group=_ORDERS)
    trade_unsynced: bool = option(False, "accept signals before positions were loaded from the gateway", default_text="refuse them", group=_ORDERS)
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
