"""Table tests of the pure projection from raw API JSON to views (services.kit.projection)."""

from __future__ import annotations

import json
import sys
from typing import Any

import orjson
import pytest

from kruise.common.v1 import mesh_pb2, views_pb2
from services.kit import projection as p
from tests.fixtures import REAL_APISERVER

FIXTURES = REAL_APISERVER / "api"


def fixture(name: str) -> dict[str, Any]:
    body: dict[str, Any] = json.loads((FIXTURES / name).read_text())["response"]["body"]
    return body


def pod(**over: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "metadata": {"namespace": "ns", "name": "p", "uid": "u", "resourceVersion": "7"},
        "spec": {"containers": [{"name": "c", "image": "img:1"}]},
        "status": {},
    }
    for path, value in over.items():
        section, key = path.split("__")
        obj[section][key] = value
    return obj


needs_fixtures = pytest.mark.skipif(not FIXTURES.exists(), reason="shared fixtures absent")


@needs_fixtures
def test_running_pod_from_real_apiserver() -> None:
    view = p.project_pod(fixture("pod-get-running.json"))
    assert (view.meta.namespace, view.meta.name, view.meta.resource_version) == (
        "demo",
        "demo-pod",
        "467",
    )
    assert view.meta.uid == "3dbcb7bf-0640-446c-8b4b-df54bd425d71"
    assert view.meta.creation_unix_ms == 1795666406000  # 2026-11-26T04:13:26Z
    assert view.meta.labels["topology.kubernetes.io/zone"] == "zone-a"
    assert (view.node_name, view.phase, view.pod_ip, view.host_ip) == (
        "node-a",
        "Running",
        "10.244.1.7",
        "127.0.1.1",
    )
    ready = [c for c in view.conditions if c.type == "Ready"]
    assert ready[0].status == "True" and ready[0].last_transition_unix_ms == 1795666406000
    assert [(c.name, c.image) for c in view.containers] == [("nginx", "nginx:1.27")]
    cs = view.container_statuses[0]
    assert (cs.name, cs.image_id, cs.ready, cs.restart_count) == (
        "nginx",
        "fake://nginx:1.27",
        True,
        0,
    )


@needs_fixtures
def test_node_ready_from_real_apiserver() -> None:
    view = p.project_node(fixture("node-get.json"))
    assert view.meta.name == "node-a" and view.meta.namespace == ""
    assert view.ready is True and view.unschedulable is False
    assert view.meta.labels["kubernetes.io/hostname"] == "node-a"


@needs_fixtures
def test_statefulset_from_real_apiserver() -> None:
    view = p.project_workload(
        fixture("statefulset-get.json"), api_version="apps/v1", kind="StatefulSet"
    )
    assert (view.api_version, view.kind, view.meta.name) == ("apps/v1", "StatefulSet", "web")
    assert view.HasField("spec_replicas") and view.spec_replicas == 2
    assert dict(view.selector.match_labels) == {"app": "web"}
    assert (view.observed_generation, view.status_replicas, view.ready_replicas) == (1, 2, 2)
    assert (view.available_replicas, view.updated_replicas) == (2, 2)
    assert view.current_revision == view.update_revision == "web-b6bd99f47"


@needs_fixtures
def test_persistent_pod_state_from_real_apiserver() -> None:
    view = p.project_persistent_pod_state(fixture("cr-create-persistentpodstate.json"))
    assert (view.target_ref.api_version, view.target_ref.kind, view.target_ref.name) == (
        "apps/v1",
        "StatefulSet",
        "web",
    )
    assert view.has_required_topology is True
    assert list(view.required_node_topology_keys) == ["kubernetes.io/hostname"]
    assert view.retention_policy == "WhenScaled"


@needs_fixtures
def test_pub_from_real_apiserver() -> None:
    view = p.project_pod_unavailable_budget(fixture("cr-status-put-podunavailablebudget.json"))
    assert view.HasField("selector") and dict(view.selector.match_labels) == {"app": "web"}
    assert not view.HasField("target_ref") and not view.HasField("min_available")
    assert view.max_unavailable.str_value == "50%"
    assert (view.unavailable_allowed, view.current_available, view.desired_available) == (1, 2, 1)
    assert (view.total_replicas, view.observed_generation) == (2, 2)


