"""PATCH bodies applied to stored objects: JSON merge, JSON patch and strategic merge.

Pure; no I/O. ``apply_patch(content_type=..., original=..., patch=..., strategic_ok=...)``
returns the patched object or raises ``ApiError`` shaped like kube-apiserver's (400 for a
malformed body, 415 for an unsupported content type, 422 for a failed ``test`` op).

Strategic merge knows the merge keys of the built-in types the project touches: lists of
containers, volumes, env and similar merge by ``name``; container ports by ``containerPort``;
conditions by ``type``; ownerReferences by ``uid``; readinessGates by ``conditionType``;
finalizers merge as a set. Other lists are replaced. ``$patch: delete`` / ``replace`` and
``$deleteFromPrimitiveList`` are honoured; ``$setElementOrder`` and ``$retainKeys`` are
accepted and ignored. Merged keyed lists put the patch's elements first, then the rest.
"""

from __future__ import annotations

import copy
from typing import Any

import jsonpatch  # type: ignore[import-untyped,unused-ignore]
import orjson

from sandbox import errors
from sandbox.errors import ApiError

MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"

_MERGE_KEYS: dict[str, str] = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "volumes": "name",
    "env": "name",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "imagePullSecrets": "name",
    "ports": "containerPort",
    "conditions": "type",
    "ownerReferences": "uid",
    "readinessGates": "conditionType",
    "hostAliases": "ip",
    "topologySpreadConstraints": "topologyKey",
    "resourceClaims": "name",
}
_SET_LISTS = frozenset({"finalizers"})


def unsupported_media_type(*, custom: bool) -> ApiError:
    """The 415 body: the long accepted-types form for custom resources and text/plain."""
    if custom:
        return ApiError.status(
            code=415,
            reason="UnsupportedMediaType",
            message="the body of the request was in an unknown format - accepted media types "
            "include: application/json-patch+json, application/merge-patch+json, "
            "application/apply-patch+yaml",
        )
    return ApiError.status(
        code=415, reason="UnsupportedMediaType", message="415: Unsupported Media Type", details={}
    )


def decode_patch(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise errors.bad_request("error decoding patch: unexpected end of JSON input") from e


def merge_patch(original: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch; ``original`` is not modified."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result: dict[str, Any] = dict(original) if isinstance(original, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def json_patch(original: dict[str, Any], ops: Any) -> dict[str, Any]:
    """RFC 6902 JSON patch; a failed ``test`` or a bad path is 422 as the apiserver says."""
    if not isinstance(ops, list):
        raise errors.bad_request(
            "json: cannot unmarshal object into Go value of type jsonpatch.Patch"
        )
    try:
        result = jsonpatch.JsonPatch(ops).apply(original)
    except jsonpatch.JsonPatchTestFailed as e:
        raise _generic_invalid() from e
    except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as e:
        raise ApiError.status(code=422, reason="Invalid", message=str(e), details={}) from e
    except (KeyError, IndexError, TypeError) as e:
        raise _generic_invalid() from e
    if not isinstance(result, dict):
        raise _generic_invalid()
    return result


def _generic_invalid() -> ApiError:
    return ApiError.status(
        code=422,
        reason="Invalid",
        message="the server rejected our request due to an error in our request",
        details={},
    )


def strategic_merge(original: Any, patch: Any) -> Any:
    """Strategic merge patch for the built-in types (see module docstring)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if patch.get("$patch") == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    if patch.get("$patch") == "delete":
        return None
    result: dict[str, Any] = dict(original) if isinstance(original, dict) else {}
    for key, value in patch.items():
        if key.startswith("$setElementOrder/") or key in ("$retainKeys", "$patch"):
            continue
        if key.startswith("$deleteFromPrimitiveList/"):
            field = key.split("/", 1)[1]
            drop = set(value or [])
            result[field] = [v for v in result.get(field) or [] if v not in drop]
            continue
        if value is None:
            result.pop(key, None)
        elif isinstance(value, list):
            result[key] = _merge_list(key, result.get(key), value)
        elif isinstance(value, dict):
            merged = strategic_merge(result.get(key), value)
            if merged is None:
                result.pop(key, None)
            else:
                result[key] = merged
        else:
            result[key] = value
    return result


def _merge_list(field: str, original: Any, patch: list[Any]) -> list[Any]:
    orig = original if isinstance(original, list) else []
    if field in _SET_LISTS:
        union = list(orig)
        for v in patch:
            if v not in union:
                union.append(v)
        return union
    key = _MERGE_KEYS.get(field)
    if key is None or not all(isinstance(v, dict) for v in patch):
        if any(isinstance(v, dict) and v.get("$patch") == "replace" for v in patch):
            return [v for v in patch if not (isinstance(v, dict) and "$patch" in v)]
        return copy.deepcopy(patch)
    if any(v.get("$patch") == "replace" for v in patch):
        return [copy.deepcopy(v) for v in patch if "$patch" not in v]
    by_key = {o.get(key): o for o in orig if isinstance(o, dict)}
    out: list[Any] = []
    touched: set[Any] = set()
    for item in patch:
        k = item.get(key)
        touched.add(k)
        if item.get("$patch") == "delete":
            continue
        merged = strategic_merge(by_key.get(k), item)
        if merged is not None:
            out.append(merged)
    for o in orig:
        if not (isinstance(o, dict) and o.get(key) in touched):
            out.append(o)
    return out


def apply_patch(
    *,
    content_type: str,
    original: dict[str, Any],
    raw: bytes,
    strategic_ok: bool,
) -> dict[str, Any]:
    """Apply a PATCH request body of ``content_type`` to ``original``."""
    ctype = content_type.split(";", 1)[0].strip().lower()
    if ctype == JSON_PATCH:
        return json_patch(original, decode_patch(raw))
    if ctype == MERGE_PATCH:
        out = merge_patch(original, _require_object(decode_patch(raw)))
    elif ctype == STRATEGIC_PATCH:
        if not strategic_ok:
            raise unsupported_media_type(custom=True)
        out = strategic_merge(original, _require_object(decode_patch(raw)))
    elif ctype == APPLY_PATCH:
        out = merge_patch(original, _require_object(decode_apply_body(raw)))
    else:
        raise unsupported_media_type(custom=ctype == "text/plain")
    if not isinstance(out, dict):
        raise _generic_invalid()
    return out


def decode_apply_body(raw: bytes) -> Any:
    """An apply body is YAML (JSON is valid YAML)."""
    import yaml

    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError as e:
        raise errors.bad_request(f"error decoding YAML: {e}") from e


def _require_object(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise errors.bad_request("error decoding patch: patch must be a JSON object")
    return value
