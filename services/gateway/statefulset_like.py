"""Custom StatefulSet-like workload kinds: from configuration to watched kinds.

OpenKruise 1.4 lets a PersistentPodState target any kind with a ``/scale`` subresource
whose pods are named ``<name>-<ordinal>``. The operator lists such kinds in
``KRUISE_MESH_STATEFULSET_LIKE_KINDS`` (``services.kit.config.parse_statefulset_like_kinds``,
read by the gateway and by placement). Each time the watch hub starts, the gateway looks up
every listed kind's CRD and watches those that serve the configured version with ``/scale``::

    WorkloadKind ──discovery──▶ plural ──GET CRD <plural>.<group>──▶ crd_scale_paths (pure)
                                                                  ──▶ WatchSpec(scale=...)

The hub then sends their objects as ``KIND_WORKLOAD`` views
(``projection.fill_scaled_workload``). A kind that cannot be used (not served, no CRD, no
``/scale``, already watched as a built-in kind, not listable by the gateway (403), or the
look-up failed) is logged as a warning and skipped; the hub starts without it. The lease
holder looks such a kind up again every ``--statefulset-like-recheck`` seconds (30 by
default) and adds it to the hub once its CRD serves it with ``/scale``: a CRD installed
after the gateway needs no restart. A kind already watched keeps the ``/scale`` paths it
was found with; a later change of them in its CRD needs a restart or a lease handover.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import orjson

from services.gateway.hub import WATCHED, KubeApi, WatchSpec
from services.gateway.kube.discovery import split_api_version
from services.kit import errors
from services.kit.config import WorkloadKind
from services.kit.projection import Json, ScalePaths

log = logging.getLogger(__name__)

CRD_PATH = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"


@dataclass(frozen=True, slots=True)
class Unusable:
    """Why a configured kind is not watched; ``reason`` completes "statefulset-like kind
    <group>/<Kind> ..." (e.g. "has no /scale subresource")."""

    reason: str


def crd_scale_paths(crd: Json, *, wanted: WorkloadKind) -> ScalePaths | Unusable:
    """The ``/scale`` paths of ``wanted``'s version in its CRD, or why the CRD cannot serve it.

    Pure; no I/O. ``resolve_statefulset_like`` turns the paths into a ``WatchSpec``. Usable
    means: the CRD defines ``wanted.group``/``wanted.kind``, serves ``wanted.version``, and
    that version has ``subresources.scale`` with a ``specReplicasPath``. ``labelSelectorPath``
    is optional (empty when absent); ``statusReplicasPath`` defaults to ``.status.replicas``.
    """
    spec = crd.get("spec")
    spec = spec if isinstance(spec, Mapping) else {}
    names = spec.get("names")
    defined = (spec.get("group"), names.get("kind") if isinstance(names, Mapping) else None)
    if defined != (wanted.group, wanted.kind):
        return Unusable(f"is not what CRD {_name(crd)!r} defines ({defined[0]}/{defined[1]})")
    versions = [v for v in spec.get("versions") or () if isinstance(v, Mapping)]
    entry = next((v for v in versions if v.get("name") == wanted.version), None)
    if entry is None:
        listed = ", ".join(str(v.get("name")) for v in versions) or "none"
        return Unusable(f"has no version {wanted.version} (versions: {listed})")
    if entry.get("served") is not True:
        return Unusable(f"is not served at version {wanted.version}")
    subresources = entry.get("subresources")
    scale = subresources.get("scale") if isinstance(subresources, Mapping) else None
    if not isinstance(scale, Mapping):
        return Unusable("has no /scale subresource")
    replicas_path = scale.get("specReplicasPath")
    if not isinstance(replicas_path, str) or not replicas_path.startswith("."):
        return Unusable("has a /scale subresource without a usable specReplicasPath")
    selector_path = scale.get("labelSelectorPath")
    status_path = scale.get("statusReplicasPath")
    return ScalePaths(
        replicas_path=replicas_path,
        selector_path=selector_path if isinstance(selector_path, str) else "",
        status_replicas_path=status_path if isinstance(status_path, str) else ".status.replicas",
    )


