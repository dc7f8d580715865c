"""One sequence tracker for every stream that numbers its messages (ticks per symbol, the
execution stream, ...): given ``(key, seq[, epoch])`` it says what happened.

What each outcome means, and what a consumer usually does about it:

* ``FIRST``     -- nothing seen yet for the key.  Whether messages before it were missed is
  unknowable (a late joiner); a consumer that needs completeness takes a snapshot.
* ``IN_ORDER``  -- ``seq`` is the previous one + 1.
* ``GAP``       -- ``seq`` skipped ahead; ``missing`` messages were lost (HWM drop, reconnect).
  The message itself is fine and is used.
* ``DUPLICATE`` -- the same ``seq`` again.  Drop it.
* ``LATE``      -- an older ``seq`` of the same incarnation.  Drop it: it must never move
  state backwards.
* ``RESTART``   -- the publisher started over: its ``epoch`` changed, or (without epochs) its
  ``seq`` went back.  Use the message and rebuild whatever depended on the old series.

Epochs.  A publisher's ``epoch`` names its incarnation.  When both messages carry one, a
step back within one epoch is ``LATE``, and any change of epoch is ``RESTART`` whatever the
``seq``: a restarted publisher that happens to reach the old ``seq`` is not taken for a gap.
Without epochs a step back is ambiguous; ``step_back`` chooses.  The default, ``"restart"``,
fits one PUB->SUB connection, which delivers in order, so a step back can only come from a
new publisher (whose first messages may be gone before we reconnect, hence not only seq 1).

The tracker does not treat ``seq`` 0 specially: streams where 0 means "not numbered" skip
the call.  Not thread-safe (nothing in TickDesk needs it to be).
"""

from __future__ import annotations

from collections.abc import Hashable
from enum import StrEnum
from typing import Any, Literal, NamedTuple


class SeqKind(StrEnum):
    FIRST = "first"
    IN_ORDER = "in_order"
    GAP = "gap"
    DUPLICATE = "duplicate"
    LATE = "late"
    RESTART = "restart"


#: outcomes whose message is new data, to be used (the others are dropped)
FRESH = frozenset({SeqKind.FIRST, SeqKind.IN_ORDER, SeqKind.GAP, SeqKind.RESTART})


class SeqEvent(NamedTuple):
    """What one ``(key, seq, epoch)`` turned out to be.

    ``previous``: the last ``seq`` seen for the key before this call (None with FIRST);
    ``missing``: messages lost, with GAP only.
    """

    kind: SeqKind
    key: Any
    seq: int
    previous: int | None
    missing: int = 0
    previous_epoch: Any = None

    @property
    def fresh(self) -> bool:
        """New data to act on (not a duplicate, not late)."""
        return self.kind in FRESH

    @property
    def discontinuity(self) -> bool:
        """A gap or a restart: state derived from the stream may be wrong now (resync)."""
        return self.kind is SeqKind.GAP or self.kind is SeqKind.RESTART


#: what is counted, per key (KeyStats) and over all keys (SequenceTracker)
_COUNTS = ("received", "gaps", "missing", "duplicates", "late", "restarts")


class KeyStats:
    """The last position of one key, and its counters."""

    __slots__ = ("seq", "epoch", *_COUNTS)

    def __init__(self, seq: int, epoch: Any):
        self.seq = seq
        self.epoch = epoch
        for k in _COUNTS:
            setattr(self, k, 0)

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__slots__}


#: the counters SequenceTracker.counters() reports
COUNTER_NAMES = (*_COUNTS, "keys")


