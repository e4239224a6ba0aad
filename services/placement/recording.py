"""Recording: which node (and topology) each pod of a PersistentPodState's target ran on.

Pure; no I/O, no clock. ``record`` is the whole of one reconcile's decision for
one PersistentPodState (SPEC 1.2, "Reconcile (normal PPS)" steps 3-7); the
placement controller (``services.placement.controller``) gathers its inputs from
the replica cache and commits the returned status through the cluster API with
the resourceVersion the decision saw.

The rules, in order:

1. The target is gone or being deleted → every record is cleared, whatever the
   retention policy.
2. ``keys`` = the union of the required keys and every preferred term's keys.
3. Each ready, scheduled (``spec.nodeName`` set) active pod is recorded as
   ``{nodeName, nodeTopologyLabels: {k: node.labels[k] for k in keys if present}}``,
   unless its record already has the same node and exactly ``keys`` as label keys
   (then it is kept as is, even if the node's label values changed). A pod whose
   node is unknown is skipped and its record left untouched. Not-ready pods keep
   their old record: that is what a re-created pod comes back to.
4. Unless the retention policy is ``WhenDeleted``, a record whose pod ordinal is
   outside the target's replica ordinals (counting past ``reserveOrdinals``) and
   whose pod is not active is dropped. A name without an ordinal is kept.

Beyond OpenKruise: each record also keeps the pod's IP. A recorded pod that comes
back on another node or with another IP is a ``Move``; the controller reports
each as a Kubernetes Event and a metric, so the "same IP" promise is observable.
An IP change alone also rewrites the record.

Worked example (SPEC 1.6 scenario 3): replicas 8, reserveOrdinals {0, 3, 7} →
replica ordinals {1, 2, 4, 5, 6, 8, 9, 10}; records 11 (pod alive) and 12 (pod
terminating) are out of range; 12 is dropped, 11 kept.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field

from kruise.common.v1 import views_pb2
from services.kit.objects import pod_active, pod_ready

WHEN_DELETED = "WhenDeleted"
WHEN_SCALED = "WhenScaled"


@dataclass(frozen=True, slots=True)
class PodRecord:
    """One ``status.podStates`` entry."""

    node_name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    pod_ip: str = ""


@dataclass(frozen=True, slots=True)
class Target:
    """What recording needs of the workload: its replicas and reserved ordinals."""

    replicas: int
    reserve_ordinals: frozenset[int] = frozenset()
    deleting: bool = False


@dataclass(frozen=True, slots=True)
class Move:
    """A recorded pod came back somewhere else: another node, or another IP."""

    pod: str
    old_node: str
    new_node: str
    old_ip: str
    new_ip: str

    @property
    def reason(self) -> str:
        """``NodeChanged`` when the node differs, else ``IPChanged``."""
        return "NodeChanged" if self.old_node != self.new_node else "IPChanged"


@dataclass(frozen=True, slots=True)
class Recording:
    """The decided ``status.podStates``; ``changed`` says whether status must be written."""

    pod_states: dict[str, PodRecord]
    changed: bool
    moves: tuple[Move, ...] = ()


def records_of(view: views_pb2.PersistentPodStateView) -> dict[str, PodRecord]:
    """The recorded ``status.podStates`` of a view as ``PodRecord``s."""
    return {
        name: PodRecord(
            node_name=state.node_name,
            labels=dict(state.node_topology_labels),
            pod_ip=state.pod_ip,
        )
        for name, state in view.pod_states.items()
    }


def topology_keys(view: views_pb2.PersistentPodStateView) -> frozenset[str]:
    """The union of the required keys and the keys of every preferred term."""
    keys = set(view.required_node_topology_keys)
    for term in view.preferred_topology:
        keys.update(term.node_topology_keys)
    return frozenset(keys)


def pod_ordinal(name: str) -> int | None:
    """The integer after the last ``-`` of a pod name, or None.

    >>> pod_ordinal("web-12"), pod_ordinal("web"), pod_ordinal("web-x")
    (12, None, None)
    """
    _, dash, tail = name.rpartition("-")
    if not dash or not tail.isdigit():
        return None
    return int(tail)


def in_replica_ordinals(ordinal: int, *, replicas: int, reserve: Collection[int]) -> bool:
    """Whether ``ordinal`` is one of the first ``replicas`` ordinals that are not reserved.

    >>> [o for o in range(12) if in_replica_ordinals(o, replicas=8, reserve={0, 3, 7})]
    [1, 2, 4, 5, 6, 8, 9, 10]
    """
    if ordinal < 0 or ordinal in reserve:
        return False
    below = sum(1 for r in reserve if 0 <= r < ordinal)
    return ordinal - below < replicas


def record(
    *,
    pps: views_pb2.PersistentPodStateView,
    target: Target | None,
    pods: Iterable[views_pb2.PodView],
    node_labels: Mapping[str, Mapping[str, str]],
) -> Recording:
    """Decide ``status.podStates`` for ``pps``.

    ``target`` is None when the workload does not exist. ``pods`` are the workload's
    pods (inactive ones are ignored here). ``node_labels`` maps node name → labels
    for the nodes the replica knows.
    """
    old = records_of(pps)
    generation_seen = pps.observed_generation == pps.meta.generation
    if target is None or target.deleting:
        return Recording(pod_states={}, changed=bool(old) or not generation_seen)

    keys = topology_keys(pps)
    states = dict(old)
    moves: list[Move] = []
    active: set[str] = set()
    for pod in pods:
        if not pod_active(pod):
            continue
        name = pod.meta.name
        active.add(name)
        if not pod_ready(pod) or not pod.node_name:
            continue
        current = states.get(name)
        if (
            current is not None
            and current.node_name == pod.node_name
            and set(current.labels) == keys
            and (not pod.pod_ip or current.pod_ip == pod.pod_ip)
        ):
            continue
        labels = node_labels.get(pod.node_name)
        if labels is None:
            continue
        states[name] = PodRecord(
            node_name=pod.node_name,
            labels={k: labels[k] for k in sorted(keys) if k in labels},
            pod_ip=pod.pod_ip,
        )
        if current is not None and (
            current.node_name != pod.node_name
            or (current.pod_ip and pod.pod_ip and current.pod_ip != pod.pod_ip)
        ):
            moves.append(
                Move(
                    pod=name,
                    old_node=current.node_name,
                    new_node=pod.node_name,
                    old_ip=current.pod_ip,
                    new_ip=pod.pod_ip,
                )
            )

    if pps.retention_policy != WHEN_DELETED:
        for name in list(states):
            ordinal = pod_ordinal(name)
            if ordinal is None or name in active:
                continue
            if not in_replica_ordinals(
                ordinal, replicas=target.replicas, reserve=target.reserve_ordinals
            ):
                del states[name]

    return Recording(
        pod_states=states,
        changed=states != old or not generation_seen,
        moves=tuple(moves),
    )


def placed_as_recorded(state: views_pb2.PodState, pod: views_pb2.PodView) -> bool:
    """``pod`` runs on the node its record names, with the recorded IP when one was recorded."""
    return pod.node_name == state.node_name and (not state.pod_ip or pod.pod_ip == state.pod_ip)


def status_body(recording: Recording, *, generation: int) -> dict[str, object]:
    """The ``status`` object to write: ``podStates`` is left out when empty (Go omitempty)."""
    status: dict[str, object] = {"observedGeneration": generation}
    if recording.pod_states:
        states: dict[str, object] = {}
        for name, rec in sorted(recording.pod_states.items()):
            entry: dict[str, object] = {}
            if rec.node_name:
                entry["nodeName"] = rec.node_name
            if rec.labels:
                entry["nodeTopologyLabels"] = dict(rec.labels)
            if rec.pod_ip:
                entry["podIP"] = rec.pod_ip
            states[name] = entry
        status["podStates"] = states
    return status
