"""The CloneSet controller end to end: the sandbox's kubelets, the gateway, two rollout and
two budget replicas, everything through the Kubernetes API.

* SPEC 2.7's e2e scenario: partition "99%" of 4, in place → exactly one pod updated,
  ``expectedUpdatedReplicas`` 1, still one after 10 s;
* SPEC 3.6 scenarios 7 and 8 on a CloneSet: a scale-in held by a preDelete hook, with and
  without markPodNotReady (the pod leaves its Service's endpoints only with it);
* a ReCreate update held by a preDelete hook (scenario 5, CloneSet version);
* a template change that cannot be made in place is re-created, not stuck;
* the webhooks: defaults applied, invalid CloneSets refused with the field named, the
  KruisePodReady gate on the CloneSet's pods.
"""

from __future__ import annotations

import asyncio
import shutil
from typing import Any

import orjson
import pytest

from services.cli.local import LocalMesh
from services.gateway.kube.client import KubeClient
from services.kit import errors
from tests.e2e.conftest import ensure_namespace, eventually

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

BASE = "/apis/apps.kruise.io/v1alpha1/namespaces"
FINALIZER = "example.io/unready-blocker"


def clone_set(
    name: str,
    *,
    replicas: int = 4,
    image: str = "nginx:1.27",
    update: dict[str, Any] | None = None,
    lifecycle: dict[str, Any] | None = None,
    finalizers: list[str] | None = None,
) -> dict[str, Any]:
    meta: dict[str, Any] = {"labels": {"app": name}}
    if finalizers:
        meta["finalizers"] = finalizers
    spec: dict[str, Any] = {
        "replicas": replicas,
        "selector": {"matchLabels": {"app": name}},
        "template": {
            "metadata": meta,
            "spec": {"containers": [{"name": "main", "image": image}]},
        },
        "updateStrategy": update or {},
    }
    if lifecycle:
        spec["lifecycle"] = lifecycle
    return {
        "apiVersion": "apps.kruise.io/v1alpha1",
        "kind": "CloneSet",
        "metadata": {"name": name},
        "spec": spec,
    }


