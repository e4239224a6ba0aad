"""Disruption planning (services.budget.planning): which pods of a drain go now, which wait.

Budget ``pub-test`` in ``default`` and pods ``test-pod-N`` annotated with it, running and
ready (tests/unit/budget_builders.py), unless the row says otherwise. Each row lists the
requested pods and expects, per pod in request order, ``(pod, verdict, order)``.
"""

from __future__ import annotations

import doctest
from typing import Any

import pytest

from kruise.common.v1 import views_pb2
from services.budget import planning
from services.budget.decision import Refuse, decide, related_budget
from services.budget.planning import Candidate, Plan, plan_disruption
from tests.unit.budget_builders import NAMESPACE, NOW, PUB, SECOND, names, pod, pods, pub

EARLIER = NOW - SECOND
NO_PROTECT = {"pub.kruise.io/no-protect": "true"}
OPS = "kruise.io/pub-protect-operations"
RECORDED: dict[str, Any] = {
    "disrupted": {"test-pod-9": EARLIER},
    "unavailable": {"test-pod-8": EARLIER},
}


def allowing(allowed: int, *, name: str = PUB, **kwargs: Any):
    """``name`` allowing ``allowed`` more unavailable pods of 10 (desired 7)."""
    return pub(name, allowed=allowed, current=7 + allowed, desired=7, total=10, **kwargs)


def plan(views: list[views_pb2.PodView | tuple[str, str]], *budgets) -> Plan:
    """Plan ``views`` (a (namespace, name) tuple is a pod that does not exist)."""
    candidates = [
        Candidate(v[0], v[1], None)
        if isinstance(v, tuple)
        else Candidate(v.meta.namespace, v.meta.name, v)
        for v in views
    ]
    return plan_disruption(
        pods=candidates,
        budgets={(b.meta.namespace, b.meta.name): b for b in budgets},
        now_ms=NOW,
    )


def outline(result: Plan) -> list[tuple[str, str, int]]:
    return [(s.pod, s.verdict, s.order) for s in result.steps]


