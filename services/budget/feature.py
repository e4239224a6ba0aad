"""The budget service's feature: the status loop and the four webhooks over one cache.

    mutate-pods                     kruise.io/related-pub on pod CREATE    (object_webhooks)
    validate-podunavailablebudgets  SPEC 4.8                               (object_webhooks)
    validate-pods                   pod UPDATE / DELETE                    (pod_webhook)
    validate-pod-eviction           pods/eviction CREATE                   (pod_webhook)

The status loop (``controller``) and the admission path share one ``BudgetCommitter``,
so a status write of either starts from what the other wrote.
"""

from __future__ import annotations

from collections.abc import Mapping

from services.budget import object_webhooks
from services.budget.committer import BudgetCommitter
from services.budget.controller import BudgetController
from services.budget.pod_webhook import PodWebhook
from services.budget.workloads import WorkloadFinder
from services.kit.mesh import Handler
from services.kit.service import FeatureContext

LINGER_ENV = "KRUISE_MESH_BUDGET_LINGER_MS"


def linger_ms(env: Mapping[str, str]) -> float:
    """``KRUISE_MESH_BUDGET_LINGER_MS`` (unset or empty: 10; 0 turns lingering off)."""
    raw = env.get(LINGER_ENV, "").strip() or "10"
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 1000:
        raise ValueError(
            f"{LINGER_ENV} must be a number of milliseconds from 0 to 1000, got {raw!r}"
        )
    return value


class BudgetFeature:
    def __init__(self, context: FeatureContext) -> None:
        cache = context.mesh.cache
        cluster = context.cluster
        self.finder = WorkloadFinder(cache=cache, scales=cluster, objects=cluster)
        self.committer = BudgetCommitter(
            cache=cache, cluster=cluster, linger_s=linger_ms(context.env) / 1000
        )
        self.controller = BudgetController(
            cache=cache, cluster=cluster, finder=self.finder, committer=self.committer
        )
        self.pods = PodWebhook(
            cache=cache,
            finder=self.finder,
            committer=self.committer,
            pods=cluster,
            owns=context.mesh.owns,
        )
        context.mesh.add_listener(self.controller.on_event)
        context.mesh.add_snapshot_listener(self.controller.on_snapshot)
        self._handlers: dict[str, Handler] = {
            **object_webhooks.handlers(cache=cache, finder=self.finder),
            "validate-pods": self.pods.review,
            "validate-pod-eviction": self.pods.review,
        }

    @property
    def handlers(self) -> Mapping[str, Handler]:
        return self._handlers

    async def start(self) -> None:
        await self.controller.start()

    async def stop(self) -> None:
        await self.controller.stop()