async def create(kube: KubeClient, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
    return await kube.request_json("POST", f"{BASE}/{namespace}/clonesets", body=orjson.dumps(body))


async def get(kube: KubeClient, namespace: str, name: str) -> dict[str, Any]:
    return await kube.request_json("GET", f"{BASE}/{namespace}/clonesets/{name}")


async def patch(kube: KubeClient, namespace: str, name: str, body: dict[str, Any]) -> None:
    await kube.request(
        "PATCH",
        f"{BASE}/{namespace}/clonesets/{name}",
        body=orjson.dumps(body),
        content_type="application/merge-patch+json",
    )


async def pods_of(kube: KubeClient, namespace: str, app: str) -> list[dict[str, Any]]:
    listed = await kube.request_json(
        "GET", f"/api/v1/namespaces/{namespace}/pods", query={"labelSelector": f"app={app}"}
    )
    return list(listed.get("items") or [])


def condition(pod: dict[str, Any], kind: str) -> dict[str, Any] | None:
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind:
            return dict(cond)
    return None


def ready(pod: dict[str, Any]) -> bool:
    cond = condition(pod, "Ready")
    return cond is not None and cond.get("status") == "True"


def state(pod: dict[str, Any]) -> str:
    return str(pod["metadata"].get("labels", {}).get("lifecycle.apps.kruise.io/state", ""))


async def all_ready(kube: KubeClient, namespace: str, app: str, count: int) -> bool:
    pods = [
        p for p in await pods_of(kube, namespace, app) if not p["metadata"].get("deletionTimestamp")
    ]
    return len(pods) == count and all(ready(p) for p in pods)


async def test_partition_99_percent_of_4_updates_exactly_one_pod(kube: KubeClient) -> None:
    ns = "cs-partition"
    await ensure_namespace(kube, ns)
    await create(
        kube,
        ns,
        clone_set(
            "web",
            update={"type": "InPlaceIfPossible", "maxUnavailable": "50%", "partition": "99%"},
        ),
    )
    await eventually("4 ready pods", lambda: all_ready(kube, ns, "web", 4), timeout=30)
    before = {p["metadata"]["uid"] for p in await pods_of(kube, ns, "web")}
    await patch(
        kube,
        ns,
        "web",
        {"spec": {"template": {"spec": {"containers": [{"name": "main", "image": "nginx:1.28"}]}}}},
    )

    async def one_updated() -> bool:
        st = (await get(kube, ns, "web")).get("status") or {}
        return st.get("updatedReplicas") == 1 and st.get("updatedReadyReplicas") == 1

    await eventually("one pod updated and ready", one_updated, timeout=30)
    await asyncio.sleep(10)
    cs = await get(kube, ns, "web")
    status = cs["status"]
    assert status["updatedReplicas"] == 1
    assert status["updatedReadyReplicas"] == 1
    assert status["expectedUpdatedReplicas"] == 1
    assert status["replicas"] == 4
    assert status["observedGeneration"] == cs["metadata"]["generation"]
    pods = await pods_of(kube, ns, "web")
    # In place: the same four pods, one of them on the new image and revision.
    assert {p["metadata"]["uid"] for p in pods} == before
    images = sorted(p["spec"]["containers"][0]["image"] for p in pods)
    assert images == ["nginx:1.27", "nginx:1.27", "nginx:1.27", "nginx:1.28"]
    updated = [p for p in pods if p["spec"]["containers"][0]["image"] == "nginx:1.28"][0]
    assert updated["metadata"]["labels"]["controller-revision-hash"] == status["updateRevision"]
    assert condition(updated, "InPlaceUpdateReady")["status"] == "True"  # type: ignore[index]
    # Every pod carries both readiness gates (the webhook's and the controller's).
    gates = {g["conditionType"] for g in updated["spec"]["readinessGates"]}
    assert gates == {"KruisePodReady", "InPlaceUpdateReady"}

    # Partition 0 finishes the rollout: all four in place, currentRevision follows.
    await patch(kube, ns, "web", {"spec": {"updateStrategy": {"partition": 0}}})

    async def all_updated() -> bool:
        st = (await get(kube, ns, "web")).get("status") or {}
        return (
            st.get("updatedReadyReplicas") == 4
            and st.get("currentRevision") == st.get("updateRevision")
            and st.get("expectedUpdatedReplicas") == 4
        )

    await eventually("all four updated", all_updated, timeout=40)
    assert {p["metadata"]["uid"] for p in await pods_of(kube, ns, "web")} == before


async def endpoints(kube: KubeClient, namespace: str, service: str) -> dict[str, bool]:
    """Pod name → ready, from the Service's EndpointSlices."""
    slices = await kube.request_json(
        "GET",
        f"/apis/discovery.k8s.io/v1/namespaces/{namespace}/endpointslices",
        query={"labelSelector": f"kubernetes.io/service-name={service}"},
    )
    found: dict[str, bool] = {}
    for item in slices.get("items") or []:
        for endpoint in item.get("endpoints") or []:
            name = (endpoint.get("targetRef") or {}).get("name")
            if name:
                found[name] = bool((endpoint.get("conditions") or {}).get("ready"))
    return found


async def service(kube: KubeClient, namespace: str, app: str) -> None:
    body = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": app},
        "spec": {"selector": {"app": app}, "ports": [{"port": 80, "targetPort": 8080}]},
    }
    await kube.request("POST", f"/api/v1/namespaces/{namespace}/services", body=orjson.dumps(body))


