"""Pod admission against a budget (services.budget.decision, SPEC 4.6-4.7): scenarios 16-23.

Rows named "scenario N" are SPEC 4.12's webhook cases, taken from OpenKruise's
``pod_unavailable_budget_test.go``: budget ``pub-test`` with status {disrupted: test-pod-9,
unavailable: test-pod-8, allowed 0, current 7, desired 7, total 10} unless the row gives
``allowed``; pod ``test-pod-0`` annotated ``kruise.io/related-pub: pub-test``, running
and ready.

Covered later by e2e (they need a cluster): scenario 24 (deleting the pods of a Deployment
scaled to 0 is never blocked) and scenario 25 (a CloneSet's in-place update stops at the
first pod stuck on a broken image). The admission step of 25 is the row "scenario 25
(admission step)"; its status arithmetic is in test_budget_status.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from services.budget.decision import (
    OWNER_OK,
    Admit,
    OwnerCheck,
    Refuse,
    Spend,
    StatusChange,
    action_of,
    commit_many,
    decide,
    prescreen,
    protects,
)
from services.budget.status import BudgetStatus
from tests.unit.budget_builders import IMAGE_ID, NOW, SECOND, pod, pub

EARLIER = NOW - SECOND
DIGEST = "sha256:a9286defaba7b3a519d585ba0e37d0b2cbee74ebfe590960b0b1d6a5e97d1e1d"
OPS = "kruise.io/pub-protect-operations"


def budget(allowed: int = 0, *, current: int | None = None, **kwargs: Any):
    """OpenKruise's webhook fixture; ``current`` follows ``allowed`` (7 + allowed)."""
    return pub(
        allowed=allowed,
        current=7 + allowed if current is None else current,
        desired=7,
        total=10,
        disrupted={"test-pod-9": EARLIER},
        unavailable={"test-pod-8": EARLIER},
        **kwargs,
    )


UPDATE: dict[str, Any] = {"operation": "UPDATE", "spec_changed": True}
DELETE: dict[str, Any] = {"operation": "DELETE"}
EVICT: dict[str, Any] = {"operation": "CREATE", "sub_resource": "eviction"}


def review(**facts: Any) -> Admit | Refuse:
    """``decide`` with the fixture's facts; a row overrides what it is about."""
    args: dict[str, Any] = {
        "sub_resource": "",
        "namespace": "default",
        "dry_run": False,
        "pod": pod(),
        "spec_changed": False,
        "owner": OWNER_OK,
        "budget": budget(),
        "now_ms": NOW,
        **facts,
    }
    return decide(**args)


def spent(allowed: int, current: int, **maps: dict[str, int]) -> BudgetStatus:
    """The fixture's status after one spend at NOW, with ``maps`` added to it."""
    return BudgetStatus(
        unavailable_allowed=allowed,
        current_available=current,
        desired_available=7,
        total_replicas=10,
        disrupted_pods={"test-pod-9": EARLIER, **maps.get("disrupted", {})},
        unavailable_pods={"test-pod-8": EARLIER, **maps.get("unavailable", {})},
        observed_generation=1,
    )


ADMITTED = ("admit", None)


def refused(code: int) -> tuple[str, int]:
    return ("refuse", code)


def summary(outcome: Admit | Refuse) -> tuple[str, object]:
    if isinstance(outcome, Refuse):
        return ("refuse", outcome.code)
    return ("admit", None if outcome.spend is None else outcome.spend.status)


SIDECAR_STATE = json.dumps(
    {"sc": {"lastContainerStatuses": {"sidecar": {"imageID": "sidecar@" + DIGEST}}}}
)


