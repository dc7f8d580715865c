"""Where the window's docks go, and how the layout is kept between runs.

The default layout puts market watch, ticket and positions in a column left of the chart and
two tab groups across the bottom; the trader's own layout (geometry, dock state, each
table's columns, the chart's interval and symbol) is saved in the settings when the window
closes and restored when it opens.
"""

from __future__ import annotations

from app.qt import QByteArray, Qt, QTimer, QtWidgets

__all__ = ["LAYOUT_VERSION", "CHART_INTERVALS", "WindowLayout"]

#: Qt's saveState version: raise it when the docks change, so an old saved state is ignored
#: (restoreState refuses it) instead of restoring a layout that no longer fits.
LAYOUT_VERSION = 5  # 4: the price ladder's dock; 5: the backtest dock
#: Chart intervals a saved setting may restore (what the window's Alt+1..3 offer).
CHART_INTERVALS = (1, 5, 60)


class WindowLayout:
    """The docks of ``window`` (a ``QMainWindow``) by name, laid out and persisted.

    Attributes:
        sizes_pending: the default dock sizes still have to be applied (they only take once
            the window has its real size, after it is shown).
    """

    def __init__(self, window: QtWidgets.QMainWindow, docks: dict[str, QtWidgets.QDockWidget]) -> None:
        self.window = window
        self.docks = docks
        self.sizes_pending = False
        #: each docked dock's (width, height) as fractions of the window, from the last check at
        #: which the window's size had not changed (the trader's own sizes, once dragged)
        self._fractions: dict[str, tuple[float, float]] = {}
        self._size: tuple[int, int] | None = None
        self._applied: dict | None = None  # the docks' sizes right after the shares were last applied
        self._after_apply = False

    def reset(self) -> None:
        """The default layout: every dock docked and shown."""
        w, d = self.window, self.docks
        for dock in d.values():
            dock.setFloating(False)
            dock.show()
        L, B = Qt.DockWidgetArea.LeftDockWidgetArea, Qt.DockWidgetArea.BottomDockWidgetArea
        w.addDockWidget(L, d["market"])
        if "ladder" in d:  # right of the chart, above the bottom groups
            w.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, d["ladder"])
            for name, dock in d.items():  # the other ladders beside it
                if name.startswith("ladder") and name != "ladder":
                    w.splitDockWidget(d["ladder"], dock, Qt.Orientation.Horizontal)
        w.splitDockWidget(d["market"], d["ticket"], Qt.Orientation.Vertical)
        w.splitDockWidget(d["ticket"], d["positions"], Qt.Orientation.Vertical)
        w.addDockWidget(B, d["working"])
        w.splitDockWidget(d["working"], d["workers"], Qt.Orientation.Horizontal)
        for a, b in (("working", "history"), ("history", "fills"), ("fills", "signals"), ("workers", "log"), ("log", "network")):
            w.tabifyDockWidget(d[a], d[b])
        d["working"].raise_()
        d["workers"].raise_()
        self.sizes_pending = True
        if w.isVisible():
            QTimer.singleShot(0, self.window, self.apply_default_sizes)  # dropped if the window is gone

    def shown(self) -> None:
        """The window was shown: apply the default sizes if they are still due."""
        if self.sizes_pending:
            QTimer.singleShot(0, self.window, self.apply_default_sizes)  # dropped if the window is gone

    def follow_size(self) -> None:
        """Called a few times a second: while the window keeps its size, remember what share
        of it each dock takes; when the window's size changed, give every dock its share of
        the new size.  So docks shrunk with a small window grow back with it (without Reset
        layout), and the trader's own proportions are kept."""
        win = self.window
        size = (win.width(), win.height())
        if self.sizes_pending or size[0] <= 0 or size[1] <= 0:
            return
        docked = self._docked()
        now = {n: (d.width(), d.height()) for n, d in docked.items()}
        if size == self._size or self._size is None:
            # the shares change only when the docks did while the window kept its size (the
            # trader dragged a separator, or moved a dock): never from what a small window
            # squeezed them to, or they would not grow back
            if self._after_apply:  # our own resize, laid out: what it gave is not the trader's doing
                self._after_apply = False
                self._applied = now
            elif self._size is None or now != self._applied:
                self._fractions = {n: (w / size[0], h / size[1]) for n, (w, h) in now.items()}
                self._applied = now
            self._size = size
            return
        self._size = size
        names = [n for n in docked if n in self._fractions]
        if names:
            H, V = Qt.Orientation.Horizontal, Qt.Orientation.Vertical
            win.resizeDocks([docked[n] for n in names], [max(1, int(self._fractions[n][0] * size[0])) for n in names], H)
            win.resizeDocks([docked[n] for n in names], [max(1, int(self._fractions[n][1] * size[1])) for n in names], V)
        self._applied = None  # taken at the next check, once the resize is laid out
        self._after_apply = True

    def _docked(self) -> dict[str, QtWidgets.QDockWidget]:
        return {n: d for n, d in self.docks.items() if d.isVisible() and not d.isFloating()
                and not d.visibleRegion().isEmpty()}

    def apply_default_sizes(self) -> None:
        self.sizes_pending = False
        self._size = None  # the fractions are taken again from the new sizes
        win, d = self.window, self.docks
        w, h = win.width(), win.height()
        H, V = Qt.Orientation.Horizontal, Qt.Orientation.Vertical
        win.resizeDocks([d["market"]], [min(712, int(w * 0.45))], H)
        win.resizeDocks([d["working"]], [max(min(220, int(h * 0.4)), int(h * 0.32))], V)
        ticket_h = d["ticket"].widget().sizeHint().height() + 24
        win.resizeDocks([d["market"], d["ticket"], d["positions"]], [200, ticket_h, 200], V)
        win.resizeDocks([d["working"], d["workers"]], [int(w * 0.47), int(w * 0.53)], H)
        if "ladder" in d:
            win.resizeDocks([d["ladder"]], [min(300, max(220, int(w * 0.18)))], H)

    def save(self, settings, tables: dict, chart) -> None:
        """Geometry, dock state, every table's columns, the chart's interval and symbol."""
        s, win = settings, self.window
        s.set_value("window/geometry", win.saveGeometry())
        s.set_value("window/state", win.saveState(LAYOUT_VERSION))
        for p in tables.values():
            p.save_state(s)
        s.set_value("chart/interval", chart.interval)
        if chart.symbol:
            s.set_value("session/symbol", chart.symbol)
        s.sync()

    def restore(self, settings, tables: dict, chart) -> None:
        """What :meth:`save` kept; anything missing or unreadable keeps its default."""
        s, win = settings, self.window
        geo = s.value("window/geometry")
        if isinstance(geo, QByteArray) and not geo.isEmpty():
            win.restoreGeometry(geo)
        state = s.value("window/state")
        if isinstance(state, QByteArray) and not state.isEmpty() and win.restoreState(state, LAYOUT_VERSION):
            self.sizes_pending = False  # the saved state has the trader's sizes
        for p in tables.values():
            p.restore_state(s)
        try:
            interval = int(s.value("chart/interval", 1))
        except (TypeError, ValueError):
            interval = 1
        if interval in CHART_INTERVALS:
            chart.set_interval(interval)
