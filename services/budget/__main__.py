"""budget: PodUnavailableBudget (status loop, pod and eviction validation).

Until the PodUnavailableBudget feature lands, its webhooks admit everything.
"""

from __future__ import annotations

from kruise.common.v1 import mesh_pb2
from services.budget import api
from services.kit.mesh import allow_all
from services.kit.service import ServiceSpec, main

SPEC = ServiceSpec(
    name="budget",
    kinds=[mesh_pb2.KIND_POD, mesh_pb2.KIND_POD_UNAVAILABLE_BUDGET, mesh_pb2.KIND_WORKLOAD],
    handlers={
        "mutate-pods": allow_all,
        "validate-pods": allow_all,
        "validate-pod-eviction": allow_all,
        "validate-podunavailablebudgets": allow_all,
    },
    extra=[api.register],
)

if __name__ == "__main__":
    main(SPEC)
