"""The gateway's ClusterService: the writes services ask for, with the preconditions they carry.

Thin: each RPC converts the request, delegates to ``KubeClient`` and converts the answer.
The request-shaping helpers (``patch_body``, ``status_patch``, ``delete_options``,
``event_body``, ``scale_response``) are pure functions, table-tested.

Every call is authorized before anything is sent to the API server on its behalf: the caller
is the component its mesh certificate names (``services.kit.identity``), the request the kind
resolved to its resource, and ``services.gateway.permissions.authorize`` decides. Without
``require_identity`` (plain TCP: loopback tests, local mode) a caller without a certificate
is checked against the union of the services' tables.

    identity → fence → resolve kind → authorize → validate the body → the API server

Status codes (services/kit/errors.py)::

    no mesh certificate (with require_identity)  UNAUTHENTICATED
    not in the caller's table; protected ns      PERMISSION_DENIED  (counted in
                                                                    ..._denied_total, logged)
    stale resourceVersion / uid precondition     ABORTED            (409, or a failed
                                                                    JSON-patch ``test`` op)
    missing object, kind without /scale          NOT_FOUND
    bad argument (field named), unknown kind     INVALID_ARGUMENT
    other API server answers                     as services/kit/errors.from_http maps them
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

import grpc
import orjson
from prometheus_client import Counter, Histogram

from kruise.cluster.v1 import cluster_pb2, cluster_pb2_grpc
from services.gateway import permissions
from services.gateway.kube.client import KubeClient, Resource
from services.kit import errors, identity

log = logging.getLogger(__name__)

T = TypeVar("T")
Context = grpc.aio.ServicerContext[Any, Any]
Caller = str | None
"""The component a call's mesh certificate names; None without one (``require_identity``
off)."""

DENIED = Counter(
    "kruise_mesh_gateway_cluster_api_denied_total",
    "ClusterService calls refused by the caller's permissions (services.gateway.permissions)",
    ["component", "verb", "resource"],
)
FENCED = Counter(
    "kruise_mesh_cluster_api_fenced_total",
    "Fenced writes refused because the calling replica does not own the namespace",
)
REQUESTS = Counter(
    "kruise_mesh_cluster_api_requests_total",
    "ClusterService calls by method and gRPC status code.",
    ["method", "code"],
)
LATENCY = Histogram(
    "kruise_mesh_cluster_api_request_duration_seconds",
    "ClusterService call latency, including the API server round trips.",
    ["method"],
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)

CONTENT_TYPES: dict[int, str] = {
    cluster_pb2.PATCH_TYPE_MERGE: "application/merge-patch+json",
    cluster_pb2.PATCH_TYPE_JSON: "application/json-patch+json",
    cluster_pb2.PATCH_TYPE_STRATEGIC: "application/strategic-merge-patch+json",
}
EVENT_TYPES = frozenset({"Normal", "Warning"})
DEFAULT_COMPONENT = "kruise-mesh-gateway"


# -- pure helpers ------------------------------------------------------------------------------


def parse_json(data: bytes, *, field: str, want: type) -> Any:
    """``data`` decoded, which must be a JSON ``want`` (dict or list); Invalid naming ``field``."""
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as e:
        raise errors.Invalid(f"{field}: not valid JSON: {e}") from e
    if not isinstance(doc, want):
        expected = "object" if want is dict else "array"
        raise errors.Invalid(f"{field}: must be a JSON {expected}")
    return doc


def patch_body(
    *, patch_type: int, patch: bytes, preconditions: cluster_pb2.Preconditions
) -> tuple[bytes, str]:
    """The patch to send and its Content-Type, made conditional on ``preconditions``.

    Pure. Merge and strategic patches get ``metadata.resourceVersion`` / ``metadata.uid``
    set (the API server answers 409 when the resourceVersion is stale); JSON patches get
    ``test`` ops on ``/metadata/resourceVersion`` and ``/metadata/uid`` prepended (a failed
    test op is a 422, which ``ClusterApi`` turns into ABORTED). Without preconditions the
    bytes go out unchanged.
    """
    content_type = CONTENT_TYPES.get(patch_type)
    if content_type is None:
        raise errors.Invalid(f"type: unknown patch type {patch_type}")
    rv, uid = preconditions.resource_version, preconditions.uid
    if patch_type == cluster_pb2.PATCH_TYPE_JSON:
        ops: list[Any] = parse_json(patch, field="patch", want=list)
        if not (rv or uid):
            return patch, content_type
        return orjson.dumps(precondition_tests(preconditions) + ops), content_type
    doc: dict[str, Any] = parse_json(patch, field="patch", want=dict)
    if not (rv or uid):
        return patch, content_type
    meta = doc.get("metadata")
    if meta is None:
        meta = doc["metadata"] = {}
    elif not isinstance(meta, dict):
        raise errors.Invalid("patch: metadata must be a JSON object")
    if rv:
        meta["resourceVersion"] = rv
    if uid:
        meta["uid"] = uid
    return orjson.dumps(doc), content_type


def precondition_tests(preconditions: cluster_pb2.Preconditions) -> list[dict[str, Any]]:
    """JSON patch ``test`` ops for the resourceVersion and uid preconditions that are set."""
    rv, uid = preconditions.resource_version, preconditions.uid
    tests = [{"op": "test", "path": "/metadata/resourceVersion", "value": rv}] if rv else []
    if uid:
        tests.append({"op": "test", "path": "/metadata/uid", "value": uid})
    return tests


def precondition_failure(
    current: dict[str, Any], preconditions: cluster_pb2.Preconditions
) -> str | None:
    """Why ``current`` fails ``preconditions``, or None when they hold. Pure."""
    meta = current.get("metadata") or {}
    if preconditions.uid and meta.get("uid") != preconditions.uid:
        return f"uid is {meta.get('uid')}, precondition {preconditions.uid}"
    rv = preconditions.resource_version
    if rv and meta.get("resourceVersion") != rv:
        return f"resourceVersion is {meta.get('resourceVersion')}, precondition {rv}"
    return None


def status_patch(
    *, status: dict[str, Any], preconditions: cluster_pb2.Preconditions
) -> tuple[bytes, str]:
    """One conditional JSON patch that replaces the whole ``.status``. Pure.

    ``add`` on an existing member replaces it, so keys the decision dropped are gone (a
    merge patch would keep them); the precondition ``test`` ops come first. One request, no
    read first, and the status is serialised once.
    """
    replace = {"op": "add", "path": "/status", "value": status}
    ops = [*precondition_tests(preconditions), replace]
    return orjson.dumps(ops), CONTENT_TYPES[cluster_pb2.PATCH_TYPE_JSON]


def delete_options(
    *, preconditions: cluster_pb2.Preconditions, grace_period_seconds: int | None, dry_run: bool
) -> bytes:
    """A meta/v1 DeleteOptions body. Pure."""
    opts: dict[str, Any] = {"kind": "DeleteOptions", "apiVersion": "v1"}
    pre = {
        k: v
        for k, v in (
            ("uid", preconditions.uid),
            ("resourceVersion", preconditions.resource_version),
        )
        if v
    }
    if pre:
        opts["preconditions"] = pre
    if grace_period_seconds is not None:
        opts["gracePeriodSeconds"] = grace_period_seconds
    if dry_run:
        opts["dryRun"] = ["All"]
    return orjson.dumps(opts)


def scale_response(scale: dict[str, Any]) -> cluster_pb2.GetScaleResponse:
    """An autoscaling/v1 Scale as the RPC answer. Pure."""
    spec = scale.get("spec") or {}
    status = scale.get("status") or {}
    return cluster_pb2.GetScaleResponse(
        spec_replicas=int(spec.get("replicas") or 0),
        status_replicas=int(status.get("replicas") or 0),
        selector=str(status.get("selector") or ""),
        resource_version=str((scale.get("metadata") or {}).get("resourceVersion") or ""),
        uid=str((scale.get("metadata") or {}).get("uid") or ""),
    )


def event_body(
    request: cluster_pb2.RecordEventRequest, *, now: datetime, suffix: str
) -> dict[str, Any]:
    """A core/v1 Event about ``request.involved``, named ``<name>.<suffix>``. Pure."""
    if request.type not in EVENT_TYPES:
        raise errors.Invalid(f"type: must be Normal or Warning, not {request.type!r}")
    if not request.reason:
        raise errors.Invalid("reason: required")
    ref = request.involved
    stamp = now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    involved = {
        "apiVersion": ref.api_version,
        "kind": ref.kind,
        "name": ref.name,
    }
    if ref.namespace:
        involved["namespace"] = ref.namespace
    if request.involved_uid:
        involved["uid"] = request.involved_uid
    component = request.reporting_component or DEFAULT_COMPONENT
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": f"{ref.name}.{suffix}", "namespace": ref.namespace or "default"},
        "involvedObject": involved,
        "reason": request.reason,
        "message": request.message,
        "type": request.type,
        "source": {"component": component},
        "reportingComponent": component,
        "reportingInstance": "",
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
    }


def object_response(raw: bytes) -> cluster_pb2.ObjectResponse:
    """The API server's answer as ObjectResponse (raw bytes kept, rv/uid lifted out)."""
    meta = (orjson.loads(raw) or {}).get("metadata") or {}
    return cluster_pb2.ObjectResponse(
        object_json=raw,
        resource_version=str(meta.get("resourceVersion") or ""),
        uid=str(meta.get("uid") or ""),
    )


