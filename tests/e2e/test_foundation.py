"""Issue #2 acceptance: the path from Kubernetes to the services and back, real processes."""

from __future__ import annotations

import ssl

import aiohttp
import grpc
import orjson
import pytest

from services.cli.local import LocalMesh
from services.gateway.kube.client import KubeClient
from services.kit import errors
from services.kit.cluster import ClusterClient, Ref
from services.kit.tls import CaSource, MeshTls
from tests.e2e.conftest import (
    cached_pods,
    create_pod,
    ensure_namespace,
    eventually,
    owner,
    replica_status,
)
from tests.fixtures import REAL_APISERVER

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

NAMESPACES = [f"spread-{i}" for i in range(8)]
FIXTURES = REAL_APISERVER / "admission"


async def test_each_pod_reaches_exactly_the_replica_that_owns_its_namespace(
    mesh: LocalMesh, kube: KubeClient
) -> None:
    # Eight namespaces, plus any needed so that every replica of every service owns one.
    namespaces = list(NAMESPACES)
    for service in ("placement", "rollout", "budget"):
        for address in mesh.addresses[service]:
            if not any(owner(mesh, service, ns) == address for ns in namespaces):
                namespaces.append(
                    next(
                        ns
                        for ns in (f"spread-extra-{i}" for i in range(256))
                        if owner(mesh, service, ns) == address
                    )
                )
    for ns in namespaces:
        await ensure_namespace(kube, ns)
        await create_pod(kube, ns, "p")
    expected = {f"{ns}/p" for ns in namespaces}
    for service in ("placement", "rollout", "budget"):
        replicas = mesh.addresses[service]
        assert len(replicas) == 2

        async def delivered(replicas: list[str] = replicas) -> bool:
            held = [await cached_pods(mesh, a) & expected for a in replicas]
            return sum(len(h) for h in held) == len(expected)

        await eventually(f"{service} replicas hold every pod", delivered)
        held = {a: await cached_pods(mesh, a) & expected for a in replicas}
        assert not (held[replicas[0]] & held[replicas[1]]), "a pod reached two replicas"
        for ns in namespaces:
            assert f"{ns}/p" in held[owner(mesh, service, ns)], f"{ns} is at the wrong replica"
        assert all(held.values()), "every replica received its share"


async def test_pod_create_goes_through_the_webhook_and_a_service(
    mesh: LocalMesh, kube: KubeClient
) -> None:
    await ensure_namespace(kube, "admitted")
    placement = owner(mesh, "placement", "admitted")
    budget = owner(mesh, "budget", "admitted")
    before = {a: (await replica_status(mesh, a)).admission_reviews for a in (placement, budget)}
    created = await create_pod(kube, "admitted", "through-webhooks")
    assert created["metadata"]["name"] == "through-webhooks"
    after = {a: (await replica_status(mesh, a)).admission_reviews for a in (placement, budget)}
    # Two mutating webhooks (placement, budget) saw the CREATE, each at its namespace owner.
    assert after[placement] > before[placement]
    assert after[budget] > before[budget]
    stored = await kube.request_json("GET", "/api/v1/namespaces/admitted/pods/through-webhooks")
    assert stored["metadata"]["uid"] == created["metadata"]["uid"]


async def test_cluster_api_write_with_stale_version_is_aborted_and_fresh_one_lands(
    mesh: LocalMesh, kube: KubeClient
) -> None:
    """A service's write, decided on a resourceVersion that has moved on, is refused.

    The write is the rollout service's (its mesh certificate, which may patch
    ControllerRevisions), on an orphan ControllerRevision no CloneSet owns, so only this
    test's writes race.
    """
    await ensure_namespace(kube, "writes")
    revision = {
        "apiVersion": "apps/v1",
        "kind": "ControllerRevision",
        "metadata": {"name": "orphan", "namespace": "writes"},
        "revision": 1,
        "data": {},
    }
    path = "/apis/apps/v1/namespaces/writes/controllerrevisions"
    created = await kube.request_json("POST", path, body=orjson.dumps(revision))
    stale = created["metadata"]["resourceVersion"]
    await kube.request(
        "PATCH",
        f"{path}/orphan",
        body=b'{"metadata":{"labels":{"touched":"yes"}}}',
        content_type="application/merge-patch+json",
    )
    assert mesh.mesh_ca is not None
    rollout = MeshTls("rollout", CaSource(mesh.mesh_ca, "rollout"))
    await rollout.start()
    ref = Ref("apps/v1", "ControllerRevision", "writes", "orphan")
    cluster = ClusterClient.connect(mesh.gateway_grpc, component="rollout", tls=rollout)
    try:
        with pytest.raises(errors.Conflict):
            await cluster.patch(ref, patch={"revision": 2}, resource_version=stale)
        fresh = (await kube.request_json("GET", f"{path}/orphan"))["metadata"]["resourceVersion"]
        landed = await cluster.patch(ref, patch={"revision": 2}, resource_version=fresh)
        assert landed.resource_version != fresh and landed.object["revision"] == 2
        with pytest.raises(errors.Invalid):
            await cluster.patch(Ref("", "", "", ""), patch={}, resource_version="1")
        with pytest.raises(errors.Invalid):
            await cluster.patch(Ref("example.com/v1", "NoSuchKind", "writes", "x"), patch={})
    finally:
        await cluster.close()
        await rollout.stop()
    stored = await kube.request_json("GET", f"{path}/orphan")
    assert stored["revision"] == 2


