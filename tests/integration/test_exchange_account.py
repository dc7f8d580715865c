"""What a trader does to the exchange gateway's account, with real processes: the kill switch
across SIGKILL and restarts, from two clients; get_fills after a restart; a new execution
epoch after every restart."""

from __future__ import annotations

import itertools
import signal

import pytest
import zmq

from tests.integration.test_exchange_gateway import (  # noqa: F401 (ctx, env: fixtures)
    call, call_raw, collect, ctx, env, publish_tick, req_socket, wait_for_market, wait_for_service)
from tests.procs import log_text, wait_until
from workers import protocol as P

pytestmark = pytest.mark.timeout(120)

_ids = itertools.count(1)


def market(sock, side, qty, symbol="AAA", cid=None) -> dict:
    return call(sock, P.SendOrder(client_order_id=cid or f"t-{next(_ids)}", symbol=symbol, side=side, qty=qty))


def wait_for_market_reducing(ticks, sock, symbol, execution):
    """wait_for_market for a gateway whose kill switch is on: the probes SELL a PROBE long
    (they reduce it), so they are not refused.  A filled probe means its PROBE tick was seen,
    and the ``symbol`` tick published before it on the same pipe too; its report on
    ``execution`` means that SUB has joined the restarted gateway's stream."""

    def probe():
        publish_tick(ticks, symbol)
        publish_tick(ticks, "PROBE")
        return market(sock, P.Side.SELL, 1, "PROBE")["status"] == "filled" and execution.poll(50)

    wait_until(probe, timeout=10, interval=0.05, message="the restarted gateway never saw a tick")


def exec_epochs(execution, timeout=5.0) -> set[int]:
    got = collect(execution, lambda ms: any(m.TYPE == "fill" for _, m in ms), timeout=timeout)
    return {m.epoch for _, m in got}


def sigkill(proc):
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)


def test_the_kill_switch_survives_sigkill_and_restarts_refuses_increases_from_any_client_and_lets_closing_orders_fill(env, ctx):
    eps, ticks, execution, start = env
    proc = start()
    trader = req_socket(ctx, eps.orders)
    wait_for_service(proc, trader)
    wait_for_market(ticks, trader, "AAA", execution)
    assert market(trader, P.Side.BUY, 500, "PROBE")["status"] == "filled"  # room for the probes after the restarts
    first = market(trader, P.Side.BUY, 100, cid="first-buy")
    assert first["status"] == "filled"
    epochs = exec_epochs(execution)
    assert len(epochs) == 1 and min(epochs) > 0  # every report names this process
    (epoch1,) = epochs

    r = call(trader, P.SetKillSwitch(on=True, reason="daily loss limit"))
    assert (r["ok"], r["on"], r["kill_reason"]) == (True, True, "daily loss limit")

    sigkill(proc)
    proc = start()
    strategy = req_socket(ctx, eps.orders)  # a second client: the switch is the account's, not the trader's
    wait_for_service(proc, strategy)
    pos = call(strategy, P.GetPositions())
    assert (pos["kill_switch"], pos["kill_reason"]) == (True, "daily loss limit"), log_text(proc)
    assert {p["symbol"]: p["qty"] for p in pos["positions"]}["AAA"] == 100
    trader.close(0)
    trader = req_socket(ctx, eps.orders)
    wait_for_market_reducing(ticks, trader, "AAA", execution)

    for who in (strategy, trader):
        r = market(who, P.Side.BUY, 10)
        assert not r["ok"] and r["status"] == "rejected" and r["reason"].startswith("kill switch"), r
        r = market(who, P.Side.SELL, 101)  # would leave a short
        assert not r["ok"] and r["reason"].startswith("kill switch"), r
    # a resend of the order answered before the switch: its stored reply
    assert call(trader, P.SendOrder(client_order_id="first-buy", symbol="AAA", side=P.Side.BUY, qty=100)) == first
    # the closing order is accepted and fills; the report is of the new incarnation
    collect(execution, lambda ms: True, timeout=0.1)  # drop what the probes published
    closing = market(trader, P.Side.SELL, 60)
    assert (closing["ok"], closing["status"], closing["filled_qty"]) == (True, "filled", 60)
    epochs = exec_epochs(execution)
    assert len(epochs) == 1 and epochs != {epoch1} and min(epochs) > 0

    # a clean restart: still on (now from the journal's tables, not its log)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 0, log_text(proc)
    proc = start()
    wait_for_service(proc, strategy)
    assert call(strategy, P.GetPositions())["kill_switch"] is True
    wait_for_market_reducing(ticks, strategy, "AAA", execution)
    assert market(strategy, P.Side.BUY, 1)["reason"].startswith("kill switch")

    r = call(strategy, P.SetKillSwitch(on=False))
    assert (r["ok"], r["on"]) == (True, False)
    assert call(trader, P.GetPositions())["kill_switch"] is False
    assert market(trader, P.Side.BUY, 10)["status"] == "filled"
    sigkill(proc)
    proc = start()
    wait_for_service(proc, trader)
    pos = call(trader, P.GetPositions())
    assert pos["kill_switch"] is False and {p["symbol"]: p["qty"] for p in pos["positions"]}["AAA"] == 50


def test_get_fills_after_a_restart_returns_every_fill_in_order_and_pages(env, ctx):
    eps, ticks, execution, start = env
    proc = start()
    sock = req_socket(ctx, eps.orders)
    wait_for_service(proc, sock)
    wait_for_market(ticks, sock, "AAA", execution)
    for i in range(20):
        assert market(sock, P.Side.BUY if i % 4 else P.Side.SELL, i + 1)["status"] == "filled"
    got = collect(execution, lambda ms: sum(m.TYPE == "fill" and m.symbol == "AAA" for _, m in ms) >= 20)
    live = {m.fill_id: m for _, m in got if m.TYPE == "fill"}

    sigkill(proc)
    proc = start()
    wait_for_service(proc, sock)
    everything = call(sock, P.GetFills())
    assert everything["ok"] and everything["last_fill"] == len(everything["fills"])
    numbers = [int(f["fill_id"][1:]) for f in everything["fills"]]
    assert numbers == list(range(1, everything["last_fill"] + 1))  # every fill, oldest first
    for f in everything["fills"]:
        assert (f["seq"], f["epoch"]) == (0, 0)
        if f["fill_id"] in live:  # each fill seen live comes back the same
            m = live[f["fill_id"]]
            assert (f["client_order_id"], f["symbol"], f["side"], f["qty"], f["price"]) == (
                m.client_order_id, m.symbol, m.side.value, m.qty, m.price)
    assert set(live) <= {f["fill_id"] for f in everything["fills"]}
    assert sum(f["symbol"] == "AAA" for f in everything["fills"]) == 20

    pages, since = [], 0
    while True:
        r = call(sock, P.GetFills(since_fill=since, limit=7))
        assert r["ok"] and len(r["fills"]) <= 7
        if not r["fills"]:
            break
        pages.extend(r["fills"])
        since = int(r["fills"][-1]["fill_id"][1:])
    assert pages == everything["fills"]
    assert call(sock, P.GetFills(since_fill=everything["last_fill"]))["fills"] == []
    # a bad request is refused, and the gateway goes on
    r = P.unpack_map(call_raw(sock, P.packb({"v": 1, "type": "get_fills", "limit": 0})))
    assert r["ok"] is False and "limit" in r["reason"]
    assert call(sock, P.Ping())["ok"] is True and proc.poll() is None
