"""The CloneSet step of the demo: a percentage partition, then a scale-in held by a hook.

Through the Kubernetes API only:

1. a CloneSet of 4 (InPlaceIfPossible, partition "99%") gets a new image: exactly one pod
   is updated in place (same pod, new image), and ``status.expectedUpdatedReplicas`` says 1,
   which is what a rollout tool compares ``updatedReplicas`` with;
2. a CloneSet of 3 with a preDelete hook (a finalizer, markPodNotReady) behind a Service is
   scaled to 2: the victim waits in PreparingDelete, NotReady (``KruisePodReady`` False),
   out of the Service's ready endpoints; it is deleted only once the finalizer is removed.
"""

from __future__ import annotations

from typing import Any

import orjson
from rich.console import Console
from rich.table import Table

from services.gateway.kube.client import KubeClient
from services.kit import errors

NAMESPACE = "demo-rollout"
CLONESETS = f"/apis/apps.kruise.io/v1alpha1/namespaces/{NAMESPACE}/clonesets"
PODS = f"/api/v1/namespaces/{NAMESPACE}/pods"
FINALIZER = "example.io/drain-first"


def clone_set(name: str, replicas: int, **spec: Any) -> dict[str, Any]:
    template_meta: dict[str, Any] = {"labels": {"app": name}}
    if spec.pop("finalizer", False):
        template_meta["finalizers"] = [FINALIZER]
    return {
        "apiVersion": "apps.kruise.io/v1alpha1",
        "kind": "CloneSet",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": template_meta,
                "spec": {"containers": [{"name": "main", "image": "nginx:1.27"}]},
            },
            **spec,
        },
    }


async def _post(kube: KubeClient, path: str, body: dict[str, Any]) -> None:
    try:
        await kube.request("POST", path, body=orjson.dumps(body))
    except errors.AlreadyExists:
        pass


async def _merge(kube: KubeClient, path: str, body: Any) -> None:
    await kube.request(
        "PATCH", path, body=orjson.dumps(body), content_type="application/merge-patch+json"
    )


async def _pods(kube: KubeClient, app: str) -> list[dict[str, Any]]:
    listed = await kube.request_json("GET", PODS, query={"labelSelector": f"app={app}"})
    return list(listed.get("items") or [])


def _cond(pod: dict[str, Any], kind: str) -> str:
    for c in (pod.get("status") or {}).get("conditions") or []:
        if c.get("type") == kind:
            return str(c.get("status"))
    return "-"


def _pod_table(pods: list[dict[str, Any]], title: str) -> Table:
    table = Table("pod", "image", "revision", "state", "Ready", "KruisePodReady", title=title)
    for pod in sorted(pods, key=lambda p: p["metadata"]["name"]):
        labels = pod["metadata"].get("labels") or {}
        table.add_row(
            pod["metadata"]["name"],
            pod["spec"]["containers"][0]["image"],
            labels.get("controller-revision-hash", "-"),
            labels.get("lifecycle.apps.kruise.io/state", "-"),
            _cond(pod, "Ready"),
            _cond(pod, "KruisePodReady"),
        )
    return table


def _status_table(cs: dict[str, Any]) -> Table:
    st = cs.get("status") or {}
    table = Table(
        "DESIRED",
        "UPDATED",
        "UPDATED_READY",
        "READY",
        "TOTAL",
        "EXPECTED_UPDATED",
        title=f"CloneSet {cs['metadata']['name']} (partition "
        f"{cs['spec'].get('updateStrategy', {}).get('partition')!r})",
    )
    table.add_row(
        *(
            str(x)
            for x in (
                cs["spec"].get("replicas"),
                st.get("updatedReplicas"),
                st.get("updatedReadyReplicas"),
                st.get("readyReplicas"),
                st.get("replicas"),
                st.get("expectedUpdatedReplicas"),
            )
        )
    )
    return table


async def _endpoints(kube: KubeClient, service: str) -> dict[str, bool]:
    slices = await kube.request_json(
        "GET",
        f"/apis/discovery.k8s.io/v1/namespaces/{NAMESPACE}/endpointslices",
        query={"labelSelector": f"kubernetes.io/service-name={service}"},
    )
    found: dict[str, bool] = {}
    for item in slices.get("items") or []:
        for endpoint in item.get("endpoints") or []:
            name = (endpoint.get("targetRef") or {}).get("name")
            if name:
                found[name] = bool((endpoint.get("conditions") or {}).get("ready"))
    return found


