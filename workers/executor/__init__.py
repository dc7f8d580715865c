"""The order executor worker: risk checks, order tracking, order flow (docs/executor.md).

:mod:`~workers.executor.risk` and :mod:`~workers.executor.tracker` are pure logic (no zmq):
the window reuses the risk checks for manual orders, and the tracker is unit-tested on a
manual clock.  Positions and P&L are :mod:`workers.positions`, shared with the exchange
gateway and the window.  :mod:`~workers.executor.worker` is the process.
"""

from workers.executor.risk import Decision, RiskChecker, RiskLimits
from workers.executor.tracker import OrderTracker, WorkingOrder

__all__ = ["Decision", "OrderTracker", "RiskChecker", "RiskLimits", "WorkingOrder"]
