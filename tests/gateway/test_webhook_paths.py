"""What each webhook path accepts: the table agrees with deploy/, and reviews a path cannot
receive from the API server are refused with 400 before any service sees them.

The reviews are the ones a real kube-apiserver sent (``shared/fixtures/real-apiserver``),
as they are and altered one field at a time. The HTTP tests run the real HTTPS server with a
recording forwarder in place of the hop, so "forwarded to no service" is observed directly.
"""

from __future__ import annotations

import copy
import dataclasses
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import yaml
from prometheus_client import REGISTRY

from kruise.common.v1 import mesh_pb2
from services.gateway.webhook.paths import (
    WEBHOOK_PATHS,
    WebhookPath,
    check_review,
    derive_paths,
)
from services.gateway.webhook.reviews import InvalidReview, parse_review
from services.gateway.webhook.server import WebhookServer, start_webhook_server
from services.kit import certs
from tests.fixtures import REAL_APISERVER

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
FIXTURES = REAL_APISERVER / "admission"
pytestmark = pytest.mark.skipif(not FIXTURES.is_dir(), reason="real-apiserver fixtures not present")

EVICTION = "/budget/validate-pod-eviction"
MUTATE_PODS = {"/placement/mutate-pods", "/rollout/mutate-pods", "/budget/mutate-pods"}


def deploy_docs() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    configs = [d for d in yaml.safe_load_all((DEPLOY / "webhooks.yaml").read_text()) if d]
    crds = [
        d
        for f in sorted((DEPLOY / "crds").glob("*.yaml"))
        for d in yaml.safe_load_all(f.read_text())
        if d and d.get("kind") == "CustomResourceDefinition"
    ]
    return configs, crds


def review_of(name: str) -> dict[str, Any]:
    review: dict[str, Any] = orjson.loads((FIXTURES / name).read_bytes())["admissionReview"]
    return review


def accepting(review: dict[str, Any]) -> set[str]:
    parsed = parse_review(orjson.dumps(review))
    found = set()
    for path, accepts in WEBHOOK_PATHS.items():
        try:
            check_review(parsed, accepts)
        except InvalidReview:
            continue
        found.add(path)
    return found


# --- the table is deploy/webhooks.yaml ----------------------------------------------------------


def test_the_table_is_what_deploy_webhooks_yaml_says() -> None:
    configs, crds = deploy_docs()
    derived = derive_paths(configs, crds)
    assert sorted(derived) == sorted(WEBHOOK_PATHS), "a path was added or removed in deploy/"
    for path, accepts in derived.items():
        assert accepts == WEBHOOK_PATHS[path], f"{path}: update WEBHOOK_PATHS to\n{accepts!r}"


def test_every_path_names_a_service_and_its_webhook() -> None:
    for path, accepts in WEBHOOK_PATHS.items():
        assert path == f"/{accepts.service}/{accepts.webhook}"
        assert accepts.service in {"placement", "rollout", "budget"}
        assert accepts.review_versions == ("v1",)


def _config(**hook: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "name": "x.kruise.io",
        "admissionReviewVersions": ["v1"],
        "clientConfig": {"service": {"name": "s", "namespace": "n", "path": "/budget/x"}},
        "rules": [
            {
                "operations": ["CREATE"],
                "apiGroups": [""],
                "apiVersions": ["v1"],
                "resources": ["pods"],
            }
        ],
    }
    base.update(hook)
    return {"kind": "ValidatingWebhookConfiguration", "webhooks": [base]}


