"""Table tests of PodUnavailableBudget validation (services.budget.validation, SPEC 4.8).

Rows named "pub_validating_test" are SPEC 4.12's object-validation cases, taken from
OpenKruise's ``pub_validating_test.go``; each asserts the exact messages, not only their
count. The rest are bad input and the decisions the module docstring lists.

A targetRef of a kind nobody knows is valid here (any kind with ``/scale`` may be a
target); it is the caller's business at run time: the status loop resolves no workload
(totalReplicas 0) and the pod webhook answers 400 for the owner it cannot resolve (see
test_budget_decision "the owner cannot be resolved -> 400").
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from kruise.common.v1 import views_pb2
from services.budget.validation import (
    PERCENT_MSG,
    FieldError,
    denial_message,
    validate_pod_unavailable_budget,
)

OPS = "kruise.io/pub-protect-operations"
DEPLOY = {"apiVersion": "apps/v1", "kind": "Deployment", "name": "deployment-test"}
ABSENT: Any = object()


def pub(
    *,
    name: str = "pub-test",
    namespace: str = "default",
    selector: Any = ABSENT,
    target: Any = ABSENT,
    max_unavailable: Any = ABSENT,
    min_available: Any = ABSENT,
    annotations: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """OpenKruise's ``pubDemo``: fields left ABSENT are not in the spec."""
    spec = {
        key: value
        for key, value in (
            ("selector", selector),
            ("targetRef", target),
            ("maxUnavailable", max_unavailable),
            ("minAvailable", min_available),
        )
        if value is not ABSENT
    }
    return {
        "apiVersion": "policy.kruise.io/v1alpha1",
        "kind": "PodUnavailableBudget",
        "metadata": {"name": name, "namespace": namespace, "annotations": annotations or {}},
        "spec": spec,
    }


def labels(**match: str) -> dict[str, Any]:
    return {"matchLabels": match}


def sibling(
    name: str,
    *,
    namespace: str = "default",
    target: tuple[str, str, str] | None = None,
    selector: dict[str, str] | None = None,
) -> views_pb2.PodUnavailableBudgetView:
    view = views_pb2.PodUnavailableBudgetView()
    view.meta.name, view.meta.namespace = name, namespace
    if target is not None:
        view.target_ref.api_version, view.target_ref.kind, view.target_ref.name = target
        view.target_ref.SetInParent()
    if selector is not None:
        view.selector.match_labels.update(selector)
        view.selector.SetInParent()
    return view


