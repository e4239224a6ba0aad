"""The controller shell placement, budget and rollout share: queues, workers, indexes, Events.

    Sync events ─▶ on_event (the feature's) ─▶ its indexes ─▶ WorkQueue(s) ─▶ reconcile
    snapshot    ─▶ on_snapshot (the feature's) ─▶ ``rebuild_pod_index`` (in slices) ─▶ resync

A feature controller owns a ``ControllerShell`` and registers its queues with ``add_queue``;
the shell runs their workers (``start``/``stop``), rebuilds a pod index in slices after a
snapshot without holding the event loop (``rebuild_pod_index``; ``wait_indexed`` holds
reconciles until it is whole), records Kubernetes Events best effort (``record_event`` never
raises; ``background`` runs one beside the reconcile), and counts retries with backoff
(``Backoff``).

``OwnerIndex`` is the lookup every controller needs and the cache cannot answer by key: the
objects (pods, ReplicaSets) a controller owner holds, by the owner's uid within a namespace.
Owner uids are interned (one string per owner, not per pod).

The shell decides nothing: which keys an event concerns and what a reconcile writes stay in
the feature's pure modules.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable, Coroutine, Hashable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from kruise.common.v1 import mesh_pb2, views_pb2
from services.kit import errors
from services.kit.cache import ObjectCache, visit_in_slices
from services.kit.cluster import EventRecorder, Ref
from services.kit.objects import controller_ref
from services.kit.workqueue import WorkQueue, run_workers

log = logging.getLogger(__name__)

K = TypeVar("K", bound=Hashable)
NsName = tuple[str, str]


@dataclass
class OwnerIndex:
    """Names of the objects each controller owner holds, by (namespace, owner uid).

    ``put(namespace, name, owner_uid)`` moves an object to its current owner (``""`` or None
    for none: removed); ``names(namespace, uid)`` is what the owner holds now.
    """

    by_owner: dict[NsName, set[str]] = field(default_factory=dict)
    owner_of: dict[str, dict[str, str]] = field(default_factory=dict)

    def put(self, namespace: str, name: str, owner_uid: str | None) -> str | None:
        """Index ``name`` under ``owner_uid``; return the owner it had before (or None)."""
        owners = self.owner_of.get(namespace)
        old = owners.pop(name, None) if owners is not None else None
        if old is not None:
            names = self.by_owner.get((namespace, old))
            if names is not None:
                names.discard(name)
                if not names:
                    del self.by_owner[(namespace, old)]
        if not owner_uid:
            if owners is not None and not owners:
                del self.owner_of[namespace]
            return old
        uid = sys.intern(owner_uid)
        self.owner_of.setdefault(sys.intern(namespace), {})[name] = uid
        self.by_owner.setdefault((namespace, uid), set()).add(name)
        return old

    def pod(self, pod: views_pb2.PodView, *, deleted: bool) -> str | None:
        """Index a pod under its controller owner (none when deleted)."""
        owner = None if deleted else controller_ref(pod.meta.owner_references)
        return self.put(pod.meta.namespace, pod.meta.name, owner.uid if owner else None)

    def names(self, namespace: str, owner_uid: str) -> set[str]:
        return self.by_owner.get((namespace, owner_uid), set())

    def owner(self, namespace: str, name: str) -> str | None:
        return self.owner_of.get(namespace, {}).get(name)

    def holds(self, namespace: str, owner_uid: str) -> bool:
        return (namespace, owner_uid) in self.by_owner


@dataclass
class Backoff(Generic[K]):
    """Per-key retry delays: ``base`` doubling per consecutive failure up to ``cap``."""

    base: float = 0.5
    cap: float = 30.0
    failures: dict[K, int] = field(default_factory=dict)

    def next(self, key: K) -> float:
        count = self.failures.get(key, 0) + 1
        self.failures[key] = count
        return float(min(self.base * 2 ** (count - 1), self.cap))

    def reset(self, key: K) -> None:
        self.failures.pop(key, None)


@dataclass
class _Queue:
    queue: WorkQueue[Any]
    reconcile: Callable[[Any], Awaitable[None]]
    workers: int
    name: str


class ControllerShell:
    """Queues and their workers, the snapshot pod-index rebuild, best-effort Events."""

    def __init__(self, *, cache: ObjectCache, events: EventRecorder, name: str) -> None:
        self.cache = cache
        self.events = events
        self.name = name
        self._queues: list[_Queue] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._background: set[asyncio.Task[None]] = set()
        self._indexed = asyncio.Event()
        self._indexed.set()
        self._rebuild: asyncio.Future[None] | None = None

    # ---- queues -------------------------------------------------------------------------
    def add_queue(
        self,
        queue: WorkQueue[K],
        reconcile: Callable[[K], Awaitable[None]],
        *,
        workers: int,
        name: str,
    ) -> WorkQueue[K]:
        self._queues.append(_Queue(queue, reconcile, workers, name))
        return queue

    def pending(self) -> int:
        """Keys queued, being reconciled or waiting for a retry, in every queue."""
        return sum(q.queue.pending() for q in self._queues)

    async def start(self) -> None:
        self._tasks = [
            asyncio.create_task(
                run_workers(q.queue, q.reconcile, workers=q.workers, name=q.name),
                name=f"{self.name}-{q.name}",
            )
            for q in self._queues
        ]

    async def stop(self) -> None:
        if self._rebuild is not None:
            self._rebuild.cancel()
        tasks = [*self._tasks, *self._background]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks = []

    # ---- snapshot -----------------------------------------------------------------------
    def rebuild_pod_index(self, visit: Callable[[views_pb2.PodView], None]) -> None:
        """Visit every cached pod in slices (tens of thousands would hold the event loop, and
        admission reviews with it); ``wait_indexed`` returns once all were visited."""
        if self._rebuild is not None:
            self._rebuild.cancel()
        self._indexed.clear()

        async def run() -> None:
            await visit_in_slices(self.cache, mesh_pb2.KIND_POD, visit)
            self._indexed.set()

        self._rebuild = asyncio.ensure_future(run())

    async def wait_indexed(self) -> None:
        """Until the pod index is whole: a half-built one would hide live pods."""
        await self._indexed.wait()

    # ---- side effects -------------------------------------------------------------------
    def background(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` beside the reconcile (Events are best effort, never awaited inline)."""
        task = asyncio.create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def record_event(
        self, ref: Ref, *, uid: str, reason: str, message: str, warning: bool = False
    ) -> None:
        """Record a Kubernetes Event on ``ref``; a failure is logged, never raised."""
        try:
            await self.events.record_event(
                ref,
                uid=uid,
                type="Warning" if warning else "Normal",
                reason=reason,
                message=message,
            )
        except errors.MeshError as e:
            log.warning(
                "could not record the event",
                extra={
                    "controller": self.name,
                    "object": f"{ref.kind} {ref.namespace}/{ref.name}",
                    "reason": reason,
                    "error": str(e),
                },
            )
