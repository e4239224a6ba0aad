"""BudgetService: PodUnavailableBudget status as the owning replica sees it."""

from __future__ import annotations

import grpc

from kruise.budget.v1 import budget_pb2, budget_pb2_grpc
from kruise.common.v1 import mesh_pb2
from services.kit.mesh import MeshServicer

PUB = mesh_pb2.KIND_POD_UNAVAILABLE_BUDGET


class BudgetApi(budget_pb2_grpc.BudgetServiceServicer):
    def __init__(self, mesh: MeshServicer) -> None:
        self.mesh = mesh

    async def GetBudget(
        self,
        request: budget_pb2.GetBudgetRequest,
        context: grpc.aio.ServicerContext[
            budget_pb2.GetBudgetRequest, budget_pb2.GetBudgetResponse
        ],
    ) -> budget_pb2.GetBudgetResponse:
        if not request.namespace or not request.name:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "namespace and name are required")
        view = self.mesh.cache.get(PUB, request.namespace, request.name)
        if view is None:
            await context.abort(
                grpc.StatusCode.NOT_FOUND,
                f"PodUnavailableBudget {request.namespace}/{request.name} not found",
            )
        return budget_pb2.GetBudgetResponse(budget=view)


def register(mesh: MeshServicer, server: grpc.aio.Server) -> str:
    budget_pb2_grpc.add_BudgetServiceServicer_to_server(BudgetApi(mesh), server)
    return "kruise.budget.v1.BudgetService"
