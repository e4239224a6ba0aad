"""The mesh CA in a cluster: the gateway keeps every component's mesh certificate in a Secret.

    Secret kruise-mesh-ca              ca.crt, ca.key        made once, by the first gateway
    Secret kruise-mesh-<component>-tls tls.crt, tls.key, ca.crt   placement, rollout, budget

Each service's pods mount their component's Secret (``KRUISE_MESH_TLS_DIR``, read by
``kit.tls.FileSource``); the kubelet refreshes a mounted Secret within about a minute of a
change, and the replica re-reads the files, so a renewed certificate is taken into use
without a restart. The gateway holds the CA in memory and issues its own certificate from it
(``kit.tls.CaSource``).

Renewal: the lease holder looks at every component's Secret every ``check_s`` and re-issues a
certificate that has less than half its lifetime left (or is missing, unreadable, or from
another CA), with the Secret's resourceVersion as precondition, so two gateways never both
write one. The lifetime (default 24 h) leaves the kubelet's refresh delay far behind.

cert-manager instead: create the same Secrets with cert-manager ``Certificate``s (URI SAN
``spiffe://kruise-mesh/<component>``, DNS SAN ``<component>.mesh.kruise-mesh``, usages
server auth and client auth, one CA Issuer), mount them the same way, give the gateway its
own (``--mesh-tls-dir``) and leave ``--mesh-ca-secret`` empty. deploy/ shows both.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import logging
from collections.abc import Iterable
from typing import Any

import orjson
from prometheus_client import Counter

from services.gateway.kube.client import KubeClient
from services.kit import certs, errors, identity
from services.kit.tls import CA_FILE, CERT_FILE, KEY_FILE, CaSource, Material

log = logging.getLogger(__name__)

SERVICES = ("placement", "rollout", "budget")

ISSUED = Counter(
    "kruise_mesh_gateway_mesh_certs_issued_total",
    "Mesh certificates the gateway wrote into a component's Secret",
    ["component", "why"],
)


def secret_name(component: str) -> str:
    return f"kruise-mesh-{component}-tls"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _data(secret: dict[str, Any], *keys: str) -> list[bytes] | None:
    data = secret.get("data") or {}
    try:
        return [base64.b64decode(data[k]) for k in keys]
    except (KeyError, ValueError):
        return None


async def ensure_ca(kube: KubeClient, *, namespace: str, name: str) -> certs.CertPair:
    """The mesh CA from Secret ``name``, made and stored on first use (a gateway racing
    another reads the winner's)."""
    path = f"/api/v1/namespaces/{namespace}/secrets"
    try:
        secret = await kube.request_json("GET", f"{path}/{name}")
    except errors.NotFound:
        ca = certs.generate_ca(common_name="kruise-mesh CA")
        body = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name, "namespace": namespace},
            "type": "Opaque",
            "data": {"ca.crt": _b64(ca.cert_pem), "ca.key": _b64(ca.key_pem)},
        }
        try:
            secret = await kube.request_json("POST", path, body=orjson.dumps(body))
            log.info("made the mesh CA", extra={"secret": name})
        except errors.AlreadyExists:
            secret = await kube.request_json("GET", f"{path}/{name}")
    found = _data(secret, "ca.crt", "ca.key")
    if found is None:
        raise errors.Invalid(f"Secret {namespace}/{name} lacks ca.crt or ca.key")
    return certs.CertPair(found[0], found[1])


def renewal_reason(
    secret: dict[str, Any] | None, *, ca: certs.CertPair, now: datetime.datetime
) -> str | None:
    """Why the component's Secret needs a new certificate, or None. Pure.

    missing; unreadable; another CA (its ca.crt is not ours); past half its lifetime.
    """
    if secret is None:
        return "missing"
    found = _data(secret, CERT_FILE, KEY_FILE, CA_FILE)
    if found is None:
        return "unreadable"
    cert_pem, _, ca_pem = found
    if ca_pem != ca.cert_pem:
        return "another-ca"
    try:
        start, end = certs.validity(cert_pem)
    except ValueError:
        return "unreadable"
    lifetime = max(end - start - certs.BACKDATE, datetime.timedelta(0))
    if now >= end - lifetime / 2:
        return "half-life"
    return None


class MeshCertIssuer:
    """Keeps every service component's Secret holding a fresh mesh certificate."""

    def __init__(
        self,
        kube: KubeClient,
        *,
        ca: certs.CertPair,
        namespace: str,
        components: Iterable[str] = SERVICES,
        validity: datetime.timedelta | None = None,
        check_s: float = 60.0,
    ) -> None:
        self.kube = kube
        self.ca = ca
        self.namespace = namespace
        self.components = tuple(components)
        self.validity = validity
        self.check_s = check_s
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.check()  # the services wait for their Secrets: make them at once
        self._task = asyncio.create_task(self._loop(), name="mesh certificate issuer")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.check_s)
            try:
                await self.check()
            except Exception:  # the next round may do better; the certificates last
                log.exception("checking the mesh certificates failed")

    async def check(self) -> None:
        now = datetime.datetime.now(datetime.UTC)
        for component in self.components:
            await self._ensure(component, now)

    async def _ensure(self, component: str, now: datetime.datetime) -> None:
        path = f"/api/v1/namespaces/{self.namespace}/secrets"
        name = secret_name(component)
        secret: dict[str, Any] | None
        try:
            secret = await self.kube.request_json("GET", f"{path}/{name}")
        except errors.NotFound:
            secret = None
        why = renewal_reason(secret, ca=self.ca, now=now)
        if why is None:
            return
        source = CaSource(self.ca, component)
        if self.validity is not None:
            source.validity = self.validity
        material: Material = await source.fetch()
        body: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": name,
                "namespace": self.namespace,
                "labels": {"app.kubernetes.io/part-of": "kruise-mesh"},
                "annotations": {"kruise-mesh.io/spiffe-id": identity.spiffe_id(component)},
            },
            "type": "kubernetes.io/tls",
            "data": {
                CERT_FILE: _b64(material.cert_pem),
                KEY_FILE: _b64(material.key_pem),
                CA_FILE: _b64(material.ca_pem),
            },
        }
        try:
            if secret is None:
                await self.kube.request("POST", path, body=orjson.dumps(body))
            else:
                body["metadata"]["resourceVersion"] = secret["metadata"]["resourceVersion"]
                await self.kube.request("PUT", f"{path}/{name}", body=orjson.dumps(body))
        except (errors.AlreadyExists, errors.Conflict):
            return  # another gateway wrote it meanwhile: the next check looks again
        ISSUED.labels(component, why).inc()
        log.info(
            "issued a mesh certificate",
            extra={"component": component, "secret": name, "why": why},
        )
