"""Bounded per-symbol store of chart markers (signals, rejections, fills). Pure numpy, no Qt."""

from __future__ import annotations

import numpy as np

__all__ = ["MARKER_KINDS", "MarkerStore"]

#: Marker kinds the chart understands, in the order of their integer codes.
MARKER_KINDS: tuple[str, ...] = ("signal_buy", "signal_sell", "signal_rejected", "fill_buy", "fill_sell")
_KIND_CODE = {k: i for i, k in enumerate(MARKER_KINDS)}


class MarkerStore:
    """The newest ``capacity`` markers of one symbol, in arrival order.

    Same compacting-buffer layout as the bar store: appends are O(1) amortised and the arrays
    returned by :meth:`arrays` are contiguous views (valid until the next append).
    """

    __slots__ = ("capacity", "version", "_ts", "_px", "_kind", "_text", "_start", "_end")

    def __init__(self, capacity: int = 5000) -> None:
        if capacity < 1:
            raise ValueError("capacity must be positive")
        self.capacity = int(capacity)
        self.version = 0
        slots = 2 * self.capacity
        self._ts = np.empty(slots, dtype=np.int64)
        self._px = np.empty(slots)
        self._kind = np.empty(slots, dtype=np.int8)
        self._text: list[str] = [""] * slots
        self._start = self._end = 0

    def __len__(self) -> int:
        return self._end - self._start

    def add(self, ts_ns: int, price: float, kind: str, text: str = "") -> bool:
        """Store one marker; False (and nothing stored) for an unknown kind or bad price."""
        code = _KIND_CODE.get(kind)
        if code is None or price - price != 0.0:
            return False
        if self._end == len(self._ts):
            keep = min(self._end - self._start, self.capacity - 1)
            src = slice(self._end - keep, self._end)
            self._ts[:keep] = self._ts[src]
            self._px[:keep] = self._px[src]
            self._kind[:keep] = self._kind[src]
            self._text[:keep] = self._text[src]
            self._start, self._end = 0, keep
        elif self._end - self._start == self.capacity:
            self._start += 1
        e = self._end
        self._ts[e] = int(ts_ns)
        self._px[e] = float(price)
        self._kind[e] = code
        self._text[e] = str(text)
        self._end = e + 1
        self.version += 1
        return True

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(ts_ns, price, kind_code)`` of every held marker, oldest first."""
        s = slice(self._start, self._end)
        return self._ts[s], self._px[s], self._kind[s]

    def texts(self, positions: np.ndarray) -> list[str]:
        """Texts of the markers at the given positions (0 = oldest held)."""
        base = self._start
        return [self._text[base + int(i)] for i in positions]

    def clear(self) -> None:
        self._start = self._end = 0
        self.version += 1
