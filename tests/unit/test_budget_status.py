"""The budget status loop (services.budget.status, SPEC 4.5): SPEC 4.12 scenarios 1-15.

Rows named "scenario N" are SPEC 4.12's controller cases, taken from OpenKruise's
``pub_controller_test.go``: Deployment ``nginx`` (10 replicas) whose pods are labelled
``pub-controller=true``, running, ready and consistent; budget ``pub-test`` selecting
them with maxUnavailable 30 % unless the row says otherwise.

Covered later by e2e (they need a cluster): scenario 24 (a Deployment scaled to 0 has all
its pods deleted, not blocked) and scenario 25 (a CloneSet in-place update to a broken
image converges and exactly one pod stays un-updated; fixing the image finishes it).
Their status arithmetic is checked here, in the rows "scenario 24 (status step ...)" and
"scenario 25 (status step)"; the refused second update of 25 is in test_budget_decision.
"""

from __future__ import annotations

import json

import pytest

from kruise.common.v1 import views_pb2
from services.budget.status import (
    BudgetStatus,
    OwnerReplicas,
    Reconciliation,
    ScaleError,
    pod_running_and_ready,
    pod_state_consistent,
    reconcile,
    rfc3339,
    selector_matches,
    selector_pods,
    status_body,
    status_of,
    total_replicas_of,
)
from tests.unit.budget_builders import (
    IMAGE_ID,
    NOW,
    SECOND,
    names,
    pod,
    pods,
    pub,
)

DEPLOYMENT = ("apps/v1", "Deployment", "nginx")


def sync(
    budget: views_pb2.PodUnavailableBudgetView,
    candidates: list[views_pb2.PodView],
    *,
    replicas: int | None = 10,
    now: int = NOW,
) -> Reconciliation:
    """One reconcile as the controller runs it: pick the pods, resolve the total, decide.

    A targetRef budget gets the workload's pods (the candidates) and its replicas; a
    selector budget the pods its selector picks and the replicas of their one owner.
    """
    if budget.HasField("target_ref"):
        selected, total = candidates, replicas
    else:
        selected = selector_pods(budget, candidates)
        owners = [None if replicas is None else OwnerReplicas("uid-nginx", replicas)]
        total = total_replicas_of(owners * len(selected))
    result = reconcile(budget=budget, total_replicas=total, pods=selected, now_ms=now)
    assert isinstance(result, Reconciliation)
    return result


def numbers(allowed: int, current: int, desired: int, total: int, **maps: dict[str, int]):
    return BudgetStatus(
        unavailable_allowed=allowed,
        current_available=current,
        desired_available=desired,
        total_replicas=total,
        disrupted_pods=maps.get("disrupted", {}),
        unavailable_pods=maps.get("unavailable", {}),
        observed_generation=1,
    )


TEN_AND_A_HALF_S_AGO = NOW - 10 * SECOND - 500
S125_AGO = NOW - 125 * SECOND


