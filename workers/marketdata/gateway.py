"""Market-data gateway worker: a feed (simulated, replayed bars or a replayed recording) published as ticks on a PUB socket.

``python main.py worker marketdata [options]`` — see docs/marketdata.md.

Every frame is ``tick.<SYMBOL> NUL msgpack``, sent with NOBLOCK on a PUB bound to the ticks
endpoint with an explicit SNDHWM: the ticks of a symbol due at the same wake-up as one ``ticks``
frame (:func:`workers.protocol.encode_ticks`, up to ``--batch-ticks N``, default
:data:`DEFAULT_BATCH_TICKS`), never waiting for a batch to fill; a lone due tick, and every
tick with ``--batch-ticks 1``, as one ``tick`` frame (:func:`workers.protocol.pub`).

Pacing.  Ticks follow a schedule of evenly spaced due times (``1 / (rate * symbols)`` apart,
symbols taking turns).  The runtime loop calls :meth:`MarketDataGateway.next_wakeup` at the top
of every iteration; that is where due ticks are published, all of them in one burst, before
the method returns when to come back so that the loop sleeps in ``poll`` until then.
(The runtime calls no other hook when a ``next_wakeup`` time arrives — ``on_timer`` runs on its
own fixed interval — hence publishing from here.)  ``poll`` waits whole milliseconds (rounded
up), so a tick due within :data:`SLACK` seconds counts as due, and the gateway asks to come
back when the next tick enters that window: at high rates it wakes about every millisecond
and publishes one millisecond of ticks (the smallest bursts ``poll`` allows, which is what
keeps the latency of the last tick of a burst low), and it never spins on ``poll(0)``.
At rate 0 ("as fast as possible") one iteration publishes :data:`BATCH` ticks and asks to be
woken at once, so the loop still services commands and heartbeats between batches.

Depth.  With the simulated feed the gateway also publishes each symbol's order book as a
``depth`` message (topic ``depth.<SYMBOL>``, one frame like ticks) at most ``--depth-hz``
times a second per symbol: right after the tick frame whose last tick is the book's top, with
that tick's ``ts``, so that a depth's best levels are always the latest tick of its symbol
published before it (docs/marketdata.md, "Depth").  The book is read only then, never per tick.

Epoch and snapshot.  Every frame carries ``epoch``, the process's start time in ns, so a
consumer tells a restarted gateway (whose ``seq`` starts again) from late data.  A ROUTER on
the snapshot endpoint answers ``get_snapshot`` from the last-value cache
(:mod:`workers.marketdata.snapshot`), which each frame updates right after it was sent: the
snapshot is exact with respect to the stream.  At most :data:`SNAPSHOT_BATCH` requests are
served per wake-up and sends never wait, so requests cannot hold the ticks back.

Recording.  ``--feed recording --replay-file PATH`` replays a recording (whatever
:func:`workers.recording.open_recording` opens) in market time at ``--speed`` (1 = as recorded,
0 = as fast as possible), through the same frames, topics, snapshot and cache: the recorded
``ts``, the gateway's own ``seq`` and ``epoch`` (:mod:`workers.marketdata.recording_feed`).
The ticks of a symbol taken at one wake-up go out as one frame (cut to ``--batch-ticks``); with
``--batch-ticks 1`` every tick is a frame in exactly the recorded order across symbols.
Commands ``pause``/``resume`` (the runtime's), ``set_speed`` and ``seek`` move it; the
heartbeat's ``replay_*`` gauges say where it is (docs/marketdata.md, "Replay of recordings").
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass

import zmq

from workers import protocol as P
from workers.marketdata.replay_feed import (
    BAR_SECONDS,
    DEFAULT_SPREAD_BPS,
    DEFAULT_TICKS_PER_BAR,
    ReplayFeed,
    default_data_file,
)
from workers.config import ConfigOf, at_least, between, build_parser_for, option
from workers.marketdata.recording_feed import MarketClock, RecordingFeed, iso_ns
from workers.marketdata.sim_feed import DEFAULT_SYMBOLS, SimFeed
from workers.marketdata.snapshot import LastValueCache
from workers.errors import CommandError, ConfigError
from workers.runtime import Worker, run_worker, split_envelope
from workers.symbols import parse_symbols

#: most ticks published in one loop iteration (rate 0, or a backlog after a stall)
BATCH = 1000
#: a tick due this close in the future is published now (poll's millisecond granularity)
SLACK = 0.001
#: shortest sleep between two bursts: one poll tick (the runtime rounds up to whole ms, so
#: just under 1 ms -- 0.001 itself can come out as 1.0000000000000009 ms and round up to 2)
MIN_SLEEP = 0.0009
#: a burst carries at most this many seconds of ticks (catching up after a stall at <= 2x the rate)
MAX_BURST_S = 0.002
#: when the schedule is this far behind (the rate is more than we can do), restart it from now
MAX_LAG = 1.0
DEFAULT_RATE = 5.0
DEFAULT_SPEED = BAR_SECONDS / 5  # one daily bar every 5 seconds
#: the recording feed's default: market time as it was recorded
DEFAULT_RECORDING_SPEED = 1.0
MAX_RECORDING_SPEED = 100_000.0
DEFAULT_HWM = 100_000
#: 1 until every consumer of ticks reads the batched form (docs/performance.md)
DEFAULT_BATCH_TICKS = 256
#: depth messages per second per symbol: what a ladder repaints at (4 symbols: 40 frames a second)
DEFAULT_DEPTH_HZ = 10.0
MAX_DEPTH_HZ = 1000.0
MAX_RATE = 1_000_000.0
#: snapshot requests served per wake-up; the rest wait for the next turn of the loop
SNAPSHOT_BATCH = 8
#: replies queued per snapshot client beyond which further replies to it are dropped (counted)
SNAPSHOT_HWM = 16
_SNAPSHOT_TYPES = frozenset(c.TYPE for c in P.SNAPSHOT_REQUESTS)


class Schedule:
    """Due times of ticks, evenly spaced at ``rate`` ticks per second in all (0: as fast as possible).

    :meth:`take` says how many ticks are due at ``now`` (those due within :data:`SLACK` count)
    and when to come back.  The raw PUB/SUB baseline of ``bench/`` paces itself with this very
    class, so the two are compared at the same pacing.
    """

    __slots__ = ("interval", "next_due", "resets", "burst")

    def __init__(self, rate: float, start: float):
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self.next_due = start
        self.resets = 0
        # Most ticks in one burst: MAX_BURST_S worth.  After a stall (the simulator refills its
        # random numbers in ~1.3 ms blocks; the OS may deschedule us) the backlog goes out over
        # the next bursts at up to twice the rate instead of all at once, so subscribers never
        # get a pile of ticks that would wait behind each other.
        self.burst = max(1, min(BATCH, int(rate * MAX_BURST_S))) if rate > 0 else BATCH

    def restart(self, now: float) -> None:
        self.next_due = now

    def take(self, now: float) -> tuple[int, float]:
        """(ticks to publish now, monotonic time at which to call again)."""
        due = self.next_due
        if due > now + SLACK:
            return 0, max(due - SLACK, now + MIN_SLEEP)  # not yet (--start-delay, or between bursts)
        if self.interval <= 0:
            return BATCH, now
        if due < now - MAX_LAG:
            # We cannot keep up with the rate (or the process was stopped): do not burst the
            # whole backlog, carry on from now.
            self.resets += 1
            due = now
        n = max(1, min(self.burst, int((now + SLACK - due) / self.interval) + 1))
        self.next_due = due + n * self.interval
        # Come back when the next tick counts as due, but sleep at least MIN_SLEEP: at high
        # rates that tick is due at once, and coming straight back would publish a tick or two
        # per loop turn, spinning.  poll's smallest wait is 1 ms anyway.
        return n, max(self.next_due - SLACK, now + MIN_SLEEP)


class MarketDataGateway(Worker):
    kind = "marketdata"
    timer_interval = 0.25  # only refreshes gauges
    config = ConfigOf("MarketDataConfig")

    def setup(self) -> None:
        a = self.config  # checked against MarketDataConfig: a bad value is a ConfigError here (exit 2)
        #: this incarnation: on every frame and snapshot, a new value after every restart
        self.epoch = time.time_ns()
        self.lvc = LastValueCache()
        self._snap_reply: tuple[object, int, bytes] | None = None  # (symbols, lvc version, packed reply)
        symbols = parse_symbols(a.symbols)
        if a.feed == "replay":
            self.feed = ReplayFeed(
                a.file or default_data_file(),
                symbols or None,
                ticks_per_bar=a.ticks_per_bar,
                spread_bps=a.spread_bps,
                loop=a.loop,
                seed=a.seed,
            )
            if self.feed.data.skipped:
                self.log.warning("%s: skipped %d unusable row(s); first: %s", self.feed.path, self.feed.data.skipped, self.feed.data.first_error)
            if symbols and len(self.feed.symbols) < len(symbols):
                self.log.warning("symbols not in %s: %s", self.feed.path, ", ".join(sorted(set(symbols) - set(self.feed.symbols))))
            rate = speed_to_rate(DEFAULT_SPEED if a.speed is None else a.speed, a.ticks_per_bar)
        elif a.feed == "recording":
            self.feed = self._open_recording(a, symbols)
            rate = 0.0
        else:
            self.feed = SimFeed(symbols or DEFAULT_SYMBOLS, seed=a.seed)
            rate = a.rate
        self.sock = self.socket(zmq.PUB, bind=self.endpoints.ticks, sndhwm=a.hwm)
        # ROUTER_MANDATORY: a reply to a client that is gone or not reading raises, to be counted
        self.snap = self.socket(zmq.ROUTER, bind=self.endpoints.snapshot, sndhwm=SNAPSHOT_HWM,
                                options={zmq.ROUTER_MANDATORY: 1})
        self.add_reader(self.snap, self._on_snapshot_requests, multipart=True, drains=True)
        for k in ("snapshot_requests", "snapshots", "snapshot_errors", "snapshot_replies_dropped", "depth_frames"):
            self.stats.counters[k] = 0
        self._nsym = len(self.feed.symbols)
        self._max_ticks = a.max_ticks
        self._emitted = 0  # ticks taken from the feed (published + dropped)
        self._published = 0
        self._done = False
        self._paused = False
        self._batch = a.batch_ticks
        self._rr = 0
        # (symbol, next-tick function) per symbol when the feed can make ticks symbol by symbol
        self._per_symbol = [(sym, self.feed.sims[sym].rows) for sym in self.feed.symbols] if isinstance(self.feed, SimFeed) else None
        # Depth: the simulated feed's books only (a replayed file has no book; docs/marketdata.md)
        self._books = {sym: self.feed.sims[sym].book for sym in self.feed.symbols} if isinstance(self.feed, SimFeed) else {}
        self._depth_interval = 1.0 / a.depth_hz if a.depth_hz > 0 and self._books else 0.0
        self._depth_due = dict.fromkeys(self._books, 0.0)  # monotonic time from which a depth may go
        self._depth_seq = dict.fromkeys(self._books, 0)
        if a.depth_hz > 0 and not self._books:
            self.log.info("--depth-hz %g: the %s feed has no order book, no depth is published", a.depth_hz, a.feed)
        self._set_rate(rate, start=time.monotonic() + max(0.0, a.start_delay))
        self._rate_mark = (time.monotonic(), 0)
        g = self.stats.gauges
        g.update(feed=a.feed, symbols=self._nsym, ticks_per_s=0.0, done=False, epoch=self.epoch,
                 depth_hz=a.depth_hz if self._depth_interval else 0.0)
        self._rec: RecordingFeed | None = None
        if isinstance(self.feed, RecordingFeed):
            self._setup_recording(a)
        self.log.info(
            "%s feed, %d symbols (%s), %s on %s, SNDHWM %d, epoch %d, snapshots on %s",
            a.feed, self._nsym, ",".join(self.feed.symbols),
            self._pace_text() if self._rec is not None else "as fast as possible" if rate == 0 else f"{rate:g} ticks/s per symbol",
            self.endpoints.ticks, a.hwm, self.epoch, self.endpoints.snapshot,
        )

    # ------------------------------------------------------------------ pacing
    def _set_rate(self, rate: float, start: float | None = None) -> None:
        self._rate = rate
        self._schedule = Schedule(rate * self._nsym, time.monotonic() if start is None else start)
        self._resets_seen = 0
        self.stats.gauges["rate"] = rate
        if isinstance(self.feed, ReplayFeed):
            self.stats.gauges["speed"] = rate_to_speed(rate, self.feed.ticks_per_bar)

    def next_wakeup(self, now: float) -> float | None:
        if self._paused or self._done:
            return None
        try:
            if self._rec is not None:
                return self._pump_recording(now)
            return self._pump(now)
        except Exception as e:  # an exception here would end the runtime loop: count it, go on
            self.stats.inc("feed_errors")
            self.rlog.warning("pump", "publishing failed: %s: %s", type(e).__name__, e)
            return now + 0.1

    def _pump(self, now: float) -> float:
        n, wake = self._schedule.take(now)
        if self._schedule.resets != self._resets_seen:
            self.stats.inc("schedule_resets", self._schedule.resets - self._resets_seen)
            self._resets_seen = self._schedule.resets
        if n:
            self._publish(n)
        return wake

    def _publish(self, n: int) -> None:
        if self._max_ticks:
            n = min(n, self._max_ticks - self._emitted)
        if n <= 0:
            return
        if self._batch > 1 and n > 1:
            if self._per_symbol is not None:
                sent, dropped = self._publish_per_symbol(n)
            else:
                sent, dropped = self._publish_grouped(n)
        else:
            sent, dropped = self._publish_each(n)
        self._emitted += sent + dropped
        self._published += sent
        if sent:
            self.stats.inc("ticks", sent)
        if dropped:
            self.stats.inc("dropped", dropped)
        if self._max_ticks and self._emitted >= self._max_ticks:
            self._finish(f"--max-ticks {self._max_ticks} reached")

    def _publish_each(self, n: int) -> tuple[int, int]:
        """One ``tick`` frame per tick (the classic form)."""
        nxt, send, encode, nb = self.feed.next, self.sock.send, P.encode_ticks, zmq.NOBLOCK
        epoch, update = self.epoch, self.lvc.update
        depth_due = self._depth_due if self._depth_interval else None
        now = self.clock.monotonic()  # the loop's clock: what depth_due is set from
        sent = dropped = nbytes = 0
        for _ in range(n):
            t = nxt()
            if t is None:
                self._finish("replay reached the end of the file")
                break
            rows = [[t.seq, t.ts, t.last, t.bid, t.ask, t.bid_size, t.ask_size, t.volume]]
            frame = encode(t.symbol, rows, epoch)
            try:
                send(frame, nb)
            except zmq.Again:
                # PUB drops silently at SNDHWM, so this rarely fires; subscribers see the gap in seq
                dropped += 1
                continue
            sent += 1
            nbytes += len(frame)
            update(t.symbol, rows)
            if depth_due is not None and now >= depth_due[t.symbol]:
                self._send_depth(t.symbol, t.ts, now)
        self.stats.inc("frames", sent)
        # once per burst, not per frame: here a frame is a tick
        if sent:
            self.sockmon.count_out(self.sock, nbytes, sent)
        if dropped:
            self.sockmon.count_drop(self.sock, dropped)
        return sent, dropped

    def _send_rows(self, symbol: str, rows: list[list]) -> bool:
        frame = P.encode_ticks(symbol, rows, self.epoch)
        try:
            self.sock.send(frame, zmq.NOBLOCK)
        except zmq.Again:
            self.sockmon.count_drop(self.sock)  # the socket counts frames; _publish counts the ticks
            return False
        self.lvc.update(symbol, rows)  # after the send: the cache holds what subscribers were sent
        self.stats.inc("frames")
        self.sockmon.count_out(self.sock, len(frame))
        return True

    def _publish_per_symbol(self, n: int) -> tuple[int, int]:
        """The simulated feed makes ticks symbol by symbol.  First make every tick of the burst
        (the simulator's work, including its occasional block refill of ~1.5 ms), then stamp,
        pack and send the frames back to back, each stamped just before it is packed: the
        gateway's own time between a tick's ``ts`` and its frame leaving is one pack and one
        send, and it goes back to sleep (freeing the core) right after the last send."""
        gens = self._per_symbol
        nsym = len(gens)
        base, extra = divmod(n, nsym)
        start = self._rr
        self._rr = (start + extra) % nsym
        cap = self._batch
        parts = []
        for j in range(nsym):
            k = base + (1 if j < extra else 0)
            if k:
                symbol, make_rows = gens[(start + j) % nsym]
                rows = make_rows(k)
                for i in range(0, k, cap):
                    parts.append((symbol, rows[i:i + cap] if k > cap else rows, i + cap >= k))
        clock = time.time_ns
        # the simulator's book is at the last tick made of each symbol: the last part's last row
        depth_due = self._depth_due if self._depth_interval else None
        now = self.clock.monotonic()  # the loop's clock: what depth_due is set from
        sent = dropped = 0
        for symbol, rows, last_part in parts:
            ts = clock()
            for r in rows:
                r[1] = ts
            if self._send_rows(symbol, rows):
                sent += len(rows)
                if last_part and depth_due is not None and now >= depth_due[symbol]:
                    self._send_depth(symbol, ts, now)
            else:
                dropped += len(rows)
        return sent, dropped

    def _send_depth(self, symbol: str, ts: int, now: float) -> None:
        """Publish ``symbol``'s book, just after the tick frame it is the book of (``ts`` is that
        frame's): the caller has checked that it is due.  Not sent when that tick frame was
        refused, so a depth never stands for a tick nobody was sent."""
        self._depth_due[symbol] = now + self._depth_interval
        try:
            bids, asks = self._books[symbol]()
            msg = P.Depth(symbol, self._depth_seq[symbol] + 1, ts, bids, asks, epoch=self.epoch)
        except Exception as e:  # a bug in the book costs its depth, not the ticks of the burst after it
            self.stats.inc("depth_errors")
            self.rlog.warning("depth", "no depth for %s: %s: %s", symbol, type(e).__name__, e)
            return
        self._publish_depth(msg)

    def _publish_depth(self, msg: P.Depth) -> None:
        """Send a depth message (its seq the symbol's next) and keep it in the cache."""
        try:
            frame = P.pub(msg)
        except Exception as e:
            self.stats.inc("depth_errors")
            self.rlog.warning("depth", "no depth for %s: %s: %s", msg.symbol, type(e).__name__, e)
            return
        self._depth_seq[msg.symbol] = msg.seq
        try:
            self.sock.send(frame, zmq.NOBLOCK)
        except zmq.Again:
            # like a dropped tick frame: its seq is gone, subscribers see the gap
            self.stats.inc("depth_dropped")
            self.sockmon.count_drop(self.sock)
            return
        self.lvc.update_depth(msg)
        # "frames" stays every frame of the PUB (what its socket counts out); depth_frames the depth among them
        self.stats.inc("frames")
        self.stats.inc("depth_frames")
        self.sockmon.count_out(self.sock, len(frame))

    def _publish_grouped(self, n: int) -> tuple[int, int]:
        """Any other feed: take ``n`` ticks in feed order, then one frame per symbol."""
        nxt = self.feed.next
        groups: dict[str, list[list]] = {}
        for _ in range(n):
            t = nxt()
            if t is None:
                self._finish("replay reached the end of the file")
                break
            rows = groups.get(t.symbol)
            if rows is None:
                rows = groups[t.symbol] = []
            rows.append([t.seq, t.ts, t.last, t.bid, t.ask, t.bid_size, t.ask_size, t.volume])
        sent = dropped = 0
        cap = self._batch
        for symbol, rows in groups.items():
            for i in range(0, len(rows), cap):
                part = rows[i:i + cap]
                if self._send_rows(symbol, part):
                    sent += len(part)
                else:
                    dropped += len(part)
        return sent, dropped

    def _finish(self, why: str) -> None:
        if not self._done:
            self._done = True
            self.stats.gauges["done"] = True
            self.log.info("stopped publishing after %d ticks: %s", self._emitted, why)

    # ------------------------------------------------------------------ the recording feed
    def _open_recording(self, a, symbols) -> RecordingFeed:
        from workers.recording import RecordingError

        if not a.replay_file:
            raise ConfigError("--feed recording needs --replay-file PATH (a recording folder, a Parquet file or a tick CSV)")
        try:
            return RecordingFeed.open(a.replay_file, symbols or None, loop=a.loop)
        except RecordingError as e:  # unreadable or untrustworthy: refuse to start, say why
            raise ConfigError(f"--replay-file: {e}") from None

    def _setup_recording(self, a) -> None:
        rec = self._rec = self.feed
        if not rec.symbols or rec.last_ts < rec.first_ts:
            raise ConfigError(f"--replay-file {a.replay_file}: no ticks to replay")
        speed = DEFAULT_RECORDING_SPEED if a.speed is None else a.speed
        if speed > MAX_RECORDING_SPEED:
            raise ConfigError(f"--speed {speed:g}: the recording feed goes at most {MAX_RECORDING_SPEED:g}x (0 = as fast as possible)")
        self._start_at = self.clock.monotonic() + max(0.0, a.start_delay)
        self._mclock = MarketClock(speed, self._start_at, rec.first_ts)
        self._frozen = rec.first_ts  # market time while paused
        if a.start_paused:
            self._paused = True
        self._rec_seq = dict.fromkeys(rec.symbols, 0)
        self._depth_seq = dict.fromkeys(rec.symbols, 0)
        self._loops_seen = 0
        self._depth_interval = 0.0  # recorded depth goes out as recorded, not from a book
        g = self.stats.gauges
        g.pop("rate", None)
        g.update(replay=True, replay_file=str(a.replay_file), replay_first_ts=rec.first_ts, replay_last_ts=rec.last_ts,
                 replay_ticks=rec.n_ticks, depth_hz=0.0)
        self._replay_gauges()

    def _pace_text(self) -> str:
        s = self._mclock.speed
        return f"{self._rec.n_ticks:,} recorded ticks from {iso_ns(self._rec.first_ts)} to {iso_ns(self._rec.last_ts)} UTC at " + (
            "as fast as possible" if s <= 0 else f"{s:g}x market time")

    def _replay_gauges(self) -> None:
        rec = self._rec
        g = self.stats.gauges
        g.update(speed=self._mclock.speed, replay_ts=rec.position_ts, replay_fraction=round(rec.fraction, 4),
                 replay_paused=self._paused, replay_loops=rec.loops,
                 replay_status="finished" if self._done else "paused" if self._paused else "playing")

    def _market_now(self, now: float) -> int:
        """Where market time is: frozen while paused; the position at speed 0 (no clock)."""
        if self._paused:
            return self._frozen
        if self._mclock.speed <= 0:
            return self._rec.position_ts
        return self._mclock.market_at(now)

    def _pump_recording(self, now: float) -> float | None:
        if now < self._start_at:
            return self._start_at
        rec, clock = self._rec, self._mclock
        nts = rec.next_ts()
        if rec.loops != self._loops_seen:  # the recording started over: so does market time
            self._loops_seen = rec.loops
            clock.anchor(now, rec.first_ts)
        if nts is None:
            self._finish_replay()
            return None
        due = clock.due_by(now + SLACK)
        if due is not None and clock.wall_at(nts) < now - MAX_LAG:
            # more is due than we can publish at this speed: carry on from here, no burst of the backlog
            self.stats.inc("schedule_resets")
            clock.anchor(now, nts)
            due = clock.due_by(now + SLACK)
        cap = BATCH
        if self._max_ticks:
            cap = min(cap, self._max_ticks - self._emitted)
            if cap <= 0:
                self._finish(f"--max-ticks {self._max_ticks} reached")
                return None
        items = rec.take(due, cap, self._batch)
        rows = self._publish_events(items) if items else 0
        if self._max_ticks and self._emitted >= self._max_ticks:
            self._finish(f"--max-ticks {self._max_ticks} reached")
            return None
        nts = rec.next_ts()
        if nts is None:
            self._finish_replay()
            return None
        if due is None or rows >= cap or rec.loops != self._loops_seen:
            return now  # as fast as possible, or more is due: the loop services commands, then comes back
        return max(clock.wall_at(nts) - SLACK, now + MIN_SLEEP)

    def _publish_events(self, items: list) -> int:
        """Publish recorded events taken at one wake-up: the ticks of a symbol as one frame
        per ``--batch-ticks`` rows, symbols in the order of their first row (the simulated
        feed's batched form; with ``--batch-ticks 1`` every tick is a frame, in exactly the
        recorded order across symbols), with the gateway's own seq and the recorded ts.  A
        recorded depth goes right after the ticks of its symbol that came before it.
        Returns the tick rows taken."""
        seqs, cap = self._rec_seq, self._batch
        groups: dict[str, list] = {}
        taken = sent = 0

        def flush(sym: str) -> None:
            nonlocal sent
            rows = groups.pop(sym)
            for i in range(0, len(rows), cap):
                part = rows[i:i + cap] if len(rows) > cap else rows
                if self._send_rows(sym, part):
                    sent += len(part)
                # else: a gap in seq for subscribers, as any dropped frame

        for kind, sym, payload in items:
            if kind == "ticks":
                s = seqs[sym]
                n = len(payload)
                rows = payload  # fresh lists from the feed: the gateway's seq goes into them
                for q, r in zip(range(s + 1, s + 1 + n), rows):
                    r[0] = q
                seqs[sym] = s + n
                taken += n
                if cap == 1:
                    groups[sym] = rows
                    flush(sym)
                elif sym in groups:
                    groups[sym].extend(rows)
                else:
                    groups[sym] = rows
            elif kind == "depth" and sym in self._depth_seq:
                if sym in groups:
                    flush(sym)
                self._publish_depth(P.Depth(sym, self._depth_seq[sym] + 1, payload.ts, payload.bids, payload.asks, epoch=self.epoch))
        for sym in list(groups):
            flush(sym)
        self._emitted += taken
        self._published += sent
        if sent:
            self.stats.inc("ticks", sent)
        if taken > sent:
            self.stats.inc("dropped", taken - sent)
        return taken

    def _finish_replay(self) -> None:
        if not self._done:
            self._finish("replay finished: the end of the recording")
            self.stats.gauges["status"] = "replay finished"
            self._replay_gauges()

    def _seek(self, args: dict) -> dict:
        rec = self._rec
        before = rec.position_ts
        if "fraction" in args:
            target = rec.seek_fraction(_number_arg(args, "fraction", 0.0, 1.0))
        elif "ts" in args:
            ts = args["ts"]
            if isinstance(ts, bool) or not isinstance(ts, int):
                raise CommandError(f"'ts' must be an integer (ns since the epoch, market time), got {ts!r}")
            target = rec.seek(ts)
        else:
            raise CommandError("seek needs 'ts' (ns, market time) or 'fraction' (0..1)")
        now = self.clock.monotonic()
        self._loops_seen = rec.loops
        self._mclock.anchor(max(now, self._start_at), target)
        self._frozen = target
        if target < before:
            self._forget_bars_from(target)
        if self._done and not (self._max_ticks and self._emitted >= self._max_ticks):
            self._done = False  # a finished replay plays again from where it was sent
            self.stats.gauges["done"] = False
            self.stats.gauges.pop("status", None)
        self._replay_gauges()
        self.log.info("replay: seek to %s UTC (%.1f%%)", iso_ns(target), 100 * rec.fraction)
        return {"ts": target, "fraction": rec.fraction}

    def _forget_bars_from(self, ts: int) -> None:
        """After a seek back the cache's bars after ``ts``'s own would be made a second time
        (the newest bar would swallow every replayed tick): drop them, the replay makes them again."""
        for series in self.lvc.series:
            start = ts - ts % series.bar_ns
            for bars in series.bars.values():
                while bars and bars[-1][0] > start:
                    bars.pop()
        self.lvc.version += 1

    def _set_replay_speed(self, speed: float) -> None:
        now = self.clock.monotonic()
        m = self._market_now(now)
        self._mclock.speed = speed
        self._mclock.anchor(max(now, self._start_at), m)
        self._replay_gauges()
        self.log.info("replay speed %s", "as fast as possible" if speed <= 0 else f"{speed:g}x")

    # ------------------------------------------------------------------ the snapshot endpoint
    def _on_snapshot_requests(self, first: list[bytes]) -> None:
        frames = first
        for i in range(SNAPSHOT_BATCH):
            if i:
                try:
                    frames = self.snap.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    return
            self._serve_snapshot(frames)

    def _serve_snapshot(self, frames: list[bytes]) -> None:
        self.stats.inc("snapshot_requests")
        envelope, body = split_envelope(frames)
        if envelope is None:
            self._snapshot_error("dropped a snapshot request with no routable envelope")
            return
        if len(body) != 1:
            reply = P.error_reply(f"a request is exactly one frame, got {len(body)}")
            self._snapshot_error("snapshot request of %d body frames", len(body))
        else:
            try:
                msg = P.decode(body[0], expect=P.SNAPSHOT_REQUESTS)
            except P.ProtocolError as e:
                # under get_snapshot_reply if that is what it tried to be, else a plain error:
                # a reply named after another endpoint's request would be unreadable here
                rtype = P.peek_type(body[0])
                reply = P.error_reply(str(e), rtype if rtype in _SNAPSHOT_TYPES else "")
                self._snapshot_error("bad snapshot request: %s", e)
            else:
                try:
                    reply = self._snapshot_bytes(msg)
                except Exception as e:  # a bug must cost one request, not the feed
                    self.stats.inc("handler_errors")
                    reply = P.error_reply(f"internal error on get_snapshot: {type(e).__name__}: {e}")
                    self.rlog.warning("snapshot_bug", "get_snapshot failed: %s: %s", type(e).__name__, e)
                else:
                    self.stats.inc("snapshots")
        send = self.snap.send
        try:
            for f in envelope:
                send(f, zmq.SNDMORE | zmq.NOBLOCK)
            send(reply, zmq.NOBLOCK)
            self.sockmon.count_out(self.snap, sum(map(len, envelope)) + len(reply))
        except zmq.ZMQError:  # the client is gone, or has SNAPSHOT_HWM replies unread
            self.stats.inc("snapshot_replies_dropped")
            self.sockmon.count_drop(self.snap)
            self.rlog.warning("snapshot_reply", "could not deliver a snapshot reply: client gone or not reading")

    def _snapshot_error(self, msg: str, *args) -> None:
        self.stats.inc("snapshot_errors")
        self.rlog.warning("snapshot_bad", msg, *args)

    def _snapshot_bytes(self, req: P.GetSnapshot) -> bytes:
        """The packed reply, built once per state of the cache and symbol list: a burst of
        joiners (a fleet restarting) costs one encoding, not one each."""
        key = None if req.symbols is None else tuple(req.symbols)
        cached = self._snap_reply
        if cached is not None and cached[0] == key and cached[1] == self.lvc.version:
            return cached[2]
        data = self.lvc.snapshot(self.epoch, req.symbols).pack()
        self._snap_reply = (key, self.lvc.version, data)
        return data

    # ------------------------------------------------------------------ runtime hooks
    def on_timer(self, now: float) -> None:
        t0, n0 = self._rate_mark
        if now - t0 >= 1.0:
            self.stats.gauges["ticks_per_s"] = round((self._published - n0) / (now - t0), 1)
            self._rate_mark = (now, self._published)
        if self._rec is not None:
            self._replay_gauges()
        if isinstance(self.feed, ReplayFeed):
            d = self.feed.current_date
            self.stats.gauges["replay_date"] = d.isoformat() if d else ""
            self.stats.gauges["replay_loops"] = self.feed.loops

    def on_pause(self, paused: bool) -> None:
        if self._rec is not None:
            now = self.clock.monotonic()
            if paused and not self._paused:
                self._frozen = self._market_now(now)
            elif not paused and self._paused:
                self._mclock.anchor(max(now, self._start_at), self._frozen)  # no burst of the paused time
            self._paused = paused
            self._replay_gauges()
            return
        self._paused = paused
        if not paused:
            self._schedule.restart(time.monotonic())  # resume at the rate, without a burst of the backlog

    def on_command(self, cmd: str, args: dict) -> dict | None:
        if cmd == "set_rate" and self._rec is not None:
            raise CommandError("set_rate applies to the simulated feed; a recording's pace is set_speed (1 = as recorded)")
        if cmd == "set_rate":
            rate = _number_arg(args, "rate", 0.0, MAX_RATE)
            self._set_rate(rate)
            self.log.info("rate set to %g ticks/s per symbol", rate)
            return {"rate": rate}
        if cmd == "set_depth_hz":
            hz = _number_arg(args, "hz", 0.0, MAX_DEPTH_HZ)
            if hz and not self._books:
                raise CommandError(f"the {self.config.feed} feed has no order book: no depth to publish"
                                   + (" (a recording's depth goes out as recorded)" if self._rec is not None else ""))
            self._depth_interval = 1.0 / hz if hz else 0.0
            self._depth_due = dict.fromkeys(self._books, 0.0)  # the next tick of each symbol carries one
            self.stats.gauges["depth_hz"] = hz
            self.log.info("depth set to %g per second per symbol", hz)
            return {"hz": hz}
        if cmd == "set_speed" and self._rec is not None:
            speed = _number_arg(args, "speed", 0.0, MAX_RECORDING_SPEED)
            self._set_replay_speed(speed)
            return {"speed": speed}
        if cmd == "seek":
            if self._rec is None:
                raise CommandError("seek applies to the recording feed (--feed recording)")
            return self._seek(args)
        if cmd == "replay_status" and self._rec is not None:
            self._replay_gauges()
            g = self.stats.gauges
            return {k: g[k] for k in ("speed", "replay_ts", "replay_fraction", "replay_paused", "replay_status", "replay_loops")}
        if cmd == "set_speed":
            if not isinstance(self.feed, ReplayFeed):
                raise CommandError("set_speed applies to the replay feed; use set_rate")
            speed = _number_arg(args, "speed", 0.0, MAX_RATE * BAR_SECONDS)
            self._set_rate(speed_to_rate(speed, self.feed.ticks_per_bar))
            return {"speed": speed, "rate": self._rate}
        return super().on_command(cmd, args)


# ---------------------------------------------------------------------------- helpers


def speed_to_rate(speed: float, ticks_per_bar: int) -> float:
    """Replay speed (market seconds per wall second) as ticks per second per symbol."""
    return speed * ticks_per_bar / BAR_SECONDS


def rate_to_speed(rate: float, ticks_per_bar: int) -> float:
    return rate * BAR_SECONDS / ticks_per_bar


def _number_arg(args: dict, name: str, lo: float, hi: float) -> float:
    v = args.get(name)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not lo <= v <= hi:
        raise CommandError(f"'{name}' must be a number in [{lo:g}, {hi:g}], got {v!r}")
    return float(v)


def _symbols_check(text: str) -> str:
    parse_symbols(text)  # the one symbol rule; the text itself is kept (setup parses it again)
    return text


def _ticks_per_bar_check(v: int) -> int:
    if v < 4:
        raise ValueError(f"a bar needs at least 4 ticks (open, high, low, close), got {v}")
    return v


@dataclass(frozen=True)
class MarketDataConfig:
    """Every option of the market-data gateway (see workers.config for how it is declared)."""

    feed: str = option("sim", "tick source: sim (simulated market), replay (historical daily bars) or recording (a recording "
                              "replayed in market time, --replay-file)", choices=("sim", "replay", "recording"), group="feed")
    symbols: str = option(
        "", "comma-separated symbols", check=_symbols_check, join=True, group="feed",
        default_text=f"sim {','.join(DEFAULT_SYMBOLS)}; replay every symbol in --file",
    )
    rate: float = option(DEFAULT_RATE, "sim: ticks per second per symbol, 0 = as fast as possible", check=at_least(0), group="feed")
    seed: int | None = option(None, "random seed; the same seed gives the same prices and sizes", default_text="a fresh random seed", group="feed")
    max_ticks: int = option(0, "stop publishing after this many ticks in all, 0 = unlimited; the process stays up", check=at_least(0), group="feed")
    start_delay: float = option(0.0, "seconds to wait after binding before the first tick, so subscribers can connect", check=at_least(0), group="feed")
    file: str | None = option(
        None, "replay: daily OHLCV CSV (date,open,high,low,close,volume[,symbol])", default_text=str(default_data_file()), group="replay"
    )
    speed: float | None = option(
        None, "replay, recording: market seconds per wall-clock second, 0 = as fast as possible; replay: 86400 = one daily bar "
              "per second; recording: 1 = as recorded, 10 = ten times faster",
        check=at_least(0), group="replay", default_text=f"replay {DEFAULT_SPEED:g}, recording {DEFAULT_RECORDING_SPEED:g}",
    )
    replay_file: str | None = option(
        None, "recording: what to replay: a recording folder (<data-dir>/recordings/<name>), a ticks Parquet file or folder, "
              "a tick CSV or a daily OHLCV CSV (workers/recording.py open_recording)", group="replay", metavar="PATH",
    )
    loop: bool = option(False, "replay, recording: start again from the beginning at the end", default_text="stop at the end", group="replay")
    start_paused: bool = option(
        False, "recording: open the replay paused at its first tick, to be started with Resume in the window (or the resume "
               "command) once every subscriber is ready", default_text="play at once", group="replay")
    ticks_per_bar: int = option(DEFAULT_TICKS_PER_BAR, "replay: ticks derived from each daily bar, at least 4", check=_ticks_per_bar_check, group="replay")
    spread_bps: float = option(DEFAULT_SPREAD_BPS, "replay: synthetic bid/ask spread in basis points", check=at_least(0), group="replay")
    hwm: int = option(DEFAULT_HWM, "SNDHWM of the PUB socket, in messages per subscriber", check=at_least(1), group="publisher")
    depth_hz: float = option(
        DEFAULT_DEPTH_HZ,
        "sim: most 'depth' messages (the order book, topic depth.<SYMBOL>) per second per symbol, each with the "
        "latest book right after the tick frame it is the book of; 0 = no depth (the replay feed publishes none)",
        check=between(0, MAX_DEPTH_HZ), group="publisher",
    )
    batch_ticks: int = option(
        DEFAULT_BATCH_TICKS,
        "most ticks of one symbol in one frame: the ticks of a symbol due at the same wake-up go out as one 'ticks' "
        "message (never waiting for more); 1 = one 'tick' frame per tick, the classic form every consumer reads; "
        f"at most {P.MAX_TICKS_PER_FRAME}",
        check=between(1, P.MAX_TICKS_PER_FRAME), group="publisher",
    )


def build_parser() -> argparse.ArgumentParser:
    return build_parser_for(
        MarketDataConfig,
        "main.py worker marketdata",
        "Market-data gateway: publishes simulated or replayed ticks on the ticks endpoint (PUB, topic tick.<SYMBOL>), "
        "and the simulated order book (topic depth.<SYMBOL>).",
    )


def main(argv: list[str]) -> int:
    return run_worker(MarketDataGateway, build_parser(), argv)


__all__ = ["MarketDataConfig", "MarketDataGateway", "build_parser", "main", "rate_to_speed", "speed_to_rate"]
