"""ServiceAccount tokens, TokenReview, SubjectAccessReview and RBAC as the sandbox enforces them.

Every request made with a token the sandbox issued is authenticated and authorized as
kube-apiserver does it; the admin token (``system:masters``) is never restricted.
"""

from __future__ import annotations

import base64
import datetime
import json
import time
from typing import Any

import pytest
from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import ApiException

from sandbox.app import Sandbox
from sandbox.auth.attributes import Attributes
from sandbox.auth.service import service_account_user
from sandbox.auth.tokens import API_AUDIENCE
from tests.sandbox.conftest import Raw, fixture

NS = "demo"
PODS = f"/api/v1/namespaces/{NS}/pods"
RBAC = "/apis/rbac.authorization.k8s.io/v1"
CS = f"/apis/apps.kruise.io/v1alpha1/namespaces/{NS}/clonesets"
TOKENREVIEWS = "/apis/authentication.k8s.io/v1/tokenreviews"
SARS = "/apis/authorization.k8s.io/v1/subjectaccessreviews"


def claims_of(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def pod(name: str) -> dict[str, Any]:
    return {"metadata": {"name": name}, "spec": {"containers": [{"name": "c", "image": "i:1"}]}}


async def ok(raw: Raw, method: str, path: str, body: Any = None, **kw: Any) -> Any:
    code, _, out = await raw.call(method, path, body, **kw)
    assert code < 300, (code, out)
    return out


async def setup_ns(raw: Raw, ns: str = NS) -> None:
    await ok(raw, "POST", "/api/v1/namespaces", {"metadata": {"name": ns}})


async def new_sa(raw: Raw, name: str = "app", ns: str = NS, **spec: Any) -> str:
    """Create ServiceAccount ns/name (if missing) and return a token for it."""
    code, _, _ = await raw.call(
        "POST", f"/api/v1/namespaces/{ns}/serviceaccounts", {"metadata": {"name": name}}
    )
    assert code in (201, 409)
    out = await ok(
        raw, "POST", f"/api/v1/namespaces/{ns}/serviceaccounts/{name}/token", {"spec": spec}
    )
    return str(out["status"]["token"])


async def grant(
    raw: Raw,
    name: str,
    rules: list[dict[str, Any]],
    *,
    sa: str = "app",
    ns: str = NS,
    cluster: bool = False,
) -> None:
    """A Role (or ClusterRole) with ``rules`` bound to ServiceAccount ns/sa."""
    role_kind = "ClusterRole" if cluster else "Role"
    where = f"{RBAC}/clusterroles" if cluster else f"{RBAC}/namespaces/{ns}/roles"
    await ok(raw, "POST", where, {"metadata": {"name": name}, "rules": rules})
    binding_path = (
        f"{RBAC}/clusterrolebindings" if cluster else f"{RBAC}/namespaces/{ns}/rolebindings"
    )
    await ok(
        raw,
        "POST",
        binding_path,
        {
            "metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": ns}],
        },
    )


# --- TokenRequest ------------------------------------------------------------------------------


async def test_token_request_answers_a_signed_token_with_kube_claims(raw: Raw) -> None:
    await setup_ns(raw)
    sa = await ok(
        raw, "POST", f"/api/v1/namespaces/{NS}/serviceaccounts", {"metadata": {"name": "app"}}
    )
    out = await ok(
        raw,
        "POST",
        f"/api/v1/namespaces/{NS}/serviceaccounts/app/token",
        {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}},
    )
    assert out["kind"] == "TokenRequest" and out["apiVersion"] == "authentication.k8s.io/v1"
    assert out["metadata"]["name"] == "app" and out["metadata"]["namespace"] == NS
    assert out["metadata"]["uid"] == sa["metadata"]["uid"]
    assert out["spec"] == {
        "audiences": [API_AUDIENCE],
        "expirationSeconds": 3600,
        "boundObjectRef": None,
    }
    token = out["status"]["token"]
    header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    assert header["alg"] == "ES256" and header["kid"]
    claims = claims_of(token)
    assert sorted(claims) == ["aud", "exp", "iat", "iss", "jti", "kubernetes.io", "nbf", "sub"]
    assert claims["aud"] == [API_AUDIENCE] and claims["iss"] == API_AUDIENCE
    assert claims["sub"] == f"system:serviceaccount:{NS}:app"
    assert claims["exp"] - claims["iat"] == 3600 and claims["nbf"] == claims["iat"]
    assert claims["kubernetes.io"] == {
        "namespace": NS,
        "serviceaccount": {"name": "app", "uid": sa["metadata"]["uid"]},
    }
    exp = datetime.datetime.strptime(out["status"]["expirationTimestamp"], "%Y-%m-%dT%H:%M:%SZ")
    assert int(exp.replace(tzinfo=datetime.UTC).timestamp()) == claims["exp"]

    mesh = await ok(
        raw,
        "POST",
        f"/api/v1/namespaces/{NS}/serviceaccounts/app/token",
        {"spec": {"audiences": ["kruise-mesh"], "expirationSeconds": 600}},
    )
    assert mesh["spec"]["audiences"] == ["kruise-mesh"]
    assert claims_of(mesh["status"]["token"])["aud"] == ["kruise-mesh"]


