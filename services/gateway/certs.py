"""The webhook's serving certificate: found, shared or made, renewed, and its CA published.

Three sources at start, in order:
  1. ``cert_dir`` already holds ``tls.crt``/``tls.key``/``ca.crt`` (a mounted Secret, or a
     previous local run): use them.
  2. In a cluster, the Secret ``secret_name`` holds them: use those, so every gateway replica
     serves the same certificate.
  3. Otherwise make a CA and a serving certificate for the webhook Service's DNS names, store
     them (and the CA's key, ``ca.key``) in the Secret (create; on AlreadyExists another
     replica won the race: use theirs) and in ``cert_dir``.
``publish_ca_bundle`` then patches the CA into the webhook configurations (idempotent).

Then, in a cluster, ``WebhookCerts`` runs on every replica, every ``check_s`` (one hour by
default, ``--webhook-cert-check``)::

    read the Secret  ──►  rotation.plan  ──►  write the Secret (resourceVersion precondition:
        │                 (module doc of       of replicas planning the same step one wins,
        │                  rotation)           the others read the winner's)
        ▼
    follow it: files in work_dir, WebhookServer.reload_certs (and the API port's), caBundle of
    both webhook configurations = the Secret's ca.crt (old + new CA during a rotation)

The serving certificate is renewed past 2/3 of its life (or at once when broken), the CA past
2/3 of its: a second CA joins the bundle, leaves switch to it once both caBundles carry it and
``overlap`` (three checks) has passed, and the old CA goes one overlap later, when every
replica serves a leaf from the new one. The API server therefore always trusts the leaf any
replica serves. A Secret made by cert-manager (``cert-manager.io/*`` annotations) is followed,
never written; its caBundle is cert-manager's cainjector's to publish.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from prometheus_client import Counter, Gauge

from services.gateway import rotation
from services.gateway.kube.client import KubeClient
from services.kit import errors
from services.kit.certs import CertPair, generate_ca, issue_serving_cert
from services.kit.tasks import every, stop_task

log = logging.getLogger(__name__)

ROTATIONS = Counter(
    "kruise_mesh_gateway_cert_rotations_total",
    "Certificate rotation steps a gateway wrote: step add-ca, issue-leaf, switch-leaf or "
    "drop-old-ca; pki webhook or mesh; why the step was due",
    ["pki", "step", "why"],
)
CERT_EXPIRY = Gauge(
    "kruise_mesh_gateway_cert_expiry_timestamp_seconds",
    "Unix time each certificate the gateway keeps expires: pki webhook or mesh; name ca (the "
    "first of the trust bundle's CAs to expire) or the leaf (webhook; placement, rollout, "
    "budget, gateway). Renewal keeps it far ahead: near, it means rotation is stuck",
    ["pki", "name"],
)
CERT_LIFETIME = Gauge(
    "kruise_mesh_gateway_cert_lifetime_seconds",
    "From notBefore to notAfter of the certificate kruise_mesh_gateway_cert_expiry_"
    "timestamp_seconds reports, by the same labels",
    ["pki", "name"],
)
DEFAULT_VALIDITY = datetime.timedelta(days=365)
CA_KEY = "ca.key"


def report_expiry(pki: str, seen: rotation.Observed) -> None:
    """Set the expiry gauges for what ``seen`` holds: its CA (the first of the bundle to
    expire) and each readable leaf; a broken leaf keeps its last value, so a leaf that stays
    broken ages into the alert."""
    found: dict[str, rotation.Validity] = {}
    if seen.bundle:
        found["ca"] = min((ca.validity for ca in seen.bundle), key=lambda v: v.not_after)
    for name, leaf in seen.leaves.items():
        if isinstance(leaf, rotation.Leaf):
            found[name] = leaf.validity
    for name, validity in found.items():
        CERT_EXPIRY.labels(pki, name).set(validity.not_after.timestamp())
        CERT_LIFETIME.labels(pki, name).set(
            (validity.not_after - validity.not_before).total_seconds()
        )


@dataclass(frozen=True, slots=True)
class ServingCert:
    cert_file: Path
    key_file: Path
    ca_pem: bytes


def webhook_hosts(*, service: str, namespace: str) -> list[str]:
    """The names the API server may use to reach the webhook Service."""
    return [
        service,
        f"{service}.{namespace}",
        f"{service}.{namespace}.svc",
        f"{service}.{namespace}.svc.cluster.local",
        "localhost",
        "127.0.0.1",
    ]


def _write(cert_dir: Path, *, cert: bytes, key: bytes, ca: bytes) -> ServingCert:
    """Each file replaced whole, the certificate last: a reader that waits for tls.crt to
    change (the API port's) never pairs a new certificate with the old key."""
    cert_dir.mkdir(parents=True, exist_ok=True)
    for name, data, mode in (
        ("tls.key", key, 0o600),
        ("ca.crt", ca, 0o644),
        ("tls.crt", cert, 0o644),
    ):
        staged = cert_dir / f".{name}.tmp"
        staged.write_bytes(data)
        staged.chmod(mode)
        staged.replace(cert_dir / name)
    return ServingCert(cert_file=cert_dir / "tls.crt", key_file=cert_dir / "tls.key", ca_pem=ca)


def _from_dir(cert_dir: Path) -> ServingCert | None:
    files = [cert_dir / n for n in ("tls.crt", "tls.key", "ca.crt")]
    if all(f.is_file() and f.stat().st_size > 0 for f in files):
        return ServingCert(cert_file=files[0], key_file=files[1], ca_pem=files[2].read_bytes())
    return None


CA_NAME = "kruise-mesh-webhook-ca"


def _make(hosts: list[str]) -> tuple[CertPair, CertPair]:
    ca = generate_ca(common_name=CA_NAME)
    return ca, issue_serving_cert(ca=ca, hosts=hosts)


def local_serving_cert(cert_dir: Path, *, hosts: list[str]) -> ServingCert:
    """Sources 1 and 3 without a cluster: for local mode and the sandbox."""
    found = _from_dir(cert_dir)
    if found is not None:
        return found
    ca, serving = _make(hosts)
    log.info("generated a webhook certificate", extra={"dir": str(cert_dir)})
    return _write(cert_dir, cert=serving.cert_pem, key=serving.key_pem, ca=ca.cert_pem)


async def cluster_serving_cert(
    kube: KubeClient,
    *,
    cert_dir: Path,
    work_dir: Path,
    namespace: str,
    secret_name: str,
    hosts: list[str],
) -> ServingCert:
    """Sources 1-3 in a cluster; files land in ``work_dir`` (``cert_dir`` may be read-only,
    and ``WebhookCerts`` rewrites them there)."""
    found = _from_dir(cert_dir)
    if found is not None:
        return _write(
            work_dir,
            cert=found.cert_file.read_bytes(),
            key=found.key_file.read_bytes(),
            ca=found.ca_pem,
        )
    path = f"/api/v1/namespaces/{namespace}/secrets"
    try:
        secret = await kube.request_json("GET", f"{path}/{secret_name}")
    except errors.NotFound:
        ca, serving = _make(hosts)
        body = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": secret_name, "namespace": namespace},
            "type": "kubernetes.io/tls",
            "data": {
                "tls.crt": base64.b64encode(serving.cert_pem).decode(),
                "tls.key": base64.b64encode(serving.key_pem).decode(),
                "ca.crt": base64.b64encode(ca.cert_pem).decode(),
                # The CA's key, so the certificate can be renewed (WebhookCerts).
                CA_KEY: base64.b64encode(ca.key_pem).decode(),
            },
        }
        try:
            secret = await kube.request_json("POST", path, body=orjson.dumps(body))
            log.info("stored a new webhook certificate", extra={"secret": secret_name})
        except errors.AlreadyExists:
            secret = await kube.request_json("GET", f"{path}/{secret_name}")
    data = secret.get("data") or {}
    try:
        cert, key, ca_pem = (base64.b64decode(data[k]) for k in ("tls.crt", "tls.key", "ca.crt"))
    except KeyError as e:
        raise errors.Invalid(f"Secret {namespace}/{secret_name} lacks {e.args[0]}") from e
    return _write(work_dir, cert=cert, key=key, ca=ca_pem)


