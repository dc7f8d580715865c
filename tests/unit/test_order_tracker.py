"""The executor's order tracker on a manual clock: Lazy Pirate resends, unknown orders and
what settles them, fills and duplicates -- no sockets, no sleeps."""

from __future__ import annotations

import itertools

import pytest

from workers import protocol as P
from workers.clock import ManualClock
from workers.executor import tracker as T
from workers.executor.tracker import InvalidTransition, OrderTracker, WorkingOrder
from workers.protocol import OrderStatus, Side

_ids = itertools.count(1)

TIMEOUT = 1.0
ATTEMPTS = 3


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def tracker(clock) -> OrderTracker:
    return OrderTracker(clock, timeout=TIMEOUT, attempts=ATTEMPTS)


def submit(tracker: OrderTracker, qty: int = 100, side: Side = Side.BUY, symbol: str = "AAPL") -> T.InFlight:
    n = next(_ids)
    sig = P.Signal(id=f"s{n}", strategy="sr1", symbol=symbol, side=side, qty=qty, price=100.0, ts=10, cause_ts=5)
    req = P.SendOrder(client_order_id=f"exe-{n}", symbol=symbol, side=side, qty=qty, ts=10, cause_ts=10, origin_ts=5)
    return tracker.submit(req, sig)


def ack(coid: str, status: str = "new", **fields) -> P.SendOrderReply:
    return P.SendOrderReply(ok=True, client_order_id=coid, order_id="O1", status=OrderStatus(status), **fields)


def refused(reason: str) -> P.SendOrderReply:
    return P.SendOrderReply(ok=False, reason=reason)


def unreadable(why: str) -> P.ErrorReply:
    """What the executor makes of a reply frame it cannot decode (and OrderClient.ask too)."""
    return P.ErrorReply(ok=False, reason=f"unreadable reply: {why}")


def fill(coid: str, fill_id: str, qty: int, side: Side = Side.BUY) -> P.Fill:
    return P.Fill(fill_id=fill_id, client_order_id=coid, order_id="O1", symbol="AAPL", side=side, qty=qty, price=100.0, ts=1)


def update(coid: str, status: OrderStatus, filled: int = 0, qty: int = 100) -> P.OrderUpdate:
    return P.OrderUpdate(client_order_id=coid, order_id="O1", symbol="AAPL", side=Side.BUY, qty=qty, status=status,
                         filled_qty=filled, avg_price=0.0, ts=1)


def run_out_of_attempts(tracker: OrderTracker, clock: ManualClock) -> list:
    outcomes = []
    for _ in range(ATTEMPTS):
        clock.advance_to(tracker.next_deadline())
        outcomes += tracker.on_timeouts()
    return outcomes


# ----------------------------------------------------------------------------- Lazy Pirate


def test_submit_books_the_order_working_and_in_flight(tracker, clock):
    inf = submit(tracker, qty=100)
    coid = inf.order.client_order_id
    assert coid in tracker.working and coid in tracker.in_flight and not tracker.unknown
    assert inf.call.tries == 1 and inf.call.deadline == clock.monotonic() + TIMEOUT and inf.sent_ns == clock.time_ns()
    assert P.decode(inf.call.payload) == inf.request
    assert tracker.pending("AAPL") == 100 and tracker.pending("MSFT") == 0
    with pytest.raises(ValueError, match="in use"):
        tracker.submit(inf.request, inf.order.signal)


def test_nothing_is_resent_before_the_deadline(tracker, clock):
    inf = submit(tracker)
    clock.advance(TIMEOUT - 0.001)
    assert tracker.on_timeouts() == []
    assert inf.call.tries == 1


def test_resend_after_the_deadline_is_the_same_request(tracker, clock):
    inf = submit(tracker)
    payload, request = inf.call.payload, inf.request
    clock.advance(TIMEOUT)
    (out,) = tracker.on_timeouts()
    assert isinstance(out, T.Resend) and out.flight is inf
    # the very bytes of the first attempt: the gateway is idempotent on them
    assert out.flight.call.payload is payload and out.flight.request is request
    assert out.flight.order.client_order_id == request.client_order_id
    assert inf.call.tries == 2 and inf.call.deadline == clock.monotonic() + TIMEOUT
    assert inf.sent_ns == clock.time_ns() - round(TIMEOUT * 1e9)  # order_ack counts from the first try


