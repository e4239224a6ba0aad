"""``sync.plan_round`` on an in-place update: the writes, in order, for one pod.

Rows read as scenarios: a CloneSet of one pod at the old revision gets a new image.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from services.kit.projection import project_clone_set, project_pod
from services.rollout import revision, sync
from services.rollout.actions import PatchPod, PatchPodStatus

OLD_IMAGE, NEW_IMAGE = "nginx:1", "nginx:2"
NOW_MS = 1_800_000_000_000


def template(image: str) -> dict[str, Any]:
    return {
        "metadata": {"labels": {"app": "web"}},
        "spec": {"containers": [{"name": "main", "image": image}]},
    }


def clone_set(lifecycle: dict[str, Any] | None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "replicas": 1,
        "selector": {"matchLabels": {"app": "web"}},
        "template": template(NEW_IMAGE),
        "updateStrategy": {"type": "InPlaceIfPossible", "maxUnavailable": 1},
        "revisionHistoryLimit": 10,
    }
    if lifecycle:
        spec["lifecycle"] = lifecycle
    return {
        "metadata": {"name": "web", "namespace": "ns", "uid": "cs", "resourceVersion": "9"},
        "spec": spec,
    }


def pod(old_revision: str, labels: dict[str, str]) -> dict[str, Any]:
    return {
        "metadata": {
            "name": "web-abcde",
            "namespace": "ns",
            "uid": "p",
            "resourceVersion": "5",
            "labels": {
                "app": "web",
                "controller-revision-hash": old_revision,
                "lifecycle.apps.kruise.io/state": "Normal",
                **labels,
            },
            "ownerReferences": [
                {
                    "apiVersion": "apps.kruise.io/v1alpha1",
                    "kind": "CloneSet",
                    "name": "web",
                    "uid": "cs",
                    "controller": True,
                }
            ],
        },
        "spec": {
            "nodeName": "n1",
            "containers": [{"name": "main", "image": OLD_IMAGE}],
            "readinessGates": [{"conditionType": "InPlaceUpdateReady"}],
        },
        "status": {
            "phase": "Running",
            "conditions": [
                {"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"},
                {"type": "InPlaceUpdateReady", "status": "True"},
            ],
            "containerStatuses": [
                {"name": "main", "image": OLD_IMAGE, "imageID": "id-1", "ready": True}
            ],
        },
    }


def plan(lifecycle: dict[str, Any] | None, labels: dict[str, str]) -> list[Any]:
    cs = project_clone_set(clone_set(lifecycle))
    old = revision.Revision(
        name=revision.revision_name("web", revision.revision_data(template(OLD_IMAGE))),
        number=1,
        template=template(OLD_IMAGE),
    )
    revisions = revision.plan_revisions(
        clone_set=cs, template=template(NEW_IMAGE), stored=[old], live_revisions={old.name}
    )
    observed = sync.Observed(
        clone_set=cs,
        pods=(project_pod(pod(old.name, labels)),),
        revisions=revisions,
        now_ms=NOW_MS,
        rng=random.Random(1),
        stored_templates={old.name: old.template, revisions.update: revisions.update_template},
    )
    return list(sync.plan_round(observed).actions)


def state_ops(patch: list[dict[str, Any]]) -> list[Any]:
    return [
        op.get("value") for op in patch if op["path"].endswith("lifecycle.apps.kruise.io~1state")
    ]


@pytest.mark.parametrize(
    ("lifecycle", "labels", "state"),
    [
        pytest.param(None, {}, [], id="no hooks: the pod stays Normal (three writes in all)"),
        pytest.param(
            {"inPlaceUpdate": {"labelsHandler": {"hold": "true"}}},
            {},
            ["Updating"],
            id="a hook that does not hold the pod: Updating, as v1.2",
        ),
    ],
)
def test_an_in_place_update_starts_with_two_writes(
    lifecycle: dict[str, Any] | None, labels: dict[str, str], state: list[str]
) -> None:
    first, second = plan(lifecycle, labels)
    # 1: InPlaceUpdateReady False, asking the budget first; 2: the image patch.
    assert isinstance(first, PatchPodStatus) and first.budget
    assert first.patch["status"]["conditions"][0]["status"] == "False"
    assert isinstance(second, PatchPod) and second.kind == "json" and not second.budget
    ops = second.patch
    assert ops[0]["op"] == "test" and ops[0]["path"] == "/metadata/labels/controller-revision-hash"
    assert {"op": "replace", "path": "/spec/containers/0/image", "value": NEW_IMAGE} in ops
    assert state_ops(ops) == state


def test_a_hooked_pod_waits_in_preparing_update() -> None:
    (only,) = plan({"inPlaceUpdate": {"labelsHandler": {"hold": "true"}}}, {"hold": "true"})
    assert isinstance(only, PatchPod) and only.budget and only.kind == "strategic"
    assert only.patch["metadata"]["labels"]["lifecycle.apps.kruise.io/state"] == "PreparingUpdate"
