"""Replica event streams (services.gateway.sync) against real grpc.aio test replicas.

Each test replica is a real gRPC server on 127.0.0.1:0 implementing MeshService.Sync: it
names its kinds, applies snapshot and deltas to a state dict, records every message and
acks it. The hub runs against the sandbox API server.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
import orjson
import pytest

from kruise.common.v1 import mesh_pb2, mesh_pb2_grpc, views_pb2
from services.cli.procs import free_port
from services.gateway.hub import Hub, ReflectorConfig, WatchSpec, encode_watch_event
from services.gateway.kube.client import KubeClient
from services.gateway.routing import Router
from services.gateway.sync import SyncConfig, SyncManager, encode_sync_message, owned_filter
from services.kit.ring import HashRing
from services.kit.rpc import Server, create_server
from tests.gateway.test_hub import create_pod, delete_pod, ensure_namespace, label_pod

FAST = ReflectorConfig(
    page_size=50, read_timeout=10.0, retry_unserved=5.0, backoff_initial=0.05, backoff_max=0.2
)
SYNC = SyncConfig(batch_size=3, window=2, backoff_initial=0.05, backoff_max=0.3)
KINDS = (WatchSpec("v1", "Pod"), WatchSpec("v1", "Node"))
NAMESPACES = [f"ns-{i}" for i in range(5)]

Key = tuple[int, str, str]  # kind, namespace, name


@dataclass
class Stream:
    messages: list[mesh_pb2.SyncMessage] = field(default_factory=list)
    state: dict[Key, str] = field(default_factory=dict)  # → resourceVersion
    synced: bool = False


class RecordingMesh(mesh_pb2_grpc.MeshServiceServicer):
    """A minimal service replica: records streams, applies events, acks each message."""

    def __init__(self, kinds: list[mesh_pb2.Kind.ValueType]) -> None:
        self.kinds = kinds
        self.streams: list[Stream] = []
        self.changed = asyncio.Event()

    @property
    def current(self) -> Stream:
        return self.streams[-1]

    async def Sync(  # noqa: N802 - the generated name
        self, request_iterator: AsyncIterator[mesh_pb2.SyncMessage], context: Any
    ) -> AsyncIterator[mesh_pb2.SyncAck]:
        yield mesh_pb2.SyncAck(sequence=0, kinds=self.kinds)
        stream = Stream()
        self.streams.append(stream)
        async for msg in request_iterator:
            stream.messages.append(msg)
            if msg.snapshot_begin:
                stream.state.clear()
            for ev in msg.events:
                which = ev.object.WhichOneof("view")
                assert which is not None
                view = getattr(ev.object, which)
                key = (ev.kind, view.meta.namespace, view.meta.name)
                if ev.type == mesh_pb2.WatchEvent.TYPE_DELETED:
                    stream.state.pop(key, None)
                else:
                    stream.state[key] = view.meta.resource_version
            if msg.snapshot_end:
                stream.synced = True
            self.changed.set()
            yield mesh_pb2.SyncAck(sequence=msg.sequence)

    async def Review(self, request: Any, context: Any) -> Any:  # noqa: N802
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "test replica")

    async def ReviewStream(  # noqa: N802
        self, request_iterator: Any, context: Any
    ) -> AsyncIterator[mesh_pb2.AdmissionResponse]:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "test replica")
        yield mesh_pb2.AdmissionResponse()  # unreachable: abort raises

    async def GetReplicaStatus(self, request: Any, context: Any) -> Any:  # noqa: N802
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "test replica")

    async def ListCachedObjects(self, request: Any, context: Any) -> Any:  # noqa: N802
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "test replica")


@dataclass
class Replica:
    servicer: RecordingMesh
    server: Server

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server.port}"


async def start_replica(port: int = 0) -> Replica:
    servicer = RecordingMesh([mesh_pb2.KIND_POD, mesh_pb2.KIND_NODE])
    server = await create_server(
        register=[lambda s: mesh_pb2_grpc.add_MeshServiceServicer_to_server(servicer, s)],
        service_names=["kruise.common.v1.MeshService"],
        port=port,
    )
    return Replica(servicer, server)


async def eventually(check: Callable[[], bool], *, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.02)


async def api_state(kube: KubeClient) -> dict[Key, str]:
    out: dict[Key, str] = {}
    for kind, path in ((mesh_pb2.KIND_POD, "/api/v1/pods"), (mesh_pb2.KIND_NODE, "/api/v1/nodes")):
        for item in (await kube.request_json("GET", path))["items"]:
            meta = item["metadata"]
            out[(kind, meta.get("namespace", ""), meta["name"])] = meta["resourceVersion"]
    return out


def owned(state: dict[Key, str], ring: HashRing, address: str) -> dict[Key, str]:
    owns = owned_filter(ring, address)
    return {k: v for k, v in state.items() if owns(k[1])}


def assert_contiguous(stream: Stream) -> None:
    sequences = [m.sequence for m in stream.messages]
    assert sequences == list(range(1, len(sequences) + 1))
    assert stream.messages[0].snapshot_begin
    assert sum(m.snapshot_end for m in stream.messages) == 1
    assert all(len(m.events) <= SYNC.batch_size for m in stream.messages)


@pytest.fixture
async def replicas() -> AsyncIterator[list[Replica]]:
    started = [await start_replica(), await start_replica()]
    yield started
    for r in started:
        await r.server.stop(grace=None)


@pytest.fixture
async def hub(kube: KubeClient) -> AsyncIterator[Hub]:
    for ns in NAMESPACES:
        await ensure_namespace(kube, ns)
    await kube.request(
        "POST",
        "/api/v1/nodes",
        body=orjson.dumps({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-x"}}),
    )
    for i in range(15):
        await create_pod(kube, NAMESPACES[i % 5], f"seed-{i}")
    async with Hub(kube, kinds=KINDS, config=FAST, freeze_gc=False) as started:
        async with asyncio.timeout(10):
            await started.wait_synced()
        yield started


# -- pure ----------------------------------------------------------------------------------------


def test_sync_message_header_and_preencoded_events_parse_back() -> None:
    view = views_pb2.ObjectView(pod=views_pb2.PodView(phase="Running"))
    event = encode_watch_event(
        type=mesh_pb2.WatchEvent.TYPE_ADDED,
        kind=mesh_pb2.KIND_POD,
        object_bytes=view.SerializeToString(),
    )
    raw = encode_sync_message(
        sequence=7, events=[event, event], snapshot_begin=True, replica="a:1", ring_members=["a:1"]
    )
    msg = mesh_pb2.SyncMessage.FromString(raw)
    assert (msg.sequence, msg.snapshot_begin, msg.snapshot_end, msg.replica) == (
        7,
        True,
        False,
        "a:1",
    )
    assert list(msg.ring_members) == ["a:1"]
    assert [e.object.pod.phase for e in msg.events] == ["Running", "Running"]


@pytest.mark.parametrize(
    ("namespace", "expected"),
    [
        pytest.param("", True, id="cluster-scoped objects go to every replica"),
        pytest.param("team-a", None, id="namespaced objects go to the ring owner"),
    ],
)
def test_owned_filter(namespace: str, expected: bool | None) -> None:
    ring = HashRing(["a:1", "b:1"])
    owns_a, owns_b = owned_filter(ring, "a:1"), owned_filter(ring, "b:1")
    if expected is None:
        assert owns_a(namespace) != owns_b(namespace)
    else:
        assert owns_a(namespace) is owns_b(namespace) is expected


# -- streams --------------------------------------------------------------------------------------


async def test_snapshot_then_ordered_deltas_each_pod_reaches_its_owner_only(
    kube: KubeClient, hub: Hub, replicas: list[Replica]
) -> None:
    router = Router({"placement": [r.address for r in replicas]})
    ring = router.ring("placement")
    async with SyncManager(hub, router, services=["placement"], config=SYNC) as manager:
        await eventually(manager.ready)
        for r in replicas:
            first = r.servicer.current.messages[0]
            assert first.replica == r.address and list(first.ring_members) == list(ring.members)
        # deltas: a burst of creates, an update, a delete
        for i in range(10):
            await create_pod(kube, NAMESPACES[i % 5], f"new-{i}")
        await label_pod(kube, "ns-1", "seed-1", tier="db")
        await delete_pod(kube, "ns-2", "seed-2")
        want = await api_state(kube)
        await eventually(
            lambda: all(r.servicer.current.state == owned(want, ring, r.address) for r in replicas)
        )
        pods = [k for k in want if k[0] == mesh_pb2.KIND_POD]
        holders = {k: [r for r in replicas if k in r.servicer.current.state] for k in pods}
        assert all(len(h) == 1 for h in holders.values()), "each pod reaches exactly one replica"
        assert all((mesh_pb2.KIND_NODE, "", "node-x") in r.servicer.current.state for r in replicas)
        for r in replicas:
            assert_contiguous(r.servicer.current)
            assert len(r.servicer.streams) == 1
        # The replicas hold everything; their acks of the last messages may still be on
        # the way back (a busy machine), so the manager sees them all acked eventually.
        await eventually(
            lambda: all(
                s.connected and s.synced and s.last_acked == s.last_sent for s in manager.statuses()
            )
        )


async def test_replica_restart_gets_a_fresh_snapshot(
    kube: KubeClient, hub: Hub, replicas: list[Replica]
) -> None:
    router = Router({"placement": [r.address for r in replicas]})
    ring = router.ring("placement")
    async with SyncManager(hub, router, services=["placement"], config=SYNC) as manager:
        await eventually(manager.ready)
        victim = replicas[0]
        port = victim.server.port
        await victim.server.stop(grace=None)
        await create_pod(kube, "ns-0", "while-down")
        await create_pod(kube, "ns-3", "while-down")
        reborn = await start_replica(port)
        replicas[0] = reborn  # the fixture stops it
        want = await api_state(kube)
        await eventually(
            lambda: (
                bool(reborn.servicer.streams)
                and reborn.servicer.current.synced
                and reborn.servicer.current.state == owned(want, ring, reborn.address)
            )
        )
        assert_contiguous(reborn.servicer.current)
        await eventually(manager.ready)
        assert manager.replicas[("placement", reborn.address)].status.streams >= 2


async def test_ring_change_restarts_every_replica_with_a_fresh_snapshot(
    kube: KubeClient, hub: Hub, replicas: list[Replica]
) -> None:
    router = Router({"placement": [replicas[0].address]})
    async with SyncManager(hub, router, services=["placement"], config=SYNC) as manager:
        await eventually(manager.ready)
        everything = await api_state(kube)
        assert replicas[0].servicer.current.state == everything  # sole owner holds it all
        router.set_members("placement", [r.address for r in replicas])
        ring = router.ring("placement")
        await eventually(
            lambda: all(
                r.servicer.streams
                and r.servicer.current.synced
                and r.servicer.current.state == owned(everything, ring, r.address)
                for r in replicas
            )
        )
        assert len(replicas[0].servicer.streams) == 2
        await eventually(manager.ready)
        router.set_members("placement", [replicas[1].address])
        await eventually(lambda: len(manager.replicas) == 1)
        await eventually(lambda: replicas[1].servicer.current.state == everything)


async def test_expired_history_mid_stream_loses_no_event(
    kube: KubeClient, hub: Hub, replicas: list[Replica]
) -> None:
    router = Router({"placement": [r.address for r in replicas]})
    ring = router.ring("placement")
    relists = hub.reflectors[0].relists
    async with SyncManager(hub, router, services=["placement"], config=SYNC) as manager:
        await eventually(manager.ready)
        for round_ in range(3):
            await kube.request("POST", "/sandbox/v1/expire-history")
            for i in range(6):
                await create_pod(kube, NAMESPACES[i % 5], f"gap-{round_}-{i}")
            await label_pod(kube, NAMESPACES[round_], f"seed-{10 + round_}", round=str(round_))
            await delete_pod(kube, NAMESPACES[(round_ + 1) % 5], f"seed-{round_ + 1}")
        want = await api_state(kube)
        await eventually(
            lambda: all(r.servicer.current.state == owned(want, ring, r.address) for r in replicas)
        )
        assert hub.reflectors[0].relists > relists
        for r in replicas:
            assert len(r.servicer.streams) == 1, "a relist is a diff, not a new snapshot"
            assert_contiguous(r.servicer.current)


async def test_unreachable_replica_is_not_ready_and_others_are(
    hub: Hub, replicas: list[Replica]
) -> None:
    with grpc_free_port() as dead:
        router = Router({"placement": [replicas[0].address, dead]})
        async with SyncManager(hub, router, services=["placement"], config=SYNC) as manager:
            await eventually(
                lambda: manager.replicas[("placement", replicas[0].address)].status.synced
            )
            assert not manager.ready()
            down = manager.replicas[("placement", dead)].status
            await eventually(lambda: bool(down.last_error))
            assert not down.connected


class grpc_free_port:  # noqa: N801 - used as a context manager
    """An address nothing listens on (bound then released)."""

    def __enter__(self) -> str:
        return f"127.0.0.1:{free_port()}"

    def __exit__(self, *exc: object) -> None:
        return None


async def test_a_session_that_swallows_its_cancellation_is_cancelled_again() -> None:
    """A ring change must always start a fresh session: a session that ignored its first
    cancel (as Python 3.11's wait_for can) once kept a replica on a stale ring for good."""
    from services.gateway.sync import ReplicaSync

    class Channel:
        async def close(self) -> None:
            return None

    sessions: list[int] = []
    swallowed = asyncio.Event()

    async def session(channel: Any) -> None:
        sessions.append(len(sessions))
        if len(sessions) == 1:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                swallowed.set()  # swallowed: the session goes on
            await asyncio.Event().wait()
        await asyncio.Event().wait()

    sync = ReplicaSync(
        service="rollout",
        address="127.0.0.1:1",
        hub=None,  # type: ignore[arg-type]
        router=Router(),
        channel_factory=lambda address: Channel(),  # type: ignore[arg-type,return-value]
    )
    sync._session = session  # type: ignore[method-assign]
    sync.start()
    for _ in range(100):
        if sessions:
            break
        await asyncio.sleep(0.01)
    sync.restart()
    await asyncio.wait_for(swallowed.wait(), 2)
    for _ in range(40):
        if len(sessions) == 2:
            break
        await asyncio.sleep(0.1)
    await sync.stop()
    assert len(sessions) == 2, "the restart started a new session despite the swallowed cancel"
