"""Which workloads a PersistentPodState can target, and how a target is named.

Pure; no I/O. Targets are StatefulSets (``apps/v1`` and ``apps.kruise.io``) and the
"StatefulSet-like" kinds configured in ``KRUISE_MESH_STATEFULSET_LIKE_KINDS``
(OpenKruise 1.4's custom-workload whitelist): kinds with a ``/scale`` subresource
whose pods are named ``<name>-<ordinal>``. References compare by API group, kind
and name; the version is ignored (OpenKruise's ``IsReferenceEqual``).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass, field

from kruise.common.v1 import views_pb2
from services.kit.cache import workload_name
from services.kit.objects import group_of
from services.placement.recording import Target

NATIVE_TARGETS: frozenset[tuple[str, str]] = frozenset(
    {("apps", "StatefulSet"), ("apps.kruise.io", "StatefulSet")}
)


@dataclass(frozen=True, slots=True)
class TargetKinds:
    """The (group, kind) pairs a PersistentPodState may target."""

    extra: frozenset[tuple[str, str]] = frozenset()
    all: frozenset[tuple[str, str]] = field(init=False)

    def __post_init__(self) -> None:
        # Asked on every pod, workload and review event: the union is made once.
        object.__setattr__(self, "all", NATIVE_TARGETS | self.extra)

    @classmethod
    def with_extra(cls, pairs: Iterable[tuple[str, str]]) -> TargetKinds:
        return cls(extra=frozenset(pairs))

    def accepts(self, *, api_version: str, kind: str) -> bool:
        group = group_of(api_version)
        return group is not None and (group, kind) in self.all


def target_key(*, api_version: str, kind: str, name: str) -> str:
    """The cache name of a referenced workload (version-free: ``group/Kind/name``)."""
    return workload_name(api_version=api_version, kind=kind, name=name)


def target_of(workload: views_pb2.WorkloadView) -> Target:
    """Replicas (1 when unset, as the API server defaults), reserved ordinals, deleting."""
    return Target(
        replicas=workload.spec_replicas if workload.HasField("spec_replicas") else 1,
        reserve_ordinals=frozenset(workload.reserve_ordinals),
        deleting=bool(workload.meta.deletion_unix_ms),
    )


def first_live(
    candidates: Collection[views_pb2.PersistentPodStateView],
) -> views_pb2.PersistentPodStateView | None:
    """The first PersistentPodState (by name) that is not being deleted."""
    for pps in sorted(candidates, key=lambda p: p.meta.name):
        if not pps.meta.deletion_unix_ms:
            return pps
    return None
