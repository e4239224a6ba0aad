"""The event-loop lag monitor: what it counts when something holds the loop."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from services.kit import heap, looplag


@pytest.mark.parametrize(
    ("due", "woke", "lag"),
    [
        pytest.param(10.0, 10.0, 0.0, id="woke on time"),
        pytest.param(10.0, 10.25, 0.25, id="held for a quarter second"),
        pytest.param(10.0, 9.999, 0.0, id="a clock that woke early is not a negative lag"),
    ],
)
def test_lateness(due: float, woke: float, lag: float) -> None:
    assert looplag.lateness(due=due, woke=woke) == pytest.approx(lag)


def _late_wakeups() -> float:
    """Wake-ups at least 100 ms late so far (histogram count minus its ≤0.05 s bucket)."""
    total = under = 0.0
    for metric in looplag.LAG.collect():
        for sample in metric.samples:
            if sample.name.endswith("_bucket") and sample.labels["le"] == "+Inf":
                total = sample.value
            if sample.name.endswith("_bucket") and sample.labels["le"] == "0.1":
                under = sample.value
    return total - under


async def test_a_held_loop_is_measured_counted_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    monitor = looplag.LoopLagMonitor(component="test", interval=0.01, warn_after=0.1)
    before = _late_wakeups()
    monitor.start()
    try:
        await asyncio.sleep(0.03)
        with caplog.at_level(logging.WARNING, logger="services.kit.looplag"):
            time.sleep(0.15)  # something holds the loop
            await asyncio.sleep(0.03)
    finally:
        await monitor.stop()
    assert monitor.worst >= 0.12
    assert _late_wakeups() >= before + 1
    (record,) = [r for r in caplog.records if r.name == "services.kit.looplag"]
    assert "event loop held for" in record.getMessage()
    assert record.component == "test"


async def test_a_free_loop_logs_nothing(caplog: pytest.LogCaptureFixture) -> None:
    monitor = looplag.LoopLagMonitor(component="test", interval=0.01, warn_after=0.5)
    with caplog.at_level(logging.WARNING, logger="services.kit.looplag"):
        monitor.start()
        await asyncio.sleep(0.1)
        await monitor.stop()
    assert not [r for r in caplog.records if r.name == "services.kit.looplag"]


def test_startup_heap_freeze_moves_live_objects_out_of_collections() -> None:
    import gc

    try:
        frozen = heap.freeze_startup_heap()
        assert frozen > 1000  # at least the modules a test process has imported
        assert gc.get_freeze_count() == frozen
    finally:
        gc.unfreeze()


def _full_collections_timed() -> float:
    for metric in looplag.GC_PAUSE.collect():
        for sample in metric.samples:
            if sample.name.endswith("_count") and sample.labels["generation"] == "2":
                return sample.value
    return 0.0


async def test_full_collections_are_timed_while_the_monitor_runs() -> None:
    import gc

    monitor = looplag.LoopLagMonitor(component="test")
    before = _full_collections_timed()
    monitor.start()
    try:
        gc.collect(2)
        gc.collect(0)  # young collections are not timed
    finally:
        await monitor.stop()
    timed = _full_collections_timed()
    assert timed >= before + 1
    gc.collect(2)  # stopped: no longer timed
    assert _full_collections_timed() == timed
