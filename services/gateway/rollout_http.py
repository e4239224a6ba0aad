"""The rollout API as HTTP/JSON, for what cannot speak gRPC: Argo Rollouts' ``web`` metric
provider, curl, scripts.

    server = await start_rollout_http(route=rollout_route, host="0.0.0.0", port=8080)
    ...
    await server.stop()

HTTPS on the gateway's ``--api-http-port`` (plain HTTP with ``--api-auth off``, loopback only;
each request's ``Authorization: Bearer`` token checked as the gRPC calls', ``callers``: 401 /
403 Status answers), read-only, answered from the same ``RolloutRoute`` relay as the gRPC API
(the owner replica of the namespace, one code path):

    GET /apis/rollout.kruise-mesh.io/v1/namespaces/{ns}/clonesets/{name}
        → GetRolloutStatus: {"status": {...}}            [?minResourceVersion=RV]
    GET /apis/rollout.kruise-mesh.io/v1/namespaces/{ns}/clonesets/{name}/batch
        → CheckBatch: {"ready": true, "reason": "...", "desiredUpdatedReplicas": 5,
                       "status": {...}}
          ?desired=N           the pods that must be updated, or
          ?batch=5 | 50%25     the batch as Kruise Rollout plans it (a raw "50%" works too)
          &failureThreshold=N | N%25   &rolloutId=ID   &requireAvailable=true|false
    GET /healthz → 200 "ok"

Bodies are the gRPC answers in the proto3 JSON mapping (``json_format.MessageToDict``):
camelCase names, zeros and empty strings printed (``always_print_fields_with_no_presence``),
int64 fields as strings, unset optional fields left out.

Errors are Kubernetes-style Status objects, never a traceback:

    {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 404,
     "reason": "NotFound", "message": "<the replica's message>",
     "details": {"grpcCode": "NOT_FOUND",
                 "errorInfo": {"reason": "WORKLOAD_NOT_FOUND", "domain": "...", ...},
                 "causes": [{"field": "ref.name", "message": "...", "reason": "..."}]}}

    gRPC code            HTTP  reason
    INVALID_ARGUMENT     400   BadRequest          (also a bad or unknown query parameter,
                                                    named in message and causes)
    UNAUTHENTICATED      401   Unauthorized        (no or a refused bearer token: callers)
    PERMISSION_DENIED    403   Forbidden           (RBAC says no: callers)
    NOT_FOUND            404   NotFound            (also an unknown path)
    FAILED_PRECONDITION  409   Conflict
    ABORTED              409   Conflict
    UNAVAILABLE          503   ServiceUnavailable
    DEADLINE_EXCEEDED    504   Timeout
    anything else        500   InternalError

``errorInfo`` and ``causes`` come from the replica's rich details (ErrorInfo; BadRequest and
PreconditionFailure violations) when it sent them. Argo's ``web`` provider counts any non-2xx
answer as a measurement error, so "not ready yet" is a 200 with ``"ready": false``.
"""

from __future__ import annotations

import logging
import re
import ssl
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
import orjson
from aiohttp import web
from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message
from google.rpc import status_pb2
from multidict import MultiMapping
from prometheus_client import Counter

from kruise.rollout.v1 import rollout_pb2
from services.gateway.relay import RelayError
from services.gateway.rollout_route import RolloutRoute
from services.kit import rich

log = logging.getLogger(__name__)

PREFIX = "/apis/rollout.kruise-mesh.io/v1/namespaces/{namespace}/clonesets/{name}"
# Below the 10 s Argo's web provider waits by default, so it reads our 504, not its timeout.
HTTP_TIMEOUT_S = 5.0
INT32_MAX = 2**31 - 1

HTTP_STATUS: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.FAILED_PRECONDITION: 409,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}
REASONS: dict[int, str] = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}

REQUESTS = Counter(
    "kruise_mesh_gateway_rollout_http_requests_total",
    "Rollout API HTTP/JSON requests, by route and HTTP status.",
    ["route", "code"],
)

Query = MultiMapping[str]


