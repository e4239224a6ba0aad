"""Batch readiness (services.rollout.batch): Kruise Rollout's IsBatchReady and Argo's variant.

Rows are scenario steps of a Kruise Rollout plan over 10 pods (batches 20% / 50% / 100%),
then each of the four rules failing alone. ``facts`` keeps a row to one line: a CloneSet
observed at its generation, maxUnavailable unset (20%), no rollout id.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from kruise.common.v1 import views_pb2
from services.kit.intstr import IntOrStr
from services.rollout.batch import (
    BatchFacts,
    BatchVerdict,
    batch_facts,
    check_batch,
    desired_updated,
    tolerated_unready,
)
from services.rollout.pods import PREPARING_UPDATE
from services.rollout.report import ROLLOUT_ID_LABEL
from tests.unit.rollout_builders import NEW, NOW, OLD, SECOND, clone_set, cs_status, pod, pods


def facts(
    updated: int,
    ready: int,
    *,
    available: int | None = None,
    labelled: int | None = None,
    generation: int = 1,
    observed: int = 1,
    max_unavailable: IntOrStr = "20%",
) -> BatchFacts:
    return BatchFacts(
        generation=generation,
        observed_generation=observed,
        spec_replicas=10,
        updated=updated,
        updated_ready=ready,
        updated_available=ready if available is None else available,
        labelled=labelled,
        max_unavailable=max_unavailable,
        rollout_id="r1" if labelled is not None else "",
    )


def kruise(given: BatchFacts, desired: int, threshold: IntOrStr | None = None) -> BatchVerdict:
    return check_batch(given, desired=desired, failure_threshold=threshold, require_available=False)


# --- the plan 20% / 50% / 100% over 10 pods ---------------------------------------------


@pytest.mark.parametrize(
    ("batch", "given", "ready", "reason", "tolerated"),
    [
        pytest.param("20%", facts(0, 0), False, "0 updated < 2 desired", 0,
                     id="batch 1 (20%): partition just lowered, nothing updated"),
        pytest.param("20%", facts(2, 0), False, "0 ready + 1 tolerated < 2 desired", 1,
                     id="batch 1: 2 updated, none ready"),
        pytest.param("20%", facts(2, 1), True, "batch ready: 2 updated, 1 ready, 1 tolerated", 1,
                     id="batch 1: 2 updated, 1 ready (ceil 20% of 2 tolerated)"),
        pytest.param("50%", facts(4, 4), False, "4 updated < 5 desired", 1,
                     id="batch 2 (50%): 4 of 5 updated"),
        pytest.param("50%", facts(5, 3), False, "3 ready + 1 tolerated < 5 desired", 1,
                     id="batch 2: 5 updated, 3 ready"),
        pytest.param("50%", facts(5, 4), True, "batch ready: 5 updated, 4 ready, 1 tolerated", 1,
                     id="batch 2: 5 updated, 4 ready"),
        pytest.param("100%", facts(10, 7), False, "7 ready + 2 tolerated < 10 desired", 2,
                     id="batch 3 (100%): 10 updated, 7 ready"),
        pytest.param("100%", facts(10, 8), True, "batch ready: 10 updated, 8 ready, 2 tolerated",
                     2, id="batch 3: 10 updated, 8 ready (ceil 20% of 10 tolerated)"),
        pytest.param("100%", facts(10, 10, generation=3, observed=2), False,
                     "still reconciling: observed generation 2 < generation 3", 2,
                     id="batch 3: all ready but the status predates the spec"),
    ],
)  # fmt: skip
def test_kruise_rollout_plan(
    batch: str, given: BatchFacts, ready: bool, reason: str, tolerated: int
) -> None:
    desired = desired_updated(batch, replicas=10)
    assert kruise(given, desired) == BatchVerdict(ready, reason, desired, tolerated)


# --- each rule failing alone ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "desired", "threshold", "reason"),
    [
        pytest.param(facts(5, 5, generation=2, observed=1), 5, None,
                     "still reconciling: observed generation 1 < generation 2",
                     id="rule 0: not observed"),
        pytest.param(facts(4, 4), 5, "100%", "4 updated < 5 desired",
                     id="rule 1 alone: too few updated, even tolerating all"),
        pytest.param(facts(5, 3), 5, 1, "3 ready + 1 tolerated < 5 desired",
                     id="rule 2 alone: too few ready for the threshold"),
        pytest.param(facts(2, 0), 2, "100%", "no updated pod ready yet (2 desired)",
                     id="rule 3 alone: threshold tolerates all, but none ready"),
        pytest.param(facts(5, 5, labelled=4), 5, None,
                     f"4 pods labelled {ROLLOUT_ID_LABEL}=r1 < 5 desired",
                     id="rule 4 alone: a pod misses the rollout-id label"),
    ],
)  # fmt: skip
def test_each_rule_fails_alone(
    given: BatchFacts, desired: int, threshold: IntOrStr | None, reason: str
) -> None:
    verdict = kruise(given, desired, threshold)
    assert (verdict.ready, verdict.reason) == (False, reason)


@pytest.mark.parametrize(
    ("given", "desired", "threshold", "ready"),
    [
        pytest.param(facts(5, 5, labelled=5), 5, None, True, id="rule 4: every pod labelled"),
        pytest.param(facts(5, 5, labelled=7), 5, None, True, id="rule 4: more labelled is fine"),
        pytest.param(facts(0, 0), 0, None, True, id="desired 0: rule 3 does not apply"),
        pytest.param(facts(5, 5), 5, "0%", True, id="threshold 0%: all must be ready"),
        pytest.param(facts(5, 4), 5, "0%", False, id="threshold 0%: one unready fails"),
        pytest.param(facts(5, 4), 5, 0, False, id="threshold 0 (count)"),
        pytest.param(facts(5, 3, max_unavailable=2), 5, None, True,
                     id="no threshold: the CloneSet's maxUnavailable 2"),
        pytest.param(facts(5, 4, max_unavailable="50"), 5, None, False,
                     id="maxUnavailable '50' (lenient syntax) tolerates 0"),
        pytest.param(facts(7, 5), 5, None, True, id="more updated than desired"),
    ],
)  # fmt: skip
def test_thresholds_and_edges(
    given: BatchFacts, desired: int, threshold: IntOrStr | None, ready: bool
) -> None:
    assert kruise(given, desired, threshold).ready is ready


# --- Argo Rollouts: available, not only ready ---------------------------------------------


@pytest.mark.parametrize(
    ("given", "desired", "threshold", "require_available", "ready", "reason"),
    [
        pytest.param(facts(5, 5, available=3), 5, None, False, True,
                     "batch ready: 5 updated, 5 ready, 1 tolerated",
                     id="Kruise: ready is enough"),
        pytest.param(facts(5, 5, available=3), 5, None, True, False,
                     "3 available + 1 tolerated < 5 desired",
                     id="Argo: 2 pods not yet ready for minReadySeconds"),
        pytest.param(facts(5, 5, available=4), 5, None, True, True,
                     "batch ready: 5 updated, 4 available, 1 tolerated",
                     id="Argo: 4 available + 1 tolerated"),
        pytest.param(facts(1, 1, available=0), 1, "100%", True, False,
                     "no updated pod available yet (1 desired)",
                     id="Argo: rule 3 counts available pods"),
    ],
)  # fmt: skip
def test_argo_variant(
    given: BatchFacts,
    desired: int,
    threshold: IntOrStr | None,
    require_available: bool,
    ready: bool,
    reason: str,
) -> None:
    verdict = check_batch(
        given, desired=desired, failure_threshold=threshold, require_available=require_available
    )
    assert (verdict.ready, verdict.reason) == (ready, reason)


# --- desired_updated, tolerated_unready ----------------------------------------------------


@pytest.mark.parametrize(
    ("target", "replicas", "desired"),
    [
        pytest.param("20%", 10, 2, id="20% of 10"),
        pytest.param("25%", 10, 3, id="25% of 10 rounds up"),
        pytest.param("1%", 10, 1, id="1% of 10 rounds up to one pod"),
        pytest.param("0%", 10, 0, id="0%"),
        pytest.param("100%", 10, 10, id="100%"),
        pytest.param("150%", 10, 10, id="150% is clamped"),
        pytest.param(4, 10, 4, id="a count"),
        pytest.param(12, 10, 10, id="a count above replicas is clamped"),
        pytest.param(-1, 10, 0, id="a negative count is clamped"),
        pytest.param("50%", 0, 0, id="no replicas"),
    ],
)
def test_desired_updated(target: IntOrStr, replicas: int, desired: int) -> None:
    assert desired_updated(target, replicas=replicas) == desired


def test_desired_updated_refuses_a_percent_without_sign() -> None:
    with pytest.raises(ValueError, match="not a percentage"):
        desired_updated("50", replicas=10)


@pytest.mark.parametrize(
    ("threshold", "updated", "tolerated"),
    [
        pytest.param("20%", 2, 1, id="20% of 2 rounds up to 1"),
        pytest.param("20%", 10, 2, id="20% of 10"),
        pytest.param("20%", 0, 0, id="nothing updated yet"),
        pytest.param(3, 10, 3, id="a count is not scaled"),
        pytest.param(-2, 10, 0, id="never negative"),
        pytest.param("abc%", 10, 0, id="unparsable tolerates 0"),
    ],
)
def test_tolerated_unready(threshold: IntOrStr, updated: int, tolerated: int) -> None:
    assert tolerated_unready(threshold, updated=updated) == tolerated


# --- batch_facts ---------------------------------------------------------------------------


def test_batch_facts_reads_status_and_counts_pods() -> None:
    cs = clone_set(
        10,
        max_unavailable=2,
        min_ready_seconds=30,
        generation=4,
        status=cs_status(updated=4, updated_ready=4, expected=5, observed_generation=3),
    )
    labelled = {ROLLOUT_ID_LABEL: "r1"}
    given = [
        *pods(2, NEW, labels=labelled),  # ready for an hour: available
        pod(NEW, name="fresh", ready_since_ms=NOW - 10 * SECOND, labels=labelled),
        pod(NEW, name="hooked", state=PREPARING_UPDATE, labels=labelled),  # not Normal
        pod(NEW, name="gone", deleting=True, labels=labelled),  # terminating: skipped
        pod(NEW, name="other-id", labels={ROLLOUT_ID_LABEL: "r0"}),  # available, other id
        *pods(4, OLD),
    ]
    assert batch_facts(cs, given, rollout_id="r1", now_ms=NOW) == BatchFacts(
        generation=4,
        observed_generation=3,
        spec_replicas=10,
        updated=4,
        updated_ready=4,
        updated_available=3,
        labelled=4,
        max_unavailable=2,
        rollout_id="r1",
    )


@pytest.mark.parametrize(
    ("cs", "rollout_id", "check"),
    [
        pytest.param(clone_set(10, status=cs_status(updated=1, updated_ready=1, expected=1)), "",
                     lambda f: f.labelled is None, id="no rollout id: rule 4 skipped"),
        pytest.param(clone_set(10, status=cs_status(updated=1, updated_ready=1, expected=1)), "",
                     lambda f: f.max_unavailable == "20%", id="maxUnavailable unset: 20%"),
        pytest.param(clone_set(10, max_unavailable="30%"), "",
                     lambda f: f.max_unavailable == "30%", id="maxUnavailable as set"),
        pytest.param(clone_set(None), "", lambda f: f.spec_replicas == 1,
                     id="replicas unset: 1"),
        pytest.param(clone_set(10, status=cs_status(updated=1, updated_ready=1, expected=1,
                                                    update_revision="")), "",
                     lambda f: f.updated_available == 0, id="no update revision yet: 0 available"),
    ],
)  # fmt: skip
def test_batch_facts_defaults(
    cs: views_pb2.CloneSetView, rollout_id: str, check: Callable[[BatchFacts], bool]
) -> None:
    assert check(batch_facts(cs, pods(2, NEW), rollout_id=rollout_id, now_ms=NOW))


def test_facts_then_verdict_for_a_labelled_batch() -> None:
    cs = clone_set(10, status=cs_status(updated=2, updated_ready=2, expected=2))
    given = [pod(NEW, name="a", labels={ROLLOUT_ID_LABEL: "r1"}), pod(NEW, name="b")]
    found = batch_facts(cs, given, rollout_id="r1", now_ms=NOW)
    verdict = check_batch(found, desired=2, failure_threshold=None, require_available=False)
    assert verdict == BatchVerdict(
        False, f"1 pods labelled {ROLLOUT_ID_LABEL}=r1 < 2 desired", 2, 1
    )
