"""ChartWidget under pytest-qt, offscreen. Counts what is drawn; never asserts wall-clock times."""

from __future__ import annotations

import os
import time

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from app.qt import QtCore, QtGui, QtWidgets  # noqa: E402

from app.chart import ChartWidget, MultiIntervalBars  # noqa: E402

NS = 1_000_000_000
T0 = 1_700_000_040 * NS  # on a minute boundary
Key = QtCore.Qt.Key


def feed(bars: MultiIntervalBars, start_s: float, seconds: float, per_second: int = 4,
         base: float = 100.0, seed: int = 0) -> float:
    """Deterministic random-walk ticks; returns the time (s after T0) just past the last one."""
    rng = np.random.default_rng(seed)
    n = int(seconds * per_second)
    ts = T0 + int(start_s * NS) + (np.arange(n) * (NS // per_second)).astype(np.int64)
    px = np.round(base + np.cumsum(rng.normal(0, 0.02, n)), 2)
    vol = rng.integers(1, 50, n)
    bars.add_ticks(ts, px, vol)
    return start_s + seconds


@pytest.fixture
def chart(qtbot):
    w = ChartWidget()
    qtbot.addWidget(w)
    w.resize(1000, 600)
    w.show()
    qtbot.waitExposed(w)
    return w


def right_gap(w: ChartWidget) -> float:
    """Distance in bars from the newest bar's centre to the view's right edge."""
    return w.x_range()[1] - w.series.last_index


def test_shows_candles_for_the_selected_symbol(chart):
    a, b = MultiIntervalBars(), MultiIntervalBars()
    feed(a, 0, 100, base=100)
    feed(b, 0, 40, base=50, seed=1)
    chart.set_series("AAA", a)
    assert chart.symbol == "AAA" and chart.series is a.series(1)
    assert chart.drawn_candles == 100  # all of them fit the default window
    rect = chart._candles.boundingRect()
    assert 90 < rect.center().y() < 110
    chart.set_series("BBB", b)
    assert chart.series is b.series(1)
    assert chart.drawn_candles == 40
    assert 40 < chart._candles.boundingRect().center().y() < 60
    assert chart._symbol_label.text() == "BBB"
    # the picture really paints: the render differs from an empty chart's
    img = chart.grab().toImage()
    assert not img.isNull()


def test_candle_picture_paints_only_inside_the_bars(qapp):
    """Render the recorded QPicture under a chart-like transform and check the painted pixels:
    with square pen caps, a zero-length wick (one-price bar) replayed from a QPicture under a
    scaling transform painted as a band across the whole plot."""
    from app.chart.candles import CandleItem

    x = np.arange(1000, 1040, dtype=np.float64)
    o = 100 + np.sin(x / 3)
    c = o + np.where(np.arange(40) % 3 == 0, 0.0, np.cos(x) * 0.3)  # every third one a doji
    h = np.maximum(o, c) + 0.2
    lo = np.minimum(o, c) - 0.2
    flat = np.arange(40) % 5 == 0  # one-price bars (a single tick): zero-length wicks
    c[flat] = h[flat] = lo[flat] = o[flat]
    item = CandleItem()
    item.set_candles(x, o, h, lo, c)
    w_px, h_px = 800, 600
    img = QtGui.QImage(w_px, h_px, QtGui.QImage.Format.Format_ARGB32_Premultiplied)
    img.fill(0)
    y0, y1 = lo.min() - 0.1, h.max() + 0.1  # a little empty space above and below
    tr = QtGui.QTransform()
    tr.scale(w_px / 42, -h_px / (y1 - y0))
    tr.translate(-999, -y1)
    p = QtGui.QPainter(img)
    p.setTransform(tr)
    item.paint(p)
    p.end()
    px = np.frombuffer(img.constBits(), dtype=np.uint32).reshape(h_px, w_px)
    rows = np.flatnonzero(px.any(axis=1))
    unit = h_px / (y1 - y0)
    assert rows.min() >= 0.1 * unit - 2 and rows.max() <= h_px - 0.1 * unit + 2
    # every candle column has paint, and the painted area is far from full columns
    cols = np.flatnonzero(px.any(axis=0))
    assert len(cols) >= 40
    assert (px != 0).sum() < 0.25 * w_px * h_px


def test_interval_combo_changes_bar_count(chart, qtbot):
    bars = MultiIntervalBars(intervals=(1, 5, 60))
    feed(bars, 0, 600)  # 10 minutes from a minute boundary
    chart.set_series("AAA", bars)
    assert chart.interval == 1
    one_s = chart.drawn_candles
    assert one_s > 100
    combo = chart.interval_combo
    labels = [combo.itemText(i) for i in range(combo.count())]
    assert {"1s", "5s", "1m"} <= set(labels)

    seen = []
    chart.intervalChanged.connect(seen.append)
    # a user stepping through the combo with the keyboard: every step activates an item
    while combo.currentData() != 60.0:
        qtbot.keyClick(combo, Key.Key_Down)
    assert chart.interval == 60.0 and seen[-1] == 60.0
    assert 5.0 in seen
    assert chart.drawn_candles == 10
    assert chart.series is bars.series(60)

    chart.set_interval(5)
    assert combo.currentData() == 5.0 and seen[-1] == 5.0
    assert chart.drawn_candles == 120  # 600 s / 5 s all fit in the kept 150-bar width
    # 15 s is not held but derivable from the 5 s bars
    assert chart.set_interval(15)
    assert chart.drawn_candles == 40
    assert chart.set_interval(7.5) is False and chart.interval == 15


def test_levels_and_markers_are_items_in_the_plot(chart):
    bars = MultiIntervalBars()
    feed(bars, 0, 120)
    chart.set_series("AAA", bars)
    chart.set_levels(99.5, 100.5, "breakout", key="s1")
    chart.set_levels(99.0, None, key="s2")
    sup, res = chart.level_lines("s1")
    items = chart.price_plot.items
    assert sup in items and res in items
    assert (sup.value(), res.value()) == (99.5, 100.5)
    tag_sup, tag_res = chart.level_tags("s1")
    assert (tag_sup.base, tag_res.base) == ("S breakout 99.50", "R breakout 100.50")
    y0, y1 = chart.price_plot.vb.viewRange()[1]
    for tag, value in ((tag_sup, 99.5), (tag_res, 100.5)):  # beyond the view: an arrow says where
        arrow = "▲ " if value > y1 else "▼ " if value < y0 else ""
        assert tag.text == arrow + tag.base
    sup2, res2 = chart.level_lines("s2")
    assert sup2.isVisible() and not res2.isVisible()
    assert chart.level_tags("s2")[0].isVisible() and not chart.level_tags("s2")[1].isVisible()
    chart.set_levels(None, None, key="s1")
    assert chart.level_lines("s1") is None and sup not in chart.price_plot.items
    assert chart.level_tags("s1") is None and tag_sup.scene() is None

    t_bar = T0 + 100 * NS  # inside bar index 100 (one bar per second from T0)
    kinds = ["signal_buy", "signal_sell", "signal_rejected", "fill_buy", "fill_sell"]
    for i, kind in enumerate(kinds):
        assert chart.add_marker(t_bar + i, 100.0 + i, kind, text=f"why {i}")
    assert chart.add_marker(t_bar, 100.0, "bogus") is False
    chart.refresh()
    scatters = chart.marker_items
    for i, kind in enumerate(kinds):
        item = scatters[kind]
        assert item in chart.price_plot.items
        pts = item.points()
        assert len(pts) == 1
        assert pts[0].pos().x() == 100 and pts[0].pos().y() == 100.0 + i
        assert f"why {i}" in pts[0].data()
    # hollow rejected marker, filled signals
    assert scatters["signal_rejected"].opts["brush"].style() == QtCore.Qt.BrushStyle.NoBrush
    assert scatters["signal_buy"].opts["symbol"] != scatters["fill_buy"].opts["symbol"]

    # markers for another symbol are kept but not drawn here
    chart.add_marker(t_bar, 50.0, "fill_buy", symbol="BBB")
    chart.refresh()
    assert len(scatters["fill_buy"].points()) == 1
    other = MultiIntervalBars()
    feed(other, 0, 120, base=50)
    chart.set_series("BBB", other)
    assert chart.level_lines("s2") is None  # levels are per symbol too
    assert [p.pos().y() for p in scatters["fill_buy"].points()] == [50.0]
    assert len(scatters["signal_buy"].points()) == 0


def test_markers_are_bounded_per_symbol(chart):
    bars = MultiIntervalBars()
    feed(bars, 0, 60)
    chart.set_series("AAA", bars)
    for i in range(chart.markers_per_symbol + 100):
        chart.add_marker(T0 + i * 1000, 100.0, "fill_sell")
    assert len(chart.markers()) == chart.markers_per_symbol
    chart.refresh()
    assert len(chart.marker_items["fill_sell"].points()) <= chart.max_markers_drawn


def test_auto_follow_pan_and_end(chart, qtbot):
    bars = MultiIntervalBars()
    t = feed(bars, 0, 300)
    chart.set_series("AAA", bars)
    assert chart.follow and chart.live_button.isChecked()
    gap = right_gap(chart)
    assert 0.5 < gap < 0.5 + 0.1 * (chart.x_range()[1] - chart.x_range()[0]) + 3

    t = feed(bars, t, 10, seed=2)
    chart.refresh()
    assert chart.series.last_index == 309
    assert right_gap(chart) == pytest.approx(gap)  # the right edge moved with the new bars

    with qtbot.waitSignal(chart.followChanged) as sig:
        qtbot.keyClick(chart, Key.Key_Left)
    assert sig.args == [False]
    assert not chart.follow and not chart.live_button.isChecked()
    chart.refresh()
    frozen = chart.x_range()
    t = feed(bars, t, 10, seed=3)
    chart.refresh()
    assert chart.x_range() == frozen  # scrolled back: new bars do not move the view

    qtbot.keyClick(chart.view, Key.Key_End)  # also works with focus in the plot
    assert chart.follow and chart.live_button.isChecked()
    chart.refresh()
    assert right_gap(chart) == pytest.approx(gap)
    t = feed(bars, t, 5, seed=4)
    chart.refresh()
    assert right_gap(chart) == pytest.approx(gap)


def test_mouse_pan_turns_follow_off_and_live_button_turns_it_on(chart, qtbot):
    bars = MultiIntervalBars()
    t = feed(bars, 0, 300)
    chart.set_series("AAA", bars)
    vp = chart.view.viewport()
    centre = chart.price_plot.vb.sceneBoundingRect().center()
    start = chart.view.mapFromScene(centre)
    before = chart.x_range()
    qtbot.mousePress(vp, QtCore.Qt.MouseButton.LeftButton, pos=start)
    for dx in (10, 40, 80, 120):
        ev = QtGui.QMouseEvent(QtCore.QEvent.Type.MouseMove, QtCore.QPointF(start + QtCore.QPoint(dx, 0)),
                               QtCore.QPointF(vp.mapToGlobal(start + QtCore.QPoint(dx, 0))),
                               QtCore.Qt.MouseButton.NoButton, QtCore.Qt.MouseButton.LeftButton,
                               QtCore.Qt.KeyboardModifier.NoModifier)
        QtWidgets.QApplication.sendEvent(vp, ev)
    qtbot.mouseRelease(vp, QtCore.Qt.MouseButton.LeftButton, pos=start + QtCore.QPoint(120, 0))
    assert chart.x_range()[0] < before[0]  # dragged right = back in time
    assert not chart.follow
    qtbot.wait(1)  # the deferred refresh after a user range change
    feed(bars, t, 10, seed=5)
    chart.refresh()
    assert chart.x_range()[1] < chart.series.last_index
    chart.live_button.click()
    assert chart.follow
    chart.refresh()
    assert chart.x_range()[1] > chart.series.last_index


def test_keys_zoom_and_home(chart, qtbot):
    bars = MultiIntervalBars()
    feed(bars, 0, 1000)
    chart.set_series("AAA", bars)
    w0 = np.diff(chart.x_range())[0]
    qtbot.keyClick(chart, Key.Key_Plus, QtCore.Qt.KeyboardModifier.ShiftModifier)
    chart.refresh()
    w1 = np.diff(chart.x_range())[0]
    assert w1 < w0 and chart.follow  # keyboard zoom keeps the live edge
    qtbot.keyClick(chart, Key.Key_Minus)
    qtbot.keyClick(chart, Key.Key_Minus)
    chart.refresh()
    assert np.diff(chart.x_range())[0] > w0
    qtbot.keyClick(chart, Key.Key_Home, QtCore.Qt.KeyboardModifier.ShiftModifier)
    chart.refresh()
    lo, hi = chart.visible_range()
    assert lo <= chart.series.first_index < hi and not chart.follow
    qtbot.keyClick(chart, Key.Key_Right, QtCore.Qt.KeyboardModifier.ShiftModifier)
    assert chart.visible_range()[0] > lo
    qtbot.keyClick(chart, Key.Key_Home)  # plain Home, like End, goes back to live
    assert chart.follow and chart.visible_range()[1] > chart.series.last_index


def test_refresh_without_change_does_not_rebuild(chart):
    bars = MultiIntervalBars()
    t = feed(bars, 0, 200)
    chart.set_series("AAA", bars)
    chart.refresh()
    rebuilds, live = chart.candle_rebuilds, chart._live_candle.rebuild_count
    n = chart.frame_time_ms()["count"]
    for _ in range(20):
        chart.refresh()
    assert chart.candle_rebuilds == rebuilds and chart._live_candle.rebuild_count == live
    assert chart.frame_time_ms()["count"] == n + 20

    # a tick inside the forming bar re-records only the forming candle
    bars.add_tick(T0 + int((t - 0.1) * NS), 100.0, 1)
    chart.refresh()
    assert chart.candle_rebuilds == rebuilds and chart._live_candle.rebuild_count == live + 1
    # a new bar completes the previous one: the cached picture is rebuilt once
    bars.add_tick(T0 + int(t * NS), 100.0, 1)
    chart.refresh()
    chart.refresh()
    assert chart.candle_rebuilds == rebuilds + 1


def test_scrolled_back_new_bars_do_not_rebuild(chart, qtbot):
    bars = MultiIntervalBars()
    t = feed(bars, 0, 1000)
    chart.set_series("AAA", bars)
    qtbot.keyClick(chart, Key.Key_Home, QtCore.Qt.KeyboardModifier.ShiftModifier)
    chart.refresh()
    rebuilds = chart.candle_rebuilds
    for i in range(5):
        t = feed(bars, t, 1, seed=10 + i)
        chart.refresh()
    assert chart.candle_rebuilds == rebuilds
    # small pans stay inside the drawn margin
    chart.pan_bars(2)
    chart.refresh()
    assert chart.candle_rebuilds == rebuilds


def test_ten_hours_of_bars_draws_only_the_visible_window(chart):
    bars = MultiIntervalBars(intervals=(1, 5, 60))
    feed(bars, 0, 36_000, per_second=2)  # 10 h of 1 s bars
    chart.set_series("AAA", bars)
    s = chart.series
    assert len(s) == 36_000
    lo, hi = chart.visible_range()
    assert hi - lo < 200
    assert chart.drawn_candles <= 1.5 * (hi - lo) + 4
    assert chart.group_size == 1

    chart.zoom(400)  # everything on screen
    chart.refresh()
    lo, hi = chart.visible_range()
    assert hi - lo > 36_000
    assert chart.group_size > 1
    assert chart.drawn_candles <= chart.max_drawn_candles()
    assert chart.drawn_candles <= 36_000 / chart.group_size + 4
    # the aggregated candles cover the real extremes
    rect = chart._candles.boundingRect().united(chart._live_candle.boundingRect())
    assert rect.top() <= float(s.lows().min()) and rect.bottom() >= float(s.highs().max())

    # new ticks while zoomed out: the forming candle updates, the picture stays bounded
    before = chart.candle_rebuilds
    t = 36_000.0
    for i in range(3):
        t = feed(bars, t, 0.5, seed=20 + i)
        chart.refresh()
    assert chart.candle_rebuilds - before <= 3
    assert chart.drawn_candles <= chart.max_drawn_candles()


def test_theme_switch_rebuilds_and_changes_background(chart):
    bars = MultiIntervalBars()
    feed(bars, 0, 60)
    chart.set_series("AAA", bars)
    assert chart.dark
    dark_bg = chart.view.backgroundBrush().color().lightness()
    rebuilds = chart.candle_rebuilds
    chart.set_theme(False)
    assert not chart.dark
    assert chart.view.backgroundBrush().color().lightness() > dark_bg
    assert chart.candle_rebuilds == rebuilds + 1
    chart.set_theme(True)
    assert chart.view.backgroundBrush().color().lightness() == dark_bg


def test_crosshair_readout(chart, qtbot):
    bars = MultiIntervalBars()
    feed(bars, 0, 100)
    chart.set_series("AAA", bars)
    vb = chart.price_plot.vb
    scene_pt = vb.mapViewToScene(QtCore.QPointF(50, float(bars.series(1).closes()[50])))
    qtbot.mouseMove(chart.view.viewport(), chart.view.mapFromScene(scene_pt))
    qtbot.waitUntil(lambda: chart._cross_v.isVisible())
    assert chart._cross_v.value() == pytest.approx(50, abs=1)
    text = chart.readout.text()
    assert " O " in f" {text}" and " C " in text and "▸" in text
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(T0 / NS + 50))
    assert chart.readout_text(50).startswith(stamp)


def test_frame_stats_are_exposed(chart):
    bars = MultiIntervalBars()
    t = feed(bars, 0, 30)
    chart.set_series("AAA", bars)
    for i in range(10):
        t = feed(bars, t, 0.25, seed=i)
        chart.refresh()
    chart.grab()
    stats = chart.frame_time_ms()
    assert stats["count"] >= 10 and stats["p99"] >= stats["median"] >= 0
    assert chart.paint_time_ms()["count"] > 0


def test_widget_is_freed_without_the_cycle_collector(qapp):
    """Nothing inside the chart may point back at it. When a parentless ChartWidget was only
    reachable through a reference cycle, the cycle collector freed its pyqtgraph wrappers in
    arbitrary order and crashed the interpreter (segfault in ~QObject)."""
    import gc
    import weakref

    w = ChartWidget()
    bars = MultiIntervalBars()
    feed(bars, 0, 30)
    w.set_series("AAA", bars)
    w.set_levels(99.0, 101.0, "x", key="k")
    w.add_marker(T0 + 5 * NS, 100.0, "signal_buy", "t")
    w.show()
    w.refresh()
    w.grab()
    w.close()
    ref = weakref.ref(w)
    gc.disable()
    try:
        del w
        assert ref() is None  # freed by reference counting, in Qt's own order
    finally:
        gc.enable()
    gc.collect()


def test_bench_runs_with_a_tiny_size(qapp, capsys):
    from bench import chart_frame

    assert chart_frame.main(["--hours", "0.02", "--frames", "4", "--windows", "50,200"]) == 0
    out = capsys.readouterr().out
    assert "visible" in out and "refresh" in out


def send_move(view, pos: QtCore.QPoint) -> None:
    vp = view.viewport()
    ev = QtGui.QMouseEvent(QtCore.QEvent.Type.MouseMove, QtCore.QPointF(pos), QtCore.QPointF(vp.mapToGlobal(pos)),
                           QtCore.Qt.MouseButton.NoButton, QtCore.Qt.MouseButton.NoButton,
                           QtCore.Qt.KeyboardModifier.NoModifier)
    QtWidgets.QApplication.sendEvent(vp, ev)


def send_wheel(view, pos: QtCore.QPoint, dy: int) -> None:
    vp = view.viewport()
    ev = QtGui.QWheelEvent(QtCore.QPointF(pos), QtCore.QPointF(vp.mapToGlobal(pos)), QtCore.QPoint(0, 0),
                           QtCore.QPoint(0, dy), QtCore.Qt.MouseButton.NoButton,
                           QtCore.Qt.KeyboardModifier.NoModifier, QtCore.Qt.ScrollPhase.NoScrollPhase, False)
    QtWidgets.QApplication.sendEvent(vp, ev)


def move_until_crosshair(qtbot, chart: ChartWidget, pos: QtCore.QPoint) -> None:
    """Move the mouse to ``pos`` until the crosshair stands there (pyqtgraph's scene drops
    moves that come within 10 ms of the previous one, so one event may not be seen)."""
    vb = chart.price_plot.vb

    def there() -> bool:
        send_move(chart.view, pos)
        want = vb.mapSceneToView(chart.view.mapToScene(pos)).y()
        return chart._crosshair.h.isVisible() and abs(chart._crosshair.h.value() - want) < 1e-9

    qtbot.waitUntil(there)


def cursor_price(chart: ChartWidget, pos: QtCore.QPoint) -> float:
    return chart.price_plot.vb.mapSceneToView(chart.view.mapToScene(pos)).y()


def test_crosshair_price_after_wheel_zoom_is_the_price_under_the_cursor(chart, qtbot):
    """The trader's steps: wheel-zoom the plot, then move the mouse over it. The price label read
    "0.00": pyqtgraph formats a line's label only while the line is visible, and the crosshair
    line was shown after being moved while hidden."""
    bars = MultiIntervalBars()
    # A trend: zooming out takes in lower prices, so the wheel refits the price axis.
    rng = np.random.default_rng(7)
    n = 600
    ts = T0 + np.arange(n, dtype=np.int64) * NS
    px = np.round(170.0 + np.linspace(-3, 0, n) + rng.normal(0, 0.02, n), 2)
    bars.add_ticks(ts, px, rng.integers(1, 50, n))
    chart.set_series("AAA", bars)
    vb = chart.price_plot.vb
    tick = 10.0 ** -chart.price_decimals
    centre = chart.view.mapFromScene(vb.sceneBoundingRect().center())

    w0 = np.diff(chart.x_range())[0]
    send_wheel(chart.view, centre, 120)  # zoom in
    qtbot.waitUntil(lambda: np.diff(chart.x_range())[0] < w0)
    assert not chart.follow
    pos = centre + QtCore.QPoint(40, -60)
    move_until_crosshair(qtbot, chart, pos)
    text = chart.crosshair_price_text
    assert text != f"{0:.{chart.price_decimals}f}"
    assert float(text) == pytest.approx(cursor_price(chart, pos), abs=tick)
    assert chart.readout.text().endswith(f"▸ {text}")

    # The cursor stays where it is while the wheel zooms out and the price axis refits under
    # it: the line and its label follow the cursor, not the price it pointed at before.
    y_before = vb.viewRange()[1]
    for _ in range(3):
        send_wheel(chart.view, pos, -120)
    qtbot.waitUntil(lambda: vb.viewRange()[1] != y_before)
    qtbot.waitUntil(lambda: float(chart.crosshair_price_text) == pytest.approx(cursor_price(chart, pos), abs=tick))
    assert chart._crosshair.h.value() == pytest.approx(cursor_price(chart, pos))

    # Leaving the plot hides the crosshair; coming back elsewhere shows the new price at once.
    QtWidgets.QApplication.sendEvent(chart.view.viewport(), QtCore.QEvent(QtCore.QEvent.Type.Leave))
    assert chart.crosshair_price_text == ""
    back = centre + QtCore.QPoint(-80, 50)
    move_until_crosshair(qtbot, chart, back)
    assert float(chart.crosshair_price_text) == pytest.approx(cursor_price(chart, back), abs=tick)


def latest_candles_rect(chart: ChartWidget, n: int) -> QtCore.QRectF:
    """Scene rect of the newest ``n`` candles (wicks included)."""
    s = chart.series
    _, _, h, l, _, _ = s.view(s.last_index - n + 1, s.last_index + 1)
    vb = chart.price_plot.vb
    a = vb.mapViewToScene(QtCore.QPointF(s.last_index - n + 0.5, float(h.max())))
    b = vb.mapViewToScene(QtCore.QPointF(s.last_index + 0.5, float(l.min())))
    return QtCore.QRectF(a, b).normalized()


@pytest.mark.parametrize("dark", [True, False])
def test_level_tags_stay_inside_the_plot_and_off_the_latest_candles(chart, qtbot, dark):
    bars = MultiIntervalBars()
    feed(bars, 0, 300, base=170.0)
    chart.set_theme(dark)
    chart.set_series("AAA", bars)
    s = chart.series
    y0, y1 = chart.price_plot.vb.viewRange()[1]
    # As the trader had them: levels through the latest candles, one at the top edge of the
    # plot (its label above the line was clipped), support and resistance a cent apart, and a
    # second strategy's levels beyond the view.
    last = float(s.last_close)
    chart.set_levels(last, last + 0.01, "sr-bounce", key="sr-bounce")
    chart.set_levels(y0 + 0.001, y1 - 0.001, "edge", key="edge")
    chart.set_levels(y0 - 5, y1 + 5, "far", key="far")
    qtbot.wait(1)
    n_latest = 20

    def check() -> None:
        plot_rect = chart.price_plot.vb.sceneBoundingRect()
        candles = latest_candles_rect(chart, n_latest)
        rects = []
        for key in ("sr-bounce", "edge", "far"):
            for tag in chart.level_tags(key):
                assert tag.isVisible()
                r = tag.sceneBoundingRect()
                assert plot_rect.contains(r), (key, tag.text, r, plot_rect)
                assert not r.intersects(candles), (key, tag.text)
                rects.append((tag.text, r))
        for i, (ta, ra) in enumerate(rects):
            for tb, rb in rects[i + 1:]:
                assert not ra.intersects(rb), (ta, tb)

    check()
    assert [t.text[0] for t in chart.level_tags("far")] == ["▼", "▲"]

    # Panned into the future (the newest bars at the plot's left edge): the tags move to the right.
    chart.pan_bars(10_000)
    chart.refresh()
    qtbot.wait(1)
    assert chart.series.last_index < sum(chart.x_range()) / 2
    check()

    # The window goes back to live, the tags to the left; a wheel zoom keeps them placed.
    chart.go_live()
    chart.refresh()
    send_wheel(chart.view, chart.view.mapFromScene(chart.price_plot.vb.sceneBoundingRect().center()), 240)
    qtbot.waitUntil(lambda: not chart.follow)
    chart.refresh()
    check()


def test_stack_labels_keeps_labels_apart_and_inside():
    from app.chart.viewport import stack_labels

    # Two labels wanting the same place, one past the bottom, one above the top.
    tops = stack_labels([50.0, 50.0, 195.0, -30.0], [16.0] * 4, top=0.0, bottom=200.0)
    assert all(0.0 <= t <= 200.0 - 16.0 for t in tops)
    spans = sorted((t, t + 16.0) for t in tops)
    assert all(a[1] < b[0] for a, b in zip(spans, spans[1:]))
    assert tops[3] == 0.0 and tops[2] == 184.0
