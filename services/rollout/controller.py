"""The CloneSet controller: the shell around ``revision``, ``sync`` and ``status``.

    Sync events ─▶ on_event ─▶ OwnerIndex (pods, revisions, claims by CloneSet uid)
                      │
                      └─▶ WorkQueue ─▶ reconcile ─▶ observe (cache)
                                           ├─▶ revision.plan_revisions   (pure)
                                           ├─▶ sync.plan_round           (pure)
                                           ├─▶ status.compute_status     (pure)
                                           └─▶ cluster API: revisions, claims, pods,
                                               pods/status, CloneSet status, Events;
                                               budget: updates

Triggers (level-triggered; a reconcile that finds nothing to do writes nothing):

* a CloneSet event → reconcile it;
* an event of a pod, ControllerRevision or PersistentVolumeClaim whose controller is a
  CloneSet → reconcile that CloneSet; a pod with the ``KruisePodReady`` readiness gate and
  no such condition → the readiness queue (SPEC 3.4's pod-readiness controller);
* a snapshot (first sync, rebalancing) → rebuild the indexes, forget every expectation,
  reconcile every CloneSet.

Reconcile (one CloneSet):

1. Gone or being deleted → forget it (its pods, revisions and claims go by garbage
   collection).
2. Revisions: create the update revision (or renumber an equal old one), so every pod
   created this round names a stored revision.
3. Unless the replica's expectations for the CloneSet are met (its own creates and deletes
   of pods and claims visible in the cache) or the namespace is in its handover period
   (below), skip to 5. The claims' expectations matter: a claim deleted with its pod that
   still looked alive would pass for an orphan, and a new pod would be given it.
4. ``sync.plan_round`` decides one step (refresh lifecycle and in-place updates, or scale,
   or update); the actions run in order; a pod update first asks the budget service
   (``AuthorizePodUpdate``), and a refusal, or the budget service being unreachable,
   stops the round and retries after 1 s (fail closed, SPEC 4.11). A new pod's claims are
   created before it (a failed claim: no pod); a deleted pod's claims right after it.
5. Status (SPEC 2.3), written with the CloneSet's resourceVersion when a tracked field
   changed; then old revisions beyond ``revisionHistoryLimit`` are deleted.

Sharding without double actions. CloneSets are sharded by namespace. While replicas come
and go, two replicas may both believe they own a namespace for a moment; two guards keep a
pod from being created or deleted twice:

* fenced writes: every pod, claim and revision write carries the replica's identity, and the
  gateway refuses it (FAILED_PRECONDITION) unless that replica owns the namespace on the
  gateway's ring; a replica that lost a namespace can no longer act on it, whatever its
  own view of the ring;
* a handover period: a replica that gains a namespace (any namespace, at its first
  snapshot) waits ``handover_s`` before creating, deleting or updating pods there, so the
  writes the previous owner made before the gateway fenced it have reached this replica's
  cache (the write timeout plus the watch delay bound them).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import orjson
from prometheus_client import Counter, Gauge, Histogram

from kruise.common.v1 import mesh_pb2, views_pb2
from services.kit import errors
from services.kit.cache import EVENT_DELETED, ObjectCache, view_of
from services.kit.cluster import EventRecorder, ObjectWriter, Ref, StatusWriter
from services.kit.controller import Backoff, ControllerShell, OwnerIndex
from services.kit.mesh import Handler
from services.kit.objects import controller_ref, group_of, newer, pod_active
from services.kit.projection import project_clone_set
from services.kit.workqueue import WorkQueue
from services.rollout import readiness, revision, status, sync
from services.rollout.actions import (
    CreatePod,
    CreatePvc,
    DeletePod,
    DeletePvc,
    PatchPod,
    PatchPodStatus,
    Round,
)
from services.rollout.budget_client import UpdateAuthorizer
from services.rollout.expectations import Expectations

log = logging.getLogger(__name__)

POD = mesh_pb2.KIND_POD
CLONE_SET = mesh_pb2.KIND_CLONE_SET
REVISION = mesh_pb2.KIND_CONTROLLER_REVISION
CLAIM = mesh_pb2.KIND_PERSISTENT_VOLUME_CLAIM
# The revision index's key for ControllerRevisions without a controller (never a uid).
ORPHAN = "<orphan>"

RECONCILES = Counter(
    "kruise_mesh_rollout_reconciles_total",
    "CloneSet reconciles, by the step that acted",
    ["phase"],
)
POD_WRITES = Counter(
    "kruise_mesh_rollout_pod_writes_total",
    "Pod (and PersistentVolumeClaim: pvc-create, pvc-delete) writes of the CloneSet "
    "controller, by action and result",
    ["action", "result"],
)
BUDGET_REFUSALS = Counter(
    "kruise_mesh_rollout_budget_refusals_total",
    "Pod updates a PodUnavailableBudget refused, or that could not be asked (unavailable)",
    ["reason"],
)
QUEUE_DEPTH = Gauge(
    "kruise_mesh_rollout_queue_depth",
    "Keys waiting in the rollout work queues, being reconciled, or waiting for a retry",
)
RECONCILE_SECONDS = Histogram(
    "kruise_mesh_rollout_reconcile_seconds",
    "Time to reconcile one CloneSet, writes included",
    buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5),
)


# How soon a CloneSet waiting for its expectations is looked at again without an event.
EXPECTATIONS_RECHECK_S = 1.0
# Pod events reconcile their CloneSet at most once per window: the first at once, the ones
# that follow within it together at its end. The window grows with the CloneSet, as a
# reconcile's cost does (every pod is read): 50 µs a pod, from 5 ms to POD_SETTLE_S, so
# pod-triggered reconciles of one CloneSet take a bounded share of a core at any size while
# a small CloneSet's status follows its pods within milliseconds.
POD_SETTLE_S = 0.05
POD_SETTLE_MIN_S = 0.005
POD_SETTLE_PER_POD_S = 0.00005
# A long scale-out writes the status this often while it creates, so pods that turn Ready
# meanwhile are counted without waiting for the last create.
STATUS_EVERY_S = 0.2
# Slow-start batches of creates double up to this many at once, so the status write between
# batches comes at least every few hundred milliseconds.
CREATE_BATCH_MAX = 64


class Cluster(StatusWriter, ObjectWriter, EventRecorder, Protocol):
    """The cluster API the controller writes through (``services.kit.cluster.ClusterClient``)."""


@dataclass(frozen=True, slots=True)
class CloneSetKey:
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True, slots=True)
class PodKey:
    namespace: str
    name: str


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


def clone_set_ref(namespace: str, name: str) -> Ref:
    return Ref(revision.CLONESET_API, revision.CLONESET_KIND, namespace, name)


def pod_ref(namespace: str, name: str) -> Ref:
    return Ref("v1", "Pod", namespace, name)


def claim_ref(namespace: str, name: str) -> Ref:
    return Ref("v1", "PersistentVolumeClaim", namespace, name)


def claim_templates_of(cs: views_pb2.CloneSetView) -> tuple[dict[str, Any], ...]:
    """``spec.volumeClaimTemplates`` of the view (``()`` when there are none)."""
    parsed = orjson.loads(cs.volume_claim_templates_json) if cs.volume_claim_templates_json else []
    return tuple(t for t in parsed if isinstance(t, dict)) if isinstance(parsed, list) else ()


def is_clone_set_owner(ref: views_pb2.OwnerReference | None) -> bool:
    return (
        ref is not None and ref.kind == "CloneSet" and group_of(ref.api_version) == "apps.kruise.io"
    )


# Event reasons and messages, as OpenKruise's CloneSet controller writes them.
EVENT_MESSAGES = {
    "SuccessfulCreate": "succeed to create pod {pod}",
    "FailedCreate": "failed to create pod {pod}: {error}",
    "SuccessfulDelete": "succeed to delete pod {pod}",
    "FailedDelete": "failed to delete pod {pod}: {error}",
    "SuccessfulUpdatePodInPlace": "successfully update pod {pod} in-place(revision {revision})",
    "FailedUpdatePodInPlace": "failed to update pod {pod} in-place: {error}",
    "SuccessfulUpdatePodReCreate": (
        "successfully marked pod {pod} to re-create(revision {revision})"
    ),
    "PodUnavailableBudgetRejected": "pod {pod} update is refused: {error}",
}
# The same reasons for a pod's claims (OpenKruise: "failed to create pvc: ...").
CLAIM_EVENT_MESSAGES = {
    "FailedCreate": "failed to create pvc {claim} for pod {pod}: {error}",
    "FailedDelete": "failed to delete pvc {claim} of pod {pod}: {error}",
}


class RolloutController:
    def __init__(
        self,
        *,
        cache: ObjectCache,
        cluster: Cluster,
        budget: UpdateAuthorizer | None,
        owns: Callable[[str], bool] = lambda namespace: True,
        clock_ms: Callable[[], int] = wall_clock_ms,
        rng: random.Random | None = None,
        workers: int = 4,
        readiness_workers: int = 2,
        retry_s: float = 0.5,
        budget_retry_s: float = 1.0,
        handover_s: float = 0.0,
        pod_settle_s: float = POD_SETTLE_S,
        requester: str = "rollout",
    ) -> None:
        self.cache = cache
        self.cluster = cluster
        self.budget = budget
        self.owns = owns
        self.clock_ms = clock_ms
        self.rng = rng or random.Random()
        self.retry_s = retry_s
        self.budget_retry_s = budget_retry_s
        self.handover_s = handover_s
        self.pod_settle_s = pod_settle_s
        self.requester = requester
        self.shell = ControllerShell(cache=cache, events=cluster, name="rollout")
        self.queue: WorkQueue[CloneSetKey] = self.shell.add_queue(
            WorkQueue(), self.reconcile, workers=workers, name="clonesets"
        )
        self.readiness_queue: WorkQueue[PodKey] = self.shell.add_queue(
            WorkQueue(), self.reconcile_readiness, workers=readiness_workers, name="readiness"
        )
        self.pods = OwnerIndex()
        self.revisions = OwnerIndex()
        self.claims = OwnerIndex()
        self.expectations = Expectations()
        self.claim_expectations = Expectations()
        self.backoff: Backoff[CloneSetKey] = Backoff(base=retry_s)
        self._owned: frozenset[str] | None = None
        self._quiet_until: dict[str, float] = {}
        self._snapshots = 0
        self._refused: dict[tuple[str, str], str] = {}
        self._written: dict[tuple[str, str], views_pb2.CloneSetView] = {}
        self._settle_until: dict[CloneSetKey, float] = {}

    # ---- lifecycle ----------------------------------------------------------------------
    @property
    def handlers(self) -> Mapping[str, Handler]:
        from services.rollout import webhooks

        return webhooks.handlers(self)

    def pending(self) -> int:
        return self.shell.pending()

    async def start(self) -> None:
        QUEUE_DEPTH.set_function(self.pending)
        await self.shell.start()

    async def stop(self) -> None:
        await self.shell.stop()

    # ---- events -------------------------------------------------------------------------
    def on_snapshot(self) -> None:
        self._snapshots += 1  # a scale-out still creating stops at its next batch
        self.pods = OwnerIndex()
        self.revisions = OwnerIndex()
        self.claims = OwnerIndex()
        self.expectations.clear()
        self.claim_expectations.clear()
        self._written.clear()
        self._settle_until.clear()
        self._start_handover()
        for view in self.cache.items(REVISION):
            self.revisions.put(view.meta.namespace, view.meta.name, self._revision_owner(view))
        for view in self.cache.items(CLAIM):
            self.claims.put(view.meta.namespace, view.meta.name, self._clone_set_uid(view))
        for cs in self.cache.items(CLONE_SET):
            self.queue.add(CloneSetKey(cs.meta.namespace, cs.meta.name))

        def index(pod: views_pb2.PodView) -> None:
            self.pods.pod(pod, deleted=False)
            if readiness.needs_initial_condition(pod):
                self.readiness_queue.add(PodKey(pod.meta.namespace, pod.meta.name))

        self.shell.rebuild_pod_index(index)

    def _start_handover(self) -> None:
        """Namespaces gained by this snapshot wait ``handover_s`` before pods are touched."""
        if self.handover_s <= 0:
            return
        namespaces = {cs.meta.namespace for cs in self.cache.items(CLONE_SET)}
        namespaces |= set(self.cache.namespaces(POD))
        owned = frozenset(ns for ns in namespaces if self.owns(ns))
        gained = owned if self._owned is None else owned - self._owned
        until = time.monotonic() + self.handover_s
        for namespace in gained:
            self._quiet_until[namespace] = until
        self._owned = owned

    def _quiet_s(self, namespace: str) -> float:
        until = self._quiet_until.get(namespace)
        if until is None:
            return 0.0
        left = until - time.monotonic()
        if left <= 0:
            del self._quiet_until[namespace]
            return 0.0
        return left

    @staticmethod
    def _clone_set_uid(view: Any) -> str | None:
        ref = controller_ref(view.meta.owner_references)
        return ref.uid if is_clone_set_owner(ref) and ref is not None else None

    @staticmethod
    def _revision_owner(view: Any) -> str | None:
        """The index key of a revision: its CloneSet's uid, ``ORPHAN`` when it has no
        controller (a candidate for any CloneSet whose selector matches it:
        ``revision.history_of``), None when another kind of controller holds it."""
        ref = controller_ref(view.meta.owner_references)
        if ref is None:
            return ORPHAN
        return ref.uid if is_clone_set_owner(ref) else None

    def on_event(self, event: mesh_pb2.WatchEvent) -> None:
        view = view_of(event.object)
        if view is None:
            return
        deleted = event.type == EVENT_DELETED
        namespace = view.meta.namespace
        if event.kind == CLONE_SET:
            key = CloneSetKey(namespace, view.meta.name)
            if deleted:
                self._written.pop((namespace, view.meta.name), None)
                self._settle_until.pop(key, None)
                # As OpenKruise on a CloneSet's delete: its expectations go with it, so a
                # namesake made again before any reconcile saw it gone is not held by them.
                self.expectations.drop(key)
                self.claim_expectations.drop(key)
            self.queue.add(key)
        elif event.kind == POD:
            before = self.pods.pod(view, deleted=deleted)
            ref = controller_ref(view.meta.owner_references)
            if is_clone_set_owner(ref) and ref is not None:
                pods = len(self.pods.names(namespace, ref.uid))
                self._pod_changed(CloneSetKey(namespace, ref.name), pods=pods)
            if before is not None and not deleted and before != (ref.uid if ref else None):
                self._left_owner(namespace, before)
            if not deleted and readiness.needs_initial_condition(view):
                self.readiness_queue.add(PodKey(namespace, view.meta.name))
        elif event.kind in (REVISION, CLAIM):
            if event.kind == REVISION:
                owner = None if deleted else self._revision_owner(view)
                self.revisions.put(namespace, view.meta.name, owner)
            else:
                self.claims.put(
                    namespace, view.meta.name, None if deleted else self._clone_set_uid(view)
                )
            ref = controller_ref(view.meta.owner_references)
            if is_clone_set_owner(ref) and ref is not None:
                self.queue.add(CloneSetKey(namespace, ref.name))

    def _left_owner(self, namespace: str, uid: str) -> None:
        """A pod's controller reference no longer names the CloneSet ``uid`` (it released
        the pod, or someone edited it): reconcile that CloneSet, as Kubernetes controllers
        sync the old controller when a pod's controllerRef changed."""
        for cs in self.cache.items(CLONE_SET, namespace):
            if cs.meta.uid == uid:
                self.queue.add(CloneSetKey(namespace, cs.meta.name))
                return

    def _pod_changed(self, key: CloneSetKey, *, pods: int) -> None:
        """Reconcile ``key`` for a pod event: at once when its window is over (a lone pod
        turning Ready is counted in the status without delay), else at the window's end.
        Pod events come in bursts (a thousand pods turning Ready): one reconcile per window
        covers all of a CloneSet's ``pods`` that moved meanwhile."""
        now = time.monotonic()
        until = self._settle_until.get(key, 0.0)
        if now >= until:
            window = min(self.pod_settle_s, max(POD_SETTLE_MIN_S, pods * POD_SETTLE_PER_POD_S))
            self._settle_until[key] = now + window
            self.queue.add(key)
        else:
            self.queue.add_after(key, until - now)

    # ---- observe ------------------------------------------------------------------------
    def freshest(self, namespace: str, name: str) -> views_pb2.CloneSetView | None:
        """The cache's CloneSet, or the one the last status write returned if that is newer."""
        cached: views_pb2.CloneSetView | None = self.cache.get(CLONE_SET, namespace, name)
        written = self._written.get((namespace, name))
        chosen = newer(cached, written) if cached is not None else None
        if chosen is not written:
            self._written.pop((namespace, name), None)  # gone, or the watch caught up
        return chosen

    def owned_pods(self, cs: views_pb2.CloneSetView) -> list[views_pb2.PodView]:
        namespace = cs.meta.namespace
        found = (
            self.cache.get(POD, namespace, n)
            for n in sorted(self.pods.names(namespace, cs.meta.uid))
        )
        return [p for p in found if p is not None]

    def owned_claims(self, cs: views_pb2.CloneSetView) -> list[views_pb2.PersistentVolumeClaimView]:
        """The CloneSet's PersistentVolumeClaims (terminating ones too), by name."""
        namespace = cs.meta.namespace
        found = (
            self.cache.get(CLAIM, namespace, n)
            for n in sorted(self.claims.names(namespace, cs.meta.uid))
        )
        return [c for c in found if c is not None]

    def stored_revisions(self, cs: views_pb2.CloneSetView) -> list[revision.Revision]:
        namespace = cs.meta.namespace
        names = self.revisions.names(namespace, cs.meta.uid) | self.revisions.names(
            namespace, ORPHAN
        )
        found = (self.cache.get(REVISION, namespace, n) for n in sorted(names))
        views = [v for v in found if v is not None]
        return revision.revisions_of(revision.history_of(clone_set=cs, views=views))

    # ---- reconcile ----------------------------------------------------------------------
    async def reconcile(self, key: CloneSetKey) -> None:
        await self.shell.wait_indexed()
        started = time.perf_counter()
        try:
            await self._reconcile(key)
        finally:
            RECONCILE_SECONDS.observe(time.perf_counter() - started)

    async def _reconcile(self, key: CloneSetKey) -> None:
        cs = self.freshest(key.namespace, key.name)
        if cs is None or cs.meta.deletion_unix_ms:
            self.expectations.drop(key)
            self.claim_expectations.drop(key)
            self.backoff.reset(key)
            return
        template = orjson.loads(cs.template_json) if cs.template_json else {}
        all_pods = self.owned_pods(cs)
        by_name = {p.meta.name: p for p in all_pods}
        live = {p.meta.labels.get("controller-revision-hash", "") for p in all_pods}
        stored = self.stored_revisions(cs)
        plan = revision.plan_revisions(
            clone_set=cs, template=template, stored=stored, live_revisions=live - {""}
        )
        if not await self._write_revisions(key, plan):
            return
        now_ms = self.clock_ms()
        quiet = self._quiet_s(key.namespace)
        if quiet > 0:
            # Not acting yet, so not writing a status either: observedGeneration would claim
            # this generation was acted on.
            RECONCILES.labels("handover").inc()
            self.queue.add_after(key, quiet)
            return
        claims = self.owned_claims(cs)
        claims_by_name = {c.meta.name: c for c in claims}
        if not (
            self.expectations.scale_satisfied(key, by_name, now_ms=now_ms)
            and self.claim_expectations.scale_satisfied(key, claims_by_name, now_ms=now_ms)
        ):
            # As OpenKruise: skip the whole reconcile (status included) until the cache shows
            # our creates and deletes; their events bring the key back, this is a safety net.
            RECONCILES.labels("waiting").inc()
            self.queue.add_after(key, EXPECTATIONS_RECHECK_S)
            return
        busy = self.expectations.updates_pending(key, by_name, now_ms=now_ms)
        acted = sync.plan_round(
            sync.Observed(
                clone_set=cs,
                pods=tuple(all_pods),
                revisions=plan,
                now_ms=now_ms,
                rng=self.rng,
                stored_templates={
                    **{r.name: r.template for r in stored},
                    plan.update: plan.update_template,
                },
                busy=busy,
                update_strategy=orjson.loads(cs.strategy_json) if cs.strategy_json else {},
                claims=tuple(claims),
                claim_templates=claim_templates_of(cs),
            )
        )
        RECONCILES.labels(acted.phase).inc()
        for note in acted.notes:
            log.info(note, extra={"cloneset": str(key)})
        failure = (
            await self._run(key, cs, acted, by_name, plan) if acted.actions or acted.error else None
        )
        if acted.requeue_ms is not None:
            self.queue.add_after(key, acted.requeue_ms / 1000)
        # The freshest view: a long scale-out wrote the status between batches already. The
        # pods are read again only when this round wrote some (most rounds write none).
        cs = self.freshest(key.namespace, key.name) or cs
        pods = self.owned_pods(cs) if acted.actions else all_pods
        scale_error, update_error = status.round_errors(acted.phase, failure)
        await self._write_status(
            key, cs, plan, pods, now_ms, scale_error=scale_error, update_error=update_error
        )
        for old in plan.delete:
            try:
                await self.cluster.delete(
                    Ref(
                        revision.CONTROLLER_REVISION_API,
                        "ControllerRevision",
                        key.namespace,
                        old.name,
                    ),
                    uid=old.uid,
                )
            except (errors.NotFound, errors.Conflict):
                pass
            except errors.MeshError as e:
                log.warning(
                    "could not delete an old revision",
                    extra={"cloneset": str(key), "revision": old.name, "error": str(e)},
                )

    async def _write_revisions(self, key: CloneSetKey, plan: revision.RevisionPlan) -> bool:
        try:
            if plan.create is not None:
                await self.cluster.create(
                    Ref(
                        revision.CONTROLLER_REVISION_API,
                        "ControllerRevision",
                        key.namespace,
                        plan.create.name,
                    ),
                    plan.create.body,
                )
                log.info(
                    "revision created", extra={"cloneset": str(key), "revision": plan.create.name}
                )
            if plan.renumber is not None:
                await self.cluster.patch(
                    Ref(
                        revision.CONTROLLER_REVISION_API,
                        "ControllerRevision",
                        key.namespace,
                        plan.renumber.name,
                    ),
                    patch={"revision": plan.renumber.number},
                    kind="merge",
                    resource_version=plan.renumber.resource_version,
                )
        except errors.AlreadyExists:
            # Its watch event is on the way (or a revision of a deleted namesake still waits
            # for garbage collection): decide again once it is here, backing off.
            self.queue.add_after(key, self.backoff.next(key))
            return False
        except errors.MeshError as e:
            log.warning(
                "could not write the revision; retrying",
                extra={"cloneset": str(key), "error": str(e)},
            )
            self.queue.add_after(key, self.backoff.next(key))
            return False
        return True

    async def _run(
        self,
        key: CloneSetKey,
        cs: views_pb2.CloneSetView,
        acted: Round,
        by_name: Mapping[str, views_pb2.PodView],
        plan: revision.RevisionPlan,
    ) -> str | None:
        """Execute the round's actions in order; stop at a refusal or a failure.

        New pods go in slow-start batches, each with its claims first (``_create_pods``).
        A deleted pod's claims follow it, unless the pod was already gone (NotFound):
        whoever deleted it left its claims to be reused.

        Returns the failure's message (for FailedScale/FailedUpdate), or None: done, or
        stopped by a budget's refusal or a Conflict (a moved pod, decided again soon).
        Once every action went through, the round's own ``error`` (a pod the decision could
        not update) is the failure, retried with backoff as a failed write is.
        """
        now_ms = self.clock_ms()
        created = [a for a in acted.actions if isinstance(a, CreatePod)]
        claims: dict[str, list[CreatePvc]] = {}
        for a in acted.actions:
            if isinstance(a, CreatePvc):
                claims.setdefault(a.pod, []).append(a)
        failed_create = (
            await self._create_pods(key, cs, created, claims, now_ms, plan) if created else None
        )
        not_deleted: set[str] = set()
        versions = {name: pod.meta.resource_version for name, pod in by_name.items()}
        for action in acted.actions:
            if isinstance(action, CreatePod | CreatePvc):
                continue
            try:
                if isinstance(action, DeletePod):
                    self.expectations.expect_delete(key, action.name, now_ms=now_ms)
                    try:
                        await self.cluster.delete(
                            pod_ref(key.namespace, action.name), uid=action.uid
                        )
                    except errors.NotFound:
                        not_deleted.add(action.name)
                        POD_WRITES.labels("delete", "gone").inc()
                        continue
                    except errors.MeshError:
                        self.expectations.forget_delete(key, action.name)
                        raise
                    POD_WRITES.labels("delete", "ok").inc()
                    self._event(cs, "SuccessfulDelete", pod=action.name)
                elif isinstance(action, DeletePvc):
                    if action.pod in not_deleted:
                        continue
                    self.claim_expectations.expect_delete(key, action.name, now_ms=now_ms)
                    try:
                        await self.cluster.delete(
                            claim_ref(key.namespace, action.name), uid=action.uid
                        )
                    except errors.NotFound:
                        pass
                    except errors.MeshError:
                        self.claim_expectations.forget_delete(key, action.name)
                        raise
                    POD_WRITES.labels("pvc-delete", "ok").inc()
                elif isinstance(action, PatchPod | PatchPodStatus):
                    if action.budget:
                        held = await self._held(key, cs, action)
                        if held is not None:
                            return held or None
                    status_write = isinstance(action, PatchPodStatus)
                    # Each write names the version the previous one of this pod returned (or
                    # the one the decision saw): a pod that moved meanwhile answers ABORTED.
                    # An in-place JSON patch is guarded by its own test ops instead.
                    wanted = versions.get(action.name, "")
                    if isinstance(action, PatchPod) and not action.resource_version:
                        wanted = ""
                    written = await self.cluster.patch(
                        pod_ref(key.namespace, action.name),
                        patch=action.patch,
                        kind="json" if getattr(action, "kind", "") == "json" else "strategic",
                        resource_version=wanted,
                        uid=action.uid,
                        subresource="status" if status_write else "",
                    )
                    if written.resource_version:
                        versions[action.name] = written.resource_version
                        self.expectations.expect_update(
                            key,
                            action.name,
                            written_version=written.resource_version,
                            now_ms=now_ms,
                        )
                    POD_WRITES.labels("status" if status_write else "patch", "ok").inc()
                    if isinstance(action, PatchPod) and action.event:
                        self._event(cs, action.event, pod=action.name, revision=action.revision)
            except errors.Conflict:
                POD_WRITES.labels(type(action).__name__, "conflict").inc()
                self.expectations.forget_update(key, action.name)
                self.queue.add_after(key, self.retry_s)
                return None
            except errors.NotFound:
                POD_WRITES.labels(type(action).__name__, "gone").inc()
                self.expectations.forget_update(key, action.name)
            except errors.MeshError as e:
                POD_WRITES.labels(type(action).__name__, "error").inc()
                self.expectations.forget_update(key, action.name)
                log.warning(
                    "pod write failed; retrying",
                    extra={"cloneset": str(key), "pod": action.name, "error": str(e)},
                )
                if isinstance(action, DeletePod):
                    self._event(cs, "FailedDelete", warning=True, pod=action.name, error=str(e))
                elif isinstance(action, DeletePvc):
                    self._event(
                        cs,
                        "FailedDelete",
                        warning=True,
                        messages=CLAIM_EVENT_MESSAGES,
                        claim=action.name,
                        pod=action.pod,
                        error=str(e),
                    )
                self.queue.add_after(key, self.backoff.next(key))
                return str(e) or type(e).__name__
        if acted.error:
            log.warning(
                "pod update not possible; retrying",
                extra={"cloneset": str(key), "error": acted.error},
            )
            self.queue.add_after(key, self.backoff.next(key))
            return acted.error
        if failed_create is None:  # a failed create's backoff must grow, not start over
            self.backoff.reset(key)
        return failed_create

    async def _create_pods(
        self,
        key: CloneSetKey,
        cs: views_pb2.CloneSetView,
        created: list[CreatePod],
        claims: Mapping[str, list[CreatePvc]],
        now_ms: int,
        plan: revision.RevisionPlan,
    ) -> str | None:
        """Create pods in slow-start batches (1, 2, 4, ...) as Kubernetes controllers do: a
        failing create (a webhook, a quota) stops after few tries, not hundreds. Each pod's
        claims are created just before it, in the same task (OpenKruise's ``createOnePod``).
        Returns the first failure's message of the batch that failed, or None."""
        for action in created:
            self.expectations.expect_create(key, action.name, now_ms=now_ms)
        batch, index = 1, 0
        status_at = time.monotonic()
        snapshot = self._snapshots
        while index < len(created):
            if self._snapshots != snapshot:
                # A new snapshot forgot every expectation: creating on would act on a view
                # that no longer counts these pods. The next round decides again.
                for rest in created[index:]:
                    self.expectations.forget_create(key, rest.name)
                return None
            if time.monotonic() - status_at >= STATUS_EVERY_S:
                await self.shell.wait_indexed()
                status_at = time.monotonic()
                fresh = self.freshest(key.namespace, key.name)
                if fresh is not None:
                    await self._write_status(
                        key, fresh, plan, self.owned_pods(fresh), self.clock_ms()
                    )
            chunk = created[index : index + batch]
            index += len(chunk)
            results = await asyncio.gather(
                *(self._create_one(key, cs, a, claims.get(a.name, ()), now_ms) for a in chunk),
                return_exceptions=False,
            )
            failures = [r for r in results if r is not None]
            if failures:
                for rest in created[index:]:
                    self.expectations.forget_create(key, rest.name)
                self.queue.add_after(key, self.backoff.next(key))
                return failures[0]
            batch = min(batch * 2, CREATE_BATCH_MAX)
        return None

    async def _create_one(
        self,
        key: CloneSetKey,
        cs: views_pb2.CloneSetView,
        action: CreatePod,
        claims: Sequence[CreatePvc],
        now_ms: int,
    ) -> str | None:
        """Create one pod after its claims; None when done, else the failure's message."""
        for claim in claims:
            self.claim_expectations.expect_create(key, claim.name, now_ms=now_ms)
            try:
                await self.cluster.create(claim_ref(key.namespace, claim.name), claim.body)
            except errors.MeshError as e:
                self.claim_expectations.forget_create(key, claim.name)
                self.expectations.forget_create(key, action.name)
                POD_WRITES.labels("pvc-create", "error").inc()
                log.warning(
                    "claim create failed; the pod is not created",
                    extra={
                        "cloneset": str(key),
                        "pod": action.name,
                        "claim": claim.name,
                        "error": str(e),
                    },
                )
                self._event(
                    cs,
                    "FailedCreate",
                    warning=True,
                    messages=CLAIM_EVENT_MESSAGES,
                    claim=claim.name,
                    pod=action.name,
                    error=str(e),
                )
                return str(e) or type(e).__name__
            POD_WRITES.labels("pvc-create", "ok").inc()
        try:
            await self.cluster.create(pod_ref(key.namespace, action.name), action.body)
        except errors.MeshError as e:
            self.expectations.forget_create(key, action.name)
            POD_WRITES.labels("create", "error").inc()
            log.warning(
                "pod create failed",
                extra={"cloneset": str(key), "pod": action.name, "error": str(e)},
            )
            self._event(cs, "FailedCreate", warning=True, pod=action.name, error=str(e))
            return str(e) or type(e).__name__
        POD_WRITES.labels("create", "ok").inc()
        self._event(cs, "SuccessfulCreate", pod=action.name)
        return None

    async def _held(
        self, key: CloneSetKey, cs: views_pb2.CloneSetView, action: PatchPod | PatchPodStatus
    ) -> str | None:
        """Ask the pod's budget before updating it (SPEC 4.11); refused or unreachable → stop
        the round and come back in ``budget_retry_s``. None: go ahead; "": refused (not a
        failure, as OpenKruise's PUB check); else why the budget service could not answer
        (a failure: OpenKruise's ``Update`` returns the PUB check's error)."""
        if self.budget is None:
            return None
        try:
            answer = await self.budget.authorize_update(
                namespace=key.namespace,
                pod=action.name,
                pod_uid=action.uid,
                requester=f"{self.requester} CloneSet {cs.meta.name}",
            )
        except errors.MeshError as e:
            BUDGET_REFUSALS.labels("unavailable").inc()
            log.warning(
                "budget service unreachable; pod updates wait",
                extra={"cloneset": str(key), "pod": action.name, "error": str(e)},
            )
            self.queue.add_after(key, self.budget_retry_s)
            return f"the budget service could not be asked about pod {action.name}: {e}"
        if answer.allowed:
            self._refused.pop((key.namespace, action.name), None)
            return None
        BUDGET_REFUSALS.labels("refused").inc()
        log.info(
            "pod update refused by its budget",
            extra={
                "cloneset": str(key),
                "pod": action.name,
                "budget": answer.budget,
                "why": answer.message,
            },
        )
        # One Event per refusal reason, not one per retry (every budget_retry_s).
        if self._refused.get((key.namespace, action.name)) != answer.message:
            self._refused[(key.namespace, action.name)] = answer.message
            self._event(
                cs,
                "PodUnavailableBudgetRejected",
                warning=True,
                pod=action.name,
                error=answer.message,
            )
        self.queue.add_after(key, self.budget_retry_s)
        return ""

    async def _write_status(
        self,
        key: CloneSetKey,
        cs: views_pb2.CloneSetView,
        plan: revision.RevisionPlan,
        pods: list[views_pb2.PodView],
        now_ms: int,
        *,
        scale_error: str | None = None,
        update_error: str | None = None,
    ) -> None:
        """Write the status (SPEC 2.3) when a tracked field moved or a failure condition came
        or went; the conditions merge this round's outcome (``round_errors``) into the stored
        ones, so a user's or another controller's conditions are written back unchanged.
        Without errors (a status written between create batches) both conditions stay."""
        active = [p for p in pods if pod_active(p)]
        computed = status.compute_status(
            clone_set=cs,
            pods=active,
            update_revision=plan.update,
            current_revision=plan.current,
            collision_count=plan.collision_count,
            label_selector=status.label_selector_string(cs.selector),
            now_ms=now_ms,
        )
        existing = status.conditions_of(cs.status)
        conditions = status.next_conditions(
            existing,
            scale_error=scale_error,
            update_error=update_error,
            now=readiness.rfc3339(now_ms),
        )
        if not (
            status.status_changed(cs.status, computed)
            or status.failures_changed(existing, conditions)
        ):
            return
        try:
            written = await self.cluster.update_status(
                clone_set_ref(key.namespace, key.name),
                status=status.status_body(computed, conditions),
                resource_version=cs.meta.resource_version,
                uid=cs.meta.uid,
            )
        except errors.Conflict:
            self._written.pop((key.namespace, key.name), None)
            self.queue.add_after(key, self.retry_s)
            return
        except errors.NotFound:
            return
        except errors.MeshError as e:
            log.warning(
                "could not write the CloneSet status; retrying",
                extra={"cloneset": str(key), "error": str(e)},
            )
            self.queue.add_after(key, self.backoff.next(key))
            return
        if written.object:
            view = project_clone_set(written.object)
            if view.meta.resource_version:
                self._written[(key.namespace, key.name)] = view

    def _event(
        self,
        cs: views_pb2.CloneSetView,
        reason: str,
        *,
        warning: bool = False,
        messages: Mapping[str, str] = EVENT_MESSAGES,
        **fields: str,
    ) -> None:
        message = messages[reason].format_map(
            {"pod": "", "revision": "", "error": "", "claim": "", **fields}
        )
        self.shell.background(
            self.shell.record_event(
                clone_set_ref(cs.meta.namespace, cs.meta.name),
                uid=cs.meta.uid,
                reason=reason,
                message=message,
                warning=warning,
            )
        )

    # ---- pod readiness (SPEC 3.4) -------------------------------------------------------
    async def reconcile_readiness(self, key: PodKey) -> None:
        pod: views_pb2.PodView | None = self.cache.get(POD, key.namespace, key.name)
        if pod is None or not readiness.needs_initial_condition(pod):
            return
        try:
            await self.cluster.patch(
                pod_ref(key.namespace, key.name),
                patch={
                    "status": {"conditions": [readiness.initial_condition(now_ms=self.clock_ms())]}
                },
                kind="strategic",
                # The condition is a lock others write too (markPodNotReady): only on the
                # version that had no condition, never over one written meanwhile.
                resource_version=pod.meta.resource_version,
                uid=pod.meta.uid,
                subresource="status",
            )
        except errors.NotFound:
            return
        except errors.Conflict:
            return  # the pod moved on; its event brings it back here if still needed
        except errors.MeshError as e:
            log.warning(
                "could not set KruisePodReady",
                extra={"pod": f"{key.namespace}/{key.name}", "error": str(e)},
            )
            self.readiness_queue.add_after(key, self.retry_s)
