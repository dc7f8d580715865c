"""Market watch: the conflated quote of every symbol held (see MarketState: the universe is
capped), repainted only where it changed; an evicted symbol's row goes."""

from __future__ import annotations

from app.models.table import RecordTableModel
from app.models.tables import MARKET_COLUMNS
from app.panels.table_panel import TablePanel
from app.qt import Qt, Signal
from app.state import Changes, MarketState


class MarketWatchPanel(TablePanel):
    """Signals:
        symbolSelected(str): the current row changed (the chart follows it).
        symbolActivated(str): double-click or Enter on a row (fills the order ticket).
    """

    symbolSelected = Signal(str)
    symbolActivated = Signal(str)

    def __init__(self, market: MarketState, parent=None):
        super().__init__("market", RecordTableModel(MARKET_COLUMNS, key=lambda q: q.symbol), parent=parent)
        self.market = market
        self.view.setSortingEnabled(True)
        self.view.sortByColumn(0, Qt.SortOrder.AscendingOrder)  # by symbol until the trader sorts otherwise
        # activated = double-click or Enter (Qt emits it after doubleClicked)
        self.view.activated.connect(self._activated)
        self.view.selectionModel().currentRowChanged.connect(self._current_changed)

    def apply(self, ch: Changes) -> None:
        if ch.evicted_symbols:  # idle symbols that gave their place to new ones (universe cap)
            self.model.remove(ch.evicted_symbols)
        if ch.symbols:
            quotes = self.market.quotes
            self.model.upsert(quotes[s] for s in sorted(ch.symbols) if s in quotes)

    def symbol_at(self, index) -> str:
        row = self.proxy.mapToSource(index).row()
        q = self.model.row_at(row)
        return q.symbol if q is not None else ""

    def _current_changed(self, cur, _prev) -> None:
        if cur.isValid():
            sym = self.symbol_at(cur)
            if sym:
                self.symbolSelected.emit(sym)

    def _activated(self, index) -> None:
        sym = self.symbol_at(index)
        if sym:
            self.symbolActivated.emit(sym)

    def select_symbol(self, symbol: str) -> bool:
        return self.select_key(symbol)
