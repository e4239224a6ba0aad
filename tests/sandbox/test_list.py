"""Lists: label/field selectors, pagination, resourceVersion semantics, 10,000 pods."""

from __future__ import annotations

import time

from kubernetes_asyncio import client

from tests.sandbox.conftest import Raw, fixture

PODS = "/api/v1/namespaces/default/pods"


def pod(name: str, labels: dict[str, str], node: str | None = None) -> dict:
    spec: dict = {"containers": [{"name": "c", "image": "nginx:1.27"}]}
    if node:
        spec["nodeName"] = node
    return {"metadata": {"name": name, "labels": labels}, "spec": spec}


async def test_label_and_field_selectors(raw: Raw) -> None:
    await raw.call("POST", PODS, pod("a", {"app": "web", "tier": "front"}, node="n1"))
    await raw.call("POST", PODS, pod("b", {"app": "web", "tier": "back"}))
    await raw.call("POST", PODS, pod("c", {"app": "db"}, node="n2"))

    async def names(query: str) -> list[str]:
        code, _, body = await raw.call("GET", PODS + "?" + query)
        assert code == 200, body
        return [i["metadata"]["name"] for i in body["items"]]

    assert await names("labelSelector=app%3Dweb") == ["a", "b"]
    assert await names("labelSelector=tier%20in%20(front,back)") == ["a", "b"]
    assert await names("labelSelector=tier%20notin%20(front)") == ["b", "c"]
    assert await names("labelSelector=!tier") == ["c"]
    assert await names("labelSelector=tier") == ["a", "b"]
    assert await names("labelSelector=app!%3Ddb,tier") == ["a", "b"]
    assert await names("fieldSelector=spec.nodeName%3Dn1") == ["a"]
    assert await names("fieldSelector=spec.nodeName%21%3D") == ["a", "c"]
    assert await names("fieldSelector=metadata.name%3Db") == ["b"]
    assert await names("fieldSelector=status.phase%3DPending,metadata.namespace%3Ddefault") == [
        "a",
        "b",
        "c",
    ]
    code, _, body = await raw.call("GET", "/api/v1/pods?fieldSelector=spec.nodeName%3Dn2")
    assert [i["metadata"]["name"] for i in body["items"]] == ["c"]
    assert "kind" not in body["items"][0]  # built-in list items carry no kind


async def test_pagination_and_resource_versions(raw: Raw) -> None:
    for i in range(5):
        await raw.call("POST", PODS, pod(f"p{i}", {"i": str(i)}))
    seen: list[str] = []
    code, _, body = await raw.call("GET", PODS + "?limit=2")
    real = fixture("api/pod-list-limit-1-continue.json")["response"]["body"]
    assert sorted(body["metadata"]) == sorted(real["metadata"])
    assert body["metadata"]["remainingItemCount"] == 3
    seen += [i["metadata"]["name"] for i in body["items"]]
    while body["metadata"].get("continue"):
        code, _, body = await raw.call(
            "GET", PODS + "?limit=2&continue=" + body["metadata"]["continue"]
        )
        seen += [i["metadata"]["name"] for i in body["items"]]
    assert seen == [f"p{i}" for i in range(5)]

    current = body["metadata"]["resourceVersion"]
    code, _, body = await raw.call(
        "GET", PODS + f"?resourceVersion={current}&resourceVersionMatch=Exact"
    )
    assert code == 200
    await raw.call("POST", "/sandbox/v1/expire-history")
    code, _, body = await raw.call("GET", PODS + "?resourceVersion=1&resourceVersionMatch=Exact")
    assert (
        code == 410
        and body == fixture("watch/pods-list-resourceversion-1-exact.json")["response"]["body"]
    )
    code, _, body = await raw.call(
        "GET", PODS + "?resourceVersion=1&resourceVersionMatch=NotOlderThan"
    )
    assert code == 200 and len(body["items"]) == 5


async def test_future_resource_version_times_out(raw: Raw) -> None:
    raw.sb._options.future_rv_wait = 0.2
    code, headers, body = await raw.call(
        "GET", PODS + "?resourceVersion=1000000&resourceVersionMatch=NotOlderThan"
    )
    real = fixture("watch/pods-list-resourceversion-future-notolderthan.json")["response"]
    assert code == 504 and headers["Retry-After"] == "1"
    assert (
        body["reason"] == real["body"]["reason"]
        and body["details"]["causes"] == real["body"]["details"]["causes"]
    )


