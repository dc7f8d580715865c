"""A QuickFIX/C++ acceptor (the quickfix-py wheel) as an independent FIX 4.4 counterparty for
the tests: it validates every message against QuickFIX's FIX44.xml data dictionary.  Run as a
process: ``python -m tests.fix.qf_acceptor CONFIG.json``; it prints one JSON line per event
("ready", "logon", "logout", "admin_in", "app_in", "reject_logon") and reads commands on stdin
("gap N": skip N of its outgoing sequence numbers, then send a TestRequest; "quit")."""

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


class App(fix.Application):
    def __init__(self, cfg: dict):
        super().__init__()
        self.cfg = cfg
        self.sid = None

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
        "[SESSION]\n"
        "BeginString=FIX.4.4\n"
        f"SenderCompID={cfg.get('sender', 'VENUE')}\n"
        f"TargetCompID={cfg.get('target', 'TICKDESK')}\n"
    )
    settings = fix.SessionSettings(str(ini))
    app = App(cfg)
    acceptor = fix.SocketAcceptor(app, fix.FileStoreFactory(settings), settings, fix.FileLogFactory(settings))
    acceptor.start()
    emit("ready")
    done = threading.Event()
    for line in sys.stdin:
        cmd = line.split()
        if not cmd:
            continue
        if cmd[0] == "quit":
            break
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
