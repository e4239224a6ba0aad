"""What the CloneSet controller reads off a pod: its revision, lifecycle state, readiness.

Pure; no I/O. Every predicate takes the pod's view (and the time where readiness for
``minReadySeconds`` matters: time is passed in, never read). The names are OpenKruise's
(SPEC 2.3-2.5, 3.1):

    revision_of(pod)                 the controller-revision-hash label
    lifecycle_state(pod)             lifecycle.apps.kruise.io/state ("" when unset)
    running_and_ready(pod)           phase Running and condition Ready True
    in_place_ready(pod)              condition InPlaceUpdateReady is not False
    available(pod, min_ready, now)   state ""/Normal, ready for minReadySeconds, in-place ready
    specified_delete(pod, names)     labelled apps.kruise.io/specified-delete or named in
                                     scaleStrategy.podsToDelete
    is_updated(pod, revision)        at the revision (full name or its short hash)
"""

from __future__ import annotations

from collections.abc import Collection

from kruise.common.v1 import views_pb2
from services.kit.objects import pod_active, pod_ready

REVISION_LABEL = "controller-revision-hash"
INSTANCE_ID_LABEL = "apps.kruise.io/cloneset-instance-id"
SPECIFIED_DELETE_LABEL = "apps.kruise.io/specified-delete"
LIFECYCLE_STATE_LABEL = "lifecycle.apps.kruise.io/state"
LIFECYCLE_TIMESTAMP_ANNOTATION = "lifecycle.apps.kruise.io/timestamp"
INPLACE_STATE_ANNOTATION = "apps.kruise.io/inplace-update-state"
INPLACE_GRACE_ANNOTATION = "apps.kruise.io/inplace-update-grace"
DELETION_COST_ANNOTATION = "controller.kubernetes.io/pod-deletion-cost"
IN_PLACE_UPDATE_READY = "InPlaceUpdateReady"
KRUISE_POD_READY = "KruisePodReady"

# Lifecycle states (SPEC 3.1).
NORMAL = "Normal"
PREPARING_UPDATE = "PreparingUpdate"
UPDATING = "Updating"
UPDATED = "Updated"
PREPARING_DELETE = "PreparingDelete"


def condition(pod: views_pb2.PodView, type_: str) -> views_pb2.Condition | None:
    for cond in pod.conditions:
        if cond.type == type_:
            return cond
    return None


def revision_of(pod: views_pb2.PodView) -> str:
    return pod.meta.labels.get(REVISION_LABEL, "")


def lifecycle_state(pod: views_pb2.PodView) -> str:
    return pod.meta.labels.get(LIFECYCLE_STATE_LABEL, "")


# The pod predicates every service shares, under the names this module's readers use.
is_active = pod_active
is_ready = pod_ready


def running_and_ready(pod: views_pb2.PodView) -> bool:
    return pod.phase == "Running" and is_ready(pod)


def in_place_ready(pod: views_pb2.PodView) -> bool:
    """The InPlaceUpdateReady condition, when present, is not False."""
    cond = condition(pod, IN_PLACE_UPDATE_READY)
    return cond is None or cond.status != "False"


def ready_since_ms(pod: views_pb2.PodView) -> int:
    """When the pod's Ready condition last turned (0 when unknown)."""
    cond = condition(pod, "Ready")
    return cond.last_transition_unix_ms if cond is not None else 0


def ready_for(pod: views_pb2.PodView, *, min_ready_seconds: int, now_ms: int) -> bool:
    """Running and ready, for at least ``min_ready_seconds`` (Kubernetes' IsPodAvailable)."""
    if not running_and_ready(pod):
        return False
    if min_ready_seconds <= 0:
        return True
    since = ready_since_ms(pod)
    return since > 0 and since + min_ready_seconds * 1000 < now_ms


def counts_ready(pod: views_pb2.PodView) -> bool:
    """``status.readyReplicas``: running and ready, and in-place ready (SPEC 2.3)."""
    return running_and_ready(pod) and in_place_ready(pod)


def available(pod: views_pb2.PodView, *, min_ready_seconds: int, now_ms: int) -> bool:
    """Lifecycle state empty or Normal, ready for minReadySeconds, in-place ready (SPEC 2.4)."""
    return (
        lifecycle_state(pod) in ("", NORMAL)
        and ready_for(pod, min_ready_seconds=min_ready_seconds, now_ms=now_ms)
        and in_place_ready(pod)
    )


def specified_delete(pod: views_pb2.PodView, pods_to_delete: Collection[str]) -> bool:
    return SPECIFIED_DELETE_LABEL in pod.meta.labels or pod.meta.name in pods_to_delete


def max_restarts(pod: views_pb2.PodView) -> int:
    return max((cs.restart_count for cs in pod.container_statuses), default=0)


def is_updated(pod: views_pb2.PodView, revision: str) -> bool:
    """The pod is at ``revision`` (OpenKruise's ``EqualToRevisionHash``).

    Its revision label equals the revision's name, or both end in the same hash after
    their last ``-`` (pods labelled with the short hash, as CloneSetShortHash writes them)::

        label "web-5d8f9c"  revision "web-5d8f9c"  → True
        label "5d8f9c"      revision "web-5d8f9c"  → True
        label "web-7b6c4d"  revision "web-5d8f9c"  → False
    """
    label = revision_of(pod)
    return label == revision or label.rsplit("-", 1)[-1] == revision.rsplit("-", 1)[-1]
