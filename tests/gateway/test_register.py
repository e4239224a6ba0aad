"""Local-mode registration: CRDs installed and Established, webhooks rewritten to a URL."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from sandbox.app import Sandbox
from services.gateway.kube.client import KubeClient
from services.gateway.register import (
    install_crds,
    load_documents,
    register_webhooks,
    rewrite_webhooks,
    unregister_webhooks,
)
from services.kit import errors
from tests.gateway.conftest import CRD_DIR, REPO

DATA = Path(__file__).parent / "data"
CA = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
CA_B64 = base64.b64encode(CA).decode()


def hook(client_config: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": "v", "resourceVersion": "3", "uid": "u", "labels": {"a": "b"}},
        "webhooks": [{"name": "w.kruise.io", "clientConfig": client_config}],
    }


@pytest.mark.parametrize(
    ("doc", "base_url", "expected"),
    [
        pytest.param(
            hook({"service": {"name": "s", "namespace": "n", "port": 443, "path": "/budget/x"}}),
            "https://127.0.0.1:9443",
            {"url": "https://127.0.0.1:9443/budget/x", "caBundle": CA_B64},
            id="service path appended to the base url",
        ),
        pytest.param(
            hook({"service": {"name": "s", "namespace": "n"}, "caBundle": "old"}),
            "https://127.0.0.1:9443/",
            {"url": "https://127.0.0.1:9443/", "caBundle": CA_B64},
            id="no path means the root, old caBundle replaced",
        ),
        pytest.param(
            hook({"url": "https://elsewhere/x"}),
            "https://127.0.0.1:9443",
            {"url": "https://elsewhere/x", "caBundle": CA_B64},
            id="a url webhook keeps its url and gets the CA",
        ),
    ],
)
def test_rewrite_client_config(doc: dict[str, Any], base_url: str, expected: Any) -> None:
    [out] = rewrite_webhooks([doc], base_url=base_url, ca_pem=CA)
    assert out["webhooks"][0]["clientConfig"] == expected
    assert out["metadata"] == {"name": "v-local", "labels": {"a": "b"}}
    assert (
        "service" in doc["webhooks"][0]["clientConfig"]
        or "url" in doc["webhooks"][0]["clientConfig"]
    )  # input untouched


def test_rewrite_drops_other_kinds_and_keeps_rules() -> None:
    docs = [
        {"kind": "ConfigMap", "metadata": {"name": "x"}},
        *load_documents([DATA / "webhooks.yaml"]),
    ]
    out = rewrite_webhooks(docs, base_url="https://h:1", ca_pem=CA)
    assert [d["metadata"]["name"] for d in out] == ["test-mutating-local", "test-validating-local"]
    assert out[0]["webhooks"][0]["rules"] == docs[1]["webhooks"][0]["rules"]
    assert out[0]["webhooks"][0]["failurePolicy"] == "Ignore"


def test_rewrite_of_the_project_manifest() -> None:
    manifest = REPO / "deploy" / "webhooks.yaml"
    if not manifest.exists():
        pytest.skip("deploy/webhooks.yaml not written yet")
    out = rewrite_webhooks(load_documents([manifest]), base_url="https://h:1", ca_pem=CA)
    assert out
    for doc in out:
        assert doc["metadata"]["name"].endswith("-local")
        for wh in doc["webhooks"]:
            assert wh["clientConfig"]["url"].startswith("https://h:1/")
            assert "service" not in wh["clientConfig"]


@pytest.fixture
async def bare(tmp_path: Path) -> AsyncIterator[KubeClient]:
    """A sandbox without CRDs, and a client to it."""
    async with Sandbox(state_dir=tmp_path / "bare", port=0) as sb:
        client = await KubeClient.connect(kubeconfig=str(sb.kubeconfig_path))
        try:
            yield client
        finally:
            await client.close()


async def test_install_crds_creates_then_updates(bare: KubeClient) -> None:
    if not CRD_DIR.is_dir():
        pytest.skip("deploy/crds not written yet")
    with pytest.raises(errors.NotFound):
        await bare.resolve(api_version="apps.kruise.io/v1alpha1", kind="CloneSet")
    names = await install_crds(bare, CRD_DIR)
    assert "clonesets.apps.kruise.io" in names
    cloneset = await bare.resolve(api_version="apps.kruise.io/v1alpha1", kind="CloneSet")
    assert "scale" in cloneset.subresources
    assert await install_crds(bare, CRD_DIR) == names  # second run updates in place


async def test_register_and_unregister_webhooks(kube: KubeClient) -> None:
    manifest = REPO / "deploy" / "webhooks.yaml"
    if not manifest.exists():
        manifest = DATA / "webhooks.yaml"
    names = await register_webhooks(
        kube, manifests=manifest, base_url="https://127.0.0.1:9443", ca_pem=CA
    )
    assert names and all(n.endswith("-local") for n in names)
    again = await register_webhooks(
        kube, manifests=manifest, base_url="https://127.0.0.1:9444", ca_pem=CA
    )
    assert again == names
    listed: list[dict[str, Any]] = []
    for plural in ("mutatingwebhookconfigurations", "validatingwebhookconfigurations"):
        doc = await kube.request_json("GET", f"/apis/admissionregistration.k8s.io/v1/{plural}")
        listed += doc["items"]
    assert sorted(d["metadata"]["name"] for d in listed) == sorted(names)
    for doc in listed:
        for wh in doc["webhooks"]:
            assert wh["clientConfig"]["url"].startswith("https://127.0.0.1:9444/")
            assert wh["clientConfig"]["caBundle"] == CA_B64

    await unregister_webhooks(kube, names)
    await unregister_webhooks(kube, names)  # idempotent
    for plural in ("mutatingwebhookconfigurations", "validatingwebhookconfigurations"):
        doc = await kube.request_json("GET", f"/apis/admissionregistration.k8s.io/v1/{plural}")
        assert doc["items"] == []
