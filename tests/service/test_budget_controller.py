"""The budget controller's shell: events in, the writes it asks the cluster API for out.

``FakeCluster`` is an in-memory stand-in for the API server's side: it keeps each budget
as JSON with a resourceVersion (a stale status write answers ``Conflict``, a write answers
the whole stored object, as the gateway does), answers ``/scale`` from a table, and records
every call. Tests feed events as the Sync stream would, reconcile what is queued, and
compare the recorded actions with the expected ones (sample-controller's shape).

The world is OpenKruise's ``pub_controller_test.go``: Deployment ``nginx`` (10 replicas)
→ ReplicaSet ``nginx-7d9c`` → pods ``test-pod-N`` labelled ``pub-controller=true``,
running, ready and consistent; budget ``pub-test`` (maxUnavailable 30 %) selecting them
unless the test says otherwise. The clock is injected (``Harness.now``).
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest

from kruise.common.v1 import mesh_pb2, views_pb2
from services.budget.committer import BudgetCommitter
from services.budget.controller import BudgetController, BudgetKey
from services.budget.status import rfc3339, status_body, status_of
from services.budget.workloads import WorkloadFinder
from services.kit import errors
from services.kit.cache import ObjectCache
from services.kit.cluster import Ref, Scale, Written
from services.kit.projection import project_pod_unavailable_budget
from tests.unit.budget_builders import NAMESPACE, NOW, SECOND, names, pod, pods, pub

ADDED = mesh_pb2.WatchEvent.TYPE_ADDED
MODIFIED = mesh_pb2.WatchEvent.TYPE_MODIFIED
DELETED = mesh_pb2.WatchEvent.TYPE_DELETED

SETTLE_S = 0.01  # the status-only settle delay, shortened for these tests
KEY = BudgetKey(NAMESPACE, "pub-test")
DEPLOYMENT = ("apps/v1", "Deployment", "nginx")
ROLLOUT = ("argoproj.io/v1alpha1", "Rollout", "rollouts-demo")
DEPLOYMENT_OWNER = {"api_version": "apps/v1", "kind": "Deployment", "name": "nginx"}
RS_OWNER = {"api_version": "apps/v1", "kind": "ReplicaSet", "name": "nginx-7d9c", "uid": "rs-uid"}
RELATED = "kruise.io/related-pub"


# ---- the fake API server -----------------------------------------------------------------


def budget_json(view: views_pb2.PodUnavailableBudgetView) -> dict[str, Any]:
    """The budget as the API server would store it."""
    spec: dict[str, Any] = {}
    if view.HasField("selector"):
        selector: dict[str, Any] = {}
        if view.selector.match_labels:
            selector["matchLabels"] = dict(view.selector.match_labels)
        if view.selector.match_expressions:
            selector["matchExpressions"] = [
                {"key": r.key, "operator": r.operator, "values": list(r.values)}
                for r in view.selector.match_expressions
            ]
        spec["selector"] = selector
    if view.HasField("target_ref"):
        ref = view.target_ref
        spec["targetRef"] = {"apiVersion": ref.api_version, "kind": ref.kind, "name": ref.name}
    for name, key in (("max_unavailable", "maxUnavailable"), ("min_available", "minAvailable")):
        if view.HasField(name):
            value = getattr(view, name)
            spec[key] = getattr(value, value.WhichOneof("value"))
    return {
        "apiVersion": "policy.kruise.io/v1alpha1",
        "kind": "PodUnavailableBudget",
        "metadata": {
            "name": view.meta.name,
            "namespace": view.meta.namespace,
            "uid": view.meta.uid,
            "resourceVersion": view.meta.resource_version,
            "generation": view.meta.generation,
        },
        "spec": spec,
        "status": status_body(status_of(view)),
    }


@dataclass
class FakeCluster:
    budgets: dict[str, dict[str, Any]] = field(default_factory=dict)
    scales: dict[tuple[str, str], Scale | errors.MeshError] = field(default_factory=dict)
    actions: list[tuple[Any, ...]] = field(default_factory=list)
    fail_patch: list[errors.MeshError] = field(default_factory=list)
    on_patch: Callable[[], None] | None = None

    async def get(self, ref: Ref) -> Written:
        self.actions.append(("get", ref.name))
        if ref.name not in self.budgets:
            raise errors.NotFound(f"{ref.name} not found")
        obj = copy.deepcopy(self.budgets[ref.name])
        return Written(object=obj, resource_version=obj["metadata"]["resourceVersion"], uid="")

    async def get_scale(self, ref: Ref) -> Scale:
        self.actions.append(("scale", ref.kind, ref.name))
        answer = self.scales.get((ref.kind, ref.name))
        if answer is None:
            raise errors.NotFound(f"{ref.kind} {ref.name} not found")
        if isinstance(answer, errors.MeshError):
            raise answer
        return answer

    async def update_status(self, ref: Ref, *, status, resource_version, uid=""):
        self.actions.append(("status", ref.name, resource_version, status))
        stored = self.budgets.get(ref.name)
        if stored is None:
            raise errors.NotFound(f"{ref.name} not found")
        meta = stored["metadata"]
        if resource_version != meta["resourceVersion"] or (uid and uid != meta["uid"]):
            raise errors.Conflict("the object has been modified; please apply your changes")
        meta["resourceVersion"] = str(int(meta["resourceVersion"]) + 1)
        stored["status"] = orjson.loads(orjson.dumps(status))
        obj = copy.deepcopy(stored)
        return Written(object=obj, resource_version=meta["resourceVersion"], uid=meta["uid"])

    async def patch(
        self, ref: Ref, *, patch, kind="merge", resource_version="", uid="", subresource=""
    ):
        self.actions.append(("patch", ref.name, resource_version, patch))
        if self.on_patch is not None:
            self.on_patch()
        if self.fail_patch:
            raise self.fail_patch.pop(0)
        return Written(object={}, resource_version="", uid=uid)

    async def create(self, ref: Ref, obj):
        raise AssertionError("the budget controller never creates")

    async def delete(self, ref: Ref, *, resource_version="", uid=""):
        raise AssertionError("the budget controller never deletes")

    async def record_event(self, ref: Ref, *, uid, type, reason, message):
        self.actions.append(("event", ref.kind, ref.name, type, reason))


# ---- builders --------------------------------------------------------------------------------


def workload(
    api_version: str,
    kind: str,
    name: str,
    *,
    uid: str,
    replicas: int = 10,
    namespace: str = NAMESPACE,
    owner: dict[str, str] | None = None,
) -> views_pb2.WorkloadView:
    view = views_pb2.WorkloadView(api_version=api_version, kind=kind, spec_replicas=replicas)
    view.meta.namespace, view.meta.name, view.meta.uid = namespace, name, uid
    if owner is not None:
        view.meta.owner_references.add(controller=True, **owner)
    return view


def deployment(replicas: int = 10, *, namespace: str = NAMESPACE) -> views_pb2.WorkloadView:
    return workload(*DEPLOYMENT, uid="deploy-uid", replicas=replicas, namespace=namespace)


def replica_set(*, namespace: str = NAMESPACE) -> views_pb2.WorkloadView:
    return workload(
        "apps/v1",
        "ReplicaSet",
        "nginx-7d9c",
        uid="rs-uid",
        namespace=namespace,
        owner={**DEPLOYMENT_OWNER, "uid": "deploy-uid"},
    )


def owned(
    views: list[views_pb2.PodView], owner: dict[str, str] = RS_OWNER, rv: str = "1"
) -> list[views_pb2.PodView]:
    for view in views:
        view.meta.uid = f"uid-{view.meta.name}"
        view.meta.resource_version = rv
        view.meta.owner_references.add(controller=True, **owner)
    return views


def nginx(count: int = 10, *, replicas: int = 10, **pod_kwargs: Any) -> list[Any]:
    """The Deployment, its ReplicaSet and ``count`` of its pods."""
    return [deployment(replicas), replica_set(), *owned(pods(count, **pod_kwargs))]


KINDS: dict[type, tuple[int, str]] = {
    views_pb2.PodView: (mesh_pb2.KIND_POD, "pod"),
    views_pb2.WorkloadView: (mesh_pb2.KIND_WORKLOAD, "workload"),
    views_pb2.PodUnavailableBudgetView: (
        mesh_pb2.KIND_POD_UNAVAILABLE_BUDGET,
        "pod_unavailable_budget",
    ),
}


def event(view: Any, event_type: int = ADDED) -> mesh_pb2.WatchEvent:
    kind, name = KINDS[type(view)]
    out = mesh_pb2.WatchEvent(type=event_type, kind=kind)
    getattr(out.object, name).CopyFrom(view)
    return out


class Harness:
    def __init__(self, *, retry_s: float = 0.5) -> None:
        self.now = NOW
        self.cache = ObjectCache()
        self.cluster = FakeCluster()
        self.finder = WorkloadFinder(cache=self.cache, scales=self.cluster)
        self.committer = BudgetCommitter(cache=self.cache, cluster=self.cluster)
        self.controller = BudgetController(
            cache=self.cache,
            cluster=self.cluster,
            finder=self.finder,
            committer=self.committer,
            clock_ms=lambda: self.now,
            retry_s=retry_s,
            status_settle_s=SETTLE_S,
        )

    def _store(self, view: Any, type: int) -> mesh_pb2.WatchEvent:
        if isinstance(view, views_pb2.PodUnavailableBudgetView):
            if type == DELETED:
                self.cluster.budgets.pop(view.meta.name, None)
            else:
                self.cluster.budgets[view.meta.name] = budget_json(view)
        e = event(view, type)
        self.cache.apply(e)
        return e

    def seed(self, *views: Any) -> None:
        """A snapshot: the cache (and the API server) filled, then the controller resyncs."""
        for view in views:
            self._store(view, ADDED)
        self.controller.on_snapshot()

    def feed(self, *views: Any, type: int = MODIFIED) -> None:
        for view in views:
            self.controller.on_event(self._store(view, type))

    async def settle(self) -> None:
        """Past the settle delay of status-only budget events (they are queued by then)."""
        await asyncio.sleep(SETTLE_S * 3)

    async def queued(self) -> list[BudgetKey]:
        """Take every queued key without reconciling it (once the pod index is whole)."""
        await self.controller.shell.wait_indexed()
        out = []
        while len(self.controller.queue):
            key = await self.controller.queue.get()
            self.controller.queue.done(key)
            out.append(key)
        return out

    async def drain(self, limit: int = 20) -> list[tuple[Any, ...]]:
        """Reconcile everything queued now (no workers: one key at a time, in order)."""
        for _ in range(limit):
            if not len(self.controller.queue):
                break
            key = await self.controller.queue.get()
            try:
                await self.controller.reconcile(key)
            finally:
                self.controller.queue.done(key)
        else:
            raise AssertionError("the queue never drained")
        actions, self.cluster.actions = self.cluster.actions, []
        return actions


def written(allowed: int, current: int, desired: int, total: int, **maps: dict[str, int]):
    """The status body a write carries (observedGeneration 1, as every budget here)."""
    body: dict[str, Any] = {"observedGeneration": 1}
    for key in ("disruptedPods", "unavailablePods"):
        if maps.get(key):
            body[key] = {pod: rfc3339(at) for pod, at in maps[key].items()}
    body.update(
        unavailableAllowed=allowed,
        currentAvailable=current,
        desiredAvailable=desired,
        totalReplicas=total,
    )
    return body


# ---- SPEC 4.12 controller scenarios through the shell ---------------------------------------

TEN_AND_A_HALF_S_AGO = NOW - 10 * SECOND - 500
S125_AGO = NOW - 125 * SECOND
SPENT = {"unavailable": names(range(10)), "disrupted": names(range(10, 20))}
SCENARIO_14 = {
    "unavailable": {**names(range(5), TEN_AND_A_HALF_S_AGO), **names(range(5, 10))},
    "disrupted": names(range(10, 20)),
}
SCENARIO_15 = {
    "unavailable": SCENARIO_14["unavailable"],
    "disrupted": {**names(range(10, 15), S125_AGO), **names(range(15, 20))},
}
NOT_DELETED = [("event", "Pod", f"test-pod-{i}", "Warning", "NotDeleted") for i in range(10, 15)]
WAS = {"allowed": 3, "current": 10, "desired": 7, "total": 10}


@pytest.mark.parametrize(
    ("budget", "world", "expected"),
    [
        pytest.param(
            pub(**WAS),
            nginx(10, labels={"pub-controller": "false"}),
            [
                ("event", "PodUnavailableBudget", "pub-test", "Normal", "NoPods"),
                ("status", "pub-test", "100", written(0, 0, 0, 0)),
            ],
            id="scenario 1: pods relabelled pub-controller=false -> status all zero, NoPods",
        ),
        pytest.param(
            pub(**WAS),
            [deployment(namespace="other"), replica_set(namespace="other")]
            + owned(pods(10, namespace="other")),
            [
                ("event", "PodUnavailableBudget", "pub-test", "Normal", "NoPods"),
                ("status", "pub-test", "100", written(0, 0, 0, 0)),
            ],
            id="scenario 2: everything in another namespace -> all zero",
        ),
        pytest.param(
            pub(selector=None, target=DEPLOYMENT),
            nginx(10),
            [("status", "pub-test", "100", written(3, 10, 7, 10))],
            id="scenario 3: targetRef Deployment through its ReplicaSet, 10 pods -> 3/10/7/10",
        ),
        pytest.param(
            pub(),
            nginx(10),
            [("status", "pub-test", "100", written(3, 10, 7, 10))],
            id="scenario 4: selector, total from the pods' Deployment -> 3/10/7/10",
        ),
        pytest.param(
            pub(max_unavailable="0%"),
            nginx(10),
            [("status", "pub-test", "100", written(0, 10, 10, 10))],
            id="scenario 5: maxUnavailable 0% -> allowed 0, desired 10",
        ),
        pytest.param(
            pub(max_unavailable=None, min_available=100),
            nginx(5),
            [("status", "pub-test", "100", written(0, 5, 100, 10))],
            id="scenario 8: minAvailable 100, 5 pods -> 0/5/100/10",
        ),
        pytest.param(
            pub(**SPENT),
            nginx(100, replicas=100),
            [
                (
                    "status",
                    "pub-test",
                    "100",
                    written(
                        10,
                        80,
                        70,
                        100,
                        unavailablePods=SPENT["unavailable"],
                        disruptedPods=SPENT["disrupted"],
                    ),
                )
            ],
            id="scenario 11: 100 replicas, 20 recorded now -> maps kept, 10/80/70/100",
        ),
        pytest.param(
            pub(**SPENT),
            nginx(100, replicas=100, deleting=range(20, 25)),
            [
                (
                    "status",
                    "pub-test",
                    "100",
                    written(
                        5,
                        75,
                        70,
                        100,
                        unavailablePods=SPENT["unavailable"],
                        disruptedPods=SPENT["disrupted"],
                    ),
                )
            ],
            id="scenario 13: as 11 + pods 20..24 terminating -> 5/75",
        ),
        pytest.param(
            pub(**SCENARIO_14),
            nginx(100, replicas=100, deleting=range(10, 15)),
            [
                (
                    "status",
                    "pub-test",
                    "100",
                    written(
                        15,
                        85,
                        70,
                        100,
                        unavailablePods=names(range(5, 10)),
                        disruptedPods=names(range(15, 20)),
                    ),
                )
            ],
            id="scenario 14: expired and terminating entries dropped -> 15/85",
        ),
        pytest.param(
            pub(**SCENARIO_15),
            nginx(100, replicas=100, deleting=range(20, 25)),
            [
                (
                    "status",
                    "pub-test",
                    "100",
                    written(
                        15,
                        85,
                        70,
                        100,
                        unavailablePods=names(range(5, 10)),
                        disruptedPods=names(range(15, 20)),
                    ),
                ),
                *NOT_DELETED,
            ],
            id="scenario 15: deletions admitted 125 s ago never happened -> NotDeleted events",
        ),
    ],
)
async def test_controller_scenarios(budget, world, expected):
    h = Harness()
    h.seed(budget, *world)
    assert await h.drain() == expected
    # The written status is remembered: nothing more to write, whatever re-triggers it.
    h.feed(budget_view_in_cache(h))
    await h.settle()
    assert [a for a in await h.drain() if a[0] == "status"] == []


def budget_view_in_cache(h: Harness) -> views_pb2.PodUnavailableBudgetView:
    return h.cache.get(mesh_pb2.KIND_POD_UNAVAILABLE_BUDGET, NAMESPACE, "pub-test")


async def test_targetref_takes_only_the_workloads_pods():
    h = Harness()
    other_rs = workload("apps/v1", "ReplicaSet", "db-1", uid="db-rs", replicas=3)
    strays = owned(
        pods(3, start=10, related_pub=None),
        owner={"api_version": "apps/v1", "kind": "ReplicaSet", "name": "db-1", "uid": "db-rs"},
    )
    direct = owned(pods(1, start=20), owner={**DEPLOYMENT_OWNER, "uid": "deploy-uid"})
    h.seed(pub(selector=None, target=DEPLOYMENT), *nginx(9), other_rs, *strays, *direct)
    assert await h.drain() == [("status", "pub-test", "100", written(3, 10, 7, 10))]


# ---- triggers ------------------------------------------------------------------------------


async def test_scale_change_of_the_deployment_rewrites_the_status():
    h = Harness()
    h.seed(pub(selector=None, target=DEPLOYMENT), *nginx(10))
    assert await h.drain() == [("status", "pub-test", "100", written(3, 10, 7, 10))]
    # A status-only update of the Deployment (same replicas) triggers nothing.
    h.feed(deployment(10))
    assert await h.queued() == []
    h.feed(deployment(20))
    assert await h.drain() == [("status", "pub-test", "101", written(0, 10, 14, 20))]


async def test_scale_change_reaches_selector_budgets_of_the_namespace():
    h = Harness()
    h.seed(pub(), pub("pub-other", selector={"app": "db"}), *nginx(10))
    await h.drain()
    h.feed(deployment(100))
    assert await h.queued() == [BudgetKey(NAMESPACE, "pub-other"), KEY]


@pytest.mark.parametrize(
    ("changed", "want"),
    [
        pytest.param(
            owned([pod("test-pod-3")])[0],
            [KEY],
            id="annotated pod: its budget only",
        ),
        pytest.param(
            owned([pod("test-pod-3", related_pub=None, labels={})])[0],
            [BudgetKey(NAMESPACE, "pub-target")],
            id="unannotated pod of the ReplicaSet: the budget targeting its Deployment",
        ),
        pytest.param(
            owned([pod("test-pod-3", related_pub=None)])[0],
            [BudgetKey(NAMESPACE, "pub-target"), KEY],
            id="unannotated pod: targeting and selecting budgets",
        ),
        pytest.param(
            owned([pod("test-pod-3", related_pub="gone-pub", labels={})])[0],
            [BudgetKey(NAMESPACE, "pub-target")],
            id="annotation naming no budget: matched as unannotated",
        ),
    ],
)
async def test_pod_events_reach_their_budgets(changed, want):
    h = Harness()
    h.seed(pub(), pub("pub-target", selector=None, target=DEPLOYMENT), deployment(), replica_set())
    await h.queued()
    h.feed(changed)
    assert await h.queued() == want


async def test_a_budget_created_before_its_pods_counts_them_when_they_come():
    """OpenKruise #1857 (open): a budget whose selector matched no pod when it was first
    reconciled never picked up the pods created later. Here each new pod reaches it."""
    h = Harness()
    h.seed(pub(), deployment(), replica_set())
    assert await h.drain() == [("event", "PodUnavailableBudget", "pub-test", "Normal", "NoPods")]
    h.feed(*owned(pods(10, related_pub=None)), type=ADDED)  # created with the mesh down
    actions = await h.drain()
    assert ("status", "pub-test", "100", written(3, 10, 7, 10)) in actions
    backfilled = sorted(a[1] for a in actions if a[0] == "patch")
    assert backfilled == sorted(f"test-pod-{i}" for i in range(10)), "related-pub written"


async def test_a_pod_whose_labels_stop_matching_still_reaches_its_old_budget():
    h = Harness()
    h.seed(pub(), *nginx(3, related_pub=None))
    await h.queued()
    h.feed(owned([pod("test-pod-0", related_pub=None, labels={"pub-controller": "false"})])[0])
    assert await h.queued() == [KEY]
    h.feed(owned([pod("test-pod-0", related_pub=None, labels={"pub-controller": "false"})])[0])
    assert await h.queued() == []


async def test_budget_deleted_is_forgotten_without_writes():
    h = Harness()
    h.seed(pub(), *nginx(10))
    await h.drain()
    h.feed(pub(), type=DELETED)
    assert await h.drain() == []
    assert h.committer.freshest(NAMESPACE, "pub-test") is None


# ---- back-fill (SPEC 4.4) ---------------------------------------------------------------------


async def test_backfill_patches_only_unannotated_active_pods_once_per_version():
    h = Harness()
    linked = pods(5)
    unlinked = pods(3, start=5, related_pub=None)
    foreign = pods(1, start=8, related_pub="other-pub")
    terminating = pods(1, start=9, related_pub=None, deleting=range(9, 10))
    h.seed(pub(), deployment(), replica_set(), *owned(linked + unlinked + foreign + terminating))
    patch = {"metadata": {"annotations": {RELATED: "pub-test"}}}
    assert await h.drain() == [
        ("patch", "test-pod-5", "1", patch),
        ("patch", "test-pod-6", "1", patch),
        ("patch", "test-pod-7", "1", patch),
        ("status", "pub-test", "100", written(2, 9, 7, 10)),
    ]
    # Re-triggered before the patched pods' events arrive: nothing is sent twice.
    h.feed(budget_view_in_cache(h))
    await h.settle()
    assert await h.drain() == []
    # Pod 5 changed meanwhile (the patch lost the race): its new version is patched.
    h.feed(owned(pods(1, start=5, related_pub=None), rv="2")[0])
    assert await h.drain() == [("patch", "test-pod-5", "2", patch)]
    # The patched version arrives: nothing to do.
    h.feed(owned(pods(1, start=6), rv="3")[0])
    assert await h.drain() == []


async def test_backfill_failures_are_counted_not_fatal():
    h = Harness()
    h.cluster.fail_patch = [errors.Conflict("pod changed"), errors.Unavailable("gateway down")]
    h.seed(pub(), deployment(), replica_set(), *owned(pods(3, related_pub=None)))
    actions = await h.drain()
    assert [a[:2] for a in actions] == [
        ("patch", "test-pod-0"),
        ("patch", "test-pod-1"),
        ("patch", "test-pod-2"),
        ("status", "pub-test"),
    ]
    # The pod that hit a transient error is tried again on the next reconcile (a
    # status-only budget event: it comes after the settle delay).
    h.feed(budget_view_in_cache(h))
    await h.settle()
    assert [a[:2] for a in await h.drain()] == [("patch", "test-pod-1")]


async def test_a_burst_of_status_only_budget_events_is_one_reconcile():
    h = Harness()
    h.seed(pub(), *nginx(3))
    await h.drain()
    for _ in range(20):  # admission spends writing the status, as under load
        h.feed(budget_view_in_cache(h))
    assert len(h.controller.queue) == 0, "not at once"
    await h.settle()
    assert await h.queued() == [KEY]
    changed = budget_view_in_cache(h)
    changed.meta.generation += 1  # a spec change is reconciled at once
    h.feed(changed)
    assert await h.queued() == [KEY]


async def test_a_pods_availability_is_recomputed_when_its_version_moves():
    """The loop remembers each pod's availability for its resourceVersion: a pod that turns
    unready (a new version) counts as unavailable at once; the remembered answer for the
    old version is not reused."""
    h = Harness()
    h.seed(pub(allowed=3, current=10, desired=7, total=10), *nginx(10))
    assert await h.drain() == []
    unready = owned(pods(1, not_ready=(0,)), rv="2")[0]
    h.feed(unready)
    assert await h.drain() == [("status", "pub-test", "100", written(2, 9, 7, 10))]
    ready_again = owned(pods(1), rv="3")[0]
    h.feed(ready_again)
    assert await h.drain() == [("status", "pub-test", "101", written(3, 10, 7, 10))]


# ---- expiry with an injected clock -------------------------------------------------------------


async def test_not_deleted_event_when_an_admitted_deletion_expires():
    h = Harness()
    spent = pub(allowed=2, current=9, desired=7, total=10, disrupted=names([3]))
    h.seed(spent, *nginx(10))
    assert await h.drain() == [], "status already right; recheck scheduled"
    assert h.controller.queue.pending() == 1
    h.now = NOW + 20 * SECOND
    h.controller.queue.add(KEY)
    assert await h.drain() == [], "20 s is not yet expired (strictly older)"
    h.now = NOW + 20 * SECOND + 1
    h.controller.queue.add(KEY)
    assert await h.drain() == [
        ("status", "pub-test", "100", written(3, 10, 7, 10)),
        ("event", "Pod", "test-pod-3", "Warning", "NotDeleted"),
    ]


# ---- conflicts and the committer -----------------------------------------------------------------


async def test_conflict_rereads_and_redecides_on_the_fresher_view():
    h = Harness(retry_s=0.0)
    h.seed(pub(), *nginx(10))
    # Another replica admitted an eviction of test-pod-3: the API server is at 101.
    h.cluster.budgets["pub-test"] = budget_json(
        pub(
            allowed=2, current=10, desired=7, total=10, disrupted=names([3]), resource_version="101"
        )
    )
    assert await h.drain() == [
        ("status", "pub-test", "100", written(3, 10, 7, 10)),
        ("get", "pub-test"),
        ("status", "pub-test", "101", written(2, 9, 7, 10, disruptedPods=names([3]))),
    ]


async def test_a_write_never_loses_a_spend_the_committer_remembered():
    h = Harness()
    h.seed(pub(), *nginx(10))
    spent = pub(
        allowed=2, current=10, desired=7, total=10, disrupted=names([3]), resource_version="105"
    )
    h.cluster.budgets["pub-test"] = budget_json(spent)
    h.committer.remember(spent)  # the pod webhook wrote it; its watch event is not here yet
    assert await h.drain() == [
        ("status", "pub-test", "105", written(2, 9, 7, 10, disruptedPods=names([3]))),
    ]


async def test_a_spend_made_while_the_loop_works_is_not_given_back():
    h = Harness()
    spent = pub(
        allowed=2, current=10, desired=7, total=10, disrupted=names([3]), resource_version="101"
    )

    def admission_spends() -> None:
        # While the loop back-fills (after its first decision, before its write), the pod
        # webhook commits a spend.
        h.cluster.budgets["pub-test"] = budget_json(spent)
        h.committer.remember(spent)

    h.cluster.on_patch = admission_spends
    h.seed(
        pub(),
        deployment(),
        replica_set(),
        *owned(pods(10)[:9] + pods(1, start=9, related_pub=None)),
    )
    actions = await h.drain()
    assert actions[0][:2] == ("patch", "test-pod-9")
    assert actions[1:] == [
        ("status", "pub-test", "101", written(2, 9, 7, 10, disruptedPods=names([3]))),
    ]


async def test_the_written_object_is_what_the_next_decision_starts_from():
    h = Harness()
    h.seed(pub(), *nginx(10))
    await h.drain()
    fresh = h.committer.freshest(NAMESPACE, "pub-test")
    assert fresh == project_pod_unavailable_budget(h.cluster.budgets["pub-test"])
    assert (fresh.meta.resource_version, fresh.unavailable_allowed) == ("101", 3)


# ---- workloads the cache does not hold ---------------------------------------------------------


async def test_custom_kind_target_through_scale_and_its_replica_sets():
    h = Harness()
    rollout_owner = {
        "api_version": ROLLOUT[0],
        "kind": "Rollout",
        "name": ROLLOUT[2],
        "uid": "ro-uid",
    }
    rs = workload(
        "apps/v1", "ReplicaSet", "rollouts-demo-6f", uid="ro-rs", replicas=4, owner=rollout_owner
    )
    rs_owner = {
        "api_version": "apps/v1",
        "kind": "ReplicaSet",
        "name": "rollouts-demo-6f",
        "uid": "ro-rs",
    }
    h.cluster.scales[("Rollout", "rollouts-demo")] = Scale(spec_replicas=5, selector="app=demo")
    h.seed(
        pub(selector=None, target=ROLLOUT),
        rs,
        *owned(pods(4), owner=rs_owner),
        *owned(pods(1, start=4), owner=rollout_owner),
        *nginx(3, start=10),  # another workload's pods in the namespace
    )
    assert await h.drain() == [
        ("scale", "Rollout", "rollouts-demo"),
        ("status", "pub-test", "100", written(1, 5, 4, 5)),
    ]


async def test_custom_kind_owner_of_selected_pods_counts_its_scale_replicas():
    h = Harness()
    rollout_owner = {
        "api_version": ROLLOUT[0],
        "kind": "Rollout",
        "name": ROLLOUT[2],
        "uid": "ro-uid",
    }
    h.cluster.scales[("Rollout", "rollouts-demo")] = Scale(spec_replicas=6, selector="")
    h.seed(pub(), *nginx(4), *owned(pods(2, start=4), owner=rollout_owner))
    assert await h.drain() == [
        ("scale", "Rollout", "rollouts-demo"),
        ("status", "pub-test", "100", written(0, 6, 12, 16)),
    ]


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(None, id="404: no such object or no /scale"),
        pytest.param(errors.Invalid("ref.kind: unknown kind"), id="kind unknown to the cluster"),
    ],
)
async def test_unknown_kind_target_is_total_zero_without_crashing(answer):
    h = Harness()
    if answer is not None:
        h.cluster.scales[("Widget", "w")] = answer
    h.seed(pub(selector=None, target=("example.com/v1", "Widget", "w"), **WAS), *nginx(3))
    assert await h.drain() == [
        ("scale", "Widget", "w"),
        ("event", "PodUnavailableBudget", "pub-test", "Normal", "NoPods"),
        ("status", "pub-test", "100", written(0, 0, 0, 0)),
    ]
    # NoPods once per state change, not every reconcile.
    h.feed(budget_view_in_cache(h))
    await h.settle()
    assert [a for a in await h.drain() if a[0] != "scale"] == []


async def test_unreachable_scale_writes_nothing_and_retries():
    h = Harness()
    h.cluster.scales[("Widget", "w")] = errors.Unavailable("gateway down")
    h.seed(pub(selector=None, target=("example.com/v1", "Widget", "w"), **WAS))
    assert await h.drain() == [("scale", "Widget", "w")]
    assert h.controller.queue.pending() == 1, "retry scheduled"


async def test_unscalable_spec_is_a_warning_event_once():
    h = Harness()
    h.seed(pub(max_unavailable="30"), *nginx(10))
    assert await h.drain() == [
        ("event", "PodUnavailableBudget", "pub-test", "Warning", "CalculateExpectedPodCountFailed"),
    ]
    assert h.controller.queue.pending() == 1, "retry scheduled"
    h.feed(budget_view_in_cache(h))
    await h.settle()
    assert await h.drain() == []


async def test_snapshot_rebuilds_indexes_and_reconciles_every_budget():
    h = Harness()
    h.seed(pub(selector=None, target=DEPLOYMENT), *nginx(10))
    await h.drain()
    h.controller.on_snapshot()
    assert await h.drain() == []
    h.feed(deployment(20))
    assert [a[0] for a in await h.drain()] == ["status"]


async def test_workers_run_the_queue():
    h = Harness()
    h.seed(pub(), *nginx(10))
    await h.controller.start()
    try:
        for _ in range(100):
            if h.cluster.actions:
                break
            await asyncio.sleep(0.01)
    finally:
        await h.controller.stop()
    assert h.cluster.actions == [("status", "pub-test", "100", written(3, 10, 7, 10))]
