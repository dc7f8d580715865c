"""A table with a small toolbar: filter, panel buttons, row count, CSV export.

Every blotter of the window is one of these around a :class:`RecordTableModel`.  The
view is dense (20 px rows), sortable through a proxy (on the raw values, not the text),
remembers its column widths, order and hidden columns in QSettings, and exports what it
shows -- filtered and sorted as on screen -- to CSV with raw values.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Sequence

from app.models.table import RawRole, RecordTableModel, RowRole
from app.panels.live_label import LiveLabel
from app.qt import QSortFilterProxyModel, Qt, QtCore, QtGui, QtWidgets, Signal

ROW_HEIGHT = 20


def tool_bar() -> QtWidgets.QHBoxLayout:
    bar = QtWidgets.QHBoxLayout()
    bar.setContentsMargins(2, 2, 2, 2)
    return bar


def bar_over(panel: QtWidgets.QWidget, bar: QtWidgets.QLayout, body: QtWidgets.QWidget) -> None:
    """Lays ``panel`` out as its tool bar over its body, edge to edge (the table and log panels look alike)."""
    lay = QtWidgets.QVBoxLayout(panel)
    lay.setContentsMargins(0, 0, 0, 0)
    lay.setSpacing(0)
    lay.addLayout(bar)
    lay.addWidget(body)


class TableView(QtWidgets.QTableView):
    """A dense, keyboard-friendly table view."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setAlternatingRowColors(True)
        self.setSelectionBehavior(QtWidgets.QAbstractItemView.SelectionBehavior.SelectRows)
        self.setSelectionMode(QtWidgets.QAbstractItemView.SelectionMode.ExtendedSelection)
        self.setEditTriggers(QtWidgets.QAbstractItemView.EditTrigger.NoEditTriggers)
        self.setWordWrap(False)
        self.setShowGrid(False)
        self.setTextElideMode(Qt.TextElideMode.ElideRight)
        self.setHorizontalScrollMode(QtWidgets.QAbstractItemView.ScrollMode.ScrollPerPixel)
        v = self.verticalHeader()
        v.setVisible(False)
        v.setSectionResizeMode(QtWidgets.QHeaderView.ResizeMode.Fixed)
        v.setDefaultSectionSize(ROW_HEIGHT)
        v.setMinimumSectionSize(ROW_HEIGHT)
        h = self.horizontalHeader()
        h.setSectionsMovable(True)
        h.setHighlightSections(False)
        h.setStretchLastSection(True)
        h.setMinimumSectionSize(28)
        h.setDefaultAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
        h.setFixedHeight(ROW_HEIGHT + 2)


