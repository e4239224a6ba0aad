"""A replica's in-memory copy of the objects the gateway sent it.

Views are stored by reference (never copied; treat them as read-only). The
cache is filled by the event stream: a snapshot replaces everything, deltas
apply in stream order, so the last event for a key is its current state.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from kruise.common.v1 import mesh_pb2, views_pb2

Key = tuple[str, str]

EVENT_ADDED = mesh_pb2.WatchEvent.TYPE_ADDED
EVENT_MODIFIED = mesh_pb2.WatchEvent.TYPE_MODIFIED
EVENT_DELETED = mesh_pb2.WatchEvent.TYPE_DELETED


def workload_name(*, api_version: str, kind: str, name: str) -> str:
    """The cache name of a workload: kinds share KIND_WORKLOAD, so the group and kind qualify it.

    >>> workload_name(api_version="apps/v1", kind="StatefulSet", name="web")
    'apps/StatefulSet/web'
    """
    group = api_version.rsplit("/", 1)[0] if "/" in api_version else ""
    return f"{group}/{kind}/{name}"


def key_of(view: Any) -> Key:
    if isinstance(view, views_pb2.WorkloadView):
        name = workload_name(api_version=view.api_version, kind=view.kind, name=view.meta.name)
        return (view.meta.namespace, name)
    return (view.meta.namespace, view.meta.name)


def view_of(obj: views_pb2.ObjectView) -> Any:
    """The concrete view inside an ObjectView (PodView, NodeView, ...), or None."""
    which = obj.WhichOneof("view")
    return getattr(obj, which) if which else None


class ObjectCache:
    """Views by kind and (namespace, name)."""

    def __init__(self) -> None:
        self._by_kind: dict[int, dict[Key, Any]] = {}

    def apply(self, event: mesh_pb2.WatchEvent) -> Any:
        """Apply one event; returns the view it concerned (None if malformed)."""
        view = view_of(event.object)
        if view is None:
            return None
        key = key_of(view)
        objects = self._by_kind.setdefault(event.kind, {})
        if event.type == EVENT_DELETED:
            objects.pop(key, None)
        else:
            objects[key] = view
        return view

    def replace(self, other: ObjectCache) -> None:
        self._by_kind = other._by_kind

    def get(self, kind: int, namespace: str, name: str) -> Any:
        """The view of ``namespace/name``; for workloads name it with ``workload_name``."""
        return self._by_kind.get(kind, {}).get((namespace, name))

    def items(self, kind: int, namespace: str | None = None) -> Iterator[Any]:
        objects = self._by_kind.get(kind, {})
        if namespace is None:
            yield from objects.values()
        else:
            yield from (v for (ns, _), v in objects.items() if ns == namespace)

    def count(self, kind: int) -> int:
        return len(self._by_kind.get(kind, {}))

    def kinds(self) -> list[int]:
        return sorted(self._by_kind)
