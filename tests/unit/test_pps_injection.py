"""Pod CREATE injection: the affinity builder and its JSONPatch (SPEC 1.6 scenarios 5-6)."""

from __future__ import annotations

import copy
from typing import Any

import jsonpatch
import orjson
import pytest

from kruise.common.v1 import mesh_pb2
from services.kit.cache import ObjectCache
from services.placement.controller import PlacementController
from services.placement.injection import (
    INJECTED_ANNOTATION,
    Injection,
    build_injection,
    injection_patch,
)
from services.placement.webhooks import decide_injection
from tests.unit.placement_builders import HOSTNAME, ZONE, pps, state

RECORD = state("node-a", **{ZONE: "cn-beijing-a", HOSTNAME: "kube-resource011162007216"})


def kruise_pod(owner: str = "test-kruise-sts", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "test-pod",
            "namespace": "ns",
            "ownerReferences": [
                {
                    "apiVersion": "apps.kruise.io/v1beta1",
                    "kind": "StatefulSet",
                    "name": owner,
                    "uid": "u1",
                    "controller": True,
                }
            ],
        },
        "spec": {"containers": [{"name": "main", "image": "nginx"}], **spec},
    }


EXISTING_AFFINITY = {
    "nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [{"key": "node/gpu", "operator": "Exists"}]}]
        },
        "preferredDuringSchedulingIgnoredDuringExecution": [
            {
                "weight": 5,
                "preference": {"matchExpressions": [{"key": "test-key", "operator": "Exists"}]},
            }
        ],
    }
}

SCENARIO_PPS = pps(
    "test-kruise-sts",
    target=("apps.kruise.io/v1beta1", "StatefulSet", "test-kruise-sts"),
    required=[ZONE],
    preferred=[(10, [HOSTNAME])],
    states={"test-pod": RECORD},
)


def applied(pod: dict[str, Any], injection: Injection) -> dict[str, Any]:
    ops = injection_patch(pod, injection)
    # What the API server does with the answer: apply the JSONPatch to the original.
    return jsonpatch.apply_patch(copy.deepcopy(pod), orjson.loads(orjson.dumps(ops)))


