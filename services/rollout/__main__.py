"""rollout: CloneSet scaling, updates, percentage partition and lifecycle hooks.

Until the CloneSet feature lands, its webhooks admit everything.
"""

from __future__ import annotations

from kruise.common.v1 import mesh_pb2
from services.kit.mesh import allow_all
from services.kit.service import ServiceSpec, main
from services.rollout import api

SPEC = ServiceSpec(
    name="rollout",
    kinds=[mesh_pb2.KIND_POD, mesh_pb2.KIND_CLONE_SET],
    handlers={"validate-clonesets": allow_all},
    extra=[api.register],
)

if __name__ == "__main__":
    main(SPEC)
