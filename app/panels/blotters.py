"""Blotters: working orders (cancel, modify in place, OCO), order history, fills, positions."""

from __future__ import annotations

from typing import Any

from workers import protocol as P
from app.models.table import RawRole, RecordTableModel, RowRole
from app.models.tables import FILL_COLUMNS, HISTORY_COLUMNS, POSITION_COLUMNS, WORKING_COLUMNS
from app.orders import TICK_SIZE, can_modify
from app.panels.live_label import LiveLabel
from app.panels.table_panel import TablePanel
from app.qt import QSortFilterProxyModel, Qt, QtCore, QtWidgets, Signal
from app.state import MAX_FILLS, MAX_ORDERS, AppState, Changes

#: the working-order cells a trader edits in place, and what a change of each one sends
EDITABLE = ("qty", "limit_price", "stop_price")
def _sortable(v: Any) -> tuple:
    """Values of mixed types ordered without a TypeError (numbers, then text)."""
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return (0, v, "")
    return (1, 0, "" if v is None else str(v))


def _rank(o: Any) -> int:
    coid = o.client_order_id
    if not getattr(o, "parent_id", ""):
        return 0
    return 1 + (P.BRACKET_SUFFIXES.index(coid[len(o.parent_id):]) if coid[len(o.parent_id):] in P.BRACKET_SUFFIXES else 2)


class FamilyProxy(QSortFilterProxyModel):
    """The working orders' sort and filter, with a bracket's children right after their parent
    (whatever column the table is sorted by, and unsorted: newest order first), and the
    quantity and price cells of a modifiable order editable.  An edit is not stored: it is
    handed on (``edited``) as a replace request, and the row changes when the exchange says so.

    Signals:
        edited(str, str, object): client_order_id, the field (qty, limit_price, stop_price), the new value.
    """

    edited = Signal(str, str, object)

    def __init__(self, model: RecordTableModel, parent=None):
        super().__init__(parent)
        self.setSourceModel(model)
        self.keys = [c.key for c in model.columns]
        self._user_column = -1

    # ------------------------------------------------------------------ order
    def sort(self, column: int, order=Qt.SortOrder.AscendingOrder) -> None:  # noqa: D102
        # unsorted is the arrival order with families kept together: sort on column 0 with the
        # arrival order as the key (the source's own order would put a child above its parent)
        self._user_column = column
        super().sort(column if column >= 0 else 0, order if column >= 0 else Qt.SortOrder.AscendingOrder)

    def _head(self, o: Any) -> tuple[Any, int | None]:
        """The row its family is sorted by (its parent while the parent is here) and that row's
        position in the source."""
        m = self.sourceModel()
        if getattr(o, "parent_id", "") and o.parent_id in m:
            return m.row_at(m.row_for(o.parent_id)), m.row_for(o.parent_id)
        return o, m.row_for(o.client_order_id)

    def lessThan(self, left, right) -> bool:  # noqa: N802
        m = self.sourceModel()
        lo, ro = m.row_at(left.row()), m.row_at(right.row())
        if lo is None or ro is None:
            return False
        (lh, lpos), (rh, rpos) = self._head(lo), self._head(ro)
        if lh is not rh:
            if self._user_column < 0:
                return (lpos or 0) < (rpos or 0)  # the source is newest first
            col = m.columns[self._user_column]
            a, b = _sortable(col.export(lh)), _sortable(col.export(rh))
            if a != b:
                return a < b
            return lh.client_order_id < rh.client_order_id
        # one family: the parent first, then .tp, .sl, in either sort order (a descending
        # sort asks lessThan(right, left))
        desc = self._user_column >= 0 and self.sortOrder() == Qt.SortOrder.DescendingOrder
        return _rank(lo) > _rank(ro) if desc else _rank(lo) < _rank(ro)

    # ------------------------------------------------------------------ editing
    def _key(self, index) -> str:
        return self.keys[index.column()] if 0 <= index.column() < len(self.keys) else ""

    def flags(self, index):  # noqa: D102
        f = super().flags(index)
        if index.isValid() and self._key(index) in EDITABLE and can_modify(index.data(RowRole), self._key(index)):
            f |= Qt.ItemFlag.ItemIsEditable
        return f

    def data(self, index, role=Qt.ItemDataRole.DisplayRole):  # noqa: D102
        if role == Qt.ItemDataRole.EditRole and self._key(index) in EDITABLE:
            return index.data(RawRole)
        return super().data(index, role)

    def setData(self, index, value, role=Qt.ItemDataRole.EditRole) -> bool:  # noqa: N802
        key = self._key(index)
        o = index.data(RowRole)
        if role != Qt.ItemDataRole.EditRole or key not in EDITABLE or not can_modify(o, key):
            return False
        value = int(value) if key == "qty" else round(float(value), 8)
        if value != getattr(o, key):
            self.edited.emit(o.client_order_id, key, value)
        return False  # nothing changes here: the exchange's answer does


