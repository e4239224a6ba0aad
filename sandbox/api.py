"""REST semantics of the sandbox API server, independent of HTTP.

``ApiCore`` turns one decoded request (resource type, namespace, name, body, options) into
store writes: admission (through an optional ``Dispatcher``), defaulting and validation,
resourceVersion preconditions, generation, status/scale/binding/eviction subresources,
graceful and finalizer-blocked deletion, CRD registration, ownerReference garbage
collection, and each namespace's ``default`` ServiceAccount and ``kube-root-ca.crt`` (made with
the namespace, and again a moment after one is deleted). Every failure is an ``ApiError``
carrying the Status body to send. ``sandbox.server`` is the HTTP shell around it.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import logging
import secrets
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field, replace
from typing import Any

import orjson

from sandbox import defaults, errors, schema
from sandbox.admission_types import (
    AdmissionAttributes,
    Dispatcher,
    GroupVersionKind,
    GroupVersionResource,
    Operation,
)
from sandbox.errors import ApiError
from sandbox.patch import apply_patch
from sandbox.resources import NEVER_ADMITTED, Registry, ResourceType, types_from_crd
from sandbox.selectors import (
    FieldSelector,
    LabelSelector,
    from_label_selector_object,
    selector_to_string,
)
from sandbox.store import Store, now_rfc3339

log = logging.getLogger(__name__)

ADMIN_USER: dict[str, Any] = {
    "username": "sandbox-admin",
    "uid": "sandbox-admin-uid",
    "groups": ["system:masters", "system:authenticated"],
}
GC_USER: dict[str, Any] = {
    "username": "system:serviceaccount:kube-system:generic-garbage-collector",
    "groups": ["system:serviceaccounts", "system:authenticated"],
}
_CRD_KEY = ("apiextensions.k8s.io", "customresourcedefinitions")
_NS_KEY = ("", "namespaces")
_POD_KEY = ("", "pods")
_NAME_CHARS = "bcdfghjklmnpqrstvwxz2456789"


class _Moved(Exception):
    """The stored object changed while a write awaited admission: decide again on it."""


# How often a write whose object moved under it is tried again before answering 409.
_MOVED_RETRIES = 16


@dataclass(slots=True)
class Ctx:
    """Per-request facts: the caller, dryRun, fieldManager, and warnings to send back."""

    user: dict[str, Any] = field(default_factory=lambda: dict(ADMIN_USER))
    dry_run: bool = False
    field_manager: str | None = None
    # ``fieldValidation`` of a request (``Strict``, ``Warn``, ``Ignore``); "" for the sandbox's
    # own writes, which are not checked
    field_validation: str = ""
    warnings: list[str] = field(default_factory=list)
    # the authenticated caller (``sandbox.auth.tokens.Authenticated``) when a request made it
    caller: Any = None


# ``ApiCore.write_check(ctx, rt, namespace, obj)``: a last check of an object about to be
# written by a request (RBAC's escalation check); raises ApiError to refuse it.
WriteCheck = Callable[["Ctx", ResourceType, str, dict[str, Any]], None]

# ``ApiCore.field_check(ctx, rt, version, old, patched, apply)``: field validation of a patched
# object against the stored one (``old``; None when an apply creates); raises ApiError to refuse
# it, or adds warnings to ``ctx``, and returns the object to write (its unknown fields dropped,
# as the API server's decoding drops them). ``apply``: the patch was a server-side apply.
FieldCheck = Callable[
    ["Ctx", ResourceType, str, "dict[str, Any] | None", dict[str, Any], bool], dict[str, Any]
]


@dataclass(slots=True)
class ConflictFault:
    resource: str
    subresource: str
    count: int
    namespace: str | None = None
    name: str | None = None


def _meta(obj: dict[str, Any]) -> dict[str, Any]:
    m = obj.get("metadata")
    return m if isinstance(m, dict) else {}


def _gvr(rt: ResourceType, version: str) -> GroupVersionResource:
    return GroupVersionResource(rt.group, version, rt.resource)


def _options(kind: str, ctx: Ctx, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    opts: dict[str, Any] = {"kind": kind, "apiVersion": "meta.k8s.io/v1"}
    if ctx.dry_run:
        opts["dryRun"] = ["All"]
    if ctx.field_manager:
        opts["fieldManager"] = ctx.field_manager
    if extra:
        opts.update(extra)
    return opts


def _dig(obj: Any, path: str) -> Any:
    cur = obj
    for part in path.strip(".").split("."):
        if not isinstance(cur, dict):
            return None
        cur = cur.get(part)
    return cur


def _set_path(obj: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A copy of ``obj`` with a dotted path set (copying only the dicts on the way)."""
    parts = path.strip(".").split(".")
    out = dict(obj)
    cur = out
    for part in parts[:-1]:
        nxt = cur.get(part)
        nxt = dict(nxt) if isinstance(nxt, dict) else {}
        cur[part] = nxt
        cur = nxt
    cur[parts[-1]] = value
    return out


def encode_continue(*, rv: int, namespace: str, name: str) -> str:
    raw = orjson.dumps({"v": "meta.k8s.io/v1", "rv": rv, "start": f"{namespace}/{name}\x00"})
    return base64.b64encode(raw).decode()


def decode_continue(token: str) -> tuple[int, tuple[str, str]]:
    """The first page's resourceVersion and the key the next page starts after."""
    try:
        data = orjson.loads(base64.b64decode(token))
        ns, _, name = str(data["start"]).rstrip("\x00").partition("/")
        rv = int(data["rv"])
    except (ValueError, KeyError, TypeError) as e:
        raise errors.bad_request(f"invalid continue token: {e}") from e
    return rv, (ns, name)


