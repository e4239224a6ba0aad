"""A pod relabelled out of its CloneSet's selector is released (OpenKruise's ``claimPods``):
its ownerReference to the CloneSet goes, it keeps running, and the CloneSet replaces it.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from services.gateway.kube.client import KubeClient
from tests.e2e.conftest import ensure_namespace, eventually
from tests.e2e.test_cloneset import all_ready, clone_set, create, pods_of

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]


def owners(pod: dict[str, Any]) -> list[str]:
    return [str(r.get("uid")) for r in pod["metadata"].get("ownerReferences") or []]


async def test_relabelled_pod_is_released_and_replaced(kube: KubeClient) -> None:
    ns = "cs-release"
    await ensure_namespace(kube, ns)
    cs = await create(kube, ns, clone_set("web", replicas=2))
    uid = cs["metadata"]["uid"]
    await eventually("2 ready pods", lambda: all_ready(kube, ns, "web", 2), timeout=30)
    victim = (await pods_of(kube, ns, "web"))[0]["metadata"]["name"]
    await kube.request(
        "PATCH",
        f"/api/v1/namespaces/{ns}/pods/{victim}",
        body=orjson.dumps({"metadata": {"labels": {"app": "web-debug"}}}),
        content_type="application/merge-patch+json",
    )

    async def released() -> bool:
        debug = await pods_of(kube, ns, "web-debug")
        return len(debug) == 1 and uid not in owners(debug[0])

    await eventually("the relabelled pod loses its ownerReference", released)
    await eventually("a replacement", lambda: all_ready(kube, ns, "web", 2), timeout=30)
    assert all(uid in owners(p) for p in await pods_of(kube, ns, "web"))
    debug = (await pods_of(kube, ns, "web-debug"))[0]
    assert debug["metadata"]["name"] == victim and not debug["metadata"].get("deletionTimestamp")
