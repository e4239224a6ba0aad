"""``drain-plan`` end to end: a node's pods planned against real PodUnavailableBudgets.

Two namespaces owned by different budget replicas each run a StatefulSet ``web`` of 3 pods
pinned to the drained node, protected by a PodUnavailableBudget (targetRef, maxUnavailable
1). Everything else is the mesh's own doing: the budget service's mutating webhook or
status loop annotates the pods with ``kruise.io/related-pub``, and the loop writes the
budget's status (allowed 1, current 3, desired 2, total 3) before anything is planned.
Beside them on the node: a pod without a budget, a DaemonSet-managed pod and a mirror pod
(both left out, as ``kubectl drain`` leaves them).
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

import orjson
import pytest

from kruise.budget.v1 import budget_pb2, budget_pb2_grpc
from services.cli.local import ROOT, LocalMesh
from services.gateway.kube.client import KubeClient
from tests.e2e.conftest import ensure_namespace, eventually, owner

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

NODE = "node-b1"
RELATED_PUB = "kruise.io/related-pub"
STATUS = {
    "unavailableAllowed": 1,
    "currentAvailable": 3,
    "desiredAvailable": 2,
    "totalReplicas": 3,
}


def two_namespaces(mesh: LocalMesh) -> tuple[str, str]:
    """Two namespaces whose budget owners differ."""
    first = "drain-a"
    second = next(
        f"drain-b{i}"
        for i in range(100)
        if owner(mesh, "budget", f"drain-b{i}") != owner(mesh, "budget", first)
    )
    return first, second


def statefulset() -> dict[str, Any]:
    labels = {"app": "web"}
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 3,
            "serviceName": "web",
            "podManagementPolicy": "Parallel",
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "nodeSelector": {"kubernetes.io/hostname": NODE},
                    "containers": [{"name": "main", "image": "nginx:1.27"}],
                },
            },
        },
    }


def budget() -> dict[str, Any]:
    return {
        "apiVersion": "policy.kruise.io/v1alpha1",
        "kind": "PodUnavailableBudget",
        "metadata": {"name": "web"},
        "spec": {
            "targetRef": {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "web"},
            "maxUnavailable": 1,
        },
    }


def bare_pod(name: str, node: str = NODE, **metadata: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, **metadata},
        "spec": {"nodeName": node, "containers": [{"name": "main", "image": "pause:3.9"}]},
    }


async def post(kube: KubeClient, path: str, body: dict[str, Any]) -> None:
    await kube.request("POST", path, body=orjson.dumps(body))


async def protected_workload(kube: KubeClient, ns: str) -> None:
    """StatefulSet ``web`` (3 pods on NODE) and its budget, once the budget service has
    annotated the pods and written the budget's status."""
    await ensure_namespace(kube, ns)
    await post(kube, f"/apis/apps/v1/namespaces/{ns}/statefulsets", statefulset())
    pubs = f"/apis/policy.kruise.io/v1alpha1/namespaces/{ns}/podunavailablebudgets"
    await post(kube, pubs, budget())

    async def protected() -> bool:
        pods = await kube.request_json("GET", f"/api/v1/namespaces/{ns}/pods")
        annotated = [
            p
            for p in pods.get("items", [])
            if p["spec"].get("nodeName") == NODE
            and (p["metadata"].get("annotations") or {}).get(RELATED_PUB) == "web"
        ]
        status = (await kube.request_json("GET", f"{pubs}/web")).get("status") or {}
        return len(annotated) == 3 and all(status.get(k) == v for k, v in STATUS.items())

    await eventually(f"the budget service protects {ns}/web", protected, timeout=30)


def api_args(mesh: LocalMesh) -> list[str]:
    """The gateway's API port and the CA of its serving certificate."""
    return ["--server", mesh.api_target, "--ca-file", mesh.api_ca_file]


