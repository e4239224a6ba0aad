"""Lifecycle hooks of CloneSet pods (services.rollout.lifecycle, SPEC 3.1-3.5).

Scenarios 1-4 are OpenKruise's ``TestStatefulSetControlLifecycleHook`` adapted to a
CloneSet: inPlaceUpdate labelsHandler ``{unready-block: "true"}``, the template carrying
the label. Scenarios 7-9 are SPEC 3.6's derived CloneSet cases, walked step by step with
the readiness writes applied. Scenario 6 (the condition itself) is in test_rollout_readiness.
"""

from __future__ import annotations

from typing import Any

import pytest

from kruise.common.v1 import views_pb2
from services.rollout.lifecycle import (
    DeleteNow,
    Hooks,
    NotAllowed,
    ReadinessChange,
    ReArmAndPrepare,
    SetState,
    UpdateNow,
    Wait,
    delete_decision,
    in_place_decision,
    is_all_hooked,
    is_hooked,
    readiness_patch,
    rearm_patch,
    refresh_decision,
    restore_preparing_delete,
    state_patch,
)
from services.rollout.pods import (
    KRUISE_POD_READY,
    LIFECYCLE_STATE_LABEL,
    LIFECYCLE_TIMESTAMP_ANNOTATION,
    NORMAL,
    PREPARING_DELETE,
    PREPARING_UPDATE,
    SPECIFIED_DELETE_LABEL,
    UPDATED,
    UPDATING,
    condition,
    lifecycle_state,
)

NOW = 1_700_000_000_000
NOW_TEXT = "2023-11-14T22:13:20Z"
BLOCKER = "example.io/unready-blocker"

ADD_PRE_DELETE = ReadinessChange(add=True, key="preDeleteHook")
ADD_PRE_UPDATE = ReadinessChange(add=True, key="preUpdateHook")
REMOVE_PRE_UPDATE = ReadinessChange(add=False, key="preUpdateHook")


def hook(
    labels: dict[str, str] | None = None,
    finalizers: tuple[str, ...] = (),
    *,
    mark: bool = False,
) -> views_pb2.LifecycleHook:
    return views_pb2.LifecycleHook(
        labels_handler=labels or {},
        finalizers_handler=finalizers,
        mark_pod_not_ready=mark,
    )


def pod(
    name: str = "pod-0",
    state: str | None = NORMAL,
    *,
    labels: dict[str, str] | None = None,
    finalizers: tuple[str, ...] = (),
    ready: bool = False,
) -> views_pb2.PodView:
    """A CloneSet pod in ``state``; ``ready`` adds the KruisePodReady gate, the condition
    True and Ready/ContainersReady True (as the readiness controller and kubelet leave it)."""
    view = views_pb2.PodView(phase="Running")
    view.meta.namespace = "default"
    view.meta.name = name
    view.meta.labels.update(labels or {})
    if state is not None:
        view.meta.labels[LIFECYCLE_STATE_LABEL] = state
    view.meta.finalizers.extend(finalizers)
    if ready:
        view.readiness_gates.append(KRUISE_POD_READY)
        for type_ in (KRUISE_POD_READY, "ContainersReady", "Ready"):
            view.conditions.add(type=type_, status="True", last_transition_unix_ms=NOW - 60_000)
    return view


def applied(
    view: views_pb2.PodView, patch: dict[str, Any] | None, *, labels: dict[str, str] | None = None
) -> views_pb2.PodView:
    """The pod after the API server merges ``patch`` (metadata and/or status) and after the
    user's controller sets ``labels``."""
    out = views_pb2.PodView()
    out.CopyFrom(view)
    patch = patch or {}
    meta = patch.get("metadata", {})
    out.meta.labels.update(meta.get("labels", {}))
    out.meta.labels.update(labels or {})
    out.meta.annotations.update(meta.get("annotations", {}))
    out.meta.finalizers.extend(
        f for f in meta.get("finalizers", []) if f not in out.meta.finalizers
    )
    for change in patch.get("status", {}).get("conditions", []):
        target = condition(out, change["type"]) or out.conditions.add(type=change["type"])
        target.status = change["status"]
        target.reason = change.get("reason", target.reason)
        target.message = change.get("message", target.message)
    return out