@pytest.mark.parametrize(
    ("budget", "candidates", "replicas", "expected"),
    [
        pytest.param(
            pub(),
            pods(10, labels={"pub-controller": "false"}),
            10,
            numbers(0, 0, 0, 0),
            id="scenario 1: pods relabelled pub-controller=false -> status all zero",
        ),
        pytest.param(
            pub(namespace="other"),
            pods(10),
            10,
            numbers(0, 0, 0, 0),
            id="scenario 2: budget in another namespace than the pods -> all zero",
        ),
        pytest.param(
            pub(selector=None, target=DEPLOYMENT),
            pods(10),
            10,
            numbers(3, 10, 7, 10),
            id="scenario 3: targetRef apps/v1 Deployment nginx, 10 pods -> 3/10/7/10",
        ),
        pytest.param(
            pub(),
            pods(10),
            10,
            numbers(3, 10, 7, 10),
            id="scenario 4: selector, 10 pods -> allowed 3, current 10, desired 7, total 10",
        ),
        pytest.param(
            pub(max_unavailable="0%"),
            pods(10),
            10,
            numbers(0, 10, 10, 10),
            id="scenario 5: maxUnavailable 0% -> allowed 0, desired 10",
        ),
        pytest.param(
            pub(max_unavailable="100%"),
            pods(10),
            10,
            numbers(10, 10, 0, 10),
            id="scenario 6: maxUnavailable 100% -> allowed 10, desired 0",
        ),
        pytest.param(
            pub(max_unavailable=100),
            pods(10),
            10,
            numbers(10, 10, 0, 10),
            id="scenario 7: maxUnavailable int 100 above total -> allowed 10, desired 0",
        ),
        pytest.param(
            pub(max_unavailable=None, min_available=100),
            pods(5),
            10,
            numbers(0, 5, 100, 10),
            id="scenario 8: minAvailable int 100, 5 pods -> desired 100 (not clamped), allowed 0",
        ),
        pytest.param(
            pub(max_unavailable=None, min_available="50%"),
            pods(5),
            10,
            numbers(0, 5, 5, 10),
            id="scenario 9: minAvailable 50%, 5 pods of 10 -> desired 5, allowed 0",
        ),
        pytest.param(
            pub(max_unavailable=None, min_available="80%"),
            pods(10),
            10,
            numbers(2, 10, 8, 10),
            id="scenario 10: minAvailable 80%, 10 pods -> allowed 2, current 10, desired 8",
        ),
        pytest.param(
            pub(unavailable=names(range(10)), disrupted=names(range(10, 20))),
            pods(100),
            100,
            numbers(
                10,
                80,
                70,
                100,
                unavailable=names(range(10)),
                disrupted=names(range(10, 20)),
            ),
            id="scenario 11: 100 replicas, 10 unavailable + 10 disrupted now -> 10/80/70/100",
        ),
        pytest.param(
            pub(unavailable=names(range(10)), disrupted=names(range(10, 20))),
            pods(100, not_ready=range(20, 25)),
            100,
            numbers(
                5,
                75,
                70,
                100,
                unavailable=names(range(10)),
                disrupted=names(range(10, 20)),
            ),
            id="scenario 12: as 11 + pods 20..24 not ready -> current 75, allowed 5",
        ),
        pytest.param(
            pub(unavailable=names(range(10)), disrupted=names(range(10, 20))),
            pods(100, deleting=range(20, 25)),
            100,
            numbers(
                5,
                75,
                70,
                100,
                unavailable=names(range(10)),
                disrupted=names(range(10, 20)),
            ),
            id="scenario 13: as 11 + pods 20..24 terminating -> current 75, allowed 5",
        ),
        pytest.param(
            pub(
                unavailable={**names(range(5), TEN_AND_A_HALF_S_AGO), **names(range(5, 10))},
                disrupted=names(range(10, 20)),
            ),
            pods(100, deleting=range(10, 15)),
            100,
            numbers(
                15,
                85,
                70,
                100,
                unavailable=names(range(5, 10)),
                disrupted=names(range(15, 20)),
            ),
            id="scenario 14: unavailable 0..4 expired, disrupted 10..14 terminating -> 15/85",
        ),
        pytest.param(
            pub(
                unavailable={**names(range(5), TEN_AND_A_HALF_S_AGO), **names(range(5, 10))},
                disrupted={**names(range(10, 15), S125_AGO), **names(range(15, 20))},
            ),
            pods(100, deleting=range(20, 25)),
            100,
            numbers(
                15,
                85,
                70,
                100,
                unavailable=names(range(5, 10)),
                disrupted=names(range(15, 20)),
            ),
            id="scenario 15: disrupted 10..14 recorded 125 s ago, pods alive -> dropped, 15/85",
        ),
        pytest.param(
            pub(max_unavailable=1),
            pods(4),
            4,
            BudgetStatus(1, 4, 3, 4, observed_generation=1),
            id="scenario 24 (status step 1/2): Deployment 4 replicas, maxUnavailable 1 -> 1/4/3/4",
        ),
        pytest.param(
            pub(max_unavailable=1),
            pods(4),
            0,
            BudgetStatus(4, 4, 0, 0, observed_generation=1),
            id="scenario 24 (status step 2/2): scaled to 0 -> total 0, desired 0, nothing blocked",
        ),
        pytest.param(
            pub(
                selector=None,
                target=("apps.kruise.io/v1alpha1", "CloneSet", "web"),
                max_unavailable=1,
            ),
            [pod("web-a"), pod("web-b", ready=False)],
            2,
            BudgetStatus(0, 1, 1, 2, observed_generation=1),
            id="scenario 25 (status step): one pod stuck on a broken image -> 0/1/1/2",
        ),
        pytest.param(
            pub(),
            pods(10),
            None,
            numbers(10, 10, 0, 0),
            id="the pods' owner is not found: total 0, every pod may go",
        ),
        pytest.param(
            pub(selector=None, target=DEPLOYMENT),
            [],
            None,
            numbers(0, 0, 0, 0),
            id="targetRef workload not found: no pods, total 0",
        ),
        pytest.param(
            pub(selector=None, max_unavailable="30%"),
            pods(10),
            10,
            numbers(0, 0, 0, 0),
            id="neither selector nor targetRef: no pods, total 0",
        ),
        pytest.param(
            pub(max_unavailable=None),
            pods(10),
            10,
            numbers(10, 10, 0, 10),
            id="neither maxUnavailable nor minAvailable: desired 0",
        ),
        pytest.param(
            pub(disrupted=names(range(3)), unavailable=names(range(3, 6))),
            pods(6, start=2),
            10,
            numbers(0, 2, 7, 10, disrupted=names((2,)), unavailable=names(range(3, 6))),
            id="entries of pods that are gone are dropped, those of live pods kept",
        ),
        pytest.param(
            pub(),
            pods(10, phase="Succeeded"),
            10,
            numbers(0, 0, 0, 0),
            id="finished pods are not active: not selected, not counted",
        ),
    ],
)
def test_reconcile(budget, candidates, replicas, expected):
    assert sync(budget, candidates, replicas=replicas).status == expected


