"""Server-side Table output (``meta.k8s.io`` Table), as ``kubectl get`` asks for it.

Pure functions, no I/O. ``table_version(accept)`` says whether an Accept header asks for a
Table (and which version); ``crd_columns(crd, version)`` reads a CRD's printer columns;
``table_for(rt, objects, include=...)`` builds the Table body:

* custom resources: ``Name``, then the served version's ``additionalPrinterColumns``
  (or ``Age`` when none are declared), cells typed as the column says; ``date`` cells are
  ages rendered on the server (``"5m"``), as kube-apiserver's CRD convertor does;
* pods, nodes, statefulsets, namespaces, endpointslices: the columns kube-apiserver's
  printers use, with ages rendered on the server (``"5m"``) as the real server does;
* everything else: ``Name`` and ``Created At`` (an RFC3339 string, printed as is).

Rows carry ``object``: a PartialObjectMetadata (``include="Metadata"``, the default), the
whole object (``"Object"``) or ``null`` (``"None"``).
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import orjson

from sandbox.resources import ResourceType

TABLE_GROUP = "meta.k8s.io"
TABLE_VERSIONS = ("v1", "v1beta1")
INCLUDE_VALUES = ("None", "Metadata", "Object")
NONE = "<none>"

NAME_DESCRIPTION = (
    "Name must be unique within a namespace. Is required when creating resources, although "
    "some resources may allow a client to request the generation of an appropriate name "
    "automatically. Name is primarily intended for creation idempotence and configuration "
    "definition. Cannot be updated. More info: "
    "https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names"
)
CREATED_DESCRIPTION = (
    "CreationTimestamp is a timestamp representing the server time when this object was "
    "created. It is not guaranteed to be set in happens-before order across separate "
    "operations. Clients may not set this value. It is represented in RFC3339 form and is in "
    "UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: "
    "https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md"
    "#metadata"
)

Column = dict[str, Any]
Row = list[Any]


def _col(
    name: str, description: str, *, type_: str = "string", fmt: str = "", prio: int = 0
) -> Column:
    return {
        "name": name,
        "type": type_,
        "format": fmt,
        "description": description,
        "priority": prio,
    }


NAME_COLUMN = _col("Name", NAME_DESCRIPTION, fmt="name")
AGE_COLUMN = _col("Age", CREATED_DESCRIPTION)


# --- content negotiation -------------------------------------------------------------


def table_version(accept: str) -> str | None:
    """The Table version (``v1``/``v1beta1``) the first servable Accept clause asks for.

    ``None`` when the first clause the sandbox can serve is plain JSON (or nothing asks for a
    Table). Clauses it cannot serve (protobuf, other ``as=`` kinds, unknown Table versions)
    are skipped, as the real server's negotiation skips them.
    """
    for clause in accept.split(","):
        media, *raw_params = (p.strip() for p in clause.split(";"))
        media = media.lower()
        params: dict[str, str] = {}
        for p in raw_params:
            k, _, v = p.partition("=")
            params[k.strip().lower()] = v.strip()
        if media not in ("application/json", "application/*", "*/*", "*"):
            continue
        as_kind = params.get("as")
        if as_kind is None:
            return None
        if (
            as_kind == "Table"
            and params.get("g") == TABLE_GROUP
            and params.get("v") in TABLE_VERSIONS
        ):
            return params["v"]
    return None


def parse_include(value: str | None) -> str:
    """``includeObject`` query value → one of INCLUDE_VALUES (default Metadata)."""
    if not value:
        return "Metadata"
    if value not in INCLUDE_VALUES:
        raise ValueError(f"unrecognized includeObject value: {value!r}")
    return value


# --- time ---------------------------------------------------------------------------


def _parse_time(text: Any) -> datetime.datetime | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        t = datetime.datetime.fromisoformat(text)
    except ValueError:
        return None
    if t.tzinfo is None:
        return None
    return t.astimezone(datetime.UTC)


def human_duration(seconds: float) -> str:
    """A duration the way kubectl's AGE column shows it (``45s``, ``3m20s``, ``2d5h``)."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        rest = s % 60
        return f"{minutes}m{rest}s" if rest else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = minutes // 60
    if hours < 8:
        rest = minutes % 60
        return f"{hours}h{rest}m" if rest else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    days = hours // 24
    if hours < 24 * 8:
        rest = hours % 24
        return f"{days}d{rest}h" if rest else f"{days}d"
    if hours < 24 * 365 * 2:
        return f"{days}d"
    years = days // 365
    if hours < 24 * 365 * 8:
        rest = days % 365
        return f"{years}y{rest}d" if rest else f"{years}y"
    return f"{years}y"


