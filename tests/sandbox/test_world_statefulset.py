"""Unit tests for the world StatefulSet controller's pure decisions, as scenario steps."""

from __future__ import annotations

from typing import Any

import pytest

from sandbox.world.statefulset import (
    CreatePod,
    DeletePod,
    compute_status,
    new_pod,
    ordinal_of,
    plan,
    revision_hash,
    revision_object,
    revision_template,
    revisions_to_prune,
    safe_encode,
)

OLD, NEW = "web-old", "web-new"


def sts(
    replicas: int = 3,
    *,
    policy: str = "OrderedReady",
    strategy: str = "RollingUpdate",
    partition: int = 0,
) -> dict[str, Any]:
    update: dict[str, Any] = {"type": strategy}
    if strategy == "RollingUpdate":
        update["rollingUpdate"] = {"partition": partition}
    return {
        "metadata": {"name": "web", "namespace": "ns", "uid": "sts-uid", "generation": 4},
        "spec": {
            "replicas": replicas,
            "serviceName": "web",
            "podManagementPolicy": policy,
            "updateStrategy": update,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}, "annotations": {"a": "b"}},
                "spec": {"containers": [{"name": "nginx", "image": "nginx:1.27"}]},
            },
        },
    }


def p(ordinal: int, state: str = "ready", rev: str = NEW) -> dict[str, Any]:
    """A pod web-<ordinal>; state is ready, pending, terminating or failed."""
    meta: dict[str, Any] = {
        "name": f"web-{ordinal}",
        "uid": f"u{ordinal}",
        "labels": {"controller-revision-hash": rev},
    }
    status: dict[str, Any] = {"phase": "Pending"}
    if state in ("ready", "terminating"):
        status = {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}
    if state == "terminating":
        meta["deletionTimestamp"] = "2026-11-26T04:13:26Z"
    if state == "failed":
        status = {"phase": "Failed"}
    return {"metadata": meta, "status": status}


def create(ordinal: int, rev: str = NEW) -> CreatePod:
    return CreatePod(ordinal, rev)


def delete(ordinal: int, why: str) -> DeletePod:
    return DeletePod(f"web-{ordinal}", f"u{ordinal}", why)


@pytest.mark.parametrize(
    ("the_sts", "pods", "expected"),
    [
        # OrderedReady scale out 0 -> 3
        pytest.param(sts(), [], [create(0)], id="scale 0→3 creates web-0 first (step 1/4)"),
        pytest.param(sts(), [p(0, "pending")], [], id="scale 0→3 waits for web-0 Ready (step 2/4)"),
        pytest.param(sts(), [p(0)], [create(1)], id="scale 0→3 creates web-1 (step 3/4)"),
        pytest.param(sts(), [p(0), p(1), p(2)], [], id="scale 0→3 done (step 4/4)"),
        # re-create a pod that disappears
        pytest.param(sts(), [p(0), p(2)], [create(1)], id="deleted web-1 is re-created"),
        pytest.param(
            sts(), [p(0), p(1, "terminating"), p(2)], [], id="terminating web-1: wait for it"
        ),
        pytest.param(
            sts(), [p(0), p(1, "failed"), p(2)], [delete(1, "failed")], id="failed web-1 deleted"
        ),
        # OrderedReady scale in 3 -> 1
        pytest.param(
            sts(1),
            [p(0), p(1), p(2)],
            [delete(2, "scale-in")],
            id="scale 3→1 deletes web-2 first (step 1/3)",
        ),
        pytest.param(
            sts(1),
            [p(0), p(1), p(2, "terminating")],
            [],
            id="scale 3→1 waits for web-2 to go (step 2/3)",
        ),
        pytest.param(
            sts(1), [p(0), p(1)], [delete(1, "scale-in")], id="scale 3→1 deletes web-1 (step 3/3)"
        ),
        pytest.param(
            sts(1),
            [p(0), p(1, "pending"), p(2)],
            [delete(2, "scale-in")],
            id="scale in: healthy web-2 goes before the first unhealthy web-1",
        ),
        pytest.param(
            sts(1),
            [p(0), p(1), p(2, "pending"), p(3, "pending")],
            [],
            id="scale in: unhealthy web-3 waits behind unhealthy web-2",
        ),
        pytest.param(
            sts(1, policy="OrderedReady"),
            [p(0, "pending"), p(1)],
            [],
            id="scale in waits while a kept pod is not Ready",
        ),
        # Parallel
        pytest.param(
            sts(policy="Parallel"),
            [],
            [create(0), create(1), create(2)],
            id="parallel: all at once",
        ),
        pytest.param(
            sts(0, policy="Parallel"),
            [p(0), p(1, "pending"), p(2)],
            [delete(2, "scale-in"), delete(1, "scale-in"), delete(0, "scale-in")],
            id="parallel: scale to 0 deletes all at once",
        ),
        # RollingUpdate
        pytest.param(
            sts(),
            [p(0, rev=OLD), p(1, rev=OLD), p(2, rev=OLD)],
            [delete(2, "update")],
            id="rolling update deletes web-2 first (step 1/4)",
        ),
        pytest.param(
            sts(),
            [p(0, rev=OLD), p(1, rev=OLD)],
            [create(2)],
            id="rolling update re-creates web-2 at the new revision (step 2/4)",
        ),
        pytest.param(
            sts(),
            [p(0, rev=OLD), p(1, rev=OLD), p(2, "pending")],
            [],
            id="rolling update waits for web-2 Ready (step 3/4)",
        ),
        pytest.param(
            sts(),
            [p(0, rev=OLD), p(1, rev=OLD), p(2)],
            [delete(1, "update")],
            id="rolling update then deletes web-1 (step 4/4)",
        ),
        pytest.param(
            sts(partition=2),
            [p(0, rev=OLD), p(1, rev=OLD), p(2)],
            [],
            id="partition=2 keeps web-0 and web-1 on the old revision",
        ),
        pytest.param(
            sts(partition=2),
            [p(0, rev=OLD), p(2)],
            [create(1, OLD)],
            id="partition=2: web-1 re-created at the current revision",
        ),
        pytest.param(
            sts(strategy="OnDelete"),
            [p(0, rev=OLD), p(1, rev=OLD), p(2, rev=OLD)],
            [],
            id="OnDelete never deletes for an update",
        ),
        pytest.param(
            sts(strategy="OnDelete"),
            [p(0, rev=OLD), p(2, rev=OLD)],
            [create(1)],
            id="OnDelete re-creates a deleted pod at the update revision",
        ),
    ],
)
def test_plan(the_sts: dict[str, Any], pods: list[dict[str, Any]], expected: list[Any]):
    assert plan(the_sts, pods, current_revision=OLD, update_revision=NEW) == expected