def test_scenario_14_requeues_when_the_first_kept_entry_can_expire():
    budget = pub(
        unavailable={**names(range(5), TEN_AND_A_HALF_S_AGO), **names(range(5, 10))},
        disrupted=names(range(10, 20)),
    )
    got = sync(budget, pods(100, deleting=range(10, 15)), replicas=100)
    assert got.requeue_after_ms == 10 * SECOND + 1
    assert got.not_deleted == ()
    assert got.changed


def test_scenario_15_names_the_pods_that_were_not_deleted():
    budget = pub(disrupted={**names(range(10, 15), S125_AGO), **names(range(15, 20))})
    got = sync(budget, pods(100, deleting=range(20, 25)), replicas=100)
    assert got.not_deleted == tuple(sorted(f"test-pod-{i}" for i in range(10, 15)))
    assert got.requeue_after_ms == 20 * SECOND + 1
    assert (
        got.not_deleted_message(namespace="default", name="pub-test")
        == "Pod was expected by PUB default/pub-test to be deleted but it wasn't"
    )


@pytest.mark.parametrize(
    ("disrupted_at", "unavailable_at", "kept", "requeue"),
    [
        pytest.param(NOW, NOW, 2, 10 * SECOND + 1, id="both recorded now: recheck in 10.001 s"),
        pytest.param(
            NOW - 20 * SECOND,
            NOW - 10 * SECOND,
            2,
            1,
            id="exactly at the window: kept (strictly older expires), recheck in 1 ms",
        ),
        pytest.param(
            NOW - 20 * SECOND - 1,
            NOW - 10 * SECOND - 1,
            0,
            None,
            id="one ms past the window: both dropped, nothing to recheck",
        ),
        pytest.param(
            NOW - 15 * SECOND,
            NOW + 5 * SECOND,
            2,
            5 * SECOND + 1,
            id="the earliest expiry wins (disruption in 5 s; a future stamp waits 15 s)",
        ),
    ],
)
def test_expiry_windows(disrupted_at, unavailable_at, kept, requeue):
    budget = pub(disrupted={"test-pod-0": disrupted_at}, unavailable={"test-pod-1": unavailable_at})
    got = sync(budget, pods(10))
    assert len(got.status.disrupted_pods) + len(got.status.unavailable_pods) == kept
    assert got.requeue_after_ms == requeue
    assert got.not_deleted == (() if kept else ("test-pod-0",))


