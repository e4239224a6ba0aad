"""The budget's admission path: pod webhook → decision → committer → conditional status write.

``BudgetStore`` is an in-memory stand-in for the API server's side of one budget: it keeps
the status and a resourceVersion and answers a stale write with ``Conflict``, as the
cluster API does. Several ``BudgetCommitter``s sharing one store are several replicas.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest

from kruise.common.v1 import mesh_pb2, views_pb2
from services.budget.committer import BudgetCommitter
from services.budget.pod_webhook import PodWebhook
from services.budget.workloads import WorkloadFinder
from services.kit import errors
from services.kit.cache import ObjectCache
from services.kit.cluster import Ref, Scale, Written
from services.kit.projection import project_pod, project_pod_unavailable_budget
from tests.unit.budget_builders import NOW, pub

NS = "default"


@dataclass
class BudgetStore:
    """One PodUnavailableBudget as the API server holds it."""

    status: dict[str, Any]
    resource_version: int = 100
    writes: int = 0
    conflicts_to_inject: int = 0
    deleted: bool = False
    pods: dict[str, dict[str, Any]] = field(default_factory=dict)
    workloads: dict[str, dict[str, Any]] = field(default_factory=dict)

    def object(self) -> dict[str, Any]:
        return {
            "apiVersion": "policy.kruise.io/v1alpha1",
            "kind": "PodUnavailableBudget",
            "metadata": {
                "name": "pub-test",
                "namespace": NS,
                "uid": "uid-pub-test",
                "resourceVersion": str(self.resource_version),
                "generation": 1,
            },
            "spec": {
                "selector": {"matchLabels": {"pub-controller": "true"}},
                "maxUnavailable": "30%",
            },
            "status": self.status,
        }

    async def get(self, ref: Ref) -> Written:
        await asyncio.sleep(0)
        if ref.kind == "Pod":
            if ref.name not in self.pods:
                raise errors.NotFound(f'pods "{ref.name}" not found')
            return Written(object=self.pods[ref.name], resource_version="1", uid="p")
        if ref.kind in ("Deployment", "ReplicaSet"):
            if ref.name not in self.workloads:
                raise errors.NotFound(f"{ref.kind} {ref.name} not found")
            obj = self.workloads[ref.name]
            return Written(object=obj, resource_version="1", uid=obj["metadata"]["uid"])
        if self.deleted:
            raise errors.NotFound('podunavailablebudgets.policy.kruise.io "pub-test" not found')
        return Written(object=self.object(), resource_version=str(self.resource_version), uid="u")

    async def get_scale(self, ref: Ref) -> Scale:
        raise errors.NotFound("no scale")

    async def update_status(self, ref: Ref, *, status, resource_version, uid=""):
        await asyncio.sleep(0.001)  # the write takes time: decisions pile up meanwhile
        if self.deleted:
            raise errors.NotFound("gone")
        if self.conflicts_to_inject > 0:
            self.conflicts_to_inject -= 1
            self.resource_version += 1  # someone else wrote
            raise errors.Conflict("the object has been modified")
        if resource_version != str(self.resource_version):
            raise errors.Conflict("the object has been modified; please apply your changes")
        self.status = orjson.loads(orjson.dumps(status))
        self.resource_version += 1
        self.writes += 1
        return Written(object=self.object(), resource_version=str(self.resource_version), uid=uid)

    @property
    def spent(self) -> int:
        return len(self.status.get("disruptedPods", {})) + len(
            self.status.get("unavailablePods", {})
        )


def raw_pod(name: str, *, ready: bool = True, phase: str = "Running", **annotations: str):
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": NS,
            "uid": f"uid-{name}",
            "labels": {"pub-controller": "true"},
            "annotations": {"kruise.io/related-pub": "pub-test", **annotations},
        },
        "spec": {"nodeName": "node-a1", "containers": [{"name": "main", "image": "nginx:v1"}]},
        "status": {
            "phase": phase,
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }


def review(operation: int, *, name: str, obj=None, old=None, sub_resource="", dry_run=False):
    body = {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {"uid": "u", "object": obj, "oldObject": old},
    }
    return mesh_pb2.AdmissionRequest(
        webhook="validate-pods",
        operation=operation,
        resource=mesh_pb2.GroupVersionResource(version="v1", resource="pods"),
        sub_resource=sub_resource,
        namespace=NS,
        name=name,
        dry_run=dry_run,
        review_json=orjson.dumps(body),
    )


def eviction(name: str, *, dry_run: bool = False, body: Any = None):
    obj = (
        body
        if body is not None
        else {
            "apiVersion": "policy/v1",
            "kind": "Eviction",
            "metadata": {"name": name, "namespace": NS},
            **({"deleteOptions": {"dryRun": ["All"]}} if dry_run else {}),
        }
    )
    return review(mesh_pb2.OPERATION_CREATE, name=name, obj=obj, sub_resource="eviction")


def delete(name: str, *, dry_run: bool = False, **kw: Any):
    return review(mesh_pb2.OPERATION_DELETE, name=name, old=raw_pod(name, **kw), dry_run=dry_run)


class Replica:
    """One budget replica's admission path over a shared store."""

    def __init__(self, store: BudgetStore, *, owner: bool = True, linger_s: float = 0.01) -> None:
        self.cache = ObjectCache()
        self.store = store
        self.committer = BudgetCommitter(
            cache=self.cache,
            cluster=store,  # type: ignore[arg-type]
            linger_s=linger_s,
        )
        finder = WorkloadFinder(cache=self.cache, scales=store, objects=store)
        self.webhook = PodWebhook(
            cache=self.cache,
            finder=finder,
            committer=self.committer,
            pods=store,
            clock_ms=lambda: NOW,
            owns=lambda namespace: owner,
        )
        if owner:
            self.sync()

    def sync(self) -> None:
        """The watch event of the store's current object arrives."""
        event = mesh_pb2.WatchEvent(
            type=mesh_pb2.WatchEvent.TYPE_MODIFIED, kind=mesh_pb2.KIND_POD_UNAVAILABLE_BUDGET
        )
        event.object.pod_unavailable_budget.CopyFrom(
            project_pod_unavailable_budget(self.store.object())
        )
        self.cache.apply(event)

    def add_pods(self, names: list[str]) -> None:
        for name in names:
            self.store.pods[name] = raw_pod(name)
            event = mesh_pb2.WatchEvent(type=mesh_pb2.WatchEvent.TYPE_ADDED, kind=mesh_pb2.KIND_POD)
            event.object.pod.CopyFrom(project_pod(raw_pod(name)))
            self.cache.apply(event)


