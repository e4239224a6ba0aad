"""The CloneSet controller's shell: events in, the writes it asks the cluster API for out.

An in-memory ``FakeCluster`` records each write (and the budget's answers are scripted);
tests feed events as the Sync stream would and compare the recorded actions with the
expected ones (sample-controller's shape). What the shell adds to the pure ``sync``:
expectations (a cache that has not shown the controller's own creates never makes it
create twice), the budget question before each pod update (a refusal or an unreachable
budget service stops the round), the handover period, and status writes carrying the
resourceVersion they were decided on.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest

from kruise.common.v1 import mesh_pb2, views_pb2
from services.kit import errors
from services.kit.cache import ObjectCache
from services.kit.cluster import Ref, Written
from services.kit.projection import project_clone_set, project_controller_revision, project_pod
from services.rollout.budget_client import Authorization
from services.rollout.controller import CloneSetKey, RolloutController

ADDED = mesh_pb2.WatchEvent.TYPE_ADDED
MODIFIED = mesh_pb2.WatchEvent.TYPE_MODIFIED
NS = "shop"
UID = "cs-uid"


def clone_set_json(
    *, replicas: int, image: str = "nginx:1", rv: str = "10", **strategy: Any
) -> dict[str, Any]:
    return {
        "apiVersion": "apps.kruise.io/v1alpha1",
        "kind": "CloneSet",
        "metadata": {
            "name": "web",
            "namespace": NS,
            "uid": UID,
            "resourceVersion": rv,
            "generation": 1,
        },
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "main", "image": image}]},
            },
            "updateStrategy": {"maxUnavailable": 1, **strategy},
            "revisionHistoryLimit": 10,
        },
    }


@dataclass
class FakeCluster:
    actions: list[tuple[Any, ...]] = field(default_factory=list)
    fail_create: list[errors.MeshError] = field(default_factory=list)

    async def create(self, ref: Ref, obj: dict[str, Any]) -> Written:
        self.actions.append(("create", ref.kind, ref.name))
        if self.fail_create and ref.kind == "Pod":
            raise self.fail_create.pop(0)
        return Written(object=obj, resource_version="1", uid=f"uid-{ref.name}")

    async def patch(
        self,
        ref: Ref,
        *,
        patch: Any,
        kind: str = "merge",
        resource_version: str = "",
        uid: str = "",
        subresource: str = "",
    ) -> Written:
        self.actions.append(("patch", ref.kind, ref.name, subresource, kind))
        return Written(object={}, resource_version="", uid=uid)

    async def delete(self, ref: Ref, *, resource_version: str = "", uid: str = "") -> None:
        self.actions.append(("delete", ref.kind, ref.name))

    async def update_status(
        self, ref: Ref, *, status: dict[str, Any], resource_version: str, uid: str = ""
    ) -> Written:
        self.actions.append(("status", ref.name, resource_version, status.get("replicas")))
        return Written(object={}, resource_version=str(int(resource_version) + 1), uid=uid)

    async def record_event(
        self, ref: Ref, *, uid: str, type: str, reason: str, message: str
    ) -> None:
        self.actions.append(("event", reason))

    def pods(self, verb: str) -> list[str]:
        return [a[2] for a in self.actions if a[0] == verb and a[1] == "Pod"]


@dataclass
class ScriptedBudget:
    answers: list[Authorization | errors.MeshError] = field(default_factory=list)
    asked: list[str] = field(default_factory=list)

    async def authorize_update(
        self, *, namespace: str, pod: str, pod_uid: str, requester: str
    ) -> Authorization:
        self.asked.append(pod)
        answer = self.answers.pop(0) if self.answers else Authorization(allowed=True)
        if isinstance(answer, errors.MeshError):
            raise answer
        return answer


class Harness:
    def __init__(self, *, budget: ScriptedBudget | None = None, handover_s: float = 0.0) -> None:
        self.cache = ObjectCache()
        self.cluster = FakeCluster()
        self.budget = budget or ScriptedBudget()
        self.controller = RolloutController(
            cache=self.cache,
            cluster=self.cluster,
            budget=self.budget,
            rng=random.Random(7),
            retry_s=0.05,
            budget_retry_s=0.05,
            handover_s=handover_s,
        )

    def put(self, kind: int, view: Any, type: int = ADDED) -> None:
        obj = views_pb2.ObjectView()
        field_name = {
            mesh_pb2.KIND_CLONE_SET: "clone_set",
            mesh_pb2.KIND_POD: "pod",
            mesh_pb2.KIND_CONTROLLER_REVISION: "controller_revision",
        }[kind]
        getattr(obj, field_name).CopyFrom(view)
        event = mesh_pb2.WatchEvent(type=type, kind=kind, object=obj)  # type: ignore[arg-type]
        self.cache.apply(event)
        self.controller.on_event(event)

    def clone_set(self, **kw: Any) -> None:
        self.put(mesh_pb2.KIND_CLONE_SET, project_clone_set(clone_set_json(**kw)))

    def revision(self, body: dict[str, Any]) -> None:
        body = {
            **body,
            "metadata": {
                **body["metadata"],
                "uid": f"rev-{body['metadata']['name']}",
                "resourceVersion": "2",
            },
        }
        self.put(mesh_pb2.KIND_CONTROLLER_REVISION, project_controller_revision(body))

    def pod(self, body: dict[str, Any], *, ready: bool = True, rv: str = "5") -> None:
        body = orjson.loads(orjson.dumps(body))
        meta = body["metadata"]
        meta.update(uid=f"uid-{meta['name']}", resourceVersion=rv)
        conditions = [
            {
                "type": "Ready",
                "status": "True" if ready else "False",
                "lastTransitionTime": "2026-01-01T00:00:00Z",
            },
            {"type": "ContainersReady", "status": "True"},
        ]
        conditions += [
            {"type": g["conditionType"], "status": "True"}
            for g in body["spec"].get("readinessGates", [])
        ]
        body["status"] = {"phase": "Running", "conditions": conditions}
        body["spec"]["nodeName"] = "node-1"
        self.put(mesh_pb2.KIND_POD, project_pod(body))

    async def round(self) -> None:
        await self.controller.reconcile(CloneSetKey(NS, "web"))
        await asyncio.sleep(0)


async def _start(h: Harness, replicas: int, **kw: Any) -> None:
    """A CloneSet whose first revision is stored (the round that created it saw it back)."""
    h.clone_set(replicas=replicas, **kw)
    created: list[dict[str, Any]] = []
    original = h.cluster.create

    async def capture(ref: Ref, obj: dict[str, Any]) -> Written:
        created.append(obj)
        return await original(ref, obj)

    h.cluster.create = capture  # type: ignore[method-assign]
    await h.round()
    for obj in created:
        if obj["kind"] == "ControllerRevision":
            h.revision(obj)
        elif obj["kind"] == "Pod":
            h.pod(obj)
    h.cluster.create = original  # type: ignore[method-assign]


async def test_a_new_clone_set_gets_a_revision_then_its_pods() -> None:
    h = Harness()
    await _start(h, 3)
    kinds = [a[1] for a in h.cluster.actions if a[0] == "create"]
    assert kinds == ["ControllerRevision", "Pod", "Pod", "Pod"]
    assert ("status", "web", "10", 0) in h.cluster.actions  # decided on rv 10, before the pods
    assert [a[0] for a in h.cluster.actions][-1] == "status"


async def test_creates_not_yet_in_the_cache_are_never_made_twice() -> None:
    h = Harness()
    h.clone_set(replicas=3)
    await h.round()  # revision + 3 pod creates; the cache shows none of the pods yet
    first = h.cluster.pods("create")
    assert len(first) == 3
    h.cluster.actions.clear()
    for _ in range(3):
        h.clone_set(replicas=3, rv="11")  # any event: the CloneSet comes back
        await h.round()
    assert h.cluster.pods("create") == [], "expectations hold the scale until the pods are seen"


async def test_a_failed_create_is_forgotten_and_retried() -> None:
    h = Harness()
    h.cluster.fail_create = [errors.Forbidden("quota exceeded")]
    h.clone_set(replicas=2)
    await h.round()
    # Slow start: the first batch of one failed, so the second pod was not even tried.
    assert len(h.cluster.pods("create")) == 1
    assert ("event", "FailedCreate") in h.cluster.actions
    h.cluster.actions.clear()
    await h.round()
    assert len(h.cluster.pods("create")) == 2


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(Authorization(allowed=False, budget="pub", message="no"), id="refused"),
        pytest.param(errors.Unavailable("budget service down"), id="budget service down"),
    ],
)
async def test_an_update_waits_for_the_budget(answer: Any) -> None:
    budget = ScriptedBudget(answers=[answer])
    h = Harness(budget=budget)
    await _start(h, 2)
    h.cluster.actions.clear()
    h.clone_set(replicas=2, image="nginx:2", rv="12")
    await h.round()
    # The round asked for the first pod's update, was refused, and wrote nothing to pods.
    assert len(budget.asked) == 1
    assert h.cluster.pods("patch") == []
    assert h.cluster.pods("delete") == []
    # It comes back by itself (budget_retry_s): the key is waiting for its retry.
    assert h.controller.queue.pending() > 0, "the refused round asked to be retried"
    key = await asyncio.wait_for(h.controller.queue.get(), 1.0)
    h.controller.queue.done(key)
    # Allowed now, it marks the pod for re-create.
    await h.round()
    assert len(budget.asked) >= 2
    assert h.cluster.pods("patch"), "the allowed update was written"


async def test_the_handover_period_holds_pod_writes_and_the_status() -> None:
    h = Harness(handover_s=30.0)
    h.clone_set(replicas=2)
    h.controller.on_snapshot()
    await h.round()
    assert h.cluster.pods("create") == []
    # No status either: observedGeneration would claim the generation was acted on.
    assert [a for a in h.cluster.actions if a[0] == "status"] == []


async def test_a_lagging_cache_holds_the_status_too() -> None:
    h = Harness()
    h.clone_set(replicas=2)
    await h.round()
    h.cluster.actions.clear()
    h.clone_set(replicas=2, rv="11")
    await h.round()
    pod_or_status = [a for a in h.cluster.actions if a[1] == "Pod" or a[0] == "status"]
    assert pod_or_status == [], "waiting for its own creates, it writes no pod and no status"
