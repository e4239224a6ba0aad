"""The sandbox's in-memory object store: objects, resourceVersions, history and watchers.

One global integer resourceVersion counter (strings on the wire), objects kept per resource
type in ``{namespace: {name: object}}`` dicts (the namespace level doubles as the namespace
index), a bounded history of change events for watch resume, and fan-out of each event to
the watchers of its type. Each event is serialized to its wire line at most once per
(event type, apiVersion) and the bytes are shared by every watcher.

Stored objects are never mutated in place: every write stores a new dict. That lets gets,
lists, events and watchers share references without copying.

The store also implements ``sandbox.admission_types.ObjectSource`` and keeps the uid and
ownerReference indexes that garbage collection needs.
"""

from __future__ import annotations

import asyncio
import bisect
import datetime
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
from sortedcontainers import SortedList

from sandbox.resources import Registry, ResourceType
from sandbox.selectors import EVERYTHING, NO_FIELDS, FieldSelector, LabelSelector

_LAST = "\U0010ffff"  # sorts after every name

TypeKey = tuple[str, str]
ObjKey = tuple[TypeKey, str, str]

DEFAULT_HISTORY = 20_000
DEFAULT_WATCH_QUEUE = 1_000_000


def now_rfc3339(offset_seconds: float = 0.0) -> str:
    t = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=offset_seconds)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(slots=True)
class Event:
    """One change: ``obj`` is the new object (for DELETED, the last state at the delete RV)."""

    rv: int
    type: str
    key: TypeKey
    namespace: str
    obj: dict[str, Any]
    prev: dict[str, Any] | None
    _lines: dict[tuple[str, str], bytes] = field(default_factory=dict)

    def line(self, etype: str, api_version: str) -> bytes:
        """The event's wire line (JSON + newline), shared across watchers."""
        cache_key = (etype, api_version)
        cached = self._lines.get(cache_key)
        if cached is None:
            obj = self.obj
            if etype == "DELETED" and self.type != "DELETED" and self.prev is not None:
                obj = _with_rv(self.prev, self.rv)
            cached = encode_event(etype, obj, api_version)
            self._lines[cache_key] = cached
        return cached


def _with_rv(obj: dict[str, Any], rv: int) -> dict[str, Any]:
    meta = dict(obj.get("metadata") or {})
    meta["resourceVersion"] = str(rv)
    out = dict(obj)
    out["metadata"] = meta
    return out


def encode_event(etype: str, obj: dict[str, Any], api_version: str) -> bytes:
    if obj.get("apiVersion") != api_version:
        obj = {**obj, "apiVersion": api_version}
    return orjson.dumps({"type": etype, "object": obj}) + b"\n"


class Watcher:
    """A live watch: its filter, and a queue of (event type, Event) waiting to be written."""

    __slots__ = (
        "key",
        "namespace",
        "labels",
        "fields",
        "api_version",
        "queue",
        "wakeup",
        "closed",
        "max_queue",
    )

    def __init__(
        self,
        *,
        key: TypeKey,
        namespace: str | None,
        labels: LabelSelector,
        fields: FieldSelector,
        api_version: str,
        max_queue: int,
    ) -> None:
        self.key = key
        self.namespace = namespace
        self.labels = labels
        self.fields = fields
        self.api_version = api_version
        self.queue: deque[tuple[str, Event]] = deque()
        self.wakeup = asyncio.Event()
        self.closed: str | None = None  # "expired" or "overflow" once ended by the store
        self.max_queue = max_queue

    def matches(self, obj: dict[str, Any]) -> bool:
        if self.labels.empty and self.fields.empty:
            return True
        meta = obj.get("metadata") or {}
        return self.labels.matches(meta.get("labels")) and self.fields.matches(obj)

    def classify(self, ev: Event) -> str | None:
        """Which event type this watcher sees for ``ev`` (None: not at all).

        Follows the watch cache: an object that starts matching is ADDED, one that stops
        matching is DELETED (carrying its previous state at the new resourceVersion).
        """
        if self.namespace is not None and ev.namespace != self.namespace:
            return None
        if self.labels.empty and self.fields.empty:
            return ev.type
        cur = ev.type != "DELETED" and self.matches(ev.obj)
        old = False
        if ev.type == "DELETED":
            old = self.matches(ev.obj)
        elif ev.prev is not None:
            old = self.matches(ev.prev)
        if cur and old:
            return "MODIFIED"
        if cur:
            return "ADDED"
        if old:
            return "DELETED"
        return None

    def push(self, etype: str, ev: Event) -> None:
        if self.closed:
            return
        if len(self.queue) >= self.max_queue:
            self.close("overflow")
            return
        self.queue.append((etype, ev))
        self.wakeup.set()

    def close(self, reason: str) -> None:
        self.closed = reason
        self.wakeup.set()


