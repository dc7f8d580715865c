"""The one position book (workers/positions.py), as the executor and window use it (a
consumer of the stream: exactly once, snapshots) and as the exchange gateway does (the source
of the fills: get_positions): average cost, realized on reduce/close/flip."""

from __future__ import annotations

import dataclasses
import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from workers import protocol as P
from workers.positions import PositionBook, PositionState, SymbolPosition, fill_number

_ids = itertools.count(1)


def fill(side: str, qty: int, price: float, symbol: str = "AAPL", fill_id: str | None = None) -> P.Fill:
    return P.Fill(
        fill_id=fill_id or f"F{next(_ids)}",
        client_order_id="c1",
        order_id="o1",
        symbol=symbol,
        side=P.Side(side),
        qty=qty,
        price=price,
        ts=1,
    )


def test_fill_number():
    assert fill_number("F17") == 17
    assert fill_number("F") is None and fill_number("X17") is None and fill_number("F1a") is None


#: fills (side, qty, price) and marks ("mark", last) on one symbol, each with the position it
#: must leave as (qty, avg_price, realized_pnl, unrealized_pnl); None: not looked at
TRADES = {
    "buys_average_the_entry_price": [
        (("buy", 100, 10.0), None),
        (("buy", 300, 12.0), (400, 11.5, 0.0, None)),
    ],
    "reduce_realizes_and_keeps_the_average": [
        (("buy", 400, 11.5), None),
        (("sell", 100, 13.0), (300, 11.5, 150.0, None)),
    ],
    "close_goes_flat": [
        (("buy", 100, 10.0), None),
        (("sell", 100, 9.0), (0, 0.0, -100.0, 0.0)),
    ],
    "flip_realizes_the_old_side_and_opens_at_the_fill_price": [
        (("buy", 100, 10.0), None),
        (("sell", 250, 12.0), (-150, 12.0, 200.0, None)),
        # and back: covering the short at 11 gains 1 per share
        (("buy", 200, 11.0), (50, 11.0, 350.0, None)),
    ],
    "short_position_pnl": [
        (("sell", 100, 50.0), None),
        (("sell", 100, 52.0), (-200, 51.0, None, None)),
        (("mark", 49.0), (None, None, None, 400.0)),
        (("buy", 50, 49.0), (None, None, 100.0, None)),
    ],
}


@pytest.mark.parametrize("steps", TRADES.values(), ids=TRADES.keys())
def test_average_cost_and_pnl(steps):
    book = PositionBook()
    pos = None
    for action, want in steps:
        if action[0] == "mark":
            book.mark("AAPL", action[1])
        else:
            assert book.apply_fill(fill(*action))
        if want is None:
            continue
        if pos is None:
            pos = book.get("AAPL")  # the one object, kept up to date by later fills
        got = (pos.qty, pos.avg_price, pos.realized_pnl, pos.unrealized_pnl)
        for name, g, w in zip(("qty", "avg_price", "realized_pnl", "unrealized_pnl"), got, want):
            if w is not None:
                assert g == pytest.approx(w), (action, name)


def test_unrealized_from_the_last_price():
    book = PositionBook()
    assert not book.mark("AAPL", 10.0)  # no position: marking does not create one
    book.apply_fill(fill("buy", 100, 10.0))
    assert book.get("AAPL").unrealized_pnl == 0.0  # no price yet
    assert book.mark("AAPL", 10.5)
    assert book.get("AAPL").unrealized_pnl == pytest.approx(50.0)
    (msg,) = book.to_messages(ts=7)
    assert isinstance(msg, P.Position)
    assert (msg.symbol, msg.qty, msg.avg_price, msg.unrealized_pnl, msg.last, msg.ts) == ("AAPL", 100, 10.0, 50.0, 10.5, 7)
    # the message survives the wire
    assert P.decode(msg.pack()) == msg


def test_a_fill_seen_twice_counts_once():
    book = PositionBook()
    f = fill("buy", 100, 10.0)
    assert book.apply_fill(f)
    assert not book.apply_fill(f)
    assert not book.apply_fill(fill("buy", 100, 10.0, fill_id=f.fill_id))
    assert book.get("AAPL").qty == 100


def test_snapshot_then_later_fills():
    book = PositionBook()
    book.load_snapshot(
        [{"symbol": "AAPL", "qty": 200, "avg_price": 10.0, "realized_pnl": 5.0}, {"symbol": "MSFT", "qty": -10, "avg_price": 300.0}],
        last_fill_seq=12,
    )
    assert book.get("AAPL").qty == 200 and book.get("MSFT").qty == -10
    # fills the snapshot already includes (queued on the stream meanwhile) are skipped
    assert not book.apply_fill(fill("buy", 100, 11.0, fill_id="F11"))
    assert not book.apply_fill(fill("buy", 100, 11.0, fill_id="F12"))
    assert book.get("AAPL").qty == 200
    # later ones count
    assert book.apply_fill(fill("sell", 50, 12.0, fill_id="F13"))
    pos = book.get("AAPL")
    assert (pos.qty, pos.avg_price) == (150, 10.0)
    assert pos.realized_pnl == pytest.approx(105.0)
    assert {m.symbol for m in book.to_messages(1)} == {"AAPL", "MSFT"}


def test_snapshot_keeps_known_prices_and_rejects_bad_entries():
    book = PositionBook()
    book.apply_fill(fill("buy", 1, 10.0, symbol="TSLA", fill_id="F1"))
    book.mark("TSLA", 11.0)
    book.load_snapshot([{"symbol": "TSLA", "qty": 5, "avg_price": 10.0}], last_fill_seq=3)
    assert book.get("TSLA").last == 11.0 and book.get("TSLA").unrealized_pnl == pytest.approx(5.0)
    before = dict(book.positions)
    for bad in ([{"qty": 1}], [{"symbol": "X", "qty": "1"}], ["x"], [{"symbol": "X", "qty": 1, "avg_price": "a"}]):
        with pytest.raises(ValueError):
            book.load_snapshot(bad, 0)
    with pytest.raises(ValueError):
        book.load_snapshot([], -1)
    assert book.positions == before and book.last_fill_seq == 3


