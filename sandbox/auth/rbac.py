"""RBAC: Roles, ClusterRoles, their bindings, aggregation, and the authorizer over them.

Evaluation is kube's RBAC authorizer (``plugin/pkg/auth/authorizer/rbac``):

- a request is allowed when one rule of one role bound to the user allows it: the
  ClusterRoleBindings first, then, for a namespaced request, the RoleBindings of that
  namespace (whose roleRef is a Role of that namespace or a ClusterRole);
- a subject applies as ``appliesToUser`` says: User by name, Group by membership,
  ServiceAccount by the username ``system:serviceaccount:<ns>:<name>`` (a RoleBinding's
  ServiceAccount subject without a namespace means the binding's namespace);
- a rule allows a resource request when verb, apiGroup, resource (``res``, ``res/sub``,
  ``*`` or ``*/sub``) and resourceNames (empty: any) match; a non-resource request when
  verb and nonResourceURLs (exact, ``*``, or ``prefix*``) match;
- RBAC never denies: a request no rule allows gets no opinion, and the reason names roles
  a binding refers to that do not exist (``RBAC: clusterrole... "x" not found``).

Cost: ``RbacIndex`` is built once per change of an RBAC object (bindings indexed by subject,
roles compiled to frozensets); ``Authorizer.authorize`` then touches only the bindings of the
user's name and groups, and its answers are memoised until the next RBAC change.

``aggregate(clusterroles)`` is the ClusterRole aggregation controller as a pure function.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sandbox.auth.attributes import Attributes, UserInfo
from sandbox.selectors import from_label_selector_object

RBAC_GROUP = "rbac.authorization.k8s.io"
ROLES = (RBAC_GROUP, "roles")
CLUSTER_ROLES = (RBAC_GROUP, "clusterroles")
ROLE_BINDINGS = (RBAC_GROUP, "rolebindings")
CLUSTER_ROLE_BINDINGS = (RBAC_GROUP, "clusterrolebindings")
RBAC_KEYS = frozenset({ROLES, CLUSTER_ROLES, ROLE_BINDINGS, CLUSTER_ROLE_BINDINGS})
PRIVILEGED_GROUP = "system:masters"
SA_PREFIX = "system:serviceaccount:"
_CACHE_MAX = 16_384


@dataclass(frozen=True, slots=True)
class Rule:
    """A compiled PolicyRule."""

    verbs: frozenset[str]
    groups: frozenset[str]
    resources: frozenset[str]
    names: frozenset[str]
    urls: tuple[str, ...]

    @classmethod
    def compile(cls, rule: Mapping[str, Any]) -> Rule:
        return cls(
            verbs=frozenset(rule.get("verbs") or ()),
            groups=frozenset(rule.get("apiGroups") or ()),
            resources=frozenset(rule.get("resources") or ()),
            names=frozenset(rule.get("resourceNames") or ()),
            urls=tuple(rule.get("nonResourceURLs") or ()),
        )

    def allows(self, a: Attributes) -> bool:
        """``RuleAllows``. Pure."""
        if a.verb not in self.verbs and "*" not in self.verbs:
            return False
        if not a.resource_request:
            return any(_url_matches(u, a.path) for u in self.urls)
        if a.group not in self.groups and "*" not in self.groups:
            return False
        if not _resource_matches(self.resources, a.combined_resource, a.subresource):
            return False
        return not self.names or a.name in self.names


def _url_matches(rule_url: str, path: str) -> bool:
    if rule_url == "*" or rule_url == path:
        return True
    return rule_url.endswith("*") and path.startswith(rule_url[:-1])


def _resource_matches(resources: frozenset[str], combined: str, subresource: str) -> bool:
    if "*" in resources or combined in resources:
        return True
    return bool(subresource) and f"*/{subresource}" in resources


def compile_rules(rules: Iterable[Mapping[str, Any]] | None) -> tuple[Rule, ...]:
    return tuple(Rule.compile(r) for r in rules or () if isinstance(r, Mapping))


def sa_username(namespace: str, name: str) -> str:
    return f"{SA_PREFIX}{namespace}:{name}"


def sa_groups(namespace: str) -> tuple[str, ...]:
    return ("system:serviceaccounts", f"system:serviceaccounts:{namespace}", "system:authenticated")


# A subject as an index key: ("u", username) or ("g", group).
Principal = tuple[str, str]


def _principal(subject: Mapping[str, Any], binding_ns: str) -> Principal | None:
    kind = subject.get("kind")
    name = str(subject.get("name") or "")
    if kind == "User":
        return ("u", name)
    if kind == "Group":
        return ("g", name)
    if kind == "ServiceAccount":
        ns = str(subject.get("namespace") or "") or binding_ns
        return ("u", sa_username(ns, name)) if ns else None
    return None


def _describe_subject(subject: Mapping[str, Any], binding_ns: str) -> str:
    kind = str(subject.get("kind") or "")
    name = str(subject.get("name") or "")
    if kind == "ServiceAccount":
        return f'{kind} "{name}/{subject.get("namespace") or binding_ns}"'
    return f'{kind} "{name}"'


@dataclass(frozen=True, slots=True)
class Grant:
    """One binding of one subject: where its rules come from."""

    binding: str  # name (ClusterRoleBinding) or name/namespace (RoleBinding)
    namespace: str  # "" for a ClusterRoleBinding
    role_kind: str
    role_name: str
    subject: str  # described as kube's describeSubject does

    def source(self) -> str:
        kind = "RoleBinding" if self.namespace else "ClusterRoleBinding"
        return f'{kind} "{self.binding}" of {self.role_kind} "{self.role_name}" to {self.subject}'


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    reason: str = ""


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    m = obj.get("metadata")
    return m if isinstance(m, Mapping) else {}


class RbacIndex:
    """Every role compiled and every binding indexed by subject. Built from objects; pure."""

    def __init__(
        self,
        *,
        roles: Iterable[Mapping[str, Any]],
        cluster_roles: Iterable[Mapping[str, Any]],
        role_bindings: Iterable[Mapping[str, Any]],
        cluster_role_bindings: Iterable[Mapping[str, Any]],
    ) -> None:
        self.roles: dict[tuple[str, str], tuple[Rule, ...]] = {
            (str(_meta(r).get("namespace") or ""), str(_meta(r).get("name"))): compile_rules(
                r.get("rules")
            )
            for r in roles
        }
        self.cluster_roles: dict[str, tuple[Rule, ...]] = {
            str(_meta(r).get("name")): compile_rules(r.get("rules")) for r in cluster_roles
        }
        self.cluster_grants: dict[Principal, list[Grant]] = {}
        self.ns_grants: dict[str, dict[Principal, list[Grant]]] = {}
        for b in cluster_role_bindings:
            self._add(b, "", self.cluster_grants)
        for b in role_bindings:
            ns = str(_meta(b).get("namespace") or "")
            self._add(b, ns, self.ns_grants.setdefault(ns, {}))

    @staticmethod
    def _add(binding: Mapping[str, Any], ns: str, into: dict[Principal, list[Grant]]) -> None:
        ref = binding.get("roleRef") or {}
        name = str(_meta(binding).get("name") or "")
        for subject in binding.get("subjects") or ():
            if not isinstance(subject, Mapping):
                continue
            p = _principal(subject, ns)
            if p is None:
                continue
            into.setdefault(p, []).append(
                Grant(
                    binding=f"{name}/{ns}" if ns else name,
                    namespace=ns,
                    role_kind=str(ref.get("kind") or ""),
                    role_name=str(ref.get("name") or ""),
                    subject=_describe_subject(subject, ns),
                )
            )

    def rules_of(self, grant: Grant) -> tuple[Rule, ...] | None:
        """The rules a grant refers to; None when the role does not exist."""
        if grant.role_kind == "ClusterRole":
            return self.cluster_roles.get(grant.role_name)
        if grant.role_kind == "Role" and grant.namespace:
            return self.roles.get((grant.namespace, grant.role_name))
        return None

    def grants(self, user: UserInfo, namespace: str) -> Iterable[Grant]:
        """The grants that apply to ``user`` for a request in ``namespace`` (cluster first)."""
        keys: list[Principal] = [("u", user.username)]
        keys.extend(("g", g) for g in user.groups)
        for table in (self.cluster_grants, self.ns_grants.get(namespace) if namespace else None):
            if not table:
                continue
            seen: set[Grant] = set()
            for k in keys:
                for g in table.get(k, ()):
                    if g not in seen:
                        seen.add(g)
                        yield g

    def decide(self, user: UserInfo, attrs: Attributes) -> Decision:
        """The RBAC authorizer's answer. Pure."""
        missing: list[str] = []
        for grant in self.grants(user, attrs.namespace):
            rules = self.rules_of(grant)
            if rules is None:
                if grant.role_kind == "ClusterRole":
                    missing.append(f'clusterrole.{RBAC_GROUP} "{grant.role_name}" not found')
                else:
                    missing.append(f'role.{RBAC_GROUP} "{grant.role_name}" not found')
                continue
            for rule in rules:
                if rule.allows(attrs):
                    return Decision(True, f"RBAC: allowed by {grant.source()}")
        if missing:
            joined = missing[0] if len(missing) == 1 else "[" + ", ".join(missing) + "]"
            return Decision(False, f"RBAC: {joined}")
        return Decision(False)

    def rules_for(self, user: UserInfo, namespace: str) -> list[Rule]:
        """Every rule that applies to ``user`` in ``namespace`` (for escalation checks)."""
        out: list[Rule] = []
        for grant in self.grants(user, namespace):
            out.extend(self.rules_of(grant) or ())
        return out


