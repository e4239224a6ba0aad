"""The HTTPS webhook server and the hop to a service replica, over real sockets.

A small grpc.aio MeshService stands in for a feature service (it is the peer, not the
thing under test): it allows, patches ``mutate-*`` reviews, denies pod
``deny429-pod`` with 429, stalls pods named ``slow-*``, and echoes the uid it saw in an
audit annotation so that call_id matching can be checked. Reviews are the AdmissionReviews
a real kube-apiserver sent (``shared/fixtures/real-apiserver``), POSTed over TLS to the path
deploy/webhooks.yaml sends each to (``paths.WEBHOOK_PATHS``; tests/gateway/test_webhook_paths.py
covers what a path refuses).
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import io
import random
import ssl
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import orjson
import pytest
from prometheus_client import REGISTRY

from kruise.common.v1 import mesh_pb2, mesh_pb2_grpc
from services.cli.procs import free_port
from services.gateway.webhook.forward import AdmissionForwarder, Mode
from services.gateway.webhook.paths import WEBHOOK_PATHS, WebhookPath, check_review
from services.gateway.webhook.reviews import InvalidReview, parse_review
from services.gateway.webhook.server import WebhookServer, start_webhook_server
from services.kit import certs
from services.kit.rpc import Server, create_server
from tests.fixtures import REAL_APISERVER

FIXTURES = REAL_APISERVER / "admission"
MUTATING = sorted(FIXTURES.glob("*.mutating.json"))
pytestmark = pytest.mark.skipif(not MUTATING, reason="real-apiserver fixtures not present")

PATCH = [{"op": "add", "path": "/metadata/annotations/mesh.kruise.io~1seen", "value": "yes"}]


def load(name: str) -> dict[str, Any]:
    captured: dict[str, Any] = orjson.loads((FIXTURES / name).read_bytes())
    return captured


def mutating_path(review: dict[str, Any]) -> str | None:
    """The first mutating path of deploy/webhooks.yaml that accepts ``review``, if any."""
    parsed = parse_review(orjson.dumps(review))
    for path, accepts in WEBHOOK_PATHS.items():
        if "/mutate-" not in path:
            continue
        try:
            check_review(parsed, accepts)
        except InvalidReview:
            continue
        return path
    return None


# ---- the stand-in feature service ------------------------------------------------------------
def decide(request: mesh_pb2.AdmissionRequest) -> mesh_pb2.AdmissionResponse:
    answer = mesh_pb2.AdmissionResponse(call_id=request.call_id, allowed=True)
    answer.audit_annotations["seen-uid"] = request.uid
    if request.name == "deny429-pod":
        answer.allowed = False
        answer.code = 429
        answer.reason = "TooManyRequests"
        answer.message = f"pod {request.name} is protected"
    elif request.webhook.startswith("mutate-"):
        answer.patch = orjson.dumps(PATCH)
    return answer


class StandIn(mesh_pb2_grpc.MeshServiceServicer):
    def __init__(self) -> None:
        self.streams = 0
        self.unary = 0
        self.streamed = 0
        self.raw_bodies: list[bytes] = []

    async def _answer(self, request: mesh_pb2.AdmissionRequest) -> mesh_pb2.AdmissionResponse:
        self.raw_bodies.append(request.review_json)
        if request.name.startswith("slow-"):
            await asyncio.sleep(30)
        return decide(request)

    async def Review(self, request: Any, context: Any) -> mesh_pb2.AdmissionResponse:
        self.unary += 1
        return await self._answer(request)

    async def ReviewStream(
        self, request_iterator: Any, context: Any
    ) -> AsyncIterator[mesh_pb2.AdmissionAnswers]:
        self.streams += 1
        answers: asyncio.Queue[mesh_pb2.AdmissionResponse | None] = asyncio.Queue()
        tasks: set[asyncio.Task[None]] = set()

        async def answer(request: mesh_pb2.AdmissionRequest) -> None:
            await asyncio.sleep(random.random() * 0.003)  # answer out of order
            await answers.put(await self._answer(request))

        async def read() -> None:
            async for batch in request_iterator:
                for request in batch.requests:
                    task = asyncio.create_task(answer(request))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
            await asyncio.gather(*tasks, return_exceptions=True)
            await answers.put(None)

        reader = asyncio.create_task(read())
        try:
            while (response := await answers.get()) is not None:
                self.streamed += 1
                yield mesh_pb2.AdmissionAnswers(responses=[response])
        finally:
            reader.cancel()
            for task in list(tasks):
                task.cancel()

    async def Sync(self, request_iterator: Any, context: Any) -> AsyncIterator[mesh_pb2.SyncAck]:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "not in this stand-in")
        yield mesh_pb2.SyncAck()

    async def GetReplicaStatus(self, request: Any, context: Any) -> Any:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "not in this stand-in")

    async def ListCachedObjects(self, request: Any, context: Any) -> Any:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "not in this stand-in")


async def start_stand_in(servicer: StandIn, *, port: int = 0) -> Server:
    def register(server: grpc.aio.Server) -> None:
        mesh_pb2_grpc.add_MeshServiceServicer_to_server(servicer, server)

    return await create_server(
        register=[register], service_names=["kruise.common.v1.MeshService"], port=port
    )


# ---- fixtures ------------------------------------------------------------------------------
@dataclass
class Tls:
    cert_file: str
    key_file: str
    client: ssl.SSLContext


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Tls:
    ca = certs.generate_ca(common_name="webhook-test-ca")
    pair = certs.issue_serving_cert(ca=ca, hosts=["kruise-mesh-webhook.kruise-mesh.svc"])
    directory = tmp_path_factory.mktemp("tls")
    cert_file, key_file = certs.write_pair(directory, "tls", pair)
    client = ssl.create_default_context(cadata=ca.cert_pem.decode())
    return Tls(cert_file=str(cert_file), key_file=str(key_file), client=client)


@dataclass
class Stack:
    servicer: StandIn
    replica: Server
    forwarder: AdmissionForwarder
    webhook: WebhookServer
    http: aiohttp.ClientSession

    @property
    def base(self) -> str:
        return f"https://127.0.0.1:{self.webhook.port}"

    async def post(
        self, path: str, body: bytes, *, content_type: str = "application/json"
    ) -> tuple[int, dict[str, Any]]:
        data = io.BytesIO(body) if len(body) > 1024 * 1024 else body
        async with self.http.post(
            self.base + path, data=data, headers={"Content-Type": content_type}
        ) as response:
            return response.status, orjson.loads(await response.read())


async def make_stack(
    tls: Tls,
    *,
    mode: Mode,
    route: Callable[[str, str], str | None] | None = None,
    max_stream_age: float = 300.0,
    streams: int = 1,
    paths: Mapping[str, WebhookPath] = WEBHOOK_PATHS,
) -> AsyncIterator[Stack]:
    servicer = StandIn()
    replica = await start_stand_in(servicer)
    address = f"127.0.0.1:{replica.port}"
    forwarder = AdmissionForwarder(
        route=route or (lambda service, namespace: address),
        mode=mode,
        max_stream_age=max_stream_age,
        streams=streams,
    )
    webhook = await start_webhook_server(
        host="127.0.0.1",
        port=0,
        cert_file=tls.cert_file,
        key_file=tls.key_file,
        forwarder=forwarder,
        paths=paths,
    )
    http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=tls.client, limit=256))
    try:
        yield Stack(servicer, replica, forwarder, webhook, http)
    finally:
        await http.close()
        await webhook.stop()
        await forwarder.close()
        await replica.stop(grace=None)


@pytest.fixture(params=["stream", "unary"])
async def stack(request: pytest.FixtureRequest, tls: Tls) -> AsyncIterator[Stack]:
    async for built in make_stack(tls, mode=request.param):
        yield built


@pytest.fixture
async def streamed(tls: Tls) -> AsyncIterator[Stack]:
    async for built in make_stack(tls, mode="stream"):
        yield built


@pytest.fixture(params=[1, 4], ids=["1 stream", "4 streams"])
async def multiplexed(request: pytest.FixtureRequest, tls: Tls) -> AsyncIterator[Stack]:
    async for built in make_stack(tls, mode="stream", streams=request.param):
        yield built


# ---- answers -------------------------------------------------------------------------------
@pytest.mark.parametrize("path", MUTATING, ids=lambda p: p.name)
async def test_fixture_reviews_are_patched_and_echo_the_uid(stack: Stack, path: Path) -> None:
    captured = orjson.loads(path.read_bytes())
    body = orjson.dumps(captured["admissionReview"])
    uid = captured["admissionReview"]["request"]["uid"]
    served = mutating_path(captured["admissionReview"])
    if served is None:  # e.g. a status update: no mutating webhook of ours is sent it
        status, answer = await stack.post("/placement/mutate-pods?timeout=10s", body)
        assert status == 400, answer
        assert stack.servicer.raw_bodies == []
        return

    status, answer = await stack.post(f"{served}?timeout=10s", body)

    assert status == 200
    assert answer["apiVersion"] == "admission.k8s.io/v1"
    assert answer["kind"] == "AdmissionReview"
    response = answer["response"]
    assert response["uid"] == uid
    assert response["allowed"] is True
    assert response["patchType"] == "JSONPatch"
    assert orjson.loads(base64.b64decode(response["patch"])) == PATCH
    assert response["auditAnnotations"] == {"seen-uid": uid}
    assert stack.servicer.raw_bodies[-1] == body  # forwarded as received, not re-serialized


async def test_denial_passes_the_status_code_through(stack: Stack) -> None:
    captured = load("webhook-deny-eviction-429.validating.json")
    body = orjson.dumps(captured["admissionReview"])
    before = REGISTRY.get_sample_value(
        "kruise_mesh_webhook_reviews_total",
        {"service": "budget", "webhook": "validate-pod-eviction", "allowed": "false"},
    )

    status, answer = await stack.post("/budget/validate-pod-eviction?timeout=10s", body)

    assert status == 200
    assert answer["response"] == {
        "uid": captured["webhookResponse"]["response"]["uid"],
        "allowed": False,
        "status": {
            "metadata": {},
            "code": 429,
            "reason": "TooManyRequests",
            "message": "pod deny429-pod is protected",
        },
        "auditAnnotations": {"seen-uid": captured["webhookResponse"]["response"]["uid"]},
    }
    after = REGISTRY.get_sample_value(
        "kruise_mesh_webhook_reviews_total",
        {"service": "budget", "webhook": "validate-pod-eviction", "allowed": "false"},
    )
    assert (after or 0) - (before or 0) == 1


async def test_v1beta1_is_answered_in_v1beta1_where_the_webhook_lists_it(
    tls: Tls, streamed: Stack
) -> None:
    review = load("pod-create-by-user.mutating.json")["admissionReview"]
    review["apiVersion"] = "admission.k8s.io/v1beta1"
    listed = dataclasses.replace(
        WEBHOOK_PATHS["/rollout/mutate-pods"], review_versions=("v1", "v1beta1")
    )

    async for stack in make_stack(tls, mode="stream", paths={listed.path: listed}):
        status, answer = await stack.post("/rollout/mutate-pods", orjson.dumps(review))
        assert status == 200
        assert answer["apiVersion"] == "admission.k8s.io/v1beta1"
        assert answer["response"]["allowed"] is True

    # deploy/ lists only v1: the API server never sends v1beta1 there
    status, answer = await streamed.post("/rollout/mutate-pods", orjson.dumps(review))
    assert status == 400
    assert "admissionReviewVersions [v1]" in answer["error"]


# ---- refusals: 4xx with a message, and the server keeps serving ----------------------------------
@pytest.mark.parametrize(
    ("path", "body", "content_type", "status", "message"),
    [
        pytest.param(
            "/budget/validate-pods",
            b"{nope",
            "application/json",
            400,
            "body is not valid JSON",
            id="malformed JSON",
        ),
        pytest.param(
            "/budget/validate-pods",
            b'{"apiVersion": "admission.k8s.io/v2", "kind": "AdmissionReview"}',
            "application/json",
            400,
            "apiVersion must be admission.k8s.io/v1, got 'admission.k8s.io/v2'",
            id="wrong apiVersion",
        ),
        pytest.param(
            "/budget/validate-pods", b"", "application/json", 400, "body is empty", id="empty body"
        ),
        pytest.param(
            "/budget/validate-pods",
            b"{}",
            "text/plain",
            415,
            "content type must be",
            id="wrong content type",
        ),
        pytest.param(
            "/budget/validate-pods",
            b" " * (3 * 1024 * 1024 + 1),
            "application/json",
            413,
            "exceeds the limit",
            id="huge body",
        ),
        pytest.param(
            "/scheduler/validate-pods",
            b"{}",
            "application/json",
            404,
            "unknown service",
            id="unknown service",
        ),
        pytest.param(
            "/budget/a/b",
            b"{}",
            "application/json",
            404,
            "no webhook at /budget/a/b",
            id="unknown path",
        ),
    ],
)
async def test_bad_requests_get_4xx_and_the_server_keeps_serving(
    streamed: Stack, path: str, body: bytes, content_type: str, status: int, message: str
) -> None:
    got, answer = await streamed.post(path, body, content_type=content_type)
    assert (got, message in answer["error"]) == (status, True), answer

    good = orjson.dumps(load("pod-create-by-user.mutating.json")["admissionReview"])
    got, answer = await streamed.post("/placement/mutate-pods", good)
    assert got == 200
    assert answer["response"]["allowed"] is True


async def test_huge_chunked_body_is_refused_with_413(streamed: Stack) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(64):
            yield b" " * 65536

    async with streamed.http.post(
        streamed.base + "/budget/validate-pods",
        data=chunks(),
        headers={"Content-Type": "application/json"},
    ) as response:
        assert response.status == 413
        assert "exceeds the limit" in orjson.loads(await response.read())["error"]


async def test_health_readiness_and_wrong_method(streamed: Stack) -> None:
    for path in ("/healthz", "/readyz"):
        async with streamed.http.get(streamed.base + path) as response:
            assert (response.status, await response.text()) == (200, "ok")
    async with streamed.http.get(streamed.base + "/budget/validate-pods") as response:
        assert response.status == 405
        assert "POST" in orjson.loads(await response.read())["error"]


# ---- failures: a 5xx-class answer, inside the deadline ---------------------------------------
async def test_replica_down_answers_5xx_quickly(tls: Tls) -> None:
    dead = f"127.0.0.1:{free_port()}"
    body = orjson.dumps(load("pod-create-by-user.mutating.json")["admissionReview"])
    modes: tuple[Mode, ...] = ("stream", "unary")
    for mode in modes:
        async for stack in make_stack(tls, mode=mode, route=lambda s, n: dead):
            started = time.monotonic()
            status, answer = await stack.post("/placement/mutate-pods?timeout=2s", body)
            elapsed = time.monotonic() - started

            assert status == 503, answer
            assert "placement (namespace capture)" in answer["error"]
            assert dead in answer["error"]
            assert elapsed < 1.5  # the hop deadline is 0.75 × 2 s


async def test_no_owner_answers_503_naming_service_and_namespace(tls: Tls) -> None:
    body = orjson.dumps(load("pod-create-by-user.mutating.json")["admissionReview"])
    async for stack in make_stack(tls, mode="stream", route=lambda s, n: None):
        status, answer = await stack.post("/budget/mutate-pods", body)
        assert status == 503
        assert "no budget (namespace capture) replica is available" in answer["error"]


async def test_slow_replica_answers_504_at_the_deadline(stack: Stack) -> None:
    review = load("pod-create-by-user.mutating.json")["admissionReview"]
    review["request"]["name"] = "slow-pod"
    started = time.monotonic()

    status, answer = await stack.post("/budget/mutate-pods?timeout=1s", orjson.dumps(review))

    elapsed = time.monotonic() - started
    assert status == 504, answer
    assert "did not answer within 0.75s" in answer["error"]
    assert 0.7 < elapsed < 1.0
    # the link survives a timed-out call
    review["request"]["name"] = "fast-pod"
    status, answer = await stack.post("/budget/mutate-pods", orjson.dumps(review))
    assert status == 200


async def test_stream_reopens_after_the_replica_restarts(tls: Tls) -> None:
    port = free_port()
    address = f"127.0.0.1:{port}"
    body = orjson.dumps(load("pod-create-by-user.mutating.json")["admissionReview"])
    async for stack in make_stack(tls, mode="stream", route=lambda s, n: address):
        first = await start_stand_in(stack.servicer, port=port)
        assert (await stack.post("/placement/mutate-pods", body))[0] == 200
        await first.stop(grace=None)

        status, _ = await stack.post("/placement/mutate-pods?timeout=1s", body)
        assert status == 503

        second = await start_stand_in(stack.servicer, port=port)
        try:
            deadline = time.monotonic() + 10
            while (await stack.post("/placement/mutate-pods?timeout=2s", body))[0] != 200:
                assert time.monotonic() < deadline, "stream was not reopened"
                await asyncio.sleep(0.1)
            assert stack.servicer.streams >= 2
        finally:
            await second.stop(grace=None)


# ---- the stream -------------------------------------------------------------------------------
async def test_200_concurrent_reviews_on_the_stream_are_matched(multiplexed: Stack) -> None:
    streamed = multiplexed
    template = load("pod-delete-graceful-by-user.validating.json")["admissionReview"]
    uids = [str(uuid.uuid4()) for _ in range(200)]

    async def one(i: int) -> tuple[str, int, dict[str, Any]]:
        review = orjson.loads(orjson.dumps(template))
        review["request"]["uid"] = uids[i]
        review["request"]["name"] = "deny429-pod" if i % 10 == 0 else f"pod-{i}"
        status, answer = await streamed.post("/budget/validate-pods", orjson.dumps(review))
        return uids[i], status, answer

    results = await asyncio.gather(*(one(i) for i in range(200)))

    denied = {uids[i] for i in range(0, 200, 10)}
    for uid, status, answer in results:
        assert status == 200
        response = answer["response"]
        assert response["uid"] == uid
        assert response["auditAnnotations"] == {"seen-uid": uid}  # the replica saw this review
        assert response["allowed"] is (uid not in denied)
    assert streamed.servicer.streams == streamed.forwarder.streams
    assert streamed.servicer.unary == 0
    assert streamed.servicer.streamed == 200


async def test_old_streams_are_replaced_without_failing_calls(tls: Tls) -> None:
    body = orjson.dumps(load("pod-create-by-user.mutating.json")["admissionReview"])
    async for stack in make_stack(tls, mode="stream", max_stream_age=0.05):
        for _ in range(4):
            answers = await asyncio.gather(
                *(stack.post("/placement/mutate-pods", body) for _ in range(20))
            )
            assert [status for status, _ in answers] == [200] * 20
            await asyncio.sleep(0.06)
        assert stack.servicer.streams >= 4
