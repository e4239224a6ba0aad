"""A CloneSet's partition as a pod count, and the updated-pod count it promises (SPEC 2.2-2.3).

Pure; no I/O. ``diffs.calculate_diffs`` turns the partition into how many pods stay at
old revisions; ``status.compute_status`` publishes ``expected_updated_replicas`` as
``status.expectedUpdatedReplicas``, which the rollout shell writes to the cluster. Users
read "rollout finished under partition" as ``updatedReplicas >= expectedUpdatedReplicas``.

``partition`` is the number (or percentage) of pods **kept at old revisions**, so::

    expected updated = replicas - partition_replicas(partition, replicas)
"""

from __future__ import annotations

from services.kit.intstr import IntOrStr, scaled_value

__all__ = ["expected_updated_replicas", "partition_replicas"]


def partition_replicas(partition: IntOrStr | None, replicas: int | None) -> int:
    """How many pods stay at old revisions (OpenKruise's ``CalculatePartitionReplicas``).

    ``partition`` None keeps none; ``replicas`` None is the CloneSet default, 1. The
    partition is scaled strictly (``intstr.scaled_value``) and **rounded up**, then clamped
    to ``[0, replicas]``. Two rounding guarantees follow (OpenKruise v1.2, #954):

    * a percentage above ``"0%"`` with ``replicas > 0`` keeps at least one old pod (ceil);
    * a percentage below ``"100%"`` with ``replicas > 1`` updates at least one pod: when the
      ceil reaches ``replicas`` the result is ``replicas - 1``. The rule is for strings only,
      and only ``"100%"`` written exactly keeps every pod (``"0100%"`` does not).

    Worked examples::

        replicas 10, "30%"  → 3      replicas 9,  "99%"  → 8  (ceil 8.91 = 9, then the rule)
        replicas 10, "1%"   → 1      replicas 99, "100%" → 99
        replicas 2,  "51%"  → 1      replicas 1,  "1%"   → 1  (the rule needs replicas > 1)
        replicas 10, 10     → 10     replicas 10, 15     → 10 (an int is clamped, no rule)
        replicas 0,  "99%"  → 0      replicas 9,  "99"   → ValueError (not a percentage)

    Raises ``ValueError`` with intstr's message when the partition does not parse; the
    caller decides (the diff counts it as 0, the status leaves expectedUpdatedReplicas 0).

    >>> partition_replicas("99%", 4), partition_replicas(None, 4), partition_replicas(3, None)
    (3, 0, 1)
    """
    if partition is None:
        return 0
    total = 1 if replicas is None else replicas
    kept = scaled_value(partition, total=total, round_up=True)
    if total > 1 and kept == total and isinstance(partition, str) and partition != "100%":
        kept = total - 1
    return max(min(kept, total), 0)


def expected_updated_replicas(
    *,
    replicas: int | None,
    partition: IntOrStr | None,
    update_revision: str,
    current_revision: str,
) -> int:
    """``status.expectedUpdatedReplicas``: how many pods the partition lets reach the update.

    With equal revisions nothing is rolling out and every pod is expected at it:
    ``replicas``. Otherwise ``replicas - partition_replicas(partition, replicas)``; an
    invalid partition leaves the field at 0 (OpenKruise ignores the error here).
    ``replicas`` None is the CloneSet default, 1. Worked examples, revisions differing::

        replicas 10, partition "30%" → 7
        replicas 4,  partition "99%" → 1     (ceil 3.96 = 4 kept, then at least one updated)
        replicas 5,  partition 2     → 3
        replicas 5,  partition None  → 5
        replicas 5,  partition "50"  → 0     (invalid: not a percentage)

    and with equal revisions, replicas 10 and partition "30%" → 10.

    >>> expected_updated_replicas(
    ...     replicas=10, partition="30%", update_revision="web-2", current_revision="web-1"
    ... )
    7
    """
    total = 1 if replicas is None else replicas
    if update_revision == current_revision:
        return total
    try:
        return total - partition_replicas(partition, total)
    except ValueError:
        return 0
