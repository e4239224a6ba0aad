"""The rollout-tools step of the demo: a three-batch rollout driven over gRPC.

What a rollout tool (an Argo Rollouts step plugin, a script) does, through the one address
tools use, the gateway's API port (``kruise.rollout.v1.RolloutService``):

1. claim the CloneSet for a rollout id and hold every pod (``SetPartition`` 100%);
2. change the pod template through the Kubernetes API (what ``kubectl apply`` does);
3. per batch (67%, 33%, 0 kept): ``SetPartition`` preconditioned on the update revision the
   tool planned for, then wait for ``batch_complete`` on the watch, which prints each step,
   and for ``CheckBatch`` with the rollout id: Kruise Rollout's batch rule, whose last part
   counts the pods the controller labelled ``rollouts.kruise.io/rollout-id=demo-1``;
4. ``Release``: the partition is cleared and the claim given back.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import grpc
import orjson
from rich.console import Console

from kruise.rollout.v1 import rollout_pb2, rollout_pb2_grpc
from services.cli import demo_rollout
from services.cli.credentials import ApiCredentials
from services.gateway.kube.client import KubeClient

if TYPE_CHECKING:
    from kruise.rollout.v1.rollout_pb2_grpc import RolloutServiceAsyncStub as Stub

NAMESPACE = "demo-rollout-api"
NAME = "shop"
ROLLOUT_ID = "demo-1"
CLONESETS = f"/apis/apps.kruise.io/v1alpha1/namespaces/{NAMESPACE}/clonesets"
WaitFor = Callable[..., Awaitable[None]]
Event = rollout_pb2.WatchRolloutStatusResponse


async def _watch(
    stub: Stub,
    console: Console,
    statuses: asyncio.Queue[rollout_pb2.RolloutStatus],
) -> None:
    """Print every change of the CloneSet's rollout, and hand it to the driver."""
    ref = rollout_pb2.WorkloadRef(namespace=NAMESPACE, name=NAME)
    shown = ""
    async for event in stub.WatchRolloutStatus(rollout_pb2.WatchRolloutStatusRequest(ref=ref)):
        if event.type == Event.TYPE_BOOKMARK:
            continue
        if event.status.summary != shown:  # pod-level changes repeat the same line
            shown = event.status.summary
            console.print(f"  watch {Event.Type.Name(event.type)[5:]:<8} {shown}")
        statuses.put_nowait(event.status)


async def _batch_done(
    statuses: asyncio.Queue[rollout_pb2.RolloutStatus], generation: int, timeout: float
) -> rollout_pb2.RolloutStatus:
    async with asyncio.timeout(timeout):
        while True:
            status = await statuses.get()
            if status.generation >= generation and status.batch_complete:
                return status


async def _labelled_batch_ready(
    stub: Stub, ref: rollout_pb2.WorkloadRef, *, desired: int, timeout: float
) -> rollout_pb2.CheckBatchResponse:
    """CheckBatch with the rollout id, asked until it answers ready: the batch's pods are
    updated, ready, and labelled with the rollout id (the controller labels them once they
    are updated, so this may follow the status by a moment)."""
    request = rollout_pb2.CheckBatchRequest(
        ref=ref, desired_updated_replicas=desired, rollout_id=ROLLOUT_ID
    )
    async with asyncio.timeout(timeout):
        while True:
            answer = await stub.CheckBatch(request)
            if answer.ready:
                return answer
            await asyncio.sleep(0.1)


async def _observed(
    stub: Stub, ref: rollout_pb2.WorkloadRef, *, generation: int
) -> rollout_pb2.RolloutStatus:
    """The status once the replica holds ``generation`` (the template change) or later, and
    the controller has observed what it holds: the replica's cache may still hold the
    CloneSet from before the change, observed too, but naming the old revision."""
    async with asyncio.timeout(30):
        while True:
            answer = await stub.GetRolloutStatus(rollout_pb2.GetRolloutStatusRequest(ref=ref))
            seen = answer.status
            caught_up = seen.status.observed_generation >= seen.generation
            if seen.generation >= generation and caught_up:
                return seen
            await asyncio.sleep(0.1)


