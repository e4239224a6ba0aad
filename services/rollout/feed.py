"""WatchRolloutStatus's source: per watched namespace, a log of every RolloutStatus change.

    Sync events ─▶ on_event ─▶ dirty CloneSets ─▶ flush (after the pod index is whole)
                                                    │  report.rollout_status, compared
                                                    ▼  with the last one published
                                   NamespaceLog: 1 ADDED  web   ┐ versions "<epoch>.<seq>"
                                                 2 MODIFIED web │ resume = replay after seq
                                                 3 ADDED  api   ┘
                                                    │
                                         every watcher's queue ─▶ its stream (api.py)

A namespace gets a log when the first watch of it starts (its CloneSets enter as ADDED),
and keeps it while watched and ``retain_s`` after the last watcher left, so a client whose
stream broke can resume after its last version and miss nothing. Resuming works against
the log that issued the version: ``epoch`` is drawn when a log is made, so a version from
another replica, from before a restart, or older than the ``max_entries`` kept ends the
stream with ``Expired`` (the API's ABORTED RESOURCE_VERSION_EXPIRED): the client watches
again from the current state, as after a 410.

A namespace this replica stops owning (a snapshot with another ring) loses its log, and its
streams end with ``Moved`` (UNAVAILABLE): the client resumes through the gateway, which
routes to the new owner, which answers ``Expired``, and the client relists there.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeAlias

from prometheus_client import Counter, Gauge

from kruise.common.v1 import mesh_pb2, views_pb2
from kruise.rollout.v1 import rollout_pb2
from services.kit.cache import ObjectCache, view_of
from services.kit.objects import controller_ref
from services.kit.tasks import stop_task

log = logging.getLogger(__name__)

CLONE_SET = mesh_pb2.KIND_CLONE_SET
POD = mesh_pb2.KIND_POD

EventType: TypeAlias = rollout_pb2.WatchRolloutStatusResponse.Type.ValueType
ADDED = rollout_pb2.WatchRolloutStatusResponse.TYPE_ADDED
MODIFIED = rollout_pb2.WatchRolloutStatusResponse.TYPE_MODIFIED
DELETED = rollout_pb2.WatchRolloutStatusResponse.TYPE_DELETED
BOOKMARK = rollout_pb2.WatchRolloutStatusResponse.TYPE_BOOKMARK

WATCHERS = Gauge("kruise_mesh_rollout_watchers", "Open WatchRolloutStatus streams")
LOGS = Gauge("kruise_mesh_rollout_watch_logs", "Namespaces whose status changes are logged")
CHANGES = Counter(
    "kruise_mesh_rollout_status_changes_total", "RolloutStatus changes logged", ["type"]
)
EXPIRED = Counter(
    "kruise_mesh_rollout_watch_expired_total",
    "Watches that could not resume from their version, by why",
    ["why"],
)

Report = Callable[[views_pb2.CloneSetView, list[views_pb2.PodView]], rollout_pb2.RolloutStatus]
PodsOf = Callable[[views_pb2.CloneSetView], list[views_pb2.PodView]]
Labels = Mapping[str, str]
Matcher = Callable[[str, Labels], bool]


class Expired(Exception):
    """The version cannot be resumed from here: watch again from the current state."""


class Moved(Exception):
    """This replica no longer serves the namespace: resume through the gateway."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One logged change: the CloneSet's labels (for selectors) and its status after it
    (for DELETED, the last status it had)."""

    seq: int
    type: EventType
    name: str
    labels: Mapping[str, str]
    status: rollout_pb2.RolloutStatus
    # The status serialized deterministically, what the next status is compared with.
    digest: bytes = b""


def format_version(epoch: str, seq: int) -> str:
    return f"{epoch}.{seq}"


def parse_version(version: str) -> tuple[str, int] | None:
    """``"<epoch>.<seq>"`` → (epoch, seq); None when it is not one of ours."""
    epoch, sep, seq = version.rpartition(".")
    if not sep or not epoch or not seq.isdigit():
        return None
    return epoch, int(seq)


@dataclass
class NamespaceLog:
    """The changes of one namespace's RolloutStatuses, in order, the last ``max_entries``.

    No I/O: ``StatusFeed`` appends; streams replay. ``base`` is the set of CloneSets (with
    their labels) as of ``floor``, the seq before the oldest entry kept, so the set as of
    any seq from ``floor`` on can be rebuilt (``names_at``).
    """

    epoch: str
    max_entries: int
    seq: int = 0
    floor: int = 0
    entries: deque[Entry] = field(default_factory=deque)
    base: dict[str, Mapping[str, str]] = field(default_factory=dict)
    current: dict[str, Entry] = field(default_factory=dict)
    watchers: set[Watcher] = field(default_factory=set)
    idle_since: float | None = None

    def append(
        self, type_: EventType, name: str, labels: Labels, status: rollout_pb2.RolloutStatus
    ) -> Entry:
        self.seq += 1
        digest = status.SerializeToString(deterministic=True)
        entry = Entry(self.seq, type_, name, dict(labels), status, digest)
        self.entries.append(entry)
        if type_ == DELETED:
            self.current.pop(name, None)
        else:
            self.current[name] = entry
        while len(self.entries) > self.max_entries:
            oldest = self.entries.popleft()
            if oldest.type == DELETED:
                self.base.pop(oldest.name, None)
            else:
                self.base[oldest.name] = oldest.labels
            self.floor = oldest.seq
        return entry

    @property
    def version(self) -> str:
        return format_version(self.epoch, self.seq)

    def resumable(self, version: str) -> int:
        """The seq to replay after; raises ``Expired`` saying why it cannot."""
        parsed = parse_version(version)
        if parsed is None:
            EXPIRED.labels("malformed").inc()
            raise Expired(f"version {version!r} is not a watch version of this API")
        epoch, seq = parsed
        if epoch != self.epoch:
            EXPIRED.labels("other-log").inc()
            raise Expired(
                f"version {version!r} was issued by another replica or before a restart; "
                "watch again without a version"
            )
        if seq < self.floor or seq > self.seq:
            EXPIRED.labels("too-old").inc()
            raise Expired(
                f"version {version!r} is older than the {self.max_entries} changes kept; "
                "watch again without a version"
            )
        return seq

    def names_at(self, seq: int) -> dict[str, Mapping[str, str]]:
        """The CloneSets that existed as of ``seq`` (from ``floor`` on), with their labels."""
        names = dict(self.base)
        for entry in self.entries:
            if entry.seq > seq:
                break
            if entry.type == DELETED:
                names.pop(entry.name, None)
            else:
                names[entry.name] = entry.labels
        return names

    def after(self, seq: int) -> list[Entry]:
        return [e for e in self.entries if e.seq > seq]


@dataclass(eq=False)
class Watcher:
    """One stream's queue of entries; ``overflowed`` when it fell ``max_queue`` behind."""

    max_queue: int
    queue: asyncio.Queue[Entry | None] = field(default_factory=asyncio.Queue)
    overflowed: bool = False
    moved: str = ""

    def push(self, entry: Entry | None) -> None:
        if self.overflowed:
            return
        if entry is not None and self.queue.qsize() >= self.max_queue:
            self.overflowed = True
            self.queue.put_nowait(None)
            return
        self.queue.put_nowait(entry)


