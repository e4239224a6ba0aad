"""kit.tasks: a periodic round goes on after a failing one; stopping a task waits for it."""

from __future__ import annotations

import asyncio
import logging

import pytest

from services.kit.tasks import every, stop_task


async def test_a_failing_round_is_logged_and_the_next_one_comes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    rounds: list[int] = []

    async def work() -> None:
        rounds.append(len(rounds))
        if len(rounds) == 1:
            raise RuntimeError("the first round fails")

    with caplog.at_level(logging.ERROR, logger="services.kit.tasks"):
        task = asyncio.create_task(every(0.01, work, what="checking things"))
        async with asyncio.timeout(5):
            while len(rounds) < 3:
                await asyncio.sleep(0.01)
        await stop_task(task)
    assert task.cancelled()
    (record,) = [r for r in caplog.records if r.name == "services.kit.tasks"]
    assert record.getMessage() == "checking things failed"
    assert record.exc_info is not None and "the first round fails" in str(record.exc_info[1])


async def test_stop_task_waits_for_the_cleanup_and_takes_none() -> None:
    cleaned = asyncio.Event()

    async def runs() -> None:
        try:
            await asyncio.sleep(60)
        finally:
            await asyncio.sleep(0)
            cleaned.set()

    task = asyncio.create_task(runs())
    await asyncio.sleep(0)
    await stop_task(task)
    assert cleaned.is_set()
    await stop_task(None)