def status(view: views_pb2.PodView, type_: str) -> tuple[str, str, str]:
    cond = condition(view, type_)
    assert cond is not None
    return cond.status, cond.reason, cond.message


# --- the hooked predicates (SPEC 3.2) ------------------------------------------------------

TWO_LABELS = hook({"a": "1", "b": "1"})
LABEL_AND_FINALIZER = hook({"a": "1"}, (BLOCKER,))


@pytest.mark.parametrize(
    ("h", "view", "hooked", "all_hooked"),
    [
        pytest.param(None, pod(labels={"a": "1"}), False, False, id="nil hook → neither"),
        pytest.param(hook(), pod(), False, True, id="empty hook → not hooked, all hooked"),
        pytest.param(TWO_LABELS, pod(labels={"a": "1", "b": "1"}), True, True, id="all labels"),
        pytest.param(TWO_LABELS, pod(labels={"a": "1"}), True, False, id="one of two labels"),
        pytest.param(
            TWO_LABELS, pod(labels={"a": "2", "b": "2"}), False, False, id="values differ"
        ),
        pytest.param(LABEL_AND_FINALIZER, pod(finalizers=(BLOCKER,)), True, False, id="finalizer"),
        pytest.param(
            LABEL_AND_FINALIZER,
            pod(labels={"a": "1"}, finalizers=(BLOCKER,)),
            True,
            True,
            id="label and finalizer",
        ),
        pytest.param(hook({"a": ""}), pod(), True, True, id="empty value matches absent (as Go)"),
    ],
)
def test_hooked_predicates(h, view, hooked, all_hooked):
    assert (is_hooked(h, view), is_all_hooked(h, view)) == (hooked, all_hooked)


def test_hooks_of_a_cloneset_view():
    bare = views_pb2.CloneSetView()
    assert Hooks.of(bare) == Hooks()
    assert not Hooks.of(bare).lifecycle_set
    view = views_pb2.CloneSetView(pre_delete=hook(finalizers=(BLOCKER,), mark=True))
    assert Hooks.of(view) == Hooks(pre_delete=hook(finalizers=(BLOCKER,), mark=True))
    assert Hooks.of(view).lifecycle_set


# --- writes ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("view", "state", "expected"),
    [
        pytest.param(
            pod(state=NORMAL),
            PREPARING_DELETE,
            {
                "metadata": {
                    "labels": {LIFECYCLE_STATE_LABEL: PREPARING_DELETE},
                    "annotations": {LIFECYCLE_TIMESTAMP_ANNOTATION: NOW_TEXT},
                }
            },
            id="Normal → PreparingDelete: label and timestamp",
        ),
        pytest.param(
            pod(state=None),
            NORMAL,
            {
                "metadata": {
                    "labels": {LIFECYCLE_STATE_LABEL: NORMAL},
                    "annotations": {LIFECYCLE_TIMESTAMP_ANNOTATION: NOW_TEXT},
                }
            },
            id="no state → Normal",
        ),
        pytest.param(pod(state=PREPARING_DELETE), PREPARING_DELETE, None, id="already there"),
    ],
)
def test_state_patch(view, state, expected):
    assert state_patch(view, state, now_rfc3339=NOW_TEXT) == expected


def test_rearm_patch_sets_hook_labels_finalizers_and_state_in_one_patch():
    decision = ReArmAndPrepare(labels=(("ready", "true"),), finalizers=(BLOCKER,))
    assert rearm_patch(decision, now_rfc3339=NOW_TEXT) == {
        "metadata": {
            "labels": {"ready": "true", LIFECYCLE_STATE_LABEL: PREPARING_UPDATE},
            "annotations": {LIFECYCLE_TIMESTAMP_ANNOTATION: NOW_TEXT},
            "finalizers": [BLOCKER],
        }
    }
    labels_only = ReArmAndPrepare(labels=(("ready", "true"),), finalizers=())
    assert "finalizers" not in rearm_patch(labels_only, now_rfc3339=NOW_TEXT)["metadata"]


