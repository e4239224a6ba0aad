"""RolloutService: CloneSet status with Kruise semantics, from the replica cache."""

from __future__ import annotations

import grpc

from kruise.common.v1 import mesh_pb2
from kruise.rollout.v1 import rollout_pb2, rollout_pb2_grpc
from services.kit.mesh import MeshServicer

CLONESET = mesh_pb2.KIND_CLONE_SET


class RolloutApi(rollout_pb2_grpc.RolloutServiceServicer):
    def __init__(self, mesh: MeshServicer) -> None:
        self.mesh = mesh

    async def GetRolloutStatus(
        self,
        request: rollout_pb2.GetRolloutStatusRequest,
        context: grpc.aio.ServicerContext[
            rollout_pb2.GetRolloutStatusRequest, rollout_pb2.GetRolloutStatusResponse
        ],
    ) -> rollout_pb2.GetRolloutStatusResponse:
        ref = request.ref
        if not ref.namespace or not ref.name:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, "ref.namespace and ref.name are required"
            )
        if ref.kind and ref.kind != "CloneSet":
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"ref.kind {ref.kind!r} is not supported: only CloneSet is",
            )
        view = self.mesh.cache.get(CLONESET, ref.namespace, ref.name)
        if view is None:
            await context.abort(
                grpc.StatusCode.NOT_FOUND, f"CloneSet {ref.namespace}/{ref.name} not found"
            )
        status = rollout_pb2.RolloutStatus(
            ref=rollout_pb2.WorkloadRef(
                api_version="apps.kruise.io/v1alpha1",
                kind="CloneSet",
                namespace=ref.namespace,
                name=ref.name,
            ),
            generation=view.meta.generation,
            resource_version=view.meta.resource_version,
            paused=view.update_strategy.paused,
            status=view.status,
        )
        if view.HasField("replicas"):
            status.spec_replicas = view.replicas
        if view.update_strategy.HasField("partition"):
            status.partition.CopyFrom(view.update_strategy.partition)
        return rollout_pb2.GetRolloutStatusResponse(status=status)


def register(mesh: MeshServicer, server: grpc.aio.Server) -> str:
    rollout_pb2_grpc.add_RolloutServiceServicer_to_server(RolloutApi(mesh), server)
    return "kruise.rollout.v1.RolloutService"
