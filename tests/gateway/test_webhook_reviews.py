"""reviews.parse_review / build_response and the server's pure helpers, table-driven.

build_response is checked against what a real kube-apiserver accepted: the
``webhookResponse`` of every captured AdmissionReview fixture.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import orjson
import pytest

from kruise.common.v1 import mesh_pb2
from services.gateway.webhook.reviews import (
    InvalidReview,
    admission_request,
    build_response,
    parse_review,
)
from services.gateway.webhook.server import hop_deadline, parse_go_duration
from tests.fixtures import REAL_APISERVER

FIXTURES = REAL_APISERVER
REVIEW_FILES = sorted((FIXTURES / "admission").glob("*.json")) + sorted(
    (FIXTURES / "webhook-mutate").glob("*mutating-review-and-response.json")
)
pytestmark = pytest.mark.skipif(not REVIEW_FILES, reason="real-apiserver fixtures not present")

VALID = {
    "apiVersion": "admission.k8s.io/v1",
    "kind": "AdmissionReview",
    "request": {
        "uid": "u-1",
        "kind": {"group": "", "version": "v1", "kind": "Pod"},
        "resource": {"group": "", "version": "v1", "resource": "pods"},
        "operation": "CREATE",
        "namespace": "ns",
    },
}


def mutated(**changes: Any) -> bytes:
    """VALID with request fields replaced (None deletes); ``top_`` names a top-level key."""
    review: dict[str, Any] = orjson.loads(orjson.dumps(VALID))
    for key, value in changes.items():
        target = review if key.startswith("top_") else review["request"]
        key = key.removeprefix("top_")
        if value is None:
            target.pop(key, None)
        else:
            target[key] = value
    return orjson.dumps(review)


def answer_for(webhook_response: dict[str, Any]) -> mesh_pb2.AdmissionResponse:
    """The AdmissionResponse a service would send to get ``webhook_response`` back."""
    response = webhook_response["response"]
    status = response.get("status", {})
    return mesh_pb2.AdmissionResponse(
        allowed=response["allowed"],
        code=status.get("code", 0),
        reason=status.get("reason", ""),
        message=status.get("message", ""),
        patch=base64.b64decode(response["patch"]) if "patch" in response else b"",
        warnings=response.get("warnings", []),
        audit_annotations=response.get("auditAnnotations", {}),
    )


@pytest.mark.parametrize("path", REVIEW_FILES, ids=lambda p: p.name)
def test_build_response_matches_what_the_apiserver_accepted(path: Path) -> None:
    captured = orjson.loads(path.read_bytes())
    body = orjson.dumps(captured["admissionReview"])
    review = parse_review(body)

    built = orjson.loads(build_response(review, answer_for(captured["webhookResponse"])))

    expected = captured["webhookResponse"]
    if "status" in built["response"]:  # we always send status.metadata {} with a denial
        assert built["response"]["status"].pop("metadata") == {}
        if not built["response"]["status"]:
            del built["response"]["status"]
    assert built == expected


@pytest.mark.parametrize("path", REVIEW_FILES, ids=lambda p: p.name)
def test_admission_request_carries_the_header_fields_and_raw_body(path: Path) -> None:
    body = orjson.dumps(orjson.loads(path.read_bytes())["admissionReview"])
    request = orjson.loads(body)["request"]

    built = admission_request(parse_review(body), webhook="validate-pods", body=body)

    assert built.webhook == "validate-pods"
    assert built.uid == request["uid"]
    assert mesh_pb2.Operation.Name(built.operation) == "OPERATION_" + request["operation"]
    assert (built.kind.group, built.kind.version, built.kind.kind) == tuple(
        request["kind"][k] for k in ("group", "version", "kind")
    )
    assert built.resource.resource == request["resource"]["resource"]
    assert built.sub_resource == request.get("subResource", "")
    assert built.namespace == request.get("namespace", "")
    assert built.name == request.get("name", "")
    assert built.dry_run == request["dryRun"]
    assert built.username == request["userInfo"]["username"]
    assert built.review_json is body or built.review_json == body


@pytest.mark.parametrize(
    ("body", "message"),
    [
        pytest.param(b"", "body is empty", id="empty body"),
        pytest.param(b"  \n", "body is empty", id="whitespace body"),
        pytest.param(b"{not json", "body is not valid JSON: ", id="malformed JSON"),
        pytest.param(b"[1, 2]", "body must be a JSON object, got list", id="array"),
        pytest.param(
            mutated(top_apiVersion="admission.k8s.io/v2"),
            "apiVersion must be admission.k8s.io/v1, got 'admission.k8s.io/v2'",
            id="wrong apiVersion",
        ),
        pytest.param(
            mutated(top_apiVersion=None),
            "apiVersion must be admission.k8s.io/v1, got None",
            id="no apiVersion",
        ),
        pytest.param(
            mutated(top_kind="Pod"), "kind must be AdmissionReview, got 'Pod'", id="wrong kind"
        ),
        pytest.param(mutated(top_request=None), "body.request is missing", id="no request"),
        pytest.param(mutated(top_request=[]), "request must be an object, got list", id="list"),
        pytest.param(mutated(uid=None), "request.uid is missing", id="no uid"),
        pytest.param(mutated(uid=""), "request.uid is empty", id="empty uid"),
        pytest.param(mutated(uid=7), "request.uid must be a string, got int", id="numeric uid"),
        pytest.param(mutated(kind=None), "request.kind is missing", id="no kind"),
        pytest.param(
            mutated(kind={"group": "", "version": "v1"}), "request.kind.kind is missing", id="gvk"
        ),
        pytest.param(mutated(resource=None), "request.resource is missing", id="no resource"),
        pytest.param(
            mutated(resource="pods"),
            "request.resource must be an object, got str",
            id="resource as string",
        ),
        pytest.param(mutated(operation=None), "request.operation is missing", id="no operation"),
        pytest.param(
            mutated(operation="PATCH"),
            "request.operation must be one of CREATE, UPDATE, DELETE, CONNECT, got 'PATCH'",
            id="unknown operation",
        ),
        pytest.param(
            mutated(namespace=3), "request.namespace must be a string, got int", id="namespace"
        ),
        pytest.param(
            mutated(dryRun="yes"), "request.dryRun must be a boolean, got str", id="dryRun"
        ),
        pytest.param(
            mutated(userInfo="bob"), "request.userInfo must be an object, got str", id="userInfo"
        ),
    ],
)
def test_parse_review_rejects_with_a_precise_message(body: bytes, message: str) -> None:
    with pytest.raises(InvalidReview) as raised:
        parse_review(body)
    assert str(raised.value).startswith(message)
    assert raised.value.http_status == 400


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({}, id="namespaced"),
        pytest.param({"namespace": None}, id="cluster-scoped, no namespace"),
        pytest.param({"namespace": ""}, id="cluster-scoped, empty namespace"),
        pytest.param({"top_apiVersion": "admission.k8s.io/v1beta1"}, id="v1beta1"),
    ],
)
def test_parse_review_accepts(changes: dict[str, Any]) -> None:
    review = parse_review(mutated(**changes))
    answer = orjson.loads(build_response(review, mesh_pb2.AdmissionResponse(allowed=True)))
    assert answer["apiVersion"] == review["apiVersion"]
    assert answer["response"] == {"uid": "u-1", "allowed": True}


def test_denial_keeps_the_code_and_drops_the_patch() -> None:
    review = parse_review(mutated())
    answer = mesh_pb2.AdmissionResponse(
        allowed=False, code=429, reason="TooManyRequests", message="budget exhausted", patch=b"[]"
    )
    assert orjson.loads(build_response(review, answer))["response"] == {
        "uid": "u-1",
        "allowed": False,
        "status": {
            "metadata": {},
            "code": 429,
            "reason": "TooManyRequests",
            "message": "budget exhausted",
        },
    }


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("10s", 10.0),
        ("1m0s", 60.0),
        ("1.5s", 1.5),
        ("500ms", 0.5),
        ("1h2m3s", 3723.0),
        ("10", None),
        ("s", None),
        ("10s junk", None),
        ("", None),
    ],
)
def test_parse_go_duration(text: str, seconds: float | None) -> None:
    assert parse_go_duration(text) == seconds


@pytest.mark.parametrize(
    ("query", "deadline"),
    [
        pytest.param("10s", 7.5, id="apiserver default 10s → 7.5"),
        pytest.param("30s", 22.5, id="30s → 22.5"),
        pytest.param("1s", 0.75, id="1s → 0.75"),
        pytest.param("5m", 25.0, id="capped"),
        pytest.param(None, 8.0, id="no query → default"),
        pytest.param("junk", 8.0, id="malformed → default"),
        pytest.param("0s", 8.0, id="zero → default"),
    ],
)
def test_hop_deadline(query: str | None, deadline: float) -> None:
    assert hop_deadline(query, fraction=0.75, default=8.0, cap=25.0) == pytest.approx(deadline)