@needs_fixtures
def test_cloneset_from_real_apiserver() -> None:
    raw = fixture("cr-create-cloneset.json")
    view = p.project_clone_set(raw)
    assert view.HasField("replicas") and view.replicas == 2
    assert view.update_strategy.type == "InPlaceIfPossible"
    assert view.update_strategy.partition.int_value == 0
    assert view.update_strategy.HasField("partition")
    assert view.update_strategy.max_unavailable.str_value == "20%"
    assert not view.update_strategy.HasField("max_surge")
    assert orjson.loads(view.template_json) == raw["spec"]["template"]
    assert not view.HasField("pre_delete")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param("2026-11-26T04:13:26Z", 1795666406000, id="plain RFC3339 in UTC"),
        pytest.param("1970-01-01T00:00:01.250000Z", 1250, id="micro-time with fractions"),
        pytest.param("1970-01-01T01:00:00+01:00", 0, id="explicit offset"),
        pytest.param(None, 0, id="unset timestamp is 0"),
        pytest.param("yesterday", 0, id="garbage is 0, never an exception"),
    ],
)
def test_timestamps_to_unix_ms(raw: object, expected: int) -> None:
    assert p.to_unix_ms(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param({"conditions": [{"type": "Ready", "status": "True"}]}, True, id="Ready=True"),
        pytest.param(
            {"conditions": [{"type": "Ready", "status": "Unknown"}]}, False, id="Ready=Unknown"
        ),
        pytest.param(
            {"conditions": [{"type": "DiskPressure", "status": "True"}]},
            False,
            id="no Ready condition: not ready",
        ),
        pytest.param({}, False, id="no status yet: not ready"),
    ],
)
def test_node_readiness(raw: dict[str, Any], expected: bool) -> None:
    view = p.project_node({"metadata": {"name": "n"}, "status": raw})
    assert view.ready is expected


@pytest.mark.parametrize(
    ("obj", "check"),
    [
        pytest.param(
            pod(status__phase="Pending"),
            lambda v: v.phase == "Pending" and v.node_name == "",
            id="pending pod not yet scheduled",
        ),
        pytest.param(
            pod(spec__readinessGates=[{"conditionType": "InPlaceUpdateReady"}]),
            lambda v: list(v.readiness_gates) == ["InPlaceUpdateReady"],
            id="readiness gate kept by condition type",
        ),
        pytest.param(
            pod(spec__nodeSelector={"topology.kubernetes.io/zone": "z1"}),
            lambda v: dict(v.node_selector) == {"topology.kubernetes.io/zone": "z1"},
            id="node selector kept",
        ),
        pytest.param(
            pod(
                metadata__deletionTimestamp="1970-01-01T00:00:02Z",
                metadata__finalizers=["x/y"],
            ),
            lambda v: v.meta.deletion_unix_ms == 2000 and list(v.meta.finalizers) == ["x/y"],
            id="deleting pod carries deletion time and finalizers",
        ),
        pytest.param(
            pod(
                metadata__ownerReferences=[
                    {
                        "apiVersion": "apps/v1",
                        "kind": "StatefulSet",
                        "name": "web",
                        "uid": "s",
                        "controller": True,
                    }
                ]
            ),
            lambda v: (
                v.meta.owner_references[0].controller
                and v.meta.owner_references[0].kind == "StatefulSet"
            ),
            id="controller owner reference",
        ),
        pytest.param(
            pod(
                metadata__annotations={
                    "kubectl.kubernetes.io/last-applied-configuration": "{...}",
                    "keep": "me",
                }
            ),
            lambda v: dict(v.meta.annotations) == {"keep": "me"},
            id="last-applied-configuration dropped",
        ),
    ],
)
def test_pod_projection(obj: dict[str, Any], check: Any) -> None:
    assert check(p.project_pod(obj))