@pytest.mark.parametrize(
    ("views", "budgets", "expected"),
    [
        pytest.param(
            [pod(related_pub=None)],
            [allowing(0)],
            [("test-pod-0", "NOW", 1)],
            id="a pod without kruise.io/related-pub goes now, whatever the budgets say",
        ),
        pytest.param(
            [pod(related_pub="deleted-pub")],
            [allowing(0)],
            [("test-pod-0", "NOW", 1)],
            id="a pod whose budget does not exist goes now",
        ),
        pytest.param(
            [pod(namespace="other")],
            [allowing(0)],
            [("test-pod-0", "NOW", 1)],
            id="a budget of the same name in another namespace does not protect the pod",
        ),
        pytest.param(
            [pod()],
            [allowing(0, annotations={"kruise.io/pub-protect-operations": "UPDATE"})],
            [("test-pod-0", "NOW", 1)],
            id="a budget protecting only UPDATE does not protect evictions: the pod goes now",
        ),
        pytest.param(
            [pod()],
            [allowing(0, annotations={"kruise.io/pub-protect-operations": "DELETE"})],
            [("test-pod-0", "WAIT", 0)],
            id="a budget protecting DELETE protects evictions (v1.2): allowed 0, the pod waits",
        ),
        pytest.param(
            [pod()],
            [allowing(0, annotations={"kruise.io/pub-protect-operations": "UPDATE,EVICT"})],
            [("test-pod-0", "WAIT", 0)],
            id="a budget naming EVICT protects evictions: allowed 0, the pod waits",
        ),
        pytest.param(
            [pod(annotations=NO_PROTECT)],
            [allowing(0)],
            [("test-pod-0", "NOW", 1)],
            id="a pod annotated pub.kruise.io/no-protect goes now although allowed is 0",
        ),
        pytest.param(
            [pod(ready=False)],
            [allowing(0)],
            [("test-pod-0", "NOW", 1)],
            id="a pod that is not ready goes now, for free, although allowed is 0",
        ),
        pytest.param(
            [pod("test-pod-9"), pod("test-pod-8")],
            [allowing(0, disrupted=names((9,)), unavailable=names((8,)))],
            [("test-pod-9", "NOW", 1), ("test-pod-8", "NOW", 2)],
            id="pods already in disruptedPods/unavailablePods go now without spending",
        ),
        pytest.param(
            [
                pod("test-pod-0", deleting=True),
                pod("test-pod-1", phase="Succeeded"),
                pod("test-pod-2", phase="Failed"),
                pod("test-pod-3", phase="Pending"),
            ],
            [allowing(0)],
            [
                ("test-pod-0", "NOW", 1),
                ("test-pod-1", "NOW", 2),
                ("test-pod-2", "NOW", 3),
                ("test-pod-3", "NOW", 4),
            ],
            id="terminating, finished and pending pods go now: nothing to protect",
        ),
        pytest.param(
            [pod(namespace="kube-system")],
            [allowing(0, namespace="kube-system")],
            [("test-pod-0", "NOW", 1)],
            id="a pod in kube-system goes now: the namespace is never protected",
        ),
        pytest.param(
            [(NAMESPACE, "test-pod-7")],
            [allowing(1)],
            [("test-pod-7", "GONE", 0)],
            id="a pod that does not exist is GONE",
        ),
        pytest.param(
            pods(3),
            [allowing(2)],
            [("test-pod-0", "NOW", 1), ("test-pod-1", "NOW", 2), ("test-pod-2", "WAIT", 0)],
            id="allowed 2, three ready pods: the first two in request order go, the third waits",
        ),
        pytest.param(
            pods(3),
            [allowing(0)],
            [("test-pod-0", "WAIT", 0), ("test-pod-1", "WAIT", 0), ("test-pod-2", "WAIT", 0)],
            id="allowed 0: every ready pod waits",
        ),
        pytest.param(
            [*pods(2), pod("free", related_pub=None), pod("test-pod-5", ready=False)],
            [allowing(1)],
            [
                ("test-pod-0", "NOW", 3),
                ("test-pod-1", "WAIT", 0),
                ("free", "NOW", 1),
                ("test-pod-5", "NOW", 2),
            ],
            id="free pods are ordered before the one that spends the budget's only unit",
        ),
        pytest.param(
            [
                pod("a-0", related_pub="a"),
                pod("a-1", related_pub="a"),
                pod("a-2", related_pub="a"),
                pod("b-0", related_pub="b"),
                pod("b-1", related_pub="b"),
            ],
            [allowing(3, name="a"), allowing(2, name="b")],
            [
                ("a-0", "NOW", 1),
                ("a-1", "NOW", 3),
                ("a-2", "NOW", 5),
                ("b-0", "NOW", 2),
                ("b-1", "NOW", 4),
            ],
            id="two budgets: the pods that spend alternate between them (round-robin)",
        ),
        pytest.param(
            [pod("test-pod-0"), pod("test-pod-1"), pod("test-pod-0")],
            [allowing(1)],
            [("test-pod-0", "NOW", 1), ("test-pod-1", "WAIT", 0), ("test-pod-0", "NOW", 1)],
            id="a pod listed twice is planned once: its second entry repeats the first",
        ),
        pytest.param(
            pods(2),
            [allowing(5, disrupted=names(range(100, 2101), EARLIER))],
            [("test-pod-0", "WAIT", 0), ("test-pod-1", "WAIT", 0)],
            id="more than 2,000 unconfirmed disruptions: pods wait although units are left",
        ),
    ],
)
def test_plan(views, budgets, expected):
    assert outline(plan(views, *budgets)) == expected


def test_a_spending_pod_says_what_it_uses():
    step = plan(pods(2), allowing(2)).steps[1]
    assert (step.budget, step.spends) == (PUB, True)
    assert step.reason == (
        "uses one unit of PodUnavailableBudget pub-test (unavailableAllowed 1 -> 0)"
    )


def test_waiting_pods_name_the_budget_its_numbers_and_what_frees_them():
    steps = plan(pods(4), allowing(2, disrupted={"test-pod-9": EARLIER})).steps
    assert steps[2].reason == (
        "PodUnavailableBudget pub-test allows no more unavailable pods (unavailableAllowed 2: "
        "currentAvailable 9, desiredAvailable 7, totalReplicas 10), used up by the 2 "
        "evictions planned before it: test-pod-0, test-pod-1; already unavailable through "
        "it: test-pod-9 (deletion or eviction); it can be evicted once 1 more of its pods is "
        "available again"
    )
    assert steps[3].reason.endswith("once 2 more of its pods are available again")


