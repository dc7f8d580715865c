"""The executor resyncs with its exchange gateway before anything trades (issue 12, items 1, 4, 5).

The real executor process against the scripted gateway of test_executor.py (a ROUTER that
answers get_fills, get_orders, get_positions with the account's kill switch, set_kill_switch)
whose book is kept by the one PositionBook: what a trader did -- the gateway restarted while
fills went by unseen, an order stuck pending, a relaunch with the kill switch on -- and what
the executor must make of it.
"""

from __future__ import annotations

import itertools

import msgspec
import pytest

from tests.integration.test_executor import PRICE, SYMBOL, Rig, executor, ipc_dir, rig  # noqa: F401  (fixtures)
from workers import protocol as P
from workers.positions import PositionBook

_epochs = itertools.count(1_700_000_000_000_000_000, 1_000_000_000)


class Gateway:
    """The fake gateway's own fills: numbered, journaled (get_fills), booked (get_positions),
    and published on the execution stream under its epoch and seq -- or not (a fill missed)."""

    def __init__(self, rig: Rig):
        self.rig, self.ex = rig, rig.exchange
        self.book = PositionBook()
        self.epoch = next(_epochs)
        self.seq = 0
        self.n = 0

    def restart(self) -> None:
        """A new incarnation: a new epoch, the execution stream numbered from 1 again."""
        self.epoch, self.seq = next(_epochs), 0

    def fill(self, qty: int, side: str = "buy", coid: str = "manual-1", publish: bool = True, price: float = PRICE) -> P.Fill:
        self.n += 1
        f = P.Fill(fill_id=f"F{self.n}", client_order_id=coid, order_id="O1", symbol=SYMBOL, side=P.Side(side), qty=qty,
                   price=price, ts=P.now_ns())
        self.book.apply(f)
        self.ex.fills.append(f)
        self.ex.positions = [msgspec.structs.asdict(p) for p in self.book.net_positions()]
        self.ex.last_fill_seq = self.book.last_fill_seq
        if publish:
            self.publish(f)
        return f

    def publish(self, f: P.Fill) -> None:
        self.seq += 1
        self.rig.execution.send(P.pub(msgspec.structs.replace(f, seq=self.seq, epoch=self.epoch)))

    def republish(self, f: P.Fill) -> None:
        """The same report again, as the stream had it (a duplicate)."""
        self.rig.execution.send(P.pub(msgspec.structs.replace(f, seq=self.seq, epoch=self.epoch)))


def _positions(rig: Rig, since: int = 0) -> list[P.Position]:
    return [p for p in rig.of_type(P.Position)[since:] if p.symbol == SYMBOL]


def _qty(rig: Rig) -> int | None:
    ps = _positions(rig)
    return ps[-1].qty if ps else None


def _in_step(rig: Rig, n_requests: int) -> bool:
    """The executor asked get_positions (the last step of a resync) after request n_requests."""
    return any(r["type"] == "get_positions" for r in rig.exchange.requests[n_requests:])


def test_gateway_restart_with_missed_fills_resyncs_before_trading(rig, executor):
    gw = Gateway(rig)
    # the position limit sees working orders: an order the missed fills completed must stop
    # counting as pending, or the signal after the resync is refused (85 + 60 + 11 > 150)
    executor("--position-interval", "0.2", "--max-position", "150")
    sig, d = rig.first_priced_decision(qty=100)
    assert d.accepted and d.reason == "order new", d.reason
    coid = d.client_order_id

    # F1 on the stream (40 of the order); the executor's first sequenced report: it resyncs once
    f1 = gw.fill(40, coid=coid)
    rig.wait(lambda: _qty(rig) == 40, message="F1 booked")
    rig.in_step_decision(qty=1)  # in step again (and one more order of 1 out)

    # The gateway dies and comes back from its journal.  It made F2 (the rest of the order)
    # and F3 (a manual fill) that no stream delivered; its first report of the new epoch is F4.
    rig.exchange.hold_types = {"get_fills"}  # the resync stays under way until released
    asked = len(rig.exchange.requests)
    gw.fill(60, coid=coid, publish=False)
    rig.exchange.orders[coid] = msgspec.structs.replace(rig.exchange.orders[coid], status=P.OrderStatus.FILLED, filled_qty=100)
    gw.fill(25, side="sell", publish=False)
    gw.restart()
    f4 = gw.fill(10)
    rig.wait(lambda: rig.exchange.held, message="get_fills asked after the new epoch")
    (_, req), = rig.exchange.held
    assert req["since_fill"] == 1, req  # everything up to F1 accounted for; F2.. may be missing
    # while it resyncs, no signal trades: refused with the reason, no order sent
    sent = len(rig.exchange.sent_orders())
    refused = rig.signal(qty=5)
    d = rig.decision(refused)
    assert not d.accepted and d.reason == "resyncing with the exchange (exchange gateway restarted)", d.reason
    assert len(rig.exchange.sent_orders()) == sent

    seen = len(rig.of_type(P.Position))
    rig.exchange.hold_types = set()
    rig.exchange.release()  # F2, F3, F4: F4 the stream gave already
    rig.wait(lambda: _in_step(rig, asked), message="resync reached get_positions")
    _, d = rig.in_step_decision(qty=10)
    assert d.accepted, d.reason
    want = gw.book.qty(SYMBOL)
    assert want == 40 + 60 - 25 + 10
    rig.wait(lambda: _qty(rig) == want, message="position as the gateway's")
    # each missed fill counted once: no position on the way ever went beyond the right one
    assert all(p.qty <= 40 + 60 + 10 for p in _positions(rig, seen)), [p.qty for p in _positions(rig, seen)]
    pos = _positions(rig)[-1]
    want_pos = gw.book.find(SYMBOL)
    assert pos.avg_price == pytest.approx(want_pos.avg_price) and pos.realized_pnl == pytest.approx(want_pos.realized_pnl)

    # the stream repeats F4 and an old F1: nothing changes
    n = len(rig.of_type(P.Position))
    gw.republish(f4)
    rig.execution.send(P.pub(f1))
    f5 = gw.fill(5)
    rig.wait(lambda: _qty(rig) == want + 5, message="F5 after the resync")
    assert all(p.qty in (want, want + 5) for p in _positions(rig, n))
    assert f5.fill_id == "F5"


