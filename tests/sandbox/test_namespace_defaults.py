"""What kube-controller-manager puts in every namespace: ServiceAccount ``default`` and ConfigMap
``kube-root-ca.crt`` (the API server's CA), in the boot namespaces and in each new one."""

from __future__ import annotations

import pytest

from sandbox import defaults
from sandbox.app import BOOT_NAMESPACES
from tests.sandbox.conftest import Raw


@pytest.mark.parametrize(
    ("ca", "names"),
    [
        pytest.param("PEM", [("serviceaccounts", "default"), ("configmaps", "kube-root-ca.crt")]),
        pytest.param(None, [("serviceaccounts", "default")], id="no CA known: no ConfigMap"),
    ],
)
def test_namespace_objects(ca: str | None, names: list[tuple[str, str]]) -> None:
    objs = defaults.namespace_objects("x", ca_pem=ca)
    assert [(k[1], o["metadata"]["name"]) for k, o in objs] == names
    assert all(o["metadata"]["namespace"] == "x" for _, o in objs)
    if ca is not None:
        assert objs[1][1]["data"] == {"ca.crt": ca}


async def test_boot_and_new_namespaces_get_them(raw: Raw) -> None:
    ca = raw.sb.ca_file.read_text()
    code, _, _ = await raw.call("POST", "/api/v1/namespaces", {"metadata": {"name": "fresh"}})
    assert code == 201
    for ns in (*BOOT_NAMESPACES, "fresh"):
        code, _, sa = await raw.call("GET", f"/api/v1/namespaces/{ns}/serviceaccounts/default")
        assert code == 200 and sa["kind"] == "ServiceAccount", (ns, sa)
        code, _, cm = await raw.call("GET", f"/api/v1/namespaces/{ns}/configmaps/kube-root-ca.crt")
        assert code == 200 and cm["data"] == {"ca.crt": ca}, ns
        assert cm["metadata"]["annotations"]["kubernetes.io/description"].startswith(
            "Contains a CA bundle"
        )
    # a token for the new namespace's default ServiceAccount, as `kubectl create token default`
    code, _, out = await raw.call(
        "POST", "/api/v1/namespaces/fresh/serviceaccounts/default/token", {"spec": {}}
    )
    assert code == 201 and out["status"]["token"]


async def test_a_dry_run_namespace_makes_nothing(raw: Raw) -> None:
    code, _, _ = await raw.call(
        "POST", "/api/v1/namespaces?dryRun=All", {"metadata": {"name": "ghost"}}
    )
    assert code == 201
    code, _, _ = await raw.call("GET", "/api/v1/namespaces/ghost/serviceaccounts/default")
    assert code == 404
