"""The reconcile work queue keeps client-go's guarantees (services/kit/workqueue.py)."""

from __future__ import annotations

import asyncio

import pytest

from services.kit.workqueue import WorkQueue, run_workers


async def drain(queue: WorkQueue[str]) -> list[str]:
    """Every key queued right now, in order, each marked done."""
    got = []
    while len(queue):
        key = await queue.get()
        got.append(key)
        queue.done(key)
    return got


async def test_a_key_added_many_times_is_held_once() -> None:
    queue: WorkQueue[str] = WorkQueue()
    for key in ("a", "b", "a", "a", "b"):
        queue.add(key)
    assert await drain(queue) == ["a", "b"]


async def test_a_key_added_while_processed_waits_for_done_then_comes_back() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add("a")
    key = await queue.get()
    queue.add("a")
    assert len(queue) == 0, "one worker at a time per key"
    queue.done(key)
    assert await drain(queue) == ["a"]


async def test_a_delayed_key_comes_after_its_delay() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add_after("a", 0.05)
    assert len(queue) == 0
    assert queue.pending() == 1
    assert await asyncio.wait_for(queue.get(), 1) == "a"


@pytest.mark.parametrize(
    ("first_s", "second_s"),
    [(10.0, 0.02), (0.02, 10.0)],
    ids=[
        "a later requeue waits, then a retry asks for sooner: sooner wins",
        "a retry is pending, then a later requeue: the retry's time stays",
    ],
)
async def test_a_key_delayed_twice_comes_at_the_earlier_time(
    first_s: float, second_s: float
) -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add_after("a", first_s)
    queue.add_after("a", second_s)
    assert await asyncio.wait_for(queue.get(), 1) == "a"
    queue.done("a")
    assert queue.pending() == 0, "the later timer is gone, not fired again"
    queue.close()


async def test_a_plain_add_beats_a_pending_delay() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add_after("a", 10.0)
    queue.add("a")
    assert await drain(queue) == ["a"]
    assert queue.pending() == 0


async def test_a_failing_reconcile_is_retried_with_backoff() -> None:
    queue: WorkQueue[str] = WorkQueue()
    calls: list[str] = []
    recovered = asyncio.Event()

    async def reconcile(key: str) -> None:
        calls.append(key)
        if len(calls) < 3:
            raise RuntimeError("the API server said no")
        recovered.set()

    workers = asyncio.create_task(run_workers(queue, reconcile, workers=2, name="test"))
    try:
        queue.add("a")
        await asyncio.wait_for(recovered.wait(), 2)
        assert calls == ["a", "a", "a"]
    finally:
        workers.cancel()
        await asyncio.gather(workers, return_exceptions=True)
        queue.close()
