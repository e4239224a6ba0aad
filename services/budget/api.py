"""BudgetService: PodUnavailableBudget status and eviction plans, as the owning replica sees
them, and update authorizations for workload controllers.

Thin: each method checks its request, reads the replica cache, delegates to a pure module
(``services.budget.planning`` for ``PlanDisruption``) and converts the answer. A replica
answers only for the namespaces it owns on the gateway's hash ring; ``PlanDisruption``
marks the others ``NOT_OWNED`` with their owner, so a client can route by the same ring.

``AuthorizePodUpdate`` (SPEC 4.11) delegates to the pod webhook's path
(``PodWebhook.authorize_update``: the check and spend of an UPDATE review, committed by the
same ``BudgetCommitter``), so the webhook later admits the update without spending twice.
It answers for any namespace: for one this replica does not own it reads the pod and the
budget through the cluster API, and the status write's resourceVersion keeps the budget
from being spent twice whoever routed the call. The rollout service reaches it through the
gateway, which routes it to the owner. Answers:

    allowed, budget "" ........ no budget protects the pod
    allowed, budget "b" ....... budget b was consulted: one unit spent, or none needed
                                (already recorded, UPDATE not in pub-protect-operations,
                                the pod not running and ready, pub.kruise.io/no-protect)
    refused, budget, message .. the webhook's denial text, naming the budget and its numbers;
                                also when the status write lost every conflict retry
    INVALID_ARGUMENT .......... namespace or pod missing
    NOT_FOUND ................. no such pod
    FAILED_PRECONDITION ....... the pod has another uid than pod_uid (re-created)
    UNAVAILABLE ............... no snapshot yet, or the cluster API did not answer
    UNIMPLEMENTED ............. a replica built without the budget's pod webhook
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import grpc

from kruise.budget.v1 import budget_pb2, budget_pb2_grpc
from kruise.common.v1 import mesh_pb2, views_pb2
from services.budget.decision import Refuse, related_budget
from services.budget.planning import BudgetKey, Candidate, Plan, Verdict, plan_disruption
from services.budget.pod_webhook import PodWebhook, webhook_behind
from services.budget.status import unavailable_pods
from services.kit import errors
from services.kit.mesh import MeshServicer
from services.kit.ring import HashRing

POD = mesh_pb2.KIND_POD
PUB = mesh_pb2.KIND_POD_UNAVAILABLE_BUDGET
MAX_PLANNED_PODS = 10_000

VERDICTS: dict[Verdict, budget_pb2.PlanVerdict.ValueType] = {
    "NOW": budget_pb2.PLAN_VERDICT_NOW,
    "WAIT": budget_pb2.PLAN_VERDICT_WAIT,
    "GONE": budget_pb2.PLAN_VERDICT_GONE,
}


class BudgetApi(budget_pb2_grpc.BudgetServiceServicer):
    def __init__(self, mesh: MeshServicer, *, pods: PodWebhook | None = None) -> None:
        """``pods`` is the replica's pod webhook; None: the one behind the mesh's
        ``validate-pods`` handler (the budget feature's), looked up at each call."""
        self.mesh = mesh
        self._pods = pods

    @property
    def pods(self) -> PodWebhook | None:
        if self._pods is not None:
            return self._pods
        return webhook_behind(self.mesh.handlers.get("validate-pods"))

    async def GetBudget(
        self,
        request: budget_pb2.GetBudgetRequest,
        context: grpc.aio.ServicerContext[
            budget_pb2.GetBudgetRequest, budget_pb2.GetBudgetResponse
        ],
    ) -> budget_pb2.GetBudgetResponse:
        if not request.namespace or not request.name:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "namespace and name are required")
        view = self.mesh.cache.get(PUB, request.namespace, request.name)
        if view is None:
            await context.abort(
                grpc.StatusCode.NOT_FOUND,
                f"PodUnavailableBudget {request.namespace}/{request.name} not found",
            )
        pods = [
            pod
            for pod in self.mesh.cache.items(POD, request.namespace)
            if related_budget(pod) == request.name
        ]
        return budget_pb2.GetBudgetResponse(
            budget=view,
            unavailable=[
                budget_pb2.UnavailablePod(pod=u.pod, reason=u.reason, since_unix_ms=u.since_ms)
                for u in unavailable_pods(view, pods)
            ],
        )

    async def PlanDisruption(
        self,
        request: budget_pb2.PlanDisruptionRequest,
        context: grpc.aio.ServicerContext[
            budget_pb2.PlanDisruptionRequest, budget_pb2.PlanDisruptionResponse
        ],
    ) -> budget_pb2.PlanDisruptionResponse:
        problem = invalid_pods(request.pods)
        if problem:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, problem)
        if not self.mesh.synced:
            await context.abort(
                grpc.StatusCode.UNAVAILABLE,
                f"budget replica {self.mesh.replica} has no snapshot yet: it cannot plan",
            )
        owners = owners_of(request.pods, members=self.mesh.ring_members)
        owned = [ref for ref in request.pods if owned_by(owners[ref.namespace], self.mesh.replica)]
        candidates = [
            Candidate(ref.namespace, ref.name, self.mesh.cache.get(POD, ref.namespace, ref.name))
            for ref in owned
        ]
        plan = plan_disruption(
            pods=candidates,
            budgets=self._budgets(candidates),
            now_ms=time.time_ns() // 1_000_000,
        )
        return budget_pb2.PlanDisruptionResponse(
            entries=entries_of(request.pods, plan=plan, owners=owners, replica=self.mesh.replica),
            replica=self.mesh.replica,
        )

    async def AuthorizePodUpdate(
        self,
        request: budget_pb2.AuthorizePodUpdateRequest,
        context: grpc.aio.ServicerContext[
            budget_pb2.AuthorizePodUpdateRequest, budget_pb2.AuthorizePodUpdateResponse
        ],
    ) -> budget_pb2.AuthorizePodUpdateResponse:
        problem = invalid_update_request(request)
        if problem:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, problem)
        pods = self.pods
        if pods is None:
            await context.abort(
                grpc.StatusCode.UNIMPLEMENTED,
                f"budget replica {self.mesh.replica} runs without the budget's pod webhook",
            )
            raise AssertionError("unreachable")
        if not self.mesh.synced:
            await context.abort(
                grpc.StatusCode.UNAVAILABLE,
                f"budget replica {self.mesh.replica} has no snapshot yet: it cannot decide",
            )
        try:
            answer = await pods.authorize_update(
                namespace=request.namespace,
                name=request.pod,
                uid=request.pod_uid,
                requester=request.requester,
            )
        except errors.MeshError as e:
            await context.abort(e.code, str(e))
            raise AssertionError("unreachable") from e
        outcome = answer.outcome
        return budget_pb2.AuthorizePodUpdateResponse(
            allowed=outcome.allowed,
            budget=answer.budget,
            message=outcome.message if isinstance(outcome, Refuse) else "",
            replica=self.mesh.replica,
        )

    def _budgets(
        self, candidates: Sequence[Candidate]
    ) -> dict[BudgetKey, views_pb2.PodUnavailableBudgetView]:
        """The cached budgets the candidates' ``kruise.io/related-pub`` name."""
        found: dict[BudgetKey, views_pb2.PodUnavailableBudgetView] = {}
        for candidate in candidates:
            name = related_budget(candidate.pod) if candidate.pod is not None else ""
            key = (candidate.namespace, name)
            if name and key not in found:
                view = self.mesh.cache.get(PUB, candidate.namespace, name)
                if view is not None:
                    found[key] = view
        return found


