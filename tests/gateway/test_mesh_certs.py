"""The gateway as the mesh CA in a cluster: its CA Secret, and every service's certificate
Secret kept fresh, against the sandbox API server."""

from __future__ import annotations

import asyncio
import base64
import datetime
from typing import Any

import orjson
import pytest

from services.gateway import mesh_certs
from services.gateway.kube.client import KubeClient
from services.kit import certs, identity
from services.kit.tls import CaSource

NS = "kruise-mesh"
SECRETS = f"/api/v1/namespaces/{NS}/secrets"


async def namespace(kube: KubeClient) -> None:
    body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}
    await kube.request("POST", "/api/v1/namespaces", body=orjson.dumps(body))


async def secret(kube: KubeClient, name: str) -> dict[str, Any]:
    return await kube.request_json("GET", f"{SECRETS}/{name}")


def cert_of(found: dict[str, Any]) -> bytes:
    return base64.b64decode(found["data"]["tls.crt"])


async def test_the_ca_is_made_once_and_read_back(kube: KubeClient) -> None:
    await namespace(kube)
    first, second = await asyncio.gather(
        mesh_certs.ensure_ca(kube, namespace=NS, name="kruise-mesh-ca"),
        mesh_certs.ensure_ca(kube, namespace=NS, name="kruise-mesh-ca"),
    )
    again = await mesh_certs.ensure_ca(kube, namespace=NS, name="kruise-mesh-ca")
    assert first == second == again  # two gateways starting together share one CA
    assert again.signing is not None and again.signing.cert_pem == again.bundle


def test_the_signing_ca_is_the_one_matching_the_key_in_a_bundle() -> None:
    old, new = (certs.generate_ca(common_name=n) for n in ("A", "B"))
    both = old.cert_pem + new.cert_pem

    def stored(bundle: bytes, key: bytes) -> dict[str, Any]:
        return {"data": {"ca.crt": b64(bundle), "ca.key": b64(key)}}

    assert mesh_certs.read_ca(stored(both, new.key_pem)) == mesh_certs.MeshCa(both, new)
    assert mesh_certs.read_ca(stored(both, old.key_pem)).signing == old
    assert mesh_certs.read_ca(stored(old.cert_pem, new.key_pem)).signing is None
    assert mesh_certs.read_ca(None) == mesh_certs.MeshCa(b"", None)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


async def test_every_component_gets_its_certificate_and_a_fresh_one_after_half_life(
    kube: KubeClient,
) -> None:
    await namespace(kube)
    issuer = mesh_certs.MeshCertIssuer(
        kube, namespace=NS, ca_secret="kruise-mesh-ca", leaf_validity=datetime.timedelta(seconds=2)
    )
    await issuer.prepare()
    ca = await secret(kube, "kruise-mesh-ca")
    made = {c: await secret(kube, mesh_certs.secret_name(c)) for c in mesh_certs.SERVICES}
    for component, found in made.items():
        assert found["type"] == "kubernetes.io/tls"
        assert found["data"]["ca.crt"] == ca["data"]["ca.crt"]
        assert found["metadata"]["annotations"]["kruise-mesh.io/spiffe-id"] == (
            identity.spiffe_id(component)
        )
        assert mesh_certs.BUNDLE_SINCE in found["metadata"]["annotations"]
    assert cert_of(ca)  # the gateway's own, beside the CA

    await issuer.check()  # nothing due: nothing written
    for component, found in made.items():
        now = await secret(kube, mesh_certs.secret_name(component))
        assert now["metadata"]["resourceVersion"] == found["metadata"]["resourceVersion"]

    await asyncio.sleep(1.2)  # past half of 2 s
    issuer.leaf_validity = datetime.timedelta(hours=1)
    await issuer.check()
    for component, found in made.items():
        now = await secret(kube, mesh_certs.secret_name(component))
        assert cert_of(now) != cert_of(found)
        assert now["data"]["ca.crt"] == found["data"]["ca.crt"]
        assert (
            now["metadata"]["annotations"][mesh_certs.BUNDLE_SINCE]
            == found["metadata"]["annotations"][mesh_certs.BUNDLE_SINCE]
        )  # the bundle did not move
    assert cert_of(await secret(kube, "kruise-mesh-ca")) != cert_of(ca)


