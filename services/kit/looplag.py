"""How long the event loop was held: the one number that says a process stalled.

    monitor = LoopLagMonitor(component="gateway")
    monitor.start()          # a task that sleeps ``interval`` and measures how late it woke
    ...
    await monitor.stop()

Every admission review, health probe and watch event a process handles waits behind
whatever holds its event loop. The monitor wakes every ``interval`` (20 ms: 50 wake-ups
a second, a few microseconds each) and records how late it woke in
``kruise_mesh_event_loop_lag_seconds`` (a histogram with a 50 ms bucket, the limit the
mesh holds itself to) and the worst lag seen in ``kruise_mesh_event_loop_lag_max_seconds``.
A lag past ``warn_after`` is logged (at most once per ``warn_every`` seconds, with how many
were not logged), so an operator who sees a slow webhook finds the stall in the log.

The garbage collector is the usual suspect for a held loop, so the monitor also times the
collector's older generations (1 and 2; a young collection is microseconds) into
``kruise_mesh_gc_pause_seconds{generation}`` through ``gc.callbacks``.

``lateness`` is the pure part: given when the sleep should have ended and when it did,
the lag (never negative).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from typing import Any

from prometheus_client import Gauge, Histogram

from services.kit.tasks import stop_task

log = logging.getLogger(__name__)

LAG = Histogram(
    "kruise_mesh_event_loop_lag_seconds",
    "How late the event loop woke a 20 ms timer: the time it was held by other work",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
LAG_MAX = Gauge(
    "kruise_mesh_event_loop_lag_max_seconds",
    "The longest the event loop was held since the process started",
)


GC_PAUSE = Histogram(
    "kruise_mesh_gc_pause_seconds",
    "How long one garbage collection of generation 1 or 2 held the process",
    ["generation"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
)


class GcTimer:
    """A ``gc.callbacks`` entry that times collections of generation 1 and 2."""

    def __init__(self) -> None:
        self._started = 0.0
        self._by_generation = {g: GC_PAUSE.labels(str(g)) for g in (1, 2)}

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if info["generation"] == 0:
            return
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self._by_generation[info["generation"]].observe(time.perf_counter() - self._started)


def lateness(*, due: float, woke: float) -> float:
    """Seconds a timer due at ``due`` fired late, when it fired at ``woke``. Pure."""
    return max(0.0, woke - due)


class LoopLagMonitor:
    def __init__(
        self,
        *,
        component: str,
        interval: float = 0.02,
        warn_after: float = 0.1,
        warn_every: float = 10.0,
    ) -> None:
        self.component = component
        self.interval = interval
        self.warn_after = warn_after
        self.warn_every = warn_every
        self.worst = 0.0
        self._task: asyncio.Task[None] | None = None
        self._gc_timer = GcTimer()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="event loop lag")
        gc.callbacks.append(self._gc_timer)

    async def stop(self) -> None:
        if self._gc_timer in gc.callbacks:
            gc.callbacks.remove(self._gc_timer)
        await stop_task(self._task)
        self._task = None

    async def _run(self) -> None:
        clock = time.perf_counter
        last_warned = -self.warn_every
        unlogged = 0
        while True:
            due = clock() + self.interval
            await asyncio.sleep(self.interval)
            lag = lateness(due=due, woke=clock())
            LAG.observe(lag)
            if lag > self.worst:
                self.worst = lag
                LAG_MAX.set(lag)
            if lag >= self.warn_after:
                now = clock()
                if now - last_warned >= self.warn_every:
                    log.warning(
                        "event loop held for %.0f ms (%d more such stalls not logged)",
                        lag * 1000,
                        unlogged,
                        extra={"component": self.component, "lag_ms": round(lag * 1000)},
                    )
                    last_warned, unlogged = now, 0
                else:
                    unlogged += 1
