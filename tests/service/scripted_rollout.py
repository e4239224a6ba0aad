"""A RolloutService that answers from a script: the far end for client and CLI tests.

It is not the thing under test. Each unary method answers from its queue (the last answer
repeats; a ``grpc.Status`` ends the call with that status, rich details included); each
``WatchRolloutStatus`` stream plays the next script: responses are sent, ``Fail(status)``
ends the stream with a status, ``END`` ends it cleanly, and when a script runs out the
stream stays open. Every request is recorded.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import grpc

from kruise.common.v1 import views_pb2
from kruise.rollout.v1 import rollout_pb2 as pb
from kruise.rollout.v1 import rollout_pb2_grpc
from services.kit.rich import Problem, status_of
from services.kit.rpc import Server, create_server

Watch = pb.WatchRolloutStatusResponse
DOMAIN = "rollout.kruise-mesh.io"


@dataclass(frozen=True)
class Fail:
    """End the stream with this status."""

    status: grpc.Status


END = object()


def rich_error(
    code: grpc.StatusCode,
    message: str,
    *,
    reason: str = "",
    field: str = "",
    subject: str = "",
    metadata: dict[str, str] | None = None,
) -> grpc.Status:
    """A status with google.rpc details, built as the rollout API builds them."""
    return status_of(
        Problem(
            code,
            message,
            reason=reason,
            domain=DOMAIN,
            metadata=metadata or {},
            field=field,
            subject=subject,
        )
    )


def rollout_status(
    name: str = "web",
    *,
    ns: str = "demo",
    replicas: int = 10,
    updated: int = 0,
    ready: int = 0,
    expected: int = 0,
    partition: str | int | None = None,
    partition_replicas: int = 0,
    generation: int = 1,
    observed: int | None = None,
    batch_complete: bool = False,
    rollout_complete: bool = False,
    revision: str = "web-new",
    resource_version: str = "1",
    summary: str = "",
) -> pb.RolloutStatus:
    status = pb.RolloutStatus(
        ref=pb.WorkloadRef(
            api_version="apps.kruise.io/v1alpha1", kind="CloneSet", namespace=ns, name=name
        ),
        generation=generation,
        resource_version=resource_version,
        spec_replicas=replicas,
        status=views_pb2.CloneSetStatus(
            observed_generation=generation if observed is None else observed,
            replicas=replicas,
            ready_replicas=replicas,
            updated_replicas=updated,
            updated_ready_replicas=ready,
            expected_updated_replicas=expected,
            update_revision=revision,
            current_revision="web-old",
        ),
        partition_replicas=partition_replicas,
        batch_complete=batch_complete,
        rollout_complete=rollout_complete,
        summary=summary,
    )
    if isinstance(partition, str):
        status.partition.percent = partition
    elif isinstance(partition, int):
        status.partition.count = partition
    return status


def event(kind: Any, status: pb.RolloutStatus, version: str) -> Watch:
    return Watch(type=kind, status=status, version=version)


def end_of_listing(version: str) -> Watch:
    return Watch(type=Watch.TYPE_BOOKMARK, version=version, initial_events_end=True)


class ScriptedRollout(rollout_pb2_grpc.RolloutServiceServicer):
    def __init__(self) -> None:
        self.requests: dict[str, list[Any]] = defaultdict(list)
        self.answers: dict[str, list[Any]] = defaultdict(list)
        self.watches: list[list[Any]] = []
        self.streams_opened = 0

    async def _answer(self, method: str, request: Any, context: Any) -> Any:
        self.requests[method].append(request)
        queue = self.answers[method]
        assert queue, f"no scripted answer for {method}"
        answer = queue.pop(0) if len(queue) > 1 else queue[0]
        if isinstance(answer, grpc.Status):
            await context.abort_with_status(answer)
        return answer

    async def GetRolloutStatus(self, request, context):
        return await self._answer("GetRolloutStatus", request, context)

    async def SetPartition(self, request, context):
        return await self._answer("SetPartition", request, context)

    async def CheckBatch(self, request, context):
        return await self._answer("CheckBatch", request, context)

    async def Release(self, request, context):
        return await self._answer("Release", request, context)

    async def WatchRolloutStatus(self, request, context):
        self.requests["WatchRolloutStatus"].append(request)
        script = (
            self.watches[self.streams_opened] if self.streams_opened < len(self.watches) else []
        )
        self.streams_opened += 1
        for step in script:
            if step is END:
                return
            if isinstance(step, Fail):
                await context.abort_with_status(step.status)
            await context.write(step)
        await asyncio.Event().wait()  # the stream stays open


async def serve(scripted: ScriptedRollout, *, port: int = 0) -> Server:
    return await create_server(
        register=[lambda s: rollout_pb2_grpc.add_RolloutServiceServicer_to_server(scripted, s)],
        service_names=["kruise.rollout.v1.RolloutService"],
        port=port,
    )
