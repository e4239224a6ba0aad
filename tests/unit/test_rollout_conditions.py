"""CloneSet ``status.conditions``: FailedScale and FailedUpdate as OpenKruise v1.2 writes them
(``syncCloneSet`` in ``pkg/controller/cloneset/cloneset_controller.go``), merged into the
conditions others wrote instead of replacing them.

Rows read as the steps of a scenario: a quota refuses pod creates, is raised; an in-place
update fails, then succeeds; a user's condition rides along through all of it.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from kruise.common.v1 import views_pb2
from services.kit.projection import project_clone_set
from services.rollout.status import (
    FAILED_SCALE,
    FAILED_UPDATE,
    conditions_of,
    failures_changed,
    next_conditions,
    round_errors,
)

T0 = "2026-01-01T00:00:00Z"
NOW = "2026-01-01T00:05:00Z"
QUOTA = 'pods "web-x7k2p" is forbidden: exceeded quota: pods, requested: pods=1, limited: pods=2'
QUOTA_AGAIN = QUOTA.replace("web-x7k2p", "web-9qz4m")
IN_PLACE = 'Operation cannot be fulfilled on pods "web-x7k2p": admission webhook denied'


def failed(kind: str, message: str, at: str = T0) -> dict[str, str]:
    return {"type": kind, "status": "True", "lastTransitionTime": at, "message": message}


# A condition someone else wrote: a user's note, another controller's gate.
USERS = {
    "type": "example.io/Audited",
    "status": "True",
    "reason": "Reviewed",
    "message": "signed off by the release team",
    "lastTransitionTime": T0,
}
FOREIGN = {"type": "Ready", "status": "False", "reason": "Other", "extra": {"kept": True}}


@pytest.mark.parametrize(
    ("existing", "scale_error", "update_error", "expected"),
    [
        pytest.param(
            [],
            QUOTA,
            None,
            [failed(FAILED_SCALE, QUOTA, NOW)],
            id="quota refuses the first create → FailedScale True (step 1/4)",
        ),
        pytest.param(
            [failed(FAILED_SCALE, QUOTA)],
            QUOTA_AGAIN,
            None,
            [failed(FAILED_SCALE, QUOTA_AGAIN, NOW)],
            id="still refused → this round's message and time, as OpenKruise (step 2/4)",
        ),
        pytest.param(
            [failed(FAILED_SCALE, QUOTA)],
            None,
            "",
            [failed(FAILED_SCALE, QUOTA)],
            id="a refresh round did not scale → FailedScale left as it was (step 3/4)",
        ),
        pytest.param(
            [failed(FAILED_SCALE, QUOTA)],
            "",
            None,
            [],
            id="quota raised, creates succeed → FailedScale removed (step 4/4)",
        ),
        pytest.param(
            [],
            "",
            IN_PLACE,
            [failed(FAILED_UPDATE, IN_PLACE, NOW)],
            id="in-place update fails → FailedUpdate True (step 1/2)",
        ),
        pytest.param(
            [failed(FAILED_UPDATE, IN_PLACE)],
            "",
            "",
            [],
            id="the update goes through → FailedUpdate removed (step 2/2)",
        ),
        pytest.param(
            [failed(FAILED_UPDATE, IN_PLACE)],
            "",
            None,
            [failed(FAILED_UPDATE, IN_PLACE)],
            id="a scale round did not update → FailedUpdate left as it was",
        ),
        pytest.param(
            [],
            QUOTA,
            IN_PLACE,
            [failed(FAILED_SCALE, QUOTA, NOW), failed(FAILED_UPDATE, IN_PLACE, NOW)],
            id="both fail → FailedScale then FailedUpdate, OpenKruise's order",
        ),
        pytest.param(
            [USERS],
            "",
            "",
            [USERS],
            id="a user's condition, nothing failed → kept unchanged",
        ),
        pytest.param(
            [USERS, FOREIGN],
            QUOTA,
            None,
            [USERS, FOREIGN, failed(FAILED_SCALE, QUOTA, NOW)],
            id="others' conditions kept whole (unknown fields too); ours appended",
        ),
        pytest.param(
            [failed(FAILED_UPDATE, IN_PLACE), USERS],
            "",
            QUOTA,
            [failed(FAILED_UPDATE, QUOTA, NOW), USERS],
            id="ours replaced where it stood, the user's after it stays after it",
        ),
        pytest.param(
            [USERS, failed(FAILED_SCALE, QUOTA), FOREIGN],
            "",
            "",
            [USERS, FOREIGN],
            id="ours removed from between others, their order kept",
        ),
        pytest.param(
            [failed(FAILED_SCALE, QUOTA), failed(FAILED_SCALE, QUOTA_AGAIN)],
            IN_PLACE,
            None,
            [failed(FAILED_SCALE, IN_PLACE, NOW)],
            id="a duplicated FailedScale collapses into one",
        ),
        pytest.param(
            ["not a condition", FOREIGN],
            "",
            "",
            ["not a condition", FOREIGN],
            id="an item that is not an object is left alone",
        ),
    ],
)
def test_next_conditions(
    existing: list[Any], scale_error: str | None, update_error: str | None, expected: list[Any]
) -> None:
    before = orjson.dumps(existing)
    got = next_conditions(existing, scale_error=scale_error, update_error=update_error, now=NOW)
    assert got == expected
    assert orjson.dumps(existing) == before  # the stored list is not touched


@pytest.mark.parametrize(
    ("phase", "failure", "errors"),
    [
        pytest.param("scale", QUOTA, (QUOTA, None), id="scale failed → FailedScale set"),
        pytest.param("scale", None, ("", None), id="scaled → FailedScale cleared"),
        pytest.param("update", IN_PLACE, ("", IN_PLACE), id="update failed → FailedUpdate set"),
        pytest.param("update", None, ("", ""), id="updated → both cleared"),
        pytest.param("refresh", IN_PLACE, (None, IN_PLACE), id="refresh failed → FailedUpdate"),
        pytest.param("refresh", None, (None, ""), id="refreshed → scale not judged"),
        pytest.param("idle", None, ("", ""), id="nothing to do (or paused) → both cleared"),
    ],
)
def test_round_errors(
    phase: str, failure: str | None, errors: tuple[str | None, str | None]
) -> None:
    assert round_errors(phase, failure) == errors


@pytest.mark.parametrize(
    ("old", "new", "changed"),
    [
        pytest.param([], [failed(FAILED_SCALE, QUOTA)], True, id="a failure appears → write"),
        pytest.param([failed(FAILED_SCALE, QUOTA)], [], True, id="a failure clears → write"),
        pytest.param(
            [failed(FAILED_SCALE, QUOTA)],
            [failed(FAILED_SCALE, QUOTA_AGAIN, NOW)],
            False,
            id="same failure, new message and time → no write of its own",
        ),
        pytest.param(
            [failed(FAILED_SCALE, QUOTA)],
            [failed(FAILED_UPDATE, IN_PLACE)],
            True,
            id="one failure gives way to the other → write",
        ),
        pytest.param([USERS], [USERS], False, id="only others' conditions → no write"),
        pytest.param(
            [{**failed(FAILED_SCALE, QUOTA), "status": "False"}],
            [],
            False,
            id="a FailedScale that is not True was no failure",
        ),
    ],
)
def test_failures_changed(old: list[Any], new: list[Any], changed: bool) -> None:
    assert failures_changed(old, new) is changed


def clone_set(status: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "apps.kruise.io/v1alpha1",
        "kind": "CloneSet",
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {"replicas": 2},
        "status": status,
    }


@pytest.mark.parametrize(
    ("status", "conditions"),
    [
        pytest.param({}, [], id="no status → none"),
        pytest.param({"conditions": []}, [], id="an empty list → none"),
        pytest.param({"conditions": None}, [], id="null → none"),
        pytest.param(
            {"replicas": 2, "conditions": [USERS, failed(FAILED_SCALE, QUOTA), FOREIGN]},
            [USERS, failed(FAILED_SCALE, QUOTA), FOREIGN],
            id="every condition, every field, in order",
        ),
    ],
)
def test_the_view_carries_the_stored_conditions(
    status: dict[str, Any], conditions: list[Any]
) -> None:
    assert conditions_of(project_clone_set(clone_set(status)).status) == conditions


def test_conditions_of_an_unreadable_value_is_empty() -> None:
    assert conditions_of(views_pb2.CloneSetStatus(conditions_json=b'{"type": "x"}')) == []
