"""Watch: synthetic ADDED, live events, bookmarks, resume, 410 Expired, selector transitions."""

from __future__ import annotations

import asyncio
import json

import pytest
from kubernetes_asyncio import client, watch
from kubernetes_asyncio.client.exceptions import ApiException

from tests.sandbox.conftest import FIXTURES, Raw

PODS = "/api/v1/namespaces/default/pods"


def ndjson(name: str) -> list[dict]:
    return [json.loads(line) for line in (FIXTURES / name).read_text().splitlines() if line]


CLONESETS = "/apis/apps.kruise.io/v1alpha1/namespaces/default/clonesets"


def pod(name: str, **labels: str) -> dict:
    return {
        "metadata": {"name": name, "labels": labels},
        "spec": {"containers": [{"name": "c", "image": "a:1"}]},
    }


async def test_watch_with_kubernetes_asyncio(api: client.ApiClient, raw: Raw) -> None:
    core = client.CoreV1Api(api)
    await core.create_namespaced_pod("default", pod("existing"))
    listed = await core.list_namespaced_pod("default")
    w = watch.Watch()
    events: list[tuple[str, str]] = []

    async def consume() -> None:
        async for ev in w.stream(
            core.list_namespaced_pod,
            "default",
            resource_version=listed.metadata.resource_version,
            allow_watch_bookmarks=True,
            timeout_seconds=3,
        ):
            if ev["type"] == "BOOKMARK":
                events.append(("BOOKMARK", ev["raw_object"]["metadata"]["resourceVersion"]))
                if any(t == "DELETED" for t, _ in events):
                    w.stop()
                continue
            events.append((ev["type"], ev["object"].metadata.name))

    task = asyncio.create_task(consume())
    await asyncio.sleep(0.1)
    await core.create_namespaced_pod("default", pod("new"))
    await core.patch_namespaced_pod("new", "default", {"metadata": {"labels": {"x": "y"}}})
    await core.delete_namespaced_pod("new", "default")
    await asyncio.wait_for(task, 5)
    await w.close()
    kinds = [e for e in events if e[0] != "BOOKMARK"]
    assert kinds == [("ADDED", "new"), ("MODIFIED", "new"), ("DELETED", "new")]
    assert any(t == "BOOKMARK" for t, _ in events)


async def test_wire_shapes_synthetic_added_and_bookmark(raw: Raw) -> None:
    await raw.call("POST", PODS, pod("a"))
    await raw.call(
        "POST",
        CLONESETS,
        {
            "apiVersion": "apps.kruise.io/v1alpha1",
            "kind": "CloneSet",
            "metadata": {"name": "cs"},
            "spec": {"replicas": 1},
        },
    )
    events = await raw.lines(PODS + "?watch=1&timeoutSeconds=1&allowWatchBookmarks=true")
    assert events[0]["type"] == "ADDED" and events[0]["object"]["kind"] == "Pod"
    bookmark = events[-1]
    real = ndjson("watch/pods-watch-with-bookmarks.ndjson")[-1]
    rv = bookmark["object"]["metadata"]["resourceVersion"]
    real["object"]["metadata"]["resourceVersion"] = rv
    assert bookmark == real

    events = await raw.lines(
        CLONESETS + "?watch=1&resourceVersion=0&timeoutSeconds=1&allowWatchBookmarks=true"
    )
    assert [e["type"] for e in events][:1] == ["ADDED"]
    assert set(events[-1]["object"]) == {"kind", "apiVersion", "metadata"}

    events = await raw.lines(
        PODS + "?watch=1&sendInitialEvents=true&allowWatchBookmarks=true"
        "&resourceVersionMatch=NotOlderThan&timeoutSeconds=1"
    )
    assert events[0]["type"] == "ADDED"
    assert events[1]["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}


async def test_resume_from_resource_version_replays(raw: Raw) -> None:
    code, _, first = await raw.call("POST", PODS, pod("r1"))
    start = first["metadata"]["resourceVersion"]
    await raw.call("POST", PODS, pod("r2"))
    await raw.call("DELETE", PODS + "/r1")
    events = await raw.lines(PODS + f"?watch=1&resourceVersion={start}&timeoutSeconds=0.3")
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
        ("ADDED", "r2"),
        ("DELETED", "r1"),
    ]
    # from the current RV nothing is sent
    _, _, lst = await raw.call("GET", PODS)
    events = await raw.lines(
        PODS + f"?watch=1&resourceVersion={lst['metadata']['resourceVersion']}&timeoutSeconds=0.3"
    )
    assert events == []


async def test_too_old_and_expire_history(raw: Raw, api: client.ApiClient) -> None:
    await raw.call("POST", PODS, pod("e1"))
    await raw.call("POST", "/sandbox/v1/expire-history")
    events = await raw.lines(CLONESETS + "?watch=1&resourceVersion=1&timeoutSeconds=5")
    (real,) = ndjson("watch/clonesets-watch-resourceversion-1-too-old-410.ndjson")
    assert len(events) == 1
    assert {k: v for k, v in events[0]["object"].items() if k != "message"} == {
        k: v for k, v in real["object"].items() if k != "message"
    }
    assert events[0]["object"]["message"].startswith("too old resource version: 1 (")

    # an open watch is ended with the ERROR event; kubernetes-asyncio raises ApiException 410
    core = client.CoreV1Api(api)
    w = watch.Watch()

    async def consume() -> None:
        async for _ in w.stream(core.list_namespaced_pod, "default", timeout_seconds=5):
            pass

    task = asyncio.create_task(consume())
    await asyncio.sleep(0.2)
    await raw.call("POST", "/sandbox/v1/expire-history")
    with pytest.raises(ApiException) as e:
        await asyncio.wait_for(task, 5)
    assert e.value.status == 410
    await w.close()


async def test_selector_transitions(raw: Raw) -> None:
    await raw.call("POST", PODS, pod("s", app="web"))
    _, _, lst = await raw.call("GET", PODS)
    rv = lst["metadata"]["resourceVersion"]
    await raw.call(
        "PATCH",
        PODS + "/s",
        {"metadata": {"labels": {"app": "db"}}},
        content_type="application/merge-patch+json",
    )
    await raw.call(
        "PATCH",
        PODS + "/s",
        {"metadata": {"labels": {"app": "web"}}},
        content_type="application/merge-patch+json",
    )
    await raw.call(
        "PATCH",
        PODS + "/s",
        {"metadata": {"labels": {"x": "1"}}},
        content_type="application/merge-patch+json",
    )
    events = await raw.lines(
        PODS + f"?watch=1&resourceVersion={rv}&labelSelector=app%3Dweb&timeoutSeconds=0.3"
    )
    assert [e["type"] for e in events] == ["DELETED", "ADDED", "MODIFIED"]
    assert events[0]["object"]["metadata"]["labels"]["app"] == "web"  # previous state
    assert int(events[0]["object"]["metadata"]["resourceVersion"]) > int(rv)
