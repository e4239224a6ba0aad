"""RolloutStatus as the rollout API reports it (services.rollout.report, issue #9).

Counts come from the status the CloneSet controller wrote (``cs_status``); lifecycle and
the pods held not-ready from the pods (``rollout_builders``: running, ready, Normal).
"""

from __future__ import annotations

import pytest

from kruise.common.v1 import views_pb2
from kruise.rollout.v1 import rollout_pb2
from services.rollout.pods import (
    PREPARING_DELETE,
    PREPARING_UPDATE,
    UPDATED,
    UPDATING,
)
from services.rollout.report import (
    CONTROL_INFO_ANNOTATION,
    ROLLOUT_ID_ANNOTATION,
    controlled_by,
    rollout_status,
)
from tests.unit.rollout_builders import NEW, OLD, clone_set, cs_status, pod, pods

CONTROL_INFO = (
    '{"apiVersion":"rollouts.kruise.io/v1beta1","kind":"BatchRelease","name":"demo",'
    '"uid":"br-1","controller":true,"blockOwnerDeletion":true}'
)


# --- controlled_by -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("annotations", "expected"),
    [
        pytest.param({}, rollout_pb2.ControlledBy(), id="nobody"),
        pytest.param(
            {CONTROL_INFO_ANNOTATION: CONTROL_INFO},
            rollout_pb2.ControlledBy(
                kruise_rollout=rollout_pb2.KruiseRolloutControl(
                    api_version="rollouts.kruise.io/v1beta1",
                    kind="BatchRelease",
                    name="demo",
                    uid="br-1",
                )
            ),
            id="Kruise Rollout's BatchRelease",
        ),
        pytest.param(
            {CONTROL_INFO_ANNOTATION: '{"kind":"BatchRelease","name":7}'},
            rollout_pb2.ControlledBy(
                kruise_rollout=rollout_pb2.KruiseRolloutControl(kind="BatchRelease")
            ),
            id="control-info with a non-string name keeps what reads",
        ),
        pytest.param({ROLLOUT_ID_ANNOTATION: "argo-7"}, None, id="claimed by a rollout id"),
        pytest.param({ROLLOUT_ID_ANNOTATION: ""}, rollout_pb2.ControlledBy(), id="empty claim"),
        pytest.param(
            {CONTROL_INFO_ANNOTATION: CONTROL_INFO, ROLLOUT_ID_ANNOTATION: "argo-7"},
            "kruise_rollout",
            id="Kruise Rollout wins over a claim",
        ),
    ],
)
def test_controlled_by(annotations: dict[str, str], expected: object) -> None:
    found = controlled_by(views_pb2.ObjectMeta(annotations=annotations))
    if expected is None:
        assert found == rollout_pb2.ControlledBy(rollout_id="argo-7")
    elif isinstance(expected, str):
        assert found.WhichOneof("by") == expected
    else:
        assert found == expected


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("{not json", id="malformed JSON"),
        pytest.param('["BatchRelease"]', id="JSON but not an object"),
        pytest.param("", id="empty annotation"),
    ],
)
def test_malformed_control_info_still_counts_as_kruise(text: str) -> None:
    found = controlled_by(views_pb2.ObjectMeta(annotations={CONTROL_INFO_ANNOTATION: text}))
    assert found.WhichOneof("by") == "kruise_rollout"
    assert found.kruise_rollout == rollout_pb2.KruiseRolloutControl()


# --- batch_complete, rollout_complete, summary -----------------------------------------


