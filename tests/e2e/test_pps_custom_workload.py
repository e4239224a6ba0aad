"""A PersistentPodState targeting a configured StatefulSet-like kind (OpenKruise 1.4).

``apps.example.io/v1 ShardSet`` exists only in this test's CRD; the test plays its
controller (creates ``<name>-<ordinal>`` pods owned by it). The gateway watches the kind
because ``KRUISE_MESH_STATEFULSET_LIKE_KINDS`` names it, and placement accepts it as a
target for the same reason.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import pytest_asyncio

from services.cli.local import LocalMesh
from services.gateway.kube.client import KubeClient
from services.kit import errors
from tests.e2e.conftest import ensure_namespace, eventually

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

HOSTNAME = "kubernetes.io/hostname"
NS = "shards"
SHARDS = f"/apis/apps.example.io/v1/namespaces/{NS}/shardsets"
PODS = f"/api/v1/namespaces/{NS}/pods"
PPS = f"/apis/apps.kruise.io/v1alpha1/namespaces/{NS}/persistentpodstates"


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def mesh(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[LocalMesh]:
    crds = Path(__file__).parent / "crds"
    async with LocalMesh(
        workdir=tmp_path_factory.mktemp("mesh"),
        replicas=1,
        sandbox_args=["--crds", str(crds)],
        statefulset_like=["apps.example.io/v1/ShardSet"],
        # What deploy/rbac.yaml tells an operator to apply for a custom kind: the gateway
        # (running as its ServiceAccount) may then watch ShardSets.
        gateway_roles=[
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRole",
                "metadata": {
                    "name": "kruise-mesh-gateway-shardsets",
                    "labels": {"kruise-mesh.io/aggregate-to-gateway": "true"},
                },
                "rules": [
                    {
                        "apiGroups": ["apps.example.io"],
                        "resources": ["shardsets"],
                        "verbs": ["get", "list", "watch"],
                    }
                ],
            }
        ],
    ) as running:
        yield running


def shard_pod(i: int, owner: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"shard-{i}",
            "labels": {"app": "shard"},
            "ownerReferences": [
                {
                    "apiVersion": "apps.example.io/v1",
                    "kind": "ShardSet",
                    "name": "shard",
                    "uid": owner["metadata"]["uid"],
                    "controller": True,
                }
            ],
        },
        "spec": {"containers": [{"name": "main", "image": "nginx:1.27"}], **spec},
    }


async def post(kube: KubeClient, path: str, body: dict[str, Any]) -> dict[str, Any]:
    return await kube.request_json("POST", path, body=orjson.dumps(body))


async def get(kube: KubeClient, path: str) -> dict[str, Any] | None:
    try:
        return await kube.request_json("GET", path)
    except errors.NotFound:
        return None


async def test_statefulset_like_kind_is_recorded_and_injected(kube: KubeClient) -> None:
    await ensure_namespace(kube, NS)
    shard = await post(
        kube,
        SHARDS,
        {
            "apiVersion": "apps.example.io/v1",
            "kind": "ShardSet",
            "metadata": {"name": "shard"},
            "spec": {"replicas": 2},
        },
    )
    await post(
        kube,
        PPS,
        {
            "apiVersion": "apps.kruise.io/v1alpha1",
            "kind": "PersistentPodState",
            "metadata": {"name": "shard"},
            "spec": {
                "targetRef": {
                    "apiVersion": "apps.example.io/v1",
                    "kind": "ShardSet",
                    "name": "shard",
                },
                "preferredPersistentTopology": [
                    {"weight": 100, "preference": {"nodeTopologyKeys": [HOSTNAME]}}
                ],
            },
        },
    )
    for i in range(2):
        await post(kube, PODS, shard_pod(i, shard))

    async def recorded() -> bool:
        pps = await get(kube, f"{PPS}/shard")
        return len(((pps or {}).get("status") or {}).get("podStates") or {}) == 2

    await eventually("both shard pods recorded", recorded)
    pps = await get(kube, f"{PPS}/shard") or {}
    node = pps["status"]["podStates"]["shard-1"]["nodeName"]

    # The test's "controller" re-creates shard-1: placement injects its recorded node.
    await kube.request("DELETE", f"{PODS}/shard-1")
    await eventually("shard-1 gone", lambda: _gone(kube, f"{PODS}/shard-1"))
    again = await post(kube, PODS, shard_pod(1, shard))
    assert again["metadata"]["annotations"]["kruise.io/injected-persistent-pod-state"] == "shard"
    terms = again["spec"]["affinity"]["nodeAffinity"][
        "preferredDuringSchedulingIgnoredDuringExecution"
    ]
    assert terms == [
        {
            "weight": 100,
            "preference": {
                "matchExpressions": [{"key": HOSTNAME, "operator": "In", "values": [node]}]
            },
        }
    ]

    # Scale-in prunes by the kind's replicas, as for a StatefulSet.
    await kube.request(
        "PATCH",
        f"{SHARDS}/shard",
        body=orjson.dumps({"spec": {"replicas": 1}}),
        content_type="application/merge-patch+json",
    )
    await kube.request("DELETE", f"{PODS}/shard-1")

    async def pruned() -> bool:
        pps = await get(kube, f"{PPS}/shard")
        return set(((pps or {}).get("status") or {}).get("podStates") or {}) == {"shard-0"}

    await eventually("shard-1's record pruned after scale-in", pruned)


async def test_unconfigured_kinds_are_still_refused(kube: KubeClient) -> None:
    await ensure_namespace(kube, NS)
    body = {
        "apiVersion": "apps.kruise.io/v1alpha1",
        "kind": "PersistentPodState",
        "metadata": {"name": "other"},
        "spec": {
            "targetRef": {"apiVersion": "apps.example.io/v1", "kind": "PodSet", "name": "x"},
            "requiredPersistentTopology": {"nodeTopologyKeys": [HOSTNAME]},
        },
    }
    with pytest.raises(errors.Invalid) as refused:
        await post(kube, PPS, body)
    assert "StatefulSet-like kind: ShardSet.apps.example.io" in str(refused.value)


async def _gone(kube: KubeClient, path: str) -> bool:
    return await get(kube, path) is None


ASTS = f"/apis/apps.kruise.io/v1beta1/namespaces/{NS}/statefulsets"


async def test_advanced_statefulset_generates_and_prunes_past_reserved_ordinals(
    kube: KubeClient,
) -> None:
    """apps.kruise.io/v1beta1 StatefulSet: generation, records, reserveOrdinals on scale-in."""
    await ensure_namespace(kube, NS)
    asts = await post(
        kube,
        ASTS,
        {
            "apiVersion": "apps.kruise.io/v1beta1",
            "kind": "StatefulSet",
            "metadata": {
                "name": "kv",
                "annotations": {
                    "kruise.io/auto-generate-persistent-pod-state": "true",
                    "kruise.io/preferred-persistent-topology": HOSTNAME,
                },
            },
            "spec": {"replicas": 3, "reserveOrdinals": [1]},
        },
    )
    owner = {
        "apiVersion": "apps.kruise.io/v1beta1",
        "kind": "StatefulSet",
        "name": "kv",
        "uid": asts["metadata"]["uid"],
        "controller": True,
    }
    for i in (0, 2, 3):  # ordinal 1 is reserved
        pod = shard_pod(i, asts)
        pod["metadata"]["name"] = f"kv-{i}"
        pod["metadata"]["ownerReferences"] = [owner]
        await post(kube, PODS, pod)

    async def states() -> set[str]:
        pps = await get(kube, f"{PPS}/kv")
        return set(((pps or {}).get("status") or {}).get("podStates") or {})

    async def three() -> bool:
        return await states() == {"kv-0", "kv-2", "kv-3"}

    await eventually("kv pods recorded in the generated PersistentPodState", three)
    pps = await get(kube, f"{PPS}/kv") or {}
    assert pps["spec"]["targetRef"]["apiVersion"] == "apps.kruise.io/v1beta1"

    # replicas 2 with ordinal 1 reserved → ordinals {0, 2}; kv-3 goes and loses its record.
    await kube.request(
        "PATCH",
        f"{ASTS}/kv",
        body=orjson.dumps({"spec": {"replicas": 2}}),
        content_type="application/merge-patch+json",
    )
    await kube.request("DELETE", f"{PODS}/kv-3")

    async def pruned() -> bool:
        return await states() == {"kv-0", "kv-2"}

    await eventually("kv-3 pruned, kv-2 kept past the reserved ordinal", pruned)


async def _budget_world(kube: KubeClient, ns: str, *, kind: str, plural: str) -> None:
    """A custom workload object, 3 ready pods it controls, a budget targeting it."""
    await ensure_namespace(kube, ns)
    owner = await post(
        kube,
        f"/apis/apps.example.io/v1/namespaces/{ns}/{plural}",
        {
            "apiVersion": "apps.example.io/v1",
            "kind": kind,
            "metadata": {"name": "w"},
            "spec": {"replicas": 3},
        },
    )
    await post(
        kube,
        f"/apis/policy.kruise.io/v1alpha1/namespaces/{ns}/podunavailablebudgets",
        {
            "apiVersion": "policy.kruise.io/v1alpha1",
            "kind": "PodUnavailableBudget",
            "metadata": {"name": "w"},
            "spec": {
                "targetRef": {"apiVersion": "apps.example.io/v1", "kind": kind, "name": "w"},
                "maxUnavailable": 1,
            },
        },
    )
    for i in range(3):
        await post(
            kube,
            f"/api/v1/namespaces/{ns}/pods",
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "name": f"w-{i}",
                    "ownerReferences": [
                        {
                            "apiVersion": "apps.example.io/v1",
                            "kind": kind,
                            "name": "w",
                            "uid": owner["metadata"]["uid"],
                            "controller": True,
                        }
                    ],
                },
                "spec": {"containers": [{"name": "main", "image": "nginx:1.27"}]},
            },
        )


async def _evict(kube: KubeClient, ns: str, pod: str) -> int:
    body = {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": pod}}
    try:
        await kube.request(
            "POST", f"/api/v1/namespaces/{ns}/pods/{pod}/eviction", body=orjson.dumps(body)
        )
    except errors.TooManyRequests:
        return 429
    return 201


async def test_budget_resolves_a_custom_workload_through_its_scale_subresource(
    kube: KubeClient,
) -> None:
    await _budget_world(kube, "budget-scale", kind="ShardSet", plural="shardsets")
    path = "/apis/policy.kruise.io/v1alpha1/namespaces/budget-scale/podunavailablebudgets/w"

    async def counted() -> bool:
        status = ((await get(kube, path)) or {}).get("status") or {}
        return (status.get("totalReplicas"), status.get("unavailableAllowed")) == (3, 1)

    await eventually("budget totals from ShardSet/scale", counted)
    assert await _evict(kube, "budget-scale", "w-0") == 201
    assert await _evict(kube, "budget-scale", "w-1") == 429


async def test_a_custom_kind_without_scale_leaves_its_pods_unprotected(kube: KubeClient) -> None:
    await _budget_world(kube, "budget-noscale", kind="PodGroup", plural="podgroups")
    path = "/apis/policy.kruise.io/v1alpha1/namespaces/budget-noscale/podunavailablebudgets/w"

    async def observed() -> bool:
        status = ((await get(kube, path)) or {}).get("status") or {}
        return status.get("totalReplicas") == 0 and "unavailableAllowed" in status

    await eventually("budget with an unresolvable target", observed)
    assert [await _evict(kube, "budget-noscale", f"w-{i}") for i in range(3)] == [201] * 3
