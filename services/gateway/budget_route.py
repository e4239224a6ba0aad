"""``kruise.budget.v1.BudgetService`` on the gateway's gRPC port, routed to the budget replicas.

The rollout service does not know the budget's ring; it asks the gateway, as it does for
cluster writes, and the gateway passes each call to the budget replica that owns the
request's namespace (``Router.owner``):

    rollout replica ──AuthorizePodUpdate──▶ gateway :7000 ──▶ budget replica owning ns
                                            (BudgetRoute)     (services.budget.api)

Forwarded: ``AuthorizePodUpdate`` and ``GetBudget``, each by ``request.namespace``, over
the channel the admission forwarder already holds to that replica
(``AdmissionForwarder.link``), so the gateway keeps one connection per replica. Not
forwarded: ``PlanDisruption``, whose pods span namespaces and so replicas; a tool asks
each budget replica directly (``python -m services.cli drain-plan``).

No feature logic: the request and the answer travel unchanged, and so do the replica's
status codes and messages. The gateway's own answers: no budget replica → UNAVAILABLE,
naming the namespace; a replica that cannot be reached or does not answer in time →
UNAVAILABLE / DEADLINE_EXCEEDED, naming the replica. The caller's deadline is passed on
(``DEFAULT_TIMEOUT_S`` when it set none).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import grpc
from prometheus_client import Counter

from kruise.budget.v1 import budget_pb2, budget_pb2_grpc
from services.gateway.routing import Router
from services.gateway.webhook.forward import AdmissionForwarder, ReplicaLink

if TYPE_CHECKING:
    from kruise.budget.v1.budget_pb2_grpc import BudgetServiceAsyncStub as Stub

SERVICE = "budget"
SERVICE_NAME = budget_pb2.DESCRIPTOR.services_by_name["BudgetService"].full_name
DEFAULT_TIMEOUT_S = 10.0

CALLS = Counter(
    "kruise_mesh_gateway_budget_route_calls_total",
    "BudgetService calls forwarded to a budget replica, by method and gRPC status code.",
    ["method", "code"],
)

Reply = TypeVar("Reply")
Context = grpc.aio.ServicerContext[Any, Any]


def _timeout(context: Context) -> float:
    """The caller's time left, passed on to the replica; ``DEFAULT_TIMEOUT_S`` without one."""
    remaining = context.time_remaining()
    return DEFAULT_TIMEOUT_S if remaining is None else max(remaining, 0.0)


class BudgetRoute(budget_pb2_grpc.BudgetServiceServicer):
    """Forwards BudgetService calls to the budget replica that owns their namespace."""

    def __init__(self, *, router: Router, links: AdmissionForwarder) -> None:
        self.router = router
        self.links = links
        self._stubs: dict[str, tuple[ReplicaLink, Stub]] = {}

    async def AuthorizePodUpdate(
        self, request: budget_pb2.AuthorizePodUpdateRequest, context: Context
    ) -> budget_pb2.AuthorizePodUpdateResponse:
        method, namespace = "AuthorizePodUpdate", request.namespace
        address, stub = await self._owner(method, namespace, context)
        timeout = _timeout(context)
        return await self._relay(
            method,
            address,
            namespace,
            lambda: stub.AuthorizePodUpdate(request, timeout=timeout),
            context,
        )

    async def GetBudget(
        self, request: budget_pb2.GetBudgetRequest, context: Context
    ) -> budget_pb2.GetBudgetResponse:
        method, namespace = "GetBudget", request.namespace
        address, stub = await self._owner(method, namespace, context)
        timeout = _timeout(context)
        return await self._relay(
            method,
            address,
            namespace,
            lambda: stub.GetBudget(request, timeout=timeout),
            context,
        )

    async def PlanDisruption(
        self, request: budget_pb2.PlanDisruptionRequest, context: Context
    ) -> budget_pb2.PlanDisruptionResponse:
        CALLS.labels("PlanDisruption", grpc.StatusCode.UNIMPLEMENTED.name).inc()
        await context.abort(
            grpc.StatusCode.UNIMPLEMENTED,
            "the gateway does not route PlanDisruption: its pods span namespaces, so budget "
            "replicas; ask each budget replica directly (python -m services.cli drain-plan does)",
        )
        raise AssertionError("unreachable")

    async def _owner(self, method: str, namespace: str, context: Context) -> tuple[str, Stub]:
        """The owning replica's address and a stub to it; UNAVAILABLE when there is none."""
        address = self.router.owner(SERVICE, namespace)
        if address is None:
            CALLS.labels(method, grpc.StatusCode.UNAVAILABLE.name).inc()
            await context.abort(
                grpc.StatusCode.UNAVAILABLE,
                f"no budget replica is available for namespace {namespace or '<none>'}",
            )
            raise AssertionError("unreachable")
        return address, self._stub(address)

    async def _relay(
        self,
        method: str,
        address: str,
        namespace: str,
        send: Callable[[], Awaitable[Reply]],
        context: Context,
    ) -> Reply:
        """The replica's answer to the call ``send`` makes, or its status code and message,
        unchanged."""
        try:
            reply = await send()
        except grpc.aio.AioRpcError as e:
            code, details = e.code(), e.details() or ""
            if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                # Say which replica: the caller only knows the gateway.
                details = f"budget replica {address} (namespace {namespace}): {details}"
            CALLS.labels(method, code.name).inc()
            await context.abort(code, details)
            raise AssertionError("unreachable") from e
        except grpc.aio.UsageError as e:  # the link was closed under the call (gateway stop)
            CALLS.labels(method, grpc.StatusCode.UNAVAILABLE.name).inc()
            await context.abort(
                grpc.StatusCode.UNAVAILABLE, f"budget replica {address}: link closed ({e})"
            )
            raise AssertionError("unreachable") from e
        CALLS.labels(method, grpc.StatusCode.OK.name).inc()
        return reply

    def _stub(self, address: str) -> Stub:
        """A stub over the admission forwarder's channel to ``address`` (made again when the
        forwarder replaced that link)."""
        link = self.links.link(address)
        cached = self._stubs.get(address)
        if cached is not None and cached[0] is link:
            return cached[1]
        # ReplicaLink keeps its channel private; the hop shares it rather than opening one
        # more connection per replica.
        stub: Stub = budget_pb2_grpc.BudgetServiceStub(link._channel)
        self._stubs[address] = (link, stub)
        return stub


def add_to_server(server: grpc.aio.Server, servicer: BudgetRoute) -> None:
    """Register ``servicer`` on ``server`` (for ``kit.rpc.create_server(register=[...])``)."""
    budget_pb2_grpc.add_BudgetServiceServicer_to_server(servicer, server)
