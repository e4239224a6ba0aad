"""Lifecycle hooks of a CloneSet's pods: the state machine as pure decisions (SPEC 3.1-3.3, 3.5).

Pure; no I/O, no clock: the time is an argument. Each decision says what to do to ONE pod;
the rollout controller writes it through the cluster API, in this order: the metadata patch
(``state_patch`` / ``rearm_patch``, or the in-place update for ``UpdateNow``), then the
decision's ``readiness`` change (``readiness_patch``, a ``pods/status`` write).

The pod label ``lifecycle.apps.kruise.io/state`` moves like this (OpenKruise v1.2)::

    ""/Normal ──hooked by inPlaceUpdate──▶ PreparingUpdate ──released──▶ Updating
    ""/Normal ──not hooked: updated in place at once───────────────────▶ Updating
    Updating ──update done, not hooked──▶ Updated ──all hooked again──▶ Normal
    Updating ──update done, hooked again (the shortcut)────────────────▶ Normal
    Updated ──newer revision: the controller re-arms the hook──────────▶ PreparingUpdate
    any ──deleted while hooked by preDelete──▶ PreparingDelete ──released──▶ deleted

"Hooked" is ``is_hooked``: ANY of the hook's finalizers is on the pod or ANY of its label
pairs matches; "all hooked" is ``is_all_hooked``: every one does. The user's controller
releases a hook by removing its labels/finalizers and re-arms it by putting them back.

Readiness (``markPodNotReady``, SPEC 3.4): entering PreparingDelete adds the
``KruisePodReady`` key ``Lifecycle/preDeleteHook``, entering PreparingUpdate adds
``Lifecycle/preUpdateHook``, entering Updated removes ``preUpdateHook``. OpenKruise
re-applies the change on every state-setting call, even when the label already has the
target state, so a decision carries its ``readiness`` even when ``state_patch`` has
nothing to write. Quirks kept from v1.2: the Updating → Normal shortcut removes nothing
(the ``preUpdateHook`` key stays until the pod next enters Updated), and
``preDeleteHook`` is never removed (the pod is deleted).

Choices:
* ``state_patch`` returns None when the label already has the state, as OpenKruise's
  ``UpdatePodLifecycle`` does (it returns before patching); the readiness change still
  applies.
* A CloneSetView cannot tell ``spec.lifecycle: {}`` from no lifecycle, so ``Hooks``
  counts the lifecycle as set when either hook is. The difference, for ``{}`` only: v1.2
  goes Updating → Updated → Normal over two rounds where this goes straight to Normal.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from kruise.common.v1 import views_pb2
from services.rollout.pods import (
    LIFECYCLE_STATE_LABEL,
    LIFECYCLE_TIMESTAMP_ANNOTATION,
    NORMAL,
    PREPARING_DELETE,
    PREPARING_UPDATE,
    UPDATED,
    UPDATING,
    lifecycle_state,
    specified_delete,
)
from services.rollout.readiness import add_not_ready_key, remove_not_ready_key

__all__ = [
    "LIFECYCLE_USER_AGENT",
    "PRE_DELETE_HOOK_KEY",
    "PRE_UPDATE_HOOK_KEY",
    "DeleteDecision",
    "DeleteNow",
    "Hooks",
    "InPlaceDecision",
    "NotAllowed",
    "ReArmAndPrepare",
    "ReadinessChange",
    "SetState",
    "UpdateNow",
    "Wait",
    "delete_decision",
    "in_place_decision",
    "is_all_hooked",
    "is_hooked",
    "readiness_patch",
    "rearm_patch",
    "refresh_decision",
    "restore_preparing_delete",
    "state_patch",
]

LIFECYCLE_USER_AGENT = "Lifecycle"
PRE_DELETE_HOOK_KEY = "preDeleteHook"
PRE_UPDATE_HOOK_KEY = "preUpdateHook"

Hook = views_pb2.LifecycleHook


@dataclass(frozen=True, slots=True)
class Hooks:
    """A CloneSet's ``spec.lifecycle``: each hook None when unset."""

    pre_delete: Hook | None = None
    in_place_update: Hook | None = None

    @classmethod
    def of(cls, view: views_pb2.CloneSetView) -> Hooks:
        return cls(
            pre_delete=view.pre_delete if view.HasField("pre_delete") else None,
            in_place_update=view.in_place_update if view.HasField("in_place_update") else None,
        )

    @property
    def lifecycle_set(self) -> bool:
        """``spec.lifecycle`` is non-nil (as far as the view can tell: a hook is set)."""
        return self.pre_delete is not None or self.in_place_update is not None


@dataclass(frozen=True, slots=True)
class ReadinessChange:
    """Add (``add`` True) or remove the ``KruisePodReady`` entry ``user_agent``/``key``."""

    add: bool
    key: str
    user_agent: str = LIFECYCLE_USER_AGENT


