"""A reconcile work queue with client-go's guarantees, for asyncio.

* a key waiting in the queue is held once, however often it is added;
* a key is handed to one worker at a time: added again while being processed, it
  waits until ``done`` and is then queued again (so the newest state is seen);
* ``add_after`` delays a key (retries, requeue at the earliest expiry); a key already
  waiting keeps the earlier of its two times, and a plain ``add`` meanwhile wins.

    queue = WorkQueue[str]()
    queue.add("ns/name")
    key = await queue.get()
    try: ...
    finally: queue.done(key)

``run_workers`` runs N such loops until cancelled; a failing reconcile is logged
and retried with per-key backoff.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

K = TypeVar("K", bound=Hashable)


class WorkQueue(Generic[K]):
    def __init__(self) -> None:
        self._queue: deque[K] = deque()
        self._dirty: set[K] = set()
        self._processing: set[K] = set()
        self._timers: dict[K, asyncio.TimerHandle] = {}
        self._ready = asyncio.Event()

    def __len__(self) -> int:
        return len(self._queue)

    def add(self, key: K) -> None:
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()
        if key in self._dirty:
            return
        self._dirty.add(key)
        if key not in self._processing:
            self._queue.append(key)
            self._ready.set()

    def add_after(self, key: K, delay: float) -> None:
        if delay <= 0:
            self.add(key)
            return
        if key in self._dirty:
            return
        loop = asyncio.get_running_loop()
        when = loop.time() + delay
        timer = self._timers.get(key)
        if timer is not None:
            if timer.when() <= when:
                return
            timer.cancel()  # the earlier of the two wins, as in client-go
        self._timers[key] = loop.call_at(when, self._fire, key)

    def _fire(self, key: K) -> None:
        self._timers.pop(key, None)
        self.add(key)

    async def get(self) -> K:
        while not self._queue:
            self._ready.clear()
            await self._ready.wait()
        key = self._queue.popleft()
        self._dirty.discard(key)
        self._processing.add(key)
        return key

    def done(self, key: K) -> None:
        self._processing.discard(key)
        if key in self._dirty:
            self._queue.append(key)
            self._ready.set()

    def pending(self) -> int:
        """Keys queued, being processed, or waiting for a delay."""
        return len(self._queue) + len(self._processing) + len(self._timers)

    def close(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()


Reconcile = Callable[[K], Awaitable[None]]


async def run_workers(
    queue: WorkQueue[K],
    reconcile: Reconcile[K],
    *,
    workers: int,
    name: str,
    max_backoff: float = 30.0,
) -> None:
    """Run ``workers`` loops of get → reconcile → done until cancelled.

    A reconcile that raises is logged and its key retried after 0.1 s, doubling per
    consecutive failure up to ``max_backoff``.
    """
    failures: dict[K, int] = {}

    async def loop() -> None:
        while True:
            key = await queue.get()
            try:
                await reconcile(key)
            except asyncio.CancelledError:
                raise
            except Exception:
                count = failures.get(key, 0) + 1
                failures[key] = count
                delay = min(0.1 * 2 ** (count - 1), max_backoff)
                log.exception(
                    "reconcile failed; retrying",
                    extra={"queue": name, "key": str(key), "retry_in_s": delay},
                )
                queue.add_after(key, delay)
            else:
                failures.pop(key, None)
            finally:
                queue.done(key)
            # A reconcile that decides "nothing to do" never awaits: without this, a long
            # queue of them would hold the event loop (and every admission review) hostage.
            await asyncio.sleep(0)

    tasks = [asyncio.create_task(loop(), name=f"{name}-worker-{i}") for i in range(workers)]
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        queue.close()
