"""An ``InPlaceOnly`` CloneSet whose template changes beyond images: ``FailedUpdate``.

The harness of ``test_rollout_conditions`` (a ``FakeApiServer`` keeping the CloneSet as the
API server would, status writes recorded), with every pod write and delete recorded too.

OpenKruise v1.2's ``updatePod`` answers a pod that ``InPlaceOnly`` cannot update in place
with the error "find Pod <name> update strategy is InPlaceOnly but can not update
in-place", which ``syncCloneSet`` writes as ``FailedUpdate``; the pod is neither updated
nor re-created, and the reconcile is retried with backoff until the template changes.

The fake API server runs no admission webhook: on a cluster the CloneSet webhook refuses a
non-image template change while the type is InPlaceOnly, so such a template arrives by a
change made under another type and the type switched afterwards (the e2e test does that).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from kruise.common.v1 import mesh_pb2
from services.kit.cluster import Ref, Written
from services.kit.projection import project_pod
from services.rollout.controller import RolloutController
from tests.service import test_rollout_conditions as conditions
from tests.service.test_rollout_conditions import NOW_MS, ScriptedBudget, failed

SPECIFIED_DELETE = "apps.kruise.io/specified-delete"


@dataclass
class RecordingApiServer(conditions.FakeApiServer):
    """``FakeApiServer`` that also records pod patches (name, kind, patch) and deletes."""

    pod_patches: list[tuple[str, str, Any]] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)

    async def patch(self, ref: Ref, **kw: Any) -> Written:
        if ref.kind == "Pod":
            self.pod_patches.append((ref.name, kw.get("kind", ""), kw.get("patch")))
        return await super().patch(ref, **kw)

    async def delete(self, ref: Ref, *, resource_version: str = "", uid: str = "") -> None:
        self.deleted.append(f"{ref.kind}/{ref.name}")


class Harness(conditions.Harness):
    """Two ready pods of an InPlaceOnly CloneSet (nginx:1), their status written."""

    def __init__(self) -> None:
        super().__init__(replicas=2)
        cs = conditions.clone_set_json(replicas=2, image="nginx:1")
        cs["spec"]["updateStrategy"] = {"type": "InPlaceOnly", "maxUnavailable": 1}
        self.api: RecordingApiServer = RecordingApiServer(cs)
        self.controller = RolloutController(
            cache=self.cache,
            cluster=self.api,
            budget=ScriptedBudget(),
            clock_ms=lambda: NOW_MS,
            rng=random.Random(7),
            retry_s=0.05,
            budget_retry_s=0.05,
        )
        self.watch()

    def show_created(self) -> None:
        """As the harness's, and each new pod's ``InPlaceUpdateReady`` True (the condition
        the controller's refresh step writes for the readiness gate it gave the pod)."""
        before = set(self.pods)
        super().show_created()
        for name in set(self.pods) - before:
            body = self.pods[name]
            body["metadata"]["resourceVersion"] = "6"
            body["status"]["conditions"].append({"type": "InPlaceUpdateReady", "status": "True"})
            self.put(mesh_pb2.KIND_POD, project_pod(body), conditions.MODIFIED)

    async def start(self) -> None:
        await self.round()
        self.watch()
        self.show_created()
        await self.round()
        assert self.api.clone_set["status"]["readyReplicas"] == 2
        self.watch()

    def template(self, *, image: str = "nginx:1", env: str | None = None) -> None:
        """``kubectl edit``: the container's image, and its env (None: no env)."""
        container: dict[str, Any] = {"name": "main", "image": image}
        if env is not None:
            container["env"] = [{"name": "MODE", "value": env}]
        self.api.clone_set["spec"]["template"]["spec"]["containers"] = [container]
        self.api.clone_set["metadata"]["generation"] += 1
        self.api.bump()
        self.watch()

    def recreated(self) -> list[str]:
        """Pods marked for re-create, or deleted (OpenKruise re-creates through both)."""
        marked = [name for name, _, patch in self.api.pod_patches if SPECIFIED_DELETE in str(patch)]
        return marked + [d for d in self.api.deleted if d.startswith("Pod/")]


async def failing_in_place_only() -> tuple[Harness, str]:
    """The template gains an env var: the first pod to update is the error, none written."""
    h = Harness()
    await h.start()
    h.template(env="debug")
    await h.round()
    [condition] = h.conditions()
    pod = condition["message"].split(" ")[2]
    assert pod in h.pods
    assert h.conditions() == [
        failed(
            "FailedUpdate",
            f"find Pod {pod} update strategy is InPlaceOnly but can not update in-place",
        )
    ]
    assert h.api.pod_patches == [], "no pod is updated"
    assert h.recreated() == [], "no pod is re-created"
    return h, pod


async def test_a_non_image_change_sets_failed_update_and_recreates_nothing() -> None:
    h, _ = await failing_in_place_only()
    written = h.written()
    h.show_created()  # the new revision reaches the cache
    for _ in range(3):  # retried: the same error, nothing new to write or do
        h.watch()
        await h.round()
    assert h.written() == written
    assert [c["type"] for c in h.conditions()] == ["FailedUpdate"]
    assert h.api.pod_patches == []
    assert h.recreated() == []
    assert h.api.clone_set["status"]["updatedReplicas"] == 0


async def test_reverting_the_template_clears_failed_update() -> None:
    h, _ = await failing_in_place_only()
    h.show_created()
    h.template()  # back to the pods' own template: nothing to update
    await h.round()
    assert h.conditions() == []
    assert h.api.pod_patches == []
    assert h.recreated() == []
    assert h.api.clone_set["status"]["updatedReplicas"] == 2


async def test_an_in_place_able_template_clears_failed_update() -> None:
    h, _ = await failing_in_place_only()
    h.show_created()
    h.template(image="nginx:2")  # env dropped, image changed: in place
    await h.round()
    assert h.conditions() == []
    assert h.recreated() == []
    [(name, _, ops), *_] = [p for p in h.api.pod_patches if p[1] == "json"]
    assert name in h.pods
    assert {"op": "replace", "path": "/spec/containers/0/image", "value": "nginx:2"} in ops
