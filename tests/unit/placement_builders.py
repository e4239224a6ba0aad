"""Builders for placement's pure-function tables: each row stays a few lines."""

from __future__ import annotations

from kruise.common.v1 import views_pb2

ZONE = "topology.kubernetes.io/zone"
HOSTNAME = "kubernetes.io/hostname"


def pps(
    name: str = "test-sts",
    *,
    target: tuple[str, str, str] = ("apps.kruise.io/v1beta1", "StatefulSet", "test-sts"),
    required: list[str] | None = None,
    preferred: list[tuple[int, list[str]]] | None = None,
    retention: str = "",
    states: dict[str, views_pb2.PodState] | None = None,
    generation: int = 1,
    observed: int = 1,
) -> views_pb2.PersistentPodStateView:
    view = views_pb2.PersistentPodStateView()
    view.meta.namespace = "ns"
    view.meta.name = name
    view.meta.generation = generation
    view.meta.resource_version = "10"
    view.target_ref.api_version, view.target_ref.kind, view.target_ref.name = target
    if required is not None:
        view.has_required_topology = True
        view.required_node_topology_keys.extend(required)
    for weight, keys in preferred or []:
        view.preferred_topology.add(weight=weight, node_topology_keys=keys)
    view.retention_policy = retention
    view.observed_generation = observed
    for pod_name, state in (states or {}).items():
        view.pod_states[pod_name].CopyFrom(state)
    return view


def state(node: str, ip: str = "", **labels: str) -> views_pb2.PodState:
    return views_pb2.PodState(node_name=node, node_topology_labels=labels, pod_ip=ip)


def pod(
    name: str,
    *,
    node: str = "",
    ready: bool = True,
    deleting: bool = False,
    phase: str = "Running",
    ip: str = "",
) -> views_pb2.PodView:
    view = views_pb2.PodView(node_name=node, phase=phase, pod_ip=ip)
    view.meta.namespace = "ns"
    view.meta.name = name
    if deleting:
        view.meta.deletion_unix_ms = 1
    view.conditions.add(type="Ready", status="True" if ready else "False")
    return view
