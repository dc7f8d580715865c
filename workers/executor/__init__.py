"""The order executor worker: risk checks, positions and P&L, order flow (docs/executor.md).

:mod:`~workers.executor.risk` and :mod:`~workers.executor.positions` are pure logic (no
zmq) so the window can reuse them for manual orders; :mod:`~workers.executor.worker` is the
process.
"""

from workers.executor.positions import PositionBook, SymbolPosition
from workers.executor.risk import Decision, RiskChecker, RiskLimits

__all__ = ["Decision", "PositionBook", "RiskChecker", "RiskLimits", "SymbolPosition"]
