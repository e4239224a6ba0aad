"""The budget controller's lookups the cache cannot answer by key, kept from the same events.

    pods          pod names by (namespace, controller uid)            ``OwnerIndex``
    replica_sets  ReplicaSet uids by (namespace, controller uid)      ``OwnerIndex``
    owner_key     ``group/Kind/name`` of each controller owner seen on a pod or a ReplicaSet
    budgets       budget names by namespace, by targetRef, by selector
    workloads     what a workload event may change of a budget (replicas, deletion, owner)
    pod_budgets   the budgets each pod's last event went to

``Indexes.budgets_of_pod`` routes a pod event to its budgets (the pod trigger of
``services.budget.controller``); ``Indexes.owned_pod_names`` gives a targetRef workload's
pods, directly or through the ReplicaSets it owns (``services.budget.observe``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from kruise.common.v1 import views_pb2
from services.budget import status
from services.budget.decision import RELATED_PUB
from services.kit.cache import workload_name
from services.kit.controller import OwnerIndex
from services.kit.objects import controller_ref, group_of

NsName = tuple[str, str]


def ref_key(*, api_version: str, kind: str, name: str) -> str:
    """A version-free reference, ``group/Kind/name`` (the cache's workload name)."""
    return workload_name(api_version=api_version, kind=kind, name=name)


def is_replica_set(view: views_pb2.WorkloadView) -> bool:
    return view.kind == "ReplicaSet" and group_of(view.api_version) == "apps"


@dataclass
class Indexes:
    """Lookups the cache cannot answer by key, kept from the same events.

    Owners are keyed by uid within a namespace. ``owner_key``/``uids_by_key`` remember the
    ``group/Kind/name`` of every controller owner seen on a pod or a ReplicaSet while
    something still names it, so a custom-kind target (resolved through ``/scale``, no
    uid) still finds its pods. ``rs_uid`` is the uid each ReplicaSet (by namespace and
    ``group/Kind/name``) is indexed under in ``replica_sets``.
    """

    pods: OwnerIndex = field(default_factory=OwnerIndex)
    replica_sets: OwnerIndex = field(default_factory=OwnerIndex)
    rs_uid: dict[NsName, str] = field(default_factory=dict)
    owner_key: dict[NsName, str] = field(default_factory=dict)
    uids_by_key: dict[NsName, set[str]] = field(default_factory=dict)
    budgets: dict[str, set[str]] = field(default_factory=dict)
    budgets_by_target: dict[NsName, set[str]] = field(default_factory=dict)
    budget_target: dict[NsName, str] = field(default_factory=dict)
    selectors: dict[str, dict[str, views_pb2.LabelSelector]] = field(default_factory=dict)
    workloads: dict[NsName, tuple[int | None, bool, str]] = field(default_factory=dict)
    pod_budgets: dict[NsName, frozenset[str]] = field(default_factory=dict)

    # ---- owners -------------------------------------------------------------------------
    def _see_owner(self, namespace: str, ref: views_pb2.OwnerReference) -> None:
        key = ref_key(api_version=ref.api_version, kind=ref.kind, name=ref.name)
        old = self.owner_key.get((namespace, ref.uid))
        if old == key:
            return
        if old is not None:
            self._drop_uid_key(namespace, ref.uid, old)
        self.owner_key[(namespace, ref.uid)] = key
        self.uids_by_key.setdefault((namespace, key), set()).add(ref.uid)

    def _drop_uid_key(self, namespace: str, uid: str, key: str) -> None:
        uids = self.uids_by_key.get((namespace, key))
        if uids is not None:
            uids.discard(uid)
            if not uids:
                del self.uids_by_key[(namespace, key)]

    def _release_owner(self, namespace: str, uid: str) -> None:
        if self.pods.holds(namespace, uid) or self.replica_sets.holds(namespace, uid):
            return
        key = self.owner_key.pop((namespace, uid), None)
        if key is not None:
            self._drop_uid_key(namespace, uid, key)

    @staticmethod
    def _unlink(index: dict[NsName, set[str]], key: NsName, member: str) -> None:
        members = index.get(key)
        if members is not None:
            members.discard(member)
            if not members:
                del index[key]

    # ---- updates ------------------------------------------------------------------------
    def pod(self, pod: views_pb2.PodView, *, deleted: bool) -> None:
        namespace = pod.meta.namespace
        owner = None if deleted else controller_ref(pod.meta.owner_references)
        uid = owner.uid if owner is not None else ""
        old = self.pods.put(namespace, pod.meta.name, uid)
        if owner is not None and uid:
            self._see_owner(namespace, owner)
        if old is not None and old != uid:
            self._release_owner(namespace, old)

    def replica_set(self, view: views_pb2.WorkloadView, *, deleted: bool) -> None:
        namespace = view.meta.namespace
        key = (
            namespace,
            ref_key(api_version=view.api_version, kind=view.kind, name=view.meta.name),
        )
        old_uid = self.rs_uid.pop(key, None)
        old = self.replica_sets.put(namespace, old_uid, None) if old_uid is not None else None
        owner = None if deleted else controller_ref(view.meta.owner_references)
        if owner is not None and owner.uid and view.meta.uid:
            self.rs_uid[key] = view.meta.uid
            self.replica_sets.put(namespace, view.meta.uid, owner.uid)
            self._see_owner(namespace, owner)
        if old is not None and (owner is None or old != owner.uid):
            self._release_owner(namespace, old)

    def budget(self, budget: views_pb2.PodUnavailableBudgetView, *, deleted: bool) -> None:
        namespace, name = budget.meta.namespace, budget.meta.name
        old = self.budget_target.pop((namespace, name), None)
        if old is not None:
            self._unlink(self.budgets_by_target, (namespace, old), name)
        selectors = self.selectors.get(namespace)
        if selectors is not None:
            selectors.pop(name, None)
            if not selectors:
                del self.selectors[namespace]
        if deleted:
            names = self.budgets.get(namespace)
            if names is not None:
                names.discard(name)
                if not names:
                    del self.budgets[namespace]
            return
        self.budgets.setdefault(namespace, set()).add(name)
        if budget.HasField("target_ref"):
            ref = budget.target_ref
            target = ref_key(api_version=ref.api_version, kind=ref.kind, name=ref.name)
            self.budget_target[(namespace, name)] = target
            self.budgets_by_target.setdefault((namespace, target), set()).add(name)
        elif budget.HasField("selector"):
            selector = views_pb2.LabelSelector()
            selector.CopyFrom(budget.selector)
            self.selectors.setdefault(namespace, {})[name] = selector

    # ---- queries ------------------------------------------------------------------------
    def owned_pod_names(self, namespace: str, uids: Iterable[str]) -> set[str]:
        """Pods owned by any of ``uids`` directly or through a ReplicaSet they own."""
        names: set[str] = set()
        for uid in uids:
            names |= self.pods.names(namespace, uid)
            for rs_uid in self.replica_sets.names(namespace, uid):
                names |= self.pods.names(namespace, rs_uid)
        return names

    def budgets_of_pod(self, pod: views_pb2.PodView) -> set[str]:
        """The budgets a pod event concerns now (the pod trigger of
        ``services.budget.controller``)."""
        namespace = pod.meta.namespace
        known = self.budgets.get(namespace, set())
        related = pod.meta.annotations.get(RELATED_PUB, "")
        if related and related in known:
            return {related}
        found: set[str] = set()
        owner = controller_ref(pod.meta.owner_references)
        if owner is not None:
            keys = [ref_key(api_version=owner.api_version, kind=owner.kind, name=owner.name)]
            parent = self.replica_sets.owner(namespace, owner.uid)
            above = self.owner_key.get((namespace, parent)) if parent else None
            if above is not None:
                keys.append(above)
            for key in keys:
                found |= self.budgets_by_target.get((namespace, key), set())
        for name, selector in self.selectors.get(namespace, {}).items():
            if status.selector_matches(selector, pod.meta.labels):
                found.add(name)
        return found