def shown(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def check(obj, expected, *, old=None, siblings=()):
    errors = validate_pod_unavailable_budget(obj=obj, old=old, siblings=siblings)
    assert all(isinstance(error, FieldError) for error in errors)
    assert [str(error) for error in errors] == expected


TARGET_MAX = {"target": DEPLOY, "max_unavailable": "30%"}
SELECTOR_MIN = {"selector": labels(app="pub-controller"), "min_available": "50%"}
BAD_OPS = "metadata: Internal error: annotation[kruise.io/pub-protect-operations] is invalid"
NONE_OF_BOTH = (
    "spec.selector, targetRef: Required value: "
    "no selector or targetRef defined in PodUnavailableBudget"
)
BOTH = "spec.selector, targetRef: Required value: selector and targetRef are mutually exclusive"
NO_NUMBER = (
    "spec.maxUnavailable, minAvailable: Required value: "
    "no maxUnavailable or minAvailable defined in PodUnavailableBudget"
)
TWO_NUMBERS = (
    "spec.maxUnavailable, minAvailable: Required value: "
    "maxUnavailable and minAvailable are mutually exclusive"
)
IMMUTABLE = "spec.selector, targetRef: Required value: selector and targetRef cannot be modified"


def target_conflict(other: str) -> str:
    return (
        f"spec.targetRef: Invalid value: {shown(DEPLOY)}: "
        f"pub.spec.targetReference is in conflict with other PodUnavailableBudget {other}"
    )


def selector_conflict(other: str, selector: dict[str, Any]) -> str:
    return (
        f"spec.selector: Invalid value: {shown(selector)}: "
        f"pub.spec.selector is in conflict with other PodUnavailableBudget {other}"
    )


@pytest.mark.parametrize(
    ("obj", "old", "siblings", "expected"),
    [
        pytest.param(pub(**TARGET_MAX), None, (), [], id="pub_validating_test: targetRef + max"),
        pytest.param(pub(**SELECTOR_MIN), None, (), [], id="pub_validating_test: selector + min"),
        pytest.param(
            pub(max_unavailable="30%"),
            None,
            (),
            [NONE_OF_BOTH],
            id="pub_validating_test: neither selector nor targetRef -> 1",
        ),
        pytest.param(
            pub(selector=labels(app="a"), target=DEPLOY, max_unavailable="30%"),
            None,
            (),
            [BOTH],
            id="pub_validating_test: both selector and targetRef -> 1",
        ),
        pytest.param(
            pub(target=DEPLOY),
            None,
            (),
            [NO_NUMBER],
            id="pub_validating_test: neither maxUnavailable nor minAvailable -> 1",
        ),
        pytest.param(
            pub(target=DEPLOY, max_unavailable="30%", min_available="50%"),
            None,
            (),
            [TWO_NUMBERS],
            id="pub_validating_test: both maxUnavailable and minAvailable -> 1",
        ),
        pytest.param(
            pub(**TARGET_MAX, annotations={OPS: "xxxxx"}),
            None,
            (),
            [BAD_OPS],
            id="pub_validating_test: protect-operations xxxxx -> 1",
        ),
        pytest.param(
            pub(**TARGET_MAX, annotations={OPS: "DELETE"}),
            None,
            (),
            [],
            id="pub_validating_test: protect-operations DELETE -> 0",
        ),
        pytest.param(
            pub(**TARGET_MAX),
            None,
            (sibling("pub-other", target=("apps/v1", "Deployment", "deployment-test")),),
            [target_conflict("pub-other")],
            id="pub_validating_test: two budgets target Deployment deployment-test -> 1",
        ),
        pytest.param(
            pub(**TARGET_MAX),
            None,
            (sibling("pub-other", target=("apps/v1", "Deployment", "deployment-other")),),
            [],
            id="pub_validating_test: different Deployment names -> 0",
        ),
        pytest.param(
            pub(**SELECTOR_MIN),
            None,
            (sibling("pub-other", selector={"app": "pub-controller"}),),
            [selector_conflict("pub-other", labels(app="pub-controller"))],
            id="pub_validating_test: selector app=pub-controller vs the same -> 1",
        ),
        pytest.param(
            pub(**SELECTOR_MIN),
            None,
            (sibling("pub-other", selector={"app": "pub2-controller"}),),
            [],
            id="pub_validating_test: app=pub-controller vs app=pub2-controller -> 0",
        ),
        pytest.param(
            pub(**SELECTOR_MIN),
            None,
            (sibling("pub-other", namespace="other", selector={"app": "pub-controller"}),),
            [],
            id="pub_validating_test: the same selector in another namespace -> 0",
        ),
        pytest.param(
            pub(target={**DEPLOY, "name": "deployment-changed"}, max_unavailable="30%"),
            pub(**TARGET_MAX),
            (),
            [IMMUTABLE],
            id="pub_validating_test: update changing targetRef -> 1",
        ),
        pytest.param(
            pub(selector=labels(app="changed"), min_available="50%"),
            pub(**SELECTOR_MIN),
            (),
            [IMMUTABLE],
            id="pub_validating_test: update changing selector -> 1",
        ),
    ],
)
def test_spec_scenarios(obj, old, siblings, expected):
    check(obj, expected, old=old, siblings=siblings)


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        pytest.param(
            {"max_unavailable": "101%"},
            ['spec.maxUnavailable: Invalid value: "101%": must not be greater than 100%'],
            id="percent above 100%",
        ),
        pytest.param({"max_unavailable": "100%"}, [], id="100% is fine"),
        pytest.param({"max_unavailable": "0%"}, [], id="0% is fine"),
        pytest.param({"max_unavailable": 0}, [], id="int 0 is fine"),
        pytest.param({"max_unavailable": 500}, [], id="an int above replicas is fine"),
        pytest.param(
            {"max_unavailable": "30"},
            [f'spec.maxUnavailable: Invalid value: "30": {PERCENT_MSG}'],
            id="a string without %",
        ),
        pytest.param(
            {"max_unavailable": "5.5%"},
            [f'spec.maxUnavailable: Invalid value: "5.5%": {PERCENT_MSG}'],
            id="a fractional percent",
        ),
        pytest.param(
            {"max_unavailable": "-5%"},
            [f'spec.maxUnavailable: Invalid value: "-5%": {PERCENT_MSG}'],
            id="a negative percent",
        ),
        pytest.param(
            {"max_unavailable": -1},
            ["spec.maxUnavailable: Invalid value: -1: must be greater than or equal to 0"],
            id="a negative int",
        ),
        pytest.param(
            {"max_unavailable": None, "min_available": "120%"},
            ['spec.minAvailable: Invalid value: "120%": must not be greater than 100%'],
            id="minAvailable above 100% (a null maxUnavailable is absent)",
        ),
        pytest.param(
            {"max_unavailable": 1.5},
            [
                "spec.maxUnavailable: Invalid value: 1.5: "
                "must be an integer or percentage (e.g '5%')"
            ],
            id="a float",
        ),
        pytest.param(
            {"max_unavailable": True},
            [
                "spec.maxUnavailable: Invalid value: true: "
                "must be an integer or percentage (e.g '5%')"
            ],
            id="a bool",
        ),
        pytest.param(
            {"max_unavailable": 2**31},
            [
                "spec.maxUnavailable: Invalid value: 2147483648: "
                "must be an integer or percentage (e.g '5%')"
            ],
            id="an int beyond int32",
        ),
    ],
)
def test_budget_numbers(overrides, expected):
    check(pub(target=DEPLOY, **{"max_unavailable": "30%", **overrides}), expected)


