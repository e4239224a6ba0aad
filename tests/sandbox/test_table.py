"""Server-side Table output: the pure column printers, then the same over HTTPS and kubectl."""

from __future__ import annotations

import asyncio
import datetime
import os
import re
import shutil
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from sandbox import table
from sandbox.app import Sandbox
from sandbox.resources import BUILTINS, ResourceType, types_from_crd
from tests.sandbox.conftest import Raw, fixture

ROOT = Path(__file__).resolve().parents[2]
DEPLOY_CRDS = ROOT / "deploy" / "crds"
CLONESET_EXAMPLE = ROOT / "deploy" / "examples" / "cloneset-partition-lifecycle.yaml"
KUBECTL = shutil.which("kubectl")
TABLE_ACCEPT = (
    "application/json;as=Table;v=v1;g=meta.k8s.io,"
    "application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"
)

NOW = datetime.datetime(2026, 11, 26, 12, 0, 0, tzinfo=datetime.UTC)
CREATED = "2026-11-26T11:55:00Z"  # 5m before NOW


def _builtin(group: str, resource: str) -> ResourceType:
    return next(rt for rt in BUILTINS if rt.key == (group, resource))


PODS = _builtin("", "pods")
NODES = _builtin("", "nodes")
STATEFULSETS = _builtin("apps", "statefulsets")
NAMESPACES = _builtin("", "namespaces")
CONFIGMAPS = _builtin("", "configmaps")
ENDPOINTSLICES = _builtin("discovery.k8s.io", "endpointslices")


def _cloneset_crd() -> dict[str, Any]:
    docs = yaml.safe_load_all((DEPLOY_CRDS / "apps.kruise.io_clonesets.yaml").read_text())
    return next(d for d in docs if isinstance(d, dict))


CLONESET_CRD = _cloneset_crd()
CLONESETS = types_from_crd(CLONESET_CRD)[0]
CLONESET_COLUMNS = table.crd_columns(CLONESET_CRD, "v1alpha1")
WIDGETS = ResourceType(
    group="test.sandbox.io",
    versions=("v1",),
    resource="widgets",
    kind="Widget",
    namespaced=True,
    custom=True,
)


def cells(rt: ResourceType, obj: dict[str, Any], **kw: Any) -> list[Any]:
    out = table.table_for(rt, [obj], include="Metadata", now=NOW, **kw)
    row: list[Any] = out["rows"][0]["cells"]
    return row


def names(rt: ResourceType, **kw: Any) -> list[str]:
    out = table.table_for(rt, [], include="Metadata", now=NOW, **kw)
    return [c["name"] for c in out["columnDefinitions"]]


# --- content negotiation ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        pytest.param(TABLE_ACCEPT, "v1", id="kubectl-get-asks-v1-first"),
        pytest.param(
            "application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json",
            "v1beta1",
            id="old-client-asks-v1beta1",
        ),
        pytest.param("application/json", None, id="plain-json"),
        pytest.param("", None, id="no-accept"),
        pytest.param("*/*", None, id="anything"),
        pytest.param(
            "application/json;as=Table;v=v2;g=meta.k8s.io,application/json",
            None,
            id="unknown-table-version-falls-to-json",
        ),
        pytest.param(
            "application/json;as=Table;v=v1;g=example.io", None, id="table-of-another-group"
        ),
        pytest.param(
            "application/vnd.kubernetes.protobuf;as=Table;v=v1;g=meta.k8s.io,"
            "application/json;as=Table;v=v1;g=meta.k8s.io",
            "v1",
            id="protobuf-skipped-json-table-served",
        ),
        pytest.param(
            "application/json, application/json;as=Table;v=v1;g=meta.k8s.io",
            None,
            id="json-preferred-over-table",
        ),
        pytest.param(
            "application/json ; as=Table ; g=meta.k8s.io ; v=v1", "v1", id="spaces-and-order"
        ),
    ],
)
def test_table_version_from_accept(accept: str, expected: str | None) -> None:
    assert table.table_version(accept) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, "Metadata"), ("", "Metadata"), ("None", "None"), ("Object", "Object")],
)
def test_include_object_values(value: str | None, expected: str) -> None:
    assert table.parse_include(value) == expected


def test_include_object_rejects_unknown_value() -> None:
    with pytest.raises(ValueError, match="includeObject"):
        table.parse_include("Everything")


