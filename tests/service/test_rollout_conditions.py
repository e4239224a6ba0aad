"""The CloneSet controller's shell and ``status.conditions``: the status writes it asks the
cluster API for when pod writes fail, and what those writes keep.

A ``FakeApiServer`` keeps the CloneSet as the API server would (a status update needs the
current resourceVersion, and replaces ``status`` whole); every status the controller writes
is recorded and comes back to its cache as the watch would bring it. Tests script pod
creates refused by a quota and a budget service that cannot be reached, and compare the
recorded ``status.conditions`` with what OpenKruise v1.2 writes: ``FailedScale`` /
``FailedUpdate`` True with the error as message while the step fails, gone once it
succeeds; and, unlike OpenKruise, a condition someone else wrote is written back every time.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field
from typing import Any

import orjson

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
NOW_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
NOW = "2026-01-01T00:00:00Z"
QUOTA = "exceeded quota: pods, requested: pods=1, used: pods=0, limited: pods=0"
USERS = {
    "type": "example.io/Audited",
    "status": "True",
    "reason": "Reviewed",
    "message": "signed off by the release team",
    "lastTransitionTime": "2025-12-31T12:00:00Z",
}
FIELDS = {
    mesh_pb2.KIND_CLONE_SET: "clone_set",
    mesh_pb2.KIND_POD: "pod",
    mesh_pb2.KIND_CONTROLLER_REVISION: "controller_revision",
}


def clone_set_json(*, replicas: int, image: str) -> dict[str, Any]:
    return {
        "apiVersion": "apps.kruise.io/v1alpha1",
        "kind": "CloneSet",
        "metadata": {
            "name": "web",
            "namespace": NS,
            "uid": "cs-uid",
            "resourceVersion": "10",
            "generation": 1,
        },
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "main", "image": image}]},
            },
            "updateStrategy": {"maxUnavailable": 1},
            "revisionHistoryLimit": 10,
        },
        "status": {},
    }


@dataclass
class FakeApiServer:
    """The CloneSet's stored object, pods and revisions created, status writes recorded."""

    clone_set: dict[str, Any]
    refuse_pods: int = 0  # how many pod creates the quota still refuses
    created: list[dict[str, Any]] = field(default_factory=list)
    statuses: list[dict[str, Any]] = field(default_factory=list)
    conflicts: int = 0

    @property
    def rv(self) -> str:
        return str(self.clone_set["metadata"]["resourceVersion"])

    def bump(self) -> None:
        self.clone_set["metadata"]["resourceVersion"] = str(int(self.rv) + 1)

    async def create(self, ref: Ref, obj: dict[str, Any]) -> Written:
        if ref.kind == "Pod" and self.refuse_pods > 0:
            self.refuse_pods -= 1
            raise errors.Forbidden(f'pods "{ref.name}" is forbidden: {QUOTA}')
        self.created.append(obj)
        return Written(object=obj, resource_version="1", uid=f"uid-{ref.name}")

    async def patch(self, ref: Ref, **kw: Any) -> Written:
        return Written(object={}, resource_version="", uid="")

    async def delete(self, ref: Ref, *, resource_version: str = "", uid: str = "") -> None:
        pass

    async def update_status(
        self, ref: Ref, *, status: dict[str, Any], resource_version: str, uid: str = ""
    ) -> Written:
        if resource_version != self.rv:
            self.conflicts += 1
            raise errors.Conflict("the object has been modified")
        self.clone_set["status"] = orjson.loads(orjson.dumps(status))
        self.bump()
        self.statuses.append(self.clone_set["status"])
        return Written(object=self.stored(), resource_version=self.rv, uid=uid)

    async def record_event(
        self, ref: Ref, *, uid: str, type: str, reason: str, message: str
    ) -> None:
        pass

    def stored(self) -> dict[str, Any]:
        return orjson.loads(orjson.dumps(self.clone_set))


@dataclass
class ScriptedBudget:
    answers: list[Authorization | errors.MeshError] = field(default_factory=list)

    async def authorize_update(
        self, *, namespace: str, pod: str, pod_uid: str, requester: str
    ) -> Authorization:
        answer = self.answers.pop(0) if self.answers else Authorization(allowed=True)
        if isinstance(answer, errors.MeshError):
            raise answer
        return answer