def test_readiness_patch_without_change_writes_nothing():
    assert readiness_patch(pod(ready=True), None, now_ms=NOW) is None


# --- deletion (SPEC 3.3) --------------------------------------------------------------------

PRE_DELETE = hook(finalizers=(BLOCKER,), mark=True)


@pytest.mark.parametrize(
    ("view", "pre_delete", "expected"),
    [
        pytest.param(pod(), None, DeleteNow(), id="no preDelete hook → delete"),
        pytest.param(pod(), PRE_DELETE, DeleteNow(), id="finalizer not on the pod → delete"),
        pytest.param(pod(), hook(), DeleteNow(), id="empty hook hooks nothing → delete"),
        pytest.param(
            pod(finalizers=(BLOCKER,)),
            PRE_DELETE,
            SetState(PREPARING_DELETE, ADD_PRE_DELETE),
            id="hooked, markPodNotReady → PreparingDelete + preDeleteHook",
        ),
        pytest.param(
            pod(labels={"hook": "true"}),
            hook({"hook": "true"}),
            SetState(PREPARING_DELETE),
            id="hooked by label, no markPodNotReady → PreparingDelete only",
        ),
        pytest.param(
            pod(state=PREPARING_DELETE, finalizers=(BLOCKER,)),
            PRE_DELETE,
            SetState(PREPARING_DELETE, ADD_PRE_DELETE),
            id="still hooked in PreparingDelete → same answer (readiness re-applied)",
        ),
        pytest.param(
            pod(state=PREPARING_DELETE),
            PRE_DELETE,
            DeleteNow(),
            id="hook released in PreparingDelete → delete",
        ),
    ],
)
def test_delete_decision(view, pre_delete, expected):
    assert delete_decision(view, pre_delete) == expected


# --- in-place update (SPEC 3.3) -------------------------------------------------------------

UNREADY_BLOCK = hook({"unready-block": "true"})
BLOCKED = {"unready-block": "true"}
RELEASED = {"unready-block": "false"}
READY_HOOK = hook({"ready": "true"}, (BLOCKER,), mark=True)


@pytest.mark.parametrize(
    ("view", "in_place_update", "expected"),
    [
        pytest.param(
            pod("pod-2", labels=BLOCKED),
            UNREADY_BLOCK,
            SetState(PREPARING_UPDATE),
            id="scenario 1: image change, pod-2 hooked → PreparingUpdate, not updated",
        ),
        pytest.param(
            pod("pod-2", PREPARING_UPDATE, labels=BLOCKED),
            UNREADY_BLOCK,
            Wait(),
            id="scenario 1: next round, pod-2 still hooked → wait",
        ),
        pytest.param(
            pod("pod-2", PREPARING_UPDATE, labels=RELEASED),
            UNREADY_BLOCK,
            UpdateNow(UPDATING),
            id="scenario 2: unready-block=false → update in place, state Updating",
        ),
        pytest.param(
            pod(labels=RELEASED),
            UNREADY_BLOCK,
            UpdateNow(),
            id="Normal, not hooked → update in place at once",
        ),
        pytest.param(pod(state=None), None, UpdateNow(), id="no state, no hook → update"),
        pytest.param(
            pod(state=UPDATING, labels=RELEASED),
            UNREADY_BLOCK,
            UpdateNow(),
            id="Updating, a newer revision arrives → update again",
        ),
        pytest.param(
            pod(labels={"ready": "true"}),
            READY_HOOK,
            SetState(PREPARING_UPDATE, ADD_PRE_UPDATE),
            id="hooked, markPodNotReady → PreparingUpdate + preUpdateHook",
        ),
        pytest.param(
            pod(state=UPDATED, labels={"ready": "false"}),
            READY_HOOK,
            ReArmAndPrepare(
                labels=(("ready", "true"),), finalizers=(BLOCKER,), readiness=ADD_PRE_UPDATE
            ),
            id="Updated, newer revision → re-arm hook and PreparingUpdate in one patch",
        ),
        pytest.param(
            pod(state=UPDATED, labels=RELEASED),
            UNREADY_BLOCK,
            ReArmAndPrepare(labels=(("unready-block", "true"),), finalizers=()),
            id="Updated, no markPodNotReady → re-arm without readiness",
        ),
        pytest.param(
            pod(state=UPDATED),
            None,
            Wait(),
            id="Updated, no inPlaceUpdate hook → wait (refresh makes it Normal)",
        ),
        pytest.param(
            pod(state=PREPARING_DELETE),
            UNREADY_BLOCK,
            NotAllowed("not allowed to in-place update pod pod-0 in state PreparingDelete"),
            id="PreparingDelete → not allowed",
        ),
        pytest.param(
            pod(state="PreparingNormal"),
            None,
            NotAllowed("not allowed to in-place update pod pod-0 in state PreparingNormal"),
            id="a state v1.2 does not know (v1.4 PreparingNormal) → not allowed",
        ),
    ],
)
def test_in_place_decision(view, in_place_update, expected):
    assert in_place_decision(view, in_place_update) == expected