def test_a_pod_in_both_maps_is_handled_for_each():
    budget = pub(
        disrupted={"test-pod-0": NOW - 30 * SECOND}, unavailable={"test-pod-0": NOW - SECOND}
    )
    got = sync(budget, pods(10))
    assert got.status.disrupted_pods == {}
    assert got.status.unavailable_pods == {"test-pod-0": NOW - SECOND}
    assert got.not_deleted == ("test-pod-0",)
    assert got.status.current_available == 9


def test_unchanged_status_is_not_written_and_a_new_generation_is():
    first = sync(pub(), pods(10))
    assert first.changed
    settled = pub(allowed=3, current=10, desired=7, total=10)
    assert not sync(settled, pods(10)).changed
    bumped = pub(allowed=3, current=10, desired=7, total=10, generation=2, observed=1)
    again = sync(bumped, pods(10))
    assert again.changed and again.status.observed_generation == 2


def test_no_pods_asks_for_the_event():
    assert sync(pub(), pods(10, labels={})).no_pods
    assert not sync(pub(), pods(10)).no_pods


@pytest.mark.parametrize(
    ("budget", "message"),
    [
        pytest.param(
            pub(max_unavailable="30"),
            "invalid value for IntOrString: invalid type: string is not a percentage",
            id="maxUnavailable without % cannot be scaled",
        ),
        pytest.param(
            pub(max_unavailable=None, min_available="5.5%"),
            'invalid value for IntOrString: invalid value "5.5%": '
            'strconv.Atoi: parsing "5.5": invalid syntax',
            id="minAvailable with a fraction cannot be scaled",
        ),
    ],
)
def test_unscalable_budget_writes_nothing(budget, message):
    got = reconcile(budget=budget, total_replicas=10, pods=pods(10), now_ms=NOW)
    assert got == ScaleError(message)
    assert got.event_message == f"Failed to calculate the number of expected pods: {message}"


def test_inconsistent_pods_are_not_available():
    stale = pod(
        "test-pod-1",
        containers=[("nginx", "nginx:v2")],
        annotations={"apps.kruise.io/inplace-update-state": inplace({"nginx": IMAGE_ID})},
    )
    got = sync(pub(), [pod("test-pod-0"), stale])
    assert got.status.current_available == 1
    custom = reconcile(
        budget=pub(),
        total_replicas=10,
        pods=[pod("test-pod-0"), stale],
        now_ms=NOW,
        available=pod_running_and_ready,
    )
    assert isinstance(custom, Reconciliation) and custom.status.current_available == 2


# --- state consistency ---------------------------------------------------------------------

DIGEST = "sha256:a9286defaba7b3a519d585ba0e37d0b2cbee74ebfe590960b0b1d6a5e97d1e1d"
OTHER_DIGEST = "sha256:" + "b" * 64


def inplace(last: dict[str, str], **extra: object) -> str:
    """An ``apps.kruise.io/inplace-update-state`` value recording ``last`` container imageIDs."""
    state = {
        "revision": "v2",
        "lastContainerStatuses": {c: {"imageID": i} for c, i in last.items()},
    }
    return json.dumps({**state, **extra})