def age(timestamp: Any, now: datetime.datetime) -> str:
    """``<unknown>`` for a missing timestamp, else the human duration since it."""
    t = _parse_time(timestamp)
    if t is None:
        return "<unknown>"
    return human_duration((now - t).total_seconds())


def _rfc3339(t: datetime.datetime) -> str:
    return t.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- JSONPath subset ------------------------------------------------------------------

_STEP = re.compile(r"\.([^.\[\]]+)|\[(\*|-?\d+)\]")


def json_path(obj: Any, path: str) -> list[Any]:
    """Values at a simple JSONPath: ``.a.b``, ``.a[*].b``, ``.a[0].b`` (optionally ``{...}``).

    Missing fields give no values; a path outside the subset gives none either.
    """
    expr = path.strip()
    if expr.startswith("{") and expr.endswith("}"):
        expr = expr[1:-1].strip()
    if expr.startswith("$"):
        expr = expr[1:]
    steps: list[tuple[str | None, str | None]] = []
    pos = 0
    while pos < len(expr):
        m = _STEP.match(expr, pos)
        if m is None:
            return []
        steps.append((m.group(1), m.group(2)))
        pos = m.end()
    current: list[Any] = [obj]
    for key, index in steps:
        nxt: list[Any] = []
        for value in current:
            if key is not None:
                if isinstance(value, dict) and key in value:
                    nxt.append(value[key])
            elif isinstance(value, list):
                if index == "*":
                    nxt.extend(value)
                else:
                    i = int(str(index))
                    if -len(value) <= i < len(value):
                        nxt.append(value[i])
        current = nxt
    return [v for v in current if v is not None]


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return orjson.dumps(value).decode()


def _typed_cell(type_: str, values: list[Any], now: datetime.datetime) -> Any:
    """A cell of a CRD column from the JSONPath values (``None`` when nothing is there).

    As kube-apiserver's CRD table convertor does, ``date`` cells are rendered on the server
    as an age (``"5m"``; ``"<invalid>"`` for an unparseable time): kubectl prints cells as
    they come.
    """
    if not values:
        return None
    if type_ == "string":
        return ",".join(_text(v) for v in values)
    value = values[0]
    if type_ == "integer":
        if isinstance(value, bool):
            return None
        if isinstance(value, int):
            return value
        if isinstance(value, float):
            return int(value)
        return None
    if type_ == "number":
        if isinstance(value, int | float) and not isinstance(value, bool):
            return value
        return None
    if type_ == "boolean":
        return value if isinstance(value, bool) else None
    if type_ == "date":
        if not isinstance(value, str):
            return None
        t = _parse_time(value)
        return human_duration((now - t).total_seconds()) if t is not None else "<invalid>"
    return None


# --- columns --------------------------------------------------------------------------


def crd_columns(crd: Mapping[str, Any], version: str) -> list[dict[str, Any]]:
    """The ``additionalPrinterColumns`` a CRD declares for ``version`` (maybe none)."""
    spec = crd.get("spec") or {}
    for v in spec.get("versions") or []:
        if v.get("name") == version and v.get("additionalPrinterColumns") is not None:
            return [dict(c) for c in v["additionalPrinterColumns"]]
    return [dict(c) for c in spec.get("additionalPrinterColumns") or []]


