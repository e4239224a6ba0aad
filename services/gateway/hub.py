"""The watch hub: one list+watch per kind for the whole mesh, a compact cache, and events.

    KubeClient ──LIST (paged)──▶ Reflector ──changes──▶ Hub ──HubEvent──▶ Subscription (per stream)
               ──WATCH (lines)─▶  (cache)                │
                                                         └─ snapshot(kinds, owns) for a new stream

A ``Reflector`` keeps one resource in sync: a paged LIST (``limit``/``continue``)
replaces its cache, then a WATCH from the list's resourceVersion with bookmarks
follows it. The rules that keep the event stream exact:

- a 410 (``ERROR`` event with code 410, or HTTP 410 → ``errors.Conflict``) means the
  watch's history is gone: relist and emit the *difference* against the cache
  (ADDED / MODIFIED / DELETED), so no change is lost and none is repeated;
- a dropped connection or a silent watch (the client's inactivity watchdog raises
  ``errors.Unavailable``) re-watches from the last resourceVersion (bookmarks
  advance it), with backoff 0.2 s → 5 s;
- an event whose resourceVersion equals the cached one is a duplicate and dropped;
  ADDED vs MODIFIED is decided against the cache, not taken from the server;
- a resource the API server does not serve (a CRD not installed) is skipped with a
  log line and looked up again every ``retry_unserved`` seconds.

resourceVersions are compared for equality only (ECOSYSTEM.md 3).

The hub's cache holds, per object, its resourceVersion and its view serialised once
as ``ObjectView`` bytes (about 0.5 KB for a pod): the most compact form, and the
one every replica stream sends as is. ``HubEvent.view`` parses it back on demand.
All cache changes and their fan-out happen without an ``await`` in between, so a
caller that subscribes and snapshots in one synchronous step
(``Hub.subscribe_with_snapshot``) misses nothing and sees each change once after
the snapshot.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import random
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeAlias, TypeVar

import orjson
from prometheus_client import Counter, Gauge

from kruise.common.v1 import mesh_pb2, views_pb2
from services.gateway.kube.discovery import Resource
from services.kit import errors
from services.kit.projection import Json, ScalePaths, object_projector

log = logging.getLogger(__name__)

T = TypeVar("T")

ADDED = mesh_pb2.WatchEvent.TYPE_ADDED
MODIFIED = mesh_pb2.WatchEvent.TYPE_MODIFIED
DELETED = mesh_pb2.WatchEvent.TYPE_DELETED

CACHE_OBJECTS = Gauge(
    "kruise_mesh_gateway_cache_objects", "Objects in the gateway's watch cache", ["kind"]
)
LISTS = Counter(
    "kruise_mesh_gateway_lists",
    "Complete LISTs of one kind (the first sync, then each relist after 410 Gone)",
    ["api_version", "kind"],
)


class KubeApi(Protocol):
    """The part of ``services.gateway.kube.client.KubeClient`` the hub uses."""

    async def resolve(self, *, api_version: str, kind: str) -> Resource: ...

    def path(
        self,
        res: Resource,
        *,
        namespace: str | None = None,
        name: str | None = None,
        subresource: str | None = None,
    ) -> str: ...

    async def request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str] | None = None,
        body: bytes | None = None,
        content_type: str = "application/json",
        timeout: float = 10.0,
    ) -> bytes: ...

    def watch_lines(
        self, path: str, *, query: Mapping[str, str], read_timeout: float
    ) -> AsyncIterator[bytes]: ...


@dataclass(frozen=True, slots=True)
class ReflectorConfig:
    """Timings of list+watch; tests shrink them."""

    page_size: int = 500
    slice: int = 250  # objects handled between two yields of the event loop
    timeout_seconds: int = 300  # server-side end of one watch request
    read_timeout: float = 70.0  # inactivity watchdog: no event nor bookmark for this long
    retry_unserved: float = 30.0  # look again for a resource that is not served
    backoff_initial: float = 0.2
    backoff_max: float = 5.0
    list_timeout: float = 60.0


Entry: TypeAlias = tuple[str, T]
"""One cached object: ``(resourceVersion, projected value)``.

A plain tuple, not a class: a tuple of a str and bytes is untracked by the garbage
collector after its first collection, so a cache of 100,000 pods adds nothing to the
full collections that would otherwise scan every entry and hold the event loop for
tens of milliseconds each (bench/stalls.py).
"""


@dataclass(frozen=True, slots=True)
class Change(Generic[T]):
    type: int  # ADDED, MODIFIED or DELETED
    namespace: str
    name: str
    entry: Entry[T]


class _Expired(Exception):
    """The watch's resourceVersion is too old (410): relist."""


