"""Auto-generation: a StatefulSet's annotations create, update and delete its PersistentPodState.

Pure; no I/O. ``annotation_change`` decides whether a workload event asks for
generation (SPEC 1.2 triggers), ``plan_generation`` what to do about it; the
placement controller (``services.placement.controller``) carries the plan out
through the cluster API.

The annotations, on the workload::

    kruise.io/auto-generate-persistent-pod-state: "true"
    kruise.io/required-persistent-topology: "<key>[,<key>...]"
    kruise.io/preferred-persistent-topology: "<key>[,<key>...]"   (weight 100)

The rules (SPEC 1.2 "Auto-generation reconcile"; surprises in SPEC 6.3):

* auto-generate is ``"true"`` and both topology annotations are empty → nothing
  (an existing PersistentPodState is neither updated nor deleted);
* auto-generate is ``"true"`` → the PersistentPodState named exactly like the
  workload is created (owned by it, ``controller: true``) or, if its spec differs,
  its **whole spec** is replaced (a hand-set retention policy is reset);
* otherwise any PersistentPodState with the workload's name is deleted, even one
  a user created.

Keys are split on ``,`` with no trimming, as OpenKruise does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kruise.common.v1 import views_pb2

AUTO_GENERATE = "kruise.io/auto-generate-persistent-pod-state"
REQUIRED_TOPOLOGY = "kruise.io/required-persistent-topology"
PREFERRED_TOPOLOGY = "kruise.io/preferred-persistent-topology"
GENERATED_WEIGHT = 100

PPS_API_VERSION = "apps.kruise.io/v1alpha1"
PPS_KIND = "PersistentPodState"


@dataclass(frozen=True, slots=True)
class GenerationAnnotations:
    """The three annotations of a workload, "" when absent."""

    auto_generate: str = ""
    required: str = ""
    preferred: str = ""

    @classmethod
    def of(cls, workload: views_pb2.WorkloadView) -> GenerationAnnotations:
        annotations = workload.meta.annotations
        return cls(
            auto_generate=annotations.get(AUTO_GENERATE, ""),
            required=annotations.get(REQUIRED_TOPOLOGY, ""),
            preferred=annotations.get(PREFERRED_TOPOLOGY, ""),
        )

    @property
    def enabled(self) -> bool:
        return self.auto_generate == "true"

    @property
    def has_topology(self) -> bool:
        return bool(self.required or self.preferred)


def annotation_change(
    old: GenerationAnnotations | None, new: GenerationAnnotations, *, deleting: bool = False
) -> bool:
    """Whether a workload event asks for auto-generation.

    A new workload (``old`` None) asks when it enables generation with some topology;
    a known one when any of the three annotations changed. A workload being deleted
    never asks (garbage collection removes what it owns).

    >>> annotation_change(None, GenerationAnnotations("true", "zone", ""))
    True
    >>> annotation_change(None, GenerationAnnotations("", "zone", ""))
    False
    >>> annotation_change(GenerationAnnotations("true", "zone", ""), GenerationAnnotations())
    True
    """
    if deleting:
        return False
    if old is None:
        return new.enabled and new.has_topology
    return old != new


@dataclass(frozen=True, slots=True)
class Create:
    """Create the PersistentPodState ``body`` (AlreadyExists is fine: someone was first)."""

    body: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ReplaceSpec:
    """Replace the whole spec of the existing PersistentPodState seen at ``resource_version``."""

    spec: dict[str, Any]
    resource_version: str


@dataclass(frozen=True, slots=True)
class Delete:
    """Delete the PersistentPodState named like the workload (the one with ``uid``)."""

    uid: str


@dataclass(frozen=True, slots=True)
class Nothing:
    reason: str


GenerationPlan = Create | ReplaceSpec | Delete | Nothing


def desired_spec(workload: views_pb2.WorkloadView, wanted: GenerationAnnotations) -> dict[str, Any]:
    """The spec a generated PersistentPodState has for ``workload``'s annotations."""
    spec: dict[str, Any] = {
        "targetRef": {
            "apiVersion": workload.api_version,
            "kind": workload.kind,
            "name": workload.meta.name,
        }
    }
    if wanted.required:
        spec["requiredPersistentTopology"] = {"nodeTopologyKeys": wanted.required.split(",")}
    if wanted.preferred:
        spec["preferredPersistentTopology"] = [
            {
                "weight": GENERATED_WEIGHT,
                "preference": {"nodeTopologyKeys": wanted.preferred.split(",")},
            }
        ]
    return spec


def spec_of(pps: views_pb2.PersistentPodStateView) -> dict[str, Any]:
    """A PersistentPodState view's spec as the JSON it was read from (empty parts left out)."""
    spec: dict[str, Any] = {
        "targetRef": {
            "apiVersion": pps.target_ref.api_version,
            "kind": pps.target_ref.kind,
            "name": pps.target_ref.name,
        }
    }
    if pps.has_required_topology:
        spec["requiredPersistentTopology"] = {
            "nodeTopologyKeys": list(pps.required_node_topology_keys)
        }
    if pps.preferred_topology:
        spec["preferredPersistentTopology"] = [
            {"weight": t.weight, "preference": {"nodeTopologyKeys": list(t.node_topology_keys)}}
            for t in pps.preferred_topology
        ]
    if pps.retention_policy:
        spec["persistentPodStateRetentionPolicy"] = pps.retention_policy
    return spec


def plan_generation(
    *,
    workload: views_pb2.WorkloadView,
    existing: views_pb2.PersistentPodStateView | None,
) -> GenerationPlan:
    """What auto-generation does for ``workload``, given the PersistentPodState of its name."""
    wanted = GenerationAnnotations.of(workload)
    name = workload.meta.name
    if not wanted.enabled:
        if existing is None:
            return Nothing(f"{name} does not ask for a PersistentPodState")
        return Delete(uid=existing.meta.uid)
    if not wanted.has_topology:
        return Nothing(
            f"{name} asks for a PersistentPodState but names no topology "
            f"({REQUIRED_TOPOLOGY} and {PREFERRED_TOPOLOGY} are empty)"
        )
    spec = desired_spec(workload, wanted)
    if existing is None:
        body = {
            "apiVersion": PPS_API_VERSION,
            "kind": PPS_KIND,
            "metadata": {
                "name": name,
                "namespace": workload.meta.namespace,
                "ownerReferences": [
                    {
                        "apiVersion": workload.api_version,
                        "kind": workload.kind,
                        "name": name,
                        "uid": workload.meta.uid,
                        "controller": True,
                    }
                ],
            },
            "spec": spec,
        }
        return Create(body=body)
    if spec_of(existing) == spec:
        return Nothing(f"PersistentPodState {name} is up to date")
    return ReplaceSpec(spec=spec, resource_version=existing.meta.resource_version)


def owned_by(pps: views_pb2.PersistentPodStateView, workload: views_pb2.WorkloadView) -> bool:
    """Whether ``pps`` names ``workload`` (by uid) as its controller: it was generated."""
    return any(ref.controller and ref.uid == workload.meta.uid for ref in pps.meta.owner_references)
