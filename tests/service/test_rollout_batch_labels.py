"""The controller's shell writes the rollout API's batch labels (``sync.with_batch_labels``).

The harness of ``test_rollout_controller`` (an in-memory cluster recording each write, a
scripted budget): a CloneSet of three pods, all on its update revision, claimed by a rollout
id through the annotation SetPartition writes. One round labels its pods with strategic
merge patches on the version it decided on, without asking any budget; a CloneSet Kruise
Rollout controls gets none.
"""

from __future__ import annotations

from typing import Any

from kruise.common.v1 import mesh_pb2
from services.kit.cluster import Ref, Written
from services.kit.projection import project_clone_set
from services.rollout.batch import BATCH_ID_LABEL, BATCH_PARTITION_ANNOTATION
from services.rollout.report import (
    CONTROL_INFO_ANNOTATION,
    ROLLOUT_ID_ANNOTATION,
    ROLLOUT_ID_LABEL,
)
from tests.service.test_rollout_controller import Harness, _start, clone_set_json


def claimed(h: Harness, annotations: dict[str, str]) -> None:
    """The CloneSet again, now with ``annotations`` (a newer resourceVersion)."""
    body = clone_set_json(replicas=3, rv="20")
    body["metadata"]["annotations"] = annotations
    h.put(mesh_pb2.KIND_CLONE_SET, project_clone_set(body))


def recording(h: Harness) -> list[tuple[str, Any, str, str]]:
    """Every pod patch of the next rounds: (name, patch, kind, resource_version)."""
    seen: list[tuple[str, Any, str, str]] = []
    original = h.cluster.patch

    async def patch(ref: Ref, **kw: Any) -> Written:
        if ref.kind == "Pod":
            seen.append((ref.name, kw["patch"], kw.get("kind", ""), kw.get("resource_version", "")))
        return await original(ref, **kw)

    h.cluster.patch = patch  # type: ignore[method-assign]
    return seen


async def test_a_claimed_clone_set_s_updated_pods_are_labelled_in_one_round() -> None:
    h = Harness()
    await _start(h, 3)
    claimed(h, {ROLLOUT_ID_ANNOTATION: "r1"})
    patches = recording(h)
    await h.round()
    assert [name for name, *_ in patches] == sorted(name for name, *_ in patches)
    assert len(patches) == 3
    for _, patch, kind, resource_version in patches:
        assert patch == {
            "metadata": {
                "labels": {ROLLOUT_ID_LABEL: "r1", BATCH_ID_LABEL: "1"},
                "annotations": {BATCH_PARTITION_ANNOTATION: "0"},
            }
        }
        assert (kind, resource_version) == ("strategic", "5")
    assert h.budget.asked == [], "labels change no readiness: no budget is asked"


async def test_kruise_rollout_s_clone_set_gets_no_label_from_us() -> None:
    h = Harness()
    await _start(h, 3)
    claimed(h, {ROLLOUT_ID_ANNOTATION: "r1", CONTROL_INFO_ANNOTATION: '{"name":"x"}'})
    patches = recording(h)
    await h.round()
    assert patches == []