class OrderEditDelegate(QtWidgets.QStyledItemDelegate):
    """The in-place editor of a working order's quantity (above its filled quantity) or price
    (steps of one tick)."""

    def createEditor(self, parent, option, index):  # noqa: N802
        o = index.data(RowRole)
        key = index.model().keys[index.column()] if hasattr(index.model(), "keys") else ""
        if key == "qty":
            e = QtWidgets.QSpinBox(parent)
            e.setRange(max(1, (o.filled_qty if o is not None else 0) + 1), P.MAX_QTY)
            e.setSingleStep(100)
        else:
            e = QtWidgets.QDoubleSpinBox(parent)
            e.setDecimals(2)
            e.setSingleStep(TICK_SIZE)
            e.setRange(TICK_SIZE, P.MAX_PRICE - 1)
        e.setObjectName(f"modify_{key}")
        e.setFrame(False)
        return e

    def setEditorData(self, editor, index) -> None:  # noqa: N802
        v = index.data(Qt.ItemDataRole.EditRole)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            editor.setValue(v)

    def setModelData(self, editor, model, index) -> None:  # noqa: N802
        editor.interpretText()
        model.setData(index, editor.value(), Qt.ItemDataRole.EditRole)


class WorkingOrdersPanel(TablePanel):
    """Orders live at the exchange (or UNKNOWN: possibly live), a bracket's children under
    their parent.  Double-click or F2 on an order's quantity or price edits it in place
    (Enter sends a replace, Escape leaves it); double-click or F2 elsewhere in the row edits
    its price.  The context menu has the same as Modify price / Modify quantity, and makes
    two to ten selected orders one-cancels-other.

    Signals:
        cancelRequested(list): client_order_ids to cancel (button, Delete key, menu).
        cancelAllRequested(): the "Cancel all" button.
        modifyRequested(str, dict): client_order_id and the changes (qty / limit_price /
            stop_price) to send as a replace_order.
        ocoRequested(list): client_order_ids to make one-cancels-other.
    """

    cancelRequested = Signal(list)
    cancelAllRequested = Signal()
    modifyRequested = Signal(str, dict)
    ocoRequested = Signal(list)

    def __init__(self, parent=None):
        self.cancel_button = QtWidgets.QPushButton("Cancel  Del")
        self.cancel_button.setObjectName("cancelSelected")
        self.cancel_button.setToolTip("Cancel the selected orders (Delete)")
        self.cancel_all_button = QtWidgets.QPushButton("Cancel all  Ctrl+Shift+X")
        self.cancel_all_button.setObjectName("cancelAll")
        self.cancel_all_button.setToolTip("Cancel every working order at the exchange, strategies' included (Ctrl+Shift+X)")
        super().__init__("working", RecordTableModel(WORKING_COLUMNS, key=lambda o: o.client_order_id, newest_first=True),
                         buttons=(self.cancel_button, self.cancel_all_button), parent=parent)
        self.cancel_button.clicked.connect(self.cancel_selected)
        self.cancel_all_button.clicked.connect(self.cancelAllRequested)
        # the family order and the editable cells: a proxy of its own in place of the plain one
        plain = self.proxy
        self.proxy = FamilyProxy(self.model, self)
        self.proxy.setSortRole(RawRole)
        self.proxy.setFilterKeyColumn(-1)
        self.proxy.setFilterCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        self.proxy.setDynamicSortFilter(True)
        if self.filter is not None:
            self.filter.textChanged.disconnect()
            self.filter.textChanged.connect(self.proxy.setFilterFixedString)
        old_selection = self.view.selectionModel()
        self.view.setModel(self.proxy)
        old_selection.deleteLater()  # setModel leaves the old one to its owner (Qt's docs)
        plain.deleteLater()
        # the row count reads the proxy: connected again, so it runs after this proxy took the rows
        for sig in (self.model.rowsInserted, self.model.rowsRemoved, self.model.modelReset):
            sig.disconnect(self._update_count)
            sig.connect(self._update_count)
        self.proxy.sort(-1)
        self.proxy.edited.connect(lambda coid, key, value: self.modifyRequested.emit(coid, {key: value}))
        self.view.setItemDelegate(OrderEditDelegate(self.view))
        self.view.setEditTriggers(QtWidgets.QAbstractItemView.EditTrigger.DoubleClicked)
        self.view.doubleClicked.connect(self._double_clicked)
        # Delete on the table cancels, F2 modifies (an event filter, so they need no
        # active-window shortcut map)
        self.view.installEventFilter(self)

    def eventFilter(self, obj, event) -> bool:
        if obj is self.view and event.type() == QtCore.QEvent.Type.KeyPress:
            if event.key() == Qt.Key.Key_Delete:
                self.cancel_selected()
                return True
            if event.key() == Qt.Key.Key_F2 and self.view.state() != QtWidgets.QAbstractItemView.State.EditingState:
                self.modify(self.view.currentIndex())
                return True
        return super().eventFilter(obj, event)

    def _double_clicked(self, index) -> None:
        if index.isValid() and not (self.proxy.flags(index) & Qt.ItemFlag.ItemIsEditable):
            self.modify(index)  # a cell that cannot be edited: its row's price

    def modify(self, index, key: str | None = None) -> bool:
        """Open the in-place editor of ``key`` (else the cell's own field, else the order's
        limit price, stop price, quantity: the first it has) in ``index``'s row."""
        if not index.isValid():
            return False
        o = index.data(RowRole)
        keys = self.proxy.keys
        own = keys[index.column()] if 0 <= index.column() < len(keys) else ""
        for k in ([key] if key else [own, "limit_price", "stop_price", "qty"]):
            if k in EDITABLE and can_modify(o, k):
                target = self.proxy.index(index.row(), keys.index(k))
                self.view.setCurrentIndex(target)
                self.view.edit(target)
                return True
        return False

    def modify_key(self, coid: str, key: str | None = None) -> bool:
        """Open the editor for order ``coid`` (tests, the context menu)."""
        r = self.model.row_for(coid)
        if r is None:
            return False
        return self.modify(self.proxy.mapFromSource(self.model.index(r, 0)), key)

    def set_oco_selected(self) -> None:
        coids = [o.client_order_id for o in self.selected_rows() if o is not None]
        if len(coids) >= 2:
            self.ocoRequested.emit(coids)

    def cancel_selected(self) -> None:
        coids = [o.client_order_id for o in self.selected_rows() if o is not None]
        if not coids:
            cur = self.current_row()
            coids = [cur.client_order_id] if cur is not None else []
        if coids:
            self.cancelRequested.emit(coids)

    def add_context_actions(self, menu) -> None:
        cur = self.view.currentIndex()
        o = cur.data(RowRole) if cur.isValid() else None
        a = menu.addAction("Modify price  F2", lambda: self.modify(cur, "limit_price" if can_modify(o, "limit_price")
                                                                   else "stop_price"))
        a.setEnabled(can_modify(o, "limit_price") or can_modify(o, "stop_price"))
        a = menu.addAction("Modify quantity", lambda: self.modify(cur, "qty"))
        a.setEnabled(can_modify(o, "qty"))
        a = menu.addAction("One cancels other (OCO)", self.set_oco_selected)
        a.setEnabled(len(self.selected_rows()) >= 2)
        menu.addSeparator()
        menu.addAction("Cancel selected", self.cancel_selected)
        menu.addAction("Cancel all working orders", self.cancelAllRequested.emit)
        menu.addSeparator()

    def apply(self, ch: Changes) -> None:
        if not (ch.new_orders or ch.changed_orders or ch.evicted_orders):
            return
        live = [o for o in ch.new_orders if o.is_live]
        gone = [o.client_order_id for o in ch.new_orders + ch.changed_orders if not o.is_live]
        for o in ch.changed_orders:
            if o.is_live:
                live.append(o)
        if gone:
            self.model.remove(k for k in gone if k in self.model)
        if live:
            self.model.upsert(live)