def test_deadlines_stay_in_order_after_a_resend(tracker, clock):
    a = submit(tracker)
    clock.advance(0.5)
    b = submit(tracker)
    assert tracker.next_deadline() == a.call.deadline
    clock.advance(0.5)
    (out,) = tracker.on_timeouts()
    assert out.flight is a
    assert list(tracker.in_flight) == [b.order.client_order_id, a.order.client_order_id]
    assert tracker.next_deadline() == b.call.deadline


def test_unknown_after_the_last_attempt_and_never_resent(tracker, clock):
    inf = submit(tracker, qty=70)
    coid = inf.order.client_order_id
    outcomes = run_out_of_attempts(tracker, clock)
    assert [type(o) for o in outcomes] == [T.Resend, T.Resend, T.BecameUnknown]
    assert all(o.flight.call.payload is inf.call.payload for o in outcomes[:2])
    unknown = outcomes[-1]
    assert unknown.order.client_order_id == coid and unknown.why == "no reply after every attempt"
    assert unknown.order.status is OrderStatus.UNKNOWN
    assert list(tracker.unknown) == [coid] and coid not in tracker.in_flight
    # still working with its full quantity: the position check stays conservative
    assert coid in tracker.working and tracker.pending("AAPL") == 70
    # and nothing is ever sent again, under this id or another
    assert tracker.next_deadline() is None
    for _ in range(5):
        clock.advance(10 * TIMEOUT)
        assert tracker.on_timeouts() == []
    assert list(tracker.in_flight) == []


def test_an_unreadable_reply_makes_the_order_unknown(tracker):
    inf = submit(tracker)
    coid = inf.order.client_order_id
    out = tracker.on_reply(coid, unreadable("not msgpack"))
    assert isinstance(out, T.BecameUnknown) and out.why == "unreadable reply"
    assert coid in tracker.unknown and not tracker.in_flight
    # a reply naming another order does not tell either
    other = submit(tracker)
    out = tracker.on_reply(other.order.client_order_id, ack("someone-else"))
    assert isinstance(out, T.BecameUnknown)


def test_any_error_reply_leaves_the_outcome_to_reconciliation(tracker):
    # an ErrorReply cannot say whether the gateway holds the order, whoever made it: the
    # executor (a frame it could not decode) or the gateway (a request whose type it could not read)
    inf = submit(tracker)
    coid = inf.order.client_order_id
    out = tracker.on_reply(coid, P.decode_reply(P.error_reply("message has no 'type'"), P.SendOrder))
    assert isinstance(out, T.BecameUnknown) and out.why == "unreadable reply" and out.detail == "message has no 'type'"
    assert coid in tracker.unknown and tracker.pending("AAPL") == 100


# ----------------------------------------------------------------------------- replies


def test_ack_settles_the_send(tracker, clock):
    inf = submit(tracker)
    coid = inf.order.client_order_id
    clock.advance(0.2)
    out = tracker.on_reply(coid, ack(coid))
    assert isinstance(out, T.Acked) and out.sent_ns == inf.sent_ns and not out.contradiction
    wo = out.order
    assert (wo.status, wo.order_id) == (OrderStatus.NEW, "O1")
    assert coid not in tracker.in_flight and coid in tracker.working
    assert tracker.next_deadline() is None
    # the answer to a resend that came in after the first one: ignored
    assert tracker.on_reply(coid, ack(coid)) == T.LateReply(coid)
    assert wo.status is OrderStatus.NEW


def test_ack_without_a_status_reads_as_new_and_a_filled_ack_retires(tracker):
    inf = submit(tracker)
    coid = inf.order.client_order_id
    out = tracker.on_reply(coid, P.SendOrderReply(ok=True, order_id="O1"))
    assert out.order.status is OrderStatus.NEW
    # filled in the reply, fills not seen yet: working until they arrive
    inf = submit(tracker, qty=10)
    coid = inf.order.client_order_id
    out = tracker.on_reply(coid, ack(coid, "filled", filled_qty=10))
    assert out.order.status is OrderStatus.FILLED and coid in tracker.working
    assert tracker.pending("AAPL") == 100 + 10  # the first order working, the second's unseen fill
    assert tracker.on_fill(fill(coid, "F1", 10)) is None
    assert coid not in tracker.working


