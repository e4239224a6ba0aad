"""Small facts about Kubernetes objects that every feature asks: pure, over views or raw JSON.

group_of("apps/v1")          → "apps"        (the API group of an apiVersion)
controller_ref(refs)         → the ownerReference with ``controller: true`` (views)
controller_owner(obj)        → the same, for a raw object (an AdmissionReview's pod)
pod_ready(pod), pod_active(pod)
newer(a, b)                  → the view with the larger resourceVersion
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Protocol, TypeVar

from kruise.common.v1 import views_pb2


def group_of(api_version: str) -> str | None:
    """The API group of an apiVersion; None when it is not ``[group/]version``.

    >>> group_of("apps/v1"), group_of("v1"), group_of("a/b/c"), group_of("")
    ('apps', '', None, None)
    """
    parts = api_version.split("/")
    if not api_version or len(parts) > 2 or not all(parts):
        return None
    return parts[0] if len(parts) == 2 else ""


def controller_ref(
    refs: Iterable[views_pb2.OwnerReference],
) -> views_pb2.OwnerReference | None:
    """The ownerReference marked ``controller: true``, if any."""
    for ref in refs:
        if ref.controller:
            return ref
    return None


def controller_owner(obj: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The raw ``ownerReferences`` entry marked ``controller: true``; None when there is none
    or the metadata is malformed (a review's object is not trusted to be well formed)."""
    metadata = obj.get("metadata")
    refs = metadata.get("ownerReferences") if isinstance(metadata, Mapping) else None
    if not isinstance(refs, list):
        return None
    for ref in refs:
        if isinstance(ref, Mapping) and ref.get("controller") is True:
            return ref
    return None


def pod_ready(pod: views_pb2.PodView) -> bool:
    """The pod's ``Ready`` condition is ``True``."""
    return any(c.type == "Ready" and c.status == "True" for c in pod.conditions)


def pod_active(pod: views_pb2.PodView) -> bool:
    """Not ``Succeeded``/``Failed`` and not being deleted."""
    return pod.phase not in ("Succeeded", "Failed") and not pod.meta.deletion_unix_ms


class _HasMeta(Protocol):
    @property
    def meta(self) -> views_pb2.ObjectMeta: ...


V = TypeVar("V", bound=_HasMeta)


def newer(a: V | None, b: V | None) -> V | None:
    """The view with the larger resourceVersion (as integers: etcd revisions are).

    ``a`` wins a tie, a view of another object (another uid) and non-numeric versions:
    pass the authoritative view (the cache's) as ``a``.
    """
    if a is None or b is None:
        return a or b
    if a.meta.uid != b.meta.uid:
        return a
    try:
        return b if int(b.meta.resource_version) > int(a.meta.resource_version) else a
    except ValueError:
        return a
