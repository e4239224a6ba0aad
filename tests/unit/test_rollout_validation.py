"""Table tests of CloneSet validation (services.rollout.validation, OpenKruise v1.2's webhook).

Each refused row asserts the exact rendered errors, so the field named and the wording are
both checked. Rows marked "(kruise-mesh)" are the additions the module docstring lists.
"""

from __future__ import annotations

import copy
from typing import Any

import orjson
import pytest

from kruise.common.v1 import mesh_pb2
from services.rollout.defaults import defaulted_clone_set
from services.rollout.validation import (
    SPEC_FORBIDDEN,
    PodFacts,
    decide_clone_set,
    denial_message,
    validate_clone_set,
)

UID = "cs-uid-1"
LABELS = {"app": "web"}
QNAME_ERROR = (
    "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
    "alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for "
    "validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
)
LABEL_VALUE_ERROR = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or "
    "'.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or "
    "'my_value',  or '12345', regex used for validation is "
    "'(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
)
MISMATCH = "`selector` does not match template `labels`"
BELOW_ONE = "maxUnavailable and maxSurge should not both be less than 1"
NEG = "must be greater than or equal to 0"


def container(name: str = "app", image: Any = "nginx:1.25", **extra: Any) -> dict[str, Any]:
    out = {"name": name, "image": image, **extra}
    return {k: v for k, v in out.items() if v is not None}


def clone_set(
    *,
    replicas: Any = 4,
    selector: Any = None,
    labels: Any = None,
    containers: Any = None,
    strategy: dict[str, Any] | None = None,
    pod: dict[str, Any] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    """A valid CloneSet ``web`` (replicas 4, app=web, one container); keywords override.

    ``selector``/``labels`` default to app=web; ``containers`` to one ``app`` container;
    ``strategy`` is the updateStrategy; ``pod`` adds template.spec fields; other keywords
    are spec fields (``None`` removes one).
    """
    body: dict[str, Any] = {
        "replicas": replicas,
        "selector": {"matchLabels": dict(LABELS)} if selector is None else selector,
        "template": {
            "metadata": {"labels": dict(LABELS) if labels is None else labels},
            "spec": {"containers": [container()] if containers is None else containers},
        },
    }
    if strategy is not None:
        body["updateStrategy"] = strategy
    body["template"]["spec"].update(pod or {})
    body.update(spec)
    return {
        "apiVersion": "apps.kruise.io/v1alpha1",
        "kind": "CloneSet",
        "metadata": {"name": "web", "namespace": "default", "uid": UID},
        "spec": {k: v for k, v in body.items() if v is not None},
    }


def claim(name: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    }


def without_selector() -> dict[str, Any]:
    obj = clone_set()
    del obj["spec"]["selector"]
    return obj


def hooks(**hook: Any) -> dict[str, Any]:
    return {"preDelete": hook}


# ---- admitted ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "obj",
    [
        pytest.param(clone_set(), id="minimal CloneSet"),
        pytest.param(
            {"metadata": {"name": "web"}, "spec": clone_set()["spec"] | {"replicas": None}},
            id="replicas absent reads 1 (defaulted)",
        ),
        pytest.param(clone_set(strategy={"partition": "99%"}), id='partition "99%"'),
        pytest.param(clone_set(strategy={"partition": "99"}), id='partition "99" (lenient)'),
        pytest.param(clone_set(strategy={"partition": 10}), id="partition above replicas"),
        pytest.param(
            clone_set(strategy={"maxUnavailable": 0, "maxSurge": "30%"}),
            id='maxUnavailable 0 with maxSurge "30%"',
        ),
        pytest.param(
            clone_set(strategy={"maxUnavailable": "1%", "maxSurge": 0}),
            id='maxUnavailable "1%" rounds up to 1',
        ),
        pytest.param(
            clone_set(replicas=0, strategy={"maxUnavailable": 0, "maxSurge": 0}),
            id="replicas 0 with maxUnavailable 0 and maxSurge 0",
        ),
        pytest.param(
            clone_set(strategy={"type": "InPlaceIfPossible", "maxSurge": 1}),
            id="InPlaceIfPossible with maxSurge",
        ),
        pytest.param(
            clone_set(strategy={"type": "InPlaceOnly", "maxSurge": 0}),
            id="InPlaceOnly with maxSurge 0",
        ),
        pytest.param(
            clone_set(
                selector={"matchExpressions": [{"key": "app", "operator": "In", "values": ["web"]}]}
            ),
            id="matchExpressions selector matching the template",
        ),
        pytest.param(
            clone_set(
                volumeClaimTemplates=[claim("data")],
                containers=[container(volumeMounts=[{"name": "data", "mountPath": "/data"}])],
            ),
            id="a container mounts a volumeClaimTemplate",
        ),
        pytest.param(
            clone_set(
                lifecycle={
                    "preDelete": {
                        "finalizersHandler": ["example.io/unready-blocker"],
                        "markPodNotReady": True,
                    },
                    "inPlaceUpdate": {"labelsHandler": {"example.io/ready": "true"}},
                }
            ),
            id="lifecycle hooks with a qualified finalizer and a label",
        ),
        pytest.param(
            clone_set(scaleStrategy={"podsToDelete": ["web-a", "web-b"], "maxUnavailable": "50%"}),
            id="podsToDelete without duplicates (no lookup)",
        ),
        pytest.param(
            clone_set(
                strategy={
                    "priorityStrategy": {"orderPriority": [{"orderedKey": "some-key"}]},
                    "scatterStrategy": [{"key": "zone", "value": "a"}],
                }
            ),
            id="priority and scatter strategies",
        ),
    ],
)
def test_admitted_on_create(obj):
    assert validate_clone_set(obj, None) == []