def test_a_rejection_forgets_the_order(tracker):
    inf = submit(tracker)
    coid = inf.order.client_order_id
    out = tracker.on_reply(coid, refused("max position"))
    assert isinstance(out, T.Rejected) and out.reason == "max position" and out.sent_ns == inf.sent_ns
    assert coid not in tracker.working and tracker.pending("AAPL") == 0
    inf = submit(tracker)
    coid = inf.order.client_order_id
    out = tracker.on_reply(coid, ack(coid, "rejected", reason="no market"))
    assert isinstance(out, T.Rejected) and out.reason == "no market"


def test_a_refused_request_reads_as_a_rejection(tracker):
    # "the request was not an order" (docs/protocol.md): send_order_reply, ok false, no status
    inf = submit(tracker)
    coid = inf.order.client_order_id
    reply = P.decode_reply(P.error_reply("'send_order' field 'qty': Expected `int` >= 1", "send_order"), P.SendOrder)
    assert isinstance(reply, P.SendOrderReply) and reply.status is None
    out = tracker.on_reply(coid, reply)
    assert isinstance(out, T.Rejected) and out.reason.startswith("'send_order' field 'qty'")
    assert coid not in tracker.working


def test_a_reply_for_no_order_is_late(tracker):
    assert tracker.on_reply("never-sent", ack("never-sent")) == T.LateReply("never-sent")


def test_a_late_reply_settles_an_unknown_order(tracker, clock):
    inf = submit(tracker)
    coid = inf.order.client_order_id
    run_out_of_attempts(tracker, clock)
    assert coid in tracker.unknown
    out = tracker.on_reply(coid, ack(coid, "partially_filled", filled_qty=40))
    assert isinstance(out, T.Settled) and out.how == "late reply" and out.accepted
    assert out.order.status is OrderStatus.PARTIALLY_FILLED and out.order.exch_filled == 40
    assert not tracker.unknown and coid in tracker.working
    # a second copy of that reply changes nothing
    assert tracker.on_reply(coid, ack(coid)) == T.LateReply(coid)
    assert out.order.status is OrderStatus.PARTIALLY_FILLED


def test_a_late_refusal_settles_an_unknown_order_as_rejected(tracker, clock):
    inf = submit(tracker)
    coid = inf.order.client_order_id
    run_out_of_attempts(tracker, clock)
    out = tracker.on_reply(coid, refused("kill switch"))
    assert isinstance(out, T.Settled) and not out.accepted and out.order.status is OrderStatus.REJECTED
    assert coid not in tracker.working and not tracker.unknown


def test_an_unreadable_late_reply_leaves_the_order_unknown(tracker, clock):
    coid = submit(tracker).order.client_order_id
    run_out_of_attempts(tracker, clock)
    assert tracker.on_reply(coid, unreadable("junk")) == T.LateReply(coid)
    assert coid in tracker.unknown


# ----------------------------------------------------------------------------- get_order


def test_get_order_settles_an_unknown_order(tracker, clock):
    coid = submit(tracker).order.client_order_id
    run_out_of_attempts(tracker, clock)
    order = P.OrderUpdate(client_order_id=coid, order_id="O7", symbol="AAPL", side=Side.BUY, qty=100, filled_qty=0,
                          avg_price=0.0, status=OrderStatus.NEW, ts=1)
    reply = P.GetOrderReply(ok=True, client_order_id=coid, order_id="O7", status=OrderStatus.NEW, order=order)
    out = tracker.on_get_order(coid, reply)
    assert isinstance(out, T.Settled) and out.how == "get_order" and out.order.order_id == "O7"
    assert tracker.on_get_order(coid, reply) is None  # not unknown any more


def test_get_order_without_the_order_map_settles_on_its_status(tracker, clock):
    coid = submit(tracker).order.client_order_id
    run_out_of_attempts(tracker, clock)
    out = tracker.on_get_order(coid, P.GetOrderReply(ok=True, client_order_id=coid, order_id="O8", status=OrderStatus.CANCELLED))
    assert isinstance(out, T.Settled) and out.order.status is OrderStatus.CANCELLED and out.order.order_id == "O8"


def test_not_placed_only_after_repeated_denials(tracker, clock):
    coid = submit(tracker).order.client_order_id
    run_out_of_attempts(tracker, clock)
    deny = P.GetOrderReply(ok=False, reason="unknown client_order_id")
    # an unreadable answer counts for nothing
    assert tracker.on_get_order(coid, unreadable("x")).unreadable
    for _ in range(T.NOT_FOUND_CONFIRMATIONS - 1):
        out = tracker.on_get_order(coid, deny)
        assert isinstance(out, T.StillUnknown) and not out.unreadable
    out = tracker.on_get_order(coid, deny)
    assert isinstance(out, T.NotPlaced) and out.reason == "unknown client_order_id"
    assert coid not in tracker.working and not tracker.unknown and tracker.pending("AAPL") == 0


