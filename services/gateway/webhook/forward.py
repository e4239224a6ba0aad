"""The admission hop: one AdmissionRequest to the service replica that owns its namespace.

    forwarder = AdmissionForwarder(route=router.owner, mode="stream")
    answer = await forwarder.review("budget", "default", request, timeout=7.5)
    await forwarder.close()

``AdmissionForwarder`` asks ``route(service, namespace)`` for the owning replica's
address and calls it through that replica's ``ReplicaLink``. A link holds one channel
and, in ``"stream"`` mode, one long-lived ``MeshService.ReviewStream`` (or ``streams`` of
them, taken in turn) on which many reviews are multiplexed (``call_id`` → waiting future).
Reviews are queued and a writer task sends everything queued as one ``AdmissionBatch``
(at most ``max_batch``): alone a review travels by itself, under load one gRPC message
carries many, which is where the hop's CPU goes (``bench/admission.py`` compares).
A broken stream fails the calls waiting on it and is reopened by the next call; a stream
older than ``max_stream_age`` is replaced for new calls and closed once its last answer
arrived, so server-side connection ageing (``grpc.max_connection_age_ms``) never cuts
calls off. ``"unary"`` mode makes one ``MeshService.Review`` per review instead.

Each call has its own deadline. No owner, a broken stream, an RPC error or a missed
deadline raise ``services.kit.errors.Unavailable`` (or ``ReviewTimeout``, a subclass)
with a message naming the service and namespace; the webhook server answers those with
a 5xx status so the API server applies the webhook's failurePolicy. No feature logic.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import time
from collections.abc import Callable
from typing import Literal

import grpc

from kruise.common.v1 import mesh_pb2, mesh_pb2_grpc
from services.kit import errors
from services.kit.rpc import insecure_channel, mesh_channel
from services.kit.tls import MeshTls

log = logging.getLogger(__name__)

Mode = Literal["stream", "unary"]
Route = Callable[[str, str], str | None]
ReviewCall = grpc.aio.StreamStreamCall[mesh_pb2.AdmissionBatch, mesh_pb2.AdmissionAnswers]


class ReviewTimeout(errors.Unavailable):
    """The replica did not answer within the call's deadline."""

    http_status = 504


class _Session:
    """One ReviewStream call and the reviews waiting for an answer on it."""

    def __init__(self, *, call: ReviewCall, address: str, max_batch: int) -> None:
        self.call = call
        self.address = address
        self.max_batch = max_batch
        self.opened = time.monotonic()
        self.pending: dict[int, asyncio.Future[mesh_pb2.AdmissionResponse]] = {}
        self.broken: BaseException | None = None
        self.draining = False
        self.outbox: list[mesh_pb2.AdmissionRequest] = []
        self.wake = asyncio.Event()
        self.reader = asyncio.create_task(self._read(), name=f"review-stream {address}")
        self.writer = asyncio.create_task(self._write(), name=f"review-writer {address}")

    def send(self, request: mesh_pb2.AdmissionRequest) -> None:
        self.outbox.append(request)
        self.wake.set()

    async def _write(self) -> None:
        try:
            while True:
                await self.wake.wait()
                self.wake.clear()
                while self.outbox:
                    batch = self.outbox[: self.max_batch]
                    del self.outbox[: self.max_batch]
                    await self.call.write(mesh_pb2.AdmissionBatch(requests=batch))
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 - a failed write ends the session
            self._fail(errors.Unavailable(f"review stream to {self.address}: {e}"))

    @property
    def usable(self) -> bool:
        return self.broken is None and not self.draining

    async def _read(self) -> None:
        try:
            while True:
                answers = await self.call.read()
                if not isinstance(answers, mesh_pb2.AdmissionAnswers):  # grpc.aio.EOF
                    raise errors.Unavailable(f"replica {self.address} closed the review stream")
                for answer in answers.responses:
                    future = self.pending.pop(answer.call_id, None)
                    if future is not None and not future.done():
                        future.set_result(answer)
                if self.draining and not self.pending:
                    break
        except grpc.aio.AioRpcError as e:
            self._fail(errors.Unavailable(f"review stream to {self.address}: {_rpc_text(e)}"))
        except asyncio.CancelledError:
            self._fail(errors.Unavailable(f"review stream to {self.address} was closed"))
            raise
        except Exception as e:  # noqa: BLE001 - every failure ends the session the same way
            self._fail(errors.Unavailable(f"review stream to {self.address}: {e}"))
        else:
            self.broken = errors.Unavailable("drained")
            with contextlib.suppress(Exception):
                await self.call.done_writing()

    def _fail(self, error: errors.MeshError) -> None:
        if self.broken is None and not self.draining:
            log.warning(
                "review stream failed", extra={"replica": self.address, "error": str(error)}
            )
        self.broken = error
        self.outbox.clear()
        pending, self.pending = self.pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(error)
        self.call.cancel()

    def drain(self) -> None:
        """Take no new calls; close once the waiting ones are answered."""
        self.draining = True
        if not self.pending:
            self.close()

    def close(self) -> None:
        self.draining = True
        if not self.reader.done():
            self.reader.cancel()
        if not self.writer.done():
            self.writer.cancel()
        self.call.cancel()


