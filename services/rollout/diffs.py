"""How many pods a CloneSet should create, delete and update this round (SPEC 2.4).

Pure; no I/O, no clock (time is ``now_ms``). ``calculate_diffs`` is OpenKruise v1.2's
``calculateDiffsWithExpectation``, "the most important algorithm in cloneset-controller";
the rollout shell reads the returned ``ExpectationDiffs`` to scale first (create, then
delete) and to update only when there is nothing to scale, and logs ``partition_error``.

The pods are split by revision ("new" = at ``update_revision``, "old" = any other) and
then by state::

    PreparingDelete            pre-deleting: still counted in len(pods), never updated,
                               always unavailable
    otherwise "active", and    specified-delete (label or scaleStrategy.podsToDelete), or
                               unavailable (not Normal, or not ready for minReadySeconds,
                               or InPlaceUpdateReady False), or available

With ``R`` replicas, ``P`` pods kept at old revisions (``partition.partition_replicas``),
``S`` maxSurge and ``U`` maxUnavailable as counts::

    updateOldDiff = oldActive - P            > 0: old pods to update
    updateNewDiff = newActive - (R - P)      < 0: new pods missing
    scaleNum      = R + useSurge - len(pods)
    updateNum     = updateOldDiff, or -updateNewDiff when that is the smaller in size
    updateMaxUnavailable = U + len(pods) - R

Surge (``S > 0``) lets the controller go above ``R`` by ``useSurge`` pods: first for
pods being deleted while too many are unavailable, else for an update that needs both
old pods removed and new pods added. The controller creates the extra new pods, then
updates or deletes old ones, and once only ``P`` old pods remain the surplus old pods are
scaled in (``scaleNumOldRevision`` negative).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

from kruise.common.v1 import views_pb2
from services.kit.intstr import IntOrStr, lenient_value
from services.rollout.partition import partition_replicas
from services.rollout.pods import PREPARING_DELETE, available, is_updated, lifecycle_state
from services.rollout.pods import specified_delete as is_specified_delete

__all__ = [
    "DEFAULT_MAX_UNAVAILABLE",
    "MAX_INT32",
    "ExpectationDiffs",
    "calculate_diffs",
]

DEFAULT_MAX_UNAVAILABLE = "20%"
"""updateStrategy.maxUnavailable when unset."""
MAX_INT32 = 2**31 - 1
"""scaleStrategy.maxUnavailable when unset: scaling out is not limited."""


@dataclass(frozen=True)
class ExpectationDiffs:
    """What one round should do; every count 0 means "nothing to do" (``is_empty``).

    scale_num               pods to scale: positive scales out (create), negative scales
                            in (delete), 0 leaves the count alone
    scale_num_old_revision  the part of ``scale_num`` at old revisions: when scaling out,
                            how many of the new pods get the current revision (may exceed
                            scale_num; at most scale_num are created); when scaling in,
                            how many (negative) of the deleted pods are old ones
    scale_up_limit          at most this many pods may be created now
                            (scaleStrategy.maxUnavailable minus unavailable pods)
    delete_ready_limit      at most this many ready pods may be deleted now
                            (updateStrategy.maxUnavailable budget left)
    use_surge               pods temporarily above replicas (maxSurge in use)
    use_surge_old_revision  the part of ``use_surge`` that is old-revision pods
    update_num              pods to update: positive moves pods to the update revision,
                            negative moves them back to the current revision (rollback,
                            with the CloneSetPartitionRollback gate), 0 updates none
    update_max_unavailable  at most this many pods may be unavailable while updating
    partition_error         intstr's message when the partition did not parse (it then
                            counts as 0: everything is updated); "" otherwise. Not part
                            of ``is_empty`` (OpenKruise only logs it).
    """

    scale_num: int = 0
    scale_num_old_revision: int = 0
    scale_up_limit: int = 0
    delete_ready_limit: int = 0
    use_surge: int = 0
    use_surge_old_revision: int = 0
    update_num: int = 0
    update_max_unavailable: int = 0
    partition_error: str = ""

    def is_empty(self) -> bool:
        """Nothing to scale or update (``partition_error`` aside)."""
        return not any(
            (
                self.scale_num,
                self.scale_num_old_revision,
                self.scale_up_limit,
                self.delete_ready_limit,
                self.use_surge,
                self.use_surge_old_revision,
                self.update_num,
                self.update_max_unavailable,
            )
        )


@dataclass
class _Counts:
    """The pods of one revision group, as ``calculate_diffs`` classifies them."""

    total: int = 0
    active: int = 0
    to_delete: int = 0
    unavailable: int = 0
    pre_deleting: int = 0


def calculate_diffs(
    *,
    replicas: int,
    partition: IntOrStr | None = None,
    max_surge: IntOrStr | None = None,
    max_unavailable: IntOrStr | None = None,
    scale_max_unavailable: IntOrStr | None = None,
    min_ready_seconds: int = 0,
    pods: Sequence[views_pb2.PodView],
    update_revision: str,
    current_revision: str,
    pods_to_delete: Collection[str] = (),
    now_ms: int,
    partition_rollback: bool = False,
) -> ExpectationDiffs:
    """The scale and update numbers for a CloneSet's active ``pods`` (SPEC 2.4).

    ``replicas`` is spec.replicas (defaulted), the IntOrStr parameters are the spec's
    values as given, None when unset:

    * partition: ``partition.partition_replicas``; unparsable → 0 and ``partition_error``;
    * max_surge: lenient, rounded up; None → 0;
    * max_unavailable: lenient, rounded **up without surge and down with it**; None → "20%";
    * scale_max_unavailable: lenient, rounded up; None → unlimited (MaxInt32).

    An unparsable max_surge/max_unavailable/scale_max_unavailable counts as 0, as in
    OpenKruise (its webhook rejects them first). ``pods_to_delete`` is
    scaleStrategy.podsToDelete; ``partition_rollback`` the CloneSetPartitionRollback gate:
    off, or with equal revisions, pods only ever move to the update revision.

    Worked example (SPEC 2.7, scenario 1): replicas 5, partition "99%" (4 kept), maxSurge 2,
    maxUnavailable 3, five old ready pods → one surge pod is created and one old pod may
    be updated: ``scale_num 1, use_surge 1, scale_up_limit 1, update_num 1,
    update_max_unavailable 3``.
    """
    kept, partition_error = _partition(partition, replicas)
    surge = 0 if max_surge is None else _lenient(max_surge, replicas, round_up=True)
    unavailable_limit = _lenient(
        DEFAULT_MAX_UNAVAILABLE if max_unavailable is None else max_unavailable,
        replicas,
        round_up=surge == 0,
    )
    scale_unavailable_limit = _lenient(
        MAX_INT32 if scale_max_unavailable is None else scale_max_unavailable,
        replicas,
        round_up=True,
    )

    new, old = _Counts(), _Counts()
    for pod in pods:
        group = new if is_updated(pod, update_revision) else old
        group.total += 1
        if lifecycle_state(pod) == PREPARING_DELETE:
            group.pre_deleting += 1
            continue
        group.active += 1
        if is_specified_delete(pod, pods_to_delete):
            group.to_delete += 1
        elif not available(pod, min_ready_seconds=min_ready_seconds, now_ms=now_ms):
            group.unavailable += 1

    update_old_diff = old.active - kept
    update_new_diff = new.active - (replicas - kept)
    if update_revision == current_revision or not partition_rollback:
        update_old_diff = max(update_old_diff, 0)
        update_new_diff = min(update_new_diff, 0)
    to_delete = new.to_delete + old.to_delete
    pre_deleting = new.pre_deleting + old.pre_deleting
    total_unavailable = pre_deleting + new.unavailable + old.unavailable

    use_surge = use_surge_old = 0
    if surge > 0:
        # Surge for pods being deleted while maxUnavailable is already used up.
        scale_surge = scale_surge_old = 0
        if to_delete > 0:
            scale_surge = min(max(total_unavailable + to_delete - unavailable_limit, 0), to_delete)
            scale_surge_old = max(scale_surge - new.to_delete, 0)
        # Surge for an update that must both remove old pods and add new ones.
        update_surge = update_surge_old = 0
        if _opposite_signs(update_old_diff, update_new_diff):
            if abs(update_old_diff) <= abs(update_new_diff):
                update_surge = abs(update_old_diff)
                update_surge_old = update_surge if update_old_diff < 0 else 0
            else:
                update_surge = abs(update_new_diff)
                update_surge_old = update_surge if update_new_diff > 0 else 0
        # One round either scales or updates, so only the larger need is surged for.
        if scale_surge >= update_surge:
            use_surge = min(surge, scale_surge)
            use_surge_old = min(use_surge, scale_surge_old)
        else:
            use_surge = min(surge, update_surge)
            use_surge_old = min(use_surge, update_surge_old)

    scale_num = replicas + use_surge - len(pods)
    old_gap = kept + use_surge_old - old.total
    scale_num_old = scale_up_limit = 0
    if scale_num > 0:
        scale_num_old = max(old_gap, 0)
        scale_up_limit = min(scale_num, max(scale_unavailable_limit - total_unavailable, 0))
    elif scale_num < 0:
        scale_num_old = min(old_gap, 0)
    delete_ready_limit = 0
    if to_delete > 0 or scale_num < 0:
        delete_ready_limit = max(unavailable_limit + len(pods) - replicas - total_unavailable, 0)

    if abs(update_old_diff) <= abs(update_new_diff):
        update_num = update_old_diff
    else:
        update_num = -update_new_diff
    update_max_unavailable = unavailable_limit + len(pods) - replicas if update_num else 0

    return ExpectationDiffs(
        scale_num=scale_num,
        scale_num_old_revision=scale_num_old,
        scale_up_limit=scale_up_limit,
        delete_ready_limit=delete_ready_limit,
        use_surge=use_surge,
        use_surge_old_revision=use_surge_old,
        update_num=update_num,
        update_max_unavailable=update_max_unavailable,
        partition_error=partition_error,
    )


def _partition(partition: IntOrStr | None, replicas: int) -> tuple[int, str]:
    try:
        return partition_replicas(partition, replicas), ""
    except ValueError as e:
        return 0, str(e)


def _lenient(value: IntOrStr, replicas: int, *, round_up: bool) -> int:
    try:
        return lenient_value(value, total=replicas, round_up=round_up)
    except ValueError:
        return 0


def _opposite_signs(a: int, b: int) -> bool:
    return (a > 0 and b < 0) or (a < 0 and b > 0)