EMPTY_TARGET = "empty TargetReference is not valid for PodUnavailableBudget."


@pytest.mark.parametrize(
    ("selection", "expected"),
    [
        pytest.param(
            {"target": {"apiVersion": "apps/v1", "kind": "Deployment"}},
            [
                "spec.targetRef: Invalid value: "
                f"{shown({'apiVersion': 'apps/v1', 'kind': 'Deployment', 'name': ''})}: "
                f"{EMPTY_TARGET}"
            ],
            id="targetRef without a name",
        ),
        pytest.param(
            {"target": {**DEPLOY, "apiVersion": "a/b/c"}},
            [
                f"spec.targetRef: Invalid value: {shown({**DEPLOY, 'apiVersion': 'a/b/c'})}: "
                "unexpected GroupVersion string: a/b/c"
            ],
            id="targetRef apiVersion with two slashes",
        ),
        pytest.param(
            {"target": {"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout", "name": "demo"}},
            [],
            id="a custom kind is valid (resolved at run time through /scale)",
        ),
        pytest.param(
            {"target": {"apiVersion": "example.com/v1", "kind": "NoSuchKind", "name": "x"}},
            [],
            id="an unknown kind is the caller's business (documented)",
        ),
        pytest.param(
            {"target": "apps/v1/Deployment/x"},
            ['spec.targetRef: Invalid value: "apps/v1/Deployment/x": must be an object'],
            id="targetRef not an object",
        ),
        pytest.param(
            {"selector": {}},
            [
                "spec.selector: Invalid value: {}: "
                "empty selector is not valid for PodUnavailableBudget."
            ],
            id="an empty selector",
        ),
        pytest.param(
            {"selector": {"matchExpressions": [{"key": "app", "operator": "Near"}]}},
            [
                'spec.selector.matchExpressions[0].operator: Invalid value: "Near": '
                "not a valid selector operator"
            ],
            id="an unknown operator",
        ),
        pytest.param(
            {"selector": {"matchExpressions": [{"key": "app", "operator": "In"}]}},
            [
                "spec.selector.matchExpressions[0].values: Required value: "
                "must be specified when `operator` is 'In' or 'NotIn'"
            ],
            id="In without values",
        ),
        pytest.param(
            {
                "selector": {
                    "matchExpressions": [{"key": "app", "operator": "Exists", "values": ["a"]}]
                }
            },
            [
                "spec.selector.matchExpressions[0].values: Forbidden: "
                "may not be specified when `operator` is 'Exists' or 'DoesNotExist'"
            ],
            id="Exists with values",
        ),
        pytest.param(
            {"selector": labels(**{"-app": "a"})},
            [
                'spec.selector.matchLabels: Invalid value: "-app": name part must consist of '
                "alphanumeric characters, '-', '_' or '.', and must start and end with an "
                "alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex "
                "used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
            ],
            id="a label key that is not a qualified name",
        ),
        pytest.param(
            {"selector": labels(**{"Example.com/app": "a"})},
            [
                'spec.selector.matchLabels: Invalid value: "Example.com/app": prefix part a '
                "lowercase RFC 1123 subdomain must consist of lower case alphanumeric "
                "characters, '-' or '.', and must start and end with an alphanumeric character "
                "(e.g. 'example.com', regex used for validation is "
                "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
            ],
            id="a label key prefix that is not a DNS subdomain",
        ),
        pytest.param(
            {"selector": labels(app="a b")},
            [
                'spec.selector.matchLabels: Invalid value: "a b": a valid label must be an '
                "empty string or consist of alphanumeric characters, '-', '_' or '.', and must "
                "start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',"
                "  or '12345', regex used for validation is "
                "'(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
            ],
            id="a label value with a space",
        ),
        pytest.param(
            {
                "selector": {
                    "matchExpressions": [{"key": "app", "operator": "In", "values": ["ok", "-x"]}]
                }
            },
            [
                'spec.selector.matchExpressions[0].values[1]: Invalid value: "-x": a valid '
                "label must be an empty string or consist of alphanumeric characters, '-', '_' "
                "or '.', and must start and end with an alphanumeric character (e.g. "
                "'MyValue',  or 'my_value',  or '12345', regex used for validation is "
                "'(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
            ],
            id="an In value that is not a label value (does not convert)",
        ),
        pytest.param(
            {"selector": "app=a"},
            ['spec.selector: Invalid value: "app=a": must be an object'],
            id="selector not an object",
        ),
    ],
)
def test_selection(selection, expected):
    check(pub(max_unavailable="30%", **selection), expected)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("EVICT", [], id="EVICT accepted (v1.4)"),
        pytest.param("DELETE,EVICT", [], id="DELETE,EVICT accepted"),
        pytest.param("UPDATE,DELETE", [], id="UPDATE,DELETE accepted"),
        pytest.param("", [BAD_OPS], id="an empty value is one bad item"),
        pytest.param("DELETE,", [BAD_OPS], id="a trailing comma is a bad item"),
        pytest.param("DELETE, UPDATE", [BAD_OPS], id="items are not trimmed"),
        pytest.param("delete", [BAD_OPS], id="case matters"),
        pytest.param("xx,yy", [BAD_OPS, BAD_OPS], id="one error per bad item"),
    ],
)
def test_protect_operations(value, expected):
    check(pub(**TARGET_MAX, annotations={OPS: value}), expected)


