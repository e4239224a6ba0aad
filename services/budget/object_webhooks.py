"""The budget service's object admission handlers: convert, delegate to the pure modules, answer.

* ``mutate-pods`` (pod CREATE, SPEC 4.4): a pod whose controller owner resolves to a
  workload gets ``kruise.io/related-pub: <budget>`` naming the first budget of its
  namespace (by name) that targets that workload (group, kind and name; a pod of a
  ReplicaSet owned by a Deployment resolves to the Deployment) or whose non-empty
  selector matches the pod's labels. The pod webhook then finds the budget with one
  lookup by name. Skipped, unchanged: a subresource, an operation other than CREATE, a
  resource other than pods, no controller owner, an owner that does not resolve, no
  matching budget, the annotation already naming that budget. A failed resolution of a
  custom kind (``/scale`` unreachable) admits the pod unchanged with a warning log: a
  missing link never fails a pod's creation, and the status loop back-fills it later.
* ``validate-podunavailablebudgets`` (CREATE/UPDATE): SPEC 4.8 through
  ``services.budget.validation``, against the other budgets of the namespace in the
  replica cache; refused with HTTP 422 and the field errors (OpenKruise answers 400;
  both refuse).

An unreadable review is refused with 400 and says why; nothing here raises into the mesh
stream.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from prometheus_client import Counter

from kruise.common.v1 import mesh_pb2, views_pb2
from services.budget.decision import RELATED_PUB
from services.budget.status import selector_matches
from services.budget.validation import denial_message, validate_pod_unavailable_budget
from services.budget.workloads import CACHED_KINDS, Workload, WorkloadFinder
from services.kit import admission, errors
from services.kit.admission import JsonPatch, Verdict
from services.kit.cache import ObjectCache
from services.kit.mesh import Handler
from services.kit.objects import controller_owner, group_of

__all__ = [
    "decide_related_pub",
    "decide_validation",
    "first_related_budget",
    "handlers",
    "related_pub_patch",
]

log = logging.getLogger(__name__)

PUB = mesh_pb2.KIND_POD_UNAVAILABLE_BUDGET

LINKS = Counter(
    "kruise_mesh_budget_related_pub_total",
    "Pod CREATE reviews answered by budget, by outcome",
    ["outcome"],
)
VALIDATIONS = Counter(
    "kruise_mesh_budget_validations_total",
    "PodUnavailableBudget CREATE/UPDATE reviews, by result",
    ["result"],
)


def first_related_budget(
    budgets: Iterable[views_pb2.PodUnavailableBudgetView],
    *,
    workload: Workload,
    labels: Mapping[str, str],
) -> str | None:
    """The name of the first budget (by name) protecting a pod of ``workload`` with ``labels``.

    Pure. A budget with a targetRef matches when the reference is ``workload`` (group,
    kind and name; the version is ignored) and is never matched by its selector (targetRef
    wins); otherwise a non-empty selector must match the labels. OpenKruise
    ``GetPubForPod``.
    """
    for budget in sorted(budgets, key=lambda b: b.meta.name):
        if budget.HasField("target_ref"):
            ref = budget.target_ref
            if workload.same_as(api_version=ref.api_version, kind=ref.kind, name=ref.name):
                return budget.meta.name
        elif budget.HasField("selector") and selector_matches(budget.selector, labels):
            return budget.meta.name
    return None


def related_pub_patch(pod: Mapping[str, Any], budget: str) -> JsonPatch:
    """The JSONPatch that makes ``pod`` name ``budget``; empty when it already does. Pure.

    >>> related_pub_patch({"metadata": {}}, "web")
    [{'op': 'add', 'path': '/metadata/annotations', 'value': {'kruise.io/related-pub': 'web'}}]
    >>> related_pub_patch({"metadata": {"annotations": {"kruise.io/related-pub": "web"}}}, "web")
    []
    """
    metadata = pod.get("metadata")
    if not isinstance(metadata, Mapping):
        return [{"op": "add", "path": "/metadata", "value": {"annotations": {RELATED_PUB: budget}}}]
    annotations = metadata.get("annotations")
    if not isinstance(annotations, Mapping):
        return [
            {
                "op": "add",
                "path": admission.pointer("metadata", "annotations"),
                "value": {RELATED_PUB: budget},
            }
        ]
    if annotations.get(RELATED_PUB) == budget:
        return []
    return [
        {
            "op": "add",
            "path": admission.pointer("metadata", "annotations", RELATED_PUB),
            "value": budget,
        }
    ]


def _labels(pod: Mapping[str, Any]) -> dict[str, str]:
    metadata = pod.get("metadata")
    raw = metadata.get("labels") if isinstance(metadata, Mapping) else None
    if not isinstance(raw, Mapping):
        return {}
    return {k: v for k, v in raw.items() if isinstance(k, str) and isinstance(v, str)}


async def _resolve_owner(
    finder: WorkloadFinder, namespace: str, owner: Mapping[str, Any]
) -> Workload | None:
    """The owner's workload (uid not checked, as OpenKruise); raises ``errors.MeshError``."""
    api_version, kind, name = owner.get("apiVersion"), owner.get("kind"), owner.get("name")
    if not (isinstance(api_version, str) and isinstance(kind, str) and isinstance(name, str)):
        return None
    if (group_of(api_version), kind) in CACHED_KINDS:
        return finder.cached(namespace, api_version=api_version, kind=kind, name=name)
    return await finder.resolve(namespace, api_version=api_version, kind=kind, name=name)


