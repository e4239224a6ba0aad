"""Table tests of the consistent-hash ring (services.kit.ring): balance and stability."""

from __future__ import annotations

from collections import Counter

import pytest

from services.kit.ring import HashRing

NAMESPACES = [f"team-{i}" for i in range(3000)]
THREE = ["10.0.0.1:7100", "10.0.0.2:7100", "10.0.0.3:7100"]


def test_three_members_share_3000_namespaces_within_35_percent() -> None:
    ring = HashRing(THREE)
    counts = Counter(ring.owner(ns) for ns in NAMESPACES)
    assert set(counts) == set(THREE)
    fair = len(NAMESPACES) / len(THREE)
    for member, count in counts.items():
        assert abs(count - fair) <= 0.35 * fair, (member, count)


def test_adding_a_fourth_member_moves_keys_only_to_it_about_a_quarter() -> None:
    before = HashRing(THREE)
    after = HashRing([*THREE, "10.0.0.4:7100"])
    moved = [ns for ns in NAMESPACES if before.owner(ns) != after.owner(ns)]
    assert all(after.owner(ns) == "10.0.0.4:7100" for ns in moved)
    assert 0.15 <= len(moved) / len(NAMESPACES) <= 0.35


@pytest.mark.parametrize(
    ("members", "key", "expected"),
    [
        pytest.param([], "team-a", None, id="empty ring owns nothing"),
        pytest.param(["only:1"], "team-a", "only:1", id="single member owns everything"),
        pytest.param(["b:1", "a:1", "a:1"], "team-a", None, id="duplicates collapse"),
    ],
)
def test_owner_corner_cases(members: list[str], key: str, expected: str | None) -> None:
    ring = HashRing(members)
    if expected is None and members:
        assert ring.members == ("a:1", "b:1") and ring.owner(key) in ring.members
    else:
        assert ring.owner(key) == expected


def test_removing_a_member_moves_only_its_keys() -> None:
    before = HashRing(THREE)
    after = HashRing(THREE[:2])
    for ns in NAMESPACES:
        if before.owner(ns) != THREE[2]:
            assert after.owner(ns) == before.owner(ns)


def test_ring_equality_is_membership() -> None:
    assert HashRing(["a:1", "b:1"]) == HashRing(["b:1", "a:1"])
    assert HashRing(["a:1"]) != HashRing(["a:1", "b:1"])