async def test_token_request_validation(raw: Raw) -> None:
    await setup_ns(raw)
    await new_sa(raw)
    path = f"/api/v1/namespaces/{NS}/serviceaccounts/app/token"
    code, _, out = await raw.call("POST", path, {"spec": {"expirationSeconds": 599}})
    assert code == 422 and out["reason"] == "Invalid"
    assert out["details"]["causes"][0]["field"] == "spec.expirationSeconds"
    assert "may not specify a duration less than 10 minutes" in out["message"]
    code, _, out = await raw.call(
        "POST", f"/api/v1/namespaces/{NS}/serviceaccounts/nobody/token", {"spec": {}}
    )
    assert code == 404 and out["message"] == 'serviceaccounts "nobody" not found'
    code, _, _ = await raw.call("GET", path)
    assert code == 405


async def test_a_token_bound_to_a_pod_dies_with_the_pod(raw: Raw) -> None:
    await setup_ns(raw)
    await new_sa(raw)
    p = await ok(raw, "POST", PODS, pod("holder"))
    out = await ok(
        raw,
        "POST",
        f"/api/v1/namespaces/{NS}/serviceaccounts/app/token",
        {"spec": {"boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "holder"}}},
    )
    token = out["status"]["token"]
    assert claims_of(token)["kubernetes.io"]["pod"] == {
        "name": "holder",
        "uid": p["metadata"]["uid"],
    }
    review = await ok(raw, "POST", TOKENREVIEWS, {"spec": {"token": token}})
    extra = review["status"]["user"]["extra"]
    assert extra["authentication.kubernetes.io/pod-name"] == ["holder"]
    assert extra["authentication.kubernetes.io/pod-uid"] == [p["metadata"]["uid"]]
    await ok(raw, "DELETE", f"{PODS}/holder?gracePeriodSeconds=0")
    review = await ok(raw, "POST", TOKENREVIEWS, {"spec": {"token": token}})
    assert "authenticated" not in review["status"]
    assert review["status"]["error"] == '[invalid bearer token, pods "holder" not found]'


# --- authentication --------------------------------------------------------------------------


async def test_bad_tokens_get_the_real_401(raw: Raw, sb: Sandbox) -> None:
    real = fixture("errors/401-unauthorized-bad-token.json")["response"]
    code, _, body = await raw.call("GET", PODS, token="not-a-valid-token")
    assert (code, body) == (real["status"], real["body"])
    await setup_ns(raw)
    token = await new_sa(raw)
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    code, _, body = await raw.call("GET", PODS, token=forged)
    assert (code, body) == (401, real["body"])
    async with raw.session.get(sb.url + PODS) as resp:  # no token at all: no anonymous
        assert resp.status == 401


async def test_token_review_accepts_and_refuses_by_audience(raw: Raw) -> None:
    await setup_ns(raw)
    api_token = await new_sa(raw)
    mesh_token = await new_sa(raw, audiences=["kruise-mesh"])

    out = await ok(raw, "POST", TOKENREVIEWS, {"spec": {"token": api_token}})
    assert out["kind"] == "TokenReview" and out["spec"]["token"] == api_token
    status = out["status"]
    assert status["authenticated"] is True and status["audiences"] == [API_AUDIENCE]
    user = status["user"]
    assert user["username"] == f"system:serviceaccount:{NS}:app"
    assert user["groups"] == [
        "system:serviceaccounts",
        f"system:serviceaccounts:{NS}",
        "system:authenticated",
    ]
    assert user["uid"] and user["extra"]["authentication.kubernetes.io/credential-id"] == [
        f"JTI={claims_of(api_token)['jti']}"
    ]

    # the gateway's check of a service replica's projected token
    mesh = {"spec": {"token": mesh_token, "audiences": ["kruise-mesh"]}}
    out = await ok(raw, "POST", TOKENREVIEWS, mesh)
    assert out["status"]["authenticated"] is True
    assert out["status"]["audiences"] == ["kruise-mesh"]
    assert out["status"]["user"]["username"] == f"system:serviceaccount:{NS}:app"

    # ... which the API server itself refuses, and an API token is no mesh token
    code, _, _ = await raw.call("GET", "/api", token=mesh_token)
    assert code == 401
    out = await ok(raw, "POST", TOKENREVIEWS, {"spec": {"token": mesh_token}})
    assert out["status"] == {
        "user": {},
        "error": '[invalid bearer token, token audiences ["kruise-mesh"] is invalid for the '
        f'target audiences ["{API_AUDIENCE}"]]',
    }
    out = await ok(
        raw, "POST", TOKENREVIEWS, {"spec": {"token": api_token, "audiences": ["kruise-mesh"]}}
    )
    assert "authenticated" not in out["status"]
    # the admin token is audience-agnostic: only the API server's audiences
    out = await ok(
        raw, "POST", TOKENREVIEWS, {"spec": {"token": raw.sb.token, "audiences": ["kruise-mesh"]}}
    )
    assert out["status"] == {"user": {}}
    out = await ok(raw, "POST", TOKENREVIEWS, {"spec": {"token": raw.sb.token}})
    assert "system:masters" in out["status"]["user"]["groups"]
    code, _, out = await raw.call("POST", TOKENREVIEWS, {"spec": {}})
    assert code == 400 and out["message"] == "token is required for TokenReview in authentication"


async def test_expired_tokens_and_deleted_service_accounts_are_refused(
    raw: Raw, sb: Sandbox
) -> None:
    await setup_ns(raw)
    token = await new_sa(raw, expirationSeconds=600)
    code, _, _ = await raw.call("GET", "/api", token=token)
    assert code == 200
    authority = sb.token_authority
    real_clock = authority.clock
    authority.clock = lambda: real_clock() + 600 + 30  # within kube's 60 s leeway
    code, _, _ = await raw.call("GET", "/api", token=token)
    assert code == 200
    authority.clock = lambda: real_clock() + 600 + 61
    code, _, body = await raw.call("GET", "/api", token=token)
    assert code == 401 and body["reason"] == "Unauthorized"
    out = await ok(raw, "POST", TOKENREVIEWS, {"spec": {"token": token}})
    assert out["status"]["error"] == "[invalid bearer token, service account token has expired]"
    authority.clock = real_clock

    await ok(raw, "DELETE", f"/api/v1/namespaces/{NS}/serviceaccounts/app")
    code, _, _ = await raw.call("GET", "/api", token=token)
    assert code == 401
    # a new ServiceAccount of the same name does not revive old tokens (uid differs)
    await ok(raw, "POST", f"/api/v1/namespaces/{NS}/serviceaccounts", {"metadata": {"name": "app"}})
    code, _, _ = await raw.call("GET", "/api", token=token)
    assert code == 401
    out = await ok(raw, "POST", TOKENREVIEWS, {"spec": {"token": token}})
    assert "does not match claim" in out["status"]["error"]


# --- RBAC on the request path ------------------------------------------------------------------


async def test_rbac_gates_a_service_account_token(raw: Raw) -> None:
    await setup_ns(raw)
    token = await new_sa(raw, name="default")
    await ok(raw, "POST", PODS, pod("p1"))
    # the exact 403 of the real server (captured for the same user by impersonation)
    real = fixture("errors/403-forbidden-impersonated-serviceaccount.json")["response"]
    code, _, body = await raw.call("GET", PODS, token=token)
    assert (code, body) == (real["status"], real["body"])
    code, _, body = await raw.call("GET", f"{PODS}/p1", token=token)
    assert code == 403 and body["details"] == {"name": "p1", "kind": "pods"}
    assert body["message"] == (
        'pods "p1" is forbidden: User "system:serviceaccount:demo:default" cannot get '
        'resource "pods" in API group "" in the namespace "demo"'
    )
    # discovery is every authenticated user's (bootstrap policy); test controls are not
    for path in ("/api", "/api/v1", "/apis", "/version"):
        code, _, _ = await raw.call("GET", path, token=token)
        assert code == 200, path
    code, _, body = await raw.call("GET", "/sandbox/v1/stats", token=token)
    assert code == 403 and body["details"] == {}
    assert body["message"] == (
        'forbidden: User "system:serviceaccount:demo:default" cannot get path "/sandbox/v1/stats"'
    )

    await grant(
        raw,
        "pod-reader",
        [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}],
        sa="default",
    )
    code, _, body = await raw.call("GET", f"{PODS}/p1", token=token)
    assert code == 200 and body["metadata"]["name"] == "p1"
    code, _, _ = await raw.call("GET", PODS, token=token)
    assert code == 403  # get is not list
    # the Role is of this namespace only
    await setup_ns(raw, "other")
    await ok(raw, "POST", "/api/v1/namespaces/other/pods", pod("p1"))
    code, _, _ = await raw.call("GET", "/api/v1/namespaces/other/pods/p1", token=token)
    assert code == 403
    # deleting the binding takes the right away again
    await ok(raw, "DELETE", f"{RBAC}/namespaces/{NS}/rolebindings/pod-reader")
    code, _, _ = await raw.call("GET", f"{PODS}/p1", token=token)
    assert code == 403


async def test_superuser_bypasses_rbac_and_impersonation_is_checked(raw: Raw) -> None:
    await setup_ns(raw)
    token = await new_sa(raw, name="default")
    code, _, _ = await raw.call("GET", "/sandbox/v1/stats")
    assert code == 200
    # impersonating the ServiceAccount gives exactly the fixture's 403
    real = fixture("errors/403-forbidden-impersonated-serviceaccount.json")
    headers = real["request"]["headers"]
    async with raw.session.get(
        raw.sb.url + real["request"]["path"],
        headers={"Authorization": f"Bearer {raw.sb.token}", **headers},
    ) as resp:
        assert resp.status == 403 and await resp.json() == real["response"]["body"]
    # a ServiceAccount may not impersonate without the impersonate verb
    async with raw.session.get(
        raw.sb.url + "/api",
        headers={"Authorization": f"Bearer {token}", "Impersonate-User": "admin"},
    ) as resp:
        body = await resp.json()
        assert resp.status == 403 and body["message"] == (
            'users "admin" is forbidden: User "system:serviceaccount:demo:default" cannot '
            'impersonate resource "users" in API group "" at the cluster scope'
        )


async def test_list_and_watch_need_their_own_verbs(raw: Raw, sb: Sandbox) -> None:
    await setup_ns(raw)
    token = await new_sa(raw)
    await grant(raw, "getter", [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}])
    watch = f"{PODS}?watch=1&timeoutSeconds=1"
    assert (await raw.call("GET", PODS, token=token))[0] == 403
    assert (await raw.call("GET", watch, token=token))[0] == 403
    await grant(raw, "lister", [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}])
    assert (await raw.call("GET", PODS, token=token))[0] == 200
    code, _, body = await raw.call("GET", watch, token=token)
    assert code == 403 and "cannot watch resource" in body["message"]
    code, _, body = await raw.call("GET", f"/api/v1/watch/namespaces/{NS}/pods/p1", token=token)
    assert code == 403 and body["details"]["name"] == "p1"
    await grant(raw, "watcher", [{"apiGroups": [""], "resources": ["pods"], "verbs": ["watch"]}])
    async with raw.session.get(
        sb.url + watch, headers={"Authorization": f"Bearer {token}"}
    ) as resp:
        assert resp.status == 200
        await resp.read()
    # delete without a name is deletecollection
    code, _, body = await raw.call("DELETE", PODS, token=token)
    assert code == 403 and "cannot deletecollection resource" in body["message"]


