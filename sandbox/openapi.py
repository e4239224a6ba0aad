"""``/openapi/v2`` and ``/openapi/v3`` as the API server serves them, and strict field validation.

The built-in documents are the real server's (``openapi_data/``, captured from Kubernetes v1.36,
with the custom resources' groups removed); those of custom resources are generated from their
CRDs' schemas the way the API server generates them: the kind's schema is the CRD's
``openAPIV3Schema`` with ``metadata`` referring to ObjectMeta and an
``x-kubernetes-group-version-kind``, a ``<Kind>List`` beside it, and the resource's paths (whose
``fieldValidation`` query parameter tells kubectl to let the server validate). ``/openapi/v2`` is
also served as gnostic protobuf (``sandbox.gnostic``), the only form kubectl reads it in.

:func:`unknown_field_paths` walks an object against a document's schema for ``fieldValidation``
(``Strict``: 400, ``Warn``: a warning per field) and server-side apply; :func:`without_paths`
then drops those fields, as the API server's decoding does before it stores anything.
"""

from __future__ import annotations

import copy
import gzip
import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import orjson

from sandbox import gnostic
from sandbox.resources import ResourceType

DATA = Path(__file__).with_name("openapi_data")
_META = "io.k8s.apimachinery.pkg.apis.meta.v1"
_V3_REF = "#/components/schemas/"
_V2_REF = "#/definitions/"

# The schemas the API server puts beside a custom resource's own (from its v1.36 documents).
CRD_BASE_SCHEMAS = (
    "io.k8s.api.autoscaling.v1.Scale",
    "io.k8s.api.autoscaling.v1.ScaleSpec",
    "io.k8s.api.autoscaling.v1.ScaleStatus",
    *(
        f"{_META}.{n}"
        for n in (
            "DeleteOptions",
            "FieldsV1",
            "ListMeta",
            "ManagedFieldsEntry",
            "ObjectMeta",
            "OwnerReference",
            "Patch",
            "Preconditions",
            "ShardInfo",
            "Status",
            "StatusCause",
            "StatusDetails",
            "Time",
        )
    ),
)
_API_VERSION_DOC = (
    "APIVersion defines the versioned schema of this representation of an object. Servers should "
    "convert recognized schemas to the latest internal value, and may reject unrecognized values. "
    "More info: https://git.k8s.io/community/contributors/devel/sig-architecture/"
    "api-conventions.md#resources"
)
_KIND_DOC = (
    "Kind is a string value representing the REST resource this object represents. Servers may "
    "infer this from the endpoint the client submits requests to. Cannot be updated. In "
    "CamelCase. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/"
    "api-conventions.md#types-kinds"
)
_METADATA_DOC = (
    "Standard object's metadata. More info: https://git.k8s.io/community/contributors/devel/"
    "sig-architecture/api-conventions.md#metadata"
)
_LIST_METADATA_DOC = (
    "Standard list metadata. More info: https://git.k8s.io/community/contributors/devel/"
    "sig-architecture/api-conventions.md#types-kinds"
)


def builtin_group(group: str) -> bool:
    """Kubernetes' own API groups: the legacy group, dotless names and ``*.k8s.io``."""
    return "." not in group or group.endswith(".k8s.io")


def _load(name: str) -> Any:
    return orjson.loads(gzip.decompress((DATA / f"{name}.json.gz").read_bytes()))


def _gv_path(group: str, version: str) -> str:
    return f"api/{version}" if not group else f"apis/{group}/{version}"


@cache
def _builtin_v3_files() -> dict[str, str]:
    """``api/v1``, ``apis/apps/v1``, … → data file name."""
    out: dict[str, str] = {}
    for p in sorted(DATA.glob("v3-*.json.gz")):
        stem = p.name.removesuffix(".json.gz")
        if stem == "v3-root":
            continue
        out[stem.removeprefix("v3-").replace("_", "/")] = stem
    return out


@cache
def _builtin_v3(path: str) -> bytes:
    return orjson.dumps(_load(_builtin_v3_files()[path]))


@cache
def _builtin_schemas(path: str) -> dict[str, Any]:
    return dict(orjson.loads(_builtin_v3(path))["components"]["schemas"])


