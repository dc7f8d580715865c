"""The exchange gateway worker (``main.py worker exchange``), the seed's "DLL gateway".

Sockets:

* ROUTER bound on ``orders``: one msgpack map per request, one per reply.  REQ clients
  arrive as ``[identity, b"", payload]``, DEALER clients as ``[identity, payload]``; the
  reply goes back with exactly the envelope that came in.
* SUB connected to ``ticks`` (``tick.``): the market the simulated exchange matches against.
* PUB bound on ``execution``: ``OrderUpdate`` (``exec.order.SYM``) and ``Fill``
  (``exec.fill.SYM``), with ``seq`` counting every message this process published, from 1,
  and ``epoch`` naming this process (its start time in ns): a consumer takes a new epoch for
  a restart of the stream, whatever ``seq`` says.

Group commit: each wake-up drains every waiting request (up to ``--batch``), handles them
against the exchange client, writes the whole batch to the journal as ONE log record, and
only then sends the replies and publishes the reports.  Nothing leaves the process that the
journal does not already hold, and the journal pays one write per batch, not per order.
Ticks go through the same cycle, since they fill working orders.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import datetime
import hashlib
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import zmq
import msgspec

from workers import protocol as P
from workers.config import ConfigOf, at_least, build_parser_for, data_dir, option, options_of
from workers.exchange.client import ExchangeClient, ExecEvent, FillEvent, FillRecord, Order, OrderEvent, clip_text
from workers.positions import PositionBook
from workers.exchange.journal import SYNC_MODES, Account, Journal, JournalCorrupt, JournalError, JournalFull, remove_journal
from workers.exchange.kinds import OrderKinds
from workers.exchange.simulated import SimulatedCore, SimulatedExchange
from workers.exchange.limits import HardLimits, HardLimitsConfig
from workers.protocol import MsgType, OrderStatus, OrderType, Side, TimeInForce
from workers.runtime import EXIT_CORRUPT_STATE, Worker, run_worker, split_envelope
from workers.sequence import SequenceTracker

DEFAULT_JOURNAL_NAME = "exchange-journal.sqlite"
DEFAULT_EXEC_HWM = 100_000
DEFAULT_TICK_HWM = 100_000
DEFAULT_BATCH = 2048
#: after a (re)start, seconds during which a market order for a symbol without a tick yet waits
#: for the market instead of being rejected "no market data" (see ExchangeGateway._should_hold)
DEFAULT_MARKET_WAIT = 1.0
#: fold the journal's log into its tables once no batch was written for this long (seconds)...
FOLD_IDLE = 1.0
#: ...or at once when the log holds this many batches or this many order rows and fills
FOLD_MAX_BATCHES = 2_000
FOLD_MAX_RECORDS = 20_000
#: checkpoint the WAL (two fsyncs, several ms) after a fold forced by a long log, or once no
#: batch was written for this long (seconds) -- never on a quiet order's path
CHECKPOINT_IDLE = 5.0
#: get_orders answers with at most this many (the most recent), flagging ``truncated``
MAX_ORDERS_IN_REPLY = 20_000
#: get_fills answers with at most this many (the oldest after since_fill); the client pages on
MAX_FILLS_IN_REPLY = 2_000
#: what every order refused by the kill switch's rule starts with
KILL_SWITCH = "kill switch"
_NOBLOCK = int(zmq.NOBLOCK)
_EVENTS = int(zmq.EVENTS)
_POLLIN = int(zmq.POLLIN)
_MORE_NOBLOCK = int(zmq.NOBLOCK | zmq.SNDMORE)
#: order id shown for an order the gateway refused before any exchange saw it
NO_ORDER_ID = "-"
#: the terms a replace_order may change (a resend of a replaced order differs in these alone)
REPLACEABLE_TERMS = ("qty", "limit_price", "stop_price")
#: the reason every order (and cancel) is refused with while the journal's disk is full
DISK_FULL = "journal: disk full"
#: seconds between tries of the journal while its disk is full
FULL_PROBE_EVERY = 0.5
#: free bytes on the journal's file system before orders are taken again (a few full batches)
FULL_RESUME_FREE = 1 << 20
#: the orders ROUTER's send high-water mark per peer (replies queued for a peer that does not
#: read them; beyond it they are dropped and counted)
DEFAULT_ORDERS_HWM = 10_000
#: after replies were dropped, hand freed heap back to the OS this often (seconds), this many
#: times: the peer's queue is freed when it goes or reads, which the ROUTER does not tell
TRIM_EVERY = 5.0
TRIMS_AFTER_DROP = 12


_WORKING = P.WORKING_STATUSES
#: what the gateway emulates (OrderKinds) for a venue that lacks it natively
_EMULATED_TYPES = frozenset(t for t in OrderType if t.is_stop)
_EMULATED_TIFS = frozenset({TimeInForce.DAY, TimeInForce.GTC})
#: the venues --exchange names: the embedded simulator, or its matching core alone (market and
#: limit only: every other kind emulated by the gateway, for tests and demonstrations)
EXCHANGES = ("simulated", "simulated-core", "fix")
#: an OCO group's name when its members' ids joined would be longer (or ambiguous)
_OCO_HASH_PREFIX = "oco-"
#: what every order the kill switch cancels when it is turned on is told
KILL_SWITCH_CANCEL = "kill switch on: cancelled, it would increase the position"


def parse_session_end(text: str) -> datetime.time:
    """``HH:MM`` (or ``HH:MM:SS``), UTC: when DAY orders expire."""
    try:
        parts = [int(p) for p in text.split(":")]
        if len(parts) not in (2, 3) or not all(len(p) == 2 for p in text.split(":")):
            raise ValueError
        return datetime.time(*parts)
    except (ValueError, TypeError):
        raise ValueError(f"must be HH:MM (UTC, 00:00..23:59), got {text!r}") from None


def _check_session_end(text: str) -> str:
    parse_session_end(text)
    return text


def oco_group_name(client_order_ids: list[str], hashed: bool = False) -> str:
    """The name of the OCO group of these orders, the same for the same members in any order
    (so a repeated set_oco is the same group): their ids sorted and joined with ``,``, or,
    when that is longer than an id may be or an id holds a ``,`` (or ``hashed``), ``oco-`` and
    a hash of them."""
    ids = sorted(client_order_ids)
    joined = ",".join(ids)
    if not hashed and len(joined) <= P.MAX_STR and not any("," in i for i in ids):
        return joined
    return _OCO_HASH_PREFIX + hashlib.sha256("\0".join(ids).encode()).hexdigest()[:40]


@dataclass
class Batch:
    """What one wake-up produced; nothing in it leaves the process before the journal commit."""

    started_ns: int
    dirty: dict[str, Order] = field(default_factory=dict)  # orders whose row must be written
    fills: list[FillRecord] = field(default_factory=list)
    replies: dict[str, bytes] = field(default_factory=dict)  # new stored send_order replies
    requests: dict[str, tuple[bytes, bytes]] = field(default_factory=dict)  # new replace_order (terms, reply)
    sends: list[list[bytes]] = field(default_factory=list)  # envelope + reply frames
    events: list[ExecEvent] = field(default_factory=list)  # to publish, in order
    account: Account | None = None  # the account's new state, if a request changed it
    journaled_requests: int = 0  # requests that changed state (for the order_journal latency)


class ExchangeGateway(Worker):
    kind = "exchange"
    config = ConfigOf("ExchangeConfig")

    def __init__(self, args: argparse.Namespace, client: ExchangeClient | None = None):
        super().__init__(args)
        self.session_end = parse_session_end(self.config.session_end)
        #: whether the client asks the gateway's hard limits about the orders it creates
        #: (bracket children); otherwise they are checked when the gateway adopts them
        self._checks_children = False
        self.client: ExchangeClient = self._venue(client)
        self.caps = self.client.capabilities
        self._remote = bool(self.caps.get("remote", False))
        self._order_types = frozenset(self.caps.get("order_types", ()))
        self._tifs = frozenset(self.caps.get("tifs", ()))
        self._depth = bool(self.caps.get("depth", False))
        #: answered replace_order requests: their client_order_id -> their terms (the journal
        #: holds the reply bytes)
        self.requests: dict[str, bytes] = {}
        #: orders a replace_order changed (see _resend_of_replaced; None: not read yet)
        self._replaced: set[str] | None = None
        self.journal: Journal | None = None
        self.orders: dict[str, Order] = {}  # every order this journal knows, by client_order_id
        self.working: dict[str, Order] = {}  # the working ones
        self.positions = PositionBook()
        self.exec_seq = 0  # per-publisher sequence of the execution stream (restarts at 1)
        # this incarnation of the execution stream: new after every restart, so a consumer
        # never takes the new seq 1.. for reports it has already seen
        self.epoch = time.time_ns()
        self.account = Account()  # the kill switch: the journal's, restored by _recover
        self.batch_max = max(1, self.config.batch)
        self.hard_limits = HardLimits(self.config.hard.limits())
        # Per symbol, so that a repeated tick never matches twice nor moves the price band.
        # A new market-data epoch is a restart of the symbol's stream; a feed without epochs
        # (0) falls back on a step back counting as a restart (one PUB->SUB connection
        # delivers in order).
        self.tick_seq = SequenceTracker()
        self.depth_seq = SequenceTracker()  # depth messages count on their own, per symbol
        self.stats.counters["ticks_stale"] = 0
        # Market orders that arrived before the first tick of their symbol (see _should_hold):
        # (envelope, client_order_id) in arrival order, answered when the market shows up.
        self._held: list[tuple[list[bytes], str]] = []
        self._held_cids: set[str] = set()
        self._market_seen: set[str] = set()
        self._hold_until = 0.0
        self._envelope: list[bytes] | None = None  # of the request being handled
        self._failed = False
        self._last_write = 0.0  # monotonic time of the latest journal write (see _maybe_fold)
        self._unchecked = False  # written since the last WAL checkpoint
        # Set while the journal's disk is full ("" otherwise): orders and cancels are refused
        # with this reason, queries answered, the journal tried every FULL_PROBE_EVERY.
        self._journal_full = ""
        self._next_probe = 0.0
        self._after_full: list[ExecEvent] = []  # what the client reported on a rollback
        self._trims_left = 0  # heap trims still due after replies were dropped (see _trim_heap)
        self._next_trim = 0.0
        for name in ("journal_full_refusals", "ticks_paused", "reply_dropped", "journal_rollbacks", "kill_switch_rejects",
                     "replaces", "replace_rejects", "oco_groups", "kill_switch_cancels", "depth_in", "depth_stale"):
            self.stats.counters[name] = 0
        self._handlers: dict[type[P.Message], Callable[[P.Message, Batch, int], bytes]] = {
            P.SendOrder: self._send_order,
            P.CancelOrder: self._cancel_order,
            P.CancelAll: self._cancel_all,
            P.GetOrder: self._get_order,
            P.GetOrders: self._get_orders,
            P.GetPositions: self._get_positions,
            P.GetFills: self._get_fills,
            P.SetKillSwitch: self._set_kill_switch,
            P.ReplaceOrder: self._replace_order,
            P.SetOco: self._set_oco,
            P.Ping: self._ping,
        }

    def _venue(self, client: ExchangeClient | None) -> ExchangeClient:
        """The client the gateway works: ``client``, or the one ``--exchange`` names; wrapped
        in :class:`OrderKinds` (``emulated``) when it lacks an order kind, a time in force,
        brackets or OCO groups natively, so those are held and worked here."""
        end = self.session_end
        if client is None:
            if self.config.exchange == "simulated":
                self._checks_children = True
                return SimulatedExchange(session_end=end, check_child=self._child_refusal)
            client = self._fix_venue() if self.config.exchange == "fix" else SimulatedCore()
        caps = client.capabilities
        lacks = (not _EMULATED_TYPES <= frozenset(caps.get("order_types", ())) or not _EMULATED_TIFS <= frozenset(caps.get("tifs", ()))
                 or not caps.get("brackets") or not caps.get("oco"))
        if not lacks:
            return client
        self._checks_children = True
        return OrderKinds(client, emulated=True, session_end=end, check_child=self._child_refusal)

    def _fix_venue(self) -> ExchangeClient:
        """``--exchange fix``: the first session of ``--fix-config`` (docs/venues.md)."""
        from workers.errors import ConfigError
        from workers.fix.settings import FixSettingsError, load_settings
        from workers.fix.venue import FixExchange

        if not self.config.fix_config:
            raise ConfigError("--exchange fix needs --fix-config FILE (a QuickFIX-style session settings file; docs/venues.md)")
        try:
            sessions = load_settings(self.config.fix_config)
        except FixSettingsError as e:
            raise ConfigError(str(e)) from None
        return FixExchange(sessions[0])

    # ------------------------------------------------------------------ lifecycle
    def setup(self) -> None:
        # self.config: checked against ExchangeConfig (a ConfigError here means exit status 2)
        path = Path(self.config.journal) if self.config.journal else data_dir() / DEFAULT_JOURNAL_NAME
        if self.config.fresh:
            remove_journal(path)
        # The journal first: a gateway that cannot own its journal must not take orders.
        try:
            self.journal = Journal(path, sync=self.config.journal_sync)
            if self.journal.truncated_bytes:
                self.stats.gauges["journal_torn_bytes"] = self.journal.truncated_bytes
                self.log.warning(
                    "journal log %s: cut a torn last record (%d bytes at byte %d) -- a crash or power loss in the middle of "
                    "a write; every record before it stands", self.journal.log_path, self.journal.truncated_bytes,
                    self.journal.truncated_at)
            self._recover()
        except JournalCorrupt as e:
            # one line (the runtime logs it): what is wrong, and what the operator can do
            raise JournalCorrupt(
                f"REFUSING TO SERVE a damaged journal: {e}. Answered orders may be missing from it, and serving it would "
                f"take a resend of one for a new order. Stop here; restore {path} and {path}{'-log'} from a backup (both "
                f"files, from the same moment), or move them aside, reconcile with the exchange by hand and start on a "
                f"new journal (exit status {EXIT_CORRUPT_STATE}; see docs/exchange.md, 'A damaged journal')") from e
        self.router = self.socket(zmq.ROUTER, bind=self.endpoints.orders, sndhwm=self.config.orders_hwm, rcvhwm=self.config.exec_hwm)
        # Replies to a vanished or stuck peer raise instead of vanishing, so they are counted.
        self.router.setsockopt(zmq.ROUTER_MANDATORY, 1)
        self.add_reader(self.router, self._on_requests, multipart=True, drains=True)
        self.pub = self.socket(zmq.PUB, bind=self.endpoints.execution, sndhwm=self.config.exec_hwm)
        if self.caps.get("needs_ticks", False):
            topics = [b"tick.", b"depth."] if self._depth else [b"tick."]
            self.ticks = self.socket(zmq.SUB, connect=self.endpoints.ticks, subscribe=topics, rcvhwm=self.config.tick_hwm)
            self.add_reader(self.ticks, self._on_ticks, drains=True)
            self._hold_until = time.monotonic() + max(0.0, self.config.market_wait)
        if self.account.kill_switch:
            self.log.warning("kill switch ON since the journal says so (%s): orders that would increase a position are refused",
                             self.account.kill_reason or "no reason given")
        self.log.info(
            "exchange gateway (%s%s) on %s, execution %s, journal %s (sync %s): %d orders, %d working, %d fills recovered",
            self.client.name,
            ", order kinds emulated by the gateway" if getattr(self.client, "emulated", False) else "",
            self.endpoints.orders,
            self.endpoints.execution,
            path,
            self.config.journal_sync,
            len(self.orders),
            len(self.working),
            self.positions.last_fill_seq,
        )

    def _recover(self) -> None:
        rec = self.journal.load()
        for order in rec.orders:
            self.orders[order.client_order_id] = order
            if order.status in _WORKING:
                self.working[order.client_order_id] = order
        self.positions = rec.positions
        self.account = rec.account
        self.requests = rec.requests
        self._replaced = None
        self.stats.gauges["recovered_orders"] = len(rec.orders)
        self.stats.gauges["recovered_fills"] = len(rec.fills)
        batch = Batch(P.now_ns())
        now = P.now_ns()
        self._apply(self.client.recover(list(self.working.values()), rec.state, now), batch)
        # Reconciliation results are journaled like anything else; there is nobody to tell yet.
        self.journal.write(batch.dirty.values(), batch.fills, batch.replies, self.client.state())

    def on_timer(self, now: float) -> None:
        if self._journal_full and now >= self._next_probe and not self._failed:
            self._probe_journal(now)
        if self._hold_until and now >= self._hold_until and not self._failed and not self._journal_full:
            if self._held:
                # the wait is over: what still has no market is decided now (rejected, as ever)
                batch = Batch(P.now_ns())
                self._release_held(batch, everything=True)
                self._flush(batch)
            self._hold_until = 0.0
            self._market_seen.clear()
        if self.caps.get("async_events", False) and not self._failed:
            batch = Batch(P.now_ns())
            self._apply(self.client.poll(P.now_ns()), batch)
            self._flush(batch)
            for text in self.client.take_notices():  # a remote venue's link; a burst is one line there
                self.log.warning("%s", text)
            self.stats.gauges.update(self.client.gauges())  # in the heartbeat: the Workers panel shows them
        if not self._failed and not self._journal_full:
            # what time drives (DAY orders expiring at --session-end); every timer tick
            # (0.1 s), so an expiry is at most that late.  While the disk is full it waits:
            # an expiry that could not be journaled must not happen
            try:
                events = self.client.on_time(P.now_ns())
            except Exception:  # a bug in the client costs its expiries, not the folds below
                self.stats.inc("handler_errors")
                self.rlog.warning("on_time", "exchange client failed on on_time")
                events = []
            if events:
                batch = Batch(P.now_ns())
                self._apply(events, batch)
                self._flush(batch)
        if not self._failed and not self._journal_full:
            self._maybe_fold(now)
        if self._trims_left and now >= self._next_trim:
            self._trims_left -= 1
            self._next_trim = now + TRIM_EVERY
            _trim_heap()
        self.stats.gauges["journal_full"] = 1 if self._journal_full else 0
        self.stats.gauges["working_orders"] = len(self.working)
        self.stats.gauges["orders_known"] = len(self.orders)
        self.stats.gauges["exec_seq"] = self.exec_seq
        self.stats.gauges["last_fill_seq"] = self.positions.last_fill_seq
        self.stats.gauges["held_orders"] = len(self._held)
        self.stats.gauges["kill_switch"] = 1 if self.account.kill_switch else 0
        self.stats.gauges["tick_restarts"] = self.tick_seq.restarts

    def _maybe_fold(self, now: float) -> None:
        """Fold the journal's log into its tables while nobody waits: after FOLD_IDLE without
        a write, or under sustained load once the log is long; checkpoint the WAL after a
        forced fold, or after CHECKPOINT_IDLE without a write.  (Measured in the full chain:
        a fold plus checkpoint after every 50 ms pause cost 10-20 ms each, mostly fsync, and
        orders arriving meanwhile waited.)"""
        j = self.journal
        idle = now - self._last_write
        forced = j.pending >= FOLD_MAX_BATCHES or j.pending_records >= FOLD_MAX_RECORDS
        fold = j.pending and (forced or idle >= FOLD_IDLE)
        checkpoint = forced or (self._unchecked and idle >= CHECKPOINT_IDLE)
        if not (fold or checkpoint):
            return
        t0 = P.now_ns()
        try:
            if fold:
                j.fold()
                self.stats.inc("journal_folds")
            if checkpoint:
                j.checkpoint()
                self._unchecked = False
                self.stats.inc("journal_checkpoints")
        except JournalFull as e:
            # Everything is still in the log and nothing in memory is ahead of it; the log
            # will not take writes for long on a full disk either, so refuse orders until
            # there is room (the fold is retried then).
            self._enter_full(e)
            return
        except JournalError as e:
            # Everything is still in the log, but a journal that cannot write its tables will
            # not write its log for long either: stop like a failed commit (see _flush).
            self._failed = True
            self.stats.inc("journal_errors")
            self.log.error("%s; stopping", e)
            self.request_stop("journal fold failed", code=3)
            return
        self.stats.lat("journal_fold", P.now_ns() - t0)

    # ---- a full disk
    def _enter_full(self, e: JournalError) -> None:
        if not self._journal_full:
            self.log.error("%s: refusing orders and cancels (%r) and answering queries until the journal takes writes "
                           "again (tried every %.1f s)", e, DISK_FULL, FULL_PROBE_EVERY)
        self._journal_full = DISK_FULL
        self._next_probe = time.monotonic() + FULL_PROBE_EVERY
        self.stats.inc("journal_errors")

    def _probe_journal(self, now: float) -> None:
        # Room first, then a real write: a log file's last page can take a few more bytes on
        # a disk with none left, and resuming on that would refuse again at the next order.
        if _free_bytes(self.journal.path.parent) < FULL_RESUME_FREE:
            self._next_probe = now + FULL_PROBE_EVERY
            return
        try:
            self.journal.probe()
        except JournalFull:
            self._next_probe = now + FULL_PROBE_EVERY
            return
        except JournalError as e:
            self._failed = True
            self.stats.inc("journal_errors")
            self.log.error("%s; stopping", e)
            self.request_stop("journal write failed", code=3)
            return
        self._journal_full = ""
        self.log.warning("journal takes writes again: taking orders (%d refused while the disk was full)",
                         self.stats.counters["journal_full_refusals"])
        if self._after_full:
            batch = Batch(P.now_ns())
            self._apply(self._after_full, batch)
            self._after_full = []
            self._flush(batch)

    def _rollback(self) -> None:
        """A batch could not be written: bring memory back to what the journal holds (the
        tables plus the log's unfolded records, read without writing), so that nothing of
        the batch is answered, published or remembered.  The client drops what it did since
        (``ExchangeClient.restore``)."""
        self.stats.inc("journal_rollbacks")
        rec = self.journal.load(fold=False)
        self.orders = {o.client_order_id: o for o in rec.orders}
        self.working = {cid: o for cid, o in self.orders.items() if o.status in _WORKING}
        self.positions = rec.positions
        self.account = rec.account
        self.requests = rec.requests
        self._replaced = None
        # A pending_new row of an in-process exchange is an order held for its market (the
        # only time one is journaled); it keeps waiting, answered when it is decided.
        pending = [] if self._remote else [cid for cid, o in self.working.items() if o.status is OrderStatus.PENDING_NEW]
        waiting = [(env, cid) for env, cid in self._held if cid in pending]
        waiting += [(None, cid) for cid in pending if cid not in {c for _, c in waiting}]
        self._held, self._held_cids = waiting, set(pending)
        if pending and not self._hold_until:
            self._hold_until = time.monotonic()  # the wait is over: decided at the next timer
        book = [o for cid, o in self.working.items() if cid not in self._held_cids]
        self._after_full.extend(self.client.restore(book, rec.state, P.now_ns()))

    def on_command(self, cmd: str, args: dict) -> dict | None:
        if cmd == "positions":
            return {"positions": self.positions.to_list(), "last_fill_seq": self.positions.last_fill_seq,
                    "kill_switch": self.account.kill_switch, "kill_reason": self.account.kill_reason}
        return super().on_command(cmd, args)

    def teardown(self) -> None:
        try:
            self.client.close()
        finally:
            if self.journal is not None:
                self.journal.close()

    # ------------------------------------------------------------------ the orders endpoint
    def _on_requests(self, first: list[bytes]) -> None:
        """Group commit: drain what is waiting, handle it all, commit once, then answer."""
        requests = [first]
        recv = self.router.recv_multipart
        events = self.router.getsockopt
        # EVENTS before each further recv: cheaper than the zmq.Again that ends a drain
        # (~1 us against ~2.5 us), and most wake-ups hold one request
        while len(requests) < self.batch_max and events(_EVENTS) & _POLLIN:
            try:
                requests.append(recv(_NOBLOCK))
            except zmq.Again:
                break
        if self._failed:
            self.stats.inc("dropped", len(requests))
            return
        ticks = getattr(self, "ticks", None)
        if ticks is not None and ticks.getsockopt(_EVENTS) & _POLLIN:
            # Ticks that arrived before these orders are the market they meet, as in a
            # backtest: a wake-up with both waiting would otherwise serve the orders first,
            # against the tick before (the one the strategy's signal did not come from).
            try:
                self._on_ticks(ticks.recv(_NOBLOCK))
            except zmq.Again:
                pass
        batch = Batch(P.now_ns())
        for frames in requests:
            self._handle_frames(frames, batch)
        if not self._flush(batch):
            # Nothing of the batch was stored, answered or kept: answer it again from what
            # the journal holds, refusing whatever would change it (the disk is full now).
            batch = Batch(P.now_ns())
            for frames in requests:
                self._handle_frames(frames, batch)
            self._flush(batch)

    def _handle_frames(self, frames: list[bytes], batch: Batch) -> None:
        self.stats.inc("requests")
        envelope, body = split_envelope(frames)
        if envelope is None:
            self.stats.inc("dropped")
            self.rlog.warning("frames", "dropped a request of %d frames with no routable envelope", len(frames))
            return
        if len(body) != 1:
            self.stats.inc("decode_errors")
            self.rlog.warning("frames", "request with %d body frames (want exactly 1)", len(body))
            batch.sends.append(envelope + [P.error_reply(f"a request is exactly one frame, got {len(body)}")])
            return
        reply = self._handle_payload(body[0], batch, envelope)
        if reply is not None:  # None: a held order, answered when its market shows up
            batch.sends.append(envelope + [reply])

    def _handle_payload(self, payload: bytes, batch: Batch, envelope: list[bytes] | None = None) -> bytes | None:
        """One request in, one packed reply out (None for an order held for the market); never raises."""
        try:
            msg = P.decode(payload, expect=P.REQUEST_CLASSES)
        except P.ProtocolError as e:
            self.stats.inc("decode_errors")
            self.rlog.warning("decode", "bad request: %s", e)
            return P.error_reply(str(e), P.peek_type(payload))
        request_type = msg.TYPE
        self._envelope = envelope
        try:
            return self._handlers[type(msg)](msg, batch, P.now_ns())
        except Exception as e:  # a bug must cost one request, not the gateway
            self.stats.inc("handler_errors")
            self.log.exception("%s failed", request_type)
            # an `error`, not a refusal of the request: the order may be journaled or at the
            # exchange already, so a client must reconcile (get_order), never take it as refused
            return P.error_reply(f"internal error on {request_type}: {type(e).__name__}: {e}")
        finally:
            self._envelope = None

    # ---- market orders that arrive before the market
    def _should_hold(self, order: Order) -> bool:
        """Keep a market order for a symbol without a tick yet, shortly after a (re)start?

        The orders endpoint is bound a few milliseconds before the first ticks reach a new
        gateway, and clients retry into exactly that moment after a crash; rejecting their
        orders with "no market data" would be true of this process only, not of the market.
        So, for ``--market-wait`` seconds after start, such an order is journaled as
        ``pending_new`` (get_order finds it; a crash turns it into "not placed" on recovery)
        and its reply waits for the symbol's first tick, or for the end of the wait.
        """
        return (
            self._envelope is not None
            and bool(self._hold_until)
            and order.order_type is P.OrderType.MARKET
            and order.symbol not in self._market_seen
            and time.monotonic() < self._hold_until
        )

    def _release_held(self, batch: Batch, everything: bool = False, cids: frozenset[str] = frozenset()) -> None:
        """Answer the held orders whose market has shown up (all of them with ``everything``,
        and those in ``cids``): submit each once, send its reply to every request that waits."""
        keep: list[tuple[list[bytes], str]] = []
        for envelope, cid in self._held:
            order = self.orders[cid]
            if not (everything or cid in cids or order.symbol in self._market_seen):
                keep.append((envelope, cid))
                continue
            reply = batch.replies.get(cid)
            if reply is None:
                if order.status is OrderStatus.PENDING_NEW:
                    reply = self._submit(order, batch, P.now_ns())
                else:  # cancelled while it waited
                    reply = batch.replies[cid] = self._order_reply(order, P.now_ns())
            if envelope is not None:  # None: its request was in a batch rolled back (a full disk)
                batch.sends.append(envelope + [reply])
        self._held = keep
        self._held_cids = {cid for _, cid in keep}

    # ---- send_order
    def _send_order(self, req: P.SendOrder, batch: Batch, now: int) -> bytes | None:
        self.stats.inc("orders")
        cid = req.client_order_id
        known = self.orders.get(cid)
        if known is not None:
            if not known.same_terms(req) and not self._resend_of_replaced(known, req, batch) and not self._resend_of_legacy(known, req, batch):
                self.stats.inc("rejects")
                return P.packb(P.refusal(MsgType.SEND_ORDER, f"client_order_id {cid} already used for a different order", client_order_id=cid))
            self.stats.inc("duplicates")
            if cid in self._held_cids and self._envelope is not None:
                self._held.append((self._envelope, cid))  # answered with the first one
                return None
            stored = batch.replies.get(cid) or self.journal.reply_for(cid)
            if stored is None and self._journal_full:
                return self._order_reply(known, now)  # the order as it stands, stored once there is room
            if stored is None:
                # Journaled before it was answered (a remote exchange that crashed mid-submit):
                # the answer is the order as it stands, and from now on it is stored.
                stored = batch.replies[cid] = self._order_reply(known, now)
                batch.dirty[cid] = known
            return stored

        if self._journal_full:
            # Not journaled, so not an order: get_order will not know it, and the same
            # client_order_id may be sent again once the disk has room.
            self.stats.inc("journal_full_refusals")
            self.stats.inc("rejects")
            return P.packb(P.refusal(MsgType.SEND_ORDER, self._journal_full, client_order_id=cid, order_id=NO_ORDER_ID,
                                     status=OrderStatus.REJECTED, ts=now))
        batch.journaled_requests += 1
        order = Order.from_request(req, now)
        self.orders[cid] = order
        batch.dirty[cid] = order
        refusal = self._refusal(order)
        if refusal:
            order.order_id = NO_ORDER_ID
            order.status = OrderStatus.REJECTED
            order.reason = refusal
            batch.events.append(OrderEvent(order.snapshot()))
            self.stats.inc("rejects")
            reply = batch.replies[cid] = self._order_reply(order, now)
            return reply
        if self._should_hold(order):
            self.stats.inc("held_for_market")
            self.working[cid] = order
            self._held.append((self._envelope, cid))
            self._held_cids.add(cid)
            return None
        return self._submit(order, batch, now)

    def _submit(self, order: Order, batch: Batch, now: int) -> bytes:
        """Hand a new, accepted order to the exchange; its reply is stored in the batch."""
        cid = order.client_order_id
        if self._remote:
            # The order is about to leave the process: journal it first, so a crash
            # before the broker's answer leaves a pending_new row that recover() settles.
            self.journal.write([order])
        try:
            events = self.client.submit(order, now)
        except Exception as e:
            self.log.exception("exchange client failed on submit of %s", cid)
            events = self._reject(order, now, f"exchange error: {type(e).__name__}: {e}")
        self._apply(events, batch)
        batch.dirty[cid] = order
        if order.status is OrderStatus.REJECTED:
            self.stats.inc("rejects")
        reply = batch.replies[cid] = self._order_reply(order, now)
        return reply

    def _refusal(self, order: Order) -> str:
        """Why the gateway itself refuses an order before the exchange sees it ("" if it does not)."""
        why = self._unsupported(order) or self._id_clash(order)
        if why:
            return why
        if self.account.kill_switch:
            refusal = self._kill_switch_refusal(order)
            if refusal:
                self.stats.inc("kill_switch_rejects")
                return refusal
        return self._limits_refusal(order)

    def _unsupported(self, order: Order) -> str:
        """What of the order the venue can do neither natively nor through the gateway's
        emulation ("" if it can do all of it)."""
        name = self.client.name
        if order.order_type not in self._order_types:
            return f"{order.order_type.value} orders are not supported by the {name} exchange"
        if order.tif not in self._tifs:
            return f"time in force {order.tif.value} is not supported by the {name} exchange"
        if order.take_profit_price is not None or order.stop_loss_price is not None:
            if not self.caps.get("brackets"):
                return f"brackets are not supported by the {name} exchange"
            legs = ((order.take_profit_price, OrderType.LIMIT, order.take_profit_tif),
                    (order.stop_loss_price, OrderType.STOP, order.stop_loss_tif))
            for price, kind, tif in legs:
                if price is None:
                    continue
                if kind not in self._order_types:
                    return f"a bracket's {kind.value} child is not supported by the {name} exchange"
                if tif not in self._tifs:
                    return f"time in force {tif.value} (a bracket child's) is not supported by the {name} exchange"
        return ""

    def _id_clash(self, order: Order) -> str:
        """A bracket's children take ``<id>.tp`` / ``<id>.sl``: refuse a bracket whose
        children's ids are taken, and an order that takes the id of a bracket's child."""
        cid = order.client_order_id
        if order.take_profit_price is not None or order.stop_loss_price is not None:
            for child in (cid + s for s in P.BRACKET_SUFFIXES):
                if child in self.orders or child in self.requests:
                    return f"client_order_id {child} (this bracket's child) is already used"
            # the children's group is named after the parent: one of set_oco's by that name
            # would be one group with them (a fill of either cancelling the other's orders)
            if any(o.oco_group == cid for o in self.working.values()):
                return f"client_order_id {cid} is the name of an oco group"
        parent = self._bracket_of_child(cid)
        if parent:
            return f"client_order_id {cid} belongs to the child of bracket {parent}"
        if cid in self.requests:
            return f"client_order_id {cid} already used for a replace_order"
        return ""

    def _bracket_of_child(self, cid: str) -> str:
        """The bracket whose child's id ``cid`` is (made or to come), "" if none."""
        for suffix in P.BRACKET_SUFFIXES:
            parent = self.orders.get(cid[: -len(suffix)]) if cid.endswith(suffix) else None
            if parent is not None and (parent.take_profit_price is not None or parent.stop_loss_price is not None):
                return parent.client_order_id
        return ""

    def _side_working(self, symbol: str, side: Side, exclude: str = "") -> int:
        """The remaining quantity of the symbol's working orders on ``side`` (but ``exclude``),
        an OCO group counted once, at its largest member: only one of them can fill (the
        others are cancelled when it does), so a bracket's take-profit and stop-loss are one
        exposure, not two."""
        total = 0
        groups: dict[str, int] = {}
        for o in self.working.values():
            if o.symbol != symbol or o.side is not side or o.client_order_id == exclude:
                continue
            if o.oco_group:
                if o.remaining > groups.get(o.oco_group, 0):
                    groups[o.oco_group] = o.remaining
            else:
                total += o.remaining
        return total + sum(groups.values())

    def _pending(self, symbol: str, exclude: str = "") -> int:
        """Signed remaining quantity of the symbol's working orders but ``exclude``."""
        return self._side_working(symbol, Side.BUY, exclude) - self._side_working(symbol, Side.SELL, exclude)

    def _limits_refusal(self, order: Order, exclude: str = "") -> str:
        """The hard limits' verdict on ``order`` as it stands (a new order, a replace's would-be
        order, a bracket child), its own working quantity left out of the pending."""
        d = self.hard_limits.check_order(order, self.positions.qty(order.symbol), self._pending(order.symbol, exclude))
        if not d:
            self.stats.inc("hard_limit_rejects")
            return f"hard limit: {d.reason}"
        return ""

    def _child_refusal(self, child: Order) -> str:
        """The hard limits on an order the client creates by itself (a bracket child, or its
        growth as the parent fills): the client refuses it with this reason.  The kill switch
        does not stop children: they close what their parent opened."""
        return clip_text(self._limits_refusal(child, exclude=child.client_order_id))

    def _kill_switch_refusal(self, order: Order, exclude: str = "") -> str:
        """While the kill switch is on, an order may only reduce its symbol's position: counting
        the working orders on its side as if they filled first (they may), what it may still
        close is the position on the other side minus those.  Anything beyond that would open
        or grow a position ("" if the order only reduces).  ``exclude``: the order being
        replaced (its new remaining quantity is ``order.remaining``)."""
        sym = order.symbol
        pos = self.positions.qty(sym)
        working = self._side_working(sym, order.side, exclude)
        closable = (pos if order.side is Side.SELL else -pos) - working
        if order.remaining <= closable:
            return ""
        held = f"long {pos}" if pos > 0 else (f"short {-pos}" if pos < 0 else "flat")
        side = order.side.value
        return clip_text(f"{KILL_SWITCH} on: order would increase the {sym} position ({held}, {working} working to {side}; "
                         f"at most {max(0, closable)} to {side} reduces it)")

    def _kill_switch_cancels(self) -> list[Order]:
        """The working orders that would increase a position, which the kill switch cancels
        when it is turned on: per symbol, the orders on the side that closes the position are
        kept oldest first while together they close no more than the position (an OCO group
        counted once, at its largest member: a bracket's take-profit and stop-loss stay), and
        everything else goes -- every order of a flat symbol, every order on the side that
        adds to the position."""
        units: dict[tuple, list[Order]] = {}
        for o in self.working.values():
            units.setdefault((o.symbol, o.side, o.oco_group or "\0" + o.client_order_id), []).append(o)
        room: dict[str, int] = {}
        out: list[Order] = []
        for (sym, side, _), members in sorted(units.items(), key=lambda kv: min(o.created_ts for o in kv[1])):
            pos = self.positions.qty(sym)
            closes = (side is Side.SELL and pos > 0) or (side is Side.BUY and pos < 0)
            qty = max(o.remaining for o in members)
            left = room.setdefault(sym, abs(pos))
            if closes and qty <= left:
                room[sym] = left - qty
            else:
                out.extend(members)
        return out

    def _order_reply(self, order: Order, now: int) -> bytes:
        return P.packb(
            P.SendOrderReply(
                ok=order.status is not OrderStatus.REJECTED,
                reason=clip_text(order.reason),
                client_order_id=order.client_order_id,
                order_id=order.order_id,
                status=order.status,
                filled_qty=order.filled_qty,
                avg_price=order.avg_price,
                ts=now,
            )
        )

    @staticmethod
    def _reject(order: Order, now: int, reason: str) -> list[ExecEvent]:
        order.order_id = order.order_id or NO_ORDER_ID
        order.status = OrderStatus.REJECTED
        order.reason = reason
        order.ts = now
        return [OrderEvent(order.snapshot())]

    # ---- cancels
    def _cancel_order(self, req: P.CancelOrder, batch: Batch, now: int) -> bytes:
        cid = req.client_order_id
        order = self.orders.get(cid)
        if order is None:
            return P.packb(P.refusal(MsgType.CANCEL_ORDER, f"unknown client_order_id {cid}", client_order_id=cid))
        if self._journal_full and order.status in _WORKING:
            self.stats.inc("journal_full_refusals")
            return P.packb(P.refusal(MsgType.CANCEL_ORDER, self._journal_full, client_order_id=cid, order_id=order.order_id, status=order.status))
        ok, reason = self._cancel(order, batch, now, req.ts)
        return P.packb(P.CancelOrderReply(ok=ok, reason=clip_text(reason), client_order_id=cid, order_id=order.order_id, status=order.status))

    def _cancel_all(self, req: P.CancelAll, batch: Batch, now: int) -> bytes:
        if self._journal_full:
            self.stats.inc("journal_full_refusals")
            return P.packb(P.refusal(MsgType.CANCEL_ALL, self._journal_full))
        cancelled = []
        for order in list(self.working.values()):
            if req.symbol is None or order.symbol == req.symbol:
                ok, _ = self._cancel(order, batch, now, req.ts)
                if ok:
                    cancelled.append(order.client_order_id)
        return P.packb(P.CancelAllReply(ok=True, cancelled=cancelled, count=len(cancelled)))

    def _cancel(self, order: Order, batch: Batch, now: int, cause_ts: int, reason: str = "") -> tuple[bool, str]:
        """Cancel a working order; ``reason``: what its final update says (the kill switch's
        cancels, a refused bracket child)."""
        if order.status not in _WORKING:
            return False, f"order {order.client_order_id} is already {order.status.value}"
        if not self.caps.get("cancel", False):
            return False, f"the {self.client.name} exchange does not support cancels"
        batch.journaled_requests += 1
        cid = order.client_order_id
        if cid in self._held_cids:  # never reached the exchange: cancelled here
            order.order_id = NO_ORDER_ID
            order.status = OrderStatus.CANCELLED
            order.ts = now
            order.cause_ts = cause_ts or now
            if reason:
                order.reason = reason
            self.working.pop(cid, None)
            batch.dirty[cid] = order
            batch.events.append(OrderEvent(order.snapshot()))
            self._release_held(batch, cids=frozenset((cid,)))
            return True, ""
        try:
            result = self.client.cancel(order, now, cause_ts)
        except Exception as e:
            self.log.exception("exchange client failed on cancel of %s", order.client_order_id)
            return False, f"exchange error: {type(e).__name__}: {e}"
        if reason and result.ok:
            # the client's snapshots are copies made for these events: say why on the final one
            for ev in result.events:
                if ev.__class__ is OrderEvent and ev.order.client_order_id == cid and ev.order.status is OrderStatus.CANCELLED:
                    ev.order.reason = reason
        self._apply(result.events, batch)
        return result.ok, result.reason

    # ---- replace_order
    def _resend_of_replaced(self, order: Order, req: P.SendOrder, batch: Batch) -> bool:
        """A resend of an order that a replace_order has changed since: its quantity and
        prices are the original ones, so only the terms a replace cannot change are compared,
        and only if a replace of this order succeeded (a late retry of the first send must get
        its stored reply, not "already used for a different order", which a client would take
        for a rejection of a live order).  The orders replaced are indexed the first time a
        mismatch asks (read from the stored replaces once), then kept up by each replace: a
        flood of mismatched resends costs a set lookup each."""
        if any(getattr(order, n) != getattr(req, n) for n in P.ORDER_TERMS if n not in REPLACEABLE_TERMS):
            return False
        if self._replaced is None:
            self._replaced = self._replaced_orders(batch)
        return order.client_order_id in self._replaced

    def _replaced_orders(self, batch: Batch) -> set[str]:
        """The orders a stored replace_order changed (its reply ok)."""
        out: set[str] = set()
        for rid, terms in self.requests.items():
            try:
                cid = msgspec.msgpack.decode(terms)[0]
                stored = batch.requests.get(rid) or self.journal.request_for(rid)
                if stored is not None and msgspec.msgpack.decode(stored[1]).get("ok") is True:
                    out.add(cid)
            except Exception:  # a stored request this version cannot read is not a replace of it
                continue
        return out

    def _resend_of_legacy(self, order: Order, req: P.SendOrder, batch: Batch) -> bool:
        """A resend of an order sent before the journal's v5 upgrade: it carries no tif (day
        today) while the order is gtc (it never expired then, and does not now)."""
        if req.tif is not TimeInForce.DAY or order.tif is not TimeInForce.GTC or order.created_ts >= self.journal.legacy_before:
            return False
        req = msgspec.structs.replace(req, tif=TimeInForce.GTC)
        return order.same_terms(req) or self._resend_of_replaced(order, req, batch)

    def _replace_order(self, req: P.ReplaceOrder, batch: Batch, now: int) -> bytes:
        """Change a working order's qty / prices.  Idempotent on the request's own
        client_order_id: every decided answer is journaled with the request's terms, and a
        repeat gets those bytes (an unknown order, an id taken by an order and a full disk are
        answered, not decided: nothing is stored, as for a cancel)."""
        self.stats.inc("replaces")
        rid, cid = req.client_order_id, req.orig_client_order_id
        terms = P.packb([cid, req.qty, req.limit_price, req.stop_price])
        pending = batch.requests.get(rid)
        stored_terms = pending[0] if pending is not None else self.requests.get(rid)
        if stored_terms is not None:
            if stored_terms != terms:
                self.stats.inc("rejects")
                return P.packb(P.refusal(MsgType.REPLACE_ORDER, f"client_order_id {rid} already used for a different replace_order",
                                         replace_id=rid))
            stored = pending or self.journal.request_for(rid)
            if stored is not None:
                self.stats.inc("duplicates")
                return stored[1]
        if rid in self.orders:
            return P.packb(P.refusal(MsgType.REPLACE_ORDER, f"client_order_id {rid} already used for an order", replace_id=rid))
        parent = self._bracket_of_child(rid)
        if parent:  # the child's id, once it is made: one namespace with the orders
            return P.packb(P.refusal(MsgType.REPLACE_ORDER, f"client_order_id {rid} belongs to the child of bracket {parent}",
                                     replace_id=rid))
        order = self.orders.get(cid)
        if order is None:
            return P.packb(P.refusal(MsgType.REPLACE_ORDER, f"unknown client_order_id {cid}", client_order_id=cid, replace_id=rid))
        if self._journal_full:
            self.stats.inc("journal_full_refusals")
            return P.packb(P.refusal(MsgType.REPLACE_ORDER, self._journal_full, client_order_id=cid, order_id=order.order_id,
                                     status=order.status, replace_id=rid))
        batch.journaled_requests += 1
        why = self._replace_refusal(order, req)
        if not why:
            try:
                res = self.client.replace(order, req.qty, req.limit_price, req.stop_price, now, req.ts)
            except Exception as e:
                self.log.exception("exchange client failed on replace of %s", cid)
                why = f"exchange error: {type(e).__name__}: {e}"
            else:
                self._apply(res.events, batch)
                why = "" if res.ok else (res.reason or "refused by the exchange")
        if why:
            self.stats.inc("replace_rejects")
        reply = P.packb(P.ReplaceOrderReply(ok=not why, reason=clip_text(why), client_order_id=cid, order_id=order.order_id,
                                            status=order.status, replace_id=rid, order=order.to_update()))
        batch.requests[rid] = (terms, reply)
        self.requests[rid] = terms
        if not why and self._replaced is not None:
            self._replaced.add(cid)
        return reply

    def _replace_refusal(self, order: Order, req: P.ReplaceOrder) -> str:
        """Why the gateway refuses this change of ``order`` ("" if it takes it): the order is
        done, the change does not fit its kind, the order it would make breaks the terms'
        rules, the kill switch or a hard limit."""
        cid = order.client_order_id
        if not order.is_working:
            return f"order {cid} is already {order.status.value}"
        if cid in self._held_cids:
            return f"order {cid} is waiting for its market's first tick: replace it once it is acknowledged"
        qty, lp, sp = req.qty, req.limit_price, req.stop_price
        ot = order.order_type
        if qty is not None and qty <= order.filled_qty:
            return f"qty {qty} must exceed the {order.filled_qty} already filled of order {cid}"
        if lp is not None and not ot.has_limit:
            return f"order {cid} ({ot.value}) has no limit price"
        if sp is not None:
            if ot is OrderType.TRAILING_STOP:
                return f"order {cid}: a trailing_stop's stop follows the market (change its qty only)"
            if ot is not OrderType.STOP and ot is not OrderType.STOP_LIMIT:
                return f"order {cid}: a {ot.value} order has no stop price"
            if order.triggered:
                return f"order {cid}: its stop has already triggered"
        would = order.snapshot()
        if qty is not None:
            would.qty = qty
        if lp is not None:
            would.limit_price = lp
        if sp is not None:
            would.stop_price = sp
        if ot is OrderType.TRAILING_STOP:
            would.stop_price = None  # its level, the venue's: state, not a term a request may carry
        try:
            P.check_order_terms(would)
        except ValueError as e:
            return f"order {cid}: {e}"
        if self.account.kill_switch and would.remaining > order.remaining:
            refusal = self._kill_switch_refusal(would, exclude=cid)
            if refusal:
                self.stats.inc("kill_switch_rejects")
                return refusal
        if (qty is not None and qty > order.qty) or lp is not None:
            return self._limits_refusal(would, exclude=cid)
        return ""

    # ---- set_oco
    def _set_oco(self, req: P.SetOco, batch: Batch, now: int) -> bytes:
        """Make working orders one-cancels-other.  The group is named after its members, so a
        repeat finds it already made and gets the same answer (nothing stored: the group is
        in the orders' ``oco_group``)."""
        ids = req.client_order_ids
        if len(set(ids)) != len(ids):
            return P.packb(P.refusal(MsgType.SET_OCO, "set_oco: client_order_ids must be distinct"))
        orders = []
        for cid in ids:
            o = self.orders.get(cid)
            if o is None:
                return P.packb(P.refusal(MsgType.SET_OCO, f"unknown client_order_id {cid}"))
            orders.append(o)
        names = (oco_group_name(ids), oco_group_name(ids, hashed=True))
        for name in names:
            if all(o.oco_group == name for o in orders):
                return P.packb(P.SetOcoReply(ok=True, oco_group=name))
        if self._journal_full:
            self.stats.inc("journal_full_refusals")
            return P.packb(P.refusal(MsgType.SET_OCO, self._journal_full))
        group = names[0]
        for o in orders:
            cid = o.client_order_id
            if not o.is_working:
                return P.packb(P.refusal(MsgType.SET_OCO, f"order {cid} is not working (status {o.status.value})"))
            if cid in self._held_cids:
                return P.packb(P.refusal(MsgType.SET_OCO, f"order {cid} is waiting for its market's first tick"))
            if o.oco_group:
                return P.packb(P.refusal(MsgType.SET_OCO, f"order {cid} is already in oco group {o.oco_group}"))
        if group in self.orders or any(o.oco_group == group for o in self.working.values()):
            group = names[1]  # an order (a bracket, its children to come) of that very name: a group of its own
        batch.journaled_requests += 1
        try:
            res = self.client.set_oco([o for o in orders], group, now)
        except Exception as e:
            self.log.exception("exchange client failed on set_oco of %s", group)
            return P.packb(P.refusal(MsgType.SET_OCO, f"exchange error: {type(e).__name__}: {e}"))
        self._apply(res.events, batch)
        if not res.ok:
            return P.packb(P.refusal(MsgType.SET_OCO, clip_text(res.reason or "refused by the exchange")))
        self.stats.inc("oco_groups")
        return P.packb(P.SetOcoReply(ok=True, oco_group=group))

    # ---- queries
    def _get_order(self, req: P.GetOrder, batch: Batch, now: int) -> bytes:
        cid = req.client_order_id
        order = self.orders.get(cid)
        if order is None:
            return P.packb(P.refusal(MsgType.GET_ORDER, f"unknown client_order_id {cid}", client_order_id=cid))
        return P.packb(
            P.GetOrderReply(ok=True, client_order_id=cid, order_id=order.order_id, status=order.status, order=order.to_update())
        )

    def _get_orders(self, req: P.GetOrders, batch: Batch, now: int) -> bytes:
        source = self.working if req.working_only else self.orders
        orders = list(source.values())
        truncated = len(orders) > MAX_ORDERS_IN_REPLY
        if truncated:
            orders = orders[-MAX_ORDERS_IN_REPLY:]
        return P.packb(P.GetOrdersReply(ok=True, orders=[o.to_update() for o in orders], truncated=truncated))

    def _get_positions(self, req: P.GetPositions, batch: Batch, now: int) -> bytes:
        return P.packb(P.GetPositionsReply(ok=True, positions=self.positions.net_positions(), last_fill_seq=self.positions.last_fill_seq,
                                           kill_switch=self.account.kill_switch, kill_reason=self.account.kill_reason))

    def _get_fills(self, req: P.GetFills, batch: Batch, now: int) -> bytes:
        limit = min(req.limit or MAX_FILLS_IN_REPLY, MAX_FILLS_IN_REPLY)
        last = self.positions.last_fill_seq
        fills = self.journal.fills_after(req.since_fill, limit) if req.since_fill < last else []
        return P.packb(P.GetFillsReply(ok=True, fills=[f.to_message() for f in fills], last_fill=last))

    # ---- the kill switch
    def _set_kill_switch(self, req: P.SetKillSwitch, batch: Batch, now: int) -> bytes:
        if self._journal_full:
            # a switch that a restart could forget is not the account's: refuse, say how it stands
            self.stats.inc("journal_full_refusals")
            return P.packb(P.refusal(MsgType.SET_KILL_SWITCH, self._journal_full, on=self.account.kill_switch,
                                     kill_reason=self.account.kill_reason))
        was = self.account.kill_switch
        self.account = batch.account = Account(kill_reason=clip_text(req.reason) if req.on else "", kill_ts=now, kill_switch=req.on)
        batch.journaled_requests += 1
        if req.on != was:
            self.stats.inc("kill_switch_changes")
            if req.on:
                self.log.warning("kill switch ON (%s): refusing orders that would increase a position, from any client",
                                 self.account.kill_reason or "no reason given")
            else:
                self.log.warning("kill switch OFF: taking orders again")
        if req.on and not was:
            # resting limits and held stops that would add to a position go too: the rule
            # that refuses such an order now must not let one placed a second earlier fill
            cancelled = 0
            for order in self._kill_switch_cancels():
                ok, _ = self._cancel(order, batch, now, req.ts, reason=KILL_SWITCH_CANCEL)
                cancelled += ok
            if cancelled:
                self.stats.inc("kill_switch_cancels", cancelled)
                self.log.warning("kill switch ON: cancelled %d working orders that would increase a position", cancelled)
        return P.packb(P.SetKillSwitchReply(ok=True, on=self.account.kill_switch, kill_reason=self.account.kill_reason))

    def _ping(self, req: P.Ping, batch: Batch, now: int) -> bytes:
        return P.packb(P.PingReply(ok=True, ts=now))

    # ------------------------------------------------------------------ market data
    def _on_ticks(self, first: bytes) -> None:
        """Drain the tick stream.  Symbols with working orders see every tick in order (each
        tick is fresh liquidity); for the others only the latest tick of the batch matters,
        so superseded ones are skipped without decoding."""
        if self._failed:
            return
        frames = [first]
        recv = self.ticks.recv
        while len(frames) < DEFAULT_BATCH * 4:
            try:
                frames.append(recv(zmq.NOBLOCK))
            except zmq.Again:
                break
        self.stats.inc("ticks_in", len(frames))
        if self._depth:
            syms = list(self.client.working_symbols())
            active = {P.tick_topic(s) for s in syms} | {P.depth_topic(s) for s in syms}
        else:
            active = {P.tick_topic(s) for s in self.client.working_symbols()}
        latest: dict[bytes, bytes] = {}
        batch = Batch(P.now_ns())
        full = bool(self._journal_full)
        for frame in frames:
            topic = frame[: frame.find(P.TOPIC_SEP)]
            if topic in active:
                if full:  # a fill could not be journaled: the book waits for room
                    self.stats.inc("ticks_paused")
                    continue
                if topic[:1] == b"d":
                    self._on_depth(frame, batch)
                else:
                    self._tick(frame, batch)
            else:
                latest[topic] = frame
        for topic, frame in latest.items():
            if topic[:1] == b"d":
                self._on_depth(frame, batch)
            else:
                self._tick(frame, batch, newest_only=True)
        if self._held and not full:
            self._release_held(batch)
        self._flush(batch)

    def _tick(self, frame: bytes, batch: Batch, newest_only: bool = False) -> None:
        """Match a tick frame's ticks against the book.  ``newest_only``: the symbol has no
        working order, so only its newest quote matters (a batched frame's older rows would
        only be stored and overwritten)."""
        try:
            # a 'tick' or a batched 'ticks' frame (its ts is int64 by declaration: it becomes
            # the fills' cause_ts, in the journal)
            sym, rows, epoch = P.tick_frame(frame)
        except P.ProtocolError as e:
            self.stats.inc("decode_errors")
            self.rlog.warning("tick", "bad tick: %s", e)
            return
        if newest_only:
            rows = rows[-1:]
        seq = self.tick_seq
        ep = epoch or None  # 0: the feed does not say, and a step back is a restart
        # newest_only skips older ticks on purpose, so the tracker's gaps mean nothing here;
        # only what is not fresh (a duplicate, or late within one epoch) is dropped
        if not seq.check_run(sym, rows[0][0], rows[-1][0], len(rows), ep):
            fresh = [r for r in rows if seq.check(sym, r[0], ep).fresh]
            if len(fresh) < len(rows):
                self.stats.inc("ticks_stale", len(rows) - len(fresh))
                self.rlog.warning("stale", "%s: %d stale tick(s) dropped (seq %d..%d)", sym, len(rows) - len(fresh), rows[0][0], rows[-1][0])
            rows = fresh
        for r in rows:
            tick = P.Tick(sym, *r, epoch=epoch)
            self.hard_limits.on_last(tick.symbol, tick.last)
            if self._hold_until:
                self._market_seen.add(tick.symbol)
            self._apply(self.client.on_tick(tick), batch)

    def _on_depth(self, frame: bytes, batch: Batch) -> None:
        """A symbol's order book (topic ``depth.<SYMBOL>``), for a client that wants depth: a
        duplicate or one that steps back within its epoch is dropped (``depth_stale``)."""
        try:
            topic, depth = P.decode_pub(frame, P.Depth)
            if topic != P.depth_topic(depth.symbol):
                raise P.ProtocolError(f"topic {topic[:40]!r} does not match symbol {depth.symbol!r}")
        except P.ProtocolError as e:
            self.stats.inc("decode_errors")
            self.rlog.warning("depth", "bad depth: %s", e)
            return
        if not self.depth_seq.check(depth.symbol, depth.seq, depth.epoch or None).fresh:
            self.stats.inc("depth_stale")
            return
        self.stats.inc("depth_in")
        self._apply(self.client.on_depth(depth), batch)

    # ------------------------------------------------------------------ events, journal, output
    def _apply(self, events: list[ExecEvent], batch: Batch) -> None:
        """Bring the gateway's records in line with what the exchange reported."""
        adopted: list[Order] | None = None
        for ev in events:
            if ev.__class__ is FillEvent:
                batch.fills.append(ev.fill)
                self.positions.apply(ev.fill)
                self.stats.inc("fills")
            else:
                snap = ev.order
                cid = snap.client_order_id
                live = self.orders.get(cid)
                if live is None:  # an order the exchange knows and we did not (placed elsewhere, a bracket child)
                    live = self.orders[cid] = snap.snapshot()
                    if live.parent_id and not self._checks_children and live.is_working:
                        (adopted := adopted or []).append(live)
                elif live is not snap:
                    live.copy_state_from(snap)
                if live.status in _WORKING:
                    self.working[cid] = live
                else:
                    self.working.pop(cid, None)
                batch.dirty[cid] = live
            batch.events.append(ev)
        if adopted is not None:
            # a client that did not ask the hard limits before it made a child: ask now, and
            # cancel what they refuse (with their reason)
            for child in adopted:
                why = self._child_refusal(child) if child.is_working else ""
                if why:
                    self.log.warning("bracket child %s refused: %s", child.client_order_id, why)
                    self._cancel(child, batch, P.now_ns(), 0, reason=why)

    def _flush(self, batch: Batch) -> bool:
        """Commit the batch, then answer and publish -- in that order, or not at all.  False:
        the disk was full, nothing of the batch was sent and memory is back to the journal's
        state (the caller may answer its requests again)."""
        if batch.dirty or batch.fills or batch.replies or batch.account is not None or batch.requests:
            try:
                self.journal.write(batch.dirty.values(), batch.fills, batch.replies, self.client.state(), batch.account, batch.requests)
            except JournalFull as e:
                try:
                    self._rollback()
                except Exception as e2:  # memory cannot be brought back: only a restart can
                    self._failed = True
                    self.stats.inc("journal_errors")
                    self.log.error("%s; could not go back to the journal's state (%s: %s); stopping without answering "
                                   "%d requests", e, type(e2).__name__, e2, len(batch.sends))
                    self.request_stop("journal write failed", code=3)
                    return True
                self._enter_full(e)
                return False
            except JournalError as e:
                # The in-memory book is now ahead of the journal.  Answering would promise
                # what a restart cannot keep; stop, let the supervisor restart us from the
                # journal, and let clients' retries find the truth.
                self._failed = True
                self.stats.inc("journal_errors")
                self.stats.inc("dropped", len(batch.sends))
                self.log.error("%s; stopping without answering %d requests", e, len(batch.sends))
                self.request_stop("journal write failed", code=3)
                return True
            self._last_write = time.monotonic()
            self._unchecked = True
            if batch.journaled_requests:
                elapsed = P.now_ns() - batch.started_ns
                for _ in range(batch.journaled_requests):
                    self.stats.lat("order_journal", elapsed)
        send = self.router.send
        sent = nbytes = 0
        for frames in batch.sends:
            try:
                # send_multipart, without its per-frame flag arithmetic on enums
                for frame in frames[:-1]:
                    send(frame, _MORE_NOBLOCK)
                send(frames[-1], _NOBLOCK)
                sent += 1
                nbytes += sum(map(len, frames))
            except zmq.ZMQError:  # peer gone (ROUTER_MANDATORY) or its pipe full (orders HWM)
                self.stats.inc("dropped")
                self.stats.inc("reply_dropped")
                self.sockmon.count_drop(self.router)
                self.rlog.warning("reply", "could not deliver a reply: peer gone or not reading (%d queued for it)",
                                  self.config.orders_hwm)
                if not self._trims_left:
                    self._next_trim = time.monotonic() + TRIM_EVERY
                self._trims_left = TRIMS_AFTER_DROP
        if sent:  # once per batch: the replies of a group commit go out back to back
            self.sockmon.count_out(self.router, nbytes, sent)
        self._publish(batch.events)
        return True

    def _publish(self, events: list[ExecEvent]) -> None:
        send = self.pub.send
        epoch = self.epoch
        sent = nbytes = dropped = 0
        for ev in events:
            self.exec_seq += 1
            msg = ev.fill.to_message(self.exec_seq, epoch) if ev.__class__ is FillEvent else ev.order.to_update(self.exec_seq, epoch)
            frame = P.pub(msg)
            try:
                send(frame, zmq.NOBLOCK)
            except zmq.Again:
                self.stats.inc("dropped")
                dropped += 1
                continue
            sent += 1
            nbytes += len(frame)
        self.stats.inc("published", len(events))
        if sent:
            self.sockmon.count_out(self.pub, nbytes, sent)
        if dropped:
            self.sockmon.count_drop(self.pub, dropped)


@dataclass(frozen=True)
class ExchangeConfig:
    """Every option of the exchange gateway."""

    journal: str | None = option(
        None, "SQLite journal file", metavar="PATH", group="exchange",
        default_text=f"DATA_DIR/{DEFAULT_JOURNAL_NAME}, DATA_DIR from TICKDESK_DATA_DIR",
    )
    fresh: bool = option(False, "delete the journal at start: no recovery (tests, demos)", group="exchange")
    journal_sync: str = option(
        "normal", "normal: a committed order survives a process crash; full: also a power loss (fsync per batch)", choices=SYNC_MODES, group="exchange"
    )
    exec_hwm: int = option(
        DEFAULT_EXEC_HWM, "send high-water mark of the execution PUB, receive high-water mark of the orders ROUTER",
        check=at_least(0), group="exchange",
    )
    orders_hwm: int = option(
        DEFAULT_ORDERS_HWM, "send high-water mark of the orders ROUTER, per peer: replies a peer has not read beyond it are "
        "dropped and counted (reply_dropped), so a client that never reads cannot grow the gateway", check=at_least(1), group="exchange",
    )
    tick_hwm: int = option(DEFAULT_TICK_HWM, "receive high-water mark of the ticks SUB; beyond it ticks are dropped by ZeroMQ", check=at_least(0), group="exchange")
    market_wait: float = option(
        DEFAULT_MARKET_WAIT, "seconds after start during which a market order for a symbol without a tick yet waits for its first "
        "tick instead of being rejected 'no market data'; 0 = never wait", group="exchange",
    )
    batch: int = option(DEFAULT_BATCH, "most requests handled per journal commit (group commit)", group="exchange")
    exchange: str = option(
        "simulated", "the venue: simulated (the embedded simulator, every order kind its own), simulated-core (its matching "
        "core alone, market and limit orders: every other kind emulated by the gateway, orders say emulated: true), or "
        "fix (a FIX 4.4 venue, --fix-config; stops, brackets and OCO emulated)",
        choices=EXCHANGES, group="exchange",
    )
    fix_config: str = option(
        "", "with --exchange fix: the FIX 4.4 session settings file, QuickFIX style (docs/venues.md); credentials from "
        "the environment or a private file named there, never the command line", metavar="FILE", group="exchange",
    )
    session_end: str = option(
        "00:00", "when DAY orders expire, HH:MM (or HH:MM:SS) UTC, every day", check=_check_session_end, metavar="HH:MM", group="exchange",
    )
    hard: HardLimitsConfig = options_of(HardLimitsConfig)


def build_parser() -> argparse.ArgumentParser:
    return build_parser_for(
        ExchangeConfig,
        "main.py worker exchange",
        "Exchange gateway: orders on a ROUTER (REQ/DEALER clients), execution reports on a PUB, "
        "journaled in SQLite, matched by the embedded simulated exchange.",
    )


def main(argv: list[str]) -> int:
    return run_worker(ExchangeGateway, build_parser(), argv)


def _load_malloc_trim() -> Callable[[int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc.malloc_trim
    except (OSError, AttributeError):  # not glibc (musl has no malloc_trim)
        return None


_malloc_trim = _load_malloc_trim()


def _trim_heap() -> None:
    """Give freed heap back to the OS (glibc keeps it otherwise): after a peer's queued
    replies were freed, the gateway's RSS goes back down instead of staying at its peak."""
    if _malloc_trim is not None:
        _malloc_trim(0)


def _free_bytes(directory: Path) -> int:
    """Bytes an unprivileged writer may still use on ``directory``'s file system (no statvfs,
    e.g. Windows: unknown, so only the journal's own write decides)."""
    try:
        st = os.statvfs(directory)
    except (AttributeError, OSError):
        return FULL_RESUME_FREE
    return st.f_bavail * st.f_frsize