@pytest.mark.parametrize(
    ("view", "expected"),
    [
        pytest.param(pod(), True, id="no in-place update ever: consistent"),
        pytest.param(pod(containers=[], statuses=[]), True, id="no containers: consistent"),
        pytest.param(
            pod(
                containers=[("nginx", f"nginx@{DIGEST}")],
                statuses=[("nginx", f"nginx@{DIGEST}", f"docker-pullable://nginx@{DIGEST}")],
            ),
            True,
            id="digest image whose imageID has the digest (scheme stripped)",
        ),
        pytest.param(
            pod(
                containers=[("nginx", f"nginx@{DIGEST}")],
                statuses=[("nginx", f"nginx@{DIGEST}", f"nginx@{OTHER_DIGEST}")],
            ),
            False,
            id="digest image still running another digest",
        ),
        pytest.param(
            pod(containers=[("nginx", f"nginx@{DIGEST}")], statuses=[]),
            False,
            id="digest image without a container status",
        ),
        pytest.param(
            pod(
                containers=[("nginx", "nginx:v2")],
                annotations={"apps.kruise.io/inplace-update-state": inplace({"nginx": IMAGE_ID})},
            ),
            False,
            id="in-place update: imageID unchanged and status image differs -> not done",
        ),
        pytest.param(
            pod(
                containers=[("nginx", "nginx:v2")],
                statuses=[("nginx", "nginx:v2", "nginx@" + OTHER_DIGEST)],
                annotations={"apps.kruise.io/inplace-update-state": inplace({"nginx": IMAGE_ID})},
            ),
            True,
            id="in-place update: imageID changed -> done",
        ),
        pytest.param(
            pod(
                containers=[("nginx", "nginx")],
                statuses=[("nginx", "nginx:latest", IMAGE_ID)],
                annotations={"apps.kruise.io/inplace-update-state": inplace({"nginx": IMAGE_ID})},
            ),
            True,
            id="untagged spec image compares as :latest",
        ),
        pytest.param(
            pod(
                annotations={
                    "apps.kruise.io/inplace-update-state": inplace(
                        {"nginx": "x"}, nextContainerImages={"sidecar": "s:v2"}
                    )
                }
            ),
            False,
            id="containers left for a next batch",
        ),
        pytest.param(
            pod(annotations={"apps.kruise.io/inplace-update-grace": "{}"}),
            False,
            id="in the grace period of an in-place update",
        ),
        pytest.param(
            pod(annotations={"apps.kruise.io/inplace-update-state": "{not json"}),
            False,
            id="an unreadable in-place state",
        ),
        pytest.param(
            pod(annotations={"apps.kruise.io/inplace-update-state": inplace({"gone": "x"})}),
            False,
            id="a recorded container without a status",
        ),
        pytest.param(
            pod(
                containers=[("nginx", "nginx:v2")],
                annotations={"inplace-update-state": inplace({"nginx": IMAGE_ID})},
            ),
            False,
            id="the pre-1.0 annotation key is read too",
        ),
        pytest.param(
            pod(
                annotations={
                    "apps.kruise.io/inplace-update-state": inplace({}, updateEnvFromMetadata=True)
                }
            ),
            False,
            id="env-from-metadata update without runtime-containers-meta",
        ),
        pytest.param(
            pod(
                containers=[("nginx", "nginx:v1"), ("sidecar", "sidecar:v2")],
                statuses=[
                    ("nginx", "nginx:v1", IMAGE_ID),
                    ("sidecar", "sidecar:v1", "sidecar@" + DIGEST),
                ],
                annotations={
                    "kruise.io/sidecarset-injected-list": "sc",
                    "kruise.io/sidecarset-inplace-update-state": json.dumps(
                        {
                            "sc": {
                                "lastContainerStatuses": {
                                    "sidecar": {"imageID": "sidecar@" + DIGEST}
                                }
                            }
                        }
                    ),
                },
            ),
            False,
            id="sidecar in-place update not done",
        ),
        pytest.param(
            pod(
                containers=[("nginx", "nginx:v1"), ("sidecar", "sidecar:v2")],
                statuses=[
                    ("nginx", "nginx:v1", IMAGE_ID),
                    ("sidecar", "sidecar:v2", "sidecar@" + OTHER_DIGEST),
                ],
                annotations={
                    "kruise.io/sidecarset-injected-list": "sc",
                    "kruise.io/sidecarset-inplace-update-state": json.dumps(
                        {
                            "sc": {
                                "lastContainerStatuses": {
                                    "sidecar": {"imageID": "sidecar@" + DIGEST}
                                }
                            }
                        }
                    ),
                },
            ),
            True,
            id="sidecar in-place update done",
        ),
    ],
)
def test_pod_state_consistent(view, expected):
    assert pod_state_consistent(view) is expected


