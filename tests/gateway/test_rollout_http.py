"""The rollout API's HTTP/JSON front: paths and query strings to RolloutService requests, the
replica's answers to JSON, gRPC codes to HTTP statuses, over a real port and real gRPC to
scripted rollout replicas (``rollout_replica``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import grpc
import pytest
from multidict import MultiDict
from yarl import URL

from kruise.rollout.v1 import rollout_pb2
from services.cli.procs import free_port
from services.gateway import rollout_http
from services.gateway.rollout_http import QueryError, batch_request, parse_int_or_percent
from tests.gateway.rollout_replica import Failure, RolloutMesh, rich_status

API = "/apis/rollout.kruise-mesh.io/v1"


@dataclass
class Http:
    mesh: RolloutMesh
    base: str
    session: aiohttp.ClientSession

    async def get(self, path: str, *, raw: bool = False) -> tuple[int, Any]:
        """Status and JSON body; ``raw`` sends the query exactly as written."""
        url = URL(self.base + path, encoded=True) if raw else self.base + path
        async with self.session.get(url) as response:
            assert response.content_type == "application/json", await response.text()
            return response.status, await response.json()

    def cloneset(self, namespace: str, name: str = "web") -> str:
        return f"{API}/namespaces/{namespace}/clonesets/{name}"


@pytest.fixture
async def http() -> AsyncIterator[Http]:
    async with RolloutMesh.start() as mesh:
        server = await rollout_http.start_rollout_http(route=mesh.route, port=0)
        try:
            async with aiohttp.ClientSession() as session:
                yield Http(mesh, f"http://127.0.0.1:{server.port}", session)
        finally:
            await server.stop()


def only_request(http: Http) -> tuple[str, Any]:
    (got,) = [g for r in http.mesh.replicas for g in r.got]
    return got


# ---- status ----------------------------------------------------------------------------------
async def test_status_is_get_rollout_status_as_json(http: Http):
    a, _ = http.mesh.replicas
    ns = http.mesh.owned_by(a)
    code, body = await http.get(http.cloneset(ns) + "?minResourceVersion=40")
    assert code == 200
    assert body == {
        "status": {
            "ref": {
                "apiVersion": "apps.kruise.io/v1alpha1",
                "kind": "CloneSet",
                "namespace": ns,
                "name": "web",
                "uid": "",
            },
            # zeros and empty values printed, int64 as strings (proto3 JSON)
            "generation": "0",
            "resourceVersion": "41",
            "paused": False,
            "partitionReplicas": 0,
            "heldNotReady": [],
            "batchComplete": False,
            "rolloutComplete": False,
            "summary": f"served by {a.address}",
        }
    }
    method, request = only_request(http)
    assert method == "GetRolloutStatus"
    assert request == rollout_pb2.GetRolloutStatusRequest(
        ref=rollout_pb2.WorkloadRef(
            api_version="apps.kruise.io/v1alpha1", kind="CloneSet", namespace=ns, name="web"
        ),
        min_resource_version="40",
    )


async def test_each_namespace_is_answered_by_its_owner(http: Http):
    a, b = http.mesh.replicas
    for replica in (a, b):
        code, body = await http.get(http.cloneset(http.mesh.owned_by(replica)))
        assert (code, body["status"]["summary"]) == (200, f"served by {replica.address}")
    assert (len(a.got), len(b.got)) == (1, 1)


# ---- batch -----------------------------------------------------------------------------------
async def test_batch_is_check_batch_as_json(http: Http):
    a, _ = http.mesh.replicas
    ns = http.mesh.owned_by(a)
    query = "?batch=50%25&failureThreshold=20%25&rolloutId=r-1&requireAvailable=true"
    code, body = await http.get(http.cloneset(ns) + "/batch" + query)
    assert code == 200
    assert (body["ready"], body["reason"], body["desiredUpdatedReplicas"]) == (
        False,
        "waiting for 1 ready",
        0,
    )
    assert body["status"]["summary"] == f"served by {a.address}"
    method, request = only_request(http)
    assert method == "CheckBatch"
    assert request.batch == rollout_pb2.IntOrPercent(percent="50%")
    assert request.failure_threshold == rollout_pb2.IntOrPercent(percent="20%")
    assert (request.rollout_id, request.require_available) == ("r-1", True)


async def test_a_raw_percent_in_the_url_is_read_as_a_percent(http: Http):
    ns = http.mesh.owned_by(http.mesh.replicas[0])
    code, _ = await http.get(http.cloneset(ns) + "/batch?batch=20%&requireAvailable=true", raw=True)
    assert code == 200
    assert only_request(http)[1].batch == rollout_pb2.IntOrPercent(percent="20%")


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        pytest.param(
            "desired=3", rollout_pb2.CheckBatchRequest(desired_updated_replicas=3), id="desired"
        ),
        pytest.param(
            "batch=5",
            rollout_pb2.CheckBatchRequest(batch=rollout_pb2.IntOrPercent(count=5)),
            id="batch count",
        ),
        pytest.param(
            "batch=0%25",
            rollout_pb2.CheckBatchRequest(batch=rollout_pb2.IntOrPercent(percent="0%")),
            id="batch percent",
        ),
        pytest.param(
            "desired=0&requireAvailable=FALSE&failureThreshold=2",
            rollout_pb2.CheckBatchRequest(
                desired_updated_replicas=0,
                failure_threshold=rollout_pb2.IntOrPercent(count=2),
            ),
            id="zero desired, threshold count",
        ),
        pytest.param("", rollout_pb2.CheckBatchRequest(), id="no target: the replica's to judge"),
    ],
)
def test_batch_queries(query: str, expected: rollout_pb2.CheckBatchRequest):
    parsed = batch_request("ns", "web", MultiDict(URL(f"/x?{query}").query))
    parsed.ClearField("ref")
    assert parsed == expected
    assert parsed.WhichOneof("target") == expected.WhichOneof("target")


BAD_QUERIES = [
    pytest.param("batch=abc", "batch", id="batch not a number"),
    pytest.param("batch=-1", "batch", id="negative batch"),
    pytest.param("batch=1.5", "batch", id="fractional batch"),
    pytest.param("batch=50%25%25", "batch", id="batch with two percent signs"),
    pytest.param("batch=99999999999", "batch", id="batch beyond int32"),
    pytest.param("desired=abc", "desired", id="desired not a number"),
    pytest.param("desired=5%25", "desired", id="desired as a percent"),
    pytest.param("failureThreshold=x", "failureThreshold", id="bad failure threshold"),
    pytest.param("requireAvailable=maybe", "requireAvailable", id="requireAvailable maybe"),
    pytest.param("requireavailable=true", "requireavailable", id="misspelt parameter"),
    pytest.param("batch=1&batch=2", "batch", id="batch twice"),
    pytest.param("desired=1&batch=2", "batch", id="desired and batch"),
]


@pytest.mark.parametrize(("query", "field"), BAD_QUERIES)
async def test_a_bad_query_parameter_is_a_400_naming_it(http: Http, query: str, field: str):
    ns = http.mesh.owned_by(http.mesh.replicas[0])
    code, body = await http.get(f"{http.cloneset(ns)}/batch?{query}")
    assert code == 400
    assert (body["kind"], body["status"], body["code"], body["reason"]) == (
        "Status",
        "Failure",
        400,
        "BadRequest",
    )
    assert field in body["message"]
    assert body["details"]["grpcCode"] == "INVALID_ARGUMENT"
    assert [c["field"] for c in body["details"]["causes"]] == [field]
    assert all(not r.got for r in http.mesh.replicas), "nothing asked of a replica"


async def test_an_unknown_status_parameter_is_a_400(http: Http):
    code, body = await http.get(http.cloneset("team-a") + "?watch=true")
    assert (code, body["details"]["causes"][0]["field"]) == (400, "watch")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0", rollout_pb2.IntOrPercent(count=0)),
        ("2147483647", rollout_pb2.IntOrPercent(count=2**31 - 1)),
        ("100%", rollout_pb2.IntOrPercent(percent="100%")),
        ("150%", rollout_pb2.IntOrPercent(percent="150%")),  # its range is the replica's
    ],
)
def test_int_or_percent(text: str, expected: rollout_pb2.IntOrPercent):
    assert parse_int_or_percent("batch", text) == expected


@pytest.mark.parametrize("text", ["", "%", "5 ", "+5", "0x10", "2147483648", "50 %"])
def test_not_int_or_percent(text: str):
    with pytest.raises(QueryError) as raised:
        parse_int_or_percent("batch", text)
    assert raised.value.field == "batch"


# ---- errors ----------------------------------------------------------------------------------
CODES = [
    pytest.param(grpc.StatusCode.NOT_FOUND, 404, "NotFound", id="NOT_FOUND"),
    pytest.param(grpc.StatusCode.INVALID_ARGUMENT, 400, "BadRequest", id="INVALID_ARGUMENT"),
    pytest.param(grpc.StatusCode.FAILED_PRECONDITION, 409, "Conflict", id="FAILED_PRECONDITION"),
    pytest.param(grpc.StatusCode.ABORTED, 409, "Conflict", id="ABORTED"),
    pytest.param(grpc.StatusCode.UNAVAILABLE, 503, "ServiceUnavailable", id="UNAVAILABLE"),
    pytest.param(grpc.StatusCode.DEADLINE_EXCEEDED, 504, "Timeout", id="DEADLINE_EXCEEDED"),
    pytest.param(grpc.StatusCode.INTERNAL, 500, "InternalError", id="INTERNAL"),
    pytest.param(grpc.StatusCode.PERMISSION_DENIED, 403, "Forbidden", id="PERMISSION_DENIED"),
    pytest.param(grpc.StatusCode.UNAUTHENTICATED, 401, "Unauthorized", id="UNAUTHENTICATED"),
    pytest.param(grpc.StatusCode.UNIMPLEMENTED, 500, "InternalError", id="UNIMPLEMENTED"),
]


@pytest.mark.parametrize(("grpc_code", "status", "reason"), CODES)
@pytest.mark.parametrize("path", ["", "/batch?desired=2"], ids=["status", "batch"])
async def test_each_grpc_code_maps_to_its_http_status(http: Http, path, grpc_code, status, reason):
    a, _ = http.mesh.replicas
    a.fail = Failure(grpc_code, "as the replica said it")
    ns = http.mesh.owned_by(a)
    code, body = await http.get(http.cloneset(ns) + path)
    assert code == status
    message = "as the replica said it"
    if grpc_code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        # without rich details these may be the transport's: the replica is named
        message = f"rollout replica {a.address} (namespace {ns}): {message}"
    assert body == {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "code": status,
        "reason": reason,
        "message": message,
        "details": {"grpcCode": grpc_code.name},
    }


async def test_rich_details_become_error_info_and_causes(http: Http):
    a, _ = http.mesh.replicas
    sent = rich_status(
        grpc.StatusCode.FAILED_PRECONDITION,
        "updateRevision is web-3, not web-2",
        reason="UPDATE_REVISION_CHANGED",
        field="expected_update_revision",
    )
    a.fail = Failure(grpc.StatusCode.FAILED_PRECONDITION, sent.message, rich=sent)
    code, body = await http.get(http.cloneset(http.mesh.owned_by(a)) + "/batch?batch=1")
    assert code == 409
    assert body["message"] == "updateRevision is web-3, not web-2"
    assert body["details"] == {
        "grpcCode": "FAILED_PRECONDITION",
        "errorInfo": {
            "reason": "UPDATE_REVISION_CHANGED",
            "domain": "rollout.kruise-mesh.io",
            "metadata": {"field": "expected_update_revision"},
        },
        "causes": [
            {
                "reason": "UPDATE_REVISION_CHANGED",
                "field": "expected_update_revision",
                "message": "updateRevision is web-3, not web-2",
            }
        ],
    }


async def test_no_rollout_replica_is_a_503_naming_the_namespace(http: Http):
    http.mesh.router.set_members("rollout", [])
    code, body = await http.get(http.cloneset("team-a"))
    assert (code, body["message"]) == (503, "no rollout replica is available for namespace team-a")


async def test_an_unreachable_replica_is_a_503_naming_it(http: Http):
    dead = f"127.0.0.1:{free_port()}"
    http.mesh.router.set_members("rollout", [dead])
    code, body = await http.get(http.cloneset("team-a") + "/batch?batch=1")
    assert code == 503
    assert body["message"].startswith(f"rollout replica {dead} (namespace team-a): ")


async def test_a_slow_replica_is_a_504_naming_it(http: Http, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(rollout_http, "HTTP_TIMEOUT_S", 0.2)
    a, _ = http.mesh.replicas
    a.delay = 2.0
    code, body = await http.get(http.cloneset(http.mesh.owned_by(a)))
    assert (code, body["reason"]) == (504, "Timeout")
    assert body["message"].startswith(f"rollout replica {a.address} ")


# ---- the rest of the server ------------------------------------------------------------------
@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/apis/rollout.kruise-mesh.io/v1/namespaces/team-a",
        "/apis/rollout.kruise-mesh.io/v1/namespaces/team-a/deployments/web",
        "/apis/rollout.kruise-mesh.io/v1/namespaces/team-a/clonesets/web/pods",
    ],
)
async def test_an_unknown_path_is_a_404(http: Http, path: str):
    code, body = await http.get(path)
    assert (code, body["reason"], body["message"]) == (404, "NotFound", f"no such path {path}")


async def test_only_get_is_served(http: Http):
    async with http.session.post(http.base + http.cloneset("team-a")) as response:
        assert response.status == 405
        assert (await response.json())["reason"] == "MethodNotAllowed"


async def test_healthz(http: Http):
    async with http.session.get(http.base + "/healthz") as response:
        assert (response.status, await response.text()) == (200, "ok")


async def test_a_surprise_is_a_500_without_a_traceback(http: Http, monkeypatch: pytest.MonkeyPatch):
    def broken(*_: Any, **__: Any) -> Any:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(rollout_http, "to_json", broken)
    code, body = await http.get(http.cloneset(http.mesh.owned_by(http.mesh.replicas[0])))
    assert (code, body["reason"], body["message"]) == (
        500,
        "InternalError",
        "internal error in the gateway",
    )
    assert "secret" not in str(body)
