"""One call to the service replica that owns a namespace, relayed as the replica answered it.

The gateway's routed gRPC services (``budget_route``, ``rollout_route``) and the rollout API's
HTTP/JSON front (``rollout_http``) all go through a ``Relay``:

    relay = Relay(service="rollout", router=router, links=forwarder, stub=make_stub, calls=CALLS)
    answer = await relay.call("GetRolloutStatus", namespace, lambda stub: stub.Get...(r, timeout=t))
    # in a servicer: the same, with the failure turned into the caller's status
    answer = await relay.unary("GetRolloutStatus", namespace, lambda stub, t: ..., context)
    async for message in relay.stream("WatchRolloutStatus", namespace, open_call, context): ...

The owner is ``Router.owner(service, namespace)``; the call travels over the channel the
admission forwarder already holds to that replica (``AdmissionForwarder.link``), so the
gateway keeps one connection per replica whatever it relays.

Failures, all raised as ``RelayError`` (code, details, trailing metadata) and, in a servicer,
ended with exactly that status:

    RelayError
    ├── the replica's own status ........ code and message unchanged, and its rich details
    │                                     (trailing ``grpc-status-details-bin``, grpcio-status)
    │                                     with them, so ``rpc_status.from_call`` works at the
    │                                     far end as it would against the replica
    ├── no replica for the namespace .... UNAVAILABLE "no <service> replica is available for
    │                                     namespace <ns>"
    └── the replica out of reach ........ UNAVAILABLE / DEADLINE_EXCEEDED without rich details:
                                          the message is prefixed "<service> replica <address>
                                          (namespace <ns>): ", since the caller only knows the
                                          gateway; a link closed under the call (gateway stop)
                                          is UNAVAILABLE naming the replica too

No feature logic: requests and answers travel unchanged. Unary calls carry the caller's
deadline (``DEFAULT_TIMEOUT_S`` when it set none); a stream carries the caller's deadline
only when it set one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any, Generic, TypeVar

import grpc
from prometheus_client import Counter

from services.gateway.routing import Router
from services.gateway.webhook.forward import AdmissionForwarder, ReplicaLink

DEFAULT_TIMEOUT_S = 10.0
# grpcio-status carries a google.rpc.Status (ErrorInfo, BadRequest, ...) under this key.
DETAILS_KEY = "grpc-status-details-bin"

Stub = TypeVar("Stub")
Reply = TypeVar("Reply")
Context = grpc.aio.ServicerContext[Any, Any]
TrailingMetadata = tuple[tuple[str, str | bytes], ...]


class RelayError(Exception):
    """A relayed call that did not answer: the status to end the caller's call with."""

    def __init__(
        self,
        code: grpc.StatusCode,
        details: str,
        *,
        trailing_metadata: TrailingMetadata = (),
    ) -> None:
        super().__init__(details)
        self.code = code
        self.details = details
        self.trailing_metadata = trailing_metadata

    @property
    def rich_details(self) -> bytes | None:
        """The serialized ``google.rpc.Status`` the replica sent, if it sent one."""
        for key, value in self.trailing_metadata:
            if key == DETAILS_KEY and isinstance(value, bytes):
                return value
        return None


async def abort(context: Context, error: RelayError) -> None:
    """End the servicer's call with ``error``'s code, message and rich details."""
    await context.abort(error.code, error.details, error.trailing_metadata)


def caller_timeout(context: Context) -> float | None:
    """The caller's time left, passed on to the replica; None when it set no deadline."""
    remaining = context.time_remaining()
    return None if remaining is None else max(remaining, 0.0)


def unary_timeout(context: Context) -> float:
    """The caller's time left; ``DEFAULT_TIMEOUT_S`` when it set no deadline."""
    remaining = caller_timeout(context)
    return DEFAULT_TIMEOUT_S if remaining is None else remaining


def _details_only(metadata: Iterable[tuple[str, Any]] | None) -> TrailingMetadata:
    """The rich-details entry of a replica's trailing metadata (nothing else is passed on)."""
    return tuple((k, v) for k, v in (metadata or ()) if k == DETAILS_KEY and isinstance(v, bytes))


