"""A forged eviction review spends nothing when the gateway requires the API server's client
certificate (issue 10's acceptance), and the API server's own reviews still pass.

The mesh runs as in ``make run``: the sandbox's webhook caller presents a client certificate of
its own CA and LocalMesh starts the gateway with ``--webhook-client-ca`` on that CA. An
attacker inside the cluster who reaches the webhook port, knows a protected pod's name and can
build a well-formed AdmissionReview posts it without a certificate, or with one from another
CA. The budget's status is the proof: a forged review that got through would record the pod
in ``status.disruptedPods`` and take a unit of ``unavailableAllowed`` for 20 s
(``services.budget.status.DELETION_TIMEOUT_MS``).
"""

from __future__ import annotations

import asyncio
import copy
import ssl
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from sandbox.admission import write_client_identity
from services.cli.local import LocalMesh
from services.gateway.kube.client import KubeClient
from tests.e2e.budget_world import World
from tests.fixtures import REAL_APISERVER

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

FIXTURE = REAL_APISERVER / "admission" / "pod-eviction-create.validating.json"
PATH = "/budget/validate-pod-eviction"
REFUSED_AT_TLS = (aiohttp.ClientError, ssl.SSLError, ConnectionError)


def forged_eviction(namespace: str, pod: str) -> bytes:
    """An eviction review as the API server would send it, made up by hand."""
    review: dict[str, Any] = copy.deepcopy(orjson.loads(FIXTURE.read_bytes())["admissionReview"])
    request = review["request"]
    request.update(
        uid=str(uuid.uuid4()),
        name=pod,
        namespace=namespace,
        dryRun=False,
        userInfo={"username": "system:serviceaccount:kube-system:node-drainer", "groups": []},
    )
    request["object"]["metadata"] = {"name": pod, "namespace": namespace}
    return orjson.dumps(review)


async def post(mesh: LocalMesh, body: bytes, context: ssl.SSLContext) -> tuple[int, str]:
    url = f"https://127.0.0.1:{mesh.webhook_port}{PATH}?timeout=5s"
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as http:
        async with http.post(url, data=body, headers={"Content-Type": "application/json"}) as r:
            return r.status, await r.text()


def serving_trust(mesh: LocalMesh) -> ssl.SSLContext:
    """Trusts the webhook's serving CA (public in the webhook configurations' caBundle)."""
    return ssl.create_default_context(cafile=str(mesh.workdir / "gateway-certs" / "ca.crt"))


async def eviction_reviews_forwarded(mesh: LocalMesh) -> float:
    """The gateway's count of eviction reviews it answered from the budget service."""
    port = mesh.procs["gateway"].ready["ops_port"]
    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://127.0.0.1:{port}/metrics") as r:
            text = await r.text()
    total = 0.0
    for line in text.splitlines():
        if line.startswith("kruise_mesh_webhook_reviews_total{") and (
            'webhook="validate-pod-eviction"' in line
        ):
            total += float(line.rsplit(" ", 1)[1])
    return total


async def test_the_gateway_requires_the_sandboxs_client_certificate(mesh: LocalMesh) -> None:
    assert mesh.webhook_client_ca is not None
    cmdline = Path(f"/proc/{mesh.procs['gateway'].pid}/cmdline").read_bytes().split(b"\0")
    flag = cmdline.index(b"--webhook-client-ca")
    assert cmdline[flag + 1].decode() == mesh.webhook_client["ca"]


async def test_forged_evictions_are_refused_and_spend_nothing(
    mesh: LocalMesh, kube: KubeClient, tmp_path: Path
) -> None:
    world = World(kube, "forged-evictions", app="web")
    await world.build(3, max_unavailable=1)
    before = await world.wait_status(unavailableAllowed=1, currentAvailable=3, totalReplicas=3)
    assert not before.get("disruptedPods")
    forwarded = await eviction_reviews_forwarded(mesh)

    # no client certificate: the TLS handshake lets it in, the gateway answers 401
    status, text = await post(mesh, forged_eviction(world.ns, "web-0"), serving_trust(mesh))
    assert status == 401, text
    assert "client certificate" in text

    # a client certificate from another CA: refused during the handshake
    stranger = write_client_identity(tmp_path / "stranger")
    context = serving_trust(mesh)
    context.load_cert_chain(stranger.cert_file, stranger.key_file)
    for pod in ("web-0", "web-1", "web-2"):
        with pytest.raises(REFUSED_AT_TLS):
            await post(mesh, forged_eviction(world.ns, pod), context)

    # nothing reached the budget service, and the budget is whole
    assert await eviction_reviews_forwarded(mesh) == forwarded
    await asyncio.sleep(1.0)  # a spent unit would be written within a few hundred ms
    after = await world.status()
    assert after["unavailableAllowed"] == 1
    assert not after.get("disruptedPods")

    # the API server's own eviction goes through its client certificate and spends the unit
    # (web-2 is recorded in disruptedPods until the kubelet has it gone)
    assert await world.evict("web-2") == 201
    spent = await world.wait_status(unavailableAllowed=0)
    assert set(spent.get("disruptedPods") or {}) <= {"web-2"}
    assert await eviction_reviews_forwarded(mesh) == forwarded + 1
    assert await world.evict("web-0") == 429


async def test_what_a_review_that_passes_the_gate_can_do(mesh: LocalMesh, kube: KubeClient) -> None:
    """Why the gate matters (README): with the client certificate, i.e. what anyone can do
    when --webhook-client-ca is off, a made-up review spends a unit of the budget on a pod
    that is never evicted, and the real evictions are refused until the entry expires."""
    world = World(kube, "forged-accepted", app="web")
    await world.build(2, max_unavailable=1)
    await world.wait_status(unavailableAllowed=1, currentAvailable=2)

    status, text = await post(mesh, forged_eviction(world.ns, "web-0"), mesh.webhook_ssl_context())

    assert status == 200, text
    assert orjson.loads(text)["response"]["allowed"] is True
    spent = await world.wait_status(unavailableAllowed=0)
    assert set(spent["disruptedPods"]) == {"web-0"}
    assert await world.evict("web-1") == 429  # a drain would now wait
    pod = await kube.request_json("GET", f"{world.pods_path}/web-0")
    assert not pod["metadata"].get("deletionTimestamp")  # nothing was evicted