# ---- the mesh across a CA rotation (the order rotation.plan prescribes) ----------------------


async def _call(port: int, tls: Any) -> None:
    """One call over a new connection (a new handshake: both ends' certificates checked)."""
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from services.kit.tls import MeshChannel

    async with MeshChannel(f"127.0.0.1:{port}", tls, peer="gateway") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        answer = await stub.Check(health_pb2.HealthCheckRequest(), timeout=3)
        assert answer.status == health_pb2.HealthCheckResponse.SERVING


async def test_a_grpc_call_between_components_works_at_every_step_of_a_ca_rotation() -> None:
    """Both ends hold a MeshTls whose CaSource is the CA Secret's content at each step:
    ``ca.crt`` a bundle (one or two CAs; grpc takes both as roots) and one CA key, the leaf
    issued from the CA matching that key. The server takes each step before the client, then
    the client before the server: a call over a new connection succeeds in every state the
    two can be in. (Skipping add-ca, a leaf from B meets a peer trusting A alone: refused.)"""
    import grpc
    from grpc_health.v1 import health_pb2_grpc

    from services.gateway import rotation
    from services.kit.tls import MeshTls
    from tests.unit.test_kit_tls import Ticker

    old, new = (certs.generate_ca(common_name=n) for n in ("mesh CA A", "mesh CA B"))
    hour = datetime.timedelta(hours=1)
    steps = [  # (ca.crt, the key the leaves are issued with) as the CA Secret goes
        (old.cert_pem, old.key_pem),  # [A], leaves from A
        (old.cert_pem + new.cert_pem, old.key_pem),  # add-ca: both trusted, leaves from A
        (old.cert_pem + new.cert_pem, new.key_pem),  # switch: leaves from B
        (new.cert_pem, new.key_pem),  # drop-old-ca
    ]
    server_tls = MeshTls("gateway", CaSource(certs.CertPair(*steps[0]), "gateway", validity=hour))
    client_tls = MeshTls("rollout", CaSource(certs.CertPair(*steps[0]), "rollout", validity=hour))
    await server_tls.start()
    await client_tls.start()
    server = grpc.aio.server()
    health_pb2_grpc.add_HealthServicer_to_server(Ticker(), server)
    port = server.add_secure_port("127.0.0.1:0", server_tls.server_credentials())
    await server.start()

    async def move(tls: MeshTls, step: tuple[bytes, bytes]) -> None:
        assert isinstance(tls.source, CaSource)
        tls.source.ca = certs.CertPair(*step)
        tls._take(await tls.source.fetch())

    try:
        await _call(port, client_tls)
        for i, step in enumerate(steps[1:], start=1):
            first, second = (server_tls, client_tls) if i % 2 else (client_tls, server_tls)
            await move(first, step)
            await _call(port, client_tls)  # one end a step ahead of the other
            await move(second, step)
            await _call(port, client_tls)
            issuer = rotation.read_pki(
                rotation.Pki(
                    rotation.split_bundle(step[0]),
                    step[1],
                    {
                        "leaf": certs.CertPair(
                            server_tls.material.cert_pem, server_tls.material.key_pem
                        )
                    },
                )
            ).leaves["leaf"]
            assert isinstance(issuer, rotation.Leaf)
            assert issuer.issuer == rotation.ca_id(old.cert_pem if i < 2 else new.cert_pem)
        assert rotation.bundle_ids(client_tls.material.ca_pem) == {rotation.ca_id(new.cert_pem)}

        await move(server_tls, steps[0])  # the control: a peer that only trusts A
        with pytest.raises(grpc.aio.AioRpcError):
            await _call(port, client_tls)
    finally:
        await server.stop(0)
        await server_tls.stop()
        await client_tls.stop()
