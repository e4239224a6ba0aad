"""PersistentPodState end to end (SPEC 1.6 scenarios 13-20), through the Kubernetes API only.

The sandbox's StatefulSet controller creates and re-creates the pods, its scheduler places
them, the placement service records them and injects the recorded topology through the
gateway's webhook. Without the injection the scheduler would spread a re-created pod to the
emptiest node; the tests assert where each pod lands.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import aiohttp
import orjson
import pytest

from kruise.placement.v1 import placement_pb2, placement_pb2_grpc
from services.cli.local import LocalMesh
from services.gateway.kube.client import KubeClient
from services.kit import errors
from tests.e2e.conftest import ensure_namespace, eventually, owner

pytestmark = pytest.mark.e2e

OS = "kubernetes.io/os"
HOSTNAME = "kubernetes.io/hostname"
INJECTED = "kruise.io/injected-persistent-pod-state"
AUTO = "kruise.io/auto-generate-persistent-pod-state"
REQUIRED = "kruise.io/required-persistent-topology"
PREFERRED = "kruise.io/preferred-persistent-topology"
NS = "pps-e2e"


def sts_body(name: str, replicas: int, annotations: dict[str, str]) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": name, "annotations": annotations},
        "spec": {
            "replicas": replicas,
            "serviceName": name,
            "podManagementPolicy": "Parallel",
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "main", "image": "nginx:1.27"}]},
            },
        },
    }


def filler_pod(node: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": f"filler-{node}", "labels": {"app": "filler"}},
        "spec": {"nodeName": node, "containers": [{"name": "main", "image": "pause:3.9"}]},
    }


class Api:
    def __init__(self, kube: KubeClient, namespace: str) -> None:
        self.kube = kube
        self.ns = namespace

    def _path(self, resource: str, name: str = "") -> str:
        base = {
            "statefulsets": f"/apis/apps/v1/namespaces/{self.ns}/statefulsets",
            "pps": f"/apis/apps.kruise.io/v1alpha1/namespaces/{self.ns}/persistentpodstates",
            "pods": f"/api/v1/namespaces/{self.ns}/pods",
            "nodes": "/api/v1/nodes",
        }[resource]
        return f"{base}/{name}" if name else base

    async def create(self, resource: str, body: dict[str, Any]) -> dict[str, Any]:
        return await self.kube.request_json("POST", self._path(resource), body=orjson.dumps(body))

    async def get(self, resource: str, name: str) -> dict[str, Any] | None:
        try:
            return await self.kube.request_json("GET", self._path(resource, name))
        except errors.NotFound:
            return None

    async def merge(self, resource: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        return await self.kube.request_json(
            "PATCH",
            self._path(resource, name),
            body=orjson.dumps(patch),
            content_type="application/merge-patch+json",
        )

    async def delete(self, resource: str, name: str) -> None:
        await self.kube.request("DELETE", self._path(resource, name))

    async def pods(self, app: str) -> list[dict[str, Any]]:
        listed = await self.kube.request_json(
            "GET", self._path("pods") + f"?labelSelector=app%3D{app}"
        )
        return listed["items"]

    async def node_labels(self) -> dict[str, dict[str, str]]:
        listed = await self.kube.request_json("GET", self._path("nodes"))
        return {n["metadata"]["name"]: n["metadata"].get("labels", {}) for n in listed["items"]}

    async def pod_states(self, name: str) -> dict[str, Any] | None:
        pps = await self.get("pps", name)
        return None if pps is None else (pps.get("status") or {}).get("podStates") or {}


def ready(pod: dict[str, Any]) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return pod["metadata"].get("deletionTimestamp") is None and any(
        c.get("type") == "Ready" and c.get("status") == "True" for c in conditions
    )


async def all_ready(api: Api, app: str, count: int, *, revision: str = "") -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []

    async def check() -> bool:
        nonlocal found
        found = [p for p in await api.pods(app) if ready(p)]
        if revision:
            found = [
                p
                for p in found
                if p["metadata"]["labels"].get("controller-revision-hash") == revision
            ]
        total = len(await api.pods(app))
        return len(found) == count and total == count

    await eventually(f"{count} ready pods of {app}", check, timeout=30)
    return found


@pytest.fixture(scope="module")
def api(kube: KubeClient) -> Api:
    return Api(kube, NS)


ANNOTATIONS = {AUTO: "true", REQUIRED: OS, PREFERRED: HOSTNAME}


@pytest.mark.asyncio(loop_scope="module")
async def test_persistent_pod_state_lifecycle(mesh: LocalMesh, kube: KubeClient, api: Api) -> None:
    await ensure_namespace(kube, NS)
    await api.create("statefulsets", sts_body("echoserver", 5, dict(ANNOTATIONS)))

    # 13: generated, named like the StatefulSet, five records matching the nodes.
    await eventually("generated PersistentPodState", lambda: _exists(api, "echoserver"))
    pps = await api.get("pps", "echoserver")
    assert pps is not None
    owner = pps["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["controller"]) == (
        "StatefulSet",
        "echoserver",
        True,
    )
    pods = await all_ready(api, "echoserver", 5)
    await eventually("5 records", lambda: _count(api, "echoserver", 5))
    nodes = await api.node_labels()
    states = await api.pod_states("echoserver")
    assert states is not None
    for pod in pods:
        entry = states[pod["metadata"]["name"]]
        node = pod["spec"]["nodeName"]
        assert entry["nodeName"] == node
        assert entry["nodeTopologyLabels"] == {OS: nodes[node][OS], HOSTNAME: nodes[node][HOSTNAME]}
        assert entry["podIP"] == pod["status"]["podIP"]
    before = {
        name: (s["nodeName"], s["nodeTopologyLabels"], s["podIP"]) for name, s in states.items()
    }

    # 14: an image update re-creates every pod; each comes back to its node and IP. One
    # filler pod on each of those nodes makes the empty node the scheduler's own choice, so
    # only the injected preference brings a pod back.
    for node in sorted({p["spec"]["nodeName"] for p in pods}):
        await api.create("pods", filler_pod(node))
    await all_ready(api, "filler", len({p["spec"]["nodeName"] for p in pods}))
    old_revision = (await api.get("statefulsets", "echoserver") or {})["status"]["updateRevision"]
    image = {"containers": [{"name": "main", "image": "nginx:1.28"}]}
    await api.merge("statefulsets", "echoserver", {"spec": {"template": {"spec": image}}})

    async def updated() -> bool:
        current = await api.get("statefulsets", "echoserver") or {}
        status = current.get("status") or {}
        return (
            status.get("observedGeneration") == current["metadata"]["generation"]
            and status.get("updateRevision") != old_revision
            and status.get("currentRevision") == status.get("updateRevision")
            and status.get("updatedReplicas") == 5
            and status.get("readyReplicas") == 5
        )

    await eventually("rolling update done", updated, timeout=60)
    pods = await all_ready(api, "echoserver", 5)
    placed = {p["metadata"]["name"]: (p["spec"]["nodeName"], p["status"]["podIP"]) for p in pods}
    assert placed == {name: (node, ip) for name, (node, _, ip) in before.items()}
    for pod in pods:
        assert pod["metadata"]["annotations"][INJECTED] == "echoserver"
        assert pod["spec"]["nodeSelector"] == {OS: "linux"}
    assert {
        n: (s["nodeName"], s["nodeTopologyLabels"], s["podIP"])
        for n, s in (await api.pod_states("echoserver") or {}).items()
    } == before

    # 15: scale 5 -> 1 keeps one record; 1 -> 5 has five again.
    await api.merge("statefulsets", "echoserver", {"spec": {"replicas": 1}})
    await eventually("1 record after scale-in", lambda: _count(api, "echoserver", 1))
    await api.merge("statefulsets", "echoserver", {"spec": {"replicas": 5}})
    await all_ready(api, "echoserver", 5)
    await eventually("5 records after scale-out", lambda: _count(api, "echoserver", 5))
    recorded = await api.pod_states("echoserver")

    # 16: the annotation goes, the object goes; it comes back with the same records.
    await api.merge("statefulsets", "echoserver", {"metadata": {"annotations": {AUTO: None}}})
    await eventually("PersistentPodState deleted", lambda: _gone(api, "echoserver"))
    await api.merge("statefulsets", "echoserver", {"metadata": {"annotations": {AUTO: "true"}}})
    await eventually("PersistentPodState generated again", lambda: _count(api, "echoserver", 5))
    assert await api.pod_states("echoserver") == recorded

    # 17: the required annotation goes; spec follows and every record has one label.
    await api.merge("statefulsets", "echoserver", {"metadata": {"annotations": {REQUIRED: None}}})

    async def one_label() -> bool:
        pps = await api.get("pps", "echoserver")
        if pps is None or "requiredPersistentTopology" in pps["spec"]:
            return False
        states = (pps.get("status") or {}).get("podStates") or {}
        return len(states) == 5 and all(
            set(s["nodeTopologyLabels"]) == {HOSTNAME} for s in states.values()
        )

    await eventually("records re-made with one label", one_label)

    # 18: WhenDeleted keeps every record through a scale-in.
    await api.merge(
        "pps", "echoserver", {"spec": {"persistentPodStateRetentionPolicy": "WhenDeleted"}}
    )
    await api.merge("statefulsets", "echoserver", {"spec": {"replicas": 1}})
    await all_ready(api, "echoserver", 1)
    # Pruning would follow the pods' deletions: the records must stay 5 for a while after.
    for _ in range(10):
        states = await api.pod_states("echoserver")
        assert states is not None and len(states) == 5
        await asyncio.sleep(0.2)

    # 19: a second PersistentPodState for the same StatefulSet is refused by the webhook.
    second = {
        "apiVersion": "apps.kruise.io/v1alpha1",
        "kind": "PersistentPodState",
        "metadata": {"name": "pps-test"},
        "spec": {
            "targetRef": {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "echoserver"},
            "requiredPersistentTopology": {"nodeTopologyKeys": [HOSTNAME]},
        },
    }
    with pytest.raises(errors.Invalid) as refused:
        await api.create("pps", second)
    assert "in conflict with other PersistentPodState echoserver" in str(refused.value)

    # 20: deleting the StatefulSet removes its PersistentPodState (ownerReference GC).
    await api.delete("statefulsets", "echoserver")
    await eventually("PersistentPodState collected", lambda: _gone(api, "echoserver"))


async def _exists(api: Api, name: str) -> bool:
    return await api.get("pps", name) is not None


async def _gone(api: Api, name: str) -> bool:
    return await api.get("pps", name) is None


async def _count(api: Api, name: str, count: int) -> bool:
    states = await api.pod_states(name)
    return states is not None and len(states) == count


@pytest.mark.asyncio(loop_scope="module")
async def test_each_pps_is_recorded_once_by_the_replica_that_owns_its_namespace(
    mesh: LocalMesh, kube: KubeClient
) -> None:
    # Three namespaces per replica: replica ports differ per run, so pick names by owner.
    owners: dict[str, str] = {}
    taken: Counter[str] = Counter()
    for i in range(200):
        ns = f"pps-spread-{i}"
        who = owner(mesh, "placement", ns)
        if taken[who] < 3:
            owners[ns] = who
            taken[who] += 1
    namespaces = list(owners)
    assert len(set(owners.values())) == 2 and len(namespaces) == 6
    for ns in namespaces:
        await ensure_namespace(kube, ns)
        await Api(kube, ns).create(
            "statefulsets", sts_body("db", 2, {AUTO: "true", PREFERRED: HOSTNAME})
        )
    for ns in namespaces:
        await eventually(f"{ns}/db recorded", lambda ns=ns: _count(Api(kube, ns), "db", 2))
    for ns, owning in owners.items():
        for address in mesh.addresses["placement"]:
            async with mesh.replica_channel(address) as channel:
                answer = await placement_pb2_grpc.PlacementServiceStub(channel).ListPodStates(
                    placement_pb2.ListPodStatesRequest(namespace=ns), timeout=5
                )
            pods = {e.pod for e in answer.entries}
            assert pods == ({"db-0", "db-1"} if address == owning else set()), (ns, address)


@pytest.mark.asyncio(loop_scope="module")
async def test_bad_persistent_pod_states_are_refused_or_left_empty(kube: KubeClient) -> None:
    api = Api(kube, "pps-bad")
    await ensure_namespace(kube, "pps-bad")

    def body(name: str, target: dict[str, str]) -> dict[str, Any]:
        return {
            "apiVersion": "apps.kruise.io/v1alpha1",
            "kind": "PersistentPodState",
            "metadata": {"name": name},
            "spec": {
                "targetRef": target,
                "preferredPersistentTopology": [
                    {"weight": 10, "preference": {"nodeTopologyKeys": [HOSTNAME]}}
                ],
            },
        }

    with pytest.raises(errors.Invalid) as wrong_kind:
        await api.create(
            "pps", body("dep", {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"})
        )
    assert "spec.targetRef" in str(wrong_kind.value)
    assert "TargetReference.Kind must be StatefulSet" in str(wrong_kind.value)

    # A target that does not exist (yet) is admitted: its status says so by staying empty.
    await api.create(
        "pps", body("later", {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "not-yet"})
    )

    async def observed() -> bool:
        pps = await api.get("pps", "later")
        status = (pps or {}).get("status") or {}
        return status.get("observedGeneration") == 1 and not status.get("podStates")

    await eventually("status written for a missing target", observed)
    await api.create("statefulsets", sts_body("not-yet", 1, {}))
    await eventually("recorded once the target exists", lambda: _count(api, "later", 1))


@pytest.mark.asyncio(loop_scope="module")
async def test_a_pod_that_cannot_return_is_rerecorded_and_reported(
    mesh: LocalMesh, kube: KubeClient
) -> None:
    """Beyond OpenKruise: the recorded node is cordoned, so the re-created pod lands
    elsewhere; its record follows it and a Warning Event on the pod says it moved."""
    ns = "pps-moved"
    api = Api(kube, ns)
    await ensure_namespace(kube, ns)
    await api.create("statefulsets", sts_body("mover", 2, {AUTO: "true", PREFERRED: HOSTNAME}))
    await eventually("2 records", lambda: _count(api, "mover", 2))
    before = (await api.pod_states("mover") or {})["mover-1"]
    node = before["nodeName"]
    await kube.request(
        "PATCH",
        f"/api/v1/nodes/{node}",
        body=b'{"spec":{"unschedulable":true}}',
        content_type="application/merge-patch+json",
    )
    try:
        old = await api.get("pods", "mover-1") or {}
        await api.delete("pods", "mover-1")

        async def moved() -> bool:
            pod = await api.get("pods", "mover-1")
            if pod is None or pod["metadata"]["uid"] == old["metadata"]["uid"] or not ready(pod):
                return False
            entry = (await api.pod_states("mover") or {}).get("mover-1") or {}
            return entry.get("nodeName") == pod["spec"]["nodeName"] != node

        await eventually("mover-1 re-recorded on another node", moved)
        pod = await api.get("pods", "mover-1") or {}

        async def reported() -> bool:
            events = await kube.request_json("GET", f"/api/v1/namespaces/{ns}/events")
            return any(
                e.get("reason") == "PersistentPodStateNodeChanged"
                and e["involvedObject"].get("name") == "mover-1"
                and e["involvedObject"].get("uid") == pod["metadata"]["uid"]
                and node in e.get("message", "")
                for e in events["items"]
            )

        await eventually("a NodeChanged Event on the pod", reported)
        moves = 0.0
        async with aiohttp.ClientSession() as http:
            for name, proc in mesh.procs.items():
                if name.startswith("placement"):
                    url = f"http://127.0.0.1:{proc.ready['ops_port']}/metrics"
                    async with http.get(url) as r:
                        for line in (await r.text()).splitlines():
                            if line.startswith(
                                'kruise_mesh_placement_pod_moves_total{reason="NodeChanged"}'
                            ):
                                moves += float(line.rsplit(" ", 1)[1])
        assert moves >= 1, "the move is counted"
    finally:
        await kube.request(
            "PATCH",
            f"/api/v1/nodes/{node}",
            body=b'{"spec":{"unschedulable":false}}',
            content_type="application/merge-patch+json",
        )
