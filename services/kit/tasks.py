"""Background tasks the same way everywhere: a periodic round, and stopping a task."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger(__name__)


async def every(seconds: float, work: Callable[[], Awaitable[object]], *, what: str) -> None:
    """Run ``work`` every ``seconds`` (after a first wait) until cancelled; a round that
    fails is logged as ``<what> failed`` and the next round comes as usual."""
    while True:
        await asyncio.sleep(seconds)
        try:
            await work()
        except Exception:  # the next round may do better
            log.exception("%s failed", what)


async def stop_task(task: asyncio.Task[Any] | None) -> None:
    """Cancel ``task`` (None: nothing) and wait until it has finished its cleanup.

    Its cancellation is swallowed; an error it ended with before the cancel is raised.
    """
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
