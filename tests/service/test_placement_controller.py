"""The placement controller's shell: events in, the writes it asks the cluster API for out.

An in-memory ``FakeCluster`` records each write; tests feed events as the Sync
stream would and compare the recorded actions with the expected ones
(sample-controller's shape).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import pytest

from kruise.common.v1 import mesh_pb2, views_pb2
from services.kit import errors
from services.kit.cache import ObjectCache
from services.kit.cluster import Ref, Written
from services.placement.controller import GenerateKey, PlacementController, PpsKey
from services.placement.generation import (
    AUTO_GENERATE,
    PREFERRED_TOPOLOGY,
    REQUIRED_TOPOLOGY,
    spec_of,
)
from tests.unit.placement_builders import HOSTNAME, pod, pps, state

ADDED = mesh_pb2.WatchEvent.TYPE_ADDED
MODIFIED = mesh_pb2.WatchEvent.TYPE_MODIFIED
DELETED = mesh_pb2.WatchEvent.TYPE_DELETED


@dataclass
class FakeCluster:
    cache: ObjectCache
    actions: list[tuple[Any, ...]] = field(default_factory=list)
    fail_next: list[errors.MeshError] = field(default_factory=list)

    def _maybe_fail(self) -> None:
        if self.fail_next:
            raise self.fail_next.pop(0)

    async def update_status(self, ref: Ref, *, status, resource_version, uid=""):
        self.actions.append(("status", ref.name, resource_version, status))
        self._maybe_fail()
        # As the API server: the stored object, its resourceVersion moved on.
        stored = self.cache.get(mesh_pb2.KIND_PERSISTENT_POD_STATE, ref.namespace, ref.name)
        if stored is None:
            return Written(object={}, resource_version="", uid=uid)
        next_rv = str(int(resource_version) + 1)
        obj = {
            "metadata": {
                "namespace": ref.namespace,
                "name": ref.name,
                "uid": stored.meta.uid,
                "resourceVersion": next_rv,
                "generation": stored.meta.generation,
            },
            "spec": spec_of(stored),
            "status": status,
        }
        return Written(object=obj, resource_version=next_rv, uid=uid)

    async def create(self, ref: Ref, obj):
        self.actions.append(("create", ref.name, obj["spec"]))
        self._maybe_fail()
        return Written(object=obj, resource_version="1", uid="new")

    async def patch(
        self, ref: Ref, *, patch, kind="merge", resource_version="", uid="", subresource=""
    ):
        self.actions.append(("patch", ref.name, resource_version, patch))
        self._maybe_fail()
        return Written(object={}, resource_version="2", uid="")

    async def delete(self, ref: Ref, *, resource_version="", uid=""):
        self.actions.append(("delete", ref.name, uid))
        self._maybe_fail()

    async def record_event(self, ref: Ref, *, uid, type, reason, message):
        self.actions.append(("event", ref.kind, ref.name, type, reason))


def event(kind: int, view: Any, type: int = ADDED) -> mesh_pb2.WatchEvent:
    out = mesh_pb2.WatchEvent(type=type, kind=kind)
    field_name = {
        mesh_pb2.KIND_POD: "pod",
        mesh_pb2.KIND_NODE: "node",
        mesh_pb2.KIND_WORKLOAD: "workload",
        mesh_pb2.KIND_PERSISTENT_POD_STATE: "persistent_pod_state",
    }[kind]
    getattr(out.object, field_name).CopyFrom(view)
    return out


def node(name: str, **labels: str) -> views_pb2.NodeView:
    view = views_pb2.NodeView(ready=True)
    view.meta.name = name
    view.meta.labels.update({HOSTNAME: name, **labels})
    return view


def sts(name: str = "web", replicas: int = 3, uid: str = "sts-uid", **annotations: str):
    view = views_pb2.WorkloadView(api_version="apps/v1", kind="StatefulSet", spec_replicas=replicas)
    view.meta.namespace = "ns"
    view.meta.name = name
    view.meta.uid = uid
    view.meta.annotations.update(annotations)
    return view


def owned_pod(i: int, *, node_name: str, ip: str, ready: bool = True, uid: str = "sts-uid"):
    view = pod(f"web-{i}", node=node_name, ip=ip, ready=ready)
    view.meta.uid = f"pod-{i}-{ip}"
    view.meta.owner_references.add(
        api_version="apps/v1", kind="StatefulSet", name="web", uid=uid, controller=True
    )
    return view


class Harness:
    def __init__(self) -> None:
        self.cache = ObjectCache()
        self.cluster = FakeCluster(self.cache)
        self.controller = PlacementController(cache=self.cache, cluster=self.cluster)

    def seed(self, *events: mesh_pb2.WatchEvent) -> None:
        """A snapshot: the cache is filled, then the controller resyncs."""
        for e in events:
            self.cache.apply(e)
        self.controller.on_snapshot()

    async def indexed(self) -> None:
        await self.controller.shell.wait_indexed()

    def feed(self, *events: mesh_pb2.WatchEvent) -> None:
        for e in events:
            self.cache.apply(e)
            self.controller.on_event(e)

    async def drain(self) -> list[tuple[Any, ...]]:
        """Reconcile everything queued (no workers: one key at a time, generations first)."""
        await self.indexed()
        for queue in (self.controller.generations, self.controller.records):
            while len(queue):
                key = await queue.get()
                try:
                    await self.controller.reconcile(key)
                finally:
                    queue.done(key)
        await asyncio.sleep(0)  # let background Events be recorded
        await asyncio.sleep(0)
        actions, self.cluster.actions = self.cluster.actions, []
        return actions


PPS = mesh_pb2.KIND_PERSISTENT_POD_STATE
NODES = [event(mesh_pb2.KIND_NODE, node(f"node-{i}")) for i in range(3)]


def web_pps(**kw: Any) -> views_pb2.PersistentPodStateView:
    view = pps("web", target=("apps/v1", "StatefulSet", "web"), preferred=[(100, [HOSTNAME])], **kw)
    view.meta.uid = "pps-uid"
    return view


async def test_snapshot_records_ready_pods_once_and_then_starts_from_what_it_wrote():
    h = Harness()
    h.seed(
        *NODES,
        event(mesh_pb2.KIND_WORKLOAD, sts()),
        event(PPS, web_pps()),
        *[
            event(mesh_pb2.KIND_POD, owned_pod(i, node_name=f"node-{i}", ip=f"10.0.{i}.2"))
            for i in range(3)
        ],
    )
    actions = await h.drain()
    assert actions == [
        (
            "status",
            "web",
            "10",
            {
                "observedGeneration": 1,
                "podStates": {
                    f"web-{i}": {
                        "nodeName": f"node-{i}",
                        "nodeTopologyLabels": {HOSTNAME: f"node-{i}"},
                        "podIP": f"10.0.{i}.2",
                    }
                    for i in range(3)
                },
            },
        )
    ]
    # A pod event arrives before the status write's own event: nothing to write (the
    # decision starts from the object the write returned, not from the stale cache) ...
    h.feed(event(mesh_pb2.KIND_POD, owned_pod(0, node_name="node-0", ip="10.0.0.2"), MODIFIED))
    assert await h.drain() == []
    # ... and a real change is written on the returned resourceVersion, not on rv 10.
    h.feed(event(mesh_pb2.KIND_POD, owned_pod(1, node_name="node-2", ip="10.0.2.9"), MODIFIED))
    actions = await h.drain()
    assert (actions[0][0], actions[0][2]) == ("status", "11")


async def test_recreated_pod_on_another_node_is_rerecorded_with_an_event():
    h = Harness()
    recorded = {
        f"web-{i}": state(f"node-{i}", f"10.0.{i}.2", **{HOSTNAME: f"node-{i}"}) for i in range(3)
    }
    h.seed(
        *NODES,
        event(mesh_pb2.KIND_WORKLOAD, sts()),
        event(PPS, web_pps(states=recorded)),
        *[
            event(mesh_pb2.KIND_POD, owned_pod(i, node_name=f"node-{i}", ip=f"10.0.{i}.2"))
            for i in range(3)
        ],
    )
    assert await h.drain() == [], "everything already recorded"
    h.feed(event(mesh_pb2.KIND_POD, owned_pod(1, node_name="node-2", ip="10.0.2.9"), MODIFIED))
    actions = await h.drain()
    assert actions[0][0] == "status"
    assert actions[0][3]["podStates"]["web-1"] == {
        "nodeName": "node-2",
        "nodeTopologyLabels": {HOSTNAME: "node-2"},
        "podIP": "10.0.2.9",
    }
    assert actions[1] == ("event", "Pod", "web-1", "Warning", "PersistentPodStateNodeChanged")


async def test_conflict_requeues_and_the_newer_object_is_decided_again():
    h = Harness()
    h.cluster.fail_next.append(errors.Conflict("the object has been modified"))
    h.controller.retry_s = 0.0
    h.seed(
        *NODES,
        event(mesh_pb2.KIND_WORKLOAD, sts(replicas=1)),
        event(PPS, web_pps()),
        event(mesh_pb2.KIND_POD, owned_pod(0, node_name="node-0", ip="10.0.0.2")),
    )
    actions = await h.drain()
    assert [(a[0], a[2]) for a in actions] == [("status", "10"), ("status", "10")]


async def test_pending_pods_trigger_nothing():
    h = Harness()
    h.seed(
        *NODES,
        event(mesh_pb2.KIND_WORKLOAD, sts()),
        event(PPS, web_pps(states={"web-0": state("node-0", **{HOSTNAME: "node-0"})})),
    )
    await h.drain()
    h.feed(event(mesh_pb2.KIND_POD, owned_pod(0, node_name="", ip="", ready=False)))
    assert h.controller.pending() == 0


async def test_workload_deleted_clears_records():
    h = Harness()
    recorded = {"web-0": state("node-0", **{HOSTNAME: "node-0"})}
    h.seed(*NODES, event(mesh_pb2.KIND_WORKLOAD, sts()), event(PPS, web_pps(states=recorded)))
    assert await h.drain() == []
    h.feed(event(mesh_pb2.KIND_WORKLOAD, sts(), DELETED))
    assert await h.drain() == [("status", "web", "10", {"observedGeneration": 1})]


ASKING = {AUTO_GENERATE: "true", REQUIRED_TOPOLOGY: "", PREFERRED_TOPOLOGY: HOSTNAME}


async def test_generation_follows_annotation_edges_only():
    h = Harness()
    h.seed(*NODES)
    h.feed(event(mesh_pb2.KIND_WORKLOAD, sts(**ASKING)))
    actions = await h.drain()
    assert actions[0][:2] == ("create", "web")
    assert actions[1] == ("event", "StatefulSet", "web", "Normal", "PersistentPodStateCreated")
    # The generated object arrives; a status-only workload update asks for nothing.
    generated = web_pps()
    generated.meta.owner_references.add(
        api_version="apps/v1", kind="StatefulSet", name="web", uid="sts-uid", controller=True
    )
    h.feed(event(PPS, generated))
    h.feed(event(mesh_pb2.KIND_WORKLOAD, sts(**ASKING), MODIFIED))
    assert [a[0] for a in await h.drain()] == []
    # The annotation goes: the object goes.
    h.feed(event(mesh_pb2.KIND_WORKLOAD, sts(), MODIFIED))
    assert (await h.drain())[0] == ("delete", "web", "pps-uid")


async def test_user_pps_named_like_a_workload_survives_status_updates():
    h = Harness()
    user = web_pps()  # no ownerReference: a user made it
    h.seed(*NODES, event(mesh_pb2.KIND_WORKLOAD, sts()), event(PPS, user))
    assert [a for a in await h.drain() if a[0] == "delete"] == [], "the snapshot keeps it"
    for _ in range(3):
        h.feed(event(mesh_pb2.KIND_WORKLOAD, sts(), MODIFIED))
    assert [a for a in await h.drain() if a[0] == "delete"] == []


async def test_snapshot_deletes_a_generated_pps_whose_workload_stopped_asking():
    h = Harness()
    generated = web_pps()
    generated.meta.owner_references.add(
        api_version="apps/v1", kind="StatefulSet", name="web", uid="sts-uid", controller=True
    )
    h.seed(*NODES, event(mesh_pb2.KIND_WORKLOAD, sts()), event(PPS, generated))
    assert ("delete", "web", "pps-uid") in await h.drain()


async def test_refused_generation_becomes_a_warning_event_not_a_retry_loop():
    h = Harness()
    h.cluster.fail_next.append(errors.Invalid("another PersistentPodState targets web"))
    h.seed(*NODES, event(mesh_pb2.KIND_WORKLOAD, sts(**ASKING)))
    actions = await h.drain()
    assert [a[0] for a in actions] == ["create", "event"]
    assert actions[1][4] == "PersistentPodStateRefused"
    assert h.controller.pending() == 0


async def test_unsupported_target_kind_is_ignored_without_writes(caplog):
    h = Harness()
    bad = pps("dep", target=("apps/v1", "Deployment", "web"), preferred=[(1, [HOSTNAME])])
    h.seed(*NODES, event(PPS, bad))
    assert await h.drain() == []
    assert "does not support" in caplog.text


@pytest.mark.parametrize("key", [PpsKey("ns", "missing"), GenerateKey("ns", "apps/StatefulSet/x")])
async def test_keys_for_objects_gone_from_the_cache_are_dropped(key):
    h = Harness()
    await h.controller.reconcile(key)
    assert h.cluster.actions == []
