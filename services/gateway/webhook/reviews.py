"""AdmissionReview on the wire: typed shapes, validation of requests, building of responses.

The API server POSTs an ``AdmissionReview`` (``admission.k8s.io/v1``; ``v1beta1`` is
accepted too and answered in the same version). ``parse_review`` checks the fields the
gateway routes by and returns the parsed body typed as ``ReviewRequest``; everything else
(``object``, ``oldObject``, ``options``) travels on untouched inside the raw body.
``build_response`` is the one place an ``AdmissionResponse`` from a service becomes the
``AdmissionReview`` the API server reads back.

Errors::

    services.kit.errors.Invalid
    └── InvalidReview          the body is not an AdmissionReview we can route (HTTP 400)
"""

from __future__ import annotations

import base64
from typing import Any, Literal, NotRequired, Required, TypedDict, cast

import orjson

from kruise.common.v1 import mesh_pb2
from services.kit import errors

Operation = Literal["CREATE", "UPDATE", "DELETE", "CONNECT"]
ApiVersion = Literal["admission.k8s.io/v1", "admission.k8s.io/v1beta1"]
PatchType = Literal["JSONPatch"]

API_VERSIONS: tuple[ApiVersion, ...] = ("admission.k8s.io/v1", "admission.k8s.io/v1beta1")
OPERATIONS: dict[str, int] = {
    "CREATE": mesh_pb2.OPERATION_CREATE,
    "UPDATE": mesh_pb2.OPERATION_UPDATE,
    "DELETE": mesh_pb2.OPERATION_DELETE,
    "CONNECT": mesh_pb2.OPERATION_CONNECT,
}


class GroupVersionKind(TypedDict):
    group: str
    version: str
    kind: str


class GroupVersionResource(TypedDict):
    group: str
    version: str
    resource: str


class UserInfo(TypedDict, total=False):
    username: str
    uid: str
    groups: list[str]
    extra: dict[str, list[str]]


class RequestPayload(TypedDict, total=False):
    """``AdmissionReview.request``; the gateway reads only the header fields."""

    uid: Required[str]
    kind: Required[GroupVersionKind]
    resource: Required[GroupVersionResource]
    operation: Required[Operation]
    subResource: str
    requestKind: GroupVersionKind
    requestResource: GroupVersionResource
    requestSubResource: str
    name: str
    namespace: str  # absent or empty for cluster-scoped objects
    userInfo: UserInfo
    object: dict[str, Any] | None
    oldObject: dict[str, Any] | None
    dryRun: bool
    options: dict[str, Any] | None


class ReviewRequest(TypedDict):
    apiVersion: ApiVersion
    kind: Literal["AdmissionReview"]
    request: RequestPayload


class StatusPayload(TypedDict, total=False):
    """A ``metav1.Status`` carried by a denial."""

    metadata: dict[str, Any]
    code: int
    reason: str
    message: str


class ResponsePayload(TypedDict):
    uid: str
    allowed: bool
    status: NotRequired[StatusPayload]
    patch: NotRequired[str]  # base64 of a JSONPatch array
    patchType: NotRequired[PatchType]
    warnings: NotRequired[list[str]]
    auditAnnotations: NotRequired[dict[str, str]]


class ReviewResponse(TypedDict):
    apiVersion: ApiVersion
    kind: Literal["AdmissionReview"]
    response: ResponsePayload


class InvalidReview(errors.Invalid):
    """The body is not an AdmissionReview the gateway can route; answered with HTTP 400."""

    http_status = 400


def _field(obj: dict[str, Any], key: str, where: str) -> Any:
    if key not in obj or obj[key] is None:
        raise InvalidReview(f"{where}.{key} is missing")
    return obj[key]


def _string(obj: dict[str, Any], key: str, where: str, *, required: bool) -> str:
    value = obj.get(key)
    if value is None:
        if required:
            raise InvalidReview(f"{where}.{key} is missing")
        return ""
    if not isinstance(value, str):
        raise InvalidReview(f"{where}.{key} must be a string, got {type(value).__name__}")
    if required and not value:
        raise InvalidReview(f"{where}.{key} is empty")
    return value


def _group_version(obj: dict[str, Any], key: str, last: str, where: str) -> None:
    value = _field(obj, key, where)
    path = f"{where}.{key}"
    if not isinstance(value, dict):
        raise InvalidReview(f"{path} must be an object, got {type(value).__name__}")
    _string(value, "group", path, required=False)
    _string(value, "version", path, required=True)
    _string(value, last, path, required=True)