def test_pub_timestamps_become_unix_ms() -> None:
    view = p.project_pod_unavailable_budget(
        {
            "metadata": {"namespace": "ns", "name": "pub"},
            "spec": {"targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "d"}},
            "status": {
                "disruptedPods": {"a": "1970-01-01T00:00:03Z"},
                "unavailablePods": {"b": "1970-01-01T00:00:04Z"},
            },
        }
    )
    assert dict(view.disrupted_pods) == {"a": 3000}
    assert dict(view.unavailable_pods) == {"b": 4000}
    assert view.HasField("target_ref") and not view.HasField("selector")


def test_cloneset_lifecycle_and_scale_strategy() -> None:
    view = p.project_clone_set(
        {
            "metadata": {"namespace": "ns", "name": "cs"},
            "spec": {
                "scaleStrategy": {"podsToDelete": ["cs-a"], "maxUnavailable": 1},
                "updateStrategy": {
                    "paused": True,
                    "inPlaceUpdateStrategy": {"gracePeriodSeconds": 5},
                },
                "lifecycle": {
                    "preDelete": {"labelsHandler": {"hook": "true"}, "markPodNotReady": True}
                },
            },
        }
    )
    assert list(view.pods_to_delete) == ["cs-a"] and view.scale_max_unavailable.int_value == 1
    assert view.update_strategy.paused and view.update_strategy.grace_period_seconds == 5
    assert view.HasField("pre_delete") and view.pre_delete.mark_pod_not_ready
    assert not view.HasField("in_place_update") and not view.HasField("replicas")


def test_cloneset_volume_claim_templates_kept_as_json() -> None:
    claims = [{"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"]}}]
    view = p.project_clone_set(
        {"metadata": {"name": "cs"}, "spec": {"volumeClaimTemplates": claims}}
    )
    assert orjson.loads(view.volume_claim_templates_json) == claims
    assert not p.project_clone_set({"metadata": {"name": "cs"}}).volume_claim_templates_json


def test_persistent_volume_claim_keeps_meta_and_phase() -> None:
    view = p.project_persistent_volume_claim(
        {
            "metadata": {
                "namespace": "ns",
                "name": "data-cs-x7k2p",
                "labels": {"apps.kruise.io/cloneset-instance-id": "x7k2p"},
                "ownerReferences": [
                    {
                        "apiVersion": "apps.kruise.io/v1alpha1",
                        "kind": "CloneSet",
                        "name": "cs",
                        "uid": "u",
                        "controller": True,
                    }
                ],
            },
            "spec": {"resources": {"requests": {"storage": "1Gi"}}},
            "status": {"phase": "Bound", "capacity": {"storage": "1Gi"}},
        }
    )
    assert view.phase == "Bound"
    assert view.meta.labels["apps.kruise.io/cloneset-instance-id"] == "x7k2p"
    assert view.meta.owner_references[0].controller


def test_workload_reserve_ordinals_and_unset_replicas() -> None:
    view = p.project_workload(
        {"metadata": {"name": "s"}, "spec": {"reserveOrdinals": [1, 3]}},
        api_version="apps.kruise.io/v1beta1",
        kind="StatefulSet",
    )
    assert list(view.reserve_ordinals) == [1, 3] and not view.HasField("spec_replicas")


def test_repeated_strings_are_interned() -> None:
    a = p.project_pod(pod(spec__nodeName="node-" + "x" * 3))
    b = p.project_pod(pod(spec__nodeName="node-" + "xx" + "x"))
    assert sys.intern(a.node_name) is sys.intern(b.node_name)


@pytest.mark.parametrize(
    ("api_version", "kind", "mesh_kind", "field"),
    [
        pytest.param("v1", "Pod", mesh_pb2.KIND_POD, "pod", id="pod"),
        pytest.param("v1", "Node", mesh_pb2.KIND_NODE, "node", id="node"),
        pytest.param("apps/v1", "Deployment", mesh_pb2.KIND_WORKLOAD, "workload", id="deploy"),
        pytest.param(
            "apps.kruise.io/v1beta1",
            "StatefulSet",
            mesh_pb2.KIND_WORKLOAD,
            "workload",
            id="kruise statefulset is a workload",
        ),
        pytest.param(
            "apps.kruise.io/v1alpha1", "CloneSet", mesh_pb2.KIND_CLONE_SET, "clone_set", id="cs"
        ),
        pytest.param(
            "v1",
            "PersistentVolumeClaim",
            mesh_pb2.KIND_PERSISTENT_VOLUME_CLAIM,
            "persistent_volume_claim",
            id="pvc",
        ),
    ],
)
def test_object_projector(api_version: str, kind: str, mesh_kind: int, field: str) -> None:
    got_kind, project = p.object_projector(api_version=api_version, kind=kind)
    view = project({"metadata": {"namespace": "ns", "name": "x"}})
    assert got_kind == mesh_kind and view.WhichOneof("view") == field
    if field == "workload":
        assert (view.workload.api_version, view.workload.kind) == (api_version, kind)


