"""Batch labels end to end: a tool drives a CloneSet with ``SetPartition(rollout_id)`` and
gates each batch on ``CheckBatch(rollout_id)``, whose rule 4 counts the pods labelled
``rollouts.kruise.io/rollout-id=<id>``; the CloneSet controller labels them as Kruise
Rollout would (``batch.plan_batch_labels``).

One mesh for the module (the sandbox and its kubelets, one gateway, two rollout replicas);
gRPC through the gateway's API port, everything else through the Kubernetes API.

1. **A claimed rollout.** A 10-pod CloneSet is claimed (100% kept), gets a new image, then
   three batches: 80%, 50% and 0 kept. Per batch, CheckBatch with the rollout id and no
   failure tolerated is polled until ready; when it says so, exactly the batch's pods carry
   the rollout id, all of them on the new image and ready, with the batch ids 1, 2, 3 in
   the batch sizes 2, 3, 5 and each batch's partition recorded. After Release the labels
   stay (Kruise Rollout never removes them).
2. **Kruise Rollout's CloneSet.** One with Kruise Rollout's control-info annotation (and,
   written by hand, our claim as well) updates its batch, but no pod gets a label from us,
   so CheckBatch with a rollout id stays not ready on rule 4 while the same call without
   the id is ready.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import pytest
import pytest_asyncio

from kruise.rollout.v1 import rollout_pb2, rollout_pb2_grpc
from services.cli.local import LocalMesh
from services.gateway.kube.client import KubeClient
from tests.e2e.conftest import ensure_namespace, eventually, merge_patch, new_image

if TYPE_CHECKING:
    from kruise.rollout.v1.rollout_pb2_grpc import RolloutServiceAsyncStub as Stub

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

BASE = "/apis/apps.kruise.io/v1alpha1/namespaces"
CONTROL_INFO = "batchrelease.rollouts.kruise.io/control-info"
CLAIM = "rollout.kruise-mesh.io/rollout-id"
ROLLOUT_ID_LABEL = "rollouts.kruise.io/rollout-id"
BATCH_ID_LABEL = "rollouts.kruise.io/rollout-batch-id"
BATCH_PARTITION = "rollout.kruise-mesh.io/rollout-batch-partition"
V1, V2 = "nginx:1.27", "nginx:1.28"
IOP = rollout_pb2.IntOrPercent


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def mesh(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[LocalMesh]:
    workdir: Path = tmp_path_factory.mktemp("batch-labels")
    async with LocalMesh(
        workdir=workdir, replicas={"rollout": 2, "budget": 1, "placement": 1}
    ) as running:
        yield running


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def api(mesh: LocalMesh) -> AsyncIterator[Stub]:
    async with mesh.api_channel() as channel:
        yield rollout_pb2_grpc.RolloutServiceStub(channel)


def clone_set(name: str, *, replicas: int, annotations: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "apps.kruise.io/v1alpha1",
        "kind": "CloneSet",
        "metadata": {"name": name, "annotations": annotations},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "main", "image": V1}]},
            },
            "updateStrategy": {"type": "InPlaceIfPossible"},
        },
    }


async def live_pods(kube: KubeClient, namespace: str, app: str) -> list[dict[str, Any]]:
    listed = await kube.request_json(
        "GET", f"/api/v1/namespaces/{namespace}/pods", query={"labelSelector": f"app={app}"}
    )
    return [p for p in listed.get("items") or () if not p["metadata"].get("deletionTimestamp")]


def image(pod: dict[str, Any]) -> str:
    return str(pod["spec"]["containers"][0]["image"])


def is_ready(pod: dict[str, Any]) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or ()
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def labels(pod: dict[str, Any]) -> dict[str, str]:
    return dict(pod["metadata"].get("labels") or {})


def ref(namespace: str, name: str) -> rollout_pb2.WorkloadRef:
    return rollout_pb2.WorkloadRef(namespace=namespace, name=name)


async def status_of(api: Stub, namespace: str, name: str) -> rollout_pb2.RolloutStatus:
    answer = await api.GetRolloutStatus(
        rollout_pb2.GetRolloutStatusRequest(ref=ref(namespace, name)), timeout=10
    )
    return answer.status


async def settled(api: Stub, namespace: str, name: str, *, generation: int = 0) -> bool:
    """The controller observed ``generation`` (or later) and every pod is updated and ready."""
    status = await status_of(api, namespace, name)
    return (
        status.generation >= generation
        and status.status.observed_generation >= status.generation
        and status.rollout_complete
    )


async def check(
    api: Stub, namespace: str, name: str, *, desired: int, rollout_id: str
) -> rollout_pb2.CheckBatchResponse:
    return await api.CheckBatch(
        rollout_pb2.CheckBatchRequest(
            ref=ref(namespace, name),
            desired_updated_replicas=desired,
            failure_threshold=IOP(count=0),
            rollout_id=rollout_id,
        ),
        timeout=10,
    )


async def test_check_batch_with_the_rollout_id_passes_once_the_batch_is_labelled(
    kube: KubeClient, api: Stub
) -> None:
    ns, name, rollout_id = "batch-labels", "web", "r1"
    await ensure_namespace(kube, ns)
    await kube.request(
        "POST",
        f"{BASE}/{ns}/clonesets",
        body=orjson.dumps(clone_set(name, replicas=10, annotations={})),
    )
    await eventually("10 ready pods", lambda: settled(api, ns, name), timeout=60)
    await api.SetPartition(
        rollout_pb2.SetPartitionRequest(
            ref=ref(ns, name),
            partition=IOP(percent="100%"),
            allow_increase=True,
            rollout_id=rollout_id,
        ),
        timeout=10,
    )
    changed = await merge_patch(kube, ns, name, new_image(V2))
    generation = int(changed["metadata"]["generation"])

    async def observed() -> bool:
        status = await status_of(api, ns, name)
        return status.generation >= generation and (
            status.status.observed_generation >= status.generation
        )

    await eventually("the template change observed", observed)
    revision = (await status_of(api, ns, name)).status.update_revision
    # Claimed while every pod was on the old revision: nothing to label yet.
    assert not any(ROLLOUT_ID_LABEL in labels(p) for p in await live_pods(kube, ns, name))

    plan = (("80%", 2), ("50%", 5), ("0%", 10))
    for number, (kept, desired) in enumerate(plan, start=1):
        await api.SetPartition(
            rollout_pb2.SetPartitionRequest(
                ref=ref(ns, name),
                partition=IOP(percent=kept),
                rollout_id=rollout_id,
                expected_update_revision=revision,
            ),
            timeout=10,
        )

        async def batch_ready(desired: int = desired) -> bool:
            answer = await check(api, ns, name, desired=desired, rollout_id=rollout_id)
            return answer.ready

        await eventually(f"batch {number} ({kept} kept) ready", batch_ready, timeout=60)
        pods = await live_pods(kube, ns, name)
        ours = [p for p in pods if labels(p).get(ROLLOUT_ID_LABEL) == rollout_id]
        assert len(ours) == desired, f"batch {number}: {len(ours)} labelled, {desired} planned"
        assert all(image(p) == V2 and is_ready(p) for p in ours)
        assert not any(ROLLOUT_ID_LABEL in labels(p) for p in pods if image(p) == V1)
        sizes = Counter(labels(p)[BATCH_ID_LABEL] for p in ours)
        wanted = {str(b): plan[b - 1][1] - (plan[b - 2][1] if b > 1 else 0) for b in (1, 2, 3)}
        assert sizes == {b: n for b, n in wanted.items() if int(b) <= number}
        recorded = {(labels(p)[BATCH_ID_LABEL], p["metadata"]["annotations"][BATCH_PARTITION])
                    for p in ours}  # fmt: skip
        assert recorded == {(str(b), plan[b - 1][0]) for b in range(1, number + 1)}

    released = await api.Release(
        rollout_pb2.ReleaseRequest(ref=ref(ns, name), promote=True, rollout_id=rollout_id),
        timeout=10,
    )
    assert released.status.controlled_by.WhichOneof("by") is None
    await eventually("all pods updated", lambda: settled(api, ns, name))
    pods = await live_pods(kube, ns, name)
    assert Counter(labels(p).get(BATCH_ID_LABEL) for p in pods) == {"1": 2, "2": 3, "3": 5}


async def test_a_clone_set_kruise_rollout_controls_gets_no_labels_from_us(
    kube: KubeClient, api: Stub
) -> None:
    ns, name = "batch-labels-kruise", "web"
    await ensure_namespace(kube, ns)
    control = {"apiVersion": "rollouts.kruise.io/v1beta1", "kind": "BatchRelease", "name": "x"}
    annotations = {CONTROL_INFO: orjson.dumps(control).decode(), CLAIM: "r1"}
    await kube.request(
        "POST",
        f"{BASE}/{ns}/clonesets",
        body=orjson.dumps(clone_set(name, replicas=5, annotations=annotations)),
    )
    await eventually("5 ready pods", lambda: settled(api, ns, name), timeout=60)
    await merge_patch(kube, ns, name, {"spec": {"updateStrategy": {"partition": "60%"}}})
    changed = await merge_patch(kube, ns, name, new_image(V2))
    generation = int(changed["metadata"]["generation"])

    async def batch_updated() -> bool:
        status = await status_of(api, ns, name)
        answer = await check(api, ns, name, desired=2, rollout_id="")
        return status.generation >= generation and answer.ready

    await eventually("2 of 5 pods updated and ready", batch_updated, timeout=60)
    await asyncio.sleep(1.0)  # rounds enough for a label the controller should not write
    pods = await live_pods(kube, ns, name)
    assert sum(image(p) == V2 for p in pods) == 2
    assert not any(ROLLOUT_ID_LABEL in labels(p) or BATCH_ID_LABEL in labels(p) for p in pods)
    answer = await check(api, ns, name, desired=2, rollout_id="r1")
    assert not answer.ready
    assert answer.reason == f"0 pods labelled {ROLLOUT_ID_LABEL}=r1 < 2 desired"