def test_a_gateway_that_answers_again_after_silence_is_resynced_with(rig, executor):
    executor("--order-timeout", "0.3", "--order-retries", "1")
    rig.first_priced_decision(qty=1)
    rig.exchange.answer_get_order = False
    rig.exchange.answer_send_order = False
    sig = rig.signal(qty=1)  # unanswered: unknown, get_order asked and unanswered (silence)
    rig.wait(lambda: any(r["type"] == "get_order" for r in rig.exchange.requests), message="get_order asked")
    rig.wait(lambda: rig.exchange.requests.count({"v": 1, "type": "get_order", "client_order_id": rig.decisions(sig)[0].client_order_id}) >= 2,
             message="get_order asked again (the first went unanswered)")
    asked = len(rig.exchange.requests)
    rig.exchange.answer_get_order = True
    rig.exchange.answer_send_order = True
    rig.wait(lambda: _in_step(rig, asked), message="a resync once the gateway answers again")
    types = [r["type"] for r in rig.exchange.requests[asked:]]
    assert types.index("get_fills") < types.index("get_orders") < types.index("get_positions"), types
    _, d = rig.in_step_decision(qty=1)
    assert d.accepted, d.reason


def test_an_order_stuck_pending_new_is_asked_about_and_resolved(rig, executor):
    rig.exchange.ack_status = P.OrderStatus.PENDING_NEW  # held for market data, as the gateway does
    executor("--pending-timeout", "0.5", "--reconcile-interval", "0.1")
    sig, d = rig.first_priced_decision(qty=100)
    assert d.accepted and d.reason == "order pending_new", d.reason
    coid = d.client_order_id

    def get_orders_for_it() -> int:
        return sum(1 for r in rig.exchange.requests if r["type"] == "get_order" and r["client_order_id"] == coid)

    # still pending at the exchange when first asked: asked again after another timeout
    rig.wait(lambda: get_orders_for_it() >= 1, message="the stuck order asked about")
    assert len(rig.decisions(sig)) == 1
    order = rig.exchange.orders[coid]
    # it filled, and the stream's reports of it were lost
    rig.exchange.orders[coid] = msgspec.structs.replace(order, status=P.OrderStatus.FILLED, filled_qty=100, avg_price=PRICE,
                                                        order_id="O1")
    final = rig.wait(lambda: len(rig.decisions(sig)) >= 2 and rig.decisions(sig)[1], message="resolved")
    assert get_orders_for_it() >= 2
    assert final.accepted and final.client_order_id == coid
    assert final.reason.startswith("resolved by get_order: order filled (was pending_new for "), final.reason
    assert rig.exchange.sent_orders()[-1]["client_order_id"] == coid and len({o["client_order_id"] for o in rig.exchange.sent_orders()}) == 1


def test_relaunch_with_the_gateways_kill_switch_on_refuses_increasing_passes_reducing(rig, executor):
    gw = Gateway(rig)
    gw.fill(100, publish=False)  # long 100 from before the relaunch
    rig.exchange.kill_switch, rig.exchange.kill_reason = True, "trader pressed F12"
    executor()
    sig, d = rig.first_priced_decision(qty=10)  # a buy: would increase the position
    assert not d.accepted and d.reason.startswith("kill switch"), d.reason
    assert rig.exchange.sent_orders() == []
    # a sell that closes the position goes out
    close = rig.signal(qty=100, side="sell")
    d = rig.decision(close)
    assert d.accepted and d.reason == "order new", d.reason
    (sent,) = rig.exchange.sent_orders()
    assert (sent["side"], sent["qty"]) == ("sell", 100)
    # with that sell working, another sell would open a short: refused
    d = rig.decision(rig.signal(qty=10, side="sell"))
    assert not d.accepted and d.reason.startswith("kill switch"), d.reason
    # released at the exchange (the window did it): the next resync turns the executor's off too
    rig.exchange.kill_switch = False
    asked = len(rig.exchange.requests)
    gw.fill(100, side="sell", coid=sent["client_order_id"])  # first sequenced report: a resync
    rig.wait(lambda: _in_step(rig, asked), message="resync")
    _, d = rig.in_step_decision(qty=10)
    assert d.accepted, d.reason


def test_ticks_of_a_restarted_market_data_gateway_are_used_at_once(rig, executor):
    executor()
    rig.tick_seq = 500  # the old gateway ran a while
    rig.events_live()
    rig.wait(lambda: (rig.tick(last=100.0, epoch=11), rig.decision(rig.signal(price=100.0)).accepted)[1], message="trading at 100")
    # it restarts with a new epoch: seq starts over, the price moved 10% (beyond the 5% band
    # around a stale 100)
    rig.tick_seq = 0
    rig.tick(last=110.0, epoch=12)

    rig.wait(lambda: (rig.tick(last=110.0, epoch=12), rig.decision(rig.signal(qty=1, price=110.0)).accepted)[1],
             message="the restarted gateway's price used")