# --- ages ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (-5, "<invalid>"),
        (-1, "0s"),
        (0, "0s"),
        (119, "119s"),
        (120, "2m"),
        (200, "3m20s"),
        (600, "10m"),
        (179 * 60, "179m"),
        (3 * 3600, "3h"),
        (3 * 3600 + 25 * 60, "3h25m"),
        (30 * 3600, "30h"),
        (2 * 86400 + 5 * 3600, "2d5h"),
        (3 * 86400, "3d"),
        (100 * 86400, "100d"),
        (3 * 365 * 86400 + 10 * 86400, "3y10d"),
        (10 * 365 * 86400, "10y"),
    ],
)
def test_human_duration(seconds: int, text: str) -> None:
    assert table.human_duration(seconds) == text


# --- JSONPath subset ----------------------------------------------------------------

_DOC = {
    "spec": {
        "replicas": 3,
        "template": {"spec": {"containers": [{"name": "a", "image": "x:1"}, {"name": "b"}]}},
    },
    "metadata": {"name": "n"},
}


@pytest.mark.parametrize(
    ("path", "values"),
    [
        (".spec.replicas", [3]),
        ("{.spec.replicas}", [3]),
        (".spec.template.spec.containers[*].name", ["a", "b"]),
        (".spec.template.spec.containers[*].image", ["x:1"]),
        (".spec.template.spec.containers[1].name", ["b"]),
        (".spec.template.spec.containers[-1].name", ["b"]),
        (".spec.template.spec.containers[5].name", []),
        (".status.replicas", []),
        (".metadata.name.deeper", []),
        ("not a path", []),
    ],
)
def test_json_path(path: str, values: list[Any]) -> None:
    assert table.json_path(_DOC, path) == values


# --- custom resources ---------------------------------------------------------------


def _cloneset(**status: Any) -> dict[str, Any]:
    return {
        "apiVersion": "apps.kruise.io/v1alpha1",
        "kind": "CloneSet",
        "metadata": {"name": "sample", "namespace": "default", "creationTimestamp": CREATED},
        "spec": {
            "replicas": 10,
            "template": {
                "spec": {
                    "containers": [
                        {"name": "nginx", "image": "nginx:alpine"},
                        {"name": "sidecar", "image": "envoy:1"},
                    ]
                }
            },
        },
        "status": status,
    }


def test_cloneset_columns_are_name_then_declared_columns() -> None:
    out = table.table_for(CLONESETS, [], include="Metadata", columns=CLONESET_COLUMNS, now=NOW)
    defs = {c["name"]: c for c in out["columnDefinitions"]}
    assert list(defs) == [
        "Name",
        "DESIRED",
        "UPDATED",
        "UPDATED_READY",
        "READY",
        "TOTAL",
        "AGE",
        "CONTAINERS",
        "IMAGES",
    ]
    assert defs["Name"]["format"] == "name"
    assert defs["DESIRED"] == {
        "name": "DESIRED",
        "type": "integer",
        "format": "",
        "description": "The desired number of pods.",
        "priority": 0,
    }
    assert defs["AGE"]["type"] == "date"
    assert defs["IMAGES"]["priority"] == 1


@pytest.mark.parametrize(
    ("scenario", "obj", "expected"),
    [
        pytest.param(
            "fresh cloneset: no status yet, so status columns are empty",
            _cloneset(),
            [
                "sample",
                10,
                None,
                None,
                None,
                None,
                "5m",
                "nginx,sidecar",
                "nginx:alpine,envoy:1",
            ],
            id="no-status",
        ),
        pytest.param(
            "rolled out halfway: counts come from status",
            _cloneset(replicas=10, updatedReplicas=5, updatedReadyReplicas=4, readyReplicas=9),
            ["sample", 10, 5, 4, 9, 10, "5m", "nginx,sidecar", "nginx:alpine,envoy:1"],
            id="partial-rollout",
        ),
        pytest.param(
            "integers stored as floats print as integers",
            _cloneset(replicas=10.0, updatedReplicas=2.0, updatedReadyReplicas=0, readyReplicas=1),
            ["sample", 10, 2, 0, 1, 10, "5m", "nginx,sidecar", "nginx:alpine,envoy:1"],
            id="float-integers",
        ),
        pytest.param(
            "a string where an integer belongs gives an empty cell",
            _cloneset(replicas="ten", updatedReplicas=True),
            [
                "sample",
                10,
                None,
                None,
                None,
                None,
                "5m",
                "nginx,sidecar",
                "nginx:alpine,envoy:1",
            ],
            id="wrong-types",
        ),
    ],
)
def test_cloneset_cells(scenario: str, obj: dict[str, Any], expected: list[Any]) -> None:
    assert cells(CLONESETS, obj, columns=CLONESET_COLUMNS) == expected, scenario


