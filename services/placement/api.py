"""PlacementService: where PersistentPodStates recorded their pods, from the replica cache."""

from __future__ import annotations

import grpc

from kruise.common.v1 import mesh_pb2
from kruise.placement.v1 import placement_pb2, placement_pb2_grpc
from services.kit.mesh import MeshServicer
from services.placement.recording import placed_as_recorded

PPS = mesh_pb2.KIND_PERSISTENT_POD_STATE
POD = mesh_pb2.KIND_POD


class PlacementApi(placement_pb2_grpc.PlacementServiceServicer):
    def __init__(self, mesh: MeshServicer) -> None:
        self.mesh = mesh

    def _entries(
        self, namespace: str, pps_name: str, *, only_pod: str = ""
    ) -> list[placement_pb2.PodStateEntry]:
        entries = []
        for pps in self.mesh.cache.items(PPS, namespace):
            if pps_name and pps.meta.name != pps_name:
                continue
            for pod, state in sorted(pps.pod_states.items()):
                if only_pod and pod != only_pod:
                    continue
                entry = placement_pb2.PodStateEntry(
                    namespace=pps.meta.namespace,
                    persistent_pod_state=pps.meta.name,
                    pod=pod,
                    state=state,
                )
                current = self.mesh.cache.get(POD, namespace, pod)
                if current is not None:
                    entry.pod_exists = True
                    entry.current_node = current.node_name
                    entry.current_ip = current.pod_ip
                    entry.placed = placed_as_recorded(state, current)
                entries.append(entry)
        return entries

    async def ListPodStates(
        self,
        request: placement_pb2.ListPodStatesRequest,
        context: grpc.aio.ServicerContext[
            placement_pb2.ListPodStatesRequest, placement_pb2.ListPodStatesResponse
        ],
    ) -> placement_pb2.ListPodStatesResponse:
        if not request.namespace:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "namespace is required")
        return placement_pb2.ListPodStatesResponse(
            entries=self._entries(request.namespace, request.persistent_pod_state)
        )

    async def GetPodState(
        self,
        request: placement_pb2.GetPodStateRequest,
        context: grpc.aio.ServicerContext[
            placement_pb2.GetPodStateRequest, placement_pb2.GetPodStateResponse
        ],
    ) -> placement_pb2.GetPodStateResponse:
        if not request.namespace or not request.pod:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "namespace and pod are required")
        for entry in self._entries(request.namespace, "", only_pod=request.pod):
            return placement_pb2.GetPodStateResponse(entry=entry)
        await context.abort(
            grpc.StatusCode.NOT_FOUND,
            f"no PersistentPodState in {request.namespace} records pod {request.pod}",
        )
        raise AssertionError("unreachable")


def register(mesh: MeshServicer, server: grpc.aio.Server) -> str:
    placement_pb2_grpc.add_PlacementServiceServicer_to_server(PlacementApi(mesh), server)
    return "kruise.placement.v1.PlacementService"
