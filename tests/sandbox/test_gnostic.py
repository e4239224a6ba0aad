"""``/openapi/v2`` as gnostic protobuf: the encoder, decoded back with a wire reader written here
(field numbers from gnostic's ``OpenAPIv2.proto``), and the HTTP negotiation kubectl uses."""

from __future__ import annotations

import struct
from collections import defaultdict
from typing import Any

import orjson
import pytest
import yaml

from sandbox import gnostic, openapi
from tests.sandbox.conftest import Raw

Fields = dict[int, list[Any]]


def read(data: bytes) -> Fields:
    """One message: field number → values (ints, floats as 8 raw bytes, bytes)."""
    out: Fields = defaultdict(list)
    i = 0

    def varint() -> int:
        nonlocal i
        shift = n = 0
        while True:
            b = data[i]
            i += 1
            n |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                return n

    while i < len(data):
        key = varint()
        field, wire = key >> 3, key & 7
        if wire == 0:
            out[field].append(varint())
        elif wire == 1:
            out[field].append(data[i : i + 8])
            i += 8
        elif wire == 2:
            n = varint()
            out[field].append(data[i : i + n])
            i += n
        else:
            raise AssertionError(f"wire type {wire}")
    return out


def text(f: Fields, n: int) -> str:
    return bytes(f[n][0]).decode() if f.get(n) else ""


def named(f: Fields, n: int, pairs: int = 1) -> dict[str, bytes]:
    """A message of ``Named*`` pairs (at its field ``pairs``) at field ``n`` → name → value."""
    if not f.get(n):
        return {}
    return {text(read(p), 1): read(p)[2][0] for p in read(f[n][0])[pairs]}


def vendor(f: Fields, n: int) -> dict[str, Any]:
    """``repeated NamedAny`` at field ``n``: name → the value parsed from its ``yaml``."""
    out = {}
    for raw in f.get(n, []):
        pair = read(raw)
        out[text(pair, 1)] = yaml.safe_load(text(read(pair[2][0]), 2))
    return out


def schema(data: bytes) -> dict[str, Any]:
    """Enough of ``Schema`` to compare with the JSON it came from."""
    f = read(data)
    out: dict[str, Any] = {}
    for key, n in (("$ref", 1), ("format", 2), ("description", 4)):
        if f.get(n):
            out[key] = text(f, n)
    if f.get(19):
        out["required"] = [bytes(v).decode() for v in f[19]]
    if f.get(21):
        item = read(f[21][0])
        out["additionalProperties"] = bool(item[2][0]) if 2 in item else schema(item[1][0])
    if f.get(22):
        types = [bytes(v).decode() for v in read(f[22][0])[1]]
        out["type"] = types[0] if len(types) == 1 else types
    if f.get(23):
        out["items"] = schema(read(f[23][0])[1][0])
    if f.get(25):
        out["properties"] = {k: schema(v) for k, v in named(f, 25).items()}
    if f.get(16):
        out["uniqueItems"] = bool(f[16][0])
    out.update(vendor(f, 31))
    return out


_KEPT = ("$ref", "format", "description", "required", "type", "items", "properties")


def comparable(s: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in s.items() if k in _KEPT or k.startswith("x-")}
    if "additionalProperties" in s:
        ap = s["additionalProperties"]
        out["additionalProperties"] = ap if isinstance(ap, bool) else comparable(ap)
    if "items" in s:
        out["items"] = comparable(s["items"])
    if "properties" in s:
        out["properties"] = {k: comparable(v) for k, v in s["properties"].items()}
    if s.get("uniqueItems"):
        out["uniqueItems"] = True
    return out


@pytest.fixture(scope="module")
def v2() -> dict[str, Any]:
    return openapi._builtin_v2()


@pytest.fixture(scope="module")
def encoded(v2: dict[str, Any]) -> Fields:
    return read(gnostic.encode_document(v2))


def test_document_head(encoded: Fields, v2: dict[str, Any]) -> None:
    assert text(encoded, 1) == "2.0"
    info = read(encoded[2][0])
    assert text(info, 1) == v2["info"]["title"] and text(info, 2) == v2["info"]["version"]
    # securityDefinitions: BearerToken as an ApiKeySecurity (oneof field 2)
    sec = named(encoded, 13)
    api_key = read(read(sec["BearerToken"])[2][0])
    assert (text(api_key, 1), text(api_key, 2), text(api_key, 3)) == (
        "apiKey",
        "authorization",
        "header",
    )
    # security: [{"BearerToken": []}]
    req = read(read(encoded[12][0])[1][0])
    assert text(req, 1) == "BearerToken"


