"""``fieldValidation`` on every write: create, replace and each kind of PATCH.

``Strict`` answers 400 naming the unknown fields (a create or replace prefixes the kind, a patch
does not), ``Warn`` (the server's default, also when the parameter is absent) sends one
``Warning`` header per field, ``Ignore`` says nothing. Server-side apply refuses undeclared
fields whatever the directive, with the structured-merge converter's 500.
"""

from __future__ import annotations

from typing import Any

import pytest

from sandbox import openapi
from sandbox.openapi import Item
from tests.sandbox.conftest import Raw, fixture

DEPLOY = "/apis/apps/v1/namespaces/default/deployments"
CM = "/api/v1/namespaces/default/configmaps"
MERGE = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"
APPLY = "application/apply-patch+yaml"

# ---- the walker, pure ---------------------------------------------------------------------------

_SCHEMAS: dict[str, Any] = {
    "C": {
        "type": "object",
        "properties": {"name": {"type": "string"}, "image": {"type": "string"}},
    },
    "Obj": {
        "type": "object",
        "properties": {
            "spec": {
                "type": "object",
                "properties": {
                    "containers": {
                        "type": "array",
                        "items": {"$ref": "#/components/schemas/C"},
                        "x-kubernetes-list-type": "map",
                        "x-kubernetes-list-map-keys": ["name"],
                    },
                    "args": {"type": "array", "items": {"$ref": "#/components/schemas/C"}},
                    "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                    "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                    "raw": {"type": "object"},
                },
            }
        },
    },
}


@pytest.mark.parametrize(
    ("obj", "strict", "apply"),
    [
        pytest.param({"spec": {"labels": {"any": "x"}}}, [], [], id="map keys are never unknown"),
        pytest.param({"spec": {"free": {"a": {"b": 1}}}}, [], [], id="preserved fields are kept"),
        pytest.param({"spec": {"raw": {"a": 1}}}, [], [], id="an untyped object takes anything"),
        pytest.param({"spec": {"foo": 1}}, ["spec.foo"], [".spec.foo"], id="one unknown field"),
        pytest.param(
            {"bar": 1, "spec": {"foo": 1}},
            ["bar", "spec.foo"],
            [".bar", ".spec.foo"],
            id="in document order",
        ),
        pytest.param(
            {"spec": {"containers": [{"name": "a"}, {"name": "b", "imagee": "x"}]}},
            ["spec.containers[1].imagee"],
            ['.spec.containers[name="b"].imagee'],
            id="map-list element: index for strict, key for apply",
        ),
        pytest.param(
            {"spec": {"args": [{"name": "a", "x": 1}]}},
            ["spec.args[0].x"],
            [".spec.args[0].x"],
            id="atomic-list element: index for both",
        ),
    ],
)
def test_unknown_field_paths(obj: Any, strict: list[str], apply: list[str]) -> None:
    paths = openapi.unknown_field_paths(obj, _SCHEMAS["Obj"], _SCHEMAS)
    assert [openapi.strict_path(p) for p in paths] == strict
    assert [openapi.apply_path(p) for p in paths] == apply


def test_apply_path_spells_several_keys_as_json() -> None:
    path = ("spec", "ports", Item(0, (("port", 80), ("protocol", "TCP"))), "x")
    assert openapi.apply_path(path) == '.spec.ports[port=80,protocol="TCP"].x'


# ---- over HTTP ----------------------------------------------------------------------------------


async def _deployment(raw: Raw, name: str = "web") -> None:
    body = {
        "metadata": {"name": name},
        "spec": {
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": "nginx:1.27"}]},
            },
        },
    }
    code, _, out = await raw.call("POST", DEPLOY, body)
    assert code == 201, out


def _warnings(headers: Any) -> list[str]:
    return list(headers.getall("Warning", []))


@pytest.mark.parametrize(
    ("content_type", "patch", "field"),
    [
        pytest.param(MERGE, {"spec": {"foo": 1}}, "spec.foo", id="merge patch"),
        pytest.param(JSON_PATCH, [{"op": "add", "path": "/spec/foo", "value": 1}], "spec.foo"),
        pytest.param(
            STRATEGIC,
            {"spec": {"template": {"spec": {"containers": [{"name": "app", "imagee": "x"}]}}}},
            "spec.template.spec.containers[0].imagee",
            id="strategic merge patch into a container",
        ),
    ],
)
async def test_strict_patch_is_refused_and_warn_is_the_default(
    raw: Raw, content_type: str, patch: Any, field: str
) -> None:
    await _deployment(raw)
    code, _, body = await raw.call(
        "PATCH", f"{DEPLOY}/web?fieldValidation=Strict", patch, content_type=content_type
    )
    assert code == 400
    assert body == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": f'strict decoding error: unknown field "{field}"',
        "reason": "BadRequest",
        "code": 400,
    }
    # no parameter: Warn
    code, headers, _ = await raw.call("PATCH", f"{DEPLOY}/web", patch, content_type=content_type)
    assert code == 200
    assert _warnings(headers) == [f'299 - "unknown field \\"{field}\\""']
    code, headers, _ = await raw.call(
        "PATCH", f"{DEPLOY}/web?fieldValidation=Ignore", patch, content_type=content_type
    )
    assert code == 200 and _warnings(headers) == []


