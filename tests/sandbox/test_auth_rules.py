"""Pure pieces of the sandbox's auth: request attributes, rule matching, aggregation, JWTs."""

from __future__ import annotations

from typing import Any

import pytest

from sandbox.auth.attributes import Attributes, UserInfo, request_attributes
from sandbox.auth.jwt import InvalidToken, SigningKey
from sandbox.auth.rbac import RbacIndex, Rule, aggregate, uncovered


def attrs(**kw: Any) -> Attributes:
    return Attributes(**{"verb": "get", **kw})


@pytest.mark.parametrize(
    ("method", "path", "query", "want"),
    [
        pytest.param(
            "GET",
            "/api/v1/namespaces/ns/pods",
            {},
            dict(verb="list", resource="pods", namespace="ns"),
            id="list pods in a namespace",
        ),
        pytest.param(
            "GET",
            "/api/v1/pods",
            {"watch": "true"},
            dict(verb="watch", resource="pods"),
            id="watch pods of every namespace",
        ),
        pytest.param(
            "GET",
            "/api/v1/watch/namespaces/ns/pods/p",
            {},
            dict(verb="watch", resource="pods", namespace="ns", name="p"),
            id="the watch/ prefix names its verb",
        ),
        pytest.param(
            "GET",
            "/api/v1/namespaces/ns/pods",
            {"fieldSelector": "metadata.name=p"},
            dict(verb="list", resource="pods", namespace="ns", name="p"),
            id="a metadata.name field selector names the object",
        ),
        pytest.param(
            "POST",
            "/api/v1/namespaces/ns/pods/p/eviction",
            {},
            dict(verb="create", resource="pods", subresource="eviction", namespace="ns", name="p"),
            id="eviction is create pods/eviction",
        ),
        pytest.param(
            "PUT",
            "/apis/apps.kruise.io/v1alpha1/namespaces/ns/clonesets/c/status",
            {},
            dict(
                verb="update",
                group="apps.kruise.io",
                resource="clonesets",
                subresource="status",
                namespace="ns",
                name="c",
            ),
            id="status update of a custom resource",
        ),
        pytest.param(
            "DELETE",
            "/api/v1/namespaces/ns/pods",
            {},
            dict(verb="deletecollection", resource="pods", namespace="ns"),
            id="delete without a name is deletecollection",
        ),
        pytest.param(
            "GET",
            "/api/v1/namespaces/ns",
            {},
            dict(verb="get", resource="namespaces", namespace="ns", name="ns"),
            id="a namespace is in itself",
        ),
        pytest.param(
            "PUT",
            "/api/v1/namespaces/ns/finalize",
            {},
            dict(
                verb="update",
                resource="namespaces",
                subresource="finalize",
                namespace="ns",
                name="ns",
            ),
            id="namespace finalize subresource",
        ),
        pytest.param(
            "POST",
            "/api/v1/namespaces/ns/serviceaccounts/sa/token",
            {},
            dict(
                verb="create",
                resource="serviceaccounts",
                subresource="token",
                namespace="ns",
                name="sa",
            ),
            id="TokenRequest",
        ),
    ],
)
def test_request_attributes(
    method: str, path: str, query: dict[str, str], want: dict[str, Any]
) -> None:
    got = request_attributes(method, path, query)
    version = "v1alpha1" if "kruise" in path else "v1"
    assert got == Attributes(**want, version=version, path=path)


@pytest.mark.parametrize(
    "path",
    ["/api", "/api/v1", "/apis", "/apis/apps", "/apis/apps/v1", "/version", "/sandbox/v1/stats"],
)
def test_non_resource_requests(path: str) -> None:
    assert request_attributes("GET", path, {}) == Attributes(
        verb="get", resource_request=False, path=path
    )


def rule(**kw: Any) -> Rule:
    return Rule.compile(kw)


@pytest.mark.parametrize(
    ("r", "a", "allowed"),
    [
        (rule(verbs=["get"], apiGroups=[""], resources=["pods"]), attrs(resource="pods"), True),
        (
            rule(verbs=["get"], apiGroups=[""], resources=["pods"]),
            attrs(verb="list", resource="pods"),
            False,
        ),
        (
            rule(verbs=["*"], apiGroups=["*"], resources=["*"]),
            attrs(group="x", resource="y", subresource="z"),
            True,
        ),
        (
            rule(verbs=["get"], apiGroups=[""], resources=["pods"]),
            attrs(resource="pods", subresource="log"),
            False,
        ),
        (
            rule(verbs=["get"], apiGroups=[""], resources=["pods/log"]),
            attrs(resource="pods", subresource="log"),
            True,
        ),
        (
            rule(verbs=["get"], apiGroups=["*"], resources=["*/scale"]),
            attrs(group="apps", resource="sts", subresource="scale"),
            True,
        ),
        (
            rule(verbs=["get"], apiGroups=["*"], resources=["*/scale"]),
            attrs(group="apps", resource="sts"),
            False,
        ),
        (
            rule(verbs=["get"], apiGroups=[""], resources=["secrets"], resourceNames=["a"]),
            attrs(resource="secrets", name="a"),
            True,
        ),
        (
            rule(verbs=["get"], apiGroups=[""], resources=["secrets"], resourceNames=["a"]),
            attrs(resource="secrets", name="b"),
            False,
        ),
        (
            rule(verbs=["list"], apiGroups=[""], resources=["secrets"], resourceNames=["a"]),
            attrs(verb="list", resource="secrets"),
            False,
        ),
        (
            rule(verbs=["get"], nonResourceURLs=["/healthz"]),
            attrs(resource_request=False, path="/healthz"),
            True,
        ),
        (
            rule(verbs=["get"], nonResourceURLs=["/apis/*"]),
            attrs(resource_request=False, path="/apis/apps/v1"),
            True,
        ),
        (
            rule(verbs=["get"], nonResourceURLs=["/apis/*"]),
            attrs(resource_request=False, path="/api"),
            False,
        ),
        (
            rule(verbs=["get"], apiGroups=["*"], resources=["*"]),
            attrs(resource_request=False, path="/x"),
            False,
        ),
    ],
)
def test_rule_allows(r: Rule, a: Attributes, allowed: bool) -> None:
    assert r.allows(a) is allowed