async def show_clone_set(kube: KubeClient, console: Console, *, wait_for: Any) -> None:
    """Run the step; ``wait_for(what, check, timeout=...)`` polls until ``check`` is true."""
    from services.cli.demo import ensure_namespace

    await ensure_namespace(kube, NAMESPACE)
    strategy = {"type": "InPlaceIfPossible", "partition": "99%", "maxUnavailable": "50%"}
    await _post(kube, CLONESETS, clone_set("web", 4, updateStrategy=strategy))

    async def web_ready() -> bool:
        st = (await kube.request_json("GET", f"{CLONESETS}/web")).get("status") or {}
        return st.get("readyReplicas") == 4

    await wait_for("CloneSet web: 4 ready pods", web_ready, timeout=60)
    console.print("created CloneSet web: 4 pods, InPlaceIfPossible, partition 99%")
    before = {p["metadata"]["uid"] for p in await _pods(kube, "web")}
    template = {"spec": {"containers": [{"name": "main", "image": "nginx:1.28"}]}}
    await _merge(kube, f"{CLONESETS}/web", {"spec": {"template": template}})
    console.print("set the image to nginx:1.28")

    async def one_updated() -> bool:
        cs = await kube.request_json("GET", f"{CLONESETS}/web")
        st = cs.get("status") or {}
        return (
            st.get("observedGeneration") == cs["metadata"]["generation"]
            and st.get("updatedReadyReplicas") == 1
        )

    await wait_for("one pod updated and ready", one_updated, timeout=60)
    pods = await _pods(kube, "web")
    console.print(_status_table(await kube.request_json("GET", f"{CLONESETS}/web")))
    console.print(_pod_table(pods, "pods of web: one updated in place (same pods, uids kept)"))
    same = {p["metadata"]["uid"] for p in pods} == before
    console.print(
        f"the same {len(before)} pods before and after: [green]{same}[/]; "
        "updatedReplicas == expectedUpdatedReplicas: the batch is done"
    )

    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "api"},
        "spec": {"selector": {"app": "api"}, "ports": [{"port": 80, "targetPort": 8080}]},
    }
    await _post(kube, PODS.replace("/pods", "/services"), service)
    hook = {"preDelete": {"finalizersHandler": [FINALIZER], "markPodNotReady": True}}
    await _post(kube, CLONESETS, clone_set("api", 3, lifecycle=hook, finalizer=True))

    async def api_endpoints() -> bool:
        found = await _endpoints(kube, "api")
        return len(found) == 3 and all(found.values())

    await wait_for("Service api: 3 ready endpoints", api_endpoints, timeout=60)
    console.print(
        "created CloneSet api (3 pods with finalizer example.io/drain-first; lifecycle "
        "preDelete on that finalizer with markPodNotReady) and Service api"
    )
    await _merge(kube, f"{CLONESETS}/api", {"spec": {"replicas": 2}})
    console.print("scaled api to 2")
    held: dict[str, Any] = {}

    async def victim_out() -> bool:
        for pod in await _pods(kube, "api"):
            labels = pod["metadata"].get("labels") or {}
            if labels.get("lifecycle.apps.kruise.io/state") == "PreparingDelete":
                held["pod"] = pod
                return (await _endpoints(kube, "api")).get(pod["metadata"]["name"]) is False
        return False

    await wait_for("the victim NotReady and out of the endpoints", victim_out, timeout=60)
    name = held["pod"]["metadata"]["name"]
    endpoints = await _endpoints(kube, "api")
    console.print(_pod_table(await _pods(kube, "api"), "pods of api: one held by its hook"))
    console.print(
        f"{name}: PreparingDelete, NotReady, endpoint ready={endpoints.get(name)}; the others serve"
    )
    await kube.request(
        "PATCH",
        f"{PODS}/{name}",
        body=orjson.dumps([{"op": "remove", "path": "/metadata/finalizers"}]),
        content_type="application/json-patch+json",
    )
    console.print(f"removed the finalizer from {name} (the hook is released)")

    async def gone() -> bool:
        names = {p["metadata"]["name"] for p in await _pods(kube, "api")}
        return name not in names and len(names) == 2

    await wait_for(f"{name} deleted", gone, timeout=60)
    console.print(f"{name} deleted; api has 2 pods")