class TablePanel(QtWidgets.QWidget):
    """A titled table with filter, buttons and CSV export.

    Signals:
        exported(str, int): a CSV file was written (path, rows).
        exportFailed(str): writing a CSV file failed (reason).
    """

    exported = Signal(str, int)
    exportFailed = Signal(str)

    def __init__(self, name: str, model: RecordTableModel, *, filterable: bool = True, sortable: bool = True,
                 buttons: Sequence[QtWidgets.QWidget] = (), parent=None):
        super().__init__(parent)
        self.name = name
        self.setObjectName(f"panel_{name}")
        self.model = model
        self.proxy = QSortFilterProxyModel(self)
        self.proxy.setSourceModel(model)
        self.proxy.setSortRole(RawRole)
        self.proxy.setFilterKeyColumn(-1)
        self.proxy.setFilterCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        self.proxy.setDynamicSortFilter(True)
        self.view = TableView(self)
        self.view.setObjectName(f"table_{name}")
        self.view.setModel(self.proxy)
        self.view.setSortingEnabled(sortable)
        if sortable:
            self.view.horizontalHeader().setSortIndicator(-1, Qt.SortOrder.AscendingOrder)
            self.proxy.sort(-1)
        for i, c in enumerate(model.columns):
            self.view.setColumnWidth(i, c.width)

        bar = tool_bar()
        bar.setSpacing(4)
        self.filter = None
        if filterable:
            self.filter = QtWidgets.QLineEdit(self)
            self.filter.setPlaceholderText("Filter…")
            self.filter.setClearButtonEnabled(True)
            self.filter.setMaximumWidth(180)
            self.filter.textChanged.connect(self.proxy.setFilterFixedString)
            bar.addWidget(self.filter)
        for b in buttons:
            bar.addWidget(b)
        bar.addStretch(1)
        self.count = LiveLabel(16, muted=True, parent=self)
        self.count.setText("0 rows")
        bar.addWidget(self.count)
        self.export_button = QtWidgets.QToolButton(self)
        self.export_button.setText("CSV")
        self.export_button.setToolTip("Export this table to CSV (what is shown, as filtered and sorted)")
        self.export_button.clicked.connect(self.export_dialog)
        bar.addWidget(self.export_button)
        bar_over(self, bar, self.view)

        self.view.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.view.customContextMenuRequested.connect(self._context_menu)
        h = self.view.horizontalHeader()
        h.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        h.customContextMenuRequested.connect(self._header_menu)
        model.rowsInserted.connect(self._update_count)
        model.rowsRemoved.connect(self._update_count)
        model.modelReset.connect(self._update_count)

    # ------------------------------------------------------------------ rows
    def _update_count(self, *_):
        shown, total = self.proxy.rowCount(), self.model.rowCount()
        self.count.setText(f"{total:,} rows" if shown == total else f"{shown:,} of {total:,} rows")

    def visible_rows(self) -> list:
        """Row objects in the order the view shows them (filtered, sorted)."""
        return [self.proxy.index(r, 0).data(RowRole) for r in range(self.proxy.rowCount())]

    def selected_rows(self) -> list:
        sel = self.view.selectionModel()
        if sel is None:
            return []
        rows = sorted({i.row() for i in sel.selectedRows()})
        return [self.proxy.index(r, 0).data(RowRole) for r in rows]

    def current_row(self):
        idx = self.view.currentIndex()
        return idx.data(RowRole) if idx.isValid() else None

    def select_key(self, key) -> bool:
        r = self.model.row_for(key)
        if r is None:
            return False
        idx = self.proxy.mapFromSource(self.model.index(r, 0))
        if not idx.isValid():
            return False
        self.view.selectRow(idx.row())
        self.view.setCurrentIndex(idx)
        return True

    # ------------------------------------------------------------------ export
    def default_export_name(self) -> str:
        return f"tickdesk-{self.name}-{_dt.datetime.now():%Y%m%d-%H%M%S}.csv"

    def export_csv(self, path: str) -> int:
        try:
            n = self.model.write_csv(path, self.visible_rows())
        except OSError as e:
            self.exportFailed.emit(f"CSV export of {self.name} failed: {e}")
            return -1
        self.exported.emit(path, n)
        return n

    def export_dialog(self) -> None:
        path, _ = QtWidgets.QFileDialog.getSaveFileName(self, f"Export {self.name}", self.default_export_name(),
                                                        "CSV files (*.csv)")
        if path:
            self.export_csv(path)

    def copy_selection(self) -> None:
        rows = self.selected_rows()
        if not rows:
            return
        cols = self.model.columns
        lines = ["\t".join(c.title for c in cols)] + ["\t".join(c.text(r) for c in cols) for r in rows]
        QtWidgets.QApplication.clipboard().setText("\n".join(lines))

    # ------------------------------------------------------------------ menus
    def _context_menu(self, pos) -> None:
        m = QtWidgets.QMenu(self)
        self.add_context_actions(m)
        m.addAction("Copy rows", self.copy_selection)
        m.addAction("Export CSV…", self.export_dialog)
        m.exec(self.view.viewport().mapToGlobal(pos))

    def add_context_actions(self, menu: QtWidgets.QMenu) -> None:
        """Panels add their own row actions here."""

    def _header_menu(self, pos) -> None:
        m = QtWidgets.QMenu(self)
        h = self.view.horizontalHeader()
        for i, c in enumerate(self.model.columns):
            a = m.addAction(c.title)
            a.setCheckable(True)
            a.setChecked(not h.isSectionHidden(i))
            a.toggled.connect(lambda on, i=i: h.setSectionHidden(i, not on))
        m.addSeparator()
        m.addAction("Unsorted (arrival order)", lambda: (h.setSortIndicator(-1, Qt.SortOrder.AscendingOrder), self.proxy.sort(-1)))
        m.addAction("Reset columns", self.reset_columns)
        m.exec(h.mapToGlobal(pos))

    def reset_columns(self) -> None:
        h = self.view.horizontalHeader()
        for i, c in enumerate(self.model.columns):
            h.setSectionHidden(i, False)
            h.moveSection(h.visualIndex(i), i)
            self.view.setColumnWidth(i, c.width)

    # ------------------------------------------------------------------ settings
    def save_state(self, settings) -> None:
        settings.set_value(f"tables/{self.name}/header", self.view.horizontalHeader().saveState())

    def restore_state(self, settings) -> None:
        state = settings.value(f"tables/{self.name}/header")
        if isinstance(state, QtCore.QByteArray) and not state.isEmpty():
            self.view.horizontalHeader().restoreState(state)


def shortcut(key: str | QtGui.QKeySequence, parent: QtWidgets.QWidget, slot, context=Qt.ShortcutContext.WidgetWithChildrenShortcut):
    sc = QtGui.QShortcut(QtGui.QKeySequence(key), parent)
    sc.setContext(context)
    sc.activated.connect(slot)
    return sc
