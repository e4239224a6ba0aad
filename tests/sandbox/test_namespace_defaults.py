"""What kube-controller-manager puts in every namespace: ServiceAccount ``default`` and ConfigMap
``kube-root-ca.crt`` (the API server's CA), in the boot namespaces and in each new one, and
again a moment after one is deleted (not in a namespace being deleted)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from sandbox import defaults
from sandbox.app import BOOT_NAMESPACES
from tests.sandbox.conftest import Raw

ROOT_CA = defaults.ROOT_CA_CONFIGMAP


def _obj(kind: str, name: str, *, ns: str = "x") -> dict[str, Any]:
    return {"kind": kind, "apiVersion": "v1", "metadata": {"name": name, "namespace": ns}}


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


@pytest.mark.parametrize(
    ("obj", "want"),
    [
        pytest.param(_obj("ServiceAccount", "default"), True, id="default ServiceAccount"),
        pytest.param(_obj("ConfigMap", ROOT_CA), True, id="root CA ConfigMap"),
        pytest.param(_obj("ServiceAccount", "tool"), False, id="another ServiceAccount"),
        pytest.param(_obj("ConfigMap", "default"), False, id="a ConfigMap named default"),
        pytest.param(_obj("Secret", ROOT_CA), False, id="another kind of that name"),
        pytest.param(_obj("ServiceAccount", "default", ns=""), False, id="no namespace"),
    ],
)
def test_is_namespace_object(obj: dict[str, Any], want: bool) -> None:
    assert defaults.is_namespace_object(obj, ca_pem="PEM") is want


def test_no_ca_known_no_root_ca_configmap_to_restore() -> None:
    assert not defaults.is_namespace_object(_obj("ConfigMap", ROOT_CA), ca_pem=None)


async def _uid(raw: Raw, path: str) -> str | None:
    code, _, obj = await raw.call("GET", path)
    return str(obj["metadata"]["uid"]) if code == 200 else None


async def _back(raw: Raw, path: str, old_uid: str | None) -> str:
    """The uid of the object at ``path`` once it is there again (a new one), within 2 s."""
    for _ in range(100):
        uid = await _uid(raw, path)
        if uid is not None and uid != old_uid:
            return uid
        await asyncio.sleep(0.02)
    raise AssertionError(f"{path} did not come back")


@pytest.mark.parametrize(
    "path",
    [
        pytest.param("/api/v1/namespaces/{ns}/serviceaccounts/default", id="ServiceAccount"),
        pytest.param("/api/v1/namespaces/{ns}/configmaps/kube-root-ca.crt", id="root CA"),
    ],
)
async def test_a_deleted_namespace_object_comes_back(raw: Raw, path: str) -> None:
    code, _, _ = await raw.call("POST", "/api/v1/namespaces", {"metadata": {"name": "again"}})
    assert code == 201
    for ns in ("again", "default"):
        where = path.format(ns=ns)
        code, _, before = await raw.call("GET", where)
        assert code == 200
        old_uid = before["metadata"]["uid"]
        code, _, _ = await raw.call("DELETE", where)
        assert code == 200
        await _back(raw, where, old_uid)
        code, _, after = await raw.call("GET", where)
        assert code == 200
        # made again as it was made with the namespace (its data, its annotations)
        keep = ("name", "namespace", "annotations")
        assert {k: v for k, v in after.items() if k != "metadata"} == {
            k: v for k, v in before.items() if k != "metadata"
        }
        assert {k: after["metadata"].get(k) for k in keep} == {
            k: before["metadata"].get(k) for k in keep
        }
        # a dry run deletes nothing, so nothing is made again
        uid = await _uid(raw, where)
        code, _, _ = await raw.call("DELETE", where + "?dryRun=All")
        assert code == 200
        await asyncio.sleep(0.3)
        assert await _uid(raw, where) == uid


async def test_other_objects_do_not_come_back(raw: Raw) -> None:
    cms = "/api/v1/namespaces/default/configmaps"
    code, _, _ = await raw.call("POST", cms, {"metadata": {"name": "plain"}})
    assert code == 201
    code, _, _ = await raw.call("DELETE", f"{cms}/plain")
    assert code == 200
    await asyncio.sleep(0.3)
    assert await _uid(raw, f"{cms}/plain") is None


async def test_a_namespace_being_deleted_does_not_get_them_back(raw: Raw) -> None:
    ns = {"metadata": {"name": "ending", "finalizers": ["example.com/hold"]}}
    code, _, _ = await raw.call("POST", "/api/v1/namespaces", ns)
    assert code == 201
    code, _, body = await raw.call("DELETE", "/api/v1/namespaces/ending")
    assert code == 200 and body["metadata"]["deletionTimestamp"]
    sa = "/api/v1/namespaces/ending/serviceaccounts/default"
    code, _, _ = await raw.call("DELETE", sa)
    assert code == 200
    # and a namespace deleted at once leaves none of them behind
    code, _, _ = await raw.call("POST", "/api/v1/namespaces", {"metadata": {"name": "gone"}})
    assert code == 201
    code, _, _ = await raw.call("DELETE", "/api/v1/namespaces/gone")
    assert code == 200
    await asyncio.sleep(0.3)
    assert await _uid(raw, sa) is None
    for kind in ("serviceaccounts", "configmaps"):
        code, _, listed = await raw.call(
            "GET", f"/api/v1/{kind}?fieldSelector=metadata.namespace%3Dgone"
        )
        assert code == 200 and listed["items"] == []