@cache
def _builtin_v2() -> dict[str, Any]:
    doc = dict(_load("v2"))
    doc["definitions"] = {
        k: v
        for k, v in doc["definitions"].items()
        if all(
            builtin_group(g.get("group", "")) for g in v.get("x-kubernetes-group-version-kind", [])
        )
    }
    doc["paths"] = {
        k: v
        for k, v in doc["paths"].items()
        if not k.startswith("/apis/") or builtin_group(k.split("/")[2])
    }
    return doc


@cache
def _base_schemas() -> dict[str, Any]:
    found: dict[str, Any] = {}
    for path in ("api/v1", "apis/apps/v1"):
        schemas = orjson.loads(_builtin_v3(path))["components"]["schemas"]
        for name in CRD_BASE_SCHEMAS:
            if name not in found and name in schemas:
                found[name] = schemas[name]
    # the API server's CRD documents carry DeleteOptions' kinds of every group it registers
    name = f"{_META}.DeleteOptions"
    gvks = orjson.loads((DATA / "crd-deleteoptions-gvks.json").read_bytes())
    if name in found:
        found[name] = {**found[name], "x-kubernetes-group-version-kind": gvks}
    return found


def _hash(body: bytes) -> str:
    return hashlib.sha512(body).hexdigest().upper()


def schema_name(group: str, version: str, kind: str) -> str:
    """``apps.kruise.io`` ``v1alpha1`` ``CloneSet`` → ``io.kruise.apps.v1alpha1.CloneSet``."""
    return ".".join([*reversed(group.split(".")), version, kind])


def _gvk(group: str, version: str, kind: str) -> dict[str, str]:
    return {"group": group, "kind": kind, "version": version}


def kind_schema(
    crd_schema: dict[str, Any] | None, group: str, version: str, kind: str, *, v2: bool = False
) -> dict[str, Any]:
    """The document schema of one custom resource kind, from its CRD version's schema."""
    ref = (_V2_REF if v2 else _V3_REF) + f"{_META}.ObjectMeta"
    s: dict[str, Any] = copy.deepcopy(crd_schema) if crd_schema else {"type": "object"}
    if v2:
        s = _to_v2(s)
    props: dict[str, Any] = {}
    if s.get("type", "object") == "object":
        props = s.setdefault("properties", {})
    for key, doc in (("apiVersion", _API_VERSION_DOC), ("kind", _KIND_DOC)):
        props.setdefault(key, {"type": "string"}).setdefault("description", doc)
    props["metadata"] = (
        {"description": _METADATA_DOC, "$ref": ref}
        if v2
        else {"description": _METADATA_DOC, "allOf": [{"$ref": ref}]}
    )
    s["x-kubernetes-group-version-kind"] = [_gvk(group, version, kind)]
    return s


def _list_schema(rt: ResourceType, version: str, *, v2: bool = False) -> dict[str, Any]:
    pre = _V2_REF if v2 else _V3_REF
    list_meta: dict[str, Any] = {"description": _LIST_METADATA_DOC}
    if v2:
        list_meta["$ref"] = pre + f"{_META}.ListMeta"
    else:
        list_meta["allOf"] = [{"$ref": pre + f"{_META}.ListMeta"}]
    return {
        "description": f"{rt.kind}List is a list of {rt.kind}",
        "type": "object",
        "required": ["items"],
        "properties": {
            "apiVersion": {"description": _API_VERSION_DOC, "type": "string"},
            "items": {
                "description": f"List of {rt.resource}. More info: https://git.k8s.io/community/"
                "contributors/devel/sig-architecture/api-conventions.md",
                "type": "array",
                "items": {"$ref": pre + schema_name(rt.group, version, rt.kind)},
            },
            "kind": {"description": _KIND_DOC, "type": "string"},
            "metadata": list_meta,
        },
        "x-kubernetes-group-version-kind": [_gvk(rt.group, version, rt.list_kind)],
    }


_V2_DROPPED = ("nullable", "anyOf", "oneOf", "allOf", "not", "x-kubernetes-validations")


def _to_v2(s: Any) -> Any:
    """Roughly what the API server's v2 conversion leaves of a structural schema."""
    if isinstance(s, list):
        return [_to_v2(x) for x in s]
    if not isinstance(s, dict):
        return s
    out = {k: _to_v2(v) for k, v in s.items() if k not in _V2_DROPPED}
    if out.get("x-kubernetes-int-or-string") or out.get("x-kubernetes-preserve-unknown-fields"):
        out.pop("type", None)
    return out


