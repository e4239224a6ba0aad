"""CloneSet ``volumeClaimTemplates`` end to end (OpenKruise v1.2's per-pod claims): the
sandbox's kubelets and volume binder, the gateway, two rollout and two budget replicas,
everything through the Kubernetes API.

* each pod gets one claim per template, ``<template>-<cloneset>-<instance id>``, labelled
  with the selector and the instance id, owned by the CloneSet, mounted by the pod;
* a pod deleted by hand is replaced by a pod of the same instance id, on the same claim;
* a scale-in deletes the victim's claim with it; a scale-out after it makes a new claim;
* deleting the CloneSet takes its claims (garbage collection of the ownerReference).
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from services.gateway.kube.client import KubeClient
from tests.e2e.conftest import ensure_namespace, eventually

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

BASE = "/apis/apps.kruise.io/v1alpha1/namespaces"
INSTANCE = "apps.kruise.io/cloneset-instance-id"
NS = "cs-pvcs"
APP = "db"


def clone_set(replicas: int) -> dict[str, Any]:
    return {
        "apiVersion": "apps.kruise.io/v1alpha1",
        "kind": "CloneSet",
        "metadata": {"name": APP},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": APP}},
            "template": {
                "metadata": {"labels": {"app": APP}},
                "spec": {
                    "containers": [
                        {
                            "name": "main",
                            "image": "nginx:1.27",
                            "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                        }
                    ]
                },
            },
            "volumeClaimTemplates": [
                {
                    "metadata": {"name": "data"},
                    "spec": {
                        "accessModes": ["ReadWriteOnce"],
                        "resources": {"requests": {"storage": "1Gi"}},
                    },
                }
            ],
        },
    }


async def live_pods(kube: KubeClient) -> list[dict[str, Any]]:
    listed = await kube.request_json(
        "GET", f"/api/v1/namespaces/{NS}/pods", query={"labelSelector": f"app={APP}"}
    )
    return [p for p in listed.get("items") or [] if not p["metadata"].get("deletionTimestamp")]


async def claims(kube: KubeClient) -> list[dict[str, Any]]:
    listed = await kube.request_json(
        "GET",
        f"/api/v1/namespaces/{NS}/persistentvolumeclaims",
        query={"labelSelector": f"app={APP}"},
    )
    return list(listed.get("items") or [])


async def warnings(kube: KubeClient) -> list[str]:
    """The reasons of Warning Events about the CloneSet."""
    listed = await kube.request_json("GET", f"/api/v1/namespaces/{NS}/events")
    return [
        str(e.get("reason"))
        for e in listed.get("items") or []
        if e.get("type") == "Warning" and (e.get("involvedObject") or {}).get("kind") == "CloneSet"
    ]


def ready(pod: dict[str, Any]) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


async def ready_pods(kube: KubeClient, count: int) -> bool:
    pods = await live_pods(kube)
    return len(pods) == count and all(ready(p) for p in pods)


async def scale(kube: KubeClient, replicas: int) -> None:
    await kube.request(
        "PATCH",
        f"{BASE}/{NS}/clonesets/{APP}",
        body=orjson.dumps({"spec": {"replicas": replicas}}),
        content_type="application/merge-patch+json",
    )


def instance(pod: dict[str, Any]) -> str:
    return str(pod["metadata"]["labels"][INSTANCE])


def claim_of(pod: dict[str, Any]) -> str:
    (volume,) = [v for v in pod["spec"].get("volumes") or [] if v.get("name") == "data"]
    return str(volume["persistentVolumeClaim"]["claimName"])


async def test_each_pod_has_its_claim_reused_by_its_replacement_and_gone_with_it(
    kube: KubeClient,
) -> None:
    await ensure_namespace(kube, NS)
    cs = await kube.request_json("POST", f"{BASE}/{NS}/clonesets", body=orjson.dumps(clone_set(3)))
    await eventually("3 ready pods", lambda: ready_pods(kube, 3), timeout=30)

    # One claim per pod, named and labelled after its instance id, owned by the CloneSet.
    pods = await live_pods(kube)
    by_id = {instance(p): p for p in pods}
    found = {c["metadata"]["name"]: c for c in await claims(kube)}
    assert sorted(found) == sorted(f"data-{APP}-{i}" for i in by_id)
    for iid, pod in by_id.items():
        claim = found[f"data-{APP}-{iid}"]
        assert claim_of(pod) == claim["metadata"]["name"]
        assert claim["metadata"]["labels"] == {"app": APP, INSTANCE: iid}
        (ref,) = claim["metadata"]["ownerReferences"]
        assert (ref["kind"], ref["uid"], ref["controller"]) == (
            "CloneSet",
            cs["metadata"]["uid"],
            True,
        )
        assert claim["spec"]["resources"] == {"requests": {"storage": "1Gi"}}

    async def all_bound() -> bool:
        return all((c.get("status") or {}).get("phase") == "Bound" for c in await claims(kube))

    await eventually("claims bound", all_bound, timeout=10)
    uids = {c["metadata"]["name"]: c["metadata"]["uid"] for c in await claims(kube)}

    # A pod deleted by hand: its replacement has its instance id, and mounts its claim.
    victim = sorted(by_id)[0]
    old_uid = by_id[victim]["metadata"]["uid"]
    await kube.request("DELETE", f"/api/v1/namespaces/{NS}/pods/{APP}-{victim}")

    async def replaced() -> bool:
        pods = await live_pods(kube)
        again = [p for p in pods if p["metadata"]["name"] == f"{APP}-{victim}"]
        return (
            len(pods) == 3
            and all(ready(p) for p in pods)
            and len(again) == 1
            and again[0]["metadata"]["uid"] != old_uid
        )

    await eventually("the deleted pod replaced on its instance id", replaced, timeout=30)
    pods = await live_pods(kube)
    assert sorted(instance(p) for p in pods) == sorted(by_id)
    (again,) = [p for p in pods if instance(p) == victim]
    assert claim_of(again) == f"data-{APP}-{victim}"
    assert {c["metadata"]["name"]: c["metadata"]["uid"] for c in await claims(kube)} == uids
    # It waited for the old pod's name instead of failing creates (AlreadyExists).
    assert await warnings(kube) == []

    # Scale in: the victim's claim goes with it; the others stay.
    await scale(kube, 2)

    async def scaled_in() -> bool:
        pods = await live_pods(kube)
        names = {c["metadata"]["name"] for c in await claims(kube)}
        return len(pods) == 2 and names == {claim_of(p) for p in pods}

    await eventually("2 pods and only their claims", scaled_in, timeout=30)
    kept = {instance(p) for p in await live_pods(kube)}
    (gone,) = set(by_id) - kept
    assert {c["metadata"]["uid"] for c in await claims(kube)} == {
        uids[f"data-{APP}-{i}"] for i in kept
    }

    # Scale out: a new instance id (nothing orphaned to reuse), a new claim.
    await scale(kube, 3)
    await eventually("3 ready pods again", lambda: ready_pods(kube, 3), timeout=30)
    pods = await live_pods(kube)
    (new,) = {instance(p) for p in pods} - kept
    assert new != gone
    assert sorted(c["metadata"]["name"] for c in await claims(kube)) == sorted(
        claim_of(p) for p in pods
    )

    # Deleting the CloneSet takes its claims (ownerReference garbage collection).
    await kube.request("DELETE", f"{BASE}/{NS}/clonesets/{APP}")

    async def no_claims() -> bool:
        return not await claims(kube)

    await eventually("claims collected with the CloneSet", no_claims, timeout=30)
