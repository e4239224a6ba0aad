"""The gateway's HTTPS admission webhook server.

    server = await start_webhook_server(
        host="0.0.0.0", port=9443, cert_file="tls.crt", key_file="tls.key", forwarder=forwarder
    )
    ...
    await server.stop()

Routes (aiohttp, HTTP/1.1 with keep-alive, TLS 1.2+):

* ``POST /{service}/{webhook}`` for service in placement, rollout, budget, e.g.
  ``/budget/validate-pods``: one AdmissionReview becomes one ``AdmissionRequest`` to the
  service replica owning the review's namespace (``forward.AdmissionForwarder``) and its
  answer becomes the AdmissionReview response (``reviews.build_response``).
* ``GET /healthz`` (the loop runs) and ``GET /readyz`` (``ready()`` holds).

Answers, and why:

==========  ========================================================================
200         an AdmissionReview response (allowed, denied with a status code, patched)
400         the body is not a routable AdmissionReview (``{"error": ...}``)
404 / 405   unknown service or path / wrong method
413         body over ``max_body`` bytes (3 MiB by default)
415         content type other than application/json
503 / 504   no replica, a failed hop or a missed deadline: a call error for the API
            server, which then applies the webhook's failurePolicy
500         a bug; logged, never a crash
==========  ========================================================================

The hop's deadline is ``deadline_fraction`` (0.75) of the ``?timeout=10s`` the API server
appends, ``default_timeout`` (8 s) without one, and never more than ``max_timeout``.
"""

from __future__ import annotations

import logging
import re
import ssl
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Protocol

import orjson
from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client import Counter, Histogram

from kruise.common.v1 import mesh_pb2
from services.gateway.webhook.reviews import (
    InvalidReview,
    admission_request,
    build_response,
    parse_review,
)
from services.kit import errors

log = logging.getLogger(__name__)

SERVICES: tuple[str, ...] = ("placement", "rollout", "budget")
MAX_BODY = 3 * 1024 * 1024
_WEBHOOK_NAME = re.compile(r"^[a-z0-9]([a-z0-9.-]{0,126}[a-z0-9])?$")
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}

