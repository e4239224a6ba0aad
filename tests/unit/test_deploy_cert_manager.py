"""deploy/cert-manager: the Component that lets cert-manager make every certificate.

Rendered with the real ``kubectl kustomize`` (skipped when absent) as a user would include it
beside deploy/, then held to what the code checks: the webhook certificate names every host
the gateway serves under, each mesh certificate names its component as the mesh verifies it,
the Secrets are the ones the Deployments mount, every issuer exists, the API server's
caBundle is injected, and the gateway stops being the mesh CA.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from services.gateway import api_port, certs
from services.gateway.config import GatewayConfig
from services.kit import identity
from services.kit.tls import peer_name

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
NAMESPACE = "kruise-mesh"
COMPONENTS = ("gateway", "placement", "rollout", "budget")

Doc = dict[str, Any]

pytestmark = pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> list[Doc]:
    """``kubectl kustomize`` of a user's directory beside deploy/ that adds the Component."""
    root = tmp_path_factory.mktemp("install")
    (root / "deploy").symlink_to(DEPLOY, target_is_directory=True)
    user = root / "my-install"
    user.mkdir()
    (user / "kustomization.yaml").write_text(
        "resources: [../deploy]\ncomponents: [../deploy/cert-manager]\n"
    )
    out = subprocess.run(
        [shutil.which("kubectl") or "kubectl", "kustomize", str(user)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def one(docs: list[Doc], kind: str, name: str) -> Doc:
    (found,) = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    return found


def certificates(docs: list[Doc]) -> dict[str, Doc]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == "Certificate"}


def container(deployment: Doc) -> Doc:
    (only,) = deployment["spec"]["template"]["spec"]["containers"]
    assert isinstance(only, dict)
    return only


def env_of(deployment: Doc) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in container(deployment).get("env", [])}


def mounted_secret(deployment: Doc, mount_path: str) -> str:
    """The Secret mounted at ``mount_path`` in the Deployment's one container."""
    (mount,) = [m for m in container(deployment)["volumeMounts"] if m["mountPath"] == mount_path]
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    return str(volumes[mount["name"]]["secret"]["secretName"])


def test_the_webhook_certificate_names_every_host_the_gateway_serves_under(
    rendered: list[Doc],
) -> None:
    config = GatewayConfig()
    wanted = certs.webhook_hosts(service=config.webhook_service, namespace=NAMESPACE)
    wanted += api_port.api_hosts(NAMESPACE)
    cert = one(rendered, "Certificate", "kruise-mesh-webhook")["spec"]
    assert set(cert["dnsNames"]) | set(cert.get("ipAddresses", [])) == set(wanted)
    assert cert["secretName"] == config.cert_secret
    assert "server auth" in cert["usages"]
    gateway = one(rendered, "Deployment", "kruise-mesh-gateway")
    assert mounted_secret(gateway, config.cert_dir) == config.cert_secret


@pytest.mark.parametrize("component", COMPONENTS)
def test_each_mesh_certificate_names_its_component_as_the_mesh_checks_it(
    rendered: list[Doc], component: str
) -> None:
    cert = one(rendered, "Certificate", f"kruise-mesh-{component}-tls")["spec"]
    assert cert["uris"] == [identity.spiffe_id(component)]
    assert cert["dnsNames"] == [peer_name(component)]
    assert {"server auth", "client auth"} <= set(cert["usages"])
    deployment = one(rendered, "Deployment", f"kruise-mesh-{component}")
    tls_dir = env_of(deployment)["KRUISE_MESH_TLS_DIR"]
    assert mounted_secret(deployment, tls_dir) == cert["secretName"]


def test_every_certificate_has_its_issuer_and_each_ca_issuer_its_ca(rendered: list[Doc]) -> None:
    issuers = {d["metadata"]["name"]: d for d in rendered if d["kind"] == "Issuer"}
    ca_secrets = {c["spec"]["secretName"] for c in certificates(rendered).values()}
    for name, cert in certificates(rendered).items():
        ref = cert["spec"]["issuerRef"]
        assert ref["kind"] == "Issuer" and ref["name"] in issuers, name
        assert cert["metadata"]["namespace"] == NAMESPACE
    for name, issuer in issuers.items():
        if "ca" in issuer["spec"]:
            assert issuer["spec"]["ca"]["secretName"] in ca_secrets, name
    leaves = [c for c in certificates(rendered).values() if not c["spec"].get("isCA")]
    assert {c["spec"]["issuerRef"]["name"] for c in leaves} == {
        "kruise-mesh-webhook-ca",
        "kruise-mesh-mesh-ca",
    }


def test_the_api_server_trusts_the_webhook_through_cainjector(rendered: list[Doc]) -> None:
    for kind, name in (
        ("MutatingWebhookConfiguration", "kruise-mesh-mutating"),
        ("ValidatingWebhookConfiguration", "kruise-mesh-validating"),
    ):
        annotations = one(rendered, kind, name)["metadata"]["annotations"]
        assert annotations["cert-manager.io/inject-ca-from"] == f"{NAMESPACE}/kruise-mesh-webhook"


def test_the_gateway_is_not_the_mesh_ca_and_mounts_its_own_certificate(
    rendered: list[Doc],
) -> None:
    gateway = one(rendered, "Deployment", "kruise-mesh-gateway")
    env = env_of(gateway)
    assert env["KRUISE_MESH_CA_SECRET"] == ""
    assert mounted_secret(gateway, env["KRUISE_MESH_TLS_DIR"]) == "kruise-mesh-gateway-tls"
