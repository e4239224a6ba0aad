"""Workload resolution for budgets (SPEC 0.2, OpenKruise's ControllerFinder).

``WorkloadFinder.resolve`` answers "which workload is this, how many replicas does it
want, is it being deleted" for an (apiVersion, kind, name[, uid]) reference:

* ``apps`` Deployment, ReplicaSet, StatefulSet and ``apps.kruise.io`` StatefulSet and
  CloneSet come from the replica cache (the gateway watches them). A ReplicaSet whose
  controller is a Deployment resolves to that Deployment.
  A replica asked about a namespace it does not hold (``from_cache=False``) reads them
  from the API server instead: its cache has nothing for that namespace.
* Any other kind is read through its ``/scale`` subresource (the gateway's cluster API
  asks the API server, which applies the CRD's ``specReplicasPath``). HTTP 404 — no such
  object, or a kind without ``/scale`` — is "not found"; anything else is an error the
  caller reports (the pod webhook refuses with 400, as OpenKruise). Answers are kept for
  ``scale_ttl_s`` so an eviction storm costs one read per workload, not one per pod.

Groups and kinds compare exactly; the version is ignored. A ``uid`` that differs from the
object's is "not found" (the object was replaced); for ``/scale`` kinds the uid is the one
the Scale carries. ``/scale`` cannot say whether the object is being deleted, so such a
workload is never "deleting" (it protects its pods until it is gone).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from kruise.common.v1 import mesh_pb2, views_pb2
from services.kit import errors
from services.kit.cache import ObjectCache, workload_name
from services.kit.cluster import ObjectReader, Ref, Scale
from services.kit.objects import controller_ref, group_of
from services.kit.projection import project_clone_set, project_workload

WORKLOAD = mesh_pb2.KIND_WORKLOAD
CLONE_SET = mesh_pb2.KIND_CLONE_SET

CACHED_KINDS: frozenset[tuple[str, str]] = frozenset(
    {
        ("apps", "Deployment"),
        ("apps", "ReplicaSet"),
        ("apps", "StatefulSet"),
        ("apps.kruise.io", "StatefulSet"),
        ("apps.kruise.io", "CloneSet"),
    }
)


class ScaleReader(Protocol):
    async def get_scale(self, ref: Ref) -> Scale: ...


@dataclass(frozen=True, slots=True)
class Workload:
    """A resolved workload."""

    api_version: str
    kind: str
    name: str
    uid: str
    replicas: int
    deleting: bool = False

    @property
    def group(self) -> str:
        return group_of(self.api_version) or ""

    def same_as(self, *, api_version: str, kind: str, name: str) -> bool:
        """OpenKruise's ``IsReferenceEqual``: group, kind and name; the version is ignored."""
        group = group_of(api_version)
        return group is not None and (group, kind, name) == (self.group, self.kind, self.name)


def _owning_deployment(rs: views_pb2.WorkloadView) -> views_pb2.OwnerReference | None:
    """The ``apps`` Deployment controlling a ReplicaSet, if one does (it resolves to that)."""
    owner = controller_ref(rs.meta.owner_references)
    if owner is None or owner.kind != "Deployment" or group_of(owner.api_version) != "apps":
        return None
    return owner


def _from_workload_view(view: views_pb2.WorkloadView) -> Workload:
    return Workload(
        api_version=view.api_version,
        kind=view.kind,
        name=view.meta.name,
        uid=view.meta.uid,
        replicas=view.spec_replicas if view.HasField("spec_replicas") else 1,
        deleting=bool(view.meta.deletion_unix_ms),
    )


def _from_clone_set(view: views_pb2.CloneSetView) -> Workload:
    return Workload(
        api_version="apps.kruise.io/v1alpha1",
        kind="CloneSet",
        name=view.meta.name,
        uid=view.meta.uid,
        replicas=view.replicas if view.HasField("replicas") else 1,
        deleting=bool(view.meta.deletion_unix_ms),
    )


