"""The order executor: strategy signals in, risk-checked market orders out.

Sockets (see docs/executor.md):

* PULL bound on ``signals``: :class:`~workers.protocol.Signal` and
  :class:`~workers.protocol.Levels` from the strategies.
* PUB bound on ``events``: a :class:`~workers.protocol.SignalDecision` for every signal,
  every ``Levels`` as received, and :class:`~workers.protocol.Position` updates.
* SUB on ``ticks`` (``tick.``): last prices, for the price band and unrealized P&L.
* SUB on ``execution`` (``exec.``): fills into the :class:`PositionBook`, order updates
  into the working-order bookkeeping.
* DEALER on ``orders`` for ``send_order``: up to ``--max-in-flight`` orders outstanding at
  once, each framed ``[client_order_id, "", request]`` so its reply comes back under the
  same id (the gateway echoes whatever envelope came in).  Lazy Pirate per order: no reply
  within ``--order-timeout`` -> the same request again, ``--order-retries`` attempts in all.
* REQ (Lazy Pirate :class:`~workers.order_client.OrderClient`) on ``orders`` for the
  queries: get_positions, get_order, cancel_all.

Signals are never held up by an order in flight: a burst of signals goes out back to back
and the gateway journals them in one group commit (docs/performance.md).  An order whose
send gets no reply after every retry is UNKNOWN: it stays counted as working, new signals
are refused until it is resolved, and a timer asks the gateway about it with ``get_order``
every ``--reconcile-interval`` seconds (a late reply to one of its sends resolves it too).
It is never sent again under another ``client_order_id``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import zmq

from workers import protocol as P
from workers.executor.positions import PositionBook
from workers.executor.risk import Decision, RiskChecker, RiskLimits, parse_symbols
from workers.order_client import OrderClient, RetryPolicy, new_client_order_id
from workers.protocol import OrderStatus, Side
from workers.runtime import CommandError, Worker, run_worker

UNKNOWN_REASON = "order outcome unknown; reconciling"
#: get_order must deny an unknown order this many times in a row before we call it "not placed":
#: a request the gateway read just before our REQ socket was closed may still be in its queue.
NOT_FOUND_CONFIRMATIONS = 3
#: a terminal order whose last fills never showed up on the stream is forgotten after this
TERMINAL_GRACE_S = 5.0
#: newest-frame-per-symbol cache bound (symbols are few; this only guards against a flood)
MAX_TICK_TOPICS = 10_000
#: at most one positions resync per this many seconds after exec-stream gaps
RESYNC_MIN_INTERVAL_S = 5.0


@dataclass(slots=True)
class WorkingOrder:
    """An order this executor sent and whose fills are not all in yet."""

    client_order_id: str
    symbol: str
    side: Side
    qty: int
    signal: P.Signal
    status: OrderStatus = OrderStatus.PENDING_NEW
    order_id: str = ""
    #: filled quantity as the exchange last reported it (reply or order update)
    exch_filled: int = 0
    #: quantity of fills for this order seen on the execution stream
    fills_seen: int = 0
    terminal_since: float = 0.0
    not_found: int = 0
    fill_ids: set[str] = field(default_factory=set)

    @property
    def terminal(self) -> bool:
        return self.status.is_terminal

    @property
    def outstanding(self) -> int:
        """Quantity that may still change the position: unfilled if working, fills not yet
        seen if terminal."""
        target = self.exch_filled if self.terminal else self.qty
        return max(0, target - self.fills_seen)

    @property
    def signed_outstanding(self) -> int:
        return self.outstanding if self.side is Side.BUY else -self.outstanding

    def set_status(self, status: OrderStatus, filled: int | None, now: float) -> None:
        if filled is not None:
            self.exch_filled = max(self.exch_filled, filled)
        if status.is_terminal and not self.terminal:
            self.terminal_since = now
        self.status = status


@dataclass(slots=True)
class InFlight:
    """A send_order on the DEALER whose reply has not come yet."""

    order: WorkingOrder
    payload: bytes
    sent_ns: int  # the first attempt (order_ack is measured from it)
    deadline: float  # monotonic: resend (or give up) after this
    attempts: int = 1


def parse_status(value: Any) -> OrderStatus | None:
    try:
        return OrderStatus(value)
    except (ValueError, TypeError):
        return None


def order_map(reply: Mapping[str, Any]) -> Mapping[str, Any]:
    """The order fields of a send_order/get_order reply: nested under ``order`` or inline."""
    inner = reply.get("order")
    return inner if isinstance(inner, Mapping) else reply


def is_unreadable(reply: Mapping[str, Any]) -> bool:
    """The stand-in reply OrderClient returns when the gateway's answer could not be decoded."""
    return reply.get("type") == "error" and str(reply.get("reason", "")).startswith("unreadable reply")


