"""A CloneSet's rollout as a rollout tool reads it: ``RolloutStatus`` (rollout API, issue #9).

Pure; no I/O, no clock. The rollout API servicer (``services.rollout.api``) calls
``rollout_status`` with a CloneSet view and its pods from the replica cache and sends the
message as is (GetRolloutStatus, WatchRolloutStatus, and the status of SetPartition,
CheckBatch and Release answers). ``controlled_by`` is also read by
``services.rollout.steering`` to refuse steering a rollout someone else holds.

Who holds a rollout (``controlled_by``), first match wins:

1. the annotation ``batchrelease.rollouts.kruise.io/control-info``: Kruise Rollout's
   BatchRelease (its owner reference as JSON) drives the CloneSet;
2. the annotation ``rollout.kruise-mesh.io/rollout-id`` (non-empty): a tool claimed it
   with ``SetPartition.rollout_id``;
3. nobody.

The counts come from the CloneSet's status as its controller wrote it (what Kruise Rollout
and ``kubectl kruise rollout status`` read); only the lifecycle counts and the pods held
not-ready are counted from the pods.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from kruise.common.v1 import views_pb2
from kruise.rollout.v1 import rollout_pb2
from services.kit.intstr import IntOrStr, from_view
from services.rollout.partition import partition_replicas
from services.rollout.pods import (
    KRUISE_POD_READY,
    NORMAL,
    PREPARING_DELETE,
    PREPARING_UPDATE,
    UPDATED,
    UPDATING,
    condition,
    lifecycle_state,
)

__all__ = [
    "CLONE_SET_API_VERSION",
    "CLONE_SET_KIND",
    "CONTROL_INFO_ANNOTATION",
    "REQUEST_ID_ANNOTATION",
    "ROLLOUT_ID_ANNOTATION",
    "ROLLOUT_ID_LABEL",
    "batch_complete",
    "claim_holder",
    "controlled_by",
    "current_partition",
    "held_not_ready",
    "lifecycle_counts",
    "rollout_complete",
    "rollout_status",
    "spec_replicas",
    "summary",
    "to_int_or_percent",
]

CONTROL_INFO_ANNOTATION = "batchrelease.rollouts.kruise.io/control-info"
ROLLOUT_ID_ANNOTATION = "rollout.kruise-mesh.io/rollout-id"
REQUEST_ID_ANNOTATION = "rollout.kruise-mesh.io/last-request-id"
ROLLOUT_ID_LABEL = "rollouts.kruise.io/rollout-id"

CLONE_SET_API_VERSION = "apps.kruise.io/v1alpha1"
CLONE_SET_KIND = "CloneSet"

_HOOK_STATES = (PREPARING_DELETE, PREPARING_UPDATE)


# --- who holds the rollout -------------------------------------------------------------


def controlled_by(meta: views_pb2.ObjectMeta) -> rollout_pb2.ControlledBy:
    """Who drives the rollout of the object with ``meta`` (see the module docstring).

    The control-info annotation is an owner reference as JSON; the fields that read as
    strings are copied. Malformed JSON still means Kruise Rollout holds the CloneSet, with
    what could be read (possibly nothing)::

        control-info {"apiVersion":"rollouts.kruise.io/v1beta1","kind":"BatchRelease",
                      "name":"demo","uid":"u1","controller":true}
                                            → kruise_rollout {BatchRelease demo, uid u1}
        control-info "{not json"            → kruise_rollout {} (every field empty)
        rollout-id "argo-7"                 → rollout_id "argo-7"
        rollout-id ""  or no annotation     → ControlledBy() (nobody: WhichOneof is None)

    >>> meta = views_pb2.ObjectMeta(annotations={ROLLOUT_ID_ANNOTATION: "argo-7"})
    >>> controlled_by(meta).rollout_id
    'argo-7'
    """
    result = rollout_pb2.ControlledBy()
    info = meta.annotations.get(CONTROL_INFO_ANNOTATION)
    if info is not None:
        result.kruise_rollout.CopyFrom(_control_info(info))
        result.kruise_rollout.SetInParent()
    elif holder := claim_holder(meta):
        result.rollout_id = holder
    return result


def claim_holder(meta: views_pb2.ObjectMeta) -> str:
    """The rollout id that claimed the object (its rollout-id annotation); "" when none."""
    return meta.annotations.get(ROLLOUT_ID_ANNOTATION, "")


def _control_info(text: str) -> rollout_pb2.KruiseRolloutControl:
    try:
        raw = json.loads(text)
    except ValueError:
        raw = None
    if not isinstance(raw, dict):
        return rollout_pb2.KruiseRolloutControl()

    def read(key: str) -> str:
        value = raw.get(key)
        return value if isinstance(value, str) else ""

    return rollout_pb2.KruiseRolloutControl(
        api_version=read("apiVersion"), kind=read("kind"), name=read("name"), uid=read("uid")
    )


# --- small readings of the spec --------------------------------------------------------


def spec_replicas(clone_set: views_pb2.CloneSetView) -> int:
    """``spec.replicas``, or the CloneSet default 1 when unset."""
    return clone_set.replicas if clone_set.HasField("replicas") else 1


def current_partition(clone_set: views_pb2.CloneSetView) -> IntOrStr | None:
    """``spec.updateStrategy.partition`` as set; None when null."""
    strategy = clone_set.update_strategy
    return from_view(strategy.partition) if strategy.HasField("partition") else None


def to_int_or_percent(value: IntOrStr) -> rollout_pb2.IntOrPercent:
    """An int as ``count``, a string as ``percent`` (as set, even when malformed)."""
    if isinstance(value, str):
        return rollout_pb2.IntOrPercent(percent=value)
    return rollout_pb2.IntOrPercent(count=value)


def _kept(clone_set: views_pb2.CloneSetView) -> int | None:
    """The partition as a pod count; None when it does not parse (the controller uses 0)."""
    try:
        return partition_replicas(current_partition(clone_set), spec_replicas(clone_set))
    except ValueError:
        return None


# --- completion ------------------------------------------------------------------------


def batch_complete(clone_set: views_pb2.CloneSetView) -> bool:
    """The current batch is done, read off the CloneSet's status alone.

    All three hold::

        status.observedGeneration   >= metadata.generation        (status is for this spec)
        status.updatedReplicas      >= status.expectedUpdatedReplicas
        status.updatedReadyReplicas >= status.expectedUpdatedReplicas

    ``expectedUpdatedReplicas`` is spec.replicas − partition while updateRevision differs
    from currentRevision, and spec.replicas once they are equal (the partition no longer
    counts). The controller makes currentRevision = updateRevision as soon as every pod is
    *updated*, ready or not, so with equal revisions the batch is the whole CloneSet and
    the rule still waits for every pod to be ready. Worked examples, spec.replicas 10:

        partition 50%, revisions differ: expected 5
            updated 5, ready 4                  → False (waiting for 1 ready)
            updated 5, ready 5                  → True  (the batch is done; 5 pods wait
                                                          behind the partition)
        revisions equal (rolled out, or nothing to roll): expected 10
            updated 10, ready 9                 → False (currentRevision flipped at 10
                                                          updated; 1 still not ready)
            updated 10, ready 10                → True
        generation 7, observedGeneration 6      → False whatever the counts (the
                                                  controller has not seen the new partition)
        spec.replicas 0: expected 0             → True once observed

    A status expectedUpdatedReplicas of 0 next to a partition that does not parse reads as
    complete: the controller publishes 0 then.
    """
    status = clone_set.status
    expected = status.expected_updated_replicas
    return (
        _observed(clone_set)
        and status.updated_replicas >= expected
        and status.updated_ready_replicas >= expected
    )


def rollout_complete(clone_set: views_pb2.CloneSetView) -> bool:
    """Every pod is on the update revision and ready, and the status is for this spec.

    ``observedGeneration >= generation`` and ``updatedReplicas == updatedReadyReplicas ==
    spec.replicas == status.replicas`` (spec.replicas unset is 1). Examples, spec 10:
    updated 10, ready 10, status.replicas 10 → True; status.replicas 11 (an old pod still
    terminating out of a scale-in) → False; updated 10, ready 9 → False.
    """
    status = clone_set.status
    wanted = spec_replicas(clone_set)
    return (
        _observed(clone_set)
        and status.updated_replicas == status.updated_ready_replicas == wanted
        and status.replicas == wanted
    )


def _observed(clone_set: views_pb2.CloneSetView) -> bool:
    return clone_set.status.observed_generation >= clone_set.meta.generation


# --- the whole status ------------------------------------------------------------------


def rollout_status(
    clone_set: views_pb2.CloneSetView, pods: Iterable[views_pb2.PodView]
) -> rollout_pb2.RolloutStatus:
    """The ``RolloutStatus`` of ``clone_set`` given its ``pods`` (every field filled).

    ``pods`` are the CloneSet's pods from the cache; terminating ones (deletionTimestamp
    set) are skipped for ``lifecycle`` and ``held_not_ready``. ``partition_replicas`` is 0
    when the partition does not parse (as the controller treats it). Example: spec 10,
    partition "50%", status updated 5 / updatedReady 4 / expected 5, observed →
    partition_replicas 5, batch_complete False, summary "5/10 updated, 4 ready; partition
    50% (5 kept); batch waiting for 1 ready".
    """
    live = [pod for pod in pods if not pod.meta.deletion_unix_ms]
    meta = clone_set.meta
    result = rollout_pb2.RolloutStatus(
        ref=rollout_pb2.WorkloadRef(
            api_version=CLONE_SET_API_VERSION,
            kind=CLONE_SET_KIND,
            namespace=meta.namespace,
            name=meta.name,
            uid=meta.uid,
        ),
        generation=meta.generation,
        resource_version=meta.resource_version,
        paused=clone_set.update_strategy.paused,
        status=clone_set.status,
        partition_replicas=_kept(clone_set) or 0,
        lifecycle=lifecycle_counts(live),
        held_not_ready=held_not_ready(live),
        controlled_by=controlled_by(meta),
        batch_complete=batch_complete(clone_set),
        rollout_complete=rollout_complete(clone_set),
        summary=summary(clone_set),
    )
    if clone_set.HasField("replicas"):
        result.spec_replicas = clone_set.replicas
    partition = current_partition(clone_set)
    if partition is not None:
        result.partition.CopyFrom(to_int_or_percent(partition))
    return result


def lifecycle_counts(pods: Iterable[views_pb2.PodView]) -> rollout_pb2.LifecycleCounts:
    """Pods by ``lifecycle.apps.kruise.io/state``; no label (or an unknown one) is Normal."""
    counts = {NORMAL: 0, PREPARING_UPDATE: 0, UPDATING: 0, UPDATED: 0, PREPARING_DELETE: 0}
    for pod in pods:
        state = lifecycle_state(pod)
        counts[state if state in counts else NORMAL] += 1
    return rollout_pb2.LifecycleCounts(
        normal=counts[NORMAL],
        preparing_update=counts[PREPARING_UPDATE],
        updating=counts[UPDATING],
        updated=counts[UPDATED],
        preparing_delete=counts[PREPARING_DELETE],
    )


def held_not_ready(pods: Iterable[views_pb2.PodView]) -> list[str]:
    """Names, sorted, of pods a markPodNotReady hook holds: PreparingDelete/PreparingUpdate
    with the KruisePodReady condition False (a missing condition holds nothing)."""
    held = []
    for pod in pods:
        cond = condition(pod, KRUISE_POD_READY)
        if lifecycle_state(pod) in _HOOK_STATES and cond is not None and cond.status == "False":
            held.append(pod.meta.name)
    return sorted(held)


def summary(clone_set: views_pb2.CloneSetView) -> str:
    """One line for people: counts, partition, paused, and where the batch stands.

    Examples::

        complete: 10/10 updated, 10 ready
        5/10 updated, 4 ready; partition 50% (5 kept); batch waiting for 1 ready
        5/10 updated, 5 ready; partition 5 (5 kept); paused; batch complete
        0/10 updated, 0 ready; partition 100% (10 kept); batch complete
        2/10 updated, 2 ready; partition "50" invalid; batch complete
        8/10 updated, 8 ready; reconciling (observed generation 3 < 4)
    """
    status = clone_set.status
    counts = (
        f"{status.updated_replicas}/{spec_replicas(clone_set)} updated, "
        f"{status.updated_ready_replicas} ready"
    )
    if rollout_complete(clone_set):
        return f"complete: {counts}"
    parts = [counts]
    partition = current_partition(clone_set)
    if partition is not None:
        kept = _kept(clone_set)
        if kept is None:
            parts.append(f"partition {json.dumps(partition)} invalid")
        else:
            parts.append(f"partition {partition} ({kept} kept)")
    if clone_set.update_strategy.paused:
        parts.append("paused")
    parts.append(_batch_line(clone_set))
    return "; ".join(parts)


def _batch_line(clone_set: views_pb2.CloneSetView) -> str:
    status = clone_set.status
    if not _observed(clone_set):
        return (
            f"reconciling (observed generation {status.observed_generation} "
            f"< {clone_set.meta.generation})"
        )
    if batch_complete(clone_set):
        return "batch complete"
    expected = status.expected_updated_replicas
    missing = []
    if status.updated_replicas < expected:
        missing.append(f"{expected - status.updated_replicas} updated")
    missing.append(f"{expected - status.updated_ready_replicas} ready")
    return "batch waiting for " + ", ".join(missing)
