"""The mesh's error tree, mapped once to and from gRPC status codes.

Kubernetes answers (HTTP status) become these in the gateway's kube adapter;
servicers raise them; ``abort_with`` turns them into gRPC statuses; clients turn
``grpc.aio.AioRpcError`` back into them with ``from_rpc_error``::

    MeshError                      UNKNOWN
    ├── NotFound                   NOT_FOUND          (HTTP 404)
    ├── AlreadyExists              ALREADY_EXISTS     (HTTP 409 AlreadyExists)
    ├── Conflict                   ABORTED            (HTTP 409 Conflict, 410 Gone)
    ├── Invalid                    INVALID_ARGUMENT   (HTTP 400, 415, 422)
    ├── Forbidden                  PERMISSION_DENIED  (HTTP 401, 403)
    ├── Unauthenticated            UNAUTHENTICATED    (no mesh identity where one is required)
    ├── TooManyRequests            RESOURCE_EXHAUSTED (HTTP 429)
    ├── FailedPrecondition         FAILED_PRECONDITION
    └── Unavailable                UNAVAILABLE        (HTTP 5xx, connection errors, timeouts)
"""

from __future__ import annotations

from typing import NoReturn

import grpc


class MeshError(Exception):
    """Base of every error the mesh raises on purpose."""

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN
    http_status: int = 500


class NotFound(MeshError):
    code = grpc.StatusCode.NOT_FOUND
    http_status = 404


class AlreadyExists(MeshError):
    code = grpc.StatusCode.ALREADY_EXISTS
    http_status = 409


class Conflict(MeshError):
    """A precondition (resourceVersion, uid) no longer holds: re-read and re-decide."""

    code = grpc.StatusCode.ABORTED
    http_status = 409


class Invalid(MeshError):
    code = grpc.StatusCode.INVALID_ARGUMENT
    http_status = 422


class Forbidden(MeshError):
    code = grpc.StatusCode.PERMISSION_DENIED
    http_status = 403


class Unauthenticated(MeshError):
    """The caller did not prove who it is (no mesh client certificate, where one is needed)."""

    code = grpc.StatusCode.UNAUTHENTICATED
    http_status = 401


class TooManyRequests(MeshError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED
    http_status = 429


class FailedPrecondition(MeshError):
    code = grpc.StatusCode.FAILED_PRECONDITION
    http_status = 412


class Unavailable(MeshError):
    code = grpc.StatusCode.UNAVAILABLE
    http_status = 503


_BY_CODE: dict[grpc.StatusCode, type[MeshError]] = {
    cls.code: cls
    for cls in (
        NotFound,
        AlreadyExists,
        Conflict,
        Invalid,
        Forbidden,
        Unauthenticated,
        TooManyRequests,
        FailedPrecondition,
        Unavailable,
    )
}
_BY_CODE[grpc.StatusCode.DEADLINE_EXCEEDED] = Unavailable


def from_http(status: int, message: str, *, reason: str = "") -> MeshError:
    """The error for an HTTP status from the Kubernetes API."""
    if status == 404:
        return NotFound(message)
    if status == 409:
        return AlreadyExists(message) if reason == "AlreadyExists" else Conflict(message)
    if status == 410:
        return Conflict(message)
    if status in (400, 415, 422):
        return Invalid(message)
    if status in (401, 403):
        return Forbidden(message)
    if status == 429:
        return TooManyRequests(message)
    if status >= 500:
        return Unavailable(message)
    return MeshError(f"HTTP {status}: {message}")


def from_rpc_error(error: grpc.aio.AioRpcError) -> MeshError:
    """The mesh error a failed call stands for (UNKNOWN and others → MeshError)."""
    cls = _BY_CODE.get(error.code(), MeshError)
    return cls(error.details() or error.code().name)


async def abort_with(
    context: grpc.aio.ServicerContext[object, object], error: MeshError
) -> NoReturn:
    """End the current RPC with the status code ``error`` stands for."""
    await context.abort(error.code, str(error))
    raise AssertionError("unreachable")  # context.abort always raises