@pytest.mark.parametrize("mark", [True, False], ids=["markPodNotReady", "without markPodNotReady"])
async def test_scale_in_held_by_a_pre_delete_hook(kube: KubeClient, mark: bool) -> None:
    ns = f"cs-predelete-{'mark' if mark else 'plain'}"
    await ensure_namespace(kube, ns)
    await service(kube, ns, "hooked")
    hook = {"finalizersHandler": [FINALIZER], "markPodNotReady": mark}
    await create(
        kube,
        ns,
        clone_set("hooked", replicas=3, lifecycle={"preDelete": hook}, finalizers=[FINALIZER]),
    )
    await eventually("3 ready pods", lambda: all_ready(kube, ns, "hooked", 3), timeout=30)

    async def three_endpoints() -> bool:
        found = await endpoints(kube, ns, "hooked")
        return len(found) == 3 and all(found.values())

    await eventually("3 ready endpoints", three_endpoints)
    await patch(kube, ns, "hooked", {"spec": {"replicas": 2}})

    async def victim() -> dict[str, Any] | None:
        for pod in await pods_of(kube, ns, "hooked"):
            if state(pod) == "PreparingDelete":
                return pod
        return None

    async def has_victim() -> bool:
        return await victim() is not None

    await eventually("a pod in PreparingDelete", has_victim)
    held = await victim()
    assert held is not None
    name = held["metadata"]["name"]
    if mark:

        async def not_ready() -> bool:
            pod = next(
                p for p in await pods_of(kube, ns, "hooked") if p["metadata"]["name"] == name
            )
            kruise = condition(pod, "KruisePodReady")
            return (
                kruise is not None
                and kruise["status"] == "False"
                and kruise["message"] == '[{"userAgent":"Lifecycle","key":"preDeleteHook"}]'
                and not ready(pod)
            )

        await eventually("the held pod is NotReady", not_ready)

        async def out_of_endpoints() -> bool:
            return (await endpoints(kube, ns, "hooked")).get(name) is False

        await eventually("the held pod is not a ready endpoint", out_of_endpoints)
    else:
        await asyncio.sleep(1.0)
        pod = next(p for p in await pods_of(kube, ns, "hooked") if p["metadata"]["name"] == name)
        assert ready(pod)
        assert (await endpoints(kube, ns, "hooked")).get(name) is True

    # Scale back to 3: with markPodNotReady the pod stays held and nothing new is made;
    # without it, the pod goes back to Normal (SPEC 3.5).
    await patch(kube, ns, "hooked", {"spec": {"replicas": 3}})

    async def observed() -> bool:
        cs = await get(kube, ns, "hooked")
        st = cs.get("status") or {}
        return st.get("observedGeneration") == cs["metadata"]["generation"]

    if mark:
        # The controller has acted on replicas 3 (observedGeneration), and still nothing moves.
        await eventually("replicas 3 observed", observed)
        await asyncio.sleep(1.0)
        pods = await pods_of(kube, ns, "hooked")
        assert len(pods) == 3
        assert state(next(p for p in pods if p["metadata"]["name"] == name)) == "PreparingDelete"
        # Release the hook: the pod is deleted, then a replacement is created.
        await kube.request(
            "PATCH",
            f"/api/v1/namespaces/{ns}/pods/{name}",
            body=orjson.dumps([{"op": "remove", "path": "/metadata/finalizers"}]),
            content_type="application/json-patch+json",
        )

        async def replaced() -> bool:
            pods = [
                p
                for p in await pods_of(kube, ns, "hooked")
                if not p["metadata"].get("deletionTimestamp")
            ]
            names = {p["metadata"]["name"] for p in pods}
            return name not in names and len(pods) == 3 and all(ready(p) for p in pods)

        await eventually("the held pod replaced", replaced, timeout=30)
    else:

        async def restored() -> bool:
            pods = await pods_of(kube, ns, "hooked")
            return len(pods) == 3 and all(state(p) == "Normal" for p in pods)

        await eventually("the held pod back to Normal", restored)


