"""The webhook paths the gateway serves, and what each accepts: deploy/webhooks.yaml as a table.

The API server sends a path only what its webhook's ``rules`` match, in the
``admissionReviewVersions`` it lists. A review that could not have come from the API server
through that configuration (another resource, operation, subresource or kind, a uid that is
not a UUID) is refused with 400 before any service sees it, so it can spend nothing.

``WEBHOOK_PATHS`` is committed because the image carries no deploy/;
``derive_paths`` computes the same table from the YAML of deploy/webhooks.yaml and
deploy/crds, and ``tests/gateway/test_webhook_paths.py`` checks the two agree (a change to
deploy/webhooks.yaml fails that test until this table says the same).

``check_review`` is pure: data in, ``InvalidReview`` (HTTP 400) out, with a message naming
the field, what came and what the path accepts.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from services.gateway.webhook.reviews import InvalidReview, ReviewRequest

GroupVersionKind = tuple[str, str, str]
"""``(group, version, kind)``; the core group is ""."""

ResourceKey = tuple[str, str, str]
"""``(group, version, "resource" or "resource/subresource")`` as a rule names it."""

WEBHOOK_KINDS = ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration")

# What the API server puts in ``request.kind`` for built-in resources. For pods/eviction
# it is the Eviction (policy/v1 since Kubernetes 1.22, policy/v1beta1 before).
BUILTIN_KINDS: dict[ResourceKey, frozenset[GroupVersionKind]] = {
    ("", "v1", "pods"): frozenset({("", "v1", "Pod")}),
    ("", "v1", "pods/eviction"): frozenset(
        {("policy", "v1", "Eviction"), ("policy", "v1beta1", "Eviction")}
    ),
}

_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


@dataclass(frozen=True, slots=True)
class Rule:
    """One ``rules[]`` entry of a webhook (no wildcards: ``derive_paths`` refuses them)."""

    operations: frozenset[str]
    groups: frozenset[str]
    versions: frozenset[str]
    resources: frozenset[str]  # "pods", "pods/eviction"
    scope: str  # Namespaced | Cluster | *

    def covers(self, group: str, version: str, resource: str) -> bool:
        return group in self.groups and version in self.versions and resource in self.resources


@dataclass(frozen=True, slots=True)
class WebhookPath:
    """What one path accepts: the union of the rules of the webhooks that name it."""

    path: str
    webhooks: tuple[str, ...]
    review_versions: tuple[str, ...]
    rules: tuple[Rule, ...]
    kinds: tuple[tuple[ResourceKey, frozenset[GroupVersionKind]], ...]

    @property
    def service(self) -> str:
        return self.path.strip("/").split("/", 1)[0]

    @property
    def webhook(self) -> str:
        return self.path.strip("/").split("/", 1)[1]

    def kinds_of(self, key: ResourceKey) -> frozenset[GroupVersionKind]:
        return next((kinds for k, kinds in self.kinds if k == key), frozenset())

    def accepted(self) -> str:
        """``CREATE of v1 pods/eviction; ...``, for messages."""
        parts = []
        for rule in self.rules:
            operations = ", ".join(sorted(rule.operations))
            for group in sorted(rule.groups):
                for version in sorted(rule.versions):
                    for resource in sorted(rule.resources):
                        parts.append(f"{operations} of {_resource_text(group, version, resource)}")
        return "; ".join(parts)


def _rule(
    operations: Iterable[str], group: str, version: str, resource: str, scope: str = "Namespaced"
) -> Rule:
    return Rule(
        operations=frozenset(operations),
        groups=frozenset({group}),
        versions=frozenset({version}),
        resources=frozenset({resource}),
        scope=scope,
    )


_POD = (("", "v1", "pods"), BUILTIN_KINDS[("", "v1", "pods")])


def _path(path: str, webhook: str, rule: Rule, *kinds: GroupVersionKind) -> WebhookPath:
    (group,), (version,), (resource,) = rule.groups, rule.versions, rule.resources
    key = (group, version, resource)
    return WebhookPath(
        path=path,
        webhooks=(webhook,),
        review_versions=("v1",),
        rules=(rule,),
        kinds=((key, BUILTIN_KINDS.get(key) or frozenset(kinds)),),
    )


_CLONESET = ("apps.kruise.io", "v1alpha1", "CloneSet")
_PPS = ("apps.kruise.io", "v1alpha1", "PersistentPodState")
_PUB = ("policy.kruise.io", "v1alpha1", "PodUnavailableBudget")
_CU = ("CREATE", "UPDATE")

WEBHOOK_PATHS: Mapping[str, WebhookPath] = {
    p.path: p
    for p in (
        _path(
            "/placement/mutate-pods",
            "mpod-placement.kruise.io",
            _rule(["CREATE"], "", "v1", "pods"),
        ),
        _path(
            "/rollout/mutate-pods", "mpod-rollout.kruise.io", _rule(["CREATE"], "", "v1", "pods")
        ),
        _path(
            "/rollout/mutate-clonesets",
            "mcloneset.kruise.io",
            _rule(_CU, "apps.kruise.io", "v1alpha1", "clonesets"),
            _CLONESET,
        ),
        _path("/budget/mutate-pods", "mpod-budget.kruise.io", _rule(["CREATE"], "", "v1", "pods")),
        _path(
            "/placement/validate-persistentpodstates",
            "vpps.kruise.io",
            _rule(_CU, "apps.kruise.io", "v1alpha1", "persistentpodstates"),
            _PPS,
        ),
        _path(
            "/rollout/validate-clonesets",
            "vcloneset.kruise.io",
            _rule(_CU, "apps.kruise.io", "v1alpha1", "clonesets"),
            _CLONESET,
        ),
        _path(
            "/budget/validate-podunavailablebudgets",
            "vpub.kruise.io",
            _rule(_CU, "policy.kruise.io", "v1alpha1", "podunavailablebudgets"),
            _PUB,
        ),
        _path(
            "/budget/validate-pods",
            "vpod-budget.kruise.io",
            _rule(["UPDATE", "DELETE"], "", "v1", "pods"),
        ),
        _path(
            "/budget/validate-pod-eviction",
            "vpodeviction-budget.kruise.io",
            _rule(["CREATE"], "", "v1", "pods/eviction"),
        ),
    )
}
"""Path → what it accepts; ``derive_paths`` on deploy/ gives the same (a test checks)."""


# --- derivation from the manifests -------------------------------------------------------------


def crd_kinds(crds: Iterable[Mapping[str, Any]]) -> dict[ResourceKey, frozenset[GroupVersionKind]]:
    """``(group, version, plural)`` → its kind, for every served version of every CRD."""
    out: dict[ResourceKey, frozenset[GroupVersionKind]] = {}
    for crd in crds:
        spec = crd.get("spec") or {}
        group = str(spec.get("group", ""))
        names = spec.get("names") or {}
        plural, kind = str(names.get("plural", "")), str(names.get("kind", ""))
        for version in spec.get("versions") or ():
            if version.get("served", True):
                out[(group, str(version["name"]), plural)] = frozenset(
                    {(group, version["name"], kind)}
                )
    return out


def derive_paths(
    webhook_configurations: Iterable[Mapping[str, Any]],
    crds: Iterable[Mapping[str, Any]],
) -> dict[str, WebhookPath]:
    """The table for these webhook configurations (other documents are skipped).

    Pure. A ``clientConfig.url`` is reduced to its path. Raises ``ValueError`` for a webhook
    without a path, a wildcard in a rule (the table names what it accepts), a resource whose
    kind is unknown (neither built in nor a CRD here) or two webhooks that share a path but
    list different ``admissionReviewVersions``.
    """
    kinds_by_resource = {**BUILTIN_KINDS, **crd_kinds(crds)}
    found: dict[str, WebhookPath] = {}
    for config in webhook_configurations:
        if config.get("kind") not in WEBHOOK_KINDS:
            continue
        for hook in config.get("webhooks") or ():
            name = str(hook.get("name", ""))
            path = _hook_path(hook)
            if not path:
                raise ValueError(f"webhook {name} has no path")
            rules = tuple(_parse_rule(name, raw) for raw in hook.get("rules") or ())
            kinds: dict[ResourceKey, frozenset[GroupVersionKind]] = {}
            for rule in rules:
                for group in rule.groups:
                    for version in rule.versions:
                        for resource in rule.resources:
                            key = (group, version, resource)
                            if key not in kinds_by_resource:
                                text = _resource_text(*key)
                                raise ValueError(f"webhook {name}: no kind known for {text}")
                            kinds[key] = kinds_by_resource[key]
            versions = tuple(str(v) for v in hook.get("admissionReviewVersions") or ())
            previous = found.get(path)
            if previous is not None:
                if previous.review_versions != versions:
                    raise ValueError(
                        f"webhooks {previous.webhooks[0]} and {name} share {path} but list "
                        "different admissionReviewVersions"
                    )
                rules = previous.rules + rules
                kinds = {**dict(previous.kinds), **kinds}
            found[path] = WebhookPath(
                path=path,
                webhooks=(*(previous.webhooks if previous else ()), name),
                review_versions=versions,
                rules=rules,
                kinds=tuple(sorted(kinds.items())),
            )
    return found


def _hook_path(hook: Mapping[str, Any]) -> str:
    client = hook.get("clientConfig") or {}
    service = client.get("service")
    if service is not None:
        return str(service.get("path") or "")
    url = str(client.get("url") or "")
    match = re.match(r"^https://[^/]+(/[^?#]*)", url)
    return match.group(1) if match else ""


def _parse_rule(name: str, raw: Mapping[str, Any]) -> Rule:
    fields = {key: [str(v) for v in raw.get(key) or ()] for key in _RULE_FIELDS}
    for key, values in fields.items():
        if not values:
            raise ValueError(f"webhook {name}: rule without {key}")
        if any("*" in value for value in values):
            raise ValueError(f"webhook {name}: wildcard in {key} {values}; name them")
    return Rule(
        operations=frozenset(fields["operations"]),
        groups=frozenset(fields["apiGroups"]),
        versions=frozenset(fields["apiVersions"]),
        resources=frozenset(fields["resources"]),
        scope=str(raw.get("scope") or "*"),
    )


_RULE_FIELDS = ("operations", "apiGroups", "apiVersions", "resources")


# --- the check ---------------------------------------------------------------------------------


def _resource_text(group: str, version: str, resource: str) -> str:
    """``v1 pods/eviction``, ``apps.kruise.io/v1alpha1 clonesets``."""
    return f"{group}/{version} {resource}" if group else f"{version} {resource}"


def _kind_text(kind: GroupVersionKind) -> str:
    group, version, name = kind
    return f"{group}/{version} {name}" if group else f"{version} {name}"


def check_review(review: ReviewRequest, accepts: WebhookPath) -> None:
    """Raise ``InvalidReview`` unless the API server could have sent ``review`` to this path.

    ``review`` has passed ``reviews.parse_review`` (the fields have their types). Checked, in
    order: the AdmissionReview version is one the webhook lists; ``uid`` is a UUID (the API
    server's uids are); the resource and subresource are ones a rule names, the operation is
    one that rule allows; ``kind`` is the kind of that resource; a namespaced rule's request
    names a namespace, and an UPDATE, DELETE or subresource request names its object;
    ``object`` / ``oldObject`` are present as the operation has them. Pure.
    """
    version = review["apiVersion"].rsplit("/", 1)[-1]
    path = accepts.path
    if version not in accepts.review_versions:
        listed = ", ".join(accepts.review_versions)
        raise InvalidReview(
            f"apiVersion {review['apiVersion']} is not accepted at {path}: its webhook lists "
            f"admissionReviewVersions [{listed}]"
        )
    request = review["request"]
    uid = request["uid"]
    if not _UUID.match(uid):
        raise InvalidReview(
            f"request.uid {uid[:64]!r} is not a UUID (the API server sends 8-4-4-4-12 hex digits)"
        )
    resource = request["resource"]
    group = resource.get("group") or ""
    sub = request.get("subResource") or ""
    name = resource["resource"] + (f"/{sub}" if sub else "")
    key = (group, resource["version"], name)
    rules = [rule for rule in accepts.rules if rule.covers(*key)]
    if not rules:
        raise InvalidReview(
            f"request.resource {_resource_text(*key)} is not accepted at {path} "
            f"(it accepts {accepts.accepted()})"
        )
    operation = request["operation"]
    if not any(operation in rule.operations for rule in rules):
        raise InvalidReview(
            f"request.operation {operation} of {_resource_text(*key)} is not accepted at {path} "
            f"(it accepts {accepts.accepted()})"
        )
    kind = request["kind"]
    got = (kind.get("group") or "", kind["version"], kind["kind"])
    expected = accepts.kinds_of(key)
    if got not in expected:
        wanted = " or ".join(sorted(_kind_text(k) for k in expected))
        raise InvalidReview(
            f"request.kind {_kind_text(got)} does not fit {_resource_text(*key)} at {path} "
            f"(expected {wanted})"
        )
    if all(rule.scope == "Namespaced" for rule in rules) and not request.get("namespace"):
        raise InvalidReview(f"request.namespace is missing: {path} accepts namespaced requests")
    if (sub or operation in ("UPDATE", "DELETE")) and not request.get("name"):
        raise InvalidReview(f"request.name is missing: a {operation} of {name} names its object")
    _check_objects(request, operation)


def _check_objects(request: Mapping[str, Any], operation: str) -> None:
    """CREATE and UPDATE carry ``object``, UPDATE and DELETE ``oldObject``; as JSON objects."""
    wants = {"object": operation in ("CREATE", "UPDATE"), "oldObject": operation != "CREATE"}
    for key, wanted in wants.items():
        value = request.get(key)
        if wanted and not isinstance(value, dict):
            got = "missing" if value is None else f"a {type(value).__name__}"
            raise InvalidReview(f"request.{key} must be an object for {operation}, got {got}")
