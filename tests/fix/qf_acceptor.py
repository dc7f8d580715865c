"""A QuickFIX/C++ acceptor (the quickfix-py wheel) as an independent FIX 4.4 counterparty for
the tests: it validates every message against QuickFIX's FIX44.xml data dictionary.  Run as a
process: ``python -m tests.fix.qf_acceptor CONFIG.json``; it prints one JSON line per event
("ready", "logon", "logout", "admin_in", "app_in", "reject_logon") and reads commands on stdin
("gap N": skip N of its outgoing sequence numbers, then send a TestRequest; "drop": close the
connection without a Logout; "fill SYMBOL": fill that symbol's open orders, connected or not,
as a venue does; "quit")."""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path

import quickfix as fix


def emit(kind: str, **kw) -> None:
    sys.stdout.write(json.dumps({"event": kind, **kw}) + "\n")
    sys.stdout.flush()


def data_dictionary() -> Path:
    """QuickFIX's FIX44.xml, installed by the wheel under <prefix>/share/quickfix."""
    for base in (Path(sys.prefix), Path(sys.base_prefix)):
        p = base / "share" / "quickfix" / "FIX44.xml"
        if p.is_file():
            return p
    raise SystemExit("FIX44.xml not found (pip install quickfix-py)")


def get(msg, tag: int, default: str = "") -> str:
    return msg.getField(tag) if msg.isSetField(tag) else default


class Venue:
    """A few rules a test can rely on: symbol REJ is rejected; up to 100 fills at once at the
    limit (a market order at 100.00); a limit above 100 fills 100 and rests; a cancel of a
    filled order is refused (OrderCancelReject); a replace changes quantity and price."""

    def __init__(self):
        self.orders: dict[str, dict] = {}  # the current ClOrdID -> the order
        self.n = 0
        # QuickFIX calls fromApp on its own thread; the commands run on the main one
        self.lock = threading.RLock()

    def _id(self) -> str:
        self.n += 1
        return str(self.n)

    def report(self, sid, o: dict, exec_type: str, last_qty: int = 0, text: str = "", cl_ord_id: str = "",
               orig: str = "") -> None:
        er = fix.Message()
        er.getHeader().setField(fix.MsgType(fix.MsgType_ExecutionReport))
        er.setField(37, o["order_id"])
        er.setField(11, cl_ord_id or o["cl_ord_id"])
        if orig:
            er.setField(41, orig)
        er.setField(17, "E" + self._id())
        er.setField(150, exec_type)
        er.setField(39, o["status"])
        er.setField(55, o["symbol"])
        er.setField(54, o["side"])
        er.setField(38, str(o["qty"]))
        if o.get("price"):
            er.setField(44, o["price"])
        er.setField(151, str(0 if o["status"] in ("2", "4", "8") else o["qty"] - o["cum"]))
        er.setField(14, str(o["cum"]))
        er.setField(6, o["avg"] if o["cum"] else "0")
        if last_qty:
            er.setField(32, str(last_qty))
            er.setField(31, o["avg"])
        if text:
            er.setField(58, text)
        fix.Session.sendToTarget(er, sid)

    def on_message(self, msg, sid) -> None:
        with self.lock:
            self._on_message(msg, sid)

    def _on_message(self, msg, sid) -> None:
        mt = get(msg.getHeader(), 35)
        if mt == "D":
            cl = get(msg, 11)
            o = {"cl_ord_id": cl, "order_id": "V" + self._id(), "symbol": get(msg, 55), "side": get(msg, 54),
                 "qty": int(float(get(msg, 38, "0"))), "price": get(msg, 44), "cum": 0, "avg": "0", "status": "0"}
            self.orders[cl] = o
            if o["symbol"] == "SLOW":  # kept, answered only by "fill SLOW" (or a status request)
                return
            if o["symbol"] == "REJ":
                o["status"] = "8"
                self.report(sid, o, "8", text="unknown symbol REJ")
                return
            self.report(sid, o, "0")
            fill = o["qty"] if o["qty"] <= 100 or not o["price"] else 100
            o["cum"], o["avg"] = fill, o["price"] or "100"
            o["status"] = "2" if fill == o["qty"] else "1"
            self.report(sid, o, "F", last_qty=fill)
        elif mt in ("F", "G"):
            orig, cl = get(msg, 41), get(msg, 11)
            o = self.orders.get(orig)
            if o is None or o["status"] in ("2", "4", "8"):
                rej = fix.Message()
                rej.getHeader().setField(fix.MsgType(fix.MsgType_OrderCancelReject))
                rej.setField(37, o["order_id"] if o else "NONE")
                rej.setField(11, cl)
                rej.setField(41, orig)
                rej.setField(39, o["status"] if o else "8")
                rej.setField(434, "1" if mt == "F" else "2")
                rej.setField(58, "too late: the order is done" if o else "unknown order")
                fix.Session.sendToTarget(rej, sid)
                return
            del self.orders[orig]
            self.orders[cl] = o
            o["cl_ord_id"] = cl
            if mt == "F":
                o["status"] = "4"
                self.report(sid, o, "4", orig=orig)
            else:
                o["qty"] = int(float(get(msg, 38, str(o["qty"]))))
                o["price"] = get(msg, 44, o["price"])
                self.report(sid, o, "5", orig=orig)
        elif mt == "H":
            o = self.orders.get(get(msg, 11))
            if o is not None:
                self.report(sid, o, "I")


