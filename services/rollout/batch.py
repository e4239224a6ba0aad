"""Is the current batch done? Kruise Rollout's IsBatchReady, and Argo Rollouts' variant.

Pure; no I/O, no clock (time is ``now_ms``). The rollout API servicer
(``services.rollout.api``, CheckBatch) gathers ``batch_facts`` from a CloneSet view and its
pods, turns the request's target into ``desired_updated``, and answers with
``check_batch``'s verdict. Requests are validated first by ``steering.check_check_batch``.

The rule (Kruise Rollout ``pkg/controller/batchrelease/context/context.go``, IsBatchReady;
ECOSYSTEM 1.1), evaluated in order; the first that fails is the reason:

0. ``observedGeneration >= generation``, else "still reconciling": the status describes an
   older spec and nothing is decided on it (Kruise Rollout's IsStable);
1. ``updated >= desired``;
2. ``updatedReady + tolerated >= desired``, where ``tolerated`` is the failure threshold
   (the request's, else the CloneSet's maxUnavailable, default "20%") scaled against
   ``updated``, rounded up;
3. ``desired > 0`` implies ``updatedReady > 0``;
4. with a rollout id: non-terminating pods labelled ``rollouts.kruise.io/rollout-id=<id>``
   ``>= desired``.

``require_available`` (Argo Rollouts counts availableReplicas: ready for minReadySeconds)
puts ``updatedAvailable`` where rules 2 and 3 say ``updatedReady``.

Worked example, Kruise Rollout's batches 20% / 50% / 100% over 10 pods, failure threshold
unset and maxUnavailable unset (20%)::

    batch 1: desired ceil(20% × 10) = 2
        updated 2, ready 1: tolerated ceil(20% × 2) = 1, 1 + 1 >= 2       → ready
        updated 2, ready 0: 0 + 1 < 2                                    → not ready (rule 2)
    batch 2: desired 5
        updated 5, ready 4: tolerated ceil(20% × 5) = 1                  → ready
        updated 4, ready 4: 4 < 5                                        → not ready (rule 1)
    batch 3: desired 10
        updated 10, ready 8: tolerated ceil(20% × 10) = 2                → ready

Batch labels (``plan_batch_labels``): rule 4 counts pods labelled with the rollout id, and
Kruise Rollout labels its pods itself. For a CloneSet claimed through the rollout API
(``SetPartition.rollout_id``) the CloneSet controller labels them the same way; see
``plan_batch_labels`` for which pods get which labels.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from kruise.common.v1 import views_pb2
from services.kit.intstr import IntOrStr, from_view, scaled_value
from services.rollout.partition import partition_replicas
from services.rollout.pods import available, is_updated
from services.rollout.report import (
    CONTROL_INFO_ANNOTATION,
    ROLLOUT_ID_LABEL,
    claim_holder,
    current_partition,
    spec_replicas,
)

__all__ = [
    "BATCH_ID_LABEL",
    "BATCH_PARTITION_ANNOTATION",
    "DEFAULT_MAX_UNAVAILABLE",
    "BatchFacts",
    "BatchLabel",
    "BatchVerdict",
    "batch_facts",
    "check_batch",
    "desired_updated",
    "plan_batch_labels",
    "tolerated_unready",
]

# Kruise Rollout's batch label (``api/v1beta1``, RolloutBatchIDLabel): the 1-based batch.
BATCH_ID_LABEL = "rollouts.kruise.io/rollout-batch-id"
# Ours: the partition (as written: "80%", 3) in force when the pod's batch began. The
# batches of a rollout are remembered on its pods, not on the CloneSet.
BATCH_PARTITION_ANNOTATION = "rollout.kruise-mesh.io/rollout-batch-partition"

DEFAULT_MAX_UNAVAILABLE: IntOrStr = "20%"


@dataclass(frozen=True)
class BatchFacts:
    """What the batch rule reads, gathered once (``batch_facts``).

    generation           metadata.generation
    observed_generation  status.observedGeneration
    spec_replicas        spec.replicas (1 when unset)
    updated              status.updatedReplicas, as Kruise Rollout reads it
    updated_ready        status.updatedReadyReplicas, likewise
    updated_available    non-terminating pods on status.updateRevision that are available
                         (``pods.available``: Normal, ready for minReadySeconds, in-place ready)
    labelled             non-terminating pods labelled rollouts.kruise.io/rollout-id=<id>;
                         None when no rollout id was asked (rule 4 is skipped)
    max_unavailable      spec.updateStrategy.maxUnavailable as set, default "20%"
    rollout_id           the id of ``labelled`` (for messages); "" with labelled None
    """

    generation: int
    observed_generation: int
    spec_replicas: int
    updated: int
    updated_ready: int
    updated_available: int
    labelled: int | None
    max_unavailable: IntOrStr = DEFAULT_MAX_UNAVAILABLE
    rollout_id: str = ""


@dataclass(frozen=True)
class BatchVerdict:
    """``check_batch``'s answer: CheckBatchResponse's ready, reason, desired_updated_replicas.

    ``tolerated`` is how many updated pods may be unready (rule 2's allowance).
    """

    ready: bool
    reason: str
    desired: int
    tolerated: int


def batch_facts(
    clone_set: views_pb2.CloneSetView,
    pods: Iterable[views_pb2.PodView],
    *,
    rollout_id: str,
    now_ms: int,
) -> BatchFacts:
    """The facts of ``clone_set``'s batch, its ``pods`` as the cache holds them.

    ``updated_available`` is 0 while status.updateRevision is empty (the controller has
    not written one yet); ``labelled`` is None when ``rollout_id`` is "".
    """
    status = clone_set.status
    live = [pod for pod in pods if not pod.meta.deletion_unix_ms]
    strategy = clone_set.update_strategy
    return BatchFacts(
        generation=clone_set.meta.generation,
        observed_generation=status.observed_generation,
        spec_replicas=spec_replicas(clone_set),
        updated=status.updated_replicas,
        updated_ready=status.updated_ready_replicas,
        updated_available=_updated_available(
            live,
            revision=status.update_revision,
            min_ready_seconds=clone_set.min_ready_seconds,
            now_ms=now_ms,
        ),
        labelled=(
            sum(pod.meta.labels.get(ROLLOUT_ID_LABEL) == rollout_id for pod in live)
            if rollout_id
            else None
        ),
        max_unavailable=(
            from_view(strategy.max_unavailable)
            if strategy.HasField("max_unavailable")
            else DEFAULT_MAX_UNAVAILABLE
        ),
        rollout_id=rollout_id,
    )


def _updated_available(
    pods: Iterable[views_pb2.PodView], *, revision: str, min_ready_seconds: int, now_ms: int
) -> int:
    if not revision:
        return 0
    return sum(
        is_updated(pod, revision)
        and available(pod, min_ready_seconds=min_ready_seconds, now_ms=now_ms)
        for pod in pods
    )


def desired_updated(target: IntOrStr, *, replicas: int) -> int:
    """The pods a batch target asks to be updated: a count, or a percent of ``replicas``
    rounded up; clamped to ``[0, replicas]``. Examples, replicas 10::

        "20%" → 2     "25%" → 3 (ceil 2.5)     "100%" → 10     "0%" → 0
        4     → 4     12    → 10 (clamped)     -1     → 0 (clamped)
        "50"  → ValueError (not a percentage; ``steering.check_check_batch`` refuses it)

    >>> desired_updated("20%", replicas=10), desired_updated(12, replicas=10)
    (2, 10)
    """
    wanted = scaled_value(target, total=replicas, round_up=True)
    return max(0, min(wanted, replicas))


def tolerated_unready(threshold: IntOrStr, *, updated: int) -> int:
    """Updated pods allowed to be unready: ``threshold`` scaled against ``updated``, rounded
    up (Kruise Rollout's failure threshold); never negative. A threshold that does not parse
    strictly (the CloneSet's maxUnavailable "50" is lenient syntax) tolerates 0, as Kruise
    Rollout ignores the error. Examples: "20%" of 2 → 1; "20%" of 5 → 1; "20%" of 10 → 2;
    "0%" → 0; 3 → 3 (a count is not scaled); "50" → 0.

    >>> tolerated_unready("20%", updated=2), tolerated_unready("50", updated=10)
    (1, 0)
    """
    try:
        return max(0, scaled_value(threshold, total=updated, round_up=True))
    except ValueError:
        return 0


def check_batch(
    facts: BatchFacts,
    *,
    desired: int,
    failure_threshold: IntOrStr | None,
    require_available: bool,
) -> BatchVerdict:
    """IsBatchReady over ``facts`` for a batch of ``desired`` updated pods (module rules).

    ``failure_threshold`` None uses ``facts.max_unavailable``. Reasons name the numbers::

        still reconciling: observed generation 3 < generation 4
        2 updated < 5 desired
        3 ready + 1 tolerated < 5 desired            ("available" with require_available)
        no updated pod ready yet (2 desired)
        3 pods labelled rollouts.kruise.io/rollout-id=r1 < 5 desired
        batch ready: 5 updated, 4 ready, 1 tolerated
        batch ready: 5 updated, 5 ready, 1 tolerated, 5 labelled rollouts.kruise.io/rollout-id=r1
    """
    threshold = failure_threshold if failure_threshold is not None else facts.max_unavailable
    tolerated = tolerated_unready(threshold, updated=facts.updated)
    word = "available" if require_available else "ready"
    good = facts.updated_available if require_available else facts.updated_ready
    reason = _first_failure(facts, desired=desired, tolerated=tolerated, good=good, word=word)
    if reason is not None:
        return BatchVerdict(ready=False, reason=reason, desired=desired, tolerated=tolerated)
    reason = f"batch ready: {facts.updated} updated, {good} {word}, {tolerated} tolerated"
    if facts.labelled is not None:
        reason += f", {facts.labelled} labelled {ROLLOUT_ID_LABEL}={facts.rollout_id}"
    return BatchVerdict(ready=True, reason=reason, desired=desired, tolerated=tolerated)


def _first_failure(
    facts: BatchFacts, *, desired: int, tolerated: int, good: int, word: str
) -> str | None:
    if facts.observed_generation < facts.generation:
        return (
            f"still reconciling: observed generation {facts.observed_generation} "
            f"< generation {facts.generation}"
        )
    if facts.updated < desired:
        return f"{facts.updated} updated < {desired} desired"
    if good + tolerated < desired:
        return f"{good} {word} + {tolerated} tolerated < {desired} desired"
    if desired > 0 and good == 0:
        return f"no updated pod {word} yet ({desired} desired)"
    if facts.labelled is not None and facts.labelled < desired:
        return (
            f"{facts.labelled} pods labelled {ROLLOUT_ID_LABEL}={facts.rollout_id} "
            f"< {desired} desired"
        )
    return None


@dataclass(frozen=True)
class BatchLabel:
    """One pod to label (``plan_batch_labels``): Kruise Rollout's two labels,
    ``rollouts.kruise.io/rollout-id=<rollout_id>`` and
    ``rollouts.kruise.io/rollout-batch-id=<batch>`` (1-based), and our annotation
    ``rollout.kruise-mesh.io/rollout-batch-partition=<partition>``: the partition, as
    written, in force when that batch began."""

    pod: str
    rollout_id: str
    batch: int
    partition: str

    @property
    def patch(self) -> dict[str, Any]:
        """The pod's strategic merge patch: labels and annotation, nothing else."""
        return {
            "metadata": {
                "labels": {ROLLOUT_ID_LABEL: self.rollout_id, BATCH_ID_LABEL: str(self.batch)},
                "annotations": {BATCH_PARTITION_ANNOTATION: self.partition},
            }
        }


def plan_batch_labels(
    clone_set: views_pb2.CloneSetView,
    pods: Iterable[views_pb2.PodView],
    *,
    update_revision: str,
) -> tuple[BatchLabel, ...]:
    """Which of ``clone_set``'s ``pods`` to label for its rollout id, and with which batch:
    Kruise Rollout's label patcher (``pkg/controller/batchrelease/labelpatch/patcher.go``)
    for a CloneSet claimed through the rollout API.

    Pure; no I/O. ``sync.plan_round`` turns each result into a pod patch (no budget asked:
    labels change no readiness), executed by ``controller``; the rollout API's CheckBatch
    counts the labels (rule 4).

    Nothing is labelled unless the CloneSet carries our claim (the annotation
    ``rollout.kruise-mesh.io/rollout-id``, written by SetPartition with ``rollout_id``) and
    not Kruise Rollout's control-info annotation (Kruise Rollout labels its own pods). Then,
    as Kruise Rollout does:

    * only pods on ``update_revision`` and not terminating are looked at;
    * such a pod labelled with the claim's id and a batch number (a positive integer) counts
      for that batch; every other one (no label, another rollout id, a batch that is no
      number) may be labelled;
    * each batch holds as many pods as its step added to the pods to update; the pods to
      label fill the latest batch first, then the earlier ones, never more than planned (a
      pod left over stays unlabelled: Kruise Rollout's "still has pods to patch");
    * labels are never removed (Release leaves them; a later rollout id overwrites them).

    What a batch is. Kruise Rollout numbers the steps of its release plan; our API has no
    plan, so a batch is a step of the partition: batch 1 begins the first time pods are to
    be updated under the claim, and a new batch begins each time the partition asks for more
    updated pods than the latest batch's partition did (a lowered partition, SetPartition's
    next batch). Each labelled pod also records its batch's partition as written
    (``rollout.kruise-mesh.io/rollout-batch-partition``), so the batches live on the pods:
    any replica, after any restart, plans the same labels, and the CloneSet needs no record.
    Partitions are evaluated at today's ``spec.replicas``, so scaling within a batch adds to
    that batch (Kruise Rollout recomputes its plan for new replicas the same way), and a
    partition written differently that updates the same pods (5 or "50%" of 10) is no new
    batch. A step taken before any pod of the previous one was labelled merges with it.

    Worked example, 10 replicas, claim "r1", steps "80%", "50%", 0::

        partition "80%", 2 pods updated         → both: batch 1, partition "80%"
        partition "50%", 3 more updated         → those 3: batch 2, partition "50%"
        a batch-1 pod re-created (unlabelled)   → it: batch 1 (batch 2 is full)
        partition 0, 5 more updated             → those 5: batch 3, partition "0"
    """
    rollout_id = claim_holder(clone_set.meta)
    if not rollout_id or CONTROL_INFO_ANNOTATION in clone_set.meta.annotations:
        return ()
    replicas = spec_replicas(clone_set)
    partition = current_partition(clone_set)
    wanted_now = _wanted(partition, replicas)
    if wanted_now is None:
        return ()
    counted: dict[int, int] = {}  # batch → its labelled pods
    steps: dict[int, tuple[int, str]] = {}  # batch → (pods to update at its partition, text)
    unlabelled: list[str] = []
    for pod in sorted(pods, key=lambda p: p.meta.name):
        if pod.meta.deletion_unix_ms or not is_updated(pod, update_revision):
            continue
        batch = _batch_of(pod.meta.labels, rollout_id)
        if batch is None:
            unlabelled.append(pod.meta.name)
            continue
        counted[batch] = counted.get(batch, 0) + 1
        text = pod.meta.annotations.get(BATCH_PARTITION_ANNOTATION, "")
        recorded = _parsed(text)
        wanted = None if recorded is None else _wanted(recorded, replicas)
        if wanted is not None and wanted >= steps.get(batch, (-1, ""))[0]:
            steps[batch] = (wanted, text)
    if not unlabelled:
        return ()
    if wanted_now > max((w for w, _ in steps.values()), default=0):
        steps[max(counted, default=0) + 1] = (wanted_now, _shown(partition))
    room = _room(steps, counted)
    out: list[BatchLabel] = []
    for batch in sorted(room, reverse=True):
        take, unlabelled = unlabelled[: room[batch]], unlabelled[room[batch] :]
        out.extend(BatchLabel(name, rollout_id, batch, steps[batch][1]) for name in take)
    return tuple(out)


def _room(steps: Mapping[int, tuple[int, str]], counted: Mapping[int, int]) -> dict[int, int]:
    """Batch → pods it may still take: what its step added (its pods to update minus the
    most any earlier batch's partition asked for) minus the pods labelled with it."""
    room: dict[int, int] = {}
    before = 0
    for batch in sorted(steps):
        wanted = steps[batch][0]
        free = max(0, wanted - before) - counted.get(batch, 0)
        if free > 0:
            room[batch] = free
        before = max(before, wanted)
    return room


def _batch_of(labels: Mapping[str, str], rollout_id: str) -> int | None:
    """The pod's batch under ``rollout_id``: None unless labelled with that id and a
    positive integer batch."""
    if labels.get(ROLLOUT_ID_LABEL) != rollout_id:
        return None
    text = labels.get(BATCH_ID_LABEL, "")
    return int(text) if _digits(text) and int(text) > 0 else None


def _parsed(text: str) -> IntOrStr | None:
    """The partition an annotation records: "80%" or "3"; None when it is neither."""
    if text.endswith("%"):
        return text
    return int(text) if _digits(text) else None


def _digits(text: str) -> bool:
    return text.isascii() and text.isdigit()


def _wanted(partition: IntOrStr | None, replicas: int) -> int | None:
    """Pods a partition has updated, out of ``replicas``; None when it does not parse."""
    try:
        return replicas - partition_replicas(partition, replicas)
    except ValueError:
        return None


def _shown(partition: IntOrStr | None) -> str:
    return "0" if partition is None else str(partition)
