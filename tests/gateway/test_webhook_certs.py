"""The webhook certificate as it runs in a cluster, against the sandbox.

The first start of a fresh install: no Secret yet, so the gateway makes the CA and the
serving certificate, stores them in a Secret and patches the CA into both webhook
configurations that ``deploy/webhooks.yaml`` applied. Nothing may raise (the log calls
included: logging is at DEBUG so every record is made). The second start finds the Secret
and changes nothing.

Then renewal and rotation (``certs.WebhookCerts``) with lifetimes of seconds: a real webhook
server (``start_webhook_server``) follows the Secret, and a prober plays the API server,
handshaking every few milliseconds with a client built from the configurations' caBundle as
it is at that moment; not one handshake may fail.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import logging
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest

from services.gateway import certs, rotation
from services.gateway.app import WEBHOOK_CONFIGS
from services.gateway.kube.client import KubeClient
from services.gateway.register import load_documents
from services.gateway.webhook.server import WebhookServer, start_webhook_server
from tests.gateway.conftest import REPO
from tests.gateway.test_webhook_paths import Recorder

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


# ---- renewal and rotation ------------------------------------------------------------------

HOSTS = certs.webhook_hosts(service="kruise-mesh-webhook", namespace=NS)
SERVER_NAME = "kruise-mesh-webhook.kruise-mesh.svc"
SECONDS = datetime.timedelta(seconds=1)


@dataclass
class Replica:
    """One gateway replica's share: a webhook server and the loop keeping its certificate."""

    server: WebhookServer
    certs: certs.WebhookCerts
    wrote: list[tuple[str | None, list[str]]] = field(default_factory=list)

    async def check(self) -> None:
        before = await secret_rv(self.certs.kube)
        done = await self.certs.check()
        if done is not None:
            self.wrote.append((before, rotation.describe(done)))


async def secret_rv(kube: KubeClient) -> str | None:
    try:
        found = await kube.request_json("GET", f"{SECRETS}/{SECRET}")
    except Exception:
        return None
    rv: str = found["metadata"]["resourceVersion"]
    return rv


async def secret_data(kube: KubeClient) -> dict[str, bytes]:
    found = await kube.request_json("GET", f"{SECRETS}/{SECRET}")
    return {k: base64.b64decode(v) for k, v in found["data"].items()}


@contextlib.asynccontextmanager
async def replica(
    kube: KubeClient,
    tmp_path: Path,
    name: str,
    *,
    check_s: float = 0.1,
    overlap: float = 0.6,
    ca_validity: float = 30,
    leaf_validity: float = 9,
) -> AsyncIterator[Replica]:
    """A replica whose webhook server starts on the Secret's certificate (made if absent)."""
    work = tmp_path / name
    placeholder = certs.local_serving_cert(tmp_path / f"{name}-first", hosts=HOSTS)
    server = await start_webhook_server(
        host="127.0.0.1",
        port=0,
        cert_file=str(placeholder.cert_file),
        key_file=str(placeholder.key_file),
        forwarder=Recorder(),
    )

    def reload(served: certs.ServingCert) -> None:
        server.reload_certs(cert_file=str(served.cert_file), key_file=str(served.key_file))

    keeper = certs.WebhookCerts(
        kube,
        namespace=NS,
        secret_name=SECRET,
        hosts=HOSTS,
        work_dir=work,
        configurations=WEBHOOK_CONFIGS,
        on_change=reload,
        check_s=check_s,
        overlap=overlap * SECONDS,
        ca_validity=ca_validity * SECONDS,
        leaf_validity=leaf_validity * SECONDS,
    )
    try:
        yield Replica(server, keeper)
    finally:
        await keeper.stop()
        await server.stop()


async def caller_context(kube: KubeClient) -> ssl.SSLContext:
    """What the API server trusts now: the mutating configuration's first caBundle."""
    res = await kube.resolve(
        api_version="admissionregistration.k8s.io/v1", kind="MutatingWebhookConfiguration"
    )
    conf = await kube.request_json("GET", kube.path(res, name=WEBHOOK_CONFIGS[res.kind]))
    bundle = base64.b64decode(conf["webhooks"][0]["clientConfig"]["caBundle"])
    return ssl.create_default_context(cadata=bundle.decode())


async def handshake(port: int, context: ssl.SSLContext) -> bytes:
    """A TLS handshake as the API server makes it; the certificate served (DER)."""
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection("127.0.0.1", port, ssl=context, server_hostname=SERVER_NAME),
        timeout=2,
    )
    try:
        der: bytes = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        return der
    finally:
        writer.close()
        with contextlib.suppress(TimeoutError, ConnectionError, ssl.SSLError):
            await asyncio.wait_for(writer.wait_closed(), timeout=1)


def der(pem: bytes) -> bytes:
    return ssl.PEM_cert_to_DER_cert(pem.decode())