class SequenceTracker:
    """Per-key sequence tracking with totals (see the module docstring).

    >>> t = SequenceTracker()
    >>> t.check("AAPL", 1).kind, t.check("AAPL", 2).kind, t.check("AAPL", 5).missing
    (<SeqKind.FIRST: 'first'>, <SeqKind.IN_ORDER: 'in_order'>, 2)
    """

    __slots__ = ("_keys", "step_back", *_COUNTS)

    def __init__(self, step_back: Literal["restart", "late"] = "restart"):
        if step_back not in ("restart", "late"):
            raise ValueError(f"step_back must be 'restart' or 'late', got {step_back!r}")
        self.step_back = step_back
        self._keys: dict[Hashable, KeyStats] = {}
        for k in _COUNTS:
            setattr(self, k, 0)

    def check(self, key: Hashable, seq: int, epoch: Any = None) -> SeqEvent:
        """Record ``seq`` (of incarnation ``epoch``) for ``key`` and say what it was."""
        self.received += 1
        st = self._keys.get(key)
        if st is None:
            st = self._keys[key] = KeyStats(seq, epoch)
            st.received = 1
            return SeqEvent(SeqKind.FIRST, key, seq, None)
        st.received += 1
        last = st.seq
        if epoch != st.epoch:
            old_epoch = st.epoch
            st.seq, st.epoch = seq, epoch
            st.restarts += 1
            self.restarts += 1
            return SeqEvent(SeqKind.RESTART, key, seq, last, 0, old_epoch)
        if seq == last + 1:
            st.seq = seq
            return SeqEvent(SeqKind.IN_ORDER, key, seq, last)
        if seq > last:
            n = seq - last - 1
            st.seq = seq
            st.gaps += 1
            st.missing += n
            self.gaps += 1
            self.missing += n
            return SeqEvent(SeqKind.GAP, key, seq, last, n)
        if seq == last:
            st.duplicates += 1
            self.duplicates += 1
            return SeqEvent(SeqKind.DUPLICATE, key, seq, last)
        if epoch is None and self.step_back == "restart":
            st.seq = seq
            st.restarts += 1
            self.restarts += 1
            return SeqEvent(SeqKind.RESTART, key, seq, last, 0, epoch)
        st.late += 1
        self.late += 1
        return SeqEvent(SeqKind.LATE, key, seq, last)

    def check_run(self, key: Hashable, first: int, last: int, n: int, epoch: Any = None) -> bool:
        """The fast path for a batch: True (and recorded) if ``n`` messages numbered ``first``
        .. ``last`` continue ``key`` in order without a hole; False (nothing recorded) if any
        of them needs :meth:`check` one by one.  A batched frame of ticks is such a run, and
        one call per frame instead of one per tick keeps the tracker off the per-tick path."""
        st = self._keys.get(key)
        if st is None or st.epoch != epoch or first != st.seq + 1 or last - first != n - 1:
            return False
        st.seq = last
        st.received += n
        self.received += n
        return True

    # ------------------------------------------------------------------ reading it
    def last(self, key: Hashable) -> int | None:
        """The newest ``seq`` seen for ``key`` (None: none yet)."""
        st = self._keys.get(key)
        return None if st is None else st.seq

    def stats(self, key: Hashable) -> KeyStats | None:
        return self._keys.get(key)

    def keys(self) -> list[Hashable]:
        return list(self._keys)

    def __contains__(self, key: object) -> bool:
        return key in self._keys

    def __len__(self) -> int:
        return len(self._keys)

    def counters(self) -> dict[str, int]:
        """Totals over every key (names in :data:`COUNTER_NAMES`)."""
        return {**{k: getattr(self, k) for k in _COUNTS}, "keys": len(self._keys)}

    # ------------------------------------------------------------------ forgetting
    def forget(self, key: Hashable) -> None:
        """The next message of ``key`` is FIRST again (e.g. after a resubscribe or a snapshot)."""
        self._keys.pop(key, None)

    def clear(self) -> None:
        """Forget every key; the totals stay (counters never go backwards)."""
        self._keys.clear()


__all__ = ["COUNTER_NAMES", "FRESH", "KeyStats", "SeqEvent", "SeqKind", "SequenceTracker"]
