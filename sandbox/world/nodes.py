"""The world's nodes: their specs, the Node objects registered for them, and addressing.

Node ``i`` (0-based, in the order given) gets the host address ``127.0.1.<i+1>`` and the pod
network ``10.244.<i+1>.0/24``, as in the real captures (``node-get.json``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sandbox.world.client import ApiClient, Conflict

Obj = dict[str, Any]


@dataclass(frozen=True)
class NodeSpec:
    """One node of the world: its name, zone, region and any extra labels."""

    name: str
    zone: str
    region: str = "sandbox"
    labels: dict[str, str] = field(default_factory=dict)


def default_nodes() -> list[NodeSpec]:
    """Three zones of two nodes each: node-a1, node-a2 (zone-a), node-b1, ... node-c2."""
    return [NodeSpec(name=f"node-{z}{i}", zone=f"zone-{z}") for z in "abc" for i in (1, 2)]


def host_ip(index: int) -> str:
    """The InternalIP of node ``index`` (0-based): 127.0.1.1 for the first node."""
    return f"127.0.1.{index + 1}"


def pod_cidr(index: int) -> str:
    """The pod network of node ``index`` (0-based): 10.244.1.0/24 for the first node."""
    return f"10.244.{index + 1}.0/24"


def node_labels(spec: NodeSpec) -> dict[str, str]:
    """The well-known labels a kubelet sets, plus the spec's own labels (which win)."""
    labels = {
        "beta.kubernetes.io/arch": "amd64",
        "beta.kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "kubernetes.io/hostname": spec.name,
        "kubernetes.io/os": "linux",
        "topology.kubernetes.io/region": spec.region,
        "topology.kubernetes.io/zone": spec.zone,
    }
    labels.update(spec.labels)
    return labels


def node_object(spec: NodeSpec, *, index: int, now: str) -> Obj:
    """The v1 Node a kubelet would register for ``spec``. Pure."""
    capacity = {"cpu": "8", "ephemeral-storage": "100Gi", "memory": "32Gi", "pods": "110"}

    def cond(kind: str, status: str, reason: str, message: str) -> Obj:
        return {
            "type": kind,
            "status": status,
            "lastHeartbeatTime": now,
            "lastTransitionTime": now,
            "reason": reason,
            "message": message,
        }

    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": spec.name,
            "labels": node_labels(spec),
            "annotations": {"node.alpha.kubernetes.io/ttl": "0", "sandbox.kruise.io/node": "true"},
        },
        "spec": {"podCIDR": pod_cidr(index), "podCIDRs": [pod_cidr(index)]},
        "status": {
            "capacity": capacity,
            "allocatable": dict(capacity),
            "conditions": [
                cond("MemoryPressure", "False", "KubeletHasSufficientMemory", "sandbox"),
                cond("DiskPressure", "False", "KubeletHasNoDiskPressure", "sandbox"),
                cond("PIDPressure", "False", "KubeletHasSufficientPID", "sandbox"),
                cond("Ready", "True", "KubeletReady", "sandbox kubelet is posting ready status"),
            ],
            "addresses": [
                {"type": "InternalIP", "address": host_ip(index)},
                {"type": "Hostname", "address": spec.name},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {
                "machineID": f"sandbox-{spec.name}",
                "systemUUID": f"sandbox-{spec.name}",
                "bootID": f"sandbox-boot-{spec.name}",
                "kernelVersion": "sandbox",
                "osImage": "kruise-mesh sandbox node",
                "containerRuntimeVersion": "sandbox://1.0",
                "kubeletVersion": "v1.36.2-sandbox",
                "kubeProxyVersion": "",
                "operatingSystem": "linux",
                "architecture": "amd64",
            },
        },
    }


async def register_nodes(client: ApiClient, specs: list[NodeSpec], *, now: str) -> None:
    """Create each node (or update an existing one's labels), then post its status."""
    for index, spec in enumerate(specs):
        node = node_object(spec, index=index, now=now)
        path = f"/api/v1/nodes/{spec.name}"
        try:
            await client.create("/api/v1/nodes", node)
        except Conflict:
            await client.merge_patch(path, {"metadata": {"labels": node["metadata"]["labels"]}})
        # a real apiserver may drop status on create; the kubelet always posts it
        await client.merge_patch(path + "/status", {"status": node["status"]})
