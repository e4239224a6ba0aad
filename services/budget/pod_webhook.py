"""The budget's pod webhooks: ``validate-pods`` (UPDATE, DELETE) and ``validate-pod-eviction``.

Convert, delegate, answer: the review becomes the facts ``decision.decide`` needs (the pod
as a view, whether its spec changed, what became of its controller owner, the budget its
``kruise.io/related-pub`` names, dry-run, the time), the outcome becomes the answer, and an
admitted spend is committed by ``BudgetCommitter`` before the answer goes out.

Where the facts come from:
* DELETE: the pod is ``oldObject``; UPDATE: ``object`` (the new pod, as v1.2) and
  ``oldObject`` for the spec comparison; eviction: the pod named by the request, from the
  replica cache, else read through the cluster API (a pod created a moment ago may not
  have reached the cache yet). Dry-run is the request's ``dryRun`` or, for an eviction,
  ``deleteOptions.dryRun: [All]`` in the Eviction body (the API server does not set the
  request's flag for that one).
* The owner: ``WorkloadFinder.resolve`` with the owner's uid.
* The budget: the newest view the committer knows.

A review that cannot be read (a malformed Eviction, a pod that is not an object) is
refused with 400 and a message saying what is wrong.

``authorize_update`` is the same path for a workload controller's ask before it updates a
pod (SPEC 4.11, ``BudgetService.AuthorizePodUpdate`` in ``services.budget.api``): the pod by
name as for an eviction, the budget and the commit as for a review, the decision
``decision.authorize_update``. ``webhook_behind`` finds the replica's ``PodWebhook`` for
the servicer.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, cast

from prometheus_client import Counter

from kruise.common.v1 import mesh_pb2, views_pb2
from services.budget import decision
from services.budget.committer import BudgetCommitter
from services.budget.workloads import WorkloadFinder
from services.kit import admission, errors
from services.kit.admission import Verdict
from services.kit.cache import ObjectCache
from services.kit.cluster import ObjectReader, Ref
from services.kit.mesh import Handler
from services.kit.objects import controller_ref
from services.kit.projection import project_pod

log = logging.getLogger(__name__)

POD = mesh_pb2.KIND_POD

DECISIONS = Counter(
    "kruise_mesh_budget_decisions_total",
    "Pod reviews decided by the budget service, by action and outcome",
    ["action", "outcome"],
)

_OPERATIONS = cast(dict[int, decision.Operation], admission.OPERATION_NAMES)


def wall_clock_ms() -> int:
    return int(time.time() * 1000)


def eviction_dry_run(eviction: Mapping[str, Any]) -> bool:
    """``deleteOptions.dryRun`` contains ``All``. Raises ``BadReview`` for a malformed body.

    >>> eviction_dry_run({"deleteOptions": {"dryRun": ["All"]}}), eviction_dry_run({})
    (True, False)
    """
    options = eviction.get("deleteOptions")
    if options is None:
        return False
    if not isinstance(options, Mapping):
        raise admission.BadReview("Eviction deleteOptions must be an object")
    dry_run = options.get("dryRun")
    if dry_run is None:
        return False
    if not isinstance(dry_run, list) or not all(isinstance(v, str) for v in dry_run):
        raise admission.BadReview("Eviction deleteOptions.dryRun must be a list of strings")
    return "All" in dry_run


@dataclass(frozen=True, slots=True)
class UpdateAnswer:
    """``authorize_update``'s answer: the final outcome (after the commit, if it spent) and
    the budget consulted, "" when the pod's ``kruise.io/related-pub`` names none that exists."""

    outcome: decision.Outcome
    budget: str


