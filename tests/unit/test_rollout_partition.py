"""CloneSet partition as a pod count, and expectedUpdatedReplicas (SPEC 2.2, 2.3).

Rows marked "tools_test" are OpenKruise's ``TestCalculatePartitionReplicas`` table
(``pkg/util/tools_test.go``), each once; the "derived" rows are SPEC 2.2's additions.
"""

from __future__ import annotations

import pytest

from services.rollout.partition import expected_updated_replicas, partition_replicas

NOT_A_PERCENTAGE = "invalid value for IntOrString: invalid type: string is not a percentage"


@pytest.mark.parametrize(
    ("replicas", "partition", "kept"),
    [
        pytest.param(0, "99%", 0, id="tools_test: 0 replicas, 99% keeps none"),
        pytest.param(10, None, 0, id="tools_test: no partition keeps none"),
        pytest.param(9, "99%", 8, id="tools_test: 9 replicas, 99% → ceil 9, one still updated"),
        pytest.param(10, "90%", 9, id="tools_test: 10 replicas, 90% keeps 9"),
        pytest.param(10, "1%", 1, id="tools_test: 10 replicas, 1% → ceil keeps one old pod"),
        pytest.param(99, "99%", 98, id="tools_test: 99 replicas, 99% → ceil 99, one updated"),
        pytest.param(99, "100%", 99, id="tools_test: 99 replicas, 100% keeps all"),
        pytest.param(99, "0%", 0, id="tools_test: 99 replicas, 0% keeps none"),
        pytest.param(None, "100%", 1, id="tools_test: replicas unset (1), 100% keeps it"),
        pytest.param(None, None, 0, id="tools_test: replicas and partition unset"),
        pytest.param(
            None, "1%", 1, id="tools_test: replicas unset (1), 1% keeps it (rule needs >1)"
        ),
        pytest.param(10, 5, 5, id="tools_test: int 5 of 10"),
        pytest.param(10, 1, 1, id="tools_test: int 1 of 10"),
        pytest.param(10, 0, 0, id="tools_test: int 0 of 10"),
        pytest.param(10, 10, 10, id="tools_test: int 10 of 10, no at-least-one rule for ints"),
        pytest.param(4, "99%", 3, id="derived: 4 replicas, 99% keeps 3 (the e2e)"),
        pytest.param(10, 15, 10, id="derived: int 15 of 10 is clamped to 10"),
        pytest.param(2, "50%", 1, id="derived: 2 replicas, 50% keeps 1"),
        pytest.param(2, "51%", 1, id="derived: 2 replicas, 51% → ceil 2, one still updated"),
        pytest.param(10, "30%", 3, id="derived: 10 replicas, 30% keeps 3"),
        pytest.param(1, "99%", 1, id="derived: 1 replica, 99% keeps it (rule needs >1)"),
        pytest.param(10, "0100%", 9, id="derived: only '100%' written exactly keeps all"),
        pytest.param(10, "150%", 10, id="derived: 150% is clamped to replicas"),
        pytest.param(10, -3, 0, id="derived: a negative int is clamped to 0"),
    ],
)
def test_partition_replicas(replicas: int | None, partition: int | str | None, kept: int) -> None:
    assert partition_replicas(partition, replicas) == kept


@pytest.mark.parametrize(
    ("replicas", "partition", "message"),
    [
        pytest.param(9, "99", NOT_A_PERCENTAGE, id="tools_test: '99' without % is an error"),
        pytest.param(
            10,
            "5.5%",
            'invalid value for IntOrString: invalid value "5.5%": '
            'strconv.Atoi: parsing "5.5": invalid syntax',
            id="derived: a fractional percent is an error in v1.2",
        ),
    ],
)
def test_partition_replicas_refuses(replicas: int, partition: str, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        partition_replicas(partition, replicas)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("replicas", "partition", "revisions", "expected"),
    [
        pytest.param(10, "30%", ("v2", "v1"), 7, id="replicas 10, partition 30% → 7 updated"),
        pytest.param(4, "99%", ("v2", "v1"), 1, id="replicas 4, partition 99% → 1 (the e2e)"),
        pytest.param(5, 2, ("v2", "v1"), 3, id="replicas 5, partition 2 → 3"),
        pytest.param(5, None, ("v2", "v1"), 5, id="no partition → all 5"),
        pytest.param(5, 9, ("v2", "v1"), 0, id="partition above replicas → none"),
        pytest.param(10, "30%", ("v2", "v2"), 10, id="revisions equal → spec.replicas"),
        pytest.param(5, "50", ("v2", "v1"), 0, id="invalid partition → 0 (left unset)"),
        pytest.param(5, "50", ("v2", "v2"), 5, id="invalid partition, revisions equal → 5"),
        pytest.param(None, "100%", ("v2", "v1"), 0, id="replicas unset (1), 100% → 0"),
        pytest.param(None, None, ("v2", "v2"), 1, id="replicas unset, revisions equal → 1"),
    ],
)
def test_expected_updated_replicas(
    replicas: int | None, partition: int | str | None, revisions: tuple[str, str], expected: int
) -> None:
    update, current = revisions
    assert (
        expected_updated_replicas(
            replicas=replicas,
            partition=partition,
            update_revision=update,
            current_revision=current,
        )
        == expected
    )