# --- refresh at the start of a round (SPEC 2.5 step 1) --------------------------------------


@pytest.mark.parametrize(
    ("view", "hooks", "update_done", "expected"),
    [
        pytest.param(
            pod("pod-2", UPDATING, labels=RELEASED),
            Hooks(in_place_update=UNREADY_BLOCK),
            False,
            None,
            id="scenario 2: Updating, containers not restarted yet → stay",
        ),
        pytest.param(
            pod("pod-2", UPDATING, labels=RELEASED),
            Hooks(in_place_update=UNREADY_BLOCK),
            True,
            SetState(UPDATED),
            id="scenario 3: imageID changed, not hooked → Updated",
        ),
        pytest.param(
            pod("pod-2", UPDATED, labels=BLOCKED),
            Hooks(in_place_update=UNREADY_BLOCK),
            True,
            SetState(NORMAL),
            id="scenario 4: unready-block=true again → Normal",
        ),
        pytest.param(
            pod("pod-2", UPDATED, labels=RELEASED),
            Hooks(in_place_update=UNREADY_BLOCK),
            True,
            None,
            id="scenario 4 (before): Updated, hook not re-armed → stay",
        ),
        pytest.param(
            pod(state=UPDATED, labels={"a": "1"}),
            Hooks(in_place_update=TWO_LABELS),
            True,
            None,
            id="Updated, hook re-armed partly → stay (needs all)",
        ),
        pytest.param(
            pod(state=UPDATING, labels={"a": "1"}),
            Hooks(in_place_update=TWO_LABELS),
            True,
            SetState(NORMAL),
            id="Updating done, hook re-armed partly → Normal (v1.2 IsPodHooked; v1.3 Updated)",
        ),
        pytest.param(
            pod(state=UPDATING, labels=BLOCKED),
            Hooks(in_place_update=hook(BLOCKED, mark=True)),
            True,
            SetState(NORMAL),
            id="Updating done, re-armed → Normal shortcut, preUpdateHook not removed (quirk)",
        ),
        pytest.param(
            pod(state=UPDATING),
            Hooks(),
            True,
            SetState(NORMAL),
            id="no lifecycle: Updating done → Normal",
        ),
        pytest.param(
            pod(state=UPDATING),
            Hooks(pre_delete=PRE_DELETE),
            True,
            SetState(UPDATED),
            id="lifecycle with preDelete only: Updating done → Updated",
        ),
        pytest.param(
            pod(state=UPDATED),
            Hooks(pre_delete=PRE_DELETE),
            True,
            SetState(NORMAL),
            id="lifecycle with preDelete only: Updated → Normal",
        ),
        pytest.param(pod(), Hooks(in_place_update=UNREADY_BLOCK), True, None, id="Normal → stay"),
        pytest.param(
            pod(state=PREPARING_UPDATE, labels=BLOCKED),
            Hooks(in_place_update=UNREADY_BLOCK),
            True,
            None,
            id="PreparingUpdate → left to the update step",
        ),
    ],
)
def test_refresh_decision(view, hooks, update_done, expected):
    assert refresh_decision(view, hooks, update_done=update_done) == expected


