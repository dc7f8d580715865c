"""Price-ladder paint benchmark: the ladder's repaint at the peak tick rate, offscreen.

    python bench/ladder.py [--frames 300] [--rate 100000] [--symbols 4] [--depth-hz 10]

Each frame stands for one 30 Hz flush of the window: it feeds ``rate / 30`` ticks spread over
``--symbols`` symbols into the state (``MarketState.on_tick``, as the feed does) and, per
symbol, a depth message (10 levels a side) at ``--depth-hz``, then runs what the flush runs
for the ladder (``AppState.collect``, ``LadderPanel.apply``) and repaints it synchronously
(``QWidget.repaint``), timing the repaint (what the UI thread pays) and the paint event in it;
"apply" is the flush's ladder work before it (taking the quote, book and orders).  Scenarios: ladder sizes from the default
dock to a tall 4K column, with and without working orders on the ladder's symbol, and, to
show why the ladder paints itself, the same rows in a ``QTableView`` over a Python model.
Prints a table; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
if __package__ in (None, ""):  # run as a script: make the repo root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.qt import QAbstractTableModel, QColor, QModelIndex, Qt, QtWidgets  # noqa: E402

from workers import protocol as P  # noqa: E402
from workers.protocol import OrderStatus, OrderType, Side  # noqa: E402
from app.panels.ladder import COLUMN_TITLES, LadderPanel, LadderView  # noqa: E402
from app.state import AppState, OrderRow  # noqa: E402
from app.theme import apply_theme  # noqa: E402

FLUSH_HZ = 30
EPOCH = 7


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bench/ladder.py", description=__doc__.split("\n")[0])
    p.add_argument("--frames", type=int, default=300, help="flushes measured per scenario (default 300: 10 s of flushes)")
    p.add_argument("--rate", type=int, default=100_000, help="ticks per second over all symbols (default 100000)")
    p.add_argument("--symbols", type=int, default=4, help="symbols ticking (default 4, the default fleet's)")
    p.add_argument("--depth-hz", type=float, default=10.0, help="depth messages per symbol per second (default 10)")
    return p


class Market:
    """A random walk per symbol on a 0.01 grid, its ticks and its 10-level book."""

    def __init__(self, state: AppState, symbols: list[str]):
        self.state = state
        self.symbols = symbols
        self.px = {s: 100.0 + 50 * i for i, s in enumerate(symbols)}
        self.seq = dict.fromkeys(symbols, 0)
        self.dseq = dict.fromkeys(symbols, 0)
        self._r = 12345

    def _step(self) -> int:
        self._r = (self._r * 1103515245 + 12345) & 0x7FFFFFFF
        return (self._r >> 16) % 3 - 1

    def ticks(self, n: int) -> None:
        on_tick = self.state.market.on_tick
        syms = self.symbols
        k = len(syms)
        now = P.now_ns()
        for i in range(n):
            s = syms[i % k]
            px = self.px[s] = round(self.px[s] + self._step() * 0.01, 2)
            seq = self.seq[s] = self.seq[s] + 1
            on_tick(s, seq, now + i, px, round(px - 0.01, 2), round(px + 0.01, 2), 300, 400, seq * 10, EPOCH)

    def depth(self, s: str) -> None:
        px = self.px[s]
        bid, ask = round(px - 0.01, 2), round(px + 0.01, 2)
        self.dseq[s] += 1
        d = P.Depth(s, self.dseq[s], P.now_ns(), [(round(bid - i * 0.01, 2), 100 * (i + 1)) for i in range(10)],
                    [(round(ask + i * 0.01, 2), 100 * (i + 2)) for i in range(10)], epoch=EPOCH)
        self.state.depth.on_depth(d)


def add_orders(state: AppState, symbol: str, px: float, n: int) -> None:
    for i in range(n):
        side = Side.BUY if i % 2 == 0 else Side.SELL
        price = round(px - 0.03 - i * 0.01, 2) if side is Side.BUY else round(px + 0.03 + i * 0.01, 2)
        state.orders.add(OrderRow(client_order_id=f"manual-b{i}", symbol=symbol, side=side, qty=100 * (i + 1),
                                  order_type=OrderType.LIMIT, limit_price=price, source="manual",
                                  status=OrderStatus.NEW))


def pct(xs: list[float], q: float) -> float:
    if not xs:
        return 0.0
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))]


def run_ladder(args, size: tuple[int, int], orders: int) -> dict:
    state = AppState(bars_factory=None)
    symbols = ["AAPL", "MSFT", "GOOG", "AMZN", *[f"S{i:03d}" for i in range(max(0, args.symbols - 4))]][: args.symbols]
    mkt = Market(state, symbols)
    mkt.ticks(len(symbols))
    for s in symbols:
        mkt.depth(s)
    sym = symbols[0]
    if orders:
        add_orders(state, sym, mkt.px[sym], orders)
    panel = LadderPanel(state)
    panel.resize(*size)
    panel.show()
    QtWidgets.QApplication.processEvents()
    per_frame = args.rate / FLUSH_HZ
    depth_every = FLUSH_HZ / args.depth_hz if args.depth_hz > 0 else 0
    paint, in_event, apply_, carry, repaints, feed = [], [], [], 0.0, 0, []
    for f in range(args.frames):
        carry += per_frame
        n = int(carry)
        carry -= n
        t0 = time.perf_counter()
        mkt.ticks(n)
        if depth_every:
            for j, s in enumerate(symbols):  # staggered: not every book in the same flush
                if (f + j) % max(1, round(depth_every)) == 0:
                    mkt.depth(s)
        feed.append(time.perf_counter() - t0)
        t1 = time.perf_counter()
        ch = state.collect(quotes=True)
        changed = panel.apply(ch, follow=sym)
        apply_.append((time.perf_counter() - t1) * 1000)
        if changed:
            t2 = time.perf_counter()
            panel.view.repaint()
            paint.append((time.perf_counter() - t2) * 1000)
            in_event.append(panel.view.paint_ms)
            repaints += 1
    fed = sum(feed)
    row = {"size": f"{size[0]}x{size[1]}", "rows": panel.view.rows(), "orders": orders, "frames": args.frames,
           "repaints": repaints, "paint_p50": statistics.median(paint) if paint else 0.0, "paint_p99": pct(paint, 0.99),
           "paint_max": max(paint, default=0.0), "event_p50": statistics.median(in_event) if in_event else 0.0,
           "apply_p50": statistics.median(apply_), "apply_p99": pct(apply_, 0.99),
           "ticks_s": round(args.rate), "feed_us_tick": fed / max(1, args.frames * per_frame) * 1e6}
    panel.close()
    panel.deleteLater()
    return row


class TableModel(QAbstractTableModel):
    """The ladder's rows as a plain Python table model: what a QTableView would ask."""

    def __init__(self, view: LadderView):
        super().__init__()
        self.v = view
        self.n = 0
        self.up, self.down = QColor("#1d3b35"), QColor("#3b1d1d")

    def rowCount(self, _parent=QModelIndex()) -> int:  # noqa: N802
        return self.n

    def columnCount(self, _parent=QModelIndex()) -> int:  # noqa: N802
        return 5

    def data(self, index, role=Qt.ItemDataRole.DisplayRole):
        t = self.v.top() - index.row()
        c = index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            if c == 2:
                return self.v._label(t)
            if c == 1:
                return f"{self.v.bids[t]:,}" if t in self.v.bids else None
            if c == 3:
                return f"{self.v.asks[t]:,}" if t in self.v.asks else None
            side = Side.BUY if c == 0 else Side.SELL
            cell = self.v.own.get((side, t))
            return f"{cell.qty:,}" if cell else None
        if role == Qt.ItemDataRole.BackgroundRole:
            if c == 1 and t in self.v.bids:
                return self.up
            if c == 3 and t in self.v.asks:
                return self.down
        if role == Qt.ItemDataRole.TextAlignmentRole:
            return int(Qt.AlignmentFlag.AlignCenter)
        return None

    def headerData(self, section, orientation, role=Qt.ItemDataRole.DisplayRole):  # noqa: N802
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return COLUMN_TITLES[section]
        return None


