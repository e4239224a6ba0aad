"""Running a feature service: config, logs, gRPC server, ops HTTP, graceful stop.

    await run_service(spec, argv)        # the body of each service's __main__

``ServiceSpec`` names what differs between placement, rollout and budget: the
kinds of view they want, their webhook handlers, their own read servicers, and
the ``Feature`` (reconcile loops plus the handlers that need their state) built
once the replica's cache and cluster client exist. ``start_service`` is the same
without signal handling, for tests.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

import grpc
from grpc_health.v1 import health_pb2

from kruise.common.v1 import mesh_pb2_grpc
from services.kit import logs
from services.kit.cluster import ClusterClient
from services.kit.config import ServiceConfig, parse_service_config
from services.kit.heap import freeze_startup_heap
from services.kit.httpserver import OpsServer, start_ops_server
from services.kit.mesh import Handler, MeshServicer
from services.kit.rpc import Server, caught_signals, create_server
from services.kit.tls import FileSource, MeshTls, Policy

log = logging.getLogger(__name__)

MESH_SERVICE = "kruise.common.v1.MeshService"
GATEWAY_ONLY = frozenset({"gateway"})

ExtraServicer = Callable[[MeshServicer, grpc.aio.Server], str]
"""Registers one more servicer on the server, given the mesh servicer; returns its full name."""


class Feature(Protocol):
    """A service's feature: webhook handlers over its state, and loops that run beside them."""

    @property
    def handlers(self) -> Mapping[str, Handler]: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


@dataclass(frozen=True)
class FeatureContext:
    """What a feature is built from: the replica's mesh servicer (its cache), the cluster
    client, the service's configuration and its environment (feature settings)."""

    mesh: MeshServicer
    cluster: ClusterClient
    config: ServiceConfig
    env: Mapping[str, str]
    # The replica's mesh certificate, for the feature's own channels to the gateway.
    tls: MeshTls | None = None


FeatureFactory = Callable[[FeatureContext], Feature]
FeatureServicer = Callable[[grpc.aio.Server], str]
"""Registers a servicer the feature built (it needs the feature's state); returns its name."""


@runtime_checkable
class ServesApi(Protocol):
    """A feature with servicers of its own (rollout's RolloutService reads its indexes)."""

    def servicers(self) -> Sequence[FeatureServicer]: ...


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    kinds: Sequence[int]
    handlers: Mapping[str, Handler]
    extra: Sequence[ExtraServicer] = field(default_factory=tuple)
    feature: FeatureFactory | None = None


@dataclass
class RunningService:
    config: ServiceConfig
    mesh: MeshServicer
    grpc: Server
    ops: OpsServer
    cluster: ClusterClient
    feature: Feature | None = None
    tls: MeshTls | None = None

    async def stop(self, grace: float = 5.0) -> None:
        if self.feature is not None:
            await self.feature.stop()
        await self.grpc.stop(grace)
        await self.ops.stop()
        await self.cluster.close()
        if self.tls is not None:
            await self.tls.stop()


async def start_service(
    spec: ServiceSpec, config: ServiceConfig, *, env: Mapping[str, str] | None = None
) -> RunningService:
    mesh = MeshServicer(
        service=spec.name, replica=config.advertise, kinds=spec.kinds, handlers=spec.handlers
    )
    names = [MESH_SERVICE]
    tls = None
    if config.tls_dir:
        tls = MeshTls(spec.name, FileSource(Path(config.tls_dir)))
        await tls.start()
    else:
        log.warning(
            "mesh TLS is off: this replica takes calls from anyone who reaches its port "
            "(set --tls-dir; plain TCP is for loopback only)",
            extra={"service": spec.name},
        )
    # The feature exists before the server serves, so its listeners see the first snapshot.
    cluster = ClusterClient.connect(config.gateway, component=spec.name, tls=tls)
    feature = None
    if spec.feature is not None:
        context = FeatureContext(
            mesh=mesh,
            cluster=cluster,
            config=config,
            env=os.environ if env is None else env,
            tls=tls,
        )
        feature = spec.feature(context)
        mesh.handlers.update(feature.handlers)

    def register_mesh(server: grpc.aio.Server) -> None:
        mesh_pb2_grpc.add_MeshServiceServicer_to_server(mesh, server)

    def register_extra(server: grpc.aio.Server) -> None:
        for add in spec.extra:
            names.append(add(mesh, server))
        if isinstance(feature, ServesApi):
            for add_own in feature.servicers():
                names.append(add_own(server))

    server = await create_server(
        register=[register_mesh, register_extra],
        service_names=names,
        host=config.host,
        port=config.port,
        tls=tls,
        policy=SERVICE_POLICY,
    )
    # "" is liveness (the process serves); MeshService is readiness (it has its snapshot).
    readiness = MESH_SERVICE

    def on_synced(synced: bool) -> None:
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if synced
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        asyncio.ensure_future(server.health.set(readiness, status))

    mesh.on_synced = on_synced
    on_synced(False)
    ops = await start_ops_server(
        host=config.host, port=config.ops_port, ready=lambda: mesh.synced, component=spec.name
    )
    log.info(
        "service started",
        extra={
            "service": spec.name,
            "grpc_port": server.port,
            "ops_port": ops.port,
            "advertise": config.advertise,
        },
    )
    if feature is not None:
        await feature.start()
    return RunningService(
        config=config, mesh=mesh, grpc=server, ops=ops, cluster=cluster, feature=feature, tls=tls
    )


# Who may call a service replica: the gateway, for everything it serves (events, reviews,
# the read and write APIs it relays); the mesh's tooling (``operator``: the local launcher
# and tests, which hold the CA; no cluster component is issued it) may also read a replica's
# sync state and its read-only APIs, never post a review, stream events or write.
READERS = frozenset({"gateway", "operator"})
SERVICE_POLICY: Policy = {
    "*": GATEWAY_ONLY,
    **{
        f"/{method}": READERS
        for method in (
            f"{MESH_SERVICE}/GetReplicaStatus",
            f"{MESH_SERVICE}/ListCachedObjects",
            "kruise.placement.v1.PlacementService/ListPodStates",
            "kruise.placement.v1.PlacementService/GetPodState",
            "kruise.budget.v1.BudgetService/GetBudget",
            "kruise.budget.v1.BudgetService/PlanDisruption",
            "kruise.rollout.v1.RolloutService/GetRolloutStatus",
            "kruise.rollout.v1.RolloutService/CheckBatch",
        )
    },
}


async def run_service(spec: ServiceSpec, argv: Sequence[str] | None = None) -> None:
    config = parse_service_config(spec.name, argv)
    logs.setup(component=spec.name, level=config.log_level, json_format=config.json_logs)
    freeze_startup_heap()
    try:
        running = await start_service(spec, config)
    except (OSError, ValueError) as e:  # a port in use, a bad feature setting
        log.error("cannot start: %s", e)
        raise SystemExit(1) from None
    with caught_signals() as stop:
        # A single machine-readable line tells a supervisor (the CLI, tests) where we listen.
        print(
            f'{{"service": "{spec.name}", "grpc_port": {running.grpc.port}, '
            f'"ops_port": {running.ops.port}}}',
            flush=True,
        )
        received = await stop
    log.info("stopping", extra={"signal": received.name})
    await running.stop(grace=5.0)


def main(spec: ServiceSpec, argv: Sequence[str] | None = None) -> None:
    asyncio.run(run_service(spec, argv))
