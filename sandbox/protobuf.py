"""Kubernetes protobuf request bodies (``application/vnd.kubernetes.protobuf``), decoded to JSON.

kubectl's ``create`` subcommands send their objects as the magic ``k8s\\x00`` followed by a
``runtime.Unknown`` message (typeMeta {apiVersion, kind}, raw, contentEncoding, contentType), where
``raw`` is the object's own protobuf encoding. The field numbers below are those of
``k8s.io/api``'s and ``k8s.io/apimachinery``'s ``generated.proto``; only the messages kubectl's
``create`` subcommands build are described. A field number the tables do not know makes the whole
body undecodable (:class:`Undecodable`), so nothing is dropped silently: the server answers 415.
"""

from __future__ import annotations

import base64
import datetime as dt
from dataclasses import dataclass
from typing import Any

import orjson

MEDIA_TYPE = "application/vnd.kubernetes.protobuf"
MAGIC = b"k8s\x00"


class Undecodable(Exception):
    """The body is not a protobuf object this module can decode."""

    def __init__(self, kind: str, why: str) -> None:
        super().__init__(why)
        self.kind = kind
        self.why = why


# A field: (json name, type, flags). Types: "str", "int", "bool", "bytes" (base64), "time",
# "ios" (IntOrString), "qty" (Quantity), "raw" (FieldsV1: embedded JSON), "map:<valtype>",
# or a message schema (dict). Flags: "rep" (repeated), "keep" (a Go pointer: kept when zero).
Field = tuple[str, Any, str]
Schema = dict[int, Field]


def _f(name: str, typ: Any, flags: str = "") -> Field:
    return (name, typ, flags)


_TYPE_META: Schema = {1: _f("apiVersion", "str"), 2: _f("kind", "str")}
_UNKNOWN: Schema = {
    1: _f("typeMeta", _TYPE_META),
    2: _f("raw", "rawbytes"),
    3: _f("contentEncoding", "str"),
    4: _f("contentType", "str"),
}

_OWNER_REF: Schema = {
    1: _f("kind", "str"),
    3: _f("name", "str"),
    4: _f("uid", "str"),
    5: _f("apiVersion", "str"),
    6: _f("controller", "bool", "keep"),
    7: _f("blockOwnerDeletion", "bool", "keep"),
}
_MANAGED_FIELDS: Schema = {
    1: _f("manager", "str"),
    2: _f("operation", "str"),
    3: _f("apiVersion", "str"),
    4: _f("time", "time"),
    6: _f("fieldsType", "str"),
    7: _f("fieldsV1", "raw"),
    8: _f("subresource", "str"),
}
_OBJECT_META: Schema = {
    1: _f("name", "str"),
    2: _f("generateName", "str"),
    3: _f("namespace", "str"),
    4: _f("selfLink", "str"),
    5: _f("uid", "str"),
    6: _f("resourceVersion", "str"),
    7: _f("generation", "int"),
    8: _f("creationTimestamp", "time"),
    9: _f("deletionTimestamp", "time"),
    10: _f("deletionGracePeriodSeconds", "int", "keep"),
    11: _f("labels", "map:str"),
    12: _f("annotations", "map:str"),
    13: _f("ownerReferences", _OWNER_REF, "rep"),
    14: _f("finalizers", "str", "rep"),
    17: _f("managedFields", _MANAGED_FIELDS, "rep"),
}
_LABEL_SELECTOR: Schema = {
    1: _f("matchLabels", "map:str"),
    2: _f(
        "matchExpressions",
        {1: _f("key", "str"), 2: _f("operator", "str"), 3: _f("values", "str", "rep")},
        "rep",
    ),
}
_LOCAL_REF: Schema = {1: _f("name", "str")}
_OBJECT_REF: Schema = {
    1: _f("kind", "str"),
    2: _f("namespace", "str"),
    3: _f("name", "str"),
    4: _f("uid", "str"),
    5: _f("apiVersion", "str"),
    6: _f("resourceVersion", "str"),
    7: _f("fieldPath", "str"),
}
# Status of a created object: the server resets it; its fields are read and dropped.
_IGNORED: Schema = {}