# --- the regret rule (SPEC 3.5) -------------------------------------------------------------

A, B = pod("a"), pod("b")
VICTIM = pod("victim", PREPARING_DELETE, finalizers=(BLOCKER,))
V1, V2 = pod("v1", PREPARING_DELETE), pod("v2", PREPARING_DELETE)
V1_SPECIFIED = pod("v1", PREPARING_DELETE, labels={SPECIFIED_DELETE_LABEL: "true"})
NO_MARK = hook(finalizers=(BLOCKER,))


def restore(
    replicas: int,
    pods: list[views_pb2.PodView],
    *,
    pods_to_delete: tuple[str, ...] = (),
    pre_delete: views_pb2.LifecycleHook | None = NO_MARK,
    in_place_update: views_pb2.LifecycleHook | None = None,
) -> list[str]:
    return restore_preparing_delete(
        replicas=replicas,
        pods=pods,
        pods_to_delete=pods_to_delete,
        pre_delete=pre_delete,
        in_place_update=in_place_update,
    )


@pytest.mark.parametrize(
    ("replicas", "pods", "options", "expected"),
    [
        pytest.param(
            3,
            [A, B, VICTIM],
            {},
            ["victim"],
            id="scenario 8: scaled 3→2 then back to 3, no markPodNotReady → victim Normal",
        ),
        pytest.param(
            3,
            [A, B, VICTIM],
            {"pre_delete": PRE_DELETE},
            [],
            id="scenario 7: same with preDelete.markPodNotReady → victim stays",
        ),
        pytest.param(
            3,
            [A, B, VICTIM],
            {"in_place_update": hook(BLOCKED, mark=True)},
            [],
            id="inPlaceUpdate.markPodNotReady also disables regret",
        ),
        pytest.param(2, [A, B, VICTIM], {}, [], id="still scaled in (diff 2 − 3 + 1 = 0) → none"),
        pytest.param(3, [A, V1, V2], {}, ["v1", "v2"], id="diff 3 − 3 + 2 = 2 → both"),
        pytest.param(2, [A, V1, V2], {}, ["v1"], id="diff 1 → the first in list order"),
        pytest.param(
            3,
            [A, V1_SPECIFIED, V2],
            {},
            ["v2"],
            id="specified-delete (label) PreparingDelete pod skipped, the next restored",
        ),
        pytest.param(
            3,
            [A, V1, V2],
            {"pods_to_delete": ("v1",)},
            ["v2"],
            id="specified-delete (podsToDelete) PreparingDelete pod skipped",
        ),
        pytest.param(
            3,
            [A, B, pod("c", labels={SPECIFIED_DELETE_LABEL: "true"}), V1],
            {},
            ["v1"],
            id="a specified-delete pod counts in numToDelete (diff 3 − 4 + 2 = 1)",
        ),
        pytest.param(3, [A, B], {}, [], id="no PreparingDelete pods → none"),
    ],
)
def test_restore_preparing_delete(replicas, pods, options, expected):
    assert restore(replicas, pods, **options) == expected


# --- derived CloneSet scenarios, walked through the writes (SPEC 3.6) -----------------------


