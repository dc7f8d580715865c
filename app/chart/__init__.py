"""Live candlestick chart: bar store (pure numpy) and the pyqtgraph widget.

``from app.chart import BarSeries, MultiIntervalBars`` never imports Qt, so the feed side and
unit tests can use the bar store alone; ``ChartWidget`` is imported on first access.
"""

import os

# pyqtgraph picks its binding on first import; pin it before anything here imports pyqtgraph.
os.environ.setdefault("PYQTGRAPH_QT_LIB", "PySide6")

from app.chart.bars import BarSeries, MultiIntervalBars  # noqa: E402  (pure numpy)

__all__ = ["BarSeries", "MultiIntervalBars", "ChartWidget"]


def __getattr__(name: str):
    if name == "ChartWidget":
        from app.chart.widget import ChartWidget

        return ChartWidget
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
