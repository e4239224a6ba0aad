"""The gateway → replica event streams: one ``MeshService.Sync`` per service replica.

The protocol (mesh.proto, ``SyncMessage``/``SyncAck``), as the gateway drives it::

    replica                                gateway
       ── SyncAck{sequence 0, kinds} ──▶                 the replica says what it wants
       ◀── SyncMessage{1, snapshot_begin, replica, ring_members}
       ◀── SyncMessage{2.., events: ADDED ×≤500}         everything it owns, in batches
       ◀── SyncMessage{n, snapshot_end}
       ◀── SyncMessage{n+1.., events: deltas ×≤500}      ordered; a burst costs few messages
       ── SyncAck{sequence} ──▶                          after applying each message

- Ownership: namespaced objects go to ``ring.owner(namespace)`` of the replica's
  service; cluster-scoped ones (nodes) go to every replica.
- Nothing is lost between snapshot and deltas: the stream subscribes to the hub and
  snapshots its cache in one synchronous step (``Hub.subscribe_with_snapshot``).
- Flow control: at most ``window`` messages un-acked.
- A broken stream or a restarted replica: reconnect with backoff (0.2 s → 5 s) and
  start over with a snapshot. A ring change (replica added or removed): every
  replica of that service restarts its stream with a fresh snapshot. A stream whose
  subscription overflows (the replica fell far behind) also starts over.

Each hub event is serialised once (``HubEvent.event_bytes``) and shared by every
stream; a SyncMessage is its header serialised by protobuf followed by the
events' pre-encoded bytes, so the per-replica cost is a byte join.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import grpc
from prometheus_client import Counter

from kruise.common.v1 import mesh_pb2
from services.gateway.hub import Backoff, Hub, HubEvent, Overflow, frame_field
from services.gateway.routing import SERVICES, Router
from services.kit import errors
from services.kit.ring import HashRing
from services.kit.rpc import insecure_channel, mesh_channel
from services.kit.tasks import stop_task
from services.kit.tls import MeshTls

log = logging.getLogger(__name__)

SYNC_METHOD = "/kruise.common.v1.MeshService/Sync"

EVENTS_SENT = Counter(
    "kruise_mesh_gateway_events_sent", "Watch events sent to service replicas", ["service"]
)
SNAPSHOTS = Counter(
    "kruise_mesh_gateway_sync_snapshots", "Snapshots sent to service replicas", ["service"]
)

ChannelFactory = Callable[[str], grpc.aio.Channel]


def encode_sync_message(
    *,
    sequence: int,
    events: Sequence[bytes] = (),
    snapshot_begin: bool = False,
    snapshot_end: bool = False,
    replica: str = "",
    ring_members: Sequence[str] = (),
) -> bytes:
    """A serialised ``SyncMessage`` whose events are already serialised ``WatchEvent``s.

    Pure. Protobuf concatenation appends repeated fields, so the header and the
    framed events can be joined as bytes.
    """
    header = mesh_pb2.SyncMessage(
        sequence=sequence,
        snapshot_begin=snapshot_begin,
        snapshot_end=snapshot_end,
        replica=replica,
        ring_members=ring_members,
    ).SerializeToString()
    return header + b"".join(frame_field(4, e) for e in events)


def owned_filter(ring: HashRing, address: str) -> Callable[[str], bool]:
    """``owns(namespace)`` for ``address`` on ``ring``; "" (cluster-scoped) is always owned.

    Pure; the owner of each namespace is computed once and remembered.
    """
    memo: dict[str, bool] = {"": True}

    def owns(namespace: str) -> bool:
        got = memo.get(namespace)
        if got is None:
            got = memo[namespace] = ring.owner(namespace) == address
        return got

    return owns


@dataclass(frozen=True, slots=True)
class SyncConfig:
    batch_size: int = 500
    window: int = 8  # un-acked messages in flight
    backoff_initial: float = 0.2
    backoff_max: float = 5.0
    first_ack_timeout: float = 10.0


@dataclass(slots=True)
class ReplicaStatus:
    """What /readyz and metrics say about one replica stream."""

    service: str
    address: str
    connected: bool = False
    synced: bool = False  # the current stream's snapshot_end was acked
    kinds: list[int] = field(default_factory=list)
    last_sent: int = 0
    last_acked: int = 0
    snapshots: int = 0
    events_sent: int = 0
    streams: int = 0
    last_error: str = ""


class _Window:
    """Acks seen on a stream; lets the writer wait for room."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.sent = 0
        self.acked = 0
        self._changed = asyncio.Event()

    def ack(self, sequence: int) -> None:
        if sequence > self.acked:
            self.acked = sequence
            self._changed.set()

    async def room(self) -> None:
        while self.sent - self.acked >= self.size:
            self._changed.clear()
            await self._changed.wait()