def test_scenario_5_required_to_node_selector_preferred_appended():
    pod = kruise_pod(affinity=copy.deepcopy(EXISTING_AFFINITY))
    injection = build_injection(SCENARIO_PPS, "test-pod")
    assert injection is not None
    got = applied(pod, injection)
    assert got["spec"]["nodeSelector"] == {ZONE: "cn-beijing-a"}
    node_affinity = got["spec"]["affinity"]["nodeAffinity"]
    assert (
        node_affinity["requiredDuringSchedulingIgnoredDuringExecution"]
        == EXISTING_AFFINITY["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    ), "required node affinity is left untouched"
    assert node_affinity["preferredDuringSchedulingIgnoredDuringExecution"] == [
        EXISTING_AFFINITY["nodeAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0],
        {
            "weight": 10,
            "preference": {
                "matchExpressions": [
                    {"key": HOSTNAME, "operator": "In", "values": ["kube-resource011162007216"]}
                ]
            },
        },
    ]
    assert got["metadata"]["annotations"] == {INJECTED_ANNOTATION: "test-kruise-sts"}


def controller_with(*views) -> PlacementController:
    cache = ObjectCache()
    controller = PlacementController(cache=cache, cluster=None)  # type: ignore[arg-type]
    for view in views:
        event = mesh_pb2.WatchEvent(
            type=mesh_pb2.WatchEvent.TYPE_ADDED, kind=mesh_pb2.KIND_PERSISTENT_POD_STATE
        )
        event.object.persistent_pod_state.CopyFrom(view)
        cache.apply(event)
        controller.on_event(event)
    return controller


def review(
    pod: dict[str, Any], *, operation=mesh_pb2.OPERATION_CREATE, sub_resource=""
) -> mesh_pb2.AdmissionRequest:
    body = {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {"uid": "1", "object": pod},
    }
    return mesh_pb2.AdmissionRequest(
        webhook="mutate-pods",
        operation=operation,
        resource=mesh_pb2.GroupVersionResource(version="v1", resource="pods"),
        sub_resource=sub_resource,
        namespace="ns",
        name=pod["metadata"].get("name", ""),
        review_json=orjson.dumps(body),
    )


@pytest.mark.parametrize(
    ("pod", "operation", "sub_resource", "outcome"),
    [
        pytest.param(
            kruise_pod(),
            mesh_pb2.OPERATION_CREATE,
            "",
            "injected",
            id="pod of the recorded StatefulSet: injected",
        ),
        pytest.param(
            kruise_pod("no-found"),
            mesh_pb2.OPERATION_CREATE,
            "",
            "no-pps",
            id="scenario 6: owner no-found has no PersistentPodState: unchanged",
        ),
        pytest.param(
            kruise_pod(), mesh_pb2.OPERATION_UPDATE, "", "skipped", id="UPDATE is skipped"
        ),
        pytest.param(
            kruise_pod(),
            mesh_pb2.OPERATION_CREATE,
            "status",
            "skipped",
            id="a subresource is skipped",
        ),
        pytest.param(
            {**kruise_pod(), "metadata": {"name": "test-pod"}},
            mesh_pb2.OPERATION_CREATE,
            "",
            "not-owned",
            id="no controller owner: unchanged",
        ),
    ],
)
def test_decide_injection(pod, operation, sub_resource, outcome):
    controller = controller_with(SCENARIO_PPS)
    verdict, got = decide_injection(
        controller, review(pod, operation=operation, sub_resource=sub_resource)
    )
    assert got == outcome
    assert verdict.allowed
    assert bool(verdict.patch) == (outcome == "injected")


def test_deployment_owned_pod_is_not_touched():
    pod = kruise_pod()
    pod["metadata"]["ownerReferences"][0].update(apiVersion="apps/v1", kind="ReplicaSet")
    verdict, outcome = decide_injection(controller_with(SCENARIO_PPS), review(pod))
    assert (verdict.patch, outcome) == ([], "not-owned")


def test_unreadable_review_is_refused_with_400():
    request = review(kruise_pod())
    request.review_json = b"{not json"
    verdict, outcome = decide_injection(controller_with(SCENARIO_PPS), request)
    assert (verdict.allowed, verdict.code, outcome) == (False, 400, "bad-review")
    assert "not valid JSON" in verdict.message


@pytest.mark.parametrize(
    ("view", "want"),
    [
        pytest.param(
            pps(required=[ZONE], states={"p": state("n", **{ZONE: "a"})}),
            Injection("test-sts", {ZONE: "a"}),
            id="required only: nodeSelector",
        ),
        pytest.param(
            pps(required=[ZONE, "missing"], states={"p": state("n", **{ZONE: "a"})}),
            Injection("test-sts", {ZONE: "a"}),
            id="a key not recorded is left out",
        ),
        pytest.param(
            pps(
                preferred=[(10, ["missing"]), (20, [HOSTNAME])],
                states={"p": state("n", **{HOSTNAME: "h"})},
            ),
            Injection(
                "test-sts",
                {},
                (
                    {"weight": 10, "preference": {}},
                    {
                        "weight": 20,
                        "preference": {
                            "matchExpressions": [
                                {"key": HOSTNAME, "operator": "In", "values": ["h"]}
                            ]
                        },
                    },
                ),
            ),
            id="preferred terms in spec order, even with no expressions",
        ),
        pytest.param(
            pps(required=[ZONE], states={"p": state("n")}),
            None,
            id="a record without labels: nothing",
        ),
        pytest.param(
            pps(required=[ZONE], states={"other": RECORD}), None, id="no record for the pod"
        ),
        pytest.param(
            pps(required=["missing"], states={"p": RECORD}),
            None,
            id="no recorded key named: nothing",
        ),
    ],
)
def test_build_injection(view, want):
    assert build_injection(view, "p") == want


@pytest.mark.parametrize(
    "spec",
    [
        pytest.param({}, id="pod without nodeSelector or affinity"),
        pytest.param(
            {"nodeSelector": {ZONE: "old", "disk": "ssd"}},
            id="existing nodeSelector merged, recorded wins",
        ),
        pytest.param({"affinity": {"podAntiAffinity": {}}}, id="affinity without nodeAffinity"),
        pytest.param({"affinity": {"nodeAffinity": {}}}, id="nodeAffinity without preferred"),
    ],
)
def test_patch_applies_to_every_pod_shape(spec):
    pod = kruise_pod(**copy.deepcopy(spec))
    pod["metadata"]["annotations"] = {"keep": "me"} if "nodeSelector" in spec else None
    if pod["metadata"]["annotations"] is None:
        del pod["metadata"]["annotations"]
    injection = build_injection(SCENARIO_PPS, "test-pod")
    assert injection is not None
    got = applied(pod, injection)
    want_selector = {**spec.get("nodeSelector", {}), ZONE: "cn-beijing-a"}
    assert got["spec"]["nodeSelector"] == want_selector
    terms = got["spec"]["affinity"]["nodeAffinity"][
        "preferredDuringSchedulingIgnoredDuringExecution"
    ]
    assert terms[-1]["weight"] == 10
    assert got["metadata"]["annotations"][INJECTED_ANNOTATION] == "test-kruise-sts"
    if "nodeSelector" in spec:
        assert got["metadata"]["annotations"]["keep"] == "me"