@dataclass
class StatusFeed:
    """Keeps the logs of watched namespaces current from the replica's Sync events.

    Register ``on_event`` and ``on_snapshot`` after the controller's, so its pod index has
    seen an event before the feed reads it.
    """

    cache: ObjectCache
    pods_of: PodsOf
    report: Report
    owns: Callable[[str], bool]
    wait_indexed: Callable[[], Awaitable[None]]
    max_entries: int = 1024
    max_queue: int = 10_000
    retain_s: float = 120.0
    logs: dict[str, NamespaceLog] = field(default_factory=dict)
    _dirty: dict[str, set[str]] = field(default_factory=dict)
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="rollout status feed")

    async def stop(self) -> None:
        for namespace in list(self.logs):
            self._drop(namespace, "the rollout replica is stopping; resume through the gateway")
        await stop_task(self._task)

    # ---- events -------------------------------------------------------------------------
    def on_event(self, event: mesh_pb2.WatchEvent) -> None:
        if event.kind not in (CLONE_SET, POD):
            return
        view = view_of(event.object)
        if view is None or view.meta.namespace not in self.logs:
            return
        if event.kind == CLONE_SET:
            self._mark(view.meta.namespace, view.meta.name)
            return
        ref = controller_ref(view.meta.owner_references)
        if ref is not None and ref.kind == "CloneSet":
            self._mark(view.meta.namespace, ref.name)

    def on_snapshot(self) -> None:
        for namespace in list(self.logs):
            if not self.owns(namespace):
                self._drop(namespace, f"namespace {namespace} moved to another rollout replica")
                continue
            names = set(self.logs[namespace].current)
            names.update(name for _, name in self.cache.keys(CLONE_SET, namespace))
            for name in names:
                self._mark(namespace, name)

    def _mark(self, namespace: str, name: str) -> None:
        self._dirty.setdefault(namespace, set()).add(name)
        self._wake.set()

    # ---- the log ------------------------------------------------------------------------
    async def _run(self) -> None:
        forgot = time.monotonic()
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=10.0)
            except TimeoutError:
                pass
            if time.monotonic() - forgot >= 10.0:  # also on a feed that is never quiet
                forgot = time.monotonic()
                self._forget_idle()
            if not self._wake.is_set():
                continue
            self._wake.clear()
            await self._indexed()
            dirty, self._dirty = self._dirty, {}
            for namespace, names in dirty.items():
                namespace_log = self.logs.get(namespace)
                if namespace_log is None:
                    continue
                for name in sorted(names):
                    self._refresh(namespace_log, namespace, name)

    async def _indexed(self) -> None:
        await self.wait_indexed()

    def _refresh(self, namespace_log: NamespaceLog, namespace: str, name: str) -> None:
        """Log the CloneSet's status if it differs from the last one logged."""
        view: views_pb2.CloneSetView | None = self.cache.get(CLONE_SET, namespace, name)
        last = namespace_log.current.get(name)
        if view is None:
            if last is not None:
                self._publish(namespace_log, DELETED, name, last.labels, last.status)
            return
        status = self.report(view, self.pods_of(view))
        if last is not None and last.digest == status.SerializeToString(deterministic=True):
            return
        type_ = ADDED if last is None else MODIFIED
        self._publish(namespace_log, type_, name, view.meta.labels, status)

    def _publish(
        self,
        namespace_log: NamespaceLog,
        type_: EventType,
        name: str,
        labels: Labels,
        status: rollout_pb2.RolloutStatus,
    ) -> None:
        entry = namespace_log.append(type_, name, labels, status)
        CHANGES.labels(rollout_pb2.WatchRolloutStatusResponse.Type.Name(type_)).inc()
        for watcher in namespace_log.watchers:
            watcher.push(entry)

    async def open(self, namespace: str) -> NamespaceLog:
        """The namespace's log, made (with every CloneSet ADDED) if it has none."""
        existing = self.logs.get(namespace)
        if existing is not None:
            return existing
        await self._indexed()
        existing = self.logs.get(namespace)  # made meanwhile
        if existing is not None:
            return existing
        namespace_log = NamespaceLog(epoch=secrets.token_hex(6), max_entries=self.max_entries)
        for view in sorted(self.cache.items(CLONE_SET, namespace), key=lambda v: v.meta.name):
            status = self.report(view, self.pods_of(view))
            namespace_log.append(ADDED, view.meta.name, view.meta.labels, status)
        self.logs[namespace] = namespace_log
        LOGS.set(len(self.logs))
        return namespace_log

    def _drop(self, namespace: str, why: str) -> None:
        namespace_log = self.logs.pop(namespace, None)
        self._dirty.pop(namespace, None)
        LOGS.set(len(self.logs))
        if namespace_log is None:
            return
        for watcher in namespace_log.watchers:
            watcher.moved = why
            watcher.queue.put_nowait(None)

    def _forget_idle(self) -> None:
        now = time.monotonic()
        for namespace, namespace_log in list(self.logs.items()):
            idle = namespace_log.idle_since
            if idle is not None and now - idle > self.retain_s:
                self._drop(namespace, "no longer watched")

    # ---- streams ------------------------------------------------------------------------
    async def stream(
        self,
        *,
        namespace: str,
        matches: Matcher,
        resume_version: str,
        bookmark_s: float,
    ) -> AsyncIterator[rollout_pb2.WatchRolloutStatusResponse]:
        """The events of one watch: the initial state (or the replay after
        ``resume_version``), then every change, with BOOKMARKs on quiet stretches.

        Raises ``Expired`` (the version cannot be resumed here) or ``Moved`` (the namespace
        left this replica), before or during the stream.
        """
        namespace_log = await self.open(namespace)
        if self.logs.get(namespace) is not namespace_log:
            raise Moved(f"namespace {namespace} moved to another rollout replica")
        watcher = Watcher(max_queue=self.max_queue)
        # Registered before anything is sent: an entry logged meanwhile is queued, not lost.
        namespace_log.watchers.add(watcher)
        namespace_log.idle_since = None
        WATCHERS.inc()
        try:
            if resume_version:
                seq = namespace_log.resumable(resume_version)
                known = namespace_log.names_at(seq)
                has = {name for name, labels in known.items() if matches(name, labels)}
                # What to replay and where live entries start, taken at one instant: entries
                # logged while the replay is sent wait in the queue.
                replay, last_seq = namespace_log.after(seq), namespace_log.seq
                for entry in replay:
                    event = _event_for(entry, has, matches, namespace_log.epoch)
                    if event is not None:
                        yield event
            else:
                has = set()
                listed = sorted(namespace_log.current.values(), key=lambda e: e.name)
                last_seq = namespace_log.seq
                for entry in listed:
                    if matches(entry.name, entry.labels):
                        has.add(entry.name)
                        yield _response(ADDED, entry.status, "")
                yield rollout_pb2.WatchRolloutStatusResponse(
                    type=BOOKMARK,
                    version=format_version(namespace_log.epoch, last_seq),
                    initial_events_end=True,
                )
            # Entries queued while replaying or listing were sent already.
            while True:
                try:
                    queued = await asyncio.wait_for(watcher.queue.get(), timeout=bookmark_s)
                except TimeoutError:
                    yield rollout_pb2.WatchRolloutStatusResponse(
                        type=BOOKMARK, version=format_version(namespace_log.epoch, last_seq)
                    )
                    continue
                if queued is None:
                    if watcher.moved:
                        raise Moved(watcher.moved)
                    EXPIRED.labels("fell-behind").inc()
                    raise Expired(
                        f"the watch fell more than {self.max_queue} changes behind; "
                        "watch again without a version"
                    )
                if queued.seq <= last_seq:
                    continue
                last_seq = queued.seq
                event = _event_for(queued, has, matches, namespace_log.epoch)
                if event is not None:
                    yield event
        finally:
            WATCHERS.dec()
            namespace_log.watchers.discard(watcher)
            if not namespace_log.watchers:
                namespace_log.idle_since = time.monotonic()


def _response(
    type_: EventType, status: rollout_pb2.RolloutStatus, version: str
) -> rollout_pb2.WatchRolloutStatusResponse:
    answer = rollout_pb2.WatchRolloutStatusResponse(type=type_, version=version)
    answer.status.CopyFrom(status)
    return answer


def _event_for(
    entry: Entry, has: set[str], matches: Matcher, epoch: str
) -> rollout_pb2.WatchRolloutStatusResponse | None:
    """The event a watcher that holds ``has`` sees for ``entry`` (and ``has`` updated):
    a CloneSet that stops matching the selector is DELETED for it, one that starts is
    ADDED, as a Kubernetes watch with a label selector does."""
    version = format_version(epoch, entry.seq)
    held = entry.name in has
    if entry.type == DELETED:
        if not held:
            return None
        has.discard(entry.name)
        return _response(DELETED, entry.status, version)
    if matches(entry.name, entry.labels):
        has.add(entry.name)
        return _response(MODIFIED if held else ADDED, entry.status, version)
    if held:
        has.discard(entry.name)
        return _response(DELETED, entry.status, version)
    return None