@pytest.mark.parametrize(
    ("facts", "expected"),
    [
        pytest.param(
            {**UPDATE, "budget": budget(1)},
            ("admit", spent(0, 8, unavailable={"test-pod-0": NOW})),
            id="scenario 16: image change, allowed 1 -> admitted, unavailablePods += pod, 0/8",
        ),
        pytest.param(
            {**UPDATE, "budget": budget(0)},
            refused(403),
            id="scenario 17: image change, allowed 0 -> refused (403), status unchanged",
        ),
        pytest.param(
            {**UPDATE, "pod": pod(deleting=True)},
            ADMITTED,
            id="scenario 18: the pod is terminating -> admitted",
        ),
        pytest.param(
            {**UPDATE, "pod": pod(ready=False)},
            ADMITTED,
            id="scenario 18: the pod is not ready -> admitted",
        ),
        pytest.param(
            {**UPDATE, "spec_changed": False},
            ADMITTED,
            id="scenario 18: labels/annotations only (spec unchanged) -> admitted",
        ),
        pytest.param(
            {**UPDATE, "spec_changed": False, "pod": pod(ready=False)},
            ADMITTED,
            id="scenario 18: only the Ready condition changes (spec unchanged) -> admitted",
        ),
        pytest.param(
            {
                **UPDATE,
                "pod": pod(
                    containers=[("nginx", "nginx:v1"), ("sidecar", "sidecar:v2")],
                    statuses=[
                        ("nginx", "nginx:v1", IMAGE_ID),
                        ("sidecar", "sidecar:v1", "sidecar@" + DIGEST),
                    ],
                    annotations={
                        "kruise.io/sidecarset-injected-list": "sc",
                        "kruise.io/sidecarset-inplace-update-state": SIDECAR_STATE,
                    },
                ),
            },
            refused(403),
            id="scenario 19: sidecar image change, consistent sidecar pod, allowed 0 -> refused",
        ),
        pytest.param(
            {
                **UPDATE,
                "pod": pod(
                    containers=[("nginx", "nginx:v3")],
                    statuses=[("nginx", "nginx:v2", "nginx@sha256:" + "c" * 64)],
                    annotations={
                        "apps.kruise.io/inplace-update-state": json.dumps(
                            {"lastContainerStatuses": {"nginx": {"imageID": IMAGE_ID}}}
                        )
                    },
                ),
            },
            refused(403),
            id="scenario 19: main container change on a consistent in-place-updated pod -> refused",
        ),
        pytest.param(
            {
                **UPDATE,
                "pod": pod(
                    containers=[("nginx", "nginx@sha256:" + "d" * 64)],
                    statuses=[("nginx", "nginx@" + DIGEST, "docker-pullable://nginx@" + DIGEST)],
                ),
            },
            refused(403),
            id="scenario 19: digest image change -> refused",
        ),
        pytest.param(
            {**UPDATE, "pod": pod(related_pub=None), "budget": None},
            ADMITTED,
            id="scenario 20: pod without kruise.io/related-pub -> admitted",
        ),
        pytest.param(
            {**UPDATE, "pod": pod(related_pub=None)},
            ADMITTED,
            id="scenario 20: pod without kruise.io/related-pub, even handed a budget -> admitted",
        ),
        pytest.param(
            {**UPDATE, "pod": pod("test-pod-8")},
            ADMITTED,
            id="scenario 20: pod already in unavailablePods -> admitted, nothing spent",
        ),
        pytest.param(
            {**UPDATE, "budget": budget(0, annotations={OPS: "DELETE"})},
            ADMITTED,
            id="scenario 21: budget protects DELETE only + UPDATE -> admitted",
        ),
        pytest.param(
            {**UPDATE, "budget": budget(0, annotations={OPS: "UPDATE"})},
            refused(403),
            id="scenario 21: budget protects UPDATE + UPDATE -> refused",
        ),
        pytest.param(
            {**EVICT, "budget": budget(0)},
            refused(429),
            id="scenario 22: eviction, allowed 0 -> refused (429 TooManyRequests)",
        ),
        pytest.param(
            {**EVICT, "budget": budget(1)},
            ("admit", spent(0, 8, disrupted={"test-pod-0": NOW})),
            id="scenario 22: eviction, allowed 1 -> admitted, disruptedPods += pod, allowed 0",
        ),
        pytest.param(
            {**EVICT, "budget": budget(1), "dry_run": True},
            ADMITTED,
            id="scenario 22: eviction dryRun [All] -> admitted, nothing written (allowed stays 1)",
        ),
        pytest.param(
            {"operation": "CREATE"},
            ADMITTED,
            id="scenario 22: CREATE without subresource -> admitted",
        ),
        pytest.param(
            {**DELETE, "sub_resource": "status"},
            ADMITTED,
            id="scenario 23: DELETE of subresource status -> admitted",
        ),
        pytest.param(
            {**DELETE, "budget": budget(0)},
            refused(403),
            id="scenario 23: DELETE, allowed 0 -> refused (403)",
        ),
        pytest.param(
            {**DELETE, "budget": budget(0, annotations={OPS: "UPDATE"})},
            ADMITTED,
            id="scenario 23: budget protects UPDATE only + DELETE -> admitted",
        ),
        pytest.param(
            {**DELETE, "budget": budget(1)},
            ("admit", spent(0, 8, disrupted={"test-pod-0": NOW})),
            id="scenario 23: DELETE, allowed 1 -> admitted, disruptedPods += pod",
        ),
        pytest.param(
            {**DELETE, "budget": budget(1), "dry_run": True},
            ADMITTED,
            id="scenario 23: DELETE dryRun -> admitted, status unchanged",
        ),
        pytest.param(
            {
                **UPDATE,
                "pod": pod("web-b"),
                "budget": pub(
                    selector=None,
                    target=("apps.kruise.io/v1alpha1", "CloneSet", "web"),
                    max_unavailable=1,
                    allowed=0,
                    current=1,
                    desired=1,
                    total=2,
                ),
            },
            refused(403),
            id="scenario 25 (admission step): second pod's in-place update, allowed 0 -> refused",
        ),
    ],
)
def test_decide_scenarios(facts, expected):
    assert summary(review(**facts)) == expected


