"""kit.tls: who may call what (a table), and certificates rotating under live calls.

The rotation test runs a real grpc.aio server on 127.0.0.1 with mutual TLS: both ends take a
new certificate from the same CA in the middle of a server-streaming call; the stream goes
on, and a new call after the rotation is made over a new connection with the new
certificates.
"""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.kit import certs, identity
from services.kit.tls import CaSource, MeshChannel, MeshTls, Policy, allowed

POLICY: Policy = {
    "*": frozenset({"gateway"}),
    "kruise.cluster.v1.ClusterService": frozenset({"placement", "rollout", "budget"}),
    "/kruise.common.v1.MeshService/GetReplicaStatus": frozenset({"gateway", "operator"}),
}


@pytest.mark.parametrize(
    ("method", "component", "expected"),
    [
        pytest.param(
            "/kruise.cluster.v1.ClusterService/Delete",
            "placement",
            True,
            id="a service writes through the gateway",
        ),
        pytest.param(
            "/kruise.cluster.v1.ClusterService/Delete",
            "gateway",
            False,
            id="the gateway does not call its own cluster API",
        ),
        pytest.param(
            "/kruise.common.v1.MeshService/Sync",
            "gateway",
            True,
            id="the gateway streams events to a replica",
        ),
        pytest.param(
            "/kruise.common.v1.MeshService/Sync",
            "budget",
            False,
            id="a replica cannot stream events as the gateway",
        ),
        pytest.param(
            "/kruise.common.v1.MeshService/GetReplicaStatus",
            "operator",
            True,
            id="tooling reads a replica's sync state",
        ),
        pytest.param(
            "/kruise.common.v1.MeshService/Review",
            "operator",
            False,
            id="tooling cannot post reviews",
        ),
        pytest.param(
            "/kruise.common.v1.MeshService/Review", None, False, id="no identity, no call"
        ),
        pytest.param(
            "/grpc.health.v1.Health/Check",
            None,
            True,
            id="health is open to any peer the handshake let in",
        ),
    ],
)
def test_who_may_call_what(method: str, component: str | None, expected: bool) -> None:
    assert allowed(POLICY, method, component) is expected


def test_only_mesh_components_have_identities() -> None:
    assert identity.component_of(identity.spiffe_id("rollout")) == "rollout"
    assert identity.component_of("spiffe://kruise-mesh/admin") is None
    assert identity.component_of("spiffe://other/rollout") is None
    with pytest.raises(ValueError, match="unknown mesh component"):
        identity.spiffe_id("admin")


class Ticker(health_pb2_grpc.HealthServicer):
    """Check answers at once; Watch sends SERVING every 50 ms, as a long stream."""

    async def Check(self, request: Any, context: Any) -> health_pb2.HealthCheckResponse:
        return health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING)

    async def Watch(self, request: Any, context: Any) -> AsyncIterator[Any]:
        while True:
            yield health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING)
            await asyncio.sleep(0.05)


async def test_both_ends_rotate_under_an_open_stream() -> None:
    ca = certs.generate_ca(common_name="test mesh CA")
    validity = datetime.timedelta(hours=1)
    server_tls = MeshTls("gateway", CaSource(ca, "gateway", validity=validity))
    client_tls = MeshTls("rollout", CaSource(ca, "rollout", validity=validity))
    await server_tls.start()
    await client_tls.start()
    server = grpc.aio.server()
    health_pb2_grpc.add_HealthServicer_to_server(Ticker(), server)
    port = server.add_secure_port("127.0.0.1:0", server_tls.server_credentials())
    await server.start()
    channel = MeshChannel(f"127.0.0.1:{port}", client_tls, peer="gateway")
    try:
        stub = health_pb2_grpc.HealthStub(channel)
        stream = stub.Watch(health_pb2.HealthCheckRequest())
        await stream.read()
        first = channel.current()

        # Both ends take a new certificate (as the renewal loop does at half-life).
        server_tls._take(await server_tls.source.fetch())
        client_tls._take(await client_tls.source.fetch())
        assert (server_tls.generation, client_tls.generation) == (2, 2)

        for _ in range(3):  # the stream opened before the rotation goes on
            answer = await asyncio.wait_for(stream.read(), timeout=2)
            assert answer.status == health_pb2.HealthCheckResponse.SERVING
        checked = await stub.Check(health_pb2.HealthCheckRequest(), timeout=2)
        assert checked.status == health_pb2.HealthCheckResponse.SERVING
        assert channel.current() is not first  # the new call went over a new connection
        stream.cancel()
    finally:
        await channel.close()
        await server.stop(0)
        await server_tls.stop()
        await client_tls.stop()
