"""Support/resistance logic: deterministic tick sequences in, expected signals out."""

from __future__ import annotations

import collections
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from workers import protocol as P
from workers.strategy.levels import RollingRange, SRStrategy, StrategyParams, SupportResistance, fmt_price
from workers.strategy.worker import build_parser, strategy_symbols

SEC = 1_000_000_000
# oscillates between a support of 100.00 and a resistance of 101.50
RANGE = [100.0, 100.5, 101.0, 101.5, 101.0, 100.5, 100.0, 100.5, 101.0, 101.5, 101.0, 100.5]


def params(**kw) -> StrategyParams:
    base = dict(window=12, min_fill=6, mode="breakout", breakout_bps=0.0, cooldown=0.0, qty=10, max_position=30,
                min_range_bps=0.0)
    base.update(kw)
    return StrategyParams(**base)


class Run:
    """Feeds prices one second apart and keeps every signal and suppression."""

    def __init__(self, p: StrategyParams, name: str = "sr"):
        self.suppressed: collections.Counter[str] = collections.Counter()
        self.s = SRStrategy(name, p, session="test", count=lambda k: self.suppressed.update([k]))
        self.t = 0
        self.signals: list[P.Signal] = []

    def feed(self, prices, symbol: str = "AAPL") -> list[P.Signal]:
        out = []
        for px in prices:
            self.t += 1
            sig = self.s.on_price(symbol, px, self.t * SEC, now=self.t * SEC + 500)
            if sig is not None:
                out.append(sig)
        self.signals += out
        return out

    def position(self, symbol: str = "AAPL") -> int:
        return self.s.book(symbol).position


# ----------------------------------------------------------------------------- breakouts


def test_range_then_breakout_emits_one_buy_with_reason():
    r = Run(params())
    assert r.feed(RANGE) == []
    sigs = r.feed([101.6])
    assert len(sigs) == 1
    sig = sigs[0]
    assert sig.side is P.Side.BUY
    assert sig.reason == "breakout above resistance 101.50"
    assert sig.qty == 10 and sig.price == 101.6 and sig.symbol == "AAPL" and sig.strategy == "sr"
    assert sig.cause_ts == r.t * SEC and sig.ts == r.t * SEC + 500
    assert sig.id == "sr-test-1"
    # the breakout tick is now the resistance: staying there is not another breakout
    assert r.feed([101.6, 101.6, 101.55]) == []


def test_breakdown_emits_sell():
    r = Run(params())
    r.feed(RANGE)
    sigs = r.feed([99.9])
    assert [(s.side, s.reason) for s in sigs] == [(P.Side.SELL, "breakdown below support 100.00")]
    assert r.position() == -10


def test_touching_the_level_is_not_a_breakout():
    r = Run(params())
    r.feed(RANGE)
    assert r.feed([101.5, 100.0]) == []


def test_breakout_threshold_in_bps():
    r = Run(params(breakout_bps=10.0))  # 10 bps of 101.50 = 0.1015
    r.feed(RANGE)
    assert r.feed([101.6]) == []
    # 101.6 is now the resistance; 10 bps above it is 101.7016
    assert r.feed([101.7]) == []
    assert [s.reason for s in r.feed([101.85])] == ["breakout above resistance 101.70"]


def test_mode_bounce_ignores_breakouts():
    r = Run(params(mode="bounce"))
    r.feed(RANGE)
    assert r.feed([101.6, 99.9]) == []


# ----------------------------------------------------------------------------- window


def test_window_excludes_current_tick():
    p = params(window=3, min_fill=3)
    book = SupportResistance("AAPL", p.window)
    for px, ts in zip([100.0, 101.0, 102.0], range(3)):
        assert book.on_price(px, ts, p, trading=True) is None
    assert (book.support, book.resistance) == (100.0, 102.0)
    intent = book.on_price(103.0, 3, p, trading=True)
    # judged against the three ticks before it ...
    assert intent is not None and intent.level == 102.0 and intent.reason == "breakout above resistance 102.00"
    # ... then it joins the window and the oldest (100) leaves
    assert (book.support, book.resistance) == (101.0, 103.0)


