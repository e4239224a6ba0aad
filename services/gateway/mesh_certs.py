"""The mesh CA in a cluster: the gateway keeps it, and every component's mesh certificate, in
Secrets, and rotates the CA before it expires.

    Secret kruise-mesh-ca               ca.crt            the trust bundle (two CAs mid-rotation)
                                        ca.key            the newest CA's key
                                        tls.crt, tls.key  the gateway's own mesh certificate
    Secret kruise-mesh-<service>-tls    tls.crt, tls.key, ca.crt (the same bundle)
                                        for placement, rollout, budget

Who follows what. Each service's pods mount their Secret (``KRUISE_MESH_TLS_DIR``, read by
``kit.tls.FileSource``): the kubelet refreshes a mounted Secret within about a minute (plus
its cache's TTL), and the replica re-reads the files every ``KRUISE_MESH_TLS_POLL_S``. Every
gateway replica, lease holder or not, reads its certificate and bundle from the CA Secret
through the API every poll period (``SecretSource``).

Why the gateway's certificate lives in the CA Secret. It has to follow the same plan as the
services' (switch to a new CA only once every peer trusts it; drop the old CA only once no
certificate in use comes from it), so the planner has to see it. A certificate each gateway
issued itself in memory would be invisible to it, and a gateway that issued from the newest
key would present a certificate from a CA the services do not trust yet. Beside the CA, the
CA's change and the gateway's certificate are one write; there is no further Secret to mount
or grant, and nothing more is exposed (whoever reads that Secret holds the CA key already).

One round (``MeshCertIssuer.check``: the lease holder every ``check_s``, every gateway once
at start so that what is missing is made at once)::

    read the service Secrets, then the CA Secret ──► rotation.plan (leaves: the three
    services and the gateway; renewed at half their life, the CA rotated past 2/3 of its)
        ──► write the CA Secret (resourceVersion precondition: of two gateways planning the
            same step one wins; the loser ends its round)
        ──► write each service Secret whose leaf the plan issued or whose ca.crt is not the
            bundle (compared CA by CA), keeping its leaf (resourceVersion precondition each)

A CA rotation, as every peer sees it::

    [A]       leaves from A
    [A, B]    add-ca: B joins the CA Secret and every service Secret's ca.crt; leaves stay on A
    [A, B]    switch: leaves from B, once every Secret's ca.crt has held B for ``overlap``
              (``trusted_everywhere``) - every replica trusts B by then
    [B]       drop-old-ca, ``overlap`` after the last leaf was issued - every replica presents
              a leaf from B by then

``overlap`` must cover the kubelet's Secret refresh, the replicas' file poll and the
gateways' Secret poll (default 10 min). The service Secrets are read before the CA Secret, so
the bundle a round plans with is never older than a ca.crt it saw; and any write that changes
the bundle rewrites every service Secret, so a round planned on an older bundle finds its
resourceVersion gone. A ca.crt is stamped with when it was written
(``kruise-mesh.io/ca-bundle-since``): until ``overlap`` has passed it counts as trusting
nothing yet.

cert-manager instead: create the service Secrets with cert-manager ``Certificate``s (URI SAN
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
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from cryptography.hazmat.primitives import serialization
from prometheus_client import Counter

from services.gateway import rotation
from services.gateway.certs import ROTATIONS, report_expiry
from services.gateway.kube.client import KubeClient
from services.kit import certs, errors, identity
from services.kit.tasks import every, stop_task
from services.kit.tls import (
    CA_FILE,
    CERT_FILE,
    KEY_FILE,
    Material,
    mesh_cert_validity,
    peer_name,
    poll_seconds,
)

log = logging.getLogger(__name__)

SERVICES = ("placement", "rollout", "budget")
GATEWAY = "gateway"
CA_KEY = "ca.key"
CA_NAME = "kruise-mesh CA"
# When the Secret's ca.crt was last written (RFC 3339): its pods trust it ``overlap`` later.
BUNDLE_SINCE = "kruise-mesh.io/ca-bundle-since"
DEFAULT_CA_VALIDITY = datetime.timedelta(days=365)
DEFAULT_OVERLAP = datetime.timedelta(minutes=10)

ISSUED = Counter(
    "kruise_mesh_gateway_mesh_certs_issued_total",
    "Mesh certificates the gateway wrote into a component's Secret",
    ["component", "why"],
)


def secret_name(component: str) -> str:
    return f"kruise-mesh-{component}-tls"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _decoded(secret: Mapping[str, Any] | None, key: str) -> bytes | None:
    raw = ((secret or {}).get("data") or {}).get(key)
    if not raw:
        return None
    try:
        return base64.b64decode(raw)
    except ValueError:
        return None


# ---- what a Secret holds (pure) ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MeshCa:
    """The CA Secret's CA: ``bundle`` (ca.crt, every CA trusted, oldest first) and ``signing``,
    the CA matching ca.key with that key; None when the key matches none of the bundle (the
    issuer's next round adds a CA)."""

    bundle: bytes
    signing: certs.CertPair | None


def read_ca(secret: Mapping[str, Any] | None) -> MeshCa:
    """The CA of the CA Secret. Pure; garbage reads as an empty bundle."""
    bundle = b"".join(rotation.split_bundle(_decoded(secret, CA_FILE)))
    key = _decoded(secret, CA_KEY)
    signing = None
    if bundle and key:
        try:
            cert = certs.signing_cert(certs.CertPair(bundle, key))
        except (ValueError, TypeError):
            pass
        else:
            signing = certs.CertPair(cert.public_bytes(serialization.Encoding.PEM), key)
    return MeshCa(bundle, signing)


@dataclass(frozen=True, slots=True)
class Holder:
    """A Secret holding one component's mesh certificate: its ``leaf`` (None: missing),
    the ``bundle`` it checks peers against (ca.crt), and ``since``, when that bundle was
    written (None: by a version that did not say; it is old then)."""

    leaf: certs.CertPair | None
    bundle: bytes | None
    since: datetime.datetime | None


def read_holder(secret: Mapping[str, Any] | None) -> Holder:
    """Pure. A missing Secret holds nothing."""
    cert, key = _decoded(secret, CERT_FILE), _decoded(secret, KEY_FILE)
    raw = (((secret or {}).get("metadata") or {}).get("annotations") or {}).get(BUNDLE_SINCE)
    since = None
    if raw:
        with contextlib.suppress(ValueError):
            since = datetime.datetime.fromisoformat(raw)
    leaf = certs.CertPair(cert, key) if cert and key else None
    return Holder(leaf, _decoded(secret, CA_FILE), since)


def trusted_everywhere(
    holders: Mapping[str, Holder], *, now: datetime.datetime, overlap: datetime.timedelta
) -> frozenset[str]:
    """The ids of the CAs every component trusts now. Pure.

    A component trusts the CAs of its Secret's ca.crt once ``overlap`` has passed since that
    was written (the kubelet and the component's poll take that long at most); before, what
    it trusts is not known, and it counts as trusting nothing. A missing Secret trusts
    nothing. Worked example (overlap 10 min): ca.crt [A, B] written 4 min ago on rollout,
    [A, B] 12 min ago elsewhere → {} (B waits 6 more minutes); then → {A, B}.
    """
    trusted: frozenset[str] | None = None
    for holder in holders.values():
        settled = holder.since is None or now >= holder.since + overlap
        ids = rotation.bundle_ids(holder.bundle) if settled else frozenset()
        trusted = ids if trusted is None else trusted & ids
    return trusted or frozenset()


def _cas_of(pem: bytes | None) -> tuple[str, ...]:
    return tuple(rotation.ca_id(c) for c in rotation.split_bundle(pem))


def rewrite_reason(holder: Holder, *, issued: str | None, bundle: bytes) -> str | None:
    """Why a component's Secret is written this round, or None. Pure.

    ``issued``: why the plan issued the component a new leaf (``IssueLeaf.why``), else None.
    Otherwise "ca-bundle" when its ca.crt is not the CA Secret's ``bundle``, compared CA by
    CA in order (not byte by byte): the leaf is kept and only the trust bundle replaced.
    """
    if issued is not None:
        return issued
    if _cas_of(holder.bundle) != _cas_of(bundle):
        return "ca-bundle"
    return None


# ---- the Secrets -------------------------------------------------------------------------------


async def ensure_ca(kube: KubeClient, *, namespace: str, name: str) -> MeshCa:
    """The mesh CA from Secret ``name``, made and stored on first use (a gateway racing
    another reads the winner's)."""
    path = f"/api/v1/namespaces/{namespace}/secrets"
    try:
        secret = await kube.request_json("GET", f"{path}/{name}")
    except errors.NotFound:
        ca = certs.generate_ca(common_name=CA_NAME)
        now = datetime.datetime.now(datetime.UTC)
        body = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "annotations": {BUNDLE_SINCE: now.isoformat()},
            },
            "type": "Opaque",
            "data": {CA_FILE: _b64(ca.cert_pem), CA_KEY: _b64(ca.key_pem)},
        }
        try:
            secret = await kube.request_json("POST", path, body=orjson.dumps(body))
            log.info("made the mesh CA", extra={"secret": name})
        except errors.AlreadyExists:
            secret = await kube.request_json("GET", f"{path}/{name}")
    return read_ca(secret)


