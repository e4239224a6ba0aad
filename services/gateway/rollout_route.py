"""``kruise.rollout.v1.RolloutService`` on the gateway's API port, routed to the rollout replicas.

Rollout tools reach one address, the gateway's API port (Service ``kruise-mesh-rollout-api``):
every gateway replica keeps the rings, so every one can route every namespace, and the
gateway passes each call to the rollout replica that owns ``request.ref.namespace``:

    tool ──GetRolloutStatus / CheckBatch / ...──▶ gateway :7070 ──▶ rollout replica owning ns
    curl, Argo ``web`` metric ──HTTP/JSON──────▶ gateway :8080 ─┘   (services.rollout.api)
                                                 (rollout_http)

Unary (``GetRolloutStatus``, ``SetPartition``, ``CheckBatch``, ``Release``): the replica's
answer, with the caller's deadline passed on (``relay.DEFAULT_TIMEOUT_S`` without one).
``WatchRolloutStatus``: every message of the replica's stream as it comes, then the replica's
end: a clean end ends the caller's stream, an error ends it with the same status and details
(``ABORTED`` ``RESOURCE_VERSION_EXPIRED`` included: the client gets again, as after a 410).
A watch has no deadline unless the caller set one. When the replica goes away the caller's
stream ends UNAVAILABLE naming it, and the caller resumes from its last version.

No feature logic: requests and answers travel unchanged, and so do the replica's status codes,
messages and rich details (``relay``). The one check the gateway makes is the one it routes
by: a missing ``ref.namespace`` is INVALID_ARGUMENT "ref.namespace is required", with the
contract's details (ErrorInfo ``INVALID_REQUEST``, a BadRequest naming ``ref.namespace``).
Its other own answers: no rollout replica → UNAVAILABLE naming the namespace; a replica out of
reach → UNAVAILABLE / DEADLINE_EXCEEDED naming the replica.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import grpc
from prometheus_client import Counter

from kruise.rollout.v1 import rollout_pb2, rollout_pb2_grpc
from services.gateway.relay import Relay, RelayError, abort
from services.gateway.routing import Router
from services.gateway.webhook.forward import AdmissionForwarder
from services.kit import rich

if TYPE_CHECKING:
    from kruise.rollout.v1.rollout_pb2_grpc import RolloutServiceAsyncStub as Stub

SERVICE = "rollout"
SERVICE_NAME = rollout_pb2.DESCRIPTOR.services_by_name["RolloutService"].full_name
# The ErrorInfo domain of the rollout API (rollout.proto).
ERROR_DOMAIN = "rollout.kruise-mesh.io"
NAMESPACE_REQUIRED = "ref.namespace is required"

CALLS = Counter(
    "kruise_mesh_gateway_rollout_route_calls_total",
    "RolloutService calls forwarded to a rollout replica (gRPC and HTTP/JSON), by method and "
    "gRPC status code.",
    ["method", "code"],
)

Context = grpc.aio.ServicerContext[Any, Any]


def _stub(channel: grpc.aio.Channel) -> Stub:
    return rollout_pb2_grpc.RolloutServiceStub(channel)


def invalid_argument(field: str, message: str) -> RelayError:
    """INVALID_ARGUMENT with the rollout API's details: ErrorInfo INVALID_REQUEST and a
    BadRequest naming ``field``."""
    status = rich.status_of(
        rich.Problem(
            grpc.StatusCode.INVALID_ARGUMENT,
            message,
            reason="INVALID_REQUEST",
            domain=ERROR_DOMAIN,
            field=field,
        )
    )
    return RelayError(
        grpc.StatusCode.INVALID_ARGUMENT, message, trailing_metadata=status.trailing_metadata
    )


class RolloutRoute(rollout_pb2_grpc.RolloutServiceServicer):
    """Forwards RolloutService calls to the rollout replica that owns their namespace.

    ``relay`` is shared with the HTTP/JSON front (``rollout_http``), so both reach the
    replica the same way and count in the same ``CALLS``.
    """

    def __init__(self, *, router: Router, links: AdmissionForwarder) -> None:
        self.relay: Relay[Stub] = Relay(
            service=SERVICE, router=router, links=links, stub=_stub, calls=CALLS
        )

    async def _namespace(self, method: str, ref: rollout_pb2.WorkloadRef, context: Context) -> str:
        """``ref.namespace``; the caller's call ended INVALID_ARGUMENT when it is empty."""
        if not ref.namespace:
            self.relay.count(method, grpc.StatusCode.INVALID_ARGUMENT)
            await abort(context, invalid_argument("ref.namespace", NAMESPACE_REQUIRED))
        return ref.namespace

    async def GetRolloutStatus(
        self, request: rollout_pb2.GetRolloutStatusRequest, context: Context
    ) -> rollout_pb2.GetRolloutStatusResponse:
        method = "GetRolloutStatus"
        return await self.relay.unary(
            method,
            await self._namespace(method, request.ref, context),
            lambda stub, timeout: stub.GetRolloutStatus(request, timeout=timeout),
            context,
        )

    async def SetPartition(
        self, request: rollout_pb2.SetPartitionRequest, context: Context
    ) -> rollout_pb2.SetPartitionResponse:
        method = "SetPartition"
        return await self.relay.unary(
            method,
            await self._namespace(method, request.ref, context),
            lambda stub, timeout: stub.SetPartition(request, timeout=timeout),
            context,
        )

    async def CheckBatch(
        self, request: rollout_pb2.CheckBatchRequest, context: Context
    ) -> rollout_pb2.CheckBatchResponse:
        method = "CheckBatch"
        return await self.relay.unary(
            method,
            await self._namespace(method, request.ref, context),
            lambda stub, timeout: stub.CheckBatch(request, timeout=timeout),
            context,
        )

    async def Release(
        self, request: rollout_pb2.ReleaseRequest, context: Context
    ) -> rollout_pb2.ReleaseResponse:
        method = "Release"
        return await self.relay.unary(
            method,
            await self._namespace(method, request.ref, context),
            lambda stub, timeout: stub.Release(request, timeout=timeout),
            context,
        )

    async def WatchRolloutStatus(
        self, request: rollout_pb2.WatchRolloutStatusRequest, context: Context
    ) -> AsyncIterator[rollout_pb2.WatchRolloutStatusResponse]:
        method = "WatchRolloutStatus"
        namespace = await self._namespace(method, request.ref, context)
        async for message in self.relay.stream(
            method,
            namespace,
            lambda stub, timeout: stub.WatchRolloutStatus(request, timeout=timeout),
            context,
        ):
            yield message


def add_to_server(server: grpc.aio.Server, servicer: RolloutRoute) -> None:
    """Register ``servicer`` on ``server`` (for ``kit.rpc.create_server(register=[...])``)."""
    rollout_pb2_grpc.add_RolloutServiceServicer_to_server(servicer, server)