def test_no_signal_before_window_has_min_fill():
    r = Run(params(window=12, min_fill=6))
    assert r.feed([100.0, 100.5, 101.0, 101.5, 101.0]) == []  # 5 ticks
    assert r.feed([102.0]) == []  # judged with 5 in the window: not yet
    assert len(r.feed([102.5])) == 1


def test_min_fill_is_capped_at_window():
    r = Run(params(window=4, min_fill=1000))
    r.feed([100.0, 101.0, 100.5, 100.2])
    assert len(r.feed([101.5])) == 1


def test_old_prices_leave_the_window():
    r = Run(params(window=4, min_fill=4))
    r.feed([105.0, 100.0, 100.5, 101.0, 100.5])  # 105 is now out of the window
    assert [s.reason for s in r.feed([101.2])] == ["breakout above resistance 101.00"]


# ----------------------------------------------------------------------------- cooldown


def test_cooldown_suppresses_second_signal_on_tick_time():
    r = Run(params(cooldown=5.0))
    r.feed(RANGE)
    assert len(r.feed([101.6])) == 1  # t = 13 s
    assert r.feed([101.7, 101.8, 101.9]) == []  # t = 14..16 s: new highs, but cooling down
    assert r.suppressed["suppressed_cooldown"] == 3
    assert r.feed([102.0]) == []  # t = 17 s, 4 s after the signal: still cooling down


def test_cooldown_expires():
    r = Run(params(cooldown=5.0))
    r.feed(RANGE)
    assert len(r.feed([101.6])) == 1  # t = 13
    assert r.feed([101.7, 101.8, 101.9, 102.0]) == []  # t = 14..17
    assert len(r.feed([102.1])) == 1  # t = 18: 5 s later


def test_cooldown_is_per_symbol():
    r = Run(params(cooldown=60.0))
    r.feed(RANGE, "AAPL")
    r.feed(RANGE, "MSFT")
    assert len(r.feed([101.6], "AAPL")) == 1
    assert len(r.feed([101.6], "MSFT")) == 1


# ----------------------------------------------------------------------------- position


def test_repeated_breakouts_never_exceed_max_position():
    r = Run(params(qty=10, max_position=30))
    r.feed(RANGE)
    sigs = r.feed([102.0 + 0.1 * i for i in range(50)])  # a new high every tick
    assert [s.qty for s in sigs] == [10, 10, 10]
    assert r.position() == 30
    assert r.suppressed["suppressed_position"] == 47


def test_last_signal_is_cut_to_the_room_left():
    r = Run(params(qty=10, max_position=25))
    r.feed(RANGE)
    sigs = r.feed([102.0 + 0.1 * i for i in range(10)])
    assert [s.qty for s in sigs] == [10, 10, 5]
    assert r.position() == 25


def test_short_side_limited_too_and_sell_reduces_a_long():
    r = Run(params(qty=10, max_position=20))
    r.feed(RANGE)
    r.feed([102.0 + 0.1 * i for i in range(5)])
    assert r.position() == 20
    sigs = r.feed([99.0 - 0.1 * i for i in range(20)])  # new lows: sell down to -20 and stop
    assert [s.side for s in sigs] == [P.Side.SELL] * 4
    assert r.position() == -20


def test_no_short_selling_when_not_allowed():
    r = Run(params(allow_short=False))
    r.feed(RANGE)
    assert r.feed([99.5]) == []
    assert r.suppressed["suppressed_position"] == 1
    r.feed([103.0])
    assert r.position() == 10
    sigs = r.feed([98.0, 97.0])
    assert [s.qty for s in sigs] == [10]  # may close the long, not go short
    assert r.position() == 0