def test_fills_with_foreign_ids_still_deduplicate():
    book = PositionBook()
    book.load_snapshot([], last_fill_seq=100)
    assert book.apply_fill(fill("buy", 5, 10.0, fill_id="ext-7"))
    assert not book.apply_fill(fill("buy", 5, 10.0, fill_id="ext-7"))
    assert book.get("AAPL").qty == 5


trades = st.lists(
    st.tuples(st.sampled_from(["buy", "sell"]), st.integers(1, 500), st.integers(1, 2000).map(lambda c: c / 10)),
    min_size=1,
    max_size=40,
)


@given(trades, st.integers(1, 2000).map(lambda c: c / 10))
def test_total_pnl_equals_cash_flow(trade_list, mark):
    """Realized + unrealized P&L equals the cash flow marked to market, whatever the path."""
    book = PositionBook()
    cash = 0.0
    qty = 0
    for i, (side, n, price) in enumerate(trade_list):
        book.apply_fill(fill(side, n, price, fill_id=f"F{i + 1}"))
        signed = n if side == "buy" else -n
        qty += signed
        cash -= signed * price
    book.mark("AAPL", mark)
    pos = book.get("AAPL")
    assert pos.qty == qty
    assert pos.realized_pnl + pos.unrealized_pnl == pytest.approx(cash + qty * mark, abs=1e-6 * (1 + abs(cash)))
    if qty == 0:
        assert pos.avg_price == 0.0


# ----------------------------------------------------------------------------- the gateway's use
# The exchange gateway is the source of the fills: it books each one it made (no
# de-duplication), and its book answers get_positions.  The same class, the same arithmetic.


@dataclasses.dataclass(frozen=True)
class GatewayFill:
    """The shape of the gateway's FillRecord: a number n and fill_id F<n>."""

    n: int
    fill_id: str
    client_order_id: str
    order_id: str
    symbol: str
    side: P.Side
    qty: int
    price: float


def gw_fill(n: int, side: str, qty: int, price: float, symbol: str = "AAA") -> GatewayFill:
    return GatewayFill(n, f"F{n}", f"c{n}", f"O{n}", symbol, P.Side(side), qty, price)


def test_gateway_books_its_own_fills_and_follows_their_numbers():
    book = PositionBook()
    p = book.apply(gw_fill(1, "buy", 10, 100.0))
    book.apply(gw_fill(2, "buy", 10, 110.0))
    assert (p.qty, p.avg_price, p.realized_pnl) == (20, 105.0, 0.0)
    book.apply(gw_fill(3, "sell", 5, 120.0))
    assert (p.qty, p.avg_price, p.realized_pnl) == (15, 105.0, 75.0)
    book.apply(gw_fill(4, "sell", 15, 100.0))
    assert (p.qty, p.avg_price, p.realized_pnl) == (0, 0.0, 0.0)
    assert book.last_fill_seq == 4
    # the source never drops a fill: the journal replays each exactly once
    book.apply(gw_fill(5, "sell", 15, 90.0))
    book.apply(gw_fill(6, "buy", 30, 85.0))  # flip back long
    assert (p.qty, p.avg_price, p.realized_pnl) == (15, 85.0, 75.0) and book.last_fill_seq == 6


def test_gateway_reply_lists_positions_by_symbol_and_never_adds_flat_rows():
    book = PositionBook()
    book.apply(gw_fill(1, "buy", 10, 11.0, "BBB"))
    book.apply(gw_fill(2, "sell", 4, 20.0, "AAA"))
    assert book.find("ZZZ") is None and book.qty("ZZZ") == 0  # a risk check asks without adding a row
    assert book.to_list() == [
        {"symbol": "AAA", "qty": -4, "avg_price": 20.0, "realized_pnl": 0.0},
        {"symbol": "BBB", "qty": 10, "avg_price": 11.0, "realized_pnl": 0.0},
    ]
    assert book.net_positions() == [P.NetPosition("AAA", -4, 20.0, 0.0), P.NetPosition("BBB", 10, 11.0, 0.0)]
    reply = P.GetPositionsReply(ok=True, positions=book.net_positions(), last_fill_seq=book.last_fill_seq)
    assert P.decode(reply.pack()) == reply


def test_the_gateways_old_name_is_the_same_class():
    assert PositionState is SymbolPosition


@given(trades)
def test_gateway_and_executor_books_agree(trade_list):
    """The executor, loading the gateway's reply midway and then counting the stream (which
    repeats what the snapshot holds), ends with the gateway's positions exactly."""
    gateway, executor = PositionBook(), PositionBook()
    half = len(trade_list) // 2
    stream = [gw_fill(i + 1, side, n, price) for i, (side, n, price) in enumerate(trade_list)]
    for f in stream[:half]:
        gateway.apply(f)
    executor.load_snapshot(gateway.to_list(), gateway.last_fill_seq)
    for f in stream[half:]:
        gateway.apply(f)
    for f in stream + stream:  # the whole stream, twice: only what the snapshot lacks counts
        executor.apply_fill(f)
    for mine, theirs in zip(executor.to_list(), gateway.to_list(), strict=True):
        assert mine["symbol"] == theirs["symbol"] and mine["qty"] == theirs["qty"]
        assert mine["avg_price"] == pytest.approx(theirs["avg_price"])
        assert mine["realized_pnl"] == pytest.approx(theirs["realized_pnl"])