# ---- refused -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        pytest.param(
            clone_set(labels={"app": "other"}),
            [f'spec.template.metadata.labels: Invalid value: {{"app":"other"}}: {MISMATCH}'],
            id="selector does not match the template labels",
        ),
        pytest.param(
            without_selector(),
            [
                "spec.selector: Required value",
                f'spec.template.metadata.labels: Invalid value: {{"app":"web"}}: {MISMATCH}',
            ],
            id="no selector (matches nothing, as labels.Nothing())",
        ),
        pytest.param(
            clone_set(selector={}),
            ["spec.selector: Invalid value: {}: empty selector is invalid for cloneset"],
            id="empty selector",
        ),
        pytest.param(
            clone_set(selector={"matchExpressions": [{"key": "app", "operator": "in"}]}),
            [
                'spec.selector.matchExpressions[0].operator: Invalid value: "in": '
                "not a valid selector operator",
                "spec.selector: Invalid value: "
                '{"matchExpressions":[{"key":"app","operator":"in"}]}',
            ],
            id="selector with an unknown operator does not convert",
        ),
        pytest.param(
            clone_set(replicas=-1),
            [f"spec.replicas: Invalid value: -1: {NEG}"],
            id="negative replicas",
        ),
        pytest.param(
            clone_set(strategy={"partition": -1}),
            [f"spec.updateStrategy.partition: Invalid value: -1: {NEG}"],
            id="negative partition",
        ),
        pytest.param(
            clone_set(replicas=10, strategy={"partition": "-10%"}),
            [f"spec.updateStrategy.partition: Invalid value: -1: {NEG}"],
            id='partition "-10%" of 10 replicas scales to -1',
        ),
        pytest.param(
            clone_set(strategy={"partition": "x%"}),
            [
                'spec.updateStrategy.partition: Invalid value: "x%": '
                "failed getValueFromIntOrPercent for partition: "
                'invalid value for IntOrString: invalid value "x%": '
                'strconv.Atoi: parsing "x": invalid syntax'
            ],
            id='bad percent partition "x%"',
        ),
        pytest.param(
            clone_set(strategy={"maxUnavailable": 0, "maxSurge": 0}),
            [f"spec.updateStrategy.maxUnavailable: Invalid value: 0: {BELOW_ONE}"],
            id="maxUnavailable 0 and maxSurge 0",
        ),
        pytest.param(
            clone_set(strategy={"maxUnavailable": "0%"}),
            [f'spec.updateStrategy.maxUnavailable: Invalid value: "0%": {BELOW_ONE}'],
            id='maxUnavailable "0%" and maxSurge defaulted to 0',
        ),
        pytest.param(
            clone_set(strategy={"maxUnavailable": 0, "maxSurge": "y"}),
            [
                'spec.updateStrategy.maxSurge: Invalid value: "y": failed getValueFromIntOrPercent '
                'for maxSurge: invalid value for IntOrString: invalid value "y": '
                'strconv.Atoi: parsing "y": invalid syntax',
                f"spec.updateStrategy.maxUnavailable: Invalid value: 0: {BELOW_ONE}",
            ],
            id="unreadable maxSurge counts as 0",
        ),
        pytest.param(
            clone_set(strategy={"type": "InPlaceOnly", "maxSurge": 1}),
            [
                'spec.updateStrategy.maxSurge: Invalid value: "1": '
                "can not use maxSurge with strategy type InPlaceOnly"
            ],
            id="maxSurge with InPlaceOnly",
        ),
        pytest.param(
            clone_set(strategy={"type": "RollingUpdate"}),
            [
                'spec.updateStrategy.type: Invalid value: "RollingUpdate": '
                "must be 'ReCreate', InPlaceIfPossible or 'InPlaceOnly'"
            ],
            id="bad update type",
        ),
        pytest.param(
            clone_set(strategy={"maxUnavailable": "150%"}),
            [
                'spec.updateStrategy.maxUnavailable: Invalid value: "150%": '
                "must not be greater than 100%"
            ],
            id="maxUnavailable above 100% (kruise-mesh)",
        ),
        pytest.param(
            clone_set(strategy={"maxSurge": -1}),
            [f"spec.updateStrategy.maxSurge: Invalid value: -1: {NEG}"],
            id="negative maxSurge (kruise-mesh)",
        ),
        pytest.param(
            clone_set(
                strategy={
                    "priorityStrategy": {
                        "orderPriority": [{"orderedKey": "k"}],
                        "weightPriority": [
                            {"weight": 50, "matchSelector": {"matchLabels": LABELS}}
                        ],
                    }
                }
            ),
            [
                "spec.updateStrategy.priorityStrategy: Required value: "
                "only one of weightPriority and orderPriority can be used"
            ],
            id="both weight and order priority",
        ),
        pytest.param(
            clone_set(strategy={"scatterStrategy": [{"key": "zone", "value": "a"}] * 2}),
            ["spec.updateStrategy.scatterStrategy: Required value: duplicated key=zone value=a"],
            id="scatter term repeated",
        ),
        pytest.param(
            clone_set(lifecycle=hooks(finalizersHandler=["example.io/unready_blocker_"])),
            [
                "spec.lifecycle.preDelete.finalizersHandler[0]: Invalid value: "
                f'"example.io/unready_blocker_": name part {QNAME_ERROR}'
            ],
            id="finalizer whose name part is not a qualified name (kruise-mesh)",
        ),
        pytest.param(
            clone_set(lifecycle=hooks(finalizersHandler=["a/b/c"])),
            [
                'spec.lifecycle.preDelete.finalizersHandler[0]: Invalid value: "a/b/c": '
                f"a qualified name {QNAME_ERROR} with an optional DNS subdomain prefix and '/' "
                "(e.g. 'example.com/MyName')"
            ],
            id="finalizer with two slashes (kruise-mesh)",
        ),
        pytest.param(
            clone_set(lifecycle=hooks(finalizersHandler=["blocker"])),
            [
                'spec.lifecycle.preDelete.finalizersHandler[0]: Invalid value: "blocker": '
                "name is neither a standard finalizer name nor is it fully qualified"
            ],
            id="finalizer without a domain, which no pod may carry (kruise-mesh)",
        ),
        pytest.param(
            clone_set(lifecycle={"inPlaceUpdate": {"labelsHandler": {"-ready": "true"}}}),
            [
                'spec.lifecycle.inPlaceUpdate.labelsHandler: Invalid value: "-ready": '
                f"name part {QNAME_ERROR}"
            ],
            id="bad label key in labelsHandler (kruise-mesh)",
        ),
        pytest.param(
            clone_set(lifecycle={"inPlaceUpdate": {"labelsHandler": {"ready": "not ok"}}}),
            [
                'spec.lifecycle.inPlaceUpdate.labelsHandler: Invalid value: "not ok": '
                f"{LABEL_VALUE_ERROR}"
            ],
            id="bad label value in labelsHandler (kruise-mesh)",
        ),
        pytest.param(
            clone_set(containers=[]),
            ["spec.template.spec.containers: Required value"],
            id="missing containers",
        ),
        pytest.param(
            clone_set(containers=[container(), container(image="redis:7")]),
            ['spec.template.spec.containers[1].name: Duplicate value: "app"'],
            id="duplicate container names",
        ),
        pytest.param(
            clone_set(containers=[container(image=None)]),
            ["spec.template.spec.containers[0].image: Required value"],
            id="container without an image",
        ),
        pytest.param(
            clone_set(containers=[container(name="")]),
            ["spec.template.spec.containers[0].name: Required value"],
            id="container without a name",
        ),
        pytest.param(
            clone_set(pod={"initContainers": [container(image="busybox")]}),
            ['spec.template.spec.initContainers[0].name: Duplicate value: "app"'],
            id="init container named like a container",
        ),
        pytest.param(
            clone_set(volumeClaimTemplates=[claim("data"), claim("data")]),
            ['spec.volumeClaimTemplates[1].metadata.name: Duplicate value: "data"'],
            id="two volumeClaimTemplates of one name",
        ),
        pytest.param(
            clone_set(
                pod={"volumes": [{"name": "data", "emptyDir": {}}]},
                volumeClaimTemplates=[claim("data")],
            ),
            ['spec.volumeClaimTemplates[0].metadata.name: Duplicate value: "data"'],
            id="volumeClaimTemplate named like a template volume",
        ),
        pytest.param(
            clone_set(containers=[container(volumeMounts=[{"name": "cache", "mountPath": "/c"}])]),
            ['spec.template.spec.containers[0].volumeMounts[0].name: Not found: "cache"'],
            id="mount of an unknown volume",
        ),
        pytest.param(
            clone_set(pod={"restartPolicy": "Never"}),
            [
                'spec.template.spec.restartPolicy: Unsupported value: "Never": '
                'supported values: "Always"'
            ],
            id="restartPolicy Never",
        ),
        pytest.param(
            clone_set(pod={"activeDeadlineSeconds": 60}),
            [
                "spec.template.spec.activeDeadlineSeconds: Forbidden: "
                "activeDeadlineSeconds in cloneset is not Supported"
            ],
            id="activeDeadlineSeconds",
        ),
        pytest.param(
            clone_set(scaleStrategy={"podsToDelete": ["web-a", "web-b", "web-a"]}),
            [
                'spec.scaleStrategy.podsToDelete: Invalid value: ["web-a","web-b","web-a"]: '
                "duplicated items [web-a]"
            ],
            id="duplicated podsToDelete",
        ),
        pytest.param(
            clone_set(scaleStrategy={"maxUnavailable": -2}),
            [f"spec.scaleStrategy.maxUnavailable: Invalid value: -2: {NEG}"],
            id="negative scaleStrategy.maxUnavailable (kruise-mesh)",
        ),
        pytest.param(
            clone_set(revisionHistoryLimit=-1, minReadySeconds=-5),
            [
                f"spec.revisionHistoryLimit: Invalid value: -1: {NEG}",
                f"spec.minReadySeconds: Invalid value: -5: {NEG}",
            ],
            id="negative revisionHistoryLimit and minReadySeconds (kruise-mesh)",
        ),
        pytest.param(
            {"metadata": {"name": "web"}, "spec": ["not", "an", "object"]},
            ['spec: Invalid value: ["not","an","object"]: must be an object'],
            id="spec is not an object",
        ),
        pytest.param(
            clone_set(replicas="3"),
            ['spec.replicas: Invalid value: "3": must be a 32-bit integer'],
            id="replicas is a string",
        ),
    ],
)
def test_refused_on_create(obj, expected):
    assert [str(e) for e in validate_clone_set(obj, None)] == expected