_CONTAINER_PORT: Schema = {
    1: _f("name", "str"),
    2: _f("hostPort", "int"),
    3: _f("containerPort", "int"),
    4: _f("protocol", "str"),
    5: _f("hostIP", "str"),
}
_KEY_SELECTOR: Schema = {
    1: _f("localObjectReference", _LOCAL_REF, "inline"),
    2: _f("key", "str"),
    3: _f("optional", "bool", "keep"),
}
_ENV_VAR: Schema = {
    1: _f("name", "str"),
    2: _f("value", "str"),
    3: _f(
        "valueFrom",
        {
            1: _f("fieldRef", {1: _f("apiVersion", "str"), 2: _f("fieldPath", "str")}),
            3: _f("configMapKeyRef", _KEY_SELECTOR),
            4: _f("secretKeyRef", _KEY_SELECTOR),
        },
    ),
}
_RESOURCES: Schema = {1: _f("limits", "map:qty"), 2: _f("requests", "map:qty")}
_CONTAINER: Schema = {
    1: _f("name", "str"),
    2: _f("image", "str"),
    3: _f("command", "str", "rep"),
    4: _f("args", "str", "rep"),
    5: _f("workingDir", "str"),
    6: _f("ports", _CONTAINER_PORT, "rep"),
    7: _f("env", _ENV_VAR, "rep"),
    8: _f("resources", _RESOURCES),
    13: _f("terminationMessagePath", "str"),
    14: _f("imagePullPolicy", "str"),
    16: _f("stdin", "bool"),
    17: _f("stdinOnce", "bool"),
    18: _f("tty", "bool"),
    20: _f("terminationMessagePolicy", "str"),
}
_POD_SPEC: Schema = {
    2: _f("containers", _CONTAINER, "rep"),
    3: _f("restartPolicy", "str"),
    4: _f("terminationGracePeriodSeconds", "int", "keep"),
    5: _f("activeDeadlineSeconds", "int", "keep"),
    6: _f("dnsPolicy", "str"),
    7: _f("nodeSelector", "map:str"),
    8: _f("serviceAccountName", "str"),
    9: _f("serviceAccount", "str"),
    10: _f("nodeName", "str"),
    11: _f("hostNetwork", "bool"),
    12: _f("hostPID", "bool"),
    13: _f("hostIPC", "bool"),
    15: _f("imagePullSecrets", _LOCAL_REF, "rep"),
    16: _f("hostname", "str"),
    17: _f("subdomain", "str"),
    19: _f("schedulerName", "str"),
    20: _f("initContainers", _CONTAINER, "rep"),
    21: _f("automountServiceAccountToken", "bool", "keep"),
    24: _f("priorityClassName", "str"),
    25: _f("priority", "int", "keep"),
}
_POD_TEMPLATE: Schema = {1: _f("metadata", _OBJECT_META), 2: _f("spec", _POD_SPEC)}

