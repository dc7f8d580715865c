"""The one sequence/gap/restart tracker (workers/sequence.py)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from workers.sequence import SeqKind, SequenceTracker

K = SeqKind


def kinds(t: SequenceTracker, key, seqs, epoch=None):
    return [t.check(key, s, epoch).kind for s in seqs]


def test_in_order_gap_duplicate_and_restart_without_epochs():
    t = SequenceTracker()
    assert kinds(t, "AAPL", [5, 6, 7]) == [K.FIRST, K.IN_ORDER, K.IN_ORDER]
    e = t.check("AAPL", 10)
    assert (e.kind, e.previous, e.missing, e.discontinuity, e.fresh) == (K.GAP, 7, 2, True, True)
    e = t.check("AAPL", 10)
    assert (e.kind, e.fresh, e.discontinuity) == (K.DUPLICATE, False, False)
    e = t.check("AAPL", 3)  # one PUB connection is in order: back means a new publisher
    assert (e.kind, e.previous, e.fresh) == (K.RESTART, 10, True)
    assert t.check("AAPL", 4).kind is K.IN_ORDER
    assert t.counters() == {"received": 7, "gaps": 1, "missing": 2, "duplicates": 1, "late": 0, "restarts": 1, "keys": 1}
    s = t.stats("AAPL")
    assert (s.seq, s.gaps, s.missing, s.duplicates, s.restarts, s.received) == (4, 1, 2, 1, 1, 7)


def test_keys_are_independent():
    t = SequenceTracker()
    assert kinds(t, "A", [1, 2]) == [K.FIRST, K.IN_ORDER]
    assert kinds(t, "B", [7, 9]) == [K.FIRST, K.GAP]
    assert t.check("A", 3).kind is K.IN_ORDER
    assert t.last("A") == 3 and t.last("B") == 9 and t.last("C") is None
    assert set(t.keys()) == {"A", "B"} and "A" in t and len(t) == 2


def test_step_back_as_late_when_configured():
    t = SequenceTracker(step_back="late")
    kinds(t, "x", [1, 2, 3])
    e = t.check("x", 2)
    assert e.kind is K.LATE and not e.fresh
    assert t.last("x") == 3  # late data never moves the position back
    assert t.check("x", 4).kind is K.IN_ORDER
    with pytest.raises(ValueError):
        SequenceTracker(step_back="ignore")  # type: ignore[arg-type]


def test_epochs_tell_a_restart_from_late_data():
    t = SequenceTracker()
    kinds(t, "exec", [1, 2, 3, 4], epoch=100)
    assert t.check("exec", 2, 100).kind is K.LATE  # same incarnation: late, whatever step_back says
    e = t.check("exec", 1, 200)
    assert (e.kind, e.previous, e.previous_epoch) == (K.RESTART, 4, 100)
    # a new incarnation that happens to continue the old numbering is still a restart
    kinds(t, "exec", [2, 3], epoch=200)
    assert t.check("exec", 4, 300).kind is K.RESTART
    # a publisher that starts stamping epochs (an upgrade) is a new incarnation too
    t2 = SequenceTracker()
    kinds(t2, "s", [1, 2])
    assert t2.check("s", 3, 1).kind is K.RESTART


def test_forget_and_clear_keep_the_totals():
    t = SequenceTracker()
    kinds(t, "a", [1, 3])
    t.forget("a")
    assert t.check("a", 9).kind is K.FIRST
    t.clear()
    assert len(t) == 0 and t.gaps == 1 and t.received == 3


@given(st.lists(st.integers(min_value=0, max_value=50), min_size=1, max_size=60), st.booleans())
def test_counters_add_up_and_fresh_data_never_goes_back_within_an_epoch(seqs, late_mode):
    t = SequenceTracker(step_back="late" if late_mode else "restart")
    events = [t.check("k", s) for s in seqs]
    c = t.counters()
    by_kind = {k: sum(1 for e in events if e.kind is k) for k in SeqKind}
    assert by_kind[K.FIRST] == 1 and events[0].kind is K.FIRST
    assert c["received"] == len(seqs)
    assert (c["gaps"], c["duplicates"], c["late"], c["restarts"]) == (by_kind[K.GAP], by_kind[K.DUPLICATE], by_kind[K.LATE], by_kind[K.RESTART])
    assert c["missing"] == sum(e.missing for e in events)
    # replaying the fresh messages alone gives no duplicate or late outcome
    fresh = [e.seq for e in events if e.fresh]
    if late_mode:
        assert fresh == sorted(set(fresh))  # strictly increasing
        assert t.last("k") == max(seqs)
    assert t.last("k") == fresh[-1]
    # missing + in-order + gap steps account for every number between restarts
    for e in events:
        if e.kind is K.GAP:
            assert e.seq - e.previous - 1 == e.missing > 0


@given(st.lists(st.tuples(st.integers(1, 3), st.integers(1, 20)), max_size=40))
def test_an_epoch_change_is_always_a_restart(pairs):
    t = SequenceTracker()
    prev_epoch = None
    for epoch, seq in pairs:
        e = t.check("k", seq, epoch)
        if e.kind is not K.FIRST and epoch != prev_epoch:
            assert e.kind is K.RESTART and e.previous_epoch == prev_epoch
        if e.kind is not K.FIRST and epoch == prev_epoch:
            assert e.kind is not K.RESTART  # with epochs, only an epoch change restarts
        prev_epoch = epoch


def test_check_run_takes_a_consecutive_batch_at_once_and_refuses_anything_else():
    t = SequenceTracker()
    assert not t.check_run("A", 1, 3, 3)  # first sight goes through check()
    t.check("A", 1)
    assert t.check_run("A", 2, 5, 4) and t.last("A") == 5 and t.received == 5
    assert not t.check_run("A", 7, 8, 2)  # a hole before the run
    assert not t.check_run("A", 6, 8, 2)  # a hole inside it
    assert not t.check_run("A", 6, 7, 2, epoch=9)  # another incarnation
    assert t.last("A") == 5 and t.gaps == 0 and t.received == 5  # refused runs record nothing