def _custom_columns(columns: Sequence[Mapping[str, Any]] | None) -> list[tuple[Column, str]]:
    declared = list(columns or ())
    if not declared:
        declared = [
            {
                "name": "Age",
                "type": "date",
                "jsonPath": ".metadata.creationTimestamp",
                "description": CREATED_DESCRIPTION,
            }
        ]
    out: list[tuple[Column, str]] = []
    for c in declared:
        definition = _col(
            str(c.get("name", "")),
            str(c.get("description") or ""),
            type_=str(c.get("type") or "string"),
            fmt=str(c.get("format") or ""),
            prio=int(c.get("priority") or 0),
        )
        out.append((definition, str(c.get("jsonPath") or c.get("JSONPath") or "")))
    return out


def _meta(obj: Mapping[str, Any]) -> dict[str, Any]:
    m = obj.get("metadata")
    return m if isinstance(m, dict) else {}


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


# --- pods -----------------------------------------------------------------------------

POD_COLUMNS: list[Column] = [
    NAME_COLUMN,
    _col("Ready", "The aggregate readiness state of this pod for accepting traffic."),
    _col("Status", "The aggregate status of the containers in this pod."),
    _col(
        "Restarts",
        "The number of times the containers in this pod have been restarted and when the last "
        "container in this pod has restarted.",
    ),
    AGE_COLUMN,
    _col(
        "IP",
        "podIP address allocated to the pod. Routable at least within the cluster. Empty if "
        "not yet allocated.",
        prio=1,
    ),
    _col(
        "Node",
        "NodeName indicates in which node this pod is scheduled. If empty, this pod is a "
        "candidate for scheduling by the scheduler defined in schedulerName. Once this field is "
        "set, the kubelet for this node becomes responsible for the lifecycle of this pod. This "
        "field should not be used to express a desire for the pod to be scheduled on a "
        "specific node. "
        "https://kubernetes.io/docs/concepts/scheduling-eviction/assign-pod-node/#nodename",
        prio=1,
    ),
    _col(
        "Nominated Node",
        "nominatedNodeName is set only when this pod preempts other pods on the node, but it "
        "cannot be scheduled right away as preemption victims receive their graceful "
        "termination periods. This field does not guarantee that the pod will be scheduled on "
        "this node. Scheduler may decide to place the pod elsewhere if other nodes become "
        "available sooner. Scheduler may also decide to give the resources on this node to a "
        "higher priority pod that is created after preemption. As a result, this field may be "
        "different than PodSpec.nodeName when the pod is scheduled.",
        prio=1,
    ),
    _col(
        "Readiness Gates",
        "If specified, all readiness gates will be evaluated for pod readiness. A pod is ready "
        "when all its containers are ready AND all conditions specified in the readiness gates "
        'have status equal to "True" More info: '
        "https://git.k8s.io/enhancements/keps/sig-network/580-pod-readiness-gates",
        prio=1,
    ),
]


def _exit_reason(prefix: str, terminated: Mapping[str, Any]) -> str:
    signal = terminated.get("signal")
    if signal:
        return f"{prefix}Signal:{signal}"
    return f"{prefix}ExitCode:{terminated.get('exitCode', 0)}"


def _condition_true(status: Mapping[str, Any], type_: str) -> bool:
    return any(
        _dict(c).get("type") == type_ and _dict(c).get("status") == "True"
        for c in _list(status.get("conditions"))
    )


