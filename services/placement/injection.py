"""Injection: send a re-created pod back to the topology its PersistentPodState recorded.

Pure; no I/O. ``build_injection`` is OpenKruise's ``createNodeAffinity`` (SPEC 1.4)
and ``injection_patch`` the JSONPatch that applies it to the pod of a CREATE
review; ``services.placement.webhooks`` finds the PersistentPodState and answers.

From the pod's record ``{nodeName, nodeTopologyLabels}`` and the spec:

* **required** keys become ``spec.nodeSelector`` entries (recorded values win over
  the pod's own), not required node affinity; an existing required affinity is
  left alone (the scheduler ANDs the two);
* each **preferred** term becomes one ``PreferredSchedulingTerm`` with its weight,
  ``key In [recorded value]`` for each of its keys that was recorded, appended in
  spec order after the pod's own preferred terms (even with no expressions);
* the pod is annotated ``kruise.io/injected-persistent-pod-state: <name>`` whenever
  anything is injected (OpenKruise v1.6; v1.2 annotated only with preferred terms).

Example: required ``[zone]``, preferred weight 10 ``[hostname]``, recorded
``{zone: a, hostname: n1}`` → ``nodeSelector {zone: a}`` and one preferred term
``weight 10, hostname In [n1]``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kruise.common.v1 import views_pb2
from services.kit.admission import JsonPatch, pointer

INJECTED_ANNOTATION = "kruise.io/injected-persistent-pod-state"


@dataclass(frozen=True, slots=True)
class Injection:
    """What to add to a pod: nodeSelector entries and preferred node-affinity terms."""

    pps_name: str
    node_selector: Mapping[str, str] = field(default_factory=dict)
    preferred: tuple[dict[str, Any], ...] = ()


def build_injection(pps: views_pb2.PersistentPodStateView, pod_name: str) -> Injection | None:
    """The injection for ``pod_name``, or None when there is nothing to inject.

    Nothing when the PersistentPodState has no record for the pod, the record has no
    topology labels, or no recorded key is named by the spec.
    """
    state = pps.pod_states.get(pod_name)
    if state is None or not state.node_topology_labels:
        return None
    recorded = state.node_topology_labels
    node_selector: dict[str, str] = {}
    if pps.has_required_topology:
        for key in pps.required_node_topology_keys:
            if key in recorded:
                node_selector[key] = recorded[key]
    preferred = tuple(
        {
            "weight": term.weight,
            "preference": (
                {"matchExpressions": expressions}
                if (
                    expressions := [
                        {"key": key, "operator": "In", "values": [recorded[key]]}
                        for key in term.node_topology_keys
                        if key in recorded
                    ]
                )
                else {}
            ),
        }
        for term in pps.preferred_topology
    )
    if not node_selector and not preferred:
        return None
    return Injection(pps_name=pps.meta.name, node_selector=node_selector, preferred=preferred)


def _dict(value: object) -> Mapping[str, Any] | None:
    return value if isinstance(value, Mapping) else None


def injection_patch(pod: Mapping[str, Any], injection: Injection) -> JsonPatch:
    """The JSONPatch adding ``injection`` to ``pod`` (the review's ``object``).

    Creates each missing level (``nodeSelector``, ``affinity.nodeAffinity``, the
    preferred list, ``metadata.annotations``) whole, and appends to existing lists.
    """
    ops: JsonPatch = []
    spec = _dict(pod.get("spec")) or {}
    if injection.node_selector:
        existing = _dict(spec.get("nodeSelector"))
        if existing is None:
            ops.append(
                {"op": "add", "path": "/spec/nodeSelector", "value": dict(injection.node_selector)}
            )
        else:
            for key, value in injection.node_selector.items():
                ops.append(
                    {"op": "add", "path": pointer("spec", "nodeSelector", key), "value": value}
                )
    if injection.preferred:
        terms = list(injection.preferred)
        preferred_key = "preferredDuringSchedulingIgnoredDuringExecution"
        affinity = _dict(spec.get("affinity"))
        node_affinity = _dict(affinity.get("nodeAffinity")) if affinity is not None else None
        current = node_affinity.get(preferred_key) if node_affinity is not None else None
        if affinity is None:
            ops.append(
                {
                    "op": "add",
                    "path": "/spec/affinity",
                    "value": {"nodeAffinity": {preferred_key: terms}},
                }
            )
        elif node_affinity is None:
            ops.append(
                {
                    "op": "add",
                    "path": "/spec/affinity/nodeAffinity",
                    "value": {preferred_key: terms},
                }
            )
        elif not isinstance(current, list):
            ops.append(
                {
                    "op": "add",
                    "path": pointer("spec", "affinity", "nodeAffinity", preferred_key),
                    "value": terms,
                }
            )
        else:
            path = pointer("spec", "affinity", "nodeAffinity", preferred_key, "-")
            ops.extend({"op": "add", "path": path, "value": term} for term in terms)
    metadata = _dict(pod.get("metadata")) or {}
    if _dict(metadata.get("annotations")) is None:
        ops.append(
            {
                "op": "add",
                "path": "/metadata/annotations",
                "value": {INJECTED_ANNOTATION: injection.pps_name},
            }
        )
    else:
        ops.append(
            {
                "op": "add",
                "path": pointer("metadata", "annotations", INJECTED_ANNOTATION),
                "value": injection.pps_name,
            }
        )
    return ops
