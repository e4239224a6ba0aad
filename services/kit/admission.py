"""Admission on the service side: read the reviewed objects, answer with one ``Verdict``.

Pure decision code returns a ``Verdict`` (allow, allow with a JSONPatch, or deny
with an HTTP-style code); ``to_response`` is the one place it becomes the
``AdmissionResponse`` the gateway turns into an AdmissionReview. A review whose
objects cannot be read becomes a denial with code 400 in ``reviewed_objects``'s
caller, never an exception that reaches the stream.

    objects = reviewed_objects(request)      # raises BadReview (an errors.Invalid)
    verdict = decide(objects.object, ...)    # pure
    return to_response(request, verdict)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from kruise.common.v1 import mesh_pb2
from services.kit import errors

JsonPatch = list[dict[str, Any]]

# Operation names as kube-apiserver sends them, for messages and logs.
OPERATION_NAMES = {
    mesh_pb2.OPERATION_CREATE: "CREATE",
    mesh_pb2.OPERATION_UPDATE: "UPDATE",
    mesh_pb2.OPERATION_DELETE: "DELETE",
    mesh_pb2.OPERATION_CONNECT: "CONNECT",
}


class BadReview(errors.Invalid):
    """The review's ``object``/``oldObject`` cannot be read; answered as a denial with 400."""


@dataclass(frozen=True, slots=True)
class Verdict:
    """What an admission decision concluded. ``code`` is an HTTP status for a denial."""

    allowed: bool
    code: int = 0
    reason: str = ""
    message: str = ""
    patch: JsonPatch = field(default_factory=list)
    warnings: tuple[str, ...] = ()


ALLOWED = Verdict(allowed=True)


def allow(*, patch: JsonPatch | None = None, warnings: Sequence[str] = ()) -> Verdict:
    return Verdict(allowed=True, patch=patch or [], warnings=tuple(warnings))


def deny(message: str, *, code: int = 403, reason: str = "Forbidden") -> Verdict:
    return Verdict(allowed=False, code=code, reason=reason, message=message)


def invalid(message: str) -> Verdict:
    """A denial for an object that breaks validation rules (HTTP 422, as kube-apiserver)."""
    return deny(message, code=422, reason="Invalid")


def bad_request(message: str) -> Verdict:
    return deny(message, code=400, reason="BadRequest")


@dataclass(frozen=True, slots=True)
class ReviewedObjects:
    """``request.object`` and ``request.oldObject``; None when the review carries none."""

    object: dict[str, Any] | None
    old_object: dict[str, Any] | None


def reviewed_objects(request: mesh_pb2.AdmissionRequest) -> ReviewedObjects:
    """Parse the raw review the gateway forwarded; raise ``BadReview`` if it is unusable."""
    try:
        review = orjson.loads(request.review_json) if request.review_json else {}
    except orjson.JSONDecodeError as e:
        raise BadReview(f"the AdmissionReview is not valid JSON: {e}") from e
    payload = review.get("request") if isinstance(review, dict) else None
    if not isinstance(payload, dict):
        raise BadReview("the AdmissionReview has no request")
    out: list[dict[str, Any] | None] = []
    for key in ("object", "oldObject"):
        value = payload.get(key)
        if value is not None and not isinstance(value, dict):
            raise BadReview(f"request.{key} must be an object, got {type(value).__name__}")
        out.append(value)
    return ReviewedObjects(object=out[0], old_object=out[1])


@dataclass(frozen=True, slots=True)
class Written:
    """The object a CREATE or UPDATE review writes, and the stored one on UPDATE."""

    object: dict[str, Any]
    old: dict[str, Any] | None


def written_object(request: mesh_pb2.AdmissionRequest, *, kind: str) -> Written | Verdict | None:
    """The object of a CREATE/UPDATE review of the main resource, with the stored one on
    UPDATE; None for anything else (a subresource, another operation), which is admitted as
    is; a 400 ``Verdict`` for a review that cannot be read or lacks the ``kind`` object."""
    if request.sub_resource or request.operation not in (
        mesh_pb2.OPERATION_CREATE,
        mesh_pb2.OPERATION_UPDATE,
    ):
        return None
    try:
        objects = reviewed_objects(request)
    except BadReview as e:
        return bad_request(str(e))
    if objects.object is None:
        return bad_request(f"the review carries no {kind}")
    if request.operation == mesh_pb2.OPERATION_UPDATE:
        if objects.old_object is None:
            return bad_request(f"an UPDATE review must carry the stored {kind}")
        return Written(objects.object, objects.old_object)
    return Written(objects.object, None)


def created_pod(request: mesh_pb2.AdmissionRequest) -> dict[str, Any] | None:
    """The pod of a pod CREATE review; None for any other review (a subresource, another
    operation or resource), which a pod-CREATE mutation leaves alone. Raises ``BadReview``
    when the review carries no pod with a spec."""
    if (
        request.sub_resource
        or request.operation != mesh_pb2.OPERATION_CREATE
        or request.resource.resource != "pods"
    ):
        return None
    pod = reviewed_objects(request).object
    if pod is None or not isinstance(pod.get("spec"), dict):
        raise BadReview("a pod CREATE review must carry the pod with a spec")
    return pod


def to_response(request: mesh_pb2.AdmissionRequest, verdict: Verdict) -> mesh_pb2.AdmissionResponse:
    """The ``AdmissionResponse`` for ``verdict``; a patch travels only with an admission."""
    response = mesh_pb2.AdmissionResponse(
        call_id=request.call_id,
        allowed=verdict.allowed,
        warnings=list(verdict.warnings),
    )
    if verdict.allowed:
        if verdict.patch:
            response.patch = orjson.dumps(verdict.patch)
    else:
        response.code = verdict.code
        response.reason = verdict.reason
        response.message = verdict.message
    return response


def pointer(*parts: str) -> str:
    """An RFC 6901 JSON pointer from unescaped parts.

    >>> pointer("metadata", "annotations", "kruise.io/injected-persistent-pod-state")
    '/metadata/annotations/kruise.io~1injected-persistent-pod-state'
    """
    return "".join("/" + p.replace("~", "~0").replace("/", "~1") for p in parts)