def test_unknown_kind_has_no_projector() -> None:
    with pytest.raises(KeyError):
        p.object_projector(api_version="v1", kind="ConfigMap")


# -- custom StatefulSet-like kinds (read through their CRD's /scale paths) -----------------------

SHARD_SCALE = p.ScalePaths(replicas_path=".spec.replicas", selector_path=".status.selector")


def shardset(**sections: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "metadata": {"namespace": "ns", "name": "db", "uid": "u-1", "resourceVersion": "9"},
        "spec": {},
        "status": {},
    }
    obj.update(sections)
    return obj


@pytest.mark.parametrize(
    ("obj", "path", "expected"),
    [
        pytest.param({"spec": {"replicas": 3}}, ".spec.replicas", 3, id="CRD path"),
        pytest.param({"spec": {"replicas": 3}}, "spec.replicas", 3, id="without the leading dot"),
        pytest.param({"spec": {"shards": {"count": 4}}}, ".spec.shards.count", 4, id="nested"),
        pytest.param({"spec": {}}, ".spec.replicas", None, id="missing field"),
        pytest.param({"spec": 3}, ".spec.replicas", None, id="a scalar on the way"),
        pytest.param({"spec": {"r": [1]}}, ".spec.r[0]", None, id="array notation reads nothing"),
        pytest.param({"spec": {}}, ".spec..replicas", None, id="empty step reads nothing"),
    ],
)
def test_json_path_value(obj: dict[str, Any], path: str, expected: object) -> None:
    assert p.json_path_value(obj, path) == expected


def selector_parts(selector: Any) -> tuple[dict[str, str], list[tuple[str, str, list[str]]]]:
    return dict(selector.match_labels), [
        (e.key, e.operator, list(e.values)) for e in selector.match_expressions
    ]


@pytest.mark.parametrize(
    ("text", "labels", "expressions"),
    [
        pytest.param("app=web", {"app": "web"}, [], id="equality"),
        pytest.param("app==web, tier=db", {"app": "web", "tier": "db"}, [], id="== and spaces"),
        pytest.param(
            "example.io/shard=a,example.io/shard=b",
            {"example.io/shard": "a"},
            [("example.io/shard", "In", ["b"])],
            id="a key repeated becomes In",
        ),
        pytest.param("app!=web", {}, [("app", "NotIn", ["web"])], id="inequality is NotIn"),
        pytest.param(
            "tier in (a, b),zone notin (z1)",
            {},
            [("tier", "In", ["a", "b"]), ("zone", "NotIn", ["z1"])],
            id="set-based terms",
        ),
        pytest.param(
            "ready,!drain",
            {},
            [("ready", "Exists", []), ("drain", "DoesNotExist", [])],
            id="exists",
        ),
        pytest.param("", {}, [], id="empty selects everything"),
    ],
)
def test_label_selector_string(
    text: str, labels: dict[str, str], expressions: list[tuple[str, str, list[str]]]
) -> None:
    selector = p.parse_label_selector(text)
    assert selector is not None
    assert selector_parts(selector) == (labels, expressions)


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("replicas>1", id="Gt has no LabelSelector form"),
        pytest.param("app=web,,tier=db", id="empty term"),
        pytest.param("tier in (a,(b))", id="nested parentheses"),
        pytest.param("app=we b", id="space inside a value"),
    ],
)
def test_malformed_label_selector_string_sets_nothing(text: str) -> None:
    assert p.parse_label_selector(text) is None


