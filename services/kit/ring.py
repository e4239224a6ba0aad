"""A consistent-hash ring that assigns namespaces to service replicas.

Pure; no I/O. The gateway builds one ring per service from the replica
addresses it discovered, and routes both events and admission reviews for a
namespace to ``ring.owner(namespace)``. Adding or removing a replica moves only
the namespaces whose arc it gains or loses: with N replicas, about 1/N of them.

Each member is placed ``vnodes`` times on a 64-bit circle (blake2b of
``"<member>#<i>"``); a key belongs to the first point clockwise of its hash.

    >>> ring = HashRing(["10.0.0.1:7100", "10.0.0.2:7100"])
    >>> ring.owner("team-a") in ring.members
    True
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Iterable


def _point(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


class HashRing:
    """Members on a circle; ``owner(key)`` is stable while membership is."""

    __slots__ = ("_members", "_owners", "_points", "vnodes")

    def __init__(self, members: Iterable[str], *, vnodes: int = 128) -> None:
        self.vnodes = vnodes
        self._members = tuple(sorted(set(members)))
        placed = sorted(
            (_point(f"{member}#{i}"), member) for member in self._members for i in range(vnodes)
        )
        self._points = [point for point, _ in placed]
        self._owners = [member for _, member in placed]

    @property
    def members(self) -> tuple[str, ...]:
        return self._members

    def owner(self, key: str) -> str | None:
        """The member that owns ``key``, or None on an empty ring."""
        if not self._points:
            return None
        index = bisect.bisect(self._points, _point(key)) % len(self._points)
        return self._owners[index]

    def owns(self, member: str, key: str) -> bool:
        return self.owner(key) == member

    def __eq__(self, other: object) -> bool:
        return isinstance(other, HashRing) and other._members == self._members

    def __hash__(self) -> int:
        return hash(self._members)

    def __repr__(self) -> str:
        return f"HashRing({list(self._members)!r})"