@pytest.mark.parametrize(
    ("cs", "batch", "rollout", "summary"),
    [
        pytest.param(
            clone_set(
                10, partition="50%", status=cs_status(updated=5, updated_ready=4, expected=5)
            ),
            False,
            False,
            "5/10 updated, 4 ready; partition 50% (5 kept); batch waiting for 1 ready",
            id="partition 50%: 5 updated, 4 ready (waiting)",
        ),
        pytest.param(
            clone_set(
                10, partition="50%", status=cs_status(updated=5, updated_ready=5, expected=5)
            ),
            True,
            False,
            "5/10 updated, 5 ready; partition 50% (5 kept); batch complete",
            id="partition 50%: 5 updated and ready (batch done)",
        ),
        pytest.param(
            clone_set(
                10, partition="50%", status=cs_status(updated=3, updated_ready=2, expected=5)
            ),
            False,
            False,
            "3/10 updated, 2 ready; partition 50% (5 kept); batch waiting for 2 updated, 3 ready",
            id="partition 50%: 3 updated, 2 ready",
        ),
        pytest.param(
            clone_set(
                10,
                partition="50%",
                generation=4,
                status=cs_status(updated=8, updated_ready=8, expected=8, observed_generation=3),
            ),
            False,
            False,
            "8/10 updated, 8 ready; partition 50% (5 kept); "
            "reconciling (observed generation 3 < 4)",
            id="partition just set: not observed yet",
        ),
        pytest.param(
            clone_set(
                10,
                status=cs_status(updated=10, updated_ready=9, expected=10, current_revision=NEW),
            ),
            False,
            False,
            "10/10 updated, 9 ready; batch waiting for 1 ready",
            id="revisions equal: all updated, one not ready",
        ),
        pytest.param(
            clone_set(
                10,
                status=cs_status(updated=10, updated_ready=10, expected=10, current_revision=NEW),
            ),
            True,
            True,
            "complete: 10/10 updated, 10 ready",
            id="revisions equal: all updated and ready (complete)",
        ),
        pytest.param(
            clone_set(
                10,
                status=cs_status(
                    updated=10, updated_ready=10, expected=10, replicas=11, current_revision=NEW
                ),
            ),
            True,
            False,
            "10/10 updated, 10 ready; batch complete",
            id="an extra pod still counted: not complete",
        ),
        pytest.param(
            clone_set(
                10,
                partition=5,
                paused=True,
                status=cs_status(updated=5, updated_ready=5, expected=5),
            ),
            True,
            False,
            "5/10 updated, 5 ready; partition 5 (5 kept); paused; batch complete",
            id="paused at partition 5",
        ),
        pytest.param(
            clone_set(
                10, partition="100%", status=cs_status(updated=0, updated_ready=0, expected=0)
            ),
            True,
            False,
            "0/10 updated, 0 ready; partition 100% (10 kept); batch complete",
            id="partition 100%: an empty batch is complete",
        ),
        pytest.param(
            clone_set(10, partition="50", status=cs_status(updated=2, updated_ready=2, expected=0)),
            True,
            False,
            '2/10 updated, 2 ready; partition "50" invalid; batch complete',
            id="invalid partition",
        ),
        pytest.param(
            clone_set(
                0,
                status=cs_status(
                    updated=0, updated_ready=0, expected=0, replicas=0, current_revision=NEW
                ),
            ),
            True,
            True,
            "complete: 0/0 updated, 0 ready",
            id="scaled to zero",
        ),
    ],
)
def test_completion_and_summary(
    cs: views_pb2.CloneSetView, batch: bool, rollout: bool, summary: str
) -> None:
    found = rollout_status(cs, [])
    assert (found.batch_complete, found.rollout_complete, found.summary) == (
        batch,
        rollout,
        summary,
    )


# --- the whole message ------------------------------------------------------------------