def _dry_run(flag: bool) -> dict[str, str]:
    return {"dryRun": "All"} if flag else {}


# -- the servicer ------------------------------------------------------------------------------


FENCE_METADATA = "kruise-mesh-fence"

Owner = Callable[[str, str], str | None]
"""``(service, namespace) -> owning replica`` on the gateway's ring (``Router.owner``)."""


def fence_refusal(fence: str, namespace: str, owner: Owner | None) -> str | None:
    """Why a fenced write must be refused, or None. Pure.

    ``fence`` is ``<service>/<replica>`` as the caller sent it in ``kruise-mesh-fence``: the
    write is carried out only when that replica owns ``namespace`` on this gateway's ring
    for that service (a replica that lost the namespace can no longer act on it). Cluster-
    scoped writes and unfenced callers pass.
    """
    if not fence or not namespace or owner is None:
        return None
    service, _, replica = fence.partition("/")
    if not service or not replica:
        return f"malformed {FENCE_METADATA} {fence!r}: want <service>/<replica>"
    current = owner(service, namespace)
    if current == replica:
        return None
    return (
        f"replica {replica} of {service} does not own namespace {namespace} "
        f"(its owner is {current or 'nobody'}): write refused"
    )


class ClusterApi(cluster_pb2_grpc.ClusterServiceServicer):
    """ClusterService over one KubeClient.

    Each call is authorized against the calling component's table in ``tables``
    (``permissions.authorize``); with ``require_identity`` a call without a mesh client
    certificate is refused UNAUTHENTICATED, without it such a call is checked against the
    union of the tables. Nobody writes into Kubernetes' namespaces or ``mesh_namespace``.

    Writes that carry ``kruise-mesh-fence: <service>/<replica>`` metadata are fenced: refused
    with FAILED_PRECONDITION unless that replica owns the object's namespace on ``owner``'s
    ring (``fence_refusal``). The rollout service fences its pod and revision writes.
    """

    def __init__(
        self,
        kube: KubeClient,
        *,
        owner: Owner | None = None,
        require_identity: bool = False,
        mesh_namespace: str = "kruise-mesh",
        tables: Mapping[str, permissions.Table] = permissions.TABLES,
    ) -> None:
        self.kube = kube
        self.owner = owner
        self.require_identity = require_identity
        self.protected = permissions.protected_namespaces(mesh_namespace)
        self.tables = tables

    def _caller(self, context: Context) -> Caller:
        component = identity.peer_component(context)
        if component is None and self.require_identity:
            log.warning(
                "ClusterService call without a mesh identity refused",
                extra={"peer": context.peer()},
            )
            raise errors.Unauthenticated(
                "the mesh's ClusterService needs a mesh client certificate"
            )
        return component

    def _authorize(
        self,
        caller: Caller,
        *,
        verb: permissions.Verb,
        res: Resource,
        namespace: str,
        subresource: str = "",
        patch: bytes | None = None,
    ) -> None:
        """Raise Forbidden (counted, logged) unless ``caller`` may make this request."""
        decision = permissions.authorize(
            caller,
            verb=verb,
            group=res.group,
            resource=res.resource,
            subresource=subresource,
            namespace=namespace,
            patch=patch,
            tables=self.tables,
            protected=self.protected,
        )
        if decision.allowed:
            return
        component = caller or "none"
        name = permissions.resource_name(
            group=res.group, resource=res.resource, subresource=subresource
        )
        DENIED.labels(component, verb, name).inc()
        log.warning(
            "ClusterService call denied",
            extra={
                "component": component,
                "verb": verb,
                "resource": name,
                "namespace": namespace,
                "reason": decision.reason,
            },
        )
        raise errors.Forbidden(decision.reason)

    def _fenced(self, context: Context, namespace: str) -> None:
        if self.owner is None:
            return
        fence = ""
        for key, value in context.invocation_metadata() or ():
            if key == FENCE_METADATA:
                fence = value if isinstance(value, str) else value.decode()
        refusal = fence_refusal(fence, namespace, self.owner)
        if refusal is not None:
            FENCED.inc()
            raise errors.FailedPrecondition(refusal)

    async def Get(
        self, request: cluster_pb2.GetRequest, context: Context
    ) -> cluster_pb2.ObjectResponse:
        return await _serve("Get", context, self._call(context, lambda c: self._get(c, request)))

    async def Create(
        self, request: cluster_pb2.CreateRequest, context: Context
    ) -> cluster_pb2.ObjectResponse:
        work = self._call(context, lambda c: self._create(c, request), fence=request.ref)
        return await _serve("Create", context, work)

    async def Patch(
        self, request: cluster_pb2.PatchRequest, context: Context
    ) -> cluster_pb2.ObjectResponse:
        work = self._call(context, lambda c: self._patch(c, request), fence=request.ref)
        return await _serve("Patch", context, work)

    async def UpdateStatus(
        self, request: cluster_pb2.UpdateStatusRequest, context: Context
    ) -> cluster_pb2.ObjectResponse:
        work = self._call(context, lambda c: self._update_status(c, request), fence=request.ref)
        return await _serve("UpdateStatus", context, work)

    async def Delete(
        self, request: cluster_pb2.DeleteRequest, context: Context
    ) -> cluster_pb2.DeleteResponse:
        work = self._call(context, lambda c: self._delete(c, request), fence=request.ref)
        return await _serve("Delete", context, work)

    async def GetScale(
        self, request: cluster_pb2.GetScaleRequest, context: Context
    ) -> cluster_pb2.GetScaleResponse:
        work = self._call(context, lambda c: self._get_scale(c, request))
        return await _serve("GetScale", context, work)

    async def RecordEvent(
        self, request: cluster_pb2.RecordEventRequest, context: Context
    ) -> cluster_pb2.RecordEventResponse:
        work = self._call(context, lambda c: self._record_event(c, request))
        return await _serve("RecordEvent", context, work)

    async def _call(
        self,
        context: Context,
        work: Callable[[Caller], Awaitable[T]],
        *,
        fence: cluster_pb2.ObjectRef | None = None,
    ) -> T:
        """Who calls (UNAUTHENTICATED first), then the fence of a write, then ``work``."""
        caller = self._caller(context)
        if fence is not None:
            self._fenced(context, fence.namespace)
        return await work(caller)

    # -- implementations (raise MeshError) -------------------------------------------------------

    async def _resource(self, ref: cluster_pb2.ObjectRef, *, field: str = "ref") -> Resource:
        if not ref.api_version:
            raise errors.Invalid(f"{field}.api_version: required")
        if not ref.kind:
            raise errors.Invalid(f"{field}.kind: required")
        try:
            res = await self.kube.resolve(api_version=ref.api_version, kind=ref.kind)
        except errors.NotFound as e:
            raise errors.Invalid(f"{field}.kind: unknown kind: {e}") from e
        if res.namespaced and not ref.namespace:
            raise errors.Invalid(f"{field}.namespace: required for namespaced kind {ref.kind}")
        return res

    async def _object_path(
        self, ref: cluster_pb2.ObjectRef, *, subresource: str | None = None, field: str = "ref"
    ) -> tuple[Resource, str]:
        res = await self._resource(ref, field=field)
        if not ref.name:
            raise errors.Invalid(f"{field}.name: required")
        path = self.kube.path(res, namespace=ref.namespace, name=ref.name, subresource=subresource)
        return res, path

    async def _get(
        self, caller: Caller, request: cluster_pb2.GetRequest
    ) -> cluster_pb2.ObjectResponse:
        res, path = await self._object_path(request.ref)
        self._authorize(caller, verb="get", res=res, namespace=request.ref.namespace)
        return object_response(await self.kube.request("GET", path))

    async def _create(
        self, caller: Caller, request: cluster_pb2.CreateRequest
    ) -> cluster_pb2.ObjectResponse:
        res = await self._resource(request.ref)
        self._authorize(caller, verb="create", res=res, namespace=request.ref.namespace)
        obj: dict[str, Any] = parse_json(request.object_json, field="object_json", want=dict)
        body = request.object_json
        meta = obj.get("metadata")
        if not isinstance(meta, dict):
            meta = obj["metadata"] = {}
        fill_name = bool(request.ref.name) and not meta.get("name")
        if fill_name or obj.get("apiVersion") != res.api_version or obj.get("kind") != res.kind:
            obj["apiVersion"], obj["kind"] = res.api_version, res.kind
            if fill_name:
                meta["name"] = request.ref.name
            body = orjson.dumps(obj)
        path = self.kube.path(res, namespace=request.ref.namespace)
        raw = await self.kube.request("POST", path, body=body, query=_dry_run(request.dry_run))
        return object_response(raw)

    async def _patch(
        self, caller: Caller, request: cluster_pb2.PatchRequest
    ) -> cluster_pb2.ObjectResponse:
        if request.subresource not in ("", "status"):
            raise errors.Invalid(f"subresource: must be empty or status, not {request.subresource}")
        res, path = await self._object_path(request.ref, subresource=request.subresource or None)
        if request.subresource and request.subresource not in res.subresources:
            raise errors.Invalid(f"subresource: kind {res.kind} has no {request.subresource}")
        self._authorize(
            caller,
            verb="patch",
            res=res,
            namespace=request.ref.namespace,
            subresource=request.subresource,
            patch=request.patch,
        )
        body, content_type = patch_body(
            patch_type=request.type, patch=request.patch, preconditions=request.preconditions
        )
        try:
            raw = await self.kube.request(
                "PATCH",
                path,
                body=body,
                content_type=content_type,
                query=_dry_run(request.dry_run),
            )
        except errors.Invalid as e:
            await self._raise_if_stale(request.ref, request.preconditions, e)
            raise
        return object_response(raw)

    async def _raise_if_stale(
        self, ref: cluster_pb2.ObjectRef, pre: cluster_pb2.Preconditions, cause: errors.Invalid
    ) -> None:
        """A 422 for a conditional write is a Conflict when the preconditions no longer hold.

        A failed JSON-patch ``test`` op and a changed ``metadata.uid`` both come back as
        422; re-reading the object tells them apart from a genuinely invalid patch.
        """
        if not (pre.uid or pre.resource_version):
            return
        _, path = await self._object_path(ref)
        current = await self.kube.request_json("GET", path)
        why = precondition_failure(current, pre)
        if why is not None:
            raise errors.Conflict(f"precondition failed: {why}") from cause

    async def _update_status(
        self, caller: Caller, request: cluster_pb2.UpdateStatusRequest
    ) -> cluster_pb2.ObjectResponse:
        pre = request.preconditions
        if not pre.resource_version:
            raise errors.Invalid("preconditions.resource_version is required")
        status: dict[str, Any] = parse_json(request.status_json, field="status_json", want=dict)
        res, path = await self._object_path(request.ref)
        sub = "status" if "status" in res.subresources else ""
        self._authorize(
            caller,
            verb="patch",
            res=res,
            namespace=request.ref.namespace,
            subresource=sub,
            # Without /status the write is a patch of the object: checked as one.
            patch=None if sub else orjson.dumps({"status": status}),
        )
        body, content_type = status_patch(status=status, preconditions=pre)
        target = f"{path}/{sub}" if sub else path
        try:
            raw = await self.kube.request(
                "PATCH",
                target,
                body=body,
                content_type=content_type,
                query=_dry_run(request.dry_run),
            )
        except errors.Invalid as e:
            await self._raise_if_stale(request.ref, pre, e)
            raise
        return object_response(raw)

    async def _delete(
        self, caller: Caller, request: cluster_pb2.DeleteRequest
    ) -> cluster_pb2.DeleteResponse:
        res, path = await self._object_path(request.ref)
        self._authorize(caller, verb="delete", res=res, namespace=request.ref.namespace)
        grace = request.grace_period_seconds if request.HasField("grace_period_seconds") else None
        body = delete_options(
            preconditions=request.preconditions,
            grace_period_seconds=grace,
            dry_run=request.dry_run,
        )
        await self.kube.request("DELETE", path, body=body)
        return cluster_pb2.DeleteResponse()

    async def _get_scale(
        self, caller: Caller, request: cluster_pb2.GetScaleRequest
    ) -> cluster_pb2.GetScaleResponse:
        res, path = await self._object_path(request.ref, subresource="scale")
        self._authorize(
            caller, verb="get", res=res, namespace=request.ref.namespace, subresource="scale"
        )
        if "scale" not in res.subresources:
            raise errors.NotFound(f"kind {res.kind} ({res.api_version}) has no scale subresource")
        try:
            scale = await self.kube.request_json("GET", path)
        except errors.NotFound as e:
            raise errors.NotFound(
                f"{res.kind} {request.ref.namespace}/{request.ref.name} not found"
            ) from e
        return scale_response(scale)

    async def _record_event(
        self, caller: Caller, request: cluster_pb2.RecordEventRequest
    ) -> cluster_pb2.RecordEventResponse:
        ref = request.involved
        if not ref.kind:
            raise errors.Invalid("involved.kind: required")
        if not ref.name:
            raise errors.Invalid("involved.name: required")
        event = event_body(request, now=datetime.now(UTC), suffix=f"{time.time_ns():x}")
        events = await self.kube.resolve(api_version="v1", kind="Event")
        namespace = event["metadata"]["namespace"]
        self._authorize(caller, verb="create", res=events, namespace=namespace)
        path = self.kube.path(events, namespace=namespace)
        await self.kube.request("POST", path, body=orjson.dumps(event))
        return cluster_pb2.RecordEventResponse()


async def _serve(method: str, context: Context, work: Awaitable[T]) -> T:
    """Run one call: count it, time it, and turn a MeshError into its gRPC status."""
    started = time.perf_counter()
    code = "OK"
    try:
        return await work
    except errors.MeshError as e:
        code = e.code.name
        await errors.abort_with(context, e)
    except Exception:
        code = "UNKNOWN"
        raise
    finally:
        REQUESTS.labels(method, code).inc()
        LATENCY.labels(method).observe(time.perf_counter() - started)


def add_to_server(server: grpc.aio.Server, servicer: ClusterApi) -> None:
    """Register ``servicer`` on ``server`` (for ``kit.rpc.create_server(register=[...])``)."""
    cluster_pb2_grpc.add_ClusterServiceServicer_to_server(servicer, server)


SERVICE_NAME = cluster_pb2.DESCRIPTOR.services_by_name["ClusterService"].full_name