async def test_strict_patch_of_known_fields_passes(raw: Raw) -> None:
    await _deployment(raw)
    code, headers, out = await raw.call(
        "PATCH",
        f"{DEPLOY}/web?fieldValidation=Strict",
        {"metadata": {"labels": {"a": "b"}}, "spec": {"replicas": 2}},
        content_type=MERGE,
    )
    assert code == 200 and out["spec"]["replicas"] == 2 and _warnings(headers) == []


async def test_status_patch_is_validated_too(raw: Raw) -> None:
    await _deployment(raw)
    code, _, body = await raw.call(
        "PATCH",
        f"{DEPLOY}/web/status?fieldValidation=Strict",
        {"status": {"readyReplicass": 1}},
        content_type=MERGE,
    )
    assert code == 400
    assert body["message"] == 'strict decoding error: unknown field "status.readyReplicass"'


async def test_fields_stored_before_are_not_blamed_on_a_later_patch(raw: Raw) -> None:
    cm = {"metadata": {"name": "old"}, "data": {"a": "1"}, "bogus": 1}
    code, _, _ = await raw.call("POST", f"{CM}?fieldValidation=Ignore", cm)
    assert code == 201
    code, headers, _ = await raw.call(
        "PATCH", f"{CM}/old?fieldValidation=Strict", {"data": {"b": "2"}}, content_type=MERGE
    )
    assert code == 200 and _warnings(headers) == []


async def test_custom_resource_strict_patch(raw: Raw) -> None:
    path = "/apis/apps.kruise.io/v1alpha1/namespaces/default/clonesets"
    cs = {
        "apiVersion": "apps.kruise.io/v1alpha1",
        "kind": "CloneSet",
        "metadata": {"name": "cs"},
        "spec": {"replicas": 1},
    }
    code, _, out = await raw.call("POST", path, cs)
    assert code == 201, out
    code, _, body = await raw.call(
        "PATCH", f"{path}/cs?fieldValidation=Strict", {"bogus": 1}, content_type=MERGE
    )
    assert code == 400
    assert body["message"] == 'strict decoding error: unknown field "bogus"'


async def test_create_warns_as_the_real_server(raw: Raw) -> None:
    cap = fixture("api/pod-create-unknown-field-default-warn.json")
    req, want = cap["request"], cap["response"]
    path = req["path"].replace("/demo/", "/default/")
    body = {**req["body"], "metadata": {**req["body"]["metadata"], "namespace": "default"}}
    code, headers, _ = await raw.call(req["method"], path, body)
    assert code == want["status"] == 201
    assert _warnings(headers) == want["headers"]["Warning"]


async def test_replace_warns_and_strict_replace_is_refused(raw: Raw) -> None:
    code, _, cm = await raw.call("POST", CM, {"metadata": {"name": "r"}, "data": {"a": "1"}})
    assert code == 201
    code, headers, _ = await raw.call("PUT", f"{CM}/r", {**cm, "bogus": 1})
    assert code == 200 and _warnings(headers) == ['299 - "unknown field \\"bogus\\""']
    code, _, body = await raw.call("PUT", f"{CM}/r?fieldValidation=Strict", {**cm, "extra": 1})
    assert code == 400
    assert body["message"] == (
        'ConfigMap in version "v1" cannot be handled as a ConfigMap: strict decoding error: '
        'unknown field "extra"'
    )


async def test_server_side_apply_of_an_undeclared_field(raw: Raw) -> None:
    obj = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "ssa", "namespace": "default"},
        "data": {"a": "1"},
        "bogus": 1,
    }
    for query in ("fieldValidation=Strict", "fieldValidation=Ignore"):
        code, _, body = await raw.call(
            "PATCH", f"{CM}/ssa?fieldManager=t&{query}", obj, content_type=APPLY
        )
        assert code == 500
        assert body == {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": "failed to create typed patch object (default/ssa; /v1, Kind=ConfigMap): "
            ".bogus: field not declared in schema",
            "code": 500,
        }
    del obj["bogus"]
    code, _, _ = await raw.call(
        "PATCH", f"{CM}/ssa?fieldManager=t&fieldValidation=Strict", obj, content_type=APPLY
    )
    assert code == 201
    obj["data"] = {"a": "2"}
    obj["spec"] = {"x": 1}
    obj["more"] = 2
    code, _, body = await raw.call("PATCH", f"{CM}/ssa?fieldManager=t", obj, content_type=APPLY)
    assert code == 500
    assert body["message"].endswith(
        "(default/ssa; /v1, Kind=ConfigMap): errors:\n"
        "  .spec: field not declared in schema\n"
        "  .more: field not declared in schema"
    )
