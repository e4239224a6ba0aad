"""Table tests of CloneSet defaulting (services.rollout.defaults, OpenKruise v1.2's mutating
webhook): what a patch adds, that it applies cleanly, and that it is never re-applied."""

from __future__ import annotations

import copy
from typing import Any

import jsonpatch
import orjson
import pytest

from kruise.common.v1 import mesh_pb2
from services.rollout.defaults import (
    decide_clone_set_defaults,
    default_clone_set,
    defaulted_clone_set,
    image_pull_policy,
)

TEMPLATE_DEFAULTS = {
    "dnsPolicy": "ClusterFirst",
    "restartPolicy": "Always",
    "securityContext": {},
    "terminationGracePeriodSeconds": 30,
    "schedulerName": "default-scheduler",
}
CONTAINER_DEFAULTS = {
    "terminationMessagePath": "/dev/termination-log",
    "terminationMessagePolicy": "File",
}


def minimal(**spec: Any) -> dict[str, Any]:
    """The CloneSet of OpenKruise's docs: a selector and one container, nothing else."""
    body: dict[str, Any] = {
        "selector": {"matchLabels": {"app": "sample"}},
        "template": {
            "metadata": {"labels": {"app": "sample"}},
            "spec": {"containers": [{"name": "nginx", "image": "nginx:alpine"}]},
        },
    }
    body.update(spec)
    return {
        "apiVersion": "apps.kruise.io/v1alpha1",
        "kind": "CloneSet",
        "metadata": {"name": "sample", "namespace": "default"},
        "spec": body,
    }


def with_pod(**fields: Any) -> dict[str, Any]:
    obj = minimal()
    obj["spec"]["template"]["spec"].update(fields)
    return obj


def add(path: str, value: Any) -> dict[str, Any]:
    return {"op": "add", "path": path, "value": value}


def ops_under(patch: list[dict[str, Any]], prefix: str) -> list[dict[str, Any]]:
    return [op for op in patch if op["path"].startswith(prefix)]


def test_minimal_clone_set_gets_every_default():
    assert default_clone_set(minimal()) == [
        add("/spec/template/spec/containers/0/imagePullPolicy", "Always"),
        add("/spec/template/spec/containers/0/terminationMessagePath", "/dev/termination-log"),
        add("/spec/template/spec/containers/0/terminationMessagePolicy", "File"),
        *(add(f"/spec/template/spec/{k}", v) for k, v in TEMPLATE_DEFAULTS.items()),
        add("/spec/replicas", 1),
        add("/spec/revisionHistoryLimit", 10),
        add(
            "/spec/updateStrategy",
            {"type": "ReCreate", "partition": 0, "maxUnavailable": "20%", "maxSurge": 0},
        ),
    ]


def test_patch_applies_to_the_defaulted_object_and_is_not_reapplied():
    obj = minimal()
    patched = jsonpatch.apply_patch(obj, default_clone_set(obj))
    assert patched == defaulted_clone_set(obj)
    assert default_clone_set(patched) == []
    assert obj == minimal()  # the input is not changed


def complete() -> dict[str, Any]:
    """Every default already set by the user, some to other values than the defaults."""
    obj = minimal(
        replicas=3,
        revisionHistoryLimit=5,
        updateStrategy={
            "type": "InPlaceIfPossible",
            "inPlaceUpdateStrategy": {"gracePeriodSeconds": 10},
            "partition": "50%",
            "maxUnavailable": 1,
            "maxSurge": "25%",
        },
    )
    pod = obj["spec"]["template"]["spec"]
    pod.update(TEMPLATE_DEFAULTS | {"dnsPolicy": "Default", "terminationGracePeriodSeconds": 5})
    pod["containers"][0].update(CONTAINER_DEFAULTS | {"imagePullPolicy": "IfNotPresent"})
    return obj


def test_complete_clone_set_gets_no_patch():
    assert default_clone_set(complete()) == []