class Store:
    """Objects of every registered type, the resourceVersion clock, history and watchers."""

    def __init__(
        self,
        *,
        registry: Registry,
        history_size: int = DEFAULT_HISTORY,
        watch_queue_size: int = DEFAULT_WATCH_QUEUE,
    ) -> None:
        self.registry = registry
        self.rv = 0
        self._objects: dict[TypeKey, dict[str, dict[str, dict[str, Any]]]] = {}
        # (namespace, name) of every object in key order, so a LIST page costs
        # O(log n + limit) instead of sorting every object again.
        self._order: dict[TypeKey, SortedList] = {}
        self._history: deque[Event] = deque(maxlen=history_size)
        self._floor = 0  # events with rv <= floor are no longer retained
        self._watchers: dict[TypeKey, set[Watcher]] = {}
        self._uids: dict[str, ObjKey] = {}
        self._dependents: dict[str, set[ObjKey]] = {}
        self.watch_queue_size = watch_queue_size
        self.events_served = 0
        self.on_removed: Callable[[str, dict[str, Any]], None] | None = None
        # called with every event after the watchers got it (RBAC caches, aggregation)
        self.listeners: list[Callable[[Event], None]] = []

    # --- reads ------------------------------------------------------------------------

    def get(self, key: TypeKey, namespace: str, name: str) -> dict[str, Any] | None:
        by_ns = self._objects.get(key)
        if by_ns is None:
            return None
        names = by_ns.get(namespace)
        return None if names is None else names.get(name)

    def iter_objects(self, key: TypeKey, namespace: str | None) -> Iterator[dict[str, Any]]:
        by_ns = self._objects.get(key) or {}
        if namespace is not None:
            yield from (by_ns.get(namespace) or {}).values()
            return
        for names in by_ns.values():
            yield from names.values()

    def sorted_objects(self, key: TypeKey, namespace: str | None) -> list[dict[str, Any]]:
        """Objects in etcd key order (namespace, then name)."""
        return list(self.iter_sorted(key, namespace))

    def iter_sorted(
        self, key: TypeKey, namespace: str | None, *, after: tuple[str, str] | None = None
    ) -> Iterator[dict[str, Any]]:
        """Objects in key order, optionally only those after ``after`` (namespace, name)."""
        order = self._order.get(key)
        by_ns = self._objects.get(key)
        if not order or by_ns is None:
            return
        if namespace is None:
            keys = order.irange(minimum=after, inclusive=(False, True)) if after else iter(order)
        elif after is not None and after[0] > namespace:
            return
        elif after is not None and after[0] == namespace:
            keys = order.irange(minimum=after, maximum=(namespace, _LAST), inclusive=(False, True))
        else:
            keys = order.irange(minimum=(namespace, ""), maximum=(namespace, _LAST))
        for ns, name in keys:
            obj = by_ns.get(ns, {}).get(name)
            if obj is not None:
                yield obj

    def count_after(self, key: TypeKey, namespace: str | None, after: tuple[str, str]) -> int:
        """How many objects sort after ``after`` (within ``namespace`` when given)."""
        order = self._order.get(key)
        if not order:
            return 0
        end = len(order) if namespace is None else order.bisect_right((namespace, _LAST))
        return max(0, int(end) - int(order.bisect_right(after)))

    def count(self, key: TypeKey) -> int:
        return sum(len(v) for v in (self._objects.get(key) or {}).values())

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for (group, resource), by_ns in self._objects.items():
            n = sum(len(v) for v in by_ns.values())
            if n:
                out[f"{resource}.{group}" if group else resource] = n
        return out

    def namespaces_in_use(self, key: TypeKey) -> list[str]:
        return [ns for ns, names in (self._objects.get(key) or {}).items() if names]

    def exists_uid(self, uid: str) -> bool:
        return uid in self._uids

    def dependents(self, uid: str) -> list[ObjKey]:
        return list(self._dependents.get(uid) or ())

    # ObjectSource for the admission dispatcher

    def list_objects(
        self, *, group: str, resource: str, namespace: str | None = None
    ) -> list[dict[str, Any]]:
        return list(self.iter_objects((group, resource), namespace))

    def get_object(
        self, *, group: str, resource: str, namespace: str | None, name: str
    ) -> dict[str, Any] | None:
        return self.get((group, resource), namespace or "", name)

    # --- writes -----------------------------------------------------------------------

    def next_rv(self) -> int:
        self.rv += 1
        return self.rv

    @staticmethod
    def stamp_new(obj: dict[str, Any], *, generation: bool) -> None:
        """Fill uid and creationTimestamp (and generation) of a new object, in place."""
        meta = obj.setdefault("metadata", {})
        meta.setdefault("uid", str(uuid.uuid4()))
        meta.setdefault("creationTimestamp", now_rfc3339())
        if generation:
            meta["generation"] = 1
        else:
            meta.pop("generation", None)

    def put(self, rt: ResourceType, obj: dict[str, Any]) -> dict[str, Any]:
        """Store ``obj`` (new or replacing) at a fresh resourceVersion; emit ADDED/MODIFIED.

        ``obj`` must be a dict the caller no longer mutates; its metadata dict is replaced.
        """
        meta = dict(obj.get("metadata") or {})
        ns = str(meta.get("namespace") or "") if rt.namespaced else ""
        name = str(meta["name"])
        rv = self.next_rv()
        meta["resourceVersion"] = str(rv)
        obj["metadata"] = meta
        names = self._objects.setdefault(rt.key, {}).setdefault(ns, {})
        prev = names.get(name)
        names[name] = obj
        if prev is None:
            self._order.setdefault(rt.key, SortedList()).add((ns, name))
        self._index(rt.key, ns, name, prev, obj)
        self._emit(Event(rv, "ADDED" if prev is None else "MODIFIED", rt.key, ns, obj, prev))
        return obj

    def remove(self, rt: ResourceType, namespace: str, name: str) -> dict[str, Any] | None:
        """Remove an object; emit DELETED carrying its last state at the delete RV."""
        ns = namespace if rt.namespaced else ""
        names = (self._objects.get(rt.key) or {}).get(ns)
        if not names or name not in names:
            return None
        prev = names.pop(name)
        self._order[rt.key].discard((ns, name))
        if not names:
            del self._objects[rt.key][ns]
        rv = self.next_rv()
        gone = _with_rv(prev, rv)
        self._index(rt.key, ns, name, prev, None)
        self._emit(Event(rv, "DELETED", rt.key, ns, gone, prev))
        uid = (prev.get("metadata") or {}).get("uid")
        if uid and self.on_removed is not None:
            self.on_removed(str(uid), gone)
        return gone

    def drop_type(self, key: TypeKey) -> None:
        """Forget a type's objects and close its watchers (CRD deleted)."""
        for w in list(self._watchers.pop(key, ())):
            w.close("gone")
        self._objects.pop(key, None)
        self._order.pop(key, None)

    def _index(
        self,
        key: TypeKey,
        ns: str,
        name: str,
        prev: dict[str, Any] | None,
        cur: dict[str, Any] | None,
    ) -> None:
        okey: ObjKey = (key, ns, name)
        old_owners = _owner_uids(prev)
        new_owners = _owner_uids(cur)
        if prev is not None and cur is None:
            uid = (prev.get("metadata") or {}).get("uid")
            if uid:
                self._uids.pop(str(uid), None)
        elif cur is not None and prev is None:
            uid = (cur.get("metadata") or {}).get("uid")
            if uid:
                self._uids[str(uid)] = okey
        if old_owners == new_owners:
            return
        for u in old_owners - new_owners:
            deps = self._dependents.get(u)
            if deps is not None:
                deps.discard(okey)
                if not deps:
                    del self._dependents[u]
        for u in new_owners - old_owners:
            self._dependents.setdefault(u, set()).add(okey)

    # --- history and watch ------------------------------------------------------------

    def _emit(self, ev: Event) -> None:
        self._history.append(ev)
        if len(self._history) == self._history.maxlen:
            self._floor = max(self._floor, self._history[0].rv - 1)
        watchers = self._watchers.get(ev.key)
        if watchers:
            for w in watchers:
                etype = w.classify(ev)
                if etype is not None:
                    w.push(etype, ev)
        for listener in self.listeners:
            listener(ev)

    @property
    def oldest_rv(self) -> int:
        """The oldest resourceVersion a watch may start from."""
        return self._floor

    def too_old(self, rv: int) -> bool:
        return rv < self._floor

    def events_after(self, key: TypeKey, rv: int) -> Iterable[Event]:
        """Retained events of ``key`` with resourceVersion greater than ``rv``."""
        hist = self._history
        if not hist:
            return []
        idx = bisect.bisect_right(_RvView(hist), rv)
        return [hist[i] for i in range(idx, len(hist)) if hist[i].key == key]

    def add_watcher(
        self,
        *,
        key: TypeKey,
        namespace: str | None,
        labels: LabelSelector = EVERYTHING,
        fields: FieldSelector = NO_FIELDS,
        api_version: str,
    ) -> Watcher:
        w = Watcher(
            key=key,
            namespace=namespace,
            labels=labels,
            fields=fields,
            api_version=api_version,
            max_queue=self.watch_queue_size,
        )
        self._watchers.setdefault(key, set()).add(w)
        return w

    def remove_watcher(self, w: Watcher) -> None:
        ws = self._watchers.get(w.key)
        if ws is not None:
            ws.discard(w)

    def watcher_count(self) -> int:
        return sum(len(ws) for ws in self._watchers.values())

    def expire_history(self) -> None:
        """Drop retained history and end every open watch with 410 Expired."""
        self._history.clear()
        self._floor = self.rv
        for ws in self._watchers.values():
            for w in list(ws):
                w.close("expired")


class _RvView:
    """A sequence view of the history's resourceVersions for bisect."""

    __slots__ = ("_h",)

    def __init__(self, h: deque[Event]) -> None:
        self._h = h

    def __len__(self) -> int:
        return len(self._h)

    def __getitem__(self, i: int) -> int:
        return self._h[i].rv


def _owner_uids(obj: dict[str, Any] | None) -> frozenset[str]:
    if obj is None:
        return frozenset()
    refs = (obj.get("metadata") or {}).get("ownerReferences")
    if not refs:
        return frozenset()
    return frozenset(str(r.get("uid")) for r in refs if r.get("uid"))
