"""The budget controller: keeps every PodUnavailableBudget's status (SPEC 4.5) and links pods
to their budget (``kruise.io/related-pub`` back-fill, SPEC 4.4). The shell around
``services.budget.status``.

    Sync events ─▶ on_event ─▶ Indexes (pods and ReplicaSets by owner, budgets by target
                      │                 and selector, controller owners by uid)
                      └─▶ WorkQueue ─▶ reconcile ─▶ observe (cache, WorkloadFinder)
                                           ├─▶ status.reconcile()  (pure)
                                           └─▶ cluster API: pod patches, status, Events

The indexes are ``services.budget.indexes``, the observation ``services.budget.observe``.
The queue and its workers, the pod index rebuilt in slices after a snapshot and the
best-effort Events are the shared ``services.kit.controller.ControllerShell``; retries back
off with its ``Backoff``.

Triggers (level-triggered where OpenKruise is edge-triggered; a reconcile whose decision
changes nothing writes nothing, so an extra one costs a cache read):

* a budget event (any, deletion included) → reconcile it; when only its status moved (the
  admission path writes it, many times a second under load) → reconcile it once
  ``STATUS_SETTLE_S`` (200 ms) later, however many such events came meanwhile;
* a pod event (any: created, changed, deleted) → the budget named by its
  ``kruise.io/related-pub`` when that budget exists, else every budget of the namespace
  whose targetRef is the pod's controller or that controller's controller (a pod of a
  ReplicaSet owned by a Deployment reaches a budget targeting the Deployment), or whose
  non-empty selector matches the pod's labels; and the budgets the pod's previous event
  went to, so a pod whose labels stop matching is counted out at once. OpenKruise
  enqueues only on readiness flips and new deletions (and delays the latter by 5 s);
  every pod event is a superset of those;
* a workload event (Deployment, ReplicaSet, StatefulSet, CloneSet, a custom kind in the
  cache) whose spec replicas, deletion or controller owner changed, or that appeared or
  went → every budget of the namespace (OpenKruise matches the template's labels, which
  the view does not carry; budgets per namespace are few). Custom kinds read through
  ``/scale`` are not watched: their replica changes are seen on the next pod or budget
  event (SPEC 4.9), and a requeue at the earliest map expiry;
* a snapshot (first sync, rebalancing) → rebuild the indexes, reconcile every budget.

Reconcile (one budget):

1. Gone or being deleted → forget it (and the committer's state for it).
2. Observe (``services.budget.observe``): the budget's pods and expected replicas, from a
   targetRef workload or a selector, as a ``BudgetObservation``. A missing workload (a 404,
   or a kind the cluster does not know) counts as total 0; any other resolution error
   writes nothing and retries with backoff.
3. ``status.reconcile`` on the newest known view (``BudgetCommitter.freshest``: the cache's
   or the one last written here, whichever is newer), with each pod's availability
   remembered for its resourceVersion (most pods are unchanged between two reconciles).
   ``ScaleError`` → Warning Event ``CalculateExpectedPodCountFailed`` (once per message)
   and a retry with backoff.
   No pods → Normal Event ``NoPods`` once per transition into that state.
4. Back-fill: each selected active pod without ``kruise.io/related-pub`` gets it by a
   merge patch carrying the pod's resourceVersion (a pod changed meanwhile — perhaps
   annotated by someone else — answers ``ABORTED`` and is left alone; its event brings the
   budget back here). A patch is sent once per pod resourceVersion.
5. Changed → under the committer's per-budget lock (the pod webhook spends budget through
   the same lock), take the freshest view again and, if it moved since step 3 (admission
   may have spent budget), decide again on it; then write ``status_body`` with that view's
   resourceVersion and uid and hand the stored object to ``committer.remember``; so the
   next decision, ours or admission's, starts from it even before its watch event.
   ``ABORTED`` → read the budget (the committer remembers it) and requeue shortly.
   ``NotDeleted`` Warning Events go on each pod whose admitted deletion expired, after the
   write that dropped it.
6. Requeue at ``requeue_after_ms`` (the earliest map expiry), if any.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from prometheus_client import Counter, Gauge

from kruise.common.v1 import mesh_pb2, views_pb2
from services.budget import status
from services.budget.committer import BudgetCommitter, budget_ref
from services.budget.decision import RELATED_PUB
from services.budget.indexes import Indexes, NsName, is_replica_set, ref_key
from services.budget.observe import BudgetObservation, BudgetObserver, written_view
from services.budget.workloads import WorkloadFinder
from services.kit import errors
from services.kit.cache import EVENT_DELETED, ObjectCache, view_of
from services.kit.cluster import EventRecorder, ObjectReader, ObjectWriter, Ref, StatusWriter
from services.kit.controller import Backoff, ControllerShell
from services.kit.objects import controller_ref, pod_active
from services.kit.projection import project_pod_unavailable_budget
from services.kit.workqueue import WorkQueue

log = logging.getLogger(__name__)

POD = mesh_pb2.KIND_POD
WORKLOAD = mesh_pb2.KIND_WORKLOAD
CLONE_SET = mesh_pb2.KIND_CLONE_SET
PUB = mesh_pb2.KIND_POD_UNAVAILABLE_BUDGET

RECONCILES = Counter(
    "kruise_mesh_budget_reconciles_total",
    "PodUnavailableBudget status reconciles, by what they did",
    ["result"],
)
BACKFILLS = Counter(
    "kruise_mesh_budget_related_pub_backfills_total",
    "kruise.io/related-pub patches onto existing pods, by result",
    ["result"],
)
QUEUE_DEPTH = Gauge(
    "kruise_mesh_budget_queue_depth",
    "Keys waiting in the budget work queue, being reconciled, or waiting for a retry",
)

NO_PODS_MESSAGE = "No matching pods found"


class Cluster(StatusWriter, ObjectWriter, ObjectReader, EventRecorder, Protocol):
    """The cluster API the controller writes through (``services.kit.cluster.ClusterClient``)."""


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class BudgetKey:
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


# How long a status-only budget event may wait for the ones that follow it. Under load the
# admission path writes each budget's status many times a second; every write is followed
# by one reconcile at most this much later (it lowers ``currentAvailable``).
STATUS_SETTLE_S = 0.2


class BudgetController:
    def __init__(
        self,
        *,
        cache: ObjectCache,
        cluster: Cluster,
        finder: WorkloadFinder,
        committer: BudgetCommitter,
        clock_ms: Callable[[], int] = wall_clock_ms,
        workers: int = 3,
        retry_s: float = 0.5,
        max_backoff_s: float = 30.0,
        status_settle_s: float = STATUS_SETTLE_S,
    ) -> None:
        self.cache = cache
        self.cluster = cluster
        self.committer = committer
        self.clock_ms = clock_ms
        self.retry_s = retry_s
        self.status_settle_s = status_settle_s
        self.shell = ControllerShell(cache=cache, events=cluster, name="budget")
        self.queue = self.shell.add_queue(
            WorkQueue[BudgetKey](), self.reconcile, workers=workers, name="budget"
        )
        self.index = Indexes()
        self.observer = BudgetObserver(cache=cache, finder=finder)
        self._backoff = Backoff[BudgetKey](base=retry_s, cap=max_backoff_s)
        self._no_pods: set[BudgetKey] = set()
        self._scale_errors: dict[BudgetKey, str] = {}
        self._backfilled: dict[NsName, str] = {}
        self._generations: dict[BudgetKey, int] = {}
        # pod_available per pod, for the resourceVersion it was computed on: a reconcile
        # after an admission write re-reads every pod of the budget, most unchanged.
        self._availability: dict[NsName, tuple[str, bool]] = {}

    # ---- lifecycle ----------------------------------------------------------------------
    def pending(self) -> int:
        """Keys queued, being reconciled or waiting for a retry."""
        return self.shell.pending()

    async def start(self) -> None:
        QUEUE_DEPTH.set_function(self.pending)
        await self.shell.start()

    async def stop(self) -> None:
        await self.shell.stop()

    # ---- events -------------------------------------------------------------------------
    def on_snapshot(self) -> None:
        self.index = Indexes()
        self._backfilled.clear()
        self._generations.clear()
        self._availability.clear()
        for budget in self.cache.items(PUB):
            self.index.budget(budget, deleted=False)
            key = BudgetKey(budget.meta.namespace, budget.meta.name)
            self._generations[key] = budget.meta.generation
            self.queue.add(key)
        for workload in self.cache.items(WORKLOAD):
            self._index_workload(workload, deleted=False)
        for clone_set in self.cache.items(CLONE_SET):
            self._index_clone_set(clone_set, deleted=False)

        # Pods are indexed in slices (tens of thousands would hold the event loop, and the
        # pod webhooks with it); budgets are reconciled once the index is whole.
        def index(pod: views_pb2.PodView) -> None:
            self.index.pod(pod, deleted=False)
            found = self.index.budgets_of_pod(pod)
            if found:
                self.index.pod_budgets[(pod.meta.namespace, pod.meta.name)] = frozenset(found)

        self.shell.rebuild_pod_index(index)

    def on_event(self, event: mesh_pb2.WatchEvent) -> None:
        view = view_of(event.object)
        if view is None:
            return
        deleted = event.type == EVENT_DELETED
        if event.kind == PUB:
            self.index.budget(view, deleted=deleted)
            key = BudgetKey(view.meta.namespace, view.meta.name)
            seen = self._generations.get(key)
            if deleted:
                self._generations.pop(key, None)
                self.queue.add(key)
            elif seen == view.meta.generation:
                # Only the status moved (admission spends write it many times a second
                # under load): one reconcile shortly after covers a burst of them.
                self.queue.add_after(key, self.status_settle_s)
            else:
                self._generations[key] = view.meta.generation
                self.queue.add(key)
        elif event.kind == POD:
            self._on_pod(view, deleted=deleted)
        elif event.kind == WORKLOAD:
            if self._index_workload(view, deleted=deleted):
                self._enqueue_namespace(view.meta.namespace)
        elif event.kind == CLONE_SET and self._index_clone_set(view, deleted=deleted):
            self._enqueue_namespace(view.meta.namespace)

    def _on_pod(self, pod: views_pb2.PodView, *, deleted: bool) -> None:
        key = (pod.meta.namespace, pod.meta.name)
        self.index.pod(pod, deleted=deleted)
        self._backfilled.pop(key, None)
        if deleted:
            self._availability.pop(key, None)
        before = self.index.pod_budgets.pop(key, frozenset())
        now = self.index.budgets_of_pod(pod)
        if now and not deleted:
            self.index.pod_budgets[key] = frozenset(now)
        for name in sorted(before | now):
            self.queue.add(BudgetKey(pod.meta.namespace, name))

    def _index_workload(self, view: views_pb2.WorkloadView, *, deleted: bool) -> bool:
        """Index a workload; True when a budget's total or pods may have changed."""
        if is_replica_set(view):
            self.index.replica_set(view, deleted=deleted)
        owner = controller_ref(view.meta.owner_references)
        replicas = view.spec_replicas if view.HasField("spec_replicas") else None
        signature = (replicas, bool(view.meta.deletion_unix_ms), owner.uid if owner else "")
        name = ref_key(api_version=view.api_version, kind=view.kind, name=view.meta.name)
        return self._workload_signature(view.meta.namespace, name, None if deleted else signature)

    def _index_clone_set(self, view: views_pb2.CloneSetView, *, deleted: bool) -> bool:
        replicas = view.replicas if view.HasField("replicas") else None
        signature = (replicas, bool(view.meta.deletion_unix_ms), "")
        name = ref_key(api_version="apps.kruise.io/v1alpha1", kind="CloneSet", name=view.meta.name)
        return self._workload_signature(view.meta.namespace, name, None if deleted else signature)

    def _workload_signature(
        self, namespace: str, name: str, signature: tuple[int | None, bool, str] | None
    ) -> bool:
        key = (namespace, name)
        old = self.index.workloads.get(key)
        if signature is None:
            self.index.workloads.pop(key, None)
        else:
            self.index.workloads[key] = signature
        return old != signature

    def _enqueue_namespace(self, namespace: str) -> None:
        for name in sorted(self.index.budgets.get(namespace, ())):
            self.queue.add(BudgetKey(namespace, name))

    # ---- reconcile ----------------------------------------------------------------------
    async def reconcile(self, key: BudgetKey) -> None:
        await self.shell.wait_indexed()
        budget = self.committer.freshest(key.namespace, key.name)
        if budget is None or budget.meta.deletion_unix_ms:
            self._forget(key)
            RECONCILES.labels("gone").inc()
            return
        try:
            seen = await self.observer.observe(budget, index=self.index)
        except errors.MeshError as e:
            RECONCILES.labels("error").inc()
            log.warning(
                "could not resolve the budget's workloads; retrying",
                extra={"budget": str(key), "error": str(e)},
            )
            self._retry(key)
            return
        decided = status.reconcile(
            budget=budget,
            total_replicas=seen.total_replicas,
            pods=seen.pods,
            now_ms=self.clock_ms(),
            available=self._available,
        )
        if isinstance(decided, status.ScaleError):
            await self._scale_failed(key, budget, decided)
            return
        self._scale_errors.pop(key, None)
        await self._report_no_pods(key, budget, no_pods=decided.no_pods)
        await self._backfill(key, seen.pods)
        if decided.changed:
            written = await self._write(key, budget, seen, decided)
            if written is None:
                return
            decided = written
        else:
            RECONCILES.labels("unchanged").inc()
        self._backoff.reset(key)
        if decided.requeue_after_ms is not None:
            self.queue.add_after(key, decided.requeue_after_ms / 1000)

    async def _write(
        self,
        key: BudgetKey,
        observed_on: views_pb2.PodUnavailableBudgetView,
        seen: BudgetObservation,
        decided_on_observed: status.Reconciliation,
    ) -> status.Reconciliation | None:
        """Under the budget's lock, write the decision if the budget did not move, else
        decide again on the freshest view and write that.

        The decision made outside the lock may be stale: the pod webhook can have spent
        budget since (a new ``disruptedPods`` entry, a lower ``unavailableAllowed``), and
        writing that decision would give the spend back. Returns the decision written (or
        found unchanged), None when the key was requeued or the budget is gone.
        """
        async with self.committer.locked(key.namespace, key.name):
            budget = self.committer.freshest(key.namespace, key.name)
            if budget is None or budget.meta.deletion_unix_ms:
                RECONCILES.labels("gone").inc()
                return None
            if budget.meta.generation != observed_on.meta.generation:
                # The spec moved since the pods were gathered: observe again.
                RECONCILES.labels("spec-changed").inc()
                self.queue.add(key)
                return None
            moved = budget.meta.resource_version != observed_on.meta.resource_version
            decided = (
                status.reconcile(
                    budget=budget,
                    total_replicas=seen.total_replicas,
                    pods=seen.pods,
                    now_ms=self.clock_ms(),
                    available=self._available,
                )
                if moved
                else decided_on_observed
            )
            if isinstance(decided, status.ScaleError):  # same generation: cannot happen
                self.queue.add(key)
                return None
            if not decided.changed:
                RECONCILES.labels("unchanged").inc()
                return decided
            try:
                written = await self.cluster.update_status(
                    budget_ref(key.namespace, key.name),
                    status=status.status_body(decided.status),
                    resource_version=budget.meta.resource_version,
                    uid=budget.meta.uid,
                )
            except errors.Conflict:
                RECONCILES.labels("conflict").inc()
                await self._refresh(key)
                self.queue.add_after(key, self.retry_s)
                return None
            except errors.NotFound:
                RECONCILES.labels("gone").inc()
                return None
            except errors.MeshError as e:
                RECONCILES.labels("error").inc()
                log.warning(
                    "could not write the budget's status; retrying",
                    extra={"budget": str(key), "error": str(e)},
                )
                self._retry(key)
                return None
            self.committer.remember(written_view(budget, written, decided.status))
        RECONCILES.labels("written").inc()
        st = decided.status
        log.info(
            "budget status written",
            extra={
                "budget": str(key),
                "allowed": st.unavailable_allowed,
                "current": st.current_available,
                "desired": st.desired_available,
                "total": st.total_replicas,
                "recorded": st.recorded_count,
            },
        )
        await self._report_not_deleted(key, decided, seen)
        return decided

    def _available(self, pod: views_pb2.PodView) -> bool:
        """``status.pod_available``, remembered per pod for its resourceVersion."""
        key = (pod.meta.namespace, pod.meta.name)
        version = pod.meta.resource_version
        known = self._availability.get(key)
        if known is not None and known[0] == version and version:
            return known[1]
        answer = status.pod_available(pod)
        self._availability[key] = (version, answer)
        return answer

    async def _refresh(self, key: BudgetKey) -> None:
        """After a conflict: read the budget so the retry decides on what won."""
        try:
            got = await self.cluster.get(budget_ref(key.namespace, key.name))
        except errors.MeshError:
            return  # the retry decides on the cache; its watch event comes anyway
        view = project_pod_unavailable_budget(got.object)
        if view.meta.name and view.meta.resource_version:
            self.committer.remember(view)

    def _retry(self, key: BudgetKey) -> None:
        self.queue.add_after(key, self._backoff.next(key))

    def _forget(self, key: BudgetKey) -> None:
        self._no_pods.discard(key)
        self._scale_errors.pop(key, None)
        self._backoff.reset(key)
        self.committer.forget(key.namespace, key.name)

    # ---- side effects -------------------------------------------------------------------
    async def _backfill(self, key: BudgetKey, pods: Iterable[views_pb2.PodView]) -> None:
        """Annotate the budget's active pods that name no budget yet (SPEC 4.4)."""
        for pod in pods:
            if not pod_active(pod) or pod.meta.annotations.get(RELATED_PUB):
                continue
            pod_key = (key.namespace, pod.meta.name)
            if self._backfilled.get(pod_key) == pod.meta.resource_version:
                continue  # already sent for this version; its event has not arrived yet
            self._backfilled[pod_key] = pod.meta.resource_version
            try:
                await self.cluster.patch(
                    Ref("v1", "Pod", key.namespace, pod.meta.name),
                    patch={"metadata": {"annotations": {RELATED_PUB: key.name}}},
                    kind="merge",
                    resource_version=pod.meta.resource_version,
                    uid=pod.meta.uid,
                )
            except errors.Conflict:
                BACKFILLS.labels("conflict").inc()
            except errors.NotFound:
                BACKFILLS.labels("gone").inc()
            except errors.MeshError as e:
                BACKFILLS.labels("error").inc()
                self._backfilled.pop(pod_key, None)
                log.warning(
                    "could not link the pod to its budget",
                    extra={"budget": str(key), "pod": pod.meta.name, "error": str(e)},
                )
            else:
                BACKFILLS.labels("patched").inc()

    async def _scale_failed(
        self,
        key: BudgetKey,
        budget: views_pb2.PodUnavailableBudgetView,
        failed: status.ScaleError,
    ) -> None:
        RECONCILES.labels("scale-error").inc()
        self._retry(key)
        if self._scale_errors.get(key) == failed.message:
            return
        self._scale_errors[key] = failed.message
        log.warning(
            "cannot compute the budget's desired pods",
            extra={"budget": str(key), "error": failed.message},
        )
        await self.shell.record_event(
            budget_ref(key.namespace, key.name),
            uid=budget.meta.uid,
            warning=True,
            reason=status.CALCULATE_FAILED,
            message=failed.event_message,
        )

    async def _report_no_pods(
        self, key: BudgetKey, budget: views_pb2.PodUnavailableBudgetView, *, no_pods: bool
    ) -> None:
        if not no_pods:
            self._no_pods.discard(key)
            return
        if key in self._no_pods:
            return
        self._no_pods.add(key)
        await self.shell.record_event(
            budget_ref(key.namespace, key.name),
            uid=budget.meta.uid,
            warning=False,
            reason=status.NO_PODS,
            message=NO_PODS_MESSAGE,
        )

    async def _report_not_deleted(
        self, key: BudgetKey, decided: status.Reconciliation, seen: BudgetObservation
    ) -> None:
        if not decided.not_deleted:
            return
        uids = {pod.meta.name: pod.meta.uid for pod in seen.pods}
        message = decided.not_deleted_message(namespace=key.namespace, name=key.name)
        for pod in decided.not_deleted:
            log.warning(
                "an admitted pod deletion did not happen",
                extra={"budget": str(key), "pod": pod},
            )
            await self.shell.record_event(
                Ref("v1", "Pod", key.namespace, pod),
                uid=uids.get(pod, ""),
                warning=True,
                reason=status.NOT_DELETED,
                message=message,
            )