def allowing(n: int) -> BudgetStore:
    return BudgetStore(
        status={
            "unavailableAllowed": n,
            "currentAvailable": 20,
            "desiredAvailable": 20 - n,
            "totalReplicas": 20,
        }
    )


async def test_concurrent_deletes_spend_exactly_the_allowance_in_few_writes():
    store = allowing(10)
    replica = Replica(store)
    answers = await asyncio.gather(*(replica.webhook.review(delete(f"p-{i}")) for i in range(100)))
    assert sum(a.allowed for a in answers) == 10
    assert store.spent == 10 and store.status["unavailableAllowed"] == 0
    assert store.writes <= 3, f"concurrent decisions share writes, got {store.writes}"
    refused = next(a for a in answers if not a.allowed)
    assert refused.code == 403
    assert "PodUnavailableBudget pub-test allows no more unavailable pods" in refused.message


async def answered_within(seconds: float, review: Any) -> Any:
    return await asyncio.wait_for(review, seconds)


async def test_an_idle_budgets_first_decision_is_written_at_once():
    replica = Replica(allowing(10), linger_s=5.0)
    answer = await answered_within(1.0, replica.webhook.review(delete("p-0")))
    assert answer.allowed and replica.store.writes == 1


async def test_a_busy_budget_with_small_writes_lets_the_next_decisions_share_one():
    """Moments after a write that carried one decision, the next decision waits up to the
    linger for others: two decisions 20 ms apart share one write instead of two."""
    replica = Replica(allowing(10), linger_s=0.2)
    assert (await replica.webhook.review(delete("p-0"))).allowed
    first = asyncio.ensure_future(replica.webhook.review(delete("p-1")))
    await asyncio.sleep(0.02)
    second = asyncio.ensure_future(replica.webhook.review(delete("p-2")))
    answers = await answered_within(2.0, asyncio.gather(first, second))
    assert all(a.allowed for a in answers)
    assert replica.store.writes == 2 and replica.store.spent == 3