@cache
def _parameters() -> dict[str, dict[str, Any]]:
    """The API server's parameter objects by name (from the apps/v1 document's paths)."""
    out: dict[str, dict[str, Any]] = {}
    doc = orjson.loads(_builtin_v3("apis/apps/v1"))
    for item in doc["paths"].values():
        for key, value in item.items():
            params = value if key == "parameters" else value.get("parameters", [])
            for prm in params:
                out.setdefault(prm["name"], prm)
                out.setdefault(f"{key}:{prm['name']}", prm)
    return out


def _params(*names: str, kind: str = "", verb: str = "") -> list[dict[str, Any]]:
    lib = _parameters()
    out = []
    for n in names:
        prm = dict(lib.get(f"{verb}:{n}") or lib[n])
        if n == "name":
            prm["description"] = f"name of the {kind}"
        out.append(prm)
    return out


_LIST = (
    "allowWatchBookmarks",
    "continue",
    "fieldSelector",
    "labelSelector",
    "limit",
    "resourceVersion",
    "resourceVersionMatch",
    "sendInitialEvents",
    "shardSelector",
    "timeoutSeconds",
    "watch",
)
_WRITE = ("dryRun", "fieldManager", "fieldValidation")
_PATCH_TYPES = (
    "application/apply-patch+yaml",
    "application/json-patch+json",
    "application/merge-patch+json",
)


def _op_id(verb: str, rt: ResourceType, version: str, *, scope: str | None = None) -> str:
    group = "".join(p[:1].upper() + p[1:] for p in re.split(r"[.\-]", rt.group))
    if scope is None:
        scope = "Namespaced" if rt.namespaced else ""
    return f"{verb}{group}{version[:1].upper()}{version[1:]}{scope}{rt.kind}"


def _content(
    ref: dict[str, Any], types: Iterable[str] = ("application/json", "application/yaml")
) -> dict[str, Any]:
    return {t: {"schema": ref} for t in types}