def invalid_pods(pods: Sequence[budget_pb2.PodRef]) -> str:
    """What is wrong with a PlanDisruption request's pods, or "" when nothing is."""
    if not pods:
        return "pods is empty: name at least one pod (namespace and name) to plan"
    if len(pods) > MAX_PLANNED_PODS:
        return (
            f"pods has {len(pods)} entries, more than {MAX_PLANNED_PODS}: "
            "split the request into smaller ones"
        )
    for index, ref in enumerate(pods):
        if not ref.namespace:
            return f"pods[{index}] (name {ref.name!r}): namespace is required"
        if not ref.name:
            return f"pods[{index}] (namespace {ref.namespace!r}): name is required"
    return ""


def invalid_update_request(request: budget_pb2.AuthorizePodUpdateRequest) -> str:
    """What is wrong with an AuthorizePodUpdate request, or "" when nothing is."""
    missing = [
        field
        for field, value in (("namespace", request.namespace), ("pod", request.pod))
        if not value
    ]
    if not missing:
        return ""
    return (
        f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} required: "
        "name the pod to update by its namespace and name"
    )


def owners_of(pods: Sequence[budget_pb2.PodRef], *, members: Sequence[str]) -> dict[str, str]:
    """The replica owning each requested namespace; "" everywhere on an empty ring (all owned)."""
    ring = HashRing(members) if members else None
    owners: dict[str, str] = {}
    for ref in pods:
        if ref.namespace not in owners:
            owner = ring.owner(ref.namespace) if ring is not None else None
            owners[ref.namespace] = owner or ""
    return owners


def owned_by(owner: str, replica: str) -> bool:
    """Whether ``replica`` answers for a namespace ``owner`` owns ("" = empty ring: everyone)."""
    return not owner or owner == replica


def entries_of(
    pods: Sequence[budget_pb2.PodRef],
    *,
    plan: Plan,
    owners: dict[str, str],
    replica: str,
) -> list[budget_pb2.DisruptionEntry]:
    """One entry per requested pod: the plan's step for an owned pod, NOT_OWNED otherwise;
    each names ``replica`` as the one that answered.

    ``plan`` holds the owned pods' steps in request order; an empty owner means the ring is
    empty and every namespace is owned.
    """
    steps = iter(plan.steps)
    entries: list[budget_pb2.DisruptionEntry] = []
    for ref in pods:
        owner = owners[ref.namespace]
        if not owned_by(owner, replica):
            entries.append(
                budget_pb2.DisruptionEntry(
                    namespace=ref.namespace,
                    pod=ref.name,
                    verdict=budget_pb2.PLAN_VERDICT_NOT_OWNED,
                    reason=f"namespace {ref.namespace} belongs to budget replica {owner}",
                    owner=owner,
                    replica=replica,
                )
            )
            continue
        step = next(steps)
        entries.append(
            budget_pb2.DisruptionEntry(
                namespace=step.namespace,
                pod=step.pod,
                budget=step.budget,
                verdict=VERDICTS[step.verdict],
                order=step.order,
                reason=step.reason,
                spends_budget=step.spends,
                replica=replica,
            )
        )
    return entries


def register(mesh: MeshServicer, server: grpc.aio.Server) -> str:
    budget_pb2_grpc.add_BudgetServiceServicer_to_server(BudgetApi(mesh), server)
    return "kruise.budget.v1.BudgetService"