class WorkloadFinder:
    def __init__(
        self,
        *,
        cache: ObjectCache,
        scales: ScaleReader,
        objects: ObjectReader | None = None,
        scale_ttl_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cache = cache
        self.scales = scales
        self.objects = objects
        self.scale_ttl_s = scale_ttl_s
        self.clock = clock
        self._scales: dict[tuple[str, str, str, str], tuple[float, Workload | None]] = {}

    async def _read(
        self, namespace: str, *, api_version: str, kind: str, name: str, uid: str
    ) -> Workload | None:
        """A built-in kind from the API server (a ReplicaSet follows to its Deployment)."""
        if self.objects is None:
            raise errors.Unavailable("this finder cannot read workloads from the API server")
        try:
            got = await self.objects.get(Ref(api_version, kind, namespace, name))
        except errors.NotFound:
            return None
        if uid and got.uid and got.uid != uid:
            return None
        if kind == "CloneSet":
            return _from_clone_set(project_clone_set(got.object))
        view = project_workload(got.object, api_version=api_version, kind=kind)
        owner = _owning_deployment(view) if kind == "ReplicaSet" else None
        if owner is not None:
            return await self._read(
                namespace,
                api_version=owner.api_version,
                kind=owner.kind,
                name=owner.name,
                uid=owner.uid,
            )
        return _from_workload_view(view)

    def cached(
        self, namespace: str, *, api_version: str, kind: str, name: str, uid: str = ""
    ) -> Workload | None:
        """Resolve a kind the cache holds (``CACHED_KINDS``); None when absent or replaced."""
        group = group_of(api_version)
        if group is None:
            return None
        if (group, kind) == ("apps.kruise.io", "CloneSet"):
            clone = self.cache.get(CLONE_SET, namespace, name)
            if clone is None or (uid and clone.meta.uid != uid):
                return None
            return _from_clone_set(clone)
        view = self.cache.get(
            WORKLOAD, namespace, workload_name(api_version=api_version, kind=kind, name=name)
        )
        if view is None or (uid and view.meta.uid != uid):
            return None
        owner = _owning_deployment(view) if (group, kind) == ("apps", "ReplicaSet") else None
        if owner is not None:
            return self.cached(
                namespace,
                api_version=owner.api_version,
                kind=owner.kind,
                name=owner.name,
                uid=owner.uid,
            )
        return _from_workload_view(view)

    async def resolve(
        self,
        namespace: str,
        *,
        api_version: str,
        kind: str,
        name: str,
        uid: str = "",
        from_cache: bool = True,
    ) -> Workload | None:
        """The workload, None when it does not exist; raises ``errors.MeshError`` when the
        answer is unknown (the API server could not be asked, a malformed apiVersion)."""
        group = group_of(api_version)
        if group is None:
            raise errors.Invalid(f"owner apiVersion {api_version!r} is not group/version")
        if (group, kind) in CACHED_KINDS:
            if from_cache:
                return self.cached(
                    namespace, api_version=api_version, kind=kind, name=name, uid=uid
                )
            return await self._read(
                namespace, api_version=api_version, kind=kind, name=name, uid=uid
            )
        key = (namespace, group, kind, name)
        now = self.clock()
        hit = self._scales.get(key)
        if hit is None or now - hit[0] >= self.scale_ttl_s:
            try:
                scale = await self.scales.get_scale(Ref(api_version, kind, namespace, name))
            except errors.NotFound:
                hit = (now, None)
            else:
                hit = (
                    now,
                    Workload(
                        api_version=api_version,
                        kind=kind,
                        name=name,
                        uid=scale.uid,
                        replicas=scale.spec_replicas,
                    ),
                )
            self._scales[key] = hit
            if len(self._scales) > 10_000:
                self._scales = {
                    k: v for k, v in self._scales.items() if now - v[0] < self.scale_ttl_s
                }
        found = hit[1]
        if found is not None and uid and found.uid and found.uid != uid:
            return None  # the object was replaced
        return found
