"""Which replica of a service owns a namespace: one HashRing per service, kept current.

Sources of replica addresses: a static list (``--services``, parsed by
``parse_static_services``) or EndpointSlices in a cluster
(``services.gateway.discovery``). Both call ``Router.set_members``; listeners
(``services.gateway.sync.SyncManager``) hear of every ring that changed.

    router = Router(parse_static_services("placement=127.0.0.1:7101,127.0.0.1:7102"))
    router.owner("placement", "team-a")      # "127.0.0.1:7101" or "127.0.0.1:7102"
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Iterable, Mapping

from services.kit.ring import HashRing

log = logging.getLogger(__name__)

SERVICES = ("placement", "rollout", "budget")
# Services whose admission decisions hold on any replica (see ``Router.any_member``).
ROUTING_FREE = frozenset({"budget"})

RingListener = Callable[[str, HashRing], None]


def _check_address(address: str) -> str:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"bad replica address {address!r}: want host:port")
    return address


def parse_static_services(spec: str) -> dict[str, frozenset[str]]:
    """``"placement=h:1,h:2;budget=h:3"`` → ``{"placement": {"h:1", "h:2"}, "budget": {"h:3"}}``.

    Pure. Whitespace and empty parts are ignored; a service named twice gets the union
    of its lists; a malformed part raises ValueError naming it.
    """
    out: dict[str, set[str]] = {}
    for part in spec.split(";"):
        part = part.strip()
        if not part:
            continue
        name, sep, addresses = part.partition("=")
        name = name.strip()
        if not sep or not name:
            raise ValueError(f"bad --services part {part!r}: want service=host:port,...")
        members = out.setdefault(name, set())
        for address in addresses.split(","):
            if address.strip():
                members.add(_check_address(address.strip()))
    return {name: frozenset(members) for name, members in out.items()}


def parse_service_names(spec: str) -> dict[str, str]:
    """``"placement=kruise-mesh-placement,budget=kruise-mesh-budget"`` → mesh service → Service.

    Pure. Separators ``,`` or ``;``; the form of ``KRUISE_MESH_SERVICES`` in deploy/.
    """
    out: dict[str, str] = {}
    for part in spec.replace(";", ",").split(","):
        part = part.strip()
        if not part:
            continue
        name, sep, service = part.partition("=")
        if not sep or not name.strip() or not service.strip():
            raise ValueError(f"bad service mapping {part!r}: want service=ServiceName")
        out[name.strip()] = service.strip()
    return out


def format_address(ip: str, port: int) -> str:
    """``host:port``, with IPv6 literals bracketed as gRPC targets want them."""
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


class Router:
    """Per service, the ring of its replicas; change notifications to listeners."""

    def __init__(self, members: Mapping[str, Iterable[str]] | None = None) -> None:
        self._rings: dict[str, HashRing] = {}
        self._listeners: list[RingListener] = []
        for service, addresses in (members or {}).items():
            self._rings[service] = HashRing(addresses)

    def services(self) -> list[str]:
        return sorted(self._rings)

    def ring(self, service: str) -> HashRing:
        """The service's ring; an empty ring when no replica is known."""
        return self._rings.get(service) or HashRing(())

    def owner(self, service: str, namespace: str) -> str | None:
        """The replica address that owns ``namespace`` for ``service``; None if none."""
        ring = self._rings.get(service)
        return ring.owner(namespace) if ring is not None else None

    def any_member(self, service: str, namespace: str) -> str | None:
        """A random replica of ``service``, whoever owns ``namespace``, for the services in
        ``ROUTING_FREE``; the owner for the others.

        The ``--review-routing random`` test switch: it proves that the budget's decisions
        do not depend on routing (a replica that does not own a namespace reads what it
        needs through the cluster API and its writes carry their preconditions). Placement
        decides from its replica's cache, so its reviews keep going to the owner.
        """
        if service not in ROUTING_FREE:
            return self.owner(service, namespace)
        ring = self._rings.get(service)
        if ring is None or not ring.members:
            return None
        return random.choice(ring.members)

    def set_members(self, service: str, members: Iterable[str]) -> bool:
        """Replace the service's replicas; True (and listeners told) if the ring changed."""
        ring = HashRing(members)
        if self._rings.get(service) == ring:
            return False
        log.info("ring changed", extra={"service": service, "members": list(ring.members)})
        self._rings[service] = ring
        for listener in list(self._listeners):
            listener(service, ring)
        return True

    def add_listener(self, listener: RingListener) -> Callable[[], None]:
        """Call ``listener(service, ring)`` on every change; returns the remover."""
        self._listeners.append(listener)

        def remove() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return remove
