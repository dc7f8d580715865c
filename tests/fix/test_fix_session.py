"""The FIX session layer without a socket: what a peer's bytes do to it (garbled frames
dropped and counted, numbers too low refused, gaps asked for once), the sequence-number store
(refused when it cannot be trusted), and the settings file (credentials never in it)."""

from __future__ import annotations

import os

import pytest
import simplefix

from workers.fix.session import FixSession, SeqStore, SeqStoreError, State, checksum
from workers.fix.settings import FixSessionSettings, FixSettingsError, load_settings


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def settings(tmp_path, **kw) -> FixSessionSettings:
    return FixSessionSettings(sender_comp_id="TD", target_comp_id="VENUE", host="127.0.0.1", port=1,
                              heartbeat_s=10, store_path=tmp_path / "store", **kw)


def venue_msg(msg_type: str, seq: int, *fields, poss_dup: bool = False, to: str = "TD") -> bytes:
    m = simplefix.FixMessage()
    m.append_pair(8, "FIX.4.4", header=True)
    m.append_pair(35, msg_type, header=True)
    m.append_pair(49, "VENUE", header=True)
    m.append_pair(56, to, header=True)
    m.append_pair(34, seq, header=True)
    m.append_pair(52, "20261204-12:00:00.000", header=True)
    if poss_dup:
        m.append_pair(43, "Y", header=True)
    for tag, value in fields:
        m.append_pair(tag, value)
    return m.encode()


def sent(session: FixSession) -> list[simplefix.FixMessage]:
    p = simplefix.FixParser()
    p.append_buffer(session.take_output())
    out = []
    while (m := p.get_message()) is not None:
        out.append(m)
    return out


@pytest.fixture
def active(tmp_path):
    clock = Clock()
    s = FixSession(settings(tmp_path), SeqStore(tmp_path / "store", "FIX.4.4:TD->VENUE"), clock=clock)
    s.connected()
    assert [m.get(35) for m in sent(s)] == [b"A"]
    assert s.receive(venue_msg("A", 1, (98, 0), (108, 10))) == []
    assert s.state is State.ACTIVE and s.store.next_in == 2
    return s, clock


def test_application_messages_come_out_in_order_and_byte_by_byte(active):
    s, _ = active
    er = venue_msg("8", 2, (37, "O1"), (17, "E1"))
    got = []
    for i in range(len(er)):  # a message split anywhere is still one message
        got += s.receive(er[i:i + 1])
    assert [m.get(17) for m in got] == [b"E1"] and s.store.next_in == 3 and s.counters["app_in"] == 1


@pytest.mark.parametrize("damage", ["checksum", "body_length", "junk_before", "no_seq"])
def test_a_garbled_message_is_dropped_counted_and_the_next_one_read(active, damage):
    s, _ = active
    good = venue_msg("8", 2, (17, "E1"))
    if damage == "checksum":
        bad = good[:-4] + (b"%03d" % ((checksum(good[:-7]) + 1) % 256)) + b"\x01"
    elif damage == "body_length":
        bad = good.replace(b"9=", b"9=9", 1)
    elif damage == "junk_before":
        bad = b"\x00\xffgarbage"
    else:
        m = simplefix.FixMessage()
        for tag, v in ((8, "FIX.4.4"), (35, "8"), (49, "VENUE"), (56, "TD"), (17, "X")):
            m.append_pair(tag, v)
        bad = m.encode()
    got = s.receive(bad + good)
    assert [m.get(17) for m in got] == [b"E1"], damage
    assert s.counters["garbled"] >= 1 and s.store.next_in == 3 and not s.failure
    assert any(e.kind == "garbled" for e in s.events)


def test_a_number_lower_than_expected_logs_out_with_the_reason(active):
    s, _ = active
    assert s.receive(venue_msg("8", 2, (17, "E1")))
    assert s.receive(venue_msg("8", 2, (17, "E1"), poss_dup=True)) == []  # a resent one: ignored
    assert s.counters["duplicates"] == 1 and not s.failure
    s.receive(venue_msg("8", 2, (17, "E2")))
    assert "MsgSeqNum too low, expecting 3 but received 2" in s.failure
    out = sent(s)
    assert out[-1].get(35) == b"5" and b"too low" in out[-1].get(58)


def test_a_gap_is_asked_for_once_and_filled(active):
    s, _ = active
    assert s.receive(venue_msg("8", 5, (17, "E5"))) == []  # 2..4 missing: not delivered yet
    assert s.receive(venue_msg("0", 6)) == []
    rr = [m for m in sent(s) if m.get(35) == b"2"]
    assert len(rr) == 1 and rr[0].get(7) == b"2" and rr[0].get(16) == b"0"
    # the venue resends: 2 gap-filled up to 4, then 4 and 5 as PossDup
    assert s.receive(venue_msg("4", 2, (123, "Y"), (36, 4), poss_dup=True)) == []
    got = s.receive(venue_msg("8", 4, (17, "E4"), poss_dup=True) + venue_msg("8", 5, (17, "E5"), poss_dup=True))
    assert [m.get(17) for m in got] == [b"E4", b"E5"] and s.store.next_in == 6 and s.counters["gaps"] == 1