async def test_recreate_update_held_by_a_pre_delete_hook(kube: KubeClient) -> None:
    ns = "cs-recreate"
    await ensure_namespace(kube, ns)
    hook = {"labelsHandler": {"hook": "true"}}
    body = clone_set("rc", replicas=2, lifecycle={"preDelete": hook}, update={"maxUnavailable": 1})
    body["spec"]["template"]["metadata"]["labels"]["hook"] = "true"
    await create(kube, ns, body)
    await eventually("2 ready pods", lambda: all_ready(kube, ns, "rc", 2), timeout=30)
    await patch(
        kube,
        ns,
        "rc",
        {"spec": {"template": {"spec": {"containers": [{"name": "main", "image": "nginx:1.28"}]}}}},
    )

    async def one_preparing() -> bool:
        pods = await pods_of(kube, ns, "rc")
        return sum(state(p) == "PreparingDelete" for p in pods) == 1 and len(pods) == 2

    await eventually("exactly one pod in PreparingDelete", one_preparing)
    await asyncio.sleep(1.0)
    pods = await pods_of(kube, ns, "rc")
    assert len(pods) == 2 and sum(state(p) == "PreparingDelete" for p in pods) == 1
    held = next(p for p in pods if state(p) == "PreparingDelete")["metadata"]["name"]
    await kube.request(
        "PATCH",
        f"/api/v1/namespaces/{ns}/pods/{held}",
        body=orjson.dumps({"metadata": {"labels": {"hook": None}}}),
        content_type="application/merge-patch+json",
    )

    async def new_revision_pod() -> bool:
        cs = await get(kube, ns, "rc")
        rev = (cs.get("status") or {}).get("updateRevision")
        pods = await pods_of(kube, ns, "rc")
        names = {p["metadata"]["name"] for p in pods}
        return held not in names and any(
            p["metadata"]["labels"].get("controller-revision-hash") == rev for p in pods
        )

    await eventually(
        "the held pod deleted and a new-revision pod made", new_revision_pod, timeout=30
    )


async def test_a_change_that_cannot_be_made_in_place_recreates_the_pod(kube: KubeClient) -> None:
    ns = "cs-not-in-place"
    await ensure_namespace(kube, ns)
    await create(kube, ns, clone_set("res", replicas=2, update={"type": "InPlaceIfPossible"}))
    await eventually("2 ready pods", lambda: all_ready(kube, ns, "res", 2), timeout=30)
    before = {p["metadata"]["uid"] for p in await pods_of(kube, ns, "res")}
    resources = {"requests": {"cpu": "200m"}}
    await patch(
        kube,
        ns,
        "res",
        {
            "spec": {
                "template": {
                    "spec": {
                        "containers": [
                            {"name": "main", "image": "nginx:1.27", "resources": resources}
                        ]
                    }
                }
            }
        },
    )

    async def recreated() -> bool:
        pods = [
            p for p in await pods_of(kube, ns, "res") if not p["metadata"].get("deletionTimestamp")
        ]
        return (
            len(pods) == 2
            and not ({p["metadata"]["uid"] for p in pods} & before)
            and all(ready(p) for p in pods)
            and all(p["spec"]["containers"][0].get("resources") == resources for p in pods)
        )

    await eventually("both pods re-created with the new resources", recreated, timeout=40)


async def test_webhooks_default_and_refuse(kube: KubeClient) -> None:
    ns = "cs-admission"
    await ensure_namespace(kube, ns)
    created = await create(kube, ns, clone_set("defaults", replicas=0))
    spec = created["spec"]
    assert spec["updateStrategy"]["type"] == "ReCreate"
    assert spec["updateStrategy"]["maxUnavailable"] == "20%"
    assert spec["revisionHistoryLimit"] == 10

    bad = clone_set("bad", replicas=1)
    bad["spec"]["selector"] = {"matchLabels": {"app": "other"}}
    with pytest.raises(errors.Invalid) as refused:
        await create(kube, ns, bad)
    assert "spec.template.metadata.labels" in str(refused.value)
    assert "`selector` does not match template `labels`" in str(refused.value)

    both_zero = clone_set("zero", replicas=1, update={"maxUnavailable": 0, "maxSurge": 0})
    with pytest.raises(errors.Invalid) as refused:
        await create(kube, ns, both_zero)
    assert "maxUnavailable" in str(refused.value)

    bad_finalizer = clone_set(
        "fin", replicas=1, lifecycle={"preDelete": {"finalizersHandler": ["not a name!"]}}
    )
    with pytest.raises(errors.Invalid) as refused:
        await create(kube, ns, bad_finalizer)
    assert "finalizersHandler" in str(refused.value)


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed")
async def test_kubectl_scales_a_cloneset_and_prints_its_columns(
    kube: KubeClient, mesh: LocalMesh
) -> None:
    """``kubectl scale cloneset`` goes through ``/scale`` (as an HPA does), and
    ``kubectl get clonesets`` shows OpenKruise's columns with the controller's numbers."""
    ns = "cs-kubectl"
    await ensure_namespace(kube, ns)
    await create(kube, ns, clone_set("sc", replicas=1))
    await eventually("1 ready pod", lambda: all_ready(kube, ns, "sc", 1), timeout=30)

    async def kubectl(*args: str) -> str:
        proc = await asyncio.create_subprocess_exec(
            "kubectl",
            "--kubeconfig",
            str(mesh.kubeconfig),
            "-n",
            ns,
            *args,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), timeout=30)
        assert proc.returncode == 0, err.decode()
        return out.decode()

    assert "scaled" in await kubectl("scale", "cloneset/sc", "--replicas=3")
    await eventually("3 ready pods", lambda: all_ready(kube, ns, "sc", 3), timeout=30)

    async def counted() -> bool:
        st = (await get(kube, ns, "sc")).get("status") or {}
        return st.get("readyReplicas") == 3 and st.get("updatedReadyReplicas") == 3

    await eventually("status counts 3 ready", counted)
    header, row = (await kubectl("get", "clonesets")).strip().splitlines()
    assert header.split() == [
        "NAME",
        "DESIRED",
        "UPDATED",
        "UPDATED_READY",
        "READY",
        "TOTAL",
        "AGE",
    ]
    assert row.split()[:6] == ["sc", "3", "3", "3", "3", "3"]