ADD_PRE_DELETE = ReadinessChange(add=True, key=PRE_DELETE_HOOK_KEY)
ADD_PRE_UPDATE = ReadinessChange(add=True, key=PRE_UPDATE_HOOK_KEY)
REMOVE_PRE_UPDATE = ReadinessChange(add=False, key=PRE_UPDATE_HOOK_KEY)


@dataclass(frozen=True, slots=True)
class DeleteNow:
    """Delete the pod: no preDelete hook holds it."""


@dataclass(frozen=True, slots=True)
class SetState:
    """Set the lifecycle state (``state_patch``; None when already there), then ``readiness``."""

    state: str
    readiness: ReadinessChange | None = None


@dataclass(frozen=True, slots=True)
class UpdateNow:
    """Update the pod in place now; the same pod write sets state ``new_state``."""

    new_state: str = UPDATING


@dataclass(frozen=True, slots=True)
class Wait:
    """Nothing to write for this pod this round: its hook still holds it."""


@dataclass(frozen=True, slots=True)
class NotAllowed:
    """The pod's state forbids an in-place update: OpenKruise's sync error."""

    message: str


@dataclass(frozen=True, slots=True)
class ReArmAndPrepare:
    """An ``Updated`` pod must take a newer revision: in ONE patch (``rearm_patch``) put
    back all of the inPlaceUpdate hook's labels and finalizers and set ``PreparingUpdate``;
    then apply ``readiness``."""

    labels: tuple[tuple[str, str], ...]
    finalizers: tuple[str, ...]
    readiness: ReadinessChange | None = None
    state: str = PREPARING_UPDATE


DeleteDecision = DeleteNow | SetState
InPlaceDecision = UpdateNow | SetState | Wait | NotAllowed | ReArmAndPrepare


def is_hooked(hook: Hook | None, pod: views_pb2.PodView) -> bool:
    """OpenKruise's ``IsPodHooked``: any finalizer present or any label pair matching.

    A nil hook, or one with no labels and no finalizers, hooks nothing. As in Go, a pair
    with an empty value matches a pod that lacks the label.
    """
    if hook is None:
        return False
    if any(f in pod.meta.finalizers for f in hook.finalizers_handler):
        return True
    labels = pod.meta.labels
    return any(labels.get(k, "") == v for k, v in hook.labels_handler.items())


def is_all_hooked(hook: Hook | None, pod: views_pb2.PodView) -> bool:
    """OpenKruise's ``IsPodAllHooked``: every finalizer present and every label pair matching.

    A nil hook is never all hooked; an empty (non-nil) hook always is.
    """
    if hook is None:
        return False
    if not all(f in pod.meta.finalizers for f in hook.finalizers_handler):
        return False
    labels = pod.meta.labels
    return all(labels.get(k, "") == v for k, v in hook.labels_handler.items())


def state_patch(pod: views_pb2.PodView, state: str, *, now_rfc3339: str) -> dict[str, Any] | None:
    """The strategic merge patch of the pod setting ``state`` and its timestamp annotation.

    None when the pod's state label already is ``state`` (nothing to write; as OpenKruise).
    """
    if lifecycle_state(pod) == state:
        return None
    return {
        "metadata": {
            "labels": {LIFECYCLE_STATE_LABEL: state},
            "annotations": {LIFECYCLE_TIMESTAMP_ANNOTATION: now_rfc3339},
        }
    }


def rearm_patch(decision: ReArmAndPrepare, *, now_rfc3339: str) -> dict[str, Any]:
    """The strategic merge patch of a ``ReArmAndPrepare``: hook labels, the state and its
    timestamp, and the hook's finalizers (``metadata.finalizers`` merges as a set under
    strategic merge, so finalizers already on the pod are not doubled)."""
    metadata: dict[str, Any] = {
        "labels": {**dict(decision.labels), LIFECYCLE_STATE_LABEL: decision.state},
        "annotations": {LIFECYCLE_TIMESTAMP_ANNOTATION: now_rfc3339},
    }
    if decision.finalizers:
        metadata["finalizers"] = list(decision.finalizers)
    return {"metadata": metadata}


def readiness_patch(
    pod: views_pb2.PodView, change: ReadinessChange | None, *, now_ms: int
) -> dict[str, Any] | None:
    """The ``pods/status`` strategic merge patch that applies ``change`` (None: no write)."""
    if change is None:
        return None
    apply = add_not_ready_key if change.add else remove_not_ready_key
    return apply(pod, user_agent=change.user_agent, key=change.key, now_ms=now_ms)


def delete_decision(pod: views_pb2.PodView, pre_delete: Hook | None) -> DeleteDecision:
    """What deleting ``pod`` (scale-in, specified delete, re-create update) does (SPEC 3.3).

    Hooked by preDelete → ``SetState(PreparingDelete)``, with ``Lifecycle/preDeleteHook``
    added when ``markPodNotReady``; the pod is kept. This is also the answer every later
    round while the pod stays hooked (the state patch is then None, the readiness change
    re-applied). Not hooked (or no hook) → ``DeleteNow``.
    """
    if pre_delete is None or not is_hooked(pre_delete, pod):
        return DeleteNow()
    return SetState(PREPARING_DELETE, ADD_PRE_DELETE if pre_delete.mark_pod_not_ready else None)