async def test_a_budget_whose_writes_carry_many_decisions_does_not_linger():
    replica = Replica(allowing(10), linger_s=5.0)
    answers = await asyncio.gather(*(replica.webhook.review(delete(f"p-{i}")) for i in range(5)))
    assert all(a.allowed for a in answers) and replica.store.writes == 1
    answer = await answered_within(1.0, replica.webhook.review(delete("p-5")))
    assert answer.allowed and replica.store.writes == 2


async def test_two_replicas_with_stale_caches_never_spend_twice():
    store = allowing(10)
    replicas = [Replica(store), Replica(store)]
    rng = random.Random(11)
    for replica in replicas:
        replica.add_pods([f"p-{i}" for i in range(200)])
    answers = await asyncio.gather(
        *(rng.choice(replicas).webhook.review(eviction(f"p-{i}")) for i in range(200))
    )
    assert sum(a.allowed for a in answers) == 10
    assert store.spent == 10
    assert {a.code for a in answers if not a.allowed} <= {429}


async def test_injected_conflicts_are_redecided_not_lost():
    store = allowing(5)
    store.conflicts_to_inject = 3
    replica = Replica(store)
    answers = await asyncio.gather(*(replica.webhook.review(delete(f"p-{i}")) for i in range(20)))
    assert sum(a.allowed for a in answers) == 5 == store.spent


async def test_the_same_pod_spends_once():
    store = allowing(3)
    replica = Replica(store)
    answers = await asyncio.gather(*(replica.webhook.review(delete("p-1")) for _ in range(5)))
    assert all(a.allowed for a in answers)
    assert store.spent == 1 and store.status["unavailableAllowed"] == 2


@pytest.mark.parametrize(
    "request_",
    [
        pytest.param(delete("p-1", dry_run=True), id="DELETE dry-run"),
        pytest.param(eviction("p-1", dry_run=True), id="eviction with deleteOptions.dryRun All"),
    ],
)
async def test_dry_run_never_writes(request_):
    store = allowing(1)
    replica = Replica(store)
    replica.add_pods(["p-1"])
    answer = await replica.webhook.review(request_)
    assert answer.allowed and store.writes == 0


async def test_refused_eviction_is_429_and_names_the_budget():
    store = allowing(0)
    replica = Replica(store)
    replica.add_pods(["p-1"])
    answer = await replica.webhook.review(eviction("p-1"))
    assert (answer.allowed, answer.code, answer.reason) == (False, 429, "TooManyRequests")
    assert "cannot evict pod default/p-1: PodUnavailableBudget pub-test" in answer.message


async def test_a_deleted_budget_blocks_nothing():
    store = allowing(0)
    replica = Replica(store)
    store.deleted = True
    replica.cache.apply(
        mesh_pb2.WatchEvent(
            type=mesh_pb2.WatchEvent.TYPE_DELETED,
            kind=mesh_pb2.KIND_POD_UNAVAILABLE_BUDGET,
            object=views_pb2.ObjectView(pod_unavailable_budget=pub()),
        )
    )
    assert (await replica.webhook.review(delete("p-1"))).allowed


async def test_budget_deleted_between_decision_and_write_admits():
    store = allowing(1)
    replica = Replica(store)
    store.deleted = True
    assert (await replica.webhook.review(delete("p-1"))).allowed


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        pytest.param(
            eviction("p-1", body=["not", "an", "object"]),
            "request.object must be an object",
            id="Eviction body not an object",
        ),
        pytest.param(
            eviction("p-1", body={"kind": "Pod"}),
            "expected an Eviction",
            id="a Pod where the Eviction should be",
        ),
        pytest.param(
            eviction("p-1", body={"kind": "Eviction", "deleteOptions": {"dryRun": "All"}}),
            "deleteOptions.dryRun must be a list",
            id="dryRun not a list",
        ),
        pytest.param(
            review(mesh_pb2.OPERATION_UPDATE, name="p-1", obj=raw_pod("p-1")),
            "must carry object and oldObject",
            id="UPDATE without oldObject",
        ),
    ],
)
async def test_malformed_reviews_are_refused_with_400(request_, message):
    replica = Replica(allowing(1))
    answer = await replica.webhook.review(request_)
    assert (answer.allowed, answer.code) == (False, 400)
    assert message in answer.message