def _nonneg_int_or_none(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) and v >= 0 else None


class OrderExecutor(Worker):
    kind = "executor"
    timer_interval = 0.1

    def __init__(self, args: argparse.Namespace):
        super().__init__(args)
        limits = RiskLimits(
            max_order_qty=args.max_order_qty,
            max_position=args.max_position,
            price_band_pct=args.price_band_pct,
            max_orders_per_sec=args.max_orders_per_sec,
            kill_switch=args.kill_switch,
            # a TOML config may give the allow-list as an array
            allowed_symbols=parse_symbols(args.symbols) if isinstance(args.symbols, str) else frozenset(args.symbols),
        )
        self.risk = RiskChecker(limits)
        self.book = PositionBook()
        self.working: dict[str, WorkingOrder] = {}
        #: client_order_ids whose outcome is unknown, in the order they became unknown
        self.unknown: dict[str, WorkingOrder] = {}
        #: send_orders waiting for their reply, by client_order_id (oldest first)
        self.in_flight: dict[str, InFlight] = {}
        self.paused = False
        self.synced = False
        self._tick_frames: dict[bytes, bytes] = {}
        self._exec_seq = 0
        self._resync_wanted = False
        self._last_resync = -1e9
        now = time.monotonic()
        self._next_positions = now + args.position_interval
        self._next_reconcile = now + args.reconcile_interval

    # ------------------------------------------------------------------ setup
    def setup(self) -> None:
        ep, a = self.endpoints, self.args
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
        # again, so a gateway that is down costs one timeout per round.
        self.orders = OrderClient(ep.orders, RetryPolicy(a.order_timeout, 1), ctx=self.ctx, curve=self.curve)
        self._sync_positions()
        self._update_gauges()

    def teardown(self) -> None:
        self.orders.close()

    # ------------------------------------------------------------------ publishing
    def _publish(self, msg: P.Message) -> None:
        try:
            self.events.send(P.pub(msg), zmq.NOBLOCK)
        except zmq.Again:
            self.stats.inc("dropped")

    def _decide(self, sig: P.Signal, accepted: bool, reason: str, client_order_id: str | None = None) -> None:
        self._publish(
            P.SignalDecision(
                signal=sig.to_dict(), accepted=accepted, reason=reason, client_order_id=client_order_id, ts=P.now_ns()
            )
        )

    def _publish_positions(self, symbols=None) -> None:
        for msg in self.book.to_messages(P.now_ns(), symbols):
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
        if not self.synced and not self.args.trade_unsynced:
            return "positions not loaded from the exchange yet"
        if len(self.unknown) > self.args.max_unknown_orders:
            return f"{len(self.unknown)} order(s) with unknown outcome; reconciling"
        if len(self.in_flight) >= self.args.max_in_flight:
            return f"{len(self.in_flight)} orders already waiting for the gateway's reply"
        return ""

    def pending(self, symbol: str) -> int:
        return sum(o.signed_outstanding for o in self.working.values() if o.symbol == symbol)

    def _on_signal(self, sig: P.Signal) -> None:
        self.stats.inc("signals")
        if sig.ts:
            self.stats.lat("signal_to_executor", max(0, P.now_ns() - sig.ts))
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
                time.monotonic(),
                self.book.qty(sig.symbol),
                self.pending(sig.symbol),
            )
        if not decision.accepted:
            self.stats.inc("rejected")
            self._decide(sig, False, decision.reason)
            return
        self.stats.inc("accepted")
        self._send_order(sig)

    def _send_order(self, sig: P.Signal) -> None:
        coid = new_client_order_id(self.name)
        order = P.SendOrder(
            client_order_id=coid,
            symbol=sig.symbol,
            side=sig.side,
            qty=sig.qty,
            order_type=P.OrderType.MARKET,
            source=f"strategy:{sig.strategy}",
            ts=P.now_ns(),
            cause_ts=sig.ts,
            origin_ts=sig.cause_ts,
        )
        # Booked before the send, so fills that race the reply find their order.
        wo = self.working[coid] = WorkingOrder(coid, sig.symbol, sig.side, sig.qty, sig)
        self.stats.inc("orders")
        inf = self.in_flight[coid] = InFlight(wo, order.pack(), P.now_ns(), time.monotonic() + self.args.order_timeout)
        self._transmit(inf)

    def _transmit(self, inf: InFlight) -> None:
        try:
            self.order_pipe.send_multipart([inf.order.client_order_id.encode(), b"", inf.payload], zmq.NOBLOCK)
        except zmq.ZMQError:
            # the pipe to a gateway that is gone is full: the deadline resends it, or gives up
            self.stats.inc("order_send_blocked")

    def next_wakeup(self, now: float) -> float | None:
        # Called by the runtime before every poll.  The oldest order in flight has the
        # earliest deadline (a resend moves an order to the back).
        oldest = next(iter(self.in_flight.values()), None)
        if oldest is None:
            return None
        if oldest.deadline <= now:
            self._check_in_flight(now)
            oldest = next(iter(self.in_flight.values()), None)
        return oldest.deadline if oldest is not None else None

    def _check_in_flight(self, now: float) -> None:
        """Lazy Pirate per order: past its deadline an order is sent again (the same request,
        so the gateway can never take it twice), and after the last attempt it is UNKNOWN."""
        # Replies already waiting first: after a blocking query (get_order, get_positions,
        # cancel_all) an answered order must not be declared unknown.
        self._drain(self.order_pipe)
        due = [inf for inf in self.in_flight.values() if inf.deadline <= now]
        for inf in due:
            coid = inf.order.client_order_id
            if coid not in self.in_flight:
                continue
            if inf.attempts < self.args.order_retries:
                inf.attempts += 1
                inf.deadline = now + self.args.order_timeout
                del self.in_flight[coid]
                self.in_flight[coid] = inf  # to the back: deadlines stay in order
                self.stats.inc("order_resends")
                self._transmit(inf)
                continue
            self._mark_unknown(inf.order, "no reply after every attempt")

    def _on_order_reply(self, frames: list[bytes]) -> None:
        t1 = P.now_ns()
        if len(frames) != 3 or frames[1] != b"":
            self.stats.inc("decode_errors")
            self.rlog.warning("reply", "order reply of %d frames dropped (want [client_order_id, '', reply])", len(frames))
            return
        coid = frames[0].decode("utf-8", "replace")
        try:
            reply = P.unpack_map(frames[2])
        except P.ProtocolError as e:
            reply = P.reply("", False, f"unreadable reply: {e}")
        inf = self.in_flight.pop(coid, None)
        if inf is None:
            wo = self.unknown.get(coid)
            if wo is not None and self._reply_is_for(reply, coid):
                self._late_reply(wo, reply)  # the gateway had it after all
            else:
                self.stats.inc("late_replies")  # a resend's second answer, or after a restart
            return
        wo = inf.order
        if not self._reply_is_for(reply, coid):
            # An answer that does not tell: the gateway may or may not hold the order.
            self._mark_unknown(wo, "unreadable reply")
            return
        sig = wo.signal
        self.stats.lat("order_ack", t1 - inf.sent_ns)
        now = time.monotonic()
        fields = order_map(reply)
        status = parse_status(fields.get("status"))
        if not reply.get("ok") or status is OrderStatus.REJECTED:
            self.stats.inc("order_rejects")
            self.working.pop(coid, None)
            why = reply.get("reason") or fields.get("reason") or "no reason given"
            self._decide(sig, False, f"exchange rejected: {why}", coid)
            return
        self.stats.inc("acks")
        if sig.cause_ts:
            self.stats.lat("tick_to_ack", max(0, t1 - sig.cause_ts))
        oid = fields.get("order_id")
        wo.order_id = oid if isinstance(oid, str) else ""
        wo.set_status(status or OrderStatus.NEW, _nonneg_int_or_none(fields.get("filled_qty")), now)
        self._retire_if_done(wo)
        self._decide(sig, True, f"order {wo.status.value}", coid)

    def _mark_unknown(self, wo: WorkingOrder, why: str) -> None:
        """The gateway may or may not hold this order: keep it working, reconcile it."""
        coid = wo.client_order_id
        wo.status = OrderStatus.UNKNOWN
        self.unknown[coid] = wo  # before anything that could fail: reconciled from here on
        self.in_flight.pop(coid, None)
        self.stats.inc("unknown")
        self.rlog.warning("unknown", "order %s outcome unknown (%s); reconciling with get_order", coid, why)
        self._decide(wo.signal, True, UNKNOWN_REASON, coid)

    def _late_reply(self, wo: WorkingOrder, reply: Mapping[str, Any]) -> None:
        """A send_order reply for an order already declared UNKNOWN: it settles it."""
        fields = order_map(reply)
        status = parse_status(fields.get("status"))
        if not reply.get("ok"):
            status = OrderStatus.REJECTED
        elif status is None:
            status = OrderStatus.NEW  # as an ack without a status is read on the main path
        self._settle(wo, fields, status, "late reply")

    def _settle(self, wo: WorkingOrder, fields: Mapping[str, Any], status: OrderStatus, how: str) -> None:
        """An unknown order's outcome is known now (a late reply, get_order): book it, tell it,
        forget it once nothing more can come (a rejected one at once)."""
        oid = fields.get("order_id")
        if isinstance(oid, str) and oid:
            wo.order_id = oid
        wo.set_status(status, _nonneg_int_or_none(fields.get("filled_qty")), time.monotonic())
        self._resolved(wo, how)
        self._retire_if_done(wo)

    @staticmethod
    def _reply_is_for(reply: Mapping[str, Any], coid: str) -> bool:
        """False when the reply does not tell this order's outcome: OrderClient could not read
        it, or it names another order.  (An ``error`` reply from the gateway itself does tell:
        it could not read the request, so it placed nothing.)"""
        if is_unreadable(reply):
            return False
        other = order_map(reply).get("client_order_id", reply.get("client_order_id"))
        return other is None or other == coid

    def _retire_if_done(self, wo: WorkingOrder) -> None:
        if wo.client_order_id in self.unknown:
            return
        # all fills in (even if the terminal update was lost), or terminal with nothing to come
        if wo.fills_seen >= wo.qty or (wo.terminal and wo.outstanding == 0):
            self.working.pop(wo.client_order_id, None)

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
        last = self._exec_seq
        if seq == last:
            return  # the same report again: nothing was lost
        self._exec_seq = seq
        if not last:
            # The first report since start: fills published after the startup snapshot but
            # before this SUB had joined (the slow-joiner window) would be lost without a trace
            # of a gap, so take one more snapshot now that the subscription is live.
            self._resync_wanted = True
            return
        if seq == last + 1:
            return
        if seq > last + 1:
            self.stats.inc("exec_gaps")
            self.rlog.warning("exec_gap", "execution stream gap: %d -> %d; resyncing positions", last, seq)
        else:
            self.stats.inc("exec_restarts")
        self._resync_wanted = True

    def _on_fill(self, fill: P.Fill) -> None:
        if fill.origin_ts:
            self.stats.lat("tick_to_fill", max(0, P.now_ns() - fill.origin_ts))
        applied = self.book.apply_fill(fill)
        wo = self.working.get(fill.client_order_id)
        # Order bookkeeping de-duplicates on its own: a fill the book skips because a position
        # snapshot already holds it still completes its order.
        if wo is not None and fill.fill_id not in wo.fill_ids:
            wo.fill_ids.add(fill.fill_id)
            wo.fills_seen += fill.qty
            if fill.client_order_id in self.unknown:
                # a fill proves the gateway has the order
                status = OrderStatus.FILLED if wo.fills_seen >= wo.qty else OrderStatus.PARTIALLY_FILLED
                wo.set_status(status, wo.fills_seen, time.monotonic())
                self._resolved(wo, "fill")
            self._retire_if_done(wo)
        if not applied:
            self.stats.inc("duplicate_fills")
            return
        self.stats.inc("fills")
        self._flush_ticks()
        self._publish_positions((fill.symbol,))

    def _on_order_update(self, up: P.OrderUpdate) -> None:
        self.stats.inc("order_updates")
        wo = self.working.get(up.client_order_id)
        if wo is None:
            return  # someone else's order (manual ticket) or one already done
        if up.order_id:
            wo.order_id = up.order_id
        wo.set_status(up.status, up.filled_qty, time.monotonic())
        if up.client_order_id in self.unknown:
            self._resolved(wo, "execution stream")
        self._retire_if_done(wo)

    # ------------------------------------------------------------------ reconciliation
    def _resolved(self, wo: WorkingOrder, how: str) -> None:
        del self.unknown[wo.client_order_id]
        self.stats.inc("reconciled")
        self.log.info("order %s reconciled via %s: %s", wo.client_order_id, how, wo.status.value)
        accepted = wo.status is not OrderStatus.REJECTED
        if not accepted:
            self.stats.inc("order_rejects")
        self._decide(wo.signal, accepted, f"reconciled: order {wo.status.value}", wo.client_order_id)

    def _reconcile(self) -> None:
        for coid, wo in list(self.unknown.items()):
            reply = self.orders.request(P.GetOrder(client_order_id=coid))
            if reply is None:
                self.stats.inc("reconcile_timeouts")
                return  # the gateway is not answering: try the rest next round
            if is_unreadable(reply):
                self.rlog.warning("reconcile", "unreadable get_order reply for %s: %s", coid, reply.get("reason"))
                continue
            fields = order_map(reply)
            status = parse_status(fields.get("status"))
            if reply.get("ok") and status is not None and status is not OrderStatus.UNKNOWN:
                self._settle(wo, fields, status, "get_order")
                continue
            wo.not_found += 1
            if wo.not_found >= NOT_FOUND_CONFIRMATIONS:
                # The gateway never got it: nothing to fill, nothing to cancel.
                del self.unknown[coid]
                self.working.pop(coid, None)
                self.stats.inc("not_placed")
                self.log.warning("order %s never reached the exchange: %s", coid, reply.get("reason", ""))
                self._decide(wo.signal, False, "order never reached the exchange (reconciled)", coid)

    def _expire_terminal(self, now: float) -> None:
        for coid, wo in list(self.working.items()):
            if wo.terminal and now - wo.terminal_since > TERMINAL_GRACE_S:
                del self.working[coid]

    def _sync_positions(self) -> bool:
        reply = self.orders.request(P.GetPositions())
        if reply is None:
            self.stats.inc("sync_timeouts")
            self.rlog.warning("sync", "no get_positions reply from %s; will retry", self.endpoints.orders)
            return False
        if not reply.get("ok"):
            self.stats.inc("sync_errors")
            self.rlog.warning("sync", "get_positions refused: %s", reply.get("reason", ""))
            return False
        try:
            positions = reply.get("positions", [])
            if not isinstance(positions, list):
                raise ValueError("positions is not an array")
            self.book.load_snapshot(positions, reply.get("last_fill_seq", 0))
        except ValueError as e:
            self.stats.inc("sync_errors")
            self.rlog.warning("sync", "unreadable get_positions reply: %s", e)
            return False
        self._flush_ticks()
        self._resync_wanted = False
        if not self.synced:
            self.log.info("positions loaded: %d symbols, last fill %d", len(self.book), self.book.last_fill_seq)
        self.synced = True
        self.stats.inc("syncs")
        self._publish_positions()
        return True

    # ------------------------------------------------------------------ timer
    def on_timer(self, now: float) -> None:
        self._flush_ticks()
        if now >= self._next_reconcile:
            self._next_reconcile = now + self.args.reconcile_interval
            if not self.synced:
                self._sync_positions()
            elif self._resync_wanted and now - self._last_resync >= RESYNC_MIN_INTERVAL_S:
                self._last_resync = now
                self._sync_positions()
            if self.unknown:
                self._reconcile()
            self._expire_terminal(time.monotonic())
        if now >= self._next_positions:
            self._next_positions = now + self.args.position_interval
            self._publish_positions()
        self._update_gauges()

    def _update_gauges(self) -> None:
        g = self.stats.gauges
        g["limits"] = self.risk.limits.to_dict()
        # symbol -> signed qty of the open positions (the headless status line shows these)
        g["positions"] = {sym: pos.qty for sym, pos in self.book.positions.items() if pos.qty}
        g["position_count"] = len(g["positions"])
        g["working_orders"] = len(self.working)
        g["unknown_orders"] = len(self.unknown)
        g["in_flight_orders"] = len(self.in_flight)
        g["kill_switch"] = self.risk.limits.kill_switch
        g["synced"] = self.synced

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
                # Stop what is already working, not only what is still to come.
                reply = self.orders.request(P.CancelAll(ts=P.now_ns()))
                result["cancel_all"] = "no reply" if reply is None else (reply.get("reason") or bool(reply.get("ok")))
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
            return {"positions": [m.to_dict() for m in self.book.to_messages(P.now_ns())]}
        if cmd == "resync":
            return {"ok": self._sync_positions()}
        return super().on_command(cmd, args)


