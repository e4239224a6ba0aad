"""The writes one CloneSet reconcile decides on: plain data, executed by ``controller``.

Pure data. ``sync.plan_round`` returns a ``Round``: its actions in order, each one write
(or one budget question then one write). The shell executes them in order and stops at
the first that fails or is refused.

PersistentVolumeClaims travel with their pod (``volumeClaimTemplates``, OpenKruise's
``createOnePod`` and ``deletePods``): a pod's ``CreatePvc`` actions come right before its
``CreatePod`` and are created first (a failed claim means no pod); a ``DeletePvc`` comes
right after the ``DeletePod`` of the pod whose instance id it carries, and is skipped when
that delete did not happen (the pod was already gone: whoever deleted it left its claims
for the next pod to reuse).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

Json = dict[str, Any]


@dataclass(frozen=True, slots=True)
class CreatePod:
    name: str
    body: Json
    revision: str


@dataclass(frozen=True, slots=True)
class DeletePod:
    name: str
    uid: str
    reason: str  # "scale-in", "specified", "preparing-delete", "recreate"


@dataclass(frozen=True, slots=True)
class PatchPod:
    """A metadata patch (lifecycle state, specified-delete label) or an in-place update.

    ``kind`` is ``strategic`` for metadata, ``json`` for an in-place update's JSON patch.
    ``budget`` asks the pod's budget first (an update, SPEC 4.11). ``event`` names the
    CloneSet Event to record when it lands.
    """

    name: str
    uid: str
    resource_version: str
    patch: Any
    kind: str = "strategic"
    budget: bool = False
    event: str = ""
    revision: str = ""


@dataclass(frozen=True, slots=True)
class PatchPodStatus:
    """A strategic merge patch of ``pods/status`` (InPlaceUpdateReady, KruisePodReady, Ready)."""

    name: str
    uid: str
    patch: Json
    budget: bool = False


@dataclass(frozen=True, slots=True)
class CreatePvc:
    """A claim of a new pod (``pod``), created before it."""

    name: str
    body: Json
    pod: str


@dataclass(frozen=True, slots=True)
class DeletePvc:
    """A claim of a pod deleted in this round (``pod``), deleted right after it."""

    name: str
    uid: str
    pod: str


Action = CreatePod | DeletePod | PatchPod | PatchPodStatus | CreatePvc | DeletePvc


@dataclass(frozen=True, slots=True)
class Round:
    """What one reconcile does to pods, in order, and why nothing more.

    ``phase`` says which step produced the actions (``refresh``, ``scale``, ``update`` or
    ``idle``); ``requeue_ms`` asks for another look (a grace period, minReadySeconds).
    ``notes`` are log lines for what was skipped (paused, partition error, ...).
    ``error`` is the round's own update error, decided rather than met (OpenKruise's message
    for a pod ``InPlaceOnly`` cannot update in place, or whose lifecycle state forbids an
    in-place update): it comes after ``actions``, which are the writes before it; "" none.
    """

    phase: str
    actions: tuple[Action, ...] = ()
    requeue_ms: int | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)
    error: str = ""
