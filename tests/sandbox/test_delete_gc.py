"""Deletion: graceful pods, finalizers, preconditions, deletecollection, GC; faults, stats."""

from __future__ import annotations

import asyncio

from tests.sandbox.conftest import Raw, fixture

PODS = "/api/v1/namespaces/default/pods"
CM = "/api/v1/namespaces/default/configmaps"


def pod(name: str, node: str | None = None, **meta: object) -> dict:
    spec: dict = {"containers": [{"name": "c", "image": "a:1"}]}
    if node:
        spec["nodeName"] = node
    return {"metadata": {"name": name, **meta}, "spec": spec}


async def test_graceful_pod_delete_then_final(raw: Raw) -> None:
    await raw.call("POST", PODS, pod("g", node="n1"))
    code, _, body = await raw.call("DELETE", PODS + "/g")
    assert code == 200 and body["kind"] == "Pod"
    assert (
        body["metadata"]["deletionGracePeriodSeconds"] == 30 and body["metadata"]["generation"] == 2
    )
    code, _, _ = await raw.call("GET", PODS + "/g")
    assert code == 200
    code, _, body = await raw.call("DELETE", PODS + "/g", {"gracePeriodSeconds": 0})
    assert code == 200
    code, _, _ = await raw.call("GET", PODS + "/g")
    assert code == 404


async def test_preconditions_match_fixtures(raw: Raw) -> None:
    await raw.call("POST", PODS, pod("pre"))
    code, _, body = await raw.call(
        "DELETE", PODS + "/pre", {"preconditions": {"uid": "00000000-0000-0000-0000-000000000000"}}
    )
    real = fixture("errors/409-delete-precondition-uid-mismatch.json")["response"]["body"]
    assert code == 409 and body["details"] == real["details"] | {"name": "pre"}
    assert body["message"].startswith(
        'Operation cannot be fulfilled on Pod "pre": the UID in the precondition'
    )
    code, _, body = await raw.call(
        "DELETE", PODS + "/pre", {"preconditions": {"resourceVersion": "1"}}
    )
    assert code == 409 and "the ResourceVersion in the precondition (1)" in body["message"]


async def test_finalizers_hold_the_object(raw: Raw) -> None:
    await raw.call(
        "POST",
        CM,
        {"metadata": {"name": "f", "finalizers": ["example.com/hold"]}, "data": {"a": "1"}},
    )
    code, _, body = await raw.call("DELETE", CM + "/f")
    assert code == 200 and body["metadata"]["deletionTimestamp"]
    code, _, body = await raw.call("GET", CM + "/f")
    assert code == 200
    code, _, body = await raw.call(
        "PATCH",
        CM + "/f",
        {"metadata": {"finalizers": None}},
        content_type="application/merge-patch+json",
    )
    assert code == 200
    code, _, _ = await raw.call("GET", CM + "/f")
    assert code == 404


async def test_garbage_collection_and_deletecollection(raw: Raw) -> None:
    _, _, owner = await raw.call("POST", CM, {"metadata": {"name": "owner"}})
    ref = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "name": "owner",
        "uid": owner["metadata"]["uid"],
    }
    await raw.call("POST", CM, {"metadata": {"name": "dep", "ownerReferences": [ref]}})
    _, _, other = await raw.call("POST", CM, {"metadata": {"name": "other"}})
    ref2 = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "name": "other",
        "uid": other["metadata"]["uid"],
    }
    await raw.call("POST", CM, {"metadata": {"name": "shared", "ownerReferences": [ref, ref2]}})
    code, _, status = await raw.call("DELETE", CM + "/owner")
    assert status["kind"] == "Status" and status["status"] == "Success"
    for _ in range(50):
        code, _, _ = await raw.call("GET", CM + "/dep")
        if code == 404:
            break
        await asyncio.sleep(0.02)
    assert code == 404
    code, _, _ = await raw.call("GET", CM + "/shared")
    assert code == 200  # another owner still exists

    for i in range(3):
        await raw.call("POST", PODS, pod(f"dc{i}", labels={"batch": "x"}))
    code, _, body = await raw.call("DELETE", PODS + "?labelSelector=batch%3Dx")
    assert code == 200 and len(body["items"]) == 3
    _, _, lst = await raw.call("GET", PODS)
    assert lst["items"] == []


async def test_conflict_faults_and_stats(raw: Raw) -> None:
    await raw.call("POST", CM, {"metadata": {"name": "c"}})
    code, _, _ = await raw.call(
        "POST",
        "/sandbox/v1/faults",
        {"conflicts": {"resource": "configmaps", "subresource": "", "count": 2}},
    )
    assert code == 200
    for _ in range(2):
        code, _, body = await raw.call(
            "PATCH", CM + "/c", {"data": {"x": "1"}}, content_type="application/merge-patch+json"
        )
        assert code == 409 and body["reason"] == "Conflict"
    code, _, _ = await raw.call(
        "PATCH", CM + "/c", {"data": {"x": "1"}}, content_type="application/merge-patch+json"
    )
    assert code == 200
    await raw.call(
        "POST", "/sandbox/v1/faults", {"conflicts": {"resource": "configmaps", "count": 5}}
    )
    await raw.call("DELETE", "/sandbox/v1/faults")
    code, _, _ = await raw.call(
        "PATCH", CM + "/c", {"data": {"x": "2"}}, content_type="application/merge-patch+json"
    )
    assert code == 200
    code, _, stats = await raw.call("GET", "/sandbox/v1/stats")
    namespaces = stats["objects"]["namespaces"]
    assert namespaces >= 3
    # ours, and each namespace's kube-root-ca.crt
    assert stats["objects"]["configmaps"] == 1 + namespaces
    assert "watchers" in stats and "eventsServed" in stats