@pytest.mark.parametrize(
    ("facts", "expected"),
    [
        pytest.param({**DELETE, "namespace": "kube-system"}, ADMITTED, id="kube-system"),
        pytest.param({**EVICT, "namespace": "kube-public"}, ADMITTED, id="kube-public"),
        pytest.param({**DELETE, "pod": None}, ADMITTED, id="DELETE without oldObject"),
        pytest.param({**EVICT, "pod": None}, ADMITTED, id="eviction of a pod that does not exist"),
        pytest.param({"operation": "CONNECT"}, ADMITTED, id="CONNECT never consumes budget"),
        pytest.param(
            {**DELETE, "owner": OwnerCheck(gone=True)}, ADMITTED, id="the workload is gone"
        ),
        pytest.param(
            {**DELETE, "owner": OwnerCheck(error="no matches for kind Foo")},
            refused(400),
            id="the owner cannot be resolved -> 400",
        ),
        pytest.param(
            {**DELETE, "owner": OwnerCheck(error="boom"), "namespace": "kube-system"},
            ADMITTED,
            id="kube-system is skipped before the owner is looked at",
        ),
        pytest.param(
            {**DELETE, "owner": OwnerCheck(error="boom"), "sub_resource": "status"},
            ADMITTED,
            id="a subresource is skipped before the owner is looked at",
        ),
        pytest.param({**DELETE, "pod": pod(phase="Pending")}, ADMITTED, id="phase Pending"),
        pytest.param({**DELETE, "pod": pod(phase="Succeeded")}, ADMITTED, id="phase Succeeded"),
        pytest.param({**DELETE, "pod": pod(phase="Failed")}, ADMITTED, id="phase Failed"),
        pytest.param({**DELETE, "pod": pod(phase="")}, ADMITTED, id="no phase"),
        pytest.param({**DELETE, "budget": None}, ADMITTED, id="the budget no longer exists"),
        pytest.param(
            {**DELETE, "pod": pod(annotations={"pub.kruise.io/no-protect": "true"})},
            ADMITTED,
            id="pub.kruise.io/no-protect: true",
        ),
        pytest.param(
            {**DELETE, "pod": pod(annotations={"pub.kruise.io/no-protect": "True"})},
            refused(403),
            id="no-protect must be exactly 'true'",
        ),
        pytest.param(
            {**DELETE, "dry_run": True}, refused(403), id="a dry run is refused all the same"
        ),
        pytest.param({**DELETE, "pod": pod("test-pod-9")}, ADMITTED, id="already disrupted"),
        pytest.param(
            {**EVICT, "pod": pod("test-pod-8")},
            ADMITTED,
            id="in-place updated then evicted: one unit for both",
        ),
        pytest.param(
            {**DELETE, "budget": budget(-2)},
            refused(403),
            id="a negative allowance refuses",
        ),
        pytest.param(
            {**DELETE, "budget": budget(1, annotations={OPS: ""})},
            ("admit", spent(0, 8, disrupted={"test-pod-0": NOW})),
            id="an empty protect-operations annotation protects everything",
        ),
    ],
)
def test_decide_order_and_filters(facts, expected):
    assert summary(review(**facts)) == expected


# --- the protected operations (v1.2 DELETE/UPDATE plus v1.4 EVICT) -------------------------


@pytest.mark.parametrize(
    ("annotation", "update", "delete", "evict"),
    [
        pytest.param(None, True, True, True, id="absent: all"),
        pytest.param("DELETE", False, True, True, id="DELETE governs evictions (v1.2)"),
        pytest.param("UPDATE", True, False, False, id="UPDATE only"),
        pytest.param("EVICT", False, False, True, id="EVICT only (v1.4)"),
        pytest.param("UPDATE,EVICT", True, False, True, id="EVICT without DELETE"),
        pytest.param("DELETE,EVICT", False, True, True, id="DELETE and EVICT"),
        pytest.param("DELETE, UPDATE", False, True, True, id="items are not trimmed"),
        pytest.param("delete", False, False, False, id="case matters"),
    ],
)
def test_protects(annotation, update, delete, evict):
    view = budget(annotations={} if annotation is None else {OPS: annotation})
    assert [protects(view, a) for a in ("UPDATE", "DELETE", "EVICT")] == [update, delete, evict]