async def test_ten_thousand_pods(api: client.ApiClient, raw: Raw) -> None:
    # seed through the store API to keep the test fast; read back over HTTPS
    sb = raw.sb
    rt = sb.registry.get("", "pods")
    assert rt is not None
    for i in range(10_000):
        obj = {
            "kind": "Pod",
            "apiVersion": "v1",
            "metadata": {
                "name": f"pod-{i:05d}",
                "namespace": f"ns-{i % 10}",
                "labels": {"shard": str(i % 4)},
            },
            "spec": {"containers": [{"name": "c", "image": "x:1"}]},
        }
        sb.store.stamp_new(obj, generation=True)
        sb.store.put(rt, obj)
    core = client.CoreV1Api(api)
    t0 = time.monotonic()
    pods = await core.list_pod_for_all_namespaces(_preload_content=False)
    data = await pods.json()
    assert len(data["items"]) == 10_000
    assert time.monotonic() - t0 < 5
    code, _, body = await raw.call("GET", "/api/v1/namespaces/ns-3/pods?labelSelector=shard%3D1")
    assert len(body["items"]) == 500  # i % 10 == 3 is odd, so i % 4 is 1 or 3
    code, _, stats = await raw.call("GET", "/sandbox/v1/stats")
    assert stats["objects"]["pods"] == 10_000


async def test_every_page_of_a_list_reports_the_first_pages_resource_version(raw) -> None:
    """A change between pages must stay visible to a watch started from the list's version."""
    for i in range(4):
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": f"page-{i}"},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]},
        }
        status, _, _ = await raw.call("POST", "/api/v1/namespaces/default/pods", pod)
        assert status == 201
    status, _, first = await raw.call("GET", "/api/v1/namespaces/default/pods?limit=2")
    list_rv = first["metadata"]["resourceVersion"]
    # page-3 is deleted after the first page was served but before the second is read.
    status, _, _ = await raw.call(
        "DELETE", "/api/v1/namespaces/default/pods/page-3", {"gracePeriodSeconds": 0}
    )
    assert status == 200
    token = first["metadata"]["continue"]
    status, _, second = await raw.call(
        "GET", f"/api/v1/namespaces/default/pods?limit=2&continue={token}"
    )
    assert second["metadata"]["resourceVersion"] == list_rv
    events = await raw.lines(
        f"/api/v1/namespaces/default/pods?watch=1&resourceVersion={list_rv}&timeoutSeconds=1"
    )
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [("DELETED", "page-3")]


async def test_pages_walk_key_order_within_and_across_namespaces(raw) -> None:
    for ns in ("zeta", "alpha"):
        status, _, _ = await raw.call(
            "POST",
            "/api/v1/namespaces",
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}},
        )
        assert status == 201
        for name in ("c", "a", "b"):
            pod = {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": name},
                "spec": {"containers": [{"name": "c", "image": "busybox"}]},
            }
            status, _, _ = await raw.call("POST", f"/api/v1/namespaces/{ns}/pods", pod)
            assert status == 201

    async def walk(path: str) -> tuple[list[str], list[int]]:
        seen: list[str] = []
        remaining: list[int] = []
        token = ""
        while True:
            sep = "&" if "?" in path else "?"
            query = f"{sep}limit=2" + (f"&continue={token}" if token else "")
            status, _, page = await raw.call("GET", path + query)
            assert status == 200
            seen += [f"{i['metadata']['namespace']}/{i['metadata']['name']}" for i in page["items"]]
            token = page["metadata"].get("continue", "")
            if not token:
                return seen, remaining
            remaining.append(page["metadata"]["remainingItemCount"])

    everything, remaining = await walk("/api/v1/pods")
    assert everything == [f"{ns}/{n}" for ns in ("alpha", "zeta") for n in "abc"]
    assert remaining == [4, 2]
    zeta, remaining = await walk("/api/v1/namespaces/zeta/pods")
    assert zeta == ["zeta/a", "zeta/b", "zeta/c"]
    assert remaining == [1]