def is_privileged(user: UserInfo) -> bool:
    return PRIVILEGED_GROUP in user.groups


class Authorizer:
    """kube-apiserver's authorizer chain here: ``system:masters`` first, then RBAC.

    ``objects(key)`` lists the stored objects of an RBAC type; ``invalidate()`` (called on
    every change of one) drops the index and the memoised decisions.
    """

    def __init__(self, objects: Callable[[tuple[str, str]], Iterable[Mapping[str, Any]]]) -> None:
        self._objects = objects
        self._index: RbacIndex | None = None
        self._cache: dict[tuple[Any, ...], Decision] = {}
        self.builds = 0

    def invalidate(self) -> None:
        self._index = None
        self._cache.clear()

    @property
    def index(self) -> RbacIndex:
        if self._index is None:
            self._index = RbacIndex(
                roles=self._objects(ROLES),
                cluster_roles=self._objects(CLUSTER_ROLES),
                role_bindings=self._objects(ROLE_BINDINGS),
                cluster_role_bindings=self._objects(CLUSTER_ROLE_BINDINGS),
            )
            self.builds += 1
        return self._index

    def authorize(self, user: UserInfo, attrs: Attributes) -> Decision:
        if is_privileged(user):
            return Decision(True)
        key = (user.username, user.groups, attrs)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        decision = self.index.decide(user, attrs)
        if len(self._cache) >= _CACHE_MAX:
            self._cache.clear()
        self._cache[key] = decision
        return decision


