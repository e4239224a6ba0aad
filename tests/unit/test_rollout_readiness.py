"""The KruisePodReady condition (services.rollout.readiness, SPEC 3.4): scenario 6 and friends.

Scenario 6 is OpenKruise's ``pod_readiness_utils_test.go``: ``pod0`` has the readiness gate
``KruisePodReady``, ``pod1`` has none; keys (ua1, foo) and (ua1, bar) are added to both and
then removed from pod0 one by one.
"""

from __future__ import annotations

import copy
from typing import Any

import jsonpatch
import pytest

from kruise.common.v1 import views_pb2
from services.rollout.pods import KRUISE_POD_READY
from services.rollout.readiness import (
    add_not_ready_key,
    controller_group,
    dump_message,
    initial_condition,
    inject_readiness_gate,
    needs_initial_condition,
    parse_message,
    remove_not_ready_key,
    rfc3339,
)

NOW = 1_700_000_000_000  # unix ms; every table's "now"
NOW_TEXT = "2023-11-14T22:13:20Z"
EARLIER = NOW - 60_000
EARLIER_TEXT = "2023-11-14T22:12:20Z"
GATE = (KRUISE_POD_READY,)
FOO = '[{"userAgent":"ua1","key":"foo"}]'
BAR = '[{"userAgent":"ua1","key":"bar"}]'
BAR_FOO = '[{"userAgent":"ua1","key":"bar"},{"userAgent":"ua1","key":"foo"}]'
GATE_FALSE = 'the status of pod readiness gate "KruisePodReady" is not "True", but False'


def cond(type_: str, status: str, message: str = "", *, reason: str = "") -> views_pb2.Condition:
    return views_pb2.Condition(
        type=type_,
        status=status,
        reason=reason,
        message=message,
        last_transition_unix_ms=EARLIER,
    )


def pod(
    name: str = "pod0",
    *conditions: views_pb2.Condition,
    gates: tuple[str, ...] = GATE,
    deleting: bool = False,
) -> views_pb2.PodView:
    view = views_pb2.PodView(phase="Running", readiness_gates=gates, conditions=conditions)
    view.meta.namespace = "default"
    view.meta.name = name
    view.meta.deletion_unix_ms = NOW if deleting else 0
    return view


def kpr(status: str, message: str = "") -> views_pb2.Condition:
    return cond(KRUISE_POD_READY, status, message)


READY = cond("Ready", "True")
CONTAINERS_READY = cond("ContainersReady", "True")


def status_of(*conditions: dict[str, Any]) -> dict[str, Any]:
    return {"status": {"conditions": list(conditions)}}


def kpr_json(status: str, message: str) -> dict[str, Any]:
    return {
        "type": KRUISE_POD_READY,
        "status": status,
        "message": message,
        "lastTransitionTime": NOW_TEXT,
    }


def ready_false(message: str = GATE_FALSE) -> dict[str, Any]:
    return {
        "type": "Ready",
        "status": "False",
        "reason": "ReadinessGatesNotReady",
        "message": message,
        "lastTransitionTime": NOW_TEXT,
    }


def merged(view: views_pb2.PodView, patch: dict[str, Any] | None) -> views_pb2.PodView:
    """The pod after the API server applies ``patch`` (conditions merge by type)."""
    out = views_pb2.PodView()
    out.CopyFrom(view)
    for change in (patch or {}).get("status", {}).get("conditions", []):
        target = next((c for c in out.conditions if c.type == change["type"]), None)
        if target is None:
            target = out.conditions.add(type=change["type"])
        target.status = change.get("status", target.status)
        target.reason = change.get("reason", target.reason)
        target.message = change.get("message", target.message)
        target.last_transition_unix_ms = NOW
    return out


