"""``kruise-mesh demo``: start the mesh and show, through the Kubernetes API, what it does.

Every step goes through the API server the way a user's kubectl would; the
mesh's answers are read back from the API and from the services' gRPC read
APIs.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
import yaml
from rich.console import Console
from rich.table import Table

from kruise.common.v1 import mesh_pb2, mesh_pb2_grpc
from services.cli import demo_budget, demo_placement, demo_rollout, demo_rollout_api
from services.cli.local import SERVICES, LocalMesh
from services.deploy_files import deploy_path
from services.gateway.kube.client import KubeClient
from services.kit import errors

NAMESPACES = [
    "demo-a",
    "demo-b",
    "demo-c",
    "demo-d",
    demo_placement.NAMESPACE,
    demo_budget.NAMESPACE,
    demo_rollout.NAMESPACE,
    demo_rollout_api.NAMESPACE,
]


def demo_pod(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "demo"}},
        "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]},
    }


async def wait_for(
    what: str, check: Callable[[], Awaitable[bool]], *, timeout: float = 30.0
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.2)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")


async def ensure_namespace(kube: KubeClient, name: str) -> None:
    body = orjson.dumps({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    try:
        await kube.request("POST", "/api/v1/namespaces", body=body)
    except errors.AlreadyExists:
        pass


async def apply(kube: KubeClient, obj: dict[str, Any], namespace: str) -> None:
    res = await kube.resolve(api_version=obj["apiVersion"], kind=obj["kind"])
    obj = {**obj, "metadata": {**obj["metadata"], "namespace": namespace}}
    try:
        await kube.request("POST", kube.path(res, namespace=namespace), body=orjson.dumps(obj))
    except errors.AlreadyExists:
        pass


async def replica_status(
    mesh: LocalMesh, address: str
) -> tuple[mesh_pb2.GetReplicaStatusResponse, list[str]]:
    async with mesh.replica_channel(address) as channel:
        stub = mesh_pb2_grpc.MeshServiceStub(channel)
        status = await stub.GetReplicaStatus(mesh_pb2.GetReplicaStatusRequest(), timeout=5)
        pods = await stub.ListCachedObjects(
            mesh_pb2.ListCachedObjectsRequest(kind=mesh_pb2.KIND_POD), timeout=5
        )
    return status, [f"{k.namespace}/{k.name}" for k in pods.keys]


async def run_demo(
    *,
    workdir: Path,
    kubeconfig: str | None,
    replicas: int,
    keep: bool,
    console: Console,
    webhook_host: str = "127.0.0.1",
) -> int:
    target = kubeconfig or "the embedded sandbox"
    console.rule(f"[bold]kruise-mesh demo[/] against {target}")
    with console.status("starting the sandbox, the gateway and the services…"):
        mesh = LocalMesh(
            workdir=workdir, replicas=replicas, kubeconfig=kubeconfig, webhook_host=webhook_host
        )
        await mesh.start()
    try:
        table = Table("process", "pid", "listens on", title="processes (each its own OS process)")
        for name, proc in mesh.procs.items():
            where = ", ".join(
                f"{k}={v}" for k, v in proc.ready.items() if "port" in k or k == "url"
            )
            table.add_row(name, str(proc.pid), where)
        console.print(table)
        console.print(f"logs: {mesh.logs}/<process>.log   kubeconfig: {mesh.kubeconfig}")

        kube = await KubeClient.connect(kubeconfig=mesh.kubeconfig)
        try:
            await walk_through(kube, mesh, console)
            if kubeconfig and not keep:
                # A real cluster outlives the demo: take away what it created.
                for ns in NAMESPACES:
                    with contextlib.suppress(errors.NotFound):
                        await kube.request("DELETE", f"/api/v1/namespaces/{ns}")
                console.print(f"deleted the demo namespaces {', '.join(NAMESPACES)}")
        finally:
            await kube.close()

        if keep:
            console.print(
                f"\nThe mesh keeps running. Try:  [bold]kubectl --kubeconfig {mesh.kubeconfig} "
                "get pods -A[/]\nPress Ctrl-C to stop."
            )
            while True:
                await asyncio.sleep(3600)
    finally:
        with console.status("stopping every process…"):
            await mesh.stop()
    console.print("[green]done[/]")
    return 0


async def walk_through(kube: KubeClient, mesh: LocalMesh, console: Console) -> None:
    console.rule("1. pods go through admission and reach the replica that owns their namespace")
    for ns in NAMESPACES:
        await ensure_namespace(kube, ns)
        await apply(kube, demo_pod("web"), ns)

    async def all_running() -> bool:
        for ns in NAMESPACES:
            pod = await kube.request_json("GET", f"/api/v1/namespaces/{ns}/pods/web")
            if pod.get("status", {}).get("phase") != "Running":
                return False
        return True

    await wait_for("demo pods to run", all_running)
    pods = Table(
        "namespace",
        "pod",
        "node",
        "pod IP",
        *SERVICES,
        title="each pod reaches exactly one replica per service: the owner of its namespace",
    )
    statuses = {s: [await replica_status(mesh, a) for a in mesh.addresses[s]] for s in SERVICES}

    async def every_replica_has_its_pods() -> bool:
        for s in SERVICES:
            statuses[s] = [await replica_status(mesh, a) for a in mesh.addresses[s]]
            held = {p for _, pods in statuses[s] for p in pods}
            if not all(f"{ns}/web" in held for ns in NAMESPACES):
                return False
        return True

    await wait_for("every pod to reach a replica of each service", every_replica_has_its_pods)
    for ns in NAMESPACES:
        pod = await kube.request_json("GET", f"/api/v1/namespaces/{ns}/pods/web")
        owners = []
        for s in SERVICES:
            holders = [f"{s}-{i}" for i, (_, held) in enumerate(statuses[s]) if f"{ns}/web" in held]
            owners.append(", ".join(holders) or "-")
        pods.add_row(
            ns,
            "web",
            pod["spec"].get("nodeName", "-"),
            pod.get("status", {}).get("podIP", "-"),
            *owners,
        )
    console.print(pods)

    console.rule("2. OpenKruise YAML applies unchanged (deploy/examples)")
    for path in sorted(deploy_path("examples").glob("*.yaml")):
        for obj in yaml.safe_load_all(path.read_text()):
            if obj and obj["apiVersion"].startswith("argoproj.io/"):
                console.print(f"skipped {obj['kind']} from {path.name}: it needs Argo Rollouts")
            elif obj:
                await apply(kube, obj, "demo-a")
                console.print(f"applied {obj['kind']}/{obj['metadata']['name']} from {path.name}")

    replicas = Table(
        "replica", "address", "synced", "cached objects", "admission reviews", title="replicas"
    )
    for s in SERVICES:
        for i, address in enumerate(mesh.addresses[s]):
            status, _ = await replica_status(mesh, address)
            cached = sum(c.count for c in status.counts)
            replicas.add_row(
                f"{s}-{i}", address, str(status.synced), str(cached), str(status.admission_reviews)
            )
    console.print(replicas)
    console.rule("3. PersistentPodState: a re-created pod goes back to its node and IP")
    await demo_placement.show_persistent_pod_state(kube, mesh, console, wait_for=wait_for)
    console.rule("4. PodUnavailableBudget: evictions beyond the budget wait for their turn")
    await demo_budget.show_pod_unavailable_budget(kube, console, wait_for=wait_for)
    console.rule("5. CloneSet: partition 99% updates one pod; a hook holds a scale-in")
    await demo_rollout.show_clone_set(kube, console, wait_for=wait_for)
    console.rule("6. Rollout tools: a three-batch rollout driven over gRPC, watched")
    console.print(
        f"RolloutService at the gateway's API port {mesh.api_target} (TLS; every call carries "
        "the caller's Kubernetes token, here ServiceAccount kruise-mesh-rollout-tool's minted "
        "for the audience kruise-mesh-rollout-api, checked by TokenReview and "
        "SubjectAccessReview)"
    )
    await demo_rollout_api.show_rollout_api(
        kube, mesh.api_target, console, wait_for=wait_for, credentials=mesh.api_credentials()
    )