# ----------------------------------------------------------------------------- the stream


def test_fills_are_idempotent_and_complete_the_order(tracker):
    coid = submit(tracker, qty=100).order.client_order_id
    tracker.on_reply(coid, ack(coid))
    f1 = fill(coid, "F1", 60)
    tracker.on_fill(f1)
    wo = tracker.working[coid]
    assert wo.fills_seen == 60 and tracker.pending("AAPL") == 40
    for _ in range(3):
        assert tracker.on_fill(f1) is None  # the same fill again: counted once
    assert wo.fills_seen == 60 and tracker.pending("AAPL") == 40
    tracker.on_fill(fill(coid, "F2", 40))
    assert coid not in tracker.working  # all quantity filled, even before a final update
    assert tracker.on_fill(fill(coid, "F3", 1)) is None  # a stray fill for a retired order


def test_a_fill_settles_an_unknown_order(tracker, clock):
    coid = submit(tracker, qty=100).order.client_order_id
    run_out_of_attempts(tracker, clock)
    out = tracker.on_fill(fill(coid, "F1", 30))
    assert isinstance(out, T.Settled) and out.how == "fill" and out.order.status is OrderStatus.PARTIALLY_FILLED
    assert not tracker.unknown and tracker.pending("AAPL") == 70
    assert tracker.on_fill(fill(coid, "F1", 30)) is None


def test_an_order_update_settles_an_unknown_order_and_a_final_one_retires(tracker, clock):
    coid = submit(tracker, qty=100).order.client_order_id
    run_out_of_attempts(tracker, clock)
    out = tracker.on_order_update(update(coid, OrderStatus.NEW))
    assert isinstance(out, T.Settled) and out.how == "execution stream"
    assert tracker.on_order_update(update(coid, OrderStatus.NEW)) is None  # a duplicate
    tracker.on_order_update(update(coid, OrderStatus.CANCELLED, filled=0))
    assert coid not in tracker.working
    assert tracker.on_order_update(update("someone-elses", OrderStatus.NEW)) is None


def test_a_final_order_waits_for_its_fills_then_the_grace(tracker, clock):
    coid = submit(tracker, qty=100).order.client_order_id
    tracker.on_reply(coid, ack(coid))
    tracker.on_order_update(update(coid, OrderStatus.CANCELLED, filled=30))
    # cancelled with 30 filled, none of those fills seen yet: they may still move the position
    assert coid in tracker.working and tracker.pending("AAPL") == 30
    clock.advance(T.TERMINAL_GRACE_S)
    assert tracker.retire_expired() == []
    clock.advance(0.01)
    (gone,) = tracker.retire_expired()
    assert gone.client_order_id == coid and coid not in tracker.working


def test_a_stale_reply_never_moves_an_order_back(tracker):
    coid = submit(tracker, qty=100).order.client_order_id
    # the stream was faster than the reply
    tracker.on_order_update(update(coid, OrderStatus.PARTIALLY_FILLED, filled=50))
    out = tracker.on_reply(coid, ack(coid, "new"))
    assert isinstance(out, T.Acked) and out.order.status is OrderStatus.PARTIALLY_FILLED
    assert out.order.exch_filled == 50


def test_conflicting_final_states_are_reported_not_overwritten(tracker):
    coid = submit(tracker, qty=100).order.client_order_id
    tracker.on_reply(coid, ack(coid))
    tracker.on_order_update(update(coid, OrderStatus.CANCELLED, filled=10))
    out = tracker.on_order_update(update(coid, OrderStatus.EXPIRED, filled=10))
    assert isinstance(out, T.Contradiction) and "cancelled -> expired" in out.error
    assert tracker.working[coid].status is OrderStatus.CANCELLED