def _discard(sessions: set[_Session], session: _Session, _: object) -> None:
    sessions.discard(session)


def _checked(answer: mesh_pb2.AdmissionResponse, address: str) -> mesh_pb2.AdmissionResponse:
    """The answer, unless the service said it could not decide."""
    if answer.error:
        raise errors.Unavailable(f"replica {address} could not decide: {answer.error}")
    return answer


def _rpc_text(error: grpc.aio.AioRpcError) -> str:
    return f"{error.code().name}: {error.details() or ''}".rstrip(": ")


class ReplicaLink:
    """The gateway's admission connection to one service replica."""

    def __init__(
        self,
        address: str,
        *,
        mode: Mode = "stream",
        max_stream_age: float = 300.0,
        streams: int = 1,
        max_batch: int = 64,
        channel: grpc.aio.Channel | None = None,
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        self.max_batch = max_batch
        if mode not in ("stream", "unary"):
            raise ValueError(f"mode must be 'stream' or 'unary', got {mode!r}")
        if streams < 1:
            raise ValueError(f"streams must be at least 1, got {streams}")
        self.address = address
        self.mode: Mode = mode
        self.max_stream_age = max_stream_age
        self._channel = channel if channel is not None else insecure_channel(address)
        self._stub = mesh_pb2_grpc.MeshServiceStub(self._channel)
        self._sessions: list[_Session | None] = [None] * streams
        self._turn = 0
        self._retired: set[_Session] = set()
        self._ids = itertools.count(1)
        self._closed = False

    async def call(
        self, request: mesh_pb2.AdmissionRequest, *, timeout: float
    ) -> mesh_pb2.AdmissionResponse:
        """Send one review and wait at most ``timeout`` seconds for its answer.

        Raises ``errors.Unavailable`` on any transport failure and ``ReviewTimeout`` when
        the deadline passes. In stream mode ``request.call_id`` is overwritten.
        """
        if self._closed:
            raise errors.Unavailable(f"link to {self.address} is closed")
        if self.mode == "unary":
            return await self._unary(request, timeout=timeout)
        return await self._streamed(request, timeout=timeout)

    async def _unary(
        self, request: mesh_pb2.AdmissionRequest, *, timeout: float
    ) -> mesh_pb2.AdmissionResponse:
        try:
            return _checked(await self._stub.Review(request, timeout=timeout), self.address)
        except grpc.aio.AioRpcError as e:
            if e.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                raise ReviewTimeout(
                    f"replica {self.address} did not answer within {timeout:.3g}s"
                ) from e
            raise errors.Unavailable(f"replica {self.address}: {_rpc_text(e)}") from e

    def _current(self) -> _Session:
        slot = self._turn
        self._turn = (slot + 1) % len(self._sessions)
        session = self._sessions[slot]
        if session is not None and session.usable:
            if time.monotonic() - session.opened < self.max_stream_age:
                return session
            session.drain()
            if not session.reader.done():
                self._retired.add(session)
                session.reader.add_done_callback(
                    functools.partial(_discard, self._retired, session)
                )
        call: ReviewCall = self._stub.ReviewStream()
        session = _Session(call=call, address=self.address, max_batch=self.max_batch)
        self._sessions[slot] = session
        return session

    async def _streamed(
        self, request: mesh_pb2.AdmissionRequest, *, timeout: float
    ) -> mesh_pb2.AdmissionResponse:
        session = self._current()
        call_id = next(self._ids)
        request.call_id = call_id
        future: asyncio.Future[mesh_pb2.AdmissionResponse] = (
            asyncio.get_running_loop().create_future()
        )
        session.pending[call_id] = future
        try:
            async with asyncio.timeout(timeout):
                if session.broken is not None:
                    raise errors.Unavailable(str(session.broken))
                session.send(request)
                return _checked(await future, self.address)
        except TimeoutError as e:
            if request in session.outbox and session.broken is None:
                # Still unsent at the deadline: the replica stopped reading.
                session._fail(errors.Unavailable(f"replica {self.address} stopped reading"))
            raise ReviewTimeout(
                f"replica {self.address} did not answer within {timeout:.3g}s"
            ) from e
        except grpc.aio.AioRpcError as e:
            raise errors.Unavailable(f"review stream to {self.address}: {_rpc_text(e)}") from e
        except (grpc.aio.UsageError, asyncio.InvalidStateError) as e:
            raise errors.Unavailable(f"review stream to {self.address} is closed: {e}") from e
        finally:
            session.pending.pop(call_id, None)
            if session.draining and not session.pending:
                session.close()

    async def close(self) -> None:
        """Close the stream(s) and the channel; waiting calls fail with Unavailable."""
        self._closed = True
        sessions = [s for s in (*self._sessions, *self._retired) if s is not None]
        for session in sessions:
            session.close()
        for session in sessions:
            for task in (session.reader, session.writer):
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        await self._channel.close()


class AdmissionForwarder:
    """Sends each review to the replica that owns its service and namespace."""

    def __init__(
        self,
        *,
        route: Route,
        mode: Mode = "stream",
        max_stream_age: float = 300.0,
        streams: int = 1,
        max_batch: int = 64,
        tls: MeshTls | None = None,
    ) -> None:
        self._route = route
        self.tls = tls
        self.max_batch = max_batch
        self.mode: Mode = mode
        self.max_stream_age = max_stream_age
        self.streams = streams
        self._links: dict[str, ReplicaLink] = {}

    def link(self, address: str, *, service: str) -> ReplicaLink:
        """The link to ``address``, a replica of ``service``, created on first use (over
        mutual TLS checking the replica is one of the service's, when the mesh has TLS)."""
        link = self._links.get(address)
        if link is None:
            link = ReplicaLink(
                address,
                mode=self.mode,
                max_stream_age=self.max_stream_age,
                streams=self.streams,
                max_batch=self.max_batch,
                channel=mesh_channel(address, tls=self.tls, peer=service),
            )
            self._links[address] = link
        return link

    async def review(
        self,
        service: str,
        namespace: str,
        request: mesh_pb2.AdmissionRequest,
        *,
        timeout: float,
    ) -> mesh_pb2.AdmissionResponse:
        """The owning replica's answer to ``request``; raises ``errors.Unavailable``."""
        where = f"{service} (namespace {namespace or '<cluster>'!s})"
        address = self._route(service, namespace)
        if address is None:
            raise errors.Unavailable(f"no {where} replica is available")
        try:
            return await self.link(address, service=service).call(request, timeout=timeout)
        except ReviewTimeout as e:
            raise ReviewTimeout(f"{where} replica {address}: {e}") from e
        except errors.Unavailable as e:
            raise errors.Unavailable(f"{where} replica {address}: {e}") from e

    async def forget(self, address: str) -> None:
        """Close the link to a replica that left the ring."""
        link = self._links.pop(address, None)
        if link is not None:
            await link.close()

    async def close(self) -> None:
        links, self._links = list(self._links.values()), {}
        for link in links:
            await link.close()
