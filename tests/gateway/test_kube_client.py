"""KubeClient against the sandbox API server: discovery, requests, patches, watches."""

from __future__ import annotations

import asyncio
import datetime
import time
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest

from sandbox.app import Sandbox
from services.cli.procs import free_port
from services.gateway.kube.client import KubeClient, Resource, env_proxy_for
from services.gateway.kube.discovery import (
    Catalog,
    GroupVersions,
    parse_aggregated,
    parse_group_list,
    parse_resource_list,
)
from services.kit import errors

POD = Resource(
    group="",
    version="v1",
    resource="pods",
    kind="Pod",
    namespaced=True,
    subresources=frozenset({"status"}),
)
CLONESET = Resource(
    group="apps.kruise.io",
    version="v1alpha1",
    resource="clonesets",
    kind="CloneSet",
    namespaced=True,
    subresources=frozenset({"status", "scale"}),
)
NODE = Resource(
    group="",
    version="v1",
    resource="nodes",
    kind="Node",
    namespaced=False,
    subresources=frozenset(),
)

WIDGET_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.test.kruise.io"},
    "spec": {
        "group": "test.kruise.io",
        "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
        "scope": "Namespaced",
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "x-kubernetes-preserve-unknown-fields": True,
                    }
                },
                "subresources": {"status": {}},
            }
        ],
    },
}


def configmap(name: str, **data: str) -> bytes:
    return orjson.dumps(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data}
    )


# -- pure: paths and discovery parsing ---------------------------------------------------------


@pytest.mark.parametrize(
    ("res", "kw", "expected"),
    [
        pytest.param(POD, {"namespace": "ns"}, "/api/v1/namespaces/ns/pods", id="pod collection"),
        pytest.param(POD, {}, "/api/v1/pods", id="pods in all namespaces"),
        pytest.param(
            POD,
            {"namespace": "ns", "name": "web-0", "subresource": "status"},
            "/api/v1/namespaces/ns/pods/web-0/status",
            id="pod status",
        ),
        pytest.param(
            CLONESET,
            {"namespace": "ns", "name": "web", "subresource": "scale"},
            "/apis/apps.kruise.io/v1alpha1/namespaces/ns/clonesets/web/scale",
            id="cloneset scale",
        ),
        pytest.param(
            NODE,
            {"namespace": "ignored", "name": "n1"},
            "/api/v1/nodes/n1",
            id="cluster-scoped kind ignores the namespace",
        ),
    ],
)
def test_path(res: Resource, kw: dict[str, str], expected: str) -> None:
    client = KubeClient.__new__(KubeClient)
    assert client.path(res, **kw) == expected


def test_api_version() -> None:
    assert POD.api_version == "v1"
    assert CLONESET.api_version == "apps.kruise.io/v1alpha1"


def test_legacy_discovery_prefers_the_preferred_version() -> None:
    groups = parse_group_list(
        {
            "kind": "APIGroupList",
            "groups": [
                {
                    "name": "autoscaling",
                    "versions": [{"version": "v1"}, {"version": "v2"}],
                    "preferredVersion": {"version": "v2"},
                }
            ],
        }
    )
    assert groups == [GroupVersions(group="autoscaling", versions=("v2", "v1"))]
    resources = [
        res
        for v in ("v1", "v2")
        for res in parse_resource_list(
            group="autoscaling",
            version=v,
            doc={
                "resources": [
                    {
                        "name": "horizontalpodautoscalers",
                        "kind": "HorizontalPodAutoscaler",
                        "namespaced": True,
                    },
                    {"name": "horizontalpodautoscalers/status", "kind": "HorizontalPodAutoscaler"},
                ]
            },
        )
    ]
    catalog = Catalog.build(groups, resources)
    hpa = catalog.by_resource[("autoscaling", "horizontalpodautoscalers")]
    assert hpa.version == "v2"
    assert hpa.subresources == frozenset({"status"})
    assert ("autoscaling", "v1", "HorizontalPodAutoscaler") in catalog.by_kind


