"""Shared test setup: offscreen Qt, a hypothesis profile fit for a busy 2-core machine, and
pytest-timeout's limits scaled by the suite's one timeout factor (``tests/procs.py``)."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from hypothesis import HealthCheck, settings  # noqa: E402

# Timing-based health checks and deadlines misfire when other processes share the cores.
settings.register_profile("tickdesk", deadline=None, suppress_health_check=[HealthCheck.too_slow], max_examples=150)
settings.load_profile("tickdesk")


def _timeout_factor() -> float:
    from tests.procs import TIMEOUT_FACTOR

    return TIMEOUT_FACTOR


def pytest_report_header(config):
    return f"TICKDESK_TEST_TIMEOUT_FACTOR: {_timeout_factor():g} (every wait and pytest-timeout limit is multiplied by it)"


def pytest_collection_modifyitems(config, items):
    """pytest-timeout's limit of every test -- its ``timeout`` marker, else the configured
    default (``[tool.pytest.ini_options] timeout``, ``--timeout``, ``PYTEST_TIMEOUT``) --
    times the suite's timeout factor, as a marker closest to the test (so it wins)."""
    import pytest

    factor = _timeout_factor()
    default = getattr(config, "_env_timeout", None)  # set by pytest-timeout's pytest_configure
    if factor == 1 or not config.pluginmanager.hasplugin("timeout"):
        return
    for item in items:
        marker = item.get_closest_marker("timeout")
        if marker is not None:
            args, kwargs = list(marker.args), dict(marker.kwargs)
            base = kwargs.pop("timeout", args.pop(0) if args else None)
        else:
            args, kwargs, base = [], {}, default
        if not base:  # no limit, or 0 = disabled: nothing to scale
            continue
        item.add_marker(pytest.mark.timeout(float(base) * factor, *args, **kwargs), append=False)
