"""Raw baselines: plain pyzmq + msgpack with TickDesk's payloads, measured in the same run.

Each peer is its own process (``python -m bench.raw ROLE ...``), like the workers, so a raw
figure and a TickDesk figure pay the same scheduling on the same cores:

* ``pub``/``sub`` -- PUB/SUB, one frame ``tick.<SYM> NUL msgpack`` per tick (the classic tick
  form), SNDHWM/RCVHWM 100 000 like the gateway and the strategy.  The subscriber decodes
  each frame with ``msgpack.unpackb``, counts sequence gaps per symbol and records
  ``now - ts``.  With ``--batch N`` (N > 1) the same peers send and read TickDesk's batched
  form instead: one ``tick.<SYM> NUL msgpack`` frame per N ticks of a symbol, the ``ticks``
  map of docs/protocol.md (``{v, type: "ticks", symbol, ticks: [[seq, ts, last, bid, ask,
  bid_size, ask_size, volume], ...]}``), the rows built and packed per frame; the subscriber
  unpacks each frame, checks the seq of its first row against the symbol's last and touches
  every row's price.  Paced runs use the gateway's own :class:`~workers.marketdata.gateway.Schedule`
  and sleep in ``zmq.Poller.poll`` between bursts exactly like the worker runtime does.
  A PUSH "ready" channel makes the publisher wait until every subscriber receives.
* ``push``/``pull`` -- PUSH/PULL of signal maps (no topic), throughput.
* ``rep`` -- a REP server that unpacks each send_order and packs a send_order_reply; the
  benchmark's own REQ and DEALER clients (:mod:`bench.clients`) talk to it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from array import array

import msgpack
import zmq

from bench.common import SYMBOLS, Sizes, order_map, order_reply_map, pct, rate, signal_map, tick_map
from bench.procs import REPO, kill_peers, peer_result, run_peer

HWM = 100_000
IDLE_MS = 1500
#: ticks per frame of the batched baseline: the gateway's default ``--batch-ticks``
BATCH = 256


# ============================================================================ peers


def peer_pub(a: argparse.Namespace) -> dict:
    from workers.marketdata.gateway import Schedule

    ctx = zmq.Context()
    pub = ctx.socket(zmq.PUB)
    pub.setsockopt(zmq.LINGER, 0)
    pub.setsockopt(zmq.SNDHWM, HWM)
    pub.bind(a.endpoint)
    sync = ctx.socket(zmq.PULL)
    sync.setsockopt(zmq.LINGER, 0)
    sync.bind(a.sync)
    ready = 0
    deadline = time.monotonic() + 30
    while ready < a.subs:  # until every subscriber has received a sync frame
        pub.send(b"sync.hello\x00")
        while sync.poll(10):
            sync.recv()
            ready += 1
        if time.monotonic() > deadline:
            raise SystemExit("subscribers never got ready")
    packer = msgpack.Packer()
    maps = [tick_map(s, 0, 0) for s in SYMBOLS]
    topics = [b"tick." + s.encode() + b"\x00" for s in SYMBOLS]
    nsym = len(SYMBOLS)
    send, pack, clock, nb = pub.send, packer.pack, time.time_ns, zmq.NOBLOCK
    sent = dropped = 0
    i = 0
    batch = max(1, a.batch)

    def publish(n: int) -> None:
        nonlocal sent, dropped, i
        for _ in range(n):
            k = i % nsym
            d = maps[k]
            d["seq"] += 1
            d["ts"] = clock()
            d["volume"] += 100
            i += 1
            try:
                send(topics[k] + pack(d), nb)
                sent += 1
            except zmq.Again:
                dropped += 1

    # the batched form: ``ticks`` maps of up to ``batch`` rows, one frame per symbol in turn
    frames = [{"v": 1, "type": "ticks", "symbol": s, "ticks": []} for s in SYMBOLS]

    def publish_batched(n: int) -> None:
        nonlocal sent, dropped, i
        while n > 0:
            k = i % nsym
            t = maps[k]
            rows = min(batch, n)
            seq, vol, ts = t["seq"], t["volume"], clock()
            last, bid, ask, bsz, asz = t["last"], t["bid"], t["ask"], t["bid_size"], t["ask_size"]
            f = frames[k]
            f["ticks"] = [[seq + j, ts, last, bid, ask, bsz, asz, vol + 100 * j] for j in range(1, rows + 1)]
            t["seq"], t["volume"] = seq + rows, vol + 100 * rows
            i += 1
            n -= rows
            try:
                send(topics[k] + pack(f), nb)
                sent += rows
            except zmq.Again:
                dropped += rows

    if batch > 1:
        publish = publish_batched  # noqa: F811

    t0 = time.monotonic()
    if a.rate <= 0:
        while sent + dropped < a.count:
            publish(min(1000, a.count - sent - dropped))
    else:
        poller = zmq.Poller()
        poller.register(sync, zmq.POLLIN)  # the runtime always has a reader registered too
        sched = Schedule(a.rate, time.monotonic())
        end = t0 + a.seconds
        while True:
            now = time.monotonic()
            if now >= end:
                break
            n, wake = sched.take(now)
            if n:
                publish(n)
            now = time.monotonic()
            poller.poll(min(100, max(0, math.ceil((wake - now) * 1000))))
    elapsed = time.monotonic() - t0
    time.sleep(0.2)
    for _ in range(3):
        pub.send(b"sync.end\x00")
        time.sleep(0.05)
    ctx.destroy(linger=0)
    return {"sent": sent, "dropped": dropped, "pub_s": sent / elapsed if elapsed else 0.0}


def peer_sub(a: argparse.Namespace) -> dict:
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.RCVHWM, HWM)
    sub.setsockopt(zmq.SUBSCRIBE, b"tick.")
    sub.setsockopt(zmq.SUBSCRIBE, b"sync.")
    sub.connect(a.endpoint)
    sync = ctx.socket(zmq.PUSH)
    sync.setsockopt(zmq.LINGER, 1000)
    sync.connect(a.sync)
    while True:  # wait for the publisher's hello
        if not sub.poll(30_000):
            raise SystemExit("no publisher")
        if sub.recv().startswith(b"sync."):
            sync.send(b"ready")
            break
    unpackb, clock, recv, nb = msgpack.unpackb, time.time_ns, sub.recv, zmq.NOBLOCK
    if a.batch > 1:
        return _sub_batched(a, ctx, sub)
    lat = array("q")
    last_seq: dict[str, int] = {}
    got = lost = 0
    first = last = 0
    record = a.latency_out is not None
    done = False
    while not done:
        if not sub.poll(IDLE_MS if got else 30_000):
            break
        while True:
            try:
                f = recv(nb)
            except zmq.Again:
                break
            i = f.find(b"\x00")
            if f.startswith(b"sync."):
                if f.startswith(b"sync.end"):
                    done = True
                    break
                continue
            d = unpackb(f[i + 1:])
            now = clock()
            sym = d["symbol"]
            seq = d["seq"]
            prev = last_seq.get(sym)
            if prev is not None and seq != prev + 1:
                lost += seq - prev - 1
            last_seq[sym] = seq
            if record:
                lat.append(now - d["ts"])
            got += 1
            last = time.monotonic_ns()
            if got == 1:
                first = last
    if record:
        with open(a.latency_out, "wb") as fh:
            lat.tofile(fh)
    ctx.destroy(linger=0)
    return {"received": got, "lost": lost, "per_s": rate(got - 1, first, last)}


def _sub_batched(a: argparse.Namespace, ctx: zmq.Context, sub: zmq.Socket) -> dict:
    """The subscriber of batched ``ticks`` frames: unpack, check seq, touch every price."""
    unpackb, recv, nb = msgpack.unpackb, sub.recv, zmq.NOBLOCK
    last_seq: dict[str, int] = {}
    got = lost = frames = 0
    first = last = 0
    px = 0.0
    done = False
    while not done:
        if not sub.poll(IDLE_MS if got else 30_000):
            break
        while True:
            try:
                f = recv(nb)
            except zmq.Again:
                break
            if f.startswith(b"sync."):
                if f.startswith(b"sync.end"):
                    done = True
                    break
                continue
            d = unpackb(f[f.find(b"\x00") + 1:])
            rows = d["ticks"]
            sym = d["symbol"]
            prev = last_seq.get(sym)
            if prev is not None and rows[0][0] != prev + 1:
                lost += rows[0][0] - prev - 1
            last_seq[sym] = rows[-1][0]
            for r in rows:
                px += r[2]
            got += len(rows)
            frames += 1
            last = time.monotonic_ns()
            if frames == 1:
                first, got_first = last, got
    ctx.destroy(linger=0)
    # the rate from the first frame's arrival to the last: the first frame's rows do not count
    per_s = rate(got - got_first, first, last) if frames > 1 else 0.0
    return {"received": got, "lost": lost, "frames": frames, "per_s": per_s, "price_sum": round(px, 2)}


def peer_push(a: argparse.Namespace) -> dict:
    ctx = zmq.Context()
    push = ctx.socket(zmq.PUSH)
    push.setsockopt(zmq.LINGER, 5000)
    push.setsockopt(zmq.SNDHWM, HWM)
    push.connect(a.endpoint)
    packer = msgpack.Packer()
    d = signal_map(0, 0)
    send, pack, clock = push.send, packer.pack, time.time_ns
    for i in range(a.count):
        d["ts"] = clock()
        d["qty"] = 100 + (i & 7)
        send(pack(d))
    push.close()
    ctx.term()
    return {"sent": a.count}


def peer_pull(a: argparse.Namespace) -> dict:
    ctx = zmq.Context()
    pull = ctx.socket(zmq.PULL)
    pull.setsockopt(zmq.LINGER, 0)
    pull.setsockopt(zmq.RCVHWM, HWM)
    pull.bind(a.endpoint)
    print("ready", flush=True)
    unpackb, recv, nb = msgpack.unpackb, pull.recv, zmq.NOBLOCK
    got = 0
    first = last = 0
    while got < a.count:
        if not pull.poll(IDLE_MS if got else 30_000):
            break
        while got < a.count:
            try:
                f = recv(nb)
            except zmq.Again:
                break
            unpackb(f)
            got += 1
            last = time.monotonic_ns()
            if got == 1:
                first = last
    ctx.destroy(linger=0)
    return {"received": got, "per_s": rate(got - 1, first, last)}


def peer_rep(a: argparse.Namespace) -> dict:
    ctx = zmq.Context()
    rep = ctx.socket(zmq.REP)
    rep.setsockopt(zmq.LINGER, 0)
    rep.bind(a.endpoint)
    print("ready", flush=True)
    packer = msgpack.Packer()
    unpackb, pack, clock = msgpack.unpackb, packer.pack, time.time_ns
    n = 0
    parent = os.getppid()
    while True:  # until the benchmark kills it (or is gone)
        if not rep.poll(1000):
            if os.getppid() != parent:
                return {"served": n}
            continue
        req = unpackb(rep.recv())
        n += 1
        reply = order_reply_map(req["client_order_id"], n, clock())
        if "_i" in req:
            reply["_i"] = req["_i"]
        rep.send(pack(reply))


PEERS = {"pub": peer_pub, "sub": peer_sub, "push": peer_push, "pull": peer_pull, "rep": peer_rep}


def peer_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.raw", description="A raw pyzmq + msgpack peer of the benchmarks.")
    p.add_argument("role", choices=sorted(PEERS))
    p.add_argument("--endpoint", required=True, help="the data endpoint")
    p.add_argument("--sync", default="", help="PUSH/PULL endpoint on which subscribers say they receive")
    p.add_argument("--subs", type=int, default=1, help="pub: subscribers to wait for")
    p.add_argument("--count", type=int, default=100_000, help="messages to send (rate 0) / receive")
    p.add_argument("--rate", type=float, default=0.0, help="pub: messages per second in all, 0 = as fast as possible")
    p.add_argument("--seconds", type=float, default=5.0, help="pub: duration of a paced run")
    p.add_argument("--latency-out", default=None, help="sub: write one-way latencies (int64 ns) here")
    p.add_argument("--batch", type=int, default=1, help="pub/sub: ticks per frame; > 1 = TickDesk's batched 'ticks' form (default 1)")
    a = p.parse_args(argv)
    print(json.dumps(PEERS[a.role](a)), flush=True)
    return 0


# ============================================================================ orchestration


def _ipc(tmp, name: str) -> str:
    return f"ipc://{tmp}/{name}.sock"


def pubsub(tmp, *, count: int = 0, rate_: float = 0.0, seconds: float = 0.0, subs: int = 1, latency: bool = False, batch: int = 1) -> dict:
    ep, sync = _ipc(tmp, "raw-ticks"), _ipc(tmp, "raw-sync")
    lat_files = [f"{tmp}/raw-lat-{i}.i64" for i in range(subs)] if latency else [None] * subs
    sub_procs = []
    for f in lat_files:
        args = ["sub", "--endpoint", ep, "--sync", sync, "--batch", str(batch)]
        if f:
            args += ["--latency-out", f]
        sub_procs.append(run_peer("bench.raw", *args))
    pub_args = ["pub", "--endpoint", ep, "--sync", sync, "--subs", str(subs), "--batch", str(batch)]
    pub_args += ["--count", str(count)] if rate_ <= 0 else ["--rate", str(rate_), "--seconds", str(seconds)]
    pub = run_peer("bench.raw", *pub_args)
    try:
        limit = 120 + seconds + count / 20_000
        pr = peer_result(pub, limit)
        srs = [peer_result(s, limit) for s in sub_procs]
    finally:
        kill_peers(pub, *sub_procs)
    out = {"pub": pr, "subs": srs, "per_s": min(s["per_s"] for s in srs), "lost": sum(s["lost"] for s in srs),
           "received": sum(s["received"] for s in srs)}
    if latency:
        import numpy as np

        out["latency"] = pct(np.concatenate([np.fromfile(f, dtype=np.int64) for f in lat_files]))
    return out


def pushpull(tmp, count: int) -> dict:
    ep = _ipc(tmp, "raw-signals")
    pull = run_peer("bench.raw", "pull", "--endpoint", ep, "--count", str(count))
    try:
        pull.stdout.readline()  # "ready": bound
        push = run_peer("bench.raw", "push", "--endpoint", ep, "--count", str(count))
        pr = peer_result(pull, 120 + count / 20_000)
        peer_result(push, 30)
    finally:
        kill_peers(pull)
    return pr


def reqrep(tmp, req_n: int, dealer_n: int, inflight: int) -> dict:
    from bench.clients import dealer_pipelined, req_roundtrips

    ep = _ipc(tmp, "raw-orders")
    rep = run_peer("bench.raw", "rep", "--endpoint", ep)
    ctx = zmq.Context()
    packer = msgpack.Packer()
    try:
        rep.stdout.readline()
        clock = time.time_ns

        def make(i: int) -> bytes:
            return packer.pack(order_map(f"raw-{i}", i, clock()))

        r = req_roundtrips(ctx, ep, make, req_n)
        d = dealer_pipelined(ctx, ep, make, dealer_n, inflight)
    finally:
        kill_peers(rep)
        ctx.destroy(linger=0)
    return {"rtt": pct(r["rtt_ns"]), "req_s": r["req_s"], "dealer_per_s": d["per_s"], "dealer_rtt": pct(d["rtt_ns"])}


def run(sizes: Sizes, tmp, log=print) -> dict:
    """Every raw baseline; returns {name: figures}."""
    out: dict[str, dict] = {}
    log("raw: PUB/SUB throughput")
    out["pubsub"] = pubsub(tmp, count=sizes.ticks)
    log(f"raw: PUB/SUB throughput, batched frames of {BATCH} ticks")
    out["pubsub_batched"] = pubsub(tmp, count=sizes.ticks, batch=BATCH)
    for r in sizes.rates:
        log(f"raw: PUB/SUB latency at {r}/s")
        out[f"pubsub_lat_{r}"] = pubsub(tmp, rate_=r, seconds=sizes.latency_s, latency=True)
    log("raw: PUSH/PULL throughput")
    out["pushpull"] = pushpull(tmp, sizes.ticks)
    log("raw: REQ/REP and DEALER")
    out["reqrep"] = reqrep(tmp, sizes.req_n, sizes.dealer_n, sizes.inflight)
    return out


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    sys.exit(peer_main(sys.argv[1:]))
