"""Batch labels for CloneSets claimed through the rollout API (``batch.plan_batch_labels``)
and the round that writes them (``sync.plan_round``, step 4).

Kruise Rollout's label patcher, played for our claim: the CloneSet ``sample`` has 10
replicas and is claimed by rollout id ``r1``; pods ``p0``..``p9`` are on the update revision
``NEW`` unless a row says ``OLD``. Rows read as the steps of a rollout of 80%, 50% and 0
kept (batches of 2, 3 and 5 pods).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import pytest

from kruise.common.v1 import views_pb2
from services.rollout import sync
from services.rollout.actions import PatchPod
from services.rollout.batch import (
    BATCH_ID_LABEL,
    BATCH_PARTITION_ANNOTATION,
    BatchFacts,
    BatchLabel,
    check_batch,
    plan_batch_labels,
)
from services.rollout.report import (
    CONTROL_INFO_ANNOTATION,
    ROLLOUT_ID_ANNOTATION,
    ROLLOUT_ID_LABEL,
)
from services.rollout.revision import RevisionPlan
from tests.unit.rollout_builders import NEW, NOW, OLD, clone_set, pod

CONTROL_INFO = '{"apiVersion":"rollouts.kruise.io/v1beta1","kind":"BatchRelease","name":"x"}'


def web(
    partition: int | str | None,
    *,
    replicas: int = 10,
    claim: str = "r1",
    control: bool = False,
) -> views_pb2.CloneSetView:
    """The CloneSet, claimed by ``claim`` ("" unclaimed), with Kruise Rollout's
    control-info when ``control``."""
    annotations = {ROLLOUT_ID_ANNOTATION: claim} if claim else {}
    if control:
        annotations[CONTROL_INFO_ANNOTATION] = CONTROL_INFO
    return clone_set(replicas, partition=partition, annotations=annotations)


def fresh(*names: str, revision: str = NEW, **kwargs: Any) -> list[views_pb2.PodView]:
    """Pods without batch labels (just updated, or re-created)."""
    return [pod(revision, name=name, **kwargs) for name in names]


def labelled(
    batch: int | str, partition: str, *names: str, rollout_id: str = "r1", **kwargs: Any
) -> list[views_pb2.PodView]:
    """Pods the controller labelled before: ``batch`` of ``rollout_id``, begun at
    ``partition`` ("" leaves the annotation off)."""
    out = []
    for name in names:
        labels = {ROLLOUT_ID_LABEL: rollout_id, BATCH_ID_LABEL: str(batch)}
        view = pod(NEW, name=name, labels=labels, **kwargs)
        if partition:
            view.meta.annotations[BATCH_PARTITION_ANNOTATION] = partition
        out.append(view)
    return out


def batches(*groups: tuple[int, str, str]) -> list[tuple[str, int, str]]:
    """Expected labels: (batch, partition, "p0 p1 ...") per group → (pod, batch, partition)."""
    return [(name, b, part) for b, part, names in groups for name in names.split()]


def shape(result: Sequence[BatchLabel]) -> list[tuple[str, int, str]]:
    assert all(label.rollout_id == "r1" for label in result)
    return [(label.pod, label.batch, label.partition) for label in result]


@pytest.mark.parametrize(
    ("cs", "pods", "expected"),
    [
        pytest.param(web("80%", claim=""), fresh("p0", "p1"), [],
                     id="not claimed: nobody labels"),
        pytest.param(web("80%", control=True), fresh("p0", "p1"), [],
                     id="Kruise Rollout's control-info: it labels its own pods, not us"),
        pytest.param(web("100%"), fresh("p0", revision=OLD), [],
                     id="claimed at 100% before the template change: nothing to update"),
        pytest.param(web("80%"), fresh("p0"), batches((1, "80%", "p0")),
                     id="batch 1 (80%): the first updated pod → batch 1"),
        pytest.param(web("80%"), [*labelled(1, "80%", "p0"), *fresh("p1")],
                     batches((1, "80%", "p1")),
                     id="batch 1: the second updated pod joins it (same step)"),
        pytest.param(web("80%"), labelled(1, "80%", "p0", "p1"), [],
                     id="batch 1 complete and labelled: nothing"),
        pytest.param(web("50%"), [*labelled(1, "80%", "p0", "p1"), *fresh("p2", "p3", "p4")],
                     batches((2, "50%", "p2 p3 p4")),
                     id="batch 2 (50%): 3 more updated → batch 2"),
        pytest.param(web("50%"), [*labelled(1, "80%", "p0"), *labelled(2, "50%", "p2", "p3",
                                                                        "p4"), *fresh("p9")],
                     batches((1, "80%", "p9")),
                     id="batch 2: a batch-1 pod re-created unlabelled → batch 1 (2 is full)"),
        pytest.param(web(0), [*labelled(1, "80%", "p0", "p1"),
                              *labelled(2, "50%", "p2", "p3", "p4"),
                              *fresh("p5", "p6", "p7", "p8", "p9")],
                     batches((3, "0", "p5 p6 p7 p8 p9")),
                     id="batch 3 (0): the last 5 → batch 3"),
        pytest.param(web(None), fresh("p0", "p1"), batches((1, "0", "p0 p1")),
                     id="claimed without a partition: every updated pod → batch 1"),
        pytest.param(web("80%"), [*fresh("p0"), *fresh("p1", "p2", revision=OLD)],
                     batches((1, "80%", "p0")),
                     id="pods on the old revision are never labelled"),
        pytest.param(web("80%"), [*labelled(1, "80%", "p0", deleting=True), *fresh("p1"),
                                  *fresh("p2", deleting=True)],
                     batches((1, "80%", "p1")),
                     id="terminating pods are neither counted nor labelled"),
        pytest.param(web("80%"), fresh("p0", "p1", "p2", "p3"), batches((1, "80%", "p0 p1")),
                     id="more updated than the batch plans (before the claim): only 2 labelled"),
        pytest.param(web("50%"), fresh("p0", "p1", "p2", "p3", "p4"),
                     batches((1, "50%", "p0 p1 p2 p3 p4")),
                     id="80% then 50% before any pod was labelled: one batch"),
        pytest.param(web("80%"), labelled(2, "80%", "p0", "p1", rollout_id="r0"),
                     batches((1, "80%", "p0 p1")),
                     id="pods of an earlier rollout id are labelled again for this one"),
        pytest.param(web("80%"), [*labelled("x", "80%", "p0"), *labelled(0, "80%", "p1")],
                     batches((1, "80%", "p0 p1")),
                     id="a batch id that is no positive number is overwritten"),
        pytest.param(web("50%", replicas=12), [*labelled(1, "50%", "p0", "p1", "p2", "p3", "p4"),
                                               *fresh("p5")],
                     batches((1, "50%", "p5")),
                     id="scaled 10 → 12 within batch 1 (50%): the 6th pod is still batch 1"),
        pytest.param(web("50%"), [*labelled(1, "5", "p0", "p1", "p2", "p3"), *fresh("p4")],
                     batches((1, "5", "p4")),
                     id="partition 5 rewritten as 50%: same pods, no new batch"),
        pytest.param(web("50%"), [*labelled(1, "", "p0", "p1"), *fresh("p2", "p3", "p4")],
                     batches((2, "50%", "p2 p3 p4")),
                     id="batch 1's partition unknown: 3 more pods still make batch 2"),
    ],
)  # fmt: skip
def test_plan_batch_labels(
    cs: views_pb2.CloneSetView,
    pods: list[views_pb2.PodView],
    expected: list[tuple[str, int, str]],
) -> None:
    assert shape(plan_batch_labels(cs, pods, update_revision=NEW)) == expected


def test_the_patch_is_kruise_rollouts_labels_and_our_annotation() -> None:
    (label,) = plan_batch_labels(web("80%"), fresh("p0"), update_revision=NEW)
    assert label.patch == {
        "metadata": {
            "labels": {ROLLOUT_ID_LABEL: "r1", BATCH_ID_LABEL: "1"},
            "annotations": {BATCH_PARTITION_ANNOTATION: "80%"},
        }
    }


# --- the round that writes them --------------------------------------------------------


def observed(
    cs: views_pb2.CloneSetView, pods: Sequence[views_pb2.PodView], busy: frozenset[str]
) -> sync.Observed:
    template = {"metadata": {"labels": {"app": "sample"}}, "spec": {"containers": []}}
    return sync.Observed(
        clone_set=cs,
        pods=tuple(pods),
        revisions=RevisionPlan(
            update=NEW,
            current=OLD,
            collision_count=0,
            update_template=template,
            current_template=template,
        ),
        now_ms=NOW,
        rng=random.Random(1),
        busy=busy,
    )


def test_a_round_with_nothing_else_to_do_labels_without_asking_budgets() -> None:
    cs = web("80%")
    pods = [*fresh("p0", "p1"), *fresh(*(f"p{i}" for i in range(2, 10)), revision=OLD)]
    acted = sync.plan_round(observed(cs, pods, busy=frozenset()))
    assert acted.phase == "label"
    assert acted.actions == tuple(
        PatchPod(p.meta.name, p.meta.uid, p.meta.resource_version, label.patch)
        for p, label in zip(pods[:2], plan_batch_labels(cs, pods, update_revision=NEW), strict=True)
    )
    assert not any(a.budget for a in acted.actions if isinstance(a, PatchPod))


def test_a_busy_pod_keeps_its_place_for_a_later_round() -> None:
    cs = web("80%")
    pods = [*fresh("p0", "p1"), *fresh(*(f"p{i}" for i in range(2, 10)), revision=OLD)]
    acted = sync.plan_round(observed(cs, pods, busy=frozenset({"p0"})))
    assert [a.name for a in acted.actions if isinstance(a, PatchPod)] == ["p1"]


def test_a_clone_set_kruise_rollout_controls_gets_no_label_writes() -> None:
    cs = web("80%", control=True)
    pods = [*fresh("p0", "p1"), *fresh(*(f"p{i}" for i in range(2, 10)), revision=OLD)]
    acted = sync.plan_round(observed(cs, pods, busy=frozenset()))
    assert (acted.phase, acted.actions) == ("idle", ())


# --- CheckBatch's answer names the labels it counted -----------------------------------


@pytest.mark.parametrize(
    ("labelled", "ready", "reason"),
    [
        pytest.param(None, True, "batch ready: 5 updated, 5 ready, 0 tolerated",
                     id="no rollout id asked: labels not counted"),
        pytest.param(3, False, f"3 pods labelled {ROLLOUT_ID_LABEL}=r1 < 5 desired",
                     id="batch 2 updated and ready, 3 of its pods not labelled yet"),
        pytest.param(5, True,
                     f"batch ready: 5 updated, 5 ready, 0 tolerated, 5 labelled "
                     f"{ROLLOUT_ID_LABEL}=r1",
                     id="batch 2 labelled: ready, and the answer says how many"),
    ],
)  # fmt: skip
def test_check_batch_counts_the_labels(labelled: int | None, ready: bool, reason: str) -> None:
    facts = BatchFacts(
        generation=1,
        observed_generation=1,
        spec_replicas=10,
        updated=5,
        updated_ready=5,
        updated_available=5,
        labelled=labelled,
        rollout_id="r1" if labelled is not None else "",
    )
    verdict = check_batch(facts, desired=5, failure_threshold=0, require_available=False)
    assert (verdict.ready, verdict.reason) == (ready, reason)
