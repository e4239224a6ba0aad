"""The CloneSet diff algorithm (services.rollout.diffs, SPEC 2.4): SPEC 2.7 scenarios 1-9.

Rows mirror OpenKruise's ``TestCalculateDiffsWithExpectation``
(``pkg/controller/cloneset/sync/cloneset_sync_utils_test.go``): ``cs(R, partition,
maxUnavailable, maxSurge)`` is its ``createTestCloneSet``, pods are ``pod``/``pods`` from
``rollout_builders`` (old = current revision, new = update revision), and each id reads
"spec: pods → what the controller does (step i/n)". OpenKruise ran its table with the
CloneSetPartitionRollback gate on; here it is off unless the row says ``rollback``, and
``test_gate_matters_only_for_rollback`` checks that the other rows agree with it on.
Rows named "scenario N" are SPEC 2.7's; the others are OpenKruise's remaining rows or
cover PreparingDelete, specified-delete, unavailable pods and minReadySeconds.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from kruise.common.v1 import views_pb2
from services.rollout.diffs import ExpectationDiffs, calculate_diffs
from services.rollout.pods import PREPARING_DELETE, UPDATING
from tests.unit.rollout_builders import NEW, NOW, OLD, SECOND, pod, pods

D = ExpectationDiffs
EMPTY = ExpectationDiffs()
NOT_A_PERCENTAGE = "invalid value for IntOrString: invalid type: string is not a percentage"


def cs(
    replicas: int,
    partition: int | str | None = 0,
    max_unavailable: int | str | None = 1,
    max_surge: int | str | None = 0,
    **more: Any,
) -> dict[str, Any]:
    """``createTestCloneSet(replicas, partition, maxUnavailable, maxSurge)`` as arguments.

    ``more`` adds any other ``calculate_diffs`` argument (``scale_max_unavailable``,
    ``pods_to_delete``, ``min_ready_seconds``, ``partition_rollback``, and
    ``current_revision=NEW`` for "revision consistent" rows).
    """
    return {
        "replicas": replicas,
        "partition": partition,
        "max_unavailable": max_unavailable,
        "max_surge": max_surge,
        **more,
    }


def diffs(spec: dict[str, Any], pods: list[views_pb2.PodView]) -> ExpectationDiffs:
    arguments = {"update_revision": NEW, "current_revision": OLD, "now_ms": NOW, **spec}
    return calculate_diffs(pods=pods, **arguments)


def not_ready(revision: str, name: str, **kwargs: Any) -> views_pb2.PodView:
    return pod(revision, name=name, ready=False, **kwargs)


SCALE = [
    pytest.param(cs(0), [], EMPTY, id="R0: no pods → nothing"),
    pytest.param(
        cs(5), [], D(scale_num=5, scale_up_limit=5), id="R5: no pods → create 5 (step 1/2)"
    ),
    pytest.param(cs(5), pods(5), EMPTY, id="R5: 5 ready → nothing (step 2/2)"),
    pytest.param(
        cs(5),
        [pod(NEW, name="new-0", specified_delete=True), *pods(4, start=1)],
        D(delete_ready_limit=1),
        id="R5 U1: 1 of 5 specified-delete → delete it (step 1/3)",
    ),
    pytest.param(
        cs(5), pods(4), D(scale_num=1, scale_up_limit=1), id="R5 U1: 4 left → create 1 (step 2/3)"
    ),
    pytest.param(cs(5), pods(5), EMPTY, id="R5 U1: 5 ready again → nothing (step 3/3)"),
    pytest.param(
        cs(5, pods_to_delete=("new-2",)),
        pods(5),
        D(delete_ready_limit=1),
        id="R5 U1: 1 of 5 in podsToDelete → delete it, as the label does",
    ),
    pytest.param(
        cs(4),
        [
            not_ready(NEW, "new-0", specified_delete=True),
            not_ready(NEW, "new-1", specified_delete=True),
            *pods(3, start=2),
        ],
        D(scale_num=-1, delete_ready_limit=2),
        id="R4 U1: 2 not-ready specified-delete of 5 → scale in 1 (step 1/3)",
    ),
    pytest.param(
        cs(4), pods(3), D(scale_num=1, scale_up_limit=1), id="R4 U1: 3 left → create 1 (step 2/3)"
    ),
    pytest.param(cs(4), pods(4), EMPTY, id="R4 U1: 4 ready → nothing (step 3/3)"),
    pytest.param(
        cs(5, scale_max_unavailable=2),
        [],
        D(scale_num=5, scale_up_limit=2),
        id="scenario 9: R5 scale maxUnavailable 2, no pods → create 5, 2 at a time",
    ),
    pytest.param(
        cs(6, scale_max_unavailable=2),
        [*pods(2), not_ready(NEW, "new-2")],
        D(scale_num=3, scale_up_limit=1),
        id="scenario 9: R6 scale maxUnavailable 2, 1 of 3 not ready → create 1 of 3",
    ),
    pytest.param(
        cs(6, scale_max_unavailable=2),
        [*pods(1), not_ready(NEW, "new-1"), not_ready(NEW, "new-2")],
        D(scale_num=3),
        id="scenario 9: R6 scale maxUnavailable 2, 2 of 3 not ready → create none yet",
    ),
]

PREPARING_DELETE_ROWS = [
    pytest.param(
        cs(5),
        [*pods(4), pod(NEW, name="new-4", state=PREPARING_DELETE)],
        EMPTY,
        id="R5: 4 ready + 1 PreparingDelete → it still counts, create nothing",
    ),
    pytest.param(
        cs(4),
        pods(5),
        D(scale_num=-1, delete_ready_limit=2),
        id="R4 U1: 5 ready → scale in 1, 2 ready pods may go",
    ),
    pytest.param(
        cs(4),
        [*pods(4), pod(NEW, name="new-4", state=PREPARING_DELETE)],
        D(scale_num=-1, delete_ready_limit=1),
        id="R4 U1: 4 ready + 1 PreparingDelete → it is unavailable, 1 ready pod may go",
    ),
    pytest.param(
        cs(7, scale_max_unavailable=2),
        [*pods(4), *pods(2, start=4, state=PREPARING_DELETE)],
        D(scale_num=1),
        id="R7 scale maxUnavailable 2: 2 PreparingDelete use it up → create none yet",
    ),
    pytest.param(
        cs(5),
        [*pods(4, OLD), pod(OLD, name="old-4", state=PREPARING_DELETE)],
        D(update_num=4, update_max_unavailable=1),
        id="R5 P0 U1: 4 old + 1 old PreparingDelete → update the 4, never the held one",
    ),
]

UNAVAILABLE_ROWS = [
    pytest.param(
        cs(4),
        [*pods(4), not_ready(NEW, "new-4")],
        D(scale_num=-1, delete_ready_limit=1),
        id="R4 U1: 1 of 5 not ready → scale in 1, 1 ready pod may go",
    ),
    pytest.param(
        cs(4),
        [*pods(3), not_ready(NEW, "new-3"), not_ready(NEW, "new-4")],
        D(scale_num=-1),
        id="R4 U1: 2 of 5 not ready → scale in 1, no ready pod may go",
    ),
    pytest.param(
        cs(4),
        [*pods(4), pod(NEW, name="new-4", in_place_ready=False)],
        D(scale_num=-1, delete_ready_limit=1),
        id="R4 U1: 1 of 5 InPlaceUpdateReady False → it is unavailable",
    ),
    pytest.param(
        cs(4),
        [*pods(4), pod(NEW, name="new-4", state=UPDATING)],
        D(scale_num=-1, delete_ready_limit=1),
        id="R4 U1: 1 of 5 in state Updating → it is unavailable",
    ),
    pytest.param(
        cs(4, min_ready_seconds=30),
        pods(5),
        D(scale_num=-1, delete_ready_limit=2),
        id="R4 U1 minReady 30s: 5 ready for an hour → 2 ready pods may go",
    ),
    pytest.param(
        cs(4, min_ready_seconds=30),
        [*pods(4), pod(NEW, name="new-4", ready_since_ms=NOW - 10 * SECOND)],
        D(scale_num=-1, delete_ready_limit=1),
        id="R4 U1 minReady 30s: 1 of 5 ready for 10s → it is unavailable",
    ),
    pytest.param(
        cs(4, min_ready_seconds=30),
        [*pods(4), pod(NEW, name="new-4", ready_since_ms=NOW - 31 * SECOND)],
        D(scale_num=-1, delete_ready_limit=2),
        id="R4 U1 minReady 30s: 1 of 5 ready for 31s → available again",
    ),
]

UPDATE = [
    pytest.param(
        cs(5, 3),
        pods(5, OLD),
        D(update_num=2, update_max_unavailable=1),
        id="scenario 4: R5 P3 U1: 5 old → update 2 (step 1/3)",
    ),
    pytest.param(
        cs(5, 3),
        [pod(NEW), *pods(4, OLD)],
        D(update_num=1, update_max_unavailable=1),
        id="scenario 4: R5 P3 U1: 1 new + 4 old → update 1 more (step 2/3)",
    ),
    pytest.param(
        cs(5, 3),
        [*pods(2), *pods(3, OLD)],
        EMPTY,
        id="scenario 4: R5 P3 U1: 2 new + 3 old → partition reached (step 3/3)",
    ),
    pytest.param(
        cs(5, current_revision=NEW),
        pods(5),
        EMPTY,
        id="scenario 7: revisions consistent, R5 P0: 5 at it → nothing",
    ),
    pytest.param(
        cs(5, 3, current_revision=NEW),
        pods(5),
        EMPTY,
        id="scenario 7: revisions consistent, R5 P3: 5 at it → no rollback to keep 3",
    ),
    pytest.param(
        cs(5, 3, current_revision=NEW),
        [*pods(2, OLD), *pods(3)],
        EMPTY,
        id="scenario 7: revisions consistent, R5 P3: 2 not updated + 3 → nothing",
    ),
    pytest.param(
        cs(5, 1, current_revision=NEW),
        [*pods(3, OLD), *pods(2)],
        D(update_num=2, update_max_unavailable=1),
        id="scenario 7: revisions consistent, R5 P1: 3 not updated + 2 → update 2",
    ),
    pytest.param(
        cs(5, 1, 2, current_revision=NEW),
        [*pods(2, OLD), *pods(2)],
        D(scale_num=1, scale_up_limit=1, update_num=1, update_max_unavailable=1),
        id="R5 P1 U2 consistent: 2 old + 2 new → scale out 1 and still update 1",
    ),
    pytest.param(
        cs(5, 1, current_revision=NEW),
        [*pods(3, OLD), *pods(3)],
        D(
            scale_num=-1,
            scale_num_old_revision=-2,
            delete_ready_limit=2,
            update_num=1,
            update_max_unavailable=2,
        ),
        id="scenario 8: R5 P1 U1 consistent: 3 old + 3 new → scale in, and update 1 anyway",
    ),
    pytest.param(
        cs(5, "50"),
        pods(5, OLD),
        D(update_num=5, update_max_unavailable=1, partition_error=NOT_A_PERCENTAGE),
        id="R5 P'50' (no %): invalid partition counts as 0 → update all 5, say why",
    ),
    pytest.param(
        cs(10, None, None),
        pods(10, OLD),
        D(update_num=10, update_max_unavailable=2),
        id="R10 maxUnavailable unset: 20% of 10 → 2 at a time",
    ),
    pytest.param(
        cs(3, None, None),
        pods(3, OLD),
        D(update_num=3, update_max_unavailable=1),
        id="R3 maxUnavailable unset: 20% of 3 rounds up to 1 without surge",
    ),
]

SURGE = [
    pytest.param(
        cs(5, "99%", 3, 2),
        pods(5, OLD),
        D(scale_num=1, use_surge=1, scale_up_limit=1, update_num=1, update_max_unavailable=3),
        id="scenario 1: R5 P99% U3 S2: 5 old ready → surge one new (step 1/3)",
    ),
    pytest.param(
        cs(5, "99%", 3, 2),
        [*pods(5, OLD), not_ready(NEW, "new-0")],
        D(scale_num=-1, scale_num_old_revision=-1, delete_ready_limit=3),
        id="scenario 1: R5 P99% U3 S2: 5 old + 1 new not ready → drop one old (step 2/3)",
    ),
    pytest.param(
        cs(5, "99%", 3, 2),
        [*pods(4, OLD), not_ready(NEW, "new-0")],
        EMPTY,
        id="scenario 1: R5 P99% U3 S2: 4 old + 1 new → done (step 3/3)",
    ),
    pytest.param(
        cs(5, "99%", "40%", "30%"),
        pods(5, OLD),
        D(scale_num=1, use_surge=1, scale_up_limit=1, update_num=1, update_max_unavailable=2),
        id="scenario 2: R5 P99% U40% S30%: 5 old → U floor 2.0 = 2 (step 1/3)",
    ),
    pytest.param(
        cs(5, "99%", "40%", "30%"),
        [*pods(5, OLD), not_ready(NEW, "new-0")],
        D(scale_num=-1, scale_num_old_revision=-1, delete_ready_limit=2),
        id="scenario 2: R5 P99% U40% S30%: 5 old + 1 new → drop one old (step 2/3)",
    ),
    pytest.param(
        cs(5, "99%", "40%", "30%"),
        [*pods(4, OLD), not_ready(NEW, "new-0")],
        EMPTY,
        id="scenario 2: R5 P99% U40% S30%: 4 old + 1 new → done (step 3/3)",
    ),
    pytest.param(
        cs(5, "99%", "30%", "30%"),
        pods(5, OLD),
        D(scale_num=1, use_surge=1, scale_up_limit=1, update_num=1, update_max_unavailable=1),
        id="scenario 3: R5 P99% U30% S30%: 5 old → U floor 1.5 = 1 (step 1/3)",
    ),
    pytest.param(
        cs(5, "99%", "30%", "30%"),
        [*pods(5, OLD), not_ready(NEW, "new-0")],
        D(scale_num=-1, scale_num_old_revision=-1, delete_ready_limit=1),
        id="scenario 3: R5 P99% U30% S30%: 5 old + 1 new → drop one old (step 2/3)",
    ),
    pytest.param(
        cs(5, "99%", "30%", "30%"),
        [*pods(4, OLD), not_ready(NEW, "new-0")],
        EMPTY,
        id="scenario 3: R5 P99% U30% S30%: 4 old + 1 new → done (step 3/3)",
    ),
    pytest.param(
        cs(5, 3, 1, 1),
        pods(5, OLD),
        D(scale_num=1, use_surge=1, scale_up_limit=1, update_num=2, update_max_unavailable=1),
        id="scenario 6: R5 P3 U1 S1 in-place: 5 old → surge one new (step 1/4)",
    ),
    pytest.param(
        cs(5, 3, 1, 1),
        [*pods(5, OLD), not_ready(NEW, "new-0")],
        D(use_surge=1, update_num=1, update_max_unavailable=2),
        id="scenario 6: R5 P3 U1 S1 in-place: surge pod created → update 1 old (step 2/4)",
    ),
    pytest.param(
        cs(5, 3, 1, 1),
        [*pods(4, OLD), not_ready(NEW, "new-0", state=UPDATING), not_ready(NEW, "new-1")],
        D(scale_num=-1, scale_num_old_revision=-1),
        id="scenario 6: R5 P3 U1 S1 in-place: 1 updating → drop one old, none ready (step 3/4)",
    ),
    pytest.param(
        cs(5, 3, 1, 1),
        [*pods(4, OLD), pod(NEW, name="new-0"), not_ready(NEW, "new-1")],
        D(scale_num=-1, scale_num_old_revision=-1, delete_ready_limit=1),
        id="scenario 6: R5 P3 U1 S1 in-place: updated → drop one old (step 4/4)",
    ),
    pytest.param(
        cs(5, 3, 1, 1),
        pods(5, OLD),
        D(scale_num=1, use_surge=1, scale_up_limit=1, update_num=2, update_max_unavailable=1),
        id="R5 P3 U1 S1 recreate: 5 old → surge one new (step 1/7)",
    ),
    pytest.param(
        cs(5, 3, 1, 1),
        [*pods(5, OLD), not_ready(NEW, "new-0")],
        D(use_surge=1, update_num=1, update_max_unavailable=2),
        id="R5 P3 U1 S1 recreate: surge pod created → update 1 old (step 2/7)",
    ),
    pytest.param(
        cs(5, 3, 1, 1),
        [*pods(4, OLD), pod(OLD, name="old-4", specified_delete=True), not_ready(NEW, "new-0")],
        D(
            use_surge=1,
            use_surge_old_revision=1,
            delete_ready_limit=1,
            update_num=1,
            update_max_unavailable=2,
        ),
        id="R5 P3 U1 S1 recreate: old pod marked to recreate → delete it (step 3/7)",
    ),
    pytest.param(
        cs(5, 3, 1, 1),
        [*pods(4, OLD), not_ready(NEW, "new-0")],
        D(scale_num=1, use_surge=1, scale_up_limit=1, update_num=1, update_max_unavailable=1),
        id="R5 P3 U1 S1 recreate: old pod gone → create its replacement (step 4/7)",
    ),
    pytest.param(
        cs(5, 3, 1, 1),
        [*pods(4, OLD), not_ready(NEW, "new-0"), not_ready(NEW, "new-1")],
        D(scale_num=-1, scale_num_old_revision=-1),
        id="R5 P3 U1 S1 recreate: 2 new not ready → drop one old, none ready (step 5/7)",
    ),
    pytest.param(
        cs(5, 3, 1, 1),
        [*pods(4, OLD), pod(NEW, name="new-0"), not_ready(NEW, "new-1")],
        D(scale_num=-1, scale_num_old_revision=-1, delete_ready_limit=1),
        id="R5 P3 U1 S1 recreate: 1 new ready → drop one old (step 6/7)",
    ),
    pytest.param(
        cs(5, 3, 1, 1),
        [*pods(3, OLD), *pods(2)],
        EMPTY,
        id="R5 P3 U1 S1 recreate: 3 old + 2 new → done (step 7/7)",
    ),
    pytest.param(
        cs(5, 0, 0, 1),
        [pod(NEW, name="new-0", specified_delete=True), *pods(4, start=1)],
        D(scale_num=1, use_surge=1, scale_up_limit=1),
        id="R5 U0 S1: 1 of 5 specified-delete → surge its replacement first (step 1/4)",
    ),
    pytest.param(
        cs(5, 0, 0, 1),
        [pod(NEW, name="new-0", specified_delete=True), *pods(4, start=1), not_ready(NEW, "new-5")],
        D(use_surge=1),
        id="R5 U0 S1: replacement not ready → wait (step 2/4)",
    ),
    pytest.param(
        cs(5, 0, 0, 1),
        [pod(NEW, name="new-0", specified_delete=True), *pods(5, start=1)],
        D(use_surge=1, delete_ready_limit=1),
        id="R5 U0 S1: replacement ready → delete the marked pod (step 3/4)",
    ),
    pytest.param(cs(5, 0, 0, 1), pods(5), EMPTY, id="R5 U0 S1: 5 ready → nothing (step 4/4)"),
]

ROLLBACK = [
    pytest.param(
        cs(5, 2, None),
        [],
        D(scale_num=5, scale_num_old_revision=2, scale_up_limit=5),
        id="R5 P2: no pods mid-rollout → create 5, 2 of them at the current revision",
    ),
    pytest.param(
        cs(5, 2, None, partition_rollback=True),
        [],
        D(
            scale_num=5,
            scale_num_old_revision=2,
            scale_up_limit=5,
            update_num=-2,
            update_max_unavailable=-4,
        ),
        id="gate on, R5 P2: no pods mid-rollout → also a rollback of 2 (quirk; scaling goes first)",
    ),
    pytest.param(
        cs(5, 4, 2, partition_rollback=True),
        [*pods(4), *pods(1, OLD)],
        D(update_num=-3, update_max_unavailable=2),
        id="scenario 5: rollback R5 P4 U2: 4 new + 1 old → roll 3 back (step 1/3)",
    ),
    pytest.param(
        cs(5, 4, 2, partition_rollback=True),
        [*pods(2), *pods(3, OLD)],
        D(update_num=-1, update_max_unavailable=2),
        id="scenario 5: rollback R5 P4 U2: 2 new + 3 old → roll 1 back (step 2/3)",
    ),
    pytest.param(
        cs(5, 4, 2, partition_rollback=True),
        [*pods(1), *pods(4, OLD)],
        EMPTY,
        id="scenario 5: rollback R5 P4 U2: 1 new + 4 old → done (step 3/3)",
    ),
    pytest.param(
        cs(5, 4, 1),
        [*pods(1, OLD), *pods(4)],
        EMPTY,
        id="scenario 5: gate off, R5 P4: 1 old + 4 new → never roll back",
    ),
    pytest.param(
        cs(5, 4, 2, partition_rollback=True, current_revision=NEW),
        [*pods(4), *pods(1, OLD)],
        EMPTY,
        id="gate on, revisions consistent, R5 P4: 4 + 1 not updated → never roll back",
    ),
]


@pytest.mark.parametrize(
    ("spec", "given", "expected"),
    SCALE + PREPARING_DELETE_ROWS + UNAVAILABLE_ROWS + UPDATE + SURGE + ROLLBACK,
)
def test_calculate_diffs(
    spec: dict[str, Any], given: list[views_pb2.PodView], expected: ExpectationDiffs
) -> None:
    assert diffs(spec, given) == expected


@pytest.mark.parametrize(
    ("spec", "given", "expected"),
    SCALE + PREPARING_DELETE_ROWS + UNAVAILABLE_ROWS + UPDATE + SURGE,
)
def test_gate_matters_only_for_rollback(
    spec: dict[str, Any], given: list[views_pb2.PodView], expected: ExpectationDiffs
) -> None:
    """OpenKruise ran these rows with CloneSetPartitionRollback on: same answers."""
    assert diffs({**spec, "partition_rollback": True}, given) == expected


def test_the_revision_label_may_hold_the_short_hash() -> None:
    """A pod labelled with the hash alone is at the revision (CloneSetShortHash pods)."""
    short = [pod(NEW.rsplit("-", 1)[-1], name=f"new-{i}") for i in range(5)]
    assert diffs(cs(5, 3), short) == EMPTY


@pytest.mark.parametrize(
    ("result", "empty"),
    [
        pytest.param(EMPTY, True, id="all zero → empty"),
        pytest.param(
            D(partition_error=NOT_A_PERCENTAGE), True, id="only a partition error → empty"
        ),
        pytest.param(D(scale_num=-1), False, id="scale in → not empty"),
        pytest.param(D(update_max_unavailable=1), False, id="any count → not empty"),
    ],
)
def test_is_empty(result: ExpectationDiffs, empty: bool) -> None:
    assert result.is_empty() is empty


def test_diffs_are_frozen() -> None:
    with pytest.raises(AttributeError):
        EMPTY.scale_num = 1  # type: ignore[misc]
    assert replace(EMPTY, update_num=2).update_num == 2