@dataclass
class SecretSource:
    """A gateway's mesh certificate and trust bundle, read from the CA Secret through the API
    every ``poll_s`` (a ``kit.tls.Source``): every gateway replica serves what the plan wrote."""

    kube: KubeClient
    namespace: str
    name: str
    poll_s: float = field(default_factory=poll_seconds)

    async def fetch(self) -> Material:
        secret = await self.kube.request_json(
            "GET", f"/api/v1/namespaces/{self.namespace}/secrets/{self.name}"
        )
        holder = read_holder(secret)
        if holder.leaf is None or not holder.bundle:
            raise errors.Invalid(f"Secret {self.namespace}/{self.name} holds no gateway leaf yet")
        return Material(holder.leaf.cert_pem, holder.leaf.key_pem, holder.bundle)

    def refresh_in(self, material: Material) -> float:
        return self.poll_s


@dataclass(frozen=True, slots=True)
class Write:
    """One Secret write a round made: which, the resourceVersion it was conditional on (None:
    created), and why."""

    secret: str
    precondition: str | None
    why: tuple[str, ...]


class MeshCertIssuer:
    """Keeps the mesh CA rotated and every component's certificate fresh (module docstring).

    The lease holder runs ``start`` (a round now, then one every ``check_s``); every gateway
    runs ``prepare`` once at start. ``writes`` lists the writes this gateway won.
    """

    def __init__(
        self,
        kube: KubeClient,
        *,
        namespace: str,
        ca_secret: str,
        services: Iterable[str] = SERVICES,
        leaf_validity: datetime.timedelta | None = None,
        ca_validity: datetime.timedelta = DEFAULT_CA_VALIDITY,
        check_s: float = 60.0,
        overlap: datetime.timedelta | None = None,
        clock: Callable[[], datetime.datetime] = lambda: datetime.datetime.now(datetime.UTC),
    ) -> None:
        overlap = overlap or max(DEFAULT_OVERLAP, datetime.timedelta(seconds=3 * check_s))
        self.kube = kube
        self.namespace = namespace
        self.ca_secret = ca_secret
        self.services = tuple(services)
        self.leaf_validity = leaf_validity or mesh_cert_validity()
        self.ca_validity = ca_validity
        self.check_s = check_s
        # Leaves at half their life, as before rotation existed; the CA past 2/3 of its.
        self.policy = rotation.Policy(overlap=overlap, leaf_renew_at=0.5)
        self.clock = clock
        self.writes: list[Write] = []
        self._task: asyncio.Task[None] | None = None

    @property
    def _path(self) -> str:
        return f"/api/v1/namespaces/{self.namespace}/secrets"

    def gateway_source(self) -> SecretSource:
        """What this gateway's ``MeshTls`` follows."""
        return SecretSource(self.kube, self.namespace, self.ca_secret)

    async def prepare(self, *, attempts: int = 3) -> None:
        """Rounds until the CA Secret holds the gateway's leaf (another gateway may win the
        first write): the services wait for their Secrets, this gateway for its leaf."""
        for _ in range(attempts):
            await self.check()
            if read_holder(await self._get(self.ca_secret)).leaf is not None:
                return

    async def start(self) -> None:
        await self.check()
        self._task = asyncio.create_task(
            every(self.check_s, self.check, what="checking the mesh certificates"),
            name="mesh certificate issuer",
        )

    async def stop(self) -> None:
        await stop_task(self._task)
        self._task = None

    async def _get(self, name: str) -> dict[str, Any] | None:
        try:
            return await self.kube.request_json("GET", f"{self._path}/{name}")
        except errors.NotFound:
            return None

    async def check(self) -> rotation.Plan | None:
        """One round (module docstring). Returns the plan when it had actions and this
        gateway wrote the CA Secret or the Secrets it needed; None otherwise."""
        now = self.clock()
        found = {c: await self._get(secret_name(c)) for c in self.services}
        ca_secret = await self._get(self.ca_secret)  # after the services' (module docstring)
        holders = {c: read_holder(s) for c, s in found.items()}
        holders[GATEWAY] = read_holder(ca_secret)
        pki = rotation.Pki(
            cas=rotation.split_bundle(_decoded(ca_secret, CA_FILE)),
            ca_key=_decoded(ca_secret, CA_KEY),
            leaves={c: h.leaf for c, h in holders.items()},
        )
        trusted = trusted_everywhere(holders, now=now, overlap=self.policy.overlap)
        observed = rotation.read_pki(pki, trusted_everywhere=trusted)
        steps = rotation.plan(observed, now=now, policy=self.policy)
        if steps.waiting:
            log.info("mesh CA rotation waiting", extra={"waiting": steps.waiting})
        new = pki
        if steps.actions:
            new = rotation.apply_plan(
                pki,
                steps,
                new_ca=lambda: certs.generate_ca(common_name=CA_NAME, validity=self.ca_validity),
                issue=self._issue,
            )
        issued = {a.name: a.why for a in steps.actions if isinstance(a, rotation.IssueLeaf)}
        if (new.cas, new.ca_key, new.leaves[GATEWAY]) != (pki.cas, pki.ca_key, pki.leaves[GATEWAY]):
            why = tuple(a.why for a in steps.actions)
            if not await self._write_ca(ca_secret, new, holders[GATEWAY], now=now, why=why):
                return None
            if GATEWAY in issued:
                ISSUED.labels(GATEWAY, issued[GATEWAY]).inc()
        for component in self.services:
            why_one = rewrite_reason(
                holders[component], issued=issued.get(component), bundle=new.bundle_pem
            )
            if why_one is not None:
                await self._write_service(
                    component, found[component], new, holders[component], now=now, why=why_one
                )
        report_expiry("mesh", rotation.read_pki(new))
        if not steps.actions:
            return None
        for action in steps.actions:
            ROTATIONS.labels("mesh", rotation.step_name(action), action.why).inc()
        log.info(
            "rotated mesh certificates",
            extra={
                "steps": rotation.describe(steps),
                "why": [a.why for a in steps.actions],
                "cas": [rotation.ca_id(pem) for pem in new.cas],
            },
        )
        return steps

    def _issue(self, component: str, ca: certs.CertPair) -> certs.CertPair:
        return certs.issue_mesh_cert(
            ca=ca,
            uri=identity.spiffe_id(component),
            dns_names=[peer_name(component)],
            validity=self.leaf_validity,
        )

    def _metadata(
        self,
        name: str,
        secret: Mapping[str, Any] | None,
        *,
        held: Holder,
        bundle: bytes,
        now: datetime.datetime,
        extra: Mapping[str, str],
    ) -> dict[str, Any]:
        """The Secret's metadata, kept, with the bundle's time moved when the bundle moves."""
        old = dict((secret or {}).get("metadata") or {})
        annotations = {**(old.get("annotations") or {}), **extra}
        if secret is None or _cas_of(held.bundle) != _cas_of(bundle):
            annotations[BUNDLE_SINCE] = now.isoformat()
        metadata: dict[str, Any] = {
            "name": name,
            "namespace": self.namespace,
            "labels": {**(old.get("labels") or {}), "app.kubernetes.io/part-of": "kruise-mesh"},
            "annotations": annotations,
        }
        if secret is not None:
            metadata["resourceVersion"] = secret["metadata"]["resourceVersion"]
        return metadata

    async def _put(
        self,
        name: str,
        secret: Mapping[str, Any] | None,
        body: dict[str, Any],
        why: tuple[str, ...],
    ) -> bool:
        """Create or update (with the resourceVersion read); False when another gateway
        wrote first."""
        try:
            if secret is None:
                await self.kube.request("POST", self._path, body=orjson.dumps(body))
            else:
                await self.kube.request("PUT", f"{self._path}/{name}", body=orjson.dumps(body))
        except (errors.AlreadyExists, errors.Conflict):
            log.info("another gateway wrote the Secret first", extra={"secret": name})
            return False
        precondition = None if secret is None else secret["metadata"]["resourceVersion"]
        self.writes.append(Write(name, precondition, why))
        return True

    async def _write_ca(
        self,
        secret: Mapping[str, Any] | None,
        new: rotation.Pki,
        held: Holder,
        *,
        now: datetime.datetime,
        why: tuple[str, ...],
    ) -> bool:
        leaf = new.leaves[GATEWAY]
        assert leaf is not None and new.ca_key is not None  # every plan leaves both
        data = {
            CA_FILE: new.bundle_pem,
            CA_KEY: new.ca_key,
            CERT_FILE: leaf.cert_pem,
            KEY_FILE: leaf.key_pem,
        }
        body = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": self._metadata(
                self.ca_secret,
                secret,
                held=held,
                bundle=new.bundle_pem,
                now=now,
                extra={"kruise-mesh.io/spiffe-id": identity.spiffe_id(GATEWAY)},
            ),
            "type": (secret or {}).get("type") or "Opaque",
            "data": {k: _b64(v) for k, v in data.items()},
        }
        return await self._put(self.ca_secret, secret, body, why)

    async def _write_service(
        self,
        component: str,
        secret: Mapping[str, Any] | None,
        new: rotation.Pki,
        held: Holder,
        *,
        now: datetime.datetime,
        why: str,
    ) -> None:
        leaf = new.leaves[component]
        assert leaf is not None  # a missing or broken leaf is always issued
        name = secret_name(component)
        body = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": self._metadata(
                name,
                secret,
                held=held,
                bundle=new.bundle_pem,
                now=now,
                extra={"kruise-mesh.io/spiffe-id": identity.spiffe_id(component)},
            ),
            "type": "kubernetes.io/tls",
            "data": {
                CERT_FILE: _b64(leaf.cert_pem),
                KEY_FILE: _b64(leaf.key_pem),
                CA_FILE: _b64(new.bundle_pem),
            },
        }
        if not await self._put(name, secret, body, (why,)):
            return  # the next round looks again
        if why != "ca-bundle":
            ISSUED.labels(component, why).inc()
        log.info(
            "wrote a mesh certificate Secret",
            extra={"component": component, "secret": name, "why": why},
        )
