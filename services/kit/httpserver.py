"""The per-process HTTP side: Prometheus ``/metrics``, ``/healthz`` and ``/readyz``.

    site = await start_ops_server(port=9090, ready=lambda: synced)

``/healthz`` answers 200 while the event loop runs; ``/readyz`` answers 200 only
while ``ready()`` is true, so Kubernetes takes a replica out of rotation until it
can answer. The server also runs the process's event-loop lag monitor
(``services.kit.looplag``), so every component exports how long its loop was held.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

from services.kit.looplag import LoopLagMonitor


@dataclass
class OpsServer:
    runner: web.AppRunner
    port: int
    lag: LoopLagMonitor

    async def stop(self) -> None:
        await self.lag.stop()
        await self.runner.cleanup()


async def start_ops_server(
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    ready: Callable[[], bool] = lambda: True,
    registry: CollectorRegistry = REGISTRY,
    component: str = "",
) -> OpsServer:
    async def metrics(_: web.Request) -> web.Response:
        body = generate_latest(registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def readyz(_: web.Request) -> web.Response:
        if ready():
            return web.Response(text="ok")
        return web.Response(status=503, text="not ready")

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    server = site._server
    sockets = getattr(server, "sockets", None) or []
    bound = sockets[0].getsockname()[1] if sockets else port
    lag = LoopLagMonitor(component=component)
    lag.start()
    return OpsServer(runner=runner, port=int(bound), lag=lag)