class Backoff:
    """Exponential backoff with jitter: initial → max, doubling."""

    def __init__(self, *, initial: float, maximum: float) -> None:
        self.initial = initial
        self.maximum = maximum
        self._next = initial

    def next(self) -> float:
        delay = self._next
        self._next = min(self._next * 2, self.maximum)
        return delay * (0.8 + 0.4 * random.random())

    def reset(self) -> None:
        self._next = self.initial


def _meta_key(obj: Json) -> tuple[str, str, str]:
    meta = obj.get("metadata") or {}
    return meta.get("namespace") or "", meta.get("name") or "", meta.get("resourceVersion") or ""


class Reflector(Generic[T]):
    """List+watch of one resource into ``cache[namespace][name] → Entry``.

    ``on_changes`` is called synchronously with each batch of changes (a relist's
    difference comes in slices of ``config.slice``), after the cache already reflects them.
    """

    def __init__(
        self,
        kube: KubeApi,
        *,
        api_version: str,
        kind: str,
        project: Callable[[Json], T],
        on_changes: Callable[[list[Change[T]]], None],
        namespace: str | None = None,
        label_selector: str | None = None,
        config: ReflectorConfig = ReflectorConfig(),
    ) -> None:
        self.kube = kube
        self.api_version = api_version
        self.kind = kind
        self.project = project
        self.on_changes = on_changes
        self.namespace = namespace
        self.label_selector = label_selector
        self.config = config
        self.cache: dict[str, dict[str, Entry[T]]] = {}
        self.size = 0
        self.resource_version = ""
        self.served: bool | None = None  # None until the first look-up
        self.synced = asyncio.Event()
        self.decided = asyncio.Event()  # set once served is known
        self.relists = 0
        self.watches = 0

    def __repr__(self) -> str:
        return f"Reflector({self.api_version} {self.kind})"

    def items(self) -> Iterator[tuple[str, str, Entry[T]]]:
        for ns, names in self.cache.items():
            for name, entry in names.items():
                yield ns, name, entry

    async def run(self) -> None:
        """Forever: resolve, list, watch; recover as the module docstring says."""
        cfg = self.config
        backoff = Backoff(initial=cfg.backoff_initial, maximum=cfg.backoff_max)
        res: Resource | None = None
        need_list = True
        while True:
            try:
                if res is None:
                    res = await self.kube.resolve(api_version=self.api_version, kind=self.kind)
                    if self.served is not True:
                        log.info("watching %s %s", self.api_version, self.kind)
                    self.served = True
                    self.decided.set()
                if need_list:
                    await self._relist(res)
                    need_list = False
                    self.synced.set()
                await self._watch(res)
                backoff.reset()
            except (_Expired, errors.Conflict) as e:
                log.info("%r: history expired (%s), relisting", self, e)
                need_list = True
                await asyncio.sleep(min(backoff.next(), 1.0) if self.relists > 1 else 0)
            except errors.NotFound as e:
                if res is None:
                    if self.served is not False:
                        log.warning(
                            "%s %s is not served; skipping it, retrying every %.0f s (%s)",
                            self.api_version,
                            self.kind,
                            cfg.retry_unserved,
                            e,
                        )
                    self.served = False
                    self.decided.set()
                    await asyncio.sleep(cfg.retry_unserved)
                else:  # the resource went away (CRD deleted): look it up again
                    res = None
                    need_list = True
                    await asyncio.sleep(backoff.next())
            except errors.MeshError as e:
                delay = backoff.next()
                log.warning("%r: %s; retrying in %.2f s", self, e, delay)
                await asyncio.sleep(delay)

    def _query(self, **extra: str) -> dict[str, str]:
        query = dict(extra)
        if self.label_selector:
            query["labelSelector"] = self.label_selector
        return query

    async def _relist(self, res: Resource) -> None:
        """Paged LIST; then bring the cache to it, emitting the difference slice by slice.

        The event loop is given back every ``config.slice`` objects, while pages are read and
        while the difference is applied, so a list of 100,000 pods never holds it for long
        (webhook reviews and health probes wait behind it). Each slice of changes is applied
        to the cache and fanned out without an ``await`` in between, so a subscriber that
        snapshots between two slices sees the first in its snapshot and the second as events:
        nothing is missed or repeated.
        """
        path = self.kube.path(res, namespace=self.namespace)
        slice_ = self.config.slice
        old = self.cache
        fresh: dict[str, dict[str, Entry[T]]] = {}
        token = ""
        list_rv = ""
        while True:
            query = self._query(limit=str(self.config.page_size))
            if token:
                query["continue"] = token
            body = await self.kube.request(
                "GET", path, query=query, timeout=self.config.list_timeout
            )
            page = orjson.loads(body)
            del body
            for i, item in enumerate(page.get("items") or ()):
                if i and i % slice_ == 0:
                    await asyncio.sleep(0)
                ns, name, rv = _meta_key(item)
                previous = old.get(ns, {}).get(name)
                if previous is not None and previous[0] == rv:
                    entry = previous
                else:
                    entry = (rv, self.project(item))
                fresh.setdefault(ns, {})[name] = entry
            meta = page.get("metadata") or {}
            # The first page's version: watching from it replays anything that changed
            # while the later pages were read, so no change between pages is skipped.
            list_rv = list_rv or meta.get("resourceVersion") or ""
            token = meta.get("continue") or ""
            del page
            if not token:
                break
        # Only this reflector changes its cache, and its watch is not running: the cache
        # moves from the old list to the fresh one here alone.
        changes: list[Change[T]] = []
        seen = 0

        async def flush() -> None:
            nonlocal changes
            if changes:
                self.on_changes(changes)
                changes = []
            await asyncio.sleep(0)

        for ns, names in fresh.items():
            cached = self.cache.setdefault(ns, {})
            for name, entry in names.items():
                before = cached.get(name)
                if before is not entry:
                    cached[name] = entry
                    if before is None:
                        self.size += 1
                    changes.append(Change(ADDED if before is None else MODIFIED, ns, name, entry))
                seen += 1
                if seen % slice_ == 0:
                    await flush()
        for ns in list(self.cache):
            names = self.cache[ns]
            fresh_names = fresh.get(ns, {})
            for name in [n for n in names if n not in fresh_names]:
                changes.append(Change(DELETED, ns, name, names.pop(name)))
                self.size -= 1
                seen += 1
                if seen % slice_ == 0:
                    await flush()
            if not names:
                del self.cache[ns]
        await flush()
        self.resource_version = list_rv
        self.relists += 1
        LISTS.labels(self.api_version, self.kind).inc()

    async def _watch(self, res: Resource) -> None:
        """One WATCH request from the current resourceVersion until it ends."""
        query = self._query(
            resourceVersion=self.resource_version,
            allowWatchBookmarks="true",
            timeoutSeconds=str(self.config.timeout_seconds),
        )
        path = self.kube.path(res, namespace=self.namespace)
        self.watches += 1
        lines = self.kube.watch_lines(path, query=query, read_timeout=self.config.read_timeout)
        async with contextlib.aclosing(lines):  # type: ignore[type-var]
            async for line in lines:
                self._apply(orjson.loads(line))

    def _apply(self, event: Json) -> None:
        kind = event.get("type")
        obj = event.get("object") or {}
        if kind == "ERROR":
            code = obj.get("code")
            if code == 410 or obj.get("reason") in ("Expired", "Gone"):
                raise _Expired(obj.get("message") or "410 Gone")
            raise errors.Unavailable(f"watch error event: {obj.get('message') or obj}")
        ns, name, rv = _meta_key(obj)
        if kind == "BOOKMARK":
            if rv:
                self.resource_version = rv
            return
        names = self.cache.get(ns)
        before = names.get(name) if names is not None else None
        change: Change[T] | None = None
        if kind == "DELETED":
            if before is not None and names is not None:
                del names[name]
                if not names:
                    del self.cache[ns]
                self.size -= 1
                change = Change(DELETED, ns, name, (rv, self.project(obj)))
        elif kind in ("ADDED", "MODIFIED"):
            if before is None or before[0] != rv:
                entry = (rv, self.project(obj))
                self.cache.setdefault(ns, {})[name] = entry
                if before is None:
                    self.size += 1
                change = Change(ADDED if before is None else MODIFIED, ns, name, entry)
        if rv:
            self.resource_version = rv
        if change is not None:
            self.on_changes([change])