def test_a_budget_short_of_pods_needs_its_shortfall_back_first():
    short = pub(allowed=0, current=5, desired=7, total=10)
    steps = plan(pods(2), short).steps
    assert steps[0].reason == (
        "PodUnavailableBudget pub-test allows no more unavailable pods (unavailableAllowed 0: "
        "currentAvailable 5, desiredAvailable 7, totalReplicas 10); 2 fewer of its pods are "
        "available than it requires; it can be evicted once 3 more of its pods are available "
        "again"
    )
    assert steps[1].reason.endswith("once 4 more of its pods are available again")


def test_free_and_gone_reasons():
    steps = plan(
        [pod(related_pub="deleted-pub"), pod("test-pod-1", ready=False), (NAMESPACE, "x")],
        allowing(0),
    ).steps
    assert steps[0].reason == (
        "no PodUnavailableBudget protects the pod; its kruise.io/related-pub names "
        "deleted-pub, which does not exist"
    )
    assert steps[0].budget == "deleted-pub" and not steps[0].spends
    assert steps[1].reason == "the pod is not running and ready"
    assert steps[2].reason == "the pod does not exist: there is nothing to evict"


def test_more_than_2000_unconfirmed_names_the_cap():
    crowded = allowing(5, disrupted=names(range(100, 2101), EARLIER))
    reason = plan(pods(1), crowded).steps[0].reason
    assert "2001 admitted deletions, evictions and in-place updates" in reason
    assert reason.endswith("once the budget controller has confirmed them")


def test_the_plan_lists_now_in_order_and_changes_no_input():
    budget = allowing(1)
    before = budget.SerializeToString()
    result = plan([*pods(2), pod("free", related_pub=None)], budget)
    assert [s.pod for s in result.now] == ["free", "test-pod-0"]
    assert [s.pod for s in result.waiting] == ["test-pod-1"]
    assert budget.SerializeToString() == before


def test_the_worked_example_holds():
    failures, _ = doctest.testmod(planning)
    assert failures == 0


# A one-pod plan must say what the eviction webhook would answer (decision.decide, EVICT):
# admitted with a spend → NOW spending; admitted without → NOW free; refused → WAIT.
pod_kinds = pytest.mark.parametrize(
    "candidate",
    [
        pytest.param(pod(), id="ready"),
        pytest.param(pod(ready=False), id="not ready"),
        pytest.param(pod(deleting=True), id="terminating"),
        pytest.param(pod(phase="Pending"), id="pending"),
        pytest.param(pod(related_pub=None), id="no related-pub"),
        pytest.param(pod(related_pub="other"), id="budget missing"),
        pytest.param(pod(annotations=NO_PROTECT), id="no-protect"),
        pytest.param(pod("test-pod-9"), id="recorded in disruptedPods"),
        pytest.param(pod("test-pod-8"), id="recorded in unavailablePods"),
        pytest.param(pod(namespace="kube-system"), id="in kube-system"),
    ],
)
budget_kinds = pytest.mark.parametrize(
    "budget",
    [
        pytest.param(allowing(0, **RECORDED), id="allowed 0"),
        pytest.param(allowing(1, **RECORDED), id="allowed 1"),
        pytest.param(allowing(1, annotations={OPS: "UPDATE"}, **RECORDED), id="UPDATE only"),
        pytest.param(allowing(0, annotations={OPS: "DELETE"}, **RECORDED), id="DELETE, 0"),
        pytest.param(allowing(1, annotations={OPS: "EVICT"}, **RECORDED), id="EVICT, 1"),
        pytest.param(
            allowing(3, disrupted=names(range(100, 2101), EARLIER)), id="over the 2,000 cap"
        ),
    ],
)


@pod_kinds
@budget_kinds
def test_a_one_pod_plan_agrees_with_the_eviction_webhook(candidate, budget):
    if candidate.meta.namespace != budget.meta.namespace:  # the same budget, beside the pod
        moved = views_pb2.PodUnavailableBudgetView()
        moved.CopyFrom(budget)
        moved.meta.namespace = candidate.meta.namespace
        budget = moved
    outcome = decide(
        operation="CREATE",
        sub_resource="eviction",
        namespace=candidate.meta.namespace,
        dry_run=False,
        pod=candidate,
        budget=budget if related_budget(candidate) == budget.meta.name else None,
        now_ms=NOW,
    )
    step = plan([candidate], budget).steps[0]
    if isinstance(outcome, Refuse):
        assert step.verdict == "WAIT"
    else:
        assert (step.verdict, step.spends) == ("NOW", outcome.spend is not None)