class PodWebhook:
    def __init__(
        self,
        *,
        cache: ObjectCache,
        finder: WorkloadFinder,
        committer: BudgetCommitter,
        pods: ObjectReader,
        clock_ms: Callable[[], int] = wall_clock_ms,
        owns: Callable[[str], bool] = lambda namespace: True,
    ) -> None:
        self.owns = owns
        self.cache = cache
        self.finder = finder
        self.committer = committer
        self.pods = pods
        self.clock_ms = clock_ms

    async def review(self, request: mesh_pb2.AdmissionRequest) -> mesh_pb2.AdmissionResponse:
        outcome = await self.decide(request)
        action = decision.action_of(
            _OPERATIONS.get(request.operation, "CONNECT"), request.sub_resource
        )
        DECISIONS.labels(action or "none", "allowed" if outcome.allowed else "refused").inc()
        if isinstance(outcome, decision.Refuse):
            verdict: Verdict = admission.deny(
                outcome.message, code=outcome.code, reason=outcome.reason
            )
        else:
            verdict = admission.ALLOWED
        return admission.to_response(request, verdict)

    async def decide(self, request: mesh_pb2.AdmissionRequest) -> decision.Outcome:
        operation = _OPERATIONS.get(request.operation, "CONNECT")
        early = decision.prescreen(
            operation=operation, sub_resource=request.sub_resource, namespace=request.namespace
        )
        if early is not None:
            return early
        try:
            facts = await self._facts(request, operation)
        except admission.BadReview as e:
            return decision.Refuse(400, str(e), reason="BadRequest")
        if facts is None:
            return decision.Admit(reason="nothing to protect")
        pod, spec_changed, dry_run = facts
        owner = await self._owner(pod)
        budget, read = await self._budget_of(request.namespace, pod)
        outcome = decision.decide(
            operation=operation,
            sub_resource=request.sub_resource,
            namespace=request.namespace,
            dry_run=dry_run,
            pod=pod,
            spec_changed=spec_changed,
            owner=owner,
            budget=budget,
            now_ms=self.clock_ms(),
        )
        if isinstance(outcome, decision.Admit) and outcome.spend is not None:
            return await self.committer.commit(outcome.spend, read=read)
        return outcome

    async def authorize_update(
        self,
        *,
        namespace: str,
        name: str,
        uid: str = "",
        requester: str = "",
    ) -> UpdateAnswer:
        """May ``requester`` update pod ``namespace/name`` now? Spends one unit of its budget
        when it may and the pod is not recorded yet (SPEC 4.11: the check and spend of 4.7).

        ``uid``, when given, is the pod the requester decided on: a pod re-created under the
        same name is another pod. Raises ``errors.NotFound`` when the pod does not exist,
        ``errors.FailedPrecondition`` when it has another uid, and the cluster API's errors
        (``errors.Unavailable``, ...) when a read or the status write fails.
        """
        pod = await self._pod_to_update(namespace, name, uid)
        budget, read = await self._budget_of(namespace, pod)
        outcome = decision.authorize_update(
            namespace=namespace, pod=pod, budget=budget, now_ms=self.clock_ms()
        )
        if isinstance(outcome, decision.Admit) and outcome.spend is not None:
            outcome = await self.committer.commit(outcome.spend, read=read)
        answer = UpdateAnswer(
            outcome=outcome, budget=budget.meta.name if budget is not None else ""
        )
        DECISIONS.labels("update-request", "allowed" if outcome.allowed else "refused").inc()
        log.info(
            "pod update authorized" if outcome.allowed else "pod update refused",
            extra={
                "pod": f"{namespace}/{name}",
                "requester": requester,
                "budget": answer.budget,
                "why": outcome.message if isinstance(outcome, decision.Refuse) else outcome.reason,
            },
        )
        return answer

    async def _pod_to_update(self, namespace: str, name: str, uid: str) -> views_pb2.PodView:
        pod = self._cached_pod(namespace, name)
        if pod is None or (uid and pod.meta.uid != uid):
            # Not cached, or the cache may lag behind a re-creation the requester has seen.
            pod = await self._read_pod(namespace, name)
        if pod is None:
            raise errors.NotFound(f"pod {namespace}/{name} not found")
        if uid and pod.meta.uid != uid:
            raise errors.FailedPrecondition(
                f"pod {namespace}/{name} has uid {pod.meta.uid}, not {uid}: "
                "it was re-created under the same name; decide again on the new pod"
            )
        return pod

    async def _budget_of(
        self, namespace: str, pod: views_pb2.PodView | None
    ) -> tuple[
        views_pb2.PodUnavailableBudgetView | None, views_pb2.PodUnavailableBudgetView | None
    ]:
        """(the newest known view of the budget ``pod`` names, the view read from the API
        server for it); (None, None) when it names none."""
        related = decision.related_budget(pod) if pod is not None else ""
        if not related:
            return None, None
        read = None
        if not self.owns(namespace):
            # Not this replica's namespace (rebalancing, a gateway with another view):
            # its cache has nothing to go on, so read the budget from the API server.
            read = await self.committer.read(namespace, related)
        return self.committer.freshest(namespace, related, read=read), read

    async def _facts(
        self, request: mesh_pb2.AdmissionRequest, operation: decision.Operation
    ) -> tuple[views_pb2.PodView | None, bool, bool] | None:
        """(pod, spec changed, dry-run); None when the review carries nothing to decide on."""
        objects = admission.reviewed_objects(request)
        if operation == "DELETE":
            if objects.old_object is None:
                return None  # step 0: a DELETE without the pod
            return _pod(objects.old_object), False, request.dry_run
        if operation == "UPDATE":
            if objects.object is None or objects.old_object is None:
                raise admission.BadReview("a pod UPDATE review must carry object and oldObject")
            spec_changed = objects.object.get("spec") != objects.old_object.get("spec")
            return _pod(objects.object), spec_changed, request.dry_run
        # CREATE of pods/eviction (prescreen let nothing else through)
        eviction = objects.object
        if eviction is None:
            raise admission.BadReview("an eviction review must carry the Eviction")
        if eviction.get("kind") not in (None, "Eviction"):
            raise admission.BadReview(f"expected an Eviction, got kind {eviction.get('kind')!r}")
        dry_run = request.dry_run or eviction_dry_run(eviction)
        if not request.name:
            raise admission.BadReview("an eviction review must name the pod")
        return await self._pod_named(request.namespace, request.name), False, dry_run

    async def _pod_named(self, namespace: str, name: str) -> views_pb2.PodView | None:
        cached = self._cached_pod(namespace, name)
        if cached is not None:
            return cached
        return await self._read_pod(namespace, name)  # None: the API server answers its 404

    def _cached_pod(self, namespace: str, name: str) -> views_pb2.PodView | None:
        """The pod from the replica cache; None when not cached or not this replica's."""
        if not self.owns(namespace):
            return None
        cached: views_pb2.PodView | None = self.cache.get(POD, namespace, name)
        return cached

    async def _read_pod(self, namespace: str, name: str) -> views_pb2.PodView | None:
        """The pod as the API server has it now; None when it does not exist."""
        try:
            got = await self.pods.get(Ref("v1", "Pod", namespace, name))
        except errors.NotFound:
            return None
        return project_pod(got.object)

    async def _owner(self, pod: views_pb2.PodView | None) -> decision.OwnerCheck:
        if pod is None:
            return decision.OWNER_OK
        owner = controller_ref(pod.meta.owner_references)
        if owner is None:
            return decision.OWNER_OK
        try:
            found = await self.finder.resolve(
                pod.meta.namespace,
                api_version=owner.api_version,
                kind=owner.kind,
                name=owner.name,
                uid=owner.uid,
                from_cache=self.owns(pod.meta.namespace),
            )
        except errors.MeshError as e:
            return decision.OwnerCheck(
                error=f"cannot resolve {owner.kind} {owner.name}, the owner of the pod: {e}"
            )
        if found is None or found.deleting:
            return decision.OwnerCheck(gone=True)
        return decision.OWNER_OK


def _pod(obj: Mapping[str, Any]) -> views_pb2.PodView:
    if not isinstance(obj.get("metadata"), Mapping):
        raise admission.BadReview("the pod in the review has no metadata")
    return project_pod(obj)


def webhook_behind(handler: Handler | None) -> PodWebhook | None:
    """The ``PodWebhook`` whose ``review`` is ``handler`` (the replica's ``validate-pods``
    handler), or None when there is none (a replica built without the budget feature).

    How ``services.budget.api`` reaches the feature's webhook: servicers registered beside
    the feature (``ServiceSpec.extra``) are given the replica's ``MeshServicer`` only, whose
    ``handlers`` hold ``BudgetFeature``'s bound ``PodWebhook.review``.
    """
    owner = getattr(handler, "__self__", None)
    return owner if isinstance(owner, PodWebhook) else None