async def publish_ca_bundle(kube: KubeClient, *, ca_pem: bytes, names: dict[str, str]) -> None:
    """Patch ``caBundle`` into every webhook of the named configurations (kind → name)."""
    bundle = base64.b64encode(ca_pem).decode()
    for kind, name in names.items():
        res = await kube.resolve(api_version="admissionregistration.k8s.io/v1", kind=kind)
        try:
            current = await kube.request_json("GET", kube.path(res, name=name))
        except errors.NotFound:
            log.warning(
                "webhook configuration missing", extra={"kind": kind, "configuration": name}
            )
            continue
        webhooks = current.get("webhooks") or []
        if all((w.get("clientConfig") or {}).get("caBundle") == bundle for w in webhooks):
            continue
        patch = [
            {
                "op": "replace" if "caBundle" in (w.get("clientConfig") or {}) else "add",
                "path": f"/webhooks/{i}/clientConfig/caBundle",
                "value": bundle,
            }
            for i, w in enumerate(webhooks)
        ]
        await kube.request(
            "PATCH",
            kube.path(res, name=name),
            body=orjson.dumps(patch),
            content_type="application/json-patch+json",
        )
        log.info("published the webhook CA", extra={"kind": kind, "configuration": name})


async def published_cas(kube: KubeClient, *, names: Mapping[str, str]) -> frozenset[str] | None:
    """The ids of the CAs every webhook of the named configurations trusts (its caBundle);
    None when none of them exists (then nothing calls the webhooks)."""
    trusted: frozenset[str] | None = None
    for kind, name in names.items():
        res = await kube.resolve(api_version="admissionregistration.k8s.io/v1", kind=kind)
        try:
            current = await kube.request_json("GET", kube.path(res, name=name))
        except errors.NotFound:
            continue
        for webhook in current.get("webhooks") or []:
            raw = (webhook.get("clientConfig") or {}).get("caBundle") or ""
            try:
                ids = rotation.bundle_ids(base64.b64decode(raw))
            except ValueError:
                ids = frozenset()
            trusted = ids if trusted is None else trusted & ids
    return trusted


