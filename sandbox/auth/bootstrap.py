"""The default RBAC policy a fresh cluster carries (a subset of kube's bootstrap policy).

Pure data. ``bootstrap_objects()`` lists the ClusterRoles and ClusterRoleBindings the
sandbox stores at start so that any authenticated user may do what it may on a real
cluster without further grants: discovery and ``/version`` (``system:discovery``,
``system:public-info-viewer``), self reviews (``system:basic-user``), and, for
ServiceAccounts, the issuer discovery documents. ``system:masters`` is bound to
``cluster-admin``; ``system:auth-delegator`` (TokenReview and SubjectAccessReview, what an
authenticating proxy needs) exists but is bound to nobody.

Not here: the aggregated ``admin``/``edit``/``view`` roles and the controllers' roles.
"""

from __future__ import annotations

from typing import Any

_LABELS = {"kubernetes.io/bootstrapping": "rbac-defaults"}
_ANNOTATIONS = {"rbac.authorization.kubernetes.io/autoupdate": "true"}
_GROUP = "rbac.authorization.k8s.io"

_CLUSTER_ROLES: dict[str, list[dict[str, Any]]] = {
    "cluster-admin": [
        {"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]},
        {"verbs": ["*"], "nonResourceURLs": ["*"]},
    ],
    "system:discovery": [
        {
            "verbs": ["get"],
            "nonResourceURLs": [
                "/api",
                "/api/*",
                "/apis",
                "/apis/*",
                "/healthz",
                "/livez",
                "/openapi",
                "/openapi/*",
                "/readyz",
                "/version",
                "/version/",
            ],
        }
    ],
    "system:public-info-viewer": [
        {
            "verbs": ["get"],
            "nonResourceURLs": ["/healthz", "/livez", "/readyz", "/version", "/version/"],
        }
    ],
    "system:basic-user": [
        {
            "verbs": ["create"],
            "apiGroups": ["authorization.k8s.io"],
            "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
        },
        {
            "verbs": ["create"],
            "apiGroups": ["authentication.k8s.io"],
            "resources": ["selfsubjectreviews"],
        },
    ],
    "system:auth-delegator": [
        {
            "verbs": ["create"],
            "apiGroups": ["authentication.k8s.io"],
            "resources": ["tokenreviews"],
        },
        {
            "verbs": ["create"],
            "apiGroups": ["authorization.k8s.io"],
            "resources": ["subjectaccessreviews"],
        },
    ],
    "system:service-account-issuer-discovery": [
        {
            "verbs": ["get"],
            "nonResourceURLs": [
                "/.well-known/openid-configuration",
                "/.well-known/openid-configuration/",
                "/openid/v1/jwks",
                "/openid/v1/jwks/",
            ],
        }
    ],
}

_BINDINGS: dict[str, list[tuple[str, str]]] = {
    "cluster-admin": [("Group", "system:masters")],
    "system:discovery": [("Group", "system:authenticated")],
    "system:public-info-viewer": [
        ("Group", "system:authenticated"),
        ("Group", "system:unauthenticated"),
    ],
    "system:basic-user": [("Group", "system:authenticated")],
    "system:service-account-issuer-discovery": [("Group", "system:serviceaccounts")],
}


def _meta(name: str) -> dict[str, Any]:
    return {"name": name, "labels": dict(_LABELS), "annotations": dict(_ANNOTATIONS)}


def bootstrap_objects() -> list[dict[str, Any]]:
    """ClusterRoles, then ClusterRoleBindings, as the API server would store them."""
    out: list[dict[str, Any]] = []
    for name, rules in _CLUSTER_ROLES.items():
        out.append(
            {
                "kind": "ClusterRole",
                "apiVersion": f"{_GROUP}/v1",
                "metadata": _meta(name),
                "rules": [dict(r) for r in rules],
            }
        )
    for name, subjects in _BINDINGS.items():
        out.append(
            {
                "kind": "ClusterRoleBinding",
                "apiVersion": f"{_GROUP}/v1",
                "metadata": _meta(name),
                "roleRef": {"apiGroup": _GROUP, "kind": "ClusterRole", "name": name},
                "subjects": [
                    {"apiGroup": _GROUP, "kind": kind, "name": subject}
                    for kind, subject in subjects
                ],
            }
        )
    return out
