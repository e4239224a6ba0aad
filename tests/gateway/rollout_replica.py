"""A scripted RolloutService standing in for a rollout replica, and the gateway's rollout route
in front of two of them: the far end of the gateway's relay, not the thing under test.

    async with RolloutMesh.start() as mesh:
        mesh.owned_by(mesh.replicas[0])      # a namespace replica 0 owns on the ring
        await mesh.stub.GetRolloutStatus(...)

Each ``FakeRollout`` records the requests it got with the deadline it saw, answers with its
own address in ``summary`` (so a test sees who answered), and fails when told to: ``fail``
with a plain status, or with google.rpc details (ErrorInfo and a BadRequest or
PreconditionFailure) as the real replica sends them. Its watch sends ``events`` and then ends
as ``watch_end`` says (OK when None), or waits for the caller to go (``watch_forever``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from kruise.rollout.v1 import rollout_pb2, rollout_pb2_grpc
from services.gateway import rollout_route
from services.gateway.routing import Router
from services.gateway.webhook.forward import AdmissionForwarder
from services.kit.rpc import Server, create_server

DOMAIN = "rollout.kruise-mesh.io"


def rich_status(
    code: grpc.StatusCode, message: str, *, reason: str, field: str = ""
) -> status_pb2.Status:
    """A google.rpc.Status as the rollout replica sends it: ErrorInfo ``reason``, and a
    BadRequest (INVALID_ARGUMENT) or PreconditionFailure (otherwise) naming ``field``."""
    info = any_pb2.Any()
    info.Pack(error_details_pb2.ErrorInfo(reason=reason, domain=DOMAIN, metadata={"field": field}))
    violation = any_pb2.Any()
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        violation.Pack(
            error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(field=field, description=message)
                ]
            )
        )
    else:
        violation.Pack(
            error_details_pb2.PreconditionFailure(
                violations=[
                    error_details_pb2.PreconditionFailure.Violation(
                        type=reason, subject=field, description=message
                    )
                ]
            )
        )
    return status_pb2.Status(
        code=getattr(code_pb2, code.name), message=message, details=[info, violation]
    )


@dataclass
class Failure:
    code: grpc.StatusCode
    message: str
    rich: status_pb2.Status | None = None

    async def abort(self, context: Any) -> None:
        if self.rich is None:
            await context.abort(self.code, self.message)
        status = rpc_status.to_status(self.rich)
        await context.abort(status.code, status.details, status.trailing_metadata)


def status_of(request: Any, address: str) -> rollout_pb2.RolloutStatus:
    return rollout_pb2.RolloutStatus(
        ref=request.ref, resource_version="41", summary=f"served by {address}"
    )


@dataclass
class FakeRollout(rollout_pb2_grpc.RolloutServiceServicer):
    address: str = ""
    got: list[tuple[str, Any]] = field(default_factory=list)
    deadlines: list[float | None] = field(default_factory=list)
    fail: Failure | None = None
    delay: float = 0.0
    events: list[rollout_pb2.WatchRolloutStatusResponse] = field(default_factory=list)
    watch_end: Failure | None = None
    watch_forever: bool = False
    watch_gone: asyncio.Event = field(default_factory=asyncio.Event)

    async def _answer(self, method: str, request: Any, context: Any) -> None:
        self.got.append((method, request))
        self.deadlines.append(context.time_remaining())
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.fail is not None:
            await self.fail.abort(context)

    async def GetRolloutStatus(self, request: Any, context: Any) -> Any:
        await self._answer("GetRolloutStatus", request, context)
        return rollout_pb2.GetRolloutStatusResponse(status=status_of(request, self.address))

    async def SetPartition(self, request: Any, context: Any) -> Any:
        await self._answer("SetPartition", request, context)
        return rollout_pb2.SetPartitionResponse(
            status=status_of(request, self.address), applied=True, patch_json="{}"
        )

    async def CheckBatch(self, request: Any, context: Any) -> Any:
        await self._answer("CheckBatch", request, context)
        return rollout_pb2.CheckBatchResponse(
            ready=False,
            reason="waiting for 1 ready",
            desired_updated_replicas=0,
            status=status_of(request, self.address),
        )

    async def Release(self, request: Any, context: Any) -> Any:
        await self._answer("Release", request, context)
        return rollout_pb2.ReleaseResponse(status=status_of(request, self.address), applied=True)

    async def WatchRolloutStatus(self, request: Any, context: Any) -> AsyncIterator[Any]:
        await self._answer("WatchRolloutStatus", request, context)
        try:
            for event in self.events:
                yield event
            if self.watch_forever:
                await asyncio.Event().wait()
            if self.watch_end is not None:
                await self.watch_end.abort(context)
        finally:
            self.watch_gone.set()


async def start_fake(replica: FakeRollout) -> Server:
    server = await create_server(
        register=[lambda s: rollout_pb2_grpc.add_RolloutServiceServicer_to_server(replica, s)],
        service_names=[rollout_route.SERVICE_NAME],
    )
    replica.address = f"127.0.0.1:{server.port}"
    return server


@dataclass
class RolloutMesh:
    """Two fake rollout replicas on the ring, the gateway's route and its API server."""

    replicas: list[FakeRollout]
    servers: list[Server]
    router: Router
    forwarder: AdmissionForwarder
    route: rollout_route.RolloutRoute
    api: Server
    channel: grpc.aio.Channel

    @classmethod
    @contextlib.asynccontextmanager
    async def start(cls) -> AsyncIterator[RolloutMesh]:
        replicas = [FakeRollout(), FakeRollout()]
        servers = [await start_fake(r) for r in replicas]
        router = Router({"rollout": [r.address for r in replicas]})
        forwarder = AdmissionForwarder(route=router.owner)
        route = rollout_route.RolloutRoute(router=router, links=forwarder)
        api = await create_server(
            register=[lambda s: rollout_route.add_to_server(s, route)],
            service_names=[rollout_route.SERVICE_NAME],
        )
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{api.port}")
        try:
            yield cls(replicas, servers, router, forwarder, route, api, channel)
        finally:
            await channel.close()
            await api.stop(grace=None)
            await forwarder.close()
            for server in servers:
                await server.stop(grace=None)

    @property
    def stub(self) -> Any:
        return rollout_pb2_grpc.RolloutServiceStub(self.channel)

    def owned_by(self, replica: FakeRollout, skip: int = 0) -> str:
        """A namespace ``replica`` owns on the rollout ring (the ``skip``-th one)."""
        ring = self.router.ring("rollout")
        owned = (f"ns-{i}" for i in range(1000) if ring.owner(f"ns-{i}") == replica.address)
        for _ in range(skip):
            next(owned)
        return next(owned)


def ref(namespace: str, name: str = "web") -> rollout_pb2.WorkloadRef:
    return rollout_pb2.WorkloadRef(namespace=namespace, name=name)