class Relay(Generic[Stub]):
    """Calls to the replica of ``service`` that owns a namespace; ``calls`` counts them by
    method and final status code."""

    def __init__(
        self,
        *,
        service: str,
        router: Router,
        links: AdmissionForwarder,
        stub: Callable[[grpc.aio.Channel], Stub],
        calls: Counter,
    ) -> None:
        self.service = service
        self.router = router
        self.links = links
        self.make_stub = stub
        self.calls = calls
        self._stubs: dict[str, tuple[ReplicaLink, Stub]] = {}

    # ---- pieces ------------------------------------------------------------------------------
    def owner(self, namespace: str) -> str:
        """The address of the replica owning ``namespace``; RelayError UNAVAILABLE if none."""
        address = self.router.owner(self.service, namespace)
        if address is None:
            raise RelayError(
                grpc.StatusCode.UNAVAILABLE,
                f"no {self.service} replica is available for namespace {namespace or '<none>'}",
            )
        return address

    def stub(self, address: str) -> Stub:
        """A stub over the admission forwarder's channel to ``address`` (made again when the
        forwarder replaced that link)."""
        link = self.links.link(address, service=self.service)
        cached = self._stubs.get(address)
        if cached is not None and cached[0] is link:
            return cached[1]
        # ReplicaLink keeps its channel private; the relay shares it rather than opening one
        # more connection per replica.
        stub = self.make_stub(link._channel)
        self._stubs[address] = (link, stub)
        return stub

    def count(self, method: str, code: grpc.StatusCode) -> None:
        self.calls.labels(method, code.name).inc()

    def relayed(self, error: BaseException, *, address: str, namespace: str) -> RelayError:
        """The RelayError for a failed call to ``address``: the replica's status unchanged
        when it sent rich details, else the replica named for unavailability and deadlines."""
        if isinstance(error, grpc.aio.AioRpcError):
            code, details = error.code(), error.details() or ""
            trailing = _details_only(error.trailing_metadata())
            if not trailing and code in (
                grpc.StatusCode.UNAVAILABLE,
                grpc.StatusCode.DEADLINE_EXCEEDED,
            ):
                # Say which replica: the caller only knows the gateway.
                details = f"{self.service} replica {address} (namespace {namespace}): {details}"
            return RelayError(code, details, trailing_metadata=trailing)
        # grpc.aio.UsageError: the link was closed under the call (gateway stop).
        return RelayError(
            grpc.StatusCode.UNAVAILABLE,
            f"{self.service} replica {address}: link closed ({error})",
        )

    async def send(
        self, address: str, namespace: str, call: Callable[[Stub], Awaitable[Reply]]
    ) -> Reply:
        """``call`` on a stub to ``address``; failures as RelayError. Not counted."""
        try:
            return await call(self.stub(address))
        except (grpc.aio.AioRpcError, grpc.aio.UsageError) as e:
            raise self.relayed(e, address=address, namespace=namespace) from e

    # ---- whole calls -------------------------------------------------------------------------
    async def call(
        self, method: str, namespace: str, call: Callable[[Stub], Awaitable[Reply]]
    ) -> Reply:
        """The owner's answer to ``call``, counted; failures as RelayError."""
        try:
            reply = await self.send(self.owner(namespace), namespace, call)
        except RelayError as e:
            self.count(method, e.code)
            raise
        self.count(method, grpc.StatusCode.OK)
        return reply

    async def unary(
        self,
        method: str,
        namespace: str,
        call: Callable[[Stub, float], Awaitable[Reply]],
        context: Context,
    ) -> Reply:
        """For a unary servicer method: the owner's answer to ``call(stub, timeout)`` with the
        caller's deadline, or the caller's call ended with the relayed status."""
        timeout = unary_timeout(context)
        try:
            return await self.call(method, namespace, lambda stub: call(stub, timeout))
        except RelayError as e:
            await abort(context, e)
            raise AssertionError("unreachable") from e

    async def stream(
        self,
        method: str,
        namespace: str,
        open_call: Callable[[Stub, float | None], grpc.aio.UnaryStreamCall[Any, Reply]],
        context: Context,
    ) -> AsyncIterator[Reply]:
        """For a server-streaming servicer method: every message of the owner's stream
        ``open_call(stub, timeout)`` (timeout None unless the caller set a deadline), then the
        end the replica gave it: nothing on OK, else the caller's stream ended with the same
        status. The replica's call is cancelled when the caller goes away."""
        try:
            address = self.owner(namespace)
        except RelayError as e:
            self.count(method, e.code)
            await abort(context, e)
            raise AssertionError("unreachable") from e
        code: grpc.StatusCode | None = grpc.StatusCode.CANCELLED  # unless it ends by itself
        call: grpc.aio.UnaryStreamCall[Any, Reply] | None = None
        try:
            call = open_call(self.stub(address), caller_timeout(context))
            async for message in call:
                yield message
            code = grpc.StatusCode.OK
        except (grpc.aio.AioRpcError, grpc.aio.UsageError) as e:
            error = self.relayed(e, address=address, namespace=namespace)
            code = error.code
            # Counted before the caller hears the end: it may read the metric right away.
            self.count(method, code)
            code = None
            await abort(context, error)
        finally:
            if call is not None:
                call.cancel()
            if code is not None:
                self.count(method, code)