async def decide_related_pub(
    request: mesh_pb2.AdmissionRequest,
    *,
    cache: ObjectCache,
    finder: WorkloadFinder,
) -> tuple[Verdict, str]:
    """The verdict for a pod review and a one-word outcome for the metric.

    Reads the replica cache; reads a custom owner's ``/scale`` through ``finder`` (cached
    for a few seconds). Never denies a readable review.
    """
    try:
        pod = admission.created_pod(request)
    except admission.BadReview as e:
        return admission.bad_request(str(e)), "bad-review"
    if pod is None:
        return admission.ALLOWED, "skipped"
    owner = controller_owner(pod)
    if owner is None:
        return admission.ALLOWED, "not-owned"
    metadata = pod.get("metadata")
    namespace = request.namespace
    if not namespace and isinstance(metadata, Mapping):
        namespace = str(metadata.get("namespace") or "")
    try:
        workload = await _resolve_owner(finder, namespace, owner)
    except errors.MeshError as e:
        log.warning(
            "pod owner not resolved; created without a budget link",
            extra={
                "namespace": namespace,
                "pod": request.name,
                "owner": f"{owner.get('apiVersion')} {owner.get('kind')} {owner.get('name')}",
                "error": str(e),
            },
        )
        return admission.ALLOWED, "unresolved"
    if workload is None:
        return admission.ALLOWED, "owner-not-found"
    budget = first_related_budget(
        cache.items(PUB, namespace), workload=workload, labels=_labels(pod)
    )
    if budget is None:
        return admission.ALLOWED, "no-budget"
    patch = related_pub_patch(pod, budget)
    if not patch:
        return admission.ALLOWED, "already-linked"
    return admission.allow(patch=patch), "linked"


def decide_validation(request: mesh_pb2.AdmissionRequest, *, cache: ObjectCache) -> Verdict:
    """The verdict for a PodUnavailableBudget CREATE/UPDATE review; reads the replica cache."""
    if request.operation not in (mesh_pb2.OPERATION_CREATE, mesh_pb2.OPERATION_UPDATE):
        return admission.ALLOWED
    try:
        objects = admission.reviewed_objects(request)
    except admission.BadReview as e:
        return admission.bad_request(str(e))
    if objects.object is None:
        return admission.bad_request("the review carries no PodUnavailableBudget")
    siblings = [b for b in cache.items(PUB, request.namespace) if b.meta.name != request.name]
    found = validate_pod_unavailable_budget(
        obj=objects.object,
        old=objects.old_object if request.operation == mesh_pb2.OPERATION_UPDATE else None,
        siblings=siblings,
    )
    if found:
        return admission.invalid(denial_message(found))
    return admission.ALLOWED


def handlers(*, cache: ObjectCache, finder: WorkloadFinder) -> Mapping[str, Handler]:
    """``mutate-pods`` and ``validate-podunavailablebudgets`` over the replica's cache."""

    async def mutate_pods(request: mesh_pb2.AdmissionRequest) -> mesh_pb2.AdmissionResponse:
        verdict, outcome = await decide_related_pub(request, cache=cache, finder=finder)
        LINKS.labels(outcome).inc()
        return admission.to_response(request, verdict)

    async def validate_podunavailablebudgets(
        request: mesh_pb2.AdmissionRequest,
    ) -> mesh_pb2.AdmissionResponse:
        verdict = decide_validation(request, cache=cache)
        VALIDATIONS.labels("admitted" if verdict.allowed else f"refused-{verdict.code}").inc()
        return admission.to_response(request, verdict)

    return {
        "mutate-pods": mutate_pods,
        "validate-podunavailablebudgets": validate_podunavailablebudgets,
    }