def test_crd_without_printer_columns_gets_name_and_age() -> None:
    assert names(WIDGETS) == ["Name", "Age"]
    out = table.table_for(WIDGETS, [], include="Metadata", columns=[])
    age = out["columnDefinitions"][1]
    assert (age["type"], age["format"], age["priority"]) == ("date", "", 0)
    obj = {"metadata": {"name": "w", "creationTimestamp": CREATED}}
    assert cells(WIDGETS, obj) == ["w", "5m"]


_TYPED_COLUMNS = [
    {"name": "Count", "type": "integer", "jsonPath": ".spec.count"},
    {"name": "Ratio", "type": "number", "jsonPath": ".spec.ratio"},
    {"name": "On", "type": "boolean", "jsonPath": ".spec.on"},
    {"name": "Mode", "type": "string", "jsonPath": ".spec.mode"},
    {"name": "Seen", "type": "date", "jsonPath": ".status.seen"},
    {"name": "Ports", "type": "string", "jsonPath": ".spec.ports[*]"},
]


@pytest.mark.parametrize(
    ("scenario", "spec", "status", "expected"),
    [
        pytest.param(
            "every type filled in",
            {"count": 3, "ratio": 0.5, "on": True, "mode": "fast", "ports": [80, 443]},
            {"seen": "2026-11-26T11:00:00Z"},
            [3, 0.5, True, "fast", "60m", "80,443"],
            id="all-types",
        ),
        pytest.param(
            "nothing set: every cell is null",
            {},
            {},
            [None, None, None, None, None, None],
            id="all-missing",
        ),
        pytest.param(
            "a date with an offset and fractions: an hour less 0.123s ago",
            {"count": 1, "ratio": 2, "on": False, "mode": 7, "ports": []},
            {"seen": "2026-11-26T12:00:00.123+01:00"},
            [1, 2, False, "7", "59m", None],
            id="normalised",
        ),
        pytest.param(
            "an unparseable date is shown as <invalid>",
            {"on": "yes"},
            {"seen": "yesterday"},
            [None, None, None, None, "<invalid>", None],
            id="invalid-date",
        ),
    ],
)
def test_crd_cells_by_column_type(
    scenario: str, spec: dict[str, Any], status: dict[str, Any], expected: list[Any]
) -> None:
    obj = {"metadata": {"name": "w"}, "spec": spec, "status": status}
    assert cells(WIDGETS, obj, columns=_TYPED_COLUMNS)[1:] == expected, scenario


def test_crd_columns_are_per_served_version() -> None:
    crd = {
        "spec": {
            "versions": [
                {"name": "v1", "additionalPrinterColumns": [{"name": "A", "type": "string"}]},
                {"name": "v2"},
            ],
            "additionalPrinterColumns": [{"name": "Top", "type": "string"}],
        }
    }
    assert [c["name"] for c in table.crd_columns(crd, "v1")] == ["A"]
    assert [c["name"] for c in table.crd_columns(crd, "v2")] == ["Top"]
    assert table.crd_columns({"spec": {"versions": [{"name": "v1"}]}}, "v1") == []


# --- pods ---------------------------------------------------------------------------


def _pod(
    *,
    phase: str = "Running",
    statuses: list[dict[str, Any]] | None = None,
    init: list[dict[str, Any]] | None = None,
    init_specs: int = 0,
    containers: int = 1,
    conditions: list[dict[str, Any]] | None = None,
    gates: list[str] | None = None,
    deleting: bool = False,
    reason: str | None = None,
    node: str | None = "node-a",
    ip: str | None = "10.244.1.7",
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "p", "namespace": "demo", "creationTimestamp": CREATED}
    if deleting:
        meta["deletionTimestamp"] = "2026-11-26T11:59:00Z"
    spec: dict[str, Any] = {"containers": [{"name": f"c{i}"} for i in range(containers)]}
    if init_specs:
        spec["initContainers"] = [{"name": f"i{i}"} for i in range(init_specs)]
    if node:
        spec["nodeName"] = node
    if gates:
        spec["readinessGates"] = [{"conditionType": g} for g in gates]
    status: dict[str, Any] = {"phase": phase}
    if statuses is not None:
        status["containerStatuses"] = statuses
    if init is not None:
        status["initContainerStatuses"] = init
    if conditions is not None:
        status["conditions"] = conditions
    if reason:
        status["reason"] = reason
    if ip:
        status["podIP"] = ip
    return {"metadata": meta, "spec": spec, "status": status}


RUNNING = {"ready": True, "restartCount": 0, "state": {"running": {}}}