_NAMESPACE: Schema = {
    1: _f("metadata", _OBJECT_META),
    2: _f("spec", {1: _f("finalizers", "str", "rep")}),
    3: _f("status", _IGNORED),
}
_CONFIG_MAP: Schema = {
    1: _f("metadata", _OBJECT_META),
    2: _f("data", "map:str"),
    3: _f("binaryData", "map:bytes"),
    4: _f("immutable", "bool", "keep"),
}
_SECRET: Schema = {
    1: _f("metadata", _OBJECT_META),
    2: _f("data", "map:bytes"),
    3: _f("type", "str"),
    4: _f("stringData", "map:str"),
    5: _f("immutable", "bool", "keep"),
}
_SERVICE_ACCOUNT: Schema = {
    1: _f("metadata", _OBJECT_META),
    2: _f("secrets", _OBJECT_REF, "rep"),
    3: _f("imagePullSecrets", _LOCAL_REF, "rep"),
    4: _f("automountServiceAccountToken", "bool", "keep"),
}
_SERVICE_PORT: Schema = {
    1: _f("name", "str"),
    2: _f("protocol", "str"),
    3: _f("port", "int"),
    4: _f("targetPort", "ios"),
    5: _f("nodePort", "int"),
    6: _f("appProtocol", "str"),
}
_SERVICE: Schema = {
    1: _f("metadata", _OBJECT_META),
    2: _f(
        "spec",
        {
            1: _f("ports", _SERVICE_PORT, "rep"),
            2: _f("selector", "map:str"),
            3: _f("clusterIP", "str"),
            4: _f("type", "str"),
            5: _f("externalIPs", "str", "rep"),
            7: _f("sessionAffinity", "str"),
            8: _f("loadBalancerIP", "str"),
            9: _f("loadBalancerSourceRanges", "str", "rep"),
            10: _f("externalName", "str"),
            11: _f("externalTrafficPolicy", "str"),
            12: _f("healthCheckNodePort", "int"),
            13: _f("publishNotReadyAddresses", "bool"),
            17: _f("ipFamilyPolicy", "str"),
            18: _f("clusterIPs", "str", "rep"),
            19: _f("ipFamilies", "str", "rep"),
            20: _f("allocateLoadBalancerNodePorts", "bool", "keep"),
            21: _f("loadBalancerClass", "str"),
            22: _f("internalTrafficPolicy", "str"),
        },
    ),
    3: _f("status", _IGNORED),
}
_INT_OR_STRING_RU: Schema = {1: _f("maxUnavailable", "ios"), 2: _f("maxSurge", "ios")}
_DEPLOYMENT: Schema = {
    1: _f("metadata", _OBJECT_META),
    2: _f(
        "spec",
        {
            1: _f("replicas", "int", "keep"),
            2: _f("selector", _LABEL_SELECTOR),
            3: _f("template", _POD_TEMPLATE),
            4: _f("strategy", {1: _f("type", "str"), 2: _f("rollingUpdate", _INT_OR_STRING_RU)}),
            5: _f("minReadySeconds", "int"),
            6: _f("revisionHistoryLimit", "int", "keep"),
            7: _f("paused", "bool"),
            9: _f("progressDeadlineSeconds", "int", "keep"),
        },
    ),
    3: _f("status", _IGNORED),
}
_JOB: Schema = {
    1: _f("metadata", _OBJECT_META),
    2: _f(
        "spec",
        {
            1: _f("parallelism", "int", "keep"),
            2: _f("completions", "int", "keep"),
            3: _f("activeDeadlineSeconds", "int", "keep"),
            4: _f("selector", _LABEL_SELECTOR),
            5: _f("manualSelector", "bool", "keep"),
            6: _f("template", _POD_TEMPLATE),
            7: _f("backoffLimit", "int", "keep"),
            8: _f("ttlSecondsAfterFinished", "int", "keep"),
            9: _f("completionMode", "str"),
            10: _f("suspend", "bool", "keep"),
        },
    ),
    3: _f("status", _IGNORED),
}
_PDB: Schema = {
    1: _f("metadata", _OBJECT_META),
    2: _f(
        "spec",
        {
            1: _f("minAvailable", "ios"),
            2: _f("selector", _LABEL_SELECTOR),
            3: _f("maxUnavailable", "ios"),
            4: _f("unhealthyPodEvictionPolicy", "str"),
        },
    ),
    3: _f("status", _IGNORED),
}
_POLICY_RULE: Schema = {
    1: _f("verbs", "str", "rep"),
    2: _f("apiGroups", "str", "rep"),
    3: _f("resources", "str", "rep"),
    4: _f("resourceNames", "str", "rep"),
    5: _f("nonResourceURLs", "str", "rep"),
}
_ROLE: Schema = {1: _f("metadata", _OBJECT_META), 2: _f("rules", _POLICY_RULE, "rep")}
_CLUSTER_ROLE: Schema = {
    **_ROLE,
    3: _f("aggregationRule", {1: _f("clusterRoleSelectors", _LABEL_SELECTOR, "rep")}),
}
_ROLE_BINDING: Schema = {
    1: _f("metadata", _OBJECT_META),
    2: _f(
        "subjects",
        {
            1: _f("kind", "str"),
            2: _f("apiGroup", "str"),
            3: _f("name", "str"),
            4: _f("namespace", "str"),
        },
        "rep",
    ),
    3: _f("roleRef", {1: _f("apiGroup", "str"), 2: _f("kind", "str"), 3: _f("name", "str")}),
}
_TOKEN_REQUEST: Schema = {
    1: _f("metadata", _OBJECT_META),
    2: _f(
        "spec",
        {
            1: _f("audiences", "str", "rep"),
            4: _f("expirationSeconds", "int", "keep"),
            3: _f(
                "boundObjectRef",
                {
                    1: _f("kind", "str"),
                    2: _f("apiVersion", "str"),
                    3: _f("name", "str"),
                    4: _f("uid", "str"),
                },
            ),
        },
    ),
    3: _f("status", _IGNORED),
}

