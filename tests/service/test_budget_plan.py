"""BudgetService.PlanDisruption on a real server: entries from the replica cache, ownership
by the ring the gateway sent, and INVALID_ARGUMENT for malformed requests.

The service runs with only the budget's read API (``api.register``): the plan reads the
cache the Sync stream fills, nothing else, so the test does not depend on the budget's
webhooks or loops.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest

from kruise.budget.v1 import budget_pb2, budget_pb2_grpc
from kruise.common.v1 import mesh_pb2, views_pb2
from services.budget import api
from services.kit.mesh import allow_all
from services.kit.ring import HashRing
from services.kit.service import RunningService, ServiceSpec
from tests.service.conftest import started
from tests.service.test_mesh_service import Gateway
from tests.unit.budget_builders import pod, pub

SPEC = ServiceSpec(
    name="budget",
    kinds=[mesh_pb2.KIND_POD, mesh_pb2.KIND_POD_UNAVAILABLE_BUDGET],
    handlers={"validate-pod-eviction": allow_all},
    extra=[api.register],
)
ME = "budget-test"  # the advertised address local_config gives the replica
OTHER = "10.0.0.2:7100"


def namespace_owned_by(member: str, members: list[str]) -> str:
    ring = HashRing(members)
    return next(f"ns-{i}" for i in range(1000) if ring.owner(f"ns-{i}") == member)


MINE = namespace_owned_by(ME, [ME, OTHER])
THEIRS = namespace_owned_by(OTHER, [ME, OTHER])

NOW = budget_pb2.PLAN_VERDICT_NOW
WAIT = budget_pb2.PLAN_VERDICT_WAIT
GONE = budget_pb2.PLAN_VERDICT_GONE
NOT_OWNED = budget_pb2.PLAN_VERDICT_NOT_OWNED


def added(kind: int, view: views_pb2.ObjectView) -> mesh_pb2.WatchEvent:
    return mesh_pb2.WatchEvent(type=mesh_pb2.WatchEvent.TYPE_ADDED, kind=kind, object=view)


def pod_event(name: str, **kwargs) -> mesh_pb2.WatchEvent:
    return added(mesh_pb2.KIND_POD, views_pb2.ObjectView(pod=pod(name, namespace=MINE, **kwargs)))


def budget_event(**kwargs) -> mesh_pb2.WatchEvent:
    view = pub("web", namespace=MINE, **kwargs)
    return added(
        mesh_pb2.KIND_POD_UNAVAILABLE_BUDGET, views_pb2.ObjectView(pod_unavailable_budget=view)
    )


@pytest.fixture
async def budget() -> AsyncIterator[tuple[RunningService, grpc.aio.Channel]]:
    running = await started(SPEC)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{running.grpc.port}")
    yield running, channel
    await channel.close()
    await running.stop(grace=0)


def refs(*pods: tuple[str, str]) -> budget_pb2.PlanDisruptionRequest:
    return budget_pb2.PlanDisruptionRequest(
        pods=[budget_pb2.PodRef(namespace=ns, name=name) for ns, name in pods]
    )


async def test_plan_entries_follow_the_request_and_the_ring(budget):
    _, channel = budget
    gw = Gateway(channel)
    await gw.call.read()
    await gw.send(
        snapshot_begin=True,
        ring_members=[ME, OTHER],
        events=[
            budget_event(allowed=1, current=3, desired=2, total=3),
            pod_event("web-0", related_pub="web"),
            pod_event("web-1", related_pub="web"),
            pod_event("web-2", related_pub="web", ready=False),
            pod_event("job-x", related_pub=None),
        ],
        snapshot_end=True,
    )
    stub = budget_pb2_grpc.BudgetServiceStub(channel)
    answer = await stub.PlanDisruption(
        refs(
            (MINE, "web-0"),
            (THEIRS, "web-0"),
            (MINE, "web-1"),
            (MINE, "web-2"),
            (MINE, "job-x"),
            (MINE, "missing"),
        )
    )
    assert answer.replica == ME
    got = [(e.namespace, e.pod, e.budget, e.verdict, e.order) for e in answer.entries]
    assert got == [
        (MINE, "web-0", "web", NOW, 3),
        (THEIRS, "web-0", "", NOT_OWNED, 0),
        (MINE, "web-1", "web", WAIT, 0),
        (MINE, "web-2", "web", NOW, 1),
        (MINE, "job-x", "", NOW, 2),
        (MINE, "missing", "", GONE, 0),
    ]
    web0, theirs, web1, web2 = answer.entries[:4]
    assert web0.spends_budget and not web2.spends_budget
    assert web0.reason == "uses one unit of PodUnavailableBudget web (unavailableAllowed 1 -> 0)"
    assert web1.reason.startswith(
        "PodUnavailableBudget web allows no more unavailable pods (unavailableAllowed 1: "
        "currentAvailable 3, desiredAvailable 2, totalReplicas 3)"
    )
    assert web1.reason.endswith("once 1 more of its pods is available again")
    assert web2.reason == "the pod is not running and ready"
    assert theirs.owner == OTHER and OTHER in theirs.reason

    # Reading only: planning again gives the same answer (nothing was spent).
    again = await stub.PlanDisruption(refs((MINE, "web-0"), (MINE, "web-1")))
    assert [e.verdict for e in again.entries] == [NOW, WAIT]
    gw.call.cancel()


async def test_an_empty_ring_owns_every_namespace(budget):
    _, channel = budget
    gw = Gateway(channel)
    await gw.call.read()
    await gw.send(snapshot_begin=True, events=[pod_event("web-0")], snapshot_end=True)
    answer = await budget_pb2_grpc.BudgetServiceStub(channel).PlanDisruption(
        refs((MINE, "web-0"), (THEIRS, "web-0"))
    )
    assert [(e.verdict, e.reason) for e in answer.entries] == [
        (NOW, "no PodUnavailableBudget protects the pod; its kruise.io/related-pub names "
         "pub-test, which does not exist"),
        (GONE, "the pod does not exist: there is nothing to evict"),
    ]  # fmt: skip
    gw.call.cancel()


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        pytest.param(
            budget_pb2.PlanDisruptionRequest(),
            "pods is empty: name at least one pod (namespace and name) to plan",
            id="no pods",
        ),
        pytest.param(
            refs(("ns", "a"), ("", "b")),
            "pods[1] (name 'b'): namespace is required",
            id="a pod without a namespace",
        ),
        pytest.param(
            refs(("ns", "a"), ("ns", "b"), ("ns", "")),
            "pods[2] (namespace 'ns'): name is required",
            id="a pod without a name",
        ),
        pytest.param(
            refs(*[("ns", f"p-{i}") for i in range(10_001)]),
            "pods has 10001 entries, more than 10000: split the request into smaller ones",
            id="more than 10,000 pods",
        ),
    ],
)
async def test_malformed_requests_are_invalid_argument(budget, request_, message):
    _, channel = budget
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await budget_pb2_grpc.BudgetServiceStub(channel).PlanDisruption(request_)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details() == message


async def test_exactly_10000_pods_are_planned(budget):
    _, channel = budget
    gw = Gateway(channel)
    await gw.call.read()
    await gw.send(snapshot_begin=True, snapshot_end=True)
    answer = await budget_pb2_grpc.BudgetServiceStub(channel).PlanDisruption(
        refs(*[(MINE, f"p-{i}") for i in range(10_000)])
    )
    assert len(answer.entries) == 10_000 and answer.entries[9_999].pod == "p-9999"
    gw.call.cancel()


async def test_no_plan_before_the_first_snapshot(budget):
    _, channel = budget
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await budget_pb2_grpc.BudgetServiceStub(channel).PlanDisruption(refs((MINE, "web-0")))
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "no snapshot yet" in caught.value.details()


async def test_get_budget_lists_the_pods_that_use_it_up(budget):
    _, channel = budget
    gw = Gateway(channel)
    await gw.call.read()
    events = [
        budget_event(allowed=0, disrupted={"web-0": 1_700_000_000_000}),
        pod_event("web-0", related_pub="web"),
        pod_event("web-1", related_pub="web", ready=False),
        pod_event("web-2", related_pub="web"),
        pod_event("other-0", related_pub="another", ready=False),
    ]
    await gw.send(snapshot_begin=True, events=events, snapshot_end=True)
    stub = budget_pb2_grpc.BudgetServiceStub(channel)
    answer = await stub.GetBudget(budget_pb2.GetBudgetRequest(namespace=MINE, name="web"))
    assert answer.budget.meta.name == "web"
    assert [(u.pod, u.reason, u.since_unix_ms) for u in answer.unavailable] == [
        ("web-0", "disrupted", 1_700_000_000_000),
        ("web-1", "not-ready", 0),
    ]
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await stub.GetBudget(budget_pb2.GetBudgetRequest(namespace=MINE, name="nope"))
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as bad:
        await stub.GetBudget(budget_pb2.GetBudgetRequest(name="web"))
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    gw.call.cancel()