# --- the budget check as a matrix (SPEC 4.7 a, b, c) ---------------------------------------

actions = pytest.mark.parametrize(
    ("facts", "code"),
    [(UPDATE, 403), (DELETE, 403), (EVICT, 429)],
    ids=["UPDATE", "DELETE", "EVICT"],
)
ready_pods = pytest.mark.parametrize("ready", [True, False], ids=["ready", "not-ready"])
recorded_in_pub = pytest.mark.parametrize(
    "name", ["test-pod-0", "test-pod-8", "test-pod-9"], ids=["new", "unavailable", "disrupted"]
)
allowance = pytest.mark.parametrize("allowed", [0, 1], ids=["allowed-0", "allowed-1"])


@actions
@ready_pods
@recorded_in_pub
@allowance
def test_budget_check_matrix(facts, code, ready, name, allowed):
    outcome = review(**facts, pod=pod(name, ready=ready), budget=budget(allowed))
    if not ready or name != "test-pod-0":
        assert outcome == Admit(reason=outcome.reason) and outcome.spend is None
    elif allowed == 0:
        assert isinstance(outcome, Refuse) and outcome.code == code
    else:
        assert isinstance(outcome, Admit) and outcome.spend is not None
        assert outcome.spend.status.unavailable_allowed == 0
        assert outcome.spend.spends == (Spend(name, action_of(**_op(facts)), NOW),)


def _op(facts: dict[str, Any]) -> dict[str, Any]:
    return {"operation": facts["operation"], "sub_resource": facts.get("sub_resource", "")}


# --- what a refusal and a spend say --------------------------------------------------------


def test_refused_eviction_explains_itself():
    outcome = review(**EVICT)
    assert outcome == Refuse(
        429,
        "cannot evict pod default/test-pod-0: PodUnavailableBudget pub-test allows no more "
        "unavailable pods (unavailableAllowed 0: currentAvailable 7, desiredAvailable 7, "
        "totalReplicas 10); already unavailable through it: test-pod-8 (in-place update), "
        "test-pod-9 (deletion or eviction)",
        reason="TooManyRequests",
    )
    assert not outcome.allowed


def test_refused_delete_without_recorded_pods_counts_the_missing_ones():
    outcome = review(**DELETE, budget=pub(allowed=0, current=7, desired=7, total=10))
    assert outcome == Refuse(
        403,
        "cannot delete pod default/test-pod-0: PodUnavailableBudget pub-test allows no more "
        "unavailable pods (unavailableAllowed 0: currentAvailable 7, desiredAvailable 7, "
        "totalReplicas 10); 3 of its 10 pods are not available",
    )


def test_refusal_lists_ten_pods_oldest_first():
    many = {f"p-{i:02}": NOW - i for i in range(13)}
    outcome = review(**UPDATE, budget=pub(allowed=0, unavailable=many))
    assert isinstance(outcome, Refuse)
    assert "through it: p-12 (in-place update), p-11 (in-place update)," in outcome.message
    assert outcome.message.endswith("p-03 (in-place update) and 3 more")


@pytest.mark.parametrize(
    ("recorded", "expected"),
    [
        pytest.param(2000, ("admit", "spent"), id="2000 recorded: still admitted (limit is >)"),
        pytest.param(2001, refused(403), id="2001 recorded: refused, map too big"),
    ],
)
def test_recorded_pod_cap(recorded, expected):
    view = pub(allowed=5, disrupted={f"p-{i}": NOW for i in range(recorded)})
    outcome = review(**DELETE, budget=view)
    if isinstance(outcome, Refuse):
        assert (outcome.code, outcome.message) == (
            403,
            "cannot delete pod default/test-pod-0: PodUnavailableBudget pub-test has 2001 "
            "admitted deletions, evictions and in-place updates not yet confirmed by the "
            "budget controller (limit 2000)",
        )
        assert expected == refused(403)
    else:
        assert outcome.spend is not None and expected == ("admit", "spent")


def test_spend_is_written_at_the_resource_version_seen():
    outcome = review(**DELETE, budget=budget(2, resource_version="42"))
    assert isinstance(outcome, Admit) and outcome.spend is not None
    assert outcome.spend == StatusChange(
        namespace="default",
        name="pub-test",
        resource_version="42",
        status=spent(1, 9, disrupted={"test-pod-0": NOW}),
        spends=(Spend("test-pod-0", "DELETE", NOW),),
    )
    assert outcome.spend.spends[0].into == "disruptedPods"