class ReplicaSync:
    """Keeps one replica's Sync stream going: snapshot, deltas, reconnects."""

    def __init__(
        self,
        *,
        service: str,
        address: str,
        hub: Hub,
        router: Router,
        config: SyncConfig = SyncConfig(),
        channel_factory: ChannelFactory = insecure_channel,
        tls: MeshTls | None = None,
    ) -> None:
        self.service = service
        self.address = address
        self.hub = hub
        self.router = router
        self.config = config
        self.channel_factory = channel_factory
        self.tls = tls
        self.status = ReplicaStatus(service=service, address=address)
        self._restart = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name=f"sync {self.service} {self.address}")

    async def stop(self) -> None:
        await stop_task(self._task)
        self._task = None

    def restart(self) -> None:
        """End the current stream and start over with a fresh snapshot (a ring change)."""
        self._restart.set()

    async def run(self) -> None:
        backoff = Backoff(initial=self.config.backoff_initial, maximum=self.config.backoff_max)
        if self.tls is not None:  # mutual TLS, checking the replica is one of the service's
            channel = mesh_channel(self.address, tls=self.tls, peer=self.service)
        else:
            channel = self.channel_factory(self.address)
        try:
            while True:
                self._restart.clear()
                session = asyncio.create_task(self._session(channel))
                restart = asyncio.create_task(self._restart.wait())
                try:
                    await asyncio.wait({session, restart}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    restart.cancel()
                    # asyncio.wait never raises the session's error: it is read below. A
                    # cancellation swallowed by a library is sent again until it takes.
                    while not session.done():
                        session.cancel()
                        await asyncio.wait({session}, timeout=1.0)
                self.status.connected = False
                was_synced = self.status.synced
                self.status.synced = False
                if self._restart.is_set():
                    log.info("sync stream restarts", extra=self._log_extra())
                    continue
                error = _describe(session)
                self.status.last_error = error
                if was_synced:
                    backoff.reset()
                delay = backoff.next()
                log.warning(
                    "sync stream ended: %s; reconnecting in %.2f s",
                    error,
                    delay,
                    extra=self._log_extra(),
                )
                await asyncio.sleep(delay)
        finally:
            await channel.close()

    def _log_extra(self) -> dict[str, str]:
        return {"service": self.service, "replica": self.address}

    async def _session(self, channel: grpc.aio.Channel) -> None:
        call: grpc.aio.StreamStreamCall[bytes, mesh_pb2.SyncAck] = channel.stream_stream(
            SYNC_METHOD,
            request_serializer=None,
            response_deserializer=mesh_pb2.SyncAck.FromString,
        )()
        try:
            # asyncio.timeout, not wait_for: Python 3.11's wait_for can swallow a cancellation
            # that arrives as the read completes, and a session that outlives its cancel
            # streams on with a stale ring while run() waits for it forever.
            async with asyncio.timeout(self.config.first_ack_timeout):
                first = await call.read()
            if first is grpc.aio.EOF or not isinstance(first, mesh_pb2.SyncAck):
                raise errors.Unavailable("replica closed the stream before naming its kinds")
            self.status.streams += 1
            self.status.connected = True
            self.status.kinds = list(first.kinds)
            await self.hub.wait_synced()
            window = _Window(self.config.window)
            async with asyncio.TaskGroup() as group:
                group.create_task(self._read_acks(call, window))
                group.create_task(self._write(call, window, kinds=list(first.kinds)))
        finally:
            call.cancel()

    async def _read_acks(
        self, call: grpc.aio.StreamStreamCall[bytes, mesh_pb2.SyncAck], window: _Window
    ) -> None:
        while True:
            ack = await call.read()
            if ack is grpc.aio.EOF:
                raise errors.Unavailable("replica ended the stream")
            assert isinstance(ack, mesh_pb2.SyncAck)
            window.ack(ack.sequence)
            self.status.last_acked = window.acked
            if self._snapshot_end and window.acked >= self._snapshot_end and not self.status.synced:
                self.status.synced = True
                log.info("replica synced", extra=self._log_extra())

    _snapshot_end = 0

    async def _write(
        self,
        call: grpc.aio.StreamStreamCall[bytes, mesh_pb2.SyncAck],
        window: _Window,
        *,
        kinds: list[int],
    ) -> None:
        ring = self.router.ring(self.service)
        owns = owned_filter(ring, self.address)
        batch_size = self.config.batch_size
        events_sent = EVENTS_SENT.labels(self.service)
        self._snapshot_end = 0

        async def send(message: bytes, count: int) -> None:
            await window.room()
            window.sent += 1
            await call.write(message)
            self.status.last_sent = window.sent
            if count:
                self.status.events_sent += count
                events_sent.inc(count)

        sub, snapshot = self.hub.subscribe_with_snapshot(kinds, owns=owns)
        with sub:
            await send(
                encode_sync_message(
                    sequence=1,
                    snapshot_begin=True,
                    replica=self.address,
                    ring_members=ring.members,
                ),
                0,
            )
            # Encoded a batch at a time, between sends: the event loop is never held long.
            for batch in snapshot.batches(batch_size):
                await send(encode_sync_message(sequence=window.sent + 1, events=batch), len(batch))
            del snapshot
            await send(encode_sync_message(sequence=window.sent + 1, snapshot_end=True), 0)
            self._snapshot_end = window.sent
            self.status.snapshots += 1
            SNAPSHOTS.labels(self.service).inc()
            while True:
                await sub.wait()
                events: list[HubEvent] = [e for e in sub.drain(batch_size) if owns(e.namespace)]
                if events:
                    await send(
                        encode_sync_message(
                            sequence=window.sent + 1, events=[e.event_bytes for e in events]
                        ),
                        len(events),
                    )


def _describe(task: asyncio.Task[None]) -> str:
    if task.cancelled():
        return "cancelled"
    error = task.exception()
    while isinstance(error, BaseExceptionGroup) and error.exceptions:
        error = error.exceptions[0]
    if isinstance(error, grpc.aio.AioRpcError):
        return f"{error.code().name}: {error.details()}"
    if isinstance(error, Overflow):
        return f"fell behind ({error}); starting over with a snapshot"
    return f"{type(error).__name__}: {error}" if error else "ended"


class SyncManager:
    """One ReplicaSync per replica of every service, kept in step with the Router."""

    def __init__(
        self,
        hub: Hub,
        router: Router,
        *,
        services: Iterable[str] = SERVICES,
        config: SyncConfig = SyncConfig(),
        channel_factory: ChannelFactory = insecure_channel,
        tls: MeshTls | None = None,
    ) -> None:
        self.hub = hub
        self.router = router
        self.services = tuple(services)
        self.config = config
        self.channel_factory = channel_factory
        self.tls = tls
        self.replicas: dict[tuple[str, str], ReplicaSync] = {}
        self._remove_listener: Callable[[], None] | None = None
        self._stopping: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._remove_listener = self.router.add_listener(self._on_ring)
        for service in self.services:
            self._reconcile(service, self.router.ring(service), restart_kept=False)

    async def stop(self) -> None:
        if self._remove_listener is not None:
            self._remove_listener()
            self._remove_listener = None
        replicas = list(self.replicas.values())
        self.replicas.clear()
        await asyncio.gather(*(r.stop() for r in replicas))
        await asyncio.gather(*self._stopping, return_exceptions=True)

    async def __aenter__(self) -> SyncManager:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _on_ring(self, service: str, ring: HashRing) -> None:
        if service in self.services:
            self._reconcile(service, ring, restart_kept=True)

    def _reconcile(self, service: str, ring: HashRing, *, restart_kept: bool) -> None:
        wanted = set(ring.members)
        current = {addr for (svc, addr) in self.replicas if svc == service}
        for address in sorted(current - wanted):
            replica = self.replicas.pop((service, address))
            task = asyncio.create_task(replica.stop())
            self._stopping.add(task)
            task.add_done_callback(self._stopping.discard)
        if restart_kept:
            for address in sorted(current & wanted):
                self.replicas[(service, address)].restart()
        for address in sorted(wanted - current):
            replica = ReplicaSync(
                service=service,
                address=address,
                hub=self.hub,
                router=self.router,
                config=self.config,
                channel_factory=self.channel_factory,
                tls=self.tls,
            )
            self.replicas[(service, address)] = replica
            replica.start()

    def statuses(self) -> list[ReplicaStatus]:
        return [self.replicas[key].status for key in sorted(self.replicas)]

    def ready(self) -> bool:
        """Every known replica holds its snapshot (for /readyz)."""
        return all(r.status.synced for r in self.replicas.values())
