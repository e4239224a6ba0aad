"""rollout: the CloneSet controller (scaling, re-create and in-place updates, percentage
partition, ``status.expectedUpdatedReplicas``, lifecycle hooks with markPodNotReady,
``volumeClaimTemplates``: a PersistentVolumeClaim per pod and template), its admission
webhooks, and the RolloutService API.

Settings beyond the common flags come from the environment:
``KRUISE_MESH_ROLLOUT_HANDOVER_S`` (default 6, above the 5 s write deadline): how long a
replica that gained a namespace waits before touching its pods (see
``services.rollout.controller``); 0 turns it off.
``KRUISE_MESH_ROLLOUT_UNFENCED=1``: for tests only, to see what the guards prevent (the
scenario of ``tests/e2e/test_rollout_sharding.py`` run with it): the writes go out without
the ``kruise-mesh-fence`` identity, so the gateway carries them out whoever owns the
namespace. Never set it in a deployment.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from kruise.common.v1 import mesh_pb2
from services.kit.config import ROLLOUT_HANDOVER_ENV, ROLLOUT_UNFENCED_ENV
from services.kit.mesh import Handler
from services.kit.service import FeatureContext, FeatureServicer, ServiceSpec, main
from services.rollout import api, report
from services.rollout.budget_client import BudgetClient
from services.rollout.controller import RolloutController
from services.rollout.feed import StatusFeed

log = logging.getLogger(__name__)

HANDOVER_ENV = ROLLOUT_HANDOVER_ENV
UNFENCED_ENV = ROLLOUT_UNFENCED_ENV


def handover_s(env: Mapping[str, str]) -> float:
    """``KRUISE_MESH_ROLLOUT_HANDOVER_S`` (unset or empty: 6 seconds; 0 turns it off)."""
    raw = env.get(HANDOVER_ENV, "").strip() or "6"
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 300:
        raise ValueError(f"{HANDOVER_ENV} must be a number of seconds from 0 to 300, got {raw!r}")
    return value


def unfenced(env: Mapping[str, str]) -> bool:
    """``KRUISE_MESH_ROLLOUT_UNFENCED`` is ``1`` (tests only: the writes carry no fence)."""
    return env.get(UNFENCED_ENV, "").strip() == "1"


class RolloutFeature:
    def __init__(self, context: FeatureContext) -> None:
        self.budget = BudgetClient.connect(context.config.gateway, tls=context.tls)
        cluster = context.cluster
        if unfenced(context.env):
            log.warning("writes are not fenced (tests only)", extra={"env": UNFENCED_ENV})
        else:
            cluster = cluster.fenced(f"rollout/{context.config.advertise}")
        self.controller = RolloutController(
            cache=context.mesh.cache,
            cluster=cluster,
            budget=self.budget,
            owns=context.mesh.owns,
            handover_s=handover_s(context.env),
            requester=f"rollout {context.config.advertise}",
        )
        self.feed = StatusFeed(
            cache=context.mesh.cache,
            pods_of=self.controller.owned_pods,
            report=report.rollout_status,
            owns=context.mesh.owns,
            wait_indexed=self.controller.shell.wait_indexed,
        )
        self.api = api.RolloutApi(
            mesh=context.mesh,
            pods_of=self.controller.owned_pods,
            wait_indexed=self.controller.shell.wait_indexed,
            cluster=cluster,
            feed=self.feed,
        )
        # The controller first: the feed reads the pod index the controller keeps.
        context.mesh.add_listener(self.controller.on_event)
        context.mesh.add_snapshot_listener(self.controller.on_snapshot)
        context.mesh.add_listener(self.feed.on_event)
        context.mesh.add_snapshot_listener(self.feed.on_snapshot)

    @property
    def handlers(self) -> Mapping[str, Handler]:
        return self.controller.handlers

    def servicers(self) -> Sequence[FeatureServicer]:
        return [lambda server: api.register(self.api, server)]

    async def start(self) -> None:
        await self.controller.start()
        await self.feed.start()

    async def stop(self) -> None:
        await self.feed.stop()
        await self.controller.stop()
        await self.budget.close()


SPEC = ServiceSpec(
    name="rollout",
    kinds=[
        mesh_pb2.KIND_POD,
        mesh_pb2.KIND_CLONE_SET,
        mesh_pb2.KIND_CONTROLLER_REVISION,
        mesh_pb2.KIND_PERSISTENT_VOLUME_CLAIM,
    ],
    handlers={},
    feature=RolloutFeature,
)

if __name__ == "__main__":
    main(SPEC)
