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


async def test_every_service_gets_its_secret_and_a_fresh_one_after_half_life(
    kube: KubeClient,
) -> None:
    await namespace(kube)
    ca = await mesh_certs.ensure_ca(kube, namespace=NS, name="kruise-mesh-ca")
    issuer = mesh_certs.MeshCertIssuer(
        kube, ca=ca, namespace=NS, validity=datetime.timedelta(seconds=2)
    )
    await issuer.check()
    made = {c: await secret(kube, mesh_certs.secret_name(c)) for c in mesh_certs.SERVICES}
    for component, found in made.items():
        assert found["type"] == "kubernetes.io/tls"
        assert base64.b64decode(found["data"]["ca.crt"]) == ca.cert_pem
        assert found["metadata"]["annotations"]["kruise-mesh.io/spiffe-id"] == (
            identity.spiffe_id(component)
        )

    await issuer.check()  # nothing due: nothing written
    for component, found in made.items():
        now = await secret(kube, mesh_certs.secret_name(component))
        assert now["metadata"]["resourceVersion"] == found["metadata"]["resourceVersion"]

    await asyncio.sleep(1.2)  # past half of 2 s
    issuer.validity = datetime.timedelta(hours=1)
    await issuer.check()
    for component, found in made.items():
        now = await secret(kube, mesh_certs.secret_name(component))
        assert cert_of(now) != cert_of(found)


@pytest.mark.parametrize(
    ("what", "expected"),
    [
        pytest.param("missing", "missing", id="no Secret yet"),
        pytest.param("garbled", "unreadable", id="a Secret without the three files"),
        pytest.param("other CA", "another-ca", id="a certificate from another CA (CA replaced)"),
        pytest.param("fresh", None, id="a fresh certificate of ours"),
        pytest.param("old", "half-life", id="more than half its lifetime gone"),
    ],
)
async def test_when_a_certificate_is_renewed(what: str, expected: str | None) -> None:
    ca = certs.generate_ca(common_name="ours")
    now = datetime.datetime.now(datetime.UTC)
    found: dict[str, Any] | None = None
    if what != "missing":
        issuing = certs.generate_ca(common_name="theirs") if what == "other CA" else ca
        material = await CaSource(issuing, "rollout").fetch()
        found = {
            "data": {
                "tls.crt": base64.b64encode(material.cert_pem).decode(),
                "tls.key": base64.b64encode(material.key_pem).decode(),
                "ca.crt": base64.b64encode(issuing.cert_pem).decode(),
            }
        }
        if what == "garbled":
            found = {"data": {"tls.crt": "x"}}
        if what == "old":
            now += datetime.timedelta(hours=13)  # of 24
    assert mesh_certs.renewal_reason(found, ca=ca, now=now) == expected