def _positive_int(text: str) -> int:
    v = int(text)
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {v}")
    return v


def _nonneg_int(text: str) -> int:
    v = int(text)
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {v}")
    return v


def _positive_float(text: str) -> float:
    v = float(text)
    if not v > 0 or v == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return v


def build_parser() -> argparse.ArgumentParser:
    d = RiskLimits()
    p = argparse.ArgumentParser(
        prog="main.py worker executor",
        description="Order executor: risk-checks strategy signals and sends them as market orders.",
    )
    g = p.add_argument_group("risk limits")
    g.add_argument("--max-order-qty", type=_positive_int, default=d.max_order_qty, help=f"largest order quantity (default {d.max_order_qty})")
    g.add_argument(
        "--max-position",
        type=_nonneg_int,
        default=d.max_position,
        help=f"largest absolute position per symbol, working orders included (default {d.max_position})",
    )
    g.add_argument(
        "--price-band-pct",
        type=_positive_float,
        default=d.price_band_pct,
        help=f"reject a signal priced more than this %% away from the last trade (default {d.price_band_pct})",
    )
    g.add_argument(
        "--max-orders-per-sec",
        type=_positive_int,
        default=d.max_orders_per_sec,
        help=f"orders accepted in any sliding 1-second window (default {d.max_orders_per_sec})",
    )
    g.add_argument("--kill-switch", action="store_true", help="start with the kill switch on: reject every signal (default off)")
    g.add_argument("--symbols", default="", help="comma-separated allow-list of tradable symbols (default: all)")
    g = p.add_argument_group("orders")
    g.add_argument("--order-timeout", type=_positive_float, default=1.0, help="seconds to wait for one reply from the order gateway (default 1.0)")
    g.add_argument("--order-retries", type=_positive_int, default=3, help="send attempts per order before its outcome is unknown (default 3)")
    g.add_argument(
        "--max-in-flight",
        type=_positive_int,
        default=64,
        help="orders sent and not yet answered by the gateway; beyond it new signals are refused (default 64)",
    )
    g.add_argument(
        "--reconcile-interval",
        type=_positive_float,
        default=1.0,
        help="seconds between get_order queries for unknown orders and position-sync retries (default 1.0)",
    )
    g.add_argument(
        "--max-unknown-orders",
        type=_nonneg_int,
        default=0,
        help="refuse new signals while more than this many orders have an unknown outcome (default 0)",
    )
    g.add_argument(
        "--trade-unsynced",
        action="store_true",
        help="accept signals before positions were loaded from the gateway (default: refuse them)",
    )
    g = p.add_argument_group("events")
    g.add_argument("--position-interval", type=_positive_float, default=1.0, help="seconds between full position publications (default 1.0)")
    g.add_argument("--events-hwm", type=_positive_int, default=100_000, help="send/receive high-water mark of the stream sockets (default 100000)")
    return p


def main(argv: list[str]) -> int:
    return run_worker(OrderExecutor, build_parser(), argv)
