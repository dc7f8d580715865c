"""One way to start the window's asyncio tasks.

asyncio keeps only a weak reference to a task, so a task nobody holds can be garbage
collected mid-flight; an exception in a task nobody awaits is reported late (when it is
collected) or never.  :class:`Tasks` fixes both for every part of the window:

* :meth:`Tasks.spawn` keeps a strong reference until the task is done;
* a task that fails is logged exactly once, with its traceback, and handed to ``on_error``
  (e.g. the order ticket's outcome line); retrieving the exception there also keeps asyncio
  from logging it a second time;
* :meth:`Tasks.cancel_all` (now) and :meth:`Tasks.aclose` (cancel and wait) end every task
  of the group and of its children, so closing the session ends all of the window's tasks.

No Qt here: the tasks run on whatever loop is running (qasync's in the window).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

log = logging.getLogger("tickdesk.app.tasks")

ErrorHandler = Callable[[str, BaseException], None]


class Tasks:
    """A named group of tasks with strong references, one report per failure, cancel-all."""

    def __init__(self, name: str, on_error: ErrorHandler | None = None, parent: Tasks | None = None):
        self.name = name
        self.on_error = on_error
        self._tasks: set[asyncio.Task] = set()
        self._children: list[Tasks] = []
        self.failures = 0
        if parent is not None:
            parent._children.append(self)

    def child(self, name: str, on_error: ErrorHandler | None = None) -> Tasks:
        """A group whose tasks this group's :meth:`cancel_all` ends too."""
        return Tasks(f"{self.name}.{name}", on_error, parent=self)

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str | None = None) -> asyncio.Task:
        """Run ``coro`` as a task of this group (needs a running loop, or qasync's); ``name``
        (default: the coroutine's) is what a failure is logged under."""
        task = asyncio.ensure_future(coro)
        task.set_name(f"{self.name}.{name or getattr(coro, '__qualname__', 'task')}")
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is None:
            return
        self.failures += 1
        log.error("task %s failed: %s: %s", task.get_name(), type(exc).__name__, exc, exc_info=exc)
        if self.on_error is not None:
            try:
                self.on_error(task.get_name(), exc)
            except Exception:  # the report of a failure must not become a second one
                log.exception("error handler of %s failed", self.name)

    def __len__(self) -> int:
        return len(self._tasks) + sum(len(c) for c in self._children)

    def all_tasks(self) -> list[asyncio.Task]:
        out = list(self._tasks)
        for c in self._children:
            out += c.all_tasks()
        return out

    def cancel_all(self) -> None:
        """Cancel every task of the group and its children now (they unwind on the loop's next turn)."""
        for t in self.all_tasks():
            t.cancel()

    async def aclose(self) -> None:
        """Cancel every task and wait until each has finished unwinding."""
        tasks = self.all_tasks()
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)


__all__ = ["ErrorHandler", "Tasks"]