# --- escalation prevention --------------------------------------------------------------


def _covers_one(owner: Rule, verb: str, group: str, resource: str, name: str) -> bool:
    if verb not in owner.verbs and "*" not in owner.verbs:
        return False
    if group not in owner.groups and "*" not in owner.groups:
        return False
    if "*" not in owner.resources and resource not in owner.resources:
        sub = resource.partition("/")[2]
        if not (sub and f"*/{sub}" in owner.resources):
            return False
    if not owner.names:
        return True
    return bool(name) and name in owner.names


def uncovered(owner: Iterable[Rule], servant: Iterable[Rule]) -> list[Rule]:
    """Rules of ``servant`` that ``owner`` does not cover (``validation.Covers``). Pure.

    Each servant rule is broken into single (verb, group, resource, name) or (verb, url)
    pieces; a ``*`` in a servant rule is covered only by a ``*`` in an owner rule.
    """
    owners = list(owner)
    missing: list[Rule] = []
    for rule in servant:
        ok = True
        for verb in rule.verbs:
            for url in rule.urls:
                if not any(
                    (verb in o.verbs or "*" in o.verbs)
                    and any(_url_matches(u, url) for u in o.urls)
                    for o in owners
                ):
                    ok = False
            for group in rule.groups:
                for resource in rule.resources:
                    for name in rule.names or ("",):
                        if not any(_covers_one(o, verb, group, resource, name) for o in owners):
                            ok = False
        if not ok:
            missing.append(rule)
    return missing


def describe_rule(rule: Rule) -> str:
    """A rule as kube prints it in escalation errors (``PolicyRule.CompactString``)."""
    parts: list[str] = []
    if rule.groups:
        parts.append("APIGroups:" + _go_list(rule.groups))
    if rule.resources:
        parts.append("Resources:" + _go_list(rule.resources))
    if rule.urls:
        parts.append("NonResourceURLs:" + _go_list(rule.urls))
    if rule.names:
        parts.append("ResourceNames:" + _go_list(rule.names))
    parts.append("Verbs:" + _go_list(rule.verbs))
    return "{" + ", ".join(parts) + "}"


