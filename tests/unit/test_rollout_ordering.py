"""Which pods update first and which go first on scale-in (services.rollout.ordering, SPEC 2.5-2.6).

Rows mirror OpenKruise's own tables where it has them: ``TestSortingActivePods`` and the
rankers' tests (``pkg/controller/cloneset/utils/pod_sorter_test.go``), ``TestCompare``
(``pkg/util/updatesort/priority_sort_test.go``) and ``TestScatterPodsByRule`` / ``TestSort``
(``scatter_sort_test.go``). Pods are named; every row compares names.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from kruise.common.v1 import views_pb2
from services.rollout.ordering import (
    HOSTNAME_LABEL,
    PriorityStrategy,
    SpreadConstraint,
    choose_for_update,
    choose_scale_in,
    deletion_cost,
    deletion_ranks,
    limit_ready_deletions,
    parse_priority,
    parse_scatter,
    scale_in_order,
    spread_constraints_of,
    update_order,
    waits_for_update,
)
from services.rollout.pods import (
    DELETION_COST_ANNOTATION,
    INPLACE_GRACE_ANNOTATION,
    PREPARING_DELETE,
    PREPARING_UPDATE,
    UPDATED,
)
from tests.unit import rollout_builders as rb
from tests.unit.rollout_builders import NEW, NOW, OLD, SECOND

HOUR = 3600 * SECOND
GRACE = '{"revision":"sample-7f9d8c6b5d","containerImages":{"main":"nginx:2"}}'
ZONE_LABEL = "failure-domain.beta.kubernetes.io/zone"


def pod(
    name: str,
    revision: str = OLD,
    *,
    node: str = "node-1",
    created_ms: int = NOW - 2 * HOUR,
    restarts: int = 0,
    cost: str | None = None,
    annotations: Mapping[str, str] | None = None,
    **kwargs: Any,
) -> views_pb2.PodView:
    """``rollout_builders.pod`` (running, ready an hour, Normal) plus node, age, restarts
    and annotations; ``created_ms=0`` leaves creationTimestamp unset."""
    view = rb.pod(revision, name=name, **kwargs)
    view.node_name = node
    view.meta.creation_unix_ms = created_ms
    if restarts:
        view.container_statuses.add(name="main", restart_count=restarts)
    if cost is not None:
        view.meta.annotations[DELETION_COST_ANNOTATION] = cost
    view.meta.annotations.update(annotations or {})
    return view


def names(pods: Sequence[views_pb2.PodView]) -> list[str]:
    return [p.meta.name for p in pods]


def labelled(*labels: Mapping[str, str]) -> list[views_pb2.PodView]:
    """Pods p0, p1, ... otherwise alike, with these extra labels."""
    return [pod(f"p{i}", labels=lab) for i, lab in enumerate(labels)]


def ordered(
    pods: Sequence[views_pb2.PodView],
    *,
    priority: PriorityStrategy | None = None,
    scatter: Sequence[tuple[str, str]] = (),
    waiting: int | None = None,
) -> list[str]:
    """``update_order`` by name; ``waiting=n``: only the first n pods wait (scatter rows)."""
    wait = None if waiting is None else (lambda p: int(p.meta.name[1:]) < waiting)
    return names(update_order(pods, priority=priority, scatter=scatter, waiting=wait))


# --- step 3.1: Kubernetes' ActivePods order ----------------------------------------------

THEN = NOW - 30 * 24 * HOUR
ACTIVE_PODS_PAIRS = [
    pytest.param(
        pod("unscheduled", node="", phase="Pending", ready=False),
        pod("pending", phase="Pending", ready=False),
        id="unscheduled before scheduled",
    ),
    pytest.param(
        pod("pending", phase="Pending", ready=False),
        pod("unknown", phase="Unknown", ready=False),
        id="Pending before Unknown",
    ),
    pytest.param(
        pod("unknown", phase="Unknown", ready=False),
        pod("not-ready", ready=False),
        id="Unknown before Running",
    ),
    pytest.param(
        pod("succeeded", phase="Succeeded", ready=False),
        pod("unknown", phase="Unknown", ready=False),
        id="other phases count as Pending",
    ),
    pytest.param(
        pod("not-ready", ready=False),
        pod("ready-no-transition-time", ready_since_ms=0),
        id="not ready before ready",
    ),
    pytest.param(
        pod("ready-no-transition-time", ready_since_ms=0),
        pod("ready-now", ready_since_ms=NOW),
        id="both ready: zero ready time first",
    ),
    pytest.param(
        pod("ready-now", ready_since_ms=NOW),
        pod("ready-then", ready_since_ms=THEN),
        id="both ready: more recently ready first",
    ),
    pytest.param(
        pod("high-restarts", ready_since_ms=NOW, restarts=9001),
        pod("ready-now", ready_since_ms=NOW),
        id="more container restarts first",
    ),
    pytest.param(
        pod("created-now", ready_since_ms=NOW, created_ms=NOW),
        pod("created-then", ready_since_ms=NOW, created_ms=THEN),
        id="newer creationTimestamp first",
    ),
    pytest.param(
        pod("no-creation-time", created_ms=0),
        pod("created-now", created_ms=NOW),
        id="zero creationTimestamp first",
    ),
    pytest.param(
        pod("created-later", ready=False, ready_since_ms=THEN),
        pod("created-earlier", ready=False, ready_since_ms=NOW, created_ms=THEN),
        id="both not ready: ready time ignored, newer creation first",
    ),
]


@pytest.mark.parametrize(("first", "second"), ACTIVE_PODS_PAIRS)
def test_active_pods_order(first: views_pb2.PodView, second: views_pb2.PodView) -> None:
    assert ordered([second, first]) == [first.meta.name, second.meta.name]
    assert ordered([first, second]) == [first.meta.name, second.meta.name]


def test_active_pods_ties_keep_the_input_order() -> None:
    assert ordered([pod("b"), pod("a", node="node-2"), pod("c")]) == ["b", "a", "c"]


# --- step 3.2: priorityStrategy ----------------------------------------------------------

FOO_BAR = parse_priority(
    {
        "weightPriority": [
            {"weight": 20, "matchSelector": {"matchLabels": {"key": "foo"}}},
            {"weight": 10, "matchSelector": {"matchLabels": {"key": "bar"}}},
        ]
    }
)
THREE_KEYS = parse_priority(
    {
        "weightPriority": [
            {"weight": 20, "matchSelector": {"matchLabels": {"key1": "foo"}}},
            {"weight": 10, "matchSelector": {"matchLabels": {"key2": "bar"}}},
            {"weight": 15, "matchSelector": {"matchLabels": {"key3": "baz"}}},
        ]
    }
)
EXPRESSIONS = parse_priority(
    {
        "weightPriority": [
            {"weight": 1, "matchSelector": {"matchExpressions": [_e]}}
            for _e in (
                {"key": "tier", "operator": "In", "values": ["web", "api"]},
                {"key": "zone", "operator": "NotIn", "values": ["z1"]},
                {"key": "canary", "operator": "Exists"},
                {"key": "legacy", "operator": "DoesNotExist"},
            )
        ]
    }
)
KEY1_KEY2 = parse_priority({"orderPriority": [{"orderedKey": "key1"}, {"orderedKey": "key2"}]})


@pytest.mark.parametrize(
    ("strategy", "pods", "expected"),
    [
        pytest.param(
            FOO_BAR,
            labelled({"key": "bar"}, {"key": "foo"}),
            ["p1", "p0"],
            id="weight: key=foo (20) before key=bar (10)",
        ),
        pytest.param(
            FOO_BAR,
            labelled({"key": "foo"}, {}),
            ["p0", "p1"],
            id="weight: a matching pod before one matching nothing",
        ),
        pytest.param(
            THREE_KEYS,
            labelled({"key1": "foo"}, {"key2": "bar", "key3": "baz"}),
            ["p1", "p0"],
            id="weight: sum 10+15 beats a single 20",
        ),
        pytest.param(
            EXPRESSIONS,
            labelled(
                {"legacy": "yes", "zone": "z1"},  # 0
                {"tier": "web", "zone": "z1", "legacy": "yes"},  # In: 1
                {"tier": "db", "canary": "1"},  # NotIn (no zone), Exists, DoesNotExist: 3
                {"tier": "api", "zone": "z2"},  # In, NotIn, DoesNotExist: 3
            ),
            ["p3", "p2", "p1", "p0"],
            id="weight: In, NotIn, Exists, DoesNotExist; ties: later pod first",
        ),
        pytest.param(
            parse_priority(
                {
                    "weightPriority": [
                        {
                            "weight": 50,
                            "matchSelector": {
                                "matchExpressions": [{"key": "a", "operator": "NotIn"}]
                            },
                        },
                        {"weight": 5, "matchSelector": {"matchLabels": {"a": "1"}}},
                    ]
                }
            ),
            labelled({"a": "1"}, {}),
            ["p0", "p1"],
            id="weight: a selector Kubernetes refuses (NotIn without values) never counts",
        ),
        pytest.param(
            parse_priority({"weightPriority": [{"weight": 7, "matchSelector": {}}]}),
            labelled({"a": "1"}, {}),
            ["p1", "p0"],
            id="weight: an empty selector matches every pod (a tie)",
        ),
        pytest.param(
            FOO_BAR,
            [pod("p0", ready=False), pod("p1")],
            ["p1", "p0"],
            id="(quirk) equal priority: later in the pod list first, undoing not-ready-first",
        ),
        pytest.param(
            KEY1_KEY2,
            labelled({"key1": "o-5"}, {"key1": "o-10"}),
            ["p1", "p0"],
            id="order: within a key the larger trailing integer first (o-10 before o-5)",
        ),
        pytest.param(
            KEY1_KEY2,
            labelled({"key2": "o-20"}, {"key1": "o-10"}),
            ["p1", "p0"],
            id="order: the first ordered key before the second",
        ),
        pytest.param(
            KEY1_KEY2,
            labelled({"key1": "v-2"}, {"key1": "v-1", "key2": "v-99"}),
            ["p0", "p1"],
            id="order: the first key the pod has decides; later keys are not read",
        ),
        pytest.param(
            KEY1_KEY2,
            labelled({"key1": "o-1"}, {}, {"key2": "o-9"}),
            ["p1", "p0", "p2"],
            id="(quirk) order: pods with none of the keys come first",
        ),
        pytest.param(
            KEY1_KEY2,
            labelled({"key1": "abc"}, {"key1": "o-1"}, {"key1": "x-99999999999999999999"}),
            ["p1", "p2", "p0"],
            id="order: no trailing digits, or an int64 overflow, counts as 0",
        ),
        pytest.param(
            KEY1_KEY2,
            labelled({"key1": "o-10"}, {"key1": "o-10"}, {"key1": "o-10"}),
            ["p2", "p1", "p0"],
            id="(quirk) order: equal pods, later in the pod list first",
        ),
        pytest.param(
            parse_priority(
                {
                    "weightPriority": [{"weight": 1, "matchSelector": {"matchLabels": {"x": "1"}}}],
                    "orderPriority": [{"orderedKey": "key1"}],
                }
            ),
            labelled({"key1": "o-9"}, {"key1": "o-1"}),
            ["p1", "p0"],
            id="weightPriority set: orderPriority is ignored",
        ),
    ],
)
def test_priority_strategy(
    strategy: PriorityStrategy | None, pods: list[views_pb2.PodView], expected: list[str]
) -> None:
    assert ordered(pods, priority=strategy) == expected


def test_parse_priority_unset_or_empty_is_none() -> None:
    assert parse_priority(None) is None
    assert parse_priority({}) is None
    assert parse_priority({"weightPriority": [], "orderPriority": []}) is None
    assert KEY1_KEY2 == PriorityStrategy(order_priority=("key1", "key2"))


# --- step 3.3: scatterStrategy -----------------------------------------------------------

A = {"labelA": "AAA"}
B = {"labelB": "BBB"}
C = {"labelC": "CCC"}
AB = {**A, **B}
AC = {**A, **C}
BC = {**B, **C}
E: dict[str, str] = {}
SCATTER_A = (("labelA", "AAA"),)
SCATTER_AB = (("labelA", "AAA"), ("labelB", "BBB"))
SCATTER_BA = (("labelB", "BBB"), ("labelA", "AAA"))
SCATTER_ABC = (("labelA", "AAA"), ("labelB", "BBB"), ("labelC", "CCC"))


@pytest.mark.parametrize(
    ("labels", "scatter", "waiting", "expected"),
    [
        pytest.param([A], SCATTER_A, None, [0], id="only one scattered pod"),
        pytest.param([A, E], SCATTER_A, None, [0, 1], id="one scattered + one ordinary pod"),
        pytest.param(
            [E, E, E, E, A, A], SCATTER_A, None, [4, 0, 1, 2, 3, 5], id="2 scattered among 4"
        ),
        pytest.param(
            [E, E, E, A, A, A], SCATTER_A, None, [3, 0, 1, 4, 2, 5], id="3 scattered among 3"
        ),
        pytest.param([E, E, E, A, E, E, A], SCATTER_A, None, [3, 0, 1, 2, 4, 5, 6], id="2 among 5"),
        pytest.param(
            [E, E, E, E, E, E, A, A, A],
            SCATTER_A,
            None,
            [6, 0, 1, 2, 7, 3, 4, 5, 8],
            id="3 scattered among 6: one every three, the last one last",
        ),
        pytest.param(
            [E, E, A, A, A, A],
            SCATTER_A,
            None,
            [2, 3, 0, 4, 1, 5],
            id="4 scattered among 2: groups of round(3/2) = 2 matched",
        ),
        pytest.param(
            [E, E, A, E, A, A, A, A, A],
            SCATTER_A,
            None,
            [2, 4, 0, 5, 6, 1, 7, 3, 8],
            id="6 scattered among 3",
        ),
        pytest.param(
            [E, A, E, A, E, E, A, A, A],
            SCATTER_A,
            None,
            [1, 0, 3, 2, 6, 4, 7, 5, 8],
            id="5 scattered among 4, interleaved in the input",
        ),
        pytest.param(
            [B, B, E, E, A, A],
            SCATTER_AB,
            None,
            [0, 4, 2, 3, 5, 1],
            id="2 terms: each spread in turn",
        ),
        pytest.param(
            [E, E, E, E, {"x": "e"}, {"y": "s"}, B, A, A, B],
            SCATTER_BA,
            None,
            [7, 6, 0, 1, 2, 3, 4, 5, 9, 8],
            id="2 terms with equal counts: strategy order (B, then A)",
        ),
        pytest.param(
            [E, E, E, E, {"x": "e"}, {"y": "s"}, B, A, A, B],
            SCATTER_AB,
            None,
            [6, 7, 0, 1, 2, 3, 4, 5, 8, 9],
            id="2 terms with equal counts: strategy order (A, then B)",
        ),
        pytest.param(
            [E, A, A, B, B, C, C, C, C, C],
            SCATTER_ABC,
            None,
            [3, 1, 5, 0, 6, 7, 8, 9, 2, 4],
            id="3 terms: the most matched term (C) first",
        ),
        pytest.param(
            [E, A, AC, BC, B, E, E, C, C, C],
            SCATTER_ABC,
            None,
            [3, 2, 0, 7, 8, 5, 6, 9, 1, 4],
            id="3 terms, pods matching two",
        ),
        pytest.param(
            [E, E, E, E, A, A, A],
            SCATTER_A,
            6,
            [0, 1, 4, 2, 3, 5],
            id="density over all pods: 6 of 7 waiting",
        ),
        pytest.param(
            [A, A, E, E, E, E, E, E, E, A],
            SCATTER_A,
            7,
            [2, 0, 3, 4, 5, 6, 1],
            id="density over all pods: waiting pods denser in matches than all pods",
        ),
    ],
)
def test_scatter_strategy(
    labels: list[dict[str, str]],
    scatter: tuple[tuple[str, str], ...],
    waiting: int | None,
    expected: list[int],
) -> None:
    assert ordered(labelled(*labels), scatter=scatter, waiting=waiting) == [
        f"p{i}" for i in expected
    ]


def test_parse_scatter() -> None:
    raw = [{"key": "labelA", "value": "AAA"}, "junk", {"key": "labelB"}]
    assert parse_scatter(raw) == (("labelA", "AAA"), ("labelB", ""))
    assert parse_scatter(None) == ()


# --- step 3.4: PreparingUpdate first -----------------------------------------------------


def test_preparing_update_pods_first_then_stable() -> None:
    pods = [
        pod("a", labels={"key": "foo"}),
        pod("b", state=PREPARING_UPDATE),
        pod("c"),
        pod("d", state=PREPARING_UPDATE, ready=False),
    ]
    # Priority puts a (weight 20) first and d, c, b after it (ties: later first), then
    # the PreparingUpdate pods move to the front keeping that order.
    assert ordered(pods, priority=FOO_BAR) == ["d", "b", "a", "c"]


# --- step 2: which pods wait for an update -----------------------------------------------


@pytest.mark.parametrize(
    ("candidate", "update_num", "waits"),
    [
        pytest.param(pod("o", OLD), 2, True, id="old pod waits"),
        pytest.param(pod("n", NEW), 2, False, id="new pod does not"),
        pytest.param(
            pod("n", "7f9d8c6b5d"), 2, False, id="label with the short hash is at the revision"
        ),
        pytest.param(pod("n", NEW), -1, True, id="rollback: new pod waits"),
        pytest.param(pod("o", OLD), -1, False, id="rollback: old pod does not"),
        pytest.param(pod("o", OLD), 0, False, id="update_num 0: none waits"),
        pytest.param(pod("o", OLD, state=PREPARING_DELETE), 2, False, id="PreparingDelete"),
        pytest.param(
            pod("o", OLD, annotations={INPLACE_GRACE_ANNOTATION: GRACE}),
            2,
            False,
            id="in the in-place update grace period",
        ),
        pytest.param(
            pod("o", OLD, annotations={INPLACE_GRACE_ANNOTATION: ""}),
            2,
            True,
            id="empty grace annotation: not in grace",
        ),
        pytest.param(
            pod("o", OLD, state=UPDATED, annotations={INPLACE_GRACE_ANNOTATION: GRACE}),
            2,
            True,
            id="Updated state waits even in grace",
        ),
        pytest.param(pod("o", OLD, state=""), 2, True, id="no lifecycle state"),
    ],
)
def test_waits_for_update(candidate: views_pb2.PodView, update_num: int, waits: bool) -> None:
    assert waits_for_update(candidate, update_num=update_num, update_revision=NEW) is waits


# --- steps 2 + 4: choose the pods to update ----------------------------------------------


def choose(
    pods: list[views_pb2.PodView],
    *,
    update_num: int,
    budget: int,
    min_ready_seconds: int = 0,
) -> list[str]:
    wait = functools.partial(waits_for_update, update_num=update_num, update_revision=NEW)
    order = update_order(pods, priority=None, scatter=(), waiting=wait)
    return names(
        choose_for_update(
            order,
            pods=pods,
            update_num=update_num,
            update_max_unavailable=budget,
            update_revision=NEW,
            current_revision=OLD,
            min_ready_seconds=min_ready_seconds,
            now_ms=NOW,
        )
    )


@pytest.mark.parametrize(
    ("pods", "update_num", "budget", "expected"),
    [
        pytest.param(
            [pod("n1", NEW, ready=False), pod("o1", ready=False), pod("o2"), pod("o3"), pod("o4")],
            4,
            2,
            ["o1"],
            id="R5 U2 (docstring): 1 unavailable new pod + o1 chosen reach 2 at o2",
        ),
        pytest.param(
            [pod("o1", ready=False), pod("o2"), pod("o3"), pod("o4")],
            4,
            2,
            ["o1", "o2"],
            id="R4 U2: unavailable o1 is free, o2 takes unavailable to 2, o3 stops",
        ),
        pytest.param(
            [pod(f"o{i}") for i in range(5)],
            2,
            5,
            ["o0", "o1"],
            id="truncated to update_num 2",
        ),
        pytest.param(
            [pod("o1", ready=False), pod("o2")],
            2,
            1,
            ["o1"],
            id="budget 1 already used by o1: o1 still updates, o2 waits",
        ),
        pytest.param(
            [pod("n1", NEW, ready=False), pod("n2", NEW, ready=False), pod("o1"), pod("o2")],
            2,
            2,
            [],
            id="two unavailable new pods fill a budget of 2",
        ),
        pytest.param(
            [pod("o1"), pod("o2")],
            2,
            0,
            [],
            id="budget 0: nothing updates",
        ),
        pytest.param(
            [pod("n1", NEW), pod("n2", NEW), pod("n3", NEW), pod("o1", ready=False)],
            -2,
            2,
            ["n1"],
            id="rollback -2: unavailable old pod counts against the current revision",
        ),
        pytest.param(
            [pod("o1", state=PREPARING_DELETE), pod("o2")],
            2,
            5,
            ["o2"],
            id="PreparingDelete pod is not updated",
        ),
        pytest.param(
            [pod("o1", annotations={INPLACE_GRACE_ANNOTATION: GRACE}), pod("o2")],
            2,
            5,
            ["o2"],
            id="pod in the grace period is not updated",
        ),
        pytest.param(
            [pod("o2", state=UPDATED, annotations={INPLACE_GRACE_ANNOTATION: GRACE}), pod("o1")],
            2,
            1,
            ["o2"],
            id="Updated pod (unavailable, so free) updates despite grace",
        ),
        pytest.param(
            [pod("o1"), pod("o2"), pod("o3")],
            0,
            5,
            [],
            id="update_num 0",
        ),
    ],
)
def test_choose_for_update(
    pods: list[views_pb2.PodView], update_num: int, budget: int, expected: list[str]
) -> None:
    assert choose(pods, update_num=update_num, budget=budget) == expected


def test_choose_for_update_min_ready_seconds() -> None:
    pods = [pod("o1"), pod("o2", ready_since_ms=NOW - 5 * SECOND), pod("o3")]
    # Ready 5 s of minReadySeconds 10: o2 is unavailable, sorts first (readied last) and
    # is free; the budget of 1 is then spent.
    assert choose(pods, update_num=3, budget=1, min_ready_seconds=10) == ["o2"]
    # Without minReadySeconds o2 is available: it still sorts first and uses the budget.
    assert choose(pods, update_num=3, budget=1) == ["o2"]
    assert choose(pods, update_num=3, budget=2, min_ready_seconds=10) == ["o2", "o1"]


# --- scale-in order (ActivePodsWithRanks) ------------------------------------------------


def deletion_order(pods: list[views_pb2.PodView], *, min_ready_seconds: int = 0) -> list[str]:
    return names(scale_in_order(pods, min_ready_seconds=min_ready_seconds, now_ms=NOW))


@pytest.mark.parametrize(
    ("first", "second", "min_ready_seconds"),
    [
        pytest.param(
            pod("unassigned", node="", phase="Pending", ready=False),
            pod("pending", phase="Pending", ready=False),
            0,
            id="unassigned before assigned",
        ),
        pytest.param(
            pod("pending", phase="Pending", ready=False),
            pod("running", ready=False),
            0,
            id="Pending before Running",
        ),
        pytest.param(
            pod("fresh", ready_since_ms=NOW - 5 * SECOND, cost="100"),
            pod("settled"),
            10,
            id="not available (ready 5 s of 10) before available, whatever the cost",
        ),
        pytest.param(
            pod("preparing", state=PREPARING_UPDATE, cost="100"),
            pod("normal"),
            0,
            id="not available (PreparingUpdate) before available",
        ),
        pytest.param(
            pod("settled"),
            pod("fresh", ready_since_ms=NOW - 5 * SECOND, cost="100"),
            0,
            id="both available: lower deletion cost first",
        ),
        pytest.param(
            pod("cheap", cost="-5"),
            pod("unset"),
            0,
            id="negative deletion cost before unset (0)",
        ),
        pytest.param(
            pod("ready-now", ready_since_ms=NOW),
            pod("ready-then", ready_since_ms=THEN),
            0,
            id="more recently ready first",
        ),
        pytest.param(
            pod("crashy", restarts=3),
            pod("steady"),
            0,
            id="more restarts first",
        ),
        pytest.param(
            pod("young", created_ms=NOW),
            pod("old", created_ms=THEN),
            0,
            id="newer first",
        ),
    ],
)
def test_scale_in_order(
    first: views_pb2.PodView, second: views_pb2.PodView, min_ready_seconds: int
) -> None:
    expected = [first.meta.name, second.meta.name]
    assert deletion_order([second, first], min_ready_seconds=min_ready_seconds) == expected
    assert deletion_order([first, second], min_ready_seconds=min_ready_seconds) == expected


def test_scale_in_order_crowded_node_first() -> None:
    # Same-node ranks: n3 holds three pods (ranks 2, 1, 0), n1 and n2 one each.
    pods = [pod("a", node="n1"), pod("b", node="n3"), pod("c", node="n2"), pod("d", node="n3")]
    pods.append(pod("e", node="n3"))
    assert deletion_order(pods) == ["b", "d", "a", "c", "e"]
    # The deletion cost still comes before the rank.
    pods[1].meta.annotations[DELETION_COST_ANNOTATION] = "1"
    pods[3].meta.annotations[DELETION_COST_ANNOTATION] = "1"
    assert deletion_order(pods) == ["e", "a", "c", "b", "d"]


@pytest.mark.parametrize(
    ("value", "cost"),
    [
        pytest.param("10", 10, id="10"),
        pytest.param("-5", -5, id="-5"),
        pytest.param("0", 0, id="0"),
        pytest.param("-0", 0, id="-0"),
        pytest.param("-2147483648", -(2**31), id="int32 min"),
        pytest.param("2147483648", 0, id="int32 overflow"),
        pytest.param("+1", 0, id="plus sign"),
        pytest.param("007", 0, id="leading zeros"),
        pytest.param("1.5", 0, id="not an integer"),
        pytest.param("1_000", 0, id="underscores"),
        pytest.param("-", 0, id="bare minus"),
        pytest.param("", 0, id="empty"),
        pytest.param(None, 0, id="unset"),
    ],
)
def test_deletion_cost(value: str | None, cost: int) -> None:
    assert deletion_cost(pod("p", cost=value)) == cost


def test_same_node_ranks() -> None:
    # OpenKruise's TestSameNodeRanker: node a: 0, 4, 10; b: 3, 6; c: 5; d: 7, 8, 9.
    nodes = ["a", "", "", "b", "a", "c", "b", "d", "d", "d", "a"]
    pods = [pod(str(i), node=n) for i, n in enumerate(nodes)]
    ranks = deletion_ranks(pods)
    assert {p.meta.name: r for p, r in zip(pods, ranks, strict=True) if r} == {
        "0": 2,
        "4": 1,
        "3": 1,
        "7": 2,
        "8": 1,
    }


NODE_LABELS: dict[str, dict[str, str]] = {"a": {}} | {
    node: {HOSTNAME_LABEL: node, ZONE_LABEL: zone}
    for node, zone in [
        ("b", "z1"),
        ("c", "z1"),
        ("d", "z1"),
        ("e", "z2"),
        ("f", "z2"),
        ("g", "z2"),
        ("h", "z3"),
        ("i", "z3"),
    ]
}
SPREAD_PODS = [
    pod(f"{node}-{i}", node=node)
    for node, count in [("a", 2), ("b", 2), ("c", 3), ("d", 5), ("e", 5), ("f", 3), ("i", 5)]
    for i in range(count)
]


@pytest.mark.parametrize(
    ("constraints", "expected"),
    [
        pytest.param(
            [SpreadConstraint(ZONE_LABEL)],
            "d-0 d-1 c-0 e-0 d-2 e-1 b-0 e-2 c-1 f-0 i-0 d-3 e-3 i-1 b-1 f-1 i-2 c-2 e-4 i-3"
            " d-4 f-2 i-4",
            id="zone: z1 (10 pods) gives up pods first, crowded nodes first within it",
        ),
        pytest.param(
            [SpreadConstraint(ZONE_LABEL, frozenset({"z2", "z3"}))],
            "e-0 e-1 e-2 f-0 i-0 e-3 i-1 f-1 i-2 e-4 i-3 f-2 i-4",
            id="zone limited to z2, z3: z1 and node a are not ranked",
        ),
        pytest.param(
            [SpreadConstraint(ZONE_LABEL), SpreadConstraint(HOSTNAME_LABEL)],
            "d-0 e-0 d-1 e-1 c-0 i-0 d-2 e-2 i-1 f-0 b-0 c-1 i-2 d-3 e-3 f-1 i-3 b-1 c-2 e-4"
            " d-4 f-2 i-4",
            id="zone, then host (host ranks without the same-node ranker)",
        ),
    ],
)
def test_spread_constraint_ranks(constraints: list[SpreadConstraint], expected: str) -> None:
    # OpenKruise's TestSpreadConstraintsRanker: the ranked pods, higher rank first, ties
    # in pod order; node a has no labels, so its pods are never ranked.
    ranks = deletion_ranks(SPREAD_PODS, spread=constraints, node_labels=NODE_LABELS)
    ranked = [(r, p.meta.name) for p, r in zip(SPREAD_PODS, ranks, strict=True) if r > 0]
    ranked.sort(key=lambda t: -t[0])
    assert " ".join(name for _, name in ranked) == expected


def test_spread_constraints_of_template() -> None:
    template = {"spec": {"topologySpreadConstraints": [{"topologyKey": ZONE_LABEL}]}}
    assert spread_constraints_of(template) == (SpreadConstraint(ZONE_LABEL),)
    assert spread_constraints_of({"spec": {}}) == ()
    assert spread_constraints_of(None) == ()


def test_scale_in_uses_the_spread_ranker_when_constraints_are_set() -> None:
    pods = [pod("z1-a", node="b"), pod("z1-b", node="c"), pod("z2-a", node="e")]
    spread = [SpreadConstraint(ZONE_LABEL)]

    def order(pods: list[views_pb2.PodView], labels: Any) -> list[str]:
        return names(
            scale_in_order(pods, min_ready_seconds=0, now_ms=NOW, spread=spread, node_labels=labels)
        )

    # No node labels: nothing is ranked, the pods keep their order.
    assert order(pods, None) == ["z1-a", "z1-b", "z2-a"]
    # z1 holds two pods (ranks 2w, 1w), z2 one (1w): z1-a, then z1-b and z2-a tie.
    assert order(pods, NODE_LABELS) == ["z1-a", "z1-b", "z2-a"]
    # Reversed, z1's nodes are met c first: z1-b ranks 2w.
    assert order(pods[::-1], NODE_LABELS) == ["z1-b", "z2-a", "z1-a"]


# --- choose the victims (choosePodsToDelete + deleteReadyLimit) --------------------------


def victims(
    pods: list[views_pb2.PodView],
    *,
    scale_num: int,
    old: int = 0,
    limit: int = 10,
    min_ready_seconds: int = 0,
) -> list[str]:
    return names(
        choose_scale_in(
            pods,
            scale_num=scale_num,
            scale_num_old_revision=old,
            delete_ready_limit=limit,
            update_revision=NEW,
            min_ready_seconds=min_ready_seconds,
            now_ms=NOW,
        )
    )


OLD3_NEW2 = [pod("o0"), pod("n0", NEW), pod("o1"), pod("n1", NEW), pod("o2")]


@pytest.mark.parametrize(
    ("pods", "scale_num", "old", "limit", "expected"),
    [
        pytest.param(OLD3_NEW2, -2, -2, 10, ["o0", "o1"], id="old revision first: -2 of them"),
        pytest.param(
            OLD3_NEW2, -3, -1, 10, ["o0", "n0", "n1"], id="-3 with -1 old: 1 old, then 2 new"
        ),
        pytest.param(OLD3_NEW2, -2, 0, 10, ["n0", "n1"], id="no old part: new pods only"),
        pytest.param(
            OLD3_NEW2, -4, -5, 10, ["o0", "o1", "o2"], id="(quirk) old part >= all: only old go"
        ),
        pytest.param(OLD3_NEW2, 2, 0, 10, [], id="scaling out: no victims"),
        pytest.param(
            [pod("n0", NEW), pod("n1", NEW, ready=False), pod("n2", NEW), pod("n3", NEW)],
            -3,
            0,
            1,
            ["n1", "n0"],
            id="deleteReadyLimit 1: the not-ready victim and one ready one",
        ),
        pytest.param(
            [pod("n0", NEW), pod("n1", NEW, ready=False), pod("n2", NEW)],
            -2,
            0,
            0,
            ["n1"],
            id="deleteReadyLimit 0: only not-ready victims",
        ),
        pytest.param(
            [pod("n0", NEW, cost="100"), pod("n1", NEW, cost="-5"), pod("n2", NEW)],
            -1,
            0,
            10,
            ["n1"],
            id="lowest deletion cost goes",
        ),
        pytest.param(
            [
                pod("n0", NEW, node="n1"),
                pod("n1", NEW, node="n2"),
                pod("n2", NEW, node="n3"),
                pod("n3", NEW, node="n3"),
                pod("n4", NEW, node="n3"),
            ],
            -1,
            0,
            10,
            ["n2"],
            id="same node spread: a pod of the crowded node goes",
        ),
        pytest.param(
            [
                pod("o0", node="n1"),
                pod("o1", node="n2"),
                pod("n0", NEW, node="n2"),
                pod("n1", NEW, node="n2"),
            ],
            -1,
            -1,
            10,
            ["o0"],
            id="ranks count each revision group apart: new pods on n2 do not crowd old o1",
        ),
    ],
)
def test_choose_scale_in(
    pods: list[views_pb2.PodView], scale_num: int, old: int, limit: int, expected: list[str]
) -> None:
    assert victims(pods, scale_num=scale_num, old=old, limit=limit) == expected


def test_limit_ready_deletions_keeps_order() -> None:
    pods = [pod("r0"), pod("u0", ready=False), pod("r1"), pod("u1", state=PREPARING_DELETE)]
    assert names(limit_ready_deletions(pods, delete_ready_limit=1)) == ["r0", "u0", "u1"]