def _decoded(secret: dict[str, Any] | None, key: str) -> bytes | None:
    raw = ((secret or {}).get("data") or {}).get(key)
    if not raw:
        return None
    try:
        return base64.b64decode(raw)
    except ValueError:
        return None


def read_secret(secret: dict[str, Any] | None) -> rotation.Pki:
    """The Secret's PEM as a plan works on it: ca.crt (a bundle), ca.key, the leaf."""
    cert, key = _decoded(secret, "tls.crt"), _decoded(secret, "tls.key")
    return rotation.Pki(
        cas=rotation.split_bundle(_decoded(secret, "ca.crt")),
        ca_key=_decoded(secret, CA_KEY),
        leaves={"webhook": CertPair(cert, key) if cert and key else None},
    )


def managed_elsewhere(secret: dict[str, Any] | None) -> bool:
    """Whether cert-manager keeps this Secret (the gateway then only follows it)."""
    annotations = ((secret or {}).get("metadata") or {}).get("annotations") or {}
    return any(k.startswith("cert-manager.io/") for k in annotations)


class WebhookCerts:
    """Keeps the webhook's serving certificate, its CA and the caBundles in step: plans and
    writes the Secret, and follows it on this replica (module docstring). One per replica.

    ``on_change`` gets the files whenever the Secret's certificate, key or CA changed and they
    were rewritten (``WebhookServer.reload_certs``, the API port's TLS context).
    """

    def __init__(
        self,
        kube: KubeClient,
        *,
        namespace: str,
        secret_name: str,
        hosts: list[str],
        work_dir: Path,
        configurations: Mapping[str, str],
        on_change: Callable[[ServingCert], None],
        served: ServingCert | None = None,
        check_s: float = 3600.0,
        overlap: datetime.timedelta | None = None,
        ca_validity: datetime.timedelta = DEFAULT_VALIDITY,
        leaf_validity: datetime.timedelta = DEFAULT_VALIDITY,
        clock: Callable[[], datetime.datetime] = lambda: datetime.datetime.now(datetime.UTC),
    ) -> None:
        overlap = overlap or max(
            datetime.timedelta(seconds=3 * check_s), datetime.timedelta(minutes=5)
        )
        if overlap.total_seconds() <= check_s:
            raise ValueError("the overlap must be longer than the check period")
        self.kube = kube
        self.namespace = namespace
        self.secret_name = secret_name
        self.hosts = hosts
        self.work_dir = work_dir
        self.configurations = dict(configurations)
        self.on_change = on_change
        self.check_s = check_s
        self.policy = rotation.Policy(overlap=overlap)
        self.ca_validity = ca_validity
        self.leaf_validity = leaf_validity
        self.clock = clock
        self.served = served
        self.writes = 0  # Secret writes this replica won
        self._task: asyncio.Task[None] | None = None

    @property
    def _path(self) -> str:
        return f"/api/v1/namespaces/{self.namespace}/secrets"

    async def start(self) -> None:
        await self.check()
        self._task = asyncio.create_task(
            every(self.check_s, self.check, what="checking the webhook certificate"),
            name="webhook certificates",
        )

    async def stop(self) -> None:
        await stop_task(self._task)
        self._task = None

    async def _get(self) -> dict[str, Any] | None:
        try:
            return await self.kube.request_json("GET", f"{self._path}/{self.secret_name}")
        except errors.NotFound:
            return None

    async def check(self) -> rotation.Plan | None:
        """One round: plan and write (unless cert-manager keeps the Secret), then follow.
        Returns the plan this replica wrote, None when it wrote nothing."""
        secret = await self._get()
        written = None
        if not managed_elsewhere(secret):
            secret, written = await self._advance(secret)
        if secret is not None:
            await self._follow(secret)
            report_expiry("webhook", rotation.read_pki(read_secret(secret)))
        return written

    async def _advance(
        self, secret: dict[str, Any] | None
    ) -> tuple[dict[str, Any] | None, rotation.Plan | None]:
        pki = read_secret(secret)
        trusted = await published_cas(self.kube, names=self.configurations)
        observed = rotation.read_pki(pki, trusted_everywhere=trusted)
        steps = rotation.plan(observed, now=self.clock(), policy=self.policy)
        if steps.waiting:
            log.info(
                "webhook CA rotation waiting",
                extra={"secret": self.secret_name, "waiting": steps.waiting},
            )
        if not steps.actions:
            return secret, None
        new = rotation.apply_plan(
            pki,
            steps,
            new_ca=lambda: generate_ca(common_name=CA_NAME, validity=self.ca_validity),
            issue=lambda _, ca: issue_serving_cert(
                ca=ca, hosts=self.hosts, validity=self.leaf_validity
            ),
        )
        leaf = new.leaves["webhook"]
        assert leaf is not None and new.ca_key is not None  # every plan leaves both
        data = {
            "tls.crt": leaf.cert_pem,
            "tls.key": leaf.key_pem,
            "ca.crt": new.bundle_pem,
            CA_KEY: new.ca_key,
        }
        metadata: dict[str, Any] = {"name": self.secret_name, "namespace": self.namespace}
        if secret is not None:
            metadata = {
                **secret["metadata"],
                "resourceVersion": secret["metadata"]["resourceVersion"],
            }
        body = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": metadata,
            "type": "kubernetes.io/tls",
            "data": {k: base64.b64encode(v).decode() for k, v in data.items()},
        }
        try:
            if secret is None:
                stored = await self.kube.request_json("POST", self._path, body=orjson.dumps(body))
            else:
                stored = await self.kube.request_json(
                    "PUT", f"{self._path}/{self.secret_name}", body=orjson.dumps(body)
                )
        except (errors.AlreadyExists, errors.Conflict):
            # Another replica wrote first (the same step, planned on the same Secret).
            log.info("another gateway renewed the webhook certificate first")
            return await self._get(), None
        self.writes += 1
        for action in steps.actions:
            ROTATIONS.labels("webhook", rotation.step_name(action), action.why).inc()
        log.info(
            "rotated the webhook certificate",
            extra={
                "secret": self.secret_name,
                "steps": rotation.describe(steps),
                "why": [a.why for a in steps.actions],
                "cas": [rotation.ca_id(pem) for pem in new.cas],
            },
        )
        return stored, steps

    async def _follow(self, secret: dict[str, Any]) -> None:
        cert, key, ca = (_decoded(secret, k) for k in ("tls.crt", "tls.key", "ca.crt"))
        if not (cert and key and ca):
            log.warning(
                "the webhook certificate Secret is incomplete", extra={"secret": self.secret_name}
            )
            return
        served = self.served
        if served is None or (
            served.cert_file.read_bytes(),
            served.key_file.read_bytes(),
            served.ca_pem,
        ) != (cert, key, ca):
            self.served = _write(self.work_dir, cert=cert, key=key, ca=ca)
            self.on_change(self.served)
            log.info(
                "serving the webhook certificate from the Secret",
                extra={"secret": self.secret_name, "cas": sorted(rotation.bundle_ids(ca))},
            )
        if not managed_elsewhere(secret):
            await publish_ca_bundle(self.kube, ca_pem=ca, names=self.configurations)