def test_scenario_7_pre_delete_with_mark_pod_not_ready():
    """preDelete {finalizersHandler: [blocker], markPodNotReady}; pods have the gate."""
    pods = [pod("a", ready=True), pod("b", ready=True), pod("c", finalizers=(BLOCKER,), ready=True)]
    victim = pods[2]

    # Step 1: scale 3 → 2, the victim is hooked: PreparingDelete and NotReady, not deleted.
    decision = delete_decision(victim, PRE_DELETE)
    assert decision == SetState(PREPARING_DELETE, ADD_PRE_DELETE)
    assert isinstance(decision, SetState)
    victim = applied(victim, state_patch(victim, decision.state, now_rfc3339=NOW_TEXT))
    victim = applied(victim, readiness_patch(victim, decision.readiness, now_ms=NOW))
    assert lifecycle_state(victim) == PREPARING_DELETE
    assert status(victim, KRUISE_POD_READY) == (
        "False",
        "",
        '[{"userAgent":"Lifecycle","key":"preDeleteHook"}]',
    )
    assert status(victim, "Ready")[:2] == ("False", "ReadinessGatesNotReady")

    # Step 2: scale back to 3: no regret, and the hooked victim needs no new write.
    pods[2] = victim
    assert (
        restore_preparing_delete(
            replicas=3, pods=pods, pods_to_delete=[], pre_delete=PRE_DELETE, in_place_update=None
        )
        == []
    )
    again = delete_decision(victim, PRE_DELETE)
    assert again == decision
    assert state_patch(victim, again.state, now_rfc3339=NOW_TEXT) is None
    assert readiness_patch(victim, again.readiness, now_ms=NOW) is None

    # Step 3: the user's controller removes the finalizer → the victim is deleted.
    del victim.meta.finalizers[:]
    assert delete_decision(victim, PRE_DELETE) == DeleteNow()


def test_scenario_8_pre_delete_without_mark_pod_not_ready():
    pods = [pod("a", ready=True), pod("b", ready=True), pod("c", finalizers=(BLOCKER,), ready=True)]
    decision = delete_decision(pods[2], NO_MARK)
    assert decision == SetState(PREPARING_DELETE)
    assert isinstance(decision, SetState)
    pods[2] = applied(pods[2], state_patch(pods[2], decision.state, now_rfc3339=NOW_TEXT))
    assert status(pods[2], "Ready")[0] == "True"  # no readiness change

    restored = restore_preparing_delete(
        replicas=3, pods=pods, pods_to_delete=[], pre_delete=NO_MARK, in_place_update=None
    )
    assert restored == ["c"]
    pods[2] = applied(pods[2], state_patch(pods[2], NORMAL, now_rfc3339=NOW_TEXT))
    assert lifecycle_state(pods[2]) == NORMAL


def test_scenario_9_in_place_update_with_mark_pod_not_ready():
    """inPlaceUpdate labelsHandler {ready: "true"} + markPodNotReady, CloneSet in place."""
    in_place = hook({"ready": "true"}, mark=True)
    hooks = Hooks(in_place_update=in_place)
    p = pod(labels={"ready": "true"}, ready=True)

    # Step 1: Normal and hooked → PreparingUpdate, key preUpdateHook, NotReady.
    decision = in_place_decision(p, in_place)
    assert decision == SetState(PREPARING_UPDATE, ADD_PRE_UPDATE)
    assert isinstance(decision, SetState)
    p = applied(p, state_patch(p, decision.state, now_rfc3339=NOW_TEXT))
    p = applied(p, readiness_patch(p, decision.readiness, now_ms=NOW))
    assert status(p, KRUISE_POD_READY) == (
        "False",
        "",
        '[{"userAgent":"Lifecycle","key":"preUpdateHook"}]',
    )
    assert status(p, "Ready")[0] == "False"

    # Step 2: the user sets ready=false → updated in place, Updating.
    p = applied(p, None, labels={"ready": "false"})
    assert in_place_decision(p, in_place) == UpdateNow(UPDATING)
    p = applied(p, state_patch(p, UPDATING, now_rfc3339=NOW_TEXT))
    assert refresh_decision(p, hooks, update_done=False) is None

    # Step 3: the update completes → Updated, key removed, KruisePodReady True.
    refresh = refresh_decision(p, hooks, update_done=True)
    assert refresh == SetState(UPDATED, REMOVE_PRE_UPDATE)
    assert refresh is not None
    p = applied(p, state_patch(p, refresh.state, now_rfc3339=NOW_TEXT))
    p = applied(p, readiness_patch(p, refresh.readiness, now_ms=NOW))
    assert status(p, KRUISE_POD_READY) == ("True", "", "[]")

    # Step 4: the user sets ready=true → Normal.
    p = applied(p, None, labels={"ready": "true"})
    assert refresh_decision(p, hooks, update_done=True) == SetState(NORMAL)