# --- selection and totals ------------------------------------------------------------------


def selector(labels=None, *exprs: tuple[str, str, list[str]]) -> views_pb2.LabelSelector:
    sel = views_pb2.LabelSelector(match_labels=labels or {})
    for key, operator, values in exprs:
        sel.match_expressions.add(key=key, operator=operator, values=values)
    return sel


@pytest.mark.parametrize(
    ("sel", "labels", "expected"),
    [
        pytest.param(selector({"app": "a"}), {"app": "a"}, True, id="matchLabels equal"),
        pytest.param(selector({"app": "a"}), {"app": "b"}, False, id="matchLabels differ"),
        pytest.param(selector({"app": "a"}), {}, False, id="label missing"),
        pytest.param(selector(None, ("app", "In", ["a", "b"])), {"app": "b"}, True, id="In"),
        pytest.param(selector(None, ("app", "In", ["a"])), {}, False, id="In, label missing"),
        pytest.param(selector(None, ("app", "NotIn", ["a"])), {}, True, id="NotIn, label missing"),
        pytest.param(selector(None, ("app", "NotIn", ["a"])), {"app": "a"}, False, id="NotIn"),
        pytest.param(selector(None, ("app", "Exists", [])), {"app": ""}, True, id="Exists"),
        pytest.param(
            selector(None, ("app", "DoesNotExist", [])), {"app": "x"}, False, id="DoesNotExist"
        ),
        pytest.param(
            selector(None, ("app", "Near", ["a"])), {"app": "a"}, False, id="bad operator"
        ),
        pytest.param(
            selector(None, ("app", "In", [])), {"app": "a"}, False, id="In without values"
        ),
        pytest.param(selector(), {"app": "a"}, False, id="empty selector matches nothing"),
    ],
)
def test_selector_matches(sel, labels, expected):
    assert selector_matches(sel, labels) is expected


def test_selector_pods_only_for_selector_budgets():
    candidates = [*pods(3), pod("other", namespace="elsewhere"), pod("gone", deleting=True)]
    assert [p.meta.name for p in selector_pods(pub(), candidates)] == [
        "test-pod-0",
        "test-pod-1",
        "test-pod-2",
    ]
    assert selector_pods(pub(target=DEPLOYMENT), candidates) == []
    assert selector_pods(pub(selector=None), candidates) == []


@pytest.mark.parametrize(
    ("owners", "expected"),
    [
        pytest.param([OwnerReplicas("d", 10)] * 10, 10, id="ten pods of one Deployment count once"),
        pytest.param(
            [OwnerReplicas("d", 10), OwnerReplicas("s", 3)], 13, id="two workloads add up"
        ),
        pytest.param([None, OwnerReplicas("d", 4)], 4, id="a pod without a live owner counts 0"),
        pytest.param([OwnerReplicas("d", 4, deleting=True)], 0, id="a workload being deleted"),
        pytest.param([], 0, id="no pods"),
    ],
)
def test_total_replicas_of(owners, expected):
    assert total_replicas_of(owners) == expected


