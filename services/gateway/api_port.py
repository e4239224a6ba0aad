"""The gateway's API ports for tools (gRPC ``--api-port``, HTTP/JSON ``--api-http-port``): what
they serve and how they are secured. ``app`` composes them; the mesh port (7000) is not here.

    security = api_security(kube, config, served)          # served: the webhook certificate
    api = await create_api_server(register=[...], service_names=[...], host=..., port=...,
                                  security=security)
    ... start_rollout_http(..., ssl_context=security.ssl_context,
                           middlewares=security.middlewares)
    await security.close()

Served on the gRPC port: ``RolloutService`` (``rollout_route``) and the read methods of
``BudgetService`` (``BudgetReads``: GetBudget, PlanDisruption; AuthorizePodUpdate spends
budget and stays on the mesh port, UNIMPLEMENTED here), health and reflection.

``--api-auth token`` (the default): both ports serve TLS with the gateway's serving
certificate (the webhook's, ``certs``; re-read on gRPC handshakes when its file changes) and
every call is authenticated (a token minted for one of ``--api-audiences``, by default
``kruise-mesh-rollout-api`` only) and authorized (``callers``). ``--api-auth off``: plain text, no
checks, only on a loopback address (``callers.check_off_allowed``), with a warning at start
and once a minute.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from kruise.budget.v1 import budget_pb2, budget_pb2_grpc
from services.gateway import callers, certs
from services.gateway.budget_route import BudgetRoute, Context
from services.gateway.certs import ServingCert
from services.gateway.config import GatewayConfig
from services.gateway.kube.client import KubeClient
from services.gateway.webhook.server import server_ssl_context
from services.kit.rpc import Register, Server, create_server
from services.kit.tasks import stop_task

log = logging.getLogger(__name__)

# The Service tools reach the API ports by (deploy/gateway.yaml): named in the serving
# certificate the gateway makes, next to the webhook Service's names.
API_SERVICE = "kruise-mesh-rollout-api"


def api_hosts(namespace: str) -> list[str]:
    """The names of the API Service, for the serving certificate."""
    return [h for h in certs.webhook_hosts(service=API_SERVICE, namespace=namespace)]


def check_config(config: GatewayConfig) -> None:
    """Refuse, before anything starts, ``--api-auth off`` off loopback (ValueError)."""
    serving = config.api_port is not None or config.api_http_port is not None
    callers.check_off_allowed(config.host, api_auth=config.api_auth, serving=serving)


class BudgetReads(budget_pb2_grpc.BudgetServiceServicer):
    """``BudgetService`` for tools: the reads of ``BudgetRoute`` (GetBudget, PlanDisruption).
    ``AuthorizePodUpdate`` is left UNIMPLEMENTED: it spends budget (mesh callers only)."""

    def __init__(self, route: BudgetRoute) -> None:
        self.route = route

    async def AuthorizePodUpdate(
        self, request: budget_pb2.AuthorizePodUpdateRequest, context: Context
    ) -> budget_pb2.AuthorizePodUpdateResponse:
        await context.abort(
            grpc.StatusCode.UNIMPLEMENTED,
            "AuthorizePodUpdate spends budget: it is served to the mesh's services only",
        )
        raise AssertionError("unreachable")

    async def GetBudget(
        self, request: budget_pb2.GetBudgetRequest, context: Context
    ) -> budget_pb2.GetBudgetResponse:
        return await self.route.GetBudget(request, context)

    async def PlanDisruption(
        self, request: budget_pb2.PlanDisruptionRequest, context: Context
    ) -> budget_pb2.PlanDisruptionResponse:
        return await self.route.PlanDisruption(request, context)


def add_budget_reads(server: grpc.aio.Server, route: BudgetRoute) -> None:
    budget_pb2_grpc.add_BudgetServiceServicer_to_server(BudgetReads(route), server)


def _grpc_credentials(served: ServingCert) -> grpc.ServerCredentials:
    """Server-side TLS (no client certificate) with the serving certificate, re-read when
    its file changes (the next handshakes get the new one)."""
    cert_file, key_file = Path(served.cert_file), Path(served.key_file)

    def load() -> grpc.ServerCertificateConfiguration:
        return grpc.ssl_server_certificate_configuration(
            [(key_file.read_bytes(), cert_file.read_bytes())]
        )

    seen = [cert_file.stat().st_mtime_ns]

    def fetch() -> grpc.ServerCertificateConfiguration | None:
        try:
            mtime = cert_file.stat().st_mtime_ns
            if mtime == seen[0]:
                return None
            seen[0] = mtime
            log.info("serving a renewed certificate on the API port")
            return load()
        except OSError:
            return None

    # grpc takes None from the fetcher as "keep the current one" (its stubs say otherwise).
    return grpc.dynamic_ssl_server_credentials(
        load(),
        fetch,  # type: ignore[arg-type]
        require_client_authentication=False,
    )


@dataclass
class ApiSecurity:
    """How the API ports are secured: ``callers`` None means ``--api-auth off``."""

    callers: callers.Callers | None = None
    grpc_credentials: grpc.ServerCredentials | None = None
    ssl_context: ssl.SSLContext | None = None
    _warning: asyncio.Task[None] | None = field(default=None, repr=False)

    @property
    def interceptors(self) -> list[grpc.aio.ServerInterceptor]:
        return [self.callers.interceptor()] if self.callers is not None else []

    @property
    def middlewares(self) -> list[Any]:
        return [self.callers.http_middleware()] if self.callers is not None else []

    async def close(self) -> None:
        await stop_task(self._warning)
        self._warning = None


def api_security(kube: KubeClient, config: GatewayConfig, served: ServingCert) -> ApiSecurity:
    """The API ports' security for ``config``; ValueError for ``off`` off loopback."""
    serving = config.api_port is not None or config.api_http_port is not None
    callers.check_off_allowed(config.host, api_auth=config.api_auth, serving=serving)
    if not serving:
        return ApiSecurity()
    if config.api_auth == "off":
        return ApiSecurity(
            _warning=asyncio.create_task(
                callers.warn_unauthenticated(), name="api-auth off warning"
            )
        )
    return ApiSecurity(
        callers=callers.Callers(
            callers.KubeReviews(kube),
            audiences=config.api_audiences,
            ttl=config.api_auth_cache_ttl_s,
            negative_ttl=config.api_auth_negative_ttl_s,
        ),
        grpc_credentials=_grpc_credentials(served),
        ssl_context=server_ssl_context(
            cert_file=str(served.cert_file), key_file=str(served.key_file)
        ),
    )


async def create_api_server(
    *,
    register: Sequence[Register],
    service_names: Iterable[str],
    host: str,
    port: int,
    security: ApiSecurity,
) -> Server:
    """``kit.rpc.create_server`` for the API port: TLS and the callers' interceptor when
    ``security`` has them; health and reflection (open to anyone reaching the port)."""
    return await create_server(
        register=register,
        service_names=service_names,
        host=host,
        port=port,
        credentials=security.grpc_credentials,
        interceptors=security.interceptors,
    )