# ---- updates -------------------------------------------------------------------------------


def stored(**overrides: Any) -> dict[str, Any]:
    """``clone_set(**overrides)`` as the API server stores it: defaults set."""
    return defaulted_clone_set(clone_set(**overrides))


def changed(obj: dict[str, Any], edit: Any) -> dict[str, Any]:
    out = copy.deepcopy(obj)
    edit(out["spec"])
    return out


def _set_image(spec: dict[str, Any]) -> None:
    spec["template"]["spec"]["containers"][0]["image"] = "nginx:1.26"


def _add_env(spec: dict[str, Any]) -> None:
    spec["template"]["spec"]["containers"][0]["env"] = [{"name": "A", "value": "1"}]


def _scale_and_partition(spec: dict[str, Any]) -> None:
    spec["replicas"] = 10
    spec["updateStrategy"]["partition"] = "50%"
    spec["lifecycle"] = hooks(finalizersHandler=["example.io/blocker"])
    spec["minReadySeconds"] = 5


def _select_tier(spec: dict[str, Any]) -> None:
    spec["selector"] = {"matchLabels": {"app": "web", "tier": "fe"}}
    spec["template"]["metadata"]["labels"] = {"app": "web", "tier": "fe"}


IN_PLACE_ONLY = {"type": "InPlaceOnly"}