def _waiting(why: str, restarts: int = 0) -> dict[str, Any]:
    return {"ready": False, "restartCount": restarts, "state": {"waiting": {"reason": why}}}


def _terminated(code: int = 0, why: str | None = None, signal: int | None = None) -> dict[str, Any]:
    term: dict[str, Any] = {"exitCode": code}
    if why:
        term["reason"] = why
    if signal:
        term["signal"] = signal
    return {"ready": False, "restartCount": 0, "state": {"terminated": term}}


@pytest.mark.parametrize(
    ("scenario", "pod", "expected"),
    [
        pytest.param(
            "running and ready, as in the captured fixture",
            _pod(statuses=[RUNNING]),
            ["p", "1/1", "Running", "0", "5m", "10.244.1.7", "node-a", "<none>", "<none>"],
            id="running",
        ),
        pytest.param(
            "just created: pending, unscheduled, no IP",
            _pod(phase="Pending", node=None, ip=None),
            ["p", "0/1", "Pending", "0", "5m", "<none>", "<none>", "<none>", "<none>"],
            id="pending",
        ),
        pytest.param(
            "one of two containers crash-looping, restarted 4 times, last 2m ago",
            _pod(
                containers=2,
                statuses=[
                    RUNNING,
                    {
                        **_waiting("CrashLoopBackOff", restarts=4),
                        "lastState": {"terminated": {"finishedAt": "2026-11-26T11:58:00Z"}},
                    },
                ],
            ),
            ["p", "1/2", "CrashLoopBackOff", "4 (2m ago)", "5m"],
            id="crashloop",
        ),
        pytest.param(
            "being deleted: Terminating whatever the phase",
            _pod(statuses=[RUNNING], deleting=True),
            ["p", "1/1", "Terminating", "0", "5m"],
            id="terminating",
        ),
        pytest.param(
            "deleted on a lost node: Unknown",
            _pod(statuses=[RUNNING], deleting=True, reason="NodeLost"),
            ["p", "1/1", "Unknown", "0", "5m"],
            id="node-lost",
        ),
        pytest.param(
            "evicted: the pod's reason replaces the phase",
            _pod(phase="Failed", reason="Evicted", statuses=[]),
            ["p", "0/1", "Evicted", "0", "5m"],
            id="evicted",
        ),
        pytest.param(
            "finished successfully",
            _pod(phase="Succeeded", statuses=[_terminated(0, "Completed")]),
            ["p", "0/1", "Completed", "0", "5m"],
            id="completed",
        ),
        pytest.param(
            "killed by a signal without a reason",
            _pod(phase="Failed", statuses=[_terminated(137, signal=9)]),
            ["p", "0/1", "Signal:9", "0", "5m"],
            id="signal",
        ),
        pytest.param(
            "exited non-zero without a reason",
            _pod(phase="Failed", statuses=[_terminated(3)]),
            ["p", "0/1", "ExitCode:3", "0", "5m"],
            id="exit-code",
        ),
        pytest.param(
            "second of two init containers still running",
            _pod(
                phase="Pending",
                init_specs=2,
                init=[_terminated(0), {"ready": False, "state": {"running": {}}}],
                statuses=[_waiting("PodInitializing")],
            ),
            ["p", "0/1", "Init:1/2", "0", "5m"],
            id="init-progress",
        ),
        pytest.param(
            "init container cannot pull its image",
            _pod(phase="Pending", init_specs=1, init=[_waiting("ImagePullBackOff")]),
            ["p", "0/1", "Init:ImagePullBackOff", "0", "5m"],
            id="init-waiting",
        ),
        pytest.param(
            "init container failed",
            _pod(phase="Pending", init_specs=1, init=[_terminated(1, "Error")]),
            ["p", "0/1", "Init:Error", "0", "5m"],
            id="init-error",
        ),
        pytest.param(
            "readiness gate not yet true (CloneSet's KruisePodReady)",
            _pod(
                statuses=[RUNNING],
                gates=["KruisePodReady"],
                conditions=[{"type": "Ready", "status": "False"}],
            ),
            ["p", "1/1", "Running", "0", "5m", "10.244.1.7", "node-a", "<none>", "0/1"],
            id="gate-pending",
        ),
        pytest.param(
            "readiness gate true",
            _pod(
                statuses=[RUNNING],
                gates=["KruisePodReady", "Other"],
                conditions=[{"type": "KruisePodReady", "status": "True"}],
            ),
            ["p", "1/1", "Running", "0", "5m", "10.244.1.7", "node-a", "<none>", "1/2"],
            id="gate-ready",
        ),
    ],
)
def test_pod_cells(scenario: str, pod: dict[str, Any], expected: list[Any]) -> None:
    assert cells(PODS, pod)[: len(expected)] == expected, scenario


