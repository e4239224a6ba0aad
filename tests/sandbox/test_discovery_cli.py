"""Discovery documents against the fixtures; kubeconfig works with kubectl; python -m sandbox."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import sys
from pathlib import Path

import pytest

from sandbox.app import Sandbox
from tests.sandbox.conftest import Raw, fixture


async def test_discovery_shapes(raw: Raw) -> None:
    code, _, body = await raw.call("GET", "/version")
    assert code == 200 and set(body) == set(fixture("discovery/version.json")["response"]["body"])
    _, _, body = await raw.call("GET", "/api")
    assert set(body) == set(fixture("discovery/api.json")["response"]["body"])
    _, _, body = await raw.call("GET", "/api/v1")
    names = {r["name"] for r in body["resources"]}
    assert {"pods", "pods/status", "pods/eviction", "pods/binding", "nodes", "namespaces"} <= names
    _, _, body = await raw.call("GET", "/apis/apps.kruise.io")
    assert body == fixture("discovery/apis-apps.kruise.io-group.json")["response"]["body"]
    _, _, body = await raw.call("GET", "/apis/apps.kruise.io/v1alpha1")
    real = fixture("discovery/apis-apps.kruise.io-v1alpha1.json")["response"]["body"]
    mine = {r["name"]: r for r in body["resources"]}
    for r in real["resources"]:
        if r["name"].startswith("clonesets"):
            got = mine[r["name"]]
            assert {k: v for k, v in got.items() if k != "verbs"} == {
                k: v for k, v in r.items() if k not in ("verbs", "storageVersionHash")
            }
            assert sorted(got["verbs"]) == sorted(r["verbs"])
    _, _, body = await raw.call("GET", "/apis")
    assert {"apps", "policy", "apps.kruise.io", "coordination.k8s.io"} <= {
        g["name"] for g in body["groups"]
    }


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed")
async def test_kubectl_get_apply_delete(sb: Sandbox, tmp_path: Path) -> None:
    env = {**os.environ, "KUBECONFIG": str(sb.kubeconfig_path), "HOME": str(tmp_path)}

    async def kubectl(*args: str) -> str:
        proc = await asyncio.create_subprocess_exec(
            "kubectl",
            *args,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode == 0, err.decode()
        return out.decode()

    manifest = tmp_path / "cm.yaml"
    manifest.write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: from-kubectl\ndata:\n  a: '1'\n"
    )
    await kubectl("apply", "--validate=false", "-f", str(manifest))
    manifest.write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: from-kubectl\ndata:\n  a: '2'\n"
    )
    await kubectl("apply", "--validate=false", "-f", str(manifest))
    out = await kubectl("get", "configmap", "from-kubectl", "-o", "json")
    assert json.loads(out)["data"] == {"a": "2"}
    out = await kubectl("get", "pods")
    assert "No resources found" in out or out == ""
    out = await kubectl("get", "clonesets")
    await kubectl("delete", "configmap", "from-kubectl")


async def test_python_m_sandbox_prints_ready_line(tmp_path: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "sandbox",
        "--state-dir",
        str(tmp_path / "s"),
        "--crds",
        str(Path(__file__).parent / "crds"),
        stdout=asyncio.subprocess.PIPE,
        cwd=str(Path(__file__).parents[2]),
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 20)
        ready = json.loads(line)
        assert ready["url"].startswith("https://127.0.0.1:")
        assert Path(ready["kubeconfig"]).exists()
    finally:
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 10)
    assert proc.returncode == 0
