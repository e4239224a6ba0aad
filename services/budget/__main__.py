"""budget: PodUnavailableBudget (status loop, related-pub mutation, pod, eviction and
budget validation); see ``services.budget.feature``."""

from __future__ import annotations

from kruise.common.v1 import mesh_pb2
from services.budget import api
from services.budget.feature import BudgetFeature
from services.kit.service import ServiceSpec, main

SPEC = ServiceSpec(
    name="budget",
    kinds=[
        mesh_pb2.KIND_POD,
        mesh_pb2.KIND_POD_UNAVAILABLE_BUDGET,
        mesh_pb2.KIND_WORKLOAD,
        mesh_pb2.KIND_CLONE_SET,
    ],
    handlers={},
    extra=[api.register],
    feature=BudgetFeature,
)

if __name__ == "__main__":
    main(SPEC)
