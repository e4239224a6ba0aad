"""Structural-schema pruning and validation of custom resources, as kube-apiserver does them.

Pure; no I/O. ``prune(obj, schema)`` returns a copy of a custom resource without the fields
its CRD's ``openAPIV3Schema`` does not declare (and without non-nullable ``null`` values);
``validate(obj, schema)`` returns the ``details.causes`` of the 422 a real server answers,
worded as apiextensions-apiserver words them (kube-openapi messages wrapped in field errors)::

    spec.replicas: Invalid value: "string": spec.replicas in body must be of type integer: "string"
    spec.selector: Required value
    spec.type: Unsupported value: "X": supported values: "A", "B"

Supported: type (string, integer, number, boolean, object, array; ``format`` int32/int64 and
the other numeric formats as kube-openapi reads them), ``nullable``,
``x-kubernetes-int-or-string``, ``required``, ``enum``, ``minimum``/``maximum`` (and the
exclusive forms), ``multipleOf``, ``minLength``/``maxLength``, ``pattern``, ``format:
date-time``, ``minItems``/``maxItems``, ``minProperties``/``maxProperties``, ``items``,
``properties``, ``additionalProperties``, ``allOf``/``anyOf``/``oneOf``/``not`` and the
``apiVersion``/``kind`` of ``x-kubernetes-embedded-resource`` objects. Not done: ``default``
(no CRD of ours declares one), CEL rules, list-type/map-type uniqueness, ratcheting.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

Cause = dict[str, str]
Schema = Mapping[str, Any]

PRESERVE = "x-kubernetes-preserve-unknown-fields"
EMBEDDED = "x-kubernetes-embedded-resource"
INT_OR_STRING = "x-kubernetes-int-or-string"
_META_FIELDS = frozenset({"apiVersion", "kind", "metadata"})
_KEEP_ALL: Schema = {PRESERVE: True}
_DATE_TIME = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?([Zz]|[+-]\d{2}(:?\d{2})?)?$"
)


# --- pruning ----------------------------------------------------------------------------


def prune(obj: dict[str, Any], schema: Schema) -> dict[str, Any]:
    """A copy of ``obj`` holding only what ``schema`` declares; ``obj`` is left untouched.

    The root is a resource: apiVersion, kind and metadata are always kept (metadata as is).
    Objects keep the keys under ``properties`` (recursing), every key when
    ``additionalProperties`` is a schema (recursing into the values) or when the node has
    ``x-kubernetes-preserve-unknown-fields: true`` (unknown keys kept whole, declared ones
    still pruned). ``x-kubernetes-embedded-resource`` objects keep apiVersion, kind and
    metadata. A ``null`` under a declared key is dropped unless that key's schema is
    ``nullable`` or has a ``default``, as the real server does before defaulting.
    """
    root = schema if schema.get(EMBEDDED) is True else {**schema, EMBEDDED: True}
    out = _prune(obj, root)
    return out if isinstance(out, dict) else _copy(obj)


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def _field_schema(s: Schema, key: str) -> Schema | None:
    props = s.get("properties")
    if isinstance(props, Mapping):
        sub = props.get(key)
        if isinstance(sub, Mapping):
            return sub
    addl = s.get("additionalProperties")
    if isinstance(addl, Mapping):
        return addl
    if addl is True:
        return _KEEP_ALL
    return None


def _drops_null(s: Schema) -> bool:
    return s.get("nullable") is not True and "default" not in s


def _items(s: Schema | None) -> Schema | None:
    items = s.get("items") if s is not None else None
    return items if isinstance(items, Mapping) else None


def _prune(value: Any, s: Schema | None) -> Any:
    if s is not None and s.get(PRESERVE) is True:
        return _keep_unknown(value, s)
    if isinstance(value, dict):
        if s is None:
            return {}
        embedded = s.get(EMBEDDED) is True
        out: dict[str, Any] = {}
        for k, v in value.items():
            if embedded and k in _META_FIELDS:
                out[k] = _copy(v)
                continue
            sub = _field_schema(s, k)
            if sub is None or (v is None and _drops_null(sub)):
                continue
            out[k] = _prune(v, sub)
        return out
    if isinstance(value, list):
        items = _items(s)
        return [_prune(v, items) for v in value]
    return value


def _keep_unknown(value: Any, s: Schema | None) -> Any:
    """Under preserve-unknown-fields: unknown keys stay whole, declared ones are pruned."""
    if s is None:
        return _copy(value)
    if isinstance(value, dict):
        embedded = s.get(EMBEDDED) is True
        out: dict[str, Any] = {}
        for k, v in value.items():
            sub = None if embedded and k in _META_FIELDS else _field_schema(s, k)
            if sub is None:
                out[k] = _copy(v)
            elif not (v is None and _drops_null(sub)):
                out[k] = _prune(v, sub)
        return out
    if isinstance(value, list):
        items = _items(s)
        return [_keep_unknown(v, items) for v in value]
    return value


# --- value rendering (as Go's field.Error prints a bad value) ---------------------------


def _go_float(f: float) -> str:
    """Go's ``%v`` of a float64: shortest digits, exponent form below 1e-4 or from 1e+06."""
    if math.isinf(f):
        return "+Inf" if f > 0 else "-Inf"
    if math.isnan(f):
        return "NaN"
    if f == 0:
        return "-0" if math.copysign(1.0, f) < 0 else "0"
    _, digits, exp = Decimal(repr(abs(f))).as_tuple()
    assert isinstance(exp, int)
    ds = "".join(map(str, digits)).rstrip("0")
    point = len(digits) + exp  # where the decimal point falls in ds
    x = point - 1
    if x < -4 or x >= 6:
        mant = ds[0] + ("." + ds[1:] if len(ds) > 1 else "")
        text = f"{mant}e{'-' if x < 0 else '+'}{abs(x):02d}"
    elif point <= 0:
        text = "0." + "0" * -point + ds
    elif point >= len(ds):
        text = ds + "0" * (point - len(ds))
    else:
        text = ds[:point] + "." + ds[point:]
    return ("-" if f < 0 else "") + text