def _name(crd: Json) -> str:
    meta = crd.get("metadata")
    return str(meta.get("name") or "") if isinstance(meta, Mapping) else ""


async def resolve_statefulset_like(
    kube: KubeApi,
    kinds: Iterable[WorkloadKind],
    *,
    watched: Iterable[WatchSpec] = WATCHED,
    reported: dict[WorkloadKind, str] | None = None,
) -> list[WatchSpec]:
    """A ``WatchSpec`` for every kind of ``kinds`` that can be watched, in order.

    Never raises for one kind: a kind that cannot be used is logged as a warning
    ("statefulset-like kind apps.example.io/ShardSet has no /scale subresource; not
    watched") and left out. ``watched`` are the built-in kinds; listing one of them again
    would deliver its objects twice, so it is left out too. With ``reported`` (kind → the
    reason last logged), a kind is logged again only when its reason changes: the gateway
    looks up the kinds it could not watch every ``--statefulset-like-recheck`` seconds.
    """
    builtin = {(split_api_version(w.api_version)[0], w.kind) for w in watched}
    specs: list[WatchSpec] = []
    for kind in kinds:
        if (kind.group, kind.kind) in builtin:
            found: ScalePaths | Unusable = Unusable("is a built-in kind, watched already")
        else:
            found = await _look_up(kube, kind)
        if isinstance(found, Unusable):
            if reported is None or reported.get(kind) != found.reason:
                log.warning(
                    "statefulset-like kind %s/%s %s; not watched",
                    kind.group,
                    kind.kind,
                    found.reason,
                )
            if reported is not None and (kind.group, kind.kind) not in builtin:
                reported[kind] = found.reason  # looked up again later; a built-in never changes
            continue
        if reported is not None:
            reported.pop(kind, None)
        log.info(
            "watching statefulset-like kind %s (replicas at %s, selector at %s)",
            kind,
            found.replicas_path,
            found.selector_path or "spec.selector",
        )
        specs.append(WatchSpec(kind.api_version, kind.kind, scale=found))
    return specs


async def _look_up(kube: KubeApi, kind: WorkloadKind) -> ScalePaths | Unusable:
    """Discovery gives the plural, the plural the CRD's name; then ``crd_scale_paths`` and a
    one-item LIST to make sure the gateway may read the kind."""
    try:
        res = await kube.resolve(api_version=kind.api_version, kind=kind.kind)
    except errors.NotFound:
        return Unusable(
            f"is not served at {kind.api_version} (no such CustomResourceDefinition or version)"
        )
    except errors.MeshError as e:
        return Unusable(f"could not be looked up in discovery ({e})")
    name = f"{res.resource}.{kind.group}"
    try:
        crd = orjson.loads(await kube.request("GET", f"{CRD_PATH}/{name}"))
    except errors.NotFound:
        return Unusable(f"has no CustomResourceDefinition {name} (an aggregated API?)")
    except errors.MeshError as e:
        return Unusable(f"could not be looked up: GET CustomResourceDefinition {name}: {e}")
    if not isinstance(crd, Mapping):
        return Unusable(f"could not be looked up: CustomResourceDefinition {name} is not an object")
    found = crd_scale_paths(crd, wanted=kind)
    if isinstance(found, Unusable):
        return found
    # The hub's first snapshot waits for every served kind's first LIST; a kind the gateway
    # may not list would hold back every replica, so it is not watched at all.
    try:
        await kube.request("GET", kube.path(res), query={"limit": "1"})
    except errors.Forbidden as e:
        return Unusable(
            f"cannot be listed by the gateway ({e}); grant get/list/watch on {name} "
            "through the kruise-mesh-gateway-workloads ClusterRole"
        )
    except errors.MeshError as e:  # transient: the hub's list+watch retries with backoff
        log.info("probing %s failed (%s); watching it anyway", name, e)
    return found
