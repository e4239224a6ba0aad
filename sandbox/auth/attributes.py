"""Who asks and what for: ``UserInfo``, authorization ``Attributes``, and the 403 they earn.

Pure; no I/O. ``request_attributes(method, path, query)`` derives the attributes of an HTTP
request as kube-apiserver's ``RequestInfoFactory`` does:

    GET    /api/v1/namespaces/ns/pods            list  pods            ns=ns
    GET    /api/v1/namespaces/ns/pods?watch=1    watch pods            ns=ns
    GET    /api/v1/watch/namespaces/ns/pods/p    watch pods  name=p    ns=ns
    GET    /api/v1/pods?fieldSelector=metadata.name%3Dp   list pods name=p
    POST   /api/v1/namespaces/ns/pods/p/eviction create pods/eviction name=p
    PUT    /apis/g/v/namespaces/ns/cs/c/status   update cs/status  name=c
    DELETE /api/v1/namespaces/ns/pods            deletecollection pods
    GET    /api/v1/namespaces/ns                 get   namespaces  name=ns ns=ns
    GET    /apis, /version, /sandbox/v1/stats    non-resource: verb get, the path

``forbidden(attrs, user, reason)`` is the ``ApiError`` kube answers with when no authorizer
allows the request (``responsewriters.ForbiddenStatusError``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sandbox.errors import ApiError

_SPECIAL_VERBS = frozenset({"proxy", "watch"})
_NAMESPACE_SUBRESOURCES = frozenset({"status", "finalize"})
_TRUE = ("1", "true", "True")
_METHOD_VERBS = {
    "POST": "create",
    "GET": "get",
    "HEAD": "get",
    "PUT": "update",
    "PATCH": "patch",
    "DELETE": "delete",
}


@dataclass(frozen=True, slots=True)
class UserInfo:
    """An authenticated user, as ``authentication.k8s.io/v1 UserInfo``."""

    username: str
    uid: str = ""
    groups: tuple[str, ...] = ()
    extra: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"username": self.username}
        if self.uid:
            out["uid"] = self.uid
        if self.groups:
            out["groups"] = list(self.groups)
        if self.extra:
            out["extra"] = {k: list(v) for k, v in self.extra.items()}
        return out

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> UserInfo:
        extra = body.get("extra") or {}
        return cls(
            username=str(body.get("username") or ""),
            uid=str(body.get("uid") or ""),
            groups=tuple(str(g) for g in body.get("groups") or ()),
            extra={str(k): tuple(str(x) for x in v or ()) for k, v in extra.items()},
        )


@dataclass(frozen=True, slots=True)
class Attributes:
    """What a request does (``authorizer.Attributes`` without the user)."""

    verb: str
    resource_request: bool = True
    group: str = ""
    version: str = ""
    resource: str = ""
    subresource: str = ""
    namespace: str = ""
    name: str = ""
    path: str = ""

    @property
    def combined_resource(self) -> str:
        return f"{self.resource}/{self.subresource}" if self.subresource else self.resource


def _name_from_field_selector(selector: str | None) -> str:
    if not selector:
        return ""
    for term in selector.split(","):
        key, op, value = _split_term(term.strip())
        if key == "metadata.name" and op in ("=", "==") and value and "/" not in value:
            return value
    return ""


def _split_term(term: str) -> tuple[str, str, str]:
    for op in ("!=", "==", "="):
        key, sep, value = term.partition(op)
        if sep:
            return key.strip(), op, value.strip()
    return term, "", ""


def request_attributes(method: str, path: str, query: Mapping[str, str]) -> Attributes:
    """The attributes kube-apiserver's RequestInfo gives this request. Pure."""
    parts = [p for p in path.split("/") if p]
    non_resource = Attributes(verb=method.lower(), resource_request=False, path=path)
    if len(parts) < 3 or parts[0] not in ("api", "apis"):
        return non_resource
    prefix, parts = parts[0], parts[1:]
    group = ""
    if prefix == "apis":
        if len(parts) < 3:
            return non_resource
        group, parts = parts[0], parts[1:]
    version, parts = parts[0], parts[1:]
    if parts[0] in _SPECIAL_VERBS:
        if len(parts) < 2:
            return non_resource
        verb, parts = parts[0], parts[1:]
        by_method = False
    else:
        verb = _METHOD_VERBS.get(method.upper(), "")
        by_method = True
    namespace = ""
    if parts[0] == "namespaces":
        if len(parts) > 1:
            namespace = parts[1]
            if len(parts) > 2 and parts[2] not in _NAMESPACE_SUBRESOURCES:
                parts = parts[2:]
    resource = parts[0]
    name = parts[1] if len(parts) >= 2 else ""
    subresource = parts[2] if len(parts) >= 3 and verb != "proxy" else ""
    if by_method and not name and verb == "get":
        verb = "watch" if query.get("watch") in _TRUE else "list"
        name = _name_from_field_selector(query.get("fieldSelector"))
    if by_method and not name and verb == "delete":
        verb = "deletecollection"
    return Attributes(
        verb=verb,
        group=group,
        version=version,
        resource=resource,
        subresource=subresource,
        namespace=namespace,
        name=name,
        path=path,
    )


def forbidden_message(attrs: Attributes, username: str) -> str:
    """``forbiddenMessage`` of kube's authorization filter."""
    if not attrs.resource_request:
        return f'User "{username}" cannot {attrs.verb} path "{attrs.path}"'
    res = attrs.combined_resource
    if attrs.namespace:
        return (
            f'User "{username}" cannot {attrs.verb} resource "{res}" in API group '
            f'"{attrs.group}" in the namespace "{attrs.namespace}"'
        )
    return (
        f'User "{username}" cannot {attrs.verb} resource "{res}" in API group '
        f'"{attrs.group}" at the cluster scope'
    )


def forbidden_error(*, resource: str, group: str, name: str, message: str) -> ApiError:
    """``apierrors.NewForbidden``: the Status of a 403."""
    qualified = f"{resource}.{group}" if group and resource else resource
    if not qualified:
        text = f"forbidden: {message}"
    elif not name:
        text = f"{qualified} is forbidden: {message}"
    else:
        text = f'{qualified} "{name}" is forbidden: {message}'
    details: dict[str, Any] = {}
    if name:
        details["name"] = name
    if group and resource:
        details["group"] = group
    if resource:
        details["kind"] = resource
    return ApiError.status(code=403, reason="Forbidden", message=text, details=details)


def forbidden(attrs: Attributes, username: str, reason: str = "") -> ApiError:
    """The 403 for a request no authorizer allowed (``ForbiddenStatusError``)."""
    msg = forbidden_message(attrs, username)
    if reason:
        msg = f"{msg}: {reason}"
    return forbidden_error(
        resource=attrs.resource if attrs.resource_request else "",
        group=attrs.group if attrs.resource_request else "",
        name=attrs.name if attrs.resource_request else "",
        message=msg,
    )


def unauthorized() -> ApiError:
    return ApiError.status(code=401, reason="Unauthorized", message="Unauthorized")