def test_on_rejected_frees_room_once():
    r = Run(params(qty=10, max_position=20))
    r.feed(RANGE)
    sigs = r.feed([102.0, 102.1, 102.2])
    assert len(sigs) == 2 and r.position() == 20
    assert r.s.on_rejected(sigs[1]) is True
    assert r.position() == 10
    assert r.s.on_rejected(sigs[1]) is False  # a repeated decision does not free room twice
    assert r.position() == 10
    assert len(r.feed([102.3])) == 1
    assert r.position() == 20


def test_on_rejected_ignores_foreign_and_accepted_signals():
    r = Run(params())
    r.feed(RANGE)
    (sig,) = r.feed([101.6])
    foreign = P.Signal(id="other-1", strategy="other", symbol="AAPL", side=P.Side.BUY, qty=10, price=101.6, ts=1, cause_ts=1)
    assert r.s.on_rejected(foreign) is False
    r.s.on_accepted(sig.id)
    assert r.s.on_rejected(sig) is False
    assert r.position() == 10


def test_set_position_overrides_virtual_position():
    r = Run(params(max_position=30))
    r.s.set_position("AAPL", 30)
    r.feed(RANGE)
    assert r.feed([101.6]) == []


# ----------------------------------------------------------------------------- bounce


def bounce_params(**kw) -> StrategyParams:
    # zone: within 10 bps of a level (0.10 at 100); turn: 10 bps back from the touch extreme
    return params(mode="bounce", bounce_bps=10.0, turn_bps=10.0, breakout_bps=5.0, min_range_bps=50.0, **kw)


def test_bounce_off_support_buys_after_touch_and_turn():
    r = Run(bounce_params())
    r.feed(RANGE)
    assert r.feed([100.60, 100.05]) == []  # enters the support zone (<= 100.10)
    assert r.feed([100.02]) == []  # still falling: no signal yet
    assert r.feed([100.08]) == []  # turned, but less than 10 bps from 100.02
    sigs = r.feed([100.15])  # 100.02 * 1.001 = 100.12: confirmed
    assert [(s.side, s.reason) for s in sigs] == [(P.Side.BUY, "bounce off support 100.00")]


def test_bounce_off_resistance_sells():
    r = Run(bounce_params())
    r.feed(RANGE)
    assert r.feed([101.45, 101.48]) == []
    sigs = r.feed([101.30])
    assert [(s.side, s.reason) for s in sigs] == [(P.Side.SELL, "bounce off resistance 101.50")]


def test_bounce_off_support_slightly_pierced_uses_new_low():
    r = Run(bounce_params())
    r.feed(RANGE)
    # 99.97 is below support but within the 5 bps breakout tolerance: still a touch
    r.feed([100.05, 99.97])
    sigs = r.feed([100.10])
    assert [s.reason for s in sigs] == ["bounce off support 99.97"]


def test_no_bounce_after_a_break_through():
    r = Run(bounce_params())
    r.feed(RANGE)
    # touch, then break well below support (more than 5 bps), then come back up
    assert r.feed([100.05, 99.50, 100.20, 100.40]) == []


def test_no_bounce_in_a_narrow_range():
    r = Run(bounce_params())
    r.feed([100.0, 100.2, 100.1, 100.3, 100.2, 100.1, 100.0, 100.3])  # 30 bps < 50 bps
    assert r.feed([100.02, 100.3]) == []


def test_both_mode_emits_breakouts_and_bounces():
    r = Run(params(mode="both", bounce_bps=10.0, turn_bps=10.0, breakout_bps=5.0, min_range_bps=50.0))
    r.feed(RANGE)
    assert [s.reason for s in r.feed([100.05, 100.20])] == ["bounce off support 100.00"]
    assert [s.reason.split()[0] for s in r.feed([101.0, 102.0])] == ["breakout"]


# ----------------------------------------------------------------------------- activity, params


def test_inactive_strategy_tracks_levels_but_emits_nothing():
    r = Run(params())
    r.s.active = False
    r.feed(RANGE)
    assert r.feed([102.0]) == []
    book = r.s.book("AAPL")
    assert book.resistance == 102.0 and book.support == 100.0
    r.s.active = True
    assert len(r.feed([102.5])) == 1