async def test_an_in_place_update_held_by_its_hook_with_mark_pod_not_ready(
    kube: KubeClient,
) -> None:
    """SPEC 3.6 scenario 9 on a CloneSet: Normal and hooked → PreparingUpdate and NotReady
    (``preUpdateHook``); the user releases it → Updating; the update completes → Updated and
    Ready again (the key removed); the user re-arms the hook → Normal."""
    ns = "cs-inplace-hook"
    await ensure_namespace(kube, ns)
    hook = {"labelsHandler": {"ready": "true"}, "markPodNotReady": True}
    body = clone_set(
        "ip",
        replicas=1,
        lifecycle={"inPlaceUpdate": hook},
        update={"type": "InPlaceIfPossible"},
    )
    body["spec"]["template"]["metadata"]["labels"]["ready"] = "true"
    await create(kube, ns, body)
    await eventually("1 ready pod", lambda: all_ready(kube, ns, "ip", 1), timeout=30)
    (pod,) = await pods_of(kube, ns, "ip")
    name = pod["metadata"]["name"]
    path = f"/api/v1/namespaces/{ns}/pods/{name}"
    await patch(
        kube,
        ns,
        "ip",
        {"spec": {"template": {"spec": {"containers": [{"name": "main", "image": "nginx:1.28"}]}}}},
    )

    async def current() -> dict[str, Any]:
        return await kube.request_json("GET", path)

    async def preparing() -> bool:
        now = await current()
        kruise = condition(now, "KruisePodReady") or {}
        return (
            state(now) == "PreparingUpdate"
            and kruise.get("status") == "False"
            and kruise.get("message") == '[{"userAgent":"Lifecycle","key":"preUpdateHook"}]'
            and not ready(now)
        )

    await eventually("PreparingUpdate and NotReady", preparing)
    await asyncio.sleep(1.0)
    held = await current()
    assert held["spec"]["containers"][0]["image"] == "nginx:1.27", "held by its hook"

    async def label(value: str) -> None:
        await kube.request(
            "PATCH",
            path,
            body=orjson.dumps({"metadata": {"labels": {"ready": value}}}),
            content_type="application/merge-patch+json",
        )

    await label("false")  # the user's controller releases the hook

    async def updated() -> bool:
        now = await current()
        kruise = condition(now, "KruisePodReady") or {}
        return (
            state(now) == "Updated"
            and now["spec"]["containers"][0]["image"] == "nginx:1.28"
            and kruise.get("status") == "True"
            and ready(now)
        )

    await eventually("Updated, on the new image, Ready again", updated, timeout=30)
    assert (await current())["metadata"]["uid"] == pod["metadata"]["uid"], "in place"
    await label("true")  # re-armed

    async def normal() -> bool:
        return state(await current()) == "Normal"

    await eventually("back to Normal", normal)
