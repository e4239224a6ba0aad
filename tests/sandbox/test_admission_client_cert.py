"""The sandbox's webhook caller proves itself with a client certificate, as a kube-apiserver
configured with an AdmissionConfiguration kubeconfig does.

deploy/webhooks.yaml, pointed at the gateway's real HTTPS webhook server (``register.
rewrite_webhooks``, as local mode registers it), with ``client_ca_file`` set to the CA of the
dispatcher's identity; a recorder stands in for the hop to the budget service.
"""

from __future__ import annotations

import stat
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import yaml

from sandbox.admission import ClientIdentity, WebhookDispatcher, write_client_identity
from sandbox.admission_types import AdmissionAttributes
from sandbox.errors import ApiError
from services.gateway.register import rewrite_webhooks
from services.gateway.webhook.server import WebhookServer, start_webhook_server
from services.kit import certs
from tests.gateway.test_webhook_paths import Recorder
from tests.sandbox.admission_support import DictSource, attrs_from_review, load_fixture

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
EVICTION = "admission/pod-eviction-create.validating.json"
GROUP = "admissionregistration.k8s.io"


@pytest.fixture
def identity(tmp_path: Path) -> ClientIdentity:
    return write_client_identity(tmp_path / "apiserver")


@pytest.fixture
async def gateway(
    tmp_path: Path, identity: ClientIdentity
) -> AsyncIterator[tuple[WebhookServer, Recorder, DictSource]]:
    ca = certs.generate_ca(common_name="webhook-ca")
    cert_file, key_file = certs.write_pair(
        tmp_path, "tls", certs.issue_serving_cert(ca=ca, hosts=[])
    )
    recorder = Recorder()
    server = await start_webhook_server(
        host="127.0.0.1",
        port=0,
        cert_file=str(cert_file),
        key_file=str(key_file),
        forwarder=recorder,
        client_ca_file=str(identity.ca_file),
    )
    source = DictSource()
    source.add_namespace("capture")
    docs = list(yaml.safe_load_all((DEPLOY / "webhooks.yaml").read_text()))
    for config in rewrite_webhooks(
        docs, base_url=f"https://127.0.0.1:{server.port}", ca_pem=ca.cert_pem
    ):
        resource = config["kind"].lower() + "s"
        source.put(group=GROUP, resource=resource, obj=config)
    try:
        yield server, recorder, source
    finally:
        await server.stop()


def eviction() -> AdmissionAttributes:
    return attrs_from_review(load_fixture(EVICTION)["admissionReview"]["request"])


def test_the_identity_is_written_for_the_gateway_to_trust(identity: ClientIdentity) -> None:
    assert identity.ca_file.read_bytes().startswith(b"-----BEGIN CERTIFICATE-----")
    assert stat.S_IMODE(identity.key_file.stat().st_mode) == 0o600
    assert identity.ready_fields() == {
        "webhookClientCA": str(identity.ca_file),
        "webhookClientCert": str(identity.cert_file),
        "webhookClientKey": str(identity.key_file),
    }


async def test_the_dispatcher_with_its_certificate_is_answered(
    gateway: tuple[WebhookServer, Recorder, DictSource], identity: ClientIdentity
) -> None:
    _, recorder, source = gateway
    async with WebhookDispatcher(source, client_identity=identity) as dispatcher:
        await dispatcher.validate(eviction())
    ((service, namespace, request),) = recorder.calls
    assert (service, namespace, request.webhook) == ("budget", "capture", "validate-pod-eviction")


async def test_without_a_certificate_the_call_fails_and_fail_policy_refuses(
    gateway: tuple[WebhookServer, Recorder, DictSource],
) -> None:
    _, recorder, source = gateway
    async with WebhookDispatcher(source) as dispatcher:
        with pytest.raises(ApiError) as raised:
            await dispatcher.validate(eviction())
    assert raised.value.code == 500
    assert (
        'failed calling webhook "vpodeviction-budget.kruise.io": failed to call webhook: '
        "the server responded with the status code 401"
    ) in raised.value.body["message"]
    assert recorder.calls == []


async def test_a_certificate_from_another_ca_fails_at_tls(
    gateway: tuple[WebhookServer, Recorder, DictSource], tmp_path: Path
) -> None:
    _, recorder, source = gateway
    stranger = write_client_identity(tmp_path / "stranger")
    async with WebhookDispatcher(source, client_identity=stranger) as dispatcher:
        with pytest.raises(ApiError) as raised:
            await dispatcher.validate(eviction())
    assert raised.value.code == 500
    assert 'failed calling webhook "vpodeviction-budget.kruise.io"' in raised.value.body["message"]
    assert recorder.calls == []