def test_signal_ids_unique_and_valid_on_the_wire():
    r = Run(params(max_position=10_000))
    r.feed(RANGE)
    sigs = r.feed([102.0 + 0.1 * i for i in range(20)])
    assert len({s.id for s in sigs}) == len(sigs) == 20
    for s in sigs:
        assert P.decode(s.pack(), expect=P.Signal) == s


def test_reset_window_keeps_position():
    r = Run(params())
    r.feed(RANGE + [102.0])
    r.s.reset_window("AAPL")
    book = r.s.book("AAPL")
    assert book.support is None and book.resistance is None and book.position == 10
    assert r.feed([50.0]) == []  # a restarted feed at another price is not a breakdown


def test_set_params_shrinks_window_at_once():
    r = Run(params(window=12))
    r.feed([105.0] + RANGE[:6])
    assert r.s.book("AAPL").resistance == 105.0
    r.s.set_params(r.s.params.replace(window=5))
    assert r.s.book("AAPL").resistance == 101.5


def test_params_replace_coerces_and_validates():
    p = StrategyParams()
    q = p.replace(window="50", cooldown=2, allow_short="false", mode="bounce", breakout_bps="2.5")
    assert (q.window, q.cooldown, q.allow_short, q.mode, q.breakout_bps) == (50, 2.0, False, "bounce", 2.5)
    assert isinstance(q.cooldown, float)
    for bad in ({"window": 1}, {"mode": "scalp"}, {"qty": 0}, {"cooldown": -1}, {"breakout_bps": math.nan},
                {"window": 2.5}, {"window": True}, {"nope": 1}, {"qty": "ten"}, {"allow_short": "maybe"}):
        with pytest.raises(ValueError):
            p.replace(**bad)
    with pytest.raises(ValueError):
        StrategyParams(window=0)


def test_params_from_mapping_ignores_other_keys():
    q = StrategyParams.from_mapping({"window": 30, "symbols": ["AAPL"], "name": "x", "qty": None})
    assert q.window == 30 and q.qty == StrategyParams().qty


def test_cli_defaults_match_params_defaults():
    ns = build_parser().parse_args([])
    assert StrategyParams.from_mapping(vars(ns)) == StrategyParams()
    assert ns.symbols == ("AAPL", "MSFT")


def test_strategy_symbols_follow_the_one_symbol_rule():
    # upper-cased like the feed's, so a strategy told "aapl" matches the ticks of AAPL
    assert strategy_symbols("aapl, MSFT,AAPL") == ("AAPL", "MSFT")
    assert strategy_symbols(["AAPL", "brk.b"]) == ("AAPL", "BRK.B")
    assert strategy_symbols("") == () and strategy_symbols("*") == () and strategy_symbols(["*"]) == ()
    assert strategy_symbols("AAPL,*") == ()
    with pytest.raises(ValueError, match="AA\\$PL"):
        strategy_symbols("MSFT,AA$PL")
    assert build_parser().parse_args(["--symbols", "msft goog"]).symbols == ("MSFT", "GOOG")


def test_fmt_price():
    assert fmt_price(101.5) == "101.50"
    assert fmt_price(99.2) == "99.20"
    assert fmt_price(1.23456) == "1.23456"


# ----------------------------------------------------------------------------- rolling range