@pytest.mark.parametrize(
    ("old", "edit", "expected"),
    [
        pytest.param(stored(), _scale_and_partition, [], id="scale, partition, hooks: allowed"),
        pytest.param(
            stored(strategy=IN_PLACE_ONLY), _set_image, [], id="InPlaceOnly image change: allowed"
        ),
        pytest.param(
            stored(),
            _select_tier,
            [f"spec: Forbidden: {SPEC_FORBIDDEN}"],
            id="changed selector",
        ),
        pytest.param(
            stored(strategy=IN_PLACE_ONLY),
            _add_env,
            [
                "spec: Forbidden: only allowed to update images in spec for InPlaceOnly, "
                "but found add /containers/0/env"
            ],
            id="InPlaceOnly change beyond the image",
        ),
    ],
)
def test_update(old, edit, expected):
    assert [str(e) for e in validate_clone_set(changed(old, edit), old)] == expected


# ---- podsToDelete against the pods -----------------------------------------------------------

PODS = {
    "web-mine": PodFacts(terminating=False, controller_uid=UID),
    "web-going": PodFacts(terminating=True, controller_uid=UID),
    "other-pod": PodFacts(terminating=False, controller_uid="other-uid"),
    "bare-pod": PodFacts(terminating=False, controller_uid=""),
}


