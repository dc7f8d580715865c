"""Blotters: working orders (cancel one / cancel all), order history, fills, positions."""

from __future__ import annotations

from app.models.table import RecordTableModel
from app.models.tables import FILL_COLUMNS, HISTORY_COLUMNS, POSITION_COLUMNS, WORKING_COLUMNS
from app.panels.live_label import LiveLabel
from app.panels.table_panel import TablePanel
from app.qt import Qt, QtCore, QtWidgets, Signal
from app.state import MAX_FILLS, MAX_ORDERS, AppState, Changes


class WorkingOrdersPanel(TablePanel):
    """Orders live at the exchange (or UNKNOWN: possibly live).

    Signals:
        cancelRequested(list): client_order_ids to cancel (button, Delete key, menu).
        cancelAllRequested(): the "Cancel all" button.
    """

    cancelRequested = Signal(list)
    cancelAllRequested = Signal()

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
        # Delete on the table cancels (an event filter, so it needs no active-window shortcut map)
        self.view.installEventFilter(self)

    def eventFilter(self, obj, event) -> bool:
        if obj is self.view and event.type() == QtCore.QEvent.Type.KeyPress and event.key() == Qt.Key.Key_Delete:
            self.cancel_selected()
            return True
        return super().eventFilter(obj, event)

    def cancel_selected(self) -> None:
        coids = [o.client_order_id for o in self.selected_rows() if o is not None]
        if not coids:
            cur = self.current_row()
            coids = [cur.client_order_id] if cur is not None else []
        if coids:
            self.cancelRequested.emit(coids)

    def add_context_actions(self, menu) -> None:
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