def test_pod_columns_match_the_real_server() -> None:
    real = fixture("api/pod-list-as-table.json")["response"]["body"]["columnDefinitions"]
    ours = table.table_for(PODS, [], include="Metadata")["columnDefinitions"]
    assert ours == real


# --- nodes, statefulsets, namespaces, everything else -------------------------------------


def _node(
    *, ready: str | None = "True", unschedulable: bool = False, labels: dict[str, str] | None = None
) -> dict[str, Any]:
    conditions = [{"type": "MemoryPressure", "status": "False"}]
    if ready is not None:
        conditions.append({"type": "Ready", "status": ready})
    return {
        "metadata": {"name": "node-a", "creationTimestamp": CREATED, "labels": labels or {}},
        "spec": {"unschedulable": True} if unschedulable else {},
        "status": {"conditions": conditions, "nodeInfo": {"kubeletVersion": "v1.31.0"}},
    }


@pytest.mark.parametrize(
    ("scenario", "node", "expected"),
    [
        pytest.param(
            "healthy worker", _node(), ["node-a", "Ready", "<none>", "5m", "v1.31.0"], id="ready"
        ),
        pytest.param(
            "kubelet stopped posting",
            _node(ready="Unknown"),
            ["node-a", "NotReady", "<none>", "5m", "v1.31.0"],
            id="not-ready",
        ),
        pytest.param(
            "no Ready condition yet",
            _node(ready=None),
            ["node-a", "Unknown", "<none>", "5m", "v1.31.0"],
            id="unknown",
        ),
        pytest.param(
            "cordoned control plane",
            _node(
                unschedulable=True,
                labels={
                    "node-role.kubernetes.io/control-plane": "",
                    "node-role.kubernetes.io/master": "",
                    "kubernetes.io/hostname": "node-a",
                },
            ),
            ["node-a", "Ready,SchedulingDisabled", "control-plane,master", "5m", "v1.31.0"],
            id="cordoned",
        ),
        pytest.param(
            "legacy role label",
            _node(labels={"kubernetes.io/role": "edge"}),
            ["node-a", "Ready", "edge", "5m", "v1.31.0"],
            id="legacy-role",
        ),
    ],
)
def test_node_cells(scenario: str, node: dict[str, Any], expected: list[Any]) -> None:
    assert names(NODES) == ["Name", "Status", "Roles", "Age", "Version"]
    assert cells(NODES, node) == expected, scenario


@pytest.mark.parametrize(
    ("scenario", "rt", "obj", "columns", "expected"),
    [
        pytest.param(
            "statefulset with 2 of 3 ready",
            STATEFULSETS,
            {
                "metadata": {"name": "web", "creationTimestamp": CREATED},
                "spec": {"replicas": 3},
                "status": {"readyReplicas": 2},
            },
            ["Name", "Ready", "Age"],
            ["web", "2/3", "5m"],
            id="statefulset",
        ),
        pytest.param(
            "statefulset scaled to zero with no status",
            STATEFULSETS,
            {"metadata": {"name": "web", "creationTimestamp": CREATED}, "spec": {"replicas": 0}},
            ["Name", "Ready", "Age"],
            ["web", "0/0", "5m"],
            id="statefulset-empty",
        ),
        pytest.param(
            "active namespace",
            NAMESPACES,
            {
                "metadata": {"name": "demo", "creationTimestamp": CREATED},
                "status": {"phase": "Active"},
            },
            ["Name", "Status", "Age"],
            ["demo", "Active", "5m"],
            id="namespace",
        ),
        pytest.param(
            "namespace being deleted",
            NAMESPACES,
            {
                "metadata": {"name": "gone", "creationTimestamp": CREATED},
                "status": {"phase": "Terminating"},
            },
            ["Name", "Status", "Age"],
            ["gone", "Terminating", "5m"],
            id="namespace-terminating",
        ),
        pytest.param(
            "anything else: name and creation time (kubectl shows it as an age)",
            CONFIGMAPS,
            {"metadata": {"name": "cfg", "creationTimestamp": CREATED}, "data": {}},
            ["Name", "Created At"],
            ["cfg", CREATED],
            id="default",
        ),
        pytest.param(
            "anything else without a timestamp",
            CONFIGMAPS,
            {"metadata": {"name": "cfg"}},
            ["Name", "Created At"],
            ["cfg", None],
            id="default-no-timestamp",
        ),
    ],
)
def test_other_builtin_cells(
    scenario: str, rt: ResourceType, obj: dict[str, Any], columns: list[str], expected: list[Any]
) -> None:
    assert names(rt) == columns
    assert cells(rt, obj) == expected, scenario


