"""``/openapi/v2`` and ``/openapi/v3``: the built-in documents as the real server serves them, the
custom resources' generated from their CRDs (compared with the real server's), and
``fieldValidation=Strict``."""

from __future__ import annotations

import hashlib
import json
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from sandbox.app import Sandbox
from tests.sandbox.conftest import FIXTURES, Raw, fixture

ROOT = Path(__file__).resolve().parents[2]
OPENAPI = FIXTURES / "openapi"


def _real(name: str) -> Any:
    return json.loads((OPENAPI / name).read_text())


@pytest.fixture
async def kraw(tmp_path: Path) -> AsyncIterator[Raw]:
    """A raw client of a sandbox with the project's CRDs (the fixtures were taken with them)."""
    async with Sandbox(state_dir=tmp_path / "s", crd_dirs=[ROOT / "deploy" / "crds"]) as sb:
        ctx = ssl.create_default_context(cafile=str(sb.ca_file))
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx)) as s:
            yield Raw(sb, s)


async def test_v3_root_lists_served_group_versions_with_hashes(kraw: Raw) -> None:
    status, _, root = await kraw.call("GET", "/openapi/v3")
    assert status == 200 and set(root) == {"paths"}
    paths = root["paths"]
    real = _real("v3-root.json")["paths"]
    for gv in (
        "api/v1",
        "apis/apps/v1",
        "apis/apps.kruise.io/v1alpha1",
        "apis/policy.kruise.io/v1alpha1",
    ):
        assert gv in paths and gv in real
    for gv, entry in paths.items():
        url = entry["serverRelativeURL"]
        assert url.startswith(f"/openapi/v3/{gv}?hash=")
        async with kraw.session.get(
            kraw.sb.url + url, headers={"Authorization": f"Bearer {kraw.sb.token}"}
        ) as resp:
            body = await resp.read()
        assert resp.status == 200
        assert url.endswith(hashlib.sha512(body).hexdigest().upper())


async def test_builtin_documents_are_the_real_servers(kraw: Raw) -> None:
    for path, name in (("api/v1", "v3-api_v1.json"), ("apis/apps/v1", "v3-apis_apps_v1.json")):
        status, _, doc = await kraw.call("GET", f"/openapi/v3/{path}")
        assert status == 200 and doc == _real(name)
    status, _, _ = await kraw.call("GET", "/openapi/v3/apis/nosuch.example.com/v1")
    assert status == 404


@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("apis/apps.kruise.io/v1alpha1", "v3-apis_apps.kruise.io_v1alpha1.json"),
        ("apis/policy.kruise.io/v1alpha1", "v3-apis_policy.kruise.io_v1alpha1.json"),
    ],
)
async def test_crd_documents_match_the_real_servers(kraw: Raw, path: str, name: str) -> None:
    status, _, doc = await kraw.call("GET", f"/openapi/v3/{path}")
    assert status == 200
    real = _real(name)
    assert doc == real  # schemas, paths, parameters: all as the API server generates them


async def test_v2_has_builtin_and_crd_definitions(kraw: Raw) -> None:
    status, _, doc = await kraw.call("GET", "/openapi/v2")
    assert status == 200 and doc["swagger"] == "2.0"
    real = _real("v2.json")["definitions"]
    defs = doc["definitions"]
    assert defs["io.k8s.api.core.v1.Pod"] == real["io.k8s.api.core.v1.Pod"]
    cs = defs["io.kruise.apps.v1alpha1.CloneSet"]
    assert (
        cs["x-kubernetes-group-version-kind"]
        == real["io.kruise.apps.v1alpha1.CloneSet"]["x-kubernetes-group-version-kind"]
    )
    assert (
        cs["properties"]["metadata"]
        == real["io.kruise.apps.v1alpha1.CloneSet"]["properties"]["metadata"]
    )
    assert "io.kruise.apps.v1alpha1.CloneSetList" in defs


async def test_strict_field_validation_matches_the_real_server(kraw: Raw) -> None:
    cap = fixture("errors/400-strict-field-validation-unknown-field.json")
    req, want = cap["request"], cap["response"]
    status, _, body = await kraw.call(req["method"], req["path"], req["body"])
    assert status == want["status"]
    assert body == want["body"]
    # without Strict the object is accepted
    ok = {**req["body"], "metadata": {"name": "lenient", "namespace": "demo"}}
    status, _, _ = await kraw.call("POST", "/api/v1/namespaces", {"metadata": {"name": "demo"}})
    status, _, _ = await kraw.call("POST", "/api/v1/namespaces/demo/pods", ok)
    assert status == 201


async def test_strict_field_validation_of_a_custom_resource(kraw: Raw) -> None:
    await kraw.call("POST", "/api/v1/namespaces", {"metadata": {"name": "demo"}})
    obj = fixture("api/cr-create-cloneset.json")["request"]["body"]
    obj = {**obj, "metadata": {**obj["metadata"], "namespace": "demo"}}
    bad = {**obj, "spec": {**obj["spec"], "bogus": 1}}
    path = "/apis/apps.kruise.io/v1alpha1/namespaces/demo/clonesets?fieldValidation=Strict"
    status, _, body = await kraw.call("POST", path, bad)
    assert status == 400, body
    assert body["message"] == (
        'CloneSet in version "v1alpha1" cannot be handled as a CloneSet: strict decoding error: '
        'unknown field "spec.bogus"'
    )
    status, _, body = await kraw.call("POST", path, obj)
    assert status == 201, body
