"""Unit tests for the world scheduler's pure decisions: filtering, scoring, messages."""

from __future__ import annotations

from typing import Any

import pytest

from sandbox.world.nodes import default_nodes, node_object
from sandbox.world.scheduler import (
    choose_node,
    match_expression,
    node_fits,
    unschedulable_message,
    wants_scheduling,
    with_condition,
)

NOW = "2026-11-26T04:13:26Z"
NODES = [node_object(s, index=i, now=NOW) for i, s in enumerate(default_nodes())]


def pod(
    *,
    selector: dict[str, str] | None = None,
    required: list[dict[str, Any]] | None = None,
    preferred: list[tuple[int, dict[str, Any]]] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {"containers": [{"name": "c", "image": "nginx"}], **spec}
    if selector:
        body["nodeSelector"] = selector
    affinity: dict[str, Any] = {}
    if required is not None:
        affinity["requiredDuringSchedulingIgnoredDuringExecution"] = {"nodeSelectorTerms": required}
    if preferred:
        affinity["preferredDuringSchedulingIgnoredDuringExecution"] = [
            {"weight": w, "preference": t} for w, t in preferred
        ]
    if affinity:
        body["affinity"] = {"nodeAffinity": affinity}
    return {"metadata": {"name": "p", "namespace": "ns", "uid": "u"}, "spec": body}


def expr(key: str, op: str, *values: str) -> dict[str, Any]:
    return {"key": key, "operator": op, "values": list(values)}


def term(*exprs: dict[str, Any], fields: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"matchExpressions": list(exprs)}
    if fields:
        out["matchFields"] = fields
    return out


ZONE = "topology.kubernetes.io/zone"
HOST = "kubernetes.io/hostname"


@pytest.mark.parametrize(
    ("requirement", "labels", "expected"),
    [
        pytest.param(expr("a", "In", "1", "2"), {"a": "2"}, True, id="In: value listed"),
        pytest.param(expr("a", "In", "1"), {}, False, id="In: label missing"),
        pytest.param(expr("a", "NotIn", "1"), {}, True, id="NotIn: label missing matches"),
        pytest.param(expr("a", "NotIn", "1"), {"a": "1"}, False, id="NotIn: value listed"),
        pytest.param(expr("a", "Exists"), {"a": ""}, True, id="Exists: empty value"),
        pytest.param(expr("a", "DoesNotExist"), {"a": "x"}, False, id="DoesNotExist: present"),
        pytest.param(expr("a", "Gt", "5"), {"a": "6"}, True, id="Gt: 6 > 5"),
        pytest.param(expr("a", "Gt", "5"), {"a": "5"}, False, id="Gt: 5 is not > 5"),
        pytest.param(expr("a", "Lt", "5"), {"a": "x"}, False, id="Lt: not an integer"),
        pytest.param(expr("a", "Lt", "5"), {"a": "-1"}, True, id="Lt: -1 < 5"),
        pytest.param(expr("a", "Bogus", "5"), {"a": "5"}, False, id="unknown operator"),
    ],
)
def test_match_expression(requirement: dict[str, Any], labels: dict[str, str], expected: bool):
    assert match_expression(requirement, labels) is expected


@pytest.mark.parametrize(
    ("the_pod", "expected"),
    [
        pytest.param(pod(), "node-a1", id="no constraints: fewest pods, then name"),
        pytest.param(pod(selector={ZONE: "zone-b"}), "node-b1", id="nodeSelector zone-b"),
        pytest.param(pod(selector={HOST: "node-c2"}), "node-c2", id="nodeSelector hostname"),
        pytest.param(
            pod(required=[term(expr(ZONE, "In", "zone-c")), term(expr(HOST, "In", "node-b2"))]),
            "node-b2",
            id="required terms are ORed: zone-c or node-b2",
        ),
        pytest.param(
            pod(required=[term(expr(ZONE, "In", "zone-a"), expr(HOST, "NotIn", "node-a1"))]),
            "node-a2",
            id="expressions in one term are ANDed",
        ),
        pytest.param(
            pod(required=[term(fields=[expr("metadata.name", "In", "node-c1")])]),
            "node-c1",
            id="matchFields metadata.name",
        ),
        pytest.param(
            pod(
                preferred=[(10, term(expr(ZONE, "In", "zone-c"))), (5, term(expr(HOST, "Exists")))]
            ),
            "node-c1",
            id="preferred weights summed: zone-c wins",
        ),
        pytest.param(
            pod(
                required=[term(expr(ZONE, "NotIn", "zone-c"))],
                preferred=[(1, term(expr(ZONE, "In", "zone-c")))],
            ),
            "node-a1",
            id="preferred never overrides required",
        ),
        pytest.param(pod(selector={ZONE: "zone-z"}), None, id="nothing fits"),
        pytest.param(pod(required=[]), None, id="empty nodeSelectorTerms fit nothing"),
        pytest.param(pod(required=[{}]), None, id="an empty term matches nothing"),
    ],
)
def test_choose_node(the_pod: dict[str, Any], expected: str | None):
    assert choose_node(the_pod, NODES, {}) == expected


def test_choose_node_spreads_by_pod_count_then_name():
    counts = {"node-a1": 2, "node-a2": 1, "node-b1": 1, "node-b2": 1, "node-c1": 1, "node-c2": 1}
    assert choose_node(pod(), NODES, counts) == "node-a2"
    assert choose_node(pod(selector={ZONE: "zone-a"}), NODES, counts) == "node-a2"


def test_cordoned_node_is_skipped():
    cordoned = [dict(n, spec={"unschedulable": True}) for n in NODES[:1]] + NODES[1:]
    assert not node_fits(pod(), cordoned[0])
    assert choose_node(pod(), cordoned, {}) == "node-a2"


def test_unschedulable_message_matches_kube_scheduler():
    assert unschedulable_message(pod(selector={ZONE: "zone-z"}), NODES) == (
        "0/6 nodes are available: 6 node(s) didn't match Pod's node affinity/selector. "
        "preemption: 0/6 nodes are available: 6 Preemption is not helpful for scheduling."
    )


@pytest.mark.parametrize(
    ("the_pod", "expected"),
    [
        pytest.param(pod(), True, id="schedulerName unset"),
        pytest.param(pod(schedulerName="default-scheduler"), True, id="default-scheduler"),
        pytest.param(pod(schedulerName="volcano"), False, id="another scheduler"),
        pytest.param(pod(nodeName="node-a1"), False, id="already bound"),
    ],
)
def test_wants_scheduling(the_pod: dict[str, Any], expected: bool):
    assert wants_scheduling(the_pod) is expected


def test_with_condition_is_none_when_nothing_changes():
    cond = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "m"}
    first = with_condition([], {**cond, "lastTransitionTime": NOW})
    assert first == [{**cond, "lastTransitionTime": NOW}]
    assert with_condition(first, {**cond, "lastTransitionTime": "later"}) is None
    changed = with_condition(first, {**cond, "message": "n", "lastTransitionTime": "later"})
    assert changed == [{**cond, "message": "n", "lastTransitionTime": NOW}]