class Harness:
    def __init__(self, *, replicas: int = 2, budget: ScriptedBudget | None = None) -> None:
        self.cache = ObjectCache()
        self.api = FakeApiServer(clone_set_json(replicas=replicas, image="nginx:1"))
        self.controller = RolloutController(
            cache=self.cache,
            cluster=self.api,
            budget=budget or ScriptedBudget(),
            clock_ms=lambda: NOW_MS,
            rng=random.Random(7),
            retry_s=0.05,
            budget_retry_s=0.05,
        )
        self.pods: dict[str, dict[str, Any]] = {}
        self.watch()

    def put(self, kind: int, view: Any, type: int = ADDED) -> None:
        obj = views_pb2.ObjectView()
        getattr(obj, FIELDS[kind]).CopyFrom(view)
        event = mesh_pb2.WatchEvent(type=type, kind=kind, object=obj)  # type: ignore[arg-type]
        self.cache.apply(event)
        self.controller.on_event(event)

    def watch(self) -> None:
        """The stored CloneSet reaches the cache (as the watch brings it)."""
        self.put(mesh_pb2.KIND_CLONE_SET, project_clone_set(self.api.stored()), MODIFIED)

    def user_writes(self, conditions: list[dict[str, Any]]) -> None:
        """``kubectl`` (or another controller) writes ``status.conditions`` on the server."""
        self.api.clone_set["status"]["conditions"] = conditions
        self.api.bump()

    def spec(self, **changes: Any) -> None:
        spec = self.api.clone_set["spec"]
        if "image" in changes:
            spec["template"]["spec"]["containers"][0]["image"] = changes["image"]
        if "replicas" in changes:
            spec["replicas"] = changes["replicas"]
        self.api.clone_set["metadata"]["generation"] += 1
        self.api.bump()

    def show_created(self) -> None:
        """The revisions and pods created so far reach the cache, pods running and ready."""
        for obj in self.api.created:
            body = orjson.loads(orjson.dumps(obj))
            meta = body["metadata"]
            meta.update(uid=f"uid-{meta['name']}", resourceVersion="5")
            if body["kind"] == "ControllerRevision":
                self.put(mesh_pb2.KIND_CONTROLLER_REVISION, project_controller_revision(body))
                continue
            body["spec"]["nodeName"] = "node-1"
            body["status"] = {
                "phase": "Running",
                "conditions": [
                    {"type": "Ready", "status": "True", "lastTransitionTime": NOW},
                    {"type": "ContainersReady", "status": "True"},
                ],
            }
            self.pods[meta["name"]] = body
            self.put(mesh_pb2.KIND_POD, project_pod(body))
        self.api.created.clear()

    def pod_ready(self, name: str, *, ready: bool) -> None:
        body = orjson.loads(orjson.dumps(self.pods[name]))
        body["metadata"]["resourceVersion"] = "6"
        body["status"]["conditions"][0]["status"] = "True" if ready else "False"
        self.put(mesh_pb2.KIND_POD, project_pod(body), MODIFIED)

    async def round(self) -> None:
        await self.controller.reconcile(CloneSetKey(NS, "web"))
        await asyncio.sleep(0)

    def written(self) -> int:
        return len(self.api.statuses)

    def conditions(self) -> list[dict[str, Any]]:
        """``status.conditions`` as stored now (``kubectl get cloneset -o yaml``)."""
        return list(self.api.clone_set["status"].get("conditions") or [])


def failed(kind: str, message: str) -> dict[str, str]:
    return {"type": kind, "status": "True", "lastTransitionTime": NOW, "message": message}


async def test_a_refused_create_sets_failed_scale_until_creates_succeed() -> None:
    h = Harness(replicas=2)
    h.api.refuse_pods = 2
    await h.round()
    # First round: the first create of the slow start is refused. The status is written
    # (observedGeneration moved) with FailedScale, the API server's answer as its message.
    [status] = h.api.statuses
    assert status["observedGeneration"] == 1
    pod = status["conditions"][0]["message"].split('"')[1]
    assert h.conditions() == [failed("FailedScale", f'pods "{pod}" is forbidden: {QUOTA}')]

    h.watch()
    await h.round()
    # Refused again: nothing else moved, and the condition is already there: no write
    # (OpenKruise neither); the message still names the first refused pod.
    assert h.written() == 1
    assert h.api.refuse_pods == 0

    h.watch()
    await h.round()
    # The quota is raised: both pods are created, and FailedScale goes at once, though the
    # cache does not show the pods yet (no counter moved).
    assert h.written() == 2
    assert h.conditions() == []
    assert "conditions" not in h.api.clone_set["status"], "an empty list is left out"

    h.watch()
    h.show_created()
    await h.round()
    assert h.api.clone_set["status"]["replicas"] == 2
    assert h.conditions() == []


async def test_a_users_condition_survives_every_status_write() -> None:
    h = Harness(replicas=2)
    h.user_writes([USERS])
    h.watch()
    h.api.refuse_pods = 1
    await h.round()
    # The failure is merged in after the user's condition, which is written back whole.
    assert h.conditions()[0] == USERS
    assert [c["type"] for c in h.conditions()] == ["example.io/Audited", "FailedScale"]

    h.watch()
    await h.round()  # creates succeed: FailedScale goes, the user's stays
    assert h.conditions() == [USERS]

    h.watch()
    h.show_created()
    await h.round()  # a plain counter write (replicas 0 → 2)
    assert h.api.clone_set["status"]["replicas"] == 2
    assert h.conditions() == [USERS]
    assert h.written() == 3


async def test_a_condition_written_meanwhile_is_not_overwritten() -> None:
    h = Harness(replicas=2)
    await h.round()
    h.watch()
    h.show_created()
    await h.round()
    assert h.api.clone_set["status"]["readyReplicas"] == 2
    h.watch()
    # The user writes a condition; before the watch brings it, a pod turns unready and the
    # controller decides on the version it saw before.
    h.user_writes([USERS])
    h.pod_ready(sorted(h.pods)[0], ready=False)
    await h.round()
    # Its status update named the old resourceVersion: refused (Conflict), nothing lost.
    assert h.api.conflicts == 1
    assert h.conditions() == [USERS]
    h.watch()
    await h.round()  # decided again on the version with the user's condition
    assert h.api.clone_set["status"]["readyReplicas"] == 1
    assert h.conditions() == [USERS]


async def test_an_unreachable_budget_service_sets_failed_update_until_it_answers() -> None:
    budget = ScriptedBudget(answers=[errors.Unavailable("connection refused")])
    h = Harness(replicas=1, budget=budget)
    h.user_writes([USERS])
    h.watch()
    await h.round()
    h.watch()
    h.show_created()
    await h.round()
    assert h.conditions() == [USERS]
    [pod] = h.pods

    h.spec(image="nginx:2")
    h.watch()
    await h.round()  # a new revision; the update asks the budget service: unreachable
    assert h.conditions() == [
        USERS,
        failed(
            "FailedUpdate",
            f"the budget service could not be asked about pod {pod}: connection refused",
        ),
    ]

    h.watch()
    h.show_created()
    await h.round()  # it answers (allowed): the pod is marked for re-create
    assert h.conditions() == [USERS]