@pytest.mark.parametrize(
    ("obj", "prefix", "expected"),
    [
        pytest.param(
            minimal(updateStrategy={"type": "InPlaceOnly", "partition": "99%"}),
            "/spec/updateStrategy",
            [
                add("/spec/updateStrategy/inPlaceUpdateStrategy", {}),
                add("/spec/updateStrategy/maxUnavailable", "20%"),
                add("/spec/updateStrategy/maxSurge", 0),
            ],
            id="in-place type gets inPlaceUpdateStrategy; a given partition stays",
        ),
        pytest.param(
            minimal(updateStrategy={"type": "", "maxSurge": 1}),
            "/spec/updateStrategy",
            [
                {"op": "replace", "path": "/spec/updateStrategy/type", "value": "ReCreate"},
                add("/spec/updateStrategy/partition", 0),
                add("/spec/updateStrategy/maxUnavailable", "20%"),
            ],
            id='type "" is Go\'s zero value, so it is defaulted',
        ),
        pytest.param(
            minimal(replicas=0, updateStrategy={"partition": 0, "maxSurge": 0}),
            "/spec/replicas",
            [],
            id="replicas 0 and partition 0 are set values, not absent ones",
        ),
        pytest.param(
            minimal(replicas=None, revisionHistoryLimit=None),
            "/spec/re",
            [
                {"op": "replace", "path": "/spec/replicas", "value": 1},
                {"op": "replace", "path": "/spec/revisionHistoryLimit", "value": 10},
            ],
            id="null counts as absent",
        ),
        pytest.param(
            with_pod(
                initContainers=[
                    {"name": "a", "image": "busybox"},
                    {"name": "b", "image": "busybox:1.36"},
                    {"name": "c", "image": "busybox:latest"},
                ]
            ),
            "/spec/template/spec/initContainers",
            [
                op
                for i, policy in enumerate(("Always", "IfNotPresent", "Always"))
                for op in (
                    add(f"/spec/template/spec/initContainers/{i}/imagePullPolicy", policy),
                    *(
                        add(f"/spec/template/spec/initContainers/{i}/{k}", v)
                        for k, v in CONTAINER_DEFAULTS.items()
                    ),
                )
            ],
            id="init containers follow Kubernetes' tag rule",
        ),
        pytest.param(
            with_pod(
                containers=[
                    {"name": "a", "image": "nginx:1.25", **CONTAINER_DEFAULTS},
                    {"name": "b", "image": "nginx:1.25", "imagePullPolicy": "Never"},
                ]
            ),
            "/spec/template/spec/containers",
            [
                add("/spec/template/spec/containers/0/imagePullPolicy", "Always"),
                *(
                    add(f"/spec/template/spec/containers/1/{k}", v)
                    for k, v in CONTAINER_DEFAULTS.items()
                ),
            ],
            id="containers pull Always whatever the tag (for in-place update); a set policy stays",
        ),
        pytest.param(
            with_pod(
                hostNetwork=True,
                containers=[
                    {
                        "name": "a",
                        "image": "nginx",
                        "ports": [{"containerPort": 80}, {"containerPort": 81, "hostPort": 9}],
                    }
                ],
            ),
            "/spec/template/spec/containers/0/ports",
            [
                add("/spec/template/spec/containers/0/ports/0/protocol", "TCP"),
                add("/spec/template/spec/containers/0/ports/0/hostPort", 80),
                add("/spec/template/spec/containers/0/ports/1/protocol", "TCP"),
            ],
            id="host network: ports get hostPort = containerPort",
        ),
        pytest.param(
            with_pod(
                containers=[
                    {
                        "name": "a",
                        "image": "nginx",
                        "readinessProbe": {"httpGet": {"port": 80}, "periodSeconds": 5},
                        "lifecycle": {"preStop": {"httpGet": {"port": 80, "path": "/stop"}}},
                        "env": [{"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "x"}}}],
                    }
                ]
            ),
            "/spec/template/spec/containers/0/",
            [
                add("/spec/template/spec/containers/0/readinessProbe/httpGet/path", "/"),
                add("/spec/template/spec/containers/0/readinessProbe/httpGet/scheme", "HTTP"),
                add("/spec/template/spec/containers/0/readinessProbe/timeoutSeconds", 1),
                add("/spec/template/spec/containers/0/readinessProbe/successThreshold", 1),
                add("/spec/template/spec/containers/0/readinessProbe/failureThreshold", 3),
                add("/spec/template/spec/containers/0/lifecycle/preStop/httpGet/scheme", "HTTP"),
                add("/spec/template/spec/containers/0/env/0/valueFrom/fieldRef/apiVersion", "v1"),
                add("/spec/template/spec/containers/0/imagePullPolicy", "Always"),
                *(
                    add(f"/spec/template/spec/containers/0/{k}", v)
                    for k, v in CONTAINER_DEFAULTS.items()
                ),
            ],
            id="probes, lifecycle handlers and env fieldRefs",
        ),
        pytest.param(
            with_pod(
                volumes=[
                    {"name": "scratch"},
                    {"name": "conf", "configMap": {"name": "conf"}},
                    {"name": "key", "secret": {"secretName": "key", "defaultMode": 0o400}},
                    {"name": "host", "hostPath": {"path": "/var/log"}},
                ]
            ),
            "/spec/template/spec/volumes",
            [
                add("/spec/template/spec/volumes/0/emptyDir", {}),
                add("/spec/template/spec/volumes/1/configMap/defaultMode", 420),
                add("/spec/template/spec/volumes/3/hostPath/type", ""),
            ],
            id="volumes: a sourceless one is an emptyDir; modes and hostPath type",
        ),
        pytest.param(
            minimal(volumeClaimTemplates=[{"metadata": {"name": "data"}, "spec": {}}]),
            "/spec/volumeClaimTemplates",
            [
                add("/spec/volumeClaimTemplates/0/spec/volumeMode", "Filesystem"),
                add("/spec/volumeClaimTemplates/0/status", {"phase": "Pending"}),
            ],
            id="volumeClaimTemplates",
        ),
        pytest.param(
            {"metadata": {"name": "bare"}},
            "/spec",
            [
                add(
                    "/spec",
                    {
                        "replicas": 1,
                        "revisionHistoryLimit": 10,
                        "template": {"spec": TEMPLATE_DEFAULTS},
                        "updateStrategy": {
                            "type": "ReCreate",
                            "partition": 0,
                            "maxUnavailable": "20%",
                            "maxSurge": 0,
                        },
                    },
                )
            ],
            id="no spec at all: one op adds it whole",
        ),
        pytest.param(
            minimal(updateStrategy="fast", template=["not", "an", "object"]),
            "/spec/",
            [add("/spec/replicas", 1), add("/spec/revisionHistoryLimit", 10)],
            id="malformed parts are left for validation to refuse",
        ),
    ],
)
def test_defaults(obj, prefix, expected):
    patch = default_clone_set(obj)
    assert ops_under(patch, prefix) == expected
    assert default_clone_set(jsonpatch.apply_patch(obj, patch)) == []


def changed_template(obj: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(obj)
    out["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx:1.26"
    return out


def scaled(obj: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(obj)
    out["spec"]["replicas"] = 7
    return out


@pytest.mark.parametrize(
    ("edit", "template_ops"),
    [
        pytest.param(scaled, 0, id="UPDATE keeping the template: template left as stored"),
        pytest.param(changed_template, 8, id="UPDATE changing the template: template defaulted"),
    ],
)
def test_update_defaults_the_template_only_when_it_changed(edit, template_ops):
    stored = minimal()  # stored before defaulting existed: a template without defaults
    patch = default_clone_set(edit(stored), old=stored)
    assert len(ops_under(patch, "/spec/template")) == template_ops
    assert ops_under(patch, "/spec/updateStrategy") != []


@pytest.mark.parametrize(
    ("image", "policy"),
    [
        pytest.param("nginx", "Always", id="no tag"),
        pytest.param("nginx:latest", "Always", id=":latest"),
        pytest.param("nginx:1.25", "IfNotPresent", id="a tag"),
        pytest.param("registry.example.com:5000/team/app", "Always", id="registry port, no tag"),
        pytest.param("registry.example.com:5000/team/app:v2", "IfNotPresent", id="port and tag"),
        pytest.param("nginx@sha256:" + "0" * 64, "IfNotPresent", id="a digest, no tag"),
        pytest.param("nginx:latest@sha256:" + "0" * 64, "Always", id=":latest with a digest"),
        pytest.param("", "IfNotPresent", id="empty (does not parse)"),
        pytest.param("Nginx", "IfNotPresent", id="capitals (does not parse)"),
    ],
)
def test_image_pull_policy(image, policy):
    assert image_pull_policy(image) == policy


def review(obj: Any, *, old: Any = None, operation: int = mesh_pb2.OPERATION_CREATE):
    body = {"request": {"uid": "1", "object": obj, "oldObject": old}}
    return mesh_pb2.AdmissionRequest(
        webhook="mutate-clonesets",
        operation=operation,
        namespace="default",
        name="sample",
        review_json=orjson.dumps(body),
    )


@pytest.mark.parametrize(
    ("request_", "code", "patched"),
    [
        pytest.param(review(minimal()), 0, True, id="CREATE: admitted with the patch"),
        pytest.param(review(complete()), 0, False, id="CREATE of a complete CloneSet: no patch"),
        pytest.param(
            review(scaled(complete()), old=complete(), operation=mesh_pb2.OPERATION_UPDATE),
            0,
            False,
            id="UPDATE of a complete CloneSet: no patch",
        ),
        pytest.param(
            review(None, old=minimal(), operation=mesh_pb2.OPERATION_DELETE),
            0,
            False,
            id="DELETE: admitted unchanged",
        ),
        pytest.param(review(None), 400, False, id="no object: 400"),
        pytest.param(
            review(minimal(), operation=mesh_pb2.OPERATION_UPDATE),
            400,
            False,
            id="UPDATE without oldObject: 400",
        ),
    ],
)
def test_decide_clone_set_defaults(request_, code, patched):
    verdict = decide_clone_set_defaults(request_)
    assert (verdict.allowed, verdict.code) == (code == 0, code)
    assert bool(verdict.patch) is patched