@pytest.mark.parametrize(
    ("pods", "expected"),
    [
        pytest.param(
            [p(0, rev=OLD), p(1, rev=OLD), p(2, "pending")],
            {"replicas": 3, "readyReplicas": 2, "currentReplicas": 2, "updatedReplicas": 1},
            id="mid rolling update",
        ),
        pytest.param(
            [p(0), p(1), p(2)],
            {"readyReplicas": 3, "currentReplicas": 3, "currentRevision": NEW},
            id="finished rolling update makes the update revision current",
        ),
        pytest.param(
            [p(0, rev=OLD), p(1, "terminating", rev=OLD)],
            {"replicas": 2, "currentReplicas": 1, "currentRevision": OLD},
            id="terminating pods count as replicas but not as current",
        ),
    ],
)
def test_compute_status(pods: list[dict[str, Any]], expected: dict[str, Any]):
    got = compute_status(sts(), pods, current_revision=OLD, update_revision=NEW, collision_count=0)
    assert {k: got[k] for k in expected} == expected
    assert got["observedGeneration"] == 4 and got["updateRevision"] == NEW


def test_new_pod_looks_like_the_real_controllers():
    the_sts = sts()
    pod = new_pod(the_sts, ordinal=1, revision=NEW, template=the_sts["spec"]["template"])
    meta = pod["metadata"]
    assert meta["name"] == "web-1" and meta["generateName"] == "web-"
    assert meta["labels"] == {
        "app": "web",
        "controller-revision-hash": NEW,
        "statefulset.kubernetes.io/pod-name": "web-1",
        "apps.kubernetes.io/pod-index": "1",
    }
    assert meta["annotations"] == {"a": "b"}
    assert meta["ownerReferences"] == [
        {
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "name": "web",
            "uid": "sts-uid",
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    assert (pod["spec"]["hostname"], pod["spec"]["subdomain"]) == ("web-1", "web")
    assert "hostname" not in the_sts["spec"]["template"]["spec"], "the template is not mutated"


def test_revision_names_and_objects():
    template = sts()["spec"]["template"]
    h = revision_hash(template)
    assert h == revision_hash(dict(reversed(list(template.items())))), "key order is irrelevant"
    assert h != revision_hash(template, collision_count=1)
    assert set(h) <= set("bcdfghjklmnpqrstvwxz2456789")
    assert safe_encode("626855903") == "b6bd99f47", "the shape of a real hash (web-b6bd99f47)"
    rev = revision_object(sts(), name=f"web-{h}", template=template, number=3)
    assert rev["revision"] == 3 and rev["metadata"]["labels"]["controller-revision-hash"] == h
    assert revision_template(rev) == template


def test_revisions_to_prune_keeps_used_and_newest():
    revs = [{"metadata": {"name": f"r{i}"}, "revision": i} for i in range(1, 6)]
    assert revisions_to_prune(revs, keep={"r1", "r5"}, limit=1) == ["r2", "r3"]
    assert revisions_to_prune(revs, keep=set(), limit=10) == []


@pytest.mark.parametrize(
    ("name", "expected"),
    [("web-0", 0), ("web-12", 12), ("web-01", None), ("web-x", None), ("webby-1", None)],
)
def test_ordinal_of(name: str, expected: int | None):
    assert ordinal_of(name, "web") == expected