# -- the hub -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WatchSpec:
    """One kind the hub lists and watches; ``scale`` only for a custom StatefulSet-like kind
    (its CRD's ``/scale`` paths, ``services.gateway.statefulset_like``)."""

    api_version: str
    kind: str
    scale: ScalePaths | None = None


WATCHED: tuple[WatchSpec, ...] = (
    WatchSpec("v1", "Pod"),
    WatchSpec("v1", "Node"),
    WatchSpec("apps/v1", "StatefulSet"),
    WatchSpec("apps/v1", "Deployment"),
    WatchSpec("apps/v1", "ReplicaSet"),
    WatchSpec("apps.kruise.io/v1alpha1", "CloneSet"),
    WatchSpec("apps/v1", "ControllerRevision"),
    WatchSpec("v1", "PersistentVolumeClaim"),
    WatchSpec("apps.kruise.io/v1alpha1", "PersistentPodState"),
    WatchSpec("policy.kruise.io/v1alpha1", "PodUnavailableBudget"),
    WatchSpec("apps.kruise.io/v1beta1", "StatefulSet"),
)


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        bits = value & 0x7F
        value >>= 7
        if value:
            out.append(bits | 0x80)
        else:
            out.append(bits)
            return bytes(out)


def encode_watch_event(*, type: int, kind: int, object_bytes: bytes) -> bytes:
    """``WatchEvent{type, kind, object}`` serialised, from already serialised ObjectView bytes.

    Pure. Equal to ``WatchEvent(type=..., kind=..., object=ObjectView.FromString(b))
    .SerializeToString()`` without parsing the view again.
    """
    return b"".join(
        (
            b"\x08",
            _varint(type),
            b"\x10",
            _varint(kind),
            b"\x1a",
            _varint(len(object_bytes)),
            object_bytes,
        )
    )


