"""``/openapi/v2`` as protobuf: a Swagger 2.0 document in gnostic's ``openapi.v2.Document`` wire
format, which kubectl asks for (``Accept:
application/com.github.proto-openapi.spec.v2@v1.0+protobuf``) and cannot read as JSON.

kubectl v1.32 falls back to this document whenever the v3 documents do not describe a kind:
client-side validation of an object whose kind the server does not serve (a custom resource
applied before, or in the same file as, its CRD; a typo in ``apiVersion``) and
``kubectl explain --output=plaintext-openapiv2``. A JSON answer there makes kubectl fail with
``proto: cannot parse invalid wire-format data`` instead of its real message.

Pure; no I/O. ``encode_document(doc)`` takes the JSON document (as ``sandbox.openapi`` serves it)
and returns the message bytes. The field numbers are those of gnostic's ``OpenAPIv2.proto``
(package ``openapi.v2``). Maps become repeated ``Named*`` pairs in document order; a value of
``Any`` (defaults, enums, examples, ``x-`` vendor extensions) is carried as its ``yaml`` text,
written as JSON (a subset of YAML), which is what kube-openapi parses back. Keys the format has
no field for (other than ``x-`` extensions) are left out, as gnostic leaves them out.

Wire types used: 0 (varint: bool, int64), 1 (64-bit: double) and 2 (length-delimited: string,
embedded message). proto3 omits zero scalars, except a bool chosen in a ``oneof``
(``additionalProperties: false``), whose presence is the information.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from functools import cache
from typing import Any

import orjson

MEDIA_TYPES = (
    "application/com.github.proto-openapi.spec.v2@v1.0+protobuf",
    "application/com.github.proto-openapi.spec.v2.v1.0+protobuf",
)
# what kube-apiserver answers with, whichever of the two was asked for
CONTENT_TYPE = MEDIA_TYPES[1]

Encoder = Callable[[int, Any], bytes]
Table = tuple[tuple[str, int, Encoder], ...]


# ---- wire primitives ------------------------------------------------------------------------


def _varint(n: int) -> bytes:
    if n < 0:
        n += 1 << 64
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _tag(field: int, wire: int) -> bytes:
    return _varint(field << 3 | wire)


def _bytes(field: int, data: bytes) -> bytes:
    return _tag(field, 2) + _varint(len(data)) + data


def _string(field: int, value: Any) -> bytes:
    return _bytes(field, value.encode()) if isinstance(value, str) and value else b""


def _strings(field: int, value: Any) -> bytes:
    if isinstance(value, str):
        value = [value]
    return b"".join(_bytes(field, v.encode()) for v in value or () if isinstance(v, str))


def _bool(field: int, value: Any) -> bytes:
    return _tag(field, 0) + b"\x01" if value is True else b""


def _int(field: int, value: Any) -> bytes:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value:
        return b""
    return _tag(field, 0) + _varint(int(value))


def _double(field: int, value: Any) -> bytes:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value:
        return b""
    return _tag(field, 1) + struct.pack("<d", float(value))


def _any_body(value: Any) -> bytes:
    """``Any {google.protobuf.Any value = 1; string yaml = 2}``: the value as YAML text."""
    return _bytes(2, orjson.dumps(value))


def _any(field: int, value: Any) -> bytes:
    return _bytes(field, _any_body(value))


def _anys(field: int, value: Any) -> bytes:
    return b"".join(_any(field, v) for v in value) if isinstance(value, list) else b""


def _vendor(field: int, obj: dict[str, Any]) -> bytes:
    """``x-`` keys as ``NamedAny {name = 1; Any value = 2}``."""
    return b"".join(
        _bytes(field, _string(1, k) + _bytes(2, _any_body(v)))
        for k, v in obj.items()
        if k.startswith("x-")
    )


def _message(obj: Any, table: Table, vendor: int = 0) -> bytes:
    if not isinstance(obj, dict):
        return b""
    out = [enc(num, obj[key]) for key, num, enc in table if key in obj]
    if vendor:
        out.append(_vendor(vendor, obj))
    return b"".join(out)


def _embed(table_of: Callable[[], Table], vendor: int = 0) -> Encoder:
    """An encoder of one embedded message (its table looked up lazily: tables recurse)."""

    def enc(field: int, value: Any) -> bytes:
        return _bytes(field, _message(value, table_of(), vendor))

    return enc


def _repeated(each: Encoder) -> Encoder:
    def enc(field: int, value: Any) -> bytes:
        return b"".join(each(field, v) for v in value) if isinstance(value, list) else b""

    return enc


def _named_map(value_enc: Encoder, *, vendor: int = 0, pairs: int = 1) -> Encoder:
    """A map as a message of repeated ``Named* {name = 1; value = 2}`` at field ``pairs``
    (``Properties``, ``Definitions``, ``Paths``, ``Responses`` ...), ``x-`` keys aside when the
    message has a ``vendor`` field."""

    def enc(field: int, value: Any) -> bytes:
        if not isinstance(value, dict):
            return b""
        body = b"".join(
            _bytes(pairs, _string(1, k) + value_enc(2, v))
            for k, v in value.items()
            if not (vendor and k.startswith("x-"))
        )
        return _bytes(field, (_vendor(vendor, value) if vendor else b"") + body)

    return enc


# ---- messages -------------------------------------------------------------------------------


@cache
def _external_docs() -> Table:
    return (("description", 1, _string), ("url", 2, _string))


@cache
def _xml() -> Table:
    return (
        ("name", 1, _string),
        ("namespace", 2, _string),
        ("prefix", 3, _string),
        ("attribute", 4, _bool),
        ("wrapped", 5, _bool),
    )


def _additional_properties(field: int, value: Any) -> bytes:
    """``AdditionalPropertiesItem``: oneof ``Schema schema = 1`` / ``bool boolean = 2``."""
    if isinstance(value, bool):
        return _bytes(field, _tag(2, 0) + (b"\x01" if value else b"\x00"))
    return _bytes(field, _schema_enc(1, value))


def _type_item(field: int, value: Any) -> bytes:
    """``TypeItem {repeated string value = 1}``."""
    return _bytes(field, _strings(1, value))


def _items_item(field: int, value: Any) -> bytes:
    """``ItemsItem {repeated Schema schema = 1}``: one schema or a list of them."""
    schemas = value if isinstance(value, list) else [value]
    return _bytes(field, b"".join(_schema_enc(1, s) for s in schemas))


@cache
def _schema() -> Table:
    return (
        ("$ref", 1, _string),
        ("format", 2, _string),
        ("title", 3, _string),
        ("description", 4, _string),
        ("default", 5, _any),
        ("multipleOf", 6, _double),
        ("maximum", 7, _double),
        ("exclusiveMaximum", 8, _bool),
        ("minimum", 9, _double),
        ("exclusiveMinimum", 10, _bool),
        ("maxLength", 11, _int),
        ("minLength", 12, _int),
        ("pattern", 13, _string),
        ("maxItems", 14, _int),
        ("minItems", 15, _int),
        ("uniqueItems", 16, _bool),
        ("maxProperties", 17, _int),
        ("minProperties", 18, _int),
        ("required", 19, _strings),
        ("enum", 20, _anys),
        ("additionalProperties", 21, _additional_properties),
        ("type", 22, _type_item),
        ("items", 23, _items_item),
        ("allOf", 24, _repeated(_schema_enc)),
        ("properties", 25, _named_map(_schema_enc)),
        ("discriminator", 26, _string),
        ("readOnly", 27, _bool),
        ("xml", 28, _embed(_xml, 6)),
        ("externalDocs", 29, _embed(_external_docs, 3)),
        ("example", 30, _any),
    )


def _schema_enc(field: int, value: Any) -> bytes:
    return _bytes(field, _message(value, _schema(), 31))


@cache
def _file_schema() -> Table:
    return (
        ("format", 1, _string),
        ("title", 2, _string),
        ("description", 3, _string),
        ("default", 4, _any),
        ("required", 5, _strings),
        ("type", 6, _string),
        ("readOnly", 7, _bool),
        ("externalDocs", 8, _embed(_external_docs, 3)),
        ("example", 9, _any),
    )


_CHECKS = (
    ("type", _string),
    ("format", _string),
    ("items", None),
    ("collectionFormat", _string),
    ("default", _any),
    ("maximum", _double),
    ("exclusiveMaximum", _bool),
    ("minimum", _double),
    ("exclusiveMinimum", _bool),
    ("maxLength", _int),
    ("minLength", _int),
    ("pattern", _string),
    ("maxItems", _int),
    ("minItems", _int),
    ("uniqueItems", _bool),
    ("enum", _anys),
    ("multipleOf", _double),
)


@cache
def _checks(first: int) -> Table:
    """The 17 fields every non-body parameter, header and ``PrimitivesItems`` shares, in one
    order, numbered from ``first`` (the nested ``items`` is a ``PrimitivesItems``)."""
    out: list[tuple[str, int, Encoder]] = []
    for i, (key, enc) in enumerate(_CHECKS):
        out.append((key, first + i, enc or _embed(_primitives_items, 18)))
    return tuple(out)


@cache
def _primitives_items() -> Table:
    return _checks(1)


@cache
def _header() -> Table:
    return (*_checks(1), ("description", 18, _string))


_HEAD = (
    ("required", 1, _bool),
    ("in", 2, _string),
    ("description", 3, _string),
    ("name", 4, _string),
)


@cache
def _query_or_form() -> Table:
    return (*_HEAD, ("allowEmptyValue", 5, _bool), *_checks(6))


@cache
def _path_or_header() -> Table:
    return (*_HEAD, *_checks(5))


@cache
def _body_parameter() -> Table:
    return (
        ("description", 1, _string),
        ("name", 2, _string),
        ("in", 3, _string),
        ("required", 4, _bool),
        ("schema", 5, _schema_enc),
    )


# NonBodyParameter's oneof: where each ``in`` goes, its message and its vendor field
_NON_BODY: dict[str, tuple[int, Callable[[], Table], int]] = {
    "header": (1, _path_or_header, 22),
    "formData": (2, _query_or_form, 23),
    "query": (3, _query_or_form, 23),
    "path": (4, _path_or_header, 22),
}


def _parameter(field: int, value: Any) -> bytes:
    """``Parameter``: oneof ``BodyParameter body_parameter = 1`` /
    ``NonBodyParameter non_body_parameter = 2``."""
    if not isinstance(value, dict):
        return b""
    where = value.get("in")
    if where == "body":
        return _bytes(field, _bytes(1, _message(value, _body_parameter(), 6)))
    if where not in _NON_BODY:
        return b""
    num, table, vendor = _NON_BODY[str(where)]
    return _bytes(field, _bytes(2, _bytes(num, _message(value, table(), vendor))))


def _json_reference(field: int, value: Any) -> bytes:
    return _bytes(field, _string(1, value.get("$ref")) + _string(2, value.get("description")))


def _parameters_item(field: int, value: Any) -> bytes:
    """``ParametersItem``: oneof ``Parameter parameter = 1`` / ``JsonReference = 2``."""
    if isinstance(value, dict) and "$ref" in value:
        return _bytes(field, _json_reference(2, value))
    return _bytes(field, _parameter(1, value))


def _schema_item(field: int, value: Any) -> bytes:
    """``SchemaItem``: oneof ``Schema schema = 1`` / ``FileSchema file_schema = 2``."""
    if isinstance(value, dict) and value.get("type") == "file":
        return _bytes(field, _bytes(2, _message(value, _file_schema(), 10)))
    return _bytes(field, _schema_enc(1, value))


@cache
def _response() -> Table:
    return (
        ("description", 1, _string),
        ("schema", 2, _schema_item),
        ("headers", 3, _named_map(_embed(_header, 19))),
        ("examples", 4, _named_map(_any)),
    )


def _response_value(field: int, value: Any) -> bytes:
    """``ResponseValue``: oneof ``Response response = 1`` / ``JsonReference = 2``."""
    if isinstance(value, dict) and "$ref" in value:
        return _bytes(field, _json_reference(2, value))
    return _bytes(field, _bytes(1, _message(value, _response(), 5)))


@cache
def _operation() -> Table:
    return (
        ("tags", 1, _strings),
        ("summary", 2, _string),
        ("description", 3, _string),
        ("externalDocs", 4, _embed(_external_docs, 3)),
        ("operationId", 5, _string),
        ("produces", 6, _strings),
        ("consumes", 7, _strings),
        ("parameters", 8, _repeated(_parameters_item)),
        ("responses", 9, _named_map(_response_value, vendor=2)),
        ("schemes", 10, _strings),
        ("deprecated", 11, _bool),
        ("security", 12, _repeated(_security_requirement)),
    )


@cache
def _path_item() -> Table:
    op = _embed(_operation, 13)
    return (
        ("$ref", 1, _string),
        ("get", 2, op),
        ("put", 3, op),
        ("post", 4, op),
        ("delete", 5, op),
        ("options", 6, op),
        ("head", 7, op),
        ("patch", 8, op),
        ("parameters", 9, _repeated(_parameters_item)),
    )


def _string_array(field: int, value: Any) -> bytes:
    return _bytes(field, _strings(1, value))


def _security_requirement(field: int, value: Any) -> bytes:
    """``SecurityRequirement {repeated NamedStringArray additional_properties = 1}``."""
    if not isinstance(value, dict):
        return b""
    pairs = b"".join(_bytes(1, _string(1, k) + _string_array(2, v)) for k, v in value.items())
    return _bytes(field, pairs)


@cache
def _security_scheme() -> Table:
    return (
        ("type", 1, _string),
        ("name", 2, _string),
        ("in", 3, _string),
        ("description", 4, _string),
    )


def _security_definitions_item(field: int, value: Any) -> bytes:
    """``SecurityDefinitionsItem``: oneof by type; the sandbox's documents only hold the
    API server's ``apiKey`` (field 2) and perhaps ``basic`` (field 1)."""
    if not isinstance(value, dict):
        return b""
    if value.get("type") == "basic":
        basic = (("type", 1, _string), ("description", 2, _string))
        return _bytes(field, _bytes(1, _message(value, basic, 3)))
    if value.get("type") == "apiKey":
        return _bytes(field, _bytes(2, _message(value, _security_scheme(), 5)))
    return b""


