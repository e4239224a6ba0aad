"""Mutual TLS on every mesh connection: strangers get nothing, peers only what they may ask.

One mesh (1 placement, 2 rollout, 1 budget replica) with ``mesh_tls``: a mesh CA in the
workdir; the gateway issues itself 8-second certificates from it (renewed every 4 s for the
whole module, so every test runs across rotations) and each replica reads a certificate
written for it, re-read every second. Probes dial the real ports as an attacker would: with no
certificate, with one from another CA, over plain TCP, and with the certificate of a mesh
component asking for what another component may do.
"""

from __future__ import annotations

import asyncio
import datetime
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import orjson
import pytest
import pytest_asyncio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from kruise.budget.v1 import budget_pb2, budget_pb2_grpc
from kruise.common.v1 import mesh_pb2, mesh_pb2_grpc
from services.cli.local import LocalMesh
from services.gateway.kube.client import KubeClient
from services.kit import certs, errors
from services.kit.cluster import ClusterClient, Ref
from services.kit.tls import (
    POLL_ENV,
    VALIDITY_ENV,
    CaSource,
    MeshChannel,
    MeshTls,
    peer_name,
)
from tests.e2e.budget_world import World
from tests.e2e.conftest import create_pod, ensure_namespace, eventually

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

CHECK = health_pb2.HealthCheckRequest()


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def mesh(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[LocalMesh]:
    workdir: Path = tmp_path_factory.mktemp("mesh-tls")
    async with LocalMesh(
        workdir=workdir,
        replicas={"placement": 1, "rollout": 2, "budget": 1},
        mesh_tls=True,
        mesh_tls_env={POLL_ENV: "1", VALIDITY_ENV: "8"},
    ) as running:
        yield running


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def kube(mesh: LocalMesh) -> AsyncIterator[KubeClient]:
    client = await KubeClient.connect(kubeconfig=mesh.kubeconfig)
    yield client
    await client.close()


def ports(mesh: LocalMesh) -> list[tuple[str, str]]:
    """Every mesh port: (the component serving it, its address)."""
    found = [("gateway", mesh.gateway_grpc)]
    found += [(s, a) for s, addresses in mesh.addresses.items() for a in addresses]
    return found


async def as_component(mesh: LocalMesh, component: str) -> MeshTls:
    """A certificate for ``component`` from the mesh's own CA (what its replica holds)."""
    assert mesh.mesh_ca is not None
    tls = MeshTls(component, CaSource(mesh.mesh_ca, component))
    await tls.start()
    return tls


async def code_of(call: object) -> grpc.StatusCode:
    try:
        await call  # type: ignore[misc]
    except grpc.aio.AioRpcError as e:
        return e.code()
    return grpc.StatusCode.OK


async def test_a_stranger_gets_nothing_from_any_mesh_port(mesh: LocalMesh) -> None:
    assert mesh.mesh_ca is not None
    stranger_ca = certs.generate_ca(common_name="somebody else's CA")
    foreign = certs.issue_mesh_cert(
        ca=stranger_ca,
        uri="spiffe://kruise-mesh/gateway",
        dns_names=[peer_name("gateway")],
        validity=datetime.timedelta(hours=1),
    )
    for component, address in ports(mesh):
        override = (("grpc.ssl_target_name_override", peer_name(component)),)
        attempts = {
            "plain TCP": grpc.aio.insecure_channel(address),
            "TLS without a client certificate": grpc.aio.secure_channel(
                address, grpc.ssl_channel_credentials(mesh.mesh_ca.cert_pem), options=override
            ),
            "a certificate from another CA": grpc.aio.secure_channel(
                address,
                grpc.ssl_channel_credentials(
                    mesh.mesh_ca.cert_pem, foreign.key_pem, foreign.cert_pem
                ),
                options=override,
            ),
        }
        for how, channel in attempts.items():
            async with channel:
                health = health_pb2_grpc.HealthStub(channel).Check(CHECK, timeout=3)
                assert await code_of(health) == grpc.StatusCode.UNAVAILABLE, (address, how)
                sync_status = mesh_pb2_grpc.MeshServiceStub(channel).GetReplicaStatus(
                    mesh_pb2.GetReplicaStatusRequest(), timeout=3
                )
                assert await code_of(sync_status) == grpc.StatusCode.UNAVAILABLE, (address, how)
    # The same ports answer a mesh peer: the refusals above are the certificates' doing.
    for component, address in ports(mesh):
        channel = mesh.replica_channel(address, component)
        async with channel:
            answer = await health_pb2_grpc.HealthStub(channel).Check(CHECK, timeout=3)
            assert answer.status == health_pb2.HealthCheckResponse.SERVING


async def test_a_replica_cannot_impersonate_the_gateway_towards_another(mesh: LocalMesh) -> None:
    budget = await as_component(mesh, "budget")
    gateway = await as_component(mesh, "gateway")
    try:
        for address in mesh.addresses["rollout"]:
            review = mesh_pb2.AdmissionRequest(webhook="mutate-pods", namespace="x", name="p")
            for who, tls, expected in (
                ("budget", budget, grpc.StatusCode.PERMISSION_DENIED),
                ("gateway", gateway, grpc.StatusCode.OK),
            ):
                async with MeshChannel(address, tls, peer="rollout") as channel:
                    stub = mesh_pb2_grpc.MeshServiceStub(channel)
                    got = await code_of(stub.Review(review, timeout=5))
                    # The gateway gets an answer (or the handler's own error); the budget's
                    # identity is refused before the replica looks at the review.
                    if expected == grpc.StatusCode.OK:
                        assert got != grpc.StatusCode.PERMISSION_DENIED, (who, address)
                    else:
                        assert got == expected, (who, address)
                    status = await code_of(
                        stub.GetReplicaStatus(mesh_pb2.GetReplicaStatusRequest(), timeout=5)
                    )
                    want = (
                        grpc.StatusCode.PERMISSION_DENIED if who == "budget" else grpc.StatusCode.OK
                    )
                    assert status == want, (who, address)
    finally:
        await budget.stop()
        await gateway.stop()


async def test_only_the_cloneset_controller_may_spend_budget(mesh: LocalMesh) -> None:
    request = budget_pb2.AuthorizePodUpdateRequest(namespace="x", pod="p", pod_uid="u")
    for component, expected_denied in (("placement", True), ("budget", True), ("rollout", False)):
        tls = await as_component(mesh, component)
        try:
            async with MeshChannel(mesh.gateway_grpc, tls, peer="gateway") as channel:
                stub = budget_pb2_grpc.BudgetServiceStub(channel)
                got = await code_of(stub.AuthorizePodUpdate(request, timeout=5))
            assert (got == grpc.StatusCode.PERMISSION_DENIED) == expected_denied, (component, got)
        finally:
            await tls.stop()


async def rotations(mesh: LocalMesh, name: str) -> float:
    """The component process's ``kruise_mesh_tls_rotations_total``, from its ops port."""
    port = mesh.procs[name].ready["ops_port"]
    reader, writer = await asyncio.open_connection("127.0.0.1", int(port))
    writer.write(b"GET /metrics HTTP/1.0\r\n\r\n")
    body = (await reader.read()).decode()
    writer.close()
    total = 0.0
    for line in body.splitlines():
        if line.startswith("kruise_mesh_tls_rotations_total{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


async def test_certificates_rotate_while_evictions_flow(mesh: LocalMesh, kube: KubeClient) -> None:
    """Every eviction goes gateway → budget replica (review) and budget → gateway (the
    status write spending the budget): both ends rotate meanwhile, the gateway every 4 s
    and the budget replica twice (its files rewritten), and no eviction fails."""
    world = World(kube, "tls-storm", app="storm")
    pods = 40
    await world.build(pods, max_unavailable="100%")
    before = {name: await rotations(mesh, name) for name in ("gateway", "budget-0")}
    codes: Counter[int] = Counter()

    async def evictions() -> None:
        for i in range(pods):
            codes[await world.evict(f"{world.app}-{i}")] += 1
            await asyncio.sleep(0.25)

    async def rotate_budget() -> None:
        for _ in range(2):
            await asyncio.sleep(3)
            await mesh.write_replica_cert("budget", 0)

    await asyncio.gather(evictions(), rotate_budget())
    assert codes == Counter({201: pods}), codes

    async def rotated() -> bool:
        after = {name: await rotations(mesh, name) for name in before}
        return (
            after["gateway"] - before["gateway"] >= 2
            and after["budget-0"] - before["budget-0"] >= 2
        )

    await eventually("both ends rotated at least twice", rotated, timeout=10)


async def test_placement_cannot_delete_a_pod_through_the_gateway(
    mesh: LocalMesh, kube: KubeClient
) -> None:
    await ensure_namespace(kube, "tls-victim")
    await create_pod(kube, "tls-victim", "victim")
    ref = Ref("v1", "Pod", "tls-victim", "victim")
    for component in ("placement", "budget"):
        tls = await as_component(mesh, component)
        cluster = ClusterClient.connect(mesh.gateway_grpc, component=component, tls=tls)
        try:
            with pytest.raises(errors.Forbidden, match=f"{component} may not delete pods"):
                await cluster.delete(ref)
        finally:
            await cluster.close()
            await tls.stop()
    pod = await kube.request_json("GET", "/api/v1/namespaces/tls-victim/pods/victim")
    assert pod["metadata"]["name"] == "victim" and not pod["metadata"].get("deletionTimestamp")


async def test_an_outside_caller_needs_a_token_and_the_right(
    mesh: LocalMesh, kube: KubeClient
) -> None:
    """GetBudget on the API port: no token, a ServiceAccount without the right, then the
    same ServiceAccount after a RoleBinding grants ``get podunavailablebudgets``."""
    ns = "tls-caller"
    await ensure_namespace(kube, ns)
    accounts = f"/api/v1/namespaces/{ns}/serviceaccounts"
    await kube.request(
        "POST",
        accounts,
        body=orjson.dumps(
            {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "tool"}}
        ),
    )
    answer = await kube.request_json(
        "POST",
        f"{accounts}/tool/token",
        body=orjson.dumps(
            {
                "apiVersion": "authentication.k8s.io/v1",
                "kind": "TokenRequest",
                # the rollout API's audience: the gateway takes no other by default
                "spec": {"audiences": ["kruise-mesh-rollout-api"]},
            }
        ),
    )
    token = answer["status"]["token"]
    request = budget_pb2.GetBudgetRequest(namespace=ns, name="none")

    async def code_with(token: str | None) -> grpc.StatusCode:
        credentials = mesh.api_credentials(token) if token else None
        if credentials is None:  # TLS, but no token
            channel = grpc.aio.secure_channel(
                mesh.api_target, grpc.ssl_channel_credentials(Path(mesh.api_ca_file).read_bytes())
            )
        else:
            channel = credentials.channel(mesh.api_target)
        async with channel:
            stub = budget_pb2_grpc.BudgetServiceStub(channel)
            return await code_of(stub.GetBudget(request, timeout=5))

    assert await code_with(None) == grpc.StatusCode.UNAUTHENTICATED
    assert await code_with(token) == grpc.StatusCode.PERMISSION_DENIED
    rbac = f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}"
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": "read-budgets"},
        "rules": [
            {
                "apiGroups": ["policy.kruise.io"],
                "resources": ["podunavailablebudgets"],
                "verbs": ["get"],
            }
        ],
    }
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": "tool-reads-budgets"},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Role",
            "name": "read-budgets",
        },
        "subjects": [{"kind": "ServiceAccount", "name": "tool", "namespace": ns}],
    }
    await kube.request("POST", f"{rbac}/roles", body=orjson.dumps(role))
    await kube.request("POST", f"{rbac}/rolebindings", body=orjson.dumps(binding))

    async def granted() -> bool:  # a refusal is cached for 2 s
        # Authorized now: the budget does not exist, which the replica answers.
        return await code_with(token) == grpc.StatusCode.NOT_FOUND

    await eventually("the RoleBinding lets the same token read budgets", granted, timeout=10)