async def test_eviction_of_a_pod_that_does_not_exist_is_left_to_the_api_server():
    store = allowing(0)
    replica = Replica(store)
    assert (await replica.webhook.review(eviction("ghost"))).allowed
    assert store.writes == 0


async def test_eviction_of_a_pod_not_yet_cached_reads_it():
    store = allowing(0)
    replica = Replica(store)
    store.pods["fresh"] = raw_pod("fresh")  # in the API server, not in the cache
    answer = await replica.webhook.review(eviction("fresh"))
    assert (answer.allowed, answer.code) == (False, 429)


async def test_metadata_only_update_never_spends():
    store = allowing(0)
    replica = Replica(store)
    old = raw_pod("p-1")
    new = orjson.loads(orjson.dumps(old))
    new["metadata"]["labels"]["extra"] = "x"
    answer = await replica.webhook.review(
        review(mesh_pb2.OPERATION_UPDATE, name="p-1", obj=new, old=old)
    )
    assert answer.allowed
    new["spec"]["containers"][0]["image"] = "nginx:v2"
    answer = await replica.webhook.review(
        review(mesh_pb2.OPERATION_UPDATE, name="p-1", obj=new, old=old)
    )
    assert (answer.allowed, answer.code) == (False, 403)


async def test_a_replica_that_does_not_own_the_namespace_reads_through_and_spends_once():
    """Routing sent reviews to a replica with nothing cached for the namespace."""
    store = allowing(3)
    owner, stranger = Replica(store), Replica(store, owner=False)
    owner.add_pods([f"p-{i}" for i in range(30)])
    store.pods.update({f"p-{i}": raw_pod(f"p-{i}") for i in range(30)})
    answers = await asyncio.gather(
        *((owner if i % 2 else stranger).webhook.review(eviction(f"p-{i}")) for i in range(30))
    )
    assert sum(a.allowed for a in answers) == 3 == store.spent
    assert stranger.cache.count(mesh_pb2.KIND_POD_UNAVAILABLE_BUDGET) == 0


def owned(pod: dict[str, Any]) -> dict[str, Any]:
    pod["metadata"]["ownerReferences"] = [
        {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "name": "web-1",
            "uid": "rs-uid",
            "controller": True,
        }
    ]
    return pod


async def test_a_stranger_resolves_the_owner_through_the_api_not_its_empty_cache():
    """A pod of a Deployment (through its ReplicaSet): an empty cache must not read as
    "workload gone, pod unprotected"."""
    store = allowing(2)
    store.workloads = {
        "web-1": {
            "metadata": {
                "name": "web-1",
                "uid": "rs-uid",
                "ownerReferences": [
                    {
                        "apiVersion": "apps/v1",
                        "kind": "Deployment",
                        "name": "web",
                        "uid": "d-uid",
                        "controller": True,
                    }
                ],
            },
            "spec": {"replicas": 20},
        },
        "web": {"metadata": {"name": "web", "uid": "d-uid"}, "spec": {"replicas": 20}},
    }
    stranger = Replica(store, owner=False)
    requests = [
        review(mesh_pb2.OPERATION_DELETE, name=f"p-{i}", old=owned(raw_pod(f"p-{i}")))
        for i in range(10)
    ]
    answers = await asyncio.gather(*(stranger.webhook.review(r) for r in requests))
    assert sum(a.allowed for a in answers) == 2 == store.spent
    store.workloads.clear()  # the Deployment is gone: its pods are unprotected
    answer = await stranger.webhook.review(
        review(mesh_pb2.OPERATION_DELETE, name="p-50", old=owned(raw_pod("p-50")))
    )
    assert answer.allowed and store.spent == 2
