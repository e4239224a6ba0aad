"""The budget's object webhooks (services.budget.object_webhooks, SPEC 4.4 and 4.8).

The replica cache is a real ``ObjectCache`` seeded with views, and the workload finder a
real ``WorkloadFinder`` over it; only the ``/scale`` reads of custom kinds come from a
table (``Scales``). Namespace ``default`` holds Deployment ``nginx`` (10 replicas) and its
ReplicaSet ``nginx-7d9c``, StatefulSet ``web``, and the budgets each row names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest

from kruise.common.v1 import mesh_pb2, views_pb2
from services.budget.object_webhooks import (
    decide_related_pub,
    decide_validation,
    first_related_budget,
    handlers,
    related_pub_patch,
)
from services.budget.workloads import Workload, WorkloadFinder
from services.kit import errors
from services.kit.cache import ObjectCache
from services.kit.cluster import Ref, Scale
from tests.unit.budget_builders import NAMESPACE, pub

RELATED = "kruise.io/related-pub"
RELATED_PATH = "/metadata/annotations/kruise.io~1related-pub"
DEPLOYMENT = ("apps/v1", "Deployment", "nginx")
ROLLOUT = ("argoproj.io/v1alpha1", "Rollout", "rollouts-demo")
WEB = {"app": "web"}


@dataclass
class Scales:
    """``/scale`` answers by kind/name; an exception in the table is raised."""

    answers: dict[tuple[str, str], Scale | errors.MeshError] = field(default_factory=dict)
    reads: list[str] = field(default_factory=list)

    async def get_scale(self, ref: Ref) -> Scale:
        self.reads.append(f"{ref.kind}/{ref.name}")
        answer = self.answers.get((ref.kind, ref.name))
        if answer is None:
            raise errors.NotFound(f"{ref.kind} {ref.name} not found")
        if isinstance(answer, errors.MeshError):
            raise answer
        return answer


def workload_view(
    api_version: str, kind: str, name: str, *, uid: str, replicas: int = 10, owner=None
) -> views_pb2.WorkloadView:
    view = views_pb2.WorkloadView(api_version=api_version, kind=kind, spec_replicas=replicas)
    view.meta.namespace, view.meta.name, view.meta.uid = NAMESPACE, name, uid
    if owner is not None:
        view.meta.owner_references.add(controller=True, **owner)
    return view


def event(kind: int, view: Any) -> mesh_pb2.WatchEvent:
    out = mesh_pb2.WatchEvent(type=mesh_pb2.WatchEvent.TYPE_ADDED, kind=kind)
    field_name = {
        mesh_pb2.KIND_WORKLOAD: "workload",
        mesh_pb2.KIND_POD_UNAVAILABLE_BUDGET: "pod_unavailable_budget",
    }[kind]
    getattr(out.object, field_name).CopyFrom(view)
    return out


WORKLOADS = [
    workload_view("apps/v1", "Deployment", "nginx", uid="deploy-uid"),
    workload_view(
        "apps/v1",
        "ReplicaSet",
        "nginx-7d9c",
        uid="rs-uid",
        owner={
            "api_version": "apps/v1",
            "kind": "Deployment",
            "name": "nginx",
            "uid": "deploy-uid",
        },
    ),
    workload_view("apps/v1", "StatefulSet", "web", uid="sts-uid", replicas=3),
]


def world(*budgets: views_pb2.PodUnavailableBudgetView, scales: Scales | None = None):
    cache = ObjectCache()
    for view in WORKLOADS:
        cache.apply(event(mesh_pb2.KIND_WORKLOAD, view))
    for budget in budgets:
        cache.apply(event(mesh_pb2.KIND_POD_UNAVAILABLE_BUDGET, budget))
    return cache, WorkloadFinder(cache=cache, scales=scales or Scales())


def raw_pod(
    *,
    owner: tuple[str, str, str] | None = ("apps/v1", "ReplicaSet", "nginx-7d9c"),
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": "test-pod-0", "namespace": NAMESPACE}
    if labels is not None:
        metadata["labels"] = labels
    if annotations is not None:
        metadata["annotations"] = annotations
    if owner is not None:
        api_version, kind, name = owner
        metadata["ownerReferences"] = [
            {"apiVersion": "v1", "kind": "ConfigMap", "name": "not-a-controller", "uid": "cm"},
            {"apiVersion": api_version, "kind": kind, "name": name, "uid": "x", "controller": True},
        ]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": {"containers": []}}


def review(
    obj: Any,
    *,
    old: Any = None,
    operation: int = mesh_pb2.OPERATION_CREATE,
    resource: str = "pods",
    sub_resource: str = "",
    name: str = "test-pod-0",
    webhook: str = "mutate-pods",
) -> mesh_pb2.AdmissionRequest:
    body = {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {"uid": "1", "object": obj, "oldObject": old},
    }
    return mesh_pb2.AdmissionRequest(
        webhook=webhook,
        operation=operation,
        resource=mesh_pb2.GroupVersionResource(version="v1", resource=resource),
        sub_resource=sub_resource,
        namespace=NAMESPACE,
        name=name,
        review_json=orjson.dumps(body),
    )


def deployment_workload() -> Workload:
    return Workload("apps/v1", "Deployment", "nginx", uid="deploy-uid", replicas=10)


# ---- first_related_budget: the matching rule (pure) -------------------------------------


@pytest.mark.parametrize(
    ("budgets", "labels", "want"),
    [
        pytest.param(
            [pub(target=DEPLOYMENT, selector=None)], {}, "pub-test", id="targetRef is the workload"
        ),
        pytest.param(
            [pub(target=("apps/v1beta1", "Deployment", "nginx"), selector=None)],
            {},
            "pub-test",
            id="targetRef version is ignored",
        ),
        pytest.param(
            [pub(target=("apps/v1", "Deployment", "other"), selector=None)],
            {},
            None,
            id="targetRef names another workload",
        ),
        pytest.param(
            [pub(target=("apps/v1", "StatefulSet", "nginx"), selector=None)],
            {},
            None,
            id="targetRef of another kind with the same name",
        ),
        pytest.param(
            [pub(target=("extensions/v1beta1", "Deployment", "nginx"), selector=None)],
            {},
            None,
            id="targetRef of another group",
        ),
        pytest.param([pub(selector=WEB)], WEB, "pub-test", id="selector matches the labels"),
        pytest.param([pub(selector=WEB)], {"app": "db"}, None, id="selector does not match"),
        pytest.param([pub(selector={})], WEB, None, id="empty selector matches nothing"),
        pytest.param(
            [pub(selector=WEB, target=("apps/v1", "Deployment", "other"))],
            WEB,
            None,
            id="targetRef wins over a matching selector",
        ),
        pytest.param(
            [pub("b-target", target=DEPLOYMENT, selector=None), pub("a-selector", selector=WEB)],
            WEB,
            "a-selector",
            id="first matching budget by name",
        ),
    ],
)
def test_first_related_budget(budgets, labels, want):
    assert first_related_budget(budgets, workload=deployment_workload(), labels=labels) == want


@pytest.mark.parametrize(
    ("pod", "want"),
    [
        pytest.param(
            {"metadata": {"name": "p"}},
            [{"op": "add", "path": "/metadata/annotations", "value": {RELATED: "pub-test"}}],
            id="no annotations: create the map",
        ),
        pytest.param(
            {"metadata": {"annotations": None}},
            [{"op": "add", "path": "/metadata/annotations", "value": {RELATED: "pub-test"}}],
            id="null annotations: create the map",
        ),
        pytest.param(
            {"metadata": {"annotations": {"a": "b"}}},
            [{"op": "add", "path": RELATED_PATH, "value": "pub-test"}],
            id="other annotations: add the key",
        ),
        pytest.param(
            {"metadata": {"annotations": {RELATED: "old"}}},
            [{"op": "add", "path": RELATED_PATH, "value": "pub-test"}],
            id="another budget named: replaced, as OpenKruise sets it",
        ),
        pytest.param(
            {"metadata": {"annotations": {RELATED: "pub-test"}}}, [], id="already named: no patch"
        ),
        pytest.param(
            {},
            [{"op": "add", "path": "/metadata", "value": {"annotations": {RELATED: "pub-test"}}}],
            id="no metadata at all",
        ),
    ],
)
def test_related_pub_patch(pod, want):
    assert related_pub_patch(pod, "pub-test") == want


# ---- mutate-pods ------------------------------------------------------------------------

TARGET_DEPLOYMENT = pub("pub-deploy", target=DEPLOYMENT, selector=None)
TARGET_ROLLOUT = pub("pub-rollout", target=ROLLOUT, selector=None)
SELECT_WEB = pub("pub-web", selector=WEB)
ALL_BUDGETS = (TARGET_DEPLOYMENT, TARGET_ROLLOUT, SELECT_WEB)
ADD_MAP = "/metadata/annotations"


@pytest.mark.parametrize(
    ("request_", "scales", "outcome", "patch"),
    [
        pytest.param(
            review(raw_pod()),
            {},
            "linked",
            [{"op": "add", "path": ADD_MAP, "value": {RELATED: "pub-deploy"}}],
            id="pod of a ReplicaSet owned by the targeted Deployment",
        ),
        pytest.param(
            review(raw_pod(annotations={"team": "a"})),
            {},
            "linked",
            [{"op": "add", "path": RELATED_PATH, "value": "pub-deploy"}],
            id="pod with annotations gets the key added",
        ),
        pytest.param(
            review(raw_pod(annotations={RELATED: "pub-deploy"})),
            {},
            "already-linked",
            [],
            id="already annotated with the same budget",
        ),
        pytest.param(
            review(raw_pod(owner=("apps/v1", "StatefulSet", "web"), labels=WEB)),
            {},
            "linked",
            [{"op": "add", "path": ADD_MAP, "value": {RELATED: "pub-web"}}],
            id="pod of a StatefulSet selected by labels",
        ),
        pytest.param(
            review(raw_pod(owner=("apps/v1", "StatefulSet", "web"), labels={"app": "db"})),
            {},
            "no-budget",
            [],
            id="no budget targets or selects the pod",
        ),
        pytest.param(
            review(raw_pod(owner=None, labels=WEB)),
            {},
            "not-owned",
            [],
            id="no controller owner: never linked in v1.2, even when selected",
        ),
        pytest.param(
            review(raw_pod(owner=("apps/v1", "ReplicaSet", "gone"), labels=WEB)),
            {},
            "owner-not-found",
            [],
            id="owner not in the cache",
        ),
        pytest.param(
            review(raw_pod(owner=ROLLOUT)),
            {("Rollout", "rollouts-demo"): Scale(spec_replicas=5, selector="app=demo")},
            "linked",
            [{"op": "add", "path": ADD_MAP, "value": {RELATED: "pub-rollout"}}],
            id="custom kind resolved through /scale",
        ),
        pytest.param(
            review(raw_pod(owner=("example.com/v1", "Widget", "w"), labels=WEB)),
            {},
            "owner-not-found",
            [],
            id="custom kind without /scale (404)",
        ),
        pytest.param(
            review(raw_pod(owner=ROLLOUT)),
            {("Rollout", "rollouts-demo"): errors.Unavailable("gateway down")},
            "unresolved",
            [],
            id="custom kind /scale fails: admitted unchanged",
        ),
        pytest.param(
            review(raw_pod(owner=("a/b/c", "Thing", "t"))),
            {},
            "unresolved",
            [],
            id="malformed owner apiVersion: admitted unchanged",
        ),
        pytest.param(
            review(raw_pod(), operation=mesh_pb2.OPERATION_UPDATE),
            {},
            "skipped",
            [],
            id="UPDATE is not looked at",
        ),
        pytest.param(
            review(raw_pod(), sub_resource="status"), {}, "skipped", [], id="subresource skipped"
        ),
        pytest.param(
            review(raw_pod(), resource="configmaps"), {}, "skipped", [], id="not a pod: skipped"
        ),
    ],
)
async def test_mutate_pods(request_, scales, outcome, patch):
    cache, finder = world(*ALL_BUDGETS, scales=Scales(dict(scales)))
    verdict, got = await decide_related_pub(request_, cache=cache, finder=finder)
    assert (verdict.allowed, got, verdict.patch) == (True, outcome, patch)


async def test_built_in_owners_never_read_scale():
    scales = Scales()
    cache, finder = world(*ALL_BUDGETS, scales=scales)
    for owner in (("apps/v1", "ReplicaSet", "nginx-7d9c"), ("apps/v1", "StatefulSet", "gone")):
        await decide_related_pub(review(raw_pod(owner=owner)), cache=cache, finder=finder)
    assert scales.reads == []


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        pytest.param(review(None), "must carry the pod", id="no object"),
        pytest.param(review([1, 2]), "must be an object", id="object is not an object"),
    ],
)
async def test_mutate_pods_unreadable_review_is_refused_with_400(request_, message):
    cache, finder = world()
    verdict, outcome = await decide_related_pub(request_, cache=cache, finder=finder)
    assert (verdict.allowed, verdict.code, outcome) == (False, 400, "bad-review")
    assert message in verdict.message


async def test_mutate_pods_handler_answers_with_the_patch():
    cache, finder = world(*ALL_BUDGETS)
    response = await handlers(cache=cache, finder=finder)["mutate-pods"](review(raw_pod()))
    assert response.allowed
    assert orjson.loads(response.patch) == [
        {"op": "add", "path": ADD_MAP, "value": {RELATED: "pub-deploy"}}
    ]


# ---- validate-podunavailablebudgets --------------------------------------------------------


def raw_budget(
    name: str = "pub-new",
    *,
    target: tuple[str, str, str] | None = DEPLOYMENT,
    selector: dict[str, str] | None = None,
    max_unavailable: Any = "30%",
) -> dict[str, Any]:
    spec: dict[str, Any] = {}
    if target is not None:
        spec["targetRef"] = dict(zip(("apiVersion", "kind", "name"), target, strict=True))
    if selector is not None:
        spec["selector"] = {"matchLabels": selector}
    if max_unavailable is not None:
        spec["maxUnavailable"] = max_unavailable
    return {
        "apiVersion": "policy.kruise.io/v1alpha1",
        "kind": "PodUnavailableBudget",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": spec,
    }


def budget_review(obj: Any, *, old: Any = None, operation: int = mesh_pb2.OPERATION_CREATE):
    name = obj["metadata"]["name"] if isinstance(obj, dict) else "pub-new"
    return review(
        obj,
        old=old,
        operation=operation,
        resource="podunavailablebudgets",
        name=name,
        webhook="validate-podunavailablebudgets",
    )


@pytest.mark.parametrize(
    ("existing", "request_", "code", "message"),
    [
        pytest.param((), budget_review(raw_budget()), 0, "", id="targetRef + maxUnavailable"),
        pytest.param(
            (),
            budget_review(raw_budget(target=None)),
            422,
            "no selector or targetRef defined in PodUnavailableBudget",
            id="neither selector nor targetRef",
        ),
        pytest.param(
            (TARGET_DEPLOYMENT,),
            budget_review(raw_budget()),
            422,
            "in conflict with other PodUnavailableBudget pub-deploy",
            id="another budget of the namespace targets the Deployment",
        ),
        pytest.param(
            (pub("pub-deploy", namespace="other", target=DEPLOYMENT, selector=None),),
            budget_review(raw_budget()),
            0,
            "",
            id="a budget in another namespace does not conflict",
        ),
        pytest.param(
            (SELECT_WEB,),
            budget_review(raw_budget(target=None, selector=WEB)),
            422,
            "pub.spec.selector is in conflict with other PodUnavailableBudget pub-web",
            id="overlapping selectors",
        ),
        pytest.param(
            (TARGET_DEPLOYMENT,),
            budget_review(
                raw_budget("pub-deploy", max_unavailable=1),
                old=raw_budget("pub-deploy"),
                operation=mesh_pb2.OPERATION_UPDATE,
            ),
            0,
            "",
            id="update of itself is no conflict",
        ),
        pytest.param(
            (TARGET_DEPLOYMENT,),
            budget_review(
                raw_budget("pub-deploy", target=("apps/v1", "Deployment", "other")),
                old=raw_budget("pub-deploy"),
                operation=mesh_pb2.OPERATION_UPDATE,
            ),
            422,
            "selector and targetRef cannot be modified",
            id="update changing the targetRef",
        ),
        pytest.param(
            (),
            budget_review(raw_budget(), operation=mesh_pb2.OPERATION_DELETE),
            0,
            "",
            id="DELETE is not validated",
        ),
        pytest.param(
            (), budget_review(None), 400, "carries no PodUnavailableBudget", id="no object"
        ),
    ],
)
def test_validate_podunavailablebudgets(existing, request_, code, message):
    cache, _ = world(*existing)
    verdict = decide_validation(request_, cache=cache)
    assert (verdict.allowed, verdict.code) == (code == 0, code)
    assert message in verdict.message


def test_validate_unreadable_review_is_refused_with_400():
    cache, _ = world()
    request_ = budget_review(raw_budget())
    request_.review_json = b"{not json"
    verdict = decide_validation(request_, cache=cache)
    assert (verdict.allowed, verdict.code) == (False, 400)
    assert "not valid JSON" in verdict.message


async def test_validate_handler_answers_422_with_the_field_errors():
    cache, finder = world()
    handler = handlers(cache=cache, finder=finder)["validate-podunavailablebudgets"]
    response = await handler(budget_review(raw_budget(max_unavailable=None)))
    assert (response.allowed, response.code, response.reason) == (False, 422, "Invalid")
    assert "no maxUnavailable or minAvailable defined" in response.message
