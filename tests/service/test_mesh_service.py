"""MeshService as every feature service serves it: Sync, Review, ReviewStream, introspection."""

from __future__ import annotations

import asyncio

import aiohttp
import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from kruise.common.v1 import mesh_pb2, mesh_pb2_grpc, views_pb2
from kruise.placement.v1 import placement_pb2, placement_pb2_grpc


def pod_event(ns: str, name: str, rv: str, kind: int = mesh_pb2.WatchEvent.TYPE_ADDED):
    view = views_pb2.PodView(
        meta=views_pb2.ObjectMeta(namespace=ns, name=name, resource_version=rv)
    )
    return mesh_pb2.WatchEvent(
        type=kind, kind=mesh_pb2.KIND_POD, object=views_pb2.ObjectView(pod=view)
    )


class Gateway:
    """The gateway's side of a Sync stream, driven by hand."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self.call = mesh_pb2_grpc.MeshServiceStub(channel).Sync()
        self.sequence = 0

    async def send(self, **fields) -> mesh_pb2.SyncAck:
        self.sequence += 1
        await self.call.write(mesh_pb2.SyncMessage(sequence=self.sequence, **fields))
        return await self.call.read()


async def test_sync_snapshot_then_deltas_fill_the_cache(placement):
    running, channel = placement
    gw = Gateway(channel)
    hello = await gw.call.read()
    assert hello.sequence == 0
    assert mesh_pb2.KIND_POD in hello.kinds and mesh_pb2.KIND_PERSISTENT_POD_STATE in hello.kinds

    await gw.send(snapshot_begin=True, ring_members=["a", "b"])
    await gw.send(events=[pod_event("ns1", "p1", "1"), pod_event("ns2", "p2", "2")])
    stub = mesh_pb2_grpc.MeshServiceStub(channel)
    status = await stub.GetReplicaStatus(mesh_pb2.GetReplicaStatusRequest())
    assert not status.synced, "a half snapshot must not be visible"
    ack = await gw.send(snapshot_end=True)
    assert ack.sequence == 3

    await gw.send(
        events=[
            pod_event("ns1", "p3", "3"),
            pod_event("ns2", "p2", "4", mesh_pb2.WatchEvent.TYPE_DELETED),
        ]
    )
    status = await stub.GetReplicaStatus(mesh_pb2.GetReplicaStatusRequest())
    assert status.synced and status.last_sequence == 4
    assert list(status.ring_members) == ["a", "b"]
    listed = await stub.ListCachedObjects(mesh_pb2.ListCachedObjectsRequest(kind=mesh_pb2.KIND_POD))
    assert [(k.namespace, k.name) for k in listed.keys] == [("ns1", "p1"), ("ns1", "p3")]

    # A new snapshot replaces everything that came before.
    await gw.send(snapshot_begin=True)
    await gw.send(events=[pod_event("ns9", "only", "9")], snapshot_end=True)
    listed = await stub.ListCachedObjects(mesh_pb2.ListCachedObjectsRequest(kind=mesh_pb2.KIND_POD))
    assert [(k.namespace, k.name) for k in listed.keys] == [("ns9", "only")]
    gw.call.cancel()


async def synced(channel: grpc.aio.Channel) -> Gateway:
    gw = Gateway(channel)
    await gw.call.read()
    await gw.send(snapshot_begin=True, snapshot_end=True)
    return gw


async def test_review_allows_until_the_feature_lands(placement):
    _, channel = placement
    gw = await synced(channel)
    stub = mesh_pb2_grpc.MeshServiceStub(channel)
    answer = await stub.Review(mesh_pb2.AdmissionRequest(webhook="mutate-pods", uid="u1"))
    assert answer.allowed and not answer.patch
    gw.call.cancel()


async def test_no_decision_before_the_first_snapshot(placement):
    """An empty cache is not a basis for a decision: the call fails, failurePolicy decides."""
    _, channel = placement
    stub = mesh_pb2_grpc.MeshServiceStub(channel)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Review(mesh_pb2.AdmissionRequest(webhook="mutate-pods"))
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "no snapshot yet" in caught.value.details()
    call = stub.ReviewStream()
    await call.write(
        mesh_pb2.AdmissionBatch(
            requests=[mesh_pb2.AdmissionRequest(call_id=7, webhook="mutate-pods")]
        )
    )
    answers = await call.read()
    assert answers.responses[0].call_id == 7 and "no snapshot yet" in answers.responses[0].error
    call.cancel()


async def test_unknown_webhook_is_unimplemented_not_allowed(placement):
    _, channel = placement
    await synced(channel)
    stub = mesh_pb2_grpc.MeshServiceStub(channel)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Review(mesh_pb2.AdmissionRequest(webhook="mutate-nodes"))
    assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert "mutate-nodes" in caught.value.details()


async def test_review_stream_answers_every_call_by_id(placement):
    _, channel = placement
    await synced(channel)
    call = mesh_pb2_grpc.MeshServiceStub(channel).ReviewStream()
    for first in range(1, 201, 20):
        batch = mesh_pb2.AdmissionBatch(
            requests=[
                mesh_pb2.AdmissionRequest(
                    call_id=i, webhook="mutate-pods" if i % 50 else "no-such-webhook"
                )
                for i in range(first, first + 20)
            ]
        )
        await call.write(batch)
    await call.done_writing()
    answers = {}
    messages = 0
    async for batch in call:
        messages += 1
        for answer in batch.responses:
            answers[answer.call_id] = answer
    assert sorted(answers) == list(range(1, 201))
    assert messages < 200, "answers decided together travel together"
    assert all(answers[i].allowed and not answers[i].error for i in answers if i % 50)
    assert not answers[50].allowed and "no-such-webhook" in answers[50].error


async def test_bad_arguments_are_invalid_argument(placement):
    _, channel = placement
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await mesh_pb2_grpc.MeshServiceStub(channel).ListCachedObjects(
            mesh_pb2.ListCachedObjectsRequest()
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await placement_pb2_grpc.PlacementServiceStub(channel).ListPodStates(
            placement_pb2.ListPodStatesRequest()
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_placement_reads_pod_states_from_cached_objects(placement):
    _, channel = placement
    gw = Gateway(channel)
    await gw.call.read()
    pps = views_pb2.PersistentPodStateView(
        meta=views_pb2.ObjectMeta(namespace="ns1", name="web"),
        pod_states={"web-0": views_pb2.PodState(node_name="node-a1", pod_ip="10.244.1.5")},
    )
    event = mesh_pb2.WatchEvent(
        type=mesh_pb2.WatchEvent.TYPE_ADDED,
        kind=mesh_pb2.KIND_PERSISTENT_POD_STATE,
        object=views_pb2.ObjectView(persistent_pod_state=pps),
    )
    pod = mesh_pb2.WatchEvent(
        type=mesh_pb2.WatchEvent.TYPE_ADDED,
        kind=mesh_pb2.KIND_POD,
        object=views_pb2.ObjectView(
            pod=views_pb2.PodView(
                meta=views_pb2.ObjectMeta(namespace="ns1", name="web-0"),
                node_name="node-a1",
                pod_ip="10.244.1.9",
            )
        ),
    )
    await gw.send(snapshot_begin=True, events=[event, pod], snapshot_end=True)
    api = placement_pb2_grpc.PlacementServiceStub(channel)
    got = await api.GetPodState(placement_pb2.GetPodStateRequest(namespace="ns1", pod="web-0"))
    assert got.entry.state.node_name == "node-a1" and got.entry.persistent_pod_state == "web"
    assert (got.entry.pod_exists, got.entry.current_node, got.entry.current_ip) == (
        True,
        "node-a1",
        "10.244.1.9",
    )
    assert not got.entry.placed, "same node, another IP than recorded"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await api.GetPodState(placement_pb2.GetPodStateRequest(namespace="ns1", pod="web-9"))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    gw.call.cancel()


async def test_health_readiness_and_metrics(placement):
    running, channel = placement
    health = health_pb2_grpc.HealthStub(channel)
    answer = await health.Check(health_pb2.HealthCheckRequest(service=""))
    assert answer.status == health_pb2.HealthCheckResponse.SERVING
    answer = await health.Check(
        health_pb2.HealthCheckRequest(service="kruise.placement.v1.PlacementService")
    )
    assert answer.status == health_pb2.HealthCheckResponse.SERVING
    readiness = health_pb2.HealthCheckRequest(service="kruise.common.v1.MeshService")
    answer = await health.Check(readiness)
    assert answer.status == health_pb2.HealthCheckResponse.NOT_SERVING, "no snapshot yet"
    base = f"http://127.0.0.1:{running.ops.port}"
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{base}/readyz") as r:
            assert r.status == 503, "not ready before the first snapshot"
        async with http.get(f"{base}/metrics") as r:
            assert "kruise_mesh_service_events_total" in await r.text()
        gw = Gateway(channel)
        await gw.call.read()
        await gw.send(snapshot_begin=True, snapshot_end=True)
        async with http.get(f"{base}/readyz") as r:
            assert r.status == 200
        await asyncio.sleep(0.05)
        answer = await health.Check(readiness)
        assert answer.status == health_pb2.HealthCheckResponse.SERVING
        gw.call.cancel()
        await asyncio.sleep(0)


async def test_a_newer_sync_stream_preempts_the_old_one(placement):
    """A new leader's stream wins at once; the old stream's next message is not applied."""
    _, channel = placement
    old = await synced(channel)
    new = Gateway(channel)
    await new.call.read()
    await new.send(
        snapshot_begin=True, events=[pod_event("ns", "from-new", "5")], snapshot_end=True
    )
    old.sequence += 1
    await old.call.write(
        mesh_pb2.SyncMessage(sequence=old.sequence, events=[pod_event("ns", "from-old", "6")])
    )
    assert await old.call.read() == grpc.aio.EOF, "the old stream ends"
    stub = mesh_pb2_grpc.MeshServiceStub(channel)
    listed = await stub.ListCachedObjects(mesh_pb2.ListCachedObjectsRequest(kind=mesh_pb2.KIND_POD))
    assert [k.name for k in listed.keys] == ["from-new"]
    new.call.cancel()