def _paths(rt: ResourceType, version: str) -> dict[str, Any]:
    """The paths the API server documents for one custom resource version."""
    ref = {"$ref": _V3_REF + schema_name(rt.group, version, rt.kind)}
    list_ref = {"$ref": _V3_REF + schema_name(rt.group, version, rt.list_kind)}
    status_ref = {"$ref": _V3_REF + f"{_META}.Status"}
    scale_ref = {"$ref": _V3_REF + "io.k8s.api.autoscaling.v1.Scale"}
    gvk = _gvk(rt.group, version, rt.kind)
    words = rt.group.split(".")
    tag = words[0] + "".join(w[:1].upper() + w[1:] for w in words[1:]) + f"_{version}"
    unauthorized = {"401": {"description": "Unauthorized"}}

    def answers(obj: dict[str, Any], *codes: str) -> dict[str, Any]:
        text = {"200": "OK", "201": "Created", "202": "Accepted"}
        out: dict[str, Any] = {c: {"description": text[c], "content": _content(obj)} for c in codes}
        return {**out, **unauthorized}

    def op(
        verb: str,
        action: str,
        what: str,
        params: tuple[str, ...],
        obj: dict[str, Any],
        codes: tuple[str, ...],
        *,
        body: str = "",
        op_id: str = "",
    ) -> dict[str, Any]:
        out: dict[str, Any] = {
            "tags": [tag],
            "description": what,
            "operationId": op_id or _op_id(verb, rt, version),
        }
        if params:
            out["parameters"] = _params(*params, verb=verb if verb == "patch" else "")
        if body == "json":
            out["requestBody"] = {"content": _content(obj), "required": True}
        elif body == "patch":
            patch = {"$ref": _V3_REF + f"{_META}.Patch"}
            out["requestBody"] = {"content": _content(patch, _PATCH_TYPES), "required": True}
        elif body == "delete":
            opts = {"$ref": _V3_REF + f"{_META}.DeleteOptions"}
            out["requestBody"] = {"content": _content(opts)}
        out["responses"] = answers(obj, *codes)
        out["x-kubernetes-action"] = action
        out["x-kubernetes-group-version-kind"] = gvk
        return out

    base = f"/apis/{rt.group}/{version}"
    scope = ("namespace",) if rt.namespaced else ()
    coll = (
        f"{base}/namespaces/{{namespace}}/{rt.resource}"
        if rt.namespaced
        else f"{base}/{rt.resource}"
    )
    k = rt.kind
    paths: dict[str, Any] = {
        coll: {
            "get": op("list", "list", f"list objects of kind {k}", _LIST, list_ref, ("200",)),
            "post": op(
                "create", "post", f"create a {k}", _WRITE, ref, ("200", "201", "202"), body="json"
            ),
            "delete": op(
                "delete",
                "deletecollection",
                f"delete collection of {k}",
                _LIST,
                status_ref,
                ("200",),
                op_id=_op_id(
                    "delete",
                    rt,
                    version,
                    scope="Collection" + ("Namespaced" if rt.namespaced else ""),
                ),
            ),
            "parameters": _params(*scope, "pretty"),
        },
        f"{coll}/{{name}}": {
            "get": op(
                "read", "get", f"read the specified {k}", ("resourceVersion",), ref, ("200",)
            ),
            "put": op(
                "replace",
                "put",
                f"replace the specified {k}",
                _WRITE,
                ref,
                ("200", "201"),
                body="json",
            ),
            "delete": op(
                "delete",
                "delete",
                f"delete a {k}",
                (
                    "dryRun",
                    "gracePeriodSeconds",
                    "ignoreStoreReadErrorWithClusterBreakingPotential",
                    "orphanDependents",
                    "propagationPolicy",
                ),
                status_ref,
                ("200", "202"),
                body="delete",
            ),
            "patch": op(
                "patch",
                "patch",
                f"partially update the specified {k}",
                (*_WRITE, "force"),
                ref,
                ("200",),
                body="patch",
            ),
            "parameters": _params("name", *scope, "pretty", kind=k),
        },
    }
    subs = (["status"] if rt.status else []) + (["scale"] if rt.scale else [])
    for sub in subs:
        obj = scale_ref if sub == "scale" else ref
        s = sub.capitalize()
        paths[f"{coll}/{{name}}/{sub}"] = {
            "get": op(
                "read",
                "get",
                f"read {sub} of the specified {k}",
                ("resourceVersion",),
                obj,
                ("200",),
                op_id=_op_id("read", rt, version) + s,
            ),
            "put": op(
                "replace",
                "put",
                f"replace {sub} of the specified {k}",
                _WRITE,
                obj,
                ("200", "201"),
                body="json",
                op_id=_op_id("replace", rt, version) + s,
            ),
            "patch": op(
                "patch",
                "patch",
                f"partially update {sub} of the specified {k}",
                (*_WRITE, "force"),
                obj,
                ("200",),
                body="patch",
                op_id=_op_id("patch", rt, version) + s,
            ),
            "parameters": _params("name", *scope, "pretty", kind=k),
        }
    if rt.namespaced:
        paths[f"{base}/{rt.resource}"] = {
            "get": op(
                "list",
                "list",
                f"list objects of kind {k}",
                (),
                list_ref,
                ("200",),
                op_id=_op_id("list", rt, version, scope="") + "ForAllNamespaces",
            ),
            "parameters": _params(*sorted((*_LIST, "pretty"))),
        }
    return dict(sorted(paths.items()))


SchemaOf = Any  # Callable[[ResourceType, str], dict | None]


def crd_v3(
    types: Iterable[ResourceType], group: str, version: str, schema_of: SchemaOf
) -> dict[str, Any]:
    """The v3 document of one custom resource group-version."""
    served = [rt for rt in types if rt.group == group and version in rt.versions]
    scaled = any(rt.scale for rt in served)
    schemas: dict[str, Any] = {
        k: v for k, v in _base_schemas().items() if scaled or ".autoscaling." not in k
    }
    paths: dict[str, Any] = {}
    for rt in served:
        name = schema_name(group, version, rt.kind)
        schemas[name] = kind_schema(schema_of(rt, version), group, version, rt.kind)
        schemas[name + "List"] = _list_schema(rt, version)
        paths.update(_paths(rt, version))
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes CRD Swagger", "version": "v0.1.0"},
        "paths": dict(sorted(paths.items())),
        "components": {"schemas": dict(sorted(schemas.items()))},
    }


