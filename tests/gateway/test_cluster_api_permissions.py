"""ClusterService authorization over mutual TLS, against the sandbox API server.

A real ClusterService on port 0 takes mesh peers only (``require_client_auth``); each client
presents a certificate from the test's mesh CA naming its component
(``spiffe://kruise-mesh/<component>``). The gateway's KubeClient is wrapped to record the
requests it sends: a refused call sends none, and the object is as it was.
"""

from __future__ import annotations

import datetime
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

import grpc
import orjson
import pytest
from prometheus_client import REGISTRY

from kruise.cluster.v1 import cluster_pb2, cluster_pb2_grpc
from services.gateway.cluster_api import ClusterApi, add_to_server
from services.gateway.kube.client import KubeClient
from services.kit import certs, errors, identity

if TYPE_CHECKING:
    from kruise.cluster.v1.cluster_pb2_grpc import ClusterServiceAsyncStub as Stub

Ref = cluster_pb2.ObjectRef
POD = Ref(api_version="v1", kind="Pod", namespace="default", name="web-0")
PODS = "/api/v1/namespaces/default/pods"
GATEWAY_NAME = "gateway.mesh.kruise-mesh"
DAY = datetime.timedelta(days=1)


class RecordingKube:
    """The gateway's KubeClient, recording each request it sends (method and path)."""

    def __init__(self, kube: KubeClient) -> None:
        self.kube = kube
        self.sent: list[tuple[str, str]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.kube, name)

    async def request(self, method: str, path: str, **kw: Any) -> bytes:
        self.sent.append((method, path))
        return await self.kube.request(method, path, **kw)

    async def request_json(self, method: str, path: str, **kw: Any) -> dict[str, Any]:
        self.sent.append((method, path))
        return await self.kube.request_json(method, path, **kw)


@pytest.fixture(scope="module")
def ca() -> certs.CertPair:
    return certs.generate_ca(common_name="kruise-mesh test CA")


def mesh_cert(ca: certs.CertPair, uri: str) -> certs.CertPair:
    return certs.issue_mesh_cert(ca=ca, uri=uri, dns_names=[GATEWAY_NAME], validity=DAY)


@pytest.fixture
async def recorder(kube: KubeClient) -> RecordingKube:
    return RecordingKube(kube)


@pytest.fixture
async def connect(
    recorder: RecordingKube, ca: certs.CertPair
) -> AsyncIterator[Callable[[str], Stub]]:
    """``connect(uri)``: a ClusterService stub whose client certificate names ``uri``."""
    servicer = ClusterApi(recorder, require_identity=True)  # type: ignore[arg-type]
    server = grpc.aio.server()
    add_to_server(server, servicer)
    served = mesh_cert(ca, identity.spiffe_id("gateway"))
    credentials = grpc.ssl_server_credentials(
        [(served.key_pem, served.cert_pem)], root_certificates=ca.cert_pem, require_client_auth=True
    )
    port = server.add_secure_port("127.0.0.1:0", credentials)
    await server.start()
    channels: list[grpc.aio.Channel] = []

    def stub(uri: str) -> Stub:
        client = mesh_cert(ca, uri)
        channel = grpc.aio.secure_channel(
            f"127.0.0.1:{port}",
            grpc.ssl_channel_credentials(ca.cert_pem, client.key_pem, client.cert_pem),
            options=[("grpc.ssl_target_name_override", GATEWAY_NAME)],
        )
        channels.append(channel)
        return cluster_pb2_grpc.ClusterServiceStub(channel)

    try:
        yield stub
    finally:
        for channel in channels:
            await channel.close()
        await server.stop(grace=None)


def as_component(connect: Callable[[str], Stub], component: str) -> Stub:
    return connect(identity.spiffe_id(component))


def pod_body(name: str = "web-0", namespace: str = "default") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "c", "image": "nginx:1"}]},
    }


