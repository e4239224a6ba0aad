"""An async client for ``kruise.rollout.v1.RolloutService``, the API rollout tools drive.

One address for every namespace: the gateway's API port (in a cluster the Service
``kruise-mesh-rollout-api:7070``), which forwards each call to the rollout replica that
owns the namespace::

    async with RolloutClient.connect("127.0.0.1:7070", token=TOKEN, ca_file="ca.crt") as client:
        status = await client.get("demo", "web")
        await client.set_partition(
            "demo", "web", partition="50%", expected_update_revision=status.status.update_revision
        )
        async for event in client.watch("demo", name="web"):
            print(event.type, event.status.summary)

The channel pings every 30 s (a watch can stay quiet for minutes) and retries every call
on UNAVAILABLE inside gRPC (service config): reads and Watch re-opens are idempotent, and
so are ``set_partition`` and ``release``, whose ``request_id`` (a fresh uuid4 unless given)
makes a retried write answer "applied" again instead of losing its own compare-and-set.

``watch`` survives broken streams: a stream that ends, goes quiet past three bookmark
periods, or fails with UNAVAILABLE is re-opened from the last ``version`` (backoff
0.1 s → 2 s with jitter); a resume the server cannot serve (ABORTED with reason
RESOURCE_VERSION_EXPIRED) becomes a fresh listing, compared with what was already told
(``WatchStory``), so the consumer sees one continuous story with nothing missed.

Errors are turned into one tree, once, here (``from_rpc_error``; ``raise ... from e``).
Each carries the gRPC code, the ``google.rpc.ErrorInfo`` reason and metadata, and the
``BadRequest`` / ``PreconditionFailure`` details, read with ``grpc_status.rpc_status``::

    RolloutError                    any failed call (UNKNOWN, INTERNAL, ... stay here)
    ├── WorkloadNotFound            NOT_FOUND            WORKLOAD_NOT_FOUND
    ├── InvalidRequest              INVALID_ARGUMENT     INVALID_REQUEST, UNSUPPORTED_KIND
    │                                                    (also raised before a call for a
    │                                                    malformed "50%" / "5")
    ├── PreconditionFailed          FAILED_PRECONDITION  UPDATE_REVISION_CHANGED, UID_CHANGED,
    │                                                    PARTITION_WOULD_RISE,
    │                                                    CONTROLLED_BY_OTHER
    ├── Conflict                    ABORTED              RESOURCE_VERSION_CHANGED: read again
    │   └── VersionExpired          ABORTED              RESOURCE_VERSION_EXPIRED (``watch``
    │                                                    handles it; other callers relist)
    ├── Unavailable                 UNAVAILABLE, DEADLINE_EXCEEDED (after the retries)
    ├── Unauthenticated             UNAUTHENTICATED      no token, or the gateway refused it
    └── PermissionDenied            PERMISSION_DENIED    the caller's user may not (RBAC)
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import re
import uuid
from collections.abc import AsyncGenerator, Callable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Literal, TypeVar

import grpc
from google.protobuf import message as pb_message
from google.rpc import status_pb2
from grpc_status import rpc_status

from kruise.rollout.v1 import rollout_pb2, rollout_pb2_grpc
from services.cli.credentials import ApiCredentials, Token
from services.kit import rich

log = logging.getLogger(__name__)

SERVICE = "kruise.rollout.v1.RolloutService"
DOMAIN = "rollout.kruise-mesh.io"
DEFAULT_TARGET = "127.0.0.1:7070"
# Per-call deadline for the unary calls (GetRolloutStatus may wait up to 5 s for
# min_resource_version on the server).
DEFAULT_TIMEOUT_S = 10.0

# ErrorInfo reasons (rollout.proto's header).
WORKLOAD_NOT_FOUND = "WORKLOAD_NOT_FOUND"
INVALID_REQUEST = "INVALID_REQUEST"
UNSUPPORTED_KIND = "UNSUPPORTED_KIND"
UPDATE_REVISION_CHANGED = "UPDATE_REVISION_CHANGED"
UID_CHANGED = "UID_CHANGED"
PARTITION_WOULD_RISE = "PARTITION_WOULD_RISE"
CONTROLLED_BY_OTHER = "CONTROLLED_BY_OTHER"
RESOURCE_VERSION_CHANGED = "RESOURCE_VERSION_CHANGED"
RESOURCE_VERSION_EXPIRED = "RESOURCE_VERSION_EXPIRED"

# Watch re-open backoff: 0.1 s doubling to 2 s, each delay jittered into [d/2, d].
BACKOFF_INITIAL_S = 0.1
BACKOFF_MAX_S = 2.0
DEFAULT_BOOKMARK_S = 30
# A stream with neither an event nor a bookmark for this many bookmark periods (plus a
# margin) is dead, even if its connection still answers pings (a stuck proxy).
IDLE_BOOKMARK_PERIODS = 3
IDLE_MARGIN_S = 10.0

# Keepalive for long quiet watches (ECOSYSTEM 4): ping every 30 s while a call is open;
# the gateway's server allows pings every 10 s.
KEEPALIVE: list[tuple[str, int]] = [
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 0),
    ("grpc.http2.max_pings_without_data", 0),
]
MAX_MESSAGE = 64 * 1024 * 1024

Pb = rollout_pb2
Req = TypeVar("Req", bound=pb_message.Message)
Resp = TypeVar("Resp", bound=pb_message.Message)
EventType = Literal["ADDED", "MODIFIED", "DELETED", "BOOKMARK"]
Key = tuple[str, str]


# --- errors ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FieldViolation:
    """One ``google.rpc.BadRequest`` field violation: ``partition.percent``, and why."""

    field: str
    description: str


@dataclass(frozen=True, slots=True)
class PreconditionViolation:
    """One ``google.rpc.PreconditionFailure`` violation (type such as ``REVISION``)."""

    type: str
    subject: str
    description: str


class RolloutError(Exception):
    """A failed RolloutService call: its code, message and the details a program reads."""

    def __init__(
        self,
        message: str,
        *,
        code: grpc.StatusCode = grpc.StatusCode.UNKNOWN,
        reason: str = "",
        metadata: Mapping[str, str] | None = None,
        violations: tuple[FieldViolation, ...] = (),
        preconditions: tuple[PreconditionViolation, ...] = (),
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.reason = reason
        self.metadata: dict[str, str] = dict(metadata or {})
        self.violations = violations
        self.preconditions = preconditions

    def __str__(self) -> str:
        return self.message

    def describe(self) -> list[str]:
        """For people: ``CODE (REASON): message``, then a line per field or precondition
        named (the server's own description when it adds to the message)."""
        head = self.code.name + (f" ({self.reason})" if self.reason else "")
        lines = [f"{head}: {self.message}"]
        for v in self.violations:
            lines.append(
                f"  field {v.field}"
                if v.description == self.message
                else f"  {v.field}: {v.description}"
            )
        for p in self.preconditions:
            kind = "" if p.type == self.reason else p.type
            what = " ".join(filter(None, (kind, p.subject))) or "precondition"
            lines.append(
                f"  {what}" if p.description == self.message else f"  {what}: {p.description}"
            )
        return lines


class WorkloadNotFound(RolloutError):
    """NOT_FOUND: the CloneSet does not exist."""


class InvalidRequest(RolloutError):
    """INVALID_ARGUMENT: a missing or malformed field, named in ``violations``."""


class PreconditionFailed(RolloutError):
    """FAILED_PRECONDITION: do not retry until the state changes (see ``reason``)."""


class Conflict(RolloutError):
    """ABORTED: the compare-and-set lost; read again, then decide again."""


class VersionExpired(Conflict):
    """ABORTED, RESOURCE_VERSION_EXPIRED: a watch's resume version is too old; relist."""


class Unavailable(RolloutError):
    """UNAVAILABLE or DEADLINE_EXCEEDED, after the channel's own retries."""


class Unauthenticated(RolloutError):
    """UNAUTHENTICATED: no token, or the gateway's TokenReview refused it."""


class PermissionDenied(RolloutError):
    """PERMISSION_DENIED: the caller's user may not do this (a SubjectAccessReview said no)."""


_BY_CODE: dict[grpc.StatusCode, type[RolloutError]] = {
    grpc.StatusCode.NOT_FOUND: WorkloadNotFound,
    grpc.StatusCode.INVALID_ARGUMENT: InvalidRequest,
    grpc.StatusCode.FAILED_PRECONDITION: PreconditionFailed,
    grpc.StatusCode.ABORTED: Conflict,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: Unavailable,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
}


def rich_status(error: grpc.aio.AioRpcError) -> status_pb2.Status | None:
    """The ``google.rpc.Status`` a failed call carries in its trailers, if any.

    ``rpc_status.from_call`` refuses a status whose code or message differs from the
    call's (a proxy may reword the message); the details are still read then.
    """
    try:
        found: status_pb2.Status | None = rpc_status.from_call(error)
        return found
    except ValueError:
        for key, value in error.trailing_metadata() or ():
            if key == "grpc-status-details-bin" and isinstance(value, bytes):
                return status_pb2.Status.FromString(value)
        return None


def error_from_status(
    code: grpc.StatusCode, message: str, status: status_pb2.Status | None
) -> RolloutError:
    """The typed error for a status code and its rich details. Pure."""
    details = rich.details_of(status)
    reason = details.info.reason if details.info is not None else ""
    metadata = dict(details.info.metadata) if details.info is not None else {}
    violations = [FieldViolation(v.field, v.description) for v in details.fields]
    preconditions = [
        PreconditionViolation(v.type, v.subject, v.description) for v in details.preconditions
    ]
    cls = _BY_CODE.get(code, RolloutError)
    if cls is Conflict and reason == RESOURCE_VERSION_EXPIRED:
        cls = VersionExpired
    return cls(
        message or code.name,
        code=code,
        reason=reason,
        metadata=metadata,
        violations=tuple(violations),
        preconditions=tuple(preconditions),
    )


def from_rpc_error(error: grpc.aio.AioRpcError) -> RolloutError:
    """The typed error a failed call stands for, with its details parsed."""
    return error_from_status(error.code(), error.details() or "", rich_status(error))


# --- requests (pure) ------------------------------------------------------------------

_PERCENT = re.compile(r"^\s*(\d+)\s*%\s*$")
_COUNT = re.compile(r"^\s*(\d+)\s*$")


def int_or_percent(value: int | str, *, field: str) -> Pb.IntOrPercent:
    """``5`` or ``"5"`` → a count; ``"50%"`` → a percent. Pure.

    Only the form is checked here ("50" is a count, "50%" a percent, anything else is
    refused naming ``field``); the server checks ranges (a percent over 100%, a count
    over spec.replicas).

    >>> int_or_percent("50%", field="partition")
    percent: "50%"
    <BLANKLINE>
    >>> int_or_percent(" 5 ", field="partition").count
    5
    """
    if isinstance(value, bool):
        raise _invalid(field, f"{value!r} is not a count or a percent such as 5 or '50%'")
    if isinstance(value, int):
        return Pb.IntOrPercent(count=value)
    if percent := _PERCENT.match(value):
        return Pb.IntOrPercent(percent=f"{int(percent.group(1))}%")
    if count := _COUNT.match(value):
        return Pb.IntOrPercent(count=int(count.group(1)))
    raise _invalid(field, f"{value!r} is not a count or a percent such as 5 or '50%'")


def format_int_or_percent(value: Pb.IntOrPercent | None) -> str:
    """``count: 5`` → ``5``, ``percent: "50%"`` → ``50%``, unset → ``null``. Pure."""
    if value is None or value.WhichOneof("value") is None:
        return "null"
    return value.percent if value.WhichOneof("value") == "percent" else str(value.count)


def _invalid(field: str, description: str) -> InvalidRequest:
    return InvalidRequest(
        f"{field}: {description}",
        code=grpc.StatusCode.INVALID_ARGUMENT,
        reason=INVALID_REQUEST,
        violations=(FieldViolation(field, description),),
    )


def workload_ref(namespace: str, name: str = "") -> Pb.WorkloadRef:
    return Pb.WorkloadRef(
        api_version="apps.kruise.io/v1alpha1", kind="CloneSet", namespace=namespace, name=name
    )


def set_partition_request(
    namespace: str,
    name: str,
    *,
    partition: int | str | None,
    paused: bool | None = None,
    rollout_id: str = "",
    expected_update_revision: str = "",
    expected_resource_version: str = "",
    allow_increase: bool = False,
    dry_run: bool = False,
    request_id: str = "",
) -> Pb.SetPartitionRequest:
    """The SetPartition request for these arguments; None leaves a field as it is. Pure."""
    request = Pb.SetPartitionRequest(
        ref=workload_ref(namespace, name),
        rollout_id=rollout_id,
        expected_update_revision=expected_update_revision,
        expected_resource_version=expected_resource_version,
        allow_increase=allow_increase,
        dry_run=dry_run,
        request_id=request_id,
    )
    if partition is not None:
        request.partition.CopyFrom(int_or_percent(partition, field="partition"))
    if paused is not None:
        request.paused = paused
    return request


def check_batch_request(
    namespace: str,
    name: str,
    *,
    desired: int | None = None,
    batch: int | str | None = None,
    failure_threshold: int | str | None = None,
    rollout_id: str = "",
    require_available: bool = False,
) -> Pb.CheckBatchRequest:
    """The CheckBatch request: ``desired`` pods, or ``batch`` as Kruise Rollout plans it.

    Pure. Both at once is refused (the target is a oneof); neither leaves the target to
    the server.
    """
    if desired is not None and batch is not None:
        raise _invalid("target", "give desired_updated_replicas or batch, not both")
    request = Pb.CheckBatchRequest(
        ref=workload_ref(namespace, name),
        rollout_id=rollout_id,
        require_available=require_available,
    )
    if desired is not None:
        request.desired_updated_replicas = desired
    if batch is not None:
        request.batch.CopyFrom(int_or_percent(batch, field="batch"))
    if failure_threshold is not None:
        request.failure_threshold.CopyFrom(
            int_or_percent(failure_threshold, field="failure_threshold")
        )
    return request


def release_request(
    namespace: str,
    name: str,
    *,
    promote: bool,
    rollout_id: str = "",
    force: bool = False,
    dry_run: bool = False,
    request_id: str = "",
) -> Pb.ReleaseRequest:
    """The Release request (Kruise Rollout's Finalize). Pure."""
    return Pb.ReleaseRequest(
        ref=workload_ref(namespace, name),
        promote=promote,
        rollout_id=rollout_id,
        force=force,
        dry_run=dry_run,
        request_id=request_id,
    )


def service_config(*, timeout_s: float = DEFAULT_TIMEOUT_S) -> str:
    """The channel's service config: every method retried on UNAVAILABLE.

    The pattern of ``services.kit.rpc.service_config``, with two entries: the unary
    calls get a default deadline, the watch none (it lives for hours; gRPC retries a
    stream only until its first message, so this covers the re-open, and ``watch``
    resumes the rest).
    """
    retry = {
        "maxAttempts": 4,
        "initialBackoff": "0.1s",
        "maxBackoff": "2s",
        "backoffMultiplier": 2,
        "retryableStatusCodes": ["UNAVAILABLE"],
    }
    unary = ["GetRolloutStatus", "CheckBatch", "SetPartition", "Release"]
    config = {
        "methodConfig": [
            {
                "name": [{"service": SERVICE, "method": m} for m in unary],
                "timeout": f"{timeout_s}s",
                "retryPolicy": retry,
            },
            {
                "name": [{"service": SERVICE, "method": "WatchRolloutStatus"}],
                "retryPolicy": retry,
            },
        ],
        "retryThrottling": {"maxTokens": 20, "tokenRatio": 0.2},
    }
    return json.dumps(config)


def backoff(attempt: int, *, rand: Callable[[], float] = random.random) -> float:
    """Seconds before watch re-open number ``attempt`` (from 0). Pure given ``rand``.

    ``min(2, 0.1 * 2**attempt)`` with "equal jitter": half of it fixed, half random, so
    the watchers a restarted replica drops do not all come back at once.

    >>> [round(backoff(a, rand=lambda: 1.0), 2) for a in range(7)]
    [0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0]
    >>> backoff(0, rand=lambda: 0.0)
    0.05
    """
    ceiling = min(BACKOFF_MAX_S, BACKOFF_INITIAL_S * 2.0 ** min(attempt, 16))
    return ceiling / 2 + ceiling / 2 * rand()


# --- the watch story (pure) -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WatchEvent:
    """One change of one CloneSet's rollout status, or a BOOKMARK (no status)."""

    type: EventType
    status: Pb.RolloutStatus
    # Where the stream was after this event (the server's opaque resume point).
    version: str = ""
    # On the BOOKMARK that closes a listing (the first one, or one after an expiry).
    initial_events_end: bool = False

    @property
    def key(self) -> Key:
        return (self.status.ref.namespace, self.status.ref.name)


_TYPES: dict[int, EventType] = {
    Pb.WatchRolloutStatusResponse.TYPE_ADDED: "ADDED",
    Pb.WatchRolloutStatusResponse.TYPE_MODIFIED: "MODIFIED",
    Pb.WatchRolloutStatusResponse.TYPE_DELETED: "DELETED",
    Pb.WatchRolloutStatusResponse.TYPE_BOOKMARK: "BOOKMARK",
}


@dataclass
class WatchStory:
    """What a consumer of ``watch`` has been told, and the server responses that follow.

    Pure; no I/O. ``RolloutClient.watch`` opens streams and feeds each response to
    ``receive``; the events it returns are what the consumer sees, normalised so the
    story stays continuous across re-opens and relistings:

    - ADDED the first time a CloneSet is told, MODIFIED when its status differs from the
      last one told, nothing when it is identical (a replayed or relisted event);
    - DELETED once, for a CloneSet that was told; nothing for one never told;
    - a listing (a stream opened without a version: the first, or the one after
      RESOURCE_VERSION_EXPIRED) is the whole set: when its ``initial_events_end``
      arrives, every CloneSet told before and absent from it is DELETED.

    ``resume_version`` is where to re-open; empty while a listing is incomplete (a
    version from the middle of a listing would skip the rest of it).
    """

    known: dict[Key, Pb.RolloutStatus] = field(default_factory=dict)
    version: str = ""
    listing: bool = True
    listed: set[Key] = field(default_factory=set)

    @property
    def resume_version(self) -> str:
        return "" if self.listing else self.version

    def opening(self) -> None:
        """A stream is being opened from ``resume_version``; without one it lists."""
        if not self.resume_version:
            self.listing = True
            self.listed = set()

    def expired(self) -> None:
        """The server cannot resume from ``version``: the next stream lists again."""
        self.version = ""
        self.listing = True
        self.listed = set()

    def receive(self, response: Pb.WatchRolloutStatusResponse) -> list[WatchEvent]:
        """The events to tell for one server response (none, one, or the DELETEDs)."""
        if response.version:
            self.version = response.version
        kind = _TYPES.get(response.type)
        if kind is None:
            return []
        if kind == "BOOKMARK":
            events: list[WatchEvent] = []
            if response.initial_events_end and self.listing:
                for key in [k for k in self.known if k not in self.listed]:
                    gone = self.known.pop(key)
                    events.append(WatchEvent("DELETED", gone, response.version))
                self.listing = False
                self.listed = set()
            bookmark = WatchEvent(
                "BOOKMARK",
                Pb.RolloutStatus(),
                response.version,
                initial_events_end=response.initial_events_end,
            )
            return [*events, bookmark]
        status = response.status
        key = (status.ref.namespace, status.ref.name)
        if kind == "DELETED":
            self.listed.discard(key)
            if self.known.pop(key, None) is None:
                return []
            return [WatchEvent("DELETED", status, response.version)]
        if self.listing:
            self.listed.add(key)
        before = self.known.get(key)
        if before is not None and before == status:
            return []
        self.known[key] = status
        told: EventType = "ADDED" if before is None else "MODIFIED"
        return [WatchEvent(told, status, response.version)]


# --- the client -----------------------------------------------------------------------


class RolloutClient:
    """RolloutService over one channel to the gateway's API port."""

    def __init__(self, channel: grpc.aio.Channel, *, timeout: float = DEFAULT_TIMEOUT_S) -> None:
        self.channel = channel
        self.timeout = timeout
        self._stub = rollout_pb2_grpc.RolloutServiceStub(channel)

    @classmethod
    def connect(
        cls,
        target: str,
        *,
        timeout: float = DEFAULT_TIMEOUT_S,
        token: str | None = None,
        ca_file: str | None = None,
        plaintext: bool | None = None,
        credentials: ApiCredentials | None = None,
    ) -> RolloutClient:
        """A client for ``target`` (``host:port``); the channel connects on first use.

        ``token`` (the caller's Kubernetes token) goes with every call, over TLS only:
        checked with ``ca_file`` (the gateway's CA; the system's roots without it). Without
        a token and a CA the channel is plain (``plaintext`` None), as a gateway run with
        ``--api-auth off`` on loopback serves; ``plaintext=True`` with a token is refused.
        ``credentials`` (the CLI's, ``services.cli.credentials``) replace all three.
        """
        if plaintext is None:
            plaintext = token is None and ca_file is None
        if plaintext and token:
            raise ValueError("a token is sent over TLS only: drop plaintext, or the token")
        creds = credentials or ApiCredentials(
            token=Token(token, "RolloutClient.connect(token=...)") if token else None,
            ca_file=ca_file,
            plaintext=plaintext,
        )
        options: list[tuple[str, int | str]] = [
            *KEEPALIVE,
            ("grpc.max_receive_message_length", MAX_MESSAGE),
            ("grpc.max_send_message_length", MAX_MESSAGE),
            ("grpc.enable_retries", 1),
            ("grpc.service_config", service_config(timeout_s=timeout)),
        ]
        return cls(creds.channel(target, options=options), timeout=timeout)

    async def close(self) -> None:
        await self.channel.close()

    async def __aenter__(self) -> RolloutClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def _unary(
        self, method: grpc.aio.UnaryUnaryMultiCallable[Req, Resp], request: Req
    ) -> Resp:
        try:
            return await method(request, timeout=self.timeout)
        except grpc.aio.AioRpcError as e:
            raise from_rpc_error(e) from e

    async def get(
        self, namespace: str, name: str, *, min_resource_version: str = ""
    ) -> Pb.RolloutStatus:
        """The CloneSet's rollout status; ``min_resource_version`` reads your own write."""
        request = Pb.GetRolloutStatusRequest(
            ref=workload_ref(namespace, name), min_resource_version=min_resource_version
        )
        answer = await self._unary(self._stub.GetRolloutStatus, request)
        return answer.status

    async def set_partition(
        self,
        namespace: str,
        name: str,
        *,
        partition: int | str | None,
        paused: bool | None = None,
        rollout_id: str = "",
        expected_update_revision: str = "",
        expected_resource_version: str = "",
        allow_increase: bool = False,
        dry_run: bool = False,
        request_id: str = "",
    ) -> Pb.SetPartitionResponse:
        """Set the partition (a count, ``"50%"``, or None to leave it) and/or paused."""
        request = set_partition_request(
            namespace,
            name,
            partition=partition,
            paused=paused,
            rollout_id=rollout_id,
            expected_update_revision=expected_update_revision,
            expected_resource_version=expected_resource_version,
            allow_increase=allow_increase,
            dry_run=dry_run,
            request_id=request_id or str(uuid.uuid4()),
        )
        return await self._unary(self._stub.SetPartition, request)

    async def check_batch(
        self,
        namespace: str,
        name: str,
        *,
        desired: int | None = None,
        batch: int | str | None = None,
        failure_threshold: int | str | None = None,
        rollout_id: str = "",
        require_available: bool = False,
    ) -> Pb.CheckBatchResponse:
        """Kruise Rollout's IsBatchReady (or Argo's, ``require_available``): ready, and why."""
        request = check_batch_request(
            namespace,
            name,
            desired=desired,
            batch=batch,
            failure_threshold=failure_threshold,
            rollout_id=rollout_id,
            require_available=require_available,
        )
        return await self._unary(self._stub.CheckBatch, request)

    async def release(
        self,
        namespace: str,
        name: str,
        *,
        promote: bool,
        rollout_id: str = "",
        force: bool = False,
        dry_run: bool = False,
        request_id: str = "",
    ) -> Pb.ReleaseResponse:
        """Kruise Rollout's Finalize: ``promote`` clears the partition and unpauses."""
        request = release_request(
            namespace,
            name,
            promote=promote,
            rollout_id=rollout_id,
            force=force,
            dry_run=dry_run,
            request_id=request_id or str(uuid.uuid4()),
        )
        return await self._unary(self._stub.Release, request)

    async def watch(
        self,
        namespace: str,
        *,
        name: str = "",
        label_selector: str = "",
        bookmarks: bool = False,
        bookmark_seconds: int = 0,
    ) -> AsyncGenerator[WatchEvent, None]:
        """Every change of one CloneSet (``name``) or of a namespace's (``label_selector``).

        First the current state (ADDED each), then every change, for as long as the
        consumer iterates; broken streams are resumed and expired versions relisted (see
        ``WatchStory``). BOOKMARKs are yielded only with ``bookmarks``. Raises a
        ``RolloutError`` for what resuming cannot fix (INVALID_ARGUMENT, say).
        """
        story = WatchStory()
        period = bookmark_seconds or DEFAULT_BOOKMARK_S
        idle = IDLE_BOOKMARK_PERIODS * period + IDLE_MARGIN_S
        attempt = 0
        while True:
            story.opening()
            request = Pb.WatchRolloutStatusRequest(
                ref=workload_ref(namespace, name),
                label_selector=label_selector,
                resume_version=story.resume_version,
                bookmark_seconds=bookmark_seconds,
            )
            call = self._stub.WatchRolloutStatus(request)
            why = "the stream ended"
            try:
                while True:
                    async with asyncio.timeout(idle):
                        response = await call.read()
                    if not isinstance(response, Pb.WatchRolloutStatusResponse):
                        break  # grpc.aio.EOF: the server ended the stream
                    attempt = 0
                    for event in story.receive(response):
                        if event.type != "BOOKMARK" or bookmarks:
                            yield event
            except TimeoutError:
                why = f"nothing for {idle:.0f}s"
            except grpc.aio.AioRpcError as e:
                error = from_rpc_error(e)
                if isinstance(error, VersionExpired) and story.resume_version:
                    log.info("watch %s: %s; listing again", namespace, error)
                    story.expired()
                    continue
                if not isinstance(error, Unavailable):
                    raise error from e
                why = str(error)
            finally:
                call.cancel()
            delay = backoff(attempt)
            attempt += 1
            log.info(
                "watch %s: %s; resuming from %r in %.2fs",
                namespace,
                why,
                story.resume_version,
                delay,
            )
            await asyncio.sleep(delay)