class OpenAPI:
    """The documents of one registry (built-ins from data, custom resources generated)."""

    def __init__(self, registry: Iterable[ResourceType], schema_of: SchemaOf) -> None:
        self._registry = registry
        self._schema_of = schema_of
        self._v2_protobuf: tuple[bytes, bytes] | None = None  # (JSON, its protobuf)

    def _custom(self) -> list[ResourceType]:
        return [rt for rt in self._registry if rt.custom]

    def _custom_gvs(self) -> list[tuple[str, str]]:
        gvs: list[tuple[str, str]] = []
        for rt in self._custom():
            for v in rt.versions:
                if (rt.group, v) not in gvs:
                    gvs.append((rt.group, v))
        return sorted(gvs)

    def _served_builtin_paths(self) -> list[str]:
        served = {
            _gv_path(rt.group, v) for rt in self._registry if not rt.custom for v in rt.versions
        }
        return [p for p in _builtin_v3_files() if p in served]

    def v3_document(self, path: str) -> bytes | None:
        """The document of ``api/v1`` or ``apis/<group>/<version>``; None when not served."""
        if path in self._served_builtin_paths():
            return _builtin_v3(path)
        for group, version in self._custom_gvs():
            if path == _gv_path(group, version):
                return orjson.dumps(crd_v3(self._custom(), group, version, self._schema_of))
        return None

    def v3_root(self) -> dict[str, Any]:
        paths: dict[str, Any] = {}
        names = self._served_builtin_paths() + [_gv_path(g, v) for g, v in self._custom_gvs()]
        for name in sorted(names):
            body = self.v3_document(name)
            assert body is not None
            paths[name] = {"serverRelativeURL": f"/openapi/v3/{name}?hash={_hash(body)}"}
        return {"paths": paths}

    def v3_schemas(self, path: str) -> dict[str, Any]:
        if path in self._served_builtin_paths():
            return _builtin_schemas(path)
        body = self.v3_document(path)
        return dict(orjson.loads(body)["components"]["schemas"]) if body else {}

    def v2(self) -> bytes:
        base = _builtin_v2()
        defs = dict(base["definitions"])
        for rt in self._custom():
            for v in rt.versions:
                name = schema_name(rt.group, v, rt.kind)
                defs[name] = kind_schema(self._schema_of(rt, v), rt.group, v, rt.kind, v2=True)
                defs[name + "List"] = _list_schema(rt, v, v2=True)
        return orjson.dumps({**base, "definitions": dict(sorted(defs.items()))})

    def v2_protobuf(self) -> bytes:
        """The v2 document as gnostic protobuf (``sandbox.gnostic``), encoded again only when
        the JSON document changed (a CRD came or went)."""
        doc = self.v2()
        if self._v2_protobuf is None or self._v2_protobuf[0] != doc:
            self._v2_protobuf = (doc, gnostic.encode_document(orjson.loads(doc)))
        return self._v2_protobuf[1]


# ---- strict field validation ------------------------------------------------------------------


def _resolve(s: Any, schemas: dict[str, Any]) -> dict[str, Any]:
    """Follow ``$ref`` and single-element ``allOf`` wrappers."""
    for _ in range(32):
        if not isinstance(s, dict):
            return {}
        ref = s.get("$ref")
        if isinstance(ref, str):
            s = schemas.get(ref.removeprefix(_V3_REF), {})
            continue
        all_of = s.get("allOf")
        if isinstance(all_of, list) and len(all_of) == 1 and "properties" not in s:
            s = all_of[0]
            continue
        return s
    return {}


@dataclass(frozen=True, slots=True)
class Item:
    """One element of a list in a field path: its index, and for a list of
    ``x-kubernetes-list-type: map`` the values of its ``x-kubernetes-list-map-keys``."""

    index: int
    keys: tuple[tuple[str, Any], ...] = ()


FieldPath = tuple["str | Item", ...]


