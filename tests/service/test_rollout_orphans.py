"""A CloneSet re-applied after ``kubectl delete cloneset web --cascade=orphan``.

The orphan delete leaves the pods and the revision ``web-<hash>`` without ownerReferences.
The new CloneSet (another uid) counts the orphaned revision matching its selector as its
own (OpenKruise v1.2's ``ListControllerRevisions``) and reuses it: no revision create (it
would fail with AlreadyExists and back off forever), no adoption patch. It never adopts the
orphaned pods: it creates its own beside them and writes its status.

Same in-memory harness as ``test_rollout_controller``: events in, recorded writes out.
"""

from __future__ import annotations

from typing import Any

from kruise.common.v1 import mesh_pb2
from services.kit.cluster import Ref, Written
from services.kit.projection import project_clone_set, project_controller_revision
from tests.service.test_rollout_controller import MODIFIED, NS, Harness, clone_set_json

NEW_UID = "cs-uid-2"


async def test_reapplied_clone_set_reuses_the_orphaned_revision_beside_orphaned_pods() -> None:
    h = Harness()
    h.clone_set(replicas=2)
    created: list[dict[str, Any]] = []
    original = h.cluster.create

    async def capture(ref: Ref, obj: dict[str, Any]) -> Written:
        created.append(obj)
        return await original(ref, obj)

    h.cluster.create = capture  # type: ignore[method-assign]
    await h.round()
    [rev_body] = [o for o in created if o["kind"] == "ControllerRevision"]
    pod_bodies = [o for o in created if o["kind"] == "Pod"]
    h.revision(rev_body)
    for body in pod_bodies:
        h.pod(body)
    await h.round()
    rev_name = rev_body["metadata"]["name"]
    old_pods = sorted(b["metadata"]["name"] for b in pod_bodies)

    # kubectl delete cloneset web --cascade=orphan: the garbage collector strips the
    # ownerReferences (the CloneSet deleting meanwhile), then the CloneSet goes.
    deleting = clone_set_json(replicas=2, rv="20")
    deleting["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    h.put(mesh_pb2.KIND_CLONE_SET, project_clone_set(deleting), MODIFIED)
    for body in pod_bodies:
        body["metadata"].pop("ownerReferences")
        h.pod(body, rv="21")
    orphan = {**rev_body, "metadata": dict(rev_body["metadata"])}
    orphan["metadata"].pop("ownerReferences")
    orphan["metadata"].update(uid=f"rev-{rev_name}", resourceVersion="22")
    h.put(mesh_pb2.KIND_CONTROLLER_REVISION, project_controller_revision(orphan), MODIFIED)
    h.put(
        mesh_pb2.KIND_CLONE_SET,
        project_clone_set(deleting),
        mesh_pb2.WatchEvent.TYPE_DELETED,
    )
    await h.round()
    h.cluster.actions.clear()
    created.clear()

    # Applied again: the same spec, a new uid.
    again = clone_set_json(replicas=2, rv="30")
    again["metadata"]["uid"] = NEW_UID
    h.put(mesh_pb2.KIND_CLONE_SET, project_clone_set(again))
    await h.round()

    acts = h.cluster.actions
    assert [a for a in acts if a[1] == "ControllerRevision"] == [], (
        "reused as it is: neither created again nor adopted"
    )
    new_pods = h.cluster.pods("create")
    assert len(new_pods) == 2 and not set(new_pods) & set(old_pods)
    assert h.cluster.pods("patch") == [] and h.cluster.pods("delete") == [], (
        "the orphaned pods are left alone"
    )
    assert acts[-1][0] == "status"
    assert ("event", "SuccessfulCreate") in acts

    # Every new pod is the new CloneSet's and names the orphaned revision.
    for body in created:
        assert body["metadata"]["labels"]["controller-revision-hash"] == rev_name
        assert [r["uid"] for r in body["metadata"]["ownerReferences"]] == [NEW_UID]
    cs = h.controller.freshest(NS, "web")
    assert cs is not None and cs.meta.uid == NEW_UID
    assert [r.name for r in h.controller.stored_revisions(cs)] == [rev_name]


async def test_a_clone_set_deleted_and_made_again_is_not_held_by_the_old_ones_expectations() -> (
    None
):
    """``kubectl delete -f web.yaml && kubectl apply -f web.yaml`` before the first pods showed
    up: the creates the old CloneSet expected must not hold the new one (they are dropped with
    the CloneSet, as OpenKruise drops a deleted CloneSet's expectations)."""
    h = Harness()
    h.clone_set(replicas=2)
    await h.round()
    assert len(h.cluster.pods("create")) == 2  # expected, never seen in the cache
    gone = clone_set_json(replicas=2, rv="20")
    h.put(mesh_pb2.KIND_CLONE_SET, project_clone_set(gone), mesh_pb2.WatchEvent.TYPE_DELETED)
    h.cluster.actions.clear()
    # made again before any reconcile saw it gone (the queue holds the key once)
    again = clone_set_json(replicas=2, rv="30")
    again["metadata"]["uid"] = NEW_UID
    h.put(mesh_pb2.KIND_CLONE_SET, project_clone_set(again))
    await h.round()
    assert len(h.cluster.pods("create")) == 2