# --- prescreen and action_of ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("operation", "sub_resource", "namespace", "skipped"),
    [
        pytest.param("DELETE", "", "default", False, id="DELETE needs the facts"),
        pytest.param("UPDATE", "", "default", False, id="UPDATE needs the facts"),
        pytest.param("CREATE", "eviction", "default", False, id="eviction needs the facts"),
        pytest.param("CREATE", "", "default", True, id="pod CREATE skipped"),
        pytest.param("DELETE", "status", "default", True, id="DELETE of a subresource skipped"),
        pytest.param("DELETE", "", "kube-system", True, id="kube-system skipped"),
        pytest.param("CONNECT", "exec", "default", True, id="CONNECT skipped"),
    ],
)
def test_prescreen(operation, sub_resource, namespace, skipped):
    got = prescreen(operation=operation, sub_resource=sub_resource, namespace=namespace)
    assert (got is not None) is skipped


# --- commit_many: one status write for concurrent decisions of one budget ------------------


def admitted_change(name: str, action: str = "DELETE", *, seen: Any = None) -> StatusChange:
    """What ``decide`` returned for ``name`` against the budget it saw (default: allowed 5,
    nothing recorded, resourceVersion 7)."""
    outcome = review(
        **{"UPDATE": UPDATE, "DELETE": DELETE, "EVICT": EVICT}[action],
        pod=pod(name),
        budget=seen if seen is not None else pub(allowed=5, resource_version="7"),
    )
    assert isinstance(outcome, Admit) and outcome.spend is not None
    return outcome.spend


def test_commit_many_worked_example():
    current = budget(2, resource_version="8")
    changes = [admitted_change(n) for n in ("a", "b", "a", "c")]
    batch = commit_many(budget=current, changes=changes)
    assert [type(o).__name__ for o in batch.outcomes] == ["Admit", "Admit", "Admit", "Refuse"]
    assert batch.outcomes[2] == Admit(reason="already counts as unavailable")
    assert batch.change is not None
    assert batch.change.resource_version == "8"
    assert batch.change.status == spent(0, 9, disrupted={"a": NOW, "b": NOW})
    assert [s.pod for s in batch.change.spends] == ["a", "b"]


@pytest.mark.parametrize(
    ("current", "pods", "outcomes", "allowed_after"),
    [
        pytest.param(budget(3), ["a", "b"], ["Admit", "Admit"], 1, id="room for all"),
        pytest.param(
            budget(1), ["a", "b", "c"], ["Admit", "Refuse", "Refuse"], 0, id="room for one"
        ),
        pytest.param(budget(0), ["a"], ["Refuse"], None, id="the budget shrank meanwhile"),
        pytest.param(
            budget(1),
            ["test-pod-9", "a"],
            ["Admit", "Admit"],
            0,
            id="a pod recorded by someone else meanwhile spends nothing",
        ),
        pytest.param(budget(2), [], [], None, id="nothing to commit"),
    ],
)
def test_commit_many(current, pods, outcomes, allowed_after):
    batch = commit_many(budget=current, changes=[admitted_change(p) for p in pods])
    assert [type(o).__name__ for o in batch.outcomes] == outcomes
    if allowed_after is None:
        assert batch.change is None
    else:
        assert batch.change is not None
        assert batch.change.status.unavailable_allowed == allowed_after


def test_commit_many_keeps_each_actions_map_and_code():
    changes = [
        admitted_change("u", "UPDATE"),
        admitted_change("d", "DELETE"),
        admitted_change("e", "EVICT"),
    ]
    batch = commit_many(budget=budget(2), changes=changes)
    assert batch.change is not None
    assert batch.change.status.unavailable_pods == {"test-pod-8": EARLIER, "u": NOW}
    assert batch.change.status.disrupted_pods == {"test-pod-9": EARLIER, "d": NOW}
    refusal = batch.outcomes[2]
    assert isinstance(refusal, Refuse) and refusal.code == 429
    assert refusal.message.startswith("cannot evict pod default/e: PodUnavailableBudget pub-test")


def test_commit_many_applies_the_cap_as_it_goes():
    current = pub(allowed=5, disrupted={f"p-{i}": NOW for i in range(2000)})
    batch = commit_many(budget=current, changes=[admitted_change(n) for n in ("a", "b")])
    assert [type(o).__name__ for o in batch.outcomes] == ["Admit", "Refuse"]
