"""BudgetService.AuthorizePodUpdate on a real server (SPEC 4.11): a workload controller asks
before it updates a pod, and gets the pod webhook's check and spend.

The service runs through ``start_service`` on port 0 with the budget's real servicer
(``api.register``) and pod webhook; only the cluster API is faked: ``FakeCluster`` keeps
budget ``pub-test``'s resourceVersion (a stale status write answers ``Conflict``) and the
pods as the API server has them, and records every call, so each test compares the writes
asked for with the expected ones. The replica cache is filled through the Sync stream, as
the gateway fills it. The world: pods ``test-pod-N`` in ``default`` annotated
``kruise.io/related-pub: pub-test``, running and ready.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest
from prometheus_client import REGISTRY

from kruise.budget.v1 import budget_pb2, budget_pb2_grpc
from kruise.common.v1 import mesh_pb2, views_pb2
from services.budget import api
from services.budget.committer import BudgetCommitter
from services.budget.pod_webhook import PodWebhook
from services.budget.status import status_body, status_of
from services.budget.workloads import WorkloadFinder
from services.kit import errors
from services.kit.cluster import Ref, Scale, Written
from services.kit.mesh import Handler
from services.kit.ring import HashRing
from services.kit.service import FeatureContext, RunningService, ServiceSpec
from tests.service.conftest import started
from tests.service.test_mesh_service import Gateway
from tests.unit.budget_builders import NAMESPACE, NOW, PUB, pod, pub

ME = "budget-test"  # the advertised address local_config gives the replica
OTHER = "10.0.0.2:7100"
OPS = "kruise.io/pub-protect-operations"
REQUESTER = "rollout CloneSet web"


# ---- the fake API server -----------------------------------------------------------------


def raw_pod(view: views_pb2.PodView) -> dict[str, Any]:
    """The pod as the API server would answer a GET (what the budget path reads of it)."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": view.meta.name,
            "namespace": view.meta.namespace,
            "uid": view.meta.uid,
            "annotations": dict(view.meta.annotations),
        },
        "spec": {"containers": [{"name": c.name, "image": c.image} for c in view.containers]},
        "status": {
            "phase": view.phase,
            "conditions": [{"type": c.type, "status": c.status} for c in view.conditions],
        },
    }


def raw_budget(view: views_pb2.PodUnavailableBudgetView) -> dict[str, Any]:
    return {
        "apiVersion": "policy.kruise.io/v1alpha1",
        "kind": "PodUnavailableBudget",
        "metadata": {
            "name": view.meta.name,
            "namespace": view.meta.namespace,
            "uid": view.meta.uid,
            "resourceVersion": view.meta.resource_version,
            "generation": view.meta.generation,
            "annotations": dict(view.meta.annotations),
        },
        "spec": {"selector": {"matchLabels": dict(view.selector.match_labels)}},
        "status": status_body(status_of(view)),
    }


@dataclass
class FakeCluster:
    """Pods and budgets by (namespace, name); ``actions`` lists every call in order."""

    pods: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    budgets: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    actions: list[tuple[Any, ...]] = field(default_factory=list)

    def add(self, *views: Any) -> None:
        for view in views:
            key = (view.meta.namespace, view.meta.name)
            if isinstance(view, views_pb2.PodView):
                self.pods[key] = raw_pod(view)
            else:
                self.budgets[key] = raw_budget(view)

    async def get(self, ref: Ref) -> Written:
        self.actions.append(("get", ref.kind, ref.name))
        store = self.pods if ref.kind == "Pod" else self.budgets
        obj = store.get((ref.namespace, ref.name))
        if obj is None:
            raise errors.NotFound(f"{ref.kind} {ref.namespace}/{ref.name} not found")
        meta = obj["metadata"]
        return Written(object=obj, resource_version=meta.get("resourceVersion", "1"), uid="")

    async def get_scale(self, ref: Ref) -> Scale:
        raise errors.NotFound(f"{ref.kind} {ref.name} has no scale")

    async def update_status(
        self, ref: Ref, *, status: Mapping[str, Any], resource_version: str, uid: str = ""
    ) -> Written:
        self.actions.append(("status", ref.name, resource_version, status))
        stored = self.budgets[(ref.namespace, ref.name)]
        meta = stored["metadata"]
        if resource_version != meta["resourceVersion"]:
            raise errors.Conflict("the object has been modified; please apply your changes")
        meta["resourceVersion"] = str(int(meta["resourceVersion"]) + 1)
        stored["status"] = dict(status)
        return Written(object=stored, resource_version=meta["resourceVersion"], uid=meta["uid"])

    @property
    def writes(self) -> list[Mapping[str, Any]]:
        return [action[3] for action in self.actions if action[0] == "status"]


