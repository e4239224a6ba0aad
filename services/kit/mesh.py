"""The servicer every feature service runs for the gateway: events in, admission out.

``MeshServicer`` keeps the replica's ``ObjectCache`` from the ``Sync`` stream and
answers ``Review``/``ReviewStream`` by handing each ``AdmissionRequest`` to the
handler registered for its webhook name. It holds no feature logic: the
handlers (pure decisions behind thin adapters) live in each service's package.

The Sync protocol, from this side:
  1. send ``SyncAck(sequence=0, kinds=...)`` naming the kinds wanted;
  2. receive ``snapshot_begin``; stage every event until ``snapshot_end``, then
     swap the staged cache in (readers never see a half snapshot);
  3. apply deltas in order; ack every message with its sequence.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping

import grpc
from prometheus_client import Counter, Gauge

from kruise.common.v1 import mesh_pb2, mesh_pb2_grpc
from services.kit.cache import ObjectCache
from services.kit.ring import HashRing

log = logging.getLogger(__name__)

Handler = Callable[[mesh_pb2.AdmissionRequest], Awaitable[mesh_pb2.AdmissionResponse]]
Listener = Callable[[mesh_pb2.WatchEvent], None]
SnapshotListener = Callable[[], None]

# Answers per ReviewStream message, at most.
MAX_BATCH = 256

EVENTS = Counter(
    "kruise_mesh_service_events_total", "Watch events applied to the replica cache", ["service"]
)
SNAPSHOTS = Counter(
    "kruise_mesh_service_snapshots_total", "Snapshots received from the gateway", ["service"]
)
REVIEWS = Counter(
    "kruise_mesh_service_reviews_total",
    "Admission reviews answered",
    ["service", "webhook", "allowed"],
)
CACHED = Gauge("kruise_mesh_service_cached_objects", "Objects in the replica cache", ["service"])


class NotSynced(Exception):
    """The replica has not received its first snapshot, so it cannot decide yet."""


async def allow_all(request: mesh_pb2.AdmissionRequest) -> mesh_pb2.AdmissionResponse:
    """The handler of a webhook whose feature has not landed yet: admit as is."""
    return mesh_pb2.AdmissionResponse(call_id=request.call_id, allowed=True)


class MeshServicer(mesh_pb2_grpc.MeshServiceServicer):
    def __init__(
        self,
        *,
        service: str,
        replica: str,
        kinds: Iterable[int],
        handlers: Mapping[str, Handler],
    ) -> None:
        self.service = service
        self.replica = replica
        self.kinds = list(kinds)
        self.handlers = dict(handlers)
        self.cache = ObjectCache()
        self.synced = False
        self.last_sequence = 0
        self.ring_members: list[str] = []
        self.reviews = 0
        self.on_synced: Callable[[bool], None] = lambda synced: None
        self._listeners: list[Listener] = []
        self._snapshot_listeners: list[SnapshotListener] = []
        self._stream_generation = 0
        self._ring: HashRing | None = None

    def owns(self, namespace: str) -> bool:
        """Whether this replica owns ``namespace`` on the ring the gateway last sent (True
        before any ring is known, and for cluster-scoped objects)."""
        if not self.ring_members or not namespace:
            return True
        if self._ring is None or self._ring.members != tuple(sorted(set(self.ring_members))):
            self._ring = HashRing(self.ring_members)
        return self._ring.owner(namespace) == self.replica

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener`` for every event applied after the snapshot (for reconcile loops)."""
        self._listeners.append(listener)

    def add_snapshot_listener(self, listener: SnapshotListener) -> None:
        """Call ``listener`` after each snapshot replaced the cache (rebuild indexes, resync)."""
        self._snapshot_listeners.append(listener)

    # ---- events -------------------------------------------------------------------------
    async def Sync(
        self,
        request_iterator: AsyncIterator[mesh_pb2.SyncMessage],
        context: grpc.aio.ServicerContext[mesh_pb2.SyncMessage, mesh_pb2.SyncAck],
    ) -> AsyncIterator[mesh_pb2.SyncAck]:
        # The newest stream wins: a new leader (or a reconnect) preempts the old stream,
        # which stops at its next message without applying it, even if its connection
        # is half-open and would only be noticed by keepalive.
        self._stream_generation += 1
        generation = self._stream_generation
        yield mesh_pb2.SyncAck(sequence=0, kinds=self.kinds)  # type: ignore[arg-type]
        staged: ObjectCache | None = None
        async for message in request_iterator:
            if generation != self._stream_generation:
                log.info("sync stream replaced by a newer one", extra={"service": self.service})
                return
            if message.snapshot_begin:
                staged = ObjectCache()
                self.ring_members = list(message.ring_members)
                log.info(
                    "snapshot started",
                    extra={"service": self.service, "members": self.ring_members},
                )
            target = staged if staged is not None else self.cache
            for event in message.events:
                target.apply(event)
                if staged is None:
                    for listener in self._listeners:
                        listener(event)
            EVENTS.labels(self.service).inc(len(message.events))
            if message.snapshot_end and staged is not None:
                self.cache.replace(staged)
                staged = None
                for on_snapshot in self._snapshot_listeners:
                    on_snapshot()
                if not self.synced:
                    self.synced = True
                    self.on_synced(True)
                SNAPSHOTS.labels(self.service).inc()
                log.info(
                    "snapshot applied",
                    extra={"service": self.service, "objects": self._total()},
                )
            self.last_sequence = message.sequence
            CACHED.labels(self.service).set(self._total())
            yield mesh_pb2.SyncAck(sequence=message.sequence)
            # gRPC hands over messages already received without suspending; with eight in
            # flight a snapshot would be applied thousands of events at a time, holding every
            # review and probe behind it. One message (≤500 events) per turn of the loop.
            await asyncio.sleep(0)

    def _total(self) -> int:
        return sum(self.cache.count(kind) for kind in self.cache.kinds())

    # ---- admission ----------------------------------------------------------------------
    async def _decide(self, request: mesh_pb2.AdmissionRequest) -> mesh_pb2.AdmissionResponse:
        handler = self.handlers.get(request.webhook)
        if handler is None:
            raise LookupError(f"service {self.service} has no webhook {request.webhook!r}")
        if not self.synced:
            # Never decide on an empty cache: fail the call, the failurePolicy decides.
            raise NotSynced(f"{self.service} replica {self.replica} has no snapshot yet")
        response = await handler(request)
        response.call_id = request.call_id
        self.reviews += 1
        REVIEWS.labels(self.service, request.webhook, str(response.allowed).lower()).inc()
        return response

    async def _answer(self, request: mesh_pb2.AdmissionRequest) -> mesh_pb2.AdmissionResponse:
        """Decide one review; a missing webhook or a failed handler becomes ``error``."""
        try:
            return await self._decide(request)
        except (LookupError, NotSynced) as e:
            return mesh_pb2.AdmissionResponse(call_id=request.call_id, error=str(e))
        except Exception as e:  # a handler bug must not take the stream down
            log.exception("admission handler failed", extra={"webhook": request.webhook})
            return mesh_pb2.AdmissionResponse(
                call_id=request.call_id, error=f"{self.service} failed to decide: {e}"
            )

    async def Review(
        self,
        request: mesh_pb2.AdmissionRequest,
        context: grpc.aio.ServicerContext[mesh_pb2.AdmissionRequest, mesh_pb2.AdmissionResponse],
    ) -> mesh_pb2.AdmissionResponse:
        answer = await self._answer(request)
        if answer.error:
            if request.webhook not in self.handlers:
                code = grpc.StatusCode.UNIMPLEMENTED
            elif not self.synced:
                code = grpc.StatusCode.UNAVAILABLE
            else:
                code = grpc.StatusCode.INTERNAL
            await context.abort(code, answer.error)
        return answer

    async def ReviewStream(
        self,
        request_iterator: AsyncIterator[mesh_pb2.AdmissionBatch],
        context: grpc.aio.ServicerContext[mesh_pb2.AdmissionBatch, mesh_pb2.AdmissionAnswers],
    ) -> AsyncIterator[mesh_pb2.AdmissionAnswers]:
        """Decide every review concurrently; send back whatever is decided, batched."""
        answers: asyncio.Queue[mesh_pb2.AdmissionResponse | None] = asyncio.Queue()
        pending: set[asyncio.Task[None]] = set()

        async def answer(request: mesh_pb2.AdmissionRequest) -> None:
            answers.put_nowait(await self._answer(request))

        async def read() -> None:
            async for batch in request_iterator:
                for request in batch.requests:
                    task = asyncio.create_task(answer(request))
                    pending.add(task)
                    task.add_done_callback(pending.discard)
            if pending:
                await asyncio.gather(*pending)
            answers.put_nowait(None)

        reader = asyncio.create_task(read())
        try:
            done = False
            while not done:
                first = await answers.get()
                if first is None:
                    break
                out = mesh_pb2.AdmissionAnswers(responses=[first])
                while not answers.empty() and len(out.responses) < MAX_BATCH:
                    more = answers.get_nowait()
                    if more is None:
                        done = True
                        break
                    out.responses.append(more)
                yield out
        finally:
            reader.cancel()
            for task in list(pending):
                task.cancel()

    # ---- introspection ------------------------------------------------------------------
    async def GetReplicaStatus(
        self,
        request: mesh_pb2.GetReplicaStatusRequest,
        context: grpc.aio.ServicerContext[
            mesh_pb2.GetReplicaStatusRequest, mesh_pb2.GetReplicaStatusResponse
        ],
    ) -> mesh_pb2.GetReplicaStatusResponse:
        return mesh_pb2.GetReplicaStatusResponse(
            service=self.service,
            replica=self.replica,
            synced=self.synced,
            last_sequence=self.last_sequence,
            counts=[
                mesh_pb2.KindCount(kind=kind, count=self.cache.count(kind))  # type: ignore[arg-type]
                for kind in self.cache.kinds()
            ],
            ring_members=self.ring_members,
            admission_reviews=self.reviews,
        )

    async def ListCachedObjects(
        self,
        request: mesh_pb2.ListCachedObjectsRequest,
        context: grpc.aio.ServicerContext[
            mesh_pb2.ListCachedObjectsRequest, mesh_pb2.ListCachedObjectsResponse
        ],
    ) -> mesh_pb2.ListCachedObjectsResponse:
        if request.kind == mesh_pb2.KIND_UNSPECIFIED:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "kind is required")
        keys = [
            mesh_pb2.ObjectKey(
                namespace=view.meta.namespace,
                name=view.meta.name,
                resource_version=view.meta.resource_version,
            )
            for view in self.cache.items(request.kind, request.namespace or None)
        ]
        keys.sort(key=lambda k: (k.namespace, k.name))
        return mesh_pb2.ListCachedObjectsResponse(keys=keys)