async def drain_plan(*args: str) -> tuple[int, str, str]:
    """``python -m services.cli drain-plan ARGS`` as a user runs it: exit code, out, err."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.cli",
        "drain-plan",
        *args,
        cwd=ROOT,
        env={**os.environ, "COLUMNS": "300", "NO_COLOR": "1"},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=30)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_drain_plan_for_a_node(mesh: LocalMesh, kube: KubeClient) -> None:
    first, second = two_namespaces(mesh)
    await asyncio.gather(protected_workload(kube, first), protected_workload(kube, second))
    await post(kube, f"/api/v1/namespaces/{first}/pods", bare_pod("free"))
    daemon = {"kind": "DaemonSet", "apiVersion": "apps/v1", "name": "agent", "uid": "ds-uid"}
    await post(
        kube,
        f"/api/v1/namespaces/{first}/pods",
        bare_pod("agent-x", ownerReferences=[{**daemon, "controller": True}]),
    )
    await post(
        kube,
        f"/api/v1/namespaces/{second}/pods",
        bare_pod("static-" + NODE, annotations={"kubernetes.io/config.mirror": "abc"}),
    )

    # The owning replica's plan, straight from the RPC, once its cache has everything.
    refs = [budget_pb2.PodRef(namespace=first, name=n) for n in ("web-0", "web-1", "web-2")]
    refs.append(budget_pb2.PodRef(namespace=first, name="free"))
    answer: list[budget_pb2.PlanDisruptionResponse] = []

    async def planned() -> bool:
        async with mesh.replica_channel(owner(mesh, "budget", first)) as channel:
            stub = budget_pb2_grpc.BudgetServiceStub(channel)
            got = await stub.PlanDisruption(budget_pb2.PlanDisruptionRequest(pods=refs))
        answer[:] = [got]
        return [e.verdict for e in got.entries] == [
            budget_pb2.PLAN_VERDICT_NOW,
            budget_pb2.PLAN_VERDICT_WAIT,
            budget_pb2.PLAN_VERDICT_WAIT,
            budget_pb2.PLAN_VERDICT_NOW,
        ]

    await eventually("the owner plans with the budget's status", planned, timeout=20)
    entries = answer[0].entries
    assert [(e.pod, e.budget, e.order, e.spends_budget) for e in entries] == [
        ("web-0", "web", 2, True),
        ("web-1", "web", 0, False),
        ("web-2", "web", 0, False),
        ("free", "", 1, False),
    ]
    assert entries[1].reason.startswith(
        "PodUnavailableBudget web allows no more unavailable pods (unavailableAllowed 1: "
        "currentAvailable 3, desiredAvailable 2, totalReplicas 3), used up by the eviction "
        "planned before it: web-0"
    )
    not_owner = next(a for a in mesh.addresses["budget"] if a != owner(mesh, "budget", first))
    async with mesh.replica_channel(not_owner) as channel:
        other = await budget_pb2_grpc.BudgetServiceStub(channel).PlanDisruption(
            budget_pb2.PlanDisruptionRequest(pods=refs[:1])
        )
    assert other.entries[0].verdict == budget_pb2.PLAN_VERDICT_NOT_OWNED
    assert other.entries[0].owner == owner(mesh, "budget", first)

    # The command a user runs: one address, the gateway's API port, which asks every budget
    # replica; the caller's token is the kubeconfig user's (the sandbox admin), over TLS.
    assert mesh.kubeconfig is not None
    code, out, err = await drain_plan(
        "--node", NODE, "--kubeconfig", mesh.kubeconfig, *api_args(mesh)
    )
    assert code == 0, err
    assert "left out, as kubectl drain does" in out
    assert f"{first}/agent-x" in out and f"{second}/static-{NODE}" in out
    assert "3 pods can be evicted now, 4 must wait" in out
    lines = out.splitlines()
    first_row = next(line for line in lines if f"{first}/free" in line)
    assert "NOW" in first_row and first_row.lstrip("│ ").startswith("1 ")
    for ns in (first, second):
        assert sum(1 for line in lines if f"{ns}/web-" in line and "WAIT" in line) == 2
        assert sum(1 for line in lines if f"{ns}/web-" in line and "NOW" in line) == 1


async def test_drain_plan_errors_are_one_line(mesh: LocalMesh, kube: KubeClient) -> None:
    assert mesh.kubeconfig is not None
    code, out, err = await drain_plan(
        "--node", "node-zz", "--kubeconfig", mesh.kubeconfig, *api_args(mesh)
    )
    assert code == 1 and "error: node node-zz not found" in err
    assert "Traceback" not in err + out

    # A caller whose ServiceAccount may not get the pods: refused, saying which token.
    await ensure_namespace(kube, "drain-errors")
    await post(
        kube, "/api/v1/namespaces/drain-errors/serviceaccounts", {"metadata": {"name": "nobody"}}
    )
    await post(kube, "/api/v1/namespaces/drain-errors/pods", bare_pod("lonely", "node-c1"))
    request = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}}
    issued = await kube.request_json(
        "POST",
        "/api/v1/namespaces/drain-errors/serviceaccounts/nobody/token",
        body=orjson.dumps(request),
    )
    code, out, err = await drain_plan(
        "--node", "node-c1", "--kubeconfig", mesh.kubeconfig, *api_args(mesh),
        "--token", issued["status"]["token"],
    )  # fmt: skip
    assert code == 1 and "PERMISSION_DENIED" in err
    assert 'cannot get resource "pods"' in " ".join(err.split())
    assert "--token was used" in " ".join(err.split())
    assert "Traceback" not in err + out

    code, out, err = await drain_plan(
        "--node", "node-c1", "--kubeconfig", mesh.kubeconfig, "--server", "127.0.0.1:1"
    )
    assert code == 1 and "the gateway 127.0.0.1:1 is unavailable" in err
    assert "Traceback" not in err + out