@pytest.fixture
async def pod(kube: KubeClient, recorder: RecordingKube) -> dict[str, Any]:
    """web-0 in default, created by the test (not through the ClusterService)."""
    created = await kube.request_json("POST", PODS, body=orjson.dumps(pod_body()))
    recorder.sent.clear()
    return created


async def refused(call: Awaitable[Any]) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call
    return err.value.code(), err.value.details() or ""


def denied_count(component: str, verb: str, resource: str) -> float:
    labels = {"component": component, "verb": verb, "resource": resource}
    value = REGISTRY.get_sample_value("kruise_mesh_gateway_cluster_api_denied_total", labels)
    return value or 0.0


async def test_placement_deleting_a_pod_is_denied_and_the_pod_stays(
    connect: Callable[[str], Stub],
    kube: KubeClient,
    recorder: RecordingKube,
    pod: dict[str, Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    before = denied_count("placement", "delete", "pods")
    placement = as_component(connect, "placement")

    code, details = await refused(placement.Delete(cluster_pb2.DeleteRequest(ref=POD)))

    assert code == grpc.StatusCode.PERMISSION_DENIED
    assert details == "placement may not delete pods"
    assert recorder.sent == []
    still = await kube.request_json("GET", f"{PODS}/web-0")
    assert still["metadata"]["uid"] == pod["metadata"]["uid"]
    assert not still["metadata"].get("deletionTimestamp")
    assert denied_count("placement", "delete", "pods") == before + 1
    [record] = [r for r in caplog.records if r.getMessage() == "ClusterService call denied"]
    assert record.levelname == "WARNING"
    assert (record.component, record.verb, record.resource) == ("placement", "delete", "pods")  # type: ignore[attr-defined]


async def test_rollout_deleting_the_pod_is_carried_out(
    connect: Callable[[str], Stub], kube: KubeClient, recorder: RecordingKube, pod: dict[str, Any]
) -> None:
    rollout = as_component(connect, "rollout")

    await rollout.Delete(
        cluster_pb2.DeleteRequest(
            ref=POD,
            preconditions=cluster_pb2.Preconditions(uid=pod["metadata"]["uid"]),
            grace_period_seconds=0,
        )
    )

    assert recorder.sent == [("DELETE", f"{PODS}/web-0")]
    with pytest.raises(errors.NotFound):
        await kube.request_json("GET", f"{PODS}/web-0")


async def test_rollout_creating_a_pod_in_kube_system_is_denied(
    connect: Callable[[str], Stub], kube: KubeClient, recorder: RecordingKube
) -> None:
    rollout = as_component(connect, "rollout")
    ref = Ref(api_version="v1", kind="Pod", namespace="kube-system", name="takeover")
    body = pod_body("takeover", "kube-system")
    body["spec"]["containers"][0]["securityContext"] = {"privileged": True}

    code, details = await refused(
        rollout.Create(cluster_pb2.CreateRequest(ref=ref, object_json=orjson.dumps(body)))
    )

    assert code == grpc.StatusCode.PERMISSION_DENIED
    assert "rollout may not create pods in namespace kube-system" in details
    assert recorder.sent == []
    with pytest.raises(errors.NotFound):
        await kube.request_json("GET", "/api/v1/namespaces/kube-system/pods/takeover")


async def test_rollout_creating_a_pod_in_its_namespace_is_carried_out(
    connect: Callable[[str], Stub], recorder: RecordingKube
) -> None:
    rollout = as_component(connect, "rollout")
    created = await rollout.Create(
        cluster_pb2.CreateRequest(ref=POD, object_json=orjson.dumps(pod_body()))
    )
    assert created.uid
    assert recorder.sent == [("POST", PODS)]


@pytest.mark.parametrize(
    ("patch", "allowed"),
    [
        pytest.param(
            {"metadata": {"labels": {"app": "evil"}}}, False, id="budget patches a pod's labels"
        ),
        pytest.param(
            {"metadata": {"annotations": {"kruise.io/related-pub": "web-pub"}}},
            True,
            id="budget sets kruise.io/related-pub",
        ),
    ],
)
async def test_budget_may_only_link_a_pod_to_its_budget(
    connect: Callable[[str], Stub],
    kube: KubeClient,
    recorder: RecordingKube,
    pod: dict[str, Any],
    patch: dict[str, Any],
    allowed: bool,
) -> None:
    budget = as_component(connect, "budget")
    request = cluster_pb2.PatchRequest(
        ref=POD,
        type=cluster_pb2.PATCH_TYPE_MERGE,
        patch=orjson.dumps(patch),
        preconditions=cluster_pb2.Preconditions(
            resource_version=pod["metadata"]["resourceVersion"]
        ),
    )
    if allowed:
        await budget.Patch(request)
        assert recorder.sent == [("PATCH", f"{PODS}/web-0")]
    else:
        code, details = await refused(budget.Patch(request))
        assert code == grpc.StatusCode.PERMISSION_DENIED
        assert "changes metadata.labels" in details
        assert recorder.sent == []
    now = (await kube.request_json("GET", f"{PODS}/web-0"))["metadata"]
    assert now["labels"] == {"app": "web"}
    assert (now.get("annotations") or {}).get("kruise.io/related-pub") == (
        "web-pub" if allowed else None
    )


async def test_a_mesh_certificate_naming_no_component_is_unauthenticated(
    connect: Callable[[str], Stub], recorder: RecordingKube, pod: dict[str, Any]
) -> None:
    stranger = connect("spiffe://kruise-mesh/stranger")
    code, details = await refused(stranger.Get(cluster_pb2.GetRequest(ref=POD)))
    assert code == grpc.StatusCode.UNAUTHENTICATED
    assert details == "the mesh's ClusterService needs a mesh client certificate"
    assert recorder.sent == []


async def test_the_gateways_own_identity_may_not_use_its_cluster_service(
    connect: Callable[[str], Stub], recorder: RecordingKube, pod: dict[str, Any]
) -> None:
    gateway = as_component(connect, "gateway")
    code, details = await refused(gateway.Get(cluster_pb2.GetRequest(ref=POD)))
    assert (code, details) == (grpc.StatusCode.PERMISSION_DENIED, "gateway may not get pods")
    assert recorder.sent == []


async def test_without_required_identity_the_union_still_refuses_kube_system(
    kube: KubeClient,
) -> None:
    """Plain TCP (loopback, local mode): no caller is known, nothing no service may do
    passes, the attack of issue 10 included."""
    recorder = RecordingKube(kube)
    servicer = ClusterApi(recorder, require_identity=False)  # type: ignore[arg-type]
    server = grpc.aio.server()
    add_to_server(server, servicer)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        stub = cluster_pb2_grpc.ClusterServiceStub(channel)
        ref = Ref(api_version="v1", kind="Pod", namespace="kube-system", name="takeover")
        body = orjson.dumps(pod_body("takeover", "kube-system"))
        code, details = await refused(
            stub.Create(cluster_pb2.CreateRequest(ref=ref, object_json=body))
        )
        assert code == grpc.StatusCode.PERMISSION_DENIED
        assert details.startswith("a caller without a mesh identity may not create pods")
        node = Ref(api_version="v1", kind="Node", name="node-1")
        code, details = await refused(stub.Delete(cluster_pb2.DeleteRequest(ref=node)))
        assert (code, details) == (
            grpc.StatusCode.PERMISSION_DENIED,
            "a caller without a mesh identity may not delete nodes",
        )
        assert recorder.sent == []
        created = await stub.Create(
            cluster_pb2.CreateRequest(ref=POD, object_json=orjson.dumps(pod_body()))
        )
        assert created.uid and recorder.sent == [("POST", PODS)]
    finally:
        await channel.close()
        await server.stop(grace=None)
