"""The strategy worker process: ticks in, signals and levels out.

Sockets:

* SUB ``endpoints.ticks``: one exact subscription ``tick.<SYM>\\0`` per configured symbol
  (the NUL keeps ``tick.AAPL`` from also matching ``tick.AAPLX``), or ``tick.`` for all.
* PUSH ``endpoints.signals`` (connect): Signal and Levels payloads, one frame each, no topic
  (PUSH/PULL does not filter).  IMMEDIATE is on, so with no executor connected a signal is
  dropped and counted at once rather than queued and sent minutes later at a stale price;
  a dropped signal's virtual position is reverted.
* SUB ``endpoints.events`` on ``signal.``: the executor's SignalDecision for every signal;
  a rejection of one of ours reverts its virtual position.
* DEALER ``endpoints.snapshot`` (connect): ``get_snapshot`` to the market-data gateway at
  start and whenever ticks show an epoch it has not asked about, on a DealerClient driven by
  this loop (never waiting).  A symbol with no tick of the snapshot's epoch yet starts its
  window at the snapshot's tick, and later ticks with a lower or equal ``seq`` of that epoch
  are dropped as already seen (docs/strategy.md, "Joining the feed").

Run ``python main.py worker strategy --help`` for the options; docs/strategy.md explains them.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from typing import Any

import zmq

from workers import protocol as P
from workers.config import ConfigOf, at_least, build_parser_for, option, positive
from workers.errors import CommandError
from workers.order_client import DealerClient, RetryPolicy
from workers.runtime import Worker, run_worker
from workers.sequence import SeqKind, SequenceTracker
from workers.strategy.levels import MODES, SRStrategy, StrategyParams, SupportResistance, fmt_price
from workers.symbols import normalize_symbol, parse_symbols

COUNTERS = ("ticks", "signals", "levels", "decode_errors", "tick_gaps", "ticks_missed", "feed_restarts",
            "ticks_stale", "signals_dropped", "levels_dropped", "rejected", "accepted",
            "suppressed_cooldown", "suppressed_position", "symbols_dropped",
            "snapshots", "snapshot_failed", "snapshot_ticks", "ticks_before_snapshot")

#: a snapshot request waits this long for its reply, this many times, then the strategy goes on
#: with live ticks alone (and asks again on the next epoch it sees)
SNAPSHOT_POLICY = RetryPolicy(timeout=1.0, retries=3)


def strategy_symbols(value: Any) -> tuple[str, ...]:
    """``"aapl,MSFT"`` or a TOML list -> ``("AAPL", "MSFT")`` by the one symbol rule
    (:mod:`workers.symbols`, the rule the feed uses, so a symbol typed in lower case still
    matches its ticks); ``""`` or ``"*"`` -> ``()``, meaning every symbol on the feed."""
    items = [value] if isinstance(value, str) else value
    if isinstance(items, (list, tuple)) and any(
        isinstance(i, str) and "*" in i.replace(",", " ").split() for i in items
    ):
        return ()
    return parse_symbols(items)


class StrategyWorker(Worker):
    """Support/resistance strategy over the configured symbols (see module docstring)."""

    kind = "strategy"
    timer_interval = 0.1
    config = ConfigOf("StrategyConfig")

    def setup(self) -> None:
        a = self.config  # checked against StrategyConfig: a bad value is a ConfigError here (exit 2)
        self.symbols = a.symbols
        params = a.params
        self.levels_interval = a.levels_interval
        self.levels_refresh = a.levels_refresh
        self.max_symbols = a.max_symbols
        self.strategy = SRStrategy(self.name, params, count=self.stats.inc)
        for k in COUNTERS:
            self.stats.counters[k] = 0
        # per symbol, with the gateway's epoch (None from one that gives none: then a step back
        # is a restart)
        self.seq = SequenceTracker()
        #: symbol -> (epoch, seq) of the snapshot tick its window started at
        self._joined: dict[str, tuple[int | None, int]] = {}
        self._snap_epoch: int | None = None  # epoch of the last snapshot received
        self._asked_epoch: int | None = None  # epoch seen on ticks when we last asked
        self._gauged_params: StrategyParams | None = None
        self._levels_touched: set[str] = set()  # symbols with ticks since the last on_batch_end
        # levels throttle: symbol -> (last published state, monotonic time of that attempt)
        self._lv_sent: dict[str, tuple[tuple | None, float]] = {}
        self._lv_dirty: set[str] = set()
        self._next_refresh = time.monotonic() + self.levels_refresh

        ep = self.endpoints
        topics = [P.tick_topic(s) + P.TOPIC_SEP for s in self.symbols] or [b"tick."]
        self.ticks = self.socket(zmq.SUB, connect=ep.ticks, rcvhwm=a.tick_hwm, subscribe=topics)
        # IMMEDIATE: with no executor connected a signal is dropped at once (counted), never
        # queued to be executed later at a stale price
        self.out = self.socket(zmq.PUSH, connect=ep.signals, sndhwm=a.signal_hwm, options={zmq.IMMEDIATE: 1})
        self.events = self.socket(zmq.SUB, connect=ep.events, rcvhwm=100_000, subscribe=[b"signal."])
        # No IMMEDIATE: the request waits in the pipe and goes out the moment the connection is
        # up, which is when the tick subscription goes out too, so the reply usually comes before
        # the first live tick (a resend to a gateway that came late is answered twice; the
        # second answer is counted late and ignored)
        self.snap = self.socket(zmq.DEALER, connect=ep.snapshot)
        self.snapshots = DealerClient(self.snap, SNAPSHOT_POLICY, sockmon=self.sockmon)
        self.add_reader(self.ticks, self._on_tick)
        self.add_reader(self.events, self._on_event)
        self.add_reader(self.snap, self._on_snapshot_frames, multipart=True)
        self._ask_snapshot(None)
        for s in self.symbols:
            self.strategy.book(s)
        self._update_gauges()
        self.log.info("strategy %s on %s: %s", self.name, ",".join(self.symbols) or "all symbols", params.as_dict())

    # ------------------------------------------------------------------ ticks
    def _on_tick(self, frame: bytes) -> None:
        # One frame holds one tick (``tick``) or several of one symbol (``ticks``); either way
        # it is checked whole (P.tick_rows) before any of its ticks is acted on.
        try:
            sym, rows, epoch = P.tick_frame(frame)
        except P.ProtocolError as e:
            self.stats.inc("decode_errors")
            self.rlog.warning("tick", "dropped a bad tick frame: %s", e)
            return
        now = P.now_ns()
        stats = self.stats
        n = len(rows)
        stats.inc("ticks", n)
        # latency: frame decoded (now) minus each tick's creation time at the gateway
        if n == 1 or rows[0][1] == rows[-1][1]:
            # one stamp for the frame (the gateway stamps a frame as it sends it): one sample
            # per tick without a pass over the rows
            ts = rows[-1][1]
            stats.lat_many("tick_to_strategy", [now - ts if now > ts else 0] * n)
        else:
            stats.lat_many("tick_to_strategy", [now - r[1] if now > r[1] else 0 for r in rows])
        strategy = self.strategy
        if sym not in strategy.books and len(strategy.books) >= self.max_symbols:
            stats.inc("symbols_dropped", n)
            self.rlog.warning("symbols", "ignoring %s: already tracking %d symbols (--max-symbols)", sym, self.max_symbols)
            return
        on_price = strategy.on_price
        epoch = epoch or None  # 0: a gateway that gives no epoch (the tracker's step-back rule)
        if self.seq.check_run(sym, rows[0][0], rows[-1][0], n, epoch):  # the usual frame: next in line, no hole
            # a signal is stamped when it is made, not when its frame arrived
            if n == 1:  # a one-tick frame: no scan to set up
                sig = on_price(sym, rows[0][2], rows[0][1])
                if sig is not None:
                    self._send_signal(sig)
            else:
                for sig in strategy.on_rows(sym, rows):
                    self._send_signal(sig)
        else:
            check = self.seq.check
            if epoch != self._snap_epoch:
                self._ask_snapshot(epoch)  # a gateway we have no snapshot of: started, or restarted
            for seq, ts, price, *_ in rows:
                ev = check(sym, seq, epoch)
                kind = ev.kind
                if kind is not SeqKind.IN_ORDER and kind is not SeqKind.FIRST and not self._on_seq_event(ev):
                    continue
                sig = on_price(sym, price, ts)
                if sig is not None:
                    self._send_signal(sig)
        self._levels_touched.add(sym)

    def on_batch_end(self) -> None:
        # Levels once per wake-up, not per frame: they are throttled to --levels-interval
        # anyway, and the state after the last tick read is the one worth publishing.
        if self._levels_touched:
            mono = time.monotonic()
            for sym in self._levels_touched:
                self._maybe_levels(sym, mono)
            self._levels_touched.clear()

    def _on_seq_event(self, ev) -> bool:
        """A tick that is not the next one of its symbol: count it; True if it is to be used."""
        sym, seq, last = ev.key, ev.seq, ev.previous
        if ev.kind is SeqKind.GAP:
            self.stats.inc("tick_gaps")
            self.stats.inc("ticks_missed", ev.missing)
            self.rlog.warning("gap", "%s: tick gap, seq %d -> %d (%d missed)", sym, last, seq, ev.missing)
            return True
        if ev.kind is SeqKind.RESTART:
            # The gateway restarted (its first ticks may be gone before we reconnect, hence not
            # only seq 1).  Its prices need not continue the old series.
            self.stats.inc("feed_restarts")
            self.strategy.reset_window(sym)
            self._joined.pop(sym, None)
            # rate-limited: a peer that numbers every row 1 would otherwise write a line per tick
            self.rlog.info("restart", "%s: feed restarted (seq %d -> %d); levels rebuilt from new ticks", sym, last, seq)
            return True
        joined = self._joined.get(sym)
        if joined is not None and seq <= joined[1] and joined[0] == self.seq.stats(sym).epoch:
            # published before the snapshot this symbol's window started at: the join, not a fault
            self.stats.inc("ticks_before_snapshot")
            return False
        # a duplicate or late tick: trading on it again would act twice on one price
        self.stats.inc("ticks_stale")
        self.rlog.warning("stale", "%s: %s tick seq %d after %d dropped", sym, ev.kind.value, seq, last)
        return False

    # ------------------------------------------------------------------ snapshot (late joiner)
    def _ask_snapshot(self, epoch: int | None) -> None:
        """Ask the gateway for its snapshot, unless a request is out or this epoch was asked
        about already (a gateway without a snapshot endpoint is asked once per epoch)."""
        if self.snapshots.pending or (epoch is not None and epoch == self._asked_epoch):
            return
        self._asked_epoch = epoch
        req = P.GetSnapshot(symbols=list(self.symbols) or None)
        self.snapshots.submit(req, self.clock.monotonic(), self._on_snapshot)

    def next_wakeup(self, now: float) -> float | None:
        snapshots = self.snapshots
        if not snapshots.pending:
            return None
        snapshots.on_timeouts(now)
        return snapshots.next_deadline()

    def _on_snapshot_frames(self, frames: list[bytes]) -> None:
        if len(frames) < 2 or not self.snapshots.owns(frames[0]):
            self.stats.inc("decode_errors")
            self.rlog.warning("snapshot_frame", "dropped a snapshot reply of %d frames that answers nothing we asked", len(frames))
            return
        self.snapshots.on_reply(frames[0], frames[-1])

    def _on_snapshot(self, reply: P.Reply | None) -> None:
        if reply is None or not reply.ok or not isinstance(reply, P.GetSnapshotReply):
            self.stats.inc("snapshot_failed")
            why = "no reply" if reply is None else reply.reason or "refused"
            self.rlog.warning("snapshot", "no snapshot from %s (%s): trading on live ticks alone", self.endpoints.snapshot, why)
            return
        self.stats.inc("snapshots")
        epoch = reply.epoch or None
        self._snap_epoch = epoch
        strategy, wanted = self.strategy, set(self.symbols)
        for t in reply.ticks:
            sym = t.symbol
            if wanted and sym not in wanted:
                continue
            if sym not in strategy.books and len(strategy.books) >= self.max_symbols:
                continue
            st = self.seq.stats(sym)
            if st is not None and st.epoch == epoch:
                continue  # already on this incarnation's live stream: the snapshot adds nothing
            ev = self.seq.check(sym, t.seq, epoch)
            if ev.kind is SeqKind.RESTART:
                self.stats.inc("feed_restarts")
                strategy.reset_window(sym)
                self.rlog.info("restart", "%s: feed restarted (snapshot of a new epoch, seq %d -> %d); levels rebuilt from new ticks",
                               sym, ev.previous, t.seq)
            self._joined[sym] = (epoch, t.seq)
            self.stats.inc("snapshot_ticks")
            # its window is empty (new, or just reset), so this tick only joins it: it cannot signal
            sig = strategy.on_price(sym, t.last, t.ts)
            if sig is not None:
                self._send_signal(sig)
            self._levels_touched.add(sym)  # published by on_batch_end, after this read

    # ------------------------------------------------------------------ output
    def _push(self, msg: P.Message) -> bool:
        data = msg.pack()
        try:
            self.out.send(data, zmq.NOBLOCK)
        except zmq.Again:
            # one place for both kinds: signals_dropped and levels_dropped are counted by the callers
            self.sockmon.count_drop(self.out)
            return False
        self.sockmon.count_out(self.out, len(data))
        return True

    def _send_signal(self, sig: P.Signal) -> None:
        if self._push(sig):
            self.stats.inc("signals")
            self.log.info("signal %s: %s %d %s @ %s (%s)", sig.id, sig.side.value, sig.qty, sig.symbol, fmt_price(sig.price), sig.reason)
        else:
            # the executor never saw it, so it must not count towards our position
            self.strategy.on_rejected(sig)
            self.stats.inc("signals_dropped")
            self.rlog.warning("sig_drop", "signal %s dropped: no executor connected or its queue is full", sig.id)
        self._update_gauges()

    def _levels_state(self, b: SupportResistance) -> tuple:
        active = self.strategy.active and b.range.fill >= self.strategy.params.effective_min_fill
        return (b.support, b.resistance, b.position, active)

    def _maybe_levels(self, sym: str, mono: float) -> None:
        prev = self._lv_sent.get(sym)
        if prev is not None and mono - prev[1] < self.levels_interval:
            # throttled: whether the state changed is for on_timer to see (it compares and
            # publishes only a change), which spares the per-frame state tuple at high rates
            self._lv_dirty.add(sym)
            return
        state = self._levels_state(self.strategy.books[sym])
        if prev is not None and prev[0] == state:
            return
        if prev is None or mono - prev[1] >= self.levels_interval:
            self._publish_levels(sym, state, mono)
        else:
            self._lv_dirty.add(sym)

    def _publish_levels(self, sym: str, state: tuple, mono: float) -> None:
        sup, res, pos, active = state
        msg = P.Levels(strategy=self.name, symbol=sym, ts=P.now_ns(), support=sup, resistance=res, position=pos, active=active)
        self._lv_dirty.discard(sym)
        if self._push(msg):
            self.stats.inc("levels")
            self._lv_sent[sym] = (state, mono)
        else:
            self.stats.inc("levels_dropped")
            self._lv_sent[sym] = (None, mono)  # retried when the throttle allows

    def on_timer(self, now: float) -> None:
        if self._lv_dirty:
            for sym in list(self._lv_dirty):
                prev = self._lv_sent.get(sym)
                if prev is None or now - prev[1] >= self.levels_interval:
                    self._lv_dirty.discard(sym)
                    self._maybe_levels(sym, now)
        if now >= self._next_refresh:
            # periodic republish so a window that connects late still draws the levels
            self._next_refresh = now + self.levels_refresh
            for sym, b in self.strategy.books.items():
                if b.support is not None:
                    self._publish_levels(sym, self._levels_state(b), now)

    # ------------------------------------------------------------------ executor decisions
    def _on_event(self, frame: bytes) -> None:
        try:
            _, dec = P.decode_pub(frame, expect=P.SignalDecision)
        except P.ProtocolError as e:
            self.stats.inc("decode_errors")
            self.rlog.warning("event", "dropped a bad event frame: %s", e)
            return
        sig = dec.parsed_signal  # the protocol's accessor: the signal field's own type may change
        if sig.strategy != self.name:
            return
        if dec.accepted:
            self.stats.inc("accepted")
            self.strategy.on_accepted(sig.id)
            return
        if self.strategy.on_rejected(sig):
            self.stats.inc("rejected")
            self.log.info("signal %s rejected by the executor (%s); position reverted", sig.id, dec.reason)
            self._update_gauges()
            if sig.symbol in self.strategy.books:
                self._maybe_levels(sig.symbol, time.monotonic())

    # ------------------------------------------------------------------ control
    def on_pause(self, paused: bool) -> None:
        self.strategy.active = not paused
        mono = time.monotonic()
        for sym, b in self.strategy.books.items():
            if b.support is not None:
                self._maybe_levels(sym, mono)

    def on_command(self, cmd: str, args: dict) -> dict | None:
        if cmd == "get_params":
            return {"params": self.strategy.params.as_dict(), "positions": self.strategy.positions()}
        if cmd == "set_params":
            try:
                params = self.strategy.params.replace(**{str(k).replace("-", "_"): v for k, v in args.items()})
            except (ValueError, TypeError) as e:
                raise CommandError(str(e)) from None
            self.strategy.set_params(params)
            self._update_gauges()
            self.log.info("params updated: %s", args)
            return {"params": params.as_dict()}
        if cmd == "set_position":
            sym, qty = args.get("symbol"), args.get("qty")
            try:
                sym = normalize_symbol(sym)
            except ValueError as e:
                raise CommandError(f"set_position needs {{'symbol': str, 'qty': int}}: {e}") from None
            if isinstance(qty, bool) or not isinstance(qty, int):
                raise CommandError("set_position needs {'symbol': str, 'qty': int}")
            self.strategy.set_position(sym, qty)
            self._update_gauges()
            return {"positions": self.strategy.positions()}
        if cmd == "get_levels":
            out = {}
            for sym, b in self.strategy.books.items():
                sup, res, pos, active = self._levels_state(b)
                out[sym] = {"support": sup, "resistance": res, "position": pos, "active": active, "fill": b.range.fill}
            return {"levels": out}
        return super().on_command(cmd, args)

    def _update_gauges(self) -> None:
        g = self.stats.gauges
        params = self.strategy.params
        if params is not self._gauged_params:  # asdict() costs more than a signal: only on change
            self._gauged_params = params
            g["params"] = params.as_dict()
        g["positions"] = self.strategy.positions()
        g["symbols"] = list(self.symbols) or ["*"]


_P = StrategyParams()  # the strategy's own defaults: declared in StrategyParams, read here


@dataclass(frozen=True)
class StrategyConfig:
    """Every option of a strategy worker; the StrategyParams fields keep their defaults there."""

    symbols: tuple[str, ...] = option(("AAPL", "MSFT"), "comma-separated symbols to trade; '' or '*' for every symbol on the feed", check=strategy_symbols, group="strategy")
    window: int = option(_P.window, "ticks in the rolling window; support = its low, resistance = its high (current tick excluded)", group="strategy")
    min_fill: int = option(_P.min_fill, "ticks the window must hold before trading (capped at --window)", group="strategy")
    mode: str = option(_P.mode, "which signals to emit", choices=MODES, group="strategy")
    breakout_bps: float = option(_P.breakout_bps, "basis points beyond a level that make a breakout/breakdown", group="strategy")
    bounce_bps: float = option(_P.bounce_bps, "width of the touch zone above support / below resistance, in bps", group="strategy")
    turn_bps: float = option(_P.turn_bps, "bps the price must turn back from the touch extreme to confirm a bounce", group="strategy")
    min_range_bps: float = option(_P.min_range_bps, "no bounce signals while resistance - support is below this (bps of support)", group="strategy")
    cooldown: float = option(_P.cooldown, "seconds (tick time) between two signals of one symbol", group="strategy")
    qty: int = option(_P.qty, "quantity of each signal", group="strategy")
    max_position: int = option(_P.max_position, "largest absolute virtual position per symbol", group="strategy")
    allow_short: bool = option(_P.allow_short, "may a sell open or extend a short position", negatable=True, group="strategy")
    levels_interval: float = option(0.5, "seconds between two Levels messages of one symbol at most", check=at_least(0), group="output")
    levels_refresh: float = option(5.0, "seconds between republishing every symbol's levels unchanged", check=positive, group="output")
    signal_hwm: int = option(1000, "send high-water mark of the signals PUSH socket; beyond it signals are dropped and counted", group="output")
    tick_hwm: int = option(100_000, "receive high-water mark of the ticks SUB socket", group="output")
    max_symbols: int = option(1000, "with --symbols '*': most symbols tracked; ticks of further symbols are dropped", check=at_least(1), group="output")

    def __post_init__(self) -> None:
        self.params  # noqa: B018 -- StrategyParams checks the ranges (and min_fill against window)

    @property
    def params(self) -> StrategyParams:
        return StrategyParams(**{n: getattr(self, n) for n in StrategyParams.field_names()})


def build_parser() -> argparse.ArgumentParser:
    return build_parser_for(StrategyConfig, "main.py worker strategy", "Support/resistance strategy: SUB ticks, PUSH signals and levels to the executor.")


def main(argv: list[str]) -> int:
    return run_worker(StrategyWorker, build_parser(), argv)