def _slice(ports: Any, ips: list[str]) -> dict[str, Any]:
    return {
        "metadata": {"name": "web-cnx6m", "creationTimestamp": CREATED},
        "addressType": "IPv4",
        "ports": ports,
        "endpoints": [{"addresses": [ip]} for ip in ips] or None,
    }


@pytest.mark.parametrize(
    ("scenario", "es", "expected"),
    [
        pytest.param(
            "two ready endpoints behind one port",
            _slice([{"name": "http", "protocol": "TCP", "port": 80}], ["10.0.0.1", "10.0.0.2"]),
            ["web-cnx6m", "IPv4", "80", "10.0.0.1,10.0.0.2", "5m"],
            id="two-endpoints",
        ),
        pytest.param(
            "five endpoints: three shown, the rest counted",
            _slice([{"port": 80}], [f"10.0.0.{i}" for i in range(1, 6)]),
            ["web-cnx6m", "IPv4", "80", "10.0.0.1,10.0.0.2,10.0.0.3 + 2 more...", "5m"],
            id="more-endpoints",
        ),
        pytest.param(
            "four ports; a port with only a name; a port with neither means all ports",
            _slice([{"port": 80}, {"name": "dns"}, {}, {"port": 9090}], ["10.0.0.1"]),
            ["web-cnx6m", "IPv4", "80,dns,* + 1 more...", "10.0.0.1", "5m"],
            id="ports",
        ),
        pytest.param(
            "the placeholder of a service selecting nothing",
            _slice(None, []),
            ["web-cnx6m", "IPv4", "<unset>", "<unset>", "5m"],
            id="placeholder",
        ),
    ],
)
def test_endpointslice_cells(scenario: str, es: dict[str, Any], expected: list[Any]) -> None:
    assert names(ENDPOINTSLICES) == ["Name", "AddressType", "Ports", "Endpoints", "Age"]
    assert cells(ENDPOINTSLICES, es) == expected, scenario


def test_endpointslice_column_descriptions_come_from_the_api() -> None:
    spec = fixture("openapi/v3-apis_discovery.k8s.io_v1.json")
    body = spec.get("response", {}).get("body", spec)
    props = body["components"]["schemas"]["io.k8s.api.discovery.v1.EndpointSlice"]["properties"]
    columns = table.table_for(ENDPOINTSLICES, [], include="None")["columnDefinitions"]
    for column, field in zip(columns[1:4], ("addressType", "ports", "endpoints"), strict=True):
        # the printer uses the Go doc comment: the OpenAPI text without its enum appendix
        assert props[field]["description"].startswith(column["description"])


def test_default_created_at_column_is_a_date() -> None:
    created = table.table_for(CONFIGMAPS, [], include="None")["columnDefinitions"][1]
    assert (created["type"], created["format"]) == ("date", "")


# --- rows' object and the Table envelope --------------------------------------------------


@pytest.mark.parametrize(
    ("include", "table_version", "expected"),
    [
        pytest.param(
            "Metadata",
            "v1",
            {
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": {"name": "cfg", "namespace": "default", "resourceVersion": "7"},
            },
            id="metadata-by-default",
        ),
        pytest.param(
            "Metadata",
            "v1beta1",
            {
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1beta1",
                "metadata": {"name": "cfg", "namespace": "default", "resourceVersion": "7"},
            },
            id="metadata-v1beta1",
        ),
        pytest.param(
            "Object",
            "v1",
            {
                "kind": "ConfigMap",
                "apiVersion": "v1",
                "metadata": {"name": "cfg", "namespace": "default", "resourceVersion": "7"},
                "data": {"a": "1"},
            },
            id="whole-object",
        ),
        pytest.param("None", "v1", None, id="no-object"),
    ],
)
def test_row_object(include: str, table_version: str, expected: Any) -> None:
    # list items of built-ins come without kind/apiVersion; Object puts them back
    item = {
        "metadata": {"name": "cfg", "namespace": "default", "resourceVersion": "7"},
        "data": {"a": "1"},
    }
    out = table.table_for(
        CONFIGMAPS,
        [item],
        include=include,
        table_version=table_version,
        metadata={"resourceVersion": "9"},
    )
    assert out["kind"] == "Table"
    assert out["apiVersion"] == f"meta.k8s.io/{table_version}"
    assert out["metadata"] == {"resourceVersion": "9"}
    assert out["rows"][0]["object"] == expected