@pytest.mark.parametrize(
    ("view", "user_agent", "key", "expected"),
    [
        pytest.param(
            pod("pod0"),
            "ua1",
            "foo",
            status_of(kpr_json("False", FOO)),
            id="scenario 6 step 1: pod0 has the gate, no condition; add ua1/foo → False [foo]",
        ),
        pytest.param(
            pod("pod0", kpr("False", FOO)),
            "ua1",
            "bar",
            status_of(kpr_json("False", BAR_FOO)),
            id="scenario 6 step 2: pod0 add ua1/bar → False [bar, foo], sorted by key",
        ),
        pytest.param(
            pod("pod1", gates=()),
            "ua1",
            "foo",
            None,
            id="scenario 6 step 1: pod1 has no gate; add ua1/foo → nothing, no condition",
        ),
        pytest.param(
            pod("pod0", kpr("False", BAR_FOO)),
            "ua1",
            "foo",
            None,
            id="add an entry already listed while False → nothing",
        ),
        pytest.param(
            pod("pod0", kpr("True", FOO)),
            "ua1",
            "foo",
            None,
            id="add an entry already listed while True → nothing (as OpenKruise)",
        ),
        pytest.param(
            pod("pod0", kpr("True", "[]")),
            "Lifecycle",
            "preDeleteHook",
            status_of(kpr_json("False", '[{"userAgent":"Lifecycle","key":"preDeleteHook"}]')),
            id="add to True with [] → False with one entry; no Ready condition, no Ready write",
        ),
        pytest.param(
            pod("pod0", kpr("True", "")),
            "ua1",
            "foo",
            status_of(kpr_json("False", FOO)),
            id="add to True with an empty message (the controller's initial condition)",
        ),
        pytest.param(
            pod("pod0", kpr("False", '[{"userAgent":"ua2","key":"a"}]')),
            "ua1",
            "z",
            status_of(
                kpr_json("False", '[{"userAgent":"ua1","key":"z"},{"userAgent":"ua2","key":"a"}]')
            ),
            id="entries sort by userAgent before key",
        ),
        pytest.param(
            pod("pod0", kpr("False", "not json")),
            "ua1",
            "foo",
            status_of(kpr_json("False", FOO)),
            id="an unreadable message counts as no entries",
        ),
        pytest.param(
            pod("pod0", kpr("True", "[]"), CONTAINERS_READY, READY),
            "Lifecycle",
            "preDeleteHook",
            status_of(
                kpr_json("False", '[{"userAgent":"Lifecycle","key":"preDeleteHook"}]'),
                ready_false(),
            ),
            id="scenario 7 step 1: ready pod, add preDeleteHook → KruisePodReady and Ready False",
        ),
        pytest.param(
            pod("pod0", CONTAINERS_READY, READY),
            "ua1",
            "foo",
            status_of(kpr_json("False", FOO), ready_false()),
            id="missing condition created False (v1.2 left status empty), Ready False",
        ),
        pytest.param(
            pod("pod0", kpr("True"), CONTAINERS_READY, READY, gates=("example.com/lb", *GATE)),
            "ua1",
            "foo",
            status_of(
                kpr_json("False", FOO),
                ready_false(
                    'corresponding condition of pod readiness gate "example.com/lb" does not'
                    f" exist., {GATE_FALSE}"
                ),
            ),
            id="Ready message lists every failing gate in gate order, joined by ', '",
        ),
        pytest.param(
            pod("pod0", kpr("True"), cond("ContainersReady", "False"), cond("Ready", "False")),
            "ua1",
            "foo",
            status_of(kpr_json("False", FOO)),
            id="containers not ready → Ready left to kubelet",
        ),
        pytest.param(
            pod("pod0", kpr("True"), CONTAINERS_READY),
            "ua1",
            "foo",
            status_of(kpr_json("False", FOO)),
            id="no Ready condition → none created",
        ),
        pytest.param(
            pod("pod0", kpr("False", BAR), CONTAINERS_READY, cond("Ready", "False")),
            "ua1",
            "foo",
            status_of(kpr_json("False", BAR_FOO)),
            id="Ready already False → not rewritten",
        ),
    ],
)
def test_add_not_ready_key(view, user_agent, key, expected):
    assert add_not_ready_key(view, user_agent=user_agent, key=key, now_ms=NOW) == expected