# ---- the service -----------------------------------------------------------------------------


class PodWebhookOnly:
    """The budget feature cut down to its pod webhook, over ``FakeCluster``."""

    def __init__(self, context: FeatureContext, cluster: FakeCluster) -> None:
        cache = context.mesh.cache
        webhook = PodWebhook(
            cache=cache,
            finder=WorkloadFinder(cache=cache, scales=cluster, objects=cluster),
            committer=BudgetCommitter(cache=cache, cluster=cluster),
            pods=cluster,
            clock_ms=lambda: NOW,
            owns=context.mesh.owns,
        )
        self.handlers: Mapping[str, Handler] = {"validate-pods": webhook.review}

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass


@dataclass
class Budget:
    running: RunningService
    channel: grpc.aio.Channel
    cluster: FakeCluster
    stub: Any

    async def sync(self, *views: Any, ring: list[str] | None = None) -> Gateway:
        """A snapshot of ``views`` (the ring: this replica alone unless given)."""
        gw = Gateway(self.channel)
        await gw.call.read()
        events = [added(view) for view in views]
        await gw.send(
            snapshot_begin=True, ring_members=ring or [ME], events=events, snapshot_end=True
        )
        return gw

    async def ask(
        self, name: str, *, namespace: str = NAMESPACE, uid: str | None = None
    ) -> budget_pb2.AuthorizePodUpdateResponse:
        request = budget_pb2.AuthorizePodUpdateRequest(
            namespace=namespace,
            pod=name,
            pod_uid=f"uid-{name}" if uid is None else uid,
            requester=REQUESTER,
        )
        return await self.stub.AuthorizePodUpdate(request)  # type: ignore[no-any-return]


@pytest.fixture
async def budget() -> AsyncIterator[Budget]:
    cluster = FakeCluster()
    spec = ServiceSpec(
        name="budget",
        kinds=[mesh_pb2.KIND_POD, mesh_pb2.KIND_POD_UNAVAILABLE_BUDGET],
        handlers={},
        extra=[api.register],
        feature=lambda context: PodWebhookOnly(context, cluster),
    )
    running = await started(spec)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{running.grpc.port}")
    yield Budget(running, channel, cluster, budget_pb2_grpc.BudgetServiceStub(channel))
    await channel.close()
    await running.stop(grace=0)


def added(view: Any) -> mesh_pb2.WatchEvent:
    if isinstance(view, views_pb2.PodView):
        return mesh_pb2.WatchEvent(
            type=mesh_pb2.WatchEvent.TYPE_ADDED,
            kind=mesh_pb2.KIND_POD,
            object=views_pb2.ObjectView(pod=view),
        )
    return mesh_pb2.WatchEvent(
        type=mesh_pb2.WatchEvent.TYPE_ADDED,
        kind=mesh_pb2.KIND_POD_UNAVAILABLE_BUDGET,
        object=views_pb2.ObjectView(pod_unavailable_budget=view),
    )


def a_pod(name: str, *, namespace: str = NAMESPACE, **kwargs: Any) -> views_pb2.PodView:
    view = pod(name, namespace=namespace, **kwargs)
    view.meta.uid = f"uid-{name}"
    return view


def allowing(n: int, *, namespace: str = NAMESPACE, **kwargs: Any):
    """Budget ``pub-test``: ``n`` more pods may be unavailable (3 pods, desired 3 - n)."""
    return pub(namespace=namespace, allowed=n, current=3, desired=3 - n, total=3, **kwargs)


def decisions(outcome: str) -> float:
    labels = {"action": "update-request", "outcome": outcome}
    return REGISTRY.get_sample_value("kruise_mesh_budget_decisions_total", labels) or 0.0


# ---- the answers -----------------------------------------------------------------------------


