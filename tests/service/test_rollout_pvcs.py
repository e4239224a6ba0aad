"""The CloneSet controller's shell with ``volumeClaimTemplates``: the claim writes it asks the
cluster API for, in order, around the pod writes.

An in-memory ``FakeCluster`` records each write; tests feed events as the Sync stream would
(the cache shows only what a test puts in it) and compare the recorded actions with the
expected ones (sample-controller's shape). What the shell adds to the pure decisions: a
pod's claims are created before it and a failed claim means no pod; a deleted pod's claims
go right after it, but not when the pod was already gone; claim expectations keep a claim
that was deleted but still shows in the cache from passing for an orphan.
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
from services.kit.projection import (
    project_clone_set,
    project_controller_revision,
    project_persistent_volume_claim,
    project_pod,
)
from services.rollout.controller import CloneSetKey, RolloutController

ADDED = mesh_pb2.WatchEvent.TYPE_ADDED
MODIFIED = mesh_pb2.WatchEvent.TYPE_MODIFIED
DELETED = mesh_pb2.WatchEvent.TYPE_DELETED
NS = "shop"
UID = "cs-uid"
INSTANCE = "apps.kruise.io/cloneset-instance-id"
DATA = {
    "metadata": {"name": "data"},
    "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
}
FIELDS = {
    mesh_pb2.KIND_CLONE_SET: "clone_set",
    mesh_pb2.KIND_POD: "pod",
    mesh_pb2.KIND_CONTROLLER_REVISION: "controller_revision",
    mesh_pb2.KIND_PERSISTENT_VOLUME_CLAIM: "persistent_volume_claim",
}


def clone_set_json(*, replicas: int, rv: str = "10") -> dict[str, Any]:
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
                "spec": {"containers": [{"name": "main", "image": "nginx:1"}]},
            },
            "updateStrategy": {"maxUnavailable": 1},
            "revisionHistoryLimit": 10,
            "volumeClaimTemplates": [DATA],
        },
    }


@dataclass
class FakeCluster:
    actions: list[tuple[str, str, str]] = field(default_factory=list)
    bodies: dict[str, dict[str, Any]] = field(default_factory=dict)
    fail_create: dict[str, errors.MeshError] = field(default_factory=dict)  # kind -> error
    fail_delete: dict[str, errors.MeshError] = field(default_factory=dict)

    async def create(self, ref: Ref, obj: dict[str, Any]) -> Written:
        self.actions.append(("create", ref.kind, ref.name))
        if ref.kind in self.fail_create:
            raise self.fail_create.pop(ref.kind)
        self.bodies[ref.name] = obj
        return Written(object=obj, resource_version="1", uid=f"uid-{ref.name}")

    async def patch(self, ref: Ref, **kw: Any) -> Written:
        self.actions.append(("patch", ref.kind, ref.name))
        return Written(object={}, resource_version="", uid="")

    async def delete(self, ref: Ref, *, resource_version: str = "", uid: str = "") -> None:
        self.actions.append(("delete", ref.kind, ref.name))
        if ref.kind in self.fail_delete:
            raise self.fail_delete.pop(ref.kind)

    async def update_status(
        self, ref: Ref, *, status: dict[str, Any], resource_version: str, uid: str = ""
    ) -> Written:
        return Written(object={}, resource_version=str(int(resource_version) + 1), uid=uid)

    async def record_event(
        self, ref: Ref, *, uid: str, type: str, reason: str, message: str
    ) -> None:
        self.actions.append(("event", reason, message))

    def writes(self, *kinds: str) -> list[tuple[str, str, str]]:
        """Creates and deletes of pods and claims, in order."""
        return [a for a in self.actions if a[0] in ("create", "delete") and a[1] in kinds]


class Harness:
    def __init__(self) -> None:
        self.cache = ObjectCache()
        self.cluster = FakeCluster()
        self.controller = RolloutController(
            cache=self.cache,
            cluster=self.cluster,
            budget=None,
            rng=random.Random(7),
            retry_s=0.05,
        )

    def put(self, kind: int, view: Any, type: int = ADDED) -> None:
        obj = views_pb2.ObjectView()
        getattr(obj, FIELDS[kind]).CopyFrom(view)
        event = mesh_pb2.WatchEvent(type=type, kind=kind, object=obj)  # type: ignore[arg-type]
        self.cache.apply(event)
        self.controller.on_event(event)

    def clone_set(self, **kw: Any) -> None:
        self.put(mesh_pb2.KIND_CLONE_SET, project_clone_set(clone_set_json(**kw)))

    def stored(self, name: str, *, type: int = ADDED, deleting: bool = False) -> None:
        """Show the object the controller created as ``name`` in the cache (as the watch would)."""
        body = orjson.loads(orjson.dumps(self.cluster.bodies[name]))
        meta = body["metadata"]
        meta.update(uid=f"uid-{name}", resourceVersion="5")
        if deleting:
            meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
        if body["kind"] == "ControllerRevision":
            self.put(mesh_pb2.KIND_CONTROLLER_REVISION, project_controller_revision(body), type)
        elif body["kind"] == "PersistentVolumeClaim":
            body["status"] = {"phase": "Bound"}
            self.put(
                mesh_pb2.KIND_PERSISTENT_VOLUME_CLAIM, project_persistent_volume_claim(body), type
            )
        else:
            body["status"] = {
                "phase": "Running",
                "conditions": [
                    {
                        "type": "Ready",
                        "status": "True",
                        "lastTransitionTime": "2026-01-01T00:00:00Z",
                    }
                ],
            }
            body["spec"]["nodeName"] = "node-1"
            self.put(mesh_pb2.KIND_POD, project_pod(body), type)

    def created(self, kind: str) -> list[str]:
        return [a[2] for a in self.cluster.actions if a[:2] == ("create", kind)]

    async def round(self) -> None:
        await self.controller.reconcile(CloneSetKey(NS, "web"))
        await asyncio.sleep(0)


async def _start(h: Harness, replicas: int) -> list[str]:
    """A CloneSet whose revision, pods and claims are all in the cache; returns its pods."""
    h.clone_set(replicas=replicas)
    await h.round()
    for kind in ("ControllerRevision", "PersistentVolumeClaim", "Pod"):
        for name in h.created(kind):
            h.stored(name)
    pods = h.created("Pod")
    await h.round()  # sees its creates: nothing left expected
    h.cluster.actions.clear()
    return pods


async def test_each_pod_gets_its_claim_created_before_it() -> None:
    h = Harness()
    h.clone_set(replicas=2)
    await h.round()
    writes = h.cluster.writes("Pod", "PersistentVolumeClaim")
    pods = h.created("Pod")
    assert len(pods) == 2
    ids = [p.removeprefix("web-") for p in pods]
    assert writes == [
        ("create", "PersistentVolumeClaim", f"data-web-{ids[0]}"),
        ("create", "Pod", pods[0]),
        ("create", "PersistentVolumeClaim", f"data-web-{ids[1]}"),
        ("create", "Pod", pods[1]),
    ]
    claim = h.cluster.bodies[f"data-web-{ids[0]}"]
    assert claim["metadata"]["labels"] == {"app": "web", INSTANCE: ids[0]}
    (owner,) = claim["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["uid"], owner["controller"]) == ("CloneSet", UID, True)
    assert claim["spec"] == DATA["spec"]
    pod = h.cluster.bodies[pods[0]]
    assert pod["spec"]["volumes"] == [
        {"name": "data", "persistentVolumeClaim": {"claimName": f"data-web-{ids[0]}"}}
    ]


async def test_claim_creates_not_yet_in_the_cache_hold_the_next_scale() -> None:
    h = Harness()
    h.clone_set(replicas=1)
    await h.round()
    (pod,) = h.created("Pod")
    h.stored(pod)  # the pod shows, its claim does not yet
    h.cluster.actions.clear()
    h.clone_set(replicas=2, rv="11")
    await h.round()
    assert h.cluster.writes("Pod", "PersistentVolumeClaim") == []
    h.stored(f"data-{pod}")
    await h.round()
    assert len(h.created("Pod")) == 1


async def test_a_pod_deleted_by_someone_else_is_replaced_on_its_claim() -> None:
    h = Harness()
    first, second = await _start(h, 2)
    h.stored(second, type=DELETED)  # kubectl delete pod: the claim stays
    await h.round()
    assert h.cluster.writes("Pod", "PersistentVolumeClaim") == [("create", "Pod", second)]
    assert h.cluster.bodies[second]["spec"]["volumes"][0]["persistentVolumeClaim"] == {
        "claimName": f"data-{second}"
    }


async def test_the_replacement_waits_while_the_old_pod_terminates() -> None:
    h = Harness()
    first, second = await _start(h, 2)
    h.stored(second, type=MODIFIED, deleting=True)
    await h.round()
    assert h.cluster.writes("Pod", "PersistentVolumeClaim") == []
    h.stored(second, type=DELETED)  # its deletion requeues the CloneSet
    assert h.controller.queue.pending() >= 1
    await h.round()
    assert h.cluster.writes("Pod", "PersistentVolumeClaim") == [("create", "Pod", second)]


async def test_scale_in_deletes_the_victims_claims_and_waits_to_see_them_go() -> None:
    h = Harness()
    pods = await _start(h, 2)
    h.clone_set(replicas=1, rv="11")
    await h.round()
    (victim,) = [a[2] for a in h.cluster.writes("Pod") if a[0] == "delete"]
    assert h.cluster.writes("Pod", "PersistentVolumeClaim") == [
        ("delete", "Pod", victim),
        ("delete", "PersistentVolumeClaim", f"data-{victim}"),
    ]
    assert ("event", "SuccessfulDelete", f"succeed to delete pod {victim}") in h.cluster.actions
    # The pod's deletion shows, the claim's does not yet: it must not pass for an orphan.
    h.stored(victim, type=DELETED)
    h.cluster.actions.clear()
    h.clone_set(replicas=2, rv="12")
    await h.round()
    assert h.cluster.writes("Pod", "PersistentVolumeClaim") == []
    h.stored(f"data-{victim}", type=DELETED)
    await h.round()
    (new,) = h.created("Pod")
    assert new not in pods
    assert h.created("PersistentVolumeClaim") == [f"data-{new}"]


async def test_a_failed_claim_create_creates_no_pod_and_is_retried() -> None:
    h = Harness()
    h.cluster.fail_create = {"PersistentVolumeClaim": errors.Forbidden("quota exceeded")}
    h.clone_set(replicas=1)
    await h.round()
    assert h.created("Pod") == []
    (event,) = [a for a in h.cluster.actions if a[:2] == ("event", "FailedCreate")]
    assert event[2].startswith("failed to create pvc data-web-")
    assert "quota exceeded" in event[2]
    h.cluster.actions.clear()
    await h.round()  # nothing expected is left over: the retry goes ahead
    assert len(h.created("Pod")) == 1


async def test_a_pod_already_gone_when_deleted_keeps_its_claims() -> None:
    h = Harness()
    await _start(h, 2)
    h.cluster.fail_delete = {"Pod": errors.NotFound("pods not found")}
    h.clone_set(replicas=1, rv="11")
    await h.round()
    deletes = [a for a in h.cluster.writes("Pod", "PersistentVolumeClaim") if a[0] == "delete"]
    assert [a[1] for a in deletes] == ["Pod"]


async def test_a_failed_claim_delete_is_reported_and_retried() -> None:
    h = Harness()
    await _start(h, 2)
    h.cluster.fail_delete = {"PersistentVolumeClaim": errors.Unavailable("gateway down")}
    h.clone_set(replicas=1, rv="11")
    await h.round()
    (event,) = [a for a in h.cluster.actions if a[:2] == ("event", "FailedDelete")]
    assert event[2].startswith("failed to delete pvc data-web-")
    assert h.controller.queue.pending() >= 1