def test_add_keeps_the_conditions_reason():
    view = pod("pod0", cond(KRUISE_POD_READY, "True", "[]", reason="Initial"))
    patch = add_not_ready_key(view, user_agent="ua1", key="foo", now_ms=NOW)
    assert patch == status_of({**kpr_json("False", FOO), "reason": "Initial"})


@pytest.mark.parametrize(
    ("view", "user_agent", "key", "expected"),
    [
        pytest.param(
            pod("pod0", kpr("False", BAR_FOO)),
            "ua1",
            "foo",
            status_of(kpr_json("False", BAR)),
            id="scenario 6 step 3: pod0 remove ua1/foo → still False [bar]",
        ),
        pytest.param(
            pod("pod0", kpr("False", BAR)),
            "ua1",
            "bar",
            status_of(kpr_json("True", "[]")),
            id="scenario 6 step 4: pod0 remove ua1/bar → True []",
        ),
        pytest.param(
            pod("pod1", gates=()),
            "ua1",
            "foo",
            None,
            id="scenario 6: pod1 has no gate; remove → nothing",
        ),
        pytest.param(
            pod("pod0"),
            "ua1",
            "foo",
            None,
            id="remove with no condition → nothing",
        ),
        pytest.param(
            pod("pod0", kpr("False", BAR)),
            "ua1",
            "foo",
            None,
            id="remove an entry not listed → nothing",
        ),
        pytest.param(
            pod("pod0", kpr("False", FOO), CONTAINERS_READY, cond("Ready", "False")),
            "ua1",
            "foo",
            status_of(kpr_json("True", "[]")),
            id="remove the last entry never writes Ready (kubelet recomputes it)",
        ),
        pytest.param(
            pod(
                "pod0",
                kpr("False", '[{"userAgent":"Lifecycle","key":"preUpdateHook"}]'),
                CONTAINERS_READY,
                READY,
            ),
            "Lifecycle",
            "preUpdateHook",
            status_of(kpr_json("True", "[]")),
            id="scenario 9 step 3: entering Updated removes preUpdateHook → True",
        ),
    ],
)
def test_remove_not_ready_key(view, user_agent, key, expected):
    assert remove_not_ready_key(view, user_agent=user_agent, key=key, now_ms=NOW) == expected


def test_scenario_6_walked_through_the_api_server():
    """The four steps in order, each applied as the API server merges it."""
    pod0, pod1 = pod("pod0"), pod("pod1", gates=())
    for key in ("foo", "bar"):
        pod0 = merged(pod0, add_not_ready_key(pod0, user_agent="ua1", key=key, now_ms=NOW))
        assert add_not_ready_key(pod1, user_agent="ua1", key=key, now_ms=NOW) is None
    (kruise,) = pod0.conditions
    assert (kruise.status, parse_message(kruise.message)) == (
        "False",
        [("ua1", "bar"), ("ua1", "foo")],
    )
    assert list(pod1.conditions) == []

    pod0 = merged(pod0, remove_not_ready_key(pod0, user_agent="ua1", key="foo", now_ms=NOW))
    (kruise,) = pod0.conditions
    assert (kruise.status, kruise.message) == ("False", BAR)

    pod0 = merged(pod0, remove_not_ready_key(pod0, user_agent="ua1", key="bar", now_ms=NOW))
    (kruise,) = pod0.conditions
    assert (kruise.status, kruise.message) == ("True", "[]")


@pytest.mark.parametrize(
    ("entries", "expected"),
    [
        pytest.param([], "[]", id="no entries → []"),
        pytest.param(
            [("b", "k"), ("a", "z"), ("a", "b")],
            '[{"userAgent":"a","key":"b"},{"userAgent":"a","key":"z"},{"userAgent":"b","key":"k"}]',
            id="sorted by userAgent then key",
        ),
        pytest.param(
            [("ua<1>", "a&b")],
            '[{"userAgent":"ua\\u003c1\\u003e","key":"a\\u0026b"}]',
            id="HTML characters escaped as Go's json.Marshal does",
        ),
    ],
)
def test_dump_message(entries, expected):
    assert dump_message(entries) == expected
    assert parse_message(expected) == sorted(entries)