def parse_review(body: bytes) -> ReviewRequest:
    """Parse and check an AdmissionReview request body; raise ``InvalidReview`` if unusable.

    Checks what routing and answering need: a JSON object, ``apiVersion``
    admission.k8s.io/v1 (or v1beta1), ``kind`` AdmissionReview, and a ``request`` with
    ``uid``, ``kind``, ``resource`` and ``operation``; the optional header fields
    (``namespace``, ``name``, ``subResource``, ``dryRun``, ``userInfo.username``) must have
    the right types when present. Pure; no I/O.
    """
    if not body.strip():
        raise InvalidReview("body is empty")
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise InvalidReview(f"body is not valid JSON: {e}") from e
    if not isinstance(parsed, dict):
        raise InvalidReview(f"body must be a JSON object, got {type(parsed).__name__}")
    api_version = parsed.get("apiVersion")
    if api_version not in API_VERSIONS:
        raise InvalidReview(f"apiVersion must be admission.k8s.io/v1, got {api_version!r}")
    if parsed.get("kind") != "AdmissionReview":
        raise InvalidReview(f"kind must be AdmissionReview, got {parsed.get('kind')!r}")
    request = _field(parsed, "request", "body")
    if not isinstance(request, dict):
        raise InvalidReview(f"request must be an object, got {type(request).__name__}")
    _string(request, "uid", "request", required=True)
    _group_version(request, "kind", "kind", "request")
    _group_version(request, "resource", "resource", "request")
    operation = _string(request, "operation", "request", required=True)
    if operation not in OPERATIONS:
        raise InvalidReview(
            f"request.operation must be one of CREATE, UPDATE, DELETE, CONNECT, got {operation!r}"
        )
    for key in ("namespace", "name", "subResource"):
        _string(request, key, "request", required=False)
    dry_run = request.get("dryRun")
    if dry_run is not None and not isinstance(dry_run, bool):
        raise InvalidReview(f"request.dryRun must be a boolean, got {type(dry_run).__name__}")
    user = request.get("userInfo")
    if user is not None:
        if not isinstance(user, dict):
            raise InvalidReview(f"request.userInfo must be an object, got {type(user).__name__}")
        _string(user, "username", "request.userInfo", required=False)
    return cast(ReviewRequest, parsed)


def admission_request(
    review: ReviewRequest,
    *,
    webhook: str,
    body: bytes,
) -> mesh_pb2.AdmissionRequest:
    """The header fields of a checked review as an ``AdmissionRequest``; ``body`` rides along.

    ``body`` must be the raw bytes ``review`` was parsed from: the service parses them
    once if it needs ``object``/``oldObject``. Pure; no I/O.
    """
    request = review["request"]
    kind = request["kind"]
    resource = request["resource"]
    return mesh_pb2.AdmissionRequest(
        webhook=webhook,
        uid=request["uid"],
        operation=OPERATIONS[request["operation"]],  # type: ignore[arg-type]
        kind=mesh_pb2.GroupVersionKind(
            group=kind.get("group") or "", version=kind["version"], kind=kind["kind"]
        ),
        resource=mesh_pb2.GroupVersionResource(
            group=resource.get("group") or "",
            version=resource["version"],
            resource=resource["resource"],
        ),
        sub_resource=request.get("subResource") or "",
        namespace=request.get("namespace") or "",
        name=request.get("name") or "",
        dry_run=bool(request.get("dryRun")),
        username=(request.get("userInfo") or {}).get("username") or "",
        review_json=body,
    )


def response_payload(uid: str, answer: mesh_pb2.AdmissionResponse) -> ResponsePayload:
    """The ``response`` of an AdmissionReview for a service's answer. Pure; no I/O.

    A denial carries ``status`` with the code, reason and message exactly as the service
    gave them (a zero code or empty string is left out; the API server then reports 400).
    A patch is sent only with an allowing answer, base64-encoded, as ``JSONPatch``.
    """
    payload: ResponsePayload = {"uid": uid, "allowed": answer.allowed}
    if not answer.allowed:
        status: StatusPayload = {"metadata": {}}
        if answer.code:
            status["code"] = answer.code
        if answer.reason:
            status["reason"] = answer.reason
        if answer.message:
            status["message"] = answer.message
        payload["status"] = status
    elif answer.patch:
        payload["patch"] = base64.b64encode(answer.patch).decode("ascii")
        payload["patchType"] = "JSONPatch"
    if answer.warnings:
        payload["warnings"] = list(answer.warnings)
    if answer.audit_annotations:
        payload["auditAnnotations"] = dict(answer.audit_annotations)
    return payload


def build_response(review: ReviewRequest, answer: mesh_pb2.AdmissionResponse) -> bytes:
    """The AdmissionReview body answering ``review``: same apiVersion, the request's uid."""
    response: ReviewResponse = {
        "apiVersion": review["apiVersion"],
        "kind": "AdmissionReview",
        "response": response_payload(review["request"]["uid"], answer),
    }
    return orjson.dumps(response)
