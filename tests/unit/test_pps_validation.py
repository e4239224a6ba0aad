"""Table tests of PersistentPodState validation (services.placement.validation, SPEC 1.3).

Rows named "scenario N" are SPEC 1.6's acceptance cases, taken from OpenKruise's
``persistent_validating_test.go``; each asserts the exact messages, not only their count.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from services.placement.validation import (
    FieldError,
    SiblingRef,
    denial_message,
    validate_persistent_pod_state,
)

ZONE = "topology.kubernetes.io/zone"
HOSTNAME = "kubernetes.io/hostname"
STS_NAME = "statefulset-test"
ABSENT: Any = object()  # a builder argument whose key is left out of the object


def ref(api_version: Any = "apps/v1", kind: Any = "StatefulSet", name: Any = STS_NAME) -> Any:
    return {"apiVersion": api_version, "kind": kind, "name": name}


def pps(
    *,
    name: str = "per-test",
    target: Any = None,
    required: Any = (ZONE,),
    preferred: Any = ((100, (HOSTNAME,)),),
    **extra: Any,
) -> dict[str, Any]:
    """OpenKruise's ``ppsDemo``: required zone, preferred hostname with weight 100.

    ``required=None`` / ``preferred=None`` leave the field out; a dict or str passes through.
    """
    spec: dict[str, Any] = {"targetRef": ref() if target is None else target}
    if target is ABSENT:
        del spec["targetRef"]
    if required is not None:
        spec["requiredPersistentTopology"] = (
            {"nodeTopologyKeys": list(required)} if isinstance(required, tuple) else required
        )
    if preferred is not None:
        spec["preferredPersistentTopology"] = (
            [{"weight": w, "preference": {"nodeTopologyKeys": list(keys)}} for w, keys in preferred]
            if isinstance(preferred, tuple)
            else preferred
        )
    spec.update(extra)
    return {
        "apiVersion": "apps.kruise.io/v1alpha1",
        "kind": "PersistentPodState",
        "metadata": {"name": name, "namespace": "default"},
        "spec": spec,
    }


def sibling(
    name: str,
    target: str = STS_NAME,
    *,
    api_version: str = "apps/v1",
    kind: str = "StatefulSet",
    deleting: bool = False,
) -> SiblingRef:
    return SiblingRef(
        name=name, api_version=api_version, kind=kind, target_name=target, deleting=deleting
    )


def shown(value: Any) -> str:
    """A value as the messages print it (compact JSON)."""
    return json.dumps(value, separators=(",", ":"))


def on_ref(detail: str, target: Any = None) -> str:
    return f"spec.targetRef: Invalid value: {shown(ref() if target is None else target)}: {detail}"


EMPTY_REF = "empty TargetReference is not valid"
NOT_STS = "TargetReference.Kind must be StatefulSet"
NO_TOPOLOGY = "TopologyConstraint and TopologyPreference cannot be empty at the same time"
MODIFIED = "spec.targetRef: Required value: targetRef cannot be modified"


def no_topology(obj: dict[str, Any]) -> str:
    """The topology error, which shows the whole spec as its value."""
    return f"spec: Invalid value: {shown(obj['spec'])}: {NO_TOPOLOGY}"


def conflict(other: str, target: Any = None) -> str:
    return on_ref(f"targetReference is in conflict with other PersistentPodState {other}", target)


def check(
    obj: dict[str, Any],
    expected: list[str],
    *,
    old: dict[str, Any] | None = None,
    siblings: tuple[SiblingRef, ...] = (),
    statefulset_like: tuple[tuple[str, str], ...] = (),
) -> None:
    errors = validate_persistent_pod_state(
        obj=obj, old=old, siblings=siblings, statefulset_like=statefulset_like
    )
    assert all(isinstance(error, FieldError) for error in errors)
    assert [str(error) for error in errors] == expected
    assert len(errors) == len(expected)


# The SPEC scenarios spell their messages out; the other tables build them with the helpers.
STS_JSON = '{"apiVersion":"apps/v1","kind":"StatefulSet","name":"statefulset-test"}'
EMPTY_JSON = '{"apiVersion":"","kind":"","name":""}'


# --- the rules, SPEC scenarios first -------------------------------------------------------


WRONG_GROUP = (
    'spec.targetRef.apiVersion: Invalid value: "{}": '
    "a StatefulSet target must be in API group apps or apps.kruise.io"
)


@pytest.mark.parametrize(
    ("obj", "old", "siblings", "expected"),
    [
        pytest.param(
            pps(),
            None,
            (),
            [],
            id="scenario 7: apps/v1 StatefulSet, required zone, preferred hostname 100 is valid",
        ),
        pytest.param(
            pps(target=ref("", "", "")),
            None,
            (),
            [
                f"spec.targetRef: Invalid value: {EMPTY_JSON}: empty TargetReference is not valid",
                f"spec.targetRef: Invalid value: {EMPTY_JSON}: "
                "TargetReference.Kind must be StatefulSet",
            ],
            id="scenario 8: an all-empty targetRef is empty and not a StatefulSet (2 errors)",
        ),
        pytest.param(
            pps(target=ref(kind="Deployment", name="test")),
            None,
            (),
            [
                "spec.targetRef: Invalid value: "
                '{"apiVersion":"apps/v1","kind":"Deployment","name":"test"}: '
                "TargetReference.Kind must be StatefulSet"
            ],
            id="scenario 9: targetRef of kind Deployment is refused",
        ),
        pytest.param(
            pps(required=None, preferred=None),
            None,
            (),
            [
                f'spec: Invalid value: {{"targetRef":{STS_JSON}}}: '
                "TopologyConstraint and TopologyPreference cannot be empty at the same time"
            ],
            id="scenario 10: neither required nor preferred topology is refused",
        ),
        pytest.param(
            pps(),
            None,
            (sibling("pps1"), sibling("pps2", "statefulset-test2")),
            [
                f"spec.targetRef: Invalid value: {STS_JSON}: "
                "targetReference is in conflict with other PersistentPodState pps1"
            ],
            id="scenario 11: another PPS of the namespace targets the same StatefulSet",
        ),
        pytest.param(
            pps(),
            None,
            (sibling("pps1", "statefulset-test1"), sibling("pps2", "statefulset-test2")),
            [],
            id="scenario 11: other PPSs of the namespace target other StatefulSets",
        ),
        pytest.param(
            pps(target=ref(name="statefulset-changed")),
            pps(),
            (),
            ["spec.targetRef: Required value: targetRef cannot be modified"],
            id="scenario 12: an update changing targetRef is refused",
        ),
        pytest.param(
            pps(), pps(), (), [], id="scenario 12: an update keeping targetRef is admitted"
        ),
    ],
)
def test_spec_scenarios(
    obj: dict[str, Any],
    old: dict[str, Any] | None,
    siblings: tuple[SiblingRef, ...],
    expected: list[str],
) -> None:
    check(obj, expected, old=old, siblings=siblings)


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        pytest.param(
            pps(target=ref(api_version="apps.kruise.io/v1beta1")),
            [],
            id="Advanced StatefulSet apps.kruise.io/v1beta1 is a valid target",
        ),
        pytest.param(
            pps(target=ref(api_version="v1")),
            [WRONG_GROUP.format("v1")],
            id="a core-group StatefulSet is refused: no such workload exists",
        ),
        pytest.param(
            pps(target=ref(api_version="a/b/c")),
            [
                'spec.targetRef.apiVersion: Invalid value: "a/b/c": '
                "unexpected GroupVersion string: a/b/c"
            ],
            id="apiVersion with two slashes does not parse",
        ),
        pytest.param(
            pps(target=ref(api_version="a/b/c", kind="Deployment")),
            [
                'spec.targetRef.apiVersion: Invalid value: "a/b/c": '
                "unexpected GroupVersion string: a/b/c",
                on_ref(NOT_STS, ref(api_version="a/b/c", kind="Deployment")),
            ],
            id="bad apiVersion and bad kind are two errors",
        ),
        pytest.param(
            pps(target=ref(api_version="")),
            [on_ref(EMPTY_REF, ref(api_version=""))],
            id="empty apiVersion alone is only the empty rule",
        ),
        pytest.param(
            pps(target=ref(name="")),
            [on_ref(EMPTY_REF, ref(name=""))],
            id="empty name is the empty rule",
        ),
        pytest.param(
            pps(target=ref(kind="")),
            [on_ref(EMPTY_REF, ref(kind="")), on_ref(NOT_STS, ref(kind=""))],
            id="empty kind is empty and not a StatefulSet",
        ),
        pytest.param(
            pps(target=ref(api_version="example.io/v1")),
            [WRONG_GROUP.format("example.io/v1")],
            id="a StatefulSet of another group is refused (v1.2 admitted and ignored it)",
        ),
        pytest.param(pps(required=None), [], id="preferred topology alone is enough"),
        pytest.param(pps(preferred=None), [], id="required topology alone is enough"),
        pytest.param(
            pps(required={}, preferred=None),
            [],
            id="a required topology without keys is still set (keys not validated)",
        ),
        pytest.param(
            pps(required=None, preferred=[]),
            [no_topology(pps(required=None, preferred=[]))],
            id="an empty preferred list counts as no topology",
        ),
        pytest.param(
            pps(preferred=((0, (HOSTNAME,)), (1000, ("",)), (-5, ()))),
            [],
            id="weight range and empty keys are not validated (v1.2)",
        ),
        pytest.param(
            pps(persistentPodStateRetentionPolicy="Sometimes"),
            [],
            id="retention policy value is not validated (v1.2)",
        ),
    ],
)
def test_object_rules(obj: dict[str, Any], expected: list[str]) -> None:
    check(obj, expected)


@pytest.mark.parametrize(
    ("obj", "old", "siblings", "expected"),
    [
        pytest.param(
            pps(target=ref(api_version="apps/v1beta1")),
            pps(),
            (),
            [MODIFIED],
            id="update changing only the version is a modification (deep compare)",
        ),
        pytest.param(
            pps(),
            pps(required=None),
            (),
            [],
            id="update changing topology only is admitted",
        ),
        pytest.param(
            pps(),
            None,
            (sibling("pps1", api_version="apps/v1beta1"),),
            [conflict("pps1")],
            id="conflict ignores the version",
        ),
        pytest.param(
            pps(),
            None,
            (sibling("pps1", api_version="apps.kruise.io/v1beta1"),),
            [],
            id="same name and kind in another group is no conflict",
        ),
        pytest.param(
            pps(),
            None,
            (sibling("pps1", kind="CloneSet"),),
            [],
            id="same name in another kind is no conflict",
        ),
        pytest.param(
            pps(),
            None,
            (sibling("pps-b"), sibling("pps-a")),
            [conflict("pps-a")],
            id="two conflicting siblings give one error naming the first by name",
        ),
        pytest.param(
            pps(),
            None,
            (sibling("per-test"),),
            [],
            id="a sibling with the object's own name is skipped",
        ),
        pytest.param(
            pps(),
            None,
            (sibling("pps1", deleting=True),),
            [conflict("pps1")],
            id="a sibling being deleted still conflicts (OpenKruise skips none)",
        ),
        pytest.param(
            pps(),
            None,
            (sibling("pps1", api_version="a/b/c"),),
            [],
            id="a sibling whose apiVersion does not parse never conflicts",
        ),
        pytest.param(
            pps(target=ref(kind="Deployment")),
            pps(),
            (sibling("pps1", kind="Deployment"),),
            [
                on_ref(NOT_STS, ref(kind="Deployment")),
                MODIFIED,
                conflict("pps1", ref(kind="Deployment")),
            ],
            id="all rules at once: spec errors, then modification, then conflict",
        ),
    ],
)
def test_update_and_conflict_rules(
    obj: dict[str, Any],
    old: dict[str, Any] | None,
    siblings: tuple[SiblingRef, ...],
    expected: list[str],
) -> None:
    check(obj, expected, old=old, siblings=siblings)


FOO_SET = ("apps.example.io", "FooSet")
POD_SET = ("", "PodSet")


@pytest.mark.parametrize(
    ("target", "statefulset_like", "expected"),
    [
        pytest.param(
            ref("apps.example.io/v1", "FooSet"), (FOO_SET,), [], id="whitelisted kind is accepted"
        ),
        pytest.param(ref("v1", "PodSet"), (POD_SET,), [], id="whitelisted core-group kind"),
        pytest.param(
            ref("apps.kruise.io/v1beta1", "StatefulSet"),
            (FOO_SET,),
            [],
            id="StatefulSet stays accepted beside a whitelist",
        ),
        pytest.param(
            ref("other.io/v1", "FooSet"),
            (FOO_SET, POD_SET, FOO_SET),
            [
                on_ref(
                    f"{NOT_STS} or a StatefulSet-like kind: FooSet.apps.example.io, PodSet",
                    ref("other.io/v1", "FooSet"),
                )
            ],
            id="whitelisted kind in another group is refused, message lists the kinds",
        ),
        pytest.param(
            ref("a/b/c", "FooSet"),
            (FOO_SET,),
            [
                'spec.targetRef.apiVersion: Invalid value: "a/b/c": '
                "unexpected GroupVersion string: a/b/c",
                on_ref(
                    f"{NOT_STS} or a StatefulSet-like kind: FooSet.apps.example.io",
                    ref("a/b/c", "FooSet"),
                ),
            ],
            id="whitelist cannot match an apiVersion that does not parse",
        ),
    ],
)
def test_statefulset_like_whitelist(
    target: dict[str, str],
    statefulset_like: tuple[tuple[str, str], ...],
    expected: list[str],
) -> None:
    check(pps(target=target), expected, statefulset_like=statefulset_like)


# --- malformed input: one precise error per bad field, never an exception -------------------


def without_spec() -> dict[str, Any]:
    obj = pps()
    del obj["spec"]
    return obj


def with_spec(spec: Any) -> dict[str, Any]:
    return {**pps(), "spec": spec}


KEYS = "nodeTopologyKeys"
PREFERRED = "spec.preferredPersistentTopology"


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        pytest.param(without_spec(), ["spec: Required value"], id="spec missing"),
        pytest.param(with_spec(None), ["spec: Required value"], id="spec null"),
        pytest.param(
            with_spec(["web"]), ['spec: Invalid value: ["web"]: must be an object'], id="spec list"
        ),
        pytest.param(
            pps(target="web"),
            ['spec.targetRef: Invalid value: "web": must be an object'],
            id="targetRef a string",
        ),
        pytest.param(
            pps(target=ABSENT),
            [on_ref(EMPTY_REF, ref("", "", "")), on_ref(NOT_STS, ref("", "", ""))],
            id="targetRef missing reads as empty, as Go decodes it",
        ),
        pytest.param(
            pps(target=ref(kind=None)),
            [on_ref(EMPTY_REF, ref(kind="")), on_ref(NOT_STS, ref(kind=""))],
            id="targetRef.kind null reads as empty",
        ),
        pytest.param(
            pps(target=ref(api_version=1)),
            ["spec.targetRef.apiVersion: Invalid value: 1: must be a string"],
            id="apiVersion an int",
        ),
        pytest.param(
            pps(target=ref(api_version=1, name={"a": 1})),
            [
                "spec.targetRef.apiVersion: Invalid value: 1: must be a string",
                'spec.targetRef.name: Invalid value: {"a":1}: must be a string',
            ],
            id="every bad targetRef field is reported",
        ),
        pytest.param(
            pps(required="zone"),
            ['spec.requiredPersistentTopology: Invalid value: "zone": must be an object'],
            id="requiredPersistentTopology a string",
        ),
        pytest.param(
            pps(required={KEYS: ZONE}),
            [
                f"spec.requiredPersistentTopology.{KEYS}: Invalid value: "
                f'"{ZONE}": must be a list of strings'
            ],
            id="nodeTopologyKeys a string",
        ),
        pytest.param(
            pps(required={KEYS: [ZONE, 7]}),
            [f"spec.requiredPersistentTopology.{KEYS}[1]: Invalid value: 7: must be a string"],
            id="nodeTopologyKeys with an int item",
        ),
        pytest.param(
            pps(required="zone", preferred=None),
            ['spec.requiredPersistentTopology: Invalid value: "zone": must be an object'],
            id="malformed required topology does not also count as no topology",
        ),
        pytest.param(
            pps(preferred={"weight": 100}),
            [f'{PREFERRED}: Invalid value: {{"weight":100}}: must be a list'],
            id="preferredPersistentTopology not a list",
        ),
        pytest.param(
            pps(preferred=["x"]),
            [f'{PREFERRED}[0]: Invalid value: "x": must be an object'],
            id="preferred item a string",
        ),
        pytest.param(
            pps(preferred=[{"weight": "100", "preference": {KEYS: [HOSTNAME]}}]),
            [f'{PREFERRED}[0].weight: Invalid value: "100": must be a 32-bit integer'],
            id="weight a string",
        ),
        pytest.param(
            pps(preferred=[{"weight": True}, {"weight": 1.5}, {"weight": 2**31}]),
            [
                f"{PREFERRED}[0].weight: Invalid value: true: must be a 32-bit integer",
                f"{PREFERRED}[1].weight: Invalid value: 1.5: must be a 32-bit integer",
                f"{PREFERRED}[2].weight: Invalid value: 2147483648: must be a 32-bit integer",
            ],
            id="weight a bool, a float, beyond int32: every item reported",
        ),
        pytest.param(
            pps(preferred=[{"weight": 1, "preference": {KEYS: HOSTNAME}}]),
            [
                f"{PREFERRED}[0].preference.{KEYS}: Invalid value: "
                f'"{HOSTNAME}": must be a list of strings'
            ],
            id="preference nodeTopologyKeys a string",
        ),
        pytest.param(
            pps(preferred=[{"weight": 1, "preference": []}]),
            [f"{PREFERRED}[0].preference: Invalid value: []: must be an object"],
            id="preference a list",
        ),
        pytest.param(
            pps(persistentPodStateRetentionPolicy=5),
            ["spec.persistentPodStateRetentionPolicy: Invalid value: 5: must be a string"],
            id="retention policy an int",
        ),
        pytest.param(
            {**pps(), "metadata": "web"},
            [],
            id="malformed metadata is not this validator's business",
        ),
    ],
)
def test_malformed_object(obj: dict[str, Any], expected: list[str]) -> None:
    check(obj, expected)


@pytest.mark.parametrize(
    "old",
    [
        pytest.param({}, id="stored object without spec"),
        pytest.param({"spec": "x"}, id="stored spec a string"),
        pytest.param({"spec": {"targetRef": 3}}, id="stored targetRef an int"),
        pytest.param(pps(target=ref(name=7)), id="stored targetRef.name an int"),
    ],
)
def test_malformed_stored_object_reads_as_a_modification(old: dict[str, Any]) -> None:
    check(pps(), [MODIFIED], old=old)


def test_malformed_target_skips_the_rules_that_need_it() -> None:
    check(
        pps(target="web"),
        ['spec.targetRef: Invalid value: "web": must be an object'],
        old=pps(),
        siblings=(sibling("pps1", "web"),),
    )


WEIRD = [None, "", "x", 0, 2**70, 1.5, True, [], [1, "a"], {}, {"a": None}, object()]
weird_value = pytest.mark.parametrize("value", WEIRD, ids=[repr(v)[:16] for v in WEIRD])
every_field = pytest.mark.parametrize(
    "field",
    [
        "spec",
        "spec.targetRef",
        "spec.targetRef.apiVersion",
        "spec.targetRef.kind",
        "spec.targetRef.name",
        "spec.requiredPersistentTopology",
        "spec.requiredPersistentTopology.nodeTopologyKeys",
        "spec.preferredPersistentTopology",
        "spec.preferredPersistentTopology.0",
        "spec.preferredPersistentTopology.0.weight",
        "spec.preferredPersistentTopology.0.preference",
        "spec.preferredPersistentTopology.0.preference.nodeTopologyKeys",
        "spec.persistentPodStateRetentionPolicy",
    ],
)


@every_field
@weird_value
def test_any_value_anywhere_never_raises(field: str, value: Any) -> None:
    obj = pps()
    *parents, last = field.split(".")
    node: Any = obj
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    errors = validate_persistent_pod_state(obj=obj, old=obj, siblings=[sibling("pps1")])
    assert isinstance(denial_message(errors), str)


# --- rendering ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        pytest.param(
            FieldError("spec.targetRef", "Invalid value", "empty", ref("", "", "")),
            'spec.targetRef: Invalid value: {"apiVersion":"","kind":"","name":""}: empty',
            id="Invalid value shows the value as JSON",
        ),
        pytest.param(
            FieldError("spec.x", "Invalid value", "bad"),
            "spec.x: Invalid value: null: bad",
            id="Invalid value of None shows null",
        ),
        pytest.param(
            FieldError("spec.x", "Required value", "", "ignored"),
            "spec.x: Required value",
            id="Required value shows no value, and no detail when empty",
        ),
        pytest.param(
            FieldError("spec.targetRef", "Forbidden", "targetRef is immutable", ref()),
            "spec.targetRef: Forbidden: targetRef is immutable",
            id="Forbidden shows no value",
        ),
        pytest.param(
            FieldError("spec.keys[1]", "Duplicate value", "", "zone"),
            'spec.keys[1]: Duplicate value: "zone"',
            id="Duplicate value shows the value, as Kubernetes does",
        ),
        pytest.param(
            FieldError("spec.x", "Invalid value", "bad", {1}),
            'spec.x: Invalid value: "{1}": bad',
            id="a value JSON cannot encode shows its repr",
        ),
    ],
)
def test_field_error_wording(error: FieldError, expected: str) -> None:
    assert str(error) == expected


def test_circular_value_renders_without_raising() -> None:
    loop: dict[str, Any] = {}
    loop["self"] = loop
    assert str(FieldError("spec", "Invalid value", "loop", loop)) == (
        "spec: Invalid value: {'self': {...}}: loop"
    )


A = FieldError("spec.a", "Required value", "")
B = FieldError("spec.b", "Forbidden", "no")


@pytest.mark.parametrize(
    ("errors", "expected"),
    [
        pytest.param([], "", id="no errors: empty"),
        pytest.param([A], "spec.a: Required value", id="one error as is"),
        pytest.param([A, B], "[spec.a: Required value, spec.b: Forbidden: no]", id="several"),
        pytest.param([A, B, A], "[spec.a: Required value, spec.b: Forbidden: no]", id="repeats"),
        pytest.param([A, A], "spec.a: Required value", id="one distinct message has no brackets"),
    ],
)
def test_denial_message_aggregates_like_kubernetes(errors: list[FieldError], expected: str) -> None:
    assert denial_message(errors) == expected


def test_denial_message_of_scenario_8() -> None:
    errors = validate_persistent_pod_state(obj=pps(target=ref("", "", "")), old=None, siblings=())
    empty = shown(ref("", "", ""))
    assert denial_message(errors) == (
        f"[spec.targetRef: Invalid value: {empty}: {EMPTY_REF}, "
        f"spec.targetRef: Invalid value: {empty}: {NOT_STS}]"
    )
