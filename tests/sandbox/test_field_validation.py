"""``fieldValidation`` on every write: create, replace and each kind of PATCH.

``Strict`` answers 400 naming the unknown fields (a create or replace prefixes the kind, a patch
does not), ``Warn`` (the server's default, also when the parameter is absent) sends one
``Warning`` header per field, ``Ignore`` says nothing. Server-side apply refuses undeclared
fields whatever the directive, with the structured-merge converter's 500. Whatever it says, an
unknown field is never stored: the real server's decoding drops it, so a patch of nothing but
unknown fields changes nothing (kubectl prints ``patched (no change)``).
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from sandbox import openapi
from sandbox.api import Ctx
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


@pytest.mark.parametrize(
    ("obj", "want"),
    [
        pytest.param(
            {"spec": {"labels": {"any": "x"}, "free": {"a": 1}, "raw": {"b": 2}}},
            {"spec": {"labels": {"any": "x"}, "free": {"a": 1}, "raw": {"b": 2}}},
            id="maps, preserved and untyped objects are kept whole",
        ),
        pytest.param(
            {"bar": 1, "spec": {"foo": {"deep": 1}, "labels": {}}},
            {"spec": {"labels": {}}},
            id="unknown fields go with all they hold",
        ),
        pytest.param(
            {"spec": {"containers": [{"name": "a", "x": 1}, {"name": "b", "imagee": "y"}]}},
            {"spec": {"containers": [{"name": "a"}, {"name": "b"}]}},
            id="each list element is pruned, the list keeps its length",
        ),
        pytest.param(
            {"spec": {"containers": [{"name": "a", "image": "i"}], "args": []}},
            {"spec": {"containers": [{"name": "a", "image": "i"}], "args": []}},
            id="declared fields are all kept",
        ),
    ],
)
def test_prune_unknown(obj: Any, want: Any) -> None:
    before = copy.deepcopy(obj)
    assert openapi.prune_unknown(obj, _SCHEMAS["Obj"], _SCHEMAS) == want
    assert obj == before  # the input is left untouched


@pytest.mark.parametrize(
    ("paths", "want"),
    [
        pytest.param([], {"a": {"b": 1, "c": 2}, "l": [{"x": 1}, {"x": 2}]}, id="nothing to drop"),
        pytest.param([("a", "b")], {"a": {"c": 2}, "l": [{"x": 1}, {"x": 2}]}, id="a nested field"),
        pytest.param(
            [("l", Item(1), "x")], {"a": {"b": 1, "c": 2}, "l": [{"x": 1}, {}]}, id="by index"
        ),
        pytest.param(
            [("a",), ("a", "b")], {"l": [{"x": 1}, {"x": 2}]}, id="a field inside a dropped one"
        ),
        pytest.param(
            [("a", "b"), ("a",)], {"l": [{"x": 1}, {"x": 2}]}, id="the same, the other order"
        ),
    ],
)
def test_without_paths(paths: list[openapi.FieldPath], want: Any) -> None:
    obj = {"a": {"b": 1, "c": 2}, "l": [{"x": 1}, {"x": 2}]}
    out = openapi.without_paths(obj, paths)
    assert out == want
    assert obj == {"a": {"b": 1, "c": 2}, "l": [{"x": 1}, {"x": 2}]}
    if not paths:
        assert out is obj
    else:  # untouched parts are shared, not copied
        assert all(out[k] is obj[k] for k in out if all(p[0] != k for p in paths))


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
    # the sandbox's own writes (through ApiCore, not decoded) may store an unknown field
    rt = raw.sb.registry.get("", "configmaps")
    assert rt is not None
    cm = {"metadata": {"name": "old"}, "data": {"a": "1"}, "bogus": 1}
    await raw.sb.core.create(Ctx(), rt, version="v1", namespace="default", body=cm)
    code, headers, out = await raw.call(
        "PATCH", f"{CM}/old?fieldValidation=Strict", {"data": {"b": "2"}}, content_type=MERGE
    )
    assert code == 200 and _warnings(headers) == []
    assert "bogus" not in out  # a request's write is decoded: the field goes


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


# ---- unknown fields are not stored ---------------------------------------------------------------


async def _get(raw: Raw, path: str) -> Any:
    code, _, out = await raw.call("GET", path)
    assert code == 200, out
    return out


@pytest.mark.parametrize("query", ["", "?fieldValidation=Warn", "?fieldValidation=Ignore"])
async def test_create_and_replace_drop_unknown_fields(raw: Raw, query: str) -> None:
    cm = {"metadata": {"name": "c", "labels": {"any": "x"}, "foo": 1}, "data": {"a": "1"}, "x": 2}
    code, headers, out = await raw.call("POST", CM + query, cm)
    assert code == 201
    assert "foo" not in out["metadata"] and "x" not in out
    assert out["metadata"]["labels"] == {"any": "x"} and out["data"] == {"a": "1"}
    if "Ignore" not in query:
        assert _warnings(headers) == [
            '299 - "unknown field \\"metadata.foo\\""',
            '299 - "unknown field \\"x\\""',
        ]
    got = await _get(raw, f"{CM}/c")
    assert "foo" not in got["metadata"] and "x" not in got
    code, _, out = await raw.call("PUT", f"{CM}/c{query}", {**got, "data": {"a": "2"}, "y": 3})
    assert code == 200 and "y" not in out and out["data"] == {"a": "2"}
    assert "y" not in await _get(raw, f"{CM}/c")


@pytest.mark.parametrize(
    ("content_type", "patch"),
    [
        pytest.param(MERGE, {"spec": {"foo": 1}}, id="merge patch"),
        pytest.param(JSON_PATCH, [{"op": "add", "path": "/spec/foo", "value": 1}], id="json"),
        pytest.param(
            STRATEGIC,
            {"spec": {"template": {"spec": {"containers": [{"name": "app", "imagee": "x"}]}}}},
            id="strategic merge patch into a container",
        ),
    ],
)
async def test_a_patch_of_only_unknown_fields_changes_nothing(
    raw: Raw, content_type: str, patch: Any
) -> None:
    await _deployment(raw)
    before = await _get(raw, f"{DEPLOY}/web")
    for query in ("", "?fieldValidation=Ignore"):
        code, _, out = await raw.call(
            "PATCH", f"{DEPLOY}/web{query}", patch, content_type=content_type
        )
        assert code == 200
        assert out == before  # same resourceVersion: kubectl says "(no change)"
    assert await _get(raw, f"{DEPLOY}/web") == before


async def test_a_patch_keeps_its_known_fields_and_loses_the_rest(raw: Raw) -> None:
    await _deployment(raw)
    code, _, out = await raw.call(
        "PATCH",
        f"{DEPLOY}/web",
        {"metadata": {"annotations": {"a": "b"}}, "spec": {"replicas": 3, "foo": 1}},
        content_type=MERGE,
    )
    assert code == 200
    got = await _get(raw, f"{DEPLOY}/web")
    assert got == out
    assert got["spec"]["replicas"] == 3 and "foo" not in got["spec"]
    assert got["metadata"]["annotations"] == {"a": "b"}


async def test_a_status_write_drops_unknown_fields(raw: Raw) -> None:
    await _deployment(raw)
    code, _, out = await raw.call(
        "PATCH",
        f"{DEPLOY}/web/status",
        {"status": {"replicas": 1, "readyReplicass": 1}},
        content_type=MERGE,
    )
    assert code == 200 and out["status"] == {"replicas": 1}
    code, _, out = await raw.call(
        "PUT", f"{DEPLOY}/web/status", {**out, "status": {"replicas": 2, "bogus": {"a": 1}}}
    )
    assert code == 200 and out["status"] == {"replicas": 2}
    assert (await _get(raw, f"{DEPLOY}/web/status"))["status"] == {"replicas": 2}


async def test_a_structural_custom_resource_drops_unknown_fields(raw: Raw) -> None:
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "gadgets.test.sandbox.io"},
        "spec": {
            "group": "test.sandbox.io",
            "scope": "Namespaced",
            "names": {"plural": "gadgets", "singular": "gadget", "kind": "Gadget"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": {
                                    "type": "object",
                                    "properties": {"size": {"type": "integer"}},
                                }
                            },
                        }
                    },
                }
            ],
        },
    }
    code, _, out = await raw.call(
        "POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd
    )
    assert code == 201, out
    path = "/apis/test.sandbox.io/v1/namespaces/default/gadgets"
    g = {"apiVersion": "test.sandbox.io/v1", "kind": "Gadget", "metadata": {"name": "g"}}
    code, _, out = await raw.call("POST", path, {**g, "spec": {"size": 1, "foo": 1}, "bar": 2})
    assert code == 201 and out["spec"] == {"size": 1} and "bar" not in out
    before = await _get(raw, f"{path}/g")
    code, _, out = await raw.call("PATCH", f"{path}/g", {"spec": {"foo": 2}}, content_type=MERGE)
    assert code == 200 and out == before