@settings(max_examples=200, deadline=None)
@given(
    window=st.integers(1, 20),
    ops=st.lists(
        st.one_of(
            st.floats(1.0, 1000.0, allow_nan=False).map(lambda x: ("push", round(x, 2))),
            st.integers(1, 25).map(lambda w: ("resize", w)),
            st.just(("clear", None)),
        ),
        max_size=120,
    ),
)
def test_rolling_range_matches_brute_force(window, ops):
    rr = RollingRange(window)
    history: list[float] = []
    valid_from = 0  # prices before this index are forgotten (clear, or dropped by a smaller window)
    w = window
    for op, arg in ops:
        if op == "push":
            history.append(arg)
            rr.push(arg)
            valid_from = max(valid_from, len(history) - w)
        elif op == "resize":
            rr.resize(arg)
            w = arg
            valid_from = max(valid_from, len(history) - w)
        else:
            rr.clear()
            valid_from = len(history)
        kept = history[valid_from:]
        assert rr.fill == len(kept)
        assert rr.low == (min(kept) if kept else None)
        assert rr.high == (max(kept) if kept else None)


# ----------------------------------------------------------------------------- defaults on the simulated feed


def test_defaults_give_a_few_signals_per_minute_on_the_simulated_feed():
    sim_feed = pytest.importorskip("workers.marketdata.sim_feed")
    clock = [0]
    feed = sim_feed.SimFeed(["AAPL", "MSFT"], seed=11, clock=lambda: clock[0])
    s = SRStrategy("sr", StrategyParams(), session="t")
    minutes = 20
    counts = collections.Counter()
    for i in range(minutes * 60 * 5):  # 5 ticks/s per symbol
        clock[0] = i * 200_000_000
        for sym in ("AAPL", "MSFT"):
            sig = s.on_tick(feed.tick(sym), now=0)
            if sig is not None:
                counts[sym] += 1
                assert abs(s.book(sym).position) <= StrategyParams().max_position
    for sym in ("AAPL", "MSFT"):
        per_minute = counts[sym] / minutes
        assert 1.0 <= per_minute <= 6.0, (sym, per_minute)


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    mode=st.sampled_from(["both", "breakout", "bounce"]),
    window=st.integers(5, 80),
    bounce=st.sampled_from([0.0, 2.0, 5.0, 30.0]),
    cooldown=st.sampled_from([0.0, 0.001, 1.0]),
    frame=st.integers(1, 300),
    drop_every=st.sampled_from([0, 2, 3]),
)
def test_frames_decide_exactly_like_tick_by_tick(seed, mode, window, bounce, cooldown, frame, drop_every):
    """on_rows (the strategy worker's path for a ticks frame) and on_price tick by tick give the
    same signals and end in the same state, including when a signal is dropped and its position
    given back before the next tick is judged."""
    import random

    rng = random.Random(seed)
    px, rows = 100.0, []
    for i in range(1500):
        px = max(1.0, px + rng.gauss(0, 0.05))
        rows.append((i + 1, 1_000_000_000 * i, round(px, 2), round(px, 2) - 0.01, round(px, 2) + 0.01, 1, 1, i))
    p = StrategyParams(window=window, min_fill=min(10, window), mode=mode, bounce_bps=bounce, cooldown=cooldown,
                       max_position=300, qty=100)
    one, batch = SRStrategy("a", p, session="s"), SRStrategy("a", p, session="s")

    def handle(strategy, sig, n):  # a dropped signal gives its position back, as the worker does
        if drop_every and n % drop_every == 0:
            strategy.on_rejected(sig)

    seen_one = []
    for r in rows:
        sig = one.on_price("AAPL", r[2], r[1], now=0)
        if sig is not None:
            seen_one.append(sig)
            handle(one, sig, len(seen_one))
    seen_batch = []
    for k in range(0, len(rows), frame):
        for sig in batch.on_rows("AAPL", rows[k:k + frame]):
            seen_batch.append(sig)
            handle(batch, sig, len(seen_batch))

    def key(s):
        return (s.side, s.qty, s.price, s.cause_ts, s.reason)

    assert [key(s) for s in seen_batch] == [key(s) for s in seen_one]
    a, b = one.books["AAPL"], batch.books["AAPL"]
    assert (a.position, a.support, a.resistance, a._sup_touch, a._res_touch, a._ticks) == (
        b.position, b.support, b.resistance, b._sup_touch, b._res_touch, b._ticks)