@dataclass
class Prober:
    """The API server's side: handshakes with every replica, each with the caBundle of the
    moment, until stopped; every failure is kept."""

    kube: KubeClient
    ports: list[int]
    handshakes: int = 0
    failures: list[str] = field(default_factory=list)

    stopped: bool = False

    async def run(self) -> None:
        while not self.stopped:
            context = await caller_context(self.kube)
            for port in self.ports:
                try:
                    await handshake(port, context)
                    self.handshakes += 1
                except (TimeoutError, OSError, ssl.SSLError) as e:
                    self.failures.append(f"port {port}: {e!r}")
            await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def probing(kube: KubeClient, *ports: int) -> AsyncIterator[Prober]:
    prober = Prober(kube, list(ports))
    task = asyncio.create_task(prober.run())
    try:
        yield prober
    finally:
        # Not cancelled: a handshake cut in the middle would hold the server's shutdown.
        prober.stopped = True
        await task


async def until(
    what: str,
    check: Callable[[], Awaitable[bool]],
    *,
    step: Callable[[], Awaitable[None]],
    timeout: float = 8.0,
) -> None:
    """Run ``step`` (a replica's round) until ``check`` holds."""
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await step()
        await asyncio.sleep(0.05)


async def test_a_leaf_past_two_thirds_is_renewed_and_served_while_callers_keep_trusting(
    kube: KubeClient, tmp_path: Path
) -> None:
    await apply_manifest(kube)
    async with replica(kube, tmp_path, "one", leaf_validity=1.5) as one:
        await one.check()  # fresh install: CA + leaf in the Secret, caBundle published
        first = await secret_data(kube)
        context = await caller_context(kube)
        assert await handshake(one.server.port, context) == der(first["tls.crt"])

        async with probing(kube, one.server.port) as prober:

            async def renewed() -> bool:
                return (await secret_data(kube))["tls.crt"] != first["tls.crt"]

            await until("the leaf's renewal", renewed, step=one.check)
            now = await secret_data(kube)
            await asyncio.sleep(0.1)
        assert prober.failures == [] and prober.handshakes > 5

        assert now["ca.crt"] == first["ca.crt"]  # the same CA: the caBundle did not move
        assert now["ca.key"] == first["ca.key"]
        assert await handshake(one.server.port, context) == der(now["tls.crt"])
        assert [steps for _, steps in one.wrote] == [["add-ca", "issue-leaf"], ["issue-leaf"]]


async def test_a_ca_rotation_never_leaves_the_api_server_without_trust(
    kube: KubeClient, tmp_path: Path
) -> None:
    await apply_manifest(kube)
    # CA 4.5 s: rotation at 3 s; the overlap of 0.5 s between the steps.
    async with replica(kube, tmp_path, "one", ca_validity=4.5, overlap=0.5) as one:
        await one.check()
        start = await secret_data(kube)
        old_ca = rotation.ca_id(start["ca.crt"])
        bundles: list[list[str]] = []

        async def record() -> None:
            await one.check()
            ids = [
                rotation.ca_id(pem)
                for pem in rotation.split_bundle((await secret_data(kube))["ca.crt"])
            ]
            if not bundles or bundles[-1] != ids:
                bundles.append(ids)
                # at every step the caller's trust covers what the replica serves
                served = await handshake(one.server.port, await caller_context(kube))
                assert served == der((await secret_data(kube))["tls.crt"])

        async def rotated() -> bool:
            return bool(bundles) and bundles[-1] != [old_ca] and len(bundles[-1]) == 1

        async with probing(kube, one.server.port) as prober:
            await until("a whole CA rotation", rotated, step=record)
        assert prober.failures == [] and prober.handshakes > 10

    new_ca = bundles[-1][0]
    assert bundles == [[old_ca], [old_ca, new_ca], [new_ca]]
    assert [steps for _, steps in one.wrote] == [
        ["add-ca", "issue-leaf"],  # the fresh install
        ["add-ca"],
        ["switch-leaf"],
        ["drop-old-ca"],
    ]
    for conf in (await configurations(kube)).values():  # the API server trusts B alone
        for webhook in conf["webhooks"]:
            caller_bundle = base64.b64decode(webhook["clientConfig"]["caBundle"])
            assert rotation.bundle_ids(caller_bundle) == {new_ca}


async def test_two_replicas_never_both_write_and_serve_the_same_certificate(
    kube: KubeClient, tmp_path: Path
) -> None:
    await apply_manifest(kube)
    async with (
        replica(kube, tmp_path, "one", ca_validity=4.5, overlap=0.5) as one,
        replica(kube, tmp_path, "two", ca_validity=4.5, overlap=0.5) as two,
    ):

        async def both() -> None:  # both plan on the same Secret at the same moment
            await asyncio.gather(one.check(), two.check())

        async def rotated() -> bool:
            ids = rotation.bundle_ids((await secret_data(kube))["ca.crt"])
            return len(one.wrote) + len(two.wrote) >= 4 and len(ids) == 1

        await both()  # the fresh install: one of them makes the Secret
        async with probing(kube, one.server.port, two.server.port) as prober:
            await until("a CA rotation by two replicas", rotated, step=both)
            await both()  # each follows the last write
        assert prober.failures == []

        froms = [rv for rv, _ in one.wrote + two.wrote]
        assert len(froms) == len(set(froms)) == 4  # one write per resourceVersion
        final = der((await secret_data(kube))["tls.crt"])
        context = await caller_context(kube)
        assert await handshake(one.server.port, context) == final
        assert await handshake(two.server.port, context) == final
