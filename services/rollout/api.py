"""RolloutService on a rollout replica: the namespaces it owns, from its cache.

Thin: each method checks the request (``steering.check_*``), makes sure this replica may
answer for the namespace (synced, owner), reads the CloneSet and its pods, and hands them
to the pure modules:

    GetRolloutStatus ─▶ report.rollout_status
    CheckBatch       ─▶ batch.batch_facts ─▶ batch.check_batch
    SetPartition     ─▶ steering.plan_set_partition ─▶ merge patch through the gateway
    Release          ─▶ steering.plan_release       ─▶ merge patch through the gateway
    WatchRolloutStatus ─▶ feed.StatusFeed.stream

Tools do not call a replica: they call the gateway's API port, which forwards each call to
the owner of ``ref.namespace`` (``services.gateway.rollout_route``). A replica that is not
(or no longer) the owner answers UNAVAILABLE, and so does one without its snapshot: the
tool retries, and the gateway's ring has moved on by then.

Writes. A plan is made on the cached CloneSet and written with that object's
resourceVersion as precondition, so a decision is never applied to an object it did not
see. A conflict re-plans on the newer object (up to ``ATTEMPTS`` times), unless the caller
asked for compare-and-set (``expected_resource_version``): then it is the caller's ABORTED.
The writes are fenced like the controller's: the gateway carries them out only while this
replica owns the namespace.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, NoReturn

import grpc
import orjson

from kruise.common.v1 import mesh_pb2, views_pb2
from kruise.rollout.v1 import rollout_pb2, rollout_pb2_grpc
from services.kit import errors, rich, selectors
from services.kit.cluster import ObjectWriter, Ref
from services.kit.mesh import MeshServicer
from services.kit.projection import project_clone_set
from services.rollout import batch, report, steering
from services.rollout.feed import Expired, Moved, StatusFeed

CLONESET = mesh_pb2.KIND_CLONE_SET
DOMAIN = "rollout.kruise-mesh.io"
API_VERSION = "apps.kruise.io/v1alpha1"
SERVICE_NAME = "kruise.rollout.v1.RolloutService"
ATTEMPTS = 3
# How long a read waits for the cache to reach a resourceVersion it was asked for.
CATCH_UP_S = 5.0

Context = grpc.aio.ServicerContext[Any, Any]
PodsOf = Callable[[views_pb2.CloneSetView], list[views_pb2.PodView]]

_CODES = {
    "INVALID_ARGUMENT": grpc.StatusCode.INVALID_ARGUMENT,
    "FAILED_PRECONDITION": grpc.StatusCode.FAILED_PRECONDITION,
    "NOT_FOUND": grpc.StatusCode.NOT_FOUND,
    "ABORTED": grpc.StatusCode.ABORTED,
}


class RolloutApi(rollout_pb2_grpc.RolloutServiceServicer):
    def __init__(
        self,
        *,
        mesh: MeshServicer,
        pods_of: PodsOf,
        wait_indexed: Callable[[], Any],
        cluster: ObjectWriter,
        feed: StatusFeed,
        clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        self.mesh = mesh
        self.pods_of = pods_of
        self.wait_indexed = wait_indexed
        self.cluster = cluster
        self.feed = feed
        self.clock_ms = clock_ms

    # ---- reads --------------------------------------------------------------------------
    async def GetRolloutStatus(
        self, request: rollout_pb2.GetRolloutStatusRequest, context: Context
    ) -> rollout_pb2.GetRolloutStatusResponse:
        await self._check(context, steering.check_ref(request.ref))
        view = await self._clone_set(context, request.ref, min_rv=request.min_resource_version)
        return rollout_pb2.GetRolloutStatusResponse(status=self._status(view))

    async def CheckBatch(
        self, request: rollout_pb2.CheckBatchRequest, context: Context
    ) -> rollout_pb2.CheckBatchResponse:
        await self._check(context, steering.check_check_batch(request))
        view = await self._clone_set(context, request.ref)
        pods = self.pods_of(view)
        facts = batch.batch_facts(view, pods, rollout_id=request.rollout_id, now_ms=self.clock_ms())
        target = (
            steering.int_or_percent_value(request.batch)
            if request.WhichOneof("target") == "batch"
            else request.desired_updated_replicas
        )
        desired = batch.desired_updated(target, replicas=facts.spec_replicas)
        threshold = (
            steering.int_or_percent_value(request.failure_threshold)
            if request.HasField("failure_threshold")
            else None
        )
        verdict = batch.check_batch(
            facts,
            desired=desired,
            failure_threshold=threshold,
            require_available=request.require_available,
        )
        return rollout_pb2.CheckBatchResponse(
            ready=verdict.ready,
            reason=verdict.reason,
            desired_updated_replicas=verdict.desired,
            status=report.rollout_status(view, pods),
        )

    async def WatchRolloutStatus(
        self, request: rollout_pb2.WatchRolloutStatusRequest, context: Context
    ) -> AsyncIterator[rollout_pb2.WatchRolloutStatusResponse]:
        await self._check(context, steering.check_watch(request))
        namespace, name = request.ref.namespace, request.ref.name
        await self._serving(context, namespace)
        selector = selectors.parse_selector(request.label_selector)

        def matches(candidate: str, labels: Any) -> bool:
            if name:
                return candidate == name
            return selectors.selector_matches(selector, labels, empty_matches_all=True)

        stream = self.feed.stream(
            namespace=namespace,
            matches=matches,
            resume_version=request.resume_version,
            bookmark_s=float(request.bookmark_seconds or 30),
        )
        try:
            async for event in stream:
                yield event
        except Expired as e:
            await self._abort(
                context,
                grpc.StatusCode.ABORTED,
                str(e),
                reason="RESOURCE_VERSION_EXPIRED",
                subject="resume_version",
            )
        except Moved as e:
            await self._abort(context, grpc.StatusCode.UNAVAILABLE, str(e), reason="NOT_OWNER")

    # ---- writes -------------------------------------------------------------------------
    async def SetPartition(
        self, request: rollout_pb2.SetPartitionRequest, context: Context
    ) -> rollout_pb2.SetPartitionResponse:
        await self._check(context, steering.check_set_partition(request))

        def plan(view: views_pb2.CloneSetView) -> steering.Change | steering.Refused:
            return steering.plan_set_partition(view, request)

        response: rollout_pb2.SetPartitionResponse = await self._write(
            context,
            ref=request.ref,
            plan=plan,
            dry_run=request.dry_run,
            expected_rv=request.expected_resource_version,
            answer=rollout_pb2.SetPartitionResponse,
        )
        return response

    async def Release(
        self, request: rollout_pb2.ReleaseRequest, context: Context
    ) -> rollout_pb2.ReleaseResponse:
        await self._check(context, steering.check_release(request))

        def plan(view: views_pb2.CloneSetView) -> steering.Change | steering.Refused:
            return steering.plan_release(view, request)

        response: rollout_pb2.ReleaseResponse = await self._write(
            context,
            ref=request.ref,
            plan=plan,
            dry_run=request.dry_run,
            expected_rv="",
            answer=rollout_pb2.ReleaseResponse,
        )
        return response

    async def _write(
        self,
        context: Context,
        *,
        ref: rollout_pb2.WorkloadRef,
        plan: Callable[[views_pb2.CloneSetView], steering.Change | steering.Refused],
        dry_run: bool,
        expected_rv: str,
        answer: Any,
    ) -> Any:
        """Plan on the cached CloneSet, then write the plan's patch preconditioned on it."""
        for _ in range(ATTEMPTS):
            view = await self._clone_set(context, ref, min_rv=expected_rv)
            change = plan(view)
            if isinstance(change, steering.Change) and change.replayed:
                # Before the compare-and-set: a retry's precondition is stale by design.
                return answer(status=self._status(view), applied=True, message=change.message)
            if expected_rv and view.meta.resource_version != expected_rv:
                await self._changed(context, view, expected_rv)
            if isinstance(change, steering.Refused):
                await self._refuse(context, change)
            if change.patch is None:
                return answer(status=self._status(view), applied=False, message=change.message)
            patch_json = orjson.dumps(change.patch).decode()
            if dry_run:
                return answer(
                    status=self._status(steering.preview(view, change.patch)),
                    applied=False,
                    patch_json=patch_json,
                    message=f"dry run: {change.message}",
                )
            try:
                written = await self.cluster.patch(
                    Ref(API_VERSION, "CloneSet", view.meta.namespace, view.meta.name),
                    patch=change.patch,
                    resource_version=view.meta.resource_version,
                    uid=view.meta.uid,
                )
            except errors.Conflict:
                # Wait for the cache to hold the newer object first: the caller's next read
                # (to this replica) must show what beat it, not the version it lost with.
                await self._moved_past(view)
                if expected_rv:
                    newer = self.mesh.cache.get(CLONESET, view.meta.namespace, view.meta.name)
                    await self._changed(context, newer or view, expected_rv)
                continue
            except errors.NotFound as e:
                await self._abort(
                    context, grpc.StatusCode.NOT_FOUND, str(e), reason="WORKLOAD_NOT_FOUND"
                )
            except errors.Invalid as e:
                await self._abort(
                    context,
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"the API server refused the change: {e}",
                    reason="INVALID_REQUEST",
                )
            except errors.MeshError as e:  # fenced (no longer the owner), unreachable, ...
                await self._abort(
                    context,
                    grpc.StatusCode.UNAVAILABLE,
                    f"could not write the CloneSet, retry: {e}",
                    reason="WRITE_FAILED",
                )
            return answer(
                status=self._status(project_clone_set(written.object)),
                applied=True,
                patch_json=patch_json,
                message=change.message,
            )
        await self._abort(
            context,
            grpc.StatusCode.ABORTED,
            f"CloneSet {ref.namespace}/{ref.name} kept changing under {ATTEMPTS} attempts; "
            "read it again and retry",
            reason="RESOURCE_VERSION_CHANGED",
        )

    # ---- plumbing -----------------------------------------------------------------------
    def _status(self, view: views_pb2.CloneSetView) -> rollout_pb2.RolloutStatus:
        return report.rollout_status(view, self.pods_of(view))

    async def _serving(self, context: Context, namespace: str) -> None:
        """UNAVAILABLE unless this replica has its snapshot and owns ``namespace``."""
        if not self.mesh.synced:
            await self._abort(
                context,
                grpc.StatusCode.UNAVAILABLE,
                f"rollout replica {self.mesh.replica} has no snapshot yet; retry",
                reason="NOT_SYNCED",
            )
        if not self.mesh.owns(namespace):
            await self._abort(
                context,
                grpc.StatusCode.UNAVAILABLE,
                f"rollout replica {self.mesh.replica} does not own namespace {namespace}; "
                "retry through the gateway",
                reason="NOT_OWNER",
            )
        await self.wait_indexed()

    async def _clone_set(
        self, context: Context, ref: rollout_pb2.WorkloadRef, *, min_rv: str = ""
    ) -> views_pb2.CloneSetView:
        await self._serving(context, ref.namespace)
        view: views_pb2.CloneSetView | None = self.mesh.cache.get(CLONESET, ref.namespace, ref.name)
        if min_rv:
            deadline = time.monotonic() + CATCH_UP_S
            while view is None or not steering.at_least(view.meta.resource_version, min_rv):
                if time.monotonic() > deadline:
                    await self._abort(
                        context,
                        grpc.StatusCode.UNAVAILABLE,
                        f"the replica has not seen resourceVersion {min_rv} of CloneSet "
                        f"{ref.namespace}/{ref.name} after {CATCH_UP_S:g}s; retry",
                        reason="CACHE_BEHIND",
                    )
                await asyncio.sleep(0.02)
                view = self.mesh.cache.get(CLONESET, ref.namespace, ref.name)
        if view is None:
            await self._abort(
                context,
                grpc.StatusCode.NOT_FOUND,
                f"CloneSet {ref.namespace}/{ref.name} not found",
                reason="WORKLOAD_NOT_FOUND",
            )
        if ref.uid and ref.uid != view.meta.uid:
            await self._abort(
                context,
                grpc.StatusCode.FAILED_PRECONDITION,
                f"CloneSet {ref.namespace}/{ref.name} has uid {view.meta.uid}, not {ref.uid}: "
                "it was deleted and made again",
                reason="UID_CHANGED",
                subject="metadata.uid",
            )
        return view

    async def _moved_past(self, view: views_pb2.CloneSetView) -> None:
        """Until the cache holds a newer CloneSet than ``view`` (or a second went by)."""
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            now = self.mesh.cache.get(CLONESET, view.meta.namespace, view.meta.name)
            if now is None or now.meta.resource_version != view.meta.resource_version:
                return
            await asyncio.sleep(0.02)

    async def _changed(
        self, context: Context, view: views_pb2.CloneSetView, wanted: str
    ) -> NoReturn:
        await self._abort(
            context,
            grpc.StatusCode.ABORTED,
            f"CloneSet {view.meta.namespace}/{view.meta.name} is at resourceVersion "
            f"{view.meta.resource_version}, not {wanted}: read it again and decide again",
            reason="RESOURCE_VERSION_CHANGED",
            subject="metadata.resourceVersion",
        )

    async def _check(self, context: Context, refused: steering.Refused | None) -> None:
        if refused is not None:
            await self._refuse(context, refused)

    async def _refuse(self, context: Context, refused: steering.Refused) -> NoReturn:
        await self._abort(
            context,
            _CODES[refused.code],
            refused.message,
            reason=refused.reason,
            field=refused.field,
            subject=refused.subject,
        )

    async def _abort(
        self,
        context: Context,
        code: grpc.StatusCode,
        message: str,
        *,
        reason: str,
        field: str = "",
        subject: str = "",
    ) -> NoReturn:
        await rich.abort(
            context,
            rich.Problem(
                code,
                message,
                reason=reason,
                domain=DOMAIN,
                metadata={"replica": self.mesh.replica},
                field=field,
                subject=subject,
            ),
        )


def register(api: RolloutApi, server: grpc.aio.Server) -> str:
    rollout_pb2_grpc.add_RolloutServiceServicer_to_server(api, server)
    return SERVICE_NAME