def pod_status(pod: Mapping[str, Any]) -> tuple[str, int, int, datetime.datetime | None]:
    """(STATUS text, ready containers, restarts, last restart time) as kubectl shows them."""
    spec = _dict(pod.get("spec"))
    status = _dict(pod.get("status"))
    reason = str(status.get("reason") or status.get("phase") or "")
    restarts = 0
    ready = 0
    last_restart: datetime.datetime | None = None

    def note_restart(cs: Mapping[str, Any]) -> None:
        nonlocal restarts, last_restart
        restarts += int(cs.get("restartCount") or 0)
        finished = _parse_time(
            _dict(_dict(cs.get("lastState")).get("terminated")).get("finishedAt")
        )
        if finished is not None and (last_restart is None or finished > last_restart):
            last_restart = finished

    init_specs = _list(spec.get("initContainers"))
    initializing = False
    for i, cs in enumerate(_list(status.get("initContainerStatuses"))):
        cs = _dict(cs)
        note_restart(cs)
        state = _dict(cs.get("state"))
        terminated = _dict(state.get("terminated"))
        waiting = _dict(state.get("waiting"))
        if "terminated" in state and int(terminated.get("exitCode") or 0) == 0:
            continue
        initializing = True
        if "terminated" in state:
            why = terminated.get("reason")
            reason = f"Init:{why}" if why else _exit_reason("Init:", terminated)
        elif waiting.get("reason") and waiting.get("reason") != "PodInitializing":
            reason = f"Init:{waiting['reason']}"
        else:
            reason = f"Init:{i}/{len(init_specs)}"
        break

    if not initializing or _condition_true(status, "Initialized"):
        restarts = 0
        last_restart = None
        has_running = False
        for cs in reversed(_list(status.get("containerStatuses"))):
            cs = _dict(cs)
            note_restart(cs)
            state = _dict(cs.get("state"))
            terminated = _dict(state.get("terminated"))
            waiting = _dict(state.get("waiting"))
            if waiting.get("reason"):
                reason = str(waiting["reason"])
            elif terminated.get("reason"):
                reason = str(terminated["reason"])
            elif "terminated" in state:
                reason = _exit_reason("", terminated)
            elif cs.get("ready") and "running" in state:
                has_running = True
                ready += 1
        if reason == "Completed" and has_running:
            reason = "Running" if _condition_true(status, "Ready") else "NotReady"

    if _meta(pod).get("deletionTimestamp"):
        reason = "Unknown" if status.get("reason") == "NodeLost" else "Terminating"
    return reason, ready, restarts, last_restart


def _pod_row(pod: Mapping[str, Any], now: datetime.datetime) -> Row:
    spec = _dict(pod.get("spec"))
    status = _dict(pod.get("status"))
    reason, ready, restarts, last_restart = pod_status(pod)
    restarts_text = str(restarts)
    if restarts and last_restart is not None:
        restarts_text = f"{restarts} ({human_duration((now - last_restart).total_seconds())} ago)"
    gates = [_dict(g).get("conditionType") for g in _list(spec.get("readinessGates"))]
    gates_text = NONE
    if gates:
        true_types = {
            _dict(c).get("type")
            for c in _list(status.get("conditions"))
            if _dict(c).get("status") == "True"
        }
        gates_text = f"{sum(1 for g in gates if g in true_types)}/{len(gates)}"
    return [
        _meta(pod).get("name", ""),
        f"{ready}/{len(_list(spec.get('containers')))}",
        reason,
        restarts_text,
        age(_meta(pod).get("creationTimestamp"), now),
        status.get("podIP") or NONE,
        spec.get("nodeName") or NONE,
        status.get("nominatedNodeName") or NONE,
        gates_text,
    ]


# --- nodes, statefulsets, namespaces, default ------------------------------------------

NODE_COLUMNS: list[Column] = [
    NAME_COLUMN,
    _col("Status", "The status of the node"),
    _col("Roles", "The roles of the node"),
    AGE_COLUMN,
    _col("Version", "Kubelet Version reported by the node."),
]

_ROLE_PREFIX = "node-role.kubernetes.io/"


def node_status(node: Mapping[str, Any]) -> str:
    parts: list[str] = []
    for c in _list(_dict(node.get("status")).get("conditions")):
        c = _dict(c)
        if c.get("type") == "Ready":
            parts.append("Ready" if c.get("status") == "True" else "NotReady")
    if not parts:
        parts.append("Unknown")
    if _dict(node.get("spec")).get("unschedulable"):
        parts.append("SchedulingDisabled")
    return ",".join(parts)


