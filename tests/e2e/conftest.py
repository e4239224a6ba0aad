"""The whole mesh as separate processes on loopback, against the sandbox.

One mesh per test module (starting it costs a few seconds); tests that break
it (kill a replica, stop the gateway) put it back before they end.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
import pytest_asyncio

from kruise.common.v1 import mesh_pb2, mesh_pb2_grpc
from services.cli.local import LocalMesh
from services.gateway.kube.client import KubeClient
from services.kit import errors, ring

pytestmark = pytest.mark.e2e


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def mesh(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[LocalMesh]:
    workdir: Path = tmp_path_factory.mktemp("mesh")
    async with LocalMesh(workdir=workdir, replicas=2) as running:
        yield running


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def kube(mesh: LocalMesh) -> AsyncIterator[KubeClient]:
    client = await KubeClient.connect(kubeconfig=mesh.kubeconfig)
    yield client
    await client.close()


async def eventually(
    what: str, check: Callable[[], Awaitable[bool]], *, timeout: float = 20.0
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if await check():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"not true after {timeout}s: {what}")
        await asyncio.sleep(0.1)


CLONESETS = "/apis/apps.kruise.io/v1alpha1/namespaces"


async def merge_patch(
    kube: KubeClient, namespace: str, name: str, body: dict[str, Any]
) -> dict[str, Any]:
    """Merge-patch CloneSet ``namespace/name`` through the API; the object as written."""
    answer = await kube.request(
        "PATCH",
        f"{CLONESETS}/{namespace}/clonesets/{name}",
        body=orjson.dumps(body),
        content_type="application/merge-patch+json",
    )
    return dict(orjson.loads(answer))


def new_image(image: str) -> dict[str, Any]:
    """The merge patch that changes a CloneSet's one container ``main`` to ``image``."""
    return {"spec": {"template": {"spec": {"containers": [{"name": "main", "image": image}]}}}}


async def ensure_namespace(
    kube: KubeClient, name: str, labels: dict[str, str] | None = None
) -> None:
    body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
    if labels:
        body["metadata"]["labels"] = labels  # type: ignore[index]
    try:
        await kube.request("POST", "/api/v1/namespaces", body=orjson.dumps(body))
    except errors.AlreadyExists:
        pass


async def create_pod(kube: KubeClient, namespace: str, name: str, **labels: str) -> dict[str, Any]:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "e2e", **labels}},
        "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]},
    }
    return await kube.request_json(
        "POST", f"/api/v1/namespaces/{namespace}/pods", body=orjson.dumps(pod)
    )


async def cached_pods(mesh: LocalMesh, address: str) -> set[str]:
    async with mesh.replica_channel(address) as channel:
        answer = await mesh_pb2_grpc.MeshServiceStub(channel).ListCachedObjects(
            mesh_pb2.ListCachedObjectsRequest(kind=mesh_pb2.KIND_POD), timeout=5
        )
    return {f"{k.namespace}/{k.name}" for k in answer.keys}


async def replica_status(mesh: LocalMesh, address: str) -> mesh_pb2.GetReplicaStatusResponse:
    async with mesh.replica_channel(address) as channel:
        return await mesh_pb2_grpc.MeshServiceStub(channel).GetReplicaStatus(
            mesh_pb2.GetReplicaStatusRequest(), timeout=5
        )


def owner(mesh: LocalMesh, service: str, namespace: str) -> str:
    found = ring.HashRing(mesh.addresses[service]).owner(namespace)
    assert found is not None
    return found