@pytest.mark.parametrize(
    ("view", "expected"),
    [
        pytest.param(pod("pod0"), True, id="gate without condition → needs KruisePodReady True"),
        pytest.param(pod("pod0", kpr("False", FOO)), False, id="condition already there"),
        pytest.param(pod("pod1", gates=()), False, id="no gate"),
        pytest.param(pod("pod0", deleting=True), False, id="terminating pod"),
    ],
)
def test_needs_initial_condition(view, expected):
    assert needs_initial_condition(view) is expected


def test_initial_condition():
    assert initial_condition(now_ms=NOW) == {
        "type": KRUISE_POD_READY,
        "status": "True",
        "lastTransitionTime": NOW_TEXT,
    }


def test_rfc3339_drops_milliseconds():
    assert rfc3339(EARLIER + 999) == EARLIER_TEXT


def owned_by(api_version: str | None, *, controller: bool = True, **spec: Any) -> dict[str, Any]:
    owners = []
    if api_version is not None:
        owners = [{"apiVersion": api_version, "kind": "X", "name": "x", "controller": controller}]
    return {
        "metadata": {"name": "p", "ownerReferences": owners},
        "spec": {"containers": [{"name": "main", "image": "nginx"}], **spec},
    }


@pytest.mark.parametrize(
    ("pod_json", "expected"),
    [
        pytest.param(owned_by("apps.kruise.io/v1alpha1"), "apps.kruise.io", id="CloneSet"),
        pytest.param(owned_by("apps.kruise.io/v1beta1"), "apps.kruise.io", id="Advanced STS"),
        pytest.param(owned_by("apps/v1"), "apps", id="ReplicaSet"),
        pytest.param(owned_by("v1"), "", id="core group"),
        pytest.param(
            owned_by("apps.kruise.io/v1alpha1", controller=False), "", id="not controller"
        ),
        pytest.param(owned_by(None), "", id="no owner"),
    ],
)
def test_controller_group(pod_json, expected):
    assert controller_group(pod_json) == expected


KRUISE_GATE = {"conditionType": KRUISE_POD_READY}
LB_GATE = {"conditionType": "example.com/lb"}


@pytest.mark.parametrize(
    ("pod_json", "expected"),
    [
        pytest.param(
            owned_by("apps.kruise.io/v1alpha1"),
            [{"op": "add", "path": "/spec/readinessGates", "value": [KRUISE_GATE]}],
            id="CloneSet pod without gates → add the list",
        ),
        pytest.param(
            owned_by("apps.kruise.io/v1alpha1", readinessGates=None),
            [{"op": "add", "path": "/spec/readinessGates", "value": [KRUISE_GATE]}],
            id="readinessGates null → add the list",
        ),
        pytest.param(
            owned_by("apps.kruise.io/v1alpha1", readinessGates=[LB_GATE]),
            [{"op": "add", "path": "/spec/readinessGates/-", "value": KRUISE_GATE}],
            id="other gates → append",
        ),
        pytest.param(
            owned_by("apps.kruise.io/v1alpha1", readinessGates=[LB_GATE, KRUISE_GATE]),
            [],
            id="gate already present → nothing",
        ),
        pytest.param(owned_by("apps/v1"), [], id="ReplicaSet pod → nothing"),
        pytest.param(owned_by(None), [], id="bare pod → nothing"),
    ],
)
def test_inject_readiness_gate(pod_json, expected):
    ops = inject_readiness_gate(pod_json, owner_group=controller_group(pod_json))
    assert ops == expected
    patched = jsonpatch.apply_patch(copy.deepcopy(pod_json), ops)
    if controller_group(pod_json) == "apps.kruise.io":
        assert patched["spec"]["readinessGates"].count(KRUISE_GATE) == 1