def test_working_order_state_machine():
    sig = P.Signal(id="s", strategy="x", symbol="AAPL", side=Side.BUY, qty=1, price=1.0, ts=1, cause_ts=1)
    wo = WorkingOrder("c", "AAPL", Side.BUY, 10, sig)
    assert wo.advance(OrderStatus.NEW, 0, 1.0)
    assert not wo.advance(OrderStatus.PENDING_NEW, None, 2.0)  # stale
    assert wo.advance(OrderStatus.FILLED, 10, 3.0) and wo.terminal_since == 3.0
    assert not wo.advance(OrderStatus.FILLED, 10, 4.0) and wo.terminal_since == 3.0
    assert not wo.advance(OrderStatus.NEW, None, 5.0) and wo.status is OrderStatus.FILLED
    with pytest.raises(InvalidTransition):
        wo.advance(OrderStatus.CANCELLED, None, 6.0)
    # unknown is this client's own mark: entered and left from anywhere
    assert wo.advance(OrderStatus.UNKNOWN, None, 7.0) and wo.advance(OrderStatus.CANCELLED, None, 8.0)


# ----------------------------------------------------------------------------- stuck, resync


def get_order_reply(coid: str, status: OrderStatus, filled: int = 0) -> P.GetOrderReply:
    return P.GetOrderReply(ok=True, client_order_id=coid, order_id="O1", status=status, order=update(coid, status, filled))


def test_an_order_pending_new_beyond_the_timeout_is_stuck_once_per_timeout(tracker, clock):
    inf = submit(tracker)
    coid = inf.order.client_order_id
    assert tracker.stuck(5.0) == []  # in flight: its reply is what is awaited
    tracker.on_reply(coid, ack(coid, "pending_new"))
    clock.advance(4.9)
    assert tracker.stuck(5.0) == []
    clock.advance(0.2)
    assert [w.client_order_id for w in tracker.stuck(5.0)] == [coid]
    assert tracker.stuck(5.0) == []  # just asked: not again before another timeout
    # asked, still pending: StillPending; then filled at the exchange: Resolved, and retired
    assert isinstance(tracker.on_order_state(coid, get_order_reply(coid, OrderStatus.PENDING_NEW)), T.StillPending)
    clock.advance(5.0)
    assert [w.client_order_id for w in tracker.stuck(5.0)] == [coid]
    out = tracker.on_order_state(coid, get_order_reply(coid, OrderStatus.FILLED, 100))
    assert isinstance(out, T.Resolved) and out.was is OrderStatus.PENDING_NEW and out.order.status is OrderStatus.FILLED
    assert out.age == pytest.approx(10.1)
    # its fills still count in pending until they arrive (the stream, or a resync's get_fills)
    assert tracker.pending("AAPL") == 100
    tracker.on_fill(fill(coid, "F1", 100))
    assert coid not in tracker.working and tracker.pending("AAPL") == 0


def test_a_stuck_order_the_gateway_denies_three_times_was_not_placed(tracker, clock):
    inf = submit(tracker)
    coid = inf.order.client_order_id
    tracker.on_reply(coid, ack(coid, "pending_new"))
    denial = P.GetOrderReply(ok=False, reason="unknown client_order_id", client_order_id=coid)
    assert isinstance(tracker.on_order_state(coid, unreadable("x")), T.StillUnknown)  # counts neither way
    outs = [tracker.on_order_state(coid, denial) for _ in range(T.NOT_FOUND_CONFIRMATIONS)]
    assert [type(o) for o in outs] == [T.StillUnknown] * (T.NOT_FOUND_CONFIRMATIONS - 1) + [T.NotPlaced]
    assert coid not in tracker.working


def test_missing_from_the_gateways_working_orders(tracker):
    listed, ended, flying = submit(tracker), submit(tracker), submit(tracker)
    for inf in (listed, ended):
        c = inf.order.client_order_id
        tracker.on_reply(c, ack(c, "new"))
    lc = listed.order.client_order_id
    outcomes, missing = tracker.missing_from([update(lc, OrderStatus.PARTIALLY_FILLED, 30), update("someone-else", OrderStatus.NEW)])
    assert outcomes == [] and tracker.working[lc].status is OrderStatus.PARTIALLY_FILLED
    # the one that ended unseen is to be asked about; the one in flight waits for its reply
    assert missing == [ended.order.client_order_id]


def test_fill_watermark_waits_for_the_hole_below():
    w = T.FillWatermark()
    w.rebase(7)
    w.saw(8)
    w.saw(10)
    assert w.base == 8  # F9 missing: get_fills must ask after 8, not 10
    w.saw(9)
    assert w.base == 10
    w.saw(3)  # inside a snapshot already
    w.rebase(12)
    w.saw(14)
    assert w.base == 12
