"""Market data: the simulated and replayed feeds and the gateway worker that publishes them.

``gateway`` is the worker (``python main.py worker marketdata``); ``sim_feed`` and
``replay_feed`` are plain Python with no sockets, usable from tests and benchmarks.
See docs/marketdata.md.
"""

from workers.marketdata.replay_feed import ReplayFeed
from workers.marketdata.sim_feed import SimFeed, SymbolParams

__all__ = ["ReplayFeed", "SimFeed", "SymbolParams"]