# ---- requests from paths and query strings (pure) --------------------------------------------
class QueryError(ValueError):
    """A query parameter that cannot be read; ``field`` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


_COUNT = re.compile(r"[0-9]+")
_PERCENT = re.compile(r"[0-9]+%")


def _single(query: Query, name: str) -> str | None:
    values = query.getall(name, [])
    if len(values) > 1:
        raise QueryError(name, f"query parameter {name} is given {len(values)} times: give it once")
    return values[0] if values else None


def _known(query: Query, names: tuple[str, ...]) -> None:
    for name in query:
        if name not in names:
            raise QueryError(
                name, f"unknown query parameter {name}: known ones are {', '.join(names)}"
            )


def parse_count(name: str, text: str) -> int:
    """A pod count: digits only, at most 2^31-1. ``"5"`` → 5; ``"-1"``, ``"5.0"`` → QueryError."""
    if not _COUNT.fullmatch(text) or int(text) > INT32_MAX:
        raise QueryError(name, f"query parameter {name}: {text!r} is not a pod count such as 5")
    return int(text)


def parse_int_or_percent(name: str, text: str) -> rollout_pb2.IntOrPercent:
    """``"5"`` → count 5; ``"50%"`` → percent "50%" (its range is the replica's to check);
    anything else → QueryError naming ``name``."""
    if _PERCENT.fullmatch(text) and int(text[:-1]) <= INT32_MAX:
        return rollout_pb2.IntOrPercent(percent=text)
    if _COUNT.fullmatch(text) and int(text) <= INT32_MAX:
        return rollout_pb2.IntOrPercent(count=int(text))
    raise QueryError(
        name,
        f"query parameter {name}: {text!r} is not a pod count or a percent such as 5 or 50% "
        "(written 50%25 in a URL)",
    )


def parse_bool(name: str, text: str) -> bool:
    """``"true"`` / ``"false"`` (any case); anything else → QueryError naming ``name``."""
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    raise QueryError(name, f"query parameter {name}: {text!r} is not true or false")


def workload(namespace: str, name: str) -> rollout_pb2.WorkloadRef:
    return rollout_pb2.WorkloadRef(
        api_version="apps.kruise.io/v1alpha1", kind="CloneSet", namespace=namespace, name=name
    )


def status_request(namespace: str, name: str, query: Query) -> rollout_pb2.GetRolloutStatusRequest:
    """The GetRolloutStatus request of a status URL. Pure; raises QueryError."""
    _known(query, ("minResourceVersion",))
    return rollout_pb2.GetRolloutStatusRequest(
        ref=workload(namespace, name),
        min_resource_version=_single(query, "minResourceVersion") or "",
    )


def batch_request(namespace: str, name: str, query: Query) -> rollout_pb2.CheckBatchRequest:
    """The CheckBatch request of a batch URL. Pure; raises QueryError.

    ``desired`` and ``batch`` are the request's ``target`` (one or the other, or neither: the
    replica says what it needs); the gateway reads their syntax only.
    """
    _known(query, ("desired", "batch", "failureThreshold", "rolloutId", "requireAvailable"))
    request = rollout_pb2.CheckBatchRequest(ref=workload(namespace, name))
    desired, batch = _single(query, "desired"), _single(query, "batch")
    if desired is not None and batch is not None:
        raise QueryError("batch", "query parameters desired and batch: give one, not both")
    if desired is not None:
        request.desired_updated_replicas = parse_count("desired", desired)
    if batch is not None:
        request.batch.CopyFrom(parse_int_or_percent("batch", batch))
    threshold = _single(query, "failureThreshold")
    if threshold is not None:
        request.failure_threshold.CopyFrom(parse_int_or_percent("failureThreshold", threshold))
    request.rollout_id = _single(query, "rolloutId") or ""
    available = _single(query, "requireAvailable")
    if available is not None:
        request.require_available = parse_bool("requireAvailable", available)
    return request


# ---- answers ------------------------------------------------------------------------------------
def to_json(message: Message) -> dict[str, Any]:
    """A gRPC answer in the proto3 JSON mapping, zeros included."""
    return json_format.MessageToDict(message, always_print_fields_with_no_presence=True)


def _rich_details(error: RelayError) -> dict[str, Any]:
    """``errorInfo`` and ``causes`` from the replica's google.rpc.Status, when it sent one."""
    raw = error.rich_details
    if raw is None:
        return {}
    try:
        status = status_pb2.Status.FromString(raw)
    except DecodeError:
        return {}
    details = rich.details_of(status)
    found: dict[str, Any] = {}
    if details.info is not None:
        found["errorInfo"] = json_format.MessageToDict(details.info)
    causes = [
        {"reason": "FieldValueInvalid", "field": v.field, "message": v.description}
        for v in details.fields
    ]
    causes += [
        {"reason": v.type, "field": v.subject, "message": v.description}
        for v in details.preconditions
    ]
    if causes:
        found["causes"] = causes
    return found


