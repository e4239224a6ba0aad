"""An ``InPlaceOnly`` CloneSet whose pods cannot be updated in place, end to end.

The CloneSet webhook refuses a change beyond images while the type is InPlaceOnly, so the
change arrives as a user would make it: under InPlaceIfPossible with the update paused,
then the type switched back to InPlaceOnly. OpenKruise v1.2 then answers the first pod to
update with "find Pod <name> update strategy is InPlaceOnly but can not update in-place"
as ``FailedUpdate``, updates and re-creates nothing, and retries; reverting the template
(switching the type to make the edit) removes the condition, still with the same pods.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest

from services.gateway.kube.client import KubeClient
from services.kit import errors
from tests.e2e.conftest import ensure_namespace, eventually
from tests.e2e.test_cloneset import all_ready, clone_set, create, get, patch, pods_of

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

NS = "cs-in-place-only"
IMAGE = "nginx:1.27"
MESSAGE = re.compile(
    r"find Pod (web-\w+) update strategy is InPlaceOnly but can not update in-place"
)


def containers(*, env: str | None) -> dict[str, Any]:
    main: dict[str, Any] = {"name": "main", "image": IMAGE}
    if env is not None:
        main["env"] = [{"name": "MODE", "value": env}]
    return {"template": {"spec": {"containers": [main]}}}


def failed_update(cs: dict[str, Any]) -> dict[str, Any] | None:
    found = (cs.get("status") or {}).get("conditions") or []
    return next((c for c in found if c.get("type") == "FailedUpdate"), None)


async def live_pods(kube: KubeClient) -> dict[str, dict[str, Any]]:
    return {p["metadata"]["name"]: p for p in await pods_of(kube, NS, "web")}


async def test_in_place_only_that_cannot_update_in_place_sets_failed_update(
    kube: KubeClient,
) -> None:
    await ensure_namespace(kube, NS)
    update = {"type": "InPlaceOnly", "maxUnavailable": 1}
    await create(kube, NS, clone_set("web", replicas=2, image=IMAGE, update=update))
    await eventually("2 ready pods", lambda: all_ready(kube, NS, "web", 2), timeout=30)
    before = {name: p["metadata"]["uid"] for name, p in (await live_pods(kube)).items()}

    with pytest.raises(errors.Invalid) as refused:
        await patch(kube, NS, "web", {"spec": containers(env="debug")})
    assert "only allowed to update images in spec for InPlaceOnly" in str(refused.value)

    held = {"type": "InPlaceIfPossible", "paused": True}
    await patch(kube, NS, "web", {"spec": {"updateStrategy": held, **containers(env="debug")}})
    await patch(kube, NS, "web", {"spec": {"updateStrategy": {"type": "InPlaceOnly"}}})
    await patch(kube, NS, "web", {"spec": {"updateStrategy": {"paused": False}}})

    async def failing() -> bool:
        return failed_update(await get(kube, NS, "web")) is not None

    await eventually("FailedUpdate in the status", failing, timeout=30)
    cs = await get(kube, NS, "web")
    condition = failed_update(cs)
    assert condition is not None
    assert set(condition) == {"type", "status", "lastTransitionTime", "message"}
    assert condition["status"] == "True"
    matched = MESSAGE.fullmatch(condition["message"])
    assert matched is not None, condition["message"]
    assert matched.group(1) in before

    await asyncio.sleep(3)  # retried meanwhile: still nothing updated or re-created
    pods = await live_pods(kube)
    assert {name: p["metadata"]["uid"] for name, p in pods.items()} == before
    for p in pods.values():
        assert not p["metadata"].get("deletionTimestamp")
        assert "apps.kruise.io/specified-delete" not in p["metadata"].get("labels", {})
        assert "env" not in p["spec"]["containers"][0]
    cs = await get(kube, NS, "web")
    assert failed_update(cs) is not None
    assert cs["status"]["updatedReplicas"] == 0

    # Revert the template (the webhook wants the type switched for that edit).
    back = {"updateStrategy": {"type": "InPlaceIfPossible"}, **containers(env=None)}
    await patch(kube, NS, "web", {"spec": back})

    async def cleared() -> bool:
        cs = await get(kube, NS, "web")
        return failed_update(cs) is None and cs["status"].get("updatedReplicas") == 2

    await eventually("FailedUpdate gone, both pods at the update revision", cleared, timeout=30)
    pods = await live_pods(kube)
    assert {name: p["metadata"]["uid"] for name, p in pods.items()} == before