def frame_field(field_number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field: tag, length, payload."""
    return _varint(field_number << 3 | 2) + _varint(len(payload)) + payload


class HubEvent:
    """One change of one object, shared by every subscriber.

    ``object_bytes`` is the serialised ``ObjectView``; ``view`` and ``event_bytes``
    (the serialised ``WatchEvent``) are computed once, on first use.
    """

    __slots__ = (
        "_event",
        "_view",
        "kind",
        "name",
        "namespace",
        "object_bytes",
        "resource_version",
        "type",
    )

    def __init__(
        self,
        *,
        type: int,
        kind: int,
        namespace: str,
        name: str,
        resource_version: str,
        object_bytes: bytes,
    ) -> None:
        self.type = type
        self.kind = kind
        self.namespace = namespace
        self.name = name
        self.resource_version = resource_version
        self.object_bytes = object_bytes
        self._view: views_pb2.ObjectView | None = None
        self._event: bytes | None = None

    @property
    def view(self) -> views_pb2.ObjectView:
        if self._view is None:
            self._view = views_pb2.ObjectView.FromString(self.object_bytes)
        return self._view

    @property
    def event_bytes(self) -> bytes:
        if self._event is None:
            self._event = encode_watch_event(
                type=self.type, kind=self.kind, object_bytes=self.object_bytes
            )
        return self._event

    def __iter__(self) -> Iterator[Any]:
        """Unpacks as ``(event_type, kind, view)``."""
        return iter((self.type, self.kind, self.view))

    def __repr__(self) -> str:
        kind = mesh_pb2.Kind.Name(self.kind)  # type: ignore[arg-type]
        kind_name = mesh_pb2.WatchEvent.Type.Name(self.type)  # type: ignore[arg-type]
        return f"HubEvent({kind_name} {kind} {self.namespace}/{self.name}@{self.resource_version})"


class Overflow(Exception):
    """A subscriber fell too far behind; its events were dropped: start over with a snapshot."""


class Subscription:
    """An async queue of HubEvents for a set of kinds; unbounded up to ``max_pending``.

    Past ``max_pending`` queued events the subscription is marked ``overflowed``,
    its queue is dropped, and readers get ``Overflow``: a stream that fell that far
    behind restarts with a snapshot instead of holding the gateway's memory.
    """

    def __init__(self, hub: Hub, kinds: frozenset[int], *, max_pending: int) -> None:
        self._hub = hub
        self.kinds = kinds
        self.max_pending = max_pending
        self._items: deque[HubEvent] = deque()
        self._ready = asyncio.Event()
        self.overflowed = False
        self.closed = False

    def push(self, event: HubEvent) -> None:
        if self.overflowed or self.closed:
            return
        if len(self._items) >= self.max_pending:
            self.overflowed = True
            self._items.clear()
        else:
            self._items.append(event)
        self._ready.set()

    def __len__(self) -> int:
        return len(self._items)

    async def wait(self) -> None:
        """Until an event is queued (or Overflow)."""
        while not self._items:
            if self.overflowed:
                raise Overflow(f"more than {self.max_pending} events pending")
            if self.closed:
                raise asyncio.CancelledError("subscription closed")
            self._ready.clear()
            await self._ready.wait()
        if self.overflowed:
            raise Overflow(f"more than {self.max_pending} events pending")

    def drain(self, limit: int) -> list[HubEvent]:
        """Up to ``limit`` queued events, oldest first, without waiting."""
        if self.overflowed:
            raise Overflow(f"more than {self.max_pending} events pending")
        items = self._items
        count = min(limit, len(items))
        return [items.popleft() for _ in range(count)]

    async def get(self) -> HubEvent:
        await self.wait()
        return self._items.popleft()

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> HubEvent:
        return await self.get()

    def close(self) -> None:
        self.closed = True
        self._ready.set()
        self._hub._unsubscribe(self)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Snapshot:
    """The objects of a cache at one instant, read as ADDED events.

    Holds a copy of each namespace's ``name → Entry`` map (entries are never changed in
    place, only replaced, so the copies stay as they were). ``batches`` encodes the
    ``WatchEvent`` bytes a slice at a time, for a Sync stream that yields between slices;
    iterating gives ``HubEvent``s.
    """

    __slots__ = ("_parts", "_size")

    def __init__(self, parts: list[tuple[int, str, dict[str, Entry[bytes]]]]) -> None:
        self._parts = parts
        self._size = sum(len(names) for _, _, names in parts)

    def __len__(self) -> int:
        return self._size

    def __iter__(self) -> Iterator[HubEvent]:
        for kind, ns, names in self._parts:
            for name, (rv, value) in names.items():
                yield HubEvent(
                    type=ADDED,
                    kind=kind,
                    namespace=ns,
                    name=name,
                    resource_version=rv,
                    object_bytes=value,
                )

    def batches(self, size: int) -> Iterator[list[bytes]]:
        """Serialised ``WatchEvent``s, ``size`` at a time (the last batch may be shorter)."""
        batch: list[bytes] = []
        for kind, _, names in self._parts:
            for _, value in names.values():
                batch.append(encode_watch_event(type=ADDED, kind=kind, object_bytes=value))
                if len(batch) >= size:
                    yield batch
                    batch = []
        if batch:
            yield batch


@dataclass(slots=True)
class _Watched:
    spec: WatchSpec
    mesh_kind: int
    reflector: Reflector[bytes]


class Hub:
    """One Reflector per watched kind, their caches, and the fan-out to subscribers."""

    def __init__(
        self,
        kube: KubeApi,
        *,
        kinds: Iterable[WatchSpec] = WATCHED,
        config: ReflectorConfig = ReflectorConfig(),
        max_pending: int = 200_000,
        freeze_gc: bool = True,
    ) -> None:
        self.kube = kube
        self.config = config
        self.max_pending = max_pending
        self.freeze_gc = freeze_gc
        self._subs: list[Subscription] = []
        self._watched: list[_Watched] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._by_kind: dict[int, list[_Watched]] = {}
        self._started = False
        for spec in kinds:
            self._add(spec)

    def _add(self, spec: WatchSpec) -> _Watched:
        mesh_kind, project = object_projector(
            api_version=spec.api_version, kind=spec.kind, scale=spec.scale
        )

        def to_bytes(obj: Json) -> bytes:
            return project(obj).SerializeToString()

        watched = _Watched(spec, mesh_kind, None)  # type: ignore[arg-type]
        watched.reflector = Reflector(
            self.kube,
            api_version=spec.api_version,
            kind=spec.kind,
            project=to_bytes,
            on_changes=self._fan_out_for(watched),
            config=self.config,
        )
        self._watched.append(watched)
        self._by_kind.setdefault(mesh_kind, []).append(watched)
        return watched

    def add(self, spec: WatchSpec) -> None:
        """Watch one more kind from now on (a custom kind whose CRD appeared).

        Its first LIST reaches subscribers as ADDED events, like any relist; a replica
        that takes its snapshot later finds the objects in the cache.
        """
        watched = self._add(spec)
        if self._started:
            self._start(watched)

    def _start(self, watched: _Watched) -> None:
        self._tasks.append(
            asyncio.create_task(watched.reflector.run(), name=f"reflector {watched.spec.kind}")
        )

    @property
    def reflectors(self) -> list[Reflector[bytes]]:
        return [w.reflector for w in self._watched]

    async def start(self) -> None:
        self._started = True
        for w in self._watched:
            self._start(w)
        if self.freeze_gc:
            self._tasks.append(asyncio.create_task(self._freeze_after_sync(), name="gc freeze"))

    async def stop(self) -> None:
        self._started = False
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()

    async def __aenter__(self) -> Hub:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _freeze_after_sync(self) -> None:
        await self.wait_synced()
        # Young generations only: a full collection here scanned the whole heap in one go
        # (50 ms with 100,000 pods). What it would have found, cyclic garbage already old,
        # is frozen with the rest: a one-time, bounded cost.
        gc.collect(1)
        gc.freeze()
        log.info("initial sync done; gc frozen", extra={"objects": self.counts()})

    def is_synced(self) -> bool:
        """Every kind is either known unserved or listed at least once."""
        return all(
            w.reflector.served is False or w.reflector.synced.is_set() for w in self._watched
        )

    async def wait_synced(self) -> None:
        """Until every served kind has been listed once (unserved kinds do not block)."""
        for w in self._watched:
            await w.reflector.decided.wait()
            if w.reflector.served:
                await w.reflector.synced.wait()

    def counts(self) -> dict[str, int]:
        """Cached objects per mesh Kind name (``KIND_POD``...)."""
        out: dict[str, int] = {}
        for mesh_kind, watched in self._by_kind.items():
            name = mesh_pb2.Kind.Name(mesh_kind)  # type: ignore[arg-type]
            out[name] = sum(w.reflector.size for w in watched)
        return out

    def _fan_out_for(self, watched: _Watched) -> Callable[[list[Change[bytes]]], None]:
        def on_changes(changes: list[Change[bytes]]) -> None:
            self._fan_out(watched, changes)

        return on_changes

    def _fan_out(self, watched: _Watched, changes: list[Change[bytes]]) -> None:
        mesh_kind = watched.mesh_kind
        name = mesh_pb2.Kind.Name(mesh_kind)  # type: ignore[arg-type]
        CACHE_OBJECTS.labels(name).set(sum(w.reflector.size for w in self._by_kind[mesh_kind]))
        subs = [s for s in self._subs if mesh_kind in s.kinds]
        if not subs:
            return
        for change in changes:
            event = HubEvent(
                type=change.type,
                kind=mesh_kind,
                namespace=change.namespace,
                name=change.name,
                resource_version=change.entry[0],
                object_bytes=change.entry[1],
            )
            for sub in subs:
                sub.push(event)

    def subscribe(self, kinds: Iterable[int]) -> Subscription:
        """A queue of every future change of ``kinds`` (mesh ``Kind`` values)."""
        sub = Subscription(self, frozenset(kinds), max_pending=self.max_pending)
        self._subs.append(sub)
        return sub

    def _unsubscribe(self, sub: Subscription) -> None:
        with contextlib.suppress(ValueError):
            self._subs.remove(sub)

    def snapshot(self, kinds: Iterable[int], *, owns: Callable[[str], bool]) -> Snapshot:
        """Every cached object of ``kinds`` whose namespace ``owns`` accepts, as of now.

        Cluster-scoped objects (namespace "") are always included. Synchronous and cheap:
        one C-level copy of each namespace's map; the events are made as they are read
        (``Snapshot``), so snapshotting 100,000 pods does not hold the event loop.
        """
        parts: list[tuple[int, str, dict[str, Entry[bytes]]]] = []
        for mesh_kind in sorted(set(kinds)):
            for watched in self._by_kind.get(mesh_kind, ()):
                for ns, names in watched.reflector.cache.items():
                    if ns and not owns(ns):
                        continue
                    parts.append((mesh_kind, ns, names.copy()))
        return Snapshot(parts)

    def subscribe_with_snapshot(
        self, kinds: Iterable[int], *, owns: Callable[[str], bool]
    ) -> tuple[Subscription, Snapshot]:
        """Subscribe and snapshot in one step: nothing is missed in between."""
        wanted = frozenset(kinds)
        return self.subscribe(wanted), self.snapshot(wanted, owns=owns)