async def test_a_budget_of_one_is_spent_once_and_then_refuses(budget: Budget):
    pods = [a_pod(f"test-pod-{i}") for i in range(3)]
    budget.cluster.add(allowing(1), *pods)
    await budget.sync(allowing(1), *pods)
    allowed_before, refused_before = decisions("allowed"), decisions("refused")

    # step 1/3: the first pod spends the one unit; the write records it as updating
    first = await budget.ask("test-pod-0")
    assert (first.allowed, first.budget, first.message, first.replica) == (
        True,
        PUB,
        "",
        ME,
    )
    assert [(a[0], a[1], a[2]) for a in budget.cluster.actions] == [("status", PUB, "100")]
    written = budget.cluster.writes[0]
    assert list(written["unavailablePods"]) == ["test-pod-0"]
    assert written["unavailableAllowed"] == 0

    # step 2/3: nothing is left for a second pod; refused in the webhook's words
    second = await budget.ask("test-pod-1")
    assert (second.allowed, second.budget) == (False, PUB)
    assert second.message.startswith(
        "cannot update pod default/test-pod-1: PodUnavailableBudget pub-test allows no more "
        "unavailable pods (unavailableAllowed 0"
    )
    assert "test-pod-0 (in-place update)" in second.message

    # step 3/3: the first pod again (the webhook's UPDATE, a retried ask): free
    again = await budget.ask("test-pod-0")
    assert (again.allowed, again.budget) == (True, PUB)
    assert len(budget.cluster.writes) == 1

    assert (decisions("allowed") - allowed_before, decisions("refused") - refused_before) == (
        2,
        1,
    )


async def test_concurrent_asks_for_the_last_unit_admit_exactly_one(budget: Budget):
    pods = [a_pod(f"test-pod-{i}") for i in range(3)]
    budget.cluster.add(allowing(1), *pods)
    await budget.sync(allowing(1), *pods)

    answers = await asyncio.gather(*(budget.ask(p.meta.name) for p in pods))

    assert sum(a.allowed for a in answers) == 1
    assert [len(w["unavailablePods"]) for w in budget.cluster.writes] == [1]


@pytest.mark.parametrize(
    ("views", "expected_budget"),
    [
        pytest.param([a_pod("test-pod-0", related_pub=None)], "", id="pod names no budget"),
        pytest.param([a_pod("test-pod-0")], "", id="the budget it names does not exist"),
        pytest.param(
            [a_pod("test-pod-0"), allowing(0, annotations={OPS: "DELETE"})],
            PUB,
            id="pub-protect-operations DELETE: updates not protected",
        ),
        pytest.param(
            [a_pod("test-pod-0", ready=False), allowing(0)], PUB, id="pod not ready: nothing lost"
        ),
    ],
)
async def test_allowed_without_spending(budget: Budget, views, expected_budget):
    budget.cluster.add(*views)
    await budget.sync(*views)

    answer = await budget.ask("test-pod-0")

    assert (answer.allowed, answer.budget, answer.message) == (True, expected_budget, "")
    assert budget.cluster.actions == []


async def test_update_protected_by_name_is_refused(budget: Budget):
    views = [a_pod("test-pod-0"), allowing(0, annotations={OPS: "UPDATE"})]
    await budget.sync(*views)
    answer = await budget.ask("test-pod-0")
    assert (answer.allowed, answer.budget) == (False, PUB)
    assert "PodUnavailableBudget pub-test allows no more unavailable pods" in answer.message


# ---- the requests it will not decide ------------------------------------------------------


@pytest.mark.parametrize(
    ("namespace", "name", "message"),
    [
        pytest.param("", "test-pod-0", "namespace is required", id="no namespace"),
        pytest.param(NAMESPACE, "", "pod is required", id="no pod"),
        pytest.param("", "", "namespace and pod are required", id="neither"),
    ],
)
async def test_missing_arguments_are_invalid(budget: Budget, namespace, name, message):
    await budget.sync()
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await budget.ask(name, namespace=namespace)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert raised.value.details() == (
        f"{message}: name the pod to update by its namespace and name"
    )


