"""Expectations: the writes a replica made that its cache has not shown it yet.

Pure data; no I/O (time is passed in). OpenKruise's scale and update expectations:

* after creating a pod, the controller expects to see it; after deleting one, to see it
  gone or terminating. Until every expectation of a CloneSet is met (or has waited
  ``ttl_ms``, five minutes as in Kubernetes), the controller neither creates nor deletes
  pods for it, so a cache that lags behind its own writes never makes it act twice;
* after updating a pod (in place, lifecycle state, a condition), it expects the cache to show
  the version its last write returned (or a later one) before deciding about that pod again.

    exp = Expectations()
    exp.expect_create(key, "web-abcde", now_ms=...)
    exp.satisfied(key, pods_by_name, now_ms=...)   # False until web-abcde is cached

The controller keeps one ``Expectations`` for pods and one for PersistentVolumeClaims (the
objects only need a ``meta``): OpenKruise expects its claim creates and deletes too.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from kruise.common.v1 import views_pb2

TTL_MS = 5 * 60 * 1000


class Viewed(Protocol):
    """A view with object metadata (PodView, PersistentVolumeClaimView)."""

    @property
    def meta(self) -> views_pb2.ObjectMeta: ...


def _at_least(seen: str, written: str) -> bool:
    """The cache's version is the one written or a later one (etcd revisions are numbers;
    anything else counts as caught up once it differs from nothing we know)."""
    if seen == written:
        return True
    try:
        return int(seen) > int(written)
    except ValueError:
        return True


@dataclass
class _Pending:
    creates: dict[str, int] = field(default_factory=dict)
    deletes: dict[str, int] = field(default_factory=dict)
    updates: dict[str, tuple[str, int]] = field(default_factory=dict)

    def empty(self) -> bool:
        return not (self.creates or self.deletes or self.updates)


@dataclass
class Expectations:
    ttl_ms: int = TTL_MS
    _by_key: dict[Hashable, _Pending] = field(default_factory=dict)

    def expect_create(self, key: Hashable, name: str, *, now_ms: int) -> None:
        self._by_key.setdefault(key, _Pending()).creates[name] = now_ms

    def expect_delete(self, key: Hashable, name: str, *, now_ms: int) -> None:
        self._by_key.setdefault(key, _Pending()).deletes[name] = now_ms

    def expect_update(self, key: Hashable, name: str, *, written_version: str, now_ms: int) -> None:
        """Our write of the pod returned ``written_version``: wait until the cache shows it
        (or a newer one), so no decision is made on a version older than our own write."""
        self._by_key.setdefault(key, _Pending()).updates[name] = (written_version, now_ms)

    def forget_create(self, key: Hashable, name: str) -> None:
        """A create that failed will never be seen."""
        pending = self._by_key.get(key)
        if pending is not None:
            pending.creates.pop(name, None)

    def forget_delete(self, key: Hashable, name: str) -> None:
        pending = self._by_key.get(key)
        if pending is not None:
            pending.deletes.pop(name, None)

    def forget_update(self, key: Hashable, name: str) -> None:
        pending = self._by_key.get(key)
        if pending is not None:
            pending.updates.pop(name, None)

    def drop(self, key: Hashable) -> None:
        self._by_key.pop(key, None)

    def clear(self) -> None:
        self._by_key.clear()

    def _settle(self, key: Hashable, pods: Mapping[str, Viewed], *, now_ms: int) -> _Pending | None:
        pending = self._by_key.get(key)
        if pending is None:
            return None
        expired = now_ms - self.ttl_ms
        for name, at in list(pending.creates.items()):
            if name in pods or at < expired:
                del pending.creates[name]
        for name, at in list(pending.deletes.items()):
            pod = pods.get(name)
            if pod is None or pod.meta.deletion_unix_ms or at < expired:
                del pending.deletes[name]
        for name, (version, at) in list(pending.updates.items()):
            pod = pods.get(name)
            if pod is None or _at_least(pod.meta.resource_version, version) or at < expired:
                del pending.updates[name]
        if pending.empty():
            del self._by_key[key]
            return None
        return pending

    def scale_satisfied(self, key: Hashable, pods: Mapping[str, Viewed], *, now_ms: int) -> bool:
        """Every create and delete made for ``key`` is visible in ``pods`` (all of the
        CloneSet's pods, or claims, by name, terminating ones included)."""
        pending = self._settle(key, pods, now_ms=now_ms)
        return pending is None or not (pending.creates or pending.deletes)

    def updates_pending(
        self, key: Hashable, pods: Mapping[str, Viewed], *, now_ms: int
    ) -> frozenset[str]:
        """Pods written for ``key`` whose newer version the cache has not shown yet."""
        pending = self._settle(key, pods, now_ms=now_ms)
        return frozenset(pending.updates) if pending is not None else frozenset()

    def pending_creates(self, key: Hashable) -> int:
        pending = self._by_key.get(key)
        return len(pending.creates) if pending is not None else 0