# --- over HTTPS -------------------------------------------------------------------------


async def _get(
    raw: Raw, path: str, accept: str = TABLE_ACCEPT, sb: Sandbox | None = None
) -> tuple[int, Any]:
    s = sb or raw.sb
    headers = {"Authorization": f"Bearer {s.token}", "Accept": accept}
    async with raw.session.get(s.url + path, headers=headers) as resp:
        return resp.status, await resp.json(content_type=None)


async def _running_pod(raw: Raw, name: str, node: str, ip: str) -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "demo"}},
        "spec": {"nodeName": node, "containers": [{"name": "nginx", "image": "nginx"}]},
    }
    code, _, body = await raw.call("POST", "/api/v1/namespaces/default/pods", pod)
    assert code == 201, body
    status = {
        "status": {
            "phase": "Running",
            "podIP": ip,
            "conditions": [{"type": "Ready", "status": "True"}],
            "containerStatuses": [
                {
                    "name": "nginx",
                    "image": "nginx",
                    "imageID": "",
                    "ready": True,
                    "restartCount": 0,
                    "state": {"running": {"startedAt": body["metadata"]["creationTimestamp"]}},
                }
            ],
        }
    }
    code, _, body = await raw.call(
        "PATCH",
        f"/api/v1/namespaces/default/pods/{name}/status",
        status,
        content_type="application/merge-patch+json",
    )
    assert code == 200, body


async def test_pod_list_as_table_has_the_real_shape(raw: Raw) -> None:
    real = fixture("api/pod-list-as-table.json")["response"]["body"]
    await _running_pod(raw, "demo-pod", "node-a", "10.244.1.7")
    await _running_pod(raw, "demo-pod-2", "node-b", "10.244.2.6")
    code, body = await _get(raw, "/api/v1/namespaces/default/pods")
    assert code == 200
    assert body.keys() == real.keys()
    assert (body["kind"], body["apiVersion"]) == (real["kind"], real["apiVersion"])
    assert body["metadata"].keys() == real["metadata"].keys()

    def shape(cols: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
        return [(c["name"], c["type"], c["format"], c["priority"]) for c in cols]

    assert shape(body["columnDefinitions"]) == shape(real["columnDefinitions"])
    assert len(body["rows"]) == len(real["rows"])
    for ours, theirs in zip(body["rows"], real["rows"], strict=True):
        assert ours.keys() == theirs.keys()
        assert ours["object"].keys() == theirs["object"].keys()
        assert ours["object"]["kind"] == "PartialObjectMetadata"
        assert ours["object"]["apiVersion"] == "meta.k8s.io/v1"
        assert ours["cells"][:4] == theirs["cells"][:4]
        assert ours["cells"][5:] == theirs["cells"][5:]
        assert re.fullmatch(r"\d+s", ours["cells"][4])
        assert ours["object"]["metadata"]["name"] == ours["cells"][0]


async def test_single_object_and_include_object_over_https(raw: Raw) -> None:
    await _running_pod(raw, "one", "node-a", "10.0.0.1")
    path = "/api/v1/namespaces/default/pods/one"
    code, body = await _get(raw, path)
    assert code == 200 and body["kind"] == "Table"
    assert [r["cells"][:3] for r in body["rows"]] == [["one", "1/1", "Running"]]
    assert (
        body["metadata"]["resourceVersion"]
        == body["rows"][0]["object"]["metadata"]["resourceVersion"]
    )
    code, body = await _get(raw, path + "?includeObject=Object")
    obj = body["rows"][0]["object"]
    assert (obj["kind"], obj["apiVersion"], obj["spec"]["nodeName"]) == ("Pod", "v1", "node-a")
    code, body = await _get(raw, "/api/v1/namespaces/default/pods?includeObject=None")
    assert body["rows"][0]["object"] is None
    code, body = await _get(raw, path + "?includeObject=Bogus")
    assert code == 400 and body["reason"] == "BadRequest"
    # v1beta1 when asked only for that; plain JSON unchanged; watches stay event streams
    code, body = await _get(raw, path, "application/json;as=Table;v=v1beta1;g=meta.k8s.io")
    assert body["apiVersion"] == "meta.k8s.io/v1beta1"
    code, body = await _get(raw, path, "application/json")
    assert (body["kind"], body["metadata"]["name"]) == ("Pod", "one")
    code, body = await _get(raw, "/api/v1/namespaces", "application/json")
    assert body["kind"] == "NamespaceList"
    code, body = await _get(raw, "/api/v1/namespaces")
    assert [c["name"] for c in body["columnDefinitions"]] == ["Name", "Status", "Age"]
    assert ["default", "Active"] in [r["cells"][:2] for r in body["rows"]]
    headers = {"Authorization": f"Bearer {raw.sb.token}", "Accept": TABLE_ACCEPT}
    url = raw.sb.url + "/api/v1/namespaces/default/pods?watch=1&timeoutSeconds=1"
    async with raw.session.get(url, headers=headers) as resp:
        first = await asyncio.wait_for(resp.content.readline(), 5)
    assert b'"type":"ADDED"' in first.replace(b" ", b"")


@pytest.fixture
async def kruise_sb(tmp_path: Path) -> AsyncIterator[Sandbox]:
    async with Sandbox(state_dir=tmp_path / "kruise", crd_dirs=[DEPLOY_CRDS]) as s:
        yield s


@pytest.fixture
async def kruise_raw(kruise_sb: Sandbox) -> AsyncIterator[Raw]:
    ctx = ssl.create_default_context(cafile=str(kruise_sb.ca_file))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx)) as s:
        yield Raw(kruise_sb, s)