@cache
def _info() -> Table:
    return (
        ("title", 1, _string),
        ("version", 2, _string),
        ("description", 3, _string),
        ("termsOfService", 4, _string),
    )


@cache
def _tag_table() -> Table:
    return (
        ("name", 1, _string),
        ("description", 2, _string),
        ("externalDocs", 3, _embed(_external_docs, 3)),
    )


@cache
def _document() -> Table:
    return (
        ("swagger", 1, _string),
        ("info", 2, _embed(_info, 7)),
        ("host", 3, _string),
        ("basePath", 4, _string),
        ("schemes", 5, _strings),
        ("consumes", 6, _strings),
        ("produces", 7, _strings),
        ("paths", 8, _named_map(_embed(_path_item, 10), vendor=1, pairs=2)),
        ("definitions", 9, _named_map(_schema_enc)),
        ("parameters", 10, _named_map(_parameter)),
        ("responses", 11, _named_map(_embed(_response, 5))),
        ("security", 12, _repeated(_security_requirement)),
        ("securityDefinitions", 13, _named_map(_security_definitions_item)),
        ("tags", 14, _repeated(_embed(_tag_table, 4))),
        ("externalDocs", 15, _embed(_external_docs, 3)),
    )


def encode_document(doc: dict[str, Any]) -> bytes:
    """The ``openapi.v2.Document`` message of a Swagger 2.0 JSON document."""
    return _message(doc, _document(), 16)


def wants_protobuf(accept: str) -> bool:
    """Whether an ``Accept`` header asks for the protobuf form (kubectl's only choice)."""
    return any(m in accept for m in MEDIA_TYPES)
