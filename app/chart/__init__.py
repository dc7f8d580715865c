"""Live candlestick chart: bar store (pure numpy) and the pyqtgraph widget.

``from app.chart import BarSeries, MultiIntervalBars`` never imports Qt, so the feed side and
unit tests can use the bar store alone; ``ChartWidget`` is imported on first access.  The
Qt-free modules are ``bars``, ``markers``, ``viewport`` and ``style``; the others import
``app.qt`` before pyqtgraph, which is how pyqtgraph gets its binding.
"""

from app.chart.bars import BarSeries, MultiIntervalBars  # pure numpy

__all__ = ["BarSeries", "MultiIntervalBars", "ChartWidget"]


def __getattr__(name: str):
    if name == "ChartWidget":
        from app.chart.widget import ChartWidget

        return ChartWidget
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
