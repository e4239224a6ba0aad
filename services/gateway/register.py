"""Local mode: put the mesh's CRDs and webhook configurations into a cluster from outside it.

In a cluster, deploy/ is applied as is (webhooks reach the gateway through its Service).
When the gateway runs on a laptop (or the demo wires it to the sandbox), the API server
must call it at a URL instead, so ``register_webhooks`` applies copies of
deploy/webhooks.yaml rewritten by the pure ``rewrite_webhooks``::

    clientConfig: {service: {name, namespace, port, path}}
        → clientConfig: {url: base_url + path, caBundle: base64(ca_pem)}
    metadata.name: kruise-mesh-mutating → kruise-mesh-mutating-local

``install_crds`` creates or updates every CRD in a directory and waits until each is
Established. All I/O goes through ``KubeClient`` (raw JSON).
"""

from __future__ import annotations

import asyncio
import base64
import copy
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import orjson
import yaml

from services.gateway.kube.client import KubeClient
from services.kit import errors

CRD_API_VERSION = "apiextensions.k8s.io/v1"
WEBHOOK_API_VERSION = "admissionregistration.k8s.io/v1"
WEBHOOK_KINDS = ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration")
LOCAL_SUFFIX = "-local"


def load_documents(paths: Iterable[Path]) -> list[dict[str, Any]]:
    """Every non-empty YAML document in ``paths``, in order."""
    docs: list[dict[str, Any]] = []
    for path in paths:
        for doc in yaml.safe_load_all(path.read_text()):
            if isinstance(doc, dict) and doc:
                docs.append(doc)
    return docs


def yaml_files(path: Path) -> list[Path]:
    """``path`` itself when it is a file, else its *.yaml / *.yml files, sorted."""
    if path.is_file():
        return [path]
    return sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml"))


# -- pure rewrite ------------------------------------------------------------------------------


def rewrite_webhooks(
    docs: Iterable[dict[str, Any]],
    *,
    base_url: str,
    ca_pem: bytes,
    suffix: str = LOCAL_SUFFIX,
) -> list[dict[str, Any]]:
    """Webhook configurations pointed at ``base_url`` instead of an in-cluster Service.

    Pure; the inputs are not modified. Documents of other kinds are dropped. Each webhook's
    ``clientConfig.service.path`` is appended to ``base_url`` (a missing path means "/"),
    ``caBundle`` becomes base64(``ca_pem``), and the configuration's name gets ``suffix``
    so the local copies never replace the in-cluster ones. Server-set metadata
    (resourceVersion, uid, ...) is dropped.
    """
    ca_bundle = base64.b64encode(ca_pem).decode("ascii")
    root = base_url.rstrip("/")
    out: list[dict[str, Any]] = []
    for doc in docs:
        if doc.get("kind") not in WEBHOOK_KINDS:
            continue
        new = copy.deepcopy(doc)
        meta = new.get("metadata") or {}
        new["metadata"] = {k: v for k, v in meta.items() if k in ("name", "labels", "annotations")}
        new["metadata"]["name"] = str(meta.get("name", "kruise-mesh")) + suffix
        for hook in new.get("webhooks") or ():
            client = hook.get("clientConfig") or {}
            service = client.get("service")
            path = (service or {}).get("path") or "/"
            if service is None and "url" in client:
                url = str(client["url"])
            else:
                url = root + (path if path.startswith("/") else "/" + path)
            hook["clientConfig"] = {"url": url, "caBundle": ca_bundle}
        out.append(new)
    return out


# -- I/O ---------------------------------------------------------------------------------------


async def _create_or_replace(kube: KubeClient, obj: dict[str, Any]) -> dict[str, Any]:
    """POST ``obj``; if it exists, PUT it over the current one (keeping its resourceVersion)."""
    res = await kube.resolve(api_version=obj["apiVersion"], kind=obj["kind"])
    namespace = (obj.get("metadata") or {}).get("namespace")
    name = obj["metadata"]["name"]
    try:
        return await kube.request_json(
            "POST", kube.path(res, namespace=namespace), body=orjson.dumps(obj)
        )
    except errors.AlreadyExists:
        pass
    path = kube.path(res, namespace=namespace, name=name)
    for _ in range(5):
        current = await kube.request_json("GET", path)
        replacement = copy.deepcopy(obj)
        replacement["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        try:
            return await kube.request_json("PUT", path, body=orjson.dumps(replacement))
        except errors.Conflict:
            continue  # changed under us: read again
    raise errors.Conflict(f"{obj['kind']} {name} kept changing while being replaced")


def _established(crd: dict[str, Any]) -> bool:
    return any(
        c.get("type") == "Established" and c.get("status") == "True"
        for c in (crd.get("status") or {}).get("conditions") or ()
    )


async def install_crds(kube: KubeClient, crd_dir: Path, *, timeout: float = 30.0) -> list[str]:
    """Create or update every CRD in the YAML files of ``crd_dir``; wait until Established.

    Returns the CRD names in file order. Raises Unavailable when one is not Established
    within ``timeout`` seconds.
    """
    crds = [
        d
        for d in load_documents(yaml_files(Path(crd_dir)))
        if d.get("kind") == ("CustomResourceDefinition")
    ]
    names: list[str] = []
    for crd in crds:
        await _create_or_replace(kube, crd)
        names.append(crd["metadata"]["name"])
    res = await kube.resolve(api_version=CRD_API_VERSION, kind="CustomResourceDefinition")
    deadline = time.monotonic() + timeout
    pending = list(names)
    while pending:
        current = await kube.request_json("GET", kube.path(res, name=pending[0]))
        if _established(current):
            pending.pop(0)
            continue
        if time.monotonic() > deadline:
            raise errors.Unavailable(f"CRD {pending[0]} not Established after {timeout:.0f} s")
        await asyncio.sleep(0.1)
    await kube.invalidate_discovery()
    return names


async def register_webhooks(
    kube: KubeClient, *, manifests: Path, base_url: str, ca_pem: bytes
) -> list[str]:
    """Apply the webhook configurations of ``manifests`` rewritten to call ``base_url``.

    ``manifests`` is deploy/webhooks.yaml (or a directory of YAML files). Each
    configuration is created or replaced under its ``-local`` name; the names are returned.
    """
    docs = rewrite_webhooks(
        load_documents(yaml_files(Path(manifests))), base_url=base_url, ca_pem=ca_pem
    )
    names: list[str] = []
    for doc in docs:
        doc.setdefault("apiVersion", WEBHOOK_API_VERSION)
        await _create_or_replace(kube, doc)
        names.append(doc["metadata"]["name"])
    return names


async def unregister_webhooks(kube: KubeClient, names: Sequence[str]) -> None:
    """Delete the named Mutating/ValidatingWebhookConfigurations; missing ones are fine."""
    for kind in WEBHOOK_KINDS:
        res = await kube.resolve(api_version=WEBHOOK_API_VERSION, kind=kind)
        for name in names:
            try:
                await kube.request("DELETE", kube.path(res, name=name))
            except errors.NotFound:
                continue
