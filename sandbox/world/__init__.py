"""The sandbox's small world: nodes, a scheduler, kubelets, StatefulSet and EndpointSlice
controllers and a volume binder.

Everything here is an ordinary HTTPS client of a Kubernetes API server (the sandbox's, or any
other), exactly like kubelet, kube-scheduler and kube-controller-manager::

    World
    ├── nodes.register_nodes      Node objects for each NodeSpec (Ready, addresses, capacity)
    ├── scheduler.Scheduler       pending pods -> POST pods/<name>/binding
    ├── kubelet.Kubelet           bound pods -> status (Running, IPs, Ready, readiness gates,
    │                             in-place image changes), deletionTimestamp -> DELETE grace 0
    ├── statefulset.StatefulSetController
    │                             StatefulSets -> pods, ControllerRevisions, status
    ├── endpointslice.EndpointSliceController
    │                             Services with a selector + their pods -> EndpointSlices
    │                             (ready / serving / terminating per pod, zones from nodes)
    └── volumes.VolumeBinder      Pending PersistentVolumeClaims -> status Bound (no storage)

One reflector (list+watch) per kind is shared by the components, as client-go's shared
informers are: pods, nodes, statefulsets, controllerrevisions, services, endpointslices and
persistentvolumeclaims.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime

from sandbox.world.client import ApiClient, Reflector
from sandbox.world.endpointslice import EndpointSliceController
from sandbox.world.kubelet import Kubelet
from sandbox.world.nodes import NodeSpec, default_nodes, register_nodes
from sandbox.world.scheduler import Scheduler
from sandbox.world.statefulset import StatefulSetController
from sandbox.world.volumes import VolumeBinder

__all__ = ["NodeSpec", "World", "default_nodes", "now_rfc3339"]


def now_rfc3339() -> str:
    """The current time as Kubernetes writes timestamps: ``2026-11-26T04:13:26Z``."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class World:
    """Starts and stops the world's controllers against the API server at ``api_url``."""

    def __init__(
        self,
        *,
        api_url: str,
        token: str,
        ca_file: str,
        nodes: list[NodeSpec] | None = None,
        kubelet_delay: float = 0.0,
        delete_delay: float = 0.05,
    ) -> None:
        self.nodes = list(nodes) if nodes is not None else default_nodes()
        self._client = ApiClient(api_url=api_url, token=token, ca_file=ca_file)
        client = self._client
        self.pods = Reflector(client=client, path="/api/v1/pods")
        self.node_reflector = Reflector(client=client, path="/api/v1/nodes")
        self.statefulsets = Reflector(client=client, path="/apis/apps/v1/statefulsets")
        self.revisions = Reflector(client=client, path="/apis/apps/v1/controllerrevisions")
        self.services = Reflector(client=client, path="/api/v1/services")
        self.endpointslices = Reflector(
            client=client, path="/apis/discovery.k8s.io/v1/endpointslices"
        )
        self.claims = Reflector(client=client, path="/api/v1/persistentvolumeclaims")
        self.scheduler = Scheduler(
            client=client, pods=self.pods, nodes=self.node_reflector, clock=now_rfc3339
        )
        self.kubelet = Kubelet(
            client=client,
            pods=self.pods,
            node_names=[n.name for n in self.nodes],
            clock=now_rfc3339,
            kubelet_delay=kubelet_delay,
            delete_delay=delete_delay,
        )
        self.statefulset_controller = StatefulSetController(
            client=client,
            sets=self.statefulsets,
            pods=self.pods,
            revisions=self.revisions,
            clock=now_rfc3339,
        )
        self.endpointslice_controller = EndpointSliceController(
            client=client,
            services=self.services,
            pods=self.pods,
            slices=self.endpointslices,
            nodes=self.node_reflector,
        )
        self.volume_binder = VolumeBinder(client=client, claims=self.claims)
        self._tasks: list[asyncio.Task[None]] = []
        self._started = False

    async def start(self) -> None:
        """Register the nodes, start the watches and controllers; return once caches synced."""
        if self._started:
            return
        self._started = True
        await register_nodes(self._client, self.nodes, now=now_rfc3339())
        reflectors = [
            self.node_reflector,
            self.revisions,
            self.statefulsets,
            self.services,
            self.endpointslices,
            self.claims,
            self.pods,
        ]
        for reflector in reflectors:
            self._tasks.append(asyncio.create_task(reflector.run()))
        self.scheduler.start()
        self.kubelet.start()
        self.statefulset_controller.start()
        self.endpointslice_controller.start()
        self.volume_binder.start()
        await asyncio.gather(*(r.synced.wait() for r in reflectors))

    async def stop(self) -> None:
        """Cancel every task and close the HTTP session. Idempotent."""
        await self.volume_binder.stop()
        await self.endpointslice_controller.stop()
        await self.statefulset_controller.stop()
        await self.kubelet.stop()
        await self.scheduler.stop()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        await self._client.close()

    async def __aenter__(self) -> World:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
