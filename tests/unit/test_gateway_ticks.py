"""The exchange gateway's tick consumer: a repeated tick never reaches the exchange client nor
the hard limits' last price (in process, no sockets read)."""

from __future__ import annotations

import pytest

from workers import protocol as P
from workers.config import add_common_args
from workers.exchange.gateway import Batch, ExchangeGateway, build_parser


@pytest.fixture
def gateway(tmp_path):
    parser = build_parser()
    add_common_args(parser)
    eps = [f"--{n}=inproc://{n}" for n in ("ticks", "orders", "execution", "control")]
    gw = ExchangeGateway(parser.parse_args([*eps, "--no-control", "--market-wait", "0", "--journal", str(tmp_path / "g.sqlite")]))
    seen: list[tuple[int, float]] = []
    real = gw.client.on_tick

    def spy(tick):
        seen.append((tick.seq, tick.last))
        return real(tick)

    gw.client.on_tick = spy
    gw.seen = seen
    yield gw
    gw._close()


def row(seq: int, last: float = 100.0) -> tuple:
    return (seq, seq, last, last - 0.5, last + 0.5, 100, 100, seq)


def feed(gw: ExchangeGateway, *rows: tuple, newest_only: bool = False) -> None:
    gw._tick(P.encode_ticks("AAA", list(rows)), Batch(P.now_ns()), newest_only=newest_only)


def test_duplicates_are_dropped_and_counted_a_batch_in_order_passes_whole(gateway):
    gw = gateway
    feed(gw, row(1), row(2), row(3))
    feed(gw, row(4, 101.0))
    assert gw.seen == [(1, 100.0), (2, 100.0), (3, 100.0), (4, 101.0)] and gw.stats.counters["ticks_stale"] == 0
    feed(gw, row(4, 50.0))  # the same tick again (a replayed or doubled frame)
    feed(gw, row(4, 50.0), row(5, 102.0))  # half old, half new: only the new half counts
    assert gw.seen[4:] == [(5, 102.0)]
    assert gw.stats.counters["ticks_stale"] == 2
    assert gw.hard_limits.checker.last_prices["AAA"] == 102.0  # the price band never saw 50
    # a symbol without working orders: only the newest row is looked at, and checked too
    feed(gw, row(6), row(7, 103.0), newest_only=True)
    feed(gw, row(7, 40.0), newest_only=True)
    assert gw.seen[5:] == [(7, 103.0)] and gw.stats.counters["ticks_stale"] == 3
    # a step back is the feed restarting (ticks carry no epoch): its ticks are used
    feed(gw, row(1, 90.0))
    assert gw.seen[-1] == (1, 90.0) and gw.tick_seq.counters()["restarts"] == 1


def test_a_request_the_gateway_fails_on_is_answered_error_not_refused(gateway):
    """A bug (or a broken exchange client) while handling a request must not read as 'this was
    not an order': the answer is an `error`, which clients reconcile with get_order."""
    gw = gateway

    def broken(req, batch, now):
        raise RuntimeError("boom")

    gw._handlers[P.SendOrder] = broken
    req = P.SendOrder(client_order_id="c-1", symbol="AAA", side=P.Side.BUY, qty=1)
    reply = P.decode_reply(gw._handle_payload(req.pack(), Batch(P.now_ns())), P.SendOrder)
    assert isinstance(reply, P.ErrorReply) and not reply.ok and "internal error on send_order" in reply.reason
    assert gw.stats.counters["handler_errors"] == 1
