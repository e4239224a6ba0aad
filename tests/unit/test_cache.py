"""The replica cache: events in stream order, reads as fresh copies."""

from __future__ import annotations

import pytest

from kruise.common.v1 import mesh_pb2, views_pb2
from services.kit.cache import ObjectCache, workload_name

ADDED, MODIFIED, DELETED = (
    mesh_pb2.WatchEvent.TYPE_ADDED,
    mesh_pb2.WatchEvent.TYPE_MODIFIED,
    mesh_pb2.WatchEvent.TYPE_DELETED,
)


def pod(ns: str, name: str, rv: str, type_: int = ADDED, node: str = "") -> mesh_pb2.WatchEvent:
    view = views_pb2.PodView(
        meta=views_pb2.ObjectMeta(namespace=ns, name=name, resource_version=rv), node_name=node
    )
    return mesh_pb2.WatchEvent(
        type=type_, kind=mesh_pb2.KIND_POD, object=views_pb2.ObjectView(pod=view)
    )


@pytest.mark.parametrize(
    ("events", "expected"),
    [
        pytest.param([pod("a", "p", "1")], {("a", "p"): "1"}, id="a pod is added"),
        pytest.param(
            [pod("a", "p", "1"), pod("a", "p", "2", MODIFIED)],
            {("a", "p"): "2"},
            id="the last event for a key is its state",
        ),
        pytest.param(
            [pod("a", "p", "1"), pod("b", "q", "2"), pod("a", "p", "3", DELETED)],
            {("b", "q"): "2"},
            id="a deleted pod is gone, its namespace too",
        ),
        pytest.param(
            [pod("a", "p", "1", DELETED)], {}, id="deleting what was never seen changes nothing"
        ),
    ],
)
def test_events_apply_in_order(events, expected):
    cache = ObjectCache()
    for event in events:
        cache.apply(event)
    held = {(v.meta.namespace, v.meta.name): v.meta.resource_version for v in cache.items(1)}
    assert held == expected
    assert cache.count(mesh_pb2.KIND_POD) == len(expected)
    assert set(cache.keys(mesh_pb2.KIND_POD)) == set(expected)


def test_reads_are_copies_the_cache_never_sees_changed():
    cache = ObjectCache()
    cache.apply(pod("a", "p", "1", node="node-a1"))
    first = cache.get(mesh_pb2.KIND_POD, "a", "p")
    first.node_name = "elsewhere"
    assert cache.get(mesh_pb2.KIND_POD, "a", "p").node_name == "node-a1"


def test_reads_by_namespace():
    cache = ObjectCache()
    for ns, name in [("a", "p1"), ("a", "p2"), ("b", "p3")]:
        cache.apply(pod(ns, name, "1"))
    assert sorted(v.meta.name for v in cache.items(mesh_pb2.KIND_POD, "a")) == ["p1", "p2"]
    assert list(cache.items(mesh_pb2.KIND_POD, "nowhere")) == []
    assert cache.namespaces(mesh_pb2.KIND_POD) == ["a", "b"]
    assert cache.get(mesh_pb2.KIND_NODE, "a", "p1") is None


def test_workloads_of_different_kinds_with_one_name_are_kept_apart():
    cache = ObjectCache()
    for api_version, kind in [
        ("apps/v1", "StatefulSet"),
        ("apps/v1", "Deployment"),
        ("apps.kruise.io/v1beta1", "StatefulSet"),
    ]:
        view = views_pb2.WorkloadView(
            meta=views_pb2.ObjectMeta(namespace="ns", name="web"),
            api_version=api_version,
            kind=kind,
        )
        cache.apply(
            mesh_pb2.WatchEvent(
                type=ADDED, kind=mesh_pb2.KIND_WORKLOAD, object=views_pb2.ObjectView(workload=view)
            )
        )
    assert cache.count(mesh_pb2.KIND_WORKLOAD) == 3
    name = workload_name(api_version="apps.kruise.io/v1beta1", kind="StatefulSet", name="web")
    assert cache.get(mesh_pb2.KIND_WORKLOAD, "ns", name).api_version == "apps.kruise.io/v1beta1"


def test_an_event_without_a_view_is_ignored():
    cache = ObjectCache()
    assert cache.apply(mesh_pb2.WatchEvent(type=ADDED, kind=mesh_pb2.KIND_POD)) is None
    assert cache.kinds() == []
