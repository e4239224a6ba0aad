"""The placement controller: keeps every PersistentPodState's records, generates them from
workload annotations. The shell around ``recording`` and ``generation``.

    Sync events ─▶ on_event ─▶ Indexes (pods by owner, PPS by target, annotations seen)
                      │
                      └─▶ WorkQueues ─▶ reconcile ─▶ record() / plan_generation()  (pure)
                                            └─▶ cluster API: status, create, patch, delete, Events

The queues, their workers, the pod index rebuilt in slices after a snapshot and the
best-effort Events are the shared ``services.kit.controller.ControllerShell``.

Triggers (SPEC 1.2, level-triggered where OpenKruise is edge-triggered and the
outcome is the same):

* a PersistentPodState event → reconcile it;
* a pod of a supported owner kind that is ready and scheduled, inactive, or gone →
  reconcile the PersistentPodState it was injected from, else the one targeting its
  owner; pending or not-ready pods change nothing and are ignored;
* a workload event → reconcile the PersistentPodStates targeting it (replicas,
  deletion); when its three auto-generation annotations appear or change →
  a generation request (edge-triggered, as OpenKruise: a level trigger would delete
  a user's PersistentPodState named like a workload on every status update);
* a snapshot (first sync, rebalancing) → rebuild the indexes, reconcile every
  PersistentPodState, and generate for every workload that asks; a generated
  PersistentPodState (owned by its workload) whose workload no longer asks is
  deleted, so an annotation removed while this replica did not own the namespace
  is not missed.

Writes carry the resourceVersion the decision saw; ``ABORTED`` (someone else
wrote first) requeues the key and the decision is made again on the newer object
when its event arrives. Node labels come from node events in the cache; nothing
is read from the API server inside the loop.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from prometheus_client import Counter, Gauge

from kruise.common.v1 import mesh_pb2, views_pb2
from services.kit import errors
from services.kit.cache import EVENT_DELETED, ObjectCache, view_of, workload_name
from services.kit.cluster import EventRecorder, ObjectWriter, Ref, StatusWriter
from services.kit.controller import ControllerShell, OwnerIndex
from services.kit.mesh import Handler
from services.kit.objects import controller_ref, group_of, newer, pod_active, pod_ready
from services.kit.projection import project_persistent_pod_state
from services.kit.workqueue import WorkQueue
from services.placement import generation, recording
from services.placement.injection import INJECTED_ANNOTATION
from services.placement.targets import TargetKinds, first_live, target_key, target_of

log = logging.getLogger(__name__)

POD = mesh_pb2.KIND_POD
NODE = mesh_pb2.KIND_NODE
WORKLOAD = mesh_pb2.KIND_WORKLOAD
PPS = mesh_pb2.KIND_PERSISTENT_POD_STATE

RECONCILES = Counter(
    "kruise_mesh_placement_reconciles_total",
    "PersistentPodState reconciles, by what they did",
    ["result"],
)
MOVES = Counter(
    "kruise_mesh_placement_pod_moves_total",
    "Re-created pods that came back on another node or with another IP than recorded",
    ["reason"],
)
GENERATIONS = Counter(
    "kruise_mesh_placement_generations_total",
    "Auto-generation actions on PersistentPodStates",
    ["action"],
)

QUEUE_DEPTH = Gauge(
    "kruise_mesh_placement_queue_depth",
    "Keys waiting in the placement work queue, being reconciled, or waiting for a retry",
)

NATIVE_ONLY = TargetKinds()


class Cluster(StatusWriter, ObjectWriter, EventRecorder, Protocol):
    """The cluster API the controller writes through (``services.kit.cluster.ClusterClient``)."""


@dataclass(frozen=True, slots=True)
class PpsKey:
    namespace: str
    name: str


@dataclass(frozen=True, slots=True)
class GenerateKey:
    namespace: str
    workload: str  # the cache name, group/Kind/name


Key = PpsKey | GenerateKey
NsName = tuple[str, str]


def pps_ref(namespace: str, name: str) -> Ref:
    return Ref(generation.PPS_API_VERSION, generation.PPS_KIND, namespace, name)


@dataclass
class Indexes:
    """Lookups the cache cannot answer by key, kept from the same events.

    ``pods`` holds pod names by (namespace, controller uid); ``pps_by_target`` the
    PersistentPodStates of each target workload (``group/Kind/name``); ``annotations`` the
    auto-generation annotations each workload carried at its last event.
    """

    pods: OwnerIndex = field(default_factory=OwnerIndex)
    pps_by_target: dict[NsName, set[str]] = field(default_factory=dict)
    pps_target: dict[NsName, str] = field(default_factory=dict)
    annotations: dict[NsName, generation.GenerationAnnotations] = field(default_factory=dict)

    def pps(self, pps: views_pb2.PersistentPodStateView, *, deleted: bool) -> None:
        key = (pps.meta.namespace, pps.meta.name)
        old = self.pps_target.pop(key, None)
        if old is not None:
            names = self.pps_by_target.get((key[0], old))
            if names is not None:
                names.discard(key[1])
                if not names:
                    del self.pps_by_target[(key[0], old)]
        if deleted:
            return
        ref = pps.target_ref
        target = target_key(api_version=ref.api_version, kind=ref.kind, name=ref.name)
        self.pps_target[key] = target
        self.pps_by_target.setdefault((key[0], target), set()).add(key[1])


class PlacementController:
    def __init__(
        self,
        *,
        cache: ObjectCache,
        cluster: Cluster,
        kinds: TargetKinds = NATIVE_ONLY,
        workers: int = 8,
        generation_workers: int = 2,
        retry_s: float = 0.5,
    ) -> None:
        self.cache = cache
        self.cluster = cluster
        self.kinds = kinds
        self.retry_s = retry_s
        self.shell = ControllerShell(cache=cache, events=cluster, name="placement")
        # Two queues: a burst of new StatefulSets (generation: a create through the
        # validating webhook, ~20 ms each) must not delay the records of ready pods.
        self.records = self.shell.add_queue(
            WorkQueue[PpsKey](), self.reconcile, workers=workers, name="records"
        )
        self.generations = self.shell.add_queue(
            WorkQueue[GenerateKey](),
            self.reconcile,
            workers=generation_workers,
            name="generations",
        )
        self.index = Indexes()
        # The object each status write returned, until the watch brings it (or newer):
        # the next decision starts from it instead of waiting for the event.
        self._written: dict[NsName, views_pb2.PersistentPodStateView] = {}
        self._warned: set[NsName] = set()

    # ---- lifecycle ----------------------------------------------------------------------
    @property
    def handlers(self) -> Mapping[str, Handler]:
        from services.placement import webhooks

        return webhooks.handlers(self)

    def pending(self) -> int:
        """Keys queued, being reconciled or waiting for a retry, in both queues."""
        return self.shell.pending()

    async def start(self) -> None:
        QUEUE_DEPTH.set_function(self.pending)
        await self.shell.start()

    async def stop(self) -> None:
        await self.shell.stop()

    # ---- lookups (also used by the webhooks) -------------------------------------------
    def supported_owner(self, ref: views_pb2.OwnerReference | None) -> bool:
        return ref is not None and self.kinds.accepts(api_version=ref.api_version, kind=ref.kind)

    def pps_for_target(
        self, namespace: str, *, api_version: str, kind: str, name: str
    ) -> views_pb2.PersistentPodStateView | None:
        """The first live PersistentPodState in ``namespace`` targeting the workload."""
        target = target_key(api_version=api_version, kind=kind, name=name)
        names = self.index.pps_by_target.get((namespace, target), ())
        found = [self.cache.get(PPS, namespace, n) for n in sorted(names)]
        return first_live([p for p in found if p is not None])

    def _pps_of_pod(self, pod: views_pb2.PodView) -> list[str]:
        namespace = pod.meta.namespace
        injected = pod.meta.annotations.get(INJECTED_ANNOTATION)
        if injected and (namespace, injected) in self.index.pps_target:
            return [injected]
        owner = controller_ref(pod.meta.owner_references)
        if owner is None or not self.supported_owner(owner):
            return []
        target = target_key(api_version=owner.api_version, kind=owner.kind, name=owner.name)
        return sorted(self.index.pps_by_target.get((namespace, target), ()))

    # ---- events -------------------------------------------------------------------------
    def on_snapshot(self) -> None:
        """Rebuild the indexes and resync. The pod index is rebuilt in slices (tens of
        thousands of pods would hold the event loop for a good part of a second, and
        admission reviews with it); PersistentPodStates are reconciled once it is whole."""
        self.index = Indexes()
        self._written.clear()

        def index(pod: views_pb2.PodView) -> None:
            self.index.pods.pod(pod, deleted=False)

        self.shell.rebuild_pod_index(index)
        for pps in self.cache.items(PPS):
            self.index.pps(pps, deleted=False)
            self.records.add(PpsKey(pps.meta.namespace, pps.meta.name))
        for workload in self.cache.items(WORKLOAD):
            if not self.kinds.accepts(api_version=workload.api_version, kind=workload.kind):
                continue
            wanted = generation.GenerationAnnotations.of(workload)
            namespace = workload.meta.namespace
            cache_name = workload_name(
                api_version=workload.api_version, kind=workload.kind, name=workload.meta.name
            )
            self.index.annotations[(namespace, cache_name)] = wanted
            if workload.meta.deletion_unix_ms:
                continue
            existing = self.cache.get(PPS, namespace, workload.meta.name)
            if (wanted.enabled and wanted.has_topology) or (
                not wanted.enabled
                and existing is not None
                and generation.owned_by(existing, workload)
            ):
                self.generations.add(GenerateKey(namespace, cache_name))

    def on_event(self, event: mesh_pb2.WatchEvent) -> None:
        view = view_of(event.object)
        if view is None:
            return
        deleted = event.type == EVENT_DELETED
        if event.kind == PPS:
            self.index.pps(view, deleted=deleted)
            self.records.add(PpsKey(view.meta.namespace, view.meta.name))
        elif event.kind == POD:
            self._on_pod(view, deleted=deleted)
        elif event.kind == WORKLOAD:
            self._on_workload(view, deleted=deleted)

    def _on_pod(self, pod: views_pb2.PodView, *, deleted: bool) -> None:
        self.index.pods.pod(pod, deleted=deleted)
        settled = pod_ready(pod) and bool(pod.node_name)
        if not (deleted or settled or not pod_active(pod)):
            return
        for name in self._pps_of_pod(pod):
            self.records.add(PpsKey(pod.meta.namespace, name))

    def _on_workload(self, workload: views_pb2.WorkloadView, *, deleted: bool) -> None:
        if not self.kinds.accepts(api_version=workload.api_version, kind=workload.kind):
            return
        namespace = workload.meta.namespace
        cache_name = workload_name(
            api_version=workload.api_version, kind=workload.kind, name=workload.meta.name
        )
        for name in sorted(self.index.pps_by_target.get((namespace, cache_name), ())):
            self.records.add(PpsKey(namespace, name))
        key = (namespace, cache_name)
        if deleted:
            self.index.annotations.pop(key, None)
            return
        new = generation.GenerationAnnotations.of(workload)
        old = self.index.annotations.get(key)
        self.index.annotations[key] = new
        if generation.annotation_change(old, new, deleting=bool(workload.meta.deletion_unix_ms)):
            self.generations.add(GenerateKey(namespace, cache_name))

    # ---- reconcile ----------------------------------------------------------------------
    async def reconcile(self, key: Key) -> None:
        if isinstance(key, PpsKey):
            await self._reconcile_pps(key)
        else:
            await self._reconcile_generation(key)

    def freshest(self, namespace: str, name: str) -> views_pb2.PersistentPodStateView | None:
        """The cache's view, or the one the last status write returned if that is newer."""
        cached: views_pb2.PersistentPodStateView | None = self.cache.get(PPS, namespace, name)
        written = self._written.get((namespace, name))
        chosen = newer(cached, written) if cached is not None else None
        if chosen is not written:
            self._written.pop((namespace, name), None)  # gone, or the watch caught up
        return chosen

    async def _reconcile_pps(self, key: PpsKey) -> None:
        await self.shell.wait_indexed()
        pps = self.freshest(key.namespace, key.name)
        if pps is None:
            return
        ref = pps.target_ref
        if not self.kinds.accepts(api_version=ref.api_version, kind=ref.kind):
            if (key.namespace, key.name) not in self._warned:
                self._warned.add((key.namespace, key.name))
                log.warning(
                    "PersistentPodState targets a kind placement does not support; ignored",
                    extra={
                        "namespace": key.namespace,
                        "pps": key.name,
                        "target": f"{ref.api_version} {ref.kind} {ref.name}",
                    },
                )
            RECONCILES.labels("unsupported").inc()
            return
        workload = self.cache.get(
            WORKLOAD,
            key.namespace,
            target_key(api_version=ref.api_version, kind=ref.kind, name=ref.name),
        )
        target = None
        pods: list[views_pb2.PodView] = []
        if workload is not None and group_of(ref.api_version) is not None:
            target = target_of(workload)
            for name in sorted(self.index.pods.names(key.namespace, workload.meta.uid)):
                pod = self.cache.get(POD, key.namespace, name)
                if pod is not None:
                    pods.append(pod)
        nodes: dict[str, Mapping[str, str]] = {}
        for pod in pods:
            if pod.node_name and pod.node_name not in nodes:
                node = self.cache.get(NODE, "", pod.node_name)
                if node is not None:
                    nodes[pod.node_name] = dict(node.meta.labels)
        decided = recording.record(pps=pps, target=target, pods=pods, node_labels=nodes)
        if not decided.changed:
            RECONCILES.labels("unchanged").inc()
            return
        status = recording.status_body(decided, generation=pps.meta.generation)
        try:
            written = await self.cluster.update_status(
                pps_ref(key.namespace, key.name),
                status=status,
                resource_version=pps.meta.resource_version,
                uid=pps.meta.uid,
            )
        except errors.Conflict:
            RECONCILES.labels("conflict").inc()
            self._written.pop((key.namespace, key.name), None)
            self.records.add_after(key, self.retry_s)
            return
        except errors.NotFound:
            RECONCILES.labels("gone").inc()
            return
        RECONCILES.labels("written").inc()
        if written.object:
            self._written[(key.namespace, key.name)] = project_persistent_pod_state(written.object)
        log.info(
            "recorded pod states",
            extra={
                "namespace": key.namespace,
                "pps": key.name,
                "pods": len(decided.pod_states),
                "target_found": target is not None,
            },
        )
        by_name = {p.meta.name: p for p in pods}
        for move in decided.moves:
            self.shell.background(
                self._report_move(key.namespace, key.name, move, by_name.get(move.pod))
            )

    async def _report_move(
        self,
        namespace: str,
        pps_name: str,
        move: recording.Move,
        pod: views_pb2.PodView | None,
    ) -> None:
        MOVES.labels(move.reason).inc()
        message = (
            f"PersistentPodState {pps_name} recorded pod {move.pod} on node {move.old_node}"
            f"{f' with IP {move.old_ip}' if move.old_ip else ''}; it came back on node "
            f"{move.new_node} with IP {move.new_ip or 'none'}"
        )
        log.warning(
            "pod came back elsewhere",
            extra={"namespace": namespace, "pod": move.pod, "reason": move.reason},
        )
        if pod is None:
            return
        await self.shell.record_event(
            Ref("v1", "Pod", namespace, move.pod),
            uid=pod.meta.uid,
            reason=f"PersistentPodState{move.reason}",
            message=message,
            warning=True,
        )

    async def _reconcile_generation(self, key: GenerateKey) -> None:
        workload = self.cache.get(WORKLOAD, key.namespace, key.workload)
        if workload is None or workload.meta.deletion_unix_ms:
            return
        name = workload.meta.name
        existing = self.cache.get(PPS, key.namespace, name)
        plan = generation.plan_generation(workload=workload, existing=existing)
        ref = pps_ref(key.namespace, name)
        workload_ref = Ref(workload.api_version, workload.kind, key.namespace, name)
        try:
            if isinstance(plan, generation.Create):
                await self.cluster.create(ref, plan.body)
                self.shell.background(
                    self._event(workload_ref, workload, "PersistentPodStateCreated", name)
                )
            elif isinstance(plan, generation.ReplaceSpec):
                await self.cluster.patch(
                    ref,
                    patch=[{"op": "replace", "path": "/spec", "value": plan.spec}],
                    kind="json",
                    resource_version=plan.resource_version,
                )
            elif isinstance(plan, generation.Delete):
                await self.cluster.delete(ref, uid=plan.uid)
                self.shell.background(
                    self._event(workload_ref, workload, "PersistentPodStateDeleted", name)
                )
            else:
                GENERATIONS.labels("none").inc()
                log.debug("no generation", extra={"reason": plan.reason})
                return
        except errors.AlreadyExists:
            # Created by someone else meanwhile: decide again once its event arrived.
            self.generations.add_after(key, self.retry_s)
            return
        except errors.Conflict:
            self.generations.add_after(key, self.retry_s)
            return
        except errors.NotFound:
            return
        except (errors.Invalid, errors.Forbidden) as e:
            # The validating webhook refused it (say, another PersistentPodState targets
            # the workload): report it on the workload, do not retry until it changes.
            GENERATIONS.labels("refused").inc()
            log.warning(
                "PersistentPodState not generated",
                extra={"namespace": key.namespace, "workload": name, "error": str(e)},
            )
            self.shell.background(
                self._event(
                    workload_ref, workload, "PersistentPodStateRefused", name, warning=str(e)
                )
            )
            return
        action = type(plan).__name__.lower()
        GENERATIONS.labels(action).inc()
        log.info(
            "auto-generation",
            extra={"namespace": key.namespace, "workload": name, "action": action},
        )

    async def _event(
        self,
        ref: Ref,
        workload: views_pb2.WorkloadView,
        reason: str,
        pps_name: str,
        *,
        warning: str = "",
    ) -> None:
        messages = {
            "PersistentPodStateCreated": f"created PersistentPodState {pps_name}",
            "PersistentPodStateDeleted": f"deleted PersistentPodState {pps_name}: "
            f'{generation.AUTO_GENERATE} is not "true"',
            "PersistentPodStateRefused": f"PersistentPodState {pps_name} was refused: {warning}",
        }
        await self.shell.record_event(
            ref,
            uid=workload.meta.uid,
            reason=reason,
            message=messages[reason],
            warning=bool(warning),
        )