async def test_a_restarted_replica_gets_a_snapshot_of_everything_it_owns(
    mesh: LocalMesh, kube: KubeClient
) -> None:
    victim = mesh.addresses["budget"][0]
    candidates = [f"restart-{i}" for i in range(64)]
    mine = [ns for ns in candidates if owner(mesh, "budget", ns) == victim][:3]
    others = [ns for ns in candidates if owner(mesh, "budget", ns) != victim][:3]
    assert len(mine) == 3 and len(others) == 3
    namespaces = mine + others
    for ns in namespaces:
        await ensure_namespace(kube, ns)
        await create_pod(kube, ns, "before")
    owned = {f"{ns}/before" for ns in mine}
    await eventually("victim holds its pods", lambda: _holds(mesh, victim, owned))
    await mesh.restart_replica("budget", 0, kill=True)
    # Created while the replica is down: must arrive in the snapshot as well.
    for ns in namespaces:
        await create_pod(kube, ns, "while-down")
    owned |= {f"{ns}/while-down" for ns in namespaces if owner(mesh, "budget", ns) == victim}
    await eventually("restarted replica got a full snapshot", lambda: _holds(mesh, victim, owned))
    status = await replica_status(mesh, victim)
    assert status.synced


async def _holds(mesh: LocalMesh, address: str, keys: set[str]) -> bool:
    try:
        return keys <= await cached_pods(mesh, address)
    except grpc.aio.AioRpcError:
        return False


async def test_watches_survive_a_forced_410_without_losing_an_event(
    mesh: LocalMesh, kube: KubeClient
) -> None:
    await ensure_namespace(kube, "expiry")
    for i in range(5):
        await create_pod(kube, "expiry", f"p{i}")
    assert mesh.sandbox_url is not None
    await _sandbox_control(mesh, "POST", "/sandbox/v1/expire-history")
    for i in range(5, 10):
        await create_pod(kube, "expiry", f"p{i}")
    await kube.request(
        "DELETE", "/api/v1/namespaces/expiry/pods/p1", query={"gracePeriodSeconds": "0"}
    )
    await _sandbox_control(mesh, "POST", "/sandbox/v1/expire-history")
    await kube.request(
        "DELETE", "/api/v1/namespaces/expiry/pods/p7", query={"gracePeriodSeconds": "0"}
    )
    expected = {f"expiry/p{i}" for i in range(10) if i not in (1, 7)}
    holder = owner(mesh, "rollout", "expiry")

    async def converged() -> bool:
        return {p for p in await cached_pods(mesh, holder) if p.startswith("expiry/")} == expected

    await eventually("the replica's view matches the API after two 410s", converged)


async def _sandbox_control(mesh: LocalMesh, method: str, path: str) -> None:
    ctx = ssl.create_default_context(cafile=str(mesh.workdir / "sandbox" / "ca.crt"))
    headers = {"Authorization": f"Bearer {mesh.sandbox_token}"} if mesh.sandbox_token else {}
    async with aiohttp.ClientSession() as http:
        async with http.request(method, f"{mesh.sandbox_url}{path}", ssl=ctx, headers=headers) as r:
            assert r.status < 300, await r.text()


