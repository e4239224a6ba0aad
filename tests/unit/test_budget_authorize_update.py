"""A workload controller's ask before it updates a pod (services.budget.decision, SPEC 4.11).

The world is the webhook tables' (test_budget_decision): budget ``pub-test`` with status
{disrupted: test-pod-9, unavailable: test-pod-8, current 7 + allowed, desired 7, total
10}; pod ``test-pod-0`` annotated ``kruise.io/related-pub: pub-test``, running and ready.
"""

from __future__ import annotations

from typing import Any

import pytest

from services.budget.decision import Admit, Refuse, authorize_update
from services.budget.status import BudgetStatus
from tests.unit.budget_builders import NOW, SECOND, pod, pub

EARLIER = NOW - SECOND
OPS = "kruise.io/pub-protect-operations"


def budget(allowed: int = 0, **kwargs: Any):
    return pub(
        allowed=allowed,
        current=7 + allowed,
        desired=7,
        total=10,
        disrupted={"test-pod-9": EARLIER},
        unavailable={"test-pod-8": EARLIER},
        **kwargs,
    )


@pytest.mark.parametrize(
    ("the_pod", "the_budget", "admitted", "reason"),
    [
        pytest.param(pod(related_pub=None), None, True, "no PodUnavailableBudget", id="no budget"),
        pytest.param(pod(), None, True, "no PodUnavailableBudget", id="the budget is gone"),
        pytest.param(
            pod(),
            budget(1, annotations={OPS: "DELETE"}),
            True,
            "does not list UPDATE",
            id="pub-protect-operations DELETE: updates are not protected",
        ),
        pytest.param(
            pod(annotations={"pub.kruise.io/no-protect": "true"}),
            budget(0),
            True,
            "no-protect",
            id="pod annotated no-protect",
        ),
        pytest.param(pod(ready=False), budget(0), True, "not running and ready", id="not ready"),
        pytest.param(
            pod(deleting=True), budget(0), True, "already terminating", id="pod terminating"
        ),
        pytest.param(
            pod("test-pod-8"),
            budget(0),
            True,
            "already counts as unavailable",
            id="asked again for a pod it already recorded: free",
        ),
        pytest.param(
            pod(),
            budget(0),
            False,
            "cannot update pod default/test-pod-0: PodUnavailableBudget pub-test allows no more",
            id="allowed 0: refused, naming the budget",
        ),
        pytest.param(
            pod(),
            budget(0, annotations={OPS: "UPDATE"}),
            False,
            "PodUnavailableBudget pub-test",
            id="pub-protect-operations UPDATE, allowed 0: refused",
        ),
    ],
)
def test_asks_that_spend_nothing(the_pod, the_budget, admitted, reason):
    outcome = authorize_update(namespace="default", pod=the_pod, budget=the_budget, now_ms=NOW)
    assert outcome.allowed is admitted
    if isinstance(outcome, Refuse):
        assert (outcome.code, outcome.reason) == (403, "Forbidden")
        assert reason in outcome.message
    else:
        assert outcome.spend is None and reason in outcome.reason


def test_allowed_one_spends_it_into_unavailable_pods():
    outcome = authorize_update(namespace="default", pod=pod(), budget=budget(1), now_ms=NOW)
    assert isinstance(outcome, Admit) and outcome.spend is not None
    change = outcome.spend
    assert (change.namespace, change.name, change.resource_version) == (
        "default",
        "pub-test",
        "100",
    )
    assert [(s.pod, s.action, s.into) for s in change.spends] == [
        ("test-pod-0", "UPDATE", "unavailablePods")
    ]
    assert change.status == BudgetStatus(
        unavailable_allowed=0,
        current_available=8,
        desired_available=7,
        total_replicas=10,
        disrupted_pods={"test-pod-9": EARLIER},
        unavailable_pods={"test-pod-8": EARLIER, "test-pod-0": NOW},
        observed_generation=1,
    )


def test_kube_system_is_never_protected():
    the_pod = pod(namespace="kube-system")
    outcome = authorize_update(namespace="kube-system", pod=the_pod, budget=budget(0), now_ms=NOW)
    assert isinstance(outcome, Admit) and outcome.spend is None
