"""``--webhook-client-ca``: only a caller with a client certificate from that CA gets a review
answered; the probes stay open. Real HTTPS on 127.0.0.1; a recorder stands in for the hop to
the services, so "nothing reached a service" is observed directly.
"""

from __future__ import annotations

import dataclasses
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from sandbox.admission import issue_client_cert
from services.gateway.webhook.server import WebhookServer, start_webhook_server
from services.kit import certs
from tests.fixtures import REAL_APISERVER
from tests.gateway.test_webhook_paths import Recorder, refused

EVICTION = REAL_APISERVER / "admission" / "pod-eviction-create.validating.json"
pytestmark = pytest.mark.skipif(not EVICTION.exists(), reason="real-apiserver fixtures not present")

# What a TLS refusal looks like to an aiohttp client (the alert arrives during the handshake
# with TLS 1.2, on the first read with TLS 1.3).
REFUSED_AT_TLS = (aiohttp.ClientError, ssl.SSLError, ConnectionError)


@dataclasses.dataclass
class Pki:
    serving_ca: certs.CertPair
    client_ca_file: Path
    files: dict[str, tuple[Path, Path]]  # client identity name -> (cert, key)

    def context(self, identity: str | None) -> ssl.SSLContext:
        context = ssl.create_default_context(cadata=self.serving_ca.cert_pem.decode())
        if identity is not None:
            context.load_cert_chain(*self.files[identity])
        return context


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("pki")
    serving_ca = certs.generate_ca(common_name="webhook-serving-ca")
    certs.write_pair(directory, "tls", certs.issue_serving_cert(ca=serving_ca, hosts=[]))
    apiserver_ca = certs.generate_ca(common_name="apiserver-client-ca")
    other_ca = certs.generate_ca(common_name="someone-elses-ca")
    client_ca_file = directory / "client-ca.crt"
    client_ca_file.write_bytes(apiserver_ca.cert_pem)
    issued = {
        "apiserver": issue_client_cert(ca=apiserver_ca, common_name="kube-apiserver"),
        "other-ca": issue_client_cert(ca=other_ca, common_name="kube-apiserver"),
        # the right CA, but a serving certificate: not for client authentication
        "server-only": certs.issue_serving_cert(ca=apiserver_ca, hosts=["kube-apiserver"]),
        # the webhook's own serving CA is not the client CA
        "serving-ca": issue_client_cert(ca=serving_ca, common_name="kube-apiserver"),
    }
    files = {name: certs.write_pair(directory, name, pair) for name, pair in issued.items()}
    return Pki(serving_ca=serving_ca, client_ca_file=client_ca_file, files=files)


@dataclasses.dataclass
class Served:
    server: WebhookServer
    recorder: Recorder

    async def post(
        self, pki: Pki, identity: str | None, path: str = "/budget/validate-pod-eviction"
    ) -> tuple[int, dict[str, Any]]:
        body = orjson.loads(EVICTION.read_bytes())["admissionReview"]
        connector = aiohttp.TCPConnector(ssl=pki.context(identity))
        async with aiohttp.ClientSession(connector=connector) as http:
            async with http.post(
                f"https://127.0.0.1:{self.server.port}{path}",
                data=orjson.dumps(body),
                headers={"Content-Type": "application/json"},
            ) as response:
                return response.status, orjson.loads(await response.read())

    async def get(self, pki: Pki, path: str) -> tuple[int, str]:
        connector = aiohttp.TCPConnector(ssl=pki.context(None))
        async with aiohttp.ClientSession(connector=connector) as http:
            async with http.get(f"https://127.0.0.1:{self.server.port}{path}") as response:
                return response.status, await response.text()


async def serve(pki: Pki, *, client_ca: bool) -> AsyncIterator[Served]:
    recorder = Recorder()
    directory = pki.client_ca_file.parent
    server = await start_webhook_server(
        host="127.0.0.1",
        port=0,
        cert_file=str(directory / "tls.crt"),
        key_file=str(directory / "tls.key"),
        forwarder=recorder,
        client_ca_file=str(pki.client_ca_file) if client_ca else None,
    )
    try:
        yield Served(server, recorder)
    finally:
        await server.stop()


@pytest.fixture
async def required(pki: Pki) -> AsyncIterator[Served]:
    async for served in serve(pki, client_ca=True):
        yield served


@pytest.fixture
async def not_required(pki: Pki) -> AsyncIterator[Served]:
    async for served in serve(pki, client_ca=False):
        yield served


async def test_the_api_servers_certificate_gets_the_review_answered(
    pki: Pki, required: Served
) -> None:
    status, answer = await required.post(pki, "apiserver")
    assert status == 200
    assert answer["response"]["allowed"] is True
    assert [call[0] for call in required.recorder.calls] == ["budget"]
    assert required.server.client_auth is True


async def test_no_client_certificate_gets_401_and_reaches_no_service(
    pki: Pki, required: Served
) -> None:
    before = refused("other", "unauthenticated")
    status, answer = await required.post(pki, None)
    assert status == 401
    assert answer["error"] == "a client certificate issued by the webhook client CA is required"
    # not even whether a path exists is told
    assert (await required.post(pki, None, "/budget/no-such-webhook"))[0] == 401
    assert required.recorder.calls == []
    assert refused("other", "unauthenticated") - before == 2


@pytest.mark.parametrize("identity", ["other-ca", "server-only", "serving-ca"])
async def test_a_certificate_the_client_ca_did_not_issue_for_clients_is_refused_at_tls(
    pki: Pki, required: Served, identity: str
) -> None:
    with pytest.raises(REFUSED_AT_TLS):
        await required.post(pki, identity)
    assert required.recorder.calls == []
    # and the server keeps serving the API server
    assert (await required.post(pki, "apiserver"))[0] == 200


async def test_the_probes_need_no_certificate(pki: Pki, required: Served) -> None:
    assert await required.get(pki, "/healthz") == (200, "ok")
    assert await required.get(pki, "/readyz") == (200, "ok")


async def test_without_the_setting_anyone_reaching_the_port_is_answered(
    pki: Pki, not_required: Served
) -> None:
    """What --webhook-client-ca is for: without it a made-up review reaches the service."""
    for identity in (None, "other-ca"):
        status, _ = await not_required.post(pki, identity)
        assert status == 200
    assert len(not_required.recorder.calls) == 2
    assert not_required.server.client_auth is False


def test_the_flag_and_its_environment_variable(pki: Pki) -> None:
    from services.gateway.config import parse_gateway_config

    base = ["--services", "budget=127.0.0.1:1"]
    ca = str(pki.client_ca_file)
    assert parse_gateway_config(base, env={}).webhook_client_ca == ""
    assert parse_gateway_config([*base, "--webhook-client-ca", ca], env={}).webhook_client_ca == ca
    env = {"KRUISE_MESH_WEBHOOK_CLIENT_CA": ca}
    assert parse_gateway_config(base, env=env).webhook_client_ca == ca
    with pytest.raises(SystemExit):
        parse_gateway_config([*base, "--webhook-client-ca", "/nonexistent/ca.crt"], env={})
