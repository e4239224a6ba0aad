"""The gateway's HTTPS admission webhook server.

    server = await start_webhook_server(
        host="0.0.0.0", port=9443, cert_file="tls.crt", key_file="tls.key", forwarder=forwarder,
        client_ca_file=None,  # or the CA of the API server's client certificate
    )
    ...
    await server.stop()

Routes (aiohttp, HTTP/1.1 with keep-alive, TLS 1.2+):

* ``POST /{service}/{webhook}`` for exactly the paths deploy/webhooks.yaml names
  (``paths.WEBHOOK_PATHS``), e.g. ``/budget/validate-pods``: a review that path can receive
  from the API server (``paths.check_review``) becomes one ``AdmissionRequest`` to the
  service replica owning the review's namespace (``forward.AdmissionForwarder``) and its
  answer becomes the AdmissionReview response (``reviews.build_response``).
* ``GET /healthz`` (the loop runs) and ``GET /readyz`` (``ready()`` holds).

Proof of the caller (``client_ca_file``, the gateway's ``--webhook-client-ca``): the TLS
handshake asks for a client certificate and refuses one that does not chain to that CA; a
connection without one may reach only ``/healthz`` and ``/readyz``, everything else answers
401. kube-apiserver presents such a certificate when its AdmissionConfiguration names a
kubeconfig with a ``client-certificate`` for the webhook Service's host. Without it, anyone
who reaches the port can post reviews that look right (see deploy/networkpolicy.yaml).

Answers, and why:

==========  ========================================================================
200         an AdmissionReview response (allowed, denied with a status code, patched)
400         the body is not an AdmissionReview this path accepts (``{"error": ...}``);
            it reaches no service and spends nothing
401         client certificates are required and the connection presented none
404 / 405   a path no webhook configuration names / wrong method
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
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

import orjson
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from prometheus_client import Counter, Histogram

from kruise.common.v1 import mesh_pb2
from services.gateway.webhook.paths import WEBHOOK_PATHS, WebhookPath, check_review
from services.gateway.webhook.reviews import (
    InvalidReview,
    admission_request,
    build_response,
    parse_review,
)
from services.kit import errors

log = logging.getLogger(__name__)

MAX_BODY = 3 * 1024 * 1024
# Served to a connection without a client certificate even when one is required (probes).
_OPEN_PATHS = frozenset({"/healthz", "/readyz"})
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
REFUSED = Counter(
    "kruise_mesh_webhook_refused_total",
    "Requests refused before reaching a service: reason unauthenticated (no client "
    "certificate), not_found (a path no webhook configuration names) or invalid (not a review "
    "the path accepts); path is the webhook path, or 'other' for unknown ones",
    ["path", "reason"],
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
    paths: Mapping[str, WebhookPath]
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

    @property
    def services(self) -> list[str]:
        return sorted({p.service for p in self.settings.paths.values()})

    async def review(self, request: web.Request) -> web.Response:
        started = time.perf_counter()
        service = request.match_info["service"]
        webhook = request.match_info["webhook"]
        accepts = self.settings.paths.get(f"/{service}/{webhook}")
        if accepts is None:
            REFUSED.labels("other", "not_found").inc()
            if service not in self.services:
                known = ", ".join(self.services)
                return _json_error(404, f"unknown service {service[:64]!r} (known: {known})")
            return _json_error(
                404,
                f"no webhook at /{service}/{webhook[:64]}; the webhook configurations name "
                f"{', '.join(sorted(self.settings.paths))}",
            )
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
            check_review(review, accepts)
        except InvalidReview as e:
            REFUSED.labels(accepts.path, "invalid").inc()
            log.info("review refused", extra={"path": accepts.path, "error": str(e)})
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
        if request.path in self.settings.paths:
            return _json_error(405, f"method {request.method} not allowed; POST AdmissionReviews")
        REFUSED.labels("other", "not_found").inc()
        return _json_error(
            404,
            f"no webhook at {request.path[:128]}; the webhook configurations name "
            f"{', '.join(sorted(self.settings.paths))}",
        )


def _client_auth(required: bool) -> Middleware:
    """With ``required``, only a connection whose client certificate the TLS handshake
    verified reaches more than the probes (one that does not verify never gets this far)."""

    @web.middleware
    async def client_auth(request: web.Request, handler: Handler) -> web.StreamResponse:
        if required and request.path not in _OPEN_PATHS:
            transport = request.transport
            if transport is None or not transport.get_extra_info("peercert"):
                REFUSED.labels("other", "unauthenticated").inc()
                return _json_error(
                    401, "a client certificate issued by the webhook client CA is required"
                )
        return await handler(request)

    return client_auth


@web.middleware
async def _never_crash(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as e:
        return _json_error(e.status, e.reason)
    except Exception as e:
        log.exception("webhook handler failed", extra={"path": request.path})
        return _json_error(500, f"internal error: {type(e).__name__}: {e}")


def server_ssl_context(
    *, cert_file: str, key_file: str, client_ca_file: str | None = None
) -> ssl.SSLContext:
    """TLS 1.2+ serving context offering only HTTP/1.1 over ALPN (aiohttp speaks no h2).

    With ``client_ca_file`` the handshake asks for a client certificate and verifies any it
    gets against that CA alone (not the system's roots; its purpose must allow client auth);
    a connection without one is let through to be answered 401 (``_client_auth``), so the
    probes keep working.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)  # loads no default CAs
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(["http/1.1"])
    context.load_cert_chain(cert_file, key_file)
    if client_ca_file:
        context.load_verify_locations(cafile=client_ca_file)
        context.verify_mode = ssl.CERT_OPTIONAL
    return context


