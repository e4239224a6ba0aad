"""What one budget reconcile observes before it decides (step 2 of
``services.budget.controller``), and the budget as its status write stored it.

``BudgetObserver.observe`` gathers a ``BudgetObservation``:

* a targetRef budget resolves its workload through the ``WorkloadFinder`` (cache for
  built-in kinds, ``/scale`` for others) and takes the pods owned by the workload's uid or
  by ReplicaSets owned by it (``Indexes.owned_pod_names``; a custom kind read through
  ``/scale`` has no uid: its uids are the controller owners seen on pods and ReplicaSets
  with its group, kind and name); total = its replicas (0 when missing or being deleted);
* a selector budget takes ``selector_pods`` of the namespace and sums the replicas of the
  distinct controllers of those pods (``total_replicas_of``);
* a kind the cluster does not know (``Invalid``) counts as missing (total 0), as a 404
  does; any other resolution error is raised (the controller writes nothing and retries).

``written_view`` is pure: the budget a status write stored, which the controller hands to
the committer so the next decision starts from it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

from kruise.common.v1 import mesh_pb2, views_pb2
from services.budget import status
from services.budget.indexes import Indexes, ref_key
from services.budget.workloads import Workload, WorkloadFinder
from services.kit import errors
from services.kit.cache import ObjectCache
from services.kit.cluster import Written
from services.kit.objects import controller_ref
from services.kit.projection import project_pod_unavailable_budget

log = logging.getLogger(__name__)

POD = mesh_pb2.KIND_POD


@dataclass(frozen=True, slots=True)
class BudgetObservation:
    """What one reconcile observed of a budget's world, gathered before deciding.

    ``pods`` are the budget's pods: a targetRef workload's pods (any phase; the decision
    ignores inactive ones) or the active pods its selector matches, by name.
    ``total_replicas`` is None when the targetRef workload was not found (the status says
    0). ``workload`` is the resolved targetRef workload; None for a selector budget, or
    when it was not found.
    """

    pods: tuple[views_pb2.PodView, ...]
    total_replicas: int | None
    workload: Workload | None = None


NOTHING = BudgetObservation(pods=(), total_replicas=None)


class BudgetObserver:
    """Reads a budget's pods from the cache and its workloads through the finder."""

    def __init__(self, *, cache: ObjectCache, finder: WorkloadFinder) -> None:
        self.cache = cache
        self.finder = finder
        self._unknown_kinds: set[tuple[str, str, str]] = set()

    async def observe(
        self, budget: views_pb2.PodUnavailableBudgetView, *, index: Indexes
    ) -> BudgetObservation:
        """Gather the budget's pods and expected replicas (see the module docstring).

        Raises ``errors.MeshError`` when a workload could not be resolved for a reason other
        than not existing (nothing is decided then).
        """
        namespace = budget.meta.namespace
        if budget.HasField("target_ref"):
            ref = budget.target_ref
            workload = await self._resolve(
                namespace, api_version=ref.api_version, kind=ref.kind, name=ref.name
            )
            if workload is None:
                return NOTHING
            if workload.uid:
                uids: Iterable[str] = (workload.uid,)
            else:
                key = ref_key(
                    api_version=workload.api_version, kind=workload.kind, name=workload.name
                )
                uids = sorted(index.uids_by_key.get((namespace, key), ()))
            pods = self._pods(namespace, index.owned_pod_names(namespace, uids))
            total = 0 if workload.deleting else workload.replicas
            return BudgetObservation(pods=tuple(pods), total_replicas=total, workload=workload)
        if budget.HasField("selector"):
            selected = status.selector_pods(budget, self.cache.items(POD, namespace))
            total = await self._owners_total(namespace, selected)
            return BudgetObservation(pods=tuple(selected), total_replicas=total)
        return NOTHING

    def _pods(self, namespace: str, names: Iterable[str]) -> list[views_pb2.PodView]:
        found = (self.cache.get(POD, namespace, name) for name in sorted(names))
        return [pod for pod in found if pod is not None]

    async def _owners_total(self, namespace: str, pods: Iterable[views_pb2.PodView]) -> int:
        owners: dict[str, views_pb2.OwnerReference] = {}
        for pod in pods:
            ref = controller_ref(pod.meta.owner_references)
            if ref is not None:
                key = ref.uid or ref_key(api_version=ref.api_version, kind=ref.kind, name=ref.name)
                owners.setdefault(key, ref)
        resolved: list[status.OwnerReplicas | None] = []
        for ref in owners.values():
            workload = await self._resolve(
                namespace,
                api_version=ref.api_version,
                kind=ref.kind,
                name=ref.name,
                uid=ref.uid,
            )
            resolved.append(
                None
                if workload is None
                else status.OwnerReplicas(
                    uid=workload.uid or f"{workload.group}/{workload.kind}/{workload.name}",
                    replicas=workload.replicas,
                    deleting=workload.deleting,
                )
            )
        return status.total_replicas_of(resolved)

    async def _resolve(
        self, namespace: str, *, api_version: str, kind: str, name: str, uid: str = ""
    ) -> Workload | None:
        try:
            return await self.finder.resolve(
                namespace, api_version=api_version, kind=kind, name=name, uid=uid
            )
        except errors.Invalid as e:
            # A kind the cluster does not know (or a malformed apiVersion): no such
            # workload can exist, so it counts as missing, as a 404 does.
            seen = (namespace, api_version, kind)
            if seen not in self._unknown_kinds:
                self._unknown_kinds.add(seen)
                log.warning(
                    "workload kind cannot be resolved; counted as missing",
                    extra={
                        "namespace": namespace,
                        "workload": f"{api_version} {kind} {name}",
                        "error": str(e),
                    },
                )
            return None


def written_view(
    decided_on: views_pb2.PodUnavailableBudgetView,
    written: Written,
    written_status: status.BudgetStatus,
) -> views_pb2.PodUnavailableBudgetView:
    """The budget as a status write stored it: the API server's answer, projected.

    When the answer carries no object, the view the decision was made on with the written
    status (times truncated to whole seconds, as ``metav1.Time`` stores them) and the new
    resourceVersion. Pure.
    """
    if written.object:
        view = project_pod_unavailable_budget(written.object)
        if view.meta.name and view.meta.resource_version:
            return view
    view = views_pb2.PodUnavailableBudgetView()
    view.CopyFrom(decided_on)
    view.meta.resource_version = written.resource_version
    view.observed_generation = written_status.observed_generation
    view.unavailable_allowed = written_status.unavailable_allowed
    view.current_available = written_status.current_available
    view.desired_available = written_status.desired_available
    view.total_replicas = written_status.total_replicas
    view.ClearField("disrupted_pods")
    view.ClearField("unavailable_pods")
    for pod, at_ms in written_status.disrupted_pods.items():
        view.disrupted_pods[pod] = at_ms // 1000 * 1000
    for pod, at_ms in written_status.unavailable_pods.items():
        view.unavailable_pods[pod] = at_ms // 1000 * 1000
    return view
