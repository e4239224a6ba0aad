"""The paths a cluster uses: replicas found from EndpointSlices, and gateway failover.

Two gateways share one Lease; the holder runs the watch hub. Service replicas are
published as EndpointSlices of their headless Services, as the endpoint controller
would, and the gateways build their rings from those.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from services.cli.local import MESH_NAMESPACE, LocalMesh
from services.gateway.kube.client import KubeClient
from tests.e2e.conftest import (
    cached_pods,
    create_pod,
    ensure_namespace,
    eventually,
    owner,
    replica_status,
)

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

LEASE = f"/apis/coordination.k8s.io/v1/namespaces/{MESH_NAMESPACE}/leases/kruise-mesh-gateway"


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def mesh(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[LocalMesh]:
    workdir: Path = tmp_path_factory.mktemp("cluster-paths")
    async with LocalMesh(
        workdir=workdir, replicas=1, gateways=2, discovery=True, lease_seconds=2.0
    ) as running:
        yield running


async def holder(kube: KubeClient) -> str:
    lease = await kube.request_json("GET", LEASE)
    return str(lease["spec"].get("holderIdentity") or "")


async def test_replicas_found_from_endpoint_slices_receive_their_pods(
    mesh: LocalMesh, kube: KubeClient
) -> None:
    await ensure_namespace(kube, "discovered")
    await create_pod(kube, "discovered", "p")
    for service in ("placement", "rollout", "budget"):
        (address,) = mesh.addresses[service]

        async def arrived(address: str = address) -> bool:
            return "discovered/p" in await cached_pods(mesh, address)

        await eventually(f"{service} replica from its EndpointSlice holds the pod", arrived)
    assert await holder(kube) in ("gateway", "gateway-1"), "one gateway holds the Lease"


async def test_a_replica_added_to_the_endpoint_slices_takes_over_its_share(
    mesh: LocalMesh, kube: KubeClient
) -> None:
    namespaces = [f"scale-out-{i}" for i in range(10)]
    for ns in namespaces:
        await ensure_namespace(kube, ns)
        await create_pod(kube, ns, "p")
    added = await mesh.add_replica("budget")
    members = mesh.addresses["budget"]
    assert len(members) == 2
    expected = {f"{ns}/p": owner(mesh, "budget", ns) for ns in namespaces}
    assert added in expected.values(), "the new replica owns some of these namespaces"

    async def rebalanced() -> bool:
        held = {a: await cached_pods(mesh, a) for a in members}
        return all(
            (key in held[want]) and all(key not in held[a] for a in members if a != want)
            for key, want in expected.items()
        )

    await eventually("each pod at exactly its owner on the two-member ring", rebalanced)
    status = await replica_status(mesh, added)
    assert sorted(status.ring_members) == sorted(members)


async def test_when_the_lease_holder_dies_the_other_gateway_takes_over_the_watch(
    mesh: LocalMesh, kube: KubeClient
) -> None:
    leader = await holder(kube)
    survivor = "gateway-1" if leader == "gateway" else "gateway"
    await mesh.procs[leader].kill()  # no graceful release: the lease must expire
    await eventually("the survivor holds the Lease", lambda: _holds(kube, survivor), timeout=15)
    await ensure_namespace(kube, "after-failover")
    await create_pod(kube, "after-failover", "p")
    for service in ("placement", "rollout"):
        (address,) = mesh.addresses[service]

        async def arrived(address: str = address) -> bool:
            return "after-failover/p" in await cached_pods(mesh, address)

        await eventually(f"{service} gets pods from the new leader's hub", arrived)


async def _holds(kube: KubeClient, identity: str) -> bool:
    return await holder(kube) == identity
