"""The pure parts of ``drain-plan`` (services.cli.drain_plan): which pods, merged how, said how."""

from __future__ import annotations

import doctest

import pytest

from kruise.budget.v1 import budget_pb2
from services.cli import drain_plan
from services.cli.drain_plan import (
    NodePods,
    by_replica,
    gateway_address,
    merge,
    parse_addresses,
    select_pods,
    summary,
)

NOW = budget_pb2.PLAN_VERDICT_NOW
WAIT = budget_pb2.PLAN_VERDICT_WAIT


def entry(
    pod: str,
    verdict=NOW,
    order: int = 0,
    *,
    spends: bool = False,
    ns: str = "a",
    replica: str = "",
):
    return budget_pb2.DisruptionEntry(
        namespace=ns, pod=pod, verdict=verdict, order=order, spends_budget=spends, replica=replica
    )


def meta(name: str, **fields) -> dict:
    return {"metadata": {"namespace": "a", "name": name, **fields}}


def test_the_node_pods_are_split_as_kubectl_drain_does():
    pods = select_pods(
        [
            meta("web-1"),
            meta("agent", ownerReferences=[{"kind": "DaemonSet", "controller": True}]),
            meta("not-controller", ownerReferences=[{"kind": "DaemonSet"}]),
            meta("etcd-node", annotations={"kubernetes.io/config.mirror": "x"}),
            meta("web-0", ownerReferences=[{"kind": "StatefulSet", "controller": True}]),
        ]
    )
    assert pods == NodePods(
        evict=(("a", "not-controller"), ("a", "web-0"), ("a", "web-1")),
        daemon_set=("a/agent",),
        mirror=("a/etcd-node",),
    )


def test_replicas_answers_merge_free_first_then_spending_interleaved():
    first = [entry("f1", order=1), entry("s1", order=2, spends=True), entry("w1", WAIT)]
    second = [
        entry("s2", order=2, spends=True, ns="b"),
        entry("f2", order=1, ns="b"),
        entry("s3", order=3, spends=True, ns="b"),
    ]
    rows = merge([("r1", first), ("r2", second)])
    assert [(r.order, r.pod, r.verdict, r.replica) for r in rows] == [
        (1, "f1", "NOW", "r1"),
        (2, "f2", "NOW", "r2"),
        (3, "s1", "NOW", "r1"),
        (4, "s2", "NOW", "r2"),
        (5, "s3", "NOW", "r2"),
        (0, "w1", "WAIT", "r1"),
    ]


def test_the_gateways_answer_in_request_order_is_split_back_per_replica():
    """The gateway answers one entry per pod in request order, each naming its replica;
    ``order`` counts per replica, so the plan is merged as if each replica had answered."""
    answer = [
        entry("s2", order=2, spends=True, ns="b", replica="r2"),
        entry("f1", order=1, replica="r1"),
        entry("w1", WAIT, replica="r1"),
        entry("f2", order=1, ns="b", replica="r2"),
        entry("s1", order=2, spends=True, replica="r1"),
    ]
    grouped = by_replica(answer)
    assert [(replica, [e.pod for e in entries]) for replica, entries in grouped] == [
        ("r2", ["s2", "f2"]),
        ("r1", ["f1", "w1", "s1"]),
    ]
    rows = merge(grouped)
    assert [(r.order, r.pod, r.replica) for r in rows] == [
        (1, "f2", "r2"),
        (2, "f1", "r1"),
        (3, "s2", "r2"),
        (4, "s1", "r1"),
        (0, "w1", "r1"),
    ]


def test_the_gateway_comes_from_the_flag_then_the_environment(monkeypatch):
    # the gateway's API port for tools (7070), not its mesh port (7000: mesh certificates)
    monkeypatch.delenv("KRUISE_MESH_API", raising=False)
    assert gateway_address(None) == "127.0.0.1:7070"
    monkeypatch.setenv("KRUISE_MESH_API", "kruise-mesh-rollout-api.kruise-mesh.svc:7070")
    assert gateway_address(None) == "kruise-mesh-rollout-api.kruise-mesh.svc:7070"
    assert gateway_address("10.0.0.1:7070") == "10.0.0.1:7070"


@pytest.mark.parametrize(
    ("verdicts", "line"),
    [
        pytest.param(
            [NOW] * 5 + [WAIT] * 2, "5 pods can be evicted now, 2 must wait", id="5 and 2"
        ),
        pytest.param([NOW], "1 pod can be evicted now, 0 must wait", id="a single pod"),
        pytest.param(
            [WAIT, budget_pb2.PLAN_VERDICT_GONE, budget_pb2.PLAN_VERDICT_NOT_OWNED],
            "0 pods can be evicted now, 1 must wait, 1 no longer exist, "
            "1 could not be planned (no replica owns them)",
            id="gone and unowned pods are counted too",
        ),
    ],
)
def test_summary(verdicts, line):
    rows = merge([("r", [entry(f"p{i}", v, order=i) for i, v in enumerate(verdicts)])])
    assert summary(rows) == line


def test_deprecated_budget_addresses_come_comma_separated_or_repeated():
    assert parse_addresses(["a:1, b:2", "c:3", ""]) == ["a:1", "b:2", "c:3"]


def test_docstring_examples_hold():
    assert doctest.testmod(drain_plan).failed == 0
