"""Share one in-flight task per key among every caller that wants its result.

Theory of operation
-------------------
- One task per key: the first caller creates it, later callers join it, so N concurrent
  misses make exactly one call to the authorization server.
- Waiters ``await asyncio.shield(task)``: a caller that is cancelled (client gone, timeout)
  stops waiting, but the fetch goes on for the others.
- The entry for a key is removed when its task finishes, and only if it is still the
  current entry, so a late callback can never remove a newer flight.
- Tasks never leave an exception unretrieved, even when every waiter has gone away.
- Results are the task's to install (see the callers): this module shares work, it stores
  nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")


class SingleFlight(Generic[K, T]):
    def __init__(self) -> None:
        self._tasks: dict[K, asyncio.Task[T]] = {}

    def __contains__(self, key: K) -> bool:
        return key in self._tasks

    def __len__(self) -> int:
        return len(self._tasks)

    def start(self, key: K, work: Callable[[], Awaitable[T]]) -> asyncio.Task[T]:
        """The task in flight for ``key``, or a new one running ``work()``."""
        task = self._tasks.get(key)
        if task is None:
            task = asyncio.ensure_future(work())
            self._tasks[key] = task
            task.add_done_callback(lambda done: self._finished(key, done))
        return task

    async def run(self, key: K, work: Callable[[], Awaitable[T]]) -> T:
        """Join (or start) the flight for ``key`` and wait for its result."""
        return await asyncio.shield(self.start(key, work))

    def _finished(self, key: K, task: asyncio.Task[T]) -> None:
        if self._tasks.get(key) is task:
            del self._tasks[key]
        if not task.cancelled():
            task.exception()  # mark as retrieved; waiters still receive it

    async def aclose(self) -> None:
        """Cancel every flight and wait for them to end."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
