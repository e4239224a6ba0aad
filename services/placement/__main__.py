"""placement: PersistentPodState (recording, pod CREATE mutation, validation).

Until the PersistentPodState feature lands, its webhooks admit everything.
"""

from __future__ import annotations

from kruise.common.v1 import mesh_pb2
from services.kit.mesh import allow_all
from services.kit.service import ServiceSpec, main
from services.placement import api

SPEC = ServiceSpec(
    name="placement",
    kinds=[
        mesh_pb2.KIND_POD,
        mesh_pb2.KIND_NODE,
        mesh_pb2.KIND_WORKLOAD,
        mesh_pb2.KIND_PERSISTENT_POD_STATE,
    ],
    handlers={"mutate-pods": allow_all, "validate-persistentpodstates": allow_all},
    extra=[api.register],
)

if __name__ == "__main__":
    main(SPEC)