async def test_resource_names_restrict_by_name(raw: Raw) -> None:
    await setup_ns(raw)
    token = await new_sa(raw)
    await ok(raw, "POST", f"/api/v1/namespaces/{NS}/secrets", {"metadata": {"name": "mine"}})
    await ok(raw, "POST", f"/api/v1/namespaces/{NS}/secrets", {"metadata": {"name": "theirs"}})
    await grant(
        raw,
        "one-secret",
        [
            {
                "apiGroups": [""],
                "resources": ["secrets"],
                "resourceNames": ["mine"],
                "verbs": ["get", "list"],
            }
        ],
    )
    secrets = f"/api/v1/namespaces/{NS}/secrets"
    assert (await raw.call("GET", f"{secrets}/mine", token=token))[0] == 200
    assert (await raw.call("GET", f"{secrets}/theirs", token=token))[0] == 403
    assert (await raw.call("GET", secrets, token=token))[0] == 403
    # a list narrowed to one name by fieldSelector is a request for that name
    code, _, body = await raw.call(
        "GET", f"{secrets}?fieldSelector=metadata.name%3Dmine", token=token
    )
    assert code == 200 and [i["metadata"]["name"] for i in body["items"]] == ["mine"]


async def test_subresources_need_their_own_rules(raw: Raw) -> None:
    await setup_ns(raw)
    token = await new_sa(raw)
    await ok(raw, "POST", PODS, pod("victim"))
    await ok(
        raw,
        "POST",
        CS,
        {
            "apiVersion": "apps.kruise.io/v1alpha1",
            "kind": "CloneSet",
            "metadata": {"name": "web"},
            "spec": {"replicas": 1},
        },
    )
    await grant(
        raw,
        "main",
        [
            {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "delete"]},
            {
                "apiGroups": ["apps.kruise.io"],
                "resources": ["clonesets"],
                "verbs": ["get", "update"],
            },
        ],
    )
    eviction = {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "victim"}}
    code, _, body = await raw.call("POST", f"{PODS}/victim/eviction", eviction, token=token)
    assert code == 403 and body["message"] == (
        'pods "victim" is forbidden: User "system:serviceaccount:demo:app" cannot create '
        'resource "pods/eviction" in API group "" in the namespace "demo"'
    )
    cs = await ok(raw, "GET", f"{CS}/web", token=token)
    cs["status"] = {"replicas": 1}
    code, _, body = await raw.call("PUT", f"{CS}/web/status", cs, token=token)
    assert code == 403 and body["message"] == (
        'clonesets.apps.kruise.io "web" is forbidden: User "system:serviceaccount:demo:app" '
        'cannot update resource "clonesets/status" in API group "apps.kruise.io" in the '
        'namespace "demo"'
    )
    assert body["details"] == {"name": "web", "group": "apps.kruise.io", "kind": "clonesets"}
    code, _, _ = await raw.call("PUT", f"{CS}/web", cs, token=token)
    assert code == 200  # the main resource is granted

    await grant(
        raw,
        "subs",
        [
            {"apiGroups": [""], "resources": ["pods/eviction"], "verbs": ["create"]},
            {
                "apiGroups": ["apps.kruise.io"],
                "resources": ["clonesets/status"],
                "verbs": ["update"],
            },
        ],
    )
    cs = await ok(raw, "GET", f"{CS}/web", token=token)
    cs["status"] = {"replicas": 1}
    assert (await raw.call("PUT", f"{CS}/web/status", cs, token=token))[0] == 200
    assert (await raw.call("POST", f"{PODS}/victim/eviction", eviction, token=token))[0] == 201
    # "*/scale" grants every scale subresource, and only those
    assert (await raw.call("GET", f"{CS}/web/scale", token=token))[0] == 403
    await grant(
        raw,
        "scaler",
        [{"apiGroups": ["*"], "resources": ["*/scale"], "verbs": ["get"]}],
        cluster=True,
    )
    assert (await raw.call("GET", f"{CS}/web/scale", token=token))[0] == 200


