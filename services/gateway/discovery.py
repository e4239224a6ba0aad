"""Service replica discovery from EndpointSlices: list+watch → ``Router.set_members``.

Each mesh service (``placement``, ``rollout``, ``budget``) is a headless Service in
the mesh namespace (deploy/*.yaml); the EndpointSlice controller publishes its
ready pods. We watch ``discovery.k8s.io/v1`` EndpointSlices labelled
``kubernetes.io/service-name in (<services>)`` with the hub's ``Reflector`` and,
after every change, set each service's members to the union of its slices'
ready endpoints, on the port named ``grpc``.

``endpoints_from_slice`` and ``members_by_service`` are pure; the discovery loop
is a thin shell around them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from services.gateway.hub import Change, KubeApi, Reflector, ReflectorConfig
from services.gateway.routing import Router, format_address
from services.kit.projection import Json
from services.kit.tasks import stop_task

SERVICE_NAME_LABEL = "kubernetes.io/service-name"


@dataclass(frozen=True, slots=True)
class SliceEndpoints:
    """The ready gRPC addresses one EndpointSlice holds for one Service."""

    service: str  # the Kubernetes Service name (the slice's service-name label)
    addresses: frozenset[str]


def endpoints_from_slice(obj: Json, *, port_name: str = "grpc") -> SliceEndpoints:
    """Ready endpoints of a slice as ``host:port`` on the port named ``port_name``.

    Pure. An endpoint counts when ``conditions.ready`` is not false (Kubernetes: an
    absent ready condition means ready) and it is not terminating. A slice without
    that port contributes nothing.
    """
    labels = (obj.get("metadata") or {}).get("labels") or {}
    service = labels.get(SERVICE_NAME_LABEL, "")
    port = next((p.get("port") for p in obj.get("ports") or () if p.get("name") == port_name), None)
    if not isinstance(port, int):
        return SliceEndpoints(service, frozenset())
    out: set[str] = set()
    for endpoint in obj.get("endpoints") or ():
        conditions = endpoint.get("conditions") or {}
        if conditions.get("ready") is False or conditions.get("terminating") is True:
            continue
        for address in endpoint.get("addresses") or ():
            out.add(format_address(address, port))
    return SliceEndpoints(service, frozenset(out))


def members_by_service(
    slices: Iterable[SliceEndpoints], *, services: Mapping[str, str]
) -> dict[str, frozenset[str]]:
    """Mesh service → union of its slices' addresses (every service in ``services`` present).

    Pure. ``services`` maps mesh service name → Kubernetes Service name.
    """
    by_k8s_name: dict[str, set[str]] = {name: set() for name in services.values()}
    for s in slices:
        if s.service in by_k8s_name:
            by_k8s_name[s.service] |= s.addresses
    return {mesh: frozenset(by_k8s_name[k8s]) for mesh, k8s in services.items()}


class EndpointSliceDiscovery:
    """Keeps ``router`` in step with the EndpointSlices of the mesh's Services."""

    def __init__(
        self,
        kube: KubeApi,
        router: Router,
        *,
        namespace: str,
        services: Mapping[str, str],
        port_name: str = "grpc",
        config: ReflectorConfig | None = None,
    ) -> None:
        self.router = router
        self.services = dict(services)
        names = ",".join(sorted(set(self.services.values())))

        def project(obj: Json) -> SliceEndpoints:
            return endpoints_from_slice(obj, port_name=port_name)

        self.reflector: Reflector[SliceEndpoints] = Reflector(
            kube,
            api_version="discovery.k8s.io/v1",
            kind="EndpointSlice",
            project=project,
            on_changes=self._on_changes,
            namespace=namespace,
            label_selector=f"{SERVICE_NAME_LABEL} in ({names})",
            config=config or ReflectorConfig(),
        )
        self._task: asyncio.Task[None] | None = None

    def _on_changes(self, changes: list[Change[SliceEndpoints]]) -> None:
        del changes  # recompute from the whole cache: a handful of slices
        slices = [value for _, _, (_, value) in self.reflector.items()]
        for service, members in members_by_service(slices, services=self.services).items():
            self.router.set_members(service, members)

    async def start(self) -> None:
        self._task = asyncio.create_task(self.reflector.run(), name="endpointslice discovery")

    async def wait_synced(self) -> None:
        await self.reflector.synced.wait()

    async def stop(self) -> None:
        await stop_task(self._task)
        self._task = None