def show(value: Any) -> str:
    """A bad value as kube's ``field.Error`` renders it after ``Invalid value: ``."""
    if value is None:
        return '"null"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _go_float(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)


def _num(limit: float) -> str:
    """A schema bound as kube-openapi prints it (bounds are float64 there)."""
    return _go_float(float(limit))


# --- causes -------------------------------------------------------------------------------


def _child(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _in_body(path: str) -> str:
    return f"{path} in body" if path else "in body"


def _invalid(path: str, value: Any, detail: str) -> Cause:
    return {
        "reason": "FieldValueInvalid",
        "message": f"Invalid value: {show(value)}: {_in_body(path)} {detail}",
        "field": path,
    }


def _type_invalid(path: str, expected: str, actual: str) -> Cause:
    return {
        "reason": "FieldValueTypeInvalid",
        "message": f"Invalid value: {show(actual)}: {_in_body(path)} must be of type "
        f"{expected}: {show(actual)}",
        "field": path,
    }


def _required(path: str, detail: str = "") -> Cause:
    return {
        "reason": "FieldValueRequired",
        "message": "Required value" + (f": {detail}" if detail else ""),
        "field": path,
    }


def _not_supported(path: str, value: Any, allowed: list[Any]) -> Cause:
    shown = ", ".join(
        json.dumps(a if isinstance(a, str) else json.dumps(a, separators=(",", ":")))
        for a in allowed
    )
    return {
        "reason": "FieldValueNotSupported",
        "message": f"Unsupported value: {show(value)}: supported values: {shown}",
        "field": path,
    }


def _too_many(path: str, count: int, limit: int) -> Cause:
    return {
        "reason": "FieldValueTooMany",
        "message": f"Too many: {count}: must have at most {limit} items",
        "field": path,
    }


def _too_long(path: str, limit: int) -> Cause:
    return {
        "reason": "FieldValueTooLong",
        "message": f"Too long: may not be longer than {limit}",
        "field": path,
    }


# --- validation ---------------------------------------------------------------------------


def validate(obj: Any, schema: Schema, *, path: str = "") -> list[Cause]:
    """The causes ``obj`` violates ``schema`` with, in kube-apiserver's wording.

    ``path`` names ``obj`` inside the resource (``"status"`` to check a status alone).
    An empty list means valid. Run it on a pruned object, as the server does.
    """
    out: list[Cause] = []
    _validate(obj, schema, path, out)
    return out


def _json_type(value: Any) -> tuple[str, str]:
    """The (type, format) kube-openapi infers from a decoded JSON value."""
    if isinstance(value, bool):
        return "boolean", ""
    if isinstance(value, int):
        return "integer", "int64"
    if isinstance(value, float):
        return "number", "double"
    if isinstance(value, str):
        return "string", ""
    if isinstance(value, list):
        return "array", ""
    return "object", ""


def _types(s: Schema) -> list[str]:
    if s.get(INT_OR_STRING) is True:
        return ["integer", "string"]
    t = s.get("type")
    if isinstance(t, str) and t:
        return [t]
    if isinstance(t, list):
        return [str(x) for x in t]
    return []


def _type_cause(value: Any, s: Schema, path: str) -> Cause | None:
    """kube-openapi's typeValidator, quirks included (a format can name the wanted type)."""
    types = _types(s)
    if not types:
        return None
    fmt = str(s.get("format") or "")
    kind, vfmt = _json_type(value)
    loose = kind in ("string", "array")
    float_int = kind == "number" and float(value).is_integer() and "integer" in types
    int_float = kind == "integer" and "number" in types
    fits = kind in types or float_int or int_float
    if not loose and fmt and not (fits or vfmt == fmt or (fmt == "int64" and vfmt == "int32")):
        return _type_invalid(path, fmt, vfmt)
    if loose and fmt and "number" not in types and "integer" not in types:
        return None
    if not fits:
        return _type_invalid(path, ",".join(types), kind)
    return None


def _same(a: Any, b: Any) -> bool:
    """JSON equality (``True`` is not ``1``; ``1`` is ``1.0``)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and bool(a == b)


@functools.lru_cache(maxsize=256)
def _regex(pattern: str) -> re.Pattern[str] | None:
    try:
        return re.compile(pattern)
    except re.error:
        return None


def _validate(value: Any, s: Schema, path: str, out: list[Cause]) -> None:
    if value is None:
        if s.get("nullable") is not True and _types(s):
            out.append(_type_invalid(path, ",".join(_types(s)), "null"))
        return
    cause = _type_cause(value, s, path)
    if cause is not None:
        out.append(cause)
        return
    _composites(value, s, path, out)
    if isinstance(value, str):
        _string(value, s, path, out)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        _number(value, s, path, out)
    enum = s.get("enum")
    if isinstance(enum, list) and enum and not any(_same(value, e) for e in enum):
        out.append(_not_supported(path, value, enum))
    if isinstance(value, list):
        _array(value, s, path, out)
    elif isinstance(value, dict):
        _object(value, s, path, out)


def _composites(value: Any, s: Schema, path: str, out: list[Cause]) -> None:
    for sub in s.get("allOf") or ():
        _validate(value, sub, path, out)
    any_of = s.get("anyOf")
    if any_of and not any(not validate(value, sub, path=path) for sub in any_of):
        out.append(_invalid(path, None, "must validate at least one schema (anyOf)"))
    one_of = s.get("oneOf")
    if one_of and sum(1 for sub in one_of if not validate(value, sub, path=path)) != 1:
        out.append(_invalid(path, None, "must validate one and only one schema (oneOf)"))
    not_ = s.get("not")
    if isinstance(not_, Mapping) and not validate(value, not_, path=path):
        out.append(_invalid(path, None, "must not validate the schema (not)"))


def _string(value: str, s: Schema, path: str, out: list[Cause]) -> None:
    max_len = s.get("maxLength")
    if isinstance(max_len, int) and len(value) > max_len:
        out.append(_too_long(path, max_len))
    min_len = s.get("minLength")
    if isinstance(min_len, int) and len(value) < min_len:
        out.append(_invalid(path, value, f"should be at least {min_len} chars long"))
    pattern = s.get("pattern")
    if isinstance(pattern, str):
        rx = _regex(pattern)
        if rx is not None and rx.search(value) is None:
            out.append(_invalid(path, value, f"should match '{pattern}'"))
    if s.get("format") == "date-time" and not _DATE_TIME.match(value):
        out.append(_type_invalid(path, "date-time", value))


def _number(value: float, s: Schema, path: str, out: list[Cause]) -> None:
    step = s.get("multipleOf")
    if isinstance(step, int | float) and step > 0:
        q = value / step
        if not math.isclose(q, round(q), rel_tol=0, abs_tol=1e-9):
            out.append(_invalid(path, value, f"should be a multiple of {_num(step)}"))
    hi = s.get("maximum")
    if isinstance(hi, int | float) and not isinstance(hi, bool):
        if s.get("exclusiveMaximum") is True and value >= hi:
            out.append(_invalid(path, value, f"should be less than {_num(hi)}"))
        elif value > hi:
            out.append(_invalid(path, value, f"should be less than or equal to {_num(hi)}"))
    lo = s.get("minimum")
    if isinstance(lo, int | float) and not isinstance(lo, bool):
        if s.get("exclusiveMinimum") is True and value <= lo:
            out.append(_invalid(path, value, f"should be greater than {_num(lo)}"))
        elif value < lo:
            out.append(_invalid(path, value, f"should be greater than or equal to {_num(lo)}"))


def _array(value: list[Any], s: Schema, path: str, out: list[Cause]) -> None:
    max_items = s.get("maxItems")
    if isinstance(max_items, int) and len(value) > max_items:
        out.append(_too_many(path, len(value), max_items))
    min_items = s.get("minItems")
    if isinstance(min_items, int) and len(value) < min_items:
        out.append(_invalid(path, value, f"should have at least {min_items} items"))
    items = _items(s)
    if items is not None:
        for i, v in enumerate(value):
            _validate(v, items, f"{path}[{i}]", out)


def _object(value: dict[str, Any], s: Schema, path: str, out: list[Cause]) -> None:
    max_props = s.get("maxProperties")
    if isinstance(max_props, int) and len(value) > max_props:
        out.append(_too_many(path, len(value), max_props))
    min_props = s.get("minProperties")
    if isinstance(min_props, int) and len(value) < min_props:
        out.append(_invalid(path, value, f"should have at least {min_props} properties"))
    if s.get(EMBEDDED) is True and path:
        for k in ("apiVersion", "kind"):
            if not value.get(k):
                out.append(_required(_child(path, k), "must not be empty"))
    for name in s.get("required") or ():
        if name not in value:
            out.append(_required(_child(path, str(name))))
    props = s.get("properties")
    props = props if isinstance(props, Mapping) else {}
    addl = s.get("additionalProperties")
    for k, v in value.items():
        sub = props.get(k)
        if sub is None and isinstance(addl, Mapping):
            sub = addl
        if isinstance(sub, Mapping):
            _validate(v, sub, _child(path, k), out)
