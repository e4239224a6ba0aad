"""The PersistentPodState step of the demo: a re-created pod goes back to its node and IP.

Through the Kubernetes API only: a StatefulSet with OpenKruise's auto-generation
annotations gets its PersistentPodState from the placement service; a pod is
deleted after a busy pod joined its node (so the scheduler alone would choose
another node); the StatefulSet controller re-creates it, the placement webhook
injects the recorded topology, and the pod comes back where it was.
"""

from __future__ import annotations

from typing import Any

import orjson
from rich.console import Console
from rich.table import Table

from kruise.placement.v1 import placement_pb2, placement_pb2_grpc
from services.cli.local import LocalMesh
from services.gateway.kube.client import KubeClient
from services.kit import errors, ring

NAMESPACE = "demo-placement"
ZONE = "topology.kubernetes.io/zone"
HOSTNAME = "kubernetes.io/hostname"
STS_PATH = f"/apis/apps/v1/namespaces/{NAMESPACE}/statefulsets"
PODS_PATH = f"/api/v1/namespaces/{NAMESPACE}/pods"
PPS_PATH = f"/apis/apps.kruise.io/v1alpha1/namespaces/{NAMESPACE}/persistentpodstates"

STATEFULSET = {
    "apiVersion": "apps/v1",
    "kind": "StatefulSet",
    "metadata": {
        "name": "web",
        "annotations": {
            "kruise.io/auto-generate-persistent-pod-state": "true",
            "kruise.io/required-persistent-topology": ZONE,
            "kruise.io/preferred-persistent-topology": HOSTNAME,
        },
    },
    "spec": {
        "replicas": 3,
        "serviceName": "web",
        "selector": {"matchLabels": {"app": "web"}},
        "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]},
        },
    },
}


def _ready(pod: dict[str, Any]) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return not pod["metadata"].get("deletionTimestamp") and any(
        c.get("type") == "Ready" and c.get("status") == "True" for c in conditions
    )


async def _get(kube: KubeClient, path: str) -> dict[str, Any] | None:
    try:
        return await kube.request_json("GET", path)
    except errors.NotFound:
        return None


async def show_persistent_pod_state(
    kube: KubeClient,
    mesh: LocalMesh,
    console: Console,
    *,
    wait_for: Any,
) -> None:
    """Run the step; ``wait_for(what, check, timeout=...)`` polls until ``check`` is true."""
    from services.cli.demo import ensure_namespace

    await ensure_namespace(kube, NAMESPACE)
    try:
        await kube.request("POST", STS_PATH, body=orjson.dumps(STATEFULSET))
    except errors.AlreadyExists:
        pass
    console.print(
        "created StatefulSet web (3 replicas) with kruise.io/auto-generate-persistent-pod-state, "
        f"required {ZONE}, preferred {HOSTNAME}"
    )

    async def recorded() -> bool:
        pps = await _get(kube, f"{PPS_PATH}/web")
        states = ((pps or {}).get("status") or {}).get("podStates") or {}
        return len(states) == 3

    await wait_for("PersistentPodState web with 3 records", recorded, timeout=60)
    pps = await _get(kube, f"{PPS_PATH}/web") or {}
    states = pps["status"]["podStates"]
    table = Table("pod", "node", "zone", "IP", title="PersistentPodState web (generated)")
    for name, state in sorted(states.items()):
        labels = state.get("nodeTopologyLabels") or {}
        table.add_row(name, state.get("nodeName", ""), labels.get(ZONE, ""), state.get("podIP", ""))
    console.print(table)

    victim = "web-1"
    before = states[victim]
    busy = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "busy", "labels": {"app": "busy"}},
        "spec": {
            "nodeName": before["nodeName"],
            "containers": [{"name": "busy", "image": "registry.k8s.io/pause:3.9"}],
        },
    }
    try:
        await kube.request("POST", PODS_PATH, body=orjson.dumps(busy))
    except errors.AlreadyExists:
        pass
    old = await _get(kube, f"{PODS_PATH}/{victim}") or {}
    old_uid = old.get("metadata", {}).get("uid")
    await kube.request("DELETE", f"{PODS_PATH}/{victim}")
    console.print(
        f"a busy pod joined {before['nodeName']}, then {victim} was deleted: "
        "left alone, the scheduler would now choose an emptier node"
    )

    async def back() -> bool:
        pod = await _get(kube, f"{PODS_PATH}/{victim}")
        return pod is not None and pod["metadata"]["uid"] != old_uid and _ready(pod)

    await wait_for(f"{victim} re-created and ready", back, timeout=60)
    pod = await _get(kube, f"{PODS_PATH}/{victim}") or {}
    node, ip = pod["spec"]["nodeName"], pod["status"].get("podIP", "")
    same = node == before["nodeName"] and ip == before.get("podIP")
    verdict = "[green]same node, same IP[/]" if same else "[red]moved[/] (see its Events)"
    console.print(
        f"{victim} was on {before['nodeName']} with {before.get('podIP')}; re-created on "
        f"{node} with {ip}: {verdict}"
    )
    affinity = (pod["spec"].get("affinity") or {}).get("nodeAffinity") or {}
    console.print(
        {
            "nodeSelector": pod["spec"].get("nodeSelector"),
            "preferredDuringSchedulingIgnoredDuringExecution": affinity.get(
                "preferredDuringSchedulingIgnoredDuringExecution"
            ),
            "annotations": pod["metadata"].get("annotations"),
        }
    )
    owning = ring.HashRing(mesh.addresses["placement"]).owner(NAMESPACE)
    if owning:
        async with mesh.replica_channel(owning) as channel:
            answer = await placement_pb2_grpc.PlacementServiceStub(channel).GetPodState(
                placement_pb2.GetPodStateRequest(namespace=NAMESPACE, pod=victim), timeout=5
            )
        console.print(
            f"PlacementService.GetPodState({NAMESPACE}/{victim}) on {owning}: "
            f"recorded node {answer.entry.state.node_name} IP {answer.entry.state.pod_ip}; "
            f"now node {answer.entry.current_node} IP {answer.entry.current_ip}; "
            f"placed={answer.entry.placed}"
        )
