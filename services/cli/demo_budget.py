"""The PodUnavailableBudget step of the demo: evictions beyond the budget wait their turn.

Through the Kubernetes API only: a StatefulSet of 3 with a budget allowing 1 unavailable
pod. One eviction is admitted; the next is refused with 429 (what ``kubectl drain`` retries
on) and names the budget; it is retried, as a drain would, until the evicted pod is back
and Ready, and then it is admitted.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
from rich.console import Console
from rich.table import Table

from services.gateway.kube.client import KubeClient
from services.kit import errors

NAMESPACE = "demo-budget"
STS_PATH = f"/apis/apps/v1/namespaces/{NAMESPACE}/statefulsets"
PODS_PATH = f"/api/v1/namespaces/{NAMESPACE}/pods"
PUB_PATH = f"/apis/policy.kruise.io/v1alpha1/namespaces/{NAMESPACE}/podunavailablebudgets"

BUDGET = {
    "apiVersion": "policy.kruise.io/v1alpha1",
    "kind": "PodUnavailableBudget",
    "metadata": {"name": "db"},
    "spec": {
        "targetRef": {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "db"},
        "maxUnavailable": 1,
    },
}
STATEFULSET = {
    "apiVersion": "apps/v1",
    "kind": "StatefulSet",
    "metadata": {"name": "db"},
    "spec": {
        "replicas": 3,
        "serviceName": "db",
        "podManagementPolicy": "Parallel",
        "selector": {"matchLabels": {"app": "db"}},
        "template": {
            "metadata": {"labels": {"app": "db"}},
            "spec": {"containers": [{"name": "db", "image": "postgres:17"}]},
        },
    },
}


async def _post(kube: KubeClient, path: str, body: dict[str, Any]) -> None:
    try:
        await kube.request("POST", path, body=orjson.dumps(body))
    except errors.AlreadyExists:
        pass


async def _status(kube: KubeClient) -> dict[str, Any]:
    return (await kube.request_json("GET", f"{PUB_PATH}/db")).get("status") or {}


async def evict(kube: KubeClient, pod: str) -> tuple[int, str]:
    """(HTTP status, message) of an eviction through ``pods/eviction``."""
    body = {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": pod}}
    try:
        await kube.request("POST", f"{PODS_PATH}/{pod}/eviction", body=orjson.dumps(body))
    except errors.MeshError as e:
        return e.http_status, str(e)
    return 201, "evicted"


def _table(status: dict[str, Any]) -> Table:
    table = Table("ALLOWED", "CURRENT", "DESIRED", "TOTAL", "DISRUPTED", title="budget db")
    table.add_row(
        str(status.get("unavailableAllowed")),
        str(status.get("currentAvailable")),
        str(status.get("desiredAvailable")),
        str(status.get("totalReplicas")),
        ", ".join(sorted(status.get("disruptedPods") or {})) or "-",
    )
    return table


async def show_pod_unavailable_budget(kube: KubeClient, console: Console, *, wait_for: Any) -> None:
    """Run the step; ``wait_for(what, check, timeout=...)`` polls until ``check`` is true."""
    from services.cli.demo import ensure_namespace

    await ensure_namespace(kube, NAMESPACE)
    await _post(kube, PUB_PATH, BUDGET)
    await _post(kube, STS_PATH, STATEFULSET)
    console.print(
        "created StatefulSet db (3 replicas) and PodUnavailableBudget db (maxUnavailable 1)"
    )

    async def ready() -> bool:
        status = await _status(kube)
        return status.get("unavailableAllowed") == 1 and status.get("totalReplicas") == 3

    await wait_for("budget db allowing 1", ready, timeout=60)
    console.print(_table(await _status(kube)))

    code, _ = await evict(kube, "db-0")
    console.print(f"evict db-0: [green]{code}[/]")
    code, message = await evict(kube, "db-1")
    console.print(f"evict db-1: [yellow]{code}[/] {message}")
    console.print(_table(await _status(kube)))

    started = time.monotonic()
    attempts = 1
    while code != 201:
        if time.monotonic() - started > 60:
            raise TimeoutError("db-1 was still refused after 60 s")
        await asyncio.sleep(0.5)
        attempts += 1
        code, message = await evict(kube, "db-1")
    console.print(
        f"evict db-1 again, as kubectl drain retries a 429: [green]{code}[/] after {attempts} "
        f"attempts in {time.monotonic() - started:.1f} s (db-0 came back and is Ready)"
    )
    console.print(_table(await _status(kube)))
