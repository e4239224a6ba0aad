"""A newcomer's kubectl session against ``python -m sandbox --world`` with the project's CRDs.

kubectl sends ``create`` objects as Kubernetes protobuf, validates ``apply`` with the server's
OpenAPI documents (``fieldValidation=Strict``) and reads them for ``explain``: this runs the real
binary through all of it. Skipped when no ``kubectl`` is on PATH.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
KUBECTL = shutil.which("kubectl")

pytestmark = pytest.mark.skipif(
    KUBECTL is None, reason="kubectl is not installed (no kubectl on PATH): session not run"
)


def _crd_kinds() -> set[tuple[str, str]]:
    kinds: set[tuple[str, str]] = set()
    for path in sorted((ROOT / "deploy" / "crds").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") == "CustomResourceDefinition":
                spec = doc["spec"]
                for v in spec["versions"]:
                    kinds.add((f"{spec['group']}/{v['name']}", spec["names"]["kind"]))
    return kinds


def _examples() -> list[Path]:
    """The example files whose every object is of a kind the project's CRDs define."""
    kinds = _crd_kinds()
    out = []
    for path in sorted((ROOT / "deploy" / "examples").glob("*.yaml")):
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
        if docs and all((d.get("apiVersion"), d.get("kind")) in kinds for d in docs):
            out.append(path)
    return out