def test_one_message_per_distinct_error():
    errors = validate_pod_unavailable_budget(
        obj=pub(annotations={OPS: "xx,yy"}), old=None, siblings=()
    )
    assert denial_message(errors) == f"[{BAD_OPS}, {NONE_OF_BOTH}, {NO_NUMBER}]"
    assert denial_message(errors[:1]) == BAD_OPS
    assert denial_message([]) == ""


@pytest.mark.parametrize(
    ("mine", "theirs", "conflict"),
    [
        pytest.param({"app": "a"}, {"app": "a"}, True, id="app=a vs app=a"),
        pytest.param({"app": "a"}, {"app": "b"}, False, id="app=a vs app=b"),
        pytest.param(
            {"app": "a"}, {"app": "a", "tier": "x"}, False, id="different key sets never conflict"
        ),
        pytest.param(
            {"a": "1", "b": "2"}, {"b": "2", "a": "1"}, True, id="key order is irrelevant"
        ),
    ],
)
def test_selector_conflicts(mine, theirs, conflict):
    obj = pub(selector=labels(**mine), max_unavailable=1)
    errors = validate_pod_unavailable_budget(
        obj=obj, old=None, siblings=[sibling("other", selector=theirs)]
    )
    assert bool(errors) is conflict


@pytest.mark.parametrize(
    ("mine", "theirs", "conflict"),
    [
        pytest.param(("app", "In", ["a", "b"]), ("app", "Exists", []), True, id="In vs Exists"),
        pytest.param(("app", "In", ["a", "b"]), ("app", "In", ["b"]), True, id="In vs In, shared"),
        pytest.param(("app", "In", ["a"]), ("app", "In", ["b"]), False, id="In vs In, disjoint"),
        pytest.param(
            ("app", "In", ["a", "b"]), ("app", "NotIn", ["a"]), True, id="In vs NotIn, b left"
        ),
        pytest.param(
            ("app", "In", ["a"]), ("app", "NotIn", ["a", "c"]), False, id="In vs NotIn, covered"
        ),
        pytest.param(
            ("app", "NotIn", ["a"]), ("app", "DoesNotExist", []), True, id="NotIn vs DoesNotExist"
        ),
        pytest.param(
            ("app", "DoesNotExist", []), ("app", "Exists", []), False, id="DoesNotExist vs Exists"
        ),
        pytest.param(("app", "Exists", []), ("app", "Exists", []), True, id="Exists vs Exists"),
    ],
)
def test_loose_overlap_of_expressions(mine, theirs, conflict):
    key, operator, values = mine
    expression = {"key": key, "operator": operator}
    if values:
        expression["values"] = values
    obj = pub(selector={"matchExpressions": [expression]}, max_unavailable=1)
    other = sibling("other")
    other.selector.match_expressions.add(key=theirs[0], operator=theirs[1], values=theirs[2])
    errors = validate_pod_unavailable_budget(obj=obj, old=None, siblings=[other])
    assert bool(errors) is conflict


