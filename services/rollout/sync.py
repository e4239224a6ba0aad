"""One CloneSet round, decided: refresh, else scale, else update (SPEC 2.4-2.6, 3.3).

Pure; no I/O (time and the random source for new pod names are in ``Observed``). The
returned ``Round`` lists the writes in order; ``controller`` executes them.

    plan_round(observed)
      0. release   pods the CloneSet controls whose labels no longer match its selector
                   lose its ownerReference (``claim``, OpenKruise's ``claimPods``); any
                   release ends the round
      1. refresh   InPlaceUpdateReady True on pods that have its gate and no condition yet;
                   waiting in-place images whose grace period passed; completed in-place
                   updates (InPlaceUpdateReady True, Updating → Updated/Normal); Updated →
                   Normal; any write here ends the round (OpenKruise: "if any pod was
                   patched, stop this round")
      2. scale     PreparingDelete pods set back to Normal (3.5), else scale out (pods of
                   the current revision for ``scale_num_old_revision``, the rest at the
                   update revision, at most ``scale_up_limit``; instance ids of orphan
                   claims first, each new pod's claims created before it), else delete
                   released PreparingDelete pods, specified deletes (ready ones limited by
                   ``delete_ready_limit``) and scale-in victims, each with its claims; a
                   delete of a pod hooked by preDelete moves it to PreparingDelete instead
      3. update    unless paused: the chosen pods (``ordering``) updated in place when only
                   images and template metadata changed, else marked specified-delete
                   (re-created by the scale step); lifecycle hooks may hold either; every
                   chosen pod's first write asks its budget. The first pod that cannot be
                   updated (``InPlaceOnly`` and a change beyond images and metadata, or a
                   lifecycle state that forbids an in-place update) ends the round with
                   OpenKruise's error as ``Round.error`` (``FailedUpdate``)
      4. labels    after whichever step acted (or alone, phase ``label``): for a CloneSet
                   claimed through the rollout API, Kruise Rollout's rollout-id and
                   batch-id labels on its updated pods (``batch.plan_batch_labels``,
                   ``with_batch_labels``)

Pods in ``busy`` (an update of ours the cache has not shown yet) are left alone this round.

PersistentVolumeClaims (``volumeClaimTemplates``), as OpenKruise v1.2's
``sync/cloneset_scale.go``: every pod the controller deletes (a scale-in victim, a
specified delete, a re-create update, which is a specified delete, or a released
PreparingDelete pod) takes the claims of its instance id with it (``claims_of``); a pod
deleted by anyone else leaves them, and the next scale-out gives its instance id, and so
its claims, to a new pod (``newpod.instance_ids``). Moving a pod to PreparingDelete deletes
nothing.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kruise.common.v1 import views_pb2
from services.kit import intstr
from services.rollout import batch, inplace, lifecycle, newpod, ordering, readiness
from services.rollout.actions import (
    Action,
    CreatePod,
    CreatePvc,
    DeletePod,
    DeletePvc,
    PatchPod,
    PatchPodStatus,
    Round,
)
from services.rollout.claim import release_decision, release_patch
from services.rollout.diffs import ExpectationDiffs, calculate_diffs
from services.rollout.pods import (
    INSTANCE_ID_LABEL,
    NORMAL,
    PREPARING_DELETE,
    SPECIFIED_DELETE_LABEL,
    UPDATING,
    available,
    is_active,
    is_updated,
    lifecycle_state,
    running_and_ready,
    specified_delete,
)
from services.rollout.revision import RevisionPlan

Json = dict[str, Any]


@dataclass(frozen=True)
class Observed:
    """What one reconcile observed of a CloneSet, gathered before deciding.

    ``pods`` are every pod the CloneSet controls (terminating ones included: they still
    hold their names); ``revisions`` the chosen update/current revisions and their
    templates; ``stored_templates`` every stored revision's template by name (an in-place
    update diffs the pod's own revision against the update revision). ``claims`` are every
    PersistentVolumeClaim the CloneSet controls (terminating ones included) and
    ``claim_templates`` its ``spec.volumeClaimTemplates``.
    """

    clone_set: views_pb2.CloneSetView
    pods: tuple[views_pb2.PodView, ...]
    revisions: RevisionPlan
    now_ms: int
    rng: random.Random
    stored_templates: Mapping[str, Json] = field(default_factory=dict)
    busy: frozenset[str] = frozenset()
    update_strategy: Json = field(default_factory=dict)
    partition_rollback: bool = False
    claims: tuple[views_pb2.PersistentVolumeClaimView, ...] = ()
    claim_templates: tuple[Json, ...] = ()

    @property
    def now_rfc3339(self) -> str:
        return readiness.rfc3339(self.now_ms)


def _opt(view: views_pb2.IntOrString, present: bool) -> intstr.IntOrStr | None:
    return intstr.from_view(view) if present else None


def diffs_of(obs: Observed, active: Sequence[views_pb2.PodView]) -> ExpectationDiffs:
    cs = obs.clone_set
    us = cs.update_strategy
    return calculate_diffs(
        replicas=cs.replicas if cs.HasField("replicas") else 1,
        partition=_opt(us.partition, us.HasField("partition")),
        max_surge=_opt(us.max_surge, us.HasField("max_surge")),
        max_unavailable=_opt(us.max_unavailable, us.HasField("max_unavailable")),
        scale_max_unavailable=_opt(cs.scale_max_unavailable, cs.HasField("scale_max_unavailable")),
        min_ready_seconds=cs.min_ready_seconds,
        pods=active,
        update_revision=obs.revisions.update,
        current_revision=obs.revisions.current,
        pods_to_delete=frozenset(cs.pods_to_delete),
        now_ms=obs.now_ms,
        partition_rollback=obs.partition_rollback,
    )


def plan_round(obs: Observed) -> Round:
    released = release(obs)
    if released.actions:
        return released
    active = [p for p in obs.pods if is_active(p)]
    return with_batch_labels(obs, active, _plan_steps(obs, active))


# ---- 0. release ---------------------------------------------------------------------------
RELEASE_REQUEUE_MS = 100


def release(obs: Observed) -> Round:
    """Step 0 (OpenKruise's ``claimPods``, ``claim.release_decision``): each pod the CloneSet
    controls whose labels no longer match its selector loses its ownerReference to it.

    Pure. Any release ends the round (phase ``release``): the released pods stop counting
    once the cache shows them unowned, and the next round (``requeue_ms``) scales for the
    rest; nothing is created or deleted on a view that still counts them. Pods in ``busy``
    wait. A released pod is no longer the CloneSet's: no event reaches it through the pod.
    """
    actions: list[Action] = [
        PatchPod(
            r.pod,
            r.uid,
            r.resource_version,
            release_patch(r, owner_uid=obs.clone_set.meta.uid),
            kind="json",
        )
        for r in release_decision(obs.clone_set, obs.pods)
        if r.pod not in obs.busy
    ]
    if not actions:
        return Round("idle")
    return Round("release", tuple(actions), requeue_ms=RELEASE_REQUEUE_MS)


def _plan_steps(obs: Observed, active: Sequence[views_pb2.PodView]) -> Round:
    refreshed = refresh(obs, active)
    if refreshed.actions:
        return refreshed
    diffs = diffs_of(obs, active)
    notes = (
        (f"invalid partition, every pod is updated: {diffs.partition_error}",)
        if diffs.partition_error
        else ()
    )
    scaled = scale(obs, active, diffs)
    if scaled.actions:
        return scaled
    notes = (*notes, *scaled.notes)
    if obs.clone_set.update_strategy.paused:
        return Round(
            "idle", notes=(*notes, "paused: no pod is updated"), requeue_ms=refreshed.requeue_ms
        )
    updated = update(obs, active, diffs)
    requeue = _earliest(refreshed.requeue_ms, updated.requeue_ms, _min_ready_requeue(obs, active))
    return Round(
        updated.phase, updated.actions, requeue, (*notes, *updated.notes), error=updated.error
    )


def with_batch_labels(obs: Observed, active: Sequence[views_pb2.PodView], acted: Round) -> Round:
    """``acted`` with the rollout API's batch labels after its own writes (step 4).

    Pure. ``batch.plan_batch_labels`` decides on every active pod (so the labels the cache
    shows count in full); a pod this round already writes, or one in ``busy`` (its last
    write, maybe a label, not in the cache yet), is left for a later round, its place in
    its batch left empty meanwhile, never given to another pod. Each label is a strategic
    merge patch of the pod's metadata on the version decided on, without asking its
    budget: labels change no readiness. A round with nothing else to do becomes phase
    ``label``; otherwise the phase stays, and the labels go only once the round's own
    writes went through.
    """
    labels = batch.plan_batch_labels(obs.clone_set, active, update_revision=obs.revisions.update)
    if not labels:
        return acted
    touched = {
        a.name
        for a in acted.actions
        if isinstance(a, CreatePod | DeletePod | PatchPod | PatchPodStatus)
    }
    by_name = {p.meta.name: p for p in active}
    writes = tuple(
        PatchPod(
            label.pod,
            by_name[label.pod].meta.uid,
            by_name[label.pod].meta.resource_version,
            label.patch,
        )
        for label in labels
        if label.pod not in obs.busy and label.pod not in touched
    )
    if not writes:
        return acted
    phase = acted.phase if acted.actions or acted.error else "label"
    return dataclasses.replace(acted, phase=phase, actions=(*acted.actions, *writes))


def _earliest(*values: int | None) -> int | None:
    present = [v for v in values if v is not None]
    return min(present) if present else None


def _min_ready_requeue(obs: Observed, active: Sequence[views_pb2.PodView]) -> int | None:
    """When a ready pod becomes available (minReadySeconds), so status and limits move."""
    seconds = obs.clone_set.min_ready_seconds
    if seconds <= 0:
        return None
    waits = []
    for pod in active:
        if running_and_ready(pod) and not available(
            pod, min_ready_seconds=seconds, now_ms=obs.now_ms
        ):
            since = max(p.last_transition_unix_ms for p in pod.conditions if p.type == "Ready")
            waits.append(max(since + seconds * 1000 - obs.now_ms, 1))
    return min(waits) if waits else None


# ---- 1. refresh ---------------------------------------------------------------------------
def _status_patch(*patches: Json | None) -> Json | None:
    """Several ``pods/status`` strategic patches of conditions as one (merged by type)."""
    conditions: dict[str, Json] = {}
    for patch in patches:
        if patch is None:
            continue
        for cond in (patch.get("status") or {}).get("conditions") or []:
            conditions[cond["type"]] = cond
    if not conditions:
        return None
    return {"status": {"conditions": list(conditions.values())}}


def _state_actions(
    pod: views_pb2.PodView,
    decision: lifecycle.SetState,
    obs: Observed,
    *,
    extra_status: Json | None = None,
) -> list[Action]:
    out: list[Action] = []
    patch = lifecycle.state_patch(pod, decision.state, now_rfc3339=obs.now_rfc3339)
    if patch is not None:
        out.append(PatchPod(pod.meta.name, pod.meta.uid, pod.meta.resource_version, patch))
    status = _status_patch(
        extra_status, lifecycle.readiness_patch(pod, decision.readiness, now_ms=obs.now_ms)
    )
    if status is not None:
        out.append(PatchPodStatus(pod.meta.name, pod.meta.uid, status))
    return out


def refresh(obs: Observed, active: Sequence[views_pb2.PodView]) -> Round:
    cs = obs.clone_set
    hooks = lifecycle.Hooks.of(cs)
    grace_s = cs.update_strategy.grace_period_seconds
    actions: list[Action] = []
    requeue: int | None = None
    for pod in active:
        if pod.meta.name in obs.busy:
            continue
        if inplace.grace_of(pod) is not None:
            if inplace.grace_expired(pod, grace_seconds=grace_s, now_ms=obs.now_ms):
                try:
                    ops = inplace.finish_grace_patch(pod)
                except ValueError:
                    ops = None
                if ops:
                    actions.append(
                        PatchPod(
                            pod.meta.name, pod.meta.uid, pod.meta.resource_version, ops, kind="json"
                        )
                    )
            else:
                state = inplace.state_of(pod) or {}
                left = inplace.started_ms(state) + grace_s * 1000 - obs.now_ms
                requeue = _earliest(requeue, max(left, 1))
            continue
        done = inplace.update_completed(pod)
        ready_again = None
        if inplace.needs_initial_condition(pod):
            ready_again = inplace.condition_patch(
                inplace.ready_condition(status=True, reason="", now_rfc3339=obs.now_rfc3339)
            )
        elif done and inplace.in_place_condition_false(pod) and inplace.state_of(pod) is not None:
            ready_again = inplace.condition_patch(
                inplace.ready_condition(status=True, reason="", now_rfc3339=obs.now_rfc3339)
            )
        decision = lifecycle.refresh_decision(pod, hooks, update_done=done)
        if decision is not None:
            actions.extend(_state_actions(pod, decision, obs, extra_status=ready_again))
        elif ready_again is not None:
            actions.append(PatchPodStatus(pod.meta.name, pod.meta.uid, ready_again))
    return Round("refresh", tuple(actions), requeue)


# ---- 2. scale -----------------------------------------------------------------------------
def claims_of(
    pod: views_pb2.PodView, claims: Sequence[views_pb2.PersistentVolumeClaimView]
) -> list[views_pb2.PersistentVolumeClaimView]:
    """The claims that go when the controller deletes ``pod``: those carrying its instance id
    (``apps.kruise.io/cloneset-instance-id``) and not already being deleted. Pure.

    A pod without the label takes none (OpenKruise compares the labels, so it would take
    every unlabelled claim; an empty id matches nothing here).
    """
    instance = pod.meta.labels.get(INSTANCE_ID_LABEL, "")
    if not instance:
        return []
    return [
        c
        for c in claims
        if c.meta.labels.get(INSTANCE_ID_LABEL) == instance and not c.meta.deletion_unix_ms
    ]


def _delete_actions(pod: views_pb2.PodView, obs: Observed, reason: str) -> list[Action]:
    decision = lifecycle.delete_decision(pod, lifecycle.Hooks.of(obs.clone_set).pre_delete)
    if isinstance(decision, lifecycle.DeleteNow):
        name = pod.meta.name
        return [
            DeletePod(name, pod.meta.uid, reason),
            *(DeletePvc(c.meta.name, c.meta.uid, name) for c in claims_of(pod, obs.claims)),
        ]
    return _state_actions(pod, decision, obs)


def scale(obs: Observed, active: Sequence[views_pb2.PodView], diffs: ExpectationDiffs) -> Round:
    cs = obs.clone_set
    hooks = lifecycle.Hooks.of(cs)
    to_delete = frozenset(cs.pods_to_delete)
    replicas = cs.replicas if cs.HasField("replicas") else 1
    busy = obs.busy
    restored = lifecycle.restore_preparing_delete(
        replicas=replicas,
        pods=active,
        pods_to_delete=to_delete,
        pre_delete=hooks.pre_delete,
        in_place_update=hooks.in_place_update,
    )
    by_name = {p.meta.name: p for p in active}
    actions: list[Action] = []
    for name in restored:
        if name not in busy:
            actions.extend(_state_actions(by_name[name], lifecycle.SetState("Normal"), obs))
    if actions:
        return Round("scale", tuple(actions))
    if diffs.scale_num > 0:
        return _scale_out(obs, diffs)
    preparing = [
        p for p in active if lifecycle_state(p) == PREPARING_DELETE and p.meta.name not in busy
    ]
    for pod in preparing:
        actions.extend(_delete_actions(pod, obs, "preparing-delete"))
    specified = [
        p
        for p in active
        if specified_delete(p, to_delete)
        and lifecycle_state(p) != PREPARING_DELETE
        and p.meta.name not in busy
    ]
    ready_budget = diffs.delete_ready_limit
    for pod in specified:
        if running_and_ready(pod):
            if ready_budget <= 0:
                continue
            ready_budget -= 1
        actions.extend(_delete_actions(pod, obs, "specified"))
    pending = bool(preparing or specified)
    if diffs.scale_num < 0 and not pending:
        victims = ordering.choose_scale_in(
            active,
            scale_num=diffs.scale_num,
            scale_num_old_revision=diffs.scale_num_old_revision,
            delete_ready_limit=diffs.delete_ready_limit,
            update_revision=obs.revisions.update,
            min_ready_seconds=cs.min_ready_seconds,
            now_ms=obs.now_ms,
            spread=ordering.spread_constraints_of(obs.revisions.update_template),
        )
        for pod in victims:
            if pod.meta.name not in busy:
                actions.extend(_delete_actions(pod, obs, "scale-in"))
    return Round("scale", tuple(actions))


def _scale_out(obs: Observed, diffs: ExpectationDiffs) -> Round:
    cs = obs.clone_set
    count = min(diffs.scale_num, diffs.scale_up_limit)
    old = min(max(diffs.scale_num_old_revision, 0), count)
    if obs.revisions.current == obs.revisions.update:
        old = 0
    chosen = newpod.instance_ids(
        count=count,
        clone_set_name=cs.meta.name,
        pods=obs.pods,
        claims=obs.claims,
        rng=obs.rng,
    )
    existing = {c.meta.name for c in obs.claims if not c.meta.deletion_unix_ms}
    out: list[Action] = []
    for i, instance in enumerate(chosen.ids):
        at_current = i < old
        rev = obs.revisions.current if at_current else obs.revisions.update
        template = obs.revisions.current_template if at_current else obs.revisions.update_template
        body = newpod.new_pod(
            clone_set=cs,
            template=template,
            revision=rev,
            instance=instance,
            now_rfc3339=obs.now_rfc3339,
            claim_templates=obs.claim_templates,
        )
        name = body["metadata"]["name"]
        for claim in newpod.new_claims(
            clone_set=cs, templates=obs.claim_templates, instance=instance
        ):
            if claim["metadata"]["name"] not in existing:
                out.append(CreatePvc(claim["metadata"]["name"], claim, name))
        out.append(CreatePod(name, body, rev))
    notes = tuple(
        f"instance {instance} keeps its claims for a new pod once {cs.meta.name}-{instance} "
        "has terminated"
        for instance in chosen.waiting
    )
    return Round("scale", tuple(out), notes=notes)


# ---- 3. update ----------------------------------------------------------------------------
def update(obs: Observed, active: Sequence[views_pb2.PodView], diffs: ExpectationDiffs) -> Round:
    """The update step: the chosen pods' writes in order (SPEC 2.5), each by ``_update_pod``.

    Pure. As OpenKruise v1.2's ``Update``, the first chosen pod that cannot be updated ends
    the round with its error (``Round.error``): the writes of the pods before it go, the
    pods after it wait for a later round. The error is no pod write's failure but the
    decision's own; the shell reports it as ``FailedUpdate`` and retries with backoff.
    """
    if diffs.update_num == 0:
        return Round("idle")
    cs = obs.clone_set
    ordered = ordering.update_order(
        [p for p in active if p.meta.name not in obs.busy],
        priority=ordering.parse_priority(obs.update_strategy.get("priorityStrategy")),
        scatter=ordering.parse_scatter(obs.update_strategy.get("scatterStrategy")),
        waiting=lambda pod: ordering.waits_for_update(
            pod, update_num=diffs.update_num, update_revision=obs.revisions.update
        ),
    )
    chosen = ordering.choose_for_update(
        ordered,
        pods=active,
        update_num=diffs.update_num,
        update_max_unavailable=diffs.update_max_unavailable,
        update_revision=obs.revisions.update,
        current_revision=obs.revisions.current,
        min_ready_seconds=cs.min_ready_seconds,
        now_ms=obs.now_ms,
    )
    target = obs.revisions.update
    target_template = obs.revisions.update_template
    if diffs.update_num < 0:
        target, target_template = obs.revisions.current, obs.revisions.current_template
    kind = cs.update_strategy.type or "ReCreate"
    actions: list[Action] = []
    for pod in chosen:
        step = _update_pod(pod, obs=obs, kind=kind, target=target, template=target_template)
        if isinstance(step, str):
            return Round("update", tuple(actions), error=step)
        actions.extend(step)
    return Round("update", tuple(actions))


def in_place_only_error(pod_name: str) -> str:
    """OpenKruise v1.2's update error for a pod ``InPlaceOnly`` cannot update in place."""
    return f"find Pod {pod_name} update strategy is InPlaceOnly but can not update in-place"


def _update_pod(
    pod: views_pb2.PodView,
    *,
    obs: Observed,
    kind: str,
    target: str,
    template: Json,
) -> list[Action] | str:
    """The writes that move ``pod`` to revision ``target`` (OpenKruise's ``updatePod``), or
    the update error that ends the round instead (a message, ``Round.error``).

    Pure. In place (``InPlaceIfPossible``, ``InPlaceOnly``) when only images and template
    metadata change between the pod's own stored revision and ``target`` (and every image
    names a container of the pod); then the pod's lifecycle state decides
    (``lifecycle.in_place_decision``), and a state that forbids it is the error "not allowed
    to in-place update pod <name> in state <state>". Otherwise ``ReCreate`` and
    ``InPlaceIfPossible`` mark the pod specified-delete (whatever its state), and
    ``InPlaceOnly`` returns ``in_place_only_error``.
    """
    spec = None
    if kind != "ReCreate":
        own = obs.stored_templates.get(_revision_name(pod, obs))
        if own is not None:
            spec = inplace.in_place_spec(own, template, revision=target)
            if spec is not None and any(
                c not in {x.name for x in pod.containers} for c in spec.images
            ):
                spec = None
    if spec is not None:
        return _in_place_actions(pod, spec, obs, lifecycle.Hooks.of(obs.clone_set))
    if kind == "InPlaceOnly":
        return in_place_only_error(pod.meta.name)
    return [
        PatchPod(
            pod.meta.name,
            pod.meta.uid,
            pod.meta.resource_version,
            {"metadata": {"labels": {SPECIFIED_DELETE_LABEL: "true"}}},
            budget=True,
            event="SuccessfulUpdatePodReCreate",
            revision=target,
        )
    ]


def _revision_name(pod: views_pb2.PodView, obs: Observed) -> str:
    label = pod.meta.labels.get("controller-revision-hash", "")
    if label in obs.stored_templates:
        return label
    for name in obs.stored_templates:
        if is_updated(pod, name):
            return name
    return label


def _in_place_actions(
    pod: views_pb2.PodView,
    spec: inplace.UpdateSpec,
    obs: Observed,
    hooks: lifecycle.Hooks,
) -> list[Action] | str:
    decision = lifecycle.in_place_decision(pod, hooks.in_place_update)
    name, uid, rv = pod.meta.name, pod.meta.uid, pod.meta.resource_version
    if isinstance(decision, lifecycle.Wait):
        return []
    if isinstance(decision, lifecycle.NotAllowed):
        return decision.message
    if isinstance(decision, lifecycle.SetState):
        actions = _state_actions(pod, decision, obs)
        return [_with_budget(actions[0]), *actions[1:]] if actions else []
    if isinstance(decision, lifecycle.ReArmAndPrepare):
        patch = lifecycle.rearm_patch(decision, now_rfc3339=obs.now_rfc3339)
        out: list[Action] = [PatchPod(name, uid, rv, patch, budget=True)]
        status = lifecycle.readiness_patch(pod, decision.readiness, now_ms=obs.now_ms)
        if status is not None:
            out.append(PatchPodStatus(name, uid, status))
        return out
    out = []
    if inplace.needs_not_ready_first(pod):
        cond = inplace.ready_condition(
            status=False, reason="StartInPlaceUpdate", now_rfc3339=obs.now_rfc3339
        )
        out.append(PatchPodStatus(name, uid, inplace.condition_patch(cond), budget=True))
    ops = inplace.update_patch(
        pod,
        spec,
        now_rfc3339=obs.now_rfc3339,
        grace_seconds=obs.clone_set.update_strategy.grace_period_seconds,
        lifecycle_state=_updating_state(pod, hooks, decision.new_state),
    )
    out.append(
        PatchPod(
            name,
            uid,
            "",
            ops,
            kind="json",
            budget=not out,
            event="SuccessfulUpdatePodInPlace",
            revision=spec.revision,
        )
    )
    return out


def _updating_state(pod: views_pb2.PodView, hooks: lifecycle.Hooks, new_state: str) -> str:
    """The lifecycle state an in-place update writes ("" leaves the label as it is).

    Without any lifecycle hook, a Normal pod stays Normal through the update (OpenKruise
    writes Updating, then Normal again in a fourth pod write once the update completed;
    nothing reads the difference: the pod is unavailable meanwhile through its
    InPlaceUpdateReady condition). With hooks, or from another state, Updating as v1.2.
    """
    if not hooks.lifecycle_set and lifecycle_state(pod) in ("", NORMAL):
        return ""
    return new_state or UPDATING


def _with_budget(action: Action) -> Action:
    """The action, asking the pod's budget first (pod writes only)."""
    if isinstance(action, PatchPod | PatchPodStatus):
        return dataclasses.replace(action, budget=True)
    return action