class Kubectl:
    def __init__(self, kubeconfig: str) -> None:
        self.env = {**os.environ, "KUBECONFIG": kubeconfig}

    def __call__(self, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        assert KUBECTL is not None
        done = subprocess.run(
            [KUBECTL, *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if ok:
            assert done.returncode == 0, (args, done.stdout, done.stderr)
        return done

    def json(self, *args: str) -> Any:
        return json.loads(self(*args, "-o", "json").stdout)


@pytest.fixture(scope="module")
def kubectl(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kubectl]:
    state = tmp_path_factory.mktemp("sandbox")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sandbox",
            "--state-dir",
            str(state),
            "--crds",
            str(ROOT / "deploy" / "crds"),
            "--world",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        info = json.loads(proc.stdout.readline())
        yield Kubectl(info["kubeconfig"])
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        if proc.stdout is not None:
            proc.stdout.close()


def test_examples_are_found() -> None:
    names = {p.name for p in _examples()}
    assert {"cloneset-partition-lifecycle.yaml", "podunavailablebudget.yaml"} <= names


def test_newcomer_session(kubectl: Kubectl) -> None:
    # create: protobuf bodies
    assert kubectl("create", "namespace", "x").stdout.strip() == "namespace/x created"
    out = kubectl("create", "configmap", "c1", "-n", "x", "--from-literal=a=1").stdout
    assert out.strip() == "configmap/c1 created"
    out = kubectl("create", "deployment", "web", "-n", "x", "--image=nginx", "--replicas=2")
    assert out.stdout.strip() == "deployment.apps/web created"
    assert kubectl.json("get", "deployment", "web", "-n", "x")["spec"]["replicas"] == 2
    ns = kubectl.json("get", "namespace", "x")
    assert ns["kind"] == "Namespace" and ns["metadata"]["name"] == "x"

    # apply: validated with the OpenAPI documents, twice (created, then unchanged)
    applied: list[str] = []
    for path in _examples():
        out = kubectl("apply", "-n", "x", "-f", str(path)).stdout
        lines = out.strip().splitlines()
        assert lines and all(re.fullmatch(r"[a-z]+\.[a-z.]+/[\w.-]+ created", ln) for ln in lines)
        applied += [ln.split()[0] for ln in lines]
        again = kubectl("apply", "-n", "x", "-f", str(path)).stdout.strip().splitlines()
        assert all(ln.endswith(" unchanged") for ln in again), again
    assert any(a.startswith("cloneset.apps.kruise.io/") for a in applied)

    # strict field validation: the real server's message
    bad = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "bad", "namespace": "x"},
        "data": {"a": "b"},
        "bogus": 1,
    }
    done = subprocess.run(
        [KUBECTL or "kubectl", "apply", "-f", "-"],
        input=json.dumps(bad),
        env=kubectl.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert (
        'ConfigMap in version "v1" cannot be handled as a ConfigMap: strict decoding error: '
        'unknown field "bogus"' in done.stderr
    )

    # explain a CRD field
    out = kubectl("explain", "clonesets.spec.updateStrategy.partition").stdout
    assert "KIND:       CloneSet" in out
    assert "GROUP:      apps.kruise.io" in out
    assert "FIELD: partition" in out

    # scale
    name = next(a for a in applied if a.startswith("cloneset.")).split("/", 1)[1]
    out = kubectl("scale", "-n", "x", f"cloneset/{name}", "--replicas=3").stdout
    assert out.strip() == f"cloneset.apps.kruise.io/{name} scaled"
    assert kubectl.json("get", "-n", "x", "cloneset", name)["spec"]["replicas"] == 3

    # drain the node a pod runs on
    assert kubectl("run", "p1", "-n", "x", "--image=nginx").stdout.strip() == "pod/p1 created"
    node = ""
    for _ in range(50):
        node = kubectl.json("get", "pod", "p1", "-n", "x")["spec"].get("nodeName", "")
        if node:
            break
        subprocess.run(["sleep", "0.1"], check=True)
    assert node
    out = kubectl("drain", node, "--ignore-daemonsets", "--force", "--timeout=30s").stdout
    assert f"node/{node} cordoned" in out and f"node/{node} drained" in out
    assert "pod/p1 evicted" in out
    assert kubectl.json("get", "node", node)["spec"].get("unschedulable") is True

    # delete
    for path in _examples():
        out = kubectl("delete", "-n", "x", "-f", str(path)).stdout
        assert all(ln.endswith(" deleted") for ln in out.strip().splitlines())
    out = kubectl("delete", "namespace", "x").stdout
    assert out.strip() == 'namespace "x" deleted'


def _run(kubectl: Kubectl, *args: str, env: dict[str, str] | None = None) -> Any:
    return subprocess.run(
        [KUBECTL or "kubectl", *args],
        env={**kubectl.env, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_fresh_namespace_has_its_default_service_account(kubectl: Kubectl) -> None:
    assert kubectl("create", "namespace", "fresh").returncode == 0
    token = kubectl("create", "token", "default", "-n", "fresh").stdout.strip()
    assert token.count(".") == 2  # a JWT
    cm = kubectl.json("get", "configmap", "kube-root-ca.crt", "-n", "fresh")
    assert cm["data"]["ca.crt"].startswith("-----BEGIN CERTIFICATE-----")
    assert kubectl("run", "p", "-n", "fresh", "--image=nginx").stdout.strip() == "pod/p created"
    assert kubectl.json("get", "pod", "p", "-n", "fresh")["spec"]["serviceAccountName"] == "default"


EDITOR = """#!{python}
import pathlib, sys
marker = pathlib.Path(sys.argv[0] + ".done")
if not marker.exists():
    marker.touch()
    path = pathlib.Path(sys.argv[-1])
    path.write_text(path.read_text().replace("\\nspec:\\n", "\\nspec:\\n  bogus: 1\\n", 1))
"""


def test_patch_warns_and_edit_is_strict(kubectl: Kubectl, tmp_path: Path) -> None:
    kubectl("create", "namespace", "fields")
    kubectl("create", "deployment", "web", "-n", "fields", "--image=nginx")
    # kubectl patch sends no fieldValidation: the server's default, Warn; the server drops the
    # unknown field, so nothing changed
    done = kubectl("patch", "deployment", "web", "-n", "fields", "-p", '{"spec":{"foo":1}}')
    assert 'Warning: unknown field "spec.foo"' in done.stderr
    assert done.stdout.strip() == "deployment.apps/web patched (no change)"
    assert "foo" not in kubectl.json("get", "deployment", "web", "-n", "fields")["spec"]
    done = kubectl("patch", "deployment", "web", "-n", "fields", "-p", '{"spec":{"replicas":2}}')
    assert done.stdout.strip() == "deployment.apps/web patched"
    # kubectl edit patches with fieldValidation=Strict
    editor = tmp_path / "editor.py"
    editor.write_text(EDITOR.format(python=sys.executable))
    editor.chmod(0o755)
    done = _run(kubectl, "edit", "deployment", "web", "-n", "fields", env={"EDITOR": str(editor)})
    assert done.returncode == 1, done.stdout
    assert (
        'error: deployments.apps "web" could not be patched: strict decoding error: '
        'unknown field "spec.bogus"' in done.stderr
    )


def test_kinds_the_server_does_not_serve(kubectl: Kubectl, tmp_path: Path) -> None:
    """kubectl validates these against /openapi/v2, which it reads only as protobuf."""
    foo = tmp_path / "foo.yaml"
    foo.write_text(
        "apiVersion: example.com/v1\nkind: Foo\nmetadata: {name: f, namespace: default}\n"
    )
    done = _run(kubectl, "apply", "-f", str(foo))
    assert done.returncode == 1
    assert 'no matches for kind "Foo" in version "example.com/v1"' in done.stderr
    assert "ensure CRDs are installed first" in done.stderr
    out = kubectl("explain", "pods.spec.containers.name", "--output=plaintext-openapiv2").stdout
    assert "FIELD:    name <string>" in out