def run_table(args, size: tuple[int, int], orders: int) -> dict:
    """The same flushes, the rows shown by a QTableView (its viewport repainted whole)."""
    state = AppState(bars_factory=None)
    symbols = ["AAPL", "MSFT", "GOOG", "AMZN"][: max(1, min(4, args.symbols))]
    mkt = Market(state, symbols)
    mkt.ticks(len(symbols))
    for s in symbols:
        mkt.depth(s)
    sym = symbols[0]
    if orders:
        add_orders(state, sym, mkt.px[sym], orders)
    panel = LadderPanel(state)  # computes the rows; its own view is not shown
    panel.resize(*size)
    panel.show()
    QtWidgets.QApplication.processEvents()
    table = QtWidgets.QTableView()
    model = TableModel(panel.view)
    table.setModel(model)
    table.verticalHeader().hide()
    table.verticalHeader().setDefaultSectionSize(panel.view.row_h)
    table.resize(*size)
    table.show()
    panel.view.hide()
    model.n = max(1, (size[1] - 60) // panel.view.row_h)
    model.layoutChanged.emit()
    QtWidgets.QApplication.processEvents()
    per_frame = args.rate / FLUSH_HZ
    paint, carry = [], 0.0
    for f in range(args.frames):
        carry += per_frame
        n = int(carry)
        carry -= n
        mkt.ticks(n)
        for j, s in enumerate(symbols):
            if (f + j) % 3 == 0:
                mkt.depth(s)
        if panel.apply(state.collect(quotes=True), follow=sym):
            model.dataChanged.emit(model.index(0, 0), model.index(model.n - 1, 4))
            t0 = time.perf_counter()
            table.viewport().repaint()
            paint.append((time.perf_counter() - t0) * 1000)
    row = {"size": f"{size[0]}x{size[1]} (QTableView)", "rows": model.n, "orders": orders, "frames": args.frames,
           "repaints": len(paint), "paint_p50": statistics.median(paint) if paint else 0.0, "paint_p99": pct(paint, 0.99),
           "paint_max": max(paint, default=0.0), "event_p50": 0.0, "apply_p50": 0.0, "apply_p99": 0.0, "ticks_s": args.rate, "feed_us_tick": 0.0}
    table.close()
    panel.close()
    return row


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication([])
    apply_theme(app, "dark")
    rows = []
    for size, orders in (((300, 520), 0), ((300, 520), 20), ((300, 1000), 20), ((420, 2000), 40)):
        rows.append(run_ladder(args, size, orders))
    rows.append(run_table(args, (300, 1000), 20))
    print(f"ladder repaint, {args.rate:,} ticks/s over {args.symbols} symbols, depth {args.depth_hz:g}/s per symbol, "
          f"{FLUSH_HZ} Hz flushes, offscreen; times in ms (target: paint within one 60 Hz frame, 16 ms)")
    print()
    print("| ladder | rows | own orders | flushes | repaints | repaint p50 | repaint p99 | repaint max | "
          "in paintEvent p50 | apply p50 | apply p99 |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        ev = f"{r['event_p50']:.2f}" if r["event_p50"] else "-"
        ap = (f"{r['apply_p50']:.3f} | {r['apply_p99']:.3f}") if r["apply_p50"] else "- | -"
        print(f"| {r['size']} | {r['rows']} | {r['orders']} | {r['frames']} | {r['repaints']} | {r['paint_p50']:.2f} | "
              f"{r['paint_p99']:.2f} | {r['paint_max']:.2f} | {ev} | {ap} |")
    print()
    feed = [r["feed_us_tick"] for r in rows if r["feed_us_tick"]]
    if feed:
        print(f"feeding the state cost {statistics.median(feed):.2f} us per tick (not the ladder's; for scale)")
    app.processEvents()
    return 0


if __name__ == "__main__":
    sys.exit(main())