async def test_another_pod_under_the_same_name_fails_the_precondition(budget: Budget):
    views = [a_pod("test-pod-0"), allowing(1)]
    budget.cluster.add(*views)
    await budget.sync(*views)

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await budget.ask("test-pod-0", uid="uid-of-an-older-test-pod-0")

    assert raised.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert raised.value.details() == (
        "pod default/test-pod-0 has uid uid-test-pod-0, not uid-of-an-older-test-pod-0: "
        "it was re-created under the same name; decide again on the new pod"
    )
    # the cache was checked against the API server before refusing; nothing was spent
    assert budget.cluster.actions == [("get", "Pod", "test-pod-0")]


async def test_a_cache_behind_a_re_creation_reads_the_pod_again(budget: Budget):
    """The requester saw the new pod before this replica's cache did."""
    old, new = a_pod("test-pod-0"), a_pod("test-pod-0")
    new.meta.uid = "uid-new"
    budget.cluster.add(new, allowing(1))
    await budget.sync(old, allowing(1))

    answer = await budget.ask("test-pod-0", uid="uid-new")

    assert answer.allowed
    assert [a[:2] for a in budget.cluster.actions] == [("get", "Pod"), ("status", PUB)]


async def test_a_pod_that_does_not_exist_is_not_found(budget: Budget):
    await budget.sync(allowing(1))
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await budget.ask("ghost")
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    assert raised.value.details() == "pod default/ghost not found"


async def test_no_decision_before_the_first_snapshot(budget: Budget):
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await budget.ask("test-pod-0")
    assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "has no snapshot yet" in (raised.value.details() or "")


# ---- routing does not matter ----------------------------------------------------------------


def namespace_owned_by(member: str, members: list[str]) -> str:
    ring = HashRing(members)
    return next(f"ns-{i}" for i in range(1000) if ring.owner(f"ns-{i}") == member)


async def test_a_namespace_of_another_replica_is_decided_on_what_the_api_server_has(
    budget: Budget,
):
    theirs = namespace_owned_by(OTHER, [ME, OTHER])
    budget.cluster.add(
        allowing(1, namespace=theirs),
        a_pod("test-pod-0", namespace=theirs),
        a_pod("test-pod-1", namespace=theirs),
    )
    await budget.sync(ring=[ME, OTHER])  # nothing of that namespace is cached here

    first = await budget.ask("test-pod-0", namespace=theirs)
    second = await budget.ask("test-pod-1", namespace=theirs)

    assert (first.allowed, second.allowed) == (True, False)
    assert f"cannot update pod {theirs}/test-pod-1: PodUnavailableBudget" in second.message
    assert [a[:3] for a in budget.cluster.actions[:3]] == [
        ("get", "Pod", "test-pod-0"),
        ("get", "PodUnavailableBudget", PUB),
        ("status", PUB, "100"),
    ]
    assert len(budget.cluster.writes) == 1


# ---- the budget service as deployed ---------------------------------------------------------


async def test_the_budget_service_answers_through_its_own_pod_webhook():
    """The real SPEC: the servicer finds the feature's webhook (no cluster call needed)."""
    from services.budget.__main__ import SPEC

    running = await started(SPEC)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{running.grpc.port}")
    try:
        gw = Gateway(channel)
        await gw.call.read()
        await gw.send(
            snapshot_begin=True,
            ring_members=[ME],
            events=[added(a_pod("job-0", related_pub=None))],
            snapshot_end=True,
        )
        stub = budget_pb2_grpc.BudgetServiceStub(channel)
        answer = await stub.AuthorizePodUpdate(
            budget_pb2.AuthorizePodUpdateRequest(
                namespace=NAMESPACE, pod="job-0", pod_uid="uid-job-0", requester=REQUESTER
            )
        )
        assert (answer.allowed, answer.budget, answer.replica) == (True, "", ME)
        gw.call.cancel()
    finally:
        await channel.close()
        await running.stop(grace=0)


async def test_a_replica_without_the_pod_webhook_says_so():
    spec = ServiceSpec(name="budget", kinds=[mesh_pb2.KIND_POD], handlers={}, extra=[api.register])
    running = await started(spec)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{running.grpc.port}")
    try:
        stub = budget_pb2_grpc.BudgetServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await stub.AuthorizePodUpdate(
                budget_pb2.AuthorizePodUpdateRequest(namespace=NAMESPACE, pod="p")
            )
        assert raised.value.code() == grpc.StatusCode.UNIMPLEMENTED
    finally:
        await channel.close()
        await running.stop(grace=0)