def status_body(
    code: int, message: str, *, grpc_code: str, details: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """A Kubernetes-style ``Status`` failure body."""
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "code": code,
        "reason": REASONS.get(code, "InternalError"),
        "message": message,
        "details": {"grpcCode": grpc_code, **(details or {})},
    }


def error_response(error: RelayError) -> web.Response:
    """The HTTP answer to a relayed (or the gateway's own) gRPC failure."""
    code = HTTP_STATUS.get(error.code, 500)
    body = status_body(code, error.details, grpc_code=error.code.name, details=_rich_details(error))
    return _json(body, status=code)


def query_error_response(error: QueryError) -> web.Response:
    cause = {"reason": "FieldValueInvalid", "field": error.field, "message": error.message}
    body = status_body(
        400, error.message, grpc_code="INVALID_ARGUMENT", details={"causes": [cause]}
    )
    return _json(body, status=400)


def _json(body: Mapping[str, Any], *, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")


# ---- the server ---------------------------------------------------------------------------------
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def build_app(route: RolloutRoute, *, middlewares: Sequence[Any] = ()) -> web.Application:
    """The HTTP/JSON application over ``route``'s relay (tests serve it themselves);
    ``middlewares`` run inside the counting one (the callers' check, ``callers``)."""
    relay = route.relay

    async def status(request: web.Request) -> web.Response:
        namespace, name = request.match_info["namespace"], request.match_info["name"]
        try:
            asked = status_request(namespace, name, request.query)
        except QueryError as e:
            return query_error_response(e)
        try:
            answer = await relay.call(
                "GetRolloutStatus",
                namespace,
                lambda stub: stub.GetRolloutStatus(asked, timeout=HTTP_TIMEOUT_S),
            )
        except RelayError as e:
            return error_response(e)
        return _json(to_json(answer))

    async def batch(request: web.Request) -> web.Response:
        namespace, name = request.match_info["namespace"], request.match_info["name"]
        try:
            asked = batch_request(namespace, name, request.query)
        except QueryError as e:
            return query_error_response(e)
        try:
            answer = await relay.call(
                "CheckBatch",
                namespace,
                lambda stub: stub.CheckBatch(asked, timeout=HTTP_TIMEOUT_S),
            )
        except RelayError as e:
            return error_response(e)
        return _json(to_json(answer))

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    @web.middleware
    async def statuses(request: web.Request, handler: Handler) -> web.StreamResponse:
        """Every answer counted; unknown paths, wrong methods and surprises as Status JSON."""
        resource = request.match_info.route.resource
        label = resource.canonical if resource is not None else "unknown"
        try:
            response = await handler(request)
        except web.HTTPException as e:
            message = (
                f"no such path {request.path}"
                if e.status == 404
                else f"{request.method} {request.path}: {e.reason}"
            )
            grpc_code = "NOT_FOUND" if e.status == 404 else "UNIMPLEMENTED"
            response = _json(status_body(e.status, message, grpc_code=grpc_code), status=e.status)
        except Exception:  # never a traceback to the caller
            log.exception("rollout HTTP request failed", extra={"path": request.path})
            body = status_body(500, "internal error in the gateway", grpc_code="INTERNAL")
            response = _json(body, status=500)
        REQUESTS.labels(label, str(response.status)).inc()
        return response

    app = web.Application(middlewares=[statuses, *middlewares])
    app.router.add_get(PREFIX, status)
    app.router.add_get(f"{PREFIX}/batch", batch)
    app.router.add_get("/healthz", healthz)
    return app


@dataclass
class RolloutHttpServer:
    runner: web.AppRunner
    port: int

    async def stop(self) -> None:
        await self.runner.cleanup()


async def start_rollout_http(
    *,
    route: RolloutRoute,
    host: str = "127.0.0.1",
    port: int = 0,
    ssl_context: ssl.SSLContext | None = None,
    middlewares: Sequence[Any] = (),
) -> RolloutHttpServer:
    """Serve ``build_app(route)`` on ``host:port`` (0 picks a free port); HTTPS with
    ``ssl_context``."""
    runner = web.AppRunner(build_app(route, middlewares=middlewares), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port, ssl_context=ssl_context)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    server = site._server
    sockets = getattr(server, "sockets", None) or []
    bound = sockets[0].getsockname()[1] if sockets else port
    return RolloutHttpServer(runner=runner, port=int(bound))