def test_aggregated_discovery() -> None:
    groups, resources = parse_aggregated(
        {
            "kind": "APIGroupDiscoveryList",
            "items": [
                {
                    "metadata": {"name": "apps"},
                    "versions": [
                        {
                            "version": "v1",
                            "resources": [
                                {
                                    "resource": "statefulsets",
                                    "responseKind": {"kind": "StatefulSet"},
                                    "scope": "Namespaced",
                                    "subresources": [
                                        {"subresource": "status"},
                                        {"subresource": "scale"},
                                    ],
                                }
                            ],
                        }
                    ],
                }
            ],
        }
    )
    assert groups == [GroupVersions(group="apps", versions=("v1",))]
    assert resources == [
        Resource(
            group="apps",
            version="v1",
            resource="statefulsets",
            kind="StatefulSet",
            namespaced=True,
            subresources=frozenset({"status", "scale"}),
        )
    ]


# -- discovery against the sandbox -------------------------------------------------------------


async def test_resolves_core_and_crd_kinds(kube: KubeClient) -> None:
    pod = await kube.resolve(api_version="v1", kind="Pod")
    assert (pod.group, pod.version, pod.resource, pod.namespaced) == ("", "v1", "pods", True)
    assert "status" in pod.subresources
    cloneset = await kube.resolve(api_version="apps.kruise.io/v1alpha1", kind="CloneSet")
    assert cloneset.resource == "clonesets"
    assert {"status", "scale"} <= cloneset.subresources
    lease = await kube.resolve_resource(group="coordination.k8s.io", resource="leases")
    assert lease.kind == "Lease" and lease.version == "v1"


async def test_unknown_kind_is_not_found(kube: KubeClient) -> None:
    with pytest.raises(errors.NotFound, match="Gadget"):
        await kube.resolve(api_version="v1", kind="Gadget")


async def test_crd_created_at_runtime_is_found_on_a_miss(kube: KubeClient) -> None:
    with pytest.raises(errors.NotFound):
        await kube.resolve(api_version="test.kruise.io/v1", kind="Widget")
    crds = await kube.resolve(
        api_version="apiextensions.k8s.io/v1", kind="CustomResourceDefinition"
    )
    await kube.request("POST", kube.path(crds), body=orjson.dumps(WIDGET_CRD))
    deadline = time.monotonic() + 5
    while True:
        try:
            widget = await kube.resolve(api_version="test.kruise.io/v1", kind="Widget")
            break
        except errors.NotFound:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)
    assert widget.resource == "widgets" and widget.namespaced


# -- requests ----------------------------------------------------------------------------------


async def test_crud_and_error_mapping(kube: KubeClient) -> None:
    cms = await kube.resolve(api_version="v1", kind="ConfigMap")
    created = await kube.request_json(
        "POST", kube.path(cms, namespace="default"), body=configmap("one", a="1")
    )
    assert created["metadata"]["resourceVersion"]
    path = kube.path(cms, namespace="default", name="one")
    assert (await kube.request_json("GET", path))["data"] == {"a": "1"}

    with pytest.raises(errors.AlreadyExists) as exists:
        await kube.request("POST", kube.path(cms, namespace="default"), body=configmap("one"))
    assert exists.value.http_status == 409

    stale = dict(created, data={"a": "2"})
    stale["metadata"] = dict(created["metadata"], resourceVersion="1")
    with pytest.raises(errors.Conflict):
        await kube.request("PUT", path, body=orjson.dumps(stale))

    await kube.request("DELETE", path)
    with pytest.raises(errors.NotFound, match="one") as missing:
        await kube.request("GET", path)
    assert missing.value.http_status == 404


@pytest.mark.parametrize(
    ("content_type", "patch", "expected"),
    [
        pytest.param(
            "application/merge-patch+json",
            b'{"data":{"b":"2","a":null}}',
            {"b": "2"},
            id="merge patch sets b and removes a",
        ),
        pytest.param(
            "application/json-patch+json",
            b'[{"op":"add","path":"/data/b","value":"2"}]',
            {"a": "1", "b": "2"},
            id="json patch adds b",
        ),
        pytest.param(
            "application/strategic-merge-patch+json",
            b'{"data":{"b":"2"}}',
            {"a": "1", "b": "2"},
            id="strategic patch adds b",
        ),
    ],
)
async def test_patch_bytes_go_out_as_they_are(
    kube: KubeClient, content_type: str, patch: bytes, expected: dict[str, str]
) -> None:
    cms = await kube.resolve(api_version="v1", kind="ConfigMap")
    await kube.request("POST", kube.path(cms, namespace="default"), body=configmap("p", a="1"))
    patched = await kube.request_json(
        "PATCH",
        kube.path(cms, namespace="default", name="p"),
        body=patch,
        content_type=content_type,
    )
    assert patched["data"] == expected


