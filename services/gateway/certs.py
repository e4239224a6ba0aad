"""The webhook's serving certificate: found, shared or made, and its CA published.

Three sources, in order:
  1. ``cert_dir`` already holds ``tls.crt``/``tls.key``/``ca.crt`` (a mounted Secret, or a
     previous local run): use them.
  2. In a cluster, the Secret ``secret_name`` holds them: use those, so every gateway replica
     serves the same certificate.
  3. Otherwise make a CA and a serving certificate for the webhook Service's DNS names, store
     them in the Secret (create; on AlreadyExists another replica won the race: use theirs) and
     in ``cert_dir``.
``publish_ca_bundle`` then patches the CA into the webhook configurations (idempotent).
"""

from __future__ import annotations

import base64
import logging
from dataclasses import dataclass
from pathlib import Path

import orjson

from services.gateway.kube.client import KubeClient
from services.kit import errors
from services.kit.certs import CertPair, generate_ca, issue_serving_cert

log = logging.getLogger(__name__)


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
    cert_dir.mkdir(parents=True, exist_ok=True)
    (cert_dir / "tls.crt").write_bytes(cert)
    key_file = cert_dir / "tls.key"
    key_file.write_bytes(key)
    key_file.chmod(0o600)
    (cert_dir / "ca.crt").write_bytes(ca)
    return ServingCert(cert_file=cert_dir / "tls.crt", key_file=key_file, ca_pem=ca)


def _from_dir(cert_dir: Path) -> ServingCert | None:
    files = [cert_dir / n for n in ("tls.crt", "tls.key", "ca.crt")]
    if all(f.is_file() and f.stat().st_size > 0 for f in files):
        return ServingCert(cert_file=files[0], key_file=files[1], ca_pem=files[2].read_bytes())
    return None


def _make(hosts: list[str]) -> tuple[CertPair, CertPair]:
    ca = generate_ca(common_name="kruise-mesh-webhook-ca")
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
    """Sources 1-3 in a cluster; files land in ``work_dir`` (``cert_dir`` may be read-only)."""
    found = _from_dir(cert_dir)
    if found is not None:
        return found
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