@pytest.mark.parametrize(
    ("names", "old_names", "expected"),
    [
        pytest.param(["web-mine"], [], [], id="a pod of this CloneSet"),
        pytest.param(
            ["web-gone"],
            [],
            ['web-gone": find pod web-gone failed: pods "web-gone" not found'],
            id="no such pod",
        ),
        pytest.param(
            ["web-going"], [], ["find pod web-going already terminating"], id="terminating pod"
        ),
        pytest.param(
            ["other-pod", "bare-pod"],
            [],
            [
                "find pod bare-pod owner is not this CloneSet",
                "find pod other-pod owner is not this CloneSet",
            ],
            id="pods of another owner or none, in name order",
        ),
        pytest.param(["web-gone"], ["web-gone"], [], id="a name already stored is not looked up"),
    ],
)
def test_pods_to_delete_lookup(names, old_names, expected):
    old = stored(scaleStrategy={"podsToDelete": old_names}) if old_names else None
    obj = clone_set(scaleStrategy={"podsToDelete": names})
    found = validate_clone_set(obj, old, find_pod=PODS.get)
    assert [e.path for e in found] == ["spec.scaleStrategy.podsToDelete"] * len(expected)
    assert all(want in str(e) for e, want in zip(found, expected, strict=True))


# ---- the review ------------------------------------------------------------------------------