@pytest.mark.parametrize(
    ("obj", "check"),
    [
        pytest.param(
            shardset(spec={"replicas": 5}, status={"replicas": 4, "selector": "app=db"}),
            lambda v: (
                (v.spec_replicas, v.status_replicas, dict(v.selector.match_labels))
                == (5, 4, {"app": "db"})
            ),
            id="replicas and the selector string of /scale",
        ),
        pytest.param(
            shardset(
                spec={"replicas": 2, "selector": {"matchLabels": {"app": "spec"}}},
                status={"selector": "app=status"},
            ),
            lambda v: dict(v.selector.match_labels) == {"app": "spec"},
            id="a LabelSelector object in spec.selector wins",
        ),
        pytest.param(
            shardset(),
            lambda v: (
                not v.HasField("spec_replicas")
                and not v.HasField("selector")
                and v.status_replicas == 0
            ),
            id="new object: no replicas, no selector, no status",
        ),
        pytest.param(
            shardset(spec={"replicas": "3"}),
            lambda v: not v.HasField("spec_replicas"),
            id="replicas as a string stay unset",
        ),
        pytest.param(
            shardset(spec={"replicas": True}),
            lambda v: not v.HasField("spec_replicas"),
            id="replicas as a boolean stay unset",
        ),
        pytest.param(
            shardset(spec={"replicas": 0}),
            lambda v: v.HasField("spec_replicas") and v.spec_replicas == 0,
            id="scaled to zero is set",
        ),
        pytest.param(
            shardset(status={"selector": "replicas>1"}),
            lambda v: not v.HasField("selector"),
            id="a selector string with no LabelSelector form sets nothing",
        ),
        pytest.param(
            shardset(status={"selector": ""}),
            lambda v: v.HasField("selector") and not v.selector.match_labels,
            id="an empty selector string selects everything",
        ),
        pytest.param(
            shardset(status={"observedGeneration": 3, "replicas": 2}),
            lambda v: (v.observed_generation, v.status_replicas) == (3, 2),
            id="status",
        ),
    ],
)
def test_scaled_workload(obj: dict[str, Any], check: Any) -> None:
    view = views_pb2.WorkloadView()
    p.fill_scaled_workload(
        view,
        obj,
        api_version="apps.example.io/v1",
        kind="ShardSet",
        replicas_path=SHARD_SCALE.replicas_path,
        selector_path=SHARD_SCALE.selector_path,
    )
    assert (view.api_version, view.kind) == ("apps.example.io/v1", "ShardSet")
    assert (view.meta.namespace, view.meta.name, view.meta.uid) == ("ns", "db", "u-1")
    assert check(view)


def test_scaled_workload_reads_the_crd_paths() -> None:
    view = views_pb2.WorkloadView()
    p.fill_scaled_workload(
        view,
        shardset(spec={"shards": {"count": 7}}, status={"ready": {"count": 6}}),
        api_version="apps.example.io/v1",
        kind="ShardSet",
        replicas_path=".spec.shards.count",
        selector_path="",
        status_replicas_path=".status.ready.count",
    )
    assert (view.spec_replicas, view.status_replicas) == (7, 6)
    assert not view.HasField("selector")


@pytest.mark.parametrize(
    ("api_version", "kind"),
    [
        pytest.param("apps.example.io/v1", "ShardSet", id="a custom kind"),
        pytest.param("apps.example.io/v1", "StatefulSet", id="a custom kind named StatefulSet"),
        pytest.param("apps.example.io/v1", "CloneSet", id="a custom kind named CloneSet"),
    ],
)
def test_object_projector_with_scale_paths_is_a_workload(api_version: str, kind: str) -> None:
    got_kind, project = p.object_projector(api_version=api_version, kind=kind, scale=SHARD_SCALE)
    view = project(shardset(spec={"replicas": 3}))
    assert got_kind == mesh_pb2.KIND_WORKLOAD and view.WhichOneof("view") == "workload"
    assert (view.workload.api_version, view.workload.kind) == (api_version, kind)
    assert view.workload.spec_replicas == 3


def test_custom_kind_without_scale_paths_has_no_projector() -> None:
    with pytest.raises(KeyError, match="no projection for apps.example.io/v1 ShardSet"):
        p.object_projector(api_version="apps.example.io/v1", kind="ShardSet")