@dataclass
class WebhookServer:
    """A running webhook server: its bound port, its TLS context, its runner."""

    runner: web.AppRunner
    port: int
    ssl_context: ssl.SSLContext
    client_auth: bool = False

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
    paths: Mapping[str, WebhookPath] = WEBHOOK_PATHS,
    client_ca_file: str | None = None,
    ready: Callable[[], bool] = lambda: True,
    max_body: int = MAX_BODY,
    default_timeout: float = 8.0,
    max_timeout: float = 25.0,
    deadline_fraction: float = 0.75,
    keepalive_timeout: float = 75.0,
) -> WebhookServer:
    """Build and start the HTTPS server; ``port=0`` picks a free port (``.port``).

    ``paths`` is what is served (deploy/webhooks.yaml's table unless a test says otherwise);
    ``client_ca_file`` requires client certificates issued by that CA (module doc).
    """
    handlers = _Handlers(
        forwarder=forwarder,
        settings=WebhookSettings(
            paths=dict(paths),
            max_body=max_body,
            default_timeout=default_timeout,
            max_timeout=max_timeout,
            deadline_fraction=deadline_fraction,
        ),
        ready=ready,
    )
    middlewares = [_never_crash, _client_auth(bool(client_ca_file))]
    app = web.Application(client_max_size=max_body, middlewares=middlewares)
    app.router.add_get("/healthz", handlers.healthz)
    app.router.add_get("/readyz", handlers.readyz)
    app.router.add_post("/{service}/{webhook}", handlers.review)
    app.router.add_route("*", "/{tail:.*}", handlers.fallback)
    runner = web.AppRunner(app, access_log=None, keepalive_timeout=keepalive_timeout)
    await runner.setup()
    context = server_ssl_context(
        cert_file=cert_file, key_file=key_file, client_ca_file=client_ca_file
    )
    site = web.TCPSite(runner, host, port, ssl_context=context)
    await site.start()
    sockets = getattr(site._server, "sockets", None) or []
    bound = int(sockets[0].getsockname()[1]) if sockets else port
    if client_ca_file:
        log.info("webhook callers must present a client certificate", extra={"ca": client_ca_file})
    else:
        log.info(
            "webhook callers are not asked for a client certificate: whoever reaches the port "
            "can post reviews (--webhook-client-ca turns the check on)"
        )
    return WebhookServer(
        runner=runner, port=bound, ssl_context=context, client_auth=bool(client_ca_file)
    )