#: (apiVersion, kind) → the object's schema.
KINDS: dict[tuple[str, str], Schema] = {
    ("v1", "Namespace"): _NAMESPACE,
    ("v1", "ConfigMap"): _CONFIG_MAP,
    ("v1", "Secret"): _SECRET,
    ("v1", "Service"): _SERVICE,
    ("v1", "ServiceAccount"): _SERVICE_ACCOUNT,
    ("apps/v1", "Deployment"): _DEPLOYMENT,
    ("batch/v1", "Job"): _JOB,
    ("policy/v1", "PodDisruptionBudget"): _PDB,
    ("rbac.authorization.k8s.io/v1", "Role"): _ROLE,
    ("rbac.authorization.k8s.io/v1", "ClusterRole"): _CLUSTER_ROLE,
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): _ROLE_BINDING,
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"): _ROLE_BINDING,
    ("authentication.k8s.io/v1", "TokenRequest"): _TOKEN_REQUEST,
}


class _Wire(Exception):
    pass


@dataclass
class _Reader:
    buf: bytes
    pos: int = 0

    def varint(self) -> int:
        shift = 0
        out = 0
        while True:
            if self.pos >= len(self.buf) or shift > 63:
                raise _Wire("truncated varint")
            b = self.buf[self.pos]
            self.pos += 1
            out |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                return out

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.buf):
            raise _Wire("truncated field")
        out = self.buf[self.pos : self.pos + n]
        self.pos += n
        return out


def _fields(buf: bytes) -> list[tuple[int, int, int | bytes]]:
    """(field number, wire type, value) of each field of one message, in order."""
    r = _Reader(buf)
    out: list[tuple[int, int, int | bytes]] = []
    while r.pos < len(buf):
        key = r.varint()
        num, wt = key >> 3, key & 7
        val: int | bytes
        if wt == 0:
            val = r.varint()
        elif wt == 2:
            val = r.take(r.varint())
        elif wt == 1:
            val = int.from_bytes(r.take(8), "little")
        elif wt == 5:
            val = int.from_bytes(r.take(4), "little")
        else:
            raise _Wire(f"unsupported wire type {wt}")
        if num == 0:
            raise _Wire("field number 0")
        out.append((num, wt, val))
    return out