class App(fix.Application):
    def __init__(self, cfg: dict):
        super().__init__()
        self.cfg = cfg
        self.sid = None
        self.venue = Venue()

    def onCreate(self, sid):  # noqa: N802
        self.sid = sid

    def onLogon(self, sid):  # noqa: N802
        emit("logon")

    def onLogout(self, sid):  # noqa: N802
        emit("logout")

    def toAdmin(self, msg, sid):  # noqa: N802
        pass

    def fromAdmin(self, msg, sid):  # noqa: N802
        mt = fix.MsgType()
        msg.getHeader().getField(mt)
        seq = fix.MsgSeqNum()
        msg.getHeader().getField(seq)
        emit("admin_in", type=mt.getValue(), seq=seq.getValue(), raw=msg.toString().replace("\x01", "|"))
        if mt.getValue() == fix.MsgType_Logon and self.cfg.get("password"):
            given = msg.getField(554) if msg.isSetField(554) else ""
            if given != self.cfg["password"]:
                emit("reject_logon")
                raise fix.RejectLogon("bad password")

    def toApp(self, msg, sid):  # noqa: N802
        pass

    def fromApp(self, msg, sid):  # noqa: N802
        # the venue first: a test that saw "app_in" may rely on the venue having taken it
        if self.cfg.get("venue"):
            self.venue.on_message(msg, sid)
        emit("app_in", raw=msg.toString().replace("\x01", "|"))


def main() -> int:
    cfg = json.loads(Path(sys.argv[1]).read_text())
    folder = Path(cfg["folder"])
    folder.mkdir(parents=True, exist_ok=True)
    ini = folder / "acceptor.cfg"
    ini.write_text(
        "[DEFAULT]\n"
        "ConnectionType=acceptor\n"
        f"SocketAcceptPort={cfg['port']}\n"
        "SocketAcceptHost=127.0.0.1\n"
        f"FileStorePath={folder / 'store'}\n"
        f"FileLogPath={folder / 'log'}\n"
        "StartTime=00:00:00\nEndTime=00:00:00\n"
        "UseDataDictionary=Y\n"
        f"DataDictionary={data_dictionary()}\n"
        "ValidateUserDefinedFields=Y\n"
        "ResetOnDisconnect=N\n"
        + (f"SocketUseSSL=Y\nServerCertificateFile={cfg['tls']['cert']}\nServerCertificateKeyFile={cfg['tls']['key']}\n"
           "CertificateVerifyLevel=0\n" if cfg.get("tls") else "")
        +
        "[SESSION]\n"
        "BeginString=FIX.4.4\n"
        f"SenderCompID={cfg.get('sender', 'VENUE')}\n"
        f"TargetCompID={cfg.get('target', 'TICKDESK')}\n"
    )
    settings = fix.SessionSettings(str(ini))
    app = App(cfg)
    kind = fix.SSLSocketAcceptor if cfg.get("tls") else fix.SocketAcceptor
    acceptor = kind(app, fix.FileStoreFactory(settings), settings, fix.FileLogFactory(settings))
    acceptor.start()
    emit("ready")
    done = threading.Event()
    for line in sys.stdin:
        cmd = line.split()
        if not cmd:
            continue
        if cmd[0] == "quit":
            break
        if cmd[0] == "drop" and app.sid is not None:  # the line goes down (no Logout)
            fix.Session.lookupSession(app.sid).disconnect()
            emit("dropped")
        if cmd[0] == "fill" and app.sid is not None:  # fill the orders of a symbol, link up or not
            with app.venue.lock:
                for o in list(app.venue.orders.values()):
                    if o["symbol"] == cmd[1] and o["status"] == "0":
                        app.venue.report(app.sid, o, "0")
                        o["cum"], o["avg"], o["status"] = o["qty"], o["price"] or "100", "2"
                        app.venue.report(app.sid, o, "F", last_qty=o["qty"])
            emit("filled", symbol=cmd[1])
        if cmd[0] == "gap" and app.sid is not None:
            s = fix.Session.lookupSession(app.sid)
            s.setNextSenderMsgSeqNum(s.getExpectedSenderNum() + int(cmd[1]))
            tr = fix.Message()
            tr.getHeader().setField(fix.MsgType(fix.MsgType_TestRequest))
            tr.setField(fix.TestReqID("GAP"))
            fix.Session.sendToTarget(tr, app.sid)
            emit("gap_made", next=s.getExpectedSenderNum())
    acceptor.stop()
    done.set()
    emit("stopped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
