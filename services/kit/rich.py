"""gRPC errors a program can read: ``google.rpc.Status`` with ErrorInfo, BadRequest and
PreconditionFailure details (grpcio-status), carried in the ``grpc-status-details-bin``
trailer beside the plain code and message.

    await abort(context, Problem(grpc.StatusCode.FAILED_PRECONDITION, "revision moved",
                                 reason="UPDATE_REVISION_CHANGED", domain=DOMAIN,
                                 subject="status.updateRevision"))

A client reads them back with ``grpc_status.rpc_status.from_call`` (or ``.aio``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NoReturn

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status


@dataclass(frozen=True)
class Problem:
    """Why a call failed: the code, a message for people, and the details for programs.

    ``field`` makes a BadRequest violation (INVALID_ARGUMENT); ``subject`` a
    PreconditionFailure violation (FAILED_PRECONDITION, ABORTED).
    """

    code: grpc.StatusCode
    message: str
    reason: str
    domain: str
    metadata: Mapping[str, str] = field(default_factory=dict)
    field: str = ""
    subject: str = ""


def status_of(problem: Problem) -> grpc.Status:
    """The ``grpc.Status`` (code, message, details trailer) for ``problem``."""
    details: list[Any] = [
        error_details_pb2.ErrorInfo(
            reason=problem.reason, domain=problem.domain, metadata=dict(problem.metadata)
        )
    ]
    if problem.field:
        details.append(
            error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(
                        field=problem.field, description=problem.message
                    )
                ]
            )
        )
    if problem.subject:
        details.append(
            error_details_pb2.PreconditionFailure(
                violations=[
                    error_details_pb2.PreconditionFailure.Violation(
                        type=problem.reason, subject=problem.subject, description=problem.message
                    )
                ]
            )
        )
    packed = []
    for detail in details:
        holder = any_pb2.Any()
        holder.Pack(detail)
        packed.append(holder)
    message = status_pb2.Status(code=problem.code.value[0], message=problem.message, details=packed)
    status: grpc.Status = rpc_status.to_status(message)
    return status


async def abort(context: grpc.aio.ServicerContext[Any, Any], problem: Problem) -> NoReturn:
    """End the current RPC with ``problem``."""
    await context.abort_with_status(status_of(problem))
    raise AssertionError("unreachable")  # abort_with_status always raises


@dataclass(frozen=True)
class Details:
    """What a ``google.rpc.Status`` says to programs, unpacked once: its ErrorInfo (the
    first), BadRequest field violations and PreconditionFailure violations, in order."""

    info: error_details_pb2.ErrorInfo | None = None
    fields: tuple[error_details_pb2.BadRequest.FieldViolation, ...] = ()
    preconditions: tuple[error_details_pb2.PreconditionFailure.Violation, ...] = ()


def details_of(status: status_pb2.Status | None) -> Details:
    """The details of ``status`` (none for None); kinds other than the three are skipped."""
    info = None
    fields: list[error_details_pb2.BadRequest.FieldViolation] = []
    preconditions: list[error_details_pb2.PreconditionFailure.Violation] = []
    for detail in status.details if status is not None else ():
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            found = error_details_pb2.ErrorInfo()
            detail.Unpack(found)
            info = info or found
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            fields += bad.field_violations
        elif detail.Is(error_details_pb2.PreconditionFailure.DESCRIPTOR):
            failure = error_details_pb2.PreconditionFailure()
            detail.Unpack(failure)
            preconditions += failure.violations
    return Details(info, tuple(fields), tuple(preconditions))


def error_info(status: status_pb2.Status | None) -> error_details_pb2.ErrorInfo | None:
    """The ErrorInfo among a status's details, if any (for clients and tests)."""
    return details_of(status).info
