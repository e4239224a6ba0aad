"""sandbox.schema: pruning and validation of custom resources against their openAPIV3Schema.

Expected messages follow kube-apiserver's (apiextensions-apiserver over kube-openapi), in the
style of shared/fixtures/real-apiserver/errors/422-invalid-pod.json.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from sandbox.schema import Cause, prune, show, validate

INT_OR_STRING: dict[str, Any] = {
    "x-kubernetes-int-or-string": True,
    "anyOf": [{"type": "integer"}, {"type": "string"}],
}
CLONESET: dict[str, Any] = {
    "type": "object",
    "properties": {
        "apiVersion": {"type": "string"},
        "kind": {"type": "string"},
        "metadata": {"type": "object"},
        "spec": {
            "type": "object",
            "required": ["selector"],
            "properties": {
                "replicas": {"type": "integer", "format": "int32", "minimum": 0},
                "selector": {
                    "type": "object",
                    "properties": {
                        "matchLabels": {
                            "type": "object",
                            "additionalProperties": {"type": "string"},
                        },
                        "matchExpressions": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": ["key", "operator"],
                                "properties": {
                                    "key": {"type": "string"},
                                    "operator": {"type": "string"},
                                    "values": {"type": "array", "items": {"type": "string"}},
                                },
                            },
                        },
                    },
                },
                "template": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                "updateStrategy": {
                    "type": "object",
                    "properties": {
                        "type": {"type": "string", "enum": ["ReCreate", "InPlaceIfPossible"]},
                        "partition": INT_OR_STRING,
                        "paused": {"type": "boolean"},
                    },
                },
            },
        },
        "status": {
            "type": "object",
            "properties": {
                "replicas": {"type": "integer", "format": "int32"},
                "observedGeneration": {"type": "integer", "format": "int64"},
            },
        },
    },
}
SELECTOR = {"matchLabels": {"app": "a"}}


def _obj(spec: dict[str, Any], **top: Any) -> dict[str, Any]:
    return {
        "apiVersion": "apps.kruise.io/v1alpha1",
        "kind": "CloneSet",
        "metadata": {"name": "a"},
        "spec": spec,
        **top,
    }


def _at(path: str, s: dict[str, Any]) -> dict[str, Any]:
    """A root schema with ``s`` placed at the dotted ``path`` (all objects)."""
    node = s
    for part in reversed(path.split(".")):
        node = {"type": "object", "properties": {part: node}}
    return node


# --- prune ------------------------------------------------------------------------------

PRUNE_CASES: list[Any] = [
    pytest.param(
        _obj({"selector": SELECTOR, "noSuchField": 1}),
        CLONESET,
        _obj({"selector": SELECTOR}),
        id="an undeclared spec field is dropped",
    ),
    pytest.param(
        _obj({"selector": SELECTOR}, extra={"a": 1}),
        CLONESET,
        _obj({"selector": SELECTOR}),
        id="an undeclared top-level field is dropped",
    ),
    pytest.param(
        {"apiVersion": "v", "kind": "K", "metadata": {"name": "a", "labels": {"x": "y"}}},
        {"type": "object", "properties": {"spec": {"type": "object"}}},
        {"apiVersion": "v", "kind": "K", "metadata": {"name": "a", "labels": {"x": "y"}}},
        id="the root keeps apiVersion kind and metadata even when the schema omits them",
    ),
    pytest.param(
        _obj({"selector": SELECTOR}, metadata={"name": "a", "annotations": {"k": "v"}}),
        CLONESET,
        _obj({"selector": SELECTOR}, metadata={"name": "a", "annotations": {"k": "v"}}),
        id="metadata is kept whole though its schema is a bare object",
    ),
    pytest.param(
        _obj({"template": {"spec": {"containers": [{"name": "c", "future": True}]}}}),
        CLONESET,
        _obj({"template": {"spec": {"containers": [{"name": "c", "future": True}]}}}),
        id="a preserve-unknown-fields node keeps everything under it",
    ),
    pytest.param(
        {"spec": {"known": {"a": 1, "b": 2}, "unknown": {"c": 3}}},
        _at(
            "spec",
            {
                "type": "object",
                "x-kubernetes-preserve-unknown-fields": True,
                "properties": {"known": {"type": "object", "properties": {"a": {}}}},
            },
        ),
        {"spec": {"known": {"a": 1}, "unknown": {"c": 3}}},
        id="a preserve-unknown-fields node still prunes inside its declared fields",
    ),
    pytest.param(
        {"status": {"podStates": {"web-0": {"nodeName": "n1", "stale": 1}}}},
        _at(
            "status.podStates",
            {
                "type": "object",
                "additionalProperties": {
                    "type": "object",
                    "properties": {"nodeName": {"type": "string"}},
                },
            },
        ),
        {"status": {"podStates": {"web-0": {"nodeName": "n1"}}}},
        id="additionalProperties keeps every map key and prunes each value",
    ),
    pytest.param(
        {"spec": {"m": {"a": {"deep": 1}}}},
        _at("spec.m", {"type": "object", "additionalProperties": True}),
        {"spec": {"m": {"a": {"deep": 1}}}},
        id="additionalProperties true keeps the map as is",
    ),
    pytest.param(
        _obj({"selector": {"matchExpressions": [{"key": "k", "operator": "In", "x": 1}]}}),
        CLONESET,
        _obj({"selector": {"matchExpressions": [{"key": "k", "operator": "In"}]}}),
        id="array items are pruned one by one",
    ),
    pytest.param(
        {"spec": {"ref": {"apiVersion": "v1", "kind": "Pod", "metadata": {"n": 1}, "x": 1}}},
        _at(
            "spec.ref",
            {
                "type": "object",
                "x-kubernetes-embedded-resource": True,
                "properties": {"spec": {"type": "object"}},
            },
        ),
        {"spec": {"ref": {"apiVersion": "v1", "kind": "Pod", "metadata": {"n": 1}}}},
        id="an embedded resource keeps apiVersion kind and metadata",
    ),
    pytest.param(
        {"spec": {"opaque": {"a": 1}}},
        _at("spec.opaque", {"type": "object"}),
        {"spec": {"opaque": {}}},
        id="an object declaring no fields loses them all",
    ),
    pytest.param(
        _obj({"selector": SELECTOR, "replicas": None}),
        CLONESET,
        _obj({"selector": SELECTOR}),
        id="a null under a non-nullable field is dropped",
    ),
    pytest.param(
        {"spec": {"x": None}},
        _at("spec.x", {"type": "string", "nullable": True}),
        {"spec": {"x": None}},
        id="a null under a nullable field is kept",
    ),
    pytest.param(
        {"spec": {"x": None}},
        _at("spec.x", {"type": "string", "default": "d"}),
        {"spec": {"x": None}},
        id="a null under a defaulted field is left for defaulting",
    ),
    pytest.param(
        _obj("not-an-object"),  # type: ignore[arg-type]
        CLONESET,
        _obj("not-an-object"),  # type: ignore[arg-type]
        id="a value of the wrong type is left for validation",
    ),
    pytest.param(
        {"anything": {"goes": [1, {"x": 2}]}},
        {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
        {"anything": {"goes": [1, {"x": 2}]}},
        id="a preserve-unknown-fields root keeps everything",
    ),
]


@pytest.mark.parametrize(("obj", "schema", "expected"), PRUNE_CASES)
def test_prune(obj: dict[str, Any], schema: dict[str, Any], expected: dict[str, Any]) -> None:
    before = copy.deepcopy(obj)
    assert prune(obj, schema) == expected
    assert obj == before


def test_prune_returns_a_fresh_object_sharing_no_containers_with_the_input() -> None:
    obj = _obj({"selector": SELECTOR, "template": {"spec": {"containers": [{"name": "c"}]}}})
    before = copy.deepcopy(obj)
    out = prune(obj, CLONESET)
    out["metadata"]["name"] = "changed"
    out["spec"]["template"]["spec"]["containers"][0]["name"] = "changed"
    out["spec"]["selector"]["matchLabels"]["app"] = "changed"
    assert obj == before


# --- validate ---------------------------------------------------------------------------


def _cause(reason: str, field: str, message: str) -> Cause:
    return {"reason": reason, "message": message, "field": field}


def _type(field: str, want: str, got: str) -> Cause:
    return _cause(
        "FieldValueTypeInvalid",
        field,
        f'Invalid value: "{got}": {field} in body must be of type {want}: "{got}"',
    )


VALID_CASES: list[Any] = [
    pytest.param(_obj({"selector": SELECTOR, "replicas": 3}), CLONESET, id="a valid CloneSet"),
    pytest.param(
        _obj({"selector": SELECTOR, "updateStrategy": {"partition": 3}}),
        CLONESET,
        id="int-or-string takes an integer",
    ),
    pytest.param(
        _obj({"selector": SELECTOR, "updateStrategy": {"partition": "20%"}}),
        CLONESET,
        id="int-or-string takes a string",
    ),
    pytest.param(
        _obj({"selector": SELECTOR, "replicas": 3.0}),
        CLONESET,
        id="an integral float is an integer",
    ),
    pytest.param({"spec": {"x": 3}}, _at("spec.x", {"type": "number"}), id="an int is a number"),
    pytest.param(
        {"status": {"observedGeneration": 2**40}},
        CLONESET,
        id="a 64-bit integer fits format int64",
    ),
    pytest.param(
        {"spec": {"x": None}},
        _at("spec.x", {"type": "string", "nullable": True}),
        id="null is fine where nullable",
    ),
    pytest.param(
        {"spec": {"t": "2024-05-01T10:00:00Z"}},
        _at("spec.t", {"type": "string", "format": "date-time"}),
        id="an RFC 3339 time fits format date-time",
    ),
    pytest.param(
        _obj({"selector": SELECTOR, "template": {"spec": {"anything": [1, "x"]}}}),
        CLONESET,
        id="anything goes under preserve-unknown-fields",
    ),
    pytest.param(
        {"spec": {"x": "a"}},
        _at("spec.x", {"anyOf": [{"enum": ["a"]}, {"enum": ["b"]}]}),
        id="anyOf is satisfied by one branch",
    ),
]


@pytest.mark.parametrize(("obj", "schema"), VALID_CASES)
def test_validate_accepts(obj: dict[str, Any], schema: dict[str, Any]) -> None:
    assert validate(obj, schema) == []


INVALID_CASES: list[Any] = [
    pytest.param(
        _obj({"selector": SELECTOR, "replicas": "three"}),
        CLONESET,
        [_type("spec.replicas", "integer", "string")],
        id="a string where an integer belongs",
    ),
    pytest.param(
        _obj({"selector": SELECTOR, "replicas": True}),
        CLONESET,
        [
            _cause(
                "FieldValueTypeInvalid",
                "spec.replicas",
                'Invalid value: "": spec.replicas in body must be of type int32: ""',
            )
        ],
        id="a boolean where an int32 belongs names the format as kube-openapi does",
    ),
    pytest.param(
        _obj({"selector": SELECTOR, "replicas": 1.5}),
        CLONESET,
        [_type("spec.replicas", "int32", "double")],
        id="a fraction where an int32 belongs",
    ),
    pytest.param(
        _obj({"selector": SELECTOR, "updateStrategy": {"paused": "yes"}}),
        CLONESET,
        [_type("spec.updateStrategy.paused", "boolean", "string")],
        id="a string where a boolean belongs",
    ),
    pytest.param(
        _obj({"selector": SELECTOR, "updateStrategy": {"partition": True}}),
        CLONESET,
        [_type("spec.updateStrategy.partition", "integer,string", "boolean")],
        id="int-or-string refuses a boolean",
    ),
    pytest.param(
        _obj({"selector": "app=a"}),
        CLONESET,
        [_type("spec.selector", "object", "string")],
        id="a string where an object belongs",
    ),
    pytest.param(
        _obj({"selector": {"matchExpressions": {"key": "k"}}}),
        CLONESET,
        [_type("spec.selector.matchExpressions", "array", "object")],
        id="an object where an array belongs",
    ),
    pytest.param(
        {"spec": {"x": 1}},
        _at("spec.x", {"type": "string"}),
        [_type("spec.x", "string", "integer")],
        id="an integer where a string belongs",
    ),
    pytest.param(
        {"spec": {"x": "1"}},
        _at("spec.x", {"type": "number"}),
        [_type("spec.x", "number", "string")],
        id="a string where a number belongs",
    ),
    pytest.param(
        {"spec": {"x": None}},
        _at("spec.x", {"type": "string"}),
        [_type("spec.x", "string", "null")],
        id="null where not nullable",
    ),
    pytest.param(
        _obj({"replicas": 1}),
        CLONESET,
        [_cause("FieldValueRequired", "spec.selector", "Required value")],
        id="a required field is missing",
    ),
    pytest.param(
        _obj({"selector": {"matchExpressions": [{"key": "a", "operator": "In"}, {"key": "b"}]}}),
        CLONESET,
        [
            _cause(
                "FieldValueRequired",
                "spec.selector.matchExpressions[1].operator",
                "Required value",
            )
        ],
        id="a required field is missing in the second array item",
    ),
    pytest.param(
        _obj({"selector": {"matchExpressions": [{"key": "a", "operator": "In", "values": [1]}]}}),
        CLONESET,
        [_type("spec.selector.matchExpressions[0].values[0]", "string", "integer")],
        id="array items are checked against items",
    ),
    pytest.param(
        _obj({"selector": {"matchLabels": {"app": 1}}}),
        CLONESET,
        [_type("spec.selector.matchLabels.app", "string", "integer")],
        id="map values are checked against additionalProperties",
    ),
    pytest.param(
        _obj({"selector": SELECTOR, "updateStrategy": {"type": "Rolling"}}),
        CLONESET,
        [
            _cause(
                "FieldValueNotSupported",
                "spec.updateStrategy.type",
                'Unsupported value: "Rolling": supported values: "ReCreate", "InPlaceIfPossible"',
            )
        ],
        id="a value outside the enum",
    ),
    pytest.param(
        {"spec": {"x": 3}},
        _at("spec.x", {"type": "integer", "enum": [1, 2]}),
        [
            _cause(
                "FieldValueNotSupported",
                "spec.x",
                'Unsupported value: 3: supported values: "1", "2"',
            )
        ],
        id="an integer outside an integer enum",
    ),
    pytest.param(
        {"spec": {"x": True}},
        _at("spec.x", {"enum": [1]}),
        [
            _cause(
                "FieldValueNotSupported", "spec.x", 'Unsupported value: true: supported values: "1"'
            )
        ],
        id="true is not 1 in an enum",
    ),
    pytest.param(
        _obj({"selector": SELECTOR, "replicas": -1}),
        CLONESET,
        [
            _cause(
                "FieldValueInvalid",
                "spec.replicas",
                "Invalid value: -1: spec.replicas in body should be greater than or equal to 0",
            )
        ],
        id="below the minimum",
    ),
    pytest.param(
        {"spec": {"x": 0}},
        _at("spec.x", {"type": "integer", "minimum": 0, "exclusiveMinimum": True}),
        [
            _cause(
                "FieldValueInvalid",
                "spec.x",
                "Invalid value: 0: spec.x in body should be greater than 0",
            )
        ],
        id="at an exclusive minimum",
    ),
    pytest.param(
        {"spec": {"x": 2000000}},
        _at("spec.x", {"type": "integer", "maximum": 1000000}),
        [
            _cause(
                "FieldValueInvalid",
                "spec.x",
                "Invalid value: 2000000: spec.x in body should be less than or equal to 1e+06",
            )
        ],
        id="above the maximum which Go prints as a float",
    ),
    pytest.param(
        {"spec": {"x": 2.5}},
        _at("spec.x", {"type": "number", "maximum": 2, "exclusiveMaximum": True}),
        [
            _cause(
                "FieldValueInvalid",
                "spec.x",
                "Invalid value: 2.5: spec.x in body should be less than 2",
            )
        ],
        id="above an exclusive maximum",
    ),
    pytest.param(
        {"spec": {"x": 7}},
        _at("spec.x", {"type": "integer", "multipleOf": 5}),
        [
            _cause(
                "FieldValueInvalid",
                "spec.x",
                "Invalid value: 7: spec.x in body should be a multiple of 5",
            )
        ],
        id="not a multiple",
    ),
    pytest.param(
        {"spec": {"x": "abcdef"}},
        _at("spec.x", {"type": "string", "maxLength": 5}),
        [_cause("FieldValueTooLong", "spec.x", "Too long: may not be longer than 5")],
        id="longer than maxLength",
    ),
    pytest.param(
        {"spec": {"x": "ab"}},
        _at("spec.x", {"type": "string", "minLength": 3}),
        [
            _cause(
                "FieldValueInvalid",
                "spec.x",
                'Invalid value: "ab": spec.x in body should be at least 3 chars long',
            )
        ],
        id="shorter than minLength",
    ),
    pytest.param(
        {"spec": {"x": "Ab"}},
        _at("spec.x", {"type": "string", "pattern": "^[a-z]+$"}),
        [
            _cause(
                "FieldValueInvalid",
                "spec.x",
                "Invalid value: \"Ab\": spec.x in body should match '^[a-z]+$'",
            )
        ],
        id="not matching the pattern",
    ),
    pytest.param(
        {"spec": {"t": "yesterday"}},
        _at("spec.t", {"type": "string", "format": "date-time"}),
        [_type("spec.t", "date-time", "yesterday")],
        id="not a date-time",
    ),
    pytest.param(
        {"spec": {"l": [1, 2, 3]}},
        _at("spec.l", {"type": "array", "maxItems": 2, "items": {"type": "integer"}}),
        [_cause("FieldValueTooMany", "spec.l", "Too many: 3: must have at most 2 items")],
        id="more items than maxItems",
    ),
    pytest.param(
        {"spec": {"l": []}},
        _at("spec.l", {"type": "array", "minItems": 1}),
        [
            _cause(
                "FieldValueInvalid",
                "spec.l",
                "Invalid value: []: spec.l in body should have at least 1 items",
            )
        ],
        id="fewer items than minItems",
    ),
    pytest.param(
        {"spec": {"ref": {"metadata": {}}}},
        _at("spec.ref", {"type": "object", "x-kubernetes-embedded-resource": True}),
        [
            _cause(
                "FieldValueRequired", "spec.ref.apiVersion", "Required value: must not be empty"
            ),
            _cause("FieldValueRequired", "spec.ref.kind", "Required value: must not be empty"),
        ],
        id="an embedded resource without apiVersion and kind",
    ),
    pytest.param(
        {"spec": {"x": "c"}},
        _at("spec.x", {"anyOf": [{"enum": ["a"]}, {"enum": ["b"]}]}),
        [
            _cause(
                "FieldValueInvalid",
                "spec.x",
                'Invalid value: "null": spec.x in body must validate at least one schema (anyOf)',
            )
        ],
        id="anyOf with no branch satisfied",
    ),
    pytest.param(
        _obj({"replicas": "three", "updateStrategy": {"type": "Rolling"}}),
        CLONESET,
        [
            _cause("FieldValueRequired", "spec.selector", "Required value"),
            _type("spec.replicas", "integer", "string"),
            _cause(
                "FieldValueNotSupported",
                "spec.updateStrategy.type",
                'Unsupported value: "Rolling": supported values: "ReCreate", "InPlaceIfPossible"',
            ),
        ],
        id="every cause is reported, required first then fields in order",
    ),
]


@pytest.mark.parametrize(("obj", "schema", "expected"), INVALID_CASES)
def test_validate_refuses(
    obj: dict[str, Any], schema: dict[str, Any], expected: list[Cause]
) -> None:
    assert validate(obj, schema) == expected


def test_validate_a_part_names_fields_from_that_part() -> None:
    causes = validate({"replicas": "x"}, CLONESET["properties"]["status"], path="status")
    assert causes == [_type("status.replicas", "integer", "string")]


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        pytest.param("x", '"x"', id="a string is quoted"),
        pytest.param(None, '"null"', id="null is the quoted word null"),
        pytest.param(False, "false", id="a boolean is bare"),
        pytest.param(-3, "-3", id="an integer is bare"),
        pytest.param(0.25, "0.25", id="a small float is bare"),
        pytest.param(1e6, "1e+06", id="a large float takes Go's exponent form"),
        pytest.param({"b": 1, "a": [2]}, '{"a":[2],"b":1}', id="an object is compact JSON"),
    ],
)
def test_bad_values_are_rendered_as_go_renders_them(value: Any, shown: str) -> None:
    assert show(value) == shown