@pytest.mark.parametrize(
    ("config", "message"),
    [
        pytest.param(_config(clientConfig={"service": {"name": "s"}}), "has no path", id="no path"),
        pytest.param(
            _config(
                rules=[
                    {
                        "operations": ["*"],
                        "apiGroups": [""],
                        "apiVersions": ["v1"],
                        "resources": ["pods"],
                    }
                ]
            ),
            "wildcard in operations",
            id="wildcard",
        ),
        pytest.param(
            _config(
                rules=[
                    {
                        "operations": ["CREATE"],
                        "apiGroups": ["apps"],
                        "apiVersions": ["v1"],
                        "resources": ["deployments"],
                    }
                ]
            ),
            "no kind known for apps/v1 deployments",
            id="unknown kind",
        ),
        pytest.param(
            _config(rules=[{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"]}]),
            "rule without resources",
            id="no resources",
        ),
    ],
)
def test_derive_refuses_what_it_cannot_check(config: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        derive_paths([config], [])


def test_derive_reads_url_paths_and_merges_webhooks_sharing_a_path() -> None:
    url = _config(clientConfig={"url": "https://127.0.0.1:9443/budget/x?x=1"})
    other = _config(
        name="y.kruise.io",
        rules=[
            {
                "operations": ["CREATE"],
                "apiGroups": [""],
                "apiVersions": ["v1"],
                "resources": ["pods/eviction"],
            }
        ],
    )
    (merged,) = derive_paths([url, other], []).values()
    assert merged.path == "/budget/x"
    assert merged.webhooks == ("x.kruise.io", "y.kruise.io")
    assert len(merged.rules) == 2
    other["webhooks"][0]["admissionReviewVersions"] = ["v1", "v1beta1"]
    with pytest.raises(ValueError, match="different admissionReviewVersions"):
        derive_paths([url, other], [])


# --- which path accepts which real review -------------------------------------------------------

CRS = {"/rollout/mutate-clonesets", "/rollout/validate-clonesets"}
EXPECTED_PATHS = [
    ("cr-create-cloneset", CRS),
    ("cr-update-cloneset", CRS),
    ("cr-create-persistentpodstate", {"/placement/validate-persistentpodstates"}),
    ("cr-update-persistentpodstate", {"/placement/validate-persistentpodstates"}),
    ("cr-create-podunavailablebudget", {"/budget/validate-podunavailablebudgets"}),
    ("cr-update-podunavailablebudget", {"/budget/validate-podunavailablebudgets"}),
    ("cr-status-update-cloneset", set()),
    ("cr-scale-update-cloneset", set()),
    ("cr-status-update-podunavailablebudget", set()),
    ("pod-create-by-user", MUTATE_PODS),
    ("pod-create-by-replicaset-controller", MUTATE_PODS),  # generateName: no name yet
    ("pod-create-dryrun", MUTATE_PODS),
    ("pod-update-image-kubectl-set-image", {"/budget/validate-pods"}),
    ("pod-update-label-only-put", {"/budget/validate-pods"}),
    ("pod-delete-graceful-by-user", {"/budget/validate-pods"}),
    ("pod-delete-dryrun", {"/budget/validate-pods"}),
    ("pod-status-update-put-subresource", set()),
    ("pod-eviction-create", {EVICTION}),
    ("pod-eviction-create-dryrun", {EVICTION}),
    ("pod-eviction-create-dryrun-in-deleteoptions", {EVICTION}),
]


@pytest.mark.parametrize(("fixture", "paths"), EXPECTED_PATHS, ids=[f for f, _ in EXPECTED_PATHS])
@pytest.mark.parametrize("phase", ["mutating", "validating"])
def test_a_real_review_is_accepted_exactly_where_deploy_sends_it(
    fixture: str, paths: set[str], phase: str
) -> None:
    assert accepting(review_of(f"{fixture}.{phase}.json")) == paths


# --- precise refusals --------------------------------------------------------------------------


def altered(
    changes: dict[str, Any], *, fixture: str = "pod-eviction-create.validating.json"
) -> bytes:
    """The fixture's review with request fields replaced (None deletes; ``top_`` for the
    AdmissionReview itself)."""
    review = copy.deepcopy(review_of(fixture))
    for key, value in changes.items():
        target = review if key.startswith("top_") else review["request"]
        key = key.removeprefix("top_")
        if value is None:
            target.pop(key, None)
        else:
            target[key] = value
    return orjson.dumps(review)


POD_KIND = {"group": "", "version": "v1", "kind": "Pod"}
REFUSALS = [
    # (path, changes, message the 400 starts with)
    pytest.param(EVICTION, {"uid": None}, "request.uid is missing", id="no uid"),
    pytest.param(EVICTION, {"uid": 42}, "request.uid must be a string", id="uid not a string"),
    pytest.param(
        EVICTION,
        {"uid": "forged-1"},
        "request.uid 'forged-1' is not a UUID (the API server sends 8-4-4-4-12 hex digits)",
        id="uid not a UUID",
    ),
    pytest.param(
        EVICTION,
        {"uid": "e5b4f409-07ce-4c1d-bd10-a425d657d78"},
        "request.uid 'e5b4f409-07ce-4c1d-bd10-a425d657d78' is not a UUID",
        id="uid one digit short",
    ),
    pytest.param(
        EVICTION,
        {"top_apiVersion": "admission.k8s.io/v1beta1"},
        "apiVersion admission.k8s.io/v1beta1 is not accepted at /budget/validate-pod-eviction: "
        "its webhook lists admissionReviewVersions [v1]",
        id="v1beta1",
    ),
    pytest.param(
        EVICTION,
        {"top_kind": "Eviction"},
        "kind must be AdmissionReview, got 'Eviction'",
        id="not an AdmissionReview",
    ),
    pytest.param(
        EVICTION,
        {"subResource": None},
        "request.resource v1 pods is not accepted at /budget/validate-pod-eviction "
        "(it accepts CREATE of v1 pods/eviction)",
        id="no subResource",
    ),
    pytest.param(
        EVICTION,
        {"subResource": "status"},
        "request.resource v1 pods/status is not accepted",
        id="other subResource",
    ),
    pytest.param(
        EVICTION,
        {"resource": {"group": "apps.kruise.io", "version": "v1alpha1", "resource": "clonesets"}},
        "request.resource apps.kruise.io/v1alpha1 clonesets/eviction is not accepted",
        id="other resource",
    ),
    pytest.param(
        EVICTION,
        {"resource": {"group": "", "version": "v1beta1", "resource": "pods"}},
        "request.resource v1beta1 pods/eviction is not accepted",
        id="other version",
    ),
    pytest.param(
        EVICTION,
        {"operation": "DELETE"},
        "request.operation DELETE of v1 pods/eviction is not accepted at "
        "/budget/validate-pod-eviction (it accepts CREATE of v1 pods/eviction)",
        id="other operation",
    ),
    pytest.param(
        EVICTION,
        {"operation": "PATCH"},
        "request.operation must be one of CREATE, UPDATE, DELETE, CONNECT, got 'PATCH'",
        id="no such operation",
    ),
    pytest.param(
        EVICTION,
        {"kind": POD_KIND},
        "request.kind v1 Pod does not fit v1 pods/eviction at /budget/validate-pod-eviction "
        "(expected policy/v1 Eviction or policy/v1beta1 Eviction)",
        id="other kind",
    ),
    pytest.param(
        EVICTION,
        {"namespace": None},
        "request.namespace is missing: /budget/validate-pod-eviction accepts namespaced requests",
        id="no namespace",
    ),
    pytest.param(
        EVICTION,
        {"name": ""},
        "request.name is missing: a CREATE of pods/eviction names its object",
        id="no name",
    ),
    pytest.param(
        EVICTION,
        {"object": None},
        "request.object must be an object for CREATE, got missing",
        id="no object",
    ),
    pytest.param(
        EVICTION,
        {"object": "evict-me"},
        "request.object must be an object for CREATE, got a str",
        id="object not an object",
    ),
    pytest.param(
        "/budget/validate-pods",
        {"oldObject": None},
        "request.oldObject must be an object for DELETE, got missing",
        id="DELETE without oldObject",
    ),
    pytest.param(
        "/budget/validate-pods",
        {"operation": "CREATE", "object": {"kind": "Pod"}},
        "request.operation CREATE of v1 pods is not accepted at /budget/validate-pods "
        "(it accepts DELETE, UPDATE of v1 pods)",
        id="CREATE at validate-pods",
    ),
    pytest.param(
        "/rollout/validate-clonesets",
        {},
        "request.resource v1 pods is not accepted at /rollout/validate-clonesets "
        "(it accepts CREATE, UPDATE of apps.kruise.io/v1alpha1 clonesets)",
        id="a pod at validate-clonesets",
    ),
]
FIXTURE_OF = {
    "/budget/validate-pods": "pod-delete-graceful-by-user.validating.json",
    "/rollout/validate-clonesets": "pod-delete-graceful-by-user.validating.json",
}


@pytest.mark.parametrize(("path", "changes", "message"), REFUSALS)
def test_a_review_the_path_cannot_receive_is_refused_precisely(
    path: str, changes: dict[str, Any], message: str
) -> None:
    body = altered(changes, fixture=FIXTURE_OF.get(path, "pod-eviction-create.validating.json"))
    with pytest.raises(InvalidReview) as raised:
        check_review(parse_review(body), WEBHOOK_PATHS[path])
    assert str(raised.value).startswith(message), str(raised.value)
    assert raised.value.http_status == 400


def test_uppercase_uuid_and_a_v1beta1_eviction_kind_are_accepted() -> None:
    kind = {"group": "policy", "version": "v1beta1", "kind": "Eviction"}
    body = altered({"uid": "E5B4F409-07CE-4C1D-BD10-A425D657D786", "kind": kind})
    check_review(parse_review(body), WEBHOOK_PATHS[EVICTION])


# --- over HTTP: refused reviews reach no service -----------------------------------------------


class Recorder:
    """The forwarder's place: records what would have gone to a service, allows it."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, mesh_pb2.AdmissionRequest]] = []

    async def review(
        self,
        service: str,
        namespace: str,
        request: mesh_pb2.AdmissionRequest,
        *,
        timeout: float,
    ) -> mesh_pb2.AdmissionResponse:
        self.calls.append((service, namespace, request))
        return mesh_pb2.AdmissionResponse(call_id=request.call_id, allowed=True)


@dataclasses.dataclass
class Served:
    server: WebhookServer
    recorder: Recorder
    http: aiohttp.ClientSession

    async def post(self, path: str, body: bytes) -> tuple[int, dict[str, Any]]:
        url = f"https://127.0.0.1:{self.server.port}{path}"
        async with self.http.post(
            url, data=body, headers={"Content-Type": "application/json"}
        ) as response:
            return response.status, orjson.loads(await response.read())


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    ca = certs.generate_ca(common_name="paths-test-ca")
    cert_file, key_file = certs.write_pair(
        tmp_path, "tls", certs.issue_serving_cert(ca=ca, hosts=[])
    )
    recorder = Recorder()
    server = await start_webhook_server(
        host="127.0.0.1",
        port=0,
        cert_file=str(cert_file),
        key_file=str(key_file),
        forwarder=recorder,
    )
    context = ssl.create_default_context(cadata=ca.cert_pem.decode())
    http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context))
    try:
        yield Served(server, recorder, http)
    finally:
        await http.close()
        await server.stop()


def refused(path: str, reason: str) -> float:
    value = REGISTRY.get_sample_value(
        "kruise_mesh_webhook_refused_total", {"path": path, "reason": reason}
    )
    return value or 0.0


@pytest.mark.parametrize(("path", "changes", "message"), REFUSALS)
async def test_refused_reviews_get_400_and_reach_no_service(
    served: Served, path: str, changes: dict[str, Any], message: str
) -> None:
    body = altered(changes, fixture=FIXTURE_OF.get(path, "pod-eviction-create.validating.json"))
    before = refused(path, "invalid")

    status, answer = await served.post(path, body)

    assert status == 400
    assert answer["error"].startswith(message), answer
    assert served.recorder.calls == []
    assert refused(path, "invalid") - before == 1


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/budget/validate-nodes", "no webhook at /budget/validate-nodes; the webhook "),
        ("/budget/validate-pod", "no webhook at /budget/validate-pod;"),
        ("/budget/validate-pod-eviction/x", "no webhook at /budget/validate-pod-eviction/x;"),
        ("/kube-system/validate-pods", "unknown service 'kube-system'"),
        ("/", "no webhook at /;"),
    ],
)
async def test_a_path_no_configuration_names_is_404(
    served: Served, path: str, message: str
) -> None:
    before = refused("other", "not_found")
    status, answer = await served.post(
        path, orjson.dumps(review_of("pod-eviction-create.validating.json"))
    )
    assert status == 404
    assert answer["error"].startswith(message), answer
    assert served.recorder.calls == []
    assert refused("other", "not_found") - before == 1


async def test_the_real_reviews_reach_their_service(served: Served) -> None:
    for fixture, paths in EXPECTED_PATHS:
        for path in sorted(paths):
            review = review_of(f"{fixture}.validating.json")
            status, answer = await served.post(path, orjson.dumps(review))
            assert status == 200, (fixture, path, answer)
            assert answer["response"] == {"uid": review["request"]["uid"], "allowed": True}
    expected = sum(len(paths) for _, paths in EXPECTED_PATHS)
    assert len(served.recorder.calls) == expected
    service, namespace, request = served.recorder.calls[-1]
    assert (service, namespace, request.webhook) == ("budget", "capture", "validate-pod-eviction")


def test_a_table_entry_can_be_narrowed_for_a_test() -> None:
    """``start_webhook_server(paths=...)`` takes any table; entries are plain values."""
    only: WebhookPath = dataclasses.replace(WEBHOOK_PATHS[EVICTION], review_versions=("v1beta1",))
    body = altered({})
    with pytest.raises(InvalidReview, match="admissionReviewVersions \\[v1beta1\\]"):
        check_review(parse_review(body), only)