async def test_bad_patch_is_invalid(kube: KubeClient) -> None:
    cms = await kube.resolve(api_version="v1", kind="ConfigMap")
    await kube.request("POST", kube.path(cms, namespace="default"), body=configmap("bad"))
    with pytest.raises(errors.Invalid):
        await kube.request(
            "PATCH",
            kube.path(cms, namespace="default", name="bad"),
            body=b"[{]",
            content_type="application/json-patch+json",
        )


async def test_connect_error_is_unavailable(sandbox: Sandbox, tmp_path: Path) -> None:
    text = sandbox.kubeconfig_path.read_text()
    port = sandbox.url.rsplit(":", 1)[1].rstrip("/")
    dead = tmp_path / "dead-kubeconfig"
    dead.write_text(text.replace(f":{port}", ":1"))
    client = await KubeClient.connect(kubeconfig=str(dead))
    try:
        with pytest.raises(errors.Unavailable):
            await client.request("GET", "/api", timeout=2)
        with pytest.raises(errors.Unavailable):
            async for _ in client.watch_lines("/api/v1/pods", query={}, read_timeout=1):
                pass
    finally:
        await client.close()


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, None),
        ({"HTTPS_PROXY": "http://proxy.corp:3128"}, "http://proxy.corp:3128"),
        ({"HTTPS_PROXY": "http://proxy.corp:3128", "NO_PROXY": "10.0.0.1"}, None),
        (
            {"HTTPS_PROXY": "http://proxy.corp:3128", "NO_PROXY": "other.host"},
            "http://proxy.corp:3128",
        ),
        ({"HTTP_PROXY": "http://proxy.corp:3128"}, None),
    ],
    ids=[
        "no proxy variables: direct",
        "HTTPS_PROXY: through it",
        "the API server is in NO_PROXY: direct",
        "another host in NO_PROXY: through it",
        "only HTTP_PROXY, the API server is https: direct",
    ],
)
def test_the_environment_names_the_proxy(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], expected: str | None
) -> None:
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert env_proxy_for("https://10.0.0.1:6443") == expected