def test_a_resend_request_is_answered_by_a_gap_fill_not_old_orders(active):
    s, _ = active
    for i in range(3):
        s.send_app("D", [(11, f"C{i}"), (55, "AAPL")])
    sent(s)
    s.receive(venue_msg("2", 2, (7, 2), (16, 0)))
    out = sent(s)
    assert [m.get(35) for m in out] == [b"4"]  # no NewOrderSingle again
    assert out[0].get(34) == b"2" and out[0].get(123) == b"Y" and out[0].get(36) == b"5" and out[0].get(43) == b"Y"


def test_silence_brings_a_test_request_then_the_verdict(active):
    s, clock = active
    clock.t += 10
    s.poll()
    assert [m.get(35) for m in sent(s)] == [b"0"]  # nothing sent for HeartBtInt: a heartbeat
    clock.t += 2.5  # 12.5 s without hearing anything
    s.poll()
    assert [m.get(35) for m in sent(s)] == [b"1"] and not s.failure
    clock.t += 10
    s.poll()
    assert s.failure.startswith("the venue is silent")


def test_a_message_for_another_session_is_refused(active):
    s, _ = active
    assert s.receive(venue_msg("8", 2, (17, "E1"), to="SOMEONE")) == []
    assert "not this session" in s.failure and sent(s)[-1].get(35) == b"5"
    assert s.store.next_in == 2  # not taken as this session's


def test_the_store_keeps_numbers_and_refuses_a_damaged_file(tmp_path):
    st = SeqStore(tmp_path, "FIX.4.4:TD->VENUE")
    assert (st.next_out, st.next_in) == (1, 1)
    st.next_out, st.next_in = 42, 17
    st.save()
    again = SeqStore(tmp_path, "FIX.4.4:TD->VENUE")
    assert (again.next_out, again.next_in) == (42, 17)
    again.path.write_text("42 x\n")
    with pytest.raises(SeqStoreError, match="cannot go on"):
        SeqStore(tmp_path, "FIX.4.4:TD->VENUE")


def write(path, text):
    path.write_text(text)
    return path


def test_settings_file_quickfix_style(tmp_path):
    f = write(tmp_path / "s.cfg", "[DEFAULT]\nHeartBtInt=20\nFileStorePath=store\n\n"
              "[SESSION]\nBeginString=FIX.4.4\nSenderCompID=TD\nTargetCompID=BRK\n"
              "SocketConnectHost=fix.example\nSocketConnectPort=9878\nPasswordEnv=TD_PW\nUsername=desk1\n"
              "[SESSION]\nSenderCompID=TD\nTargetCompID=BRK2\nSocketConnectHost=h2\nSocketConnectPort=9879\nHeartBtInt=5\n")
    a, b = load_settings(f, env={"TD_PW": "s3cret"})
    assert (a.target_comp_id, a.port, a.heartbeat_s, a.password, a.username) == ("BRK", 9878, 20, "s3cret", "desk1")
    assert a.store_path == tmp_path / "store" and "s3cret" not in repr(a)
    assert (b.target_comp_id, b.heartbeat_s, b.password) == ("BRK2", 5, "")


@pytest.mark.parametrize("text, why", [
    ("SenderCompID=TD\n", "before any"),
    ("[SESSION]\nSenderCompID=TD\n", "missing TargetCompID, SocketConnectHost, SocketConnectPort"),
    ("[SESSION]\nSenderCompID=TD\nTargetCompID=B\nSocketConnectHost=h\nSocketConnectPort=99999\n", "1..65535"),
    ("[SESSION]\nBeginString=FIX.4.2\nSenderCompID=TD\nTargetCompID=B\nSocketConnectHost=h\nSocketConnectPort=1\n",
     "only FIX.4.4"),
    ("[SESSION]\nSenderCompID=TD\nTargetCompID=B\nSocketConnectHost=h\nSocketConnectPort=1\nPassword=x\n",
     "Password= in the settings file"),
    ("[SESSION]\nSenderCompID=TD\nTargetCompID=B\nSocketConnectHost=h\nSocketConnectPort=1\nPasswordEnv=NOPE\n",
     "not set"),
    ("[SESSIONS]\n", "unknown section"),
    ("[DEFAULT]\nHeartBtInt=1\n", "no [SESSION]"),
])
def test_settings_that_cannot_be_used_say_why(tmp_path, text, why):
    with pytest.raises(FixSettingsError, match=why.replace("[", r"\[").replace("]", r"\]").replace(".", r"\.")):
        load_settings(write(tmp_path / "s.cfg", text), env={})


def test_a_password_file_readable_by_others_is_refused(tmp_path):
    pw = write(tmp_path / "pw", "hunter2\n")
    f = write(tmp_path / "s.cfg", "[SESSION]\nSenderCompID=TD\nTargetCompID=B\nSocketConnectHost=h\n"
              "SocketConnectPort=1\nPasswordFile=pw\n")
    os.chmod(pw, 0o644)
    with pytest.raises(FixSettingsError, match="readable by others"):
        load_settings(f, env={})
    os.chmod(pw, 0o600)
    assert load_settings(f, env={})[0].password == "hunter2"
