"""CRUD over HTTPS with kubernetes-asyncio, and error bodies compared with real fixtures."""

from __future__ import annotations

import pytest
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from tests.sandbox.conftest import Raw, fixture


def pod(name: str, **labels: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": {"containers": [{"name": "c", "image": "nginx:1.27"}]},
    }


def shape(status: dict) -> tuple:
    details = status.get("details") or {}
    return (
        status.get("kind"),
        status.get("status"),
        status.get("reason"),
        status.get("code"),
        tuple(sorted(details)),
        details.get("kind"),
    )


async def test_pod_create_get_update_delete(api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    created = await core.create_namespaced_pod("default", pod("p1", app="web"))
    assert created.metadata.uid and created.metadata.generation == 1
    assert created.spec.restart_policy == "Always"
    assert created.status.phase == "Pending"
    got = await core.read_namespaced_pod("p1", "default")
    assert got.metadata.resource_version == created.metadata.resource_version
    got.metadata.labels["tier"] = "front"
    updated = await core.replace_namespaced_pod("p1", "default", got)
    assert int(updated.metadata.resource_version) > int(got.metadata.resource_version)
    assert updated.metadata.generation == 1  # label change leaves generation alone
    deleted = await core.delete_namespaced_pod("p1", "default")
    assert deleted.metadata.name == "p1"  # unbound pod is removed at once
    with pytest.raises(ApiException) as e:
        await core.read_namespaced_pod("p1", "default")
    assert e.value.status == 404


async def test_conflicts_and_not_found_match_fixtures(raw: Raw) -> None:
    path = "/api/v1/namespaces/default/pods"
    code, _, first = await raw.call("POST", path, pod("dup"))
    assert code == 201
    code, _, body = await raw.call("POST", path, pod("dup"))
    real = fixture("errors/409-already-exists-create.json")["response"]["body"]
    assert code == 409 and shape(body) == shape(real)
    assert body["message"] == 'pods "dup" already exists'

    stale = dict(first, metadata=dict(first["metadata"], resourceVersion="1"))
    code, _, body = await raw.call("PUT", path + "/dup", stale)
    real = fixture("errors/409-conflict-update-stale-resourceversion.json")["response"]["body"]
    assert code == 409 and shape(body) == shape(real)
    assert body["message"] == real["message"].replace("demo-pod", "dup")

    code, _, body = await raw.call("GET", path + "/does-not-exist")
    real = fixture("errors/404-pod-not-found.json")["response"]["body"]
    assert code == 404 and shape(body) == shape(real)

    code, _, body = await raw.call("POST", "/api/v1/namespaces/no-such-ns/pods", pod("x"))
    real = fixture("errors/404-namespace-not-found-on-create.json")["response"]["body"]
    assert code == 404 and body == real

    code, _, body = await raw.call("POST", path + "/dup", pod("dup"))
    real = fixture("errors/405-method-not-allowed.json")["response"]["body"]
    assert code == 405 and body == real

    code, headers, body = await raw.call(
        "GET", "/apis/apps.kruise.io/v1alpha1/namespaces/default/nosuchresources"
    )
    assert code == 404 and body == "404 page not found\n"
    assert headers["Content-Type"].startswith("text/plain")

    code, _, body = await raw.call("GET", path, token="not-a-valid-token")
    assert (
        code == 401
        and body == fixture("errors/401-unauthorized-bad-token.json")["response"]["body"]
    )


async def test_generate_name_dry_run_and_invalid(raw: Raw) -> None:
    path = "/api/v1/namespaces/default/pods"
    body = pod("")
    body["metadata"] = {"generateName": "web-"}
    code, _, created = await raw.call("POST", path, body)
    assert code == 201 and created["metadata"]["name"].startswith("web-")
    assert len(created["metadata"]["name"]) == len("web-") + 5

    code, _, dry = await raw.call("POST", path + "?dryRun=All", pod("dry"))
    assert code == 201 and dry["metadata"]["name"] == "dry"
    code, _, _ = await raw.call("GET", path + "/dry")
    assert code == 404

    bad = pod("bad")
    bad["spec"] = {"containers": [{"name": "Bad_Name"}], "restartPolicy": "Sometimes"}
    code, _, body = await raw.call("POST", path, bad)
    real = fixture("errors/422-invalid-pod.json")["response"]["body"]
    assert code == 422 and shape(body) == shape(real)
    assert sorted(c["reason"] for c in body["details"]["causes"]) == sorted(
        c["reason"] for c in real["details"]["causes"]
    )

    code, _, body = await raw.call(
        "POST", path, data=b'{"metadata": {', content_type="application/json"
    )
    assert code == 400 and body["reason"] == "BadRequest"


async def test_lease_update_conflict_and_cluster_scoped(api: client.ApiClient) -> None:
    coord = client.CoordinationV1Api(api)
    lease = await coord.create_namespaced_lease(
        "kube-system",
        {
            "metadata": {"name": "leader"},
            "spec": {"holderIdentity": "a", "leaseDurationSeconds": 15},
        },
    )
    lease.spec.holder_identity = "b"
    await coord.replace_namespaced_lease("leader", "kube-system", lease)
    lease.spec.holder_identity = "c"
    with pytest.raises(ApiException) as e:
        await coord.replace_namespaced_lease("leader", "kube-system", lease)
    assert e.value.status == 409

    core = client.CoreV1Api(api)
    node = await core.create_node({"metadata": {"name": "node-a", "labels": {"zone": "a"}}})
    assert node.metadata.namespace is None
    names = [n.metadata.name for n in (await core.list_node()).items]
    assert names == ["node-a"]
    nss = {n.metadata.name for n in (await core.list_namespace()).items}
    assert {"default", "kube-system", "kube-public"} <= nss


async def test_a_wrong_uid_in_the_body_is_a_failed_precondition(raw) -> None:
    """PUT and PATCH carrying another object's uid answer 409, as kube-apiserver does."""
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "uid-check"},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]},
    }
    status, _, _ = await raw.call("POST", "/api/v1/namespaces/default/pods", pod)
    assert status == 201
    status, _, body = await raw.call(
        "PATCH",
        "/api/v1/namespaces/default/pods/uid-check",
        {"metadata": {"uid": "not-the-uid", "labels": {"x": "y"}}},
        content_type="application/merge-patch+json",
    )
    assert status == 409
    assert body["reason"] == "Conflict"
    assert "UID in precondition: not-the-uid" in body["message"]
