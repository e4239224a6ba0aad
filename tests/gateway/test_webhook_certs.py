"""The webhook certificate bootstrap as it runs in a cluster, against the sandbox.

The first start of a fresh install: no Secret yet, so the gateway makes the CA and the
serving certificate, stores them in a Secret and patches the CA into both webhook
configurations that ``deploy/webhooks.yaml`` applied. Nothing may raise (the log calls
included: logging is at DEBUG so every record is made). The second start finds the Secret
and changes nothing.
"""

from __future__ import annotations

import base64
import logging
from pathlib import Path
from typing import Any

import orjson
import pytest

from services.gateway import certs
from services.gateway.app import WEBHOOK_CONFIGS
from services.gateway.kube.client import KubeClient
from services.gateway.register import load_documents
from tests.gateway.conftest import REPO

NS = "kruise-mesh"
SECRET = "kruise-mesh-webhook-certs"
SECRETS = f"/api/v1/namespaces/{NS}/secrets"
MANIFEST = REPO / "deploy" / "webhooks.yaml"


async def apply_manifest(kube: KubeClient) -> None:
    body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}
    await kube.request("POST", "/api/v1/namespaces", body=orjson.dumps(body))
    for doc in load_documents([MANIFEST]):
        res = await kube.resolve(api_version=doc["apiVersion"], kind=doc["kind"])
        namespace = doc["metadata"].get("namespace") if res.namespaced else None
        await kube.request("POST", kube.path(res, namespace=namespace), body=orjson.dumps(doc))


async def configurations(kube: KubeClient) -> dict[str, dict[str, Any]]:
    found = {}
    for kind, name in WEBHOOK_CONFIGS.items():
        res = await kube.resolve(api_version="admissionregistration.k8s.io/v1", kind=kind)
        found[kind] = await kube.request_json("GET", kube.path(res, name=name))
    return found


async def bootstrap(kube: KubeClient, tmp_path: Path, run: str) -> certs.ServingCert:
    served = await certs.cluster_serving_cert(
        kube,
        cert_dir=tmp_path / "mounted",  # the Secret's optional mount: empty on a first install
        work_dir=tmp_path / run,
        namespace=NS,
        secret_name=SECRET,
        hosts=certs.webhook_hosts(service="kruise-mesh-webhook", namespace=NS),
    )
    await certs.publish_ca_bundle(kube, ca_pem=served.ca_pem, names=WEBHOOK_CONFIGS)
    return served


async def test_first_install_then_restart(
    kube: KubeClient, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    if not MANIFEST.exists():
        pytest.skip("deploy/webhooks.yaml not written yet")
    caplog.set_level(logging.DEBUG)
    await apply_manifest(kube)
    before = await configurations(kube)
    assert set(before) == set(WEBHOOK_CONFIGS)

    first = await bootstrap(kube, tmp_path, "first")

    secret = await kube.request_json("GET", f"{SECRETS}/{SECRET}")
    assert secret["type"] == "kubernetes.io/tls"
    assert base64.b64decode(secret["data"]["ca.crt"]) == first.ca_pem
    assert first.cert_file.read_bytes() == base64.b64decode(secret["data"]["tls.crt"])
    bundle = base64.b64encode(first.ca_pem).decode()
    published = await configurations(kube)
    for kind, conf in published.items():
        assert conf["webhooks"], kind
        assert all(w["clientConfig"]["caBundle"] == bundle for w in conf["webhooks"]), kind
    logged = [r for r in caplog.records if r.getMessage() == "published the webhook CA"]
    assert sorted(r.__dict__["configuration"] for r in logged) == sorted(WEBHOOK_CONFIGS.values())

    second = await bootstrap(kube, tmp_path, "second")

    assert second.ca_pem == first.ca_pem
    assert second.cert_file.read_bytes() == first.cert_file.read_bytes()
    again = await kube.request_json("GET", f"{SECRETS}/{SECRET}")
    assert again["metadata"]["resourceVersion"] == secret["metadata"]["resourceVersion"]
    for kind, conf in (await configurations(kube)).items():
        assert (
            conf["metadata"]["resourceVersion"] == published[kind]["metadata"]["resourceVersion"]
        ), kind


async def test_a_missing_configuration_is_logged_not_raised(
    kube: KubeClient, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    await kube.request(
        "POST",
        "/api/v1/namespaces",
        body=orjson.dumps({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}),
    )
    await bootstrap(kube, tmp_path, "first")
    missing = [r for r in caplog.records if r.getMessage() == "webhook configuration missing"]
    assert sorted(r.__dict__["configuration"] for r in missing) == sorted(WEBHOOK_CONFIGS.values())