def unknown_field_paths(
    obj: Any, schema: Any, schemas: dict[str, Any], path: FieldPath = ()
) -> list[FieldPath]:
    """The paths of ``obj``'s fields that ``schema`` does not declare, in document order.

    Pure. :func:`strict_path` spells a path as the strict decoder names it
    (``spec.containers[0].imagePullPolicyy``), :func:`apply_path` as server-side apply does
    (``.spec.containers[name="app"].imagePullPolicyy``).
    """
    s = _resolve(schema, schemas)
    out: list[FieldPath] = []
    if isinstance(obj, dict):
        if s.get("x-kubernetes-preserve-unknown-fields") and not s.get("properties"):
            return out
        props = s.get("properties")
        extra = s.get("additionalProperties")
        if props is None and extra is None:
            return out  # an untyped object (for example a RawExtension)
        embedded = bool(s.get("x-kubernetes-embedded-resource"))
        for k, v in obj.items():
            sub = (*path, k)
            if props is not None and k in props:
                out += unknown_field_paths(v, props[k], schemas, sub)
            elif isinstance(extra, dict):
                out += unknown_field_paths(v, extra, schemas, sub)
            elif embedded and k in ("apiVersion", "kind", "metadata"):
                continue
            elif not s.get("x-kubernetes-preserve-unknown-fields") and extra is not True:
                out.append(sub)
    elif isinstance(obj, list):
        items = s.get("items")
        map_keys = (
            s.get("x-kubernetes-list-map-keys") or []
            if s.get("x-kubernetes-list-type") == "map"
            else []
        )
        if items is not None:
            for i, v in enumerate(obj):
                keys = tuple((k, v[k]) for k in sorted(map_keys) if isinstance(v, dict) and k in v)
                out += unknown_field_paths(v, items, schemas, (*path, Item(i, keys)))
    return out


def strict_path(path: FieldPath) -> str:
    """``spec.containers[0].imagePullPolicyy``: the strict decoder's spelling."""
    out = ""
    for seg in path:
        if isinstance(seg, Item):
            out += f"[{seg.index}]"
        else:
            out += f".{seg}" if out else seg
    return out


def apply_path(path: FieldPath) -> str:
    """``.spec.containers[name="app"].imagePullPolicyy``: server-side apply's spelling
    (elements of map lists named by their keys, other elements by index)."""
    out = ""
    for seg in path:
        if isinstance(seg, Item) and seg.keys:
            out += "[" + ",".join(f"{k}={orjson.dumps(v).decode()}" for k, v in seg.keys) + "]"
        elif isinstance(seg, Item):
            out += f"[{seg.index}]"
        else:
            out += f".{seg}"
    return out


def unknown_fields(obj: Any, schema: Any, schemas: dict[str, Any]) -> list[str]:
    """The strict decoder's names of ``obj``'s undeclared fields (see
    :func:`unknown_field_paths`)."""
    return [strict_path(p) for p in unknown_field_paths(obj, schema, schemas)]


def without_paths(obj: Any, paths: Iterable[FieldPath]) -> Any:
    """``obj`` without the fields at ``paths`` (as :func:`unknown_field_paths` names them).

    Pure; ``obj`` is left untouched and only the objects and lists on the way to a dropped
    field are copied, so ``obj`` itself comes back when ``paths`` is empty. A list element is
    found by its index. This is how the API server's decoding loses the fields a kind does not
    declare (a built-in's JSON decoder skips them; a custom resource's structural schema prunes
    them)::

        without_paths({"spec": {"a": 1, "foo": 2}}, [("spec", "foo")]) == {"spec": {"a": 1}}
    """
    trie: dict[Any, Any] = {}
    for path in paths:
        node = trie
        for i, seg in enumerate(path):
            key = seg.index if isinstance(seg, Item) else seg
            if i == len(path) - 1:
                node[key] = None  # drop here
            else:
                child = node.get(key, {})
                if child is None:
                    break  # an enclosing field is dropped already
                node = node.setdefault(key, child)
    return _without(obj, trie) if trie else obj


def _without(value: Any, trie: dict[Any, Any]) -> Any:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            if k not in trie:
                out[k] = v
            elif trie[k] is not None:
                out[k] = _without(v, trie[k])
        return out
    if isinstance(value, list):
        return [_without(v, trie[i]) if trie.get(i) else v for i, v in enumerate(value)]
    return value


def prune_unknown(obj: Any, schema: Any, schemas: dict[str, Any]) -> Any:
    """``obj`` without the fields ``schema`` does not declare (see :func:`without_paths`)."""
    return without_paths(obj, unknown_field_paths(obj, schema, schemas))


def find_kind_schema(schemas: dict[str, Any], group: str, version: str, kind: str) -> Any:
    want = _gvk(group, version, kind)
    for s in schemas.values():
        if want in (s.get("x-kubernetes-group-version-kind") or []):
            return s
    return None
