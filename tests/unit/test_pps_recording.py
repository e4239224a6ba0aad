"""Recording and pruning of PersistentPodState records (SPEC 1.6 scenarios 1-4, and more)."""

from __future__ import annotations

import pytest

from kruise.common.v1 import views_pb2
from services.placement.recording import (
    Move,
    PodRecord,
    Target,
    in_replica_ordinals,
    pod_ordinal,
    record,
    status_body,
)
from tests.unit.placement_builders import HOSTNAME, ZONE, pod, pps, state

SPEC = {"required": [ZONE], "preferred": [(10, [HOSTNAME])]}


def node_labels(i: int) -> dict[str, str]:
    return {ZONE: f"cn-beijing-{i}", HOSTNAME: f"kube-resource011162007216-{i}", "other": "x"}


NODES = {f"node-{i}": node_labels(i) for i in range(13)}


def recorded(i: int, *, node: str | None = None, ip: str = "") -> views_pb2.PodState:
    labels = {k: v for k, v in node_labels(i).items() if k != "other"}
    return state(node if node is not None else f"node-{i}", ip, **labels)


def expected(i: int, ip: str = "") -> PodRecord:
    labels = {k: v for k, v in node_labels(i).items() if k != "other"}
    return PodRecord(node_name=f"node-{i}", labels=labels, pod_ip=ip)


def sts_pods(ordinals, *, not_ready=(), deleting=()):
    return [
        pod(f"test-sts-{i}", node=f"node-{i}", ready=i not in not_ready, deleting=i in deleting)
        for i in ordinals
    ]


@pytest.mark.parametrize(
    ("view", "target", "pods", "want"),
    [
        pytest.param(
            pps(**SPEC),
            Target(replicas=10),
            sts_pods(range(10)),
            {f"test-sts-{i}": expected(i) for i in range(10)},
            id="scenario 1: 10 ready pods, empty status -> 10 records",
        ),
        pytest.param(
            pps(**SPEC, states={f"test-sts-{i}": recorded(i) for i in range(10)}),
            Target(replicas=8),
            sts_pods(range(10), not_ready={0, 3}, deleting={9}),
            {f"test-sts-{i}": expected(i) for i in range(9)},
            id="scenario 2: scale 10->8, pod 9 terminating loses its record, 8 alive keeps it",
        ),
        pytest.param(
            pps(
                **SPEC,
                states={f"test-sts-{i}": recorded(i) for i in (1, 2, 4, 5, 6, 8, 9, 10, 11, 12)},
            ),
            Target(replicas=8, reserve_ordinals=frozenset({0, 3, 7})),
            sts_pods((1, 2, 4, 5, 6, 8, 9, 10, 11, 12), deleting={12}),
            {f"test-sts-{i}": expected(i) for i in (1, 2, 4, 5, 6, 8, 9, 10, 11)},
            id="scenario 3: reserveOrdinals 0,3,7: 12 terminating dropped, 11 alive kept",
        ),
        pytest.param(
            pps(
                **SPEC,
                states={
                    f"test-sts-{i}": recorded(i, node=f"cn-beijing-{i}")
                    for i in range(10)
                    if i not in (5, 6)
                },
            ),
            Target(replicas=10),
            sts_pods(range(10)),
            {f"test-sts-{i}": expected(i) for i in range(10)},
            id="scenario 4: missing and wrong-node records are all rewritten",
        ),
        pytest.param(
            pps(**SPEC, states={f"test-sts-{i}": recorded(i) for i in range(5)}),
            Target(replicas=5),
            sts_pods((0, 1, 3, 4)),
            {f"test-sts-{i}": expected(i) for i in range(5)},
            id="a deleted pod in range keeps its record for its successor",
        ),
        pytest.param(
            pps(
                **SPEC,
                retention="WhenDeleted",
                states={f"test-sts-{i}": recorded(i) for i in range(5)},
            ),
            Target(replicas=1),
            sts_pods(range(1)),
            {f"test-sts-{i}": expected(i) for i in range(5)},
            id="WhenDeleted: scale 5->1 keeps every record",
        ),
        pytest.param(
            pps(**SPEC, states={f"test-sts-{i}": recorded(i) for i in range(3)}),
            None,
            [],
            {},
            id="target gone: every record cleared",
        ),
        pytest.param(
            pps(**SPEC, retention="WhenDeleted", states={"test-sts-0": recorded(0)}),
            Target(replicas=3, deleting=True),
            sts_pods(range(3)),
            {},
            id="target being deleted: cleared even with WhenDeleted",
        ),
        pytest.param(
            pps(**SPEC, states={"web": recorded(0), "test-sts-x": recorded(1)}),
            Target(replicas=0),
            [],
            {"web": expected(0), "test-sts-x": expected(1)},
            id="pod names without an ordinal are kept (never pruned)",
        ),
        pytest.param(
            pps(**SPEC),
            Target(replicas=2),
            [pod("test-sts-0", node="node-0"), pod("test-sts-1", node="")],
            {"test-sts-0": expected(0)},
            id="an unscheduled pod is not recorded",
        ),
        pytest.param(
            pps(**SPEC),
            Target(replicas=2),
            [pod("test-sts-0", node="node-0"), pod("test-sts-1", node="node-unknown")],
            {"test-sts-0": expected(0)},
            id="a pod on a node the replica does not know is skipped",
        ),
        pytest.param(
            pps(**SPEC),
            Target(replicas=1),
            [pod("test-sts-0", node="node-0", phase="Failed")],
            {},
            id="a failed pod is not active and not recorded",
        ),
    ],
)
def test_record(view, target, pods, want):
    got = record(pps=view, target=target, pods=pods, node_labels=NODES)
    assert got.pod_states == want


