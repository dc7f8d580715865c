"""The chart's time axis: absolute bar indices labelled with the bars' local start times."""

from __future__ import annotations

import time

# app.qt before pyqtgraph: it chooses pyqtgraph's binding (see app/qt.py).
import app.qt  # noqa: F401

import pyqtgraph as pg  # noqa: E402,I001

from app.chart.bars import BarSeries  # noqa: E402

__all__ = ["TimeAxis", "time_format"]


def time_format(interval_s: float, spacing: float) -> str:
    """strftime format for ticks ``spacing`` bars apart on bars of ``interval_s`` seconds."""
    if interval_s >= 86400:
        return "%Y-%m-%d"
    if spacing * interval_s >= 86400:
        return "%m-%d %H:%M"
    if interval_s >= 60 or spacing * interval_s >= 60:
        return "%H:%M"
    return "%H:%M:%S"


class TimeAxis(pg.AxisItem):
    """Bottom axis that labels absolute bar indices with the bars' local start times.

    Attributes:
        series: the series whose times label the ticks (None: no labels).
    """

    def __init__(self, orientation: str = "bottom", **kwargs) -> None:
        super().__init__(orientation, **kwargs)
        self.series: BarSeries | None = None

    def tickStrings(self, values, scale, spacing):  # noqa: N802 (Qt naming)
        s = self.series
        if s is None or len(s) == 0:
            return ["" for _ in values]
        fmt = time_format(s.interval_s, spacing)
        # Between-bar ticks (fractional indices) get no label: they name no bar.
        return ["" if abs(v - round(v)) > 1e-6 else time.strftime(fmt, time.localtime(s.time_at_index(v)))
                for v in values]
