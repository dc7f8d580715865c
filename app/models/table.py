"""One QAbstractTableModel for every table of the window, driven by declared columns.

Rows are the state's own objects (quotes, orders, fills...), keyed.  The 30 Hz flush calls
:meth:`RecordTableModel.upsert` with the rows that changed: a known key emits
``dataChanged`` for that row only (adjacent rows merged into one range), a new key is
appended with ``beginInsertRows``.  Rows are held oldest first with a running base index,
so appending and trimming the oldest rows of a bounded blotter never renumber the rest;
``newest_first`` only flips the view's row numbers.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from app.models.columns import Column
from app.qt import QAbstractTableModel, QColor, QModelIndex, Qt

#: raw value of a cell (sorting, CSV)
RawRole = Qt.ItemDataRole.UserRole + 1
#: the row object itself
RowRole = Qt.ItemDataRole.UserRole + 2

_ALIGN = {
    "l": int(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter),
    "r": int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter),
    "c": int(Qt.AlignmentFlag.AlignCenter),
}


class RecordTableModel(QAbstractTableModel):
    """Keyed rows shown through declared :class:`Column`\\ s.

    Attributes:
        columns: the declared columns.
        tones: tone name -> QColor, set by the theme.
    """

    tones: dict[str, QColor] = {}

    def __init__(self, columns: Sequence[Column], key: Callable[[Any], Any], *, newest_first: bool = False,
                 max_rows: int | None = None, parent=None):
        super().__init__(parent)
        self.columns = tuple(columns)
        self._key = key
        self.newest_first = newest_first
        self.max_rows = max_rows
        self._rows: list[Any] = []
        self._pos: dict[Any, int] = {}  # key -> absolute position; row = pos - base
        self._base = 0

    # ------------------------------------------------------------------ Qt API
    def rowCount(self, parent: QModelIndex = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self._rows)

    def columnCount(self, parent: QModelIndex = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self.columns)

    def headerData(self, section: int, orientation, role=Qt.ItemDataRole.DisplayRole):
        if orientation == Qt.Orientation.Horizontal and 0 <= section < len(self.columns):
            col = self.columns[section]
            if role == Qt.ItemDataRole.DisplayRole:
                return col.title
            if role == Qt.ItemDataRole.ToolTipRole and col.header_tip:
                return col.header_tip
            if role == Qt.ItemDataRole.TextAlignmentRole:
                return _ALIGN.get(col.align, _ALIGN["l"])
        return None

    def data(self, index: QModelIndex, role=Qt.ItemDataRole.DisplayRole):
        if not index.isValid():
            return None
        row = self.row_at(index.row())
        if row is None:
            return None
        col = self.columns[index.column()]
        if role == Qt.ItemDataRole.DisplayRole:
            return col.text(row)
        if role == Qt.ItemDataRole.ForegroundRole:
            if col.tone is None:
                return None
            try:
                tone = col.tone(row)
            except Exception:
                return None
            return self.tones.get(tone) if tone else None
        if role == Qt.ItemDataRole.TextAlignmentRole:
            return _ALIGN.get(col.align, _ALIGN["l"])
        if role == RawRole:
            v = col.export(row)
            return v if isinstance(v, (int, float, str)) else str(v)
        if role == RowRole:
            return row
        if role == Qt.ItemDataRole.ToolTipRole and col.tip is not None:
            try:
                return col.tip(row)
            except Exception:
                return None
        return None

    # ------------------------------------------------------------------ rows
    def _view_row(self, pos: int) -> int:
        r = pos - self._base
        return len(self._rows) - 1 - r if self.newest_first else r

    def row_at(self, view_row: int) -> Any:
        n = len(self._rows)
        if not 0 <= view_row < n:
            return None
        return self._rows[n - 1 - view_row if self.newest_first else view_row]

    def row_for(self, key: Any) -> int | None:
        pos = self._pos.get(key)
        return None if pos is None else self._view_row(pos)

    def rows(self) -> list[Any]:
        """Rows in view order."""
        return list(reversed(self._rows)) if self.newest_first else list(self._rows)

    def keys(self) -> list[Any]:
        return [self._key(r) for r in self.rows()]

    def __contains__(self, key: Any) -> bool:
        return key in self._pos

    def upsert(self, rows: Iterable[Any]) -> tuple[int, int]:
        """Insert new rows, repaint changed ones; returns (inserted, changed)."""
        new: list[Any] = []
        changed: list[int] = []
        seen_new: set = set()
        for r in rows:
            k = self._key(r)
            pos = self._pos.get(k)
            if pos is None:
                if k not in seen_new:
                    seen_new.add(k)
                    new.append(r)
            else:
                self._rows[pos - self._base] = r
                changed.append(self._view_row(pos))
        if changed:
            self._emit_changed(changed)
        if new:
            self._append(new)
        return len(new), len(changed)

    def refresh_rows(self, keys: Iterable[Any]) -> int:
        """Repaint the rows of these keys (their objects changed in place)."""
        rows = [self._view_row(p) for p in (self._pos.get(k) for k in keys) if p is not None]
        if rows:
            self._emit_changed(rows)
        return len(rows)

    def refresh_all(self) -> None:
        if self._rows:
            self.dataChanged.emit(self.index(0, 0), self.index(len(self._rows) - 1, len(self.columns) - 1))

    def _emit_changed(self, view_rows: list[int]) -> None:
        last_col = len(self.columns) - 1
        view_rows.sort()
        start = prev = view_rows[0]
        for r in view_rows[1:]:
            if r == prev or r == prev + 1:
                prev = r
                continue
            self.dataChanged.emit(self.index(start, 0), self.index(prev, last_col))
            start = prev = r
        self.dataChanged.emit(self.index(start, 0), self.index(prev, last_col))

    def _append(self, new: list[Any]) -> None:
        n = len(self._rows)
        if self.newest_first:
            self.beginInsertRows(QModelIndex(), 0, len(new) - 1)
        else:
            self.beginInsertRows(QModelIndex(), n, n + len(new) - 1)
        end = self._base + n
        for i, r in enumerate(new):
            self._pos[self._key(r)] = end + i
        self._rows.extend(new)
        self.endInsertRows()
        if self.max_rows is not None and len(self._rows) > self.max_rows:
            self._drop_oldest(len(self._rows) - self.max_rows)

    def _drop_oldest(self, k: int) -> None:
        n = len(self._rows)
        first, last = (n - k, n - 1) if self.newest_first else (0, k - 1)
        self.beginRemoveRows(QModelIndex(), first, last)
        for r in self._rows[:k]:
            self._pos.pop(self._key(r), None)
        del self._rows[:k]
        self._base += k
        self.endRemoveRows()

    def remove(self, keys: Iterable[Any]) -> int:
        """Remove rows by key: one beginRemoveRows per run of adjacent rows, and the key index
        rebuilt once (a market watch drops many evicted symbols in one flush)."""
        positions = sorted({p for p in (self._pos.get(k) for k in keys) if p is not None}, reverse=True)
        if not positions:
            return 0
        i = 0
        while i < len(positions):
            # a run of consecutive positions, highest first: rows below it keep their numbers
            j = i
            while j + 1 < len(positions) and positions[j + 1] == positions[j] - 1:
                j += 1
            hi, lo = positions[i] - self._base, positions[j] - self._base
            n = len(self._rows)
            first, last = (n - 1 - hi, n - 1 - lo) if self.newest_first else (lo, hi)
            self.beginRemoveRows(QModelIndex(), first, last)
            del self._rows[lo:hi + 1]
            self.endRemoveRows()
            i = j + 1
        self._pos = {self._key(r): self._base + i for i, r in enumerate(self._rows)}
        return len(positions)

    def set_rows(self, rows: Iterable[Any]) -> None:
        self.beginResetModel()
        self._rows = list(rows)
        self._base = 0
        self._pos = {self._key(r): i for i, r in enumerate(self._rows)}
        self.endResetModel()

    # ------------------------------------------------------------------ export
    def write_csv(self, path: str, rows: Iterable[Any] | None = None) -> int:
        """Write ``rows`` (default: all, in view order) with raw values; returns the count."""
        rows = self.rows() if rows is None else list(rows)
        with open(path, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow([c.key for c in self.columns])
            for r in rows:
                w.writerow([c.export(r) for c in self.columns])
        return len(rows)