@pytest.mark.parametrize(
    "name",
    [
        "io.k8s.api.core.v1.Pod",
        "io.k8s.api.core.v1.PodSpec",
        "io.k8s.api.core.v1.Container",
        "io.k8s.api.apps.v1.Deployment",
        "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
        "io.k8s.apimachinery.pkg.util.intstr.IntOrString",
    ],
)
def test_definitions_decode_back(encoded: Fields, v2: dict[str, Any], name: str) -> None:
    defs = named(encoded, 9)
    assert list(defs) == list(v2["definitions"])  # every one, in document order
    assert schema(defs[name]) == comparable(v2["definitions"][name])


def test_paths_and_operations(encoded: Fields, v2: dict[str, Any]) -> None:
    paths = named(encoded, 8, pairs=2)  # Paths: vendor extensions 1, paths 2
    assert list(paths) == list(v2["paths"])
    item = read(paths["/api/v1/namespaces/{namespace}/pods/{name}"])
    want = v2["paths"]["/api/v1/namespaces/{namespace}/pods/{name}"]
    get = read(item[2][0])
    assert text(get, 5) == want["get"]["operationId"]
    assert vendor(get, 13)["x-kubernetes-group-version-kind"] == {
        "group": "",
        "kind": "Pod",
        "version": "v1",
    }
    # responses: "200" → Response whose schema (SchemaItem.schema) refers to the Pod
    ok = read(read(named(get, 9)["200"])[1][0])
    assert schema(read(ok[2][0])[1][0]) == {"$ref": "#/definitions/io.k8s.api.core.v1.Pod"}
    # path-level parameters: a path parameter (ParametersItem.parameter → Parameter
    # .non_body_parameter → NonBodyParameter field 4), then JsonReferences (field 2)
    first, *refs = [read(p) for p in item[9]]
    path_param = read(read(read(first[1][0])[2][0])[4][0])
    assert text(path_param, 4) == "name" and path_param[1] == [1]  # required
    assert [text(read(r[2][0]), 1) for r in refs] == [p["$ref"] for p in want["parameters"][1:]]
    # the document's parameters: "pretty" is a query parameter (NonBodyParameter field 3)
    pretty = next(k for k in v2["parameters"] if k.startswith("pretty-"))
    query = read(read(named(encoded, 10)[pretty])[2][0])
    assert text(read(query[3][0]), 4) == "pretty"
    # a body parameter (Parameter field 1) on PUT
    put = read(item[3][0])
    params = [read(read(p)[1][0]) for p in put[8] if 1 in read(p)]
    body = next(read(b[1][0]) for b in params if 1 in b)
    assert text(body, 2) == "body" and text(body, 3) == "body"


@pytest.mark.parametrize(
    ("field", "value", "want"),
    [
        pytest.param(3, False, b"", id="false is omitted"),
        pytest.param(3, True, b"\x18\x01", id="true"),
        pytest.param(11, 300, b"\x58\xac\x02", id="int64 varint"),
        pytest.param(11, -1, b"\x58" + b"\xff" * 9 + b"\x01", id="negative int64: ten bytes"),
        pytest.param(7, 1.5, b"\x39" + struct.pack("<d", 1.5), id="double: fixed 64-bit"),
    ],
)
def test_scalars(field: int, value: Any, want: bytes) -> None:
    enc = {bool: gnostic._bool, int: gnostic._int, float: gnostic._double}[type(value)]
    assert enc(field, value) == want


def test_additional_properties_false_is_kept() -> None:
    s = schema(gnostic._schema_enc(1, {"type": "object", "additionalProperties": False})[2:])
    assert s == {"type": "object", "additionalProperties": False}


def test_vendor_values_are_yaml() -> None:
    ext = {"x-kubernetes-list-map-keys": ["name"], "x-kubernetes-patch-strategy": "merge"}
    body = gnostic._schema_enc(1, {"type": "array", **ext})[2:]
    assert vendor(read(body), 31) == ext


async def test_served_when_asked(raw: Raw) -> None:
    status, _, doc = await raw.call("GET", "/openapi/v2")
    assert status == 200 and doc["swagger"] == "2.0"
    headers = {"Authorization": f"Bearer {raw.sb.token}", "Accept": gnostic.MEDIA_TYPES[0]}
    async with raw.session.get(raw.sb.url + "/openapi/v2", headers=headers) as resp:
        body = await resp.read()
        assert resp.status == 200
        assert resp.headers["Content-Type"] == gnostic.CONTENT_TYPE
    assert body == gnostic.encode_document(doc)
    # the CRDs' kinds are in it
    assert "io.kruise.apps.v1alpha1.CloneSet" in named(read(body), 9)
    assert orjson.loads(orjson.dumps(doc)) == doc