def review(
    obj: Any,
    *,
    old: Any = None,
    operation: int = mesh_pb2.OPERATION_CREATE,
    sub_resource: str = "",
) -> mesh_pb2.AdmissionRequest:
    body = {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {"uid": "1", "object": obj, "oldObject": old},
    }
    return mesh_pb2.AdmissionRequest(
        webhook="validate-clonesets",
        operation=operation,
        resource=mesh_pb2.GroupVersionResource(
            group="apps.kruise.io", version="v1alpha1", resource="clonesets"
        ),
        sub_resource=sub_resource,
        namespace="default",
        name="web",
        review_json=orjson.dumps(body),
    )


def test_denial_reads_as_kube_apiserver_refusal():
    verdict = decide_clone_set(review(clone_set(strategy={"partition": -1})))
    assert (verdict.allowed, verdict.code, verdict.reason) == (False, 422, "Invalid")
    assert verdict.message == (
        'CloneSet.apps.kruise.io "web" is invalid: spec.updateStrategy.partition: '
        f"Invalid value: -1: {NEG}"
    )


def test_several_errors_print_as_one_aggregate():
    obj = clone_set(labels={"app": "other"}, strategy={"type": "Rolling"})
    assert denial_message(obj, validate_clone_set(obj, None)) == (
        'CloneSet.apps.kruise.io "web" is invalid: ['
        f'spec.template.metadata.labels: Invalid value: {{"app":"other"}}: {MISMATCH}, '
        'spec.updateStrategy.type: Invalid value: "Rolling": '
        "must be 'ReCreate', InPlaceIfPossible or 'InPlaceOnly']"
    )


@pytest.mark.parametrize(
    ("request_", "code", "message"),
    [
        pytest.param(review(clone_set()), 0, "", id="valid CREATE"),
        pytest.param(
            review(
                changed(stored(), _select_tier), old=stored(), operation=mesh_pb2.OPERATION_UPDATE
            ),
            422,
            "updates to cloneset spec for fields other than",
            id="UPDATE changing the selector",
        ),
        pytest.param(
            review(None, old=clone_set(replicas=-1), operation=mesh_pb2.OPERATION_DELETE),
            0,
            "",
            id="DELETE is not validated",
        ),
        pytest.param(
            review(clone_set(replicas=-1), sub_resource="status"),
            0,
            "",
            id="a subresource is not validated",
        ),
        pytest.param(review(None), 400, "the review carries no CloneSet", id="no object"),
        pytest.param(
            review(clone_set(), operation=mesh_pb2.OPERATION_UPDATE),
            400,
            "must carry the stored CloneSet",
            id="UPDATE without oldObject",
        ),
    ],
)
def test_decide_clone_set(request_, code, message):
    verdict = decide_clone_set(request_)
    assert (verdict.allowed, verdict.code) == (code == 0, code)
    assert message in verdict.message


def test_unreadable_review_is_refused_with_400():
    request_ = review(clone_set())
    request_.review_json = b"{not json"
    verdict = decide_clone_set(request_)
    assert (verdict.allowed, verdict.code) == (False, 400)
    assert "not valid JSON" in verdict.message


def test_validation_does_not_change_the_object():
    obj = clone_set()
    before = copy.deepcopy(obj)
    validate_clone_set(obj, None)
    assert obj == before
