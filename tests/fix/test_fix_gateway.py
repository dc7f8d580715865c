"""The exchange gateway with ``--exchange fix`` against QuickFIX/C++ as the venue, over real
processes and sockets: an order from a client written from docs/protocol.md reaches the venue
as a NewOrderSingle and comes back filled; a stop is held and emulated by the gateway; a
kill -9 of the gateway and a restart ask the venue for the working order's status and double
no fill."""

from __future__ import annotations

import itertools
import signal

import pytest
import zmq

from tests.fix.test_fix_session_quickfix import Acceptor, venue  # noqa: F401  (fixture)
from tests.integration.test_order_kinds_wire import DocsClient, send
from tests.procs import log_text, scaled, start_worker, stop, wait_until
from workers.config import Endpoints

pytest.importorskip("quickfix", reason="the FIX counterparty is QuickFIX (pip install quickfix-py, Linux)")


@pytest.fixture
def gateway(tmp_path, venue):  # noqa: F811
    v = venue(venue=True)
    cfg = tmp_path / "fix.cfg"
    cfg.write_text("[DEFAULT]\nHeartBtInt=5\nFileStorePath=fix-store\nReconnectInterval=1\n"
                   f"[SESSION]\nBeginString=FIX.4.4\nSenderCompID=TICKDESK\nTargetCompID=VENUE\n"
                   f"SocketConnectHost=127.0.0.1\nSocketConnectPort={v.port}\n")
    eps = Endpoints.ephemeral_ipc(tmp_path)
    ctx = zmq.Context()
    client = DocsClient(ctx, eps)
    procs = []

    def start():
        proc = start_worker("exchange", eps, "--journal", str(tmp_path / "j.sqlite"), "--exchange", "fix",
                            "--fix-config", str(cfg), tmp_path=tmp_path)
        procs.append(proc)
        client.reconnect()
        assert client.call("ping")["ok"] and proc.poll() is None, log_text(proc)
        v.wait("logon", scaled(15))
        # until the gateway has read the venue's Logon, orders are refused ("not connected"):
        # a probe order tells when it has (and shows the refusal is a clean one)
        n = itertools.count(len(procs) * 1000)

        def accepted():
            r = send(client, f"probe-{next(n)}", "MSFT", "buy", 1, order_type="limit", limit_price=1.0)
            assert r["ok"] or "not connected" in r["reason"], r
            return r["ok"]

        wait_until(accepted, timeout=10, message="the gateway logged on to the venue")
        return proc

    yield start, v, client
    for p in procs:
        stop(p)
    ctx.destroy(linger=0)


def test_orders_through_the_gateway_to_a_fix_venue_and_a_restart(gateway):
    start, v, client = gateway
    gw = start()
    r = send(client, "fx-1", "AAPL", "buy", 50, order_type="limit", limit_price=101.5)
    assert r["ok"], r.get("reason")
    filled = wait_until(lambda: client.order("fx-1")["status"] == "filled" and client.order("fx-1"), timeout=10,
                        message="the venue's fill")
    assert filled["filled_qty"] == 50 and filled["avg_price"] == 101.5 and filled["order_id"].startswith("V")
    # larger than the venue's 100: 100 now, the rest works
    assert send(client, "fx-2", "AAPL", "buy", 300, order_type="limit", limit_price=99.0)["ok"]
    wait_until(lambda: client.order("fx-2")["filled_qty"] == 100, timeout=10, message="the partial fill")
    # a kind the venue lacks is the gateway's to hold, and says so
    stop_order = send(client, "fx-3", "AAPL", "buy", 10, order_type="stop", stop_price=150.0)
    assert stop_order["ok"] and client.order("fx-3")["emulated"] is True
    fills_before = client.call("get_fills")["fills"]
    assert sorted((f["client_order_id"], f["qty"]) for f in fills_before if f["symbol"] == "AAPL") == [
        ("fx-1", 50), ("fx-2", 100)]
    # kill -9 and a restart: the journal's working order is asked for, no fill twice
    gw.send_signal(signal.SIGKILL)
    gw.wait(timeout=scaled(10))
    v.wait("logout", scaled(15))
    start()

    def asked():
        ev = v.wait("app_in", scaled(10))
        return "|35=H|" in ev["raw"] and "|11=fx-2|" in ev["raw"]

    wait_until(asked, timeout=15, interval=0, message="an OrderStatusRequest for fx-2")
    assert client.order("fx-2")["filled_qty"] == 100 and client.order("fx-2")["status"] == "partially_filled"
    assert client.order("fx-1")["status"] == "filled"
    after = [f for f in client.call("get_fills")["fills"] if f["symbol"] == "AAPL"]
    assert [f["fill_id"] for f in after] == [f["fill_id"] for f in fills_before if f["symbol"] == "AAPL"]
    # and the session goes on: a cancel reaches the venue and comes back
    assert client.call("cancel_order", client_order_id="fx-2")["ok"]
    wait_until(lambda: client.order("fx-2")["status"] == "cancelled", timeout=10, message="the cancel")
