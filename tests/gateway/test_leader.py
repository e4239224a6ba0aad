"""Lease-based leader election: the pure decision, and electors racing on the sandbox."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from services.gateway.kube.client import KubeClient
from services.gateway.leader import (
    LeaderElector,
    format_micro_time,
    released_spec,
    should_take,
    taken_spec,
)

NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
LEASES = "/apis/coordination.k8s.io/v1/namespaces/default/leases"


def lease(holder: str, *, renewed_ago: float | None = 0.0, duration: int = 15) -> dict[str, Any]:
    spec: dict[str, Any] = {"holderIdentity": holder, "leaseDurationSeconds": duration}
    if renewed_ago is not None:
        spec["renewTime"] = format_micro_time(NOW - timedelta(seconds=renewed_ago))
    return {"metadata": {"name": "l", "resourceVersion": "5"}, "spec": spec}


@pytest.mark.parametrize(
    ("current", "expected"),
    [
        pytest.param(None, True, id="no lease yet: create it"),
        pytest.param(lease(""), True, id="released lease: take it"),
        pytest.param(lease("me", renewed_ago=3), True, id="my own lease: renew it"),
        pytest.param(lease("other", renewed_ago=3), False, id="other holder renewed 3 s ago: wait"),
        pytest.param(lease("other", renewed_ago=14.9), False, id="other holder just in time"),
        pytest.param(lease("other", renewed_ago=15), True, id="other holder expired: take over"),
        pytest.param(lease("other", renewed_ago=None), True, id="holder never renewed: take over"),
    ],
)
def test_should_take(current: dict[str, Any] | None, expected: bool) -> None:
    assert should_take(current, now=NOW, identity="me") is expected


def test_taken_spec_counts_transitions_and_keeps_acquire_time_on_renewal() -> None:
    first = taken_spec(None, now=NOW, identity="me", lease_seconds=15)
    assert first["leaseTransitions"] == 0 and first["acquireTime"] == first["renewTime"]
    later = NOW + timedelta(seconds=5)
    renewed = taken_spec({"spec": first}, now=later, identity="me", lease_seconds=15)
    assert renewed["acquireTime"] == first["acquireTime"]
    assert renewed["renewTime"] == format_micro_time(later)
    stolen = taken_spec({"spec": renewed}, now=later, identity="you", lease_seconds=15)
    assert (stolen["holderIdentity"], stolen["leaseTransitions"]) == ("you", 1)
    released = released_spec({"spec": stolen}, now=later)
    assert released["holderIdentity"] == "" and should_take(
        {"spec": released}, now=later, identity="me"
    )


class Recorder:
    def __init__(self, name: str, log: list[str]) -> None:
        self.name, self.log = name, log

    async def started(self) -> None:
        self.log.append(f"{self.name} started")

    async def stopped(self) -> None:
        self.log.append(f"{self.name} stopped")


async def wait_until(cond: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


def elector(kube: KubeClient, identity: str) -> LeaderElector:
    return LeaderElector(
        kube,
        namespace="default",
        name="hub",
        identity=identity,
        lease_seconds=2,
        renew_seconds=0.3,
        retry_seconds=0.1,
    )


async def test_exactly_one_leads_and_stop_hands_over(kube: KubeClient) -> None:
    log: list[str] = []
    a, b = elector(kube, "a"), elector(kube, "b")
    ra, rb = Recorder("a", log), Recorder("b", log)
    runs = [
        asyncio.create_task(a.run(ra.started, ra.stopped)),
        asyncio.create_task(b.run(rb.started, rb.stopped)),
    ]
    try:
        await wait_until(lambda: a.is_leader or b.is_leader, timeout=3)
        for _ in range(20):  # over ~3 lease renewals, never two leaders
            assert a.is_leader != b.is_leader
            await asyncio.sleep(0.05)
        leader, follower = (a, b) if a.is_leader else (b, a)
        assert log == [f"{leader.identity} started"]

        handed = time.monotonic()
        await leader.stop()
        assert not leader.is_leader
        await wait_until(lambda: follower.is_leader, timeout=2)
        assert time.monotonic() - handed < 1.0  # released, not waited out
        # on_started runs as its own task: it may start a moment after leadership is taken
        await wait_until(lambda: len(log) == 3, timeout=1)
        assert log == [
            f"{leader.identity} started",
            f"{leader.identity} stopped",
            f"{follower.identity} started",
        ]
        doc = await kube.request_json("GET", f"{LEASES}/hub")
        assert doc["spec"]["holderIdentity"] == follower.identity
        assert doc["spec"]["leaseTransitions"] >= 1
    finally:
        await a.stop()
        await b.stop()
        await asyncio.gather(*runs)
    doc = await kube.request_json("GET", f"{LEASES}/hub")
    assert doc["spec"]["holderIdentity"] == ""


async def test_expired_lease_of_a_dead_holder_is_taken_over(kube: KubeClient) -> None:
    ghost = {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": "hub", "namespace": "default"},
        "spec": {
            "holderIdentity": "ghost",
            "leaseDurationSeconds": 1,
            "renewTime": format_micro_time(datetime.now(UTC)),
        },
    }
    await kube.request("POST", LEASES, body=orjson.dumps(ghost))
    log: list[str] = []
    a = elector(kube, "a")
    rec = Recorder("a", log)
    started = time.monotonic()
    run = asyncio.create_task(a.run(rec.started, rec.stopped))
    try:
        await asyncio.sleep(0.5)
        assert not a.is_leader and a.holder == "ghost"
        await wait_until(lambda: a.is_leader, timeout=3)
        assert time.monotonic() - started >= 0.9
    finally:
        await a.stop()
        await run
    assert log == ["a started", "a stopped"]


async def test_leader_steps_down_when_the_lease_is_taken_from_it(kube: KubeClient) -> None:
    log: list[str] = []
    a = elector(kube, "a")
    rec = Recorder("a", log)
    run = asyncio.create_task(a.run(rec.started, rec.stopped))
    try:
        await wait_until(lambda: a.is_leader, timeout=3)
        doc = await kube.request_json("GET", f"{LEASES}/hub")
        doc["spec"]["holderIdentity"] = "usurper"
        doc["spec"]["renewTime"] = format_micro_time(datetime.now(UTC) + timedelta(seconds=30))
        await kube.request("PUT", f"{LEASES}/hub", body=orjson.dumps(doc))
        await wait_until(lambda: not a.is_leader, timeout=3)
        await wait_until(lambda: log == ["a started", "a stopped"], timeout=1)
    finally:
        await a.stop()
        await run
    doc = await kube.request_json("GET", f"{LEASES}/hub")
    assert doc["spec"]["holderIdentity"] == "usurper"  # not released by a non-holder
