"""The sandbox's authentication and authorization, and the APIs that expose them.

``Auth`` is what ``sandbox.server`` asks about every request:

    authenticate(headers)      -> Authenticated (static token, ServiceAccount token,
                                  then ``Impersonate-*`` headers) or ApiError 401/403
    check(caller, attrs)       -> None, or ApiError 403 with kube's Status
    handle(caller, kind, ...)  -> the answer of one of the review/token endpoints:

    POST /api/v1/namespaces/{ns}/serviceaccounts/{name}/token          TokenRequest
    POST /apis/authentication.k8s.io/v1/tokenreviews                   TokenReview
    POST /apis/authentication.k8s.io/v1/selfsubjectreviews             SelfSubjectReview
    POST /apis/authorization.k8s.io/v1/subjectaccessreviews            SubjectAccessReview
    POST /apis/authorization.k8s.io/v1/selfsubjectaccessreviews        SelfSubjectAccessReview
    POST /apis/authorization.k8s.io/v1/namespaces/{ns}/localsubjectaccessreviews
    POST /apis/authorization.k8s.io/v1/selfsubjectrulesreviews         SelfSubjectRulesReview
    GET  /.well-known/openid-configuration, /openid/v1/jwks             issuer discovery

Who is restricted: users of ServiceAccount tokens, impersonated users, and static tokens
added with ``authorize=True`` go through RBAC; ``system:masters`` (the sandbox's admin
token) is always allowed, as kube's privileged-group authorizer allows it. Static tokens
added without ``authorize`` keep their old unrestricted behaviour.

Anonymous requests are off (``--anonymous-auth=false``): no bearer token, an unknown one,
or a ServiceAccount token that fails (expired, wrong audience, ServiceAccount or bound
object deleted, bad signature) is ``401 Unauthorized`` with the real Status body.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from multidict import CIMultiDictProxy

from sandbox import errors
from sandbox.auth.attributes import (
    Attributes,
    UserInfo,
    forbidden,
    forbidden_error,
    unauthorized,
)
from sandbox.auth.rbac import (
    RBAC_KEYS,
    Authorizer,
    Decision,
    Rule,
    aggregate,
    compile_rules,
    describe_rule,
    is_privileged,
    sa_groups,
    sa_username,
    uncovered,
)
from sandbox.auth.tokens import (
    BOUND_KINDS,
    DEFAULT_EXPIRATION_SECONDS,
    MAX_EXPIRATION_SECONDS,
    MIN_EXPIRATION_SECONDS,
    SA_KEY,
    Authenticated,
    Rejected,
    TokenAuthority,
)

AUTHN_GROUP = "authentication.k8s.io"
AUTHZ_GROUP = "authorization.k8s.io"
# (group, resource) of the create-only review kinds -> their kind
REVIEW_KINDS: dict[tuple[str, str], str] = {
    (AUTHN_GROUP, "tokenreviews"): "TokenReview",
    (AUTHN_GROUP, "selfsubjectreviews"): "SelfSubjectReview",
    (AUTHZ_GROUP, "subjectaccessreviews"): "SubjectAccessReview",
    (AUTHZ_GROUP, "selfsubjectaccessreviews"): "SelfSubjectAccessReview",
    (AUTHZ_GROUP, "localsubjectaccessreviews"): "LocalSubjectAccessReview",
    (AUTHZ_GROUP, "selfsubjectrulesreviews"): "SelfSubjectRulesReview",
}
_CR_KEY = ("rbac.authorization.k8s.io", "clusterroles")
_AGGREGATION_ROUNDS = 10

ObjectLister = Callable[[tuple[str, str]], Iterable[Mapping[str, Any]]]
ObjectGetter = Callable[[tuple[str, str], str, str], Mapping[str, Any] | None]
ObjectWriter = Callable[[tuple[str, str], dict[str, Any]], None]


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    m = obj.get("metadata")
    return m if isinstance(m, Mapping) else {}


def _rfc3339(ts: float) -> str:
    t = datetime.datetime.fromtimestamp(ts, datetime.UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def _spec(body: Any, kind: str) -> dict[str, Any]:
    if body is None:
        body = {}
    if not isinstance(body, dict):
        raise errors.bad_request(f"the object provided is unrecognized (must be of type {kind})")
    if body.get("kind") not in (None, kind):
        raise errors.bad_request(
            f"the object provided is unrecognized (must be of type {kind}): "
            f"kind {body.get('kind')} does not match"
        )
    spec = body.get("spec")
    return dict(spec) if isinstance(spec, dict) else {}


class Auth:
    """Authentication, the authorizer chain and the review endpoints over one store."""

    def __init__(
        self,
        *,
        tokens: TokenAuthority,
        get: ObjectGetter,
        objects: ObjectLister,
        write: ObjectWriter | None = None,
    ) -> None:
        self.tokens = tokens
        self.authorizer = Authorizer(objects)
        self._get = get
        self._objects = objects
        self._write = write
        self._aggregating = False
        self.denied = 0

    # --- store events -----------------------------------------------------------------

    def on_change(self, key: tuple[str, str]) -> None:
        """Called on every stored change; RBAC changes drop caches and re-aggregate."""
        if key not in RBAC_KEYS:
            return
        self.authorizer.invalidate()
        if key == _CR_KEY:
            self.aggregate()

    def aggregate(self) -> None:
        """Run the ClusterRole aggregation controller until nothing changes."""
        if self._aggregating or self._write is None:
            return
        self._aggregating = True
        try:
            for _ in range(_AGGREGATION_ROUNDS):
                roles = {str(_meta(r).get("name")): r for r in self._objects(_CR_KEY)}
                changes = aggregate(roles.values())
                if not changes:
                    break
                for name, rules in changes.items():
                    self._write(_CR_KEY, {**roles[name], "rules": rules})
                self.authorizer.invalidate()
        finally:
            self._aggregating = False

    # --- authentication ---------------------------------------------------------------

    def authenticate(self, headers: CIMultiDictProxy[str]) -> Authenticated:
        auth = headers.get("Authorization", "")
        scheme, _, token = auth.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise unauthorized()
        result = self.tokens.authenticate(token)
        if isinstance(result, Rejected):
            raise unauthorized()
        if "Impersonate-User" in headers or "Impersonate-Group" in headers:
            return self._impersonate(result, headers)
        return result

    def _impersonate(self, caller: Authenticated, headers: CIMultiDictProxy[str]) -> Authenticated:
        """kube's impersonation filter: check each requested identity, then become it."""
        username = headers.get("Impersonate-User", "")
        groups = [g for g in headers.getall("Impersonate-Group", []) if g]
        uid = headers.get("Impersonate-Uid", "")
        extra: dict[str, tuple[str, ...]] = {}
        for k in headers:
            if k.lower().startswith("impersonate-extra-"):
                extra[k[len("impersonate-extra-") :].lower()] = tuple(headers.getall(k))
        if not username:
            raise errors.bad_request(
                f"requested {groups} without impersonating a user"
                if groups
                else "requested impersonation without a user"
            )
        checks = [Attributes(verb="impersonate", resource="groups", name=g) for g in groups]
        if username.startswith("system:serviceaccount:") and username.count(":") == 3:
            _, _, ns, name = username.split(":")
            checks.insert(
                0,
                Attributes(verb="impersonate", resource="serviceaccounts", namespace=ns, name=name),
            )
            if not groups:  # a ServiceAccount's groups are known; they need no extra right
                groups = list(sa_groups(ns))[:2]
        else:
            checks.insert(0, Attributes(verb="impersonate", resource="users", name=username))
        for key, values in extra.items():
            checks.extend(
                Attributes(
                    verb="impersonate",
                    group=AUTHN_GROUP,
                    resource="userextras",
                    subresource=key,
                    name=v,
                )
                for v in values
            )
        if uid:
            checks.append(
                Attributes(verb="impersonate", group=AUTHN_GROUP, resource="uids", name=uid)
            )
        for attrs in checks:
            self.check(caller, attrs)
        if username != "system:anonymous" and not any(
            g in ("system:authenticated", "system:unauthenticated") for g in groups
        ):
            groups.append("system:authenticated")
        user = UserInfo(username=username, uid=uid, groups=tuple(groups), extra=extra)
        return Authenticated(user, caller.audiences, rbac=True)

    # --- authorization ----------------------------------------------------------------

    def decide(self, user: UserInfo, attrs: Attributes) -> Decision:
        return self.authorizer.authorize(user, attrs)

    def check(self, caller: Authenticated, attrs: Attributes) -> None:
        """Raise kube's 403 unless ``caller`` may do ``attrs``."""
        if not caller.rbac:
            return
        decision = self.authorizer.authorize(caller.user, attrs)
        if not decision.allowed:
            self.denied += 1
            raise forbidden(attrs, caller.user.username, decision.reason)

    def check_escalation(
        self,
        caller: Authenticated,
        key: tuple[str, str],
        obj: Mapping[str, Any],
        namespace: str,
    ) -> None:
        """RBAC's escalation check on writes of roles and bindings (``ConfirmNoEscalation``).

        A Role or ClusterRole may carry only rules its writer holds (or the writer needs
        ``escalate`` on it); a binding may refer only to a role whose rules the writer holds
        (or the writer needs ``bind`` on it).
        """
        if not caller.rbac or is_privileged(caller.user) or key not in RBAC_KEYS:
            return
        group, resource = key
        name = str(_meta(obj).get("name") or "")
        rules: list[Rule]
        if resource in ("roles", "clusterroles"):
            verb = "escalate"
            rules = list(compile_rules(obj.get("rules")))
            check_attrs = Attributes(
                verb=verb, group=group, resource=resource, namespace=namespace, name=name
            )
        else:
            verb = "bind"
            ref = obj.get("roleRef") or {}
            ref_kind = str(ref.get("kind") or "")
            ref_name = str(ref.get("name") or "")
            index = self.authorizer.index
            if ref_kind == "ClusterRole":
                found = index.cluster_roles.get(ref_name)
            else:
                found = index.roles.get((namespace, ref_name))
            rules = list(found or ())
            check_attrs = Attributes(
                verb=verb,
                group=group,
                resource="clusterroles" if ref_kind == "ClusterRole" else "roles",
                namespace=namespace,
                name=ref_name,
            )
        if self.authorizer.authorize(caller.user, check_attrs).allowed:
            return
        owner = self.authorizer.index.rules_for(caller.user, namespace)
        missing = uncovered(owner, rules)
        if not missing:
            return
        u = caller.user
        groups = "[" + " ".join(f'"{g}"' for g in u.groups) + "]"
        raise forbidden_error(
            resource=resource,
            group=group,
            name=name,
            message=f'user "{u.username}" (groups={groups}) is attempting to grant RBAC '
            "permissions not currently held:\n" + "\n".join(describe_rule(r) for r in missing),
        )

    # --- endpoints --------------------------------------------------------------------

    def token_request(
        self, caller: Authenticated, *, namespace: str, name: str, body: Any
    ) -> dict[str, Any]:
        """``POST .../serviceaccounts/{name}/token``: a TokenRequest answered with a token."""
        spec = _spec(body, "TokenRequest")
        sa = self._get(SA_KEY, namespace, name)
        if sa is None:
            raise errors.not_found(resource="serviceaccounts", group="", name=name)
        exp_s = spec.get("expirationSeconds")
        exp_s = DEFAULT_EXPIRATION_SECONDS if exp_s in (None, 0) else exp_s
        causes: list[dict[str, str]] = []
        if not isinstance(exp_s, int) or exp_s < MIN_EXPIRATION_SECONDS:
            causes.append(
                {
                    "reason": "FieldValueInvalid",
                    "message": f"Invalid value: {exp_s}: may not specify a duration less than "
                    "10 minutes",
                    "field": "spec.expirationSeconds",
                }
            )
        elif exp_s > MAX_EXPIRATION_SECONDS:
            causes.append(
                {
                    "reason": "FieldValueInvalid",
                    "message": f"Invalid value: {exp_s}: may not specify a duration larger "
                    "than 2^32 seconds",
                    "field": "spec.expirationSeconds",
                }
            )
        audiences = [str(a) for a in spec.get("audiences") or ()]
        bound_ref = spec.get("boundObjectRef")
        bound: Mapping[str, Any] | None = None
        bound_kind = ""
        if isinstance(bound_ref, Mapping):
            bound_kind = str(bound_ref.get("kind") or "")
            if bound_kind not in BOUND_KINDS:
                causes.append(
                    {
                        "reason": "FieldValueNotSupported",
                        "message": f'Unsupported value: "{bound_kind}": supported values: '
                        '"Node", "Pod", "Secret"',
                        "field": "spec.boundObjectRef.kind",
                    }
                )
        if causes:
            raise errors.invalid(kind="TokenRequest", group=AUTHN_GROUP, name=name, causes=causes)
        assert isinstance(exp_s, int)
        if isinstance(bound_ref, Mapping):
            type_key = BOUND_KINDS[bound_kind]
            bname = str(bound_ref.get("name") or "")
            bound = self._get(type_key, namespace if bound_kind != "Node" else "", bname)
            if bound is None:
                raise errors.not_found(resource=type_key[1], group="", name=bname)
            want_uid = bound_ref.get("uid")
            if want_uid and want_uid != _meta(bound).get("uid"):
                raise errors.conflict(
                    resource=type_key[1],
                    group="",
                    name=bname,
                    why=f"the UID in the bound object reference ({want_uid}) does not match "
                    "the UID in record. The object might have been deleted and then recreated",
                )
        now = self.tokens.clock()
        token, exp = self.tokens.issue(
            service_account=sa,
            audiences=audiences,
            expiration_seconds=exp_s,
            bound=bound,
            bound_kind=bound_kind,
            now=now,
        )
        out_spec: dict[str, Any] = {
            "audiences": audiences or list(self.tokens.api_audiences),
            "expirationSeconds": exp_s,
            "boundObjectRef": dict(bound_ref) if isinstance(bound_ref, Mapping) else None,
        }
        return {
            "kind": "TokenRequest",
            "apiVersion": f"{AUTHN_GROUP}/v1",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "uid": str(_meta(sa).get("uid") or ""),
                "creationTimestamp": _rfc3339(now),
            },
            "spec": out_spec,
            "status": {"token": token, "expirationTimestamp": _rfc3339(exp)},
        }

    def handle(
        self, caller: Authenticated, key: tuple[str, str], *, namespace: str, body: Any
    ) -> dict[str, Any]:
        """POST of one of ``REVIEW_KINDS``: the review with its status filled in."""
        kind = REVIEW_KINDS[key]
        if not isinstance(body, dict) and body is not None:
            raise errors.bad_request(
                f"the object provided is unrecognized (must be of type {kind})"
            )
        spec = _spec(body, kind)
        out: dict[str, Any] = {
            "kind": kind,
            "apiVersion": f"{key[0]}/v1",
            "metadata": dict(_meta(body or {})),
        }
        if kind == "TokenReview":
            out["spec"] = spec
            out["status"] = self._token_review(spec)
        elif kind == "SelfSubjectReview":
            out["status"] = {"userInfo": caller.user.to_json()}
        elif kind == "SelfSubjectRulesReview":
            out["spec"] = spec
            out["status"] = self._rules_review(caller.user, str(spec.get("namespace") or ""))
        else:
            if kind in ("SubjectAccessReview", "LocalSubjectAccessReview"):
                user = self._sar_user(spec)
            else:
                user = caller.user
            if kind == "LocalSubjectAccessReview":
                spec = self._local(spec, namespace, body)
                out["metadata"]["namespace"] = namespace
            attrs = self._sar_attributes(kind, spec)
            decision = self.decide(user, attrs)
            status: dict[str, Any] = {"allowed": decision.allowed}
            if decision.reason:
                status["reason"] = decision.reason
            out["spec"] = spec
            out["status"] = status
        return out

    def _token_review(self, spec: Mapping[str, Any]) -> dict[str, Any]:
        token = str(spec.get("token") or "")
        if not token:
            raise errors.bad_request("token is required for TokenReview in authentication")
        audiences = [str(a) for a in spec.get("audiences") or ()]
        result = self.tokens.authenticate(token, audiences or None)
        if isinstance(result, Rejected):
            status: dict[str, Any] = {"user": {}}
            if result.error:
                status["error"] = result.error
            return status
        return {
            "authenticated": True,
            "user": result.user.to_json(),
            "audiences": list(result.audiences),
        }

    @staticmethod
    def _sar_user(spec: Mapping[str, Any]) -> UserInfo:
        extra = spec.get("extra") or {}
        return UserInfo(
            username=str(spec.get("user") or ""),
            uid=str(spec.get("uid") or ""),
            groups=tuple(str(g) for g in spec.get("groups") or ()),
            extra={str(k): tuple(str(x) for x in v or ()) for k, v in extra.items()},
        )

    @staticmethod
    def _local(spec: dict[str, Any], namespace: str, body: Any) -> dict[str, Any]:
        ra = spec.get("resourceAttributes")
        if isinstance(ra, Mapping):
            ns = str(ra.get("namespace") or "")
            if ns and ns != namespace:
                raise errors.invalid(
                    kind="LocalSubjectAccessReview",
                    group=AUTHZ_GROUP,
                    name=str(_meta(body or {}).get("name") or ""),
                    causes=[
                        {
                            "reason": "FieldValueInvalid",
                            "message": f'Invalid value: "{namespace}": must match '
                            "spec.resourceAttributes.namespace",
                            "field": "metadata.namespace",
                        }
                    ],
                )
            spec = {**spec, "resourceAttributes": {**ra, "namespace": namespace}}
        return spec

    @staticmethod
    def _sar_attributes(kind: str, spec: Mapping[str, Any]) -> Attributes:
        ra = spec.get("resourceAttributes")
        nra = spec.get("nonResourceAttributes")
        causes: list[dict[str, str]] = []
        if isinstance(ra, Mapping) == isinstance(nra, Mapping):
            causes.append(
                {
                    "reason": "FieldValueInvalid",
                    "message": 'Invalid value: "null": exactly one of nonResourceAttributes or '
                    "resourceAttributes must be specified",
                    "field": "spec.resourceAttributes",
                }
            )
        if (
            kind in ("SubjectAccessReview", "LocalSubjectAccessReview")
            and not spec.get("user")
            and not spec.get("groups")
        ):
            causes.append(
                {
                    "reason": "FieldValueInvalid",
                    "message": 'Invalid value: "": at least one of user or group must be specified',
                    "field": "spec.user",
                }
            )
        if causes:
            raise errors.invalid(kind=kind, group=AUTHZ_GROUP, name="", causes=causes)
        if isinstance(ra, Mapping):
            return Attributes(
                verb=str(ra.get("verb") or ""),
                group=str(ra.get("group") or ""),
                version=str(ra.get("version") or ""),
                resource=str(ra.get("resource") or ""),
                subresource=str(ra.get("subresource") or ""),
                namespace=str(ra.get("namespace") or ""),
                name=str(ra.get("name") or ""),
            )
        assert isinstance(nra, Mapping)
        return Attributes(
            verb=str(nra.get("verb") or ""),
            resource_request=False,
            path=str(nra.get("path") or ""),
        )

    def _rules_review(self, user: UserInfo, namespace: str) -> dict[str, Any]:
        if not namespace:
            raise errors.invalid(
                kind="SelfSubjectRulesReview",
                group=AUTHZ_GROUP,
                name="",
                causes=[
                    {
                        "reason": "FieldValueRequired",
                        "message": "Required value",
                        "field": "spec.namespace",
                    }
                ],
            )
        rules = list(self.authorizer.index.rules_for(user, namespace))
        resource_rules: list[dict[str, Any]] = []
        non_resource: list[dict[str, Any]] = []
        if is_privileged(user):
            resource_rules.append({"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]})
            non_resource.append({"verbs": ["*"], "nonResourceURLs": ["*"]})
        for r in rules:
            if r.urls:
                non_resource.append({"verbs": sorted(r.verbs), "nonResourceURLs": list(r.urls)})
                continue
            entry: dict[str, Any] = {
                "verbs": sorted(r.verbs),
                "apiGroups": sorted(r.groups),
                "resources": sorted(r.resources),
            }
            if r.names:
                entry["resourceNames"] = sorted(r.names)
            resource_rules.append(entry)
        return {
            "resourceRules": resource_rules,
            "nonResourceRules": non_resource,
            "incomplete": False,
        }

    def openid_configuration(self, base_url: str) -> dict[str, Any]:
        return {
            "issuer": self.tokens.issuer,
            "jwks_uri": f"{base_url}/openid/v1/jwks",
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["ES256"],
        }

    def jwks(self) -> dict[str, Any]:
        return {"keys": [self.tokens.key.jwk()]}


def service_account_user(namespace: str, name: str) -> UserInfo:
    """The user a ServiceAccount's token authenticates as (without uid and extra)."""
    return UserInfo(username=sa_username(namespace, name), groups=sa_groups(namespace))
