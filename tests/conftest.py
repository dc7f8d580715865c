"""Shared test setup: offscreen Qt, a hypothesis profile fit for a busy 2-core machine."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from hypothesis import HealthCheck, settings  # noqa: E402

# Timing-based health checks and deadlines misfire when other processes share the cores.
settings.register_profile("tickdesk", deadline=None, suppress_health_check=[HealthCheck.too_slow], max_examples=150)
settings.load_profile("tickdesk")