def in_place_decision(pod: views_pb2.PodView, in_place_update: Hook | None) -> InPlaceDecision:
    """What an in-place update of ``pod`` to a newer revision does, by state (SPEC 3.3).

    ========================  ==============================================================
    ``""``/Normal, hooked     ``SetState(PreparingUpdate)`` (+ ``preUpdateHook`` if marked)
    ``""``/Normal, not        ``UpdateNow`` (state Updating, in the update's own write)
    PreparingUpdate, hooked   ``Wait``
    PreparingUpdate, not      ``UpdateNow``
    Updating                  ``UpdateNow`` (a newer revision arrived mid-update)
    Updated                   ``ReArmAndPrepare`` (+ ``preUpdateHook`` if marked); ``Wait``
                              when there is no inPlaceUpdate hook (refresh makes it Normal)
    anything else             ``NotAllowed`` (PreparingDelete, unknown states)
    ========================  ==============================================================

    A nil ``spec.lifecycle`` behaves as a nil hook here, so no lifecycle flag is needed.
    """
    state = lifecycle_state(pod)
    hooked = is_hooked(in_place_update, pod)
    if state in ("", NORMAL):
        if in_place_update is not None and hooked:
            mark = in_place_update.mark_pod_not_ready
            return SetState(PREPARING_UPDATE, ADD_PRE_UPDATE if mark else None)
        return UpdateNow()
    if state == PREPARING_UPDATE:
        return Wait() if hooked else UpdateNow()
    if state == UPDATING:
        return UpdateNow()
    if state == UPDATED:
        if in_place_update is None:
            return Wait()
        return ReArmAndPrepare(
            labels=tuple(sorted(in_place_update.labels_handler.items())),
            finalizers=tuple(in_place_update.finalizers_handler),
            readiness=ADD_PRE_UPDATE if in_place_update.mark_pod_not_ready else None,
        )
    return NotAllowed(f"not allowed to in-place update pod {pod.meta.name} in state {state}")


def refresh_decision(pod: views_pb2.PodView, hooks: Hooks, *, update_done: bool) -> SetState | None:
    """The state a pod moves to at the start of a round, if any (SPEC 2.5 step 1, 3.3).

    * Updating, once ``update_done`` (the in-place update completed: containers restarted
      with new imageIDs, no grace period left): Updated when the lifecycle is set and the
      pod is NOT hooked by inPlaceUpdate (``preUpdateHook`` removed when marked); else
      Normal, with no readiness change (quirk). v1.2 tests ``is_hooked`` here, so a pod
      that re-armed only some of the hook's labels goes to Normal; **[later]** v1.3 tests
      ``is_all_hooked`` and would say Updated.
    * Updated → Normal when there is no inPlaceUpdate hook or the pod is all hooked again.
    * Otherwise None (nothing to write).
    """
    state = lifecycle_state(pod)
    hook = hooks.in_place_update
    if state == UPDATING:
        if not update_done:
            return None
        if hooks.lifecycle_set and not is_hooked(hook, pod):
            mark = hook is not None and hook.mark_pod_not_ready
            return SetState(UPDATED, REMOVE_PRE_UPDATE if mark else None)
        return SetState(NORMAL)
    if state == UPDATED and (hook is None or is_all_hooked(hook, pod)):
        return SetState(NORMAL)
    return None


def restore_preparing_delete(
    *,
    replicas: int,
    pods: Sequence[views_pb2.PodView],
    pods_to_delete: Collection[str],
    pre_delete: Hook | None,
    in_place_update: Hook | None,
) -> list[str]:
    """Names of the PreparingDelete pods to set back to Normal (SPEC 3.5, "regret").

    ``diff = replicas − len(pods) + numToDelete``, numToDelete counting the distinct pods
    that are specified-delete or PreparingDelete. PreparingDelete pods, in list order and
    skipping specified-delete ones, go back to Normal while diff > 0 (no readiness
    change). Empty whenever either hook has ``markPodNotReady`` (v1.2 disables regret).

    Example: replicas 3 (scaled back up from 2), pods [a, b, victim(PreparingDelete)],
    nothing specified → diff = 3 − 3 + 1 = 1 → ``["victim"]``.
    """
    if any(h is not None and h.mark_pod_not_ready for h in (pre_delete, in_place_update)):
        return []
    preparing = [p for p in pods if lifecycle_state(p) == PREPARING_DELETE]
    planned = {p.meta.name for p in pods if specified_delete(p, pods_to_delete)}
    planned.update(p.meta.name for p in preparing)
    diff = replicas - len(pods) + len(planned)
    restored: list[str] = []
    for pod in preparing:
        if diff <= 0:
            break
        if specified_delete(pod, pods_to_delete):
            continue
        restored.append(pod.meta.name)
        diff -= 1
    return restored
