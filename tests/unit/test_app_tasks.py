"""The window's task spawner (app/tasks.py)."""

from __future__ import annotations

import asyncio
import gc
import logging

from app.tasks import Tasks


def test_a_failure_is_reported_once_and_the_reference_is_held(caplog):
    errors = []

    async def main():
        tasks = Tasks("t", on_error=lambda name, e: errors.append((name, str(e))))
        done = asyncio.Event()

        async def fails():
            await asyncio.sleep(0)
            raise ValueError("boom")

        async def works():
            await done.wait()
            return 42

        tasks.spawn(fails(), "fails")
        ok = tasks.spawn(works())
        gc.collect()  # nothing else holds the tasks: the group must
        assert len(tasks) == 2
        for _ in range(3):
            await asyncio.sleep(0)
        done.set()
        assert await ok == 42
        assert len(tasks) == 0 and tasks.failures == 1
        assert ok.get_name() == "t.test_a_failure_is_reported_once_and_the_reference_is_held.<locals>.main.<locals>.works"

    with caplog.at_level(logging.ERROR):
        asyncio.run(main())
        gc.collect()
    assert errors == [("t.fails", "boom")]
    failed = [r for r in caplog.records if "boom" in r.getMessage() or (r.exc_info and "boom" in str(r.exc_info[1]))]
    assert len(failed) == 1  # ours; asyncio's "exception was never retrieved" never comes


def test_cancel_all_reaches_children_and_aclose_waits():
    async def main():
        root = Tasks("session")
        a, b = root.child("feeds"), root.child("orders")
        unwound = []

        async def forever(tag):
            try:
                await asyncio.sleep(3600)
            finally:
                unwound.append(tag)

        a.spawn(forever("a"), "a")
        b.spawn(forever("b"), "b")
        root.spawn(forever("r"), "r")
        await asyncio.sleep(0)
        assert len(root) == 3
        await root.aclose()
        assert sorted(unwound) == ["a", "b", "r"] and len(root) == 0
        # cancel_all: cancelled now, unwound on the next turn
        t = b.spawn(forever("b2"), "b2")
        await asyncio.sleep(0)
        root.cancel_all()
        await asyncio.sleep(0)
        assert t.cancelled() and "b2" in unwound

    asyncio.run(main())


def test_a_failing_error_handler_is_contained(caplog):
    def bad_handler(name, e):
        raise RuntimeError("handler bug")

    async def main():
        tasks = Tasks("t", on_error=bad_handler)

        async def fails():
            raise KeyError("x")

        t = tasks.spawn(fails(), "f")
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert t.done()

    with caplog.at_level(logging.ERROR):
        asyncio.run(main())
    assert any("error handler of t failed" in r.getMessage() for r in caplog.records)
