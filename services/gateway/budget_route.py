"""``kruise.budget.v1.BudgetService`` on the gateway's gRPC port, routed to the budget replicas.

The rollout service does not know the budget's ring; it asks the gateway, as it does for
cluster writes, and the gateway passes each call to the budget replica that owns the
request's namespace (``Router.owner``):

    rollout replica ──AuthorizePodUpdate──▶ gateway :7000 ──▶ budget replica owning ns
                                            (BudgetRoute)     (services.budget.api)

Forwarded through a ``relay.Relay`` (the admission forwarder's channel to each replica):
``AuthorizePodUpdate`` and ``GetBudget``, each by ``request.namespace``. ``PlanDisruption``
names pods of many namespaces, so of many replicas: the gateway groups the pods by owning
replica, asks every owner at once, and puts the entries back in request order, each naming
the replica that answered it (``DisruptionEntry.replica``; ``order`` counts per replica).
A replica whose ring differs from the gateway's answers ``NOT_OWNED`` naming the owner it
sees; when that owner is a budget replica the gateway knows, it is asked once in turn.

No feature logic: requests and answers travel unchanged, and so do the replica's status
codes, messages and rich details (``relay``). The gateway's own answers: no budget replica
→ UNAVAILABLE, naming the namespace; a replica that cannot be reached or does not answer in
time → UNAVAILABLE / DEADLINE_EXCEEDED, naming the replica. For ``PlanDisruption`` it also
refuses, with the replica's own words, what it could not split faithfully: no pods, more
than ``MAX_PLANNED_PODS``, or a pod without a namespace (it routes by it) or a name (the
replica's message would number the pod within its share, not within the request). The first
failing replica (in request order) fails the whole plan. The caller's deadline is passed on
(``relay.DEFAULT_TIMEOUT_S`` when it set none).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import grpc
from prometheus_client import Counter

from kruise.budget.v1 import budget_pb2, budget_pb2_grpc
from services.gateway.relay import Relay, RelayError, abort, unary_timeout
from services.gateway.routing import Router
from services.gateway.webhook.forward import AdmissionForwarder

if TYPE_CHECKING:
    from kruise.budget.v1.budget_pb2_grpc import BudgetServiceAsyncStub as Stub

SERVICE = "budget"
SERVICE_NAME = budget_pb2.DESCRIPTOR.services_by_name["BudgetService"].full_name
# BudgetService.PlanDisruption takes at most this many pods (budget.proto).
MAX_PLANNED_PODS = 10_000

CALLS = Counter(
    "kruise_mesh_gateway_budget_route_calls_total",
    "BudgetService calls forwarded to a budget replica, by method and gRPC status code.",
    ["method", "code"],
)

Context = grpc.aio.ServicerContext[Any, Any]


def _stub(channel: grpc.aio.Channel) -> Stub:
    return budget_pb2_grpc.BudgetServiceStub(channel)


def unsplittable(pods: Sequence[budget_pb2.PodRef]) -> str:
    """What keeps a PlanDisruption request from being split by namespace, or "" (the words
    of ``services.budget.api.invalid_pods``, which the gateway may not import)."""
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


class BudgetRoute(budget_pb2_grpc.BudgetServiceServicer):
    """Forwards BudgetService calls to the budget replica that owns their namespace."""

    def __init__(self, *, router: Router, links: AdmissionForwarder) -> None:
        self.relay: Relay[Stub] = Relay(
            service=SERVICE, router=router, links=links, stub=_stub, calls=CALLS
        )

    async def AuthorizePodUpdate(
        self, request: budget_pb2.AuthorizePodUpdateRequest, context: Context
    ) -> budget_pb2.AuthorizePodUpdateResponse:
        return await self.relay.unary(
            "AuthorizePodUpdate",
            request.namespace,
            lambda stub, timeout: stub.AuthorizePodUpdate(request, timeout=timeout),
            context,
        )

    async def GetBudget(
        self, request: budget_pb2.GetBudgetRequest, context: Context
    ) -> budget_pb2.GetBudgetResponse:
        return await self.relay.unary(
            "GetBudget",
            request.namespace,
            lambda stub, timeout: stub.GetBudget(request, timeout=timeout),
            context,
        )

    async def PlanDisruption(
        self, request: budget_pb2.PlanDisruptionRequest, context: Context
    ) -> budget_pb2.PlanDisruptionResponse:
        method = "PlanDisruption"
        problem = unsplittable(request.pods)
        if problem:
            self.relay.count(method, grpc.StatusCode.INVALID_ARGUMENT)
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, problem)
        deadline = time.monotonic() + unary_timeout(context)
        try:
            owners = {i: self.relay.owner(ref.namespace) for i, ref in enumerate(request.pods)}
            entries = await self._plan(request.pods, owners, deadline=deadline)
            # A replica that sees another owner names it: ask that one once in turn.
            members = set(self.relay.router.ring(SERVICE).members)
            again = {
                i: e.owner
                for i, e in entries.items()
                if e.verdict == budget_pb2.PLAN_VERDICT_NOT_OWNED
                and e.owner in members
                and e.owner != owners[i]
            }
            if again:
                entries.update(await self._plan(request.pods, again, deadline=deadline))
        except RelayError as e:
            self.relay.count(method, e.code)
            await abort(context, e)
            raise AssertionError("unreachable") from e
        self.relay.count(method, grpc.StatusCode.OK)
        answered = {e.replica for e in entries.values()}
        return budget_pb2.PlanDisruptionResponse(
            entries=[entries[i] for i in range(len(request.pods))],
            replica=answered.pop() if len(answered) == 1 else "",
        )

    async def _plan(
        self,
        pods: Sequence[budget_pb2.PodRef],
        owners: dict[int, str],
        *,
        deadline: float,
    ) -> dict[int, budget_pb2.DisruptionEntry]:
        """The entries for the pods at ``owners``' indices, each asked of its owner (all
        owners at once), by index; the failure of the earliest failing pod's owner raised."""
        shares: dict[str, list[int]] = {}
        for index, address in owners.items():
            shares.setdefault(address, []).append(index)
        timeout = max(deadline - time.monotonic(), 0.0)

        async def ask(address: str, indices: list[int]) -> budget_pb2.PlanDisruptionResponse:
            share = budget_pb2.PlanDisruptionRequest(pods=[pods[i] for i in indices])
            namespace = pods[indices[0]].namespace
            return await self.relay.send(
                address, namespace, lambda stub: stub.PlanDisruption(share, timeout=timeout)
            )

        answers = await asyncio.gather(
            *(ask(a, indices) for a, indices in shares.items()), return_exceptions=True
        )
        failures: list[tuple[int, BaseException]] = []
        entries: dict[int, budget_pb2.DisruptionEntry] = {}
        for (address, indices), answer in zip(shares.items(), answers, strict=True):
            if isinstance(answer, BaseException):
                failures.append((indices[0], answer))
                continue
            if len(answer.entries) != len(indices):
                failures.append(
                    (
                        indices[0],
                        RelayError(
                            grpc.StatusCode.INTERNAL,
                            f"budget replica {address} answered {len(answer.entries)} "
                            f"entries for {len(indices)} pods",
                        ),
                    )
                )
                continue
            for index, entry in zip(indices, answer.entries, strict=True):
                # A replica from before DisruptionEntry.replica: the address asked.
                entry.replica = entry.replica or answer.replica or address
                entries[index] = entry
        if failures:
            raise min(failures, key=lambda f: f[0])[1]
        return entries


def add_to_server(server: grpc.aio.Server, servicer: BudgetRoute) -> None:
    """Register ``servicer`` on ``server`` (for ``kit.rpc.create_server(register=[...])``)."""
    budget_pb2_grpc.add_BudgetServiceServicer_to_server(servicer, server)