def test_subjects_apply_like_kube() -> None:
    crb = {
        "metadata": {"name": "b"},
        "roleRef": {"kind": "ClusterRole", "name": "r"},
        "subjects": [
            {"kind": "Group", "name": "team"},
            {"kind": "ServiceAccount", "name": "nons"},  # no namespace: never in a CRB
        ],
    }
    rb = {
        "metadata": {"name": "rb", "namespace": "ns"},
        "roleRef": {"kind": "Role", "name": "local"},
        "subjects": [{"kind": "ServiceAccount", "name": "sa"}],  # defaults to ns
    }
    index = RbacIndex(
        roles=[
            {
                "metadata": {"name": "local", "namespace": "ns"},
                "rules": [{"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]}],
            }
        ],
        cluster_roles=[
            {
                "metadata": {"name": "r"},
                "rules": [{"verbs": ["list"], "apiGroups": [""], "resources": ["pods"]}],
            }
        ],
        role_bindings=[rb],
        cluster_role_bindings=[crb],
    )
    team = UserInfo(username="u", groups=("team",))
    assert index.decide(team, attrs(verb="list", resource="pods")).allowed
    assert not index.decide(
        UserInfo(username="system:serviceaccount::nons"), attrs(verb="list", resource="pods")
    ).allowed
    sa = UserInfo(username="system:serviceaccount:ns:sa")
    assert index.decide(sa, attrs(resource="pods", namespace="ns")).allowed
    assert not index.decide(sa, attrs(resource="pods", namespace="other")).allowed
    assert not index.decide(sa, attrs(resource="pods")).allowed  # a Role is never cluster-wide


def test_aggregate_collects_matching_roles_until_stable() -> None:
    roles: dict[str, dict[str, Any]] = {
        "top": {
            "metadata": {"name": "top"},
            "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"to": "top"}}]},
        },
        "mid": {
            "metadata": {"name": "mid", "labels": {"to": "top"}},
            "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"to": "mid"}}]},
        },
        "leaf": {
            "metadata": {"name": "leaf", "labels": {"to": "mid"}},
            "rules": [{"verbs": ["get"]}],
        },
    }
    for _ in range(3):
        changes = aggregate(roles.values())
        for name, rules in changes.items():
            roles[name] = {**roles[name], "rules": rules}
    assert roles["top"]["rules"] == roles["mid"]["rules"] == [{"verbs": ["get"]}]
    assert aggregate(roles.values()) == {}


def test_uncovered_treats_wildcards_literally() -> None:
    owner = [
        rule(verbs=["get", "list"], apiGroups=[""], resources=["pods", "secrets"], resourceNames=[])
    ]
    assert uncovered(owner, [rule(verbs=["get"], apiGroups=[""], resources=["pods"])]) == []
    assert uncovered(owner, [rule(verbs=["*"], apiGroups=[""], resources=["pods"])])
    named = [rule(verbs=["get"], apiGroups=[""], resources=["secrets"], resourceNames=["a"])]
    assert (
        uncovered(
            named, [rule(verbs=["get"], apiGroups=[""], resources=["secrets"], resourceNames=["a"])]
        )
        == []
    )
    assert uncovered(named, [rule(verbs=["get"], apiGroups=[""], resources=["secrets"])])


def test_jwt_round_trip_and_tampering() -> None:
    key = SigningKey.generate()
    token = key.sign({"sub": "x", "aud": ["a"]})
    assert key.verify(token) == {"aud": ["a"], "sub": "x"}
    head, payload, sig = token.split(".")
    other = SigningKey.generate().sign({"sub": "y", "aud": ["a"]})
    for bad in (f"{head}.{other.split('.')[1]}.{sig}", other, "a.b", f"{head}.{payload}.AAAA"):
        with pytest.raises(InvalidToken):
            key.verify(bad)
    assert key.jwk()["kid"] == key.kid