def test_node_missing_a_key_records_a_partial_map_and_is_stable():
    nodes = {"node-0": {HOSTNAME: "h0"}}  # no zone label
    view = pps(**SPEC)
    first = record(pps=view, target=Target(replicas=1), pods=sts_pods([0]), node_labels=nodes)
    assert first.pod_states == {"test-sts-0": PodRecord("node-0", {HOSTNAME: "h0"})}
    assert first.changed
    view.pod_states["test-sts-0"].CopyFrom(state("node-0", **{HOSTNAME: "h0"}))
    again = record(pps=view, target=Target(replicas=1), pods=sts_pods([0]), node_labels=nodes)
    assert again.pod_states == first.pod_states
    assert not again.changed, "re-evaluated but nothing to write"


def test_unchanged_records_mean_no_write_but_a_new_generation_does():
    states = {f"test-sts-{i}": recorded(i) for i in range(3)}
    same = record(
        pps=pps(**SPEC, states=states), target=Target(3), pods=sts_pods(range(3)), node_labels=NODES
    )
    assert not same.changed
    bumped = record(
        pps=pps(**SPEC, states=states, generation=2, observed=1),
        target=Target(3),
        pods=sts_pods(range(3)),
        node_labels=NODES,
    )
    assert bumped.changed and bumped.pod_states == same.pod_states


def test_changed_topology_keys_rerecord_every_pod():
    """SPEC 1.6 scenario 17, decided: the required key is dropped → one label per record."""
    states = {f"test-sts-{i}": recorded(i) for i in range(3)}
    got = record(
        pps=pps(preferred=[(100, [HOSTNAME])], states=states),
        target=Target(3),
        pods=sts_pods(range(3)),
        node_labels=NODES,
    )
    assert all(set(r.labels) == {HOSTNAME} for r in got.pod_states.values())


@pytest.mark.parametrize(
    ("old", "new_node", "new_ip", "moves"),
    [
        pytest.param(recorded(1, ip="10.0.1.5"), "node-1", "10.0.1.5", (), id="same node and IP"),
        pytest.param(
            recorded(1, ip="10.0.1.5"),
            "node-1",
            "10.0.1.9",
            (Move("test-sts-1", "node-1", "node-1", "10.0.1.5", "10.0.1.9"),),
            id="same node, another IP",
        ),
        pytest.param(
            recorded(1, ip="10.0.1.5"),
            "node-2",
            "10.0.2.7",
            (Move("test-sts-1", "node-1", "node-2", "10.0.1.5", "10.0.2.7"),),
            id="another node",
        ),
        pytest.param(
            recorded(1), "node-1", "10.0.1.5", (), id="no IP recorded yet: recorded, no move"
        ),
    ],
)
def test_moves(old, new_node, new_ip, moves):
    view = pps(**SPEC, states={"test-sts-1": old})
    got = record(
        pps=view,
        target=Target(2),
        pods=[pod("test-sts-1", node=new_node, ip=new_ip)],
        node_labels=NODES,
    )
    assert got.moves == moves
    assert got.pod_states["test-sts-1"].pod_ip == new_ip
    assert got.changed == (old.pod_ip != new_ip or old.node_name != new_node)


def test_move_reason():
    assert Move("p", "a", "b", "1", "2").reason == "NodeChanged"
    assert Move("p", "a", "a", "1", "2").reason == "IPChanged"


@pytest.mark.parametrize(
    ("name", "ordinal"),
    [
        ("web-0", 0),
        ("web-12", 12),
        ("my-web-3", 3),
        ("web", None),
        ("web-", None),
        ("web-3a", None),
        ("web--1", 1),
    ],
)
def test_pod_ordinal(name, ordinal):
    assert pod_ordinal(name) == ordinal


def test_in_replica_ordinals_skips_reserved():
    got = [o for o in range(12) if in_replica_ordinals(o, replicas=8, reserve={0, 3, 7})]
    assert got == [1, 2, 4, 5, 6, 8, 9, 10]
    assert [o for o in range(5) if in_replica_ordinals(o, replicas=3, reserve=())] == [0, 1, 2]


def test_status_body_omits_empty_parts():
    got = record(pps=pps(**SPEC), target=None, pods=[], node_labels=NODES)
    assert status_body(got, generation=3) == {"observedGeneration": 3}
    full = record(
        pps=pps(**SPEC),
        target=Target(1),
        pods=[pod("test-sts-0", node="node-0", ip="10.0.0.2")],
        node_labels=NODES,
    )
    assert status_body(full, generation=1) == {
        "observedGeneration": 1,
        "podStates": {
            "test-sts-0": {
                "nodeName": "node-0",
                "nodeTopologyLabels": {
                    ZONE: "cn-beijing-0",
                    HOSTNAME: "kube-resource011162007216-0",
                },
                "podIP": "10.0.0.2",
            }
        },
    }


@pytest.mark.parametrize(
    ("recorded_state", "now", "placed"),
    [
        pytest.param(
            state("n1", "10.0.0.5"),
            pod("p", node="n1", ip="10.0.0.5"),
            True,
            id="same node, same IP",
        ),
        pytest.param(
            state("n1", "10.0.0.5"),
            pod("p", node="n1", ip="10.0.0.9"),
            False,
            id="same node, another IP",
        ),
        pytest.param(
            state("n1", "10.0.0.5"), pod("p", node="n2", ip="10.0.0.5"), False, id="another node"
        ),
        pytest.param(
            state("n1"),
            pod("p", node="n1", ip="10.0.0.9"),
            True,
            id="no IP recorded: the node decides",
        ),
    ],
)
def test_placed_as_recorded(recorded_state, now, placed):
    from services.placement.recording import placed_as_recorded

    assert placed_as_recorded(recorded_state, now) is placed