# --- the status body -----------------------------------------------------------------------


def test_status_body_is_go_json_with_rfc3339_times():
    status = BudgetStatus(
        unavailable_allowed=0,
        current_available=8,
        desired_available=7,
        total_replicas=10,
        disrupted_pods={"test-pod-9": NOW + 999},
        unavailable_pods={"test-pod-0": NOW},
        observed_generation=3,
    )
    assert status_body(status) == {
        "observedGeneration": 3,
        "disruptedPods": {"test-pod-9": "2023-11-14T22:13:20Z"},
        "unavailablePods": {"test-pod-0": "2023-11-14T22:13:20Z"},
        "unavailableAllowed": 0,
        "currentAvailable": 8,
        "desiredAvailable": 7,
        "totalReplicas": 10,
    }


def test_status_body_leaves_out_empty_maps_and_generation_zero():
    assert status_body(BudgetStatus(0, 0, 0, 0)) == {
        "unavailableAllowed": 0,
        "currentAvailable": 0,
        "desiredAvailable": 0,
        "totalReplicas": 0,
    }


@pytest.mark.parametrize(
    ("unix_ms", "text"),
    [
        pytest.param(0, "1970-01-01T00:00:00Z", id="epoch"),
        pytest.param(1_999, "1970-01-01T00:00:01Z", id="milliseconds are truncated"),
        pytest.param(NOW, "2023-11-14T22:13:20Z", id="a 2023 time, UTC"),
    ],
)
def test_rfc3339(unix_ms, text):
    assert rfc3339(unix_ms) == text


def test_status_of_reads_the_view():
    view = pub(allowed=1, current=8, desired=7, total=10, disrupted={"a": 5}, observed=4)
    assert status_of(view) == BudgetStatus(1, 8, 7, 10, {"a": 5}, {}, 4)


def test_a_recreated_pod_ends_its_disruption_entry_without_an_event():
    """Beyond v1.2: a StatefulSet pod evicted at NOW and re-created a second later."""
    from services.budget.status import Reconciliation, reconcile
    from tests.unit.budget_builders import NOW, SECOND, names, pods, pub

    successor = pods(1)
    successor[0].meta.creation_unix_ms = NOW + SECOND
    budget = pub(total=1, disrupted=names((0,)), max_unavailable=0)
    got = reconcile(budget=budget, total_replicas=1, pods=successor, now_ms=NOW + 2 * SECOND)
    assert isinstance(got, Reconciliation)
    assert dict(got.status.disrupted_pods) == {}
    assert got.not_deleted == ()
    assert got.status.current_available == 1
    same_second = pods(1)
    same_second[0].meta.creation_unix_ms = NOW
    kept = reconcile(budget=budget, total_replicas=1, pods=same_second, now_ms=NOW + 2 * SECOND)
    assert dict(kept.status.disrupted_pods) == names((0,))


def test_unavailable_pods_say_why():
    from services.budget.status import Unavailable, unavailable_pods
    from tests.unit.budget_builders import NOW, pod, pub

    budget = pub(disrupted={"a": NOW}, unavailable={"b": NOW, "a": NOW})
    pods = [
        pod("a"),
        pod("b"),
        pod("c", deleting=True),
        pod("d", phase="Pending"),
        pod("e", ready=False),
        # spec pins a digest the container does not run yet
        pod("f", containers=[("nginx", "nginx@sha256:" + "0" * 64)]),
        pod("g"),
        pod("h", phase="Succeeded"),
    ]
    assert unavailable_pods(budget, pods) == [
        Unavailable("a", "disrupted", NOW),
        Unavailable("b", "updating", NOW),
        Unavailable("c", "terminating", pods[2].meta.deletion_unix_ms),
        Unavailable("d", "not-running"),
        Unavailable("e", "not-ready"),
        Unavailable("f", "inconsistent"),
    ]
