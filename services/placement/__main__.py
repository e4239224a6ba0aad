"""placement: PersistentPodState (recording, auto-generation, pod CREATE mutation, validation).

Settings beyond the common flags come from the environment:
``KRUISE_MESH_STATEFULSET_LIKE_KINDS`` (``group/version/Kind,...``) adds kinds a
PersistentPodState may target, as OpenKruise 1.4's custom-workload whitelist.
"""

from __future__ import annotations

from kruise.common.v1 import mesh_pb2
from services.kit.config import STATEFULSET_LIKE_KINDS_ENV, parse_statefulset_like_kinds
from services.kit.service import FeatureContext, ServiceSpec, main
from services.placement import api
from services.placement.controller import PlacementController
from services.placement.targets import TargetKinds


def build(context: FeatureContext) -> PlacementController:
    extra = parse_statefulset_like_kinds(context.env.get(STATEFULSET_LIKE_KINDS_ENV, ""))
    controller = PlacementController(
        cache=context.mesh.cache,
        cluster=context.cluster,
        kinds=TargetKinds.with_extra((k.group, k.kind) for k in extra),
    )
    context.mesh.add_listener(controller.on_event)
    context.mesh.add_snapshot_listener(controller.on_snapshot)
    return controller


SPEC = ServiceSpec(
    name="placement",
    kinds=[
        mesh_pb2.KIND_POD,
        mesh_pb2.KIND_NODE,
        mesh_pb2.KIND_WORKLOAD,
        mesh_pb2.KIND_PERSISTENT_POD_STATE,
    ],
    handlers={},
    extra=[api.register],
    feature=build,
)

if __name__ == "__main__":
    main(SPEC)