def test_conflicts_report_the_first_sibling_by_name_and_skip_itself():
    siblings = [
        sibling("pub-z", target=("apps/v1", "Deployment", "deployment-test")),
        sibling("pub-test", target=("apps/v1", "Deployment", "deployment-test")),
        sibling("pub-b", target=("apps/v2", "Deployment", "deployment-test")),
        sibling("pub-a", selector={"app": "pub-controller"}),
    ]
    check(pub(**TARGET_MAX), [target_conflict("pub-b")], siblings=siblings)


def test_targetref_and_selector_budgets_never_conflict():
    check(
        pub(**TARGET_MAX),
        [],
        siblings=[sibling("pub-other", selector={"app": "pub-controller"})],
    )
    check(
        pub(**SELECTOR_MIN),
        [],
        siblings=[sibling("pub-other", target=("apps/v1", "Deployment", "deployment-test"))],
    )


@pytest.mark.parametrize(
    ("new", "old", "expected"),
    [
        pytest.param(pub(**TARGET_MAX), pub(**TARGET_MAX), [], id="unchanged targetRef"),
        pytest.param(
            pub(target=DEPLOY, max_unavailable="50%"),
            pub(**TARGET_MAX),
            [],
            id="maxUnavailable may change",
        ),
        pytest.param(
            pub(target={**DEPLOY, "apiVersion": "apps/v1beta2"}, max_unavailable="30%"),
            pub(**TARGET_MAX),
            [IMMUTABLE],
            id="the targetRef version counts as a change",
        ),
        pytest.param(
            pub(selector={"matchLabels": {"app": "a"}, "matchExpressions": []}, max_unavailable=1),
            pub(selector={"matchLabels": {"app": "a"}}, max_unavailable=1),
            [],
            id="an empty matchExpressions list equals an absent one",
        ),
        pytest.param(
            pub(**SELECTOR_MIN),
            pub(**TARGET_MAX),
            [IMMUTABLE],
            id="switching from targetRef to selector",
        ),
    ],
)
def test_update(new, old, expected):
    check(new, expected, old=old)


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        pytest.param({"metadata": {"name": "x"}}, ["spec: Required value"], id="no spec at all"),
        pytest.param(
            {"metadata": {"name": "x"}, "spec": None}, ["spec: Required value"], id="a null spec"
        ),
        pytest.param(
            {"metadata": {"name": "x"}, "spec": []},
            ["spec: Invalid value: []: must be an object"],
            id="spec not an object",
        ),
        pytest.param(
            {
                "metadata": {"name": "x", "annotations": {OPS: "nope"}},
                "spec": None,
            },
            [BAD_OPS, "spec: Required value"],
            id="annotation errors come first, even without a spec",
        ),
    ],
)
def test_malformed_objects_never_raise(obj, expected):
    check(obj, expected)