def _signed(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


def _need(wt: int, want: int, path: str) -> None:
    if wt != want:
        raise _Wire(f"{path}: wire type {wt}, expected {want}")


def _str(wt: int, v: int | bytes, path: str) -> str:
    _need(wt, 2, path)
    assert isinstance(v, bytes)
    try:
        return v.decode()
    except UnicodeDecodeError as e:
        raise _Wire(f"{path}: invalid UTF-8") from e


def _time(v: bytes, path: str) -> str | None:
    secs = 0
    for num, wt, val in _fields(v):
        if num == 1:
            _need(wt, 0, path)
            assert isinstance(val, int)
            secs = _signed(val)
    if secs == 0:
        return None
    t = dt.datetime.fromtimestamp(secs, tz=dt.UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def _int_or_string(v: bytes, path: str) -> int | str:
    typ, ival, sval = 0, 0, ""
    for num, wt, val in _fields(v):
        if num == 1:
            _need(wt, 0, path)
            assert isinstance(val, int)
            typ = val
        elif num == 2:
            _need(wt, 0, path)
            assert isinstance(val, int)
            ival = _signed(val) & 0xFFFFFFFF
            ival = ival - (1 << 32) if ival >= 1 << 31 else ival
        elif num == 3:
            sval = _str(wt, val, path)
        else:
            raise _Wire(f"{path}: unknown field {num} of IntOrString")
    return sval if typ == 1 else ival


def _scalar(typ: str, wt: int, v: int | bytes, path: str) -> Any:
    if typ == "str":
        return _str(wt, v, path)
    if typ in ("int", "bool"):
        _need(wt, 0, path)
        assert isinstance(v, int)
        return bool(v) if typ == "bool" else _signed(v)
    _need(wt, 2, path)
    assert isinstance(v, bytes)
    if typ == "bytes":
        return base64.b64encode(v).decode()
    if typ == "rawbytes":
        return v
    if typ == "time":
        return _time(v, path)
    if typ == "ios":
        return _int_or_string(v, path)
    if typ == "qty":
        for num, wt2, val in _fields(v):
            if num == 1:
                return _str(wt2, val, path)
        return "0"
    if typ == "raw":
        for num, _wt, val in _fields(v):
            if num == 1 and isinstance(val, bytes):
                return orjson.loads(val) if val else {}
        return {}
    raise _Wire(f"{path}: no decoder for {typ}")


def _map_entry(typ: str, v: bytes, path: str) -> tuple[str, Any]:
    key, value = "", _scalar(typ, 2, b"", path) if typ != "str" else ""
    for num, wt, val in _fields(v):
        if num == 1:
            key = _str(wt, val, path)
        elif num == 2:
            value = _scalar(typ, wt, val, f"{path}[{key}]")
        else:
            raise _Wire(f"{path}: unknown field {num} of a map entry")
    return key, value


def _zero(v: Any) -> bool:
    return v is None or v == "" or v == 0 or v is False


def _message(schema: Schema, buf: bytes, path: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for num, wt, val in _fields(buf):
        spec = schema.get(num)
        if spec is None:
            if schema is _IGNORED:
                continue
            raise _Wire(f"{path or '<object>'}: field number {num} is not known to the sandbox")
        name, typ, flags = spec
        sub = f"{path}.{name}" if path else name
        if isinstance(typ, dict):
            _need(wt, 2, sub)
            assert isinstance(val, bytes)
            msg = _message(typ, val, sub)
            if "inline" in flags:
                out.update(msg)
                continue
            value: Any = msg
        elif typ.startswith("map:"):
            _need(wt, 2, sub)
            assert isinstance(val, bytes)
            k, item = _map_entry(typ[4:], val, sub)
            out.setdefault(name, {})[k] = item
            continue
        else:
            value = _scalar(typ, wt, val, sub)
        if "rep" in flags:
            out.setdefault(name, []).append(value)
        elif "keep" in flags or not _zero(value):
            out[name] = value
    return out


def decode(body: bytes, *, expected_kind: str = "") -> dict[str, Any]:
    """A ``k8s\\x00``-enveloped protobuf object as its JSON form (with apiVersion and kind).

    Raises :class:`Undecodable` (naming the kind) when the body is not one the tables describe.
    """
    kind = expected_kind or "the object"
    if not body.startswith(MAGIC):
        raise Undecodable(kind, "the body does not start with the protobuf envelope k8s\\x00")
    try:
        env = _message(_UNKNOWN, body[len(MAGIC) :], "")
    except _Wire as e:
        raise Undecodable(kind, f"malformed protobuf envelope: {e}") from e
    tm = env.get("typeMeta") or {}
    api_version, kind = str(tm.get("apiVersion", "")), str(tm.get("kind", "")) or kind
    if env.get("contentEncoding"):
        raise Undecodable(kind, f"content encoding {env['contentEncoding']!r} is not supported")
    schema = KINDS.get((api_version, kind))
    if schema is None:
        raise Undecodable(
            kind, f"the sandbox cannot decode {kind} ({api_version or 'no apiVersion'}) protobuf"
        )
    raw = env.get("raw", b"")
    try:
        obj = _message(schema, raw if isinstance(raw, bytes) else b"", "")
    except _Wire as e:
        raise Undecodable(kind, f"cannot decode {kind} protobuf: {e}") from e
    return {"kind": kind, "apiVersion": api_version, **obj}
