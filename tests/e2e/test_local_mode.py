"""Local mode: the mesh on this machine against a cluster it did not start.

A standalone sandbox started without CRDs stands in for the user's cluster. The
gateway must install the CRDs, register the webhook configurations with a ``url:``
pointing at itself, serve them, and remove them when it stops.
"""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from services.cli import procs
from services.cli.local import LocalMesh
from services.gateway.kube.client import KubeClient
from tests.e2e.conftest import create_pod, ensure_namespace, replica_status

pytestmark = [pytest.mark.e2e]

WEBHOOKS = "/apis/admissionregistration.k8s.io/v1"


async def test_local_mode_installs_registers_serves_and_cleans_up(tmp_path: Path) -> None:
    cluster = await procs.start(
        "cluster",
        "sandbox",
        ["--state-dir", str(tmp_path / "cluster"), "--world", "--admission"],
        log_dir=tmp_path / "logs",
    )
    kube = await KubeClient.connect(kubeconfig=cluster.ready["kubeconfig"])
    try:
        crds = await kube.request_json(
            "GET", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
        )
        assert crds["items"] == [], "the stand-in cluster starts without the CRDs"

        mesh = LocalMesh(workdir=tmp_path / "mesh", kubeconfig=cluster.ready["kubeconfig"])
        async with mesh:
            crds = await kube.request_json(
                "GET", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
            )
            names = {c["metadata"]["name"] for c in crds["items"]}
            assert {
                "clonesets.apps.kruise.io",
                "persistentpodstates.apps.kruise.io",
                "podunavailablebudgets.policy.kruise.io",
            } <= names
            mutating = await kube.request_json(
                "GET", f"{WEBHOOKS}/mutatingwebhookconfigurations/kruise-mesh-mutating-local"
            )
            urls = {w["clientConfig"]["url"] for w in mutating["webhooks"]}
            assert f"https://127.0.0.1:{mesh.webhook_port}/placement/mutate-pods" in urls
            assert all(w["clientConfig"]["caBundle"] for w in mutating["webhooks"])

            await ensure_namespace(kube, "local-mode")
            before = sum(
                [
                    (await replica_status(mesh, a)).admission_reviews
                    for a in mesh.addresses["placement"]
                ]
            )
            await create_pod(kube, "local-mode", "through-local-webhooks")
            after = sum(
                [
                    (await replica_status(mesh, a)).admission_reviews
                    for a in mesh.addresses["placement"]
                ]
            )
            assert after > before, "the cluster called the local gateway's webhook"

        for kind in ("mutatingwebhookconfigurations", "validatingwebhookconfigurations"):
            left = await kube.request_json("GET", f"{WEBHOOKS}/{kind}")
            assert not [i for i in left["items"] if i["metadata"]["name"].endswith("-local")]
        # With the mesh gone and its webhooks removed, the cluster admits pods on its own
        # (a leftover webhook with failurePolicy Fail would refuse this eviction).
        pod = await create_pod(kube, "local-mode", "after-the-mesh")
        assert pod["metadata"]["name"] == "after-the-mesh"
        eviction = {
            "apiVersion": "policy/v1",
            "kind": "Eviction",
            "metadata": {"name": "after-the-mesh", "namespace": "local-mode"},
        }
        await kube.request(
            "POST",
            "/api/v1/namespaces/local-mode/pods/after-the-mesh/eviction",
            body=orjson.dumps(eviction),
        )
    finally:
        await kube.close()
        await cluster.stop()