# --- aggregation -------------------------------------------------------------------------------


async def test_cluster_role_aggregation(raw: Raw) -> None:
    await setup_ns(raw)
    token = await new_sa(raw)
    label = {"example.io/aggregate-to-reader": "true"}
    await ok(
        raw,
        "POST",
        f"{RBAC}/clusterroles",
        {
            "metadata": {"name": "reader"},
            "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": label}]},
            "rules": [],
        },
    )
    await ok(
        raw,
        "POST",
        f"{RBAC}/clusterrolebindings",
        {
            "metadata": {"name": "reader"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "reader",
            },
            "subjects": [{"kind": "ServiceAccount", "name": "app", "namespace": NS}],
        },
    )
    assert (await raw.call("GET", PODS, token=token))[0] == 403
    pods_rule = {"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}
    await ok(
        raw,
        "POST",
        f"{RBAC}/clusterroles",
        {"metadata": {"name": "reader-pods", "labels": label}, "rules": [pods_rule]},
    )
    agg = await ok(raw, "GET", f"{RBAC}/clusterroles/reader")
    assert agg["rules"] == [pods_rule]
    assert (await raw.call("GET", PODS, token=token))[0] == 200
    # an unlabelled role does not count; removing the label takes the rules away
    await ok(
        raw,
        "POST",
        f"{RBAC}/clusterroles",
        {
            "metadata": {"name": "unrelated"},
            "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["list"]}],
        },
    )
    assert (await ok(raw, "GET", f"{RBAC}/clusterroles/reader"))["rules"] == [pods_rule]
    await ok(
        raw,
        "PATCH",
        f"{RBAC}/clusterroles/reader-pods",
        {"metadata": {"labels": None}},
        content_type="application/merge-patch+json",
    )
    assert (await ok(raw, "GET", f"{RBAC}/clusterroles/reader"))["rules"] == []
    assert (await raw.call("GET", PODS, token=token))[0] == 403


async def test_binding_to_a_missing_role_says_so_in_the_reason(raw: Raw) -> None:
    await setup_ns(raw)
    await new_sa(raw)
    await ok(
        raw,
        "POST",
        f"{RBAC}/namespaces/{NS}/rolebindings",
        {
            "metadata": {"name": "dangling"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "ghost",
            },
            "subjects": [{"kind": "ServiceAccount", "name": "app"}],  # namespace: the binding's
        },
    )
    out = await ok(
        raw,
        "POST",
        SARS,
        {
            "spec": {
                "user": f"system:serviceaccount:{NS}:app",
                "resourceAttributes": {"namespace": NS, "verb": "get", "resource": "pods"},
            }
        },
    )
    assert out["status"] == {
        "allowed": False,
        "reason": 'RBAC: clusterrole.rbac.authorization.k8s.io "ghost" not found',
    }
    # roleRef cannot change
    rb = await ok(raw, "GET", f"{RBAC}/namespaces/{NS}/rolebindings/dangling")
    rb["roleRef"]["name"] = "other"
    code, _, body = await raw.call("PUT", f"{RBAC}/namespaces/{NS}/rolebindings/dangling", rb)
    assert code == 422 and "cannot change roleRef" in body["message"]


# --- SubjectAccessReview -----------------------------------------------------------------------

# (verb, group, resource, subresource, name, path) and what a request of it answers
SAR_CASES = [
    ("get", "", "pods", "", "p1", f"GET {PODS}/p1"),
    ("list", "", "pods", "", "", f"GET {PODS}"),
    ("delete", "", "pods", "", "p1", f"DELETE {PODS}/p1?dryRun=All"),
    ("create", "", "pods", "eviction", "p1", f"POST {PODS}/p1/eviction?dryRun=All"),
    ("get", "", "configmaps", "", "c1", f"GET /api/v1/namespaces/{NS}/configmaps/c1"),
    ("get", "apps.kruise.io", "clonesets", "", "web", f"GET {CS}/web"),
    ("patch", "apps.kruise.io", "clonesets", "status", "web", f"PATCH {CS}/web/status"),
]


async def test_subject_access_review_answers_what_the_request_path_enforces(raw: Raw) -> None:
    await setup_ns(raw)
    token = await new_sa(raw)
    await ok(raw, "POST", PODS, pod("p1"))
    await ok(raw, "POST", f"/api/v1/namespaces/{NS}/configmaps", {"metadata": {"name": "c1"}})
    await ok(raw, "POST", CS, {"metadata": {"name": "web"}, "spec": {"replicas": 1}})
    await grant(
        raw,
        "some",
        [
            {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "delete"]},
            {
                "apiGroups": [""],
                "resources": ["configmaps"],
                "resourceNames": ["c1"],
                "verbs": ["get"],
            },
            {
                "apiGroups": ["apps.kruise.io"],
                "resources": ["clonesets/status"],
                "verbs": ["patch"],
            },
        ],
    )
    user = f"system:serviceaccount:{NS}:app"
    groups = ["system:serviceaccounts", f"system:serviceaccounts:{NS}", "system:authenticated"]
    answers = []
    for verb, group, resource, sub, name, request in SAR_CASES:
        spec = {
            "user": user,
            "groups": groups,
            "resourceAttributes": {
                "namespace": NS,
                "verb": verb,
                "group": group,
                "resource": resource,
                "subresource": sub,
                "name": name,
            },
        }
        out = await ok(raw, "POST", SARS, {"spec": spec})
        assert out["kind"] == "SubjectAccessReview" and out["spec"] == spec
        method, path = request.split(" ", 1)
        body: Any = None
        ctype = "application/json"
        if method == "POST":
            body = {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "p1"}}
        if method == "PATCH":
            body, ctype = {"status": {"replicas": 1}}, "application/merge-patch+json"
        code, _, _ = await raw.call(method, path, body, token=token, content_type=ctype)
        assert out["status"]["allowed"] == (code != 403), (request, code, out)
        answers.append(out["status"]["allowed"])
    assert answers == [True, False, True, False, True, False, True]
    allowed = await ok(raw, "POST", SARS, {"spec": {**spec}})
    assert allowed["status"]["reason"] == (
        'RBAC: allowed by RoleBinding "some/demo" of Role "some" to ServiceAccount "app/demo"'
    )
    # SelfSubjectAccessReview: the same question asked by the token itself
    out = await ok(
        raw,
        "POST",
        "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
        {"spec": {"resourceAttributes": {"namespace": NS, "verb": "get", "resource": "pods"}}},
        token=token,
    )
    assert out["status"]["allowed"] is True
    # but asking about others needs system:auth-delegator
    code, _, _ = await raw.call("POST", SARS, {"spec": spec}, token=token)
    assert code == 403
    await ok(
        raw,
        "POST",
        f"{RBAC}/clusterrolebindings",
        {
            "metadata": {"name": "app-delegator"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "system:auth-delegator",
            },
            "subjects": [{"kind": "ServiceAccount", "name": "app", "namespace": NS}],
        },
    )
    assert (await raw.call("POST", SARS, {"spec": spec}, token=token))[0] == 201
    assert (await raw.call("POST", TOKENREVIEWS, {"spec": {"token": token}}, token=token))[0] == 201


