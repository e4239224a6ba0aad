"""A CloneSet's status as OpenKruise v1.2 computes and writes it (SPEC 2.3).

Pure; no I/O, no clock (time is ``now_ms``). The rollout shell calls ``compute_status``
after each round, writes ``status_body`` through the cluster API when ``status_changed``
says so, and renders the selector once with ``label_selector_string``.

    compute_status(...)             the counters over the CloneSet's active pods, the
                                    revisions, expectedUpdatedReplicas
    status_changed(old, new)        whether the write is needed (OpenKruise's tracked fields)
    next_conditions(existing, ...)  ``status.conditions`` after a round: FailedScale and
                                    FailedUpdate set or cleared, everyone else's kept
    round_errors(phase, failure)    which of the two a round's outcome speaks for (a write's
                                    failure, or the round's own update error)
    failures_changed(old, new)      whether the conditions alone call for a write
    status_body(status, conditions) the JSON ``status`` object, camelCase, Go's omitempty
    label_selector_string(selector) ``metav1.FormatLabelSelector``
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from kruise.common.v1 import views_pb2
from services.kit.intstr import from_view
from services.rollout.partition import expected_updated_replicas
from services.rollout.pods import available, counts_ready, is_updated

__all__ = [
    "FAILED_SCALE",
    "FAILED_UPDATE",
    "CloneSetStatus",
    "compute_status",
    "conditions_of",
    "failures_changed",
    "label_selector_string",
    "next_conditions",
    "round_errors",
    "status_body",
    "status_changed",
]


@dataclass(frozen=True)
class CloneSetStatus:
    """``CloneSet.status`` (apps.kruise.io/v1alpha1) without its conditions.

    replicas                  active pods owned by the CloneSet
    ready_replicas            running and Ready, and InPlaceUpdateReady not False
    available_replicas        as ready, for minReadySeconds, and lifecycle state ""/Normal
    updated_replicas          at the update revision
    updated_ready_replicas    at the update revision and ready (as ready_replicas)
    expected_updated_replicas replicas minus the partition (``partition.
                              expected_updated_replicas``); 0 when the partition is invalid
    current_revision          the update revision once every pod is at it
    """

    observed_generation: int
    replicas: int
    ready_replicas: int
    available_replicas: int
    updated_replicas: int
    updated_ready_replicas: int
    expected_updated_replicas: int
    update_revision: str
    current_revision: str
    collision_count: int
    label_selector: str


def compute_status(
    *,
    clone_set: views_pb2.CloneSetView,
    pods: Sequence[views_pb2.PodView],
    update_revision: str,
    current_revision: str,
    collision_count: int,
    label_selector: str,
    now_ms: int,
) -> CloneSetStatus:
    """The status for ``clone_set`` given its active ``pods`` (SPEC 2.3).

    ``current_revision`` is the revision the old status named (the update revision when
    it named none); it becomes ``update_revision`` when every pod is at the update
    revision, ready or not (also with no pods at all: 0 of 0). Then
    expectedUpdatedReplicas is spec.replicas; otherwise spec.replicas minus the partition.
    ``label_selector`` is ``label_selector_string(clone_set.selector)``, rendered once.

    Worked example (SPEC 2.7, the "99%" e2e): replicas 4, partition "99%", four ready pods
    of which one is updated → replicas 4, updated 1, updatedReady 1, expectedUpdated 1,
    currentRevision unchanged.
    """
    min_ready = clone_set.min_ready_seconds
    replicas = ready = available_count = updated = updated_ready = 0
    for pod in pods:
        replicas += 1
        pod_ready = counts_ready(pod)
        pod_updated = is_updated(pod, update_revision)
        ready += pod_ready
        available_count += available(pod, min_ready_seconds=min_ready, now_ms=now_ms)
        updated += pod_updated
        updated_ready += pod_updated and pod_ready
    if updated == replicas:
        current_revision = update_revision
    strategy = clone_set.update_strategy
    expected = expected_updated_replicas(
        replicas=clone_set.replicas if clone_set.HasField("replicas") else None,
        partition=from_view(strategy.partition) if strategy.HasField("partition") else None,
        update_revision=update_revision,
        current_revision=current_revision,
    )
    return CloneSetStatus(
        observed_generation=clone_set.meta.generation,
        replicas=replicas,
        ready_replicas=ready,
        available_replicas=available_count,
        updated_replicas=updated,
        updated_ready_replicas=updated_ready,
        expected_updated_replicas=expected,
        update_revision=update_revision,
        current_revision=current_revision,
        collision_count=collision_count,
        label_selector=label_selector,
    )


def status_changed(old: views_pb2.CloneSetStatus, new: CloneSetStatus) -> bool:
    """Whether ``new`` must be written over ``old`` (OpenKruise's ``inconsistentStatus``).

    True when observedGeneration grew, or any of replicas, readyReplicas,
    availableReplicas, updatedReadyReplicas, updatedReplicas, expectedUpdatedReplicas
    (v1.2, #987), updateRevision, currentRevision or labelSelector differs. A changed
    collisionCount alone, or a smaller observedGeneration, writes nothing.
    """
    return (
        new.observed_generation > old.observed_generation
        or new.replicas != old.replicas
        or new.ready_replicas != old.ready_replicas
        or new.available_replicas != old.available_replicas
        or new.updated_ready_replicas != old.updated_ready_replicas
        or new.updated_replicas != old.updated_replicas
        or new.expected_updated_replicas != old.expected_updated_replicas
        or new.update_revision != old.update_revision
        or new.current_revision != old.current_revision
        or new.label_selector != old.label_selector
    )


# --- conditions ------------------------------------------------------------------------

FAILED_SCALE = "FailedScale"
"""The controller failed to create or delete pods or claims (``CloneSetConditionFailedScale``)."""
FAILED_UPDATE = "FailedUpdate"
"""The controller failed to update pods (``CloneSetConditionFailedUpdate``)."""
_OURS = (FAILED_SCALE, FAILED_UPDATE)


def conditions_of(status: views_pb2.CloneSetStatus) -> list[Any]:
    """The stored ``status.conditions`` (raw JSON items, as any writer left them)."""
    if not status.conditions_json:
        return []
    loaded = orjson.loads(status.conditions_json)
    return loaded if isinstance(loaded, list) else []


def _type_of(condition: object) -> object:
    return condition.get("type") if isinstance(condition, Mapping) else None


def next_conditions(
    existing: Sequence[Any],
    *,
    scale_error: str | None,
    update_error: str | None,
    now: str,
) -> list[Any]:
    """``status.conditions`` after a round whose scale and update steps ended as given.

    Pure; no I/O. The rollout shell writes the result with the status (``status_body``).

    For each of the controller's two condition types, the step's outcome decides:

        error None       the step did not run this round (a refresh round, a status written
                         between create batches): its condition is left exactly as it is
        error ""         the step ran and nothing failed: its condition is removed
        error "<text>"   the step failed: ``{type, status: "True", lastTransitionTime: now,
                         message: text}`` (no reason), in place of the one there, else
                         appended (FailedScale before FailedUpdate)

    Every other condition (a user's, another controller's) is kept as it is, in its place.

    OpenKruise v1.2 (``syncCloneSet`` in ``cloneset_controller.go``) builds a fresh status
    each reconcile: ``FailedScale`` when ``Scale`` returned an error, ``FailedUpdate`` when
    ``Update`` did (``Update`` is skipped in a round that scaled), ``lastTransitionTime``
    the time of that reconcile; its status update then replaces ``status.conditions``
    whole, so anyone else's conditions are dropped at each write. Here they are kept, and a
    step that did not run leaves its condition alone rather than dropping it.

    Scenario (a quota refuses pod creates, then is raised):

        []                        scale "pods ... forbidden"  → [FailedScale True]
        [FailedScale True]        scale "pods ... forbidden"  → [FailedScale True] (new
                                                                 message and time)
        [FailedScale True]        scale ""                    → []
        [user's Ready]            scale ""                    → [user's Ready]
    """
    out: list[Any] = list(existing)
    for kind, error in ((FAILED_SCALE, scale_error), (FAILED_UPDATE, update_error)):
        if error is None:
            continue
        at = next((i for i, c in enumerate(out) if _type_of(c) == kind), len(out))
        out = [c for c in out if _type_of(c) != kind]  # none before ``at``: it stays put
        if error:
            out.insert(
                at,
                {"type": kind, "status": "True", "lastTransitionTime": now, "message": error},
            )
    return out


def round_errors(phase: str, failure: str | None) -> tuple[str | None, str | None]:
    """``(scale_error, update_error)`` for ``next_conditions`` after a round of ``phase``
    (``sync.plan_round``'s) that ended with ``failure`` (a message, or None: no failure).

    ``failure`` is a write's error, or else the round's own ``Round.error`` once the writes
    before it went through: a pod ``InPlaceOnly`` cannot update in place ("find Pod <name>
    update strategy is InPlaceOnly but can not update in-place") or whose lifecycle state
    forbids an in-place update ("not allowed to in-place update pod <name> in state
    <state>"). OpenKruise v1.2's ``Update`` returns both as errors, so both are
    ``FailedUpdate`` here too.

    Pure. Where OpenKruise v1.2's steps fall (``Scale`` first; ``Update``, which refreshes
    pod states before updating, only when ``Scale`` did nothing):

        phase     scale_error      update_error
        refresh   None             failure or ""   (states are refreshed before scaling
                                                    here, so scaling did not run)
        scale     failure or ""    None            (Update did not run)
        update    ""               failure or ""
        idle      ""               ""              (nothing to do, or paused)
        release   None             None            (claimPods before both: an error
                                                    there returns before the status)

    >>> round_errors("scale", 'pods "web-x" is forbidden')
    ('pods "web-x" is forbidden', None)
    >>> round_errors("update", "find Pod web-x update strategy is InPlaceOnly but can not "
    ...              "update in-place")
    ('', 'find Pod web-x update strategy is InPlaceOnly but can not update in-place')
    """
    outcome = failure or ""
    if phase == "release":
        return None, None
    if phase == "refresh":
        return None, outcome
    if phase == "scale":
        return outcome, None
    if phase == "update":
        return "", outcome
    return "", ""


def failures_changed(old: Sequence[Any], new: Sequence[Any]) -> bool:
    """Whether ``new`` sets or clears FailedScale or FailedUpdate compared with ``old``.

    The status is written for this even when no counter moved (OpenKruise v1.2 writes only
    when a counter did, so a failure in a round that changed nothing never showed, and one
    that ended lingered until the next counter change). A new message or time alone does
    not call for a write: a failing create names a new pod each time, and the write's own
    watch event would bring the CloneSet straight back to fail again.
    """

    def present(conditions: Sequence[Any]) -> set[object]:
        return {
            _type_of(c)
            for c in conditions
            if _type_of(c) in _OURS and isinstance(c, Mapping) and c.get("status") == "True"
        }

    return present(old) != present(new)


def status_body(
    status: CloneSetStatus, conditions: Sequence[Any] | None = None
) -> dict[str, object]:
    """The ``status`` object as OpenKruise writes it: Go's field order and omitempty.

    The counters and observedGeneration are always present; expectedUpdatedReplicas,
    updateRevision, currentRevision and labelSelector are left out when 0/empty;
    collisionCount is always written (the controller always sets it). A status update
    replaces the whole object, so pass every condition to keep (``next_conditions``, raw
    JSON); an empty or missing list is left out.

    >>> status_body(CloneSetStatus(3, 4, 4, 4, 1, 1, 0, "web-2", "web-1", 0, "app=web"))
    ... # doctest: +NORMALIZE_WHITESPACE
    {'observedGeneration': 3, 'replicas': 4, 'readyReplicas': 4, 'availableReplicas': 4,
     'updatedReplicas': 1, 'updatedReadyReplicas': 1, 'updateRevision': 'web-2',
     'currentRevision': 'web-1', 'collisionCount': 0, 'labelSelector': 'app=web'}
    """
    body: dict[str, object] = {
        "observedGeneration": status.observed_generation,
        "replicas": status.replicas,
        "readyReplicas": status.ready_replicas,
        "availableReplicas": status.available_replicas,
        "updatedReplicas": status.updated_replicas,
        "updatedReadyReplicas": status.updated_ready_replicas,
    }
    if status.expected_updated_replicas:
        body["expectedUpdatedReplicas"] = status.expected_updated_replicas
    if status.update_revision:
        body["updateRevision"] = status.update_revision
    if status.current_revision:
        body["currentRevision"] = status.current_revision
    body["collisionCount"] = status.collision_count
    if conditions:
        body["conditions"] = list(conditions)
    if status.label_selector:
        body["labelSelector"] = status.label_selector
    return body


# --- label selector --------------------------------------------------------------------

_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
_DNS1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_SET_OPERATORS = {"In": "in", "NotIn": "notin"}
_EXISTENCE_OPERATORS = {"Exists": "", "DoesNotExist": "!"}


def label_selector_string(selector: views_pb2.LabelSelector) -> str:
    """``metav1.FormatLabelSelector``: the selector as ``kubectl`` and the HPA read it.

    Every matchLabel is ``key=value`` and every expression ``key in (a,b)``, ``key notin
    (a,b)`` (values sorted), ``key`` (Exists) or ``!key`` (DoesNotExist); the terms are
    sorted by key (stably: a key's matchLabel first, then its expressions in order) and
    joined with ``,``::

        {app: web}, [tier In (db, cache)]     → "app=web,tier in (cache,db)"
        {}, [zone Exists, app DoesNotExist]   → "!app,zone"
        {} (selects everything)               → "<none>"
        an unknown operator, In without values, Exists with values, an invalid key or
        value                                 → "<error>"

    (OpenKruise writes ``selector.String()``, which renders the same for every selector
    its webhook admits: it rejects empty and invalid ones.)

    >>> label_selector_string(views_pb2.LabelSelector(match_labels={"b": "2", "a": "1"}))
    'a=1,b=2'
    """
    terms: list[tuple[str, str]] = []
    for key, value in selector.match_labels.items():
        if not _valid_key(key) or not _valid_value(value):
            return "<error>"
        terms.append((key, f"{key}={value}"))
    for req in selector.match_expressions:
        if not _valid_key(req.key):
            return "<error>"
        if req.operator in _SET_OPERATORS:
            if not req.values or not all(_valid_value(v) for v in req.values):
                return "<error>"
            values = ",".join(sorted(req.values))
            terms.append((req.key, f"{req.key} {_SET_OPERATORS[req.operator]} ({values})"))
        elif req.operator in _EXISTENCE_OPERATORS:
            if req.values:
                return "<error>"
            terms.append((req.key, f"{_EXISTENCE_OPERATORS[req.operator]}{req.key}"))
        else:
            return "<error>"
    if not terms:
        return "<none>"
    terms.sort(key=lambda term: term[0])
    return ",".join(text for _, text in terms)


def _valid_key(key: str) -> bool:
    """A qualified name: ``[prefix/]name``, prefix a DNS subdomain (validation.IsQualifiedName)."""
    prefix, slash, name = key.rpartition("/")
    if slash and not (
        prefix and len(prefix) <= 253 and _DNS1123_SUBDOMAIN.fullmatch(prefix) is not None
    ):
        return False
    return len(name) <= 63 and _NAME.fullmatch(name) is not None


def _valid_value(value: str) -> bool:
    """A label value: empty, or a name of at most 63 characters (IsValidLabelValue)."""
    return value == "" or (len(value) <= 63 and _NAME.fullmatch(value) is not None)
