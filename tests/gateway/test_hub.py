"""The watch hub against the sandbox API server: list, watch, 410 relist diffs, fan-out, memory."""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import gc
import json
import tracemalloc
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from kruise.common.v1 import mesh_pb2, views_pb2
from sandbox.app import Sandbox
from services.gateway import hub as hubmod
from services.gateway.hub import (
    ADDED,
    DELETED,
    MODIFIED,
    Entry,
    Hub,
    HubEvent,
    ReflectorConfig,
    Subscription,
    WatchSpec,
    encode_watch_event,
)
from services.gateway.kube.client import KubeClient
from services.kit import errors
from services.kit.projection import project_pod
from tests.fixtures import REAL_APISERVER

FAST = ReflectorConfig(
    page_size=2,  # exercise paging with a handful of objects
    timeout_seconds=30,
    read_timeout=10.0,
    retry_unserved=0.3,
    backoff_initial=0.05,
    backoff_max=0.2,
)
PODS_ONLY = (WatchSpec("v1", "Pod"),)


def pod_body(namespace: str, name: str, **labels: str) -> bytes:
    return orjson.dumps(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace, "labels": labels},
            "spec": {"containers": [{"name": "c", "image": "img:1"}]},
        }
    )


async def ensure_namespace(kube: KubeClient, name: str) -> None:
    body = orjson.dumps({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    try:
        await kube.request("POST", "/api/v1/namespaces", body=body)
    except errors.AlreadyExists:
        pass


async def create_pod(kube: KubeClient, namespace: str, name: str, **labels: str) -> str:
    created = orjson.loads(
        await kube.request(
            "POST", f"/api/v1/namespaces/{namespace}/pods", body=pod_body(namespace, name, **labels)
        )
    )
    rv: str = created["metadata"]["resourceVersion"]
    return rv


async def label_pod(kube: KubeClient, namespace: str, name: str, **labels: str) -> None:
    await kube.request(
        "PATCH",
        f"/api/v1/namespaces/{namespace}/pods/{name}",
        body=orjson.dumps({"metadata": {"labels": labels}}),
        content_type="application/merge-patch+json",
    )


async def delete_pod(kube: KubeClient, namespace: str, name: str) -> None:
    await kube.request(
        "DELETE",
        f"/api/v1/namespaces/{namespace}/pods/{name}",
        body=orjson.dumps({"gracePeriodSeconds": 0}),
    )


async def listed_pods(kube: KubeClient) -> dict[tuple[str, str], str]:
    """(namespace, name) → resourceVersion of every pod, straight from the API server."""
    listed = await kube.request_json("GET", "/api/v1/pods")
    return {
        (p["metadata"]["namespace"], p["metadata"]["name"]): p["metadata"]["resourceVersion"]
        for p in listed["items"]
    }


async def collect(sub: Subscription, *, count: int, timeout: float = 5.0) -> list[HubEvent]:
    out: list[HubEvent] = []
    async with asyncio.timeout(timeout):
        while len(out) < count:
            out.append(await sub.get())
    return out


def apply(state: dict[tuple[str, str], str], events: list[HubEvent]) -> None:
    """Replay events into (namespace, name) → resourceVersion, as a replica would."""
    for ev in events:
        key = (ev.namespace, ev.name)
        if ev.type == DELETED:
            state.pop(key, None)
        else:
            state[key] = ev.resource_version


@pytest.fixture
async def started_hub(kube: KubeClient) -> AsyncIterator[Hub]:
    hub = Hub(kube, config=FAST, freeze_gc=False)
    await hub.start()
    try:
        async with asyncio.timeout(10):
            await hub.wait_synced()
        yield hub
    finally:
        await hub.stop()


# -- pure ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("type_", "kind", "size"),
    [
        pytest.param(ADDED, mesh_pb2.KIND_POD, 10, id="small pod added"),
        pytest.param(DELETED, mesh_pb2.KIND_CLONE_SET, 300, id="two-byte length varint"),
        pytest.param(MODIFIED, mesh_pb2.KIND_NODE, 20_000, id="three-byte length varint"),
    ],
)
def test_encoded_watch_event_parses_as_protobuf(type_: int, kind: int, size: int) -> None:
    view = views_pb2.ObjectView(pod=views_pb2.PodView(node_name="n" * size))
    raw = view.SerializeToString()
    parsed = mesh_pb2.WatchEvent.FromString(
        encode_watch_event(type=type_, kind=kind, object_bytes=raw)
    )
    assert (parsed.type, parsed.kind, parsed.object) == (type_, kind, view)


def test_hub_event_unpacks_as_type_kind_view() -> None:
    view = views_pb2.ObjectView(pod=views_pb2.PodView(phase="Running"))
    event = HubEvent(
        type=ADDED,
        kind=mesh_pb2.KIND_POD,
        namespace="ns",
        name="p",
        resource_version="1",
        object_bytes=view.SerializeToString(),
    )
    event_type, kind, got = event
    assert (event_type, kind, got.pod.phase) == (ADDED, mesh_pb2.KIND_POD, "Running")


def test_subscription_overflow_drops_and_says_so() -> None:
    hub = Hub(object(), kinds=(), freeze_gc=False, max_pending=2)  # type: ignore[arg-type]
    sub = hub.subscribe([mesh_pb2.KIND_POD])
    for i in range(3):
        sub.push(
            HubEvent(
                type=ADDED,
                kind=mesh_pb2.KIND_POD,
                namespace="ns",
                name=str(i),
                resource_version=str(i),
                object_bytes=b"",
            )
        )
    assert sub.overflowed
    with pytest.raises(hubmod.Overflow):
        sub.drain(10)


# -- against the sandbox ------------------------------------------------------------------------


async def test_initial_list_then_ordered_watch_events(kube: KubeClient) -> None:
    for ns in ("team-a", "team-b"):
        await ensure_namespace(kube, ns)
    for i in range(5):  # 5 pods, page size 2: three LIST pages
        await create_pod(kube, "team-a" if i % 2 else "team-b", f"p{i}")
    hub = Hub(kube, kinds=PODS_ONLY, config=FAST, freeze_gc=False)
    async with hub:
        async with asyncio.timeout(10):
            await hub.wait_synced()
        assert hub.counts() == {"KIND_POD": 5}
        assert {(ns, name) for ns, name, _ in hub.reflectors[0].items()} == {
            ("team-b", "p0"),
            ("team-a", "p1"),
            ("team-b", "p2"),
            ("team-a", "p3"),
            ("team-b", "p4"),
        }
        with hub.subscribe([mesh_pb2.KIND_POD]) as sub:
            await create_pod(kube, "team-a", "new")
            await label_pod(kube, "team-a", "new", tier="web")
            await delete_pod(kube, "team-b", "p0")
            events = await collect(sub, count=3)
        assert [(e.type, e.namespace, e.name) for e in events] == [
            (ADDED, "team-a", "new"),
            (MODIFIED, "team-a", "new"),
            (DELETED, "team-b", "p0"),
        ]
        assert events[1].view.pod.meta.labels["tier"] == "web"
        assert events[2].view.pod.meta.name == "p0"
        assert hub.counts() == {"KIND_POD": 5}


async def test_unserved_kind_is_skipped_and_the_rest_sync(started_hub: Hub) -> None:
    served = {(r.api_version, r.kind): r.served for r in started_hub.reflectors}
    assert served[("apps.kruise.io/v1beta1", "StatefulSet")] is False  # no such CRD here
    assert served[("v1", "Pod")] is True
    assert started_hub.is_synced()


async def test_restart_relists_and_emits_only_the_difference(kube: KubeClient) -> None:
    await ensure_namespace(kube, "team-a")
    for i in range(4):
        await create_pod(kube, "team-a", f"p{i}")
    hub = Hub(kube, kinds=PODS_ONLY, config=FAST, freeze_gc=False)
    await hub.start()
    async with asyncio.timeout(10):
        await hub.wait_synced()
    sub = hub.subscribe([mesh_pb2.KIND_POD])
    await hub.stop()  # the watch is down while the cluster changes
    await create_pod(kube, "team-a", "x1")
    await create_pod(kube, "team-a", "x2")
    await label_pod(kube, "team-a", "p1", changed="yes")
    await delete_pod(kube, "team-a", "p2")
    await kube.request("POST", "/sandbox/v1/expire-history")
    relists = hub.reflectors[0].relists
    await hub.start()
    try:
        events = await collect(sub, count=4)
        assert sorted((e.type, e.name) for e in events) == [
            (ADDED, "x1"),
            (ADDED, "x2"),
            (MODIFIED, "p1"),
            (DELETED, "p2"),
        ]
        await asyncio.sleep(0.3)
        assert len(sub) == 0, "untouched pods must not be re-sent"
        assert hub.reflectors[0].relists == relists + 1
    finally:
        await hub.stop()


async def test_expired_history_mid_stream_loses_and_repeats_nothing(kube: KubeClient) -> None:
    await ensure_namespace(kube, "churn")
    for i in range(5):
        await create_pod(kube, "churn", f"seed{i}")
    hub = Hub(kube, kinds=PODS_ONLY, config=FAST, freeze_gc=False)
    async with hub:
        async with asyncio.timeout(10):
            await hub.wait_synced()
        sub, snapshot = hub.subscribe_with_snapshot([mesh_pb2.KIND_POD], owns=lambda ns: True)
        state: dict[tuple[str, str], str] = {}
        apply(state, snapshot)
        relists = hub.reflectors[0].relists
        for round_ in range(4):
            await kube.request("POST", "/sandbox/v1/expire-history")
            for i in range(5):
                await create_pod(kube, "churn", f"r{round_}-{i}")
            await label_pod(kube, "churn", f"seed{round_}", round=str(round_))
            await delete_pod(kube, "churn", f"r{round_}-0")
        want = await listed_pods(kube)
        seen: list[HubEvent] = []
        try:
            async with asyncio.timeout(10):
                while state != want:
                    batch = [await sub.get(), *sub.drain(1000)]
                    seen += batch
                    apply(state, batch)
        except TimeoutError:
            missing = {k: v for k, v in want.items() if state.get(k) != v}
            extra = {k: v for k, v in state.items() if k not in want}
            raise AssertionError(f"not converged: missing/stale {missing}, extra {extra}") from None
        assert hub.reflectors[0].relists > relists
        # nothing repeated: no (name, resourceVersion) arrives twice
        pairs = [(e.name, e.resource_version, e.type) for e in seen]
        assert len(pairs) == len(set(pairs))


async def test_snapshots_taken_between_relist_slices_miss_and_repeat_nothing(
    kube: KubeClient,
) -> None:
    """A relist gives the event loop back every ``slice`` objects; a stream that snapshots in
    any of those gaps must still see every pod once: in its snapshot or as an event."""
    await ensure_namespace(kube, "slices")
    for i in range(12):
        await create_pod(kube, "slices", f"p{i}")
    config = dataclasses.replace(FAST, page_size=3, slice=2)
    hub = Hub(kube, kinds=PODS_ONLY, config=config, freeze_gc=False)
    await hub.start()
    async with asyncio.timeout(10):
        await hub.wait_synced()
    await hub.stop()  # the watch is down while the cluster changes
    for i in range(4):
        await create_pod(kube, "slices", f"new{i}")
        await label_pod(kube, "slices", f"p{i}", changed="yes")
        await delete_pod(kube, "slices", f"p{i + 4}")
    await kube.request("POST", "/sandbox/v1/expire-history")
    want = await listed_pods(kube)
    reflector = hub.reflectors[0]
    relists = reflector.relists
    taken: list[tuple[Subscription, list[HubEvent]]] = []
    await hub.start()
    try:
        async with asyncio.timeout(10):
            while reflector.relists == relists:  # a snapshot at every gap of the relist
                sub, snapshot = hub.subscribe_with_snapshot(
                    [mesh_pb2.KIND_POD], owns=lambda ns: True
                )
                taken.append((sub, list(snapshot)))
                await asyncio.sleep(0)
        sizes = {len(snapshot) for _, snapshot in taken}
        assert len(sizes) > 2, f"the relist was not sliced: snapshot sizes {sizes}"
        for sub, snapshot in taken:
            state: dict[tuple[str, str], str] = {}
            apply(state, snapshot)
            events = sub.drain(1000)
            apply(state, events)
            assert state == want
            pairs = [(e.type, e.name, e.resource_version) for e in [*snapshot, *events]]
            assert len(pairs) == len(set(pairs)), "an object arrived twice"
            sub.close()
    finally:
        await hub.stop()


async def test_cached_entries_are_invisible_to_the_garbage_collector(
    kube: KubeClient,
) -> None:
    """Full collections scan every tracked object; 100,000 tracked cache entries held the
    gateway's loop for 60-160 ms per collection. The cache holds only untracked tuples."""
    await ensure_namespace(kube, "untracked")
    for i in range(5):
        await create_pod(kube, "untracked", f"p{i}")
    hub = Hub(kube, kinds=PODS_ONLY, config=FAST, freeze_gc=False)
    async with hub:
        async with asyncio.timeout(10):
            await hub.wait_synced()
        gc.collect()
        entries = [entry for _, _, entry in hub.reflectors[0].items()]
        assert len(entries) >= 5
        assert not any(gc.is_tracked(entry) for entry in entries)


async def test_crd_installed_later_is_picked_up(kube: KubeClient, sandbox: Sandbox) -> None:
    spec = WatchSpec("apps.kruise.io/v1beta1", "StatefulSet")
    hub = Hub(kube, kinds=(spec,), config=FAST, freeze_gc=False)
    async with hub:
        async with asyncio.timeout(5):
            await hub.wait_synced()
        assert hub.reflectors[0].served is False
        crd = {
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": "statefulsets.apps.kruise.io"},
            "spec": {
                "group": "apps.kruise.io",
                "names": {
                    "plural": "statefulsets",
                    "singular": "statefulset",
                    "kind": "StatefulSet",
                },
                "scope": "Namespaced",
                "versions": [
                    {
                        "name": "v1beta1",
                        "served": True,
                        "storage": True,
                        "schema": {
                            "openAPIV3Schema": {
                                "type": "object",
                                "x-kubernetes-preserve-unknown-fields": True,
                            }
                        },
                    }
                ],
            },
        }
        await kube.request(
            "POST",
            "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
            body=orjson.dumps(crd),
        )
        async with asyncio.timeout(10):
            while not hub.reflectors[0].synced.is_set():
                await asyncio.sleep(0.05)
        assert hub.reflectors[0].served is True


# -- memory --------------------------------------------------------------------------------------

FIXTURE = REAL_APISERVER / "api" / "pod-get-running.json"


@pytest.mark.slow
@pytest.mark.skipif(not FIXTURE.exists(), reason="shared fixtures absent")
def test_memory_of_10k_cached_pod_views() -> None:
    """Prints the retained size of 10,000 cached pods (target ≤ 15 MB) and checks it."""
    base: dict[str, Any] = json.loads(FIXTURE.read_text())["response"]["body"]
    lines = []
    for i in range(10_000):
        obj = copy.deepcopy(base)
        meta = obj["metadata"]
        meta["name"] = f"web-{i}"
        meta["namespace"] = f"team-{i % 100}"
        meta["uid"] = f"00000000-0000-0000-0000-{i:012d}"
        meta["resourceVersion"] = str(1000 + i)
        meta["labels"]["pod-template-hash"] = f"h{i % 7}"
        obj["spec"]["nodeName"] = f"node-{i % 50}"
        obj["status"]["podIP"] = f"10.1.{i // 250}.{i % 250}"
        lines.append(orjson.dumps(obj))
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    cache: dict[str, dict[str, Entry[bytes]]] = {}
    for line in lines:
        obj = orjson.loads(line)
        view = views_pb2.ObjectView()
        view.pod.CopyFrom(project_pod(obj))
        m = obj["metadata"]
        cache.setdefault(m["namespace"], {})[m["name"]] = (
            m["resourceVersion"],
            view.SerializeToString(),
        )
        del obj
    gc.collect()
    retained = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    mb = retained / 1e6
    print(f"\n10,000 cached pod views: {mb:.2f} MB ({retained / 10_000:.0f} B/pod)")
    assert sum(len(v) for v in cache.values()) == 10_000
    assert mb <= 15.0