async def test_other_reviews(raw: Raw) -> None:
    await setup_ns(raw)
    token = await new_sa(raw)
    # non-resource SAR, and the system:masters shortcut
    out = await ok(
        raw,
        "POST",
        SARS,
        {
            "spec": {
                "user": "someone",
                "groups": ["system:masters"],
                "nonResourceAttributes": {"path": "/metrics", "verb": "get"},
            }
        },
    )
    assert out["status"] == {"allowed": True}
    code, _, body = await raw.call("POST", SARS, {"spec": {"resourceAttributes": {"verb": "get"}}})
    assert code == 422 and body["details"]["causes"][0]["field"] == "spec.user"
    # LocalSubjectAccessReview takes its namespace from the path
    out = await ok(
        raw,
        "POST",
        f"/apis/authorization.k8s.io/v1/namespaces/{NS}/localsubjectaccessreviews",
        {
            "spec": {
                "user": f"system:serviceaccount:{NS}:app",
                "resourceAttributes": {"verb": "get", "resource": "pods"},
            }
        },
    )
    assert out["spec"]["resourceAttributes"]["namespace"] == NS
    assert out["status"]["allowed"] is False
    # kubectl auth whoami / can-i --list
    out = await ok(
        raw, "POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews", {}, token=token
    )
    assert out["status"]["userInfo"]["username"] == f"system:serviceaccount:{NS}:app"
    await grant(raw, "reader", [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}])
    out = await ok(
        raw,
        "POST",
        "/apis/authorization.k8s.io/v1/selfsubjectrulesreviews",
        {"spec": {"namespace": NS}},
        token=token,
    )
    assert {"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]} in out["status"][
        "resourceRules"
    ]
    assert out["status"]["incomplete"] is False
    # the issuer's public key
    jwks = await ok(raw, "GET", "/openid/v1/jwks", token=token)
    assert jwks["keys"][0]["kty"] == "EC" and jwks["keys"][0]["alg"] == "ES256"