def _go_list(items: Iterable[str]) -> str:
    return "[" + " ".join(f'"{s}"' for s in sorted(items)) + "]"


# --- aggregation ------------------------------------------------------------------------


def aggregate(cluster_roles: Iterable[Mapping[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """New ``rules`` of each aggregated ClusterRole whose rules are not yet what they should be.

    Pure. As kube's ClusterRole aggregation controller: an aggregated role's rules are the
    rules of every *other* ClusterRole matching any of its ``clusterRoleSelectors``, in
    name order, without duplicates. The caller stores the result; storing it changes the
    input, so call again until it returns nothing (roles may aggregate aggregated roles).
    """
    roles = sorted(cluster_roles, key=lambda r: str(_meta(r).get("name")))
    out: dict[str, list[dict[str, Any]]] = {}
    for role in roles:
        rule = role.get("aggregationRule")
        if not isinstance(rule, Mapping):
            continue
        name = str(_meta(role).get("name"))
        selectors = [
            from_label_selector_object(s)
            for s in rule.get("clusterRoleSelectors") or ()
            if isinstance(s, Mapping)
        ]
        want: list[dict[str, Any]] = []
        for other in roles:
            other_name = str(_meta(other).get("name"))
            if other_name == name:
                continue
            labels = _meta(other).get("labels") or {}
            if not any(s.matches(labels) for s in selectors):
                continue
            for r in other.get("rules") or ():
                if r not in want:
                    want.append(r)
        if (role.get("rules") or []) != want:
            out[name] = want
    return out


# --- validation -------------------------------------------------------------------------


def validation_causes(
    key: tuple[str, str], obj: Mapping[str, Any], old: Mapping[str, Any] | None
) -> list[dict[str, str]]:
    """422 causes for an RBAC object (roleRef required, valid and immutable). Pure."""
    if key not in (ROLE_BINDINGS, CLUSTER_ROLE_BINDINGS):
        return []
    causes: list[dict[str, str]] = []
    ref = obj.get("roleRef")
    if old is not None and ref != old.get("roleRef"):
        return [
            {
                "reason": "FieldValueInvalid",
                "message": f"Invalid value: {_go_ref(ref)}: cannot change roleRef",
                "field": "roleRef",
            }
        ]
    if not isinstance(ref, Mapping) or not ref.get("name"):
        causes.append(
            {"reason": "FieldValueRequired", "message": "Required value", "field": "roleRef.name"}
        )
        return causes
    kinds = ("ClusterRole",) if key == CLUSTER_ROLE_BINDINGS else ("Role", "ClusterRole")
    if ref.get("kind") not in kinds:
        supported = ", ".join(f'"{k}"' for k in kinds)
        causes.append(
            {
                "reason": "FieldValueNotSupported",
                "message": f'Unsupported value: "{ref.get("kind", "")}": supported values: '
                f"{supported}",
                "field": "roleRef.kind",
            }
        )
    if ref.get("apiGroup") != RBAC_GROUP:
        causes.append(
            {
                "reason": "FieldValueNotSupported",
                "message": f'Unsupported value: "{ref.get("apiGroup", "")}": supported values: '
                f'"{RBAC_GROUP}"',
                "field": "roleRef.apiGroup",
            }
        )
    for i, s in enumerate(obj.get("subjects") or ()):
        if not isinstance(s, Mapping) or s.get("kind") not in ("User", "Group", "ServiceAccount"):
            kind = s.get("kind", "") if isinstance(s, Mapping) else ""
            causes.append(
                {
                    "reason": "FieldValueNotSupported",
                    "message": f'Unsupported value: "{kind}": supported values: '
                    '"ServiceAccount", "User", "Group"',
                    "field": f"subjects[{i}].kind",
                }
            )
    return causes


def _go_ref(ref: Any) -> str:
    if not isinstance(ref, Mapping):
        return "rbac.RoleRef{}"
    return (
        f'rbac.RoleRef{{APIGroup:"{ref.get("apiGroup", "")}", Kind:"{ref.get("kind", "")}", '
        f'Name:"{ref.get("name", "")}"}}'
    )
