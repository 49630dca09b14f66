"""One computation per key at a time, its outcome shared by every caller.

A burst of mail from one new sender asks the same trust question, and the
same issuer certificate, many times within a second; without this each would
validate and fetch on its own. The first caller starts the computation as a
task; callers arriving while it runs await the same task. Its result and its
failure alike go to all of them; once it ends the key is free again, so a
failure is not remembered here (caching successes is the caller's business).

The task is awaited through ``asyncio.shield``: a caller that gives up (its
own timeout, its client gone) does not cancel the work the others wait for.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Hashable
from functools import partial
from typing import Any, Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class SingleFlight(Generic[K, V]):
    def __init__(self) -> None:
        self._running: dict[K, asyncio.Task[V]] = {}
        self.started = 0
        """Computations started (for tests and metrics)."""
        self.joined = 0
        """Callers that shared a computation already running."""

    async def run(self, key: K, make: Callable[[], Coroutine[Any, Any, V]]) -> V:
        task = self._running.get(key)
        if task is None:
            task = asyncio.get_running_loop().create_task(make())
            self._running[key] = task
            self.started += 1
            task.add_done_callback(partial(self._finished, key))
        else:
            self.joined += 1
        return await asyncio.shield(task)

    def _finished(self, key: K, task: asyncio.Task[V]) -> None:
        if self._running.get(key) is task:
            del self._running[key]
        if not task.cancelled():
            task.exception()  # retrieved: a failure nobody awaited any more is not reported as lost

    def __len__(self) -> int:
        return len(self._running)