async def test_the_proxy_from_the_environment_is_used(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """HTTPS_PROXY is read when the client connects: a dead proxy fails every request, and
    NO_PROXY naming the API server sends them direct."""
    for name in ("https_proxy", "no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{free_port()}")
    through_dead_proxy = await KubeClient.connect(kubeconfig=str(sandbox.kubeconfig_path))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    direct = await KubeClient.connect(kubeconfig=str(sandbox.kubeconfig_path))
    try:
        with pytest.raises(errors.Unavailable):
            await through_dead_proxy.request("GET", "/api", timeout=2)
        assert orjson.loads(await direct.request("GET", "/api"))["kind"] == "APIVersions"
    finally:
        await through_dead_proxy.close()
        await direct.close()


async def test_in_cluster_service_account_reaches_the_api_server_and_follows_token_rotation(
    sandbox: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The path a deployed gateway takes (no kubeconfig): the API server from
    KUBERNETES_SERVICE_HOST/PORT, the projected service-account token and CA from their
    files. Bound tokens rotate; the client reads the file again, so a rotated token is
    used without a restart."""
    from kubernetes_asyncio.config import incluster_config

    token, ca = tmp_path / "token", tmp_path / "ca.crt"
    token.write_text(sandbox.token)
    ca.write_bytes(Path(sandbox.ca_file).read_bytes())
    monkeypatch.setattr(incluster_config, "SERVICE_TOKEN_FILENAME", str(token))
    monkeypatch.setattr(incluster_config, "SERVICE_CERT_FILENAME", str(ca))
    monkeypatch.setattr(incluster_config, "TOKEN_REFRESH_PERIOD", datetime.timedelta(0))
    host, port = sandbox.url.removeprefix("https://").rstrip("/").rsplit(":", 1)
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", host)
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", port)
    for name in ("HTTPS_PROXY", "https_proxy"):
        monkeypatch.delenv(name, raising=False)

    client = await KubeClient.connect(kubeconfig=None)
    try:
        listed = orjson.loads(await client.request("GET", "/api/v1/namespaces"))
        assert listed["kind"] == "NamespaceList"
        token.write_text("a-token-the-api-server-never-issued")  # rotated to a bad one
        with pytest.raises(errors.Forbidden):
            await client.request("GET", "/api/v1/namespaces")
        rotated = "rotated-token"
        sandbox.add_token(rotated, {"username": "system:serviceaccount:kruise-mesh:gateway"})
        token.write_text(rotated)
        assert orjson.loads(await client.request("GET", "/api"))["kind"] == "APIVersions"
    finally:
        await client.close()


async def test_in_cluster_without_the_service_environment_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(errors.FailedPrecondition, match="cannot load Kubernetes config"):
        await KubeClient.connect(kubeconfig=None)


# -- watches -----------------------------------------------------------------------------------


@pytest.fixture
async def fast_bookmarks(tmp_path: Path) -> AsyncIterator[KubeClient]:
    async with Sandbox(state_dir=tmp_path / "fast", port=0, bookmark_interval=0.2) as sb:
        client = await KubeClient.connect(kubeconfig=str(sb.kubeconfig_path))
        try:
            yield client
        finally:
            await client.close()


async def test_watch_yields_added_modified_and_bookmark(fast_bookmarks: KubeClient) -> None:
    kube = fast_bookmarks
    cms = await kube.resolve(api_version="v1", kind="ConfigMap")
    listed = await kube.request_json("GET", kube.path(cms, namespace="default"))
    rv = listed["metadata"]["resourceVersion"]
    seen: list[str] = []

    async def consume() -> None:
        async for line in kube.watch_lines(
            kube.path(cms, namespace="default"),
            query={"resourceVersion": rv, "allowWatchBookmarks": "true"},
            read_timeout=5,
        ):
            event = orjson.loads(line)
            seen.append(event["type"])
            if event["type"] == "BOOKMARK" and "MODIFIED" in seen:
                return

    consumer = asyncio.create_task(consume())
    await kube.request("POST", kube.path(cms, namespace="default"), body=configmap("w", a="1"))
    await kube.request(
        "PATCH",
        kube.path(cms, namespace="default", name="w"),
        body=b'{"data":{"a":"2"}}',
        content_type="application/merge-patch+json",
    )
    await asyncio.wait_for(consumer, timeout=5)
    assert seen[:2] == ["ADDED", "MODIFIED"]
    assert seen[-1] == "BOOKMARK"


async def test_watch_ends_with_410_error_event_when_history_expires(kube: KubeClient) -> None:
    cms = await kube.resolve(api_version="v1", kind="ConfigMap")
    listed = await kube.request_json("GET", kube.path(cms, namespace="default"))
    lines: list[dict[str, object]] = []

    async def consume() -> None:
        async for line in kube.watch_lines(
            kube.path(cms, namespace="default"),
            query={"resourceVersion": listed["metadata"]["resourceVersion"]},
            read_timeout=5,
        ):
            lines.append(orjson.loads(line))

    consumer = asyncio.create_task(consume())
    await asyncio.sleep(0.1)
    await kube.request("POST", "/sandbox/v1/expire-history")
    await asyncio.wait_for(consumer, timeout=5)
    assert lines[-1]["type"] == "ERROR"
    assert lines[-1]["object"]["code"] == 410  # type: ignore[index]


async def test_watch_watchdog_fires_when_nothing_arrives(kube: KubeClient) -> None:
    cms = await kube.resolve(api_version="v1", kind="ConfigMap")
    started = time.monotonic()
    with pytest.raises(errors.Unavailable, match="no event or bookmark"):
        async for _ in kube.watch_lines(
            kube.path(cms, namespace="default"), query={}, read_timeout=0.3
        ):
            pass
    assert time.monotonic() - started < 2


async def test_watch_from_an_expired_version_is_gone(kube: KubeClient) -> None:
    cms = await kube.resolve(api_version="v1", kind="ConfigMap")
    for i in range(3):
        await kube.request("POST", kube.path(cms, namespace="default"), body=configmap(f"c{i}"))
    await kube.request("POST", "/sandbox/v1/expire-history")
    lines = []
    try:
        async for line in kube.watch_lines(
            kube.path(cms, namespace="default"), query={"resourceVersion": "1"}, read_timeout=2
        ):
            lines.append(orjson.loads(line))
    except errors.Conflict:
        return  # HTTP 410 on connect
    assert lines and lines[-1]["type"] == "ERROR" and lines[-1]["object"]["code"] == 410