class ApiCore:
    """Kubernetes REST semantics over a ``Store``."""

    def __init__(
        self,
        *,
        store: Store,
        registry: Registry,
        dispatcher: Dispatcher | None = None,
        auto_namespaces: frozenset[str] = frozenset({"default", "kube-system", "kube-public"}),
    ) -> None:
        self.store = store
        self.registry = registry
        self.dispatcher = dispatcher
        self.auto_namespaces = auto_namespaces
        self.faults: list[ConflictFault] = []
        self.write_check: WriteCheck | None = None
        self.field_check: FieldCheck | None = None
        # the CA bundle published in each namespace's ``kube-root-ca.crt`` (None: not published)
        self.root_ca_pem: str | None = None
        # seconds from the delete of a namespace's ``default`` ServiceAccount or
        # ``kube-root-ca.crt`` to its coming back (kube-controller-manager's controllers)
        self.namespace_object_delay = 0.1
        # background work: garbage collection, namespace objects made again
        self._tasks: set[asyncio.Task[None]] = set()
        # (group, resource, version) → that version's openAPIV3Schema; reset on CRD writes
        self._schemas: dict[tuple[str, str, str], dict[str, Any] | None] = {}
        store.on_removed = self._on_removed

    # --- faults -----------------------------------------------------------------------

    def _check_fault(self, rt: ResourceType, subresource: str, ns: str, name: str) -> None:
        for f in self.faults:
            if (
                f.count > 0
                and f.resource == rt.resource
                and f.subresource == subresource
                and (f.namespace is None or f.namespace == ns)
                and (f.name is None or f.name == name)
            ):
                f.count -= 1
                if f.count == 0:
                    self.faults.remove(f)
                raise errors.conflict(
                    resource=rt.resource,
                    group=rt.group,
                    name=name,
                    why="the object has been modified; please apply your changes to the "
                    "latest version and try again",
                )

    # --- admission --------------------------------------------------------------------

    def _admitted(self, rt: ResourceType) -> bool:
        return self.dispatcher is not None and rt.key not in NEVER_ADMITTED

    async def _admit(
        self,
        ctx: Ctx,
        *,
        operation: Operation,
        rt: ResourceType,
        version: str,
        subresource: str,
        namespace: str,
        name: str,
        obj: dict[str, Any] | None,
        old: dict[str, Any] | None,
        options: dict[str, Any],
        kind: GroupVersionKind | None = None,
        mutate: bool = True,
    ) -> AdmissionAttributes | None:
        """Run mutating admission; return the attributes for the later validating call."""
        if not self._admitted(rt):
            return None
        assert self.dispatcher is not None
        attrs = AdmissionAttributes(
            operation=operation,
            kind=kind or GroupVersionKind(rt.group, version, rt.kind),
            resource=_gvr(rt, version),
            subresource=subresource,
            namespace=namespace,
            name=name,
            object=obj,
            old_object=old,
            options=options,
            dry_run=ctx.dry_run,
            user_info=ctx.user,
        )
        if mutate and operation in ("CREATE", "UPDATE"):
            out = await self.dispatcher.mutate(attrs)
            if out is not None:
                attrs = replace(attrs, object=out)
        return attrs

    async def _validate(self, attrs: AdmissionAttributes | None, **changes: Any) -> None:
        if attrs is None or self.dispatcher is None:
            return
        await self.dispatcher.validate(replace(attrs, **changes) if changes else attrs)

    # --- reads ------------------------------------------------------------------------

    def get(self, rt: ResourceType, namespace: str, name: str) -> dict[str, Any]:
        obj = self.store.get(rt.key, namespace if rt.namespaced else "", name)
        if obj is None:
            raise errors.not_found(resource=rt.resource, group=rt.group, name=name)
        return obj

    def list(
        self,
        rt: ResourceType,
        *,
        version: str,
        namespace: str | None,
        labels: LabelSelector,
        fields: FieldSelector,
        limit: int = 0,
        cont: str | None = None,
    ) -> dict[str, Any]:
        """A List body; built-in items carry no kind/apiVersion, custom ones do."""
        rv = self.store.rv
        after: tuple[str, str] | None = None
        if cont:
            # Every page of one list reports the first page's resourceVersion, as
            # kube-apiserver does. Later pages show current objects (no snapshot here), so
            # a watch from that version replays whatever changed since the first page.
            rv, after = decode_continue(cont)
        filtered = not (labels.empty and fields.empty)
        objs: list[dict[str, Any]] = []
        more = False
        for o in self.store.iter_sorted(rt.key, namespace, after=after):
            if filtered and not (labels.matches(_meta(o).get("labels")) and fields.matches(o)):
                continue
            if limit and len(objs) == limit:
                more = True
                break
            objs.append(o)
        meta: dict[str, Any] = {"resourceVersion": str(rv)}
        if more:
            last = _meta(objs[-1])
            last_key = (str(last.get("namespace") or ""), str(last.get("name")))
            meta["continue"] = encode_continue(rv=rv, namespace=last_key[0], name=last_key[1])
            if not filtered:
                meta["remainingItemCount"] = self.store.count_after(rt.key, namespace, last_key)
        api_version = rt.api_version(version)
        if rt.custom:
            items: list[Any] = (
                objs
                if version == rt.storage_version
                else [{**o, "apiVersion": api_version} for o in objs]
            )
        else:
            items = [
                {k: v for k, v in o.items() if k != "kind" and k != "apiVersion"} for o in objs
            ]
        return {"kind": rt.list_kind, "apiVersion": api_version, "metadata": meta, "items": items}

    # --- create -----------------------------------------------------------------------

    def _require_namespace(self, rt: ResourceType, namespace: str) -> None:
        if not rt.namespaced:
            return
        if self.store.get(_NS_KEY, "", namespace) is not None:
            return
        if namespace in self.auto_namespaces:
            self.ensure_namespace(namespace)
            return
        raise errors.not_found(resource="namespaces", group="", name=namespace)

    def ensure_namespace(self, name: str) -> dict[str, Any]:
        ns_rt = self.registry.get(*_NS_KEY)
        assert ns_rt is not None
        existing = self.store.get(_NS_KEY, "", name)
        if existing is not None:
            return existing
        obj = defaults.default_object(
            ns_rt,
            {"kind": "Namespace", "apiVersion": "v1", "metadata": {"name": name}},
            creating=True,
        )
        self.store.stamp_new(obj, generation=False)
        stored = self.store.put(ns_rt, obj)
        self._populate_namespace(name)
        return stored

    def _populate_namespace(self, namespace: str) -> None:
        """What kube-controller-manager makes in a new namespace (``defaults.namespace_objects``):
        stored at once here, where a real cluster takes a moment."""
        for key, obj in defaults.namespace_objects(namespace, ca_pem=self.root_ca_pem):
            rt = self.registry.get(*key)
            if rt is None or self.store.get(key, namespace, obj["metadata"]["name"]) is not None:
                continue
            obj = defaults.default_object(rt, obj, creating=True)
            self.store.stamp_new(obj, generation=rt.generation)
            self.store.put(rt, obj)

    def _generate_name(self, prefix: str) -> str:
        return prefix + "".join(secrets.choice(_NAME_CHARS) for _ in range(5))

    def _check_body(self, rt: ResourceType, version: str, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise errors.bad_request(
                f"the object provided is unrecognized (must be of type {rt.kind})"
            )
        kind = body.get("kind")
        if kind is not None and kind != rt.kind:
            raise errors.bad_request(
                f"the object provided is unrecognized (must be of type {rt.kind}): "
                f"kind {kind} does not match"
            )
        return body

    async def create(
        self,
        ctx: Ctx,
        rt: ResourceType,
        *,
        version: str,
        namespace: str,
        body: Any,
    ) -> dict[str, Any]:
        obj = _typed(rt.kind, rt.api_version(version), self._check_body(rt, version, body))
        meta = dict(_meta(obj))
        if rt.namespaced:
            if meta.get("namespace") and meta["namespace"] != namespace:
                raise errors.bad_request(
                    "the namespace of the provided object does not match the namespace sent "
                    "on the request"
                )
            meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)
        for k in (
            "uid",
            "resourceVersion",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
        ):
            meta.pop(k, None)
        obj["metadata"] = meta
        if not meta.get("name") and not meta.get("generateName"):
            raise errors.invalid(
                kind=rt.kind,
                group=rt.group,
                name="",
                causes=[
                    {
                        "reason": "FieldValueRequired",
                        "message": "Required value: name or generateName is required",
                        "field": "metadata.name",
                    }
                ],
            )
        self._check_fault(rt, "", namespace, str(meta.get("name") or ""))
        self._require_namespace(rt, namespace)
        if rt.status and not rt.custom:
            obj.pop("status", None)
        elif rt.status:
            obj.pop("status", None)
        obj = defaults.default_object(rt, obj, creating=True)
        if rt.custom:
            obj = self._prune_custom(rt, version, obj)
        attrs = await self._admit(
            ctx,
            operation="CREATE",
            rt=rt,
            version=version,
            subresource="",
            namespace=namespace if rt.namespaced else "",
            name=str(meta.get("name") or ""),
            obj=obj,
            old=None,
            options=_options("CreateOptions", ctx),
        )
        if attrs is not None and attrs.object is not None:
            obj = dict(attrs.object)
        meta = dict(_meta(obj))
        if not meta.get("name"):
            meta["name"] = self._generate_name(str(meta.get("generateName")))
        obj["metadata"] = meta
        self.store.stamp_new(obj, generation=rt.generation)
        if rt.key == _CRD_KEY:
            obj = self._crd_accept(obj)
        defaults.validate_create(rt, obj)
        if self.write_check is not None and ctx.caller is not None:
            self.write_check(ctx, rt, namespace if rt.namespaced else "", obj)
        if rt.custom:
            obj = self._check_custom(rt, version, obj, subresource="")
        await self._validate(attrs, object=obj, name=meta["name"])
        ns = namespace if rt.namespaced else ""
        if self.store.get(rt.key, ns, meta["name"]) is not None:
            raise errors.already_exists(resource=rt.resource, group=rt.group, name=meta["name"])
        if ctx.dry_run:
            return obj
        stored = self.store.put(rt, obj)
        if rt.key == _CRD_KEY:
            self._register_crd(stored)
        elif rt.key == _NS_KEY:
            self._populate_namespace(meta["name"])
        return stored

    # --- update -----------------------------------------------------------------------

    def _stale(self, rt: ResourceType, name: str) -> ApiError:
        return errors.conflict(
            resource=rt.resource,
            group=rt.group,
            name=name,
            why="the object has been modified; please apply your changes to the latest "
            "version and try again",
        )

    async def update(
        self,
        ctx: Ctx,
        rt: ResourceType,
        *,
        version: str,
        namespace: str,
        name: str,
        body: Any,
        subresource: str = "",
    ) -> dict[str, Any]:
        """PUT of an object or its status.

        As kube-apiserver's GuaranteedUpdate: when the stored object changes while the write
        awaits admission, a body that names a resourceVersion gets 409; one that does not is
        decided again on the new object (admission included), never written over it.
        """
        conditional = isinstance(body, dict) and bool(_meta(body).get("resourceVersion"))
        for _ in range(_MOVED_RETRIES):
            old = self.get(rt, namespace, name)
            try:
                return await self._update_once(
                    ctx,
                    rt,
                    version=version,
                    namespace=namespace,
                    name=name,
                    body=body,
                    subresource=subresource,
                    old=old,
                )
            except _Moved:
                if conditional:
                    raise self._stale(rt, name) from None
        raise self._stale(rt, name)

    async def _update_once(
        self,
        ctx: Ctx,
        rt: ResourceType,
        *,
        version: str,
        namespace: str,
        name: str,
        body: Any,
        subresource: str,
        old: dict[str, Any],
    ) -> dict[str, Any]:
        """One try of an update decided on ``old``; raises ``_Moved`` if it is stale."""
        new = _typed(
            rt.kind,
            str(old.get("apiVersion") or rt.api_version(version)),
            self._check_body(rt, version, body),
        )
        self._check_fault(rt, subresource, namespace, name)
        old_meta = _meta(old)
        new_meta = dict(_meta(new))
        if new_meta.get("name", name) != name:
            raise errors.bad_request("the name of the object does not match the name on the URL")
        want_rv = new_meta.get("resourceVersion")
        if want_rv and str(want_rv) != old_meta.get("resourceVersion"):
            raise self._stale(rt, name)
        want_uid = new_meta.get("uid")
        if want_uid and want_uid != old_meta.get("uid"):
            # kube-apiserver treats a uid in the body as a precondition on update and patch.
            raise errors.conflict(
                resource=rt.resource,
                group=rt.group,
                name=name,
                why=f"Precondition failed: UID in precondition: {want_uid}, "
                f"UID in object meta: {old_meta.get('uid')}",
            )
        if subresource == "status":
            merged = dict(old)
            if "status" in new:
                merged["status"] = new["status"]
            else:
                merged.pop("status", None)
            new = merged
            new_meta = dict(old_meta)
        else:
            for k in (
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "generation",
                "namespace",
                "name",
            ):
                if k in old_meta:
                    new_meta[k] = old_meta[k]
                else:
                    new_meta.pop(k, None)
            if rt.status:
                if "status" in old:
                    new["status"] = old["status"]
                else:
                    new.pop("status", None)
        new["metadata"] = new_meta
        if not subresource:
            new = defaults.default_object(rt, new, creating=False)
        if rt.custom:
            new = self._prune_custom(rt, version, new)
        attrs = await self._admit(
            ctx,
            operation="UPDATE",
            rt=rt,
            version=version,
            subresource=subresource,
            namespace=namespace if rt.namespaced else "",
            name=name,
            obj=new,
            old=old,
            options=_options("UpdateOptions", ctx),
        )
        if attrs is not None and attrs.object is not None:
            new = dict(attrs.object)
        if not subresource:
            defaults.validate_update(rt, old, new)
            if self.write_check is not None and ctx.caller is not None:
                self.write_check(ctx, rt, namespace if rt.namespaced else "", new)
        return await self._commit_update(
            ctx, rt, old=old, new=new, attrs=attrs, version=version, subresource=subresource
        )

    async def _commit_update(
        self,
        ctx: Ctx,
        rt: ResourceType,
        *,
        old: dict[str, Any],
        new: dict[str, Any],
        attrs: AdmissionAttributes | None,
        version: str,
        subresource: str,
        validate_changes: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        if rt.custom:
            new = self._check_custom(rt, version, new, subresource=subresource)
        old_meta = _meta(old)
        new_meta = dict(_meta(new))
        new_meta["resourceVersion"] = old_meta.get("resourceVersion")
        new["metadata"] = new_meta
        if rt.generation and defaults.spec_changed(rt, old, new):
            new_meta["generation"] = int(old_meta.get("generation") or 1) + 1
        if rt.key == _CRD_KEY:
            new = self._crd_accept(new)
        await self._validate(attrs, **(validate_changes or {"object": new}))
        current = self.store.get(rt.key, str(old_meta.get("namespace") or ""), old_meta["name"])
        if current is None:
            raise errors.not_found(resource=rt.resource, group=rt.group, name=old_meta["name"])
        if _meta(current).get("resourceVersion") != old_meta.get("resourceVersion"):
            raise _Moved()
        if new == old:
            return old
        if ctx.dry_run:
            return new
        if new_meta.get("deletionTimestamp") and not new_meta.get("finalizers"):
            if not (rt.key == _POD_KEY and new_meta.get("deletionGracePeriodSeconds")):
                gone = self.store.remove(rt, str(new_meta.get("namespace") or ""), new_meta["name"])
                return gone or new
        stored = self.store.put(rt, new)
        if rt.key == _CRD_KEY:
            self._register_crd(stored)
        return stored

    async def patch(
        self,
        ctx: Ctx,
        rt: ResourceType,
        *,
        version: str,
        namespace: str,
        name: str,
        content_type: str,
        raw: bytes,
        subresource: str = "",
    ) -> tuple[int, dict[str, Any]]:
        """PATCH; returns (HTTP code, object). Apply patches create a missing object."""
        ns = namespace if rt.namespaced else ""
        is_apply = content_type.startswith("application/apply-patch")
        # As GuaranteedUpdate: a patch is applied to the stored object; if that object moves
        # while the write awaits admission, the patch is applied again to the new one.
        for _ in range(_MOVED_RETRIES):
            old = self.store.get(rt.key, ns, name)
            if old is None:
                if is_apply and not subresource:
                    patched = apply_patch(
                        content_type=content_type, original={}, raw=raw, strategic_ok=not rt.custom
                    )
                    patched.setdefault("metadata", {})["name"] = name
                    if self.field_check is not None:
                        patched = self.field_check(ctx, rt, version, None, patched, True)
                    return 201, await self.create(
                        ctx, rt, version=version, namespace=namespace, body=patched
                    )
                raise errors.not_found(resource=rt.resource, group=rt.group, name=name)
            patched = apply_patch(
                content_type=content_type, original=old, raw=raw, strategic_ok=not rt.custom
            )
            if self.field_check is not None and subresource in ("", "status"):
                patched = self.field_check(ctx, rt, version, old, patched, is_apply)
            # a patch carries the stored resourceVersion unless it names one explicitly
            try:
                return 200, await self._update_once(
                    ctx,
                    rt,
                    version=version,
                    namespace=namespace,
                    name=name,
                    body=patched,
                    subresource=subresource,
                    old=old,
                )
            except _Moved:
                continue
        raise self._stale(rt, name)

    # --- delete -----------------------------------------------------------------------

    def _check_delete_preconditions(
        self, rt: ResourceType, name: str, pre: dict[str, Any], meta: dict[str, Any]
    ) -> None:
        if pre.get("uid") and pre["uid"] != meta.get("uid"):
            raise errors.conflict(
                resource=rt.kind,
                group="",
                name=name,
                why=f"the UID in the precondition ({pre['uid']}) does not match the UID in "
                f"record ({meta.get('uid')}). The object might have been deleted and then "
                "recreated",
            )
        if pre.get("resourceVersion") and pre["resourceVersion"] != meta.get("resourceVersion"):
            raise errors.conflict(
                resource=rt.kind,
                group="",
                name=name,
                why=f"the ResourceVersion in the precondition ({pre['resourceVersion']}) does "
                f"not match the ResourceVersion in record ({meta.get('resourceVersion')}). The "
                "object might have been modified",
            )

    async def delete(
        self,
        ctx: Ctx,
        rt: ResourceType,
        *,
        version: str,
        namespace: str,
        name: str,
        options: dict[str, Any],
        admit: bool = True,
    ) -> tuple[int, dict[str, Any]]:
        """DELETE; returns (HTTP code, body): the object while it lingers, else per kind."""
        obj = self.get(rt, namespace, name)
        meta = _meta(obj)
        self._check_fault(rt, "", namespace, name)
        pre = options.get("preconditions") or {}
        self._check_delete_preconditions(rt, name, pre, meta)
        is_pod = rt.key == _POD_KEY
        grace = options.get("gracePeriodSeconds")
        if grace is None and is_pod:
            grace = int((obj.get("spec") or {}).get("terminationGracePeriodSeconds", 30))
        extra: dict[str, Any] = {}
        if grace is not None:
            extra["gracePeriodSeconds"] = grace
        for k in ("preconditions", "propagationPolicy"):
            if k in options:
                extra[k] = options[k]
        if admit:
            attrs = await self._admit(
                ctx,
                operation="DELETE",
                rt=rt,
                version=version,
                subresource="",
                namespace=namespace if rt.namespaced else "",
                name=name,
                obj=None,
                old=obj,
                options=_options("DeleteOptions", ctx, extra),
                mutate=False,
            )
            await self._validate(attrs)
            # As GuaranteedUpdate: the delete acts on the object as it is now, and its
            # preconditions hold against that one (a write during admission is kept).
            current = self.store.get(rt.key, namespace if rt.namespaced else "", name)
            if current is None:
                raise errors.not_found(resource=rt.resource, group=rt.group, name=name)
            if current is not obj:
                obj, meta = current, _meta(current)
                self._check_delete_preconditions(rt, name, pre, meta)
        grace_s: int | None = None if grace is None else int(grace)
        graceful = (
            is_pod
            and grace_s is not None
            and grace_s > 0
            and bool((obj.get("spec") or {}).get("nodeName"))
            and not _terminal(obj)
        )
        if graceful:
            current = meta.get("deletionGracePeriodSeconds")
            assert grace_s is not None
            if meta.get("deletionTimestamp") and current is not None and int(current) <= grace_s:
                return 200, obj
            new_meta = dict(meta)
            new_meta["deletionTimestamp"] = now_rfc3339(grace_s)
            new_meta["deletionGracePeriodSeconds"] = grace_s
            if rt.generation:
                new_meta["generation"] = int(meta.get("generation") or 1) + 1
            new = {**obj, "metadata": new_meta}
            if ctx.dry_run:
                return 200, new
            return 200, self.store.put(rt, new)
        if meta.get("finalizers"):
            if meta.get("deletionTimestamp") and meta.get("deletionGracePeriodSeconds") == 0:
                return 200, obj
            new_meta = dict(meta)
            new_meta.setdefault("deletionTimestamp", now_rfc3339())
            new_meta["deletionTimestamp"] = new_meta["deletionTimestamp"]
            new_meta["deletionGracePeriodSeconds"] = 0
            if rt.generation:
                new_meta["generation"] = int(meta.get("generation") or 1) + 1
            new = {**obj, "metadata": new_meta}
            if ctx.dry_run:
                return 200, new
            return 200, self.store.put(rt, new)
        if ctx.dry_run:
            return 200, obj if rt.returns_object_on_delete else self._deleted_status(rt, obj)
        if options.get("propagationPolicy") == "Orphan":
            self._orphan(str(meta.get("uid")))
        gone = self._remove(rt, namespace, name)
        return 200, gone if rt.returns_object_on_delete else self._deleted_status(rt, gone)

    def _remove(self, rt: ResourceType, namespace: str, name: str) -> dict[str, Any]:
        if rt.key == _CRD_KEY:
            obj = self.get(rt, namespace, name)
            self._unregister_crd(obj)
        if rt.key == _NS_KEY:
            self._purge_namespace(name)
        gone = self.store.remove(rt, namespace, name)
        assert gone is not None
        return gone

    @staticmethod
    def _deleted_status(rt: ResourceType, obj: dict[str, Any]) -> dict[str, Any]:
        details: dict[str, Any] = {"name": _meta(obj).get("name")}
        if rt.group:
            details["group"] = rt.group
        details["kind"] = rt.resource
        details["uid"] = _meta(obj).get("uid")
        return {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Success",
            "details": details,
        }

    async def delete_collection(
        self,
        ctx: Ctx,
        rt: ResourceType,
        *,
        version: str,
        namespace: str | None,
        labels: LabelSelector,
        fields: FieldSelector,
        options: dict[str, Any],
    ) -> dict[str, Any]:
        victims = [
            o
            for o in self.store.sorted_objects(rt.key, namespace)
            if labels.matches(_meta(o).get("labels")) and fields.matches(o)
        ]
        items: list[dict[str, Any]] = []
        for o in victims:
            m = _meta(o)
            try:
                _, body = await self.delete(
                    ctx,
                    rt,
                    version=version,
                    namespace=str(m.get("namespace") or ""),
                    name=str(m["name"]),
                    options=options,
                )
            except ApiError as e:
                if e.code == 404:
                    continue
                raise
            if body.get("kind") != "Status":
                items.append({k: v for k, v in body.items() if k not in ("kind", "apiVersion")})
        return {
            "kind": rt.list_kind,
            "apiVersion": rt.api_version(version),
            "metadata": {"resourceVersion": str(self.store.rv)},
            "items": items,
        }

    def _purge_namespace(self, namespace: str) -> None:
        for rt in self.registry:
            if not rt.namespaced:
                continue
            for o in list(self.store.iter_objects(rt.key, namespace)):
                self.store.remove(rt, namespace, str(_meta(o)["name"]))

    # --- garbage collection -----------------------------------------------------------

    def _orphan(self, uid: str) -> None:
        for key, ns, name in self.store.dependents(uid):
            rt = self.registry.get(*key)
            obj = self.store.get(key, ns, name)
            if rt is None or obj is None:
                continue
            meta = dict(_meta(obj))
            meta["ownerReferences"] = [
                r for r in meta.get("ownerReferences") or [] if r.get("uid") != uid
            ]
            if not meta["ownerReferences"]:
                del meta["ownerReferences"]
            self.store.put(rt, {**obj, "metadata": meta})

    def _on_removed(self, uid: str, obj: dict[str, Any]) -> None:
        if defaults.is_namespace_object(obj, ca_pem=self.root_ca_pem):
            self._background(self._restore_namespace_objects(str(_meta(obj)["namespace"])))
        if self.store.dependents(uid):
            self._background(self._collect(uid))

    def _background(self, work: Coroutine[Any, Any, None]) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            work.close()
            return
        task = loop.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _restore_namespace_objects(self, namespace: str) -> None:
        """As the ServiceAccount controller and the root-CA publisher: a namespace's
        ``default`` ServiceAccount or ``kube-root-ca.crt`` deleted comes back a moment later,
        unless the namespace is gone or being deleted."""
        await asyncio.sleep(self.namespace_object_delay)
        ns = self.store.get(_NS_KEY, "", namespace)
        if ns is not None and not _meta(ns).get("deletionTimestamp"):
            self._populate_namespace(namespace)

    async def _collect(self, uid: str) -> None:
        """Background GC: delete dependents whose owners are all gone."""
        await asyncio.sleep(0)
        ctx = Ctx(user=dict(GC_USER))
        for key, ns, name in self.store.dependents(uid):
            rt = self.registry.get(*key)
            obj = self.store.get(key, ns, name)
            if rt is None or obj is None:
                continue
            refs = _meta(obj).get("ownerReferences") or []
            if any(self.store.exists_uid(str(r.get("uid"))) for r in refs):
                continue
            try:
                await self.delete(
                    ctx,
                    rt,
                    version=rt.storage_version,
                    namespace=ns,
                    name=name,
                    options={"propagationPolicy": "Background"},
                )
            except ApiError as e:
                log.info("garbage collection of %s/%s %s: %s", ns, name, rt.resource, e)

    async def aclose(self) -> None:
        for t in list(self._tasks):
            t.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    # --- CRDs -------------------------------------------------------------------------

    @staticmethod
    def _crd_accept(crd: dict[str, Any]) -> dict[str, Any]:
        spec = crd.get("spec") or {}
        names = dict(spec.get("names") or {})
        names.setdefault("singular", str(names.get("kind", "")).lower())
        names.setdefault("listKind", f"{names.get('kind', '')}List")
        status = dict(crd.get("status") or {})
        if status.get("acceptedNames") == names and status.get("conditions"):
            return crd
        ts = now_rfc3339()
        status["conditions"] = [
            {
                "type": "NamesAccepted",
                "status": "True",
                "lastTransitionTime": ts,
                "reason": "NoConflicts",
                "message": "no conflicts found",
            },
            {
                "type": "Established",
                "status": "True",
                "lastTransitionTime": ts,
                "reason": "InitialNamesAccepted",
                "message": "the initial names have been accepted",
            },
        ]
        status["acceptedNames"] = names
        storage = [v["name"] for v in spec.get("versions") or [] if v.get("storage")]
        status["storedVersions"] = sorted(set(status.get("storedVersions") or []) | set(storage))
        return {**crd, "status": status}

    def _register_crd(self, crd: dict[str, Any]) -> None:
        self._schemas.clear()
        for rt in types_from_crd(crd):
            self.registry.add(rt)

    def _unregister_crd(self, crd: dict[str, Any]) -> None:
        self._schemas.clear()
        for rt in types_from_crd(crd):
            for o in list(self.store.iter_objects(rt.key, None)):
                m = _meta(o)
                self.store.remove(rt, str(m.get("namespace") or ""), str(m["name"]))
            self.registry.remove(rt.group, rt.resource)
            self.store.drop_type(rt.key)

    # --- custom resource schemas -------------------------------------------------------

    def _schema_of(self, rt: ResourceType, version: str) -> dict[str, Any] | None:
        """The openAPIV3Schema the CRD of ``rt`` declares for ``version`` (cached)."""
        key = (rt.group, rt.resource, version)
        if key in self._schemas:
            return self._schemas[key]
        crd = self.store.get(_CRD_KEY, "", rt.qualified)
        if crd is None:
            crd = next(
                (
                    c
                    for c in self.store.iter_objects(_CRD_KEY, None)
                    if (c.get("spec") or {}).get("group") == rt.group
                    and ((c.get("spec") or {}).get("names") or {}).get("plural") == rt.resource
                ),
                None,
            )
        spec = (crd or {}).get("spec") or {}
        found: Any = None
        for v in spec.get("versions") or []:
            if v.get("name") == version:
                found = (v.get("schema") or {}).get("openAPIV3Schema")
        if found is None:
            found = (spec.get("validation") or {}).get("openAPIV3Schema")
        self._schemas[key] = found if isinstance(found, dict) and found else None
        return self._schemas[key]

    def schema_of(self, rt: ResourceType, version: str) -> dict[str, Any] | None:
        """The ``openAPIV3Schema`` of a custom resource version (None without one)."""
        return self._schema_of(rt, version)

    def _prune_custom(self, rt: ResourceType, version: str, obj: dict[str, Any]) -> dict[str, Any]:
        s = self._schema_of(rt, version)
        return obj if s is None else schema.prune(obj, s)

    def _check_custom(
        self, rt: ResourceType, version: str, obj: dict[str, Any], *, subresource: str
    ) -> dict[str, Any]:
        """Prune and validate a custom resource after mutating admission; 422 if invalid.

        A status write checks the status; other writes check all but a status kept apart
        by the status subresource (it is the stored one, already checked).
        """
        s = self._schema_of(rt, version)
        if s is None:
            return obj
        obj = schema.prune(obj, s)
        if subresource == "status":
            status_schema = (s.get("properties") or {}).get("status")
            causes = (
                schema.validate(obj["status"], status_schema, path="status")
                if "status" in obj and isinstance(status_schema, dict)
                else []
            )
        elif rt.status and "status" in obj:
            causes = schema.validate({k: v for k, v in obj.items() if k != "status"}, s)
        else:
            causes = schema.validate(obj, s)
        if causes:
            raise errors.invalid(
                kind=rt.kind, group=rt.group, name=str(_meta(obj).get("name") or ""), causes=causes
            )
        return obj

    # --- scale ------------------------------------------------------------------------

    def scale_of(self, rt: ResourceType, obj: dict[str, Any]) -> dict[str, Any]:
        """The autoscaling/v1 Scale view of an object."""
        assert rt.scale is not None
        meta = _meta(obj)
        smeta = {
            k: meta[k]
            for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
            if k in meta
        }
        spec_replicas = _dig(obj, rt.scale.spec_replicas_path)
        status: dict[str, Any] = {"replicas": int(_dig(obj, rt.scale.status_replicas_path) or 0)}
        if rt.scale.selector_from_spec:
            sel = selector_to_string((obj.get("spec") or {}).get("selector"))
            if sel:
                status["selector"] = sel
        elif rt.scale.label_selector_path:
            sel_val = _dig(obj, rt.scale.label_selector_path)
            if sel_val:
                status["selector"] = str(sel_val)
        return {
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": smeta,
            "spec": {"replicas": int(spec_replicas or 0)},
            "status": status,
        }

    async def update_scale(
        self,
        ctx: Ctx,
        rt: ResourceType,
        *,
        version: str,
        namespace: str,
        name: str,
        body: Any,
    ) -> dict[str, Any]:
        """PUT of ``/scale``; decided again when the object moved during admission (409 when
        the Scale named the old resourceVersion), as ``update``."""
        conditional = isinstance(body, dict) and bool(_meta(body).get("resourceVersion"))
        for _ in range(_MOVED_RETRIES):
            try:
                return await self._update_scale_once(
                    ctx, rt, version=version, namespace=namespace, name=name, body=body
                )
            except _Moved:
                if conditional:
                    raise self._stale(rt, name) from None
        raise self._stale(rt, name)

    async def _update_scale_once(
        self,
        ctx: Ctx,
        rt: ResourceType,
        *,
        version: str,
        namespace: str,
        name: str,
        body: Any,
    ) -> dict[str, Any]:
        if rt.scale is None:
            raise errors.not_found(resource=rt.resource, group=rt.group, name=name)
        if not isinstance(body, dict):
            raise errors.bad_request("the object provided is unrecognized (must be of type Scale)")
        obj = self.get(rt, namespace, name)
        self._check_fault(rt, "scale", namespace, name)
        old_scale = self.scale_of(rt, obj)
        want_rv = _meta(body).get("resourceVersion")
        if want_rv and str(want_rv) != _meta(obj).get("resourceVersion"):
            raise self._stale(rt, name)
        new_scale = {**old_scale, "spec": dict(body.get("spec") or {})}
        attrs = await self._admit(
            ctx,
            operation="UPDATE",
            rt=rt,
            version=version,
            subresource="scale",
            namespace=namespace,
            name=name,
            obj=new_scale,
            old=old_scale,
            options=_options("UpdateOptions", ctx),
            kind=GroupVersionKind("autoscaling", "v1", "Scale"),
        )
        if attrs is not None and attrs.object is not None:
            new_scale = attrs.object
        replicas = (new_scale.get("spec") or {}).get("replicas")
        if not isinstance(replicas, int) or replicas < 0:
            raise errors.invalid(
                kind="Scale",
                group="autoscaling",
                name=name,
                causes=[
                    {
                        "reason": "FieldValueInvalid",
                        "field": "spec.replicas",
                        "message": "Invalid value: must be greater than or equal to 0",
                    }
                ],
            )
        new = _set_path(obj, rt.scale.spec_replicas_path, replicas)
        stored = await self._commit_update(
            ctx,
            rt,
            old=obj,
            new=new,
            attrs=attrs,
            version=version,
            subresource="scale",
            validate_changes={"object": new_scale},
        )
        return self.scale_of(rt, stored)

    async def patch_scale(
        self,
        ctx: Ctx,
        rt: ResourceType,
        *,
        version: str,
        namespace: str,
        name: str,
        content_type: str,
        raw: bytes,
    ) -> dict[str, Any]:
        if rt.scale is None:
            raise errors.not_found(resource=rt.resource, group=rt.group, name=name)
        current = self.scale_of(rt, self.get(rt, namespace, name))
        patched = apply_patch(
            content_type=content_type, original=current, raw=raw, strategic_ok=True
        )
        return await self.update_scale(
            ctx, rt, version=version, namespace=namespace, name=name, body=patched
        )

    # --- pods/binding and pods/eviction -----------------------------------------------

    async def bind(
        self, ctx: Ctx, rt: ResourceType, *, namespace: str, name: str, body: Any
    ) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise errors.bad_request(
                "the object provided is unrecognized (must be of type Binding)"
            )
        node = str((body.get("target") or {}).get("name") or "")
        if not node:
            raise errors.invalid(
                kind="Binding",
                group="",
                name=name,
                causes=[
                    {
                        "reason": "FieldValueRequired",
                        "message": "Required value",
                        "field": "target.name",
                    }
                ],
            )
        pod = self.get(rt, namespace, name)
        attrs = await self._admit(
            ctx,
            operation="CREATE",
            rt=rt,
            version="v1",
            subresource="binding",
            namespace=namespace,
            name=name,
            obj=body,
            old=None,
            options=_options("CreateOptions", ctx),
            kind=GroupVersionKind("", "v1", "Binding"),
        )
        await self._validate(attrs)
        spec = pod.get("spec") or {}
        if spec.get("nodeName"):
            raise ApiError.status(
                code=409,
                reason="Conflict",
                message=f'Operation cannot be fulfilled on pods/binding "{name}": pod {name} '
                f'is already assigned to node "{spec["nodeName"]}"',
                details={"name": name, "kind": "pods/binding"},
            )
        if _meta(pod).get("deletionTimestamp"):
            raise errors.conflict(
                resource="pods/binding",
                group="",
                name=name,
                why="pod is being deleted, cannot be assigned to a host",
            )
        meta = dict(_meta(pod))
        node_obj = self.store.get(("", "nodes"), "", node)
        if node_obj is not None:
            node_labels = _meta(node_obj).get("labels") or {}
            labels = dict(meta.get("labels") or {})
            for k in ("topology.kubernetes.io/zone", "topology.kubernetes.io/region"):
                if k in node_labels:
                    labels[k] = node_labels[k]
            meta["labels"] = labels
        status = dict(pod.get("status") or {})
        conds = [c for c in status.get("conditions") or [] if c.get("type") != "PodScheduled"]
        conds.append(
            {
                "type": "PodScheduled",
                "status": "True",
                "lastProbeTime": None,
                "lastTransitionTime": now_rfc3339(),
            }
        )
        status["conditions"] = conds
        new = {**pod, "metadata": meta, "spec": {**spec, "nodeName": node}, "status": status}
        if not ctx.dry_run:
            self.store.put(rt, new)
        return {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Success",
            "code": 201,
        }

    async def evict(
        self, ctx: Ctx, rt: ResourceType, *, namespace: str, name: str, body: Any
    ) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise errors.bad_request(
                "the object provided is unrecognized (must be of type Eviction)"
            )
        pod = self.get(rt, namespace, name)
        api_version = str(body.get("apiVersion") or "policy/v1")
        ev_version = api_version.split("/", 1)[-1]
        del_opts = dict(body.get("deleteOptions") or {})
        body_dry = bool(del_opts.get("dryRun"))
        attrs = await self._admit(
            ctx,
            operation="CREATE",
            rt=rt,
            version="v1",
            subresource="eviction",
            namespace=namespace,
            name=name,
            obj=body,
            old=None,
            options=_options("CreateOptions", ctx),
            kind=GroupVersionKind("policy", ev_version, "Eviction"),
        )
        if attrs is not None and attrs.object is not None:
            body = attrs.object
        await self._validate(attrs, object=body)
        dry = ctx.dry_run or body_dry
        if not _terminal(pod) and not _meta(pod).get("deletionTimestamp"):
            self._spend_budget(pod, namespace=namespace, dry_run=dry)
        if not dry:
            pre = del_opts.get("preconditions") or {}
            await self.delete(
                Ctx(user=ctx.user),
                rt,
                version="v1",
                namespace=namespace,
                name=name,
                options={k: v for k, v in del_opts.items() if k != "dryRun"}
                | ({"preconditions": pre} if pre else {}),
                admit=False,
            )
        return {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Success",
            "code": 201,
        }

    def _spend_budget(self, pod: dict[str, Any], *, namespace: str, dry_run: bool) -> None:
        pdb_rt = self.registry.get("policy", "poddisruptionbudgets")
        if pdb_rt is None:
            return
        labels = _meta(pod).get("labels") or {}
        for pdb in list(self.store.iter_objects(pdb_rt.key, namespace)):
            sel = (pdb.get("spec") or {}).get("selector")
            if sel is None or not from_label_selector_object(sel).matches(labels):
                continue
            status = dict(pdb.get("status") or {})
            allowed = int(status.get("disruptionsAllowed") or 0)
            if allowed <= 0:
                raise errors.too_many_requests(
                    "Cannot evict pod as it would violate the pod's disruption budget.",
                    details={
                        "causes": [
                            {
                                "reason": "DisruptionBudget",
                                "message": f"The disruption budget {_meta(pdb).get('name')} needs "
                                f"{status.get('desiredHealthy', 0)} healthy pods and has "
                                f"{status.get('currentHealthy', 0)} currently",
                            }
                        ]
                    },
                )
            if dry_run:
                continue
            status["disruptionsAllowed"] = allowed - 1
            disrupted = dict(status.get("disruptedPods") or {})
            disrupted[str(_meta(pod).get("name"))] = now_rfc3339()
            status["disruptedPods"] = disrupted
            self.store.put(pdb_rt, {**pdb, "status": status})


def _typed(kind: str, api_version: str, body: dict[str, Any]) -> dict[str, Any]:
    """A shallow copy of ``body`` with kind and apiVersion first, as the server writes them."""
    out: dict[str, Any] = {"kind": kind, "apiVersion": api_version}
    for k, v in body.items():
        if k != "kind" and k != "apiVersion":
            out[k] = v
    return out


def _terminal(pod: dict[str, Any]) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def deep_copy(obj: dict[str, Any]) -> dict[str, Any]:
    """For callers that want to mutate a stored object (the store never does)."""
    return copy.deepcopy(obj)
