"""The CloneSet controller releases a pod whose labels no longer match its selector
(OpenKruise's ``claimPods``), and only then replaces it; orphans are never adopted.

Same in-memory harness as ``test_rollout_controller``: events in, recorded writes out.
"""

from __future__ import annotations

from typing import Any

import orjson

from kruise.common.v1 import mesh_pb2
from tests.service.test_rollout_controller import NS, Harness, _start


def _pods(h: Harness) -> list[dict[str, Any]]:
    return [
        {
            "metadata": {
                "name": p.meta.name,
                "namespace": NS,
                "labels": dict(p.meta.labels),
                "ownerReferences": [
                    {
                        "apiVersion": r.api_version,
                        "kind": r.kind,
                        "name": r.name,
                        "uid": r.uid,
                        "controller": r.controller,
                    }
                    for r in p.meta.owner_references
                ],
            },
            "spec": {"containers": [{"name": "main", "image": "nginx:1"}]},
        }
        for p in h.cache.items(mesh_pb2.KIND_POD, NS)
    ]


async def test_a_relabelled_pod_is_released_then_replaced() -> None:
    h = Harness()
    await _start(h, 2)
    assert len(h.cluster.pods("create")) == 2
    first = sorted(_pods(h), key=lambda b: b["metadata"]["name"])[0]
    name = first["metadata"]["name"]
    h.cluster.actions.clear()

    # The user takes the pod out for debugging: app=debug.
    first["metadata"]["labels"]["app"] = "debug"
    h.pod(first, rv="6")
    await h.round()
    patches = [a for a in h.cluster.actions if a[0] == "patch"]
    assert patches == [("patch", "Pod", name, "", "json")]
    assert h.cluster.pods("create") == [], "nothing is created while the release is in flight"

    # The watch shows it unowned: the CloneSet is reconciled and replaces it.
    h.cluster.actions.clear()
    first["metadata"]["ownerReferences"] = []
    h.pod(first, rv="7")
    await h.round()
    assert len(h.cluster.pods("create")) == 1
    assert [a for a in h.cluster.actions if a[0] == "patch"] == []


async def test_orphans_and_other_controllers_pods_are_never_touched() -> None:
    h = Harness()
    await _start(h, 1)
    h.cluster.actions.clear()
    orphan = {
        "metadata": {"name": "stray", "namespace": NS, "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "main", "image": "nginx:1"}]},
    }
    foreign = orjson.loads(orjson.dumps(orphan))
    foreign["metadata"]["name"] = "foreign"
    foreign["metadata"]["labels"]["app"] = "other"
    foreign["metadata"]["ownerReferences"] = [
        {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "name": "rs",
            "uid": "rs",
            "controller": True,
        }
    ]
    h.pod(orphan)
    h.pod(foreign)
    await h.round()
    touched = {a[2] for a in h.cluster.actions if a[0] in ("patch", "delete", "create")}
    assert not touched & {"stray", "foreign"}
    assert h.cluster.pods("create") == []