def node_roles(node: Mapping[str, Any]) -> str:
    roles: set[str] = set()
    for key, value in _dict(_meta(node).get("labels")).items():
        if key.startswith(_ROLE_PREFIX) and key[len(_ROLE_PREFIX) :]:
            roles.add(key[len(_ROLE_PREFIX) :])
        elif key == "kubernetes.io/role" and value:
            roles.add(str(value))
    return ",".join(sorted(roles)) if roles else NONE


def _node_row(node: Mapping[str, Any], now: datetime.datetime) -> Row:
    info = _dict(_dict(node.get("status")).get("nodeInfo"))
    return [
        _meta(node).get("name", ""),
        node_status(node),
        node_roles(node),
        age(_meta(node).get("creationTimestamp"), now),
        info.get("kubeletVersion", ""),
    ]


STATEFULSET_COLUMNS: list[Column] = [
    NAME_COLUMN,
    _col("Ready", "Number of the pod with ready state"),
    AGE_COLUMN,
]


def _statefulset_row(sts: Mapping[str, Any], now: datetime.datetime) -> Row:
    replicas = _dict(sts.get("spec")).get("replicas")
    ready = _dict(sts.get("status")).get("readyReplicas") or 0
    return [
        _meta(sts).get("name", ""),
        f"{ready}/{1 if replicas is None else replicas}",
        age(_meta(sts).get("creationTimestamp"), now),
    ]


NAMESPACE_COLUMNS: list[Column] = [
    NAME_COLUMN,
    _col("Status", "The status of the namespace"),
    AGE_COLUMN,
]


def _namespace_row(ns: Mapping[str, Any], now: datetime.datetime) -> Row:
    return [
        _meta(ns).get("name", ""),
        _dict(ns.get("status")).get("phase", ""),
        age(_meta(ns).get("creationTimestamp"), now),
    ]


ENDPOINTSLICE_COLUMNS: list[Column] = [
    NAME_COLUMN,
    _col(
        "AddressType",
        "addressType specifies the type of address carried by this EndpointSlice. All addresses "
        "in this slice must be the same type. This field is immutable after creation. The "
        "following address types are currently supported: * IPv4: Represents an IPv4 Address. "
        "* IPv6: Represents an IPv6 Address. * FQDN: Represents a Fully Qualified Domain Name. "
        "(Deprecated) The EndpointSlice controller only generates, and kube-proxy only "
        'processes, slices of addressType "IPv4" and "IPv6". No semantics are defined for the '
        '"FQDN" type.',
    ),
    _col(
        "Ports",
        "ports specifies the list of network ports exposed by each endpoint in this slice. "
        "Each port must have a unique name. Each slice may include a maximum of 100 ports. "
        "Services always have at least 1 port, so EndpointSlices generated by the EndpointSlice "
        "controller will likewise always have at least 1 port. EndpointSlices used for other "
        "purposes may have an empty ports list.",
    ),
    _col(
        "Endpoints",
        "endpoints is a list of unique endpoints in this slice. Each slice may include a "
        "maximum of 1000 endpoints.",
    ),
    AGE_COLUMN,
]


def list_with_more(items: Sequence[str], count: int, limit: int = 3) -> str:
    """kubectl's ``listWithMoreString``: the first ``limit`` items, ``" + N more..."`` for
    the rest, ``<unset>`` for none. Pure.

    e.g. 5 addresses -> ``"10.0.0.1,10.0.0.2,10.0.0.3 + 2 more..."``.
    """
    text = ",".join(items[:limit])
    if count > limit:
        return f"{text} + {count - limit} more..."
    return text or "<unset>"


