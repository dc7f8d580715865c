"""Request clients shared by the raw REQ/REP baseline and the exchange-gateway benchmark.

The same code drives both servers, so a ratio compares servers, never two different clients.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import msgpack
import zmq

from bench.procs import BenchError


def req_roundtrips(ctx: zmq.Context, endpoint: str, make: Callable[[int], bytes], n: int, warmup: int = 200,
                   check: Callable[[dict], bool] | None = None, timeout_ms: int = 5000) -> dict:
    """``n`` sequential REQ round trips; returns {"rtt_ns": [..], "req_s": float, "bad": int}."""
    sock = ctx.socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)
    rtts = []
    bad = 0
    try:
        t_start = 0
        for i in range(warmup + n):
            payload = make(i)
            t0 = time.perf_counter_ns()
            sock.send(payload)
            if not sock.poll(timeout_ms):
                raise BenchError(f"no reply from {endpoint} within {timeout_ms} ms")
            reply = sock.recv()
            t1 = time.perf_counter_ns()
            if i == warmup:
                t_start = t0
            if i >= warmup:
                rtts.append(t1 - t0)
                if check is not None and not check(msgpack.unpackb(reply)):
                    bad += 1
        elapsed = (time.perf_counter_ns() - t_start) / 1e9
    finally:
        sock.close(0)
    return {"rtt_ns": rtts, "req_s": n / elapsed if elapsed > 0 else 0.0, "bad": bad}


def dealer_pipelined(ctx: zmq.Context, endpoint: str, make: Callable[[int], bytes], n: int, inflight: int = 16,
                     check: Callable[[dict], bool] | None = None, timeout_ms: int = 5000, warmup: int = 200) -> dict:
    """Keep ``inflight`` requests outstanding on one DEALER until ``n`` replies are in.

    Requests go as ``["", payload]`` (what a REQ would send), so a REP server answers too.
    Returns {"per_s": float, "bad": int, "rtt_ns": [...]} (rtt includes queueing behind the
    other requests in flight)."""
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVHWM, 0)
    sock.setsockopt(zmq.SNDHWM, 0)
    sock.connect(endpoint)
    sent_at: dict[int, int] = {}
    rtts = []
    bad = 0
    total = warmup + n
    try:
        # warm up with one request in flight, then measure with `inflight`
        nxt = 0
        done = 0
        t_start = 0
        while done < total:
            window = 1 if nxt < warmup else inflight
            while nxt < total and len(sent_at) < window:
                sock.send_multipart([b"", make(nxt)])
                sent_at[nxt] = time.perf_counter_ns()
                nxt += 1
                if nxt == warmup + 1:
                    t_start = sent_at[nxt - 1]
            if not sock.poll(timeout_ms):
                raise BenchError(f"no reply from {endpoint} within {timeout_ms} ms ({done} of {total} done)")
            while True:
                try:
                    frames = sock.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                d = msgpack.unpackb(frames[-1])
                key = d.get("_i")
                t1 = time.perf_counter_ns()
                i = key if isinstance(key, int) else _match(d, sent_at)
                t0 = sent_at.pop(i, None)
                if t0 is None:
                    bad += 1
                    continue
                done += 1
                if i >= warmup:
                    rtts.append(t1 - t0)
                    if check is not None and not check(d):
                        bad += 1
        elapsed = (time.perf_counter_ns() - t_start) / 1e9
    finally:
        sock.close(0)
    return {"per_s": n / elapsed if elapsed > 0 else 0.0, "bad": bad, "rtt_ns": rtts}


def _match(reply: dict, sent_at: dict[int, int]) -> int:
    """Request index of a reply: the number at the end of its client_order_id (``...-<i>``)."""
    coid = reply.get("client_order_id")
    if isinstance(coid, str) and "-" in coid:
        try:
            return int(coid.rsplit("-", 1)[1])
        except ValueError:
            pass
    return min(sent_at) if sent_at else -1
