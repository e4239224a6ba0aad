"""A CloneSet deleted with ``--cascade=orphan`` and applied again (OpenKruise v1.2).

The orphan delete leaves the pods and the ControllerRevision ``web-<hash>`` behind without
their ownerReference. The re-applied CloneSet lists the revisions matching its selector
that are controlled by it or by no one (``history.ListControllerRevisions``), so it reuses
the orphaned revision for its unchanged template instead of failing to create it again
(and backing off forever, no pod, no status).
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from services.gateway.kube.client import KubeClient
from tests.e2e.conftest import ensure_namespace, eventually
from tests.e2e.test_cloneset import BASE, clone_set, create, get, patch, pods_of, ready

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]


def owners(obj: dict[str, Any]) -> list[str]:
    return [str(r.get("uid")) for r in obj["metadata"].get("ownerReferences") or []]


async def revisions_of(kube: KubeClient, namespace: str, app: str) -> list[dict[str, Any]]:
    listed = await kube.request_json(
        "GET",
        f"/apis/apps/v1/namespaces/{namespace}/controllerrevisions",
        query={"labelSelector": f"app={app}"},
    )
    return list(listed.get("items") or [])


async def test_reapplied_cloneset_reuses_its_orphaned_revision(kube: KubeClient) -> None:
    ns = "cs-orphan"
    await ensure_namespace(kube, ns)
    first = await create(kube, ns, clone_set("web", replicas=2))
    old_uid = first["metadata"]["uid"]

    async def ready_pods(count: int) -> bool:
        pods = await pods_of(kube, ns, "web")
        return len(pods) == count and all(ready(p) for p in pods)

    await eventually("2 ready pods", lambda: ready_pods(2), timeout=30)
    [rev] = await revisions_of(kube, ns, "web")
    revision_name, revision_uid = rev["metadata"]["name"], rev["metadata"]["uid"]
    # Scaled to 0 first: the sandbox orphans dependents without first marking the CloneSet
    # deleting (a real API server sets deletionTimestamp and the orphan finalizer before the
    # garbage collector touches them), so a CloneSet with pods could replace its orphaned
    # pods in that window. The orphaned pods' case is the service test's
    # (tests/service/test_rollout_orphans.py).
    await patch(kube, ns, "web", {"spec": {"replicas": 0}})
    await eventually("no pods", lambda: ready_pods(0), timeout=30)

    await kube.request(
        "DELETE",
        f"{BASE}/{ns}/clonesets/web",
        body=orjson.dumps({"propagationPolicy": "Orphan"}),
    )

    async def orphaned() -> bool:
        revs = await revisions_of(kube, ns, "web")
        return [r["metadata"]["uid"] for r in revs] == [revision_uid] and not owners(revs[0])

    await eventually("the revision is left without its ownerReference", orphaned)

    second = await create(kube, ns, clone_set("web", replicas=2))
    new_uid = second["metadata"]["uid"]
    assert new_uid != old_uid

    async def reached_replicas() -> bool:
        st = (await get(kube, ns, "web")).get("status") or {}
        return (
            st.get("observedGeneration") == 1
            and st.get("updateRevision") == revision_name
            and st.get("readyReplicas") == 2
            and st.get("updatedReplicas") == 2
            and await ready_pods(2)
        )

    await eventually("the re-applied CloneSet reaches its replicas", reached_replicas, timeout=30)
    pods = await pods_of(kube, ns, "web")
    assert all(owners(p) == [new_uid] for p in pods)
    assert {p["metadata"]["labels"]["controller-revision-hash"] for p in pods} == {revision_name}
    # Reused as it is: OpenKruise v1.2's CloneSet never adopts a revision (no ownerReference).
    [rev] = await revisions_of(kube, ns, "web")
    assert rev["metadata"]["uid"] == revision_uid and not owners(rev)