REVIEWS = Counter(
    "kruise_mesh_webhook_reviews_total",
    "AdmissionReviews answered by the gateway; allowed is true, false or error",
    ["service", "webhook", "allowed"],
)
DURATION = Histogram(
    "kruise_mesh_webhook_duration_seconds",
    "Time from a review's arrival to its answer, including the hop to the service",
    ["service", "webhook"],
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


class Forwarder(Protocol):
    """What the server needs from the hop (``forward.AdmissionForwarder``)."""

    async def review(
        self,
        service: str,
        namespace: str,
        request: mesh_pb2.AdmissionRequest,
        *,
        timeout: float,
    ) -> mesh_pb2.AdmissionResponse: ...


def parse_go_duration(text: str) -> float | None:
    """Seconds in a Go duration such as ``10s``, ``1m30s`` or ``500ms``; None if malformed.

    Pure. Worked examples: "10s" → 10.0, "1m0s" → 60.0, "1.5s" → 1.5, "10" → None.
    """
    if not text:
        return None
    total = 0.0
    position = 0
    for match in _DURATION_PART.finditer(text):
        if match.start() != position:
            return None
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        position = match.end()
    return total if position == len(text) else None


def hop_deadline(
    query_timeout: str | None,
    *,
    fraction: float,
    default: float,
    cap: float,
) -> float:
    """The deadline for the hop: ``fraction`` of the API server's timeout, at most ``cap``.

    Pure. Worked examples with fraction 0.75, default 8, cap 25: "10s" → 7.5,
    "30s" → 22.5, "1s" → 0.75, None or "junk" → 8.0.
    """
    seconds = parse_go_duration(query_timeout) if query_timeout else None
    if seconds is None or seconds <= 0:
        return min(default, cap)
    return min(seconds * fraction, cap)


def _json_error(status: int, message: str) -> web.Response:
    return web.Response(
        status=status,
        body=orjson.dumps({"error": message}),
        content_type="application/json",
    )


@dataclass(frozen=True, slots=True)
class WebhookSettings:
    services: frozenset[str]
    max_body: int
    default_timeout: float
    max_timeout: float
    deadline_fraction: float


class _Handlers:
    """The request handlers; one instance per server."""

    def __init__(
        self,
        *,
        forwarder: Forwarder,
        settings: WebhookSettings,
        ready: Callable[[], bool],
    ) -> None:
        self.forwarder = forwarder
        self.settings = settings
        self.ready = ready
        self._counters: dict[tuple[str, str, str], Counter] = {}
        self._histograms: dict[tuple[str, str], Histogram] = {}

    def _count(self, service: str, webhook: str, outcome: str, elapsed: float) -> None:
        key = (service, webhook, outcome)
        counter = self._counters.get(key)
        if counter is None:
            counter = self._counters[key] = REVIEWS.labels(service, webhook, outcome)
        counter.inc()
        histogram = self._histograms.get((service, webhook))
        if histogram is None:
            histogram = self._histograms[(service, webhook)] = DURATION.labels(service, webhook)
        histogram.observe(elapsed)

    async def review(self, request: web.Request) -> web.Response:
        started = time.perf_counter()
        service = request.match_info["service"]
        webhook = request.match_info["webhook"]
        if service not in self.settings.services:
            known = ", ".join(sorted(self.settings.services))
            return _json_error(404, f"unknown service {service!r} (known: {known})")
        if not _WEBHOOK_NAME.match(webhook):
            return _json_error(404, f"invalid webhook name {webhook!r} for service {service}")
        if request.content_type != "application/json":
            return _json_error(
                415, f"content type must be application/json, got {request.content_type!r}"
            )
        length = request.content_length
        if length is not None and length > self.settings.max_body:
            return _json_error(
                413, f"body of {length} bytes exceeds the limit of {self.settings.max_body}"
            )
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return _json_error(413, f"body exceeds the limit of {self.settings.max_body} bytes")
        try:
            review = parse_review(body)
        except InvalidReview as e:
            return _json_error(400, str(e))
        admission = admission_request(review, webhook=webhook, body=body)
        timeout = hop_deadline(
            request.query.get("timeout"),
            fraction=self.settings.deadline_fraction,
            default=self.settings.default_timeout,
            cap=self.settings.max_timeout,
        )
        try:
            answer = await self.forwarder.review(
                service, admission.namespace, admission, timeout=timeout
            )
        except errors.MeshError as e:
            status = e.http_status if e.http_status >= 500 else 503
            self._count(service, webhook, "error", time.perf_counter() - started)
            log.warning(
                "review not answered",
                extra={
                    "service": service,
                    "webhook": webhook,
                    "uid": admission.uid,
                    "error": str(e),
                },
            )
            return _json_error(status, f"{service}/{webhook} review {admission.uid}: {e}")
        payload = build_response(review, answer)
        self._count(
            service, webhook, "true" if answer.allowed else "false", time.perf_counter() - started
        )
        return web.Response(body=payload, content_type="application/json")

    async def healthz(self, _: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def readyz(self, _: web.Request) -> web.Response:
        if self.ready():
            return web.Response(text="ok")
        return web.Response(status=503, text="not ready")

    async def fallback(self, request: web.Request) -> web.Response:
        parts = request.path.strip("/").split("/")
        if len(parts) == 2 and parts[0] in self.settings.services:
            return _json_error(405, f"method {request.method} not allowed; POST AdmissionReviews")
        return _json_error(
            404,
            f"no webhook at {request.path}; POST to /<service>/<webhook> with service one of "
            f"{', '.join(sorted(self.settings.services))}",
        )


@web.middleware
async def _never_crash(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as e:
        return _json_error(e.status, e.reason)
    except Exception as e:
        log.exception("webhook handler failed", extra={"path": request.path})
        return _json_error(500, f"internal error: {type(e).__name__}: {e}")


def server_ssl_context(*, cert_file: str, key_file: str) -> ssl.SSLContext:
    """TLS 1.2+ serving context offering only HTTP/1.1 over ALPN (aiohttp speaks no h2)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(["http/1.1"])
    context.load_cert_chain(cert_file, key_file)
    return context


@dataclass
class WebhookServer:
    """A running webhook server: its bound port, its TLS context, its runner."""

    runner: web.AppRunner
    port: int
    ssl_context: ssl.SSLContext

    def reload_certs(self, *, cert_file: str, key_file: str) -> None:
        """Serve a rotated cert/key pair; connections from now on get the new one."""
        self.ssl_context.load_cert_chain(cert_file, key_file)

    async def stop(self) -> None:
        await self.runner.cleanup()


async def start_webhook_server(
    *,
    host: str,
    port: int,
    cert_file: str,
    key_file: str,
    forwarder: Forwarder,
    services: Collection[str] = SERVICES,
    ready: Callable[[], bool] = lambda: True,
    max_body: int = MAX_BODY,
    default_timeout: float = 8.0,
    max_timeout: float = 25.0,
    deadline_fraction: float = 0.75,
    keepalive_timeout: float = 75.0,
) -> WebhookServer:
    """Build and start the HTTPS server; ``port=0`` picks a free port (``.port``)."""
    handlers = _Handlers(
        forwarder=forwarder,
        settings=WebhookSettings(
            services=frozenset(services),
            max_body=max_body,
            default_timeout=default_timeout,
            max_timeout=max_timeout,
            deadline_fraction=deadline_fraction,
        ),
        ready=ready,
    )
    app = web.Application(client_max_size=max_body, middlewares=[_never_crash])
    app.router.add_get("/healthz", handlers.healthz)
    app.router.add_get("/readyz", handlers.readyz)
    app.router.add_post("/{service}/{webhook}", handlers.review)
    app.router.add_route("*", "/{tail:.*}", handlers.fallback)
    runner = web.AppRunner(app, access_log=None, keepalive_timeout=keepalive_timeout)
    await runner.setup()
    context = server_ssl_context(cert_file=cert_file, key_file=key_file)
    site = web.TCPSite(runner, host, port, ssl_context=context)
    await site.start()
    sockets = getattr(site._server, "sockets", None) or []
    bound = int(sockets[0].getsockname()[1]) if sockets else port
    return WebhookServer(runner=runner, port=bound, ssl_context=context)