def _endpointslice_row(es: Mapping[str, Any], now: datetime.datetime) -> Row:
    ports = []
    for p in _list(es.get("ports")):
        p = _dict(p)
        if p.get("port") is not None:
            ports.append(str(p["port"]))
        elif p.get("name") is not None:
            ports.append(str(p["name"]))
        else:
            ports.append("*")
    addresses = [
        str(a) for e in _list(es.get("endpoints")) for a in _list(_dict(e).get("addresses"))
    ]
    return [
        _meta(es).get("name", ""),
        es.get("addressType", ""),
        list_with_more(ports, len(ports)),
        list_with_more(addresses, len(addresses)),
        age(_meta(es).get("creationTimestamp"), now),
    ]


DEFAULT_COLUMNS: list[Column] = [
    NAME_COLUMN,
    _col("Created At", CREATED_DESCRIPTION, type_="date"),
]


def _default_row(obj: Mapping[str, Any], now: datetime.datetime) -> Row:
    created = _parse_time(_meta(obj).get("creationTimestamp"))
    return [_meta(obj).get("name", ""), _rfc3339(created) if created is not None else None]


_BUILTIN: dict[
    tuple[str, str], tuple[list[Column], Callable[[Mapping[str, Any], datetime.datetime], Row]]
] = {
    ("", "pods"): (POD_COLUMNS, _pod_row),
    ("", "nodes"): (NODE_COLUMNS, _node_row),
    ("apps", "statefulsets"): (STATEFULSET_COLUMNS, _statefulset_row),
    ("", "namespaces"): (NAMESPACE_COLUMNS, _namespace_row),
    ("discovery.k8s.io", "endpointslices"): (ENDPOINTSLICE_COLUMNS, _endpointslice_row),
}


# --- the Table ------------------------------------------------------------------------


def _row_object(
    rt: ResourceType, obj: Mapping[str, Any], include: str, api_version: str, table_api: str
) -> Any:
    if include == "None":
        return None
    if include == "Object":
        rest = {k: v for k, v in obj.items() if k not in ("kind", "apiVersion")}
        return {"kind": rt.kind, "apiVersion": api_version, **rest}
    return {"kind": "PartialObjectMetadata", "apiVersion": table_api, "metadata": _meta(obj)}


def table_for(
    rt: ResourceType,
    objects: Sequence[Mapping[str, Any]],
    *,
    include: str,
    columns: Sequence[Mapping[str, Any]] | None = None,
    version: str | None = None,
    table_version: str = "v1",
    metadata: Mapping[str, Any] | None = None,
    now: datetime.datetime | None = None,
) -> dict[str, Any]:
    """A ``meta.k8s.io`` Table of ``objects`` of type ``rt``.

    ``columns`` are a CRD's printer columns for the served ``version`` (see ``crd_columns``);
    ``metadata`` is the Table's ListMeta (resourceVersion, continue, remainingItemCount);
    ``now`` fixes the clock ages are computed against.
    """
    include = parse_include(include)
    clock = now or datetime.datetime.now(datetime.UTC)
    table_api = f"{TABLE_GROUP}/{table_version}"
    api_version = rt.api_version(version)
    definitions: list[Column]
    cells_of: Callable[[Mapping[str, Any], datetime.datetime], Row]
    if rt.custom:
        custom = _custom_columns(columns)
        definitions = [NAME_COLUMN, *(d for d, _ in custom)]

        def cells_of(obj: Mapping[str, Any], now: datetime.datetime) -> Row:
            return [
                _meta(obj).get("name", ""),
                *(_typed_cell(d["type"], json_path(obj, p), now) for d, p in custom),
            ]
    else:
        definitions, cells_of = _BUILTIN.get(rt.key, (DEFAULT_COLUMNS, _default_row))
    rows = [
        {
            "cells": cells_of(obj, clock),
            "object": _row_object(rt, obj, include, api_version, table_api),
        }
        for obj in objects
    ]
    return {
        "kind": "Table",
        "apiVersion": table_api,
        "metadata": dict(metadata or {}),
        "columnDefinitions": [dict(d) for d in definitions],
        "rows": rows,
    }