@pytest.mark.parametrize(
    ("body", "mentions"),
    [
        pytest.param(b"{not json", "JSON", id="malformed JSON"),
        pytest.param(
            orjson.dumps({"apiVersion": "admission.k8s.io/v0", "kind": "AdmissionReview"}),
            "apiVersion",
            id="wrong apiVersion",
        ),
        pytest.param(b"", "empty", id="empty body"),
    ],
)
async def test_bad_admission_reviews_get_400_and_the_gateway_keeps_serving(
    mesh: LocalMesh, body: bytes, mentions: str
) -> None:
    ctx = mesh.webhook_ssl_context()  # as the API server: with its client certificate
    url = f"https://127.0.0.1:{mesh.webhook_port}/budget/validate-pods"
    async with aiohttp.ClientSession() as http:
        async with http.post(
            url, data=body, ssl=ctx, headers={"Content-Type": "application/json"}
        ) as r:
            assert r.status == 400
            assert mentions.lower() in (await r.text()).lower()
        async with http.get(f"https://127.0.0.1:{mesh.webhook_port}/healthz", ssl=ctx) as r:
            assert r.status == 200
    assert mesh.procs["gateway"].running


async def test_webhook_down_fails_deletes_under_fail_and_passes_under_ignore(
    mesh: LocalMesh, kube: KubeClient
) -> None:
    """Two copies of the pod DELETE webhook, one per failurePolicy, each scoped to a namespace."""
    ca = (mesh.workdir / "gateway-certs" / "ca.crt").read_bytes()
    import base64

    for policy in ("Fail", "Ignore"):
        ns = f"down-{policy.lower()}"
        await ensure_namespace(kube, ns, labels={"e2e-webhook": policy.lower()})
        config = {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingWebhookConfiguration",
            "metadata": {"name": f"e2e-delete-{policy.lower()}"},
            "webhooks": [
                {
                    "name": f"e2e-delete-{policy.lower()}.kruise.io",
                    "admissionReviewVersions": ["v1"],
                    "sideEffects": "NoneOnDryRun",
                    "failurePolicy": policy,
                    "timeoutSeconds": 2,
                    "clientConfig": {
                        "url": f"https://127.0.0.1:{mesh.webhook_port}/budget/validate-pods",
                        "caBundle": base64.b64encode(ca).decode(),
                    },
                    "rules": [
                        {
                            "operations": ["DELETE"],
                            "apiGroups": [""],
                            "apiVersions": ["v1"],
                            "resources": ["pods"],
                        }
                    ],
                    "namespaceSelector": {"matchLabels": {"e2e-webhook": policy.lower()}},
                }
            ],
        }
        path = "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations"
        try:
            await kube.request("POST", path, body=orjson.dumps(config))
        except errors.AlreadyExists:
            pass
        await create_pod(kube, ns, "victim")

    gateway = mesh.procs["gateway"]
    await gateway.stop()
    try:
        with pytest.raises(errors.MeshError) as caught:
            await kube.request(
                "DELETE",
                "/api/v1/namespaces/down-fail/pods/victim",
                query={"gracePeriodSeconds": "0"},
            )
        assert "failed calling webhook" in str(caught.value)
        await kube.request(
            "DELETE",
            "/api/v1/namespaces/down-ignore/pods/victim",
            query={"gracePeriodSeconds": "0"},
        )
    finally:
        port = int(mesh.gateway_grpc.rsplit(":", 1)[1])
        await mesh.start_gateway(port)
        for policy in ("fail", "ignore"):
            await kube.request(
                "DELETE",
                f"/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations/e2e-delete-{policy}",
            )
    # With the gateway back, the Fail-guarded delete goes through.
    await kube.request(
        "DELETE", "/api/v1/namespaces/down-fail/pods/victim", query={"gracePeriodSeconds": "0"}
    )


async def test_a_webhook_the_service_does_not_have_fails_the_call(mesh: LocalMesh) -> None:
    """Not a silent allow: a 404 (a path no webhook configuration names), an error for the
    API server, which then applies the webhook's failurePolicy."""
    review = orjson.loads((FIXTURES / "pod-create-by-user.validating.json").read_bytes())[
        "admissionReview"
    ]
    ctx = mesh.webhook_ssl_context()
    url = f"https://127.0.0.1:{mesh.webhook_port}/budget/validate-nodes"
    async with aiohttp.ClientSession() as http:
        headers = {"Content-Type": "application/json"}
        async with http.post(url, data=orjson.dumps(review), ssl=ctx, headers=headers) as r:
            assert r.status == 404
            assert "validate-nodes" in await r.text()


async def test_every_process_serves_health_and_metrics(mesh: LocalMesh) -> None:
    async with aiohttp.ClientSession() as http:
        for name, proc in mesh.procs.items():
            if name == "sandbox":
                continue
            base = f"http://127.0.0.1:{proc.ready['ops_port']}"
            async with http.get(f"{base}/readyz") as r:
                assert r.status == 200, f"{name} not ready"
            async with http.get(f"{base}/metrics") as r:
                text = await r.text()
                assert "kruise_mesh_" in text, f"{name} exports no mesh metrics"
