"""The install's wiring of custom StatefulSet-like kinds: one ConfigMap key read by the gateway
and placement, the gateway's rights to find their CRDs and to be granted their reads, and the
variable as LocalMesh passes it to its processes (recorded against a fake ``procs.start``)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from services.cli import procs
from services.cli.local import LocalMesh
from services.kit.config import (
    ROLLOUT_HANDOVER_ENV,
    STATEFULSET_LIKE_KINDS_ENV,
    parse_statefulset_like_kinds,
)
from tests.unit.test_deploy_manifests import find, pod_spec


def test_configmap_names_no_custom_kind_by_default() -> None:
    data = find("ConfigMap", "kruise-mesh-config")["data"]
    assert parse_statefulset_like_kinds(data["statefulset-like-kinds"]) == ()


@pytest.mark.parametrize("component", ["gateway", "placement"])
def test_component_reads_the_kinds_from_the_shared_configmap_key(component: str) -> None:
    (container,) = pod_spec(component)["containers"]
    (entry,) = [e for e in container["env"] if e["name"] == STATEFULSET_LIKE_KINDS_ENV]
    assert entry["valueFrom"]["configMapKeyRef"] == {
        "name": "kruise-mesh-config",
        "key": "statefulset-like-kinds",
        "optional": True,
    }


def test_gateway_may_read_crds_and_be_granted_custom_kinds() -> None:
    rules = find("ClusterRole", "kruise-mesh-gateway")["rules"]
    (crds,) = [r for r in rules if r["resources"] == ["customresourcedefinitions"]]
    # A CRD is read by name (its /scale paths); exactly so: test_deploy_manifests' RBAC tests.
    assert "get" in crds["verbs"]
    role = find("ClusterRole", "kruise-mesh-gateway-workloads")
    assert role["aggregationRule"]["clusterRoleSelectors"] == [
        {"matchLabels": {"kruise-mesh.io/aggregate-to-gateway": "true"}}
    ]
    binding = find("ClusterRoleBinding", "kruise-mesh-gateway-workloads")
    assert binding["roleRef"]["name"] == "kruise-mesh-gateway-workloads"
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "kruise-mesh-gateway", "namespace": "kruise-mesh"}
    ]


async def test_local_mesh_passes_the_kinds_to_gateway_and_placement_only(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    started: dict[str, dict[str, str] | None] = {}

    async def fake_start(name: str, module: str, args: list[str], **kw: Any) -> Any:
        started[name] = kw.get("env")
        return SimpleNamespace(ready={})

    monkeypatch.setattr(procs, "start", fake_start)
    kinds = ["apps.example.io/v1/ShardSet", "db.example.io/v1/Ring"]
    mesh = LocalMesh(
        workdir=tmp_path, kubeconfig="kubeconfig", statefulset_like=kinds, mesh_tls=False
    )
    for service in ("placement", "rollout", "budget"):
        await mesh.start_replica(service, 0, 7100)
    await mesh.start_gateway(7000)
    wanted = {STATEFULSET_LIKE_KINDS_ENV: "apps.example.io/v1/ShardSet,db.example.io/v1/Ring"}
    assert started == {
        "placement-0": wanted,
        "rollout-0": {ROLLOUT_HANDOVER_ENV: "1.0"},  # its own setting, not the kinds
        "budget-0": None,
        "gateway": wanted,
    }
    plain = LocalMesh(workdir=tmp_path, kubeconfig="kubeconfig")
    await plain.start_gateway(7000)
    assert started["gateway"] is None, "without kinds the environment is left as it is"


def test_local_mesh_refuses_a_malformed_kind_before_starting_anything(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="core-group kinds are not allowed"):
        LocalMesh(workdir=tmp_path, statefulset_like=["/v1/Pod"])