async def _create_sample_cloneset(raw: Raw) -> None:
    body = yaml.safe_load(CLONESET_EXAMPLE.read_text())
    base = "/apis/apps.kruise.io/v1alpha1/namespaces/default/clonesets"
    code, _, out = await raw.call("POST", base, body)
    assert code == 201, out
    status = {
        "status": {
            "replicas": 10,
            "updatedReplicas": 8,
            "readyReplicas": 9,
            "availableReplicas": 9,
            "updatedReadyReplicas": 7,
        }
    }
    code, _, out = await raw.call(
        "PATCH", f"{base}/sample/status", status, content_type="application/merge-patch+json"
    )
    assert code == 200, out


async def test_cloneset_table_shows_the_crd_columns(kruise_raw: Raw) -> None:
    await _create_sample_cloneset(kruise_raw)
    code, body = await _get(kruise_raw, "/apis/apps.kruise.io/v1alpha1/clonesets")
    assert code == 200
    cols = [c["name"] for c in body["columnDefinitions"]]
    assert cols[:3] == ["Name", "DESIRED", "UPDATED"] and cols[-1] == "IMAGES"
    [row] = body["rows"]
    by_col = dict(zip(cols, row["cells"], strict=True))
    assert by_col["Name"] == "sample"
    assert (by_col["DESIRED"], by_col["UPDATED"], by_col["READY"], by_col["TOTAL"]) == (
        10,
        8,
        9,
        10,
    )
    assert by_col["UPDATED_READY"] == 7
    assert re.fullmatch(r"\d+s", by_col["AGE"])  # an age, as the real CRD convertor sends
    assert (by_col["CONTAINERS"], by_col["IMAGES"]) == ("nginx", "nginx:alpine")


@pytest.mark.skipif(KUBECTL is None, reason="kubectl not installed")
async def test_kubectl_get_prints_the_crd_columns(kruise_raw: Raw, tmp_path: Path) -> None:
    await _create_sample_cloneset(kruise_raw)
    await _running_pod(kruise_raw, "web-0", "node-a", "10.0.0.9")
    env = {**os.environ, "HOME": str(tmp_path), "KUBECONFIG": str(kruise_raw.sb.kubeconfig_path)}

    async def kubectl(*args: str) -> list[list[str]]:
        assert KUBECTL is not None
        proc = await asyncio.create_subprocess_exec(
            KUBECTL,
            "--kubeconfig",
            str(kruise_raw.sb.kubeconfig_path),
            *args,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(), 30)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise
        assert proc.returncode == 0, err.decode()
        return [line.split() for line in out.decode().splitlines()]

    lines = await kubectl("get", "clonesets", "-A")
    assert lines[0][:4] == ["NAMESPACE", "NAME", "DESIRED", "UPDATED"]
    assert lines[1][:4] == ["default", "sample", "10", "8"]
    assert re.fullmatch(r"\d+s", lines[1][-1])  # AGE
    lines = await kubectl("get", "clonesets", "-o", "wide")
    assert lines[0][-2:] == ["CONTAINERS", "IMAGES"]
    assert lines[1][-2:] == ["nginx", "nginx:alpine"]
    lines = await kubectl("get", "pods")
    assert lines[0] == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert lines[1][:4] == ["web-0", "1/1", "Running", "0"]