def test_every_field_is_filled() -> None:
    cs = clone_set(
        10,
        partition="50%",
        paused=True,
        annotations={ROLLOUT_ID_ANNOTATION: "argo-7"},
        status=cs_status(updated=5, updated_ready=4, expected=5),
    )
    given = [
        *pods(3, OLD),
        pod(OLD, name="leaving", state=PREPARING_DELETE, kruise_pod_ready=False),
        pod(OLD, name="hooked", state=PREPARING_UPDATE, kruise_pod_ready=False),
        pod(NEW, name="updating", state=UPDATING),
        pod(NEW, name="updated", state=UPDATED),
        pod(NEW, name="no-label", state=""),
        pod(NEW, name="gone", deleting=True, state=PREPARING_DELETE, kruise_pod_ready=False),
    ]
    found = rollout_status(cs, given)
    expected = rollout_pb2.RolloutStatus(
        ref=rollout_pb2.WorkloadRef(
            api_version="apps.kruise.io/v1alpha1",
            kind="CloneSet",
            namespace="default",
            name="sample",
            uid="uid-sample",
        ),
        generation=1,
        resource_version="100",
        spec_replicas=10,
        partition=rollout_pb2.IntOrPercent(percent="50%"),
        paused=True,
        status=cs.status,
        partition_replicas=5,
        lifecycle=rollout_pb2.LifecycleCounts(
            normal=4, preparing_update=1, updating=1, updated=1, preparing_delete=1
        ),
        held_not_ready=["hooked", "leaving"],
        controlled_by=rollout_pb2.ControlledBy(rollout_id="argo-7"),
        batch_complete=False,
        rollout_complete=False,
        summary="5/10 updated, 4 ready; partition 50% (5 kept); paused; batch waiting for 1 ready",
    )
    assert found == expected


@pytest.mark.parametrize(
    ("cs", "has_replicas", "partition", "kept"),
    [
        pytest.param(clone_set(None), False, None, 0, id="replicas and partition unset"),
        pytest.param(clone_set(10, partition=3), True, rollout_pb2.IntOrPercent(count=3), 3,
                     id="count partition"),
        pytest.param(clone_set(3, partition="99%"), True, rollout_pb2.IntOrPercent(percent="99%"),
                     2, id="99% of 3 keeps 2 (at least one updated)"),
        pytest.param(clone_set(10, partition=0), True, rollout_pb2.IntOrPercent(count=0), 0,
                     id="partition 0 is set, not null"),
        pytest.param(clone_set(None, partition="100%"), False,
                     rollout_pb2.IntOrPercent(percent="100%"), 1, id="100% of the default 1"),
    ],
)  # fmt: skip
def test_spec_fields(
    cs: views_pb2.CloneSetView,
    has_replicas: bool,
    partition: rollout_pb2.IntOrPercent | None,
    kept: int,
) -> None:
    found = rollout_status(cs, [])
    assert found.HasField("spec_replicas") is has_replicas
    assert (found.partition if found.HasField("partition") else None) == partition
    assert found.partition_replicas == kept


@pytest.mark.parametrize(
    ("given", "held"),
    [
        pytest.param(
            [pod(state=PREPARING_DELETE, kruise_pod_ready=False)], ["new-0"], id="preDelete hook"
        ),
        pytest.param(
            [pod(state=PREPARING_UPDATE, kruise_pod_ready=False)], ["new-0"], id="in-place hook"
        ),
        pytest.param(
            [pod(state=PREPARING_DELETE, kruise_pod_ready=True)], [], id="KruisePodReady True"
        ),
        pytest.param([pod(state=PREPARING_DELETE)], [], id="no markPodNotReady condition"),
        pytest.param([pod(state=UPDATING, kruise_pod_ready=False)], [], id="Updating: not held"),
        pytest.param(
            [pod(state=PREPARING_DELETE, kruise_pod_ready=False, deleting=True)],
            [],
            id="terminating: skipped",
        ),
        pytest.param(
            [
                pod(name="b", state=PREPARING_DELETE, kruise_pod_ready=False),
                pod(name="a", state=PREPARING_UPDATE, kruise_pod_ready=False),
            ],
            ["a", "b"],
            id="sorted by name",
        ),
    ],
)
def test_held_not_ready(given: list[views_pb2.PodView], held: list[str]) -> None:
    assert list(rollout_status(clone_set(), given).held_not_ready) == held


def test_unknown_lifecycle_state_counts_as_normal() -> None:
    found = rollout_status(clone_set(), [pod(state="PreparingNormal"), pod(name="x", state="")])
    assert found.lifecycle == rollout_pb2.LifecycleCounts(normal=2)