class HistoryPanel(TablePanel):
    def __init__(self, parent=None):
        super().__init__("history", RecordTableModel(HISTORY_COLUMNS, key=lambda o: o.client_order_id,
                                                     newest_first=True, max_rows=MAX_ORDERS), parent=parent)

    def apply(self, ch: Changes) -> None:
        # Orders the book evicts are its oldest finished ones; the model trims its own oldest
        # rows at the same bound (max_rows), which costs nothing per eviction.
        if ch.new_orders or ch.changed_orders:
            self.model.upsert(ch.changed_orders + ch.new_orders)


class FillsPanel(TablePanel):
    def __init__(self, parent=None):
        super().__init__("fills", RecordTableModel(FILL_COLUMNS, key=lambda f: f.fill_id, newest_first=True,
                                                   max_rows=MAX_FILLS), parent=parent)

    def apply(self, ch: Changes) -> None:
        if ch.new_fills:
            self.model.upsert(ch.new_fills)


class PositionsPanel(TablePanel):
    """Positions with average price and P&L (marked to the last tick at every flush): each
    symbol's net row (the account at the exchange), then one row per source that traded it
    (manual, each strategy); the totals line gives the P&L per source and in all."""

    def __init__(self, state: AppState, parent=None):
        self.totals = LiveLabel(64)
        self.totals.setObjectName("positionTotals")
        super().__init__("positions", RecordTableModel(POSITION_COLUMNS, key=lambda p: p.key),
                         filterable=False, buttons=(self.totals,), parent=parent)
        self.state = state

    def apply(self, ch: Changes) -> None:
        if ch.positions:
            rows = [r for s in sorted(ch.positions) for r in self.state.position_rows(s)]
            gone = [k for s in ch.positions for k in self.state.stale_position_keys(s) if k in self.model]
            if gone:
                self.model.remove(gone)
            self.model.upsert(rows)
            realized, unrealized = self.state.pnl_totals()
            tones = RecordTableModel.tones

            def tone(v: float):
                return tones.get("up") if v > 0 else (tones.get("down") if v < 0 else None)

            total = realized + unrealized
            segs = []
            for src, (r, u) in self.state.pnl_by_source().items():
                segs += [(f"{src.removeprefix('strategy.')} ", None), (f"{r + u:+,.2f}   ", tone(r + u))]
            self.totals.set_segments([*segs, ("P&L  realized ", None), (f"{realized:+,.2f}", tone(realized)),
                                      ("   unrealized ", None), (f"{unrealized:+,.2f}", tone(unrealized)),
                                      ("   total ", None), (f"{total:+,.2f}", tone(total))])
