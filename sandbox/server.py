"""The sandbox's HTTP(S) shell: path routing, auth, query decoding, watch streaming.

``build_app(core=..., tokens=..., ...)`` returns an aiohttp application that speaks the
Kubernetes REST protocol over ``ApiCore`` (``sandbox.api``) and serves discovery and the
test controls under ``/sandbox/v1/`` (expire-history, faults, stats). Every request needs a
bearer token: a static one from ``tokens`` or a ServiceAccount token the sandbox issued
(``sandbox.auth``); a missing or bad one gets the 401 Status of the real server. Requests of
ServiceAccount tokens (and impersonated users) are then authorized by RBAC with kube's
request attributes, and refused with its 403 Status.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from sandbox import discovery, errors, gnostic, openapi, protobuf, table
from sandbox.admission import begin_request, warning_header
from sandbox.api import ApiCore, ConflictFault, Ctx, FieldCheck
from sandbox.auth import Auth, build_auth
from sandbox.auth.attributes import request_attributes
from sandbox.auth.service import REVIEW_KINDS
from sandbox.auth.tokens import Authenticated
from sandbox.errors import ApiError
from sandbox.resources import ResourceType
from sandbox.selectors import parse_field_selector, parse_label_selector
from sandbox.store import Watcher, encode_event

_HEADERS = {"Cache-Control": "no-cache, private"}
_TRUE = ("1", "true", "True")
_CHUNK = 512
_CRD_KEY = ("apiextensions.k8s.io", "customresourcedefinitions")


@dataclass(slots=True)
class ServerOptions:
    """Tunables tests may lower: bookmark cadence and the future-RV wait on lists."""

    bookmark_interval: float = 5.0
    future_rv_wait: float = 3.0
    server_address: str = "127.0.0.1:6443"


@dataclass(slots=True)
class ServerState:
    core: ApiCore
    tokens: dict[str, dict[str, Any]]
    options: ServerOptions
    auth: Auth
    watchers: set[Watcher] = field(default_factory=set)
    started: float = field(default_factory=time.monotonic)
    openapi: openapi.OpenAPI | None = None


STATE_KEY = web.AppKey("sandbox_state", ServerState)


def _json(body: Any, status: int = 200, warnings: list[str] | None = None) -> web.Response:
    headers = dict(_HEADERS)
    headers["Audit-Id"] = str(uuid.uuid4())
    resp = web.Response(
        body=orjson.dumps(body),
        status=status,
        content_type="application/json",
        headers=headers,
    )
    for w in warnings or ():
        resp.headers.add("Warning", warning_header(w))
    return resp


def _error(e: ApiError, extra_headers: dict[str, str] | None = None) -> web.Response:
    resp = _json(e.body, e.code)
    for k, v in (extra_headers or {}).items():
        resp.headers[k] = v
    return resp


def _not_found_page() -> web.Response:
    return web.Response(status=404, text="404 page not found\n", content_type="text/plain")


def _method_not_allowed() -> ApiError:
    return ApiError.status(
        code=405,
        reason="MethodNotAllowed",
        message="the server does not allow this method on the requested resource",
        details={},
    )


@dataclass(slots=True)
class Target:
    """A decoded resource path."""

    rt: ResourceType
    version: str
    namespace: str | None
    name: str | None
    subresource: str
    watch_prefix: bool = False


def _resolve(core: ApiCore, group: str, version: str, rest: list[str]) -> Target | None:
    watch_prefix = False
    if rest and rest[0] == "watch":
        watch_prefix = True
        rest = rest[1:]
    reg = core.registry
    namespace: str | None = None
    if len(rest) >= 3 and rest[0] == "namespaces":
        rt = reg.lookup(group, version, rest[2])
        if rt is not None and rt.namespaced:
            namespace = rest[1]
            rest = rest[2:]
        elif group != "" or rest[2] not in ("status", "finalize"):
            return None
    if not rest:
        return None
    rt = reg.lookup(group, version, rest[0])
    if rt is None or (rt.namespaced is False and namespace is not None):
        return None
    name = rest[1] if len(rest) > 1 else None
    sub = rest[2] if len(rest) > 2 else ""
    if len(rest) > 3:
        return None
    if sub and sub not in ("status", "scale", "finalize", *rt.extra_subresources):
        return None
    if sub == "status" and not rt.status:
        return None
    if sub == "scale" and rt.scale is None:
        return None
    return Target(rt, version, namespace, name, sub, watch_prefix)


def _ctx(state: ServerState, request: web.Request, caller: Authenticated) -> Ctx:
    q = request.query
    dry = "All" in q.getall("dryRun", [])
    return Ctx(
        user=caller.user.to_json(),
        dry_run=dry,
        field_manager=q.get("fieldManager"),
        field_validation=q.get("fieldValidation") or "Warn",
        warnings=begin_request(),
        caller=caller,
    )


async def _body(request: web.Request, rt_kind: str) -> Any:
    raw = await request.read()
    if not raw:
        return None
    if request.content_type == protobuf.MEDIA_TYPE:
        try:
            return protobuf.decode(raw, expected_kind=rt_kind)
        except protobuf.Undecodable as e:
            raise errors.unsupported_media_type(
                f"the sandbox cannot decode {e.kind} sent as {protobuf.MEDIA_TYPE} ({e.why}); "
                "send it as application/json"
            ) from e
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise errors.bad_request(
            f"the object provided is unrecognized (must be of type {rt_kind}): couldn't get "
            f"version/kind; json parse error: {e}"
        ) from e


def _delete_options(request: web.Request, body: Any) -> dict[str, Any]:
    opts: dict[str, Any] = dict(body) if isinstance(body, dict) else {}
    q = request.query
    if "gracePeriodSeconds" in q:
        opts["gracePeriodSeconds"] = int(q["gracePeriodSeconds"])
    if "propagationPolicy" in q:
        opts["propagationPolicy"] = q["propagationPolicy"]
    if "orphanDependents" in q and q["orphanDependents"] in _TRUE:
        opts["propagationPolicy"] = "Orphan"
    for k in ("preconditions.uid", "preconditions.resourceVersion"):
        if k in q:
            opts.setdefault("preconditions", {})[k.split(".", 1)[1]] = q[k]
    opts.pop("kind", None)
    opts.pop("apiVersion", None)
    return opts


async def _wait_rv(state: ServerState, rv: int) -> None:
    store = state.core.store
    deadline = time.monotonic() + state.options.future_rv_wait
    while store.rv < rv:
        if time.monotonic() >= deadline:
            raise ApiError.status(
                code=504,
                reason="Timeout",
                message=f"Timeout: Too large resource version: {rv}, current: {store.rv}",
                details={
                    "causes": [
                        {
                            "reason": "ResourceVersionTooLarge",
                            "message": "Too large resource version",
                        }
                    ],
                    "retryAfterSeconds": 1,
                },
            )
        await asyncio.sleep(0.05)


async def _handle_auth_api(
    state: ServerState, request: web.Request, t: Target, caller: Authenticated
) -> web.StreamResponse:
    """The reviews (create-only, never stored) and ``serviceaccounts/{name}/token``."""
    if t.rt.namespaced and t.namespace is None:
        return _not_found_page()
    if request.method != "POST" or (t.rt.key in REVIEW_KINDS and t.name is not None):
        raise _method_not_allowed()
    if t.subresource == "token":
        assert t.name is not None
        body = await _body(request, "TokenRequest")
        out = state.auth.token_request(caller, namespace=t.namespace or "", name=t.name, body=body)
        return _json(out, 201)
    body = await _body(request, t.rt.kind)
    return _json(state.auth.handle(caller, t.rt.key, namespace=t.namespace or "", body=body), 201)


def _handle_openid(state: ServerState, parts: list[str]) -> web.Response | None:
    if parts == [".well-known", "openid-configuration"]:
        return _json(state.auth.openid_configuration(f"https://{state.options.server_address}"))
    if parts == ["openid", "v1", "jwks"]:
        return _json(state.auth.jwks())
    return None


async def _handle_resource(
    state: ServerState, request: web.Request, t: Target, caller: Authenticated
) -> web.StreamResponse:
    core = state.core
    rt = t.rt
    q = request.query
    method = request.method
    ns = t.namespace or ""
    if rt.namespaced and t.namespace is None and (t.name is not None or method == "POST"):
        return _not_found_page()
    if t.name is None:
        if method == "GET":
            labels = parse_label_selector(q.get("labelSelector"))
            fields = parse_field_selector(q.get("fieldSelector"), kind=rt.kind)
            if t.watch_prefix or q.get("watch") in _TRUE:
                return await _watch(state, request, t, labels=labels, fields=fields)
            rv_s = q.get("resourceVersion")
            match = q.get("resourceVersionMatch")
            if rv_s and rv_s != "0":
                rv = _parse_rv(rv_s)
                if match == "Exact" and core.store.too_old(rv):
                    raise errors.gone("The resourceVersion for the provided list is too old.")
                if rv > core.store.rv:
                    await _wait_rv(state, rv)
            limit = int(q.get("limit") or 0)
            body = core.list(
                rt,
                version=t.version,
                namespace=t.namespace,
                labels=labels,
                fields=fields,
                limit=limit,
                cont=q.get("continue"),
            )
            tv = table.table_version(request.headers.get("Accept", ""))
            if tv is not None:
                return _json(_as_table(state, request, t, tv, body["items"], body["metadata"]))
            return _json(body)
        ctx = _ctx(state, request, caller)
        if method == "POST":
            body = _check_fields(state, request, ctx, t, await _body(request, rt.kind))
            obj = await core.create(ctx, rt, version=t.version, namespace=ns, body=body)
            return _json(obj, 201, ctx.warnings)
        if method == "DELETE" and "deletecollection" in rt.verbs:
            labels = parse_label_selector(q.get("labelSelector"))
            fields = parse_field_selector(q.get("fieldSelector"), kind=rt.kind)
            opts = _delete_options(request, await _body(request, "DeleteOptions"))
            body = await core.delete_collection(
                ctx,
                rt,
                version=t.version,
                namespace=t.namespace,
                labels=labels,
                fields=fields,
                options=opts,
            )
            return _json(body, 200, ctx.warnings)
        raise _method_not_allowed()
    name = t.name
    ctx = _ctx(state, request, caller)
    sub = t.subresource
    if sub == "scale":
        if method == "GET":
            return _json(core.scale_of(rt, core.get(rt, ns, name)))
        if method == "PUT":
            out = await core.update_scale(
                ctx,
                rt,
                version=t.version,
                namespace=ns,
                name=name,
                body=await _body(request, "Scale"),
            )
            return _json(out, 200, ctx.warnings)
        if method == "PATCH":
            out = await core.patch_scale(
                ctx,
                rt,
                version=t.version,
                namespace=ns,
                name=name,
                content_type=request.content_type,
                raw=await request.read(),
            )
            return _json(out, 200, ctx.warnings)
        raise _method_not_allowed()
    if sub in ("binding", "eviction"):
        if method != "POST":
            raise _method_not_allowed()
        body = await _body(request, "Binding" if sub == "binding" else "Eviction")
        if sub == "binding":
            out = await core.bind(ctx, rt, namespace=ns, name=name, body=body)
        else:
            out = await core.evict(ctx, rt, namespace=ns, name=name, body=body)
        return _json(out, 201, ctx.warnings)
    if sub == "finalize":
        sub = ""
    if method == "GET":
        obj = _versioned(rt, t.version, core.get(rt, ns, name))
        tv = table.table_version(request.headers.get("Accept", "")) if not sub else None
        if tv is not None:
            meta = {"resourceVersion": str((obj.get("metadata") or {}).get("resourceVersion", ""))}
            return _json(_as_table(state, request, t, tv, [obj], meta))
        return _json(obj)
    if method == "PUT":
        body = await _body(request, rt.kind)
        if sub in ("", "status"):
            stored = core.store.get(rt.key, ns, name)
            body = _check_fields(state, request, ctx, t, body, old=stored)
        out = await core.update(
            ctx, rt, version=t.version, namespace=ns, name=name, body=body, subresource=sub
        )
        return _json(_versioned(rt, t.version, out), 200, ctx.warnings)
    if method == "PATCH":
        ctype = request.headers.get("Content-Type", "")
        code, out = await core.patch(
            ctx,
            rt,
            version=t.version,
            namespace=ns,
            name=name,
            content_type=ctype,
            raw=await request.read(),
            subresource=sub,
        )
        return _json(_versioned(rt, t.version, out), code, ctx.warnings)
    if method == "DELETE" and not sub:
        opts = _delete_options(request, await _body(request, "DeleteOptions"))
        if "dryRun" in opts and "All" in (opts.get("dryRun") or []):
            ctx.dry_run = True
        code, out = await core.delete(
            ctx, rt, version=t.version, namespace=ns, name=name, options=opts
        )
        return _json(out, code, ctx.warnings)
    raise _method_not_allowed()


def _as_table(
    state: ServerState,
    request: web.Request,
    t: Target,
    tv: str,
    objects: list[dict[str, Any]],
    meta: dict[str, Any],
) -> dict[str, Any]:
    """The Table kubectl asked for (Accept ``as=Table``); CRDs print their own columns."""
    try:
        include = table.parse_include(request.query.get("includeObject"))
    except ValueError as e:
        raise errors.bad_request(str(e)) from e
    columns = None
    if t.rt.custom:
        crd = state.core.store.get(_CRD_KEY, "", t.rt.qualified)
        columns = table.crd_columns(crd, t.version) if crd is not None else None
    return table.table_for(
        t.rt,
        objects,
        include=include,
        columns=columns,
        version=t.version,
        table_version=tv,
        metadata=meta,
    )


def _versioned(rt: ResourceType, version: str, obj: dict[str, Any]) -> dict[str, Any]:
    if version == rt.storage_version or obj.get("kind") == "Status":
        return obj
    return {**obj, "apiVersion": rt.api_version(version)}


def _parse_rv(text: str) -> int:
    try:
        return int(text)
    except ValueError as e:
        raise errors.bad_request(f"invalid resource version: {text}") from e


def _bookmark(rt: ResourceType, api_version: str, rv: int, *, initial_end: bool) -> bytes:
    meta: dict[str, Any] = {"resourceVersion": str(rv)}
    if initial_end:
        meta["annotations"] = {"k8s.io/initial-events-end": "true"}
    obj: dict[str, Any] = {"kind": rt.kind, "apiVersion": api_version, "metadata": meta}
    if rt.key == ("", "pods"):
        obj["spec"] = {"containers": None}
        obj["status"] = {}
    return orjson.dumps({"type": "BOOKMARK", "object": obj}) + b"\n"


def _expired_line(rv: int, oldest: int) -> bytes:
    status = errors.gone(f"too old resource version: {rv} ({oldest})").body
    return orjson.dumps({"type": "ERROR", "object": status}) + b"\n"


async def _watch(
    state: ServerState, request: web.Request, t: Target, **sel: Any
) -> web.StreamResponse:
    """Stream watch events as JSON lines (see module docstring of ``sandbox.store``)."""
    store = state.core.store
    q = request.query
    rt = t.rt
    api_version = rt.api_version(t.version)
    bookmarks = q.get("allowWatchBookmarks") in _TRUE
    send_initial = q.get("sendInitialEvents") in _TRUE
    timeout = float(q["timeoutSeconds"]) if q.get("timeoutSeconds") else None
    rv_s = q.get("resourceVersion") or ""
    rv = _parse_rv(rv_s) if rv_s else 0

    resp = web.StreamResponse(status=200, headers={**_HEADERS, "Content-Type": "application/json"})
    resp.enable_chunked_encoding()

    if rv_s and rv_s != "0" and not send_initial and store.too_old(rv):
        await resp.prepare(request)
        await resp.write(_expired_line(rv, store.oldest_rv))
        await resp.write_eof()
        return resp

    # Snapshot (or replay) and registration happen with no await in between.
    w = store.add_watcher(
        key=rt.key,
        namespace=t.namespace,
        labels=sel["labels"],
        fields=sel["fields"],
        api_version=api_version,
    )
    state.watchers.add(w)
    initial: list[bytes] = []
    start_rv = store.rv
    if send_initial or not rv_s or rv_s == "0":
        for obj in store.sorted_objects(rt.key, t.namespace):
            if w.matches(obj):
                initial.append(encode_event("ADDED", obj, api_version))
        if send_initial and bookmarks:
            initial.append(_bookmark(rt, api_version, start_rv, initial_end=True))
    else:
        for ev in store.events_after(rt.key, rv):
            etype = w.classify(ev)
            if etype is not None:
                initial.append(ev.line(etype, api_version))
    last_rv = max(rv, start_rv)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout if timeout is not None else None
    interval = state.options.bookmark_interval
    next_bookmark = loop.time() + interval
    try:
        await resp.prepare(request)
        for i in range(0, len(initial), _CHUNK):
            await resp.write(b"".join(initial[i : i + _CHUNK]))
        store.events_served += len(initial)
        del initial
        while True:
            if w.queue:
                batch: list[bytes] = []
                while w.queue and len(batch) < _CHUNK:
                    etype, ev = w.queue.popleft()
                    batch.append(ev.line(etype, api_version))
                    last_rv = ev.rv
                store.events_served += len(batch)
                await resp.write(b"".join(batch))
                continue
            if w.closed:
                if w.closed == "expired":
                    await resp.write(_expired_line(last_rv, store.oldest_rv))
                break
            now = loop.time()
            if deadline is not None and now >= deadline:
                break
            if bookmarks and now >= next_bookmark:
                await resp.write(_bookmark(rt, api_version, store.rv, initial_end=False))
                next_bookmark = now + interval
                continue
            wait = next_bookmark - now if bookmarks else None
            if deadline is not None:
                wait = deadline - now if wait is None else min(wait, deadline - now)
            w.wakeup.clear()
            try:
                await asyncio.wait_for(w.wakeup.wait(), wait)
            except TimeoutError:
                pass
        await resp.write_eof()
    except (ConnectionResetError, ConnectionError, asyncio.CancelledError):
        pass
    finally:
        store.remove_watcher(w)
        state.watchers.discard(w)
    return resp


async def _handle_sandbox(
    state: ServerState, request: web.Request, rest: list[str]
) -> web.Response:
    core = state.core
    store = core.store
    what = rest[0] if rest else ""
    if what == "expire-history" and request.method == "POST":
        store.expire_history()
        return _json({"resourceVersion": str(store.rv)})
    if what == "faults":
        if request.method == "DELETE":
            core.faults.clear()
            return _json({"faults": []})
        if request.method == "POST":
            body = await _body(request, "Faults") or {}
            specs = body.get("conflicts")
            for spec in specs if isinstance(specs, list) else [specs] if specs else []:
                core.faults.append(
                    ConflictFault(
                        resource=str(spec["resource"]),
                        subresource=str(spec.get("subresource", "")),
                        count=int(spec.get("count", 1)),
                        namespace=spec.get("namespace"),
                        name=spec.get("name"),
                    )
                )
        if request.method in ("GET", "POST"):
            return _json(
                {
                    "faults": [
                        {"resource": f.resource, "subresource": f.subresource, "count": f.count}
                        for f in core.faults
                    ]
                }
            )
    if what == "stats" and request.method == "GET":
        return _json(
            {
                "resourceVersion": str(store.rv),
                "objects": store.counts(),
                "watchers": store.watcher_count(),
                "eventsServed": store.events_served,
                "oldestResourceVersion": str(store.oldest_rv),
            }
        )
    return _not_found_page()


def _openapi_of(state: ServerState) -> openapi.OpenAPI:
    if state.openapi is None:
        state.openapi = openapi.OpenAPI(state.core.registry, state.core.schema_of)
    return state.openapi


def _handle_openapi(state: ServerState, parts: list[str], accept: str = "") -> web.Response | None:
    """``/openapi/v2`` (JSON, or gnostic protobuf when asked), ``/openapi/v3`` and
    ``/openapi/v3/<group-version path>``."""
    if len(parts) < 2 or parts[0] != "openapi":
        return None
    docs = _openapi_of(state)
    if parts == ["openapi", "v2"]:
        if gnostic.wants_protobuf(accept):
            return web.Response(
                body=docs.v2_protobuf(),
                headers={**_HEADERS, "Content-Type": gnostic.CONTENT_TYPE},
            )
        return web.Response(body=docs.v2(), headers=_HEADERS, content_type="application/json")
    if parts == ["openapi", "v3"]:
        return _json(docs.v3_root())
    if parts[1] == "v3":
        body = docs.v3_document("/".join(parts[2:]))
        if body is not None:
            return web.Response(body=body, headers=_HEADERS, content_type="application/json")
    return _not_found_page()


def _unknown_paths(
    state: ServerState, rt: ResourceType, version: str, obj: Any
) -> list[openapi.FieldPath]:
    """The fields of ``obj`` its kind's schema (in the served v3 document) does not declare.

    None for a custom resource whose CRD has no schema: nothing to validate or prune against.
    """
    if not isinstance(obj, dict) or (rt.custom and state.core.schema_of(rt, version) is None):
        return []
    schemas = _openapi_of(state).v3_schemas(
        f"api/{version}" if not rt.group else f"apis/{rt.group}/{version}"
    )
    kind_schema = openapi.find_kind_schema(schemas, rt.group, version, rt.kind)
    if kind_schema is None:
        return []
    return openapi.unknown_field_paths(obj, kind_schema, schemas)


def _new_unknown(
    state: ServerState, rt: ResourceType, version: str, unknown: list[openapi.FieldPath], old: Any
) -> list[openapi.FieldPath]:
    """Those of ``unknown`` (``obj``'s unknown fields) that ``old`` (the stored object, if any)
    did not carry.

    A request's object never keeps an unknown field, but the sandbox's own writes (boot CRDs,
    test seeds through ``ApiCore``) are not decoded; a later request is not blamed for theirs.
    """
    if unknown and isinstance(old, dict):
        before = set(_unknown_paths(state, rt, version, old))
        unknown = [p for p in unknown if p not in before]
    return unknown


def _validate_fields(
    ctx: Ctx, unknown: list[openapi.FieldPath], *, rt: ResourceType, version: str, prefix: bool
) -> None:
    """The ``fieldValidation`` directive: ``Strict`` answers 400 naming the unknown fields,
    ``Warn`` (the server's default) sends one ``Warning`` per field, ``Ignore`` neither.

    ``prefix``: a create or update names the kind first (``Pod in version "v1" cannot be
    handled as a Pod: ...``); a patch does not.
    """
    if not unknown or ctx.field_validation in ("", "Ignore"):
        return
    texts = [f'unknown field "{openapi.strict_path(p)}"' for p in unknown]
    if ctx.field_validation == "Strict":
        head = (
            f'{rt.kind} in version "{version}" cannot be handled as a {rt.kind}: ' if prefix else ""
        )
        raise errors.bad_request(f"{head}strict decoding error: {', '.join(texts)}")
    for text in texts:
        if text not in ctx.warnings:
            ctx.warnings.append(text)


def _check_fields(
    state: ServerState,
    request: web.Request,
    ctx: Ctx,
    t: Target,
    body: Any,
    *,
    old: Any = None,
) -> Any:
    """Field validation of a JSON create or update body, and the body to write: without its
    unknown fields, which the real server's decoding drops (protobuf bodies have none)."""
    if request.content_type == protobuf.MEDIA_TYPE:
        return body
    unknown = _unknown_paths(state, t.rt, t.version, body)
    if not unknown:
        return body
    fresh = _new_unknown(state, t.rt, t.version, unknown, old)
    _validate_fields(ctx, fresh, rt=t.rt, version=t.version, prefix=True)
    return openapi.without_paths(body, unknown)


def _apply_schema_error(
    rt: ResourceType, version: str, obj: dict[str, Any], unknown: list[openapi.FieldPath]
) -> ApiError:
    """Server-side apply of undeclared fields: the structured-merge converter's plain error,
    which kube-apiserver serves as a 500 Status with no reason (whatever fieldValidation)."""
    meta = obj.get("metadata") or {}
    gvk = f"{rt.group}/{version}, Kind={rt.kind}"
    where = f"{meta.get('namespace') or ''}/{meta.get('name') or ''}; {gvk}"
    lines = [f"{openapi.apply_path(p)}: field not declared in schema" for p in unknown]
    detail = lines[0] if len(lines) == 1 else "errors:\n  " + "\n  ".join(lines)
    return ApiError(
        {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": f"failed to create typed patch object ({where}): {detail}",
            "code": 500,
        }
    )


def _patch_field_check(state: ServerState) -> FieldCheck:
    """``ApiCore.field_check``: field validation of a patched object (see ``ApiCore.patch``),
    which returns it without its unknown fields, as the real server decodes a patch result."""

    def check(
        ctx: Ctx,
        rt: ResourceType,
        version: str,
        old: dict[str, Any] | None,
        new: dict[str, Any],
        apply: bool,
    ) -> dict[str, Any]:
        if not ctx.field_validation:
            return new
        unknown = _unknown_paths(state, rt, version, new)
        if not unknown:
            return new
        fresh = _new_unknown(state, rt, version, unknown, old)
        if apply and fresh:
            raise _apply_schema_error(rt, version, new, fresh)
        _validate_fields(ctx, fresh, rt=rt, version=version, prefix=False)
        pruned: dict[str, Any] = openapi.without_paths(new, unknown)
        return pruned

    return check


def _handle_discovery(state: ServerState, parts: list[str]) -> web.Response | None:
    reg = state.core.registry
    body: dict[str, Any] | None = None
    if parts == ["version"]:
        body = discovery.VERSION_INFO
    elif parts == ["api"]:
        body = discovery.api_versions(state.options.server_address)
    elif parts == ["api", "v1"]:
        body = discovery.resource_list(reg, "", "v1")
    elif parts == ["apis"]:
        body = discovery.api_group_list(reg)
    elif len(parts) == 2 and parts[0] == "apis":
        body = discovery.api_group(reg, parts[1])
    elif len(parts) == 3 and parts[0] == "apis":
        body = discovery.resource_list(reg, parts[1], parts[2])
    else:
        return None
    return _json(body) if body is not None else _not_found_page()


def build_app(
    *,
    core: ApiCore,
    tokens: dict[str, dict[str, Any]],
    options: ServerOptions | None = None,
    auth: Auth | None = None,
) -> web.Application:
    """The aiohttp application; ``tokens`` maps static bearer token → userInfo.

    ``auth`` authenticates and authorizes (default: one built over ``core.store`` and
    ``tokens``).
    """
    if auth is None:
        auth = build_auth(core.store, tokens)
    if core.write_check is None:
        core.write_check = _escalation_check(auth)
    state = ServerState(core=core, tokens=tokens, options=options or ServerOptions(), auth=auth)
    if core.field_check is None:
        core.field_check = _patch_field_check(state)

    async def handle(request: web.Request) -> web.StreamResponse:
        parts = [p for p in request.path.split("/") if p]
        try:
            caller = state.auth.authenticate(request.headers)
            if caller.rbac:
                attrs = request_attributes(request.method, request.path, request.query)
                state.auth.check(caller, attrs)
            if request.method == "GET":
                disc = (
                    _handle_discovery(state, parts)
                    or _handle_openid(state, parts)
                    or _handle_openapi(state, parts, request.headers.get("Accept", ""))
                )
                if disc is not None:
                    return disc
            if len(parts) >= 2 and parts[0] == "sandbox" and parts[1] == "v1":
                return await _handle_sandbox(state, request, parts[2:])
            target: Target | None = None
            if len(parts) >= 2 and parts[0] == "api" and parts[1] == "v1":
                target = _resolve(core, "", "v1", parts[2:])
            elif len(parts) >= 3 and parts[0] == "apis":
                target = _resolve(core, parts[1], parts[2], parts[3:])
            if target is None:
                return _not_found_page()
            if target.rt.key in REVIEW_KINDS or target.subresource == "token":
                return await _handle_auth_api(state, request, target, caller)
            return await _handle_resource(state, request, target, caller)
        except ApiError as e:
            extra = {"Retry-After": "1"} if e.code == 504 else None
            return _error(e, extra)

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app[STATE_KEY] = state
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


def _escalation_check(auth: Auth) -> Callable[[Ctx, ResourceType, str, dict[str, Any]], None]:
    def check(ctx: Ctx, rt: ResourceType, namespace: str, obj: dict[str, Any]) -> None:
        if isinstance(ctx.caller, Authenticated):
            auth.check_escalation(ctx.caller, rt.key, obj, namespace)

    return check


def close_watchers(app: web.Application) -> None:
    """End every open watch stream (used before shutdown)."""
    for w in list(app[STATE_KEY].watchers):
        w.close("shutdown")
