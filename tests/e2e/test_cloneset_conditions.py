"""CloneSet ``status.conditions`` end to end: the sandbox, the gateway, two rollout replicas,
everything through the Kubernetes API.

The sandbox refuses the namespace's pod creates (``/sandbox/v1/faults``: 409 Conflict, as
an API server under contention answers) while a CloneSet scales out: ``FailedScale`` shows
in its status with the API server's message, as OpenKruise v1.2 writes it; once creates go
through it is gone. A condition a user wrote through the status subresource is still there
after every status write of the controller's.
"""

from __future__ import annotations

import asyncio
import shutil
from typing import Any

import orjson
import pytest
import yaml

from services.cli.local import LocalMesh
from services.gateway.kube.client import KubeClient
from tests.e2e.conftest import ensure_namespace, eventually
from tests.e2e.test_cloneset import BASE, all_ready, clone_set, create, get, patch

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

NS = "cs-conditions"
USERS = {
    "type": "example.io/Audited",
    "status": "True",
    "reason": "Reviewed",
    "message": "signed off by the release team",
    "lastTransitionTime": "2026-01-01T00:00:00Z",
}


def conditions(cs: dict[str, Any]) -> list[dict[str, Any]]:
    return list((cs.get("status") or {}).get("conditions") or [])


def of_type(cs: dict[str, Any], kind: str) -> dict[str, Any] | None:
    return next((c for c in conditions(cs) if c.get("type") == kind), None)


async def kubectl_yaml(mesh: LocalMesh) -> dict[str, Any]:
    """``kubectl get cloneset web -o yaml``, read back."""
    proc = await asyncio.create_subprocess_exec(
        "kubectl",
        "--kubeconfig",
        str(mesh.kubeconfig),
        "-n",
        NS,
        "get",
        "cloneset",
        "web",
        "-o",
        "yaml",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=30)
    assert proc.returncode == 0, err.decode()
    loaded = yaml.safe_load(out)
    assert isinstance(loaded, dict)
    return loaded


async def refuse_pod_creates(kube: KubeClient, count: int) -> None:
    body = {"conflicts": {"resource": "pods", "namespace": NS, "count": count}}
    await kube.request("POST", "/sandbox/v1/faults", body=orjson.dumps(body))


async def test_failed_scale_comes_and_goes_and_a_users_condition_stays(
    kube: KubeClient, mesh: LocalMesh
) -> None:
    await ensure_namespace(kube, NS)
    await create(kube, NS, clone_set("web", replicas=1))
    await eventually("1 ready pod", lambda: all_ready(kube, NS, "web", 1), timeout=30)

    # A user records a condition of their own (kubectl edit --subresource=status would).
    await kube.request(
        "PATCH",
        f"{BASE}/{NS}/clonesets/web/status",
        body=orjson.dumps({"status": {"conditions": [USERS]}}),
        content_type="application/merge-patch+json",
    )

    await refuse_pod_creates(kube, 1000)
    try:
        await patch(kube, NS, "web", {"spec": {"replicas": 3}})

        async def failing() -> bool:
            return of_type(await get(kube, NS, "web"), "FailedScale") is not None

        await eventually("FailedScale in the status", failing)
        cs = await get(kube, NS, "web")
        failed = of_type(cs, "FailedScale")
        assert failed is not None
        assert set(failed) == {"type", "status", "lastTransitionTime", "message"}
        assert failed["status"] == "True"
        assert failed["message"].startswith("Operation cannot be fulfilled on pods")
        assert conditions(cs)[0] == USERS, "the user's condition was written back"
        assert cs["status"]["observedGeneration"] == cs["metadata"]["generation"]
        if shutil.which("kubectl") is not None:
            shown = conditions(await kubectl_yaml(mesh))
            assert [c["type"] for c in shown] == ["example.io/Audited", "FailedScale"]
    finally:
        await kube.request("DELETE", "/sandbox/v1/faults")

    await eventually("3 ready pods", lambda: all_ready(kube, NS, "web", 3), timeout=30)

    async def recovered() -> bool:
        cs = await get(kube, NS, "web")
        return cs["status"].get("readyReplicas") == 3 and of_type(cs, "FailedScale") is None

    await eventually("FailedScale gone, 3 ready counted", recovered)
    assert conditions(await get(kube, NS, "web")) == [USERS]