# --- escalation --------------------------------------------------------------------------------


async def test_a_service_account_cannot_grant_what_it_does_not_hold(raw: Raw) -> None:
    await setup_ns(raw)
    token = await new_sa(raw)
    await grant(
        raw,
        "rbac-writer",
        [
            {
                "apiGroups": ["rbac.authorization.k8s.io"],
                "resources": ["roles", "rolebindings"],
                "verbs": ["create"],
            },
            {"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]},
        ],
    )
    roles = f"{RBAC}/namespaces/{NS}/roles"
    held = {
        "metadata": {"name": "held"},
        "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}],
    }
    assert (await raw.call("POST", roles, held, token=token))[0] == 201
    more = {
        "metadata": {"name": "more"},
        "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}],
    }
    code, _, body = await raw.call("POST", roles, more, token=token)
    assert code == 403 and body["message"] == (
        'roles.rbac.authorization.k8s.io "more" is forbidden: user '
        '"system:serviceaccount:demo:app" (groups=["system:serviceaccounts" '
        '"system:serviceaccounts:demo" "system:authenticated"]) is attempting to grant RBAC '
        'permissions not currently held:\n{APIGroups:[""], Resources:["secrets"], Verbs:["get"]}'
    )
    await ok(raw, "POST", roles, more)  # the admin may
    binding = {
        "metadata": {"name": "to-more"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "more"},
        "subjects": [{"kind": "ServiceAccount", "name": "app"}],
    }
    code, _, _ = await raw.call(
        "POST", f"{RBAC}/namespaces/{NS}/rolebindings", binding, token=token
    )
    assert code == 403
    binding["roleRef"]["name"] = "held"
    code, _, _ = await raw.call(
        "POST", f"{RBAC}/namespaces/{NS}/rolebindings", binding, token=token
    )
    assert code == 201


# --- clients -----------------------------------------------------------------------------------


async def test_kubernetes_asyncio_under_a_service_account(sb: Sandbox, raw: Raw) -> None:
    await setup_ns(raw)
    path = await sb.service_account_kubeconfig(NS, "gateway")
    cfg = client.Configuration()
    await config.load_kube_config(config_file=str(path), client_configuration=cfg)
    async with client.ApiClient(cfg) as api:
        core = client.CoreV1Api(api)
        with pytest.raises(ApiException) as e:
            await core.list_namespaced_pod(NS)
        assert e.value.status == 403
        await grant(
            raw,
            "gw",
            [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list", "create"]}],
            sa="gateway",
        )
        await core.create_namespaced_pod(NS, pod("made-by-gateway"))
        listed = await core.list_namespaced_pod(NS)
        assert [p.metadata.name for p in listed.items] == ["made-by-gateway"]
    token = await sb.issue_token(NS, "gateway", audiences=["kruise-mesh"])
    assert claims_of(token)["aud"] == ["kruise-mesh"]


async def test_token_request_and_review_through_kubernetes_asyncio(
    api: client.ApiClient, raw: Raw
) -> None:
    await setup_ns(raw)
    core = client.CoreV1Api(api)
    await core.create_namespaced_service_account(NS, {"metadata": {"name": "svc"}})
    tr = await core.create_namespaced_service_account_token(
        "svc",
        NS,
        client.AuthenticationV1TokenRequest(
            spec=client.V1TokenRequestSpec(audiences=["kruise-mesh"], expiration_seconds=600)
        ),
    )
    assert tr.spec.audiences == ["kruise-mesh"] and tr.status.expiration_timestamp is not None
    review = await client.AuthenticationV1Api(api).create_token_review(
        client.V1TokenReview(
            spec=client.V1TokenReviewSpec(token=tr.status.token, audiences=["kruise-mesh"])
        )
    )
    assert review.status.authenticated is True
    assert review.status.user.username == f"system:serviceaccount:{NS}:svc"
    sar = await client.AuthorizationV1Api(api).create_subject_access_review(
        client.V1SubjectAccessReview(
            spec=client.V1SubjectAccessReviewSpec(
                user=review.status.user.username,
                groups=review.status.user.groups,
                resource_attributes=client.V1ResourceAttributes(
                    namespace=NS,
                    verb="get",
                    group="policy.kruise.io",
                    resource="podunavailablebudgets",
                ),
            )
        )
    )
    assert sar.status.allowed is False


async def test_static_tokens_may_opt_into_rbac(sb: Sandbox, raw: Raw) -> None:
    sb.add_token("legacy", {"username": "legacy"})
    sb.add_token(
        "restricted", {"username": "jane", "groups": ["system:authenticated"]}, authorize=True
    )
    assert (await raw.call("GET", "/api/v1/namespaces/default/pods", token="legacy"))[0] == 200
    code, _, body = await raw.call("GET", "/api/v1/namespaces/default/pods", token="restricted")
    assert code == 403 and 'User "jane" cannot list' in body["message"]


async def test_authorization_is_cached_until_rbac_changes(sb: Sandbox, raw: Raw) -> None:
    authz = sb.auth.authorizer
    user = service_account_user(NS, "app")
    attrs = Attributes(verb="get", resource="pods", namespace=NS, name="p")
    builds = authz.builds
    started = time.perf_counter()
    for i in range(2000):
        other = Attributes(verb="get", resource="pods", namespace=NS, name=f"p{i % 50}")
        assert not authz.authorize(user, other).allowed
    per_call = (time.perf_counter() - started) / 2000
    assert authz.builds == builds + 1  # one index for every request until RBAC changes
    assert per_call < 200e-6, per_call
    await setup_ns(raw)
    await grant(raw, "reader", [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}])
    assert authz.authorize(user, attrs).allowed
    assert authz.builds == builds + 2
    await ok(raw, "POST", f"/api/v1/namespaces/{NS}/configmaps", {"metadata": {"name": "c"}})
    assert authz.authorize(user, attrs).allowed and authz.builds == builds + 2