async def show_rollout_api(
    kube: KubeClient,
    api_target: str,
    console: Console,
    *,
    wait_for: WaitFor,
    credentials: ApiCredentials | None = None,
) -> None:
    """The walk-through; ``credentials``: the caller's token (every call's metadata) and
    the gateway's CA (``LocalMesh.api_credentials()``); None: plain text, no token."""
    body: dict[str, Any] = demo_rollout.clone_set(NAME, 6, updateStrategy={"type": "ReCreate"})
    body["metadata"]["namespace"] = NAMESPACE
    await kube.request("POST", CLONESETS, body=orjson.dumps(body))

    creds = credentials or ApiCredentials(plaintext=True)
    async with creds.channel(api_target) as channel:
        stub: Stub = rollout_pb2_grpc.RolloutServiceStub(channel)
        ref = rollout_pb2.WorkloadRef(namespace=NAMESPACE, name=NAME)

        async def ready() -> bool:
            try:
                answer = await stub.GetRolloutStatus(
                    rollout_pb2.GetRolloutStatusRequest(ref=ref), timeout=5
                )
            except grpc.aio.AioRpcError:
                return False
            return answer.status.rollout_complete

        await wait_for("CloneSet shop: 6 pods ready", ready, timeout=60)
        claim = await stub.SetPartition(
            rollout_pb2.SetPartitionRequest(
                ref=ref,
                partition=rollout_pb2.IntOrPercent(percent="100%"),
                allow_increase=True,
                rollout_id=ROLLOUT_ID,
            )
        )
        console.print(f"SetPartition 100% (rollout id {ROLLOUT_ID}): {claim.message}")
        container = {"name": "main", "image": "nginx:1.28"}
        patch = {"spec": {"template": {"spec": {"containers": [container]}}}}
        changed = orjson.loads(
            await kube.request(
                "PATCH",
                f"{CLONESETS}/{NAME}",
                body=orjson.dumps(patch),
                content_type="application/merge-patch+json",
            )
        )
        generation = int(changed["metadata"]["generation"])
        console.print("template changed to nginx:1.28 through the Kubernetes API")

        statuses: asyncio.Queue[rollout_pb2.RolloutStatus] = asyncio.Queue()
        watch = asyncio.create_task(_watch(stub, console, statuses))
        try:
            for index, kept in enumerate(("67%", "33%", "0%"), start=1):
                # Plan on a status the controller has caught up with (Kruise Rollout's
                # IsStable): before that, status.updateRevision may still be the old one.
                current = await _observed(stub, ref, generation=generation)
                revision = current.status.update_revision
                answer = await stub.SetPartition(
                    rollout_pb2.SetPartitionRequest(
                        ref=ref,
                        partition=rollout_pb2.IntOrPercent(percent=kept),
                        rollout_id=ROLLOUT_ID,
                        expected_update_revision=revision,
                    )
                )
                console.print(
                    f"[bold]batch {index}/3[/]: SetPartition {kept} "
                    f"(expected update revision {revision}): {answer.message}"
                )
                done = await _batch_done(statuses, answer.status.generation, timeout=60)
                checked = await _labelled_batch_ready(
                    stub, ref, desired=done.status.expected_updated_replicas, timeout=30
                )
                console.print(
                    f"[green]batch {index}/3 done[/]: {done.status.updated_ready_replicas}"
                    f"/{done.spec_replicas} updated and ready; CheckBatch (rollout id "
                    f"{ROLLOUT_ID}): {checked.reason}"
                )
            released = await stub.Release(
                rollout_pb2.ReleaseRequest(ref=ref, promote=True, rollout_id=ROLLOUT_ID)
            )
            console.print(f"Release: {released.message}")
        finally:
            watch.cancel()
            with contextlib.suppress(asyncio.CancelledError, grpc.aio.AioRpcError):
                await watch
